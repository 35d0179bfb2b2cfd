//! SMTP listeners: `/api/v1/listeners` and Configuration → Listeners. Both call the admin
//! service (`coffer_archive::listeners`), which checks, applies through the server's
//! `ListenerControl` (a new listener answers at once), saves and audits.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use coffer_archive::listeners::ListenerSettings;
use minijinja::context;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{ApiError, Body, Path};
use crate::auth::Principal;
use crate::error::PageError;
use crate::render::page;
use crate::{Console, WebError};

pub fn api_routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/listeners", get(list_api).post(add_api))
        .route("/listeners/{name}", get(get_api).put(put_api).delete(delete_api))
}

pub fn page_routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/config/listeners", get(listeners_page).post(add_page))
        .route("/config/listeners/{name}", post(edit_page))
        .route("/config/listeners/{name}/remove", post(remove_page))
}

/// An SMTP journaling listener.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ApiListener {
    /// Lowercase letters, digits and `-`; its traffic figures go by this name. Taken from the path
    /// on PUT.
    pub name: String,
    pub enabled: bool,
    /// Address and port, e.g. `0.0.0.0:25`.
    pub listen: String,
    /// Greeting and EHLO name; default: the journal domain.
    pub hostname: Option<String>,
    /// `off`, `offer` or `require`.
    pub tls: String,
    /// Certificate-store alias for STARTTLS.
    pub certificate: String,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_recipients: usize,
    /// How it runs now (`listening on ADDR`, `stopped`, or why it failed); ignored when sent.
    #[schema(read_only)]
    pub state: Option<String>,
}

impl Default for ApiListener {
    fn default() -> Self {
        ApiListener::new(ListenerSettings::default(), None)
    }
}

impl ApiListener {
    fn new(s: ListenerSettings, state: Option<String>) -> ApiListener {
        ApiListener {
            name: s.name,
            enabled: s.enabled,
            listen: s.listen,
            hostname: s.hostname,
            tls: s.tls,
            certificate: s.certificate,
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
            max_recipients: s.max_recipients,
            state,
        }
    }

    fn settings(self) -> ListenerSettings {
        ListenerSettings {
            name: self.name,
            enabled: self.enabled,
            listen: self.listen,
            hostname: self.hostname.filter(|h| !h.trim().is_empty()),
            tls: self.tls,
            certificate: self.certificate,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_recipients: self.max_recipients,
        }
    }
}

async fn all(console: &Console, who: &Principal) -> Result<Vec<ApiListener>, WebError> {
    let list = console.archive.admin().listeners(&who.actor()).await?;
    Ok(list
        .into_iter()
        .map(|l| {
            let state = console.listeners.state(&l.name);
            ApiListener::new(l, state)
        })
        .collect())
}

async fn one(console: &Console, who: &Principal, name: &str) -> Result<ApiListener, WebError> {
    all(console, who).await?.into_iter().find(|l| l.name == name).ok_or(WebError::NotFound)
}

async fn save(console: &Console, who: &Principal, settings: ListenerSettings, new: bool) -> Result<String, WebError> {
    let admin = console.archive.admin();
    Ok(admin.save_listener(&who.actor(), console.listeners.as_ref(), settings, new).await?)
}

/// The SMTP listeners with how each runs now (administrators of the default tenant).
#[utoipa::path(get, path = "/listeners",
    responses((status = 200, body = Vec<ApiListener>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn list_api(
    State(console): State<Arc<Console>>,
    who: Principal,
) -> Result<axum::Json<Vec<ApiListener>>, WebError> {
    Ok(axum::Json(all(&console, &who).await?))
}

/// One listener.
#[utoipa::path(get, path = "/listeners/{name}", params(("name" = String, Path)),
    responses((status = 200, body = ApiListener), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn get_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<axum::Json<ApiListener>, WebError> {
    Ok(axum::Json(one(&console, &who, &name).await?))
}

/// Adds a listener; it answers at once (a port that cannot be bound is refused, nothing saved).
/// Audited.
#[utoipa::path(post, path = "/listeners", request_body = ApiListener,
    responses((status = 201, body = ApiListener), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn add_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(body): Body<ApiListener>,
) -> Result<Response, WebError> {
    let name = body.name.clone();
    save(&console, &who, body.settings(), true).await?;
    Ok((StatusCode::CREATED, axum::Json(one(&console, &who, &name).await?)).into_response())
}

/// Changes a listener and applies the change at once (a new address is bound before the old one
/// lets go). Audited with before and after.
#[utoipa::path(put, path = "/listeners/{name}", params(("name" = String, Path)), request_body = ApiListener,
    responses((status = 200, body = ApiListener), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn put_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
    Body(body): Body<ApiListener>,
) -> Result<axum::Json<ApiListener>, WebError> {
    let settings = ApiListener { name: name.clone(), ..body }.settings();
    save(&console, &who, settings, false).await?;
    Ok(axum::Json(one(&console, &who, &name).await?))
}

/// Stops and removes a listener; transactions in flight finish. Audited.
#[utoipa::path(delete, path = "/listeners/{name}", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn delete_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    console.archive.admin().remove_listener(&who.actor(), console.listeners.as_ref(), &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The listener form as typed: numbers stay text until checked, so a mistake is shown with
/// what was typed.
#[derive(Deserialize, Serialize, Default, Clone)]
#[serde(default)]
pub(crate) struct ListenerForm {
    name: String,
    listen: String,
    hostname: String,
    tls: String,
    certificate: String,
    max_connections: String,
    max_connections_per_ip: String,
    max_recipients: String,
    enabled: Option<String>,
}

impl ListenerForm {
    fn from_settings(s: &ApiListener) -> ListenerForm {
        ListenerForm {
            name: s.name.clone(),
            listen: s.listen.clone(),
            hostname: s.hostname.clone().unwrap_or_default(),
            tls: s.tls.clone(),
            certificate: s.certificate.clone(),
            max_connections: s.max_connections.to_string(),
            max_connections_per_ip: s.max_connections_per_ip.to_string(),
            max_recipients: s.max_recipients.to_string(),
            enabled: s.enabled.then(|| "on".into()),
        }
    }

    fn settings(&self) -> Result<ListenerSettings, WebError> {
        let number = |field: &str, text: &str| {
            text.trim().parse::<usize>().map_err(|_| WebError::BadRequest(format!("{field} {text:?}: a whole number")))
        };
        Ok(ListenerSettings {
            name: self.name.trim().to_owned(),
            enabled: self.enabled.is_some(),
            listen: self.listen.trim().to_owned(),
            hostname: Some(self.hostname.trim().to_owned()).filter(|h| !h.is_empty()),
            tls: self.tls.clone(),
            certificate: self.certificate.clone(),
            max_connections: number("max_connections", &self.max_connections)?,
            max_connections_per_ip: number("max_connections_per_ip", &self.max_connections_per_ip)?,
            max_recipients: number("max_recipients", &self.max_recipients)?,
        })
    }
}

/// What the page shows besides the list: the outcome of the last action, or a refusal beside the
/// form it belongs to (`editing`: the listener's name, or None for the new one) with what was typed.
#[derive(Default)]
struct Shown {
    result: Option<String>,
    error: Option<String>,
    editing: Option<String>,
    typed: Option<ListenerForm>,
}

async fn render(console: &Console, who: &Principal, shown: Shown) -> Result<axum::response::Html<String>, WebError> {
    who.require_system_admin()?;
    let listeners: Vec<minijinja::Value> = all(console, who)
        .await?
        .into_iter()
        .map(|l| {
            let form = match (&shown.editing, &shown.typed) {
                (Some(name), Some(typed)) if *name == l.name => typed.clone(),
                _ => ListenerForm::from_settings(&l),
            };
            let error = shown.editing.as_ref().filter(|n| **n == l.name).and(shown.error.clone());
            context! { name => l.name, state => l.state, enabled => l.enabled, listen => l.listen,
            hostname => l.hostname.unwrap_or_else(|| console.config.journal_domain.clone()),
            tls => l.tls, certificate => l.certificate, max_connections => l.max_connections,
            max_connections_per_ip => l.max_connections_per_ip, max_recipients => l.max_recipients, form, error }
        })
        .collect();
    let new_form = match (&shown.editing, &shown.typed) {
        (None, Some(typed)) => typed.clone(),
        _ => ListenerForm::from_settings(&ApiListener { enabled: true, ..Default::default() }),
    };
    let new_error = if shown.editing.is_none() { shown.error.clone() } else { None };
    let certificates: Vec<String> = console.archive.certs().list()?.into_iter().map(|c| c.alias).collect();
    let tenants: Vec<_> = console
        .archive
        .admin()
        .tenants(&who.actor())
        .await?
        .into_iter()
        .map(|t| context! { id => t.tenant.id, name => t.tenant.name, address => t.journal_address, networks => t.networks })
        .collect();
    page(
        console,
        Some(who),
        "config_listeners.html",
        context! { listeners, new_form, new_error, result => shown.result, certificates, tenants, smtp => console.config.smtp },
    )
}

async fn listeners_page(State(console): State<Arc<Console>>, who: Principal) -> Result<Response, PageError> {
    Ok(render(&console, &who, Shown::default()).await?.into_response())
}

/// A refusal re-renders the page with the reason beside its form (400); anything else fails.
async fn outcome(
    console: &Console,
    who: &Principal,
    editing: Option<String>,
    form: ListenerForm,
    done: Result<String, WebError>,
) -> Result<Response, PageError> {
    match done {
        Ok(result) => {
            let shown = Shown { result: Some(format!("{}: {result}", form.name.trim())), ..Default::default() };
            Ok(render(console, who, shown).await?.into_response())
        }
        Err(WebError::BadRequest(why)) => {
            let shown = Shown { error: Some(why), editing, typed: Some(form), result: None };
            Ok((StatusCode::BAD_REQUEST, render(console, who, shown).await?).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn add_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    Form(form): Form<ListenerForm>,
) -> Result<Response, PageError> {
    let done = match form.settings() {
        Ok(s) => save(&console, &who, s, true).await,
        Err(e) => Err(e),
    };
    outcome(&console, &who, None, form, done).await
}

async fn edit_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
    Form(form): Form<ListenerForm>,
) -> Result<Response, PageError> {
    let form = ListenerForm { name: name.clone(), ..form };
    let done = match form.settings() {
        Ok(s) => save(&console, &who, s, false).await,
        Err(e) => Err(e),
    };
    outcome(&console, &who, Some(name), form, done).await
}

async fn remove_page(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    console.archive.admin().remove_listener(&who.actor(), console.listeners.as_ref(), &name).await?;
    Ok(Redirect::to("/config/listeners").into_response())
}
