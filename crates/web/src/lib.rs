//! Coffer's web console and REST API, on one HTTP listener.
//!
//! - Pages are rendered on the server (minijinja templates embedded in the binary) with a few lines
//!   of JavaScript; charts are SVG drawn here, so building Coffer needs no Node.js.
//! - `/api/v1` answers JSON for scripts (API keys) and is described by `/api/v1/openapi.json`.
//! - Sign-in: local accounts (argon2) on the sign-on form, which always works, and OpenID Connect
//!   (any provider, or Microsoft Entra ID) with roles assigned from the identity's claims.
//! - Every read goes through the archive service with the signed-in user's [`Actor`], so what a
//!   user may see is decided there, the same for console, API and CLI.
//!
//! Data flows one way: request → [`auth`] (who is asking, CSRF) → a page or API handler → the
//! archive service.

pub mod api;
pub mod auth;
mod charts;
mod connections;
mod directory;
mod error;
mod governance;
mod governance_pages;
mod imports;
mod listener;
mod listeners;
mod manifest;
mod oidc;
mod pages;
mod render;
mod security;
mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use coffer_archive::Archive;
use coffer_archive::listeners::ListenerControl;
use coffer_archive::service::Actor;
use coffer_archive::sources::SourceControl;

pub use auth::{Role, hash_password, new_api_key};
pub use coffer_archive::listeners::NoListeners;
pub use coffer_archive::sources::NoSources;
pub use error::WebError;
pub use listener::{HttpSettings, start};
pub use settings::{LoginSettings, OidcSettings};

/// What `coffer.toml` says about the console.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The address users reach the console at (e.g. `https://archive.contoso.com`); single sign-on
    /// redirect URIs are made from it. Default: the listen address.
    pub public_url: String,
    pub https: bool,
    pub session_idle_minutes: u64,
    pub session_max_hours: u64,
    /// Failed sign-ins in a row before an account is locked, and for how long.
    pub lockout_after: i64,
    pub lockout_minutes: i64,
    pub journal_domain: String,
    /// What every SMTP listener shares, as name → value, for the Listeners page.
    pub smtp: Vec<(String, String)>,
    /// `/metrics` answers a request bearing this token (a Prometheus scraper), or an administrator
    /// of the default tenant; without a token, only the latter. It names every tenant.
    pub metrics_token: Option<String>,
    /// Open connections at once: in all, from one address, from one IPv4 /24 or IPv6 /48.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_range: usize,
    /// A request's header must arrive within this; it is also how long a kept-alive connection
    /// may sit idle.
    pub header_timeout: Duration,
    /// A request must be answered (response headers sent) within this.
    pub request_timeout: Duration,
    /// Largest file an import takes from the console or the API.
    pub max_upload_bytes: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            public_url: "http://127.0.0.1:8090".into(),
            https: false,
            session_idle_minutes: 30,
            session_max_hours: 12,
            lockout_after: 5,
            lockout_minutes: 15,
            journal_domain: "archive.localhost".into(),
            smtp: Vec::new(),
            metrics_token: None,
            max_connections: 1000,
            max_connections_per_ip: 100,
            max_connections_per_range: 400,
            header_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(600),
            max_upload_bytes: 2 << 30,
        }
    }
}

/// A connection's job: `running`, `waiting` (for its next run), `backing off` (after failures),
/// `stopped`, `on demand` (runs when started), `not started` (with why) or `disabled`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct JobState {
    pub state: String,
    pub runs: u64,
    /// Failed runs since the last success.
    pub failures: u32,
    /// RFC 3339.
    pub last_run: Option<String>,
    pub last_success: Option<String>,
    pub next_run: Option<String>,
    pub last_error: Option<String>,
    pub progress: String,
    /// While a run reads: what still waits at the source, in words.
    pub backlog: Option<String>,
}

impl From<coffer_archive::sources::JobState> for JobState {
    fn from(j: coffer_archive::sources::JobState) -> Self {
        let at = |t: Option<i64>| t.map(coffer_archive::service::rfc3339);
        JobState {
            state: j.state,
            runs: j.runs,
            failures: j.failures,
            last_run: at(j.last_run),
            last_success: at(j.last_success),
            next_run: at(j.next_run),
            last_error: j.last_error,
            progress: j.progress,
            backlog: j.backlog,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MailboxStatus {
    pub mailbox: String,
    /// `importing`, `synced`, `no mailbox` (the user has no Exchange Online mailbox) or `failed`.
    pub state: String,
    pub folders: usize,
    pub archived: usize,
    pub duplicates: usize,
    pub events: usize,
    pub contacts: usize,
    /// RFC 3339.
    pub last_sync: Option<String>,
    pub last_error: Option<String>,
}

impl From<coffer_archive::sources::MailboxStatus> for MailboxStatus {
    fn from(m: coffer_archive::sources::MailboxStatus) -> Self {
        let coffer_archive::sources::MailboxStatus {
            mailbox,
            state,
            folders,
            archived,
            duplicates,
            events,
            contacts,
            last_sync,
            last_error,
        } = m;
        MailboxStatus { mailbox, state, folders, archived, duplicates, events, contacts, last_sync, last_error }
    }
}

pub struct Console {
    pub archive: Arc<Archive>,
    pub config: WebConfig,
    /// The source supervisor, as far as the console shows and drives it.
    pub sources: Arc<dyn SourceControl>,
    /// The SMTP listeners of this process.
    pub listeners: Arc<dyn ListenerControl>,
    templates: minijinja::Environment<'static>,
    oidc: oidc::Client,
}

impl Console {
    pub fn new(
        archive: Arc<Archive>,
        config: WebConfig,
        sources: Arc<dyn SourceControl>,
        listeners: Arc<dyn ListenerControl>,
    ) -> Arc<Console> {
        Arc::new(Console {
            archive,
            config,
            sources,
            listeners,
            templates: render::templates(),
            oidc: oidc::Client::new(),
        })
    }

    /// Records a configuration change, sign-in or other event in the audit log.
    pub async fn audit(&self, actor: &Actor, action: &str, detail: &str) -> Result<(), WebError> {
        Ok(self.archive.audit(actor, action, detail).await?)
    }
}

/// Every route of the console, the API and `/metrics`.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .merge(pages::routes())
        .merge(governance_pages::routes())
        .merge(imports::page_routes())
        .merge(listeners::page_routes())
        .merge(connections::page_routes())
        .merge(directory::page_routes())
        .merge(manifest::page_routes())
        .merge(oidc::routes())
        .nest("/api/v1", api::routes())
        .layer(axum::middleware::from_fn_with_state(console.clone(), auth::authenticate))
        .layer(axum::middleware::from_fn_with_state(console.clone(), security::headers))
        .layer(axum::middleware::from_fn_with_state(console.clone(), request_deadline))
        .with_state(console)
}

/// A request (its body included: a form trickled byte by byte) must be answered within the
/// request timeout.
async fn request_deadline(
    axum::extract::State(console): axum::extract::State<Arc<Console>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(console.config.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => (axum::http::StatusCode::REQUEST_TIMEOUT, "the request took too long\n").into_response(),
    }
}

/// The peer's address, put on every request by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Serves the router on `listener` (TLS when an acceptor is given) until `stop` turns true.
pub async fn serve(
    console: Arc<Console>,
    listener: tokio::net::TcpListener,
    tls: Option<coffer_archive::tls::TlsAcceptor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let app = router(console.clone());
    let config = console.config.clone();
    let sweeper = tokio::spawn(auth::sweep_sessions(console));
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let admission = coffer_archive::net::Admission::new(coffer_archive::net::Limits {
        per_ip: config.max_connections_per_ip,
        per_range: config.max_connections_per_range,
        per_minute_per_ip: usize::MAX,
    });
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // Over a cap, the connection is closed at once: it holds no slot and no descriptor.
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let Ok(admitted) = admission.admit(peer.ip()) else { continue };
        let app = app.clone();
        let tls = tls.clone();
        let header_timeout = config.header_timeout;
        tokio::spawn(async move {
            use tower::ServiceExt;
            let _held = (permit, admitted);
            let app = app.map_request(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(ClientAddr(peer));
                req
            });
            let service = hyper_util::service::TowerToHyperService::new(app);
            let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            // A header trickled byte by byte, or a kept-alive connection left idle, is closed.
            builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
            builder
                .http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(Some(header_timeout))
                .keep_alive_timeout(header_timeout)
                .max_concurrent_streams(64);
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service).await
                    }
                    _ => return,
                },
                None => builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    sweeper.abort();
}
