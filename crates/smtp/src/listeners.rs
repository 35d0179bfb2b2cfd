//! The journaling listeners of a server: each from its settings in the catalog
//! (`coffer_archive::listeners`, seeded from `[smtp]` in coffer.toml), started, replaced and
//! stopped live through [`ListenerSet`] (the console's `ListenerControl`); the TLS certificate (a
//! self-signed one made when a listener's alias has none), journal addresses kept fresh from the
//! catalog, and each listener's figures flushed to the catalog under its name.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_archive::listeners::Pending;
use coffer_archive::listeners::{ListenerControl, ListenerSettings};
use coffer_archive::{Archive, ArchiveError, Pipeline};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::server::{JournalAddresses, Listener, ListenerConfig, Stats};
use crate::session::TlsPolicy;

/// The SMTP journaling listeners' settings in coffer.toml: the first listeners (seeds, see
/// [`SmtpSettings::seeds`]) and what every listener shares.
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
    /// The listeners this file defines: `smtp` on `listen`, `smtp-2`, `smtp-3`… on `also_listen`.
    pub fn seeds(&self) -> Vec<ListenerSettings> {
        std::iter::once(&self.listen)
            .chain(&self.also_listen)
            .enumerate()
            .map(|(i, listen)| ListenerSettings {
                name: if i == 0 { "smtp".into() } else { format!("smtp-{}", i + 1) },
                enabled: self.enabled,
                listen: listen.clone(),
                hostname: self.hostname.clone(),
                tls: format!("{:?}", self.tls).to_lowercase(),
                certificate: self.certificate.clone(),
                max_connections: self.max_connections,
                max_connections_per_ip: self.max_connections_per_ip,
                max_recipients: self.max_recipients,
            })
            .collect()
    }

    /// What every listener shares, as the Listeners page shows it.
    pub fn describe_shared(&self, max_message_bytes: u64) -> Vec<(String, String)> {
        vec![
            (
                "journal address aliases".into(),
                match self.aliases.is_empty() {
                    true => "none".into(),
                    false => self.aliases.iter().map(|(a, t)| format!("{a} → {t}")).collect::<Vec<_>>().join(", "),
                },
            ),
            ("max message size".into(), format!("{} MB", max_message_bytes >> 20)),
            ("connections per network range".into(), self.max_connections_per_range.to_string()),
            ("connections per minute per address".into(), self.max_connections_per_minute_per_ip.to_string()),
            (
                "command and data timeouts".into(),
                format!("{} s, {} s", self.command_timeout_secs, self.data_timeout_secs),
            ),
            ("minimum free disk".into(), format!("{} MB", self.min_free_bytes >> 20)),
        ]
    }
}

/// A listener as it runs here.
struct Running {
    /// `listening on ADDR`, `stopped`, or why it failed.
    state: String,
    bound: Option<std::net::SocketAddr>,
    stop: Option<watch::Sender<bool>>,
    /// Fires when the listener's socket is closed.
    closed: Option<tokio::sync::oneshot::Receiver<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    stats: Arc<Stats>,
}

/// The listeners of a running server, changed live.
pub struct ListenerSet {
    archive: Arc<Archive>,
    shared: SmtpSettings,
    pipeline: Pipeline,
    addresses: Arc<JournalAddresses>,
    state: coffer_archive::sources::SourceState,
    running: Mutex<BTreeMap<String, Running>>,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Starts every listener of `listeners` (in their order) until [`ListenerSet::finish`]; one that
/// cannot start is listed with why, and the others run.
pub async fn start(
    archive: Arc<Archive>,
    shared: &SmtpSettings,
    listeners: &[ListenerSettings],
    pipeline: Pipeline,
) -> Result<Arc<ListenerSet>, ArchiveError> {
    let mut aliases = HashMap::new();
    for (address, tenant) in &shared.aliases {
        let t = archive
            .tenant(Some(tenant))
            .await
            .map_err(|e| ArchiveError::Invalid(format!("smtp.aliases: {address} names tenant {tenant:?}: {e}")))?;
        aliases.insert(address.to_ascii_lowercase(), t.id);
    }
    let state = archive.source_state();
    let addresses = JournalAddresses::new(&archive.config.journal_domain, aliases);
    addresses.refresh(&state).await?;
    addresses.keep_fresh(state.clone());
    let set = Arc::new(ListenerSet {
        archive,
        shared: shared.clone(),
        pipeline,
        addresses,
        state,
        running: Mutex::new(BTreeMap::new()),
        flusher: Mutex::new(None),
    });
    for l in listeners {
        if let Err(e) = set.run(l.clone()).await {
            tracing::error!(listener = %l.name, error = %e, "SMTP listener not started");
        }
    }
    let flusher = {
        let set = Arc::downgrade(&set);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let Some(set) = set.upgrade() else { return };
                set.flush().await;
            }
        })
    };
    *set.flusher.lock().unwrap() = Some(flusher);
    Ok(set)
}

impl ListenerSet {
    /// The address the listener of that name is bound to.
    pub fn bound(&self, name: &str) -> Option<std::net::SocketAddr> {
        self.running.lock().unwrap().get(name).and_then(|r| r.bound)
    }

    fn config(&self, l: &ListenerSettings) -> ListenerConfig {
        let s = &self.shared;
        ListenerConfig {
            name: l.name.clone(),
            hostname: l.hostname.clone().unwrap_or_else(|| self.archive.config.journal_domain.clone()),
            tls: tls_policy(&l.tls),
            max_message_bytes: self.archive.config.max_message_bytes as usize,
            max_recipients: l.max_recipients,
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
            max_connections_per_range: s.max_connections_per_range,
            max_connections_per_minute_per_ip: s.max_connections_per_minute_per_ip,
            command_timeout: Duration::from_secs(s.command_timeout_secs),
            data_timeout: Duration::from_secs(s.data_timeout_secs),
            min_free_bytes: s.min_free_bytes,
            data_dir: self.archive.config.data_dir.clone(),
        }
    }

    /// The STARTTLS acceptor of a listener; a self-signed certificate is made for an alias that
    /// has none yet.
    fn tls(&self, l: &ListenerSettings, hostname: &str) -> Result<Option<TlsAcceptor>, ArchiveError> {
        if l.tls == "off" {
            return Ok(None);
        }
        let certs = self.archive.certs();
        if certs.certificate_pem(&l.certificate).is_err() {
            let subject = coffer_archive::certs::Subject { common_name: hostname.to_owned(), ..Default::default() };
            let info = certs.generate(&l.certificate, &subject)?;
            tracing::warn!(alias = %info.alias, cn = %hostname, "no certificate for SMTP: generated a self-signed one (import a real one with `coffer cert import`)");
        }
        Ok(Some(coffer_archive::tls::acceptor(&certs, &l.certificate, "the listener's certificate")?))
    }

    /// Binds and serves `l` in place of the listener of its name. A new address is bound before
    /// the old listener lets go; the same address after (transactions in flight finish either
    /// way). A new address that cannot be bound leaves the old listener running; the same
    /// address taken by something else meanwhile leaves it failed, with why, until it is saved
    /// again or the server restarts.
    async fn run(&self, l: ListenerSettings) -> Result<String, ArchiveError> {
        let config = self.config(&l);
        let old_bound = self.running.lock().unwrap().get(&l.name).and_then(|r| r.bound);
        let same_address = old_bound.is_some_and(|b| l.listen.parse() == Ok(b));
        if !l.enabled {
            self.stop_running(&l.name).await;
            self.running.lock().unwrap().insert(l.name.clone(), Running::idle("stopped"));
            return Ok("stopped: it accepts no connections until it is enabled".into());
        }
        let tls = self.tls(&l, &config.hostname)?;
        if same_address {
            self.stop_running(&l.name).await;
        }
        let socket = match tokio::net::TcpListener::bind(&l.listen).await {
            Ok(s) => s,
            Err(e) => {
                let why = format!(
                    "listen {}: cannot listen there: {e} (port 25 needs root or CAP_NET_BIND_SERVICE; see README)",
                    l.listen
                );
                self.running.lock().unwrap().entry(l.name.clone()).or_insert_with(|| Running::idle("")).state =
                    format!("failed: {why}");
                return Err(ArchiveError::Invalid(why));
            }
        };
        let bound = socket.local_addr().map_err(|e| ArchiveError::Io("SMTP socket".into(), e))?;
        if !same_address {
            self.stop_running(&l.name).await;
        }
        // Sent when this listener is replaced or removed, or the server stops (`finish`).
        let (stop, stopped) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        let listener = Listener {
            config,
            pipeline: self.pipeline.clone(),
            addresses: self.addresses.clone(),
            tls,
            stats: stats.clone(),
        };
        let (closed_tx, closed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(listener.serve(socket, stopped, closed_tx));
        tracing::info!(listener = %l.name, %bound, tls = %l.tls, "SMTP journaling listener started");
        self.running.lock().unwrap().insert(
            l.name.clone(),
            Running {
                state: format!("listening on {bound}"),
                bound: Some(bound),
                stop: Some(stop),
                closed: Some(closed),
                task: Some(task),
                stats,
            },
        );
        Ok(format!("listening on {bound}"))
    }

    /// Stops the listener of that name and waits until its socket is closed (the sessions in
    /// flight go on), then records its figures.
    async fn stop_running(&self, name: &str) {
        let taken = self.running.lock().unwrap().remove(name);
        if let Some(r) = taken {
            if let Some(stop) = r.stop {
                let _ = stop.send(true);
            }
            if let Some(closed) = r.closed {
                let _ = tokio::time::timeout(Duration::from_secs(10), closed).await;
            }
            r.stats.flush(&self.state, name).await;
        }
    }

    async fn flush(&self) {
        let all: Vec<(String, Arc<Stats>)> =
            self.running.lock().unwrap().iter().map(|(n, r)| (n.clone(), r.stats.clone())).collect();
        for (name, stats) in all {
            stats.flush(&self.state, &name).await;
        }
    }

    /// At shutdown: stops every listener (no new connections), lets the transactions in flight
    /// finish (up to the data timeout) and records the last figures.
    pub async fn finish(&self) {
        let tasks: Vec<_> = {
            let mut running = self.running.lock().unwrap();
            for r in running.values() {
                if let Some(stop) = &r.stop {
                    let _ = stop.send(true);
                }
            }
            running.values_mut().filter_map(|r| r.task.take()).collect()
        };
        let wait = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(self.shared.data_timeout_secs), wait).await;
        if let Some(f) = self.flusher.lock().unwrap().take() {
            f.abort();
        }
        self.flush().await;
    }
}

impl Running {
    fn idle(state: &str) -> Running {
        Running {
            state: state.into(),
            bound: None,
            stop: None,
            closed: None,
            task: None,
            stats: Arc::new(Stats::default()),
        }
    }
}

fn tls_policy(s: &str) -> TlsPolicy {
    match s {
        "off" => TlsPolicy::Off,
        "require" => TlsPolicy::Require,
        _ => TlsPolicy::Offer,
    }
}

impl ListenerControl for ListenerSet {
    fn state(&self, name: &str) -> Option<String> {
        Some(self.running.lock().unwrap().get(name).map(|r| r.state.clone()).unwrap_or_else(|| "not started".into()))
    }

    fn apply(&self, settings: ListenerSettings) -> Pending<'_, Result<String, ArchiveError>> {
        Box::pin(self.run(settings))
    }

    fn remove<'a>(&'a self, name: &'a str) -> Pending<'a, ()> {
        Box::pin(self.stop_running(name))
    }
}
