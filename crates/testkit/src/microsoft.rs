//! A stateful fake of the Microsoft identity platform's token endpoint and of Microsoft Graph's
//! mail endpoints, following their documented request and response shapes, for the tests that
//! cannot reach Microsoft. It keeps an app registration whose manifest lists the certificates it
//! trusts (a client assertion signed by another key fails as Entra ID fails, with AADSTS700027),
//! users, nested mail folders and messages, and a change log per folder from which it serves
//! `messages/delta` with `@odata.nextLink`, `@odata.deltaLink` and `@removed`. Tests can make it
//! answer 429 with `Retry-After` at chosen requests and 410 for a folder's delta link.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::Digest;

pub struct FakeMicrosoft {
    pub base: String,
    pub tenant_id: String,
    pub client_id: String,
    state: Arc<Mutex<FakeState>>,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Default)]
struct FakeState {
    base: String,
    tenant_id: String,
    client_id: String,
    manifest: Value,
    trusted: Vec<Vec<u8>>,
    tokens: HashSet<String>,
    users: Vec<User>,
    messages: HashMap<String, Vec<u8>>,
    graph_requests: usize,
    throttle_at: HashSet<usize>,
    /// Graph requests still to answer 500 (an outage).
    failing: usize,
    expire: HashSet<String>,
    page_size: usize,
    subscriptions: Vec<Subscription>,
    groups: HashMap<String, Vec<String>>,
    scopes: Vec<String>,
    /// The claims of whoever signs in at the authorize endpoint next.
    browser_user: Value,
    /// A tenant administrator granted the app's permissions (`/adminconsent`).
    consented: bool,
    codes: HashMap<String, PendingCode>,
    subscription_lifetime: i64,
    in_flight: HashMap<String, usize>,
    max_in_flight: usize,
    /// The most mailboxes with `$value` requests in flight at one moment.
    max_mailboxes_at_once: usize,
    next_id: usize,
}

struct PendingCode {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    claims: Value,
}

#[derive(Clone)]
pub struct Subscription {
    pub id: String,
    pub user: String,
    pub url: String,
    pub client_state: String,
    /// Unix seconds.
    pub expires: i64,
    pub renewals: usize,
}

struct User {
    id: String,
    upn: String,
    /// More addresses Exchange delivers to (`proxyAddresses` as `smtp:` entries).
    aliases: Vec<String>,
    /// What Graph answers for anything in this user's mailbox instead of the data.
    refusal: Option<Refusal>,
    folders: Vec<Folder>,
    events: Vec<Value>,
    contacts: Vec<Value>,
    contact_folders: Vec<(String, String, Vec<Value>)>,
    /// Groups and directory roles the user is a member of, as `memberOf` lists them.
    member_of: Vec<Value>,
}

#[derive(Clone, Copy)]
enum Refusal {
    NoMailbox,
    AccessPolicy,
}

impl Refusal {
    fn answer(self) -> Response {
        match self {
            Refusal::NoMailbox => graph_error(
                StatusCode::NOT_FOUND,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            ),
            Refusal::AccessPolicy => graph_error(
                StatusCode::FORBIDDEN,
                "ErrorAccessDenied",
                "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.",
            ),
        }
    }
}

struct Folder {
    id: String,
    name: String,
    well_known: Option<&'static str>,
    parent: Option<String>,
    /// Every change in order: (message id, present after the change).
    log: Vec<(String, bool)>,
}

impl Folder {
    /// The messages present after the first `p` changes, in the order they arrived.
    fn present_at(&self, p: usize) -> Vec<String> {
        let mut present: Vec<String> = Vec::new();
        for (id, here) in &self.log[..p] {
            present.retain(|x| x != id);
            if *here {
                present.push(id.clone());
            }
        }
        present
    }
}

impl FakeMicrosoft {
    pub fn start(tenant_id: &str, client_id: &str) -> FakeMicrosoft {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let manifest = json!({
            "id": "00000000-0000-0000-0000-00000000a990", "appId": client_id, "displayName": "Coffer archive",
            "signInAudience": "AzureADMyOrg", "keyCredentials": [], "passwordCredentials": [],
            "requiredResourceAccess": [{"resourceAppId": "00000003-0000-0000-c000-000000000000", "resourceAccess": [
                {"id": "810c84a8-4a9e-49e6-bf7d-12d183f40d01", "type": "Role"}]}],
        });
        let state = Arc::new(Mutex::new(FakeState {
            base: base.clone(),
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            manifest,
            page_size: 25,
            subscription_lifetime: 3 * 86400,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/{tenant}/v2.0/.well-known/openid-configuration", get(discovery))
            .route("/{tenant}/discovery/v2.0/keys", get(keys))
            .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
            .route("/{tenant}/adminconsent", get(admin_consent))
            .route("/v1.0/users", get(users))
            .route("/v1.0/users/{user}", get(user))
            .route("/v1.0/users/{user}/memberOf", get(member_of))
            .route("/v1.0/groups/{group}/members/microsoft.graph.user", get(group_members))
            .route("/v1.0/users/{user}/mailFolders", get(top_folders))
            .route("/v1.0/users/{user}/mailFolders/{folder}", get(folder))
            .route("/v1.0/users/{user}/mailFolders/{folder}/childFolders", get(child_folders))
            .route("/v1.0/users/{user}/mailFolders/{folder}/messages/delta", get(delta))
            .route("/v1.0/users/{user}/messages/{message}/$value", get(mime))
            .route("/v1.0/users/{user}/calendarView/delta", get(events_delta))
            .route("/v1.0/users/{user}/contacts/delta", get(contacts_delta))
            .route("/v1.0/users/{user}/contactFolders", get(contact_folders))
            .route("/v1.0/users/{user}/contactFolders/{folder}/contacts/delta", get(folder_contacts_delta))
            .route("/v1.0/subscriptions", post(subscribe))
            .route("/portal/manifest", get(portal_manifest).post(portal_upload))
            .route("/v1.0/subscriptions/{id}", axum::routing::patch(renew))
            .with_state(state.clone());
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeMicrosoft { base, tenant_id: tenant_id.into(), client_id: client_id.into(), state, _runtime: runtime }
    }

    /// The app's manifest, as the Azure portal's Manifest page downloads it.
    pub fn manifest(&self) -> Value {
        self.state.lock().unwrap().manifest.clone()
    }

    /// The administrator uploads a manifest: its `keyCredentials` become the certificates the
    /// app trusts.
    pub fn upload_manifest(&self, manifest: &Value) {
        upload(&mut self.state.lock().unwrap(), manifest);
    }

    pub fn add_user(&self, upn: &str) -> String {
        let mut s = self.state.lock().unwrap();
        let id = s.new_id("user");
        let mut folders = Vec::new();
        for (name, well_known) in [
            ("Inbox", "inbox"),
            ("Sent Items", "sentitems"),
            ("Drafts", "drafts"),
            ("Deleted Items", "deleteditems"),
            ("Junk Email", "junkemail"),
        ] {
            let fid = s.new_id("folder");
            folders.push(Folder {
                id: fid,
                name: name.into(),
                well_known: Some(well_known),
                parent: None,
                log: Vec::new(),
            });
        }
        s.users.push(User {
            id: id.clone(),
            upn: upn.into(),
            aliases: Vec::new(),
            refusal: None,
            folders,
            events: Vec::new(),
            contacts: Vec::new(),
            contact_folders: Vec::new(),
            member_of: Vec::new(),
        });
        id
    }

    /// Makes the user a member of a new security group; its object id (a GUID, as Entra ID's).
    pub fn add_to_group(&self, user: &str, display_name: &str) -> String {
        let mut s = self.state.lock().unwrap();
        let n = s.next_id + 1;
        let id = format!("{:08x}-0000-4000-8000-{:012x}", 0x6a0u32 + n as u32, n);
        s.next_id = n;
        let i = s.user_index(user).expect("a user of this fake");
        s.users[i]
            .member_of
            .push(json!({"@odata.type": "#microsoft.graph.group", "id": id, "displayName": display_name,
            "securityEnabled": true}));
        id
    }

    /// Gives the user a directory role (e.g. Global Administrator, once named "Company
    /// Administrator", template 62e90394-69f5-4237-9190-012177145e10).
    pub fn add_to_directory_role(&self, user: &str, display_name: &str, role_template_id: &str) {
        let mut s = self.state.lock().unwrap();
        let id = s.new_id("role");
        let i = s.user_index(user).expect("a user of this fake");
        s.users[i].member_of.push(json!({"@odata.type": "#microsoft.graph.directoryRole", "id": id,
            "displayName": display_name, "roleTemplateId": role_template_id}));
    }

    /// The id of a user's folder by its well-known name (`inbox`, `junkemail`, …) or display name.
    pub fn folder_id(&self, user: &str, name: &str) -> String {
        let s = self.state.lock().unwrap();
        let u = s.users.iter().find(|u| u.id == user).unwrap();
        u.folders.iter().find(|f| f.well_known == Some(name) || f.name == name).unwrap().id.clone()
    }

    pub fn add_folder(&self, user: &str, parent: Option<&str>, name: &str) -> String {
        let mut s = self.state.lock().unwrap();
        let id = s.new_id("folder");
        let u = s.users.iter_mut().find(|u| u.id == user).unwrap();
        u.folders.push(Folder {
            id: id.clone(),
            name: name.into(),
            well_known: None,
            parent: parent.map(str::to_owned),
            log: Vec::new(),
        });
        id
    }

    pub fn add_message(&self, user: &str, folder: &str, raw: &[u8]) -> String {
        let mut s = self.state.lock().unwrap();
        let id = s.new_id("AAMkAG");
        s.messages.insert(id.clone(), raw.to_vec());
        let u = s.users.iter_mut().find(|u| u.id == user).unwrap();
        u.folders.iter_mut().find(|f| f.id == folder).unwrap().log.push((id.clone(), true));
        id
    }

    /// Adds (or, with the id of an existing one, changes) a calendar event: Graph's event JSON.
    pub fn add_event(&self, user: &str, mut event: Value) -> String {
        let mut s = self.state.lock().unwrap();
        let id = event["id"].as_str().map(str::to_owned).unwrap_or_else(|| s.new_id("AAMkEv"));
        event["id"] = json!(id);
        s.users.iter_mut().find(|u| u.id == user).unwrap().events.push(event);
        id
    }

    /// Adds a contact to the default Contacts folder, or to a named contact folder.
    pub fn add_contact(&self, user: &str, folder: Option<&str>, mut contact: Value) -> String {
        let mut s = self.state.lock().unwrap();
        let id = s.new_id("AAMkCt");
        contact["id"] = json!(id);
        let fid = s.new_id("contactfolder");
        let u = s.users.iter_mut().find(|u| u.id == user).unwrap();
        match folder {
            None => u.contacts.push(contact),
            Some(name) => match u.contact_folders.iter_mut().find(|f| f.1 == name) {
                Some(f) => f.2.push(contact),
                None => u.contact_folders.push((fid, name.into(), vec![contact])),
            },
        }
        id
    }

    /// A directory user without an Exchange Online mailbox (no licence, inactive, or on-premises):
    /// Graph lists the user, and answers 404 `MailboxNotEnabledForRESTAPI` for their mail.
    /// Another address the user receives mail at (a `proxyAddresses` entry).
    pub fn add_alias(&self, user: &str, alias: &str) {
        let mut s = self.state.lock().unwrap();
        let i = s.user_index(user).expect("a user of this fake");
        s.users[i].aliases.push(alias.into());
    }

    pub fn add_user_without_mailbox(&self, upn: &str) -> String {
        let id = self.add_user(upn);
        self.refuse(&id, Refusal::NoMailbox);
        id
    }

    /// An application access policy keeps the app out of this mailbox: 403 `ErrorAccessDenied`.
    pub fn block_by_access_policy(&self, user: &str) {
        self.refuse(user, Refusal::AccessPolicy);
    }

    fn refuse(&self, user: &str, refusal: Refusal) {
        let mut s = self.state.lock().unwrap();
        s.users.iter_mut().find(|u| u.id == user).unwrap().refusal = Some(refusal);
    }

    /// The most mailboxes whose messages were being fetched at one moment.
    pub fn max_mailboxes_at_once(&self) -> usize {
        self.state.lock().unwrap().max_mailboxes_at_once
    }

    /// Moves a message between folders (Graph keeps its id).
    pub fn move_message(&self, user: &str, message: &str, from: &str, to: &str) {
        let mut s = self.state.lock().unwrap();
        let u = s.users.iter_mut().find(|u| u.id == user).unwrap();
        u.folders.iter_mut().find(|f| f.id == from).unwrap().log.push((message.into(), false));
        u.folders.iter_mut().find(|f| f.id == to).unwrap().log.push((message.into(), true));
    }

    /// Graph requests with these (1-based) numbers answer 429 with `Retry-After: 1`.
    pub fn throttle_requests(&self, numbers: impl IntoIterator<Item = usize>) {
        self.state.lock().unwrap().throttle_at.extend(numbers);
    }

    /// The next `n` Graph requests answer 500 InternalServerError, which the client does not
    /// retry by itself (unlike 429/503/504): whoever made the request sees it fail.
    pub fn fail_next_requests(&self, n: usize) {
        self.state.lock().unwrap().failing = n;
    }

    /// The next use of a delta or next link of this folder answers 410 Gone.
    pub fn expire_delta(&self, folder: &str) {
        self.state.lock().unwrap().expire.insert(folder.into());
    }

    /// Planned 429 answers not yet given.
    pub fn pending_throttles(&self) -> usize {
        self.state.lock().unwrap().throttle_at.len()
    }

    pub fn graph_requests(&self) -> usize {
        self.state.lock().unwrap().graph_requests
    }

    /// The most `$value` requests one mailbox had in flight at once.
    pub fn max_concurrent_per_mailbox(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// The scopes of the client-credentials tokens issued so far, in order.
    pub fn scopes_issued(&self) -> Vec<String> {
        self.state.lock().unwrap().scopes.clone()
    }

    /// A security group with these users as members; its object id.
    pub fn add_group(&self, members: &[&str]) -> String {
        let mut s = self.state.lock().unwrap();
        let id = s.new_id("group");
        s.groups.insert(id.clone(), members.iter().map(|m| m.to_string()).collect());
        id
    }

    /// Who signs in at the authorize endpoint (the ID token's claims: sub, oid, preferred_username,
    /// name, roles, groups, wids; `tid` defaults to the tenant).
    /// Whether an administrator granted the app's permissions through `/adminconsent`.
    pub fn admin_consented(&self) -> bool {
        self.state.lock().unwrap().consented
    }

    pub fn sign_in_as(&self, claims: Value) {
        self.state.lock().unwrap().browser_user = claims;
    }

    /// The lifetime Graph grants new and renewed subscriptions.
    pub fn set_subscription_lifetime(&self, seconds: i64) {
        self.state.lock().unwrap().subscription_lifetime = seconds;
    }

    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.state.lock().unwrap().subscriptions.clone()
    }

    /// Forgets a subscription, as Graph does when one lapses or is removed.
    pub fn drop_subscriptions(&self) {
        self.state.lock().unwrap().subscriptions.clear();
    }

    /// Sends a change notification for a user's message to the user's subscription, with the
    /// subscription's client state (or the one given); the webhook's status code.
    pub fn notify(&self, user: &str, message: &str, change: &str, client_state: Option<&str>) -> u16 {
        let (sub, tenant) = {
            let s = self.state.lock().unwrap();
            (
                s.subscriptions.iter().find(|x| x.user == user).cloned().expect("no subscription for the user"),
                s.tenant_id.clone(),
            )
        };
        let body = json!({"value": [{
            "subscriptionId": sub.id, "subscriptionExpirationDateTime": rfc3339(sub.expires), "changeType": change,
            "resource": format!("Users/{user}/Messages/{message}"),
            "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "@odata.id": format!("Users/{user}/Messages/{message}"), "id": message},
            "clientState": client_state.unwrap_or(&sub.client_state), "tenantId": tenant,
        }]});
        post_json(&sub.url, &body)
    }

    /// Sends a lifecycle event (`missed`, `reauthorizationRequired`, `subscriptionRemoved`).
    pub fn lifecycle(&self, user: &str, event: &str) -> u16 {
        let (sub, tenant) = {
            let s = self.state.lock().unwrap();
            (
                s.subscriptions.iter().find(|x| x.user == user).cloned().expect("no subscription for the user"),
                s.tenant_id.clone(),
            )
        };
        let body = json!({"value": [{
            "lifecycleEvent": event, "subscriptionId": sub.id, "subscriptionExpirationDateTime": rfc3339(sub.expires),
            "resource": format!("users/{user}/messages"), "clientState": sub.client_state, "tenantId": tenant,
        }]});
        post_json(&sub.url, &body)
    }

    pub fn set_page_size(&self, n: usize) {
        self.state.lock().unwrap().page_size = n.max(1);
    }
}

impl FakeState {
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:06}", self.next_id)
    }

    /// A user by id or principal name.
    fn user_index(&self, id: &str) -> Option<usize> {
        self.users.iter().position(|u| u.id == id || u.upn.eq_ignore_ascii_case(id))
    }
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({"error": error, "error_description": description, "error_codes": []}))).into_response()
}

async fn token(State(state): State<Arc<Mutex<FakeState>>>, Path(tenant): Path<String>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let mut s = state.lock().unwrap();
    if tenant != s.tenant_id {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    if form.get("client_id") != Some(&s.client_id) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: Application with identifier was not found in the directory.",
        );
    }
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    if !matches!(grant.as_str(), "client_credentials" | "authorization_code")
        || form.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: The request body must contain a client assertion.",
        );
    }
    let assertion = form.get("client_assertion").cloned().unwrap_or_default();
    let Ok(header) = jsonwebtoken::decode_header(&assertion) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "AADSTS50027: JWT token is invalid or malformed.",
        );
    };
    let cert = s.trusted.iter().find(|der| {
        header.x5t_s256.as_deref() == Some(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der)).as_str())
            || header.x5t.as_deref() == Some(URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der)).as_str())
    });
    let Some(cert) = cert else {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found.]",
        );
    };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "bad registered certificate");
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_der(&parsed.public_key().subject_public_key.data);
    if !matches!(header.alg, jsonwebtoken::Algorithm::PS256 | jsonwebtoken::Algorithm::RS256) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "AADSTS5002730: Invalid JWT token. Unsupported key for the signing algorithm.",
        );
    }
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[format!("{}/{}/oauth2/v2.0/token", s.base, s.tenant_id)]);
    validation.set_issuer(&[s.client_id.clone()]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    match jsonwebtoken::decode::<Value>(&assertion, &key, &validation) {
        Ok(data) if data.claims["sub"] == s.client_id.as_str() => {}
        Ok(_) => {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "AADSTS700023: Client assertion sub is not the client id.",
            );
        }
        Err(e) => {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                &format!("AADSTS700027: Client assertion failed signature validation. ({e})"),
            );
        }
    }
    let token = format!("eyFake.{:032x}", rand::random::<u128>());
    s.tokens.insert(token.clone());
    if grant == "client_credentials" {
        s.scopes.push(form.get("scope").cloned().unwrap_or_default());
    }
    if grant == "authorization_code" {
        let code = form.get("code").cloned().unwrap_or_default();
        let Some(pending) = s.codes.remove(&code) else {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "AADSTS70008: The provided authorization code is expired or was already used.",
            );
        };
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        if URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes())) != pending.challenge
            || form.get("redirect_uri") != Some(&pending.redirect_uri)
        {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "AADSTS501481: The Code_Verifier does not match the code_challenge.",
            );
        }
        let now = now();
        let mut claims = pending.claims.clone();
        claims["iss"] = json!(format!("{}/{}/v2.0", s.base, s.tenant_id));
        claims["aud"] = json!(s.client_id);
        claims["nonce"] = json!(pending.nonce);
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + 3600);
        // A test may sign in with a token not valid yet (`nbf` given).
        claims.as_object_mut().unwrap().entry("nbf").or_insert(json!(now));
        claims.as_object_mut().unwrap().entry("tid").or_insert(json!(s.tenant_id));
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("fake-signing-key".into());
        let id_token = jsonwebtoken::encode(&header, &claims, &signing_key().0).unwrap();
        return axum::Json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token, "id_token": id_token}),
        )
        .into_response();
    }
    axum::Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}))
        .into_response()
}

/// Every Graph request: a valid token, then maybe a planned 500 or 429.
fn admit(s: &mut FakeState, headers: &HeaderMap) -> Option<Response> {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| s.tokens.contains(t)) {
        return Some(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        ));
    }
    s.graph_requests += 1;
    if s.failing > 0 {
        s.failing -= 1;
        return Some(graph_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "Internal server error."));
    }
    if s.throttle_at.remove(&s.graph_requests) {
        let mut r = graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Application is over its MailboxConcurrency limit.",
        );
        r.headers_mut().insert("Retry-After", "1".parse().unwrap());
        return Some(r);
    }
    None
}

/// A Graph request about one user: admitted as [`admit`] does, then the user (by id or
/// principal name), or the answer Graph gives.
#[allow(clippy::result_large_err, reason = "the error is the answer the handler returns as is")]
fn admit_user<'a>(
    state: &'a Mutex<FakeState>,
    headers: &HeaderMap,
    user: &str,
) -> Result<(std::sync::MutexGuard<'a, FakeState>, usize), Response> {
    let mut s = state.lock().unwrap();
    if let Some(r) = admit(&mut s, headers) {
        return Err(r);
    }
    let i = s.user_index(user).ok_or_else(invalid_user)?;
    if let Some(refusal) = s.users[i].refusal {
        return Err(refusal.answer());
    }
    Ok((s, i))
}

fn query(raw: &Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()).into_owned().collect()
}

async fn users(State(state): State<Arc<Mutex<FakeState>>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = admit(&mut s, &headers) {
        return r;
    }
    let skip: usize = query(&raw).get("$skiptoken").and_then(|v| v.parse().ok()).unwrap_or(0);
    let page = 2; // users come two at a time, so paging is exercised
    let value: Vec<Value> = s
        .users
        .iter()
        .skip(skip)
        .take(page)
        .map(|u| json!({"id": u.id, "userPrincipalName": u.upn, "mail": u.upn, "displayName": u.upn}))
        .collect();
    let mut body = json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users", "value": value});
    if skip + page < s.users.len() {
        body["@odata.nextLink"] = json!(format!(
            "{}/v1.0/users?$select=id,userPrincipalName,mail&$top=100&$skiptoken={}",
            s.base,
            skip + page
        ));
    }
    axum::Json(body).into_response()
}

/// `GET /users/{id | userPrincipalName}`: the directory entry, with the addresses Exchange knows
/// (`proxyAddresses`: `SMTP:` the primary, `smtp:` the others).
async fn user(State(state): State<Arc<Mutex<FakeState>>>, headers: HeaderMap, Path(user): Path<String>) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = admit(&mut s, &headers) {
        return r;
    }
    let Some(i) = s.user_index(&user) else { return unknown_user(&user) };
    let u = &s.users[i];
    let mut proxy = vec![format!("SMTP:{}", u.upn)];
    proxy.extend(u.aliases.iter().map(|a| format!("smtp:{a}")));
    axum::Json(json!({"id": u.id, "userPrincipalName": u.upn, "mail": u.upn, "proxyAddresses": proxy,
        "displayName": u.upn.split('@').next().unwrap_or_default()}))
    .into_response()
}

/// `GET /users/{id | userPrincipalName}/memberOf`: the groups and directory roles the user is a
/// direct member of.
async fn member_of(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = admit(&mut s, &headers) {
        return r;
    }
    let Some(i) = s.user_index(&user) else { return unknown_user(&user) };
    axum::Json(json!({"value": s.users[i].member_of})).into_response()
}

/// Graph's answer for a user the directory does not have.
fn unknown_user(user: &str) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!("Resource '{user}' does not exist or one of its queried reference-property objects are not present."),
    )
}

fn folder_json(u: &User, f: &Folder) -> Value {
    let children = u.folders.iter().filter(|c| c.parent.as_deref() == Some(&f.id)).count();
    let total = f.present_at(f.log.len()).len();
    json!({"id": f.id, "displayName": f.name, "parentFolderId": f.parent.clone().unwrap_or_else(|| format!("root-{}", u.id)),
           "childFolderCount": children, "unreadItemCount": 0, "totalItemCount": total, "isHidden": false})
}

async fn top_folders(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    let (s, i) = match admit_user(&state, &headers, &user) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let u = &s.users[i];
    let value: Vec<Value> = u.folders.iter().filter(|f| f.parent.is_none()).map(|f| folder_json(u, f)).collect();
    axum::Json(json!({"value": value})).into_response()
}

async fn folder(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Path((user, folder)): Path<(String, String)>,
) -> Response {
    let (s, i) = match admit_user(&state, &headers, &user) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let u = &s.users[i];
    match u.folders.iter().find(|f| f.id == folder || f.well_known.is_some_and(|w| w.eq_ignore_ascii_case(&folder))) {
        Some(f) => axum::Json(folder_json(u, f)).into_response(),
        None => {
            graph_error(StatusCode::NOT_FOUND, "ErrorItemNotFound", "The specified object was not found in the store.")
        }
    }
}

async fn child_folders(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Path((user, folder)): Path<(String, String)>,
) -> Response {
    let (s, i) = match admit_user(&state, &headers, &user) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let u = &s.users[i];
    let value: Vec<Value> =
        u.folders.iter().filter(|f| f.parent.as_deref() == Some(&folder)).map(|f| folder_json(u, f)).collect();
    axum::Json(json!({"value": value})).into_response()
}

/// `messages/delta`: the first round lists what the folder holds (page by page, `$skiptoken`
/// holding the snapshot's position and the offset), the last page gives a `$deltatoken`; a round
/// with a delta token lists what changed since, removals as `@removed`.
async fn delta(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Path((user, folder)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (mut s, i) = match admit_user(&state, &headers, &user) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let q = query(&raw);
    let has_link = q.contains_key("$skiptoken") || q.contains_key("$deltatoken");
    if has_link && s.expire.remove(&folder) {
        return graph_error(
            StatusCode::GONE,
            "SyncStateNotFound",
            "The sync state generation is not found. Resync required.",
        );
    }
    let page_size = s.page_size;
    let base = s.base.clone();
    let u = &s.users[i];
    let Some(f) = u.folders.iter().find(|f| f.id == folder) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    let link = |key: &str, value: String| {
        format!("{base}/v1.0/users/{}/mailFolders/{}/messages/delta?{key}={value}", u.id, f.id)
    };
    let (items, from, position): (Vec<Value>, usize, usize) = match (q.get("$skiptoken"), q.get("$deltatoken")) {
        (Some(skip), _) => {
            let mut parts = skip.split('.');
            let kind = parts.next().unwrap_or("");
            let a: usize = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let b: usize = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if kind == "snap" {
                (f.present_at(a).into_iter().map(|id| json!({"id": id})).collect(), b, a)
            } else {
                (changes(f, a, b), 0, b)
            }
        }
        (None, Some(token)) => {
            let since: usize = token.parse().unwrap_or(0);
            let now = f.log.len();
            (changes(f, since, now), 0, now)
        }
        (None, None) => (f.present_at(f.log.len()).into_iter().map(|id| json!({"id": id})).collect(), 0, f.log.len()),
    };
    let is_snapshot = !q.contains_key("$deltatoken") && q.get("$skiptoken").is_none_or(|t| t.starts_with("snap"));
    let page: Vec<Value> = items.iter().skip(from).take(page_size).cloned().collect();
    let mut body =
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)", "value": page});
    if from + page_size < items.len() && is_snapshot {
        body["@odata.nextLink"] = json!(link("$skiptoken", format!("snap.{position}.{}", from + page_size)));
    } else {
        body["@odata.deltaLink"] = json!(link("$deltatoken", position.to_string()));
    }
    axum::Json(body).into_response()
}

fn changes(f: &Folder, since: usize, until: usize) -> Vec<Value> {
    let mut last: Vec<(String, bool)> = Vec::new();
    for (id, here) in &f.log[since.min(until)..until] {
        last.retain(|(x, _)| x != id);
        last.push((id.clone(), *here));
    }
    last.into_iter()
        .map(|(id, here)| if here { json!({"id": id}) } else { json!({"id": id, "@removed": {"reason": "deleted"}}) })
        .collect()
}

async fn mime(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Path((user, message)): Path<(String, String)>,
) -> Response {
    let raw = {
        let mut s = state.lock().unwrap();
        if let Some(r) = admit(&mut s, &headers) {
            return r;
        }
        let Some(raw) = s.messages.get(&message).cloned() else {
            return graph_error(
                StatusCode::NOT_FOUND,
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            );
        };
        let n = s.in_flight.entry(user.clone()).or_default();
        *n += 1;
        let now = *n;
        s.max_in_flight = s.max_in_flight.max(now);
        let mailboxes = s.in_flight.values().filter(|&&n| n > 0).count();
        s.max_mailboxes_at_once = s.max_mailboxes_at_once.max(mailboxes);
        raw
    };
    // Counted out when the request ends, also when the client goes away mid-request (a killed
    // import): a request the server drops is no longer in flight.
    let _in_flight = InFlight { state: state.clone(), user };
    // Long enough for a client's parallel requests to overlap.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    ([("content-type", "message/rfc822")], raw).into_response()
}

struct InFlight {
    state: Arc<Mutex<FakeState>>,
    user: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self.state.lock().unwrap().in_flight.get_mut(&self.user) {
            *n -= 1;
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn post_json(url: &str, body: &Value) -> u16 {
    match ureq::post(url).timeout(std::time::Duration::from_secs(10)).send_json(body.clone()) {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(_) => 0,
    }
}

/// The Azure portal's manifest editor (App registrations → the app → Manifest): Download gives
/// the manifest; Upload replaces it, and its `keyCredentials` become the certificates the app
/// trusts. A browser test does there what an administrator does in the portal.
async fn portal_manifest(State(state): State<Arc<Mutex<FakeState>>>) -> Response {
    axum::Json(state.lock().unwrap().manifest.clone()).into_response()
}

async fn portal_upload(State(state): State<Arc<Mutex<FakeState>>>, body: axum::body::Bytes) -> Response {
    let Ok(manifest) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not a manifest").into_response();
    };
    upload(&mut state.lock().unwrap(), &manifest);
    StatusCode::NO_CONTENT.into_response()
}

fn upload(s: &mut FakeState, manifest: &Value) {
    s.trusted = manifest["keyCredentials"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["type"] == "AsymmetricX509Cert" && k["usage"] == "Verify")
        .filter_map(|k| STANDARD.decode(k["key"].as_str()?).ok())
        .collect();
    s.manifest = manifest.clone();
}

/// Creating a subscription: Graph first POSTs `?validationToken=…` to the notification URL and
/// expects the token back as plain text within 10 seconds.
async fn subscribe(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    {
        let mut s = state.lock().unwrap();
        if let Some(r) = admit(&mut s, &headers) {
            return r;
        }
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest", "Invalid JSON.");
    };
    let url = request["notificationUrl"].as_str().unwrap_or_default().to_owned();
    let resource = request["resource"].as_str().unwrap_or_default();
    let Some(user) = resource.strip_prefix("users/").and_then(|r| r.strip_suffix("/messages")).map(str::to_owned)
    else {
        return graph_error(StatusCode::BAD_REQUEST, "InvalidRequest", "Unsupported resource.");
    };
    let refusal = {
        let s = state.lock().unwrap();
        s.user_index(&user).and_then(|i| s.users[i].refusal)
    };
    if let Some(refusal) = refusal {
        return refusal.answer();
    }
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {:08x}",
        rand::random::<u32>()
    );
    let check = {
        let (url, token) = (url.clone(), token.clone());
        tokio::task::spawn_blocking(move || {
            let target = format!(
                "{url}?validationToken={}",
                url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
            );
            match ureq::post(&target).timeout(std::time::Duration::from_secs(10)).send_string("") {
                Ok(r) if r.status() == 200 && r.content_type() == "text/plain" => r.into_string().ok() == Some(token),
                _ => false,
            }
        })
        .await
        .unwrap_or(false)
    };
    if !check {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
        );
    }
    let mut s = state.lock().unwrap();
    let id = s.new_id("sub");
    let expires = now() + s.subscription_lifetime;
    let sub = Subscription {
        id: id.clone(),
        user,
        url,
        client_state: request["clientState"].as_str().unwrap_or_default().into(),
        expires,
        renewals: 0,
    };
    s.subscriptions.retain(|x| x.user != sub.user);
    s.subscriptions.push(sub);
    let mut answer = request.clone();
    answer["id"] = json!(id);
    answer["expirationDateTime"] = json!(rfc3339(expires));
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

async fn renew(State(state): State<Arc<Mutex<FakeState>>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = admit(&mut s, &headers) {
        return r;
    }
    let lifetime = s.subscription_lifetime;
    let Some(sub) = s.subscriptions.iter_mut().find(|x| x.id == id && x.expires > now()) else {
        return graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", "The object was not found.");
    };
    sub.expires = now() + lifetime;
    sub.renewals += 1;
    axum::Json(json!({"id": sub.id, "resource": format!("users/{}/messages", sub.user), "expirationDateTime": rfc3339(sub.expires)}))
        .into_response()
}

/// Delta over an append-only list (events and contacts change by a new version arriving):
/// `$skiptoken=<snapshot length>.<offset>`, `$deltatoken=<length seen>`.
fn list_delta(items: &[Value], q: &HashMap<String, String>, link: &str, page_size: usize) -> Value {
    let (from, end, start) = match (q.get("$skiptoken"), q.get("$deltatoken")) {
        (Some(t), _) => {
            let mut p = t.split('.');
            let end: usize = p.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let offset: usize = p.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            (offset, end, 0)
        }
        (None, Some(t)) => (0, items.len(), t.parse().unwrap_or(0)),
        (None, None) => (0, items.len(), 0),
    };
    let window = &items[start.min(end)..end.min(items.len())];
    let page: Vec<Value> = window.iter().skip(from).take(page_size).cloned().collect();
    let sep = if link.contains('?') { '&' } else { '?' };
    let mut body = json!({"value": page});
    if from + page_size < window.len() && start == 0 {
        body["@odata.nextLink"] = json!(format!("{link}{sep}$skiptoken={end}.{}", from + page_size));
    } else {
        body["@odata.deltaLink"] = json!(format!("{link}{sep}$deltatoken={end}"));
    }
    body
}

async fn events_delta(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (s, i) = match admit_user(&state, &headers, &user) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let (base, page) = (s.base.clone(), s.page_size);
    let u = &s.users[i];
    let link = format!(
        "{base}/v1.0/users/{}/calendarView/delta?startDateTime=1900-01-01T00:00:00Z&endDateTime=2100-01-01T00:00:00Z",
        u.id
    );
    axum::Json(list_delta(&u.events, &query(&raw), &link, page)).into_response()
}

async fn contacts_delta(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (s, i) = match admit_user(&state, &headers, &user) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let (base, page) = (s.base.clone(), s.page_size);
    let u = &s.users[i];
    let link = format!("{base}/v1.0/users/{}/contacts/delta", u.id);
    axum::Json(list_delta(&u.contacts, &query(&raw), &link, page)).into_response()
}

async fn contact_folders(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    let (s, i) = match admit_user(&state, &headers, &user) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let u = &s.users[i];
    let value: Vec<Value> =
        u.contact_folders.iter().map(|(id, name, _)| json!({"id": id, "displayName": name})).collect();
    axum::Json(json!({"value": value})).into_response()
}

async fn folder_contacts_delta(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Path((user, folder)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (s, i) = match admit_user(&state, &headers, &user) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let (base, page) = (s.base.clone(), s.page_size);
    let u = &s.users[i];
    let Some((_, _, items)) = u.contact_folders.iter().find(|f| f.0 == folder) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    let link = format!("{base}/v1.0/users/{}/contactFolders/{folder}/contacts/delta", u.id);
    axum::Json(list_delta(items, &query(&raw), &link, page)).into_response()
}

/// The fake's token-signing key (RSA 2048, made once per test process) and its public JWK.
fn signing_key() -> &'static (jsonwebtoken::EncodingKey, Value) {
    static KEY: std::sync::OnceLock<(jsonwebtoken::EncodingKey, Value)> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let pem = key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "fake-signing-key",
            "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()), "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        });
        (jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(), jwk)
    })
}

async fn discovery(State(state): State<Arc<Mutex<FakeState>>>, Path(tenant): Path<String>) -> Response {
    let s = state.lock().unwrap();
    if tenant != s.tenant_id {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    let b = format!("{}/{}", s.base, s.tenant_id);
    axum::Json(json!({
        "issuer": format!("{b}/v2.0"), "authorization_endpoint": format!("{b}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{b}/oauth2/v2.0/token"), "jwks_uri": format!("{b}/discovery/v2.0/keys"),
        "response_types_supported": ["code", "id_token", "code id_token"], "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
    }))
    .into_response()
}

async fn keys() -> Response {
    axum::Json(json!({"keys": [signing_key().1.clone()]})).into_response()
}

/// The browser arrives; the user chosen with `sign_in_as` signs in at once, and the browser is
/// sent back with a code (PKCE S256 required).
async fn authorize(State(state): State<Arc<Mutex<FakeState>>>, RawQuery(raw): RawQuery) -> Response {
    let q = query(&raw);
    let mut s = state.lock().unwrap();
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    if q.get("client_id") != Some(&s.client_id) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: Application not found in the directory.",
        );
    }
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") || !q.contains_key("code_challenge") {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS9002325: Proof Key for Code Exchange is required.",
        );
    }
    let code = format!("0.AAAA{:032x}", rand::random::<u128>());
    let pending = PendingCode {
        nonce: q.get("nonce").cloned().unwrap_or_default(),
        challenge: q.get("code_challenge").cloned().unwrap_or_default(),
        redirect_uri: redirect.clone(),
        claims: s.browser_user.clone(),
    };
    s.codes.insert(code.clone(), pending);
    let state_param = url::form_urlencoded::byte_serialize(q.get("state").map(String::as_str).unwrap_or("").as_bytes())
        .collect::<String>();
    let location = format!("{redirect}?code={code}&state={state_param}&session_state=fake");
    (StatusCode::FOUND, [("location", location)]).into_response()
}

/// The admin-consent page: the administrator (the one chosen with `sign_in_as`) grants the app's
/// permissions for the tenant, and the browser goes back to the redirect URI with
/// `admin_consent=True` and the tenant, as Microsoft's documented flow does.
async fn admin_consent(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path(tenant): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = query(&raw);
    let mut s = state.lock().unwrap();
    if tenant != s.tenant_id || q.get("client_id") != Some(&s.client_id) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: Application not found in the directory.",
        );
    }
    let Some(redirect) = q.get("redirect_uri").filter(|r| !r.is_empty()) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: The request body must contain redirect_uri.",
        );
    };
    s.consented = true;
    let state_param = q
        .get("state")
        .map(|v| format!("&state={}", url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()))
        .unwrap_or_default();
    let location = format!("{redirect}?admin_consent=True&tenant={tenant}{state_param}");
    (StatusCode::FOUND, [("location", location)]).into_response()
}

async fn group_members(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = admit(&mut s, &headers) {
        return r;
    }
    let Some(members) = s.groups.get(&group) else {
        return graph_error(StatusCode::NOT_FOUND, "Request_ResourceNotFound", "Resource does not exist.");
    };
    let value: Vec<Value> = s
        .users
        .iter()
        .filter(|u| members.contains(&u.id))
        .map(|u| json!({"id": u.id, "userPrincipalName": u.upn, "mail": u.upn}))
        .collect();
    axum::Json(json!({"value": value})).into_response()
}

fn invalid_user() -> Response {
    graph_error(StatusCode::NOT_FOUND, "ErrorInvalidUser", "The requested user is invalid.")
}
