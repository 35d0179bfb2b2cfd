//! The SMTP listener on tokio: accepts connections within limits, runs a [`Session`] per
//! connection, upgrades to TLS on STARTTLS and answers the end of each message only after the
//! archive's durable commit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use coffer_archive::net::{Admission, Limits, Refusal};
use coffer_archive::sources::SourceState;
use coffer_archive::{ArchiveError, Origin, Pipeline, Source, Submission};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::session::{Delivery, Recipients, Resolved, Session, SessionConfig, Step, TlsPolicy, Transaction};

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// A name for status figures, e.g. "smtp".
    pub name: String,
    pub hostname: String,
    pub tls: TlsPolicy,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Connections from one IPv4 /24 or IPv6 /48, so one range cannot take every slot.
    pub max_connections_per_range: usize,
    pub max_connections_per_minute_per_ip: usize,
    /// RFC 5321 §4.5.3.2: 5 minutes for a command, 10 for the end of data. Each is a deadline for
    /// the whole command (or the whole message), not a pause between bytes: a client trickling a
    /// byte at a time does not keep its slot. A transaction (MAIL to the end of the message) may
    /// take both together at most.
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// Below this many free bytes in the data folder, deliveries get `452 4.3.1`.
    pub min_free_bytes: u64,
    pub data_dir: PathBuf,
}

/// The tenants' journal addresses (`journal-<token>@<domain>`), refreshed from the catalog.
pub struct JournalAddresses {
    domain: String,
    tokens: RwLock<HashMap<String, i64>>,
    /// Configured extra journal addresses (lowercased) and their tenants.
    aliases: HashMap<String, i64>,
    /// Tenants that accept reports only from some networks.
    networks: RwLock<HashMap<i64, Vec<ipnet::IpNet>>>,
}

impl JournalAddresses {
    pub fn new(domain: &str, aliases: HashMap<String, i64>) -> Arc<JournalAddresses> {
        Arc::new(JournalAddresses {
            domain: domain.to_ascii_lowercase(),
            tokens: RwLock::new(HashMap::new()),
            aliases,
            networks: RwLock::new(HashMap::new()),
        })
    }

    pub async fn refresh(&self, state: &SourceState) -> Result<(), ArchiveError> {
        let tenants = state.journal_tenants().await?;
        *self.tokens.write().unwrap() = tenants.iter().map(|(t, _)| (t.journal_token.clone(), t.id)).collect();
        let networks = tenants
            .into_iter()
            .filter(|(_, cidrs)| !cidrs.is_empty())
            .map(|(t, cidrs)| (t.id, cidrs.iter().filter_map(|c| c.parse().ok()).collect()))
            .collect();
        *self.networks.write().unwrap() = networks;
        Ok(())
    }

    /// Refreshes every few seconds, so a tenant added while serving gets mail soon.
    pub fn keep_fresh(self: &Arc<Self>, state: SourceState) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.refresh(&state).await {
                    tracing::warn!(error = %e, "could not refresh the journal addresses");
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    }
}

impl Recipients for JournalAddresses {
    fn resolve(&self, address: &str, client: IpAddr) -> Resolved {
        let address = address.trim().to_ascii_lowercase();
        let tenant = self.aliases.get(&address).copied().or_else(|| {
            address
                .rsplit_once('@')
                .filter(|(_, domain)| *domain == self.domain)
                .and_then(|(local, _)| local.strip_prefix("journal-"))
                .and_then(|token| self.tokens.read().unwrap().get(token).copied())
        });
        let Some(tenant) = tenant else { return Resolved::Unknown };
        match self.networks.read().unwrap().get(&tenant) {
            Some(nets) if !nets.is_empty() && !nets.iter().any(|n| n.contains(&client)) => Resolved::HostNotAllowed,
            _ => Resolved::Tenant(tenant),
        }
    }
}

/// Counters of one listener, flushed into the catalog's hourly buckets.
#[derive(Default)]
pub struct Stats {
    counters: Mutex<HashMap<(i64, String), i64>>,
    pub connections: AtomicU64,
}

impl Stats {
    pub fn add(&self, tenant: i64, what: &str, n: i64) {
        *self.counters.lock().unwrap().entry((tenant, what.to_owned())).or_default() += n;
    }

    /// Moves the counters into the catalog (called every few seconds and at shutdown).
    pub async fn flush(&self, state: &SourceState, listener: &str) {
        let taken: Vec<((i64, String), i64)> = self.counters.lock().unwrap().drain().collect();
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        for ((tenant, what), n) in taken {
            if let Err(e) = state.add_listener_figure(now, listener, tenant, &what, n).await {
                tracing::warn!(error = %e, "could not record listener figures");
            }
        }
    }
}

pub struct Listener {
    pub config: ListenerConfig,
    pub pipeline: Pipeline,
    pub addresses: Arc<JournalAddresses>,
    pub tls: Option<TlsAcceptor>,
    pub stats: Arc<Stats>,
}

struct Shared {
    config: ListenerConfig,
    pipeline: Pipeline,
    addresses: Arc<JournalAddresses>,
    tls: Option<TlsAcceptor>,
    stats: Arc<Stats>,
    admission: Arc<Admission>,
}

impl Listener {
    /// Accepts connections until `shutdown` turns true, closes the socket (and says so on
    /// `closed`, so the address can be bound again at once), then lets the sessions in flight
    /// finish their transaction (up to the data timeout) and returns.
    pub async fn serve(
        self,
        socket: TcpListener,
        mut shutdown: watch::Receiver<bool>,
        closed: tokio::sync::oneshot::Sender<()>,
    ) {
        let limits = Limits {
            per_ip: self.config.max_connections_per_ip,
            per_range: self.config.max_connections_per_range,
            per_minute_per_ip: self.config.max_connections_per_minute_per_ip,
        };
        let shared = Arc::new(Shared {
            config: self.config,
            pipeline: self.pipeline,
            addresses: self.addresses,
            tls: self.tls,
            admission: Admission::new(limits),
            stats: self.stats,
        });
        let slots = Arc::new(Semaphore::new(shared.config.max_connections));
        let mut sessions = tokio::task::JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.changed() => break,
                accepted = socket.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            let permit = slots.clone().try_acquire_owned();
            let shutdown = shutdown.clone();
            sessions.spawn(async move {
                let mut stream = stream;
                let Ok(_permit) = permit else {
                    let reply = stream.write_all(b"421 4.7.0 Too many connections, try again later\r\n");
                    let _ = tokio::time::timeout(Duration::from_secs(2), reply).await;
                    shared.stats.add(0, "reject:connections", 1);
                    return;
                };
                let _admitted = match shared.admission.admit(peer.ip()) {
                    Ok(a) => a,
                    Err(refusal) => {
                        let reply: &[u8] = match refusal {
                            Refusal::Rate => b"421 4.7.0 Connection rate limit reached, try again later\r\n",
                            _ => b"421 4.7.0 Too many connections from your address, try again later\r\n",
                        };
                        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(reply)).await;
                        shared.stats.add(0, refusal.figure(), 1);
                        return;
                    }
                };
                shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                shared.stats.add(0, "connections", 1);
                if let Err(e) = connection(&shared, stream, peer, shutdown).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(socket);
        let _ = closed.send(());
        while sessions.join_next().await.is_some() {}
    }
}

impl Shared {
    fn session_config(&self) -> SessionConfig {
        SessionConfig {
            hostname: self.config.hostname.clone(),
            max_message_bytes: self.config.max_message_bytes,
            max_recipients: self.config.max_recipients,
            tls: if self.tls.is_some() { self.config.tls } else { TlsPolicy::Off },
            max_errors: 10,
        }
    }

    /// Archives a message for every tenant it was addressed to; 250 only when all are durable.
    /// The body is in `spool` (on disk when large); it is read into memory only once the
    /// pipeline has reserved the memory it takes.
    async fn deliver(&self, t: Transaction, spool: Spool) -> Delivery {
        if free_bytes(&self.config.data_dir).is_some_and(|free| free < self.config.min_free_bytes) {
            self.stats.add(0, "reject:storage", 1);
            return Delivery::InsufficientStorage;
        }
        if self.pipeline.is_saturated() {
            self.stats.add(0, "reject:busy", 1);
            return Delivery::Busy;
        }
        let mut tenants: Vec<i64> = t.recipients.iter().map(|(_, tenant)| *tenant).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let size = spool.len();
        let mut reservation = match self.pipeline.reserve(size).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(bytes = size, error = %e, "delivery deferred");
                self.stats.add(0, "reject:memory", 1);
                return Delivery::InsufficientStorage;
            }
        };
        let data = match spool.into_bytes() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "the spooled message cannot be read back; delivery deferred");
                return Delivery::TemporaryFailure(format!("spool: {e}"));
            }
        };
        let mut ids = Vec::new();
        let last = tenants.len().saturating_sub(1);
        let mut data = Some(data);
        for (i, tenant) in tenants.into_iter().enumerate() {
            // The last tenant takes the bytes; earlier ones (rare: one report for several
            // tenants) get a copy.
            let raw = if i == last { data.take().unwrap_or_default() } else { data.clone().unwrap_or_default() };
            let bytes = raw.len() as i64;
            let reserved = match reservation.take() {
                Some(r) => r,
                None => match self.pipeline.reserve(raw.len()).await {
                    Ok(r) => r,
                    Err(_) => return Delivery::InsufficientStorage,
                },
            };
            let submission = Submission {
                tenant,
                source: Source::Smtp,
                raw,
                // The RCPTs are journal addresses, not recipients of the message: the report says who those were.
                envelope: Vec::new(),
                envelope_from: Some(t.mail_from.clone()).filter(|s| !s.is_empty()),
                placement: None,
                journal: true,
                origin: Origin {
                    peer: Some(t.client.to_string()),
                    tls: t.tls_version.clone().or_else(|| t.tls.then(|| "TLS".to_owned())),
                    rcpt_to: t.recipients.iter().map(|(a, _)| a.clone()).collect(),
                    helo: Some(t.helo.clone()).filter(|h| !h.is_empty()),
                    item: None,
                },
            };
            match self.pipeline.submit_reserved(submission, reserved).await {
                Ok(receipt) => {
                    self.stats.add(tenant, "messages", 1);
                    self.stats.add(tenant, "bytes", bytes);
                    if t.tls {
                        self.stats.add(tenant, "tls-messages", 1);
                    }
                    ids.push(receipt.id);
                }
                Err(e) => return self.refused(tenant, &e),
            }
        }
        Delivery::Stored { ids }
    }

    /// The one mapping from the archive's failures to SMTP: 5xx only for what this message can
    /// never be (too large); 452 for a full disk or a saturated archive; 451 for everything else,
    /// a fault of ours included (the message is fine, and the sender keeps it).
    fn refused(&self, tenant: i64, e: &ArchiveError) -> Delivery {
        match e {
            ArchiveError::TooLarge { .. } => {
                self.stats.add(tenant, "reject:size", 1);
                Delivery::TooLarge
            }
            e if e.is_storage_full() || matches!(e, ArchiveError::Saturated(_)) => {
                self.stats.add(tenant, "reject:storage", 1);
                Delivery::InsufficientStorage
            }
            e => {
                if e.class() == coffer_archive::Class::Fatal {
                    tracing::error!(error = %e, "delivery deferred: the archive needs an operator");
                } else {
                    tracing::warn!(error = %e, "delivery deferred");
                }
                self.stats.add(tenant, "errors", 1);
                Delivery::TemporaryFailure(e.to_string())
            }
        }
    }
}

async fn connection(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut session = Session::new(shared.session_config(), peer.ip(), false);
    let mut stream = stream;
    stream.write_all(session.greeting().as_bytes()).await?;
    match converse(shared, &mut stream, &mut session, shutdown.clone()).await? {
        End::Closed => Ok(()),
        End::StartTls => {
            let acceptor = shared.tls.clone().expect("STARTTLS is offered only with a certificate");
            let mut tls = match tokio::time::timeout(shared.config.command_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    shared.stats.add(0, "reject:tls-handshake", 1);
                    return Ok(());
                }
                Err(_) => return Ok(()),
            };
            session.tls_started();
            session.set_tls_version(tls.get_ref().1.protocol_version().map(|v| format!("{v:?}")));
            shared.stats.add(0, "tls-connections", 1);
            match converse(shared, &mut tls, &mut session, shutdown).await? {
                End::Closed | End::StartTls => Ok(()),
            }
        }
    }
}

enum End {
    Closed,
    StartTls,
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    stream: &mut S,
    session: &mut Session,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<End> {
    let mut buf = vec![0u8; 64 * 1024];
    let config = &shared.config;
    let mut spool = Spool::new(config.data_dir.join("spool"));
    let mut phase_deadline = Instant::now() + config.command_timeout;
    let mut transaction_deadline: Option<Instant> = None;
    loop {
        loop {
            let step = session.step(&*shared.addresses);
            for reason in session.rejects.drain(..) {
                shared.stats.add(0, &format!("reject:{reason}"), 1);
            }
            // The body so far goes to the spool (to disk past the first MiB), not into memory.
            if matches!(step, Step::Deliver(_)) {
                // The rest of the body is in the transaction; what came before is in the spool.
            } else if session.in_transaction() && !session.body_refused() {
                spool.write(session.take_body())?;
            } else if spool.len() > 0 {
                // The transaction ended without a message (refused, reset): its bytes go.
                spool = Spool::new(config.data_dir.join("spool"));
            }
            if flush(stream, session, config.command_timeout).await? {
                // A command (or chunk) was answered: the next one gets its own deadline.
                let phase = if session.in_data() { config.data_timeout } else { config.command_timeout };
                phase_deadline = Instant::now() + phase;
            }
            match step {
                Step::NeedMore => break,
                Step::Deliver(mut transaction) => {
                    spool.write(std::mem::take(&mut transaction.data))?;
                    let body = std::mem::replace(&mut spool, Spool::new(config.data_dir.join("spool")));
                    let delivery = shared.deliver(transaction, body).await;
                    if session.delivered(delivery) == Step::Close {
                        flush(stream, session, config.command_timeout).await?;
                        return Ok(End::Closed);
                    }
                }
                Step::StartTls => return Ok(End::StartTls),
                Step::Close => {
                    let _ = stream.shutdown().await;
                    return Ok(End::Closed);
                }
            }
        }
        transaction_deadline = match (session.in_transaction(), transaction_deadline) {
            (false, _) => None,
            (true, None) => Some(Instant::now() + config.command_timeout + config.data_timeout),
            (true, kept) => kept,
        };
        let deadline = transaction_deadline.map_or(phase_deadline, |t| t.min(phase_deadline));
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)) => r,
            _ = shutdown.changed(), if !session.in_data() => {
                write_briefly(stream, b"421 4.3.2 Service shutting down, try again later\r\n").await;
                return Ok(End::Closed);
            }
        };
        match read {
            Err(_) => {
                write_briefly(stream, b"421 4.4.2 Timeout, closing connection\r\n").await;
                return Ok(End::Closed);
            }
            // The client went away; a message it was sending is dropped whole.
            Ok(Ok(0)) => return Ok(End::Closed),
            Ok(Ok(n)) => session.push(&buf[..n]),
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// A message body as it arrives: in memory up to [`IN_MEMORY`], then in an unnamed file in the
/// data folder's `spool` (gone when dropped, even after a crash), so messages being received take
/// no memory to speak of however large they are or however many arrive at once.
struct Spool {
    dir: PathBuf,
    memory: Vec<u8>,
    file: Option<std::fs::File>,
    len: usize,
}

const IN_MEMORY: usize = 1 << 20;

impl Spool {
    fn new(dir: PathBuf) -> Spool {
        Spool { dir, memory: Vec::new(), file: None, len: 0 }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn write(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        use std::io::Write;
        if bytes.is_empty() {
            return Ok(());
        }
        self.len += bytes.len();
        if self.file.is_none() && self.memory.len() + bytes.len() <= IN_MEMORY {
            if self.memory.is_empty() {
                self.memory = bytes;
            } else {
                self.memory.extend_from_slice(&bytes);
            }
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                std::fs::create_dir_all(&self.dir)?;
                let mut f = tempfile::tempfile_in(&self.dir)?;
                f.write_all(&std::mem::take(&mut self.memory))?;
                self.file.insert(f)
            }
        };
        file.write_all(&bytes)
    }

    fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek};
        match self.file {
            None => Ok(self.memory),
            Some(mut f) => {
                f.seek(std::io::SeekFrom::Start(0))?;
                let mut out = Vec::with_capacity(self.len);
                f.read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }
}

/// A last line to a client that may not be reading: never waits long for it.
async fn write_briefly<S: AsyncWrite + Unpin>(stream: &mut S, line: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(line)).await;
}

/// Writes the session's replies; true when there were any. A client that does not read its
/// replies is given up on after `timeout` (the command timeout).
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    timeout: Duration,
) -> std::io::Result<bool> {
    if session.replies.is_empty() {
        return Ok(false);
    }
    let replies = std::mem::take(&mut session.replies);
    let write = async {
        stream.write_all(&replies).await?;
        stream.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(r) => r.map(|_| true),
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client does not read its replies")),
    }
}

/// Free bytes on the filesystem holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail * stat.f_frsize)
}
