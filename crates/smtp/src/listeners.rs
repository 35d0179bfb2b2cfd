//! The journaling listeners of a server from their settings (`[smtp]` in coffer.toml): the TLS
//! certificate (a self-signed one made on first start), journal addresses kept fresh from the
//! catalog, one listener per address, and their figures flushed to the catalog.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use coffer_archive::{Archive, ArchiveError, Pipeline};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::server::{JournalAddresses, Listener, ListenerConfig, Stats};
use crate::session::TlsPolicy;

/// The SMTP journaling listener's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpSettings {
    pub enabled: bool,
    pub listen: String,
    /// More addresses served the same way (e.g. ["0.0.0.0:25", "[::]:25"]).
    pub also_listen: Vec<String>,
    /// More journal addresses: address → tenant name (e.g. "archive@contoso.com" = "contoso").
    pub aliases: BTreeMap<String, String>,
    /// Greeting and EHLO name; default: journal_domain.
    pub hostname: Option<String>,
    /// off | offer | require
    pub tls: TlsPolicy,
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

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            enabled: true,
            listen: "127.0.0.1:2525".into(),
            also_listen: Vec::new(),
            aliases: Default::default(),
            hostname: None,
            tls: TlsPolicy::Offer,
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

impl SmtpSettings {
    pub fn hostname(&self, journal_domain: &str) -> String {
        self.hostname.clone().unwrap_or_else(|| journal_domain.to_owned())
    }

    /// Setting → value, as the console's Listeners page shows them.
    pub fn describe(&self, journal_domain: &str, max_message_bytes: u64) -> Vec<(String, String)> {
        vec![
            ("enabled".into(), self.enabled.to_string()),
            (
                "listen".into(),
                std::iter::once(&self.listen).chain(&self.also_listen).cloned().collect::<Vec<_>>().join(", "),
            ),
            ("hostname".into(), self.hostname(journal_domain)),
            ("TLS".into(), format!("{:?} (certificate {})", self.tls, self.certificate).to_lowercase()),
            ("aliases".into(), self.aliases.iter().map(|(a, t)| format!("{a} → {t}")).collect::<Vec<_>>().join(", ")),
            ("max message size".into(), format!("{max_message_bytes} bytes")),
            ("max connections".into(), format!("{} ({} per IP)", self.max_connections, self.max_connections_per_ip)),
            ("max recipients".into(), self.max_recipients.to_string()),
            ("minimum free disk".into(), format!("{} bytes", self.min_free_bytes)),
        ]
    }
}

/// The listeners of a running server.
pub struct Listeners {
    tasks: tokio::task::JoinHandle<()>,
    stats: Arc<Stats>,
    flusher: tokio::task::JoinHandle<()>,
    state: coffer_archive::sources::SourceState,
    data_timeout: Duration,
    /// The addresses bound (port 0 in the settings gives a free port).
    pub bound: Vec<std::net::SocketAddr>,
}

/// Binds every address first (a mistake in any of them stops the start, not half of it), then
/// serves each until `stopping` turns true.
pub async fn start(
    archive: &Archive,
    s: &SmtpSettings,
    pipeline: Pipeline,
    stopping: watch::Receiver<bool>,
) -> Result<Listeners, ArchiveError> {
    let journal_domain = &archive.config.journal_domain;
    let hostname = s.hostname(journal_domain);
    let tls = if s.tls == TlsPolicy::Off {
        None
    } else {
        let certs = archive.certs();
        if certs.certificate_pem(&s.certificate).is_err() {
            let subject = coffer_archive::certs::Subject { common_name: hostname.clone(), ..Default::default() };
            let info = certs.generate(&s.certificate, &subject)?;
            tracing::warn!(alias = %info.alias, cn = %hostname, "no certificate for SMTP: generated a self-signed one (import a real one with `coffer cert import`)");
        }
        Some(coffer_archive::tls::acceptor(&certs, &s.certificate, "smtp.certificate")?)
    };
    let mut aliases = HashMap::new();
    for (address, tenant) in &s.aliases {
        let t = archive
            .tenant(Some(tenant))
            .await
            .map_err(|e| ArchiveError::Invalid(format!("smtp.aliases: {address} names tenant {tenant:?}: {e}")))?;
        aliases.insert(address.to_ascii_lowercase(), t.id);
    }
    let state = archive.source_state();
    let addresses = JournalAddresses::new(journal_domain, aliases);
    addresses.refresh(&state).await?;
    addresses.keep_fresh(state.clone());
    let stats = Arc::new(Stats::default());
    let config = ListenerConfig {
        name: "smtp".into(),
        hostname,
        tls: s.tls,
        max_message_bytes: archive.config.max_message_bytes as usize,
        max_recipients: s.max_recipients,
        max_connections: s.max_connections,
        max_connections_per_ip: s.max_connections_per_ip,
        max_connections_per_range: s.max_connections_per_range,
        max_connections_per_minute_per_ip: s.max_connections_per_minute_per_ip,
        command_timeout: Duration::from_secs(s.command_timeout_secs),
        data_timeout: Duration::from_secs(s.data_timeout_secs),
        min_free_bytes: s.min_free_bytes,
        data_dir: archive.config.data_dir.clone(),
    };
    let mut sockets = Vec::new();
    for address in std::iter::once(&s.listen).chain(&s.also_listen) {
        let socket = tokio::net::TcpListener::bind(address).await.map_err(|e| {
            ArchiveError::Invalid(format!(
                "cannot listen for SMTP on {address}: {e} (port 25 needs root or CAP_NET_BIND_SERVICE; see README)"
            ))
        })?;
        sockets.push(socket);
    }
    let mut tasks = Vec::new();
    let mut bound = Vec::new();
    for socket in sockets {
        bound.push(socket.local_addr().map_err(|e| ArchiveError::Io("SMTP socket".into(), e))?);
        let listener = Listener {
            config: config.clone(),
            pipeline: pipeline.clone(),
            addresses: addresses.clone(),
            tls: tls.clone(),
            stats: stats.clone(),
        };
        tasks.push(tokio::spawn(listener.serve(socket, stopping.clone())));
    }
    let tasks = tokio::spawn(async move {
        for t in tasks {
            let _ = t.await;
        }
    });
    let flusher = {
        let (stats, state) = (stats.clone(), state.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                stats.flush(&state, "smtp").await;
            }
        })
    };
    Ok(Listeners { tasks, stats, flusher, state, data_timeout: config.data_timeout, bound })
}

impl Listeners {
    /// After `stopping` turned true: lets the transactions in flight finish (up to the data
    /// timeout) and records the last figures.
    pub async fn finish(self) {
        let _ = tokio::time::timeout(self.data_timeout, self.tasks).await;
        self.flusher.abort();
        self.stats.flush(&self.state, "smtp").await;
    }
}
