//! Coffer's IMAP poller: archives a mailbox over IMAP, incrementally and without loss.
//!
//! Per folder it keeps `UIDVALIDITY:UID` of the highest archived message in the catalog's
//! `sync_state`. A poll fetches the messages above it, hands each to the ingest pipeline and waits
//! for the durable receipts; only then does it delete (or move) them in journal and bounce modes and
//! advance the mark. A crash anywhere before that fetches the same messages again next time, and
//! dedup absorbs them; a changed UIDVALIDITY re-reads the folder, with the same effect.

use std::sync::Arc;

use async_imap::Client;
use coffer_archive::sources::SourceState;
use coffer_archive::{Origin, Pipeline, Source, Submission};
use futures::TryStreamExt;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

pub use coffer_archive::connections::{AuthMethod, ImapConfig, Mode, Security};

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with {0} failed: {1} (check the host name, the certificate and ca_file)")]
    Tls(String, String),
    #[error("the server refused the login of {0}: {1} (check username and password)")]
    Auth(String, String),
    #[error(
        "the server refused the token for {0}: {1} (is the token valid, and may the app read this mailbox? Office 365 needs IMAP.AccessAsApp and a mailbox permission)"
    )]
    TokenRefused(String, String),
    #[error("cannot get a token from {0}: {1}")]
    Token(String, String),
    #[error("IMAP error: {0}")]
    Protocol(#[from] async_imap::error::Error),
    #[error(transparent)]
    Archive(#[from] coffer_archive::ArchiveError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PollReport {
    pub fetched: usize,
    pub archived: usize,
    pub duplicates: usize,
    pub removed: usize,
    /// Messages the archive refused for good (too large, say): (folder, UID, why). They stay on
    /// the server, untouched, and polling goes on past them.
    pub refused: Vec<(String, u32, String)>,
}

/// Gets an access token some other way (blocking; e.g. a Microsoft 365 connection's certificate).
pub type TokenSource = std::sync::Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

pub struct Poller {
    pub config: ImapConfig,
    pub tenant: i64,
    pub pipeline: Pipeline,
    pub state: SourceState,
    /// When set, XOAUTH2/OAUTHBEARER tokens come from here instead of `token_url`.
    pub token_source: Option<TokenSource>,
    token: tokio::sync::Mutex<Option<(String, std::time::Instant)>>,
    /// While a poll reads a folder: the folder, and how many of its messages above the cursor
    /// are still on the server.
    backlog: std::sync::Mutex<Option<(String, usize)>>,
}

impl Poller {
    pub fn new(config: ImapConfig, tenant: i64, pipeline: Pipeline, state: SourceState) -> Poller {
        Poller {
            config,
            tenant,
            pipeline,
            state,
            token_source: None,
            token: Default::default(),
            backlog: Default::default(),
        }
    }

    /// What the poll in progress still has to read: the folder and its messages waiting on the
    /// server; None between polls.
    pub fn backlog(&self) -> Option<(String, usize)> {
        self.backlog.lock().unwrap().clone()
    }
}

/// Answers the server's SASL challenge once with the prepared response.
struct Sasl(Option<String>);

impl async_imap::Authenticator for Sasl {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        self.0.take().unwrap_or_default()
    }
}

/// Fault injection for the crash tests: `COFFER_CRASH_AT=<point>` ends the process on the spot,
/// as a kill -9 would, at one of the points where losing or doubling mail could happen.
use coffer_archive::crash_point;

#[derive(Clone, Copy)]
enum Visit {
    Poll,
    Test,
    Idle(std::time::Duration),
}

#[derive(Default)]
struct Visited {
    report: PollReport,
    folders: Vec<(String, u32)>,
}

/// Messages fetched and archived per round trip.
const BATCH: u32 = 200;

impl Poller {
    /// One pass over every folder. Its figures (and failures) go into the status figures as
    /// listener `imap:<name>`.
    pub async fn poll_once(&self) -> Result<PollReport, ImapError> {
        let result = self.visit(Visit::Poll).await.map(|v| v.report);
        *self.backlog.lock().unwrap() = None;
        let figures: &[(&str, usize)] = match &result {
            Ok(r) => &[
                ("fetched", r.fetched),
                ("messages", r.archived),
                ("duplicates", r.duplicates),
                ("removed", r.removed),
                ("refused", r.refused.len()),
            ],
            Err(_) => &[("errors", 1)],
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let listener = format!("imap:{}", self.config.name);
        for (figure, n) in figures.iter().filter(|(_, n)| *n > 0) {
            if let Err(e) = self.state.add_listener_figure(now, &listener, self.tenant, figure, *n as i64).await {
                tracing::warn!(error = %e, "could not record IMAP figures");
            }
        }
        result
    }

    /// Connects, verifies TLS, logs in and lists the folders with their message counts, archiving
    /// nothing: what `coffer imap test` shows.
    pub async fn test(&self) -> Result<Vec<(String, u32)>, ImapError> {
        Ok(self.visit(Visit::Test).await?.folders)
    }

    /// Waits, in IMAP IDLE on the first folder, until the server announces a change or `timeout`
    /// passes: a wake-up for the next poll (which runs at its interval anyway).
    pub async fn wait_for_mail(&self, timeout: std::time::Duration) -> Result<(), ImapError> {
        self.visit(Visit::Idle(timeout)).await.map(|_| ())
    }

    async fn visit(&self, visit: Visit) -> Result<Visited, ImapError> {
        let c = &self.config;
        let address = format!("{}:{}", c.host, c.port);
        let tcp = TcpStream::connect(&address).await.map_err(|e| ImapError::Connect(address.clone(), e))?;
        match c.security {
            Security::None => self.session(tcp, false, visit).await,
            Security::Imaps => {
                let tls = self.tls(tcp).await?;
                self.session(tls, false, visit).await
            }
            Security::Starttls => {
                let mut client = Client::new(tcp);
                client.read_response().await.map_err(|e| ImapError::Connect(address.clone(), e))?;
                client.run_command_and_check_ok("STARTTLS", None).await?;
                let tls = self.tls(client.into_inner()).await?;
                self.session(tls, true, visit).await
            }
        }
    }

    /// A token from the configured endpoint (client-credentials grant), reused until a minute
    /// before it expires.
    async fn token(&self) -> Result<String, ImapError> {
        if let Some(source) = self.token_source.clone() {
            let name = self.config.name.clone();
            return tokio::task::spawn_blocking(move || source())
                .await
                .map_err(|e| ImapError::Token(name.clone(), e.to_string()))?
                .map_err(|e| ImapError::Token(name, e));
        }
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && std::time::Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let c = self.config.clone();
        let url = c.token_url.clone().ok_or_else(|| {
            ImapError::Token(c.name.clone(), "token_url is not set (needed for auth = xoauth2 or oauthbearer)".into())
        })?;
        let fail = |e: String| ImapError::Token(url.clone(), e);
        let answer = tokio::task::spawn_blocking(move || {
            let mut form = vec![("grant_type", "client_credentials".to_owned())];
            for (k, v) in [("client_id", &c.client_id), ("client_secret", &c.client_secret), ("scope", &c.scope)] {
                if let Some(v) = v {
                    form.push((k, v.clone()));
                }
            }
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ureq::post(c.token_url.as_deref().unwrap_or_default())
                .send_form(&form)
                .map_err(|e| e.to_string())?
                .into_json::<serde_json::Value>()
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(fail)?;
        let token =
            answer["access_token"].as_str().ok_or_else(|| fail(format!("no access_token in {answer}")))?.to_owned();
        let lifetime = answer["expires_in"].as_u64().unwrap_or(3600).saturating_sub(60).max(1);
        *cached = Some((token.clone(), std::time::Instant::now() + std::time::Duration::from_secs(lifetime)));
        Ok(token)
    }

    async fn tls(&self, tcp: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ImapError> {
        let host = self.config.host.clone();
        let fail = |e: String| ImapError::Tls(host.clone(), e);
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        match &self.config.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
                for cert in rustls_pemfile::certs(&mut &pem[..]) {
                    roots.add(cert.map_err(|e| fail(e.to_string()))?).map_err(|e| fail(e.to_string()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(host.clone()).map_err(|e| fail(e.to_string()))?;
        TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| fail(e.to_string()))
    }

    async fn session<T>(&self, stream: T, greeted: bool, visit: Visit) -> Result<Visited, ImapError>
    where
        T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
    {
        let c = &self.config;
        let mut client = Client::new(stream);
        if !greeted {
            client.read_response().await.map_err(|e| ImapError::Connect(c.host.clone(), e))?;
        }
        let mut session = match c.auth {
            AuthMethod::Password => client
                .login(&c.username, &c.password)
                .await
                .map_err(|(e, _)| ImapError::Auth(c.username.clone(), e.to_string()))?,
            method => {
                let token = self.token().await?;
                let (mechanism, response) = match method {
                    AuthMethod::Xoauth2 => ("XOAUTH2", format!("user={}\x01auth=Bearer {token}\x01\x01", c.username)),
                    _ => (
                        "OAUTHBEARER",
                        format!(
                            "n,a={},\x01host={}\x01port={}\x01auth=Bearer {token}\x01\x01",
                            c.username, c.host, c.port
                        ),
                    ),
                };
                client
                    .authenticate(mechanism, Sasl(Some(response)))
                    .await
                    .map_err(|(e, _)| ImapError::TokenRefused(c.username.clone(), e.to_string()))?
            }
        };
        let mut visited = Visited::default();
        match visit {
            Visit::Poll => {
                let folders = if c.folders.is_empty() { vec!["INBOX".to_owned()] } else { c.folders.clone() };
                for folder in &folders {
                    self.folder(&mut session, folder, &mut visited.report).await?;
                }
            }
            Visit::Idle(timeout) => {
                session.examine(c.folders.first().map_or("INBOX", String::as_str)).await?;
                let mut idle = session.idle();
                idle.init().await?;
                let (wait, stop) = idle.wait_with_timeout(timeout);
                wait.await?;
                drop(stop);
                session = idle.done().await?;
            }
            Visit::Test => {
                let names: Vec<String> =
                    session.list(None, Some("*")).await?.map_ok(|n| n.name().to_owned()).try_collect().await?;
                for name in names {
                    let exists = session.examine(&name).await.map(|m| m.exists).unwrap_or(0);
                    visited.folders.push((name, exists));
                }
            }
        }
        session.logout().await?;
        Ok(visited)
    }

    async fn folder<T>(
        &self,
        session: &mut async_imap::Session<T>,
        folder: &str,
        report: &mut PollReport,
    ) -> Result<(), ImapError>
    where
        T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
    {
        let c = &self.config;
        let mailbox = session.select(folder).await?;
        let validity = mailbox.uid_validity.unwrap_or(0);
        let uid_next = mailbox.uid_next.unwrap_or(u32::MAX);
        let mut last = match self.state.cursor(&c.name, folder).await? {
            Some(cursor) => match cursor.split_once(':') {
                // Another UIDVALIDITY: the folder was recreated; read it all again (dedup absorbs).
                Some((v, uid)) if v == validity.to_string() => uid.parse().unwrap_or(0),
                _ => 0,
            },
            None => 0,
        };
        // How many wait above the cursor (only for the console's backlog; the loop below is
        // driven by UIDs alone).
        let waiting = match last + 1 < uid_next {
            true => session.uid_search(format!("UID {}:*", last + 1)).await?.into_iter().filter(|u| *u > last).count(),
            false => 0,
        };
        *self.backlog.lock().unwrap() = Some((folder.to_owned(), waiting));
        while last + 1 < uid_next {
            let upper = last.saturating_add(BATCH).min(uid_next.saturating_sub(1));
            let fetched: Vec<(u32, Vec<u8>)> = session
                .uid_fetch(format!("{}:{}", last + 1, upper), "(UID BODY.PEEK[])")
                .await?
                .try_filter_map(|f| async move { Ok(f.uid.zip(f.body().map(<[u8]>::to_vec))) })
                .try_collect()
                .await?;
            // "n:m" can answer with a message below n when none is in range; keep the new ones.
            let fetched: Vec<(u32, Vec<u8>)> = fetched.into_iter().filter(|(uid, _)| *uid > last).collect();
            crash_point("imap-after-fetch");
            report.fetched += fetched.len();
            let mut commits = tokio::task::JoinSet::new();
            for (uid, raw) in &fetched {
                let submission = Submission {
                    tenant: self.tenant,
                    source: Source::Imap,
                    raw: raw.clone(),
                    envelope: Vec::new(),
                    envelope_from: None,
                    placement: (c.mode == Mode::Mailbox)
                        .then(|| (c.mailbox.clone().unwrap_or_else(|| c.username.clone()), folder.to_owned())),
                    journal: c.mode != Mode::Mailbox,
                    origin: Origin {
                        item: Some((c.name.clone(), format!("{validity}:{uid}/{folder}"))),
                        ..Origin::default()
                    },
                };
                let pipeline = self.pipeline.clone();
                let uid = *uid;
                commits.spawn(async move { (uid, pipeline.submit(submission).await) });
            }
            let mut durable = Vec::new();
            while let Some(done) = commits.join_next().await {
                let (uid, result) = done.map_err(|e| coffer_archive::ArchiveError::Internal(e.to_string()))?;
                let receipt = match result {
                    Ok(receipt) => receipt,
                    // This one message can never be archived: record it, leave it on the server,
                    // go on. (A transient failure fails the batch, which is fetched again.)
                    Err(e) if e.is_permanent_for_message() => {
                        tracing::warn!(connection = %c.name, folder, uid, error = %e, "message refused; left on the server");
                        report.refused.push((folder.to_owned(), uid, e.to_string()));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                if receipt.duplicate {
                    report.duplicates += 1;
                } else {
                    report.archived += 1;
                }
                durable.push(uid);
            }
            crash_point("imap-after-commit");
            // Everything fetched is durable now: only from here may it leave the server.
            if !durable.is_empty() && c.mode != Mode::Mailbox {
                durable.sort_unstable();
                let set: Vec<String> = durable.iter().map(u32::to_string).collect();
                let set = set.join(",");
                match c.after_archive.strip_prefix("move:") {
                    Some(target) => session.uid_mv(&set, target).await?,
                    None => {
                        session.uid_store(&set, "+FLAGS.SILENT (\\Deleted)").await?.try_collect::<Vec<_>>().await?;
                        session.uid_expunge(&set).await?.try_collect::<Vec<_>>().await?;
                    }
                }
                report.removed += durable.len();
            }
            last = upper.max(fetched.iter().map(|(uid, _)| *uid).max().unwrap_or(0));
            self.state.set_cursor(&c.name, folder, &format!("{validity}:{last}")).await?;
            if let Some((_, n)) = self.backlog.lock().unwrap().as_mut() {
                *n = n.saturating_sub(fetched.len());
            }
        }
        Ok(())
    }
}
