//! The console's listener from its settings (`[http]` in coffer.toml): HTTPS when a certificate
//! is named, the limits, and the first-start hint when no account exists yet.

use std::sync::Arc;
use std::time::Duration;

use coffer_archive::listeners::ListenerControl;
use coffer_archive::sources::SourceControl;
use coffer_archive::{Archive, ArchiveError};
use serde::{Deserialize, Serialize};

use crate::{Console, WebConfig};

/// The web console's and REST API's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
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
    /// Largest file an import takes from the console or the API, in MiB (larger files: `coffer
    /// import` on the server).
    pub max_upload_mib: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
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
            max_upload_mib: 2048,
        }
    }
}

/// Binds `h.listen` and serves the console and the API until `stopping` turns true. `smtp` is
/// what the Listeners page shows of the settings every SMTP listener shares; `listeners` runs them.
pub async fn start(
    archive: Arc<Archive>,
    h: &HttpSettings,
    smtp: Vec<(String, String)>,
    sources: Arc<dyn SourceControl>,
    listeners: Arc<dyn ListenerControl>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<(tokio::task::JoinHandle<()>, std::net::SocketAddr), ArchiveError> {
    let tls = match &h.certificate {
        None => None,
        Some(alias) => Some(coffer_archive::tls::acceptor(&archive.certs(), alias, "http.certificate")?),
    };
    let socket = tokio::net::TcpListener::bind(&h.listen).await.map_err(|e| {
        ArchiveError::Invalid(format!("cannot listen for HTTP on {}: {e} (http.listen, or --http)", h.listen))
    })?;
    let bound = socket.local_addr().map_err(|e| ArchiveError::Io("HTTP socket".into(), e))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let web = WebConfig {
        public_url: h.public_url.clone().unwrap_or_else(|| format!("{scheme}://{bound}")),
        https: tls.is_some(),
        session_idle_minutes: h.session_idle_minutes.max(1),
        session_max_hours: h.session_max_hours.max(1),
        lockout_after: h.lockout_after.max(1),
        lockout_minutes: h.lockout_minutes.max(1),
        journal_domain: archive.config.journal_domain.clone(),
        metrics_token: h.metrics_token.clone().filter(|t| !t.trim().is_empty()),
        max_connections: h.max_connections.max(1),
        max_connections_per_ip: h.max_connections_per_ip.max(1),
        max_connections_per_range: h.max_connections_per_range.max(1),
        header_timeout: Duration::from_secs(h.header_timeout_secs.max(1)),
        request_timeout: Duration::from_secs(h.request_timeout_secs.max(1)),
        max_upload_bytes: h.max_upload_mib.max(1).saturating_mul(1 << 20),
        smtp,
    };
    if let Some(token) = archive.identity().new_setup_token().await? {
        // A plain line the operator (and scripts) can read: the link works once, for a day.
        println!("console set-up link (creates the first administrator, once): {scheme}://{bound}/setup?token={token}");
        tracing::warn!(
            "no console account exists yet: open the set-up link printed above, or create the first administrator with `coffer user add admin --role administrator` (it reads the password from stdin)"
        );
    }
    let console = Console::new(archive, web, sources, listeners);
    tracing::info!(%bound, %scheme, "web console and API started");
    Ok((tokio::spawn(crate::serve(console, socket, tls, stopping)), bound))
}
