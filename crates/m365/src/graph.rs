//! Talking to Microsoft: tokens by client credentials with a signed client assertion (one per
//! resource, cached until shortly before expiry), and Graph requests that honour throttling
//! (429/503/504 with `Retry-After`) and turn Microsoft's errors into advice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use sha1::Digest;

use crate::{M365Config, M365Error};

pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Exchange Online's IMAP and POP with application permissions.
pub const OUTLOOK_SCOPE: &str = "https://outlook.office365.com/.default";

/// What a request ended with when it was not a success.
#[derive(Debug)]
pub enum Failure {
    /// 410 Gone: a delta link that expired; the folder starts over.
    Gone,
    NotFound,
    /// 404 `MailboxNotEnabledForRESTAPI`/`MailboxNotSupportedForRESTAPI`: the user has no
    /// Exchange Online mailbox (no licence, inactive, soft-deleted or on-premises).
    NoMailbox,
    Other(M365Error),
}

impl From<M365Error> for Failure {
    fn from(e: M365Error) -> Self {
        Failure::Other(e)
    }
}

pub struct Graph {
    pub config: M365Config,
    agent: ureq::Agent,
    key_pem: Vec<u8>,
    certificate_der: Vec<u8>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Requests Graph throttled (429/503/504), for the status.
    pub throttled: std::sync::atomic::AtomicU64,
}

impl Graph {
    pub fn new(config: M365Config, certificate_pem: &str, key_pem: Vec<u8>) -> Result<Graph, M365Error> {
        let body: String = certificate_pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let certificate_der = STANDARD
            .decode(body.trim())
            .map_err(|e| M365Error::Advice(format!("certificate {:?} is not PEM: {e}", config.certificate)))?;
        Ok(Graph {
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build(),
            config,
            key_pem,
            certificate_der,
            tokens: Mutex::default(),
            throttled: Default::default(),
        })
    }

    fn token_endpoint(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.config.login_host.trim_end_matches('/'), self.config.tenant_id)
    }

    /// A client assertion (RFC 7523): PS256 with `x5t#S256` by default, RS256 with `x5t` when
    /// configured (older tenants).
    pub fn client_assertion(&self) -> Result<String, M365Error> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&self.key_pem).map_err(|_| {
            M365Error::Advice(format!(
                "certificate {:?} has no RSA key: Entra ID takes RSA certificates; make one with `coffer m365 manifest --alias …` or `coffer cert generate --rsa`",
                self.config.certificate
            ))
        })?;
        let mut header = if self.config.assertion == "rs256" {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            h.x5t = Some(URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&self.certificate_der)));
            h
        } else {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
            h.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&self.certificate_der)));
            h
        };
        header.typ = Some("JWT".into());
        let now = coffer_archive::service::now_secs();
        let claims = serde_json::json!({
            "aud": self.token_endpoint(), "iss": self.config.client_id, "sub": self.config.client_id,
            "jti": coffer_archive::manifest::new_guid(), "nbf": now - 30, "iat": now, "exp": now + 600,
        });
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| M365Error::Advice(format!("signing: {e}")))
    }

    /// An access token for `scope`, from the cache while it has more than five minutes left.
    pub fn token(&self, scope: &str) -> Result<String, M365Error> {
        if let Some((t, until)) = self.tokens.lock().unwrap().get(scope)
            && *until > Instant::now()
        {
            return Ok(t.clone());
        }
        let assertion = self.client_assertion()?;
        let endpoint = self.token_endpoint();
        let response = self.agent.post(&endpoint).send_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &self.config.client_id),
            ("scope", scope),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &assertion),
        ]);
        let body: Value = match response {
            Ok(r) => r.into_json().map_err(|e| M365Error::Advice(format!("token endpoint answered no JSON: {e}")))?,
            Err(ureq::Error::Status(code, r)) => {
                let body: Value = r.into_json().unwrap_or_default();
                return Err(token_advice(code, &body));
            }
            Err(e) => return Err(M365Error::Unreachable(format!("{endpoint}: {e}"))),
        };
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| M365Error::Advice(format!("the token endpoint answered without a token: {body}")))?
            .to_owned();
        let lifetime = body["expires_in"].as_u64().unwrap_or(3600);
        let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(300).max(30));
        self.tokens.lock().unwrap().insert(scope.to_owned(), (token.clone(), until));
        Ok(token)
    }

    /// A Graph path (`/v1.0/…`) or a full link Graph gave (`@odata.nextLink`).
    pub fn url(&self, path_or_link: &str) -> String {
        if path_or_link.starts_with("http") {
            path_or_link.to_owned()
        } else {
            format!("{}{path_or_link}", self.config.graph_host.trim_end_matches('/'))
        }
    }

    pub fn get(&self, path_or_link: &str) -> Result<ureq::Response, Failure> {
        self.request("GET", path_or_link, None)
    }

    /// POST or PATCH a JSON body; the answer's JSON (empty for 204).
    pub fn send(&self, method: &str, path: &str, body: &Value) -> Result<Value, Failure> {
        let response = self.request(method, path, Some(body))?;
        if response.status() == 204 {
            return Ok(Value::Null);
        }
        response.into_json().map_err(|e| Failure::Other(M365Error::Unreachable(format!("Graph answered no JSON: {e}"))))
    }

    /// A request with retries: throttling waits as long as `Retry-After` says (at most two
    /// minutes at a time, eight times in a row); a 401 gets a fresh token once.
    fn request(&self, method: &str, path_or_link: &str, body: Option<&Value>) -> Result<ureq::Response, Failure> {
        let url = self.url(path_or_link);
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.token(GRAPH_SCOPE)?;
            let request = self.agent.request(method, &url).set("Authorization", &format!("Bearer {token}"));
            let result = match body {
                Some(b) => request.send_json(b.clone()),
                None => request.call(),
            };
            match result {
                Ok(r) => return Ok(r),
                Err(ureq::Error::Status(code @ (429 | 503 | 504), r)) if attempt <= 8 => {
                    self.throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let wait = r
                        .header("Retry-After")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(2 << attempt.min(5));
                    tracing::info!(code, wait, %url, "Graph throttled; waiting as asked");
                    std::thread::sleep(Duration::from_secs(wait.min(120)));
                }
                Err(ureq::Error::Status(401, _)) if !refreshed => {
                    refreshed = true;
                    self.tokens.lock().unwrap().clear();
                }
                Err(ureq::Error::Status(410, _)) => return Err(Failure::Gone),
                Err(ureq::Error::Status(404, r)) => {
                    let body: Value = r.into_json().unwrap_or_default();
                    return Err(match body["error"]["code"].as_str() {
                        Some("MailboxNotEnabledForRESTAPI" | "MailboxNotSupportedForRESTAPI") => Failure::NoMailbox,
                        _ => Failure::NotFound,
                    });
                }
                Err(ureq::Error::Status(code, r)) => {
                    let body: Value = r.into_json().unwrap_or_default();
                    return Err(Failure::Other(graph_advice(code, &body, &url)));
                }
                Err(e) => return Err(Failure::Other(M365Error::Unreachable(format!("{url}: {e}")))),
            }
        }
    }

    pub fn get_json(&self, path_or_link: &str) -> Result<Value, Failure> {
        self.get(path_or_link)?
            .into_json()
            .map_err(|e| Failure::Other(M365Error::Unreachable(format!("Graph answered no JSON: {e}"))))
    }

    pub fn get_bytes(&self, path_or_link: &str, limit: u64) -> Result<Vec<u8>, Failure> {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(self.get(path_or_link)?.into_reader(), limit + 1),
            &mut bytes,
        )
        .map_err(|e| Failure::Other(M365Error::Unreachable(format!("reading a message from Graph: {e}"))))?;
        Ok(bytes)
    }

    /// Every item of a paged collection (`value` + `@odata.nextLink`).
    pub fn all(&self, path: &str) -> Result<Vec<Value>, Failure> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(link) = next {
            let page = self.get_json(&link)?;
            out.extend(page["value"].as_array().cloned().unwrap_or_default());
            next = page["@odata.nextLink"].as_str().map(str::to_owned);
        }
        Ok(out)
    }
}

/// Microsoft's token errors, turned into what to do.
fn token_advice(code: u16, body: &Value) -> M365Error {
    let description = body["error_description"].as_str().unwrap_or_default();
    let first_line = description.lines().next().unwrap_or_default();
    let advice = if description.contains("AADSTS700027") || description.contains("AADSTS700024") {
        "the app does not know Coffer's certificate: upload the updated manifest (`coffer m365 manifest`) in the Azure portal"
    } else if description.contains("AADSTS700016") {
        "no such application in this directory: check the client (application) id and the tenant id"
    } else if description.contains("AADSTS90002") || description.contains("AADSTS900023") {
        "no such tenant: check the directory (tenant) id"
    } else if description.contains("AADSTS7000215") {
        "the client secret or assertion is wrong"
    } else {
        "check tenant id, client id and certificate"
    };
    M365Error::Advice(format!(
        "Entra ID refused the token ({code} {}): {first_line} → {advice}",
        body["error"].as_str().unwrap_or("")
    ))
}

fn graph_advice(code: u16, body: &Value, url: &str) -> M365Error {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let advice = match code {
        403 if message.contains("AccessPolicy") => {
            "this mailbox is outside the app's application access policy (Exchange's New-ApplicationAccessPolicy or RBAC for Applications): add it to the policy's group, or leave it out of `mailboxes`/`group`"
        }
        403 => {
            "grant the app's application permissions (Mail.Read, User.Read.All, …) and admin consent, and check the application access policy"
        }
        401 => "the token was refused: check the app registration and its certificate",
        500..=599 => "a fault on Microsoft's side: the next run or sync tries again",
        _ => "Microsoft Graph refused the request",
    };
    M365Error::Advice(format!("Graph answered {code} for {url}: {message} → {advice}"))
}

/// The mail addresses Entra ID lists for a user (by object id): `mail` and every `smtp:` entry of
/// `proxyAddresses`, lowercased. Needs `User.Read.All`, which the archive's app has. An empty list
/// for an object the directory does not know.
pub fn directory_addresses(g: &Graph, object_id: &str) -> Result<Vec<String>, M365Error> {
    let path = format!(
        "/v1.0/users/{}?$select=mail,proxyAddresses",
        url::form_urlencoded::byte_serialize(object_id.as_bytes()).collect::<String>()
    );
    let user = match g.get_json(&path) {
        Ok(v) => v,
        Err(Failure::NotFound) => return Ok(Vec::new()),
        Err(f) => return Err(crate::import::failure(f)),
    };
    let mut out: Vec<String> = user["mail"].as_str().into_iter().map(str::to_owned).collect();
    for entry in user["proxyAddresses"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if let Some((kind, address)) = entry.split_once(':')
            && kind.eq_ignore_ascii_case("smtp")
        {
            out.push(address.to_owned());
        }
    }
    let mut out: Vec<String> = out.iter().map(|a| a.trim().to_lowercase()).filter(|a| a.contains('@')).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// A person by principal name, address or object id, with the groups and directory roles they
/// are a direct member of (`memberOf`; needs `User.Read.All` and `GroupMember.Read.All`). None
/// for a person the directory does not know.
pub fn lookup(g: &Graph, user: &str) -> Result<Option<coffer_archive::sources::DirectoryEntry>, M365Error> {
    let key = url::form_urlencoded::byte_serialize(user.trim().as_bytes()).collect::<String>();
    let found = match g.get_json(&format!("/v1.0/users/{key}?$select=id,userPrincipalName,displayName")) {
        Ok(v) => v,
        Err(Failure::NotFound) => return Ok(None),
        Err(f) => return Err(crate::import::failure(f)),
    };
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let id = text(&found, "id");
    let members = g
        .all(&format!("/v1.0/users/{id}/memberOf?$select=id,displayName,roleTemplateId&$top=100"))
        .map_err(crate::import::failure)?;
    let (mut roles, mut groups) = (Vec::new(), Vec::new());
    for m in &members {
        match m["@odata.type"].as_str() {
            Some("#microsoft.graph.directoryRole") => roles.push((text(m, "roleTemplateId"), text(m, "displayName"))),
            Some("#microsoft.graph.group") => groups.push((text(m, "id"), text(m, "displayName"))),
            _ => {}
        }
    }
    Ok(Some(coffer_archive::sources::DirectoryEntry {
        user_principal_name: text(&found, "userPrincipalName"),
        display_name: text(&found, "displayName"),
        id,
        roles,
        groups,
    }))
}

/// "Test connection": a token, one user listed, that user's mail folders read; each failure
/// comes with advice (an unknown certificate → upload the manifest; 403 → consent or policy).
pub fn test_connection(g: &Graph) -> Result<String, M365Error> {
    let fail = crate::import::failure;
    g.token(GRAPH_SCOPE)?;
    let users = g.get_json("/v1.0/users?$select=id,userPrincipalName&$top=1").map_err(fail)?;
    let first = users["value"][0].clone();
    let Some(id) = first["id"].as_str() else { return Ok("token ok; the directory lists no users".into()) };
    let folders = g.all(&format!("/v1.0/users/{id}/mailFolders?$top=100")).map_err(fail)?;
    Ok(format!(
        "token ok; user {} has {} top-level mail folders",
        first["userPrincipalName"].as_str().unwrap_or(id),
        folders.len()
    ))
}
