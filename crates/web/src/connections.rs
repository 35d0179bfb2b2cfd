//! Source connections: `/api/v1/connections` and Configuration → Connections. Both call the admin
//! service (`coffer_archive::connections`), which checks, seals the secrets, saves, applies through
//! the server's source supervisor and audits. The page also shows each connection's job (state,
//! progress, last error) and its actions: Test, Poll or Import now, Stop, Update Manifest.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use coffer_archive::connections::{AuthMethod, Connection, Definitions, ImapConfig, M365Config, Mode, Security};
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::api::{ApiError, Body, Path};
use crate::auth::Principal;
use crate::error::PageError;
use crate::render::page;
use crate::{Console, JobState, WebError};

pub fn api_routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/connections", get(list_api).post(add_api))
        .route("/connections/{name}", get(get_api).put(put_api).delete(delete_api))
}

pub fn page_routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/config/connections", get(connections_page).post(add_page))
        .route("/config/connections/{name}", post(edit_page))
        .route("/config/connections/{name}/remove", post(remove_page))
        .route("/config/connections/{name}/test", post(test_page))
        .route("/config/connections/{name}/start", post(start_page))
        .route("/config/connections/{name}/stop", post(stop_page))
}

/// A source connection (IMAP mailbox, Microsoft 365 tenant) with its job's state from the source
/// supervisor.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiConnection {
    pub name: String,
    /// `IMAP` or `Microsoft 365`.
    pub kind: String,
    /// Setting → value in words, secrets left out.
    pub settings: Vec<(String, String)>,
    pub job: JobState,
    /// The settings as sent to create or change it (secrets never included).
    pub config: Connection,
}

/// The connections as configured, each with its job.
async fn all(console: &Console, who: &Principal) -> Result<Vec<ApiConnection>, WebError> {
    let defs = console.archive.admin().connections(&who.actor()).await?;
    Ok(with_jobs(console, &defs))
}

/// Each connection with its job (a console whose process runs no sources says when it will run).
fn with_jobs(console: &Console, defs: &Definitions) -> Vec<ApiConnection> {
    defs.all()
        .map(|config| {
            let job = match console.sources.connection(config.name()) {
                Some(info) => info.job.into(),
                None => JobState::from(coffer_archive::sources::JobState {
                    state: "saved; runs with the next `coffer serve`".into(),
                    ..Default::default()
                }),
            };
            let settings = config.describe().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            ApiConnection { name: config.name().to_owned(), kind: config.kind().into(), settings, job, config }
        })
        .collect()
}

async fn one(console: &Console, who: &Principal, name: &str) -> Result<ApiConnection, WebError> {
    all(console, who).await?.into_iter().find(|c| c.name == name).ok_or(WebError::NotFound)
}

async fn save(console: &Console, who: &Principal, c: Connection, new: bool) -> Result<String, WebError> {
    let admin = console.archive.admin();
    Ok(admin.save_connection(&who.actor(), console.sources.as_ref(), c, new).await?)
}

/// Source connections (IMAP mailboxes, Microsoft 365) with their settings and their jobs' state
/// (administrators of the default tenant).
#[utoipa::path(get, path = "/connections",
    responses((status = 200, body = Vec<ApiConnection>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn list_api(
    State(console): State<Arc<Console>>,
    who: Principal,
) -> Result<axum::Json<Vec<ApiConnection>>, WebError> {
    Ok(axum::Json(all(&console, &who).await?))
}

/// One connection.
#[utoipa::path(get, path = "/connections/{name}", params(("name" = String, Path)),
    responses((status = 200, body = ApiConnection), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn get_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<axum::Json<ApiConnection>, WebError> {
    Ok(axum::Json(one(&console, &who, &name).await?))
}

/// Adds a connection and runs it at once (one that cannot start yet, waiting for its certificate
/// say, is saved and shows why). Secrets are sealed and never returned. Audited.
#[utoipa::path(post, path = "/connections", request_body = Connection,
    responses((status = 201, body = ApiConnection), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn add_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(body): Body<Connection>,
) -> Result<Response, WebError> {
    let name = body.name().to_owned();
    save(&console, &who, body, true).await?;
    Ok((StatusCode::CREATED, axum::Json(one(&console, &who, &name).await?)).into_response())
}

/// Changes a connection and applies the change at once (its run in progress is cut; what it
/// archived is kept). A secret left out keeps the one stored. Audited with before and after.
#[utoipa::path(put, path = "/connections/{name}", params(("name" = String, Path)), request_body = Connection,
    responses((status = 200, body = ApiConnection), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn put_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
    Body(mut body): Body<Connection>,
) -> Result<axum::Json<ApiConnection>, WebError> {
    match &mut body {
        Connection::Imap(i) => i.name = name.clone(),
        Connection::M365(m) => m.name = name.clone(),
    }
    save(&console, &who, body, false).await?;
    Ok(axum::Json(one(&console, &who, &name).await?))
}

/// Stops and removes a connection; what it archived stays. Audited.
#[utoipa::path(delete, path = "/connections/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn delete_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    console.archive.admin().remove_connection(&who.actor(), console.sources.as_ref(), &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Microsoft's clouds: name, login host, Graph host.
const CLOUDS: [(&str, &str, &str); 3] = [
    ("global", "https://login.microsoftonline.com", "https://graph.microsoft.com"),
    ("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us"),
    ("china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
];

/// A connection form as typed (both kinds; each uses its own fields): numbers stay text until
/// checked, so a mistake is shown with what was typed. Secrets are never filled in.
#[derive(Deserialize, Serialize, Default, Clone)]
#[serde(default)]
pub(crate) struct ConnectionForm {
    kind: String,
    name: String,
    enabled: Option<String>,
    tenant: String,
    client_id: String,
    // IMAP
    host: String,
    port: String,
    security: String,
    ca_file: String,
    username: String,
    password: String,
    auth: String,
    m365: String,
    token_url: String,
    client_secret: String,
    scope: String,
    folders: String,
    mode: String,
    after_archive: String,
    mailbox: String,
    poll_interval_secs: String,
    // Microsoft 365
    tenant_id: String,
    certificate: String,
    cloud: String,
    login_host: String,
    graph_host: String,
    mailboxes: String,
    group: String,
    parallel_mailboxes: String,
    skip_junk: Option<String>,
    skip_deleted: Option<String>,
    skip_drafts: Option<String>,
    calendar: Option<String>,
    contacts: Option<String>,
    assertion: String,
    synchronize: Option<String>,
    webhook_url: String,
    client_state: String,
}

fn on(b: bool) -> Option<String> {
    b.then(|| "on".into())
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// One per line (or comma-separated).
fn list(s: &str) -> Vec<String> {
    s.split(['\n', ',']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn number<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, WebError> {
    text.trim().parse().map_err(|_| WebError::BadRequest(format!("{field} {text:?}: a whole number")))
}

fn choice<T: serde::de::DeserializeOwned>(field: &str, text: &str) -> Result<T, WebError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| WebError::BadRequest(format!("{field} {text:?}: pick one of the choices")))
}

fn word<T: Serialize>(v: T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

impl ConnectionForm {
    /// A new connection's form, with the defaults.
    fn new(kind: &str) -> ConnectionForm {
        let c = match kind {
            "imap" => Connection::Imap(
                serde_json::from_value(serde_json::json!({"name": "", "host": "", "port": 993, "username": ""}))
                    .expect("the defaults of an IMAP connection"),
            ),
            _ => Connection::M365(M365Config::new("", "", "", "")),
        };
        ConnectionForm::from_config(&c)
    }

    fn from_config(c: &Connection) -> ConnectionForm {
        let text = |o: &Option<String>| o.clone().unwrap_or_default();
        match c {
            Connection::Imap(i) => ConnectionForm {
                kind: "imap".into(),
                name: i.name.clone(),
                enabled: on(i.enabled),
                tenant: text(&i.tenant),
                client_id: text(&i.client_id),
                host: i.host.clone(),
                port: i.port.to_string(),
                security: word(i.security),
                ca_file: i.ca_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                username: i.username.clone(),
                auth: word(i.auth),
                m365: text(&i.m365),
                token_url: text(&i.token_url),
                scope: text(&i.scope),
                folders: i.folders.join("\n"),
                mode: word(i.mode),
                after_archive: i.after_archive.clone(),
                mailbox: text(&i.mailbox),
                poll_interval_secs: i.poll_interval_secs.to_string(),
                ..Default::default()
            },
            Connection::M365(m) => ConnectionForm {
                kind: "m365".into(),
                name: m.name.clone(),
                enabled: on(m.enabled),
                tenant: text(&m.tenant),
                client_id: m.client_id.clone(),
                tenant_id: m.tenant_id.clone(),
                certificate: m.certificate.clone(),
                cloud: CLOUDS
                    .iter()
                    .find(|(_, l, g)| *l == m.login_host && *g == m.graph_host)
                    .map_or("custom", |(c, _, _)| c)
                    .into(),
                login_host: m.login_host.clone(),
                graph_host: m.graph_host.clone(),
                mailboxes: m.mailboxes.join("\n"),
                group: text(&m.group),
                parallel_mailboxes: m.parallel_mailboxes.to_string(),
                skip_junk: on(m.skip_junk),
                skip_deleted: on(m.skip_deleted),
                skip_drafts: on(m.skip_drafts),
                calendar: on(m.calendar),
                contacts: on(m.contacts),
                assertion: m.assertion.clone(),
                synchronize: on(m.webhook_url.is_some()),
                webhook_url: text(&m.webhook_url),
                ..Default::default()
            },
        }
    }

    /// The connection the form describes (the admin service checks the rest).
    fn config(&self) -> Result<Connection, WebError> {
        let name = self.name.trim().to_owned();
        match self.kind.as_str() {
            "imap" => Ok(Connection::Imap(ImapConfig {
                name,
                enabled: self.enabled.is_some(),
                host: self.host.trim().to_owned(),
                port: number("port", &self.port)?,
                security: choice::<Security>("security", &self.security)?,
                ca_file: opt(&self.ca_file).map(Into::into),
                username: self.username.trim().to_owned(),
                password: self.password.clone(),
                auth: choice::<AuthMethod>("auth", &self.auth)?,
                m365: opt(&self.m365),
                token_url: opt(&self.token_url),
                client_id: opt(&self.client_id),
                client_secret: opt(&self.client_secret),
                scope: opt(&self.scope),
                folders: list(&self.folders),
                mode: choice::<Mode>("mode", &self.mode)?,
                after_archive: self.after_archive.trim().to_owned(),
                tenant: opt(&self.tenant),
                mailbox: opt(&self.mailbox),
                poll_interval_secs: number("poll_interval_secs", &self.poll_interval_secs)?,
            })),
            "m365" => {
                let (login_host, graph_host) = match CLOUDS.iter().find(|(c, _, _)| *c == self.cloud) {
                    Some((_, l, g)) => (l.to_string(), g.to_string()),
                    None => (self.login_host.trim().to_owned(), self.graph_host.trim().to_owned()),
                };
                let webhook_url = match self.synchronize.is_some() {
                    true => Some(opt(&self.webhook_url).ok_or_else(|| {
                        WebError::BadRequest(
                            "webhook_url: synchronize needs the address the internet reaches Coffer's /o365 at, e.g. https://archive.contoso.com/o365".into(),
                        )
                    })?),
                    false => None,
                };
                Ok(Connection::M365(M365Config {
                    enabled: self.enabled.is_some(),
                    login_host,
                    graph_host,
                    mailboxes: list(&self.mailboxes),
                    group: opt(&self.group),
                    parallel_mailboxes: number("parallel_mailboxes", &self.parallel_mailboxes)?,
                    skip_junk: self.skip_junk.is_some(),
                    skip_deleted: self.skip_deleted.is_some(),
                    skip_drafts: self.skip_drafts.is_some(),
                    calendar: self.calendar.is_some(),
                    contacts: self.contacts.is_some(),
                    assertion: self.assertion.clone(),
                    tenant: opt(&self.tenant),
                    webhook_url,
                    client_state: opt(&self.client_state),
                    ..M365Config::new(&name, self.tenant_id.trim(), self.client_id.trim(), self.certificate.trim())
                }))
            }
            other => Err(WebError::BadRequest(format!("kind {other:?}: imap or m365"))),
        }
    }

    /// What is shown again after a refusal: never a secret.
    fn without_secrets(self) -> ConnectionForm {
        ConnectionForm { password: String::new(), client_secret: String::new(), client_state: String::new(), ..self }
    }
}

/// What the page shows besides the list: the outcome of the last action on a connection
/// (`tested`, `ok`, `result`), or a refusal beside the form it belongs to (`editing`: the
/// connection's name, or None for a new one) with what was typed.
#[derive(Default)]
pub(crate) struct Shown {
    pub tested: Option<String>,
    pub ok: bool,
    pub result: Option<String>,
    error: Option<String>,
    editing: Option<String>,
    typed: Option<ConnectionForm>,
}

impl Shown {
    pub(crate) fn outcome(name: &str, ok: bool, result: String) -> Shown {
        Shown { tested: Some(name.into()), ok, result: Some(result), ..Default::default() }
    }
}

pub(crate) async fn render(console: &Console, who: &Principal, shown: Shown) -> Result<Response, WebError> {
    who.require_system_admin()?;
    let defs: Definitions = console.archive.admin().connections(&who.actor()).await?;
    let list: Vec<minijinja::Value> = with_jobs(console, &defs)
        .into_iter()
        .map(|c| {
            let mailboxes: Vec<crate::MailboxStatus> =
                console.sources.mailboxes(&c.name).into_iter().map(Into::into).collect();
            let form = match (&shown.editing, &shown.typed) {
                (Some(name), Some(typed)) if *name == c.name => typed.clone(),
                _ => ConnectionForm::from_config(&c.config),
            };
            let error = shown.editing.as_ref().filter(|n| **n == c.name).and(shown.error.clone());
            let m365 = matches!(c.config, Connection::M365(_));
            context! { name => c.name, kind => c.kind, settings => c.settings, mailboxes, m365, job => c.job, form, error }
        })
        .collect();
    let new_kind = shown.typed.as_ref().filter(|_| shown.editing.is_none()).map(|f| f.kind.clone());
    let new_form = |kind: &str| match (&shown.editing, &shown.typed) {
        (None, Some(typed)) if typed.kind == kind => typed.clone(),
        _ => ConnectionForm::new(kind),
    };
    let new_error = if shown.editing.is_none() { shown.error.clone() } else { None };
    let certificates: Vec<String> = console.archive.certs().list()?.into_iter().map(|c| c.alias).collect();
    let tenants: Vec<String> =
        console.archive.admin().tenants(&who.actor()).await?.into_iter().map(|t| t.tenant.name).collect();
    let m365_names: Vec<String> = defs.m365.iter().map(|m| m.name.clone()).collect();
    let html = page(
        console,
        Some(who),
        "config_connections.html",
        context! { connections => list, tested => shown.tested, ok => shown.ok, result => shown.result,
        new_imap => new_form("imap"), new_m365 => new_form("m365"), new_kind, new_error,
        certificates, tenants, m365_names },
    )?;
    let status = if shown.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, html).into_response())
}

async fn connections_page(State(console): State<Arc<Console>>, who: Principal) -> Result<Response, PageError> {
    Ok(render(&console, &who, Shown::default()).await?)
}

/// A refusal re-renders the page with the reason beside its form (400); anything else fails.
async fn outcome(
    console: &Console,
    who: &Principal,
    editing: Option<String>,
    form: ConnectionForm,
    done: Result<String, WebError>,
) -> Result<Response, PageError> {
    let name = form.name.trim().to_owned();
    match done {
        Ok(result) => {
            // Saved either way; one that could not start is shown as a failure, with why.
            let started = console.sources.connection(&name).is_none_or(|c| c.job.state != "not started");
            Ok(render(console, who, Shown::outcome(&name, started, result)).await?)
        }
        Err(WebError::BadRequest(why)) => {
            let shown = Shown { error: Some(why), editing, typed: Some(form.without_secrets()), ..Default::default() };
            Ok(render(console, who, shown).await?)
        }
        Err(e) => Err(e.into()),
    }
}

async fn add_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    Form(form): Form<ConnectionForm>,
) -> Result<Response, PageError> {
    let done = match form.config() {
        Ok(c) => save(&console, &who, c, true).await,
        Err(e) => Err(e),
    };
    outcome(&console, &who, None, form, done).await
}

async fn edit_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
    Form(form): Form<ConnectionForm>,
) -> Result<Response, PageError> {
    let form = ConnectionForm { name: name.clone(), ..form };
    let done = match form.config() {
        Ok(c) => save(&console, &who, c, false).await,
        Err(e) => Err(e),
    };
    outcome(&console, &who, Some(name), form, done).await
}

async fn remove_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    match console.archive.admin().remove_connection(&who.actor(), console.sources.as_ref(), &name).await {
        Ok(()) => Ok(Redirect::to("/config/connections").into_response()),
        Err(coffer_archive::ArchiveError::Invalid(why)) => {
            Ok(render(&console, &who, Shown::outcome(&name, false, why)).await?)
        }
        Err(e) => Err(WebError::from(e).into()),
    }
}

async fn test_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let outcome = crate::api::test_connection(&console, &who, &name).await?;
    Ok(render(&console, &who, Shown::outcome(&name, outcome.ok, outcome.detail)).await?)
}

async fn start_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let shown = match crate::api::start_source(&console, &who, &name).await {
        Ok(detail) => Shown::outcome(&name, true, detail),
        Err(WebError::BadRequest(e)) => Shown::outcome(&name, false, e),
        Err(e) => return Err(e.into()),
    };
    Ok(render(&console, &who, shown).await?)
}

async fn stop_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let detail = console.archive.admin().stop_source(&who.actor(), console.sources.as_ref(), &name).await?;
    Ok(render(&console, &who, Shown::outcome(&name, true, detail)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_reads_back_the_connection_it_was_filled_from() {
        let mut m = M365Config::new("contoso", "tid", "cid", "m365");
        m.login_host = CLOUDS[1].1.into();
        m.graph_host = CLOUDS[1].2.into();
        m.mailboxes = vec!["bob@contoso.com".into(), "carol@contoso.com".into()];
        m.webhook_url = Some("https://archive.contoso.com/o365".into());
        m.skip_drafts = false;
        let c = Connection::M365(m);
        let form = ConnectionForm::from_config(&c);
        assert_eq!(form.cloud, "usgov");
        assert_eq!(form.config().unwrap(), c);

        let imap = ConnectionForm {
            name: "journal".into(),
            host: "imap.contoso.com".into(),
            username: "journal@contoso.com".into(),
            folders: "INBOX, Projects/Alpha".into(),
            ..ConnectionForm::new("imap")
        };
        let Connection::Imap(i) = imap.config().unwrap() else { panic!("an IMAP form makes an IMAP connection") };
        assert_eq!((i.port, i.folders.len(), i.poll_interval_secs), (993, 2, 60));
        assert_eq!(ConnectionForm::from_config(&Connection::Imap(i.clone())).config().unwrap(), Connection::Imap(i));
    }

    #[test]
    fn synchronize_without_a_webhook_address_says_what_to_enter() {
        let form = ConnectionForm { synchronize: Some("on".into()), ..ConnectionForm::new("m365") };
        let Err(WebError::BadRequest(why)) = form.config() else { panic!("refused") };
        assert!(why.starts_with("webhook_url"), "{why}");
    }
}
