//! Single sign-on with OpenID Connect (authorization code flow with PKCE), for any provider and
//! for Microsoft Entra ID: state and nonce are checked (each state once, within ten minutes), the
//! ID token's signature against the provider's published keys, its issuer, audience, expiry and,
//! for Entra ID, its `tid`. The client authenticates with a secret or with a certificate from the
//! store (`private_key_jwt`). The claims presented give the role through the tenant's role
//! assignments, first match wins; they are kept so an administrator can look them up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use coffer_archive::catalog::RoleAssignment;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::auth::{Role, random_token};
use crate::error::PageError;
use crate::settings::{CLIENT_SECRET, LoginSettings, OidcSettings};
use crate::{ClientAddr, Console, WebError};

/// How long a sign-on may take from the redirect to the provider to the callback.
const STATE_MAX_AGE: i64 = 600;
const CACHE_FOR: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
}

/// Discovery documents and key sets, cached for a few minutes per issuer.
pub struct Client {
    agent: ureq::Agent,
    discovery: Mutex<HashMap<String, (Discovery, Instant)>>,
    keys: Mutex<HashMap<String, (JwkSet, Instant)>>,
}

impl Client {
    pub fn new() -> Client {
        Client {
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(15)).redirects(0).build(),
            discovery: Default::default(),
            keys: Default::default(),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned + Send + 'static>(&self, url: &str) -> Result<T, WebError> {
        let agent = self.agent.clone();
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || {
            let response = agent.get(&url).call().map_err(|e| unavailable(&url, e))?;
            response
                .into_json::<T>()
                .map_err(|e| WebError::Unavailable(format!("{url} answered something not JSON: {e}")))
        })
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
    }

    pub async fn discover(&self, issuer: &str) -> Result<Discovery, WebError> {
        if let Some((d, at)) = self.discovery.lock().unwrap().get(issuer)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(d.clone());
        }
        let url = format!("{issuer}/.well-known/openid-configuration");
        let d: Discovery = self.get_json(&url).await?;
        if d.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(WebError::Unavailable(format!(
                "the discovery document at {url} names issuer {:?}; the settings say {issuer:?}",
                d.issuer
            )));
        }
        self.discovery.lock().unwrap().insert(issuer.to_owned(), (d.clone(), Instant::now()));
        Ok(d)
    }

    async fn keys(&self, jwks_uri: &str, refresh: bool) -> Result<JwkSet, WebError> {
        if !refresh
            && let Some((k, at)) = self.keys.lock().unwrap().get(jwks_uri)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(k.clone());
        }
        let k: JwkSet = self.get_json(jwks_uri).await?;
        self.keys.lock().unwrap().insert(jwks_uri.to_owned(), (k.clone(), Instant::now()));
        Ok(k)
    }
}

fn unavailable(url: &str, e: ureq::Error) -> WebError {
    match e {
        ureq::Error::Status(code, r) => {
            let body = r.into_string().unwrap_or_default();
            WebError::Unavailable(format!("{url} answered {code}: {}", body.chars().take(300).collect::<String>()))
        }
        e => WebError::Unavailable(format!("cannot reach {url}: {e}")),
    }
}

pub fn routes() -> Router<Arc<Console>> {
    Router::new().route("/login/oidc", get(start))
}

async fn settings(console: &Console) -> Result<OidcSettings, WebError> {
    let s = LoginSettings::load(&console.archive).await?.oidc;
    if !s.enabled {
        return Err(WebError::NotFound);
    }
    Ok(s)
}

pub fn redirect_uri(console: &Console, s: &OidcSettings) -> String {
    format!("{}{}", console.config.public_url.trim_end_matches('/'), s.callback_path)
}

/// Sends the browser to the provider's authorization endpoint.
async fn start(State(console): State<Arc<Console>>) -> Result<Response, PageError> {
    let s = settings(&console).await?;
    let d = console.oidc.discover(&s.issuer()).await?;
    let (state, nonce, verifier) = (random_token(16), random_token(16), random_token(32));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    console.archive.identity().put_login_request(&state, &nonce, &verifier).await?;
    let mut url = url::Url::parse(&d.authorization_endpoint)
        .map_err(|e| WebError::Unavailable(format!("the provider's authorization endpoint is not a URL: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &s.client_id)
        .append_pair("redirect_uri", &redirect_uri(&console, &s))
        .append_pair("scope", &s.scopes)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    // The state is bound to this browser: a callback carrying a state another browser started
    // (login CSRF: an attacker's own sign-in planted in a victim's browser) is refused.
    let cookie = crate::auth::set_cookie(&console, STATE_COOKIE, &state, Some(STATE_MAX_AGE));
    Ok(crate::auth::redirect_with_cookies(url.as_str(), &[cookie]))
}

/// The cookie that ties a sign-in's state to the browser that started it.
const STATE_COOKIE: &str = "coffer_oidc_state";

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    admin_consent: Option<String>,
}

/// Is this request the provider's redirect back (the callback path is a setting)?
pub async fn is_callback(console: &Console, uri: &Uri) -> bool {
    match LoginSettings::load(&console.archive).await {
        Ok(s) => s.oidc.enabled && uri.path() == s.oidc.callback_path,
        Err(_) => false,
    }
}

pub async fn callback(console: Arc<Console>, uri: Uri, headers: HeaderMap, peer: Option<ClientAddr>) -> Response {
    let ip = peer.map(|p| p.0.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let query: CallbackQuery = match Query::try_from_uri(&uri) {
        Ok(Query(q)) => q,
        Err(e) => return PageError(WebError::BadRequest(e.to_string())).into_response(),
    };
    let started_here = crate::auth::cookie(&headers, STATE_COOKIE);
    let clear = crate::auth::set_cookie(&console, STATE_COOKIE, "", Some(0));
    match finish(&console, query, started_here.as_deref(), &ip).await {
        Ok(mut response) => {
            if let Ok(v) = clear.parse() {
                response.headers_mut().append(axum::http::header::SET_COOKIE, v);
            }
            response
        }
        Err(e) => {
            let detail = e.to_string();
            let _ = console.archive.identity().sign_in_failed("single sign-on", &ip, &detail).await;
            PageError(e).into_response()
        }
    }
}

async fn finish(
    console: &Console,
    q: CallbackQuery,
    started_here: Option<&str>,
    ip: &str,
) -> Result<Response, WebError> {
    if q.admin_consent.is_some() {
        return Ok(Redirect::to("/config/login?consent=granted").into_response());
    }
    if let Some(error) = q.error {
        return Err(WebError::BadRequest(format!(
            "the identity provider refused the sign-in: {error}: {}",
            q.error_description.unwrap_or_default()
        )));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(WebError::BadRequest("the callback lacks code or state".into()));
    };
    let s = settings(console).await?;
    if started_here != Some(state.as_str()) {
        return Err(WebError::BadRequest(
            "this sign-in was not started in this browser (or its cookie expired); start the sign-in again".into(),
        ));
    }
    let Some((nonce, verifier)) = console.archive.identity().take_login_request(&state, STATE_MAX_AGE).await? else {
        return Err(WebError::BadRequest(
            "unknown sign-in state (forged, used twice, or older than ten minutes); start the sign-in again".into(),
        ));
    };
    let d = console.oidc.discover(&s.issuer()).await?;
    let tokens = exchange(console, &s, &d, &code, &verifier).await?;
    let mut claims = validate_id_token(console, &s, &d, &tokens.id_token, &nonce).await?;
    if let (Some(endpoint), Some(access)) = (&d.userinfo_endpoint, &tokens.access_token) {
        // Many providers put email and groups only in userinfo.
        if let Ok(info) = userinfo(console, endpoint, access).await
            && info.get("sub") == claims.get("sub")
        {
            for (k, v) in info {
                claims.entry(k).or_insert(v);
            }
        }
    }
    let (tenant, assignments) = console.archive.identity().sso_tenant(&s.tenant).await?.ok_or_else(|| {
        WebError::BadRequest(format!("the login settings name tenant {:?}, which does not exist", s.tenant))
    })?;
    let addresses = addresses_for(console, &s, &claims).await?;
    let known = match &addresses {
        Some(a) => a.clone(),
        None => match console.archive.identity().user_by_external_id(&external_id(&s, &claims)?).await? {
            Some(u) => u.addresses,
            None => Vec::new(),
        },
    };
    let (role, why) = assign_role(&claims, &known, &assignments);
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    let external_id = external_id(&s, &claims)?;
    let subject = external_id.rsplit_once('|').map(|(_, s)| s.to_owned()).unwrap_or_default();
    let wanted = text("preferred_username").or_else(|| text("email")).unwrap_or(subject);
    let display = text("name").unwrap_or_default();
    let claims_json = serde_json::to_string(&claims).unwrap_or_default();
    let account = console
        .archive
        .identity()
        .sign_in_externally(&tenant, &external_id, &wanted, &display, role, addresses, &claims_json, ip, &why)
        .await?;
    let cookie = crate::auth::start_session(console, &account, ip).await?;
    Ok(crate::auth::redirect_with_cookies("/search", &[cookie]))
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: String,
    access_token: Option<String>,
}

async fn exchange(
    console: &Console,
    s: &OidcSettings,
    d: &Discovery,
    code: &str,
    verifier: &str,
) -> Result<TokenResponse, WebError> {
    let mut form = vec![
        ("grant_type".to_owned(), "authorization_code".to_owned()),
        ("code".to_owned(), code.to_owned()),
        ("redirect_uri".to_owned(), redirect_uri(console, s)),
        ("code_verifier".to_owned(), verifier.to_owned()),
        ("client_id".to_owned(), s.client_id.clone()),
    ];
    let mut basic = None;
    if s.client_auth == "certificate" {
        let assertion = client_assertion(console, s, &d.token_endpoint)?;
        form.push(("client_assertion_type".into(), "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()));
        form.push(("client_assertion".into(), assertion));
    } else {
        let secret = console.archive.secrets().get(CLIENT_SECRET)?.ok_or_else(|| {
            WebError::BadRequest(
                "no client secret is set (Configuration → Login, or `coffer secret set oidc.client_secret`)".into(),
            )
        })?;
        let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        basic = Some(format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(&s.client_id), enc(&secret)))));
    }
    let agent = console.oidc.agent.clone();
    let endpoint = d.token_endpoint.clone();
    tokio::task::spawn_blocking(move || {
        let mut request = agent.post(&endpoint);
        if let Some(b) = basic {
            request = request.set("Authorization", &b);
        }
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let response = request.send_form(&pairs).map_err(|e| match unavailable(&endpoint, e) {
            WebError::Unavailable(m) if m.contains("answered 4") => {
                WebError::BadRequest(format!("the identity provider refused the code exchange: {m}"))
            }
            other => other,
        })?;
        response.into_json::<TokenResponse>().map_err(|e| WebError::Unavailable(format!("token response: {e}")))
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))?
}

/// A client assertion (RFC 7523) signed with the certificate's key: ES256 for EC keys, PS256
/// for RSA keys, with the certificate's SHA-256 thumbprint as `x5t#S256` and SHA-1 as `x5t`.
pub fn client_assertion(console: &Console, s: &OidcSettings, audience: &str) -> Result<String, WebError> {
    let certs = console.archive.certs();
    let key_pem = certs
        .private_key_pem(&s.certificate_alias)
        .map_err(|e| WebError::BadRequest(format!("certificate {:?} for single sign-on: {e}", s.certificate_alias)))?;
    let cert_pem = certs.certificate_pem(&s.certificate_alias)?;
    let der = pem_der(&cert_pem)?;
    let (key, alg) = match jsonwebtoken::EncodingKey::from_ec_pem(&key_pem) {
        Ok(k) => (k, jsonwebtoken::Algorithm::ES256),
        Err(_) => (
            jsonwebtoken::EncodingKey::from_rsa_pem(&key_pem).map_err(|e| {
                WebError::BadRequest(format!("the key of {:?} is neither EC nor RSA: {e}", s.certificate_alias))
            })?,
            jsonwebtoken::Algorithm::PS256,
        ),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(&der)));
    header.x5t = Some(URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der)));
    let now = coffer_archive::service::now_secs();
    let claims = serde_json::json!({
        "iss": s.client_id, "sub": s.client_id, "aud": audience,
        "jti": random_token(16), "iat": now, "nbf": now - 30, "exp": now + 300,
    });
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| WebError::Internal(format!("signing the client assertion: {e}")))
}

fn pem_der(pem: &str) -> Result<Vec<u8>, WebError> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body.trim()).map_err(|e| WebError::Internal(format!("certificate PEM: {e}")))
}

async fn validate_id_token(
    console: &Console,
    s: &OidcSettings,
    d: &Discovery,
    token: &str,
    nonce: &str,
) -> Result<Map<String, Value>, WebError> {
    let refused = |why: String| WebError::BadRequest(format!("the ID token was refused: {why}"));
    let header = jsonwebtoken::decode_header(token).map_err(|e| refused(e.to_string()))?;
    let find = |set: &JwkSet| match &header.kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    };
    let mut jwk = find(&console.oidc.keys(&d.jwks_uri, false).await?);
    if jwk.is_none() {
        // The provider may have rolled its keys since we cached them.
        jwk = find(&console.oidc.keys(&d.jwks_uri, true).await?);
    }
    let jwk = jwk.ok_or_else(|| refused(format!("no published key has id {:?}", header.kid)))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| refused(e.to_string()))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[s.issuer()]);
    validation.set_audience(&[&s.client_id]);
    validation.leeway = 60;
    // A token not valid yet (nbf in the future, beyond the clock leeway) is refused too.
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| refused(e.to_string()))?;
    let claims = data.claims;
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(refused("its nonce is not the one this sign-in sent (a replayed or forged token)".into()));
    }
    if s.is_entra() && claims.get("tid").and_then(Value::as_str) != Some(s.entra_tenant_id.as_str()) {
        return Err(refused(format!("it comes from another directory (tid {:?})", claims.get("tid"))));
    }
    Ok(claims)
}

async fn userinfo(console: &Console, endpoint: &str, access: &str) -> Result<Map<String, Value>, WebError> {
    let agent = console.oidc.agent.clone();
    let (endpoint, auth) = (endpoint.to_owned(), format!("Bearer {access}"));
    tokio::task::spawn_blocking(move || {
        let r = agent.get(&endpoint).set("Authorization", &auth).call().map_err(|e| unavailable(&endpoint, e))?;
        r.into_json().map_err(|e| WebError::Unavailable(e.to_string()))
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))?
}

/// Claims a user may be able to set themselves: an assignment on them would let anyone claim a
/// role; `domain` (of the addresses the provider vouches for) takes their place.
const SELF_ASSERTED: &[&str] =
    &["email", "preferred_username", "upn", "unique_name", "name", "given_name", "family_name", "nickname"];

/// The first assignment whose attribute holds the value (a string equal to it, or a list with it;
/// case-insensitive) gives the role; the attribute `domain` is the domain of one of `addresses`
/// (those the provider vouches for), and self-asserted claims never match. Without a match: the
/// User role (who sees only their own mail).
pub fn assign_role(
    claims: &Map<String, Value>,
    addresses: &[String],
    assignments: &[RoleAssignment],
) -> (Role, String) {
    for a in assignments {
        let holds = |v: &Value| match v {
            Value::String(s) => s.eq_ignore_ascii_case(a.value.trim()),
            Value::Bool(b) => b.to_string() == a.value.trim(),
            Value::Number(n) => n.to_string() == a.value.trim(),
            _ => false,
        };
        let matched = if a.attribute == "domain" {
            addresses
                .iter()
                .any(|addr| addr.rsplit_once('@').is_some_and(|(_, d)| d.eq_ignore_ascii_case(a.value.trim())))
        } else if SELF_ASSERTED.contains(&a.attribute.to_ascii_lowercase().as_str()) {
            false
        } else {
            match claims.get(&a.attribute) {
                Some(Value::Array(items)) => items.iter().any(holds),
                Some(v) => holds(v),
                None => false,
            }
        };
        if matched && let Some(role) = Role::parse(&a.role) {
            return (role, format!("{} = {}", a.attribute, a.value));
        }
    }
    (Role::User, "no role assignment matched".into())
}

/// The mail addresses the identity provider vouches for: the `email` claim when `email_verified`
/// is true (Entra ID says so with the optional claim `xms_edov`). Names a user may be able to set
/// themselves — `preferred_username`, `upn`, an unverified `email` — are never addresses.
pub fn verified_addresses(claims: &Map<String, Value>) -> Vec<String> {
    let vouched = |k: &str| match claims.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    if !(vouched("email_verified") || vouched("xms_edov")) {
        return Vec::new();
    }
    claims
        .get("email")
        .and_then(Value::as_str)
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| v.contains('@'))
        .into_iter()
        .collect()
}

/// The addresses a signed-in user gets under the login settings; None: keep the account's own
/// (set by an administrator).
async fn addresses_for(
    console: &Console,
    s: &OidcSettings,
    claims: &Map<String, Value>,
) -> Result<Option<Vec<String>>, WebError> {
    match s.addresses_from.as_str() {
        crate::settings::CONFIGURED => Ok(None),
        crate::settings::DIRECTORY => {
            // The token's tid was checked against the settings; the oid is the directory's object id.
            let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
            let (Some(tid), Some(oid)) = (text("tid"), text("oid")) else {
                return Err(WebError::BadRequest("the ID token names no directory object (tid, oid)".into()));
            };
            let lookup = console.sources.directory_addresses(&tid, &oid).ok_or_else(|| {
                WebError::Unavailable(format!(
                    "addresses come from the directory, but no Microsoft 365 connection has tenant_id {tid}"
                ))
            })?;
            let found = lookup.await.map_err(|e| WebError::Unavailable(format!("directory lookup: {e}")))?;
            Ok(Some(found))
        }
        _ => Ok(Some(verified_addresses(claims))),
    }
}

/// The account's key: the issuer (for Entra ID it names the directory, `tid`) and the subject
/// (Entra's `oid`, the same for the user in every app; elsewhere `sub`).
fn external_id(s: &OidcSettings, claims: &Map<String, Value>) -> Result<String, WebError> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    let subject = (if s.is_entra() { text("oid") } else { None })
        .or_else(|| text("sub"))
        .ok_or_else(|| WebError::BadRequest("the ID token has no subject".into()))?;
    Ok(format!("{}|{subject}", s.issuer()))
}

/// Entra ID's admin-consent page for this app, for the "Request admin consent" button.
pub fn admin_consent_url(console: &Console, s: &OidcSettings) -> Option<String> {
    if !s.is_entra() || s.entra_tenant_id.is_empty() || s.client_id.is_empty() {
        return None;
    }
    let mut url =
        url::Url::parse(&format!("{}/{}/adminconsent", s.login_host.trim_end_matches('/'), s.entra_tenant_id)).ok()?;
    url.query_pairs_mut().append_pair("client_id", &s.client_id).append_pair("redirect_uri", &redirect_uri(console, s));
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn a(attribute: &str, value: &str, role: &str) -> RoleAssignment {
        RoleAssignment { attribute: attribute.into(), value: value.into(), role: role.into() }
    }

    #[test]
    fn the_first_matching_assignment_gives_the_role() {
        let alice = claims(
            serde_json::json!({"sub": "alice", "email": "alice@contoso.com", "email_verified": true, "groups": ["archive-admins"]}),
        );
        let list = [
            a("groups", "archive-readers", "auditor"),
            a("groups", "ARCHIVE-ADMINS", "administrator"),
            a("domain", "contoso.com", "auditor"),
        ];
        assert_eq!(assign_role(&alice, &verified_addresses(&alice), &list).0, Role::Administrator);
        let carol = claims(serde_json::json!({"sub": "carol", "email": "carol@contoso.com", "email_verified": true}));
        assert_eq!(assign_role(&carol, &verified_addresses(&carol), &list).0, Role::Auditor);
        let mallory =
            claims(serde_json::json!({"sub": "m", "email": "m@fabrikam.com", "groups": "archive-admins-not"}));
        assert_eq!(assign_role(&mallory, &verified_addresses(&mallory), &list).0, Role::User);
    }

    #[test]
    fn an_unverified_email_or_a_chosen_username_gives_no_address_and_no_domain_role() {
        let list = [a("domain", "contoso.com", "auditor"), a("email", "ceo@contoso.com", "administrator")];
        for forged in [
            serde_json::json!({"sub": "m", "email": "ceo@contoso.com"}),
            serde_json::json!({"sub": "m", "email": "ceo@contoso.com", "email_verified": false}),
            serde_json::json!({"sub": "m", "preferred_username": "ceo@contoso.com", "upn": "ceo@contoso.com"}),
        ] {
            let c = claims(forged.clone());
            assert!(verified_addresses(&c).is_empty(), "{forged}");
            assert_eq!(assign_role(&c, &verified_addresses(&c), &list).0, Role::User, "{forged}");
        }
        // Even a verified email does not match an assignment on the self-asserted claim itself.
        let verified = claims(serde_json::json!({"sub": "c", "email": "ceo@contoso.com", "email_verified": true}));
        assert_eq!(verified_addresses(&verified), ["ceo@contoso.com"]);
        assert_eq!(assign_role(&verified, &verified_addresses(&verified), &list[1..]).0, Role::User);
        // Entra ID vouches with xms_edov.
        let entra = claims(serde_json::json!({"oid": "o", "email": "Bob@Contoso.com", "xms_edov": true}));
        assert_eq!(verified_addresses(&entra), ["bob@contoso.com"]);
    }

    #[test]
    fn entra_wids_map_a_global_administrator() {
        let ga = claims(
            serde_json::json!({"wids": ["62e90394-69f5-4237-9190-012177145e10", "b79fbf4d-3ef9-4689-8143-76b194e85509"]}),
        );
        let list = [a("wids", "62e90394-69f5-4237-9190-012177145e10", "administrator")];
        assert_eq!(assign_role(&ga, &[], &list).0, Role::Administrator);
    }
}
