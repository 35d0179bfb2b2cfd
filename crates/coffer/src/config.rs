//! `coffer.toml` and `COFFER_*`: every key can come from either (environment wins), and the
//! command line's `--data`, `--smtp` and `--http` win over both.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The data folder: volumes, catalog (SQLite), index and master key.
    pub data: PathBuf,
    /// `sqlite://PATH` (default: DATA/catalog.sqlite) or `postgres://USER@HOST/DB`.
    pub database_url: Option<String>,
    /// The master key file (default: DATA/master.key). Back it up apart from the data.
    pub master_key_file: Option<PathBuf>,
    /// The domain of the tenants' journal addresses: journal-<token>@<journal_domain>.
    pub journal_domain: String,
    pub max_message_bytes: u64,
    pub segment_max_bytes: u64,
    pub volume_max_bytes: u64,
    pub volume_max_messages: u64,
    /// Open a data folder other users can read (refused by default).
    pub allow_shared_data: bool,
    /// Memory for messages in flight across the process; large messages wait for their share.
    pub ingest_memory_bytes: u64,
    pub smtp: Smtp,
    pub http: Http,
    /// IMAP mailboxes to archive (`[[imap]]`).
    pub imap: Vec<coffer_imap::ImapConfig>,
    /// Microsoft 365 tenants to archive through Graph (`[[m365]]`).
    pub m365: Vec<coffer_m365::M365Config>,
}

/// The SMTP journaling listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Smtp {
    pub enabled: bool,
    pub listen: String,
    /// More addresses served the same way (e.g. ["0.0.0.0:25", "[::]:25"]).
    pub also_listen: Vec<String>,
    /// More journal addresses: address → tenant name (e.g. "archive@contoso.com" = "contoso").
    pub aliases: std::collections::BTreeMap<String, String>,
    /// Greeting and EHLO name; default: journal_domain.
    pub hostname: Option<String>,
    /// off | offer | require
    pub tls: coffer_smtp::TlsPolicy,
    /// Certificate-store alias; a self-signed one is made on first start when it does not exist.
    pub certificate: String,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Connections from one IPv4 /24 or IPv6 /48 at once.
    pub max_connections_per_range: usize,
    pub max_connections_per_minute_per_ip: usize,
    pub max_recipients: usize,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
    /// Deliveries get 452 4.3.1 when the data folder's filesystem has less free space than this.
    pub min_free_bytes: u64,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            enabled: true,
            listen: "127.0.0.1:2525".into(),
            also_listen: Vec::new(),
            aliases: Default::default(),
            hostname: None,
            tls: coffer_smtp::TlsPolicy::Offer,
            certificate: "smtp".into(),
            max_connections: 200,
            max_connections_per_ip: 50,
            max_connections_per_range: 100,
            max_connections_per_minute_per_ip: 6000,
            max_recipients: 100,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            min_free_bytes: 256 << 20,
        }
    }
}

/// The web console and REST API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Http {
    pub enabled: bool,
    pub listen: String,
    /// Certificate-store alias: serve HTTPS with it (secure cookies follow).
    pub certificate: Option<String>,
    /// How users reach the console, e.g. https://archive.contoso.com (single sign-on redirect URIs
    /// are made from it). Default: the listen address.
    pub public_url: Option<String>,
    pub session_idle_minutes: u64,
    pub session_max_hours: u64,
    /// Failed sign-ins in a row before an account is locked, and for how many minutes.
    pub lockout_after: i64,
    pub lockout_minutes: i64,
    /// Open connections at once: in all, from one address, from one IPv4 /24 or IPv6 /48.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_range: usize,
    /// A request's header must arrive within this (also the idle time of a kept-alive
    /// connection), and a whole request must be answered within `request_timeout_secs`.
    pub header_timeout_secs: u64,
    pub request_timeout_secs: u64,
    /// The token a Prometheus scraper sends (`Authorization: Bearer …`) for `/metrics`; without it
    /// only an administrator of the default tenant reads them.
    pub metrics_token: Option<String>,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            enabled: true,
            listen: "127.0.0.1:8090".into(),
            certificate: None,
            public_url: None,
            session_idle_minutes: 30,
            session_max_hours: 12,
            lockout_after: 5,
            lockout_minutes: 15,
            max_connections: 1000,
            max_connections_per_ip: 100,
            max_connections_per_range: 400,
            header_timeout_secs: 20,
            request_timeout_secs: 600,
            metrics_token: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let archive = coffer_archive::ArchiveConfig::new("./coffer-data".into());
        Config {
            data: archive.data_dir,
            database_url: None,
            master_key_file: None,
            journal_domain: archive.journal_domain,
            max_message_bytes: archive.max_message_bytes,
            segment_max_bytes: archive.segment_max_bytes,
            volume_max_bytes: archive.volume_max_bytes,
            volume_max_messages: archive.volume_max_messages,
            allow_shared_data: archive.allow_shared_data,
            ingest_memory_bytes: archive.ingest_memory_bytes,
            smtp: Smtp::default(),
            http: Http::default(),
            imap: Vec::new(),
            m365: Vec::new(),
        }
    }
}

impl Config {
    /// Defaults, then the config file (the one named, or `./coffer.toml` if present), then `COFFER_*`.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                anyhow::ensure!(path.is_file(), "config file {} does not exist", path.display());
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new("coffer.toml").is_file() => figment = figment.merge(Toml::file_exact("coffer.toml")),
            None => {}
        }
        let config: Config = figment
            .merge(Env::prefixed("COFFER_").split("__"))
            .extract()
            .context("configuration is invalid (check coffer.toml and COFFER_* variables; nested keys use __, e.g. COFFER_SMTP__LISTEN)")?;
        for c in &config.m365 {
            anyhow::ensure!(
                (1..=32).contains(&c.parallel_mailboxes),
                "[[m365]] {}: parallel_mailboxes = {} must be between 1 and 32 (4 is a good start; Graph \
                 throttles an app that reads too many mailboxes at once)",
                c.name,
                c.parallel_mailboxes
            );
        }
        Ok(config)
    }

    pub fn archive(&self) -> coffer_archive::ArchiveConfig {
        let mut a = coffer_archive::ArchiveConfig::new(self.data.clone());
        a.database_url = self.database_url.clone();
        a.master_key_file = self.master_key_file.clone();
        a.journal_domain = self.journal_domain.clone();
        a.max_message_bytes = self.max_message_bytes;
        a.segment_max_bytes = self.segment_max_bytes;
        a.volume_max_bytes = self.volume_max_bytes;
        a.volume_max_messages = self.volume_max_messages;
        a.allow_shared_data = self.allow_shared_data;
        a.ingest_memory_bytes = self.ingest_memory_bytes;
        a
    }
}
