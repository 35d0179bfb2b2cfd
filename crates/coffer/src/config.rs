//! `coffer.toml` and `COFFER_*`: every key can come from either (environment wins), and the
//! command line's `--data`, `--smtp` and `--http` win over both. Each part's settings are
//! defined by the crate that uses them.

use std::path::Path;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The data folder, database, master key, journal domain and limits (top-level keys).
    #[serde(flatten)]
    pub archive: coffer_archive::ArchiveConfig,
    pub smtp: coffer_smtp::SmtpSettings,
    pub http: coffer_web::HttpSettings,
    /// IMAP mailboxes to archive (`[[imap]]`).
    pub imap: Vec<coffer_imap::ImapConfig>,
    /// Microsoft 365 tenants to archive through Graph (`[[m365]]`).
    pub m365: Vec<coffer_m365::M365Config>,
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
        config.archive.extract.check().map_err(|e| anyhow::anyhow!(e))?;
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

    /// The connections coffer.toml seeds (`[[imap]]`, `[[m365]]`); the catalog keeps the ones run.
    pub fn sources(&self) -> coffer_sources::Definitions {
        coffer_sources::Definitions { imap: self.imap.clone(), m365: self.m365.clone() }
    }
}
