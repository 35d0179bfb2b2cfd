//! Who is asking: sessions (a cookie whose hash the catalog keeps), API keys (`Authorization:
//! Bearer ck_…`), local passwords (argon2), lockout after repeated failures, and the CSRF check
//! every state-changing request of a browser session must pass.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use coffer_archive::catalog::UserRow;
use coffer_archive::service::Actor;
use coffer_archive::{Tenant, Visibility};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{ClientAddr, Console, WebError};

pub const SESSION_COOKIE: &str = "coffer_session";
/// The sign-on form's own CSRF token (double submit: cookie and form field must agree).
pub const SIGNON_COOKIE: &str = "coffer_signon";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Only mail where one of their addresses takes part, or that sits in their mailbox.
    User,
    /// All mail of the tenant, read-only; export; the audit log.
    Auditor,
    /// All mail of the tenant and the configuration.
    Administrator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Auditor => "auditor",
            Role::Administrator => "administrator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "user" => Some(Role::User),
            "auditor" => Some(Role::Auditor),
            "administrator" | "admin" => Some(Role::Administrator),
            _ => None,
        }
    }
}

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRow,
    pub role: Role,
    pub tenant: Tenant,
    /// The session's CSRF token (None for API keys, which browsers do not send by themselves).
    pub csrf: Option<String>,
    pub ip: String,
}

impl Principal {
    /// The archive service's view of this user: visibility follows the role.
    pub fn actor(&self) -> Actor {
        let whole_tenant = self.role >= Role::Auditor;
        Actor {
            name: self.user.login.clone(),
            ip: self.ip.clone(),
            tenant: self.tenant.clone(),
            visibility: (!whole_tenant)
                .then(|| Visibility { addresses: self.user.addresses.clone(), mailboxes: self.user.addresses.clone() }),
            sees_bcc: whole_tenant,
        }
    }

    pub fn require(&self, role: Role) -> Result<(), WebError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(WebError::Forbidden(format!("this needs the {} role", role.as_str())))
        }
    }

    /// Settings that span tenants (volumes, certificates, tenants, login) belong to the
    /// administrators of the default tenant.
    pub fn require_system_admin(&self) -> Result<(), WebError> {
        self.require(Role::Administrator)?;
        if self.tenant.name != coffer_archive::catalog::DEFAULT_TENANT {
            return Err(WebError::Forbidden("this belongs to the administrators of the default tenant".into()));
        }
        Ok(())
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

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 hashing cannot fail").to_string()
}

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new API key: what to give the user once, and the hash to keep.
pub fn new_api_key() -> (String, String) {
    let key = format!("ck_{}", random_token(24));
    let hash = token_hash(&key);
    (key, hash)
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
    let Some(principal) = session_principal(console, &token, ip).await? else {
        return Ok(req);
    };
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
    let catalog = &console.archive.catalog;
    let hash = token_hash(token);
    let Some(session) = catalog.session(&hash).await? else { return Ok(None) };
    let now = coffer_archive::service::now_secs();
    let idle = (console.config.session_idle_minutes * 60) as i64;
    let max = (console.config.session_max_hours * 3600) as i64;
    if session.last_seen + idle < now || session.created_at + max < now {
        catalog.end_session(&hash).await?;
        return Ok(None);
    }
    // Noting activity once a minute is enough for an idle timeout in minutes.
    if session.last_seen + 60 <= now {
        catalog.touch_session(&hash).await?;
    }
    principal(console, session.user_id, None, Some(session.csrf), ip).await
}

async fn api_key_principal(console: &Console, key: &str, ip: String) -> Result<Option<Principal>, WebError> {
    let Some(k) = console.archive.catalog.use_api_key(&token_hash(key)).await? else { return Ok(None) };
    let role = Role::parse(&k.role);
    principal(console, k.user_id, role, None, ip).await
}

async fn principal(
    console: &Console,
    user_id: i64,
    cap: Option<Role>,
    csrf: Option<String>,
    ip: String,
) -> Result<Option<Principal>, WebError> {
    let catalog = &console.archive.catalog;
    let Some(user) = catalog.user(user_id).await? else { return Ok(None) };
    if user.disabled {
        return Ok(None);
    }
    let Some(mut role) = Role::parse(&user.role) else { return Ok(None) };
    if let Some(cap) = cap {
        role = role.min(cap);
    }
    let Some(tenant) = catalog.tenant(user.tenant_id).await? else { return Ok(None) };
    Ok(Some(Principal { user, role, tenant, csrf, ip }))
}

/// Starts a session for `user`: the Set-Cookie header value.
pub async fn start_session(console: &Console, user: &UserRow, ip: &str) -> Result<String, WebError> {
    let token = random_token(32);
    console.archive.catalog.create_session(&token_hash(&token), user.id, &random_token(16), ip).await?;
    Ok(set_cookie(console, SESSION_COOKIE, &token, None))
}

pub async fn end_session(console: &Console, headers: &HeaderMap) -> Result<(), WebError> {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        console.archive.catalog.end_session(&token_hash(&token)).await?;
    }
    Ok(())
}

pub enum SignIn {
    Ok(Box<UserRow>),
    /// Wrong login or password (the same answer for both).
    Refused,
    Locked,
}

/// Checks a local account's password. Each attempt counts towards the lockout before the password
/// is checked (parallel guesses cannot outrun it); a success clears the count. Every refusal —
/// unknown login, wrong password, locked or disabled account — costs the same argon2 check and
/// pause, so neither the answer nor its timing tells which it was.
pub async fn sign_in_locally(console: &Console, login: &str, password: &str) -> Result<SignIn, WebError> {
    let catalog = &console.archive.catalog;
    let user = catalog.user_by_login(login).await?;
    let now = coffer_archive::service::now_secs();
    let lock_until = now + console.config.lockout_minutes * 60;
    let admitted = match &user {
        Some(u) if u.password_hash.is_some() => {
            catalog.begin_sign_in_attempt(u.id, console.config.lockout_after, lock_until, now).await?
        }
        _ => false,
    };
    let hash = user.as_ref().and_then(|u| u.password_hash.clone()).filter(|_| admitted);
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || match hash {
        Some(h) => password_matches(&h, &password),
        None => {
            let _ = password_matches(dummy_hash(), &password);
            false
        }
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))?;
    match user {
        Some(user) if admitted && matches && !user.disabled => {
            catalog.record_sign_in(user.id, None).await?;
            Ok(SignIn::Ok(Box::new(user)))
        }
        found => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(match found {
                Some(u) if !admitted && u.password_hash.is_some() => SignIn::Locked,
                _ => SignIn::Refused,
            })
        }
    }
}

fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("coffer-dummy-password"))
}

/// Forgets expired sessions now and then (they are refused on use anyway).
pub async fn sweep_sessions(console: Arc<Console>) {
    loop {
        let now = coffer_archive::service::now_secs();
        let idle = (console.config.session_idle_minutes * 60) as i64;
        let max = (console.config.session_max_hours * 3600) as i64;
        if let Err(e) = console.archive.catalog.end_stale_sessions(now - idle, now - max).await {
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
