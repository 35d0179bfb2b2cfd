//! Who is asking: sessions (a cookie whose hash the catalog keeps), API keys (`Authorization:
//! Bearer ck_…`), local passwords (argon2), lockout after repeated failures, and the CSRF check
//! every state-changing request of a browser session must pass.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use coffer_archive::catalog::UserRow;
use coffer_archive::identity::{Account, Lockout};
pub use coffer_archive::identity::{hash_password, new_api_key, random_token, token_hash};
use coffer_archive::service::Actor;
pub use coffer_archive::{Role, Tenant};

use crate::{ClientAddr, Console, WebError};

pub const SESSION_COOKIE: &str = "coffer_session";
/// The sign-on form's own CSRF token (double submit: cookie and form field must agree).
pub const SIGNON_COOKIE: &str = "coffer_signon";
/// The tenant an administrator of the default tenant works in (its id, or `all` to read every
/// tenant's mail); honoured only for such a session, never for an API key.
pub const TENANT_COOKIE: &str = "coffer_tenant";

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRow,
    pub role: Role,
    pub tenant: Tenant,
    /// The session's CSRF token (None for API keys, which browsers do not send by themselves).
    pub csrf: Option<String>,
    pub ip: String,
    /// Another tenant an administrator of the default tenant works in (Tenants → Work here).
    pub working: Option<Tenant>,
    /// An administrator of the default tenant reading every tenant's mail (Tenants → Search all
    /// tenants).
    pub all_tenants: bool,
}

impl Principal {
    fn from_account(account: Account, csrf: Option<String>, ip: String) -> Principal {
        Principal {
            user: account.user,
            role: account.role,
            tenant: account.tenant,
            csrf,
            ip,
            working: None,
            all_tenants: false,
        }
    }

    /// The archive service's view of this user: rights and visibility follow the role.
    pub fn actor(&self) -> Actor {
        let home = Actor::account(&self.user, self.role, self.tenant.clone(), &self.ip);
        match &self.working {
            Some(t) => home.clone().working_in(t.clone()).unwrap_or(home),
            None if self.all_tenants => home.clone().across_tenants().unwrap_or(home),
            None => home,
        }
    }

    /// The account in its own tenant, whatever tenant it works in.
    pub fn home_actor(&self) -> Actor {
        Actor::account(&self.user, self.role, self.tenant.clone(), &self.ip)
    }

    /// The rule is the archive service's ([`Actor::require`]); pages use it to pick what to show.
    pub fn require(&self, role: Role) -> Result<(), WebError> {
        Ok(self.actor().require(role)?)
    }

    pub fn require_system_admin(&self) -> Result<(), WebError> {
        Ok(self.actor().require_system_admin()?)
    }
}

impl FromRequestParts<Arc<Console>> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<Console>) -> Result<Self, Self::Rejection> {
        // Nested routers see their own part of the path; the original tells API from page.
        let uri =
            parts.extensions.get::<axum::extract::OriginalUri>().map(|u| u.0.clone()).unwrap_or(parts.uri.clone());
        match parts.extensions.get::<Principal>() {
            Some(p) => Ok(p.clone()),
            None if uri.path().starts_with("/api/") => Err(WebError::Unauthorized.into_response()),
            None => {
                let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let target = format!(
                    "/signon?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                Err(Redirect::to(&target).into_response())
            }
        }
    }
}

/// Pages that also serve visitors who have not signed in.
impl axum::extract::OptionalFromRequestParts<Arc<Console>> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<Console>) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub fn set_cookie(console: &Console, name: &str, value: &str, max_age: Option<i64>) -> String {
    let secure = if console.config.https { "; Secure" } else { "" };
    let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{age}")
}

fn client_ip(req: &Request) -> String {
    req.extensions().get::<ClientAddr>().map(|a| a.0.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

/// Resolves the principal of every request and refuses state changes without the session's CSRF
/// token (header `X-CSRF-Token`, a `csrf` query parameter, or a `csrf` form field).
pub async fn authenticate(State(console): State<Arc<Console>>, req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    match resolve(&console, req).await {
        Ok(req) => next.run(req).await,
        Err(e) if api => e.into_response(),
        Err(e) => crate::error::PageError(e).into_response(),
    }
}

async fn resolve(console: &Console, mut req: Request) -> Result<Request, WebError> {
    let ip = client_ip(&req);
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if let Some(key) = bearer {
        if req.uri().path() == "/metrics" && is_metrics_token(console, &key) {
            req.extensions_mut().insert(MetricsScraper);
            return Ok(req);
        }
        // A wrong key is an error even where no sign-in is needed: a script should hear about it.
        let principal = api_key_principal(console, &key, ip).await?.ok_or(WebError::Unauthorized)?;
        req.extensions_mut().insert(principal);
        return Ok(req);
    }
    let Some(token) = cookie(req.headers(), SESSION_COOKIE) else {
        return Ok(req);
    };
    let Some(mut principal) = session_principal(console, &token, ip).await? else {
        return Ok(req);
    };
    // Working in another tenant: only for an administrator of the default tenant, and only a
    // tenant that exists; anything else in the cookie changes nothing.
    if let Some(choice) = cookie(req.headers(), TENANT_COOKIE)
        && principal.home_actor().is_system_admin()
    {
        match choice.parse::<i64>() {
            Ok(id) if id != principal.tenant.id => principal.working = console.archive.tenant_by_id(id).await?,
            _ => principal.all_tenants = choice == "all",
        }
    }
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method {
        let expected = principal.csrf.clone().unwrap_or_default();
        let (req2, presented) = csrf_token(req).await;
        req = req2;
        if presented.as_deref() != Some(expected.as_str()) {
            return Err(WebError::Forbidden(
                "the form's security token is missing or stale; reload the page and try again".into(),
            ));
        }
    }
    req.extensions_mut().insert(principal);
    Ok(req)
}

/// On a `/metrics` request that presented `http.metrics_token`.
#[derive(Debug, Clone, Copy)]
pub struct MetricsScraper;

/// The scraper's token for `/metrics` (`http.metrics_token`), compared by hash.
fn is_metrics_token(console: &Console, presented: &str) -> bool {
    console.config.metrics_token.as_deref().is_some_and(|want| token_hash(want) == token_hash(presented.trim()))
}

/// The CSRF token a request presents; a url-encoded body is read and put back.
async fn csrf_token(req: Request) -> (Request, Option<String>) {
    if let Some(v) = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        let v = v.to_owned();
        return (req, Some(v));
    }
    if let Some(q) = req.uri().query()
        && let Some((_, v)) = url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "csrf")
    {
        let v = v.into_owned();
        return (req, Some(v));
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (req, None);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 4 << 20).await.unwrap_or_default();
    let token = url::form_urlencoded::parse(&bytes).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
    (Request::from_parts(parts, axum::body::Body::from(bytes)), token)
}

async fn session_principal(console: &Console, token: &str, ip: String) -> Result<Option<Principal>, WebError> {
    let idle = Duration::from_secs(console.config.session_idle_minutes * 60);
    let max = Duration::from_secs(console.config.session_max_hours * 3600);
    let session = console.archive.identity().session(token, idle, max).await?;
    Ok(session.map(|s| Principal::from_account(s.account, Some(s.csrf), ip)))
}

async fn api_key_principal(console: &Console, key: &str, ip: String) -> Result<Option<Principal>, WebError> {
    Ok(console.archive.identity().api_key(key).await?.map(|a| Principal::from_account(a, None, ip)))
}

/// Starts a session for `account`: the Set-Cookie header value.
pub async fn start_session(console: &Console, account: &Account, ip: &str) -> Result<String, WebError> {
    let token = console.archive.identity().start_session(account, ip).await?;
    Ok(set_cookie(console, SESSION_COOKIE, &token, None))
}

pub async fn end_session(console: &Console, headers: &HeaderMap) -> Result<(), WebError> {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        console.archive.identity().end_session(&token).await?;
    }
    Ok(())
}

/// Checks a local account's password (the lockout, timing and audit rules are the identity
/// service's).
pub async fn sign_in_locally(
    console: &Console,
    login: &str,
    password: &str,
    ip: &str,
) -> Result<coffer_archive::identity::SignIn, WebError> {
    let lockout = Lockout { after: console.config.lockout_after, minutes: console.config.lockout_minutes };
    Ok(console.archive.identity().sign_in_locally(login, password, lockout, ip).await?)
}

/// Forgets expired sessions now and then (they are refused on use anyway).
pub async fn sweep_sessions(console: Arc<Console>) {
    loop {
        let idle = Duration::from_secs(console.config.session_idle_minutes * 60);
        let max = Duration::from_secs(console.config.session_max_hours * 3600);
        if let Err(e) = console.archive.identity().end_stale_sessions(idle, max).await {
            tracing::warn!(error = %e, "could not forget expired sessions");
        }
        tokio::time::sleep(Duration::from_secs(300)).await;
    }
}

/// A redirect that also sets cookies.
pub fn redirect_with_cookies(to: &str, cookies: &[String]) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response();
    for c in cookies {
        if let Ok(v) = c.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Only paths of this console are followed after sign-in (no open redirect). Browsers drop tabs
/// and newlines from a URL and read `\\` as `/`, so `/\tevil.example` or `/\\evil.example` would
/// reach another host: anything but a plain same-origin path, also once percent-decoded, gives
/// the search page.
pub fn safe_next(next: Option<&str>) -> String {
    fn plain_path(p: &str) -> bool {
        let base = url::Url::parse("http://console.invalid/").expect("a URL");
        p.starts_with('/')
            && !p.starts_with("//")
            && !p.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control())
            && base.join(p).is_ok_and(|u| u.host_str() == Some("console.invalid") && u.scheme() == "http")
    }
    match next {
        Some(n) if plain_path(n) && plain_path(&percent_decoded(n)) => n.to_owned(),
        _ => "/search".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn after_sign_in_only_paths_of_this_console_are_followed() {
        for ok in ["/search?q=a", "/m/42", "/config/users"] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        for evil in [
            "//evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "/\tevil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/%2Fevil.example",
            "/%5Cevil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            " /search",
        ] {
            assert_eq!(safe_next(Some(evil)), "/search", "{evil:?} was followed");
        }
        assert_eq!(safe_next(None), "/search");
    }
}
