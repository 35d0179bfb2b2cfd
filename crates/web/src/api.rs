//! `/api/v1`: JSON for scripts, with an API key (`Authorization: Bearer ck_…`) or a browser
//! session (then with `X-CSRF-Token` on changes). The same operations back the console's forms,
//! so a rule (role, validation, audit) lives in one place. `/api/v1/openapi.json` describes it.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use coffer_archive::catalog::{AuditEntry, FolderRow, NewUser, RoleAssignment};
use coffer_archive::{MessageSummary, Sort};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{Principal, Role};
use crate::settings::{CLIENT_SECRET, LoginSettings};
use crate::{Connection, Console, WebError};

type ApiResult<T> = Result<Json<T>, WebError>;

// The extractors of the API answer malformed input with a JSON error (400; 404 for a path id
// that cannot exist), like every other API error.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(WebError))]
struct Body<T>(T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(WebError))]
struct Path<T>(T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(WebError))]
struct Query<T>(T);

#[derive(OpenApi)]
#[openapi(
    info(title = "Coffer API", version = "1", description = "Search, read and export archived mail; configure Coffer. \
        Authenticate with an API key: `Authorization: Bearer ck_…` (create one under Account in the console)."),
    paths(
        me, search, message, raw, attachment, folders, export, status, audit, volumes, close_volume_api,
        users, add_user_api, update_user_api, user_claims, tenants, add_tenant_api, certificates, generate_certificate_api,
        get_login, put_login, api_keys, add_api_key, delete_api_key, connections, test_connection_api, import_api, mailboxes_api,
    ),
    components(schemas(
        Me, SearchResult, ApiMessage, ApiPlacement, ApiFolder, ExportRequest, Status, ApiVolume, ApiTenant, ApiUser,
        NewUserRequest, UserChange, NewTenantRequest, CertificateRequest, ApiCertificate, LoginConfig, ApiAuditEntry,
        ApiKeyRequest, ApiKeyCreated, ApiKey, TestOutcome, ApiError, Role, Connection, crate::settings::OidcSettings,
        ApiRoleAssignment, ApiTraffic, crate::MailboxStatus, TenantCreated, CertificateCreated, UserCreated,
    )),
    modifiers(&Security),
    security(("api_key" = [])),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi.components.get_or_insert_with(Default::default).add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("ck_…").build()),
        );
        openapi.servers = Some(vec![utoipa::openapi::Server::new("/api/v1")]);
    }
}

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .route("/me", get(me))
        .route("/search", get(search))
        .route("/messages/{id}", get(message))
        .route("/messages/{id}/raw", get(raw))
        .route("/messages/{id}/attachments/{n}", get(attachment))
        .route("/folders", get(folders))
        .route("/exports", post(export))
        .route("/status", get(status))
        .route("/audit", get(audit))
        .route("/volumes", get(volumes))
        .route("/volumes/{id}/close", post(close_volume_api))
        .route("/users", get(users).post(add_user_api))
        .route("/users/{id}", put(update_user_api))
        .route("/users/{id}/claims", get(user_claims))
        .route("/tenants", get(tenants).post(add_tenant_api))
        .route("/certificates", get(certificates).post(generate_certificate_api))
        .route("/config/login", get(get_login).put(put_login))
        .route("/api-keys", get(api_keys).post(add_api_key))
        .route("/api-keys/{id}", delete(delete_api_key))
        .route("/connections", get(connections))
        .route("/connections/{name}/test", post(test_connection_api))
        .route("/connections/{name}/import", post(import_api))
        .route("/connections/{name}/mailboxes", get(mailboxes_api))
        .fallback(|| async { WebError::NotFound })
}

#[derive(Serialize, ToSchema)]
pub struct ApiError {
    pub error: String,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub login: String,
    pub display_name: String,
    pub role: Role,
    pub tenant: String,
    pub addresses: Vec<String>,
}

/// Who the key or session belongs to.
#[utoipa::path(get, path = "/me", responses((status = 200, body = Me), (status = 401, body = ApiError)))]
async fn me(who: Principal) -> ApiResult<Me> {
    Ok(Json(Me {
        login: who.user.login,
        display_name: who.user.display_name,
        role: who.role,
        tenant: who.tenant.name,
        addresses: who.user.addresses,
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct SearchParams {
    /// The query language of the console (e.g. `from:alice@contoso.com has:attachment after:2024-01-01`);
    /// empty: everything visible.
    #[serde(default)]
    pub q: String,
    /// At most 500.
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    /// `date` (newest first, the default) or `relevance`.
    pub sort: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResult {
    /// Exact number of matching messages.
    pub total: usize,
    pub offset: usize,
    pub messages: Vec<ApiMessage>,
    /// Archived messages not yet searchable (the index is catching up or being rebuilt): while
    /// above zero, the results may be incomplete.
    pub not_yet_indexed: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ApiPlacement {
    pub mailbox: String,
    pub folder: String,
    pub source: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiMessage {
    pub id: i64,
    pub message_id: Option<String>,
    /// RFC 3339.
    pub date: String,
    pub from: Option<String>,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// Only for roles that may see Bcc recipients (auditors, administrators).
    pub bcc: Vec<String>,
    /// Envelope recipients (from journal reports): only for auditors and administrators.
    pub envelope: Vec<String>,
    pub subject: Option<String>,
    pub size: i64,
    pub sha256: String,
    pub placements: Vec<ApiPlacement>,
    pub has_attachment: bool,
    pub flags: Vec<String>,
    pub source: String,
    pub archived_at: String,
    pub snippet: Option<String>,
}

impl From<MessageSummary> for ApiMessage {
    fn from(m: MessageSummary) -> Self {
        ApiMessage {
            id: m.id,
            message_id: m.message_id,
            date: m.date,
            from: m.from,
            from_name: m.from_name,
            to: m.to,
            cc: m.cc,
            bcc: m.bcc,
            envelope: m.envelope,
            subject: m.subject,
            size: m.size,
            sha256: m.sha256,
            placements: m
                .placements
                .into_iter()
                .map(|p| ApiPlacement { mailbox: p.mailbox, folder: p.folder, source: p.source })
                .collect(),
            has_attachment: m.has_attachment,
            flags: m.flags.into_iter().map(str::to_owned).collect(),
            source: m.source,
            archived_at: m.archived_at,
            snippet: m.snippet,
        }
    }
}

/// Searches the mail the caller may see (audited with the query).
#[utoipa::path(get, path = "/search", params(SearchParams),
    responses((status = 200, body = SearchResult), (status = 400, body = ApiError, description = "the query does not parse; the message says how to fix it"), (status = 401, body = ApiError)))]
async fn search(
    State(console): State<Arc<Console>>,
    who: Principal,
    Query(p): Query<SearchParams>,
) -> ApiResult<SearchResult> {
    let sort = match p.sort.as_deref() {
        None | Some("date") => Sort::Date,
        Some("relevance") => Sort::Relevance,
        Some(other) => return Err(WebError::BadRequest(format!("sort {other:?}: use date or relevance"))),
    };
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    let offset = p.offset.unwrap_or(0);
    let page = console.archive.search(&who.actor(), &p.q, limit, offset, sort, true).await?;
    Ok(Json(SearchResult {
        total: page.total,
        offset: page.offset,
        messages: page.messages.into_iter().map(ApiMessage::from).collect(),
        not_yet_indexed: page.not_yet_indexed,
    }))
}

/// One message's details (audited as a view). Another tenant's or an invisible message: 404.
#[utoipa::path(get, path = "/messages/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = ApiMessage), (status = 404, body = ApiError), (status = 401, body = ApiError)))]
async fn message(State(console): State<Arc<Console>>, who: Principal, Path(id): Path<i64>) -> ApiResult<ApiMessage> {
    Ok(Json(console.archive.message(&who.actor(), id).await?.into()))
}

/// The original message, byte for byte (audited as a download).
#[utoipa::path(get, path = "/messages/{id}/raw", params(("id" = i64, Path)),
    responses((status = 200, content_type = "message/rfc822", body = Vec<u8>), (status = 404, body = ApiError), (status = 401, body = ApiError)))]
async fn raw(State(console): State<Arc<Console>>, who: Principal, Path(id): Path<i64>) -> Result<Response, WebError> {
    crate::pages::raw_response(&console, &who, id).await
}

/// One attachment, decoded (numbered from 0 in the order the message view lists them).
#[utoipa::path(get, path = "/messages/{id}/attachments/{n}", params(("id" = i64, Path), ("n" = usize, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ApiError), (status = 401, body = ApiError)))]
async fn attachment(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path((id, n)): Path<(i64, usize)>,
) -> Result<Response, WebError> {
    crate::pages::attachment_response(&console, &who, id, n).await
}

#[derive(Serialize, ToSchema)]
pub struct ApiFolder {
    pub mailbox: String,
    pub folder: String,
    pub messages: i64,
}

impl From<FolderRow> for ApiFolder {
    fn from(f: FolderRow) -> Self {
        ApiFolder { mailbox: f.mailbox, folder: f.folder, messages: f.messages }
    }
}

/// The mailboxes and folders the caller may browse (a user: their own mailboxes).
#[utoipa::path(get, path = "/folders", responses((status = 200, body = Vec<ApiFolder>), (status = 401, body = ApiError)))]
async fn folders(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiFolder>> {
    Ok(Json(console.archive.folders(&who.actor()).await?.into_iter().map(ApiFolder::from).collect()))
}

#[derive(Deserialize, ToSchema)]
pub struct ExportRequest {
    #[serde(default)]
    pub query: String,
    /// `zip` (.eml files with SHA256SUMS and manifest.csv) or `mbox`.
    pub format: String,
}

/// Exports every message a query matches (auditors and administrators; audited).
#[utoipa::path(post, path = "/exports", request_body = ExportRequest,
    responses((status = 200, content_type = "application/zip", body = Vec<u8>), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn export(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(r): Body<ExportRequest>,
) -> Result<Response, WebError> {
    crate::pages::export_response(&console, &who, &r.query, &r.format).await
}

#[derive(Serialize, ToSchema)]
pub struct ApiTraffic {
    /// Start of the hour, Unix seconds.
    pub bucket: i64,
    pub tenant: String,
    pub source: String,
    pub messages: i64,
    pub bytes: i64,
    pub duplicates: i64,
    pub rejected: i64,
    pub errors: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Status {
    /// Messages archived but not yet searchable.
    pub index_lag: i64,
    /// Seconds since the oldest of them was archived.
    pub index_lag_seconds: i64,
    /// Hourly traffic of the last 48 hours.
    pub traffic: Vec<ApiTraffic>,
    pub volumes: Vec<ApiVolume>,
    pub tenants: Vec<ApiTenant>,
}

/// Archiving traffic, index lag, volumes and journal addresses (auditors and administrators).
#[utoipa::path(get, path = "/status", responses((status = 200, body = Status), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn status(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Status> {
    who.require(Role::Auditor)?;
    let catalog = &console.archive.catalog;
    let now = coffer_archive::service::now_secs();
    let all = who.require_system_admin().is_ok();
    let tenants: Vec<_> = catalog.tenants().await?.into_iter().filter(|t| all || t.id == who.tenant.id).collect();
    let name = |id: i64| tenants.iter().find(|t| t.id == id).map(|t| t.name.clone());
    let traffic = catalog
        .traffic(now - 48 * 3600)
        .await?
        .into_iter()
        .filter_map(|r| {
            Some(ApiTraffic {
                bucket: r.bucket,
                tenant: name(r.tenant_id)?,
                source: r.source,
                messages: r.messages,
                bytes: r.bytes,
                duplicates: r.duplicates,
                rejected: r.rejected,
                errors: r.errors,
            })
        })
        .collect();
    let volumes = volume_list(&console).await?.into_iter().filter(|v| all || v.tenant_id == who.tenant.id).collect();
    Ok(Json(Status {
        index_lag: catalog.index_queue_len().await?,
        index_lag_seconds: catalog.oldest_queued_at().await?.map(|t| now - t).unwrap_or(0),
        traffic,
        volumes,
        tenants: tenant_list(&console, tenants).await?,
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct AuditParams {
    /// Text that actor, IP, action or detail contains.
    #[serde(default)]
    pub q: String,
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiAuditEntry {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub ip: String,
    pub action: String,
    pub detail: String,
}

impl From<AuditEntry> for ApiAuditEntry {
    fn from(e: AuditEntry) -> Self {
        ApiAuditEntry { seq: e.seq, at: e.at, actor: e.actor, ip: e.ip, action: e.action, detail: e.detail }
    }
}

/// The audit log, newest first (auditors and administrators).
#[utoipa::path(get, path = "/audit", params(AuditParams),
    responses((status = 200, body = Vec<ApiAuditEntry>), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn audit(
    State(console): State<Arc<Console>>,
    who: Principal,
    Query(p): Query<AuditParams>,
) -> ApiResult<Vec<ApiAuditEntry>> {
    who.require(Role::Auditor)?;
    let tenant = who.require_system_admin().is_err().then_some(who.tenant.id);
    let limit = p.limit.unwrap_or(200).clamp(1, 10_000);
    let entries = console.archive.catalog.audit_entries_matching(tenant, p.q.trim(), limit).await?;
    Ok(Json(entries.into_iter().map(ApiAuditEntry::from).collect()))
}

#[derive(Serialize, ToSchema)]
pub struct ApiVolume {
    pub id: String,
    /// `open` or `closed`.
    pub state: String,
    pub tenant_id: i64,
    pub created_at: i64,
    pub closed_at: Option<i64>,
    pub segments: u32,
    pub messages: u64,
    pub bytes: u64,
}

async fn volume_list(console: &Console) -> Result<Vec<ApiVolume>, WebError> {
    Ok(console
        .archive
        .volumes()
        .await?
        .into_iter()
        .map(|v| ApiVolume {
            id: v.id,
            state: format!("{:?}", v.state).to_lowercase(),
            tenant_id: v.owner as i64,
            created_at: v.created_at as i64,
            closed_at: v.closed_at.map(|c| c as i64),
            segments: v.segments,
            messages: v.records,
            bytes: v.bytes,
        })
        .collect())
}

/// Volumes, their state and use (administrators of the default tenant).
#[utoipa::path(get, path = "/volumes", responses((status = 200, body = Vec<ApiVolume>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn volumes(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiVolume>> {
    who.require_system_admin()?;
    Ok(Json(volume_list(&console).await?))
}

pub async fn close_volume(console: &Console, who: &Principal, id: &str) -> Result<(), WebError> {
    who.require_system_admin()?;
    if !console.archive.volumes().await?.iter().any(|v| v.id == id) {
        return Err(WebError::NotFound);
    }
    console.archive.close_volume(id)?;
    console
        .audit(&who.actor(), "configuration", &format!("volume {id} closed (the next message opens a new one)"))
        .await
}

/// Closes a volume; the tenant's next message opens a new one (roll-over).
#[utoipa::path(post, path = "/volumes/{id}/close", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn close_volume_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    close_volume(&console, &who, &id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize, ToSchema)]
pub struct ApiUser {
    pub id: i64,
    pub login: String,
    pub display_name: String,
    pub role: String,
    pub addresses: Vec<String>,
    /// Set for accounts from single sign-on.
    pub external_id: Option<String>,
    pub last_login_at: Option<i64>,
    pub locked: bool,
    pub disabled: bool,
}

/// The users of the caller's tenant (administrators).
#[utoipa::path(get, path = "/users", responses((status = 200, body = Vec<ApiUser>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn users(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiUser>> {
    who.require(Role::Administrator)?;
    let now = coffer_archive::service::now_secs();
    Ok(Json(
        console
            .archive
            .catalog
            .users(Some(who.tenant.id))
            .await?
            .into_iter()
            .map(|u| ApiUser {
                id: u.id,
                login: u.login,
                display_name: u.display_name,
                role: u.role,
                addresses: u.addresses,
                external_id: u.external_id,
                last_login_at: u.last_login_at,
                locked: u.locked_until > now,
                disabled: u.disabled,
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct NewUserRequest {
    pub login: String,
    #[serde(default)]
    pub display_name: String,
    /// administrator, auditor or user.
    pub role: String,
    /// At least 10 characters.
    pub password: String,
    /// The addresses (and mailboxes) a user sees mail of, separated by commas or spaces.
    #[serde(default)]
    pub addresses: String,
}

pub const MIN_PASSWORD: usize = 10;

pub async fn add_user(console: &Console, who: &Principal, r: &NewUserRequest) -> Result<i64, WebError> {
    who.require(Role::Administrator)?;
    let role = Role::parse(&r.role)
        .ok_or_else(|| WebError::BadRequest(format!("role {:?}: use administrator, auditor or user", r.role)))?;
    if r.password.chars().count() < MIN_PASSWORD {
        return Err(WebError::BadRequest(format!("the password needs at least {MIN_PASSWORD} characters")));
    }
    let addresses = split_addresses(&r.addresses)?;
    tenant_login(&who.tenant, &r.login)?;
    let hash = crate::auth::hash_password(&r.password);
    let user = console
        .archive
        .catalog
        .add_user(&NewUser {
            tenant_id: who.tenant.id,
            login: r.login.clone(),
            display_name: r.display_name.clone(),
            role: role.as_str().into(),
            addresses,
            password_hash: Some(hash),
            external_id: None,
        })
        .await?;
    console
        .audit(&who.actor(), "configuration", &format!("user {} added with role {}", user.login, role.as_str()))
        .await?;
    Ok(user.id)
}

/// Logins are unique across the archive, so "exists already" would tell the administrator of one
/// tenant which logins another tenant has. In a tenant other than the default one, a login is
/// therefore an address of the tenant's own namespace: `name@<tenant name>` or `name@<one of its
/// domains>`; only names there can collide.
fn tenant_login(tenant: &coffer_archive::catalog::Tenant, login: &str) -> Result<(), WebError> {
    if tenant.name == coffer_archive::catalog::DEFAULT_TENANT {
        return Ok(());
    }
    let own = login.rsplit_once('@').is_some_and(|(name, domain)| {
        !name.is_empty()
            && (domain.eq_ignore_ascii_case(&tenant.name)
                || tenant.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
    });
    if own {
        return Ok(());
    }
    Err(WebError::BadRequest(format!(
        "in tenant {}, a login is name@{} or name@ one of the tenant's domains ({})",
        tenant.name,
        tenant.name,
        tenant.domains.join(", ")
    )))
}

fn split_addresses(text: &str) -> Result<Vec<String>, WebError> {
    let list: Vec<String> =
        text.split([',', ' ', '\n', ';']).map(str::trim).filter(|a| !a.is_empty()).map(str::to_lowercase).collect();
    if let Some(bad) = list.iter().find(|a| !a.contains('@') || a.len() > 320) {
        return Err(WebError::BadRequest(format!("{bad:?} is not a mail address")));
    }
    Ok(list)
}

#[derive(Serialize, ToSchema)]
pub struct UserCreated {
    pub id: i64,
}

/// Adds a local account to the caller's tenant (administrators; audited).
#[utoipa::path(post, path = "/users", request_body = NewUserRequest,
    responses((status = 201, body = UserCreated), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn add_user_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(r): Body<NewUserRequest>,
) -> Result<Response, WebError> {
    let id = add_user(&console, &who, &r).await?;
    Ok((axum::http::StatusCode::CREATED, Json(UserCreated { id })).into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct UserChange {
    pub display_name: String,
    pub role: String,
    pub addresses: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
    /// A new password (local accounts); also unlocks the account.
    pub password: Option<String>,
}

pub async fn update_user(console: &Console, who: &Principal, id: i64, c: &UserChange) -> Result<(), WebError> {
    who.require(Role::Administrator)?;
    let catalog = &console.archive.catalog;
    let user = catalog.user(id).await?.filter(|u| u.tenant_id == who.tenant.id).ok_or(WebError::NotFound)?;
    let role = Role::parse(&c.role)
        .ok_or_else(|| WebError::BadRequest(format!("role {:?}: use administrator, auditor or user", c.role)))?;
    if user.id == who.user.id && (role != Role::Administrator || c.disabled) {
        return Err(WebError::BadRequest(
            "you cannot take away your own administrator role or disable yourself".into(),
        ));
    }
    let addresses = split_addresses(&c.addresses.join(","))?;
    catalog.update_user(id, &c.display_name, role.as_str(), &addresses, c.disabled).await?;
    let mut detail = format!(
        "user {}: role {}, addresses {}, disabled {}",
        user.login,
        role.as_str(),
        addresses.join(" "),
        c.disabled
    );
    if let Some(p) = &c.password {
        if user.external_id.is_some() {
            return Err(WebError::BadRequest("accounts from single sign-on have no password here".into()));
        }
        if p.chars().count() < MIN_PASSWORD {
            return Err(WebError::BadRequest(format!("the password needs at least {MIN_PASSWORD} characters")));
        }
        catalog.set_password_hash(id, &crate::auth::hash_password(p)).await?;
        detail.push_str(", password set");
    }
    console.audit(&who.actor(), "configuration", &detail).await
}

/// Changes a user of the caller's tenant (administrators; audited).
#[utoipa::path(put, path = "/users/{id}", params(("id" = i64, Path)), request_body = UserChange,
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn update_user_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<i64>,
    Body(c): Body<UserChange>,
) -> Result<Response, WebError> {
    update_user(&console, &who, id, &c).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// The claims a user presented at their last single sign-on ("Lookup"), to choose role assignments.
#[utoipa::path(get, path = "/users/{id}/claims", params(("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn user_claims(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<i64>,
) -> ApiResult<serde_json::Value> {
    who.require(Role::Administrator)?;
    let user =
        console.archive.catalog.user(id).await?.filter(|u| u.tenant_id == who.tenant.id).ok_or(WebError::NotFound)?;
    let claims =
        user.last_claims.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or(serde_json::json!({}));
    Ok(Json(claims))
}

#[derive(Serialize, ToSchema)]
pub struct ApiTenant {
    pub name: String,
    pub domains: Vec<String>,
    /// Where Exchange's journal rule sends this tenant's reports.
    pub journal_address: String,
    pub messages: i64,
}

async fn tenant_list(console: &Console, tenants: Vec<coffer_archive::Tenant>) -> Result<Vec<ApiTenant>, WebError> {
    let mut out = Vec::new();
    for t in tenants {
        out.push(ApiTenant {
            journal_address: t.journal_address(&console.config.journal_domain),
            messages: console.archive.catalog.count_messages(t.id).await?,
            name: t.name,
            domains: t.domains,
        });
    }
    Ok(out)
}

/// Tenants and their journal addresses (administrators of the default tenant).
#[utoipa::path(get, path = "/tenants", responses((status = 200, body = Vec<ApiTenant>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn tenants(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiTenant>> {
    who.require_system_admin()?;
    let list = console.archive.catalog.tenants().await?;
    Ok(Json(tenant_list(&console, list).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct NewTenantRequest {
    pub name: String,
    /// The tenant's mail domains, separated by commas or spaces.
    #[serde(default)]
    pub domains: String,
}

pub async fn add_tenant(console: &Console, who: &Principal, r: &NewTenantRequest) -> Result<String, WebError> {
    who.require_system_admin()?;
    let domains: Vec<String> =
        r.domains.split([',', ' ', '\n']).map(str::trim).filter(|d| !d.is_empty()).map(str::to_lowercase).collect();
    let t = console.archive.catalog.add_tenant(&r.name, &domains).await?;
    let address = t.journal_address(&console.config.journal_domain);
    console
        .audit(&who.actor(), "configuration", &format!("tenant {} added; journal address {address}", t.name))
        .await?;
    Ok(address)
}

#[derive(Serialize, ToSchema)]
pub struct TenantCreated {
    /// Where Exchange's journal rule sends the new tenant's reports.
    pub journal_address: String,
}

/// Adds a tenant; the answer is its journal address (administrators of the default tenant).
#[utoipa::path(post, path = "/tenants", request_body = NewTenantRequest,
    responses((status = 201, body = TenantCreated), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn add_tenant_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(r): Body<NewTenantRequest>,
) -> Result<Response, WebError> {
    let address = add_tenant(&console, &who, &r).await?;
    Ok((axum::http::StatusCode::CREATED, Json(TenantCreated { journal_address: address })).into_response())
}

pub async fn allow_network(console: &Console, who: &Principal, tenant_id: i64, cidr: &str) -> Result<(), WebError> {
    who.require_system_admin()?;
    let net: std::net::IpAddr = cidr.split('/').next().unwrap_or("").trim().parse().map_err(|_| {
        WebError::BadRequest(format!(
            "{cidr:?} is not a network: write an address or address/prefix, e.g. 40.92.0.0/15"
        ))
    })?;
    let prefix_ok = match cidr.split_once('/') {
        None => true,
        Some((_, p)) => p.trim().parse::<u8>().is_ok_and(|p| p <= if net.is_ipv4() { 32 } else { 128 }),
    };
    if !prefix_ok {
        return Err(WebError::BadRequest(format!("{cidr:?}: the prefix length is out of range")));
    }
    let tenant = console.archive.catalog.tenant(tenant_id).await?.ok_or(WebError::NotFound)?;
    console.archive.catalog.allow_network(tenant_id, cidr.trim()).await?;
    console
        .audit(
            &who.actor(),
            "configuration",
            &format!("tenant {}: journal reports accepted from {}", tenant.name, cidr.trim()),
        )
        .await
}

#[derive(Serialize, ToSchema)]
pub struct ApiCertificate {
    pub alias: String,
    pub subject: String,
    pub not_before: String,
    pub not_after: String,
    pub sha1: String,
    pub sha256: String,
}

/// Certificates in the store (administrators of the default tenant).
#[utoipa::path(get, path = "/certificates", responses((status = 200, body = Vec<ApiCertificate>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn certificates(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiCertificate>> {
    who.require_system_admin()?;
    Ok(Json(
        console
            .archive
            .certs()
            .list()?
            .into_iter()
            .map(|c| ApiCertificate {
                alias: c.alias,
                subject: c.subject,
                not_before: c.not_before,
                not_after: c.not_after,
                sha1: c.sha1,
                sha256: c.sha256,
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct CertificateRequest {
    pub alias: String,
    pub common_name: String,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub organization: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub state: String,
    /// Two letters.
    #[serde(default)]
    pub country: String,
}

pub async fn generate_certificate(
    console: &Console,
    who: &Principal,
    r: &CertificateRequest,
) -> Result<String, WebError> {
    who.require_system_admin()?;
    let alias = r.alias.trim();
    if alias.is_empty() || !alias.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(WebError::BadRequest("an alias is letters, digits, '-', '_' and '.'".into()));
    }
    if r.common_name.trim().is_empty() {
        return Err(WebError::BadRequest("the common name is missing".into()));
    }
    let country = r.country.trim();
    if !country.is_empty() && (country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic())) {
        return Err(WebError::BadRequest("the country is two letters (e.g. CH)".into()));
    }
    let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let subject = coffer_archive::certs::Subject {
        common_name: r.common_name.trim().into(),
        organization: opt(&r.organization),
        unit: opt(&r.unit),
        city: opt(&r.city),
        state: opt(&r.state),
        country: opt(&country.to_uppercase()),
    };
    let info = console.archive.certs().generate(alias, &subject).map_err(|e| WebError::BadRequest(e.to_string()))?;
    console
        .audit(&who.actor(), "configuration", &format!("certificate {} generated (SHA-1 {})", info.alias, info.sha1))
        .await?;
    Ok(info.alias)
}

#[derive(Serialize, ToSchema)]
pub struct CertificateCreated {
    pub alias: String,
}

/// Generates a certificate and key (administrators of the default tenant; audited).
#[utoipa::path(post, path = "/certificates", request_body = CertificateRequest,
    responses((status = 201, body = CertificateCreated), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn generate_certificate_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(r): Body<CertificateRequest>,
) -> Result<Response, WebError> {
    let alias = generate_certificate(&console, &who, &r).await?;
    Ok((axum::http::StatusCode::CREATED, Json(CertificateCreated { alias })).into_response())
}

pub async fn certificate_pem(console: &Console, who: &Principal, alias: &str) -> Result<Response, WebError> {
    who.require_system_admin()?;
    let alias = alias.trim_end_matches(".pem");
    let pem = console.archive.certs().certificate_pem(alias).map_err(|_| WebError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{alias}.pem\"")),
        ],
        pem,
    )
        .into_response())
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ApiRoleAssignment {
    /// A claim name (email, groups, roles, wids, …) or `domain` (the domain of the email address).
    pub attribute: String,
    pub value: String,
    /// administrator, auditor or user.
    pub role: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct LoginConfig {
    pub sso_default: bool,
    pub oidc: crate::settings::OidcSettings,
    /// Write-only: a new client secret (sealed in the secret store).
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
    /// In priority order; the first match gives the role, no match gives `user`.
    pub role_assignments: Vec<ApiRoleAssignment>,
    /// Where the identity provider must send browsers back (register it in the app).
    #[serde(default)]
    pub redirect_uri: String,
}

pub async fn save_login(
    console: &Console,
    who: &Principal,
    settings: &LoginSettings,
    secret: Option<&str>,
    assignments: &[RoleAssignment],
) -> Result<(), WebError> {
    who.require_system_admin()?;
    for a in assignments {
        if Role::parse(&a.role).is_none() || a.attribute.trim().is_empty() || a.value.trim().is_empty() {
            return Err(WebError::BadRequest(format!(
                "role assignment {} = {} → {}: name an attribute, a value and administrator, auditor or user",
                a.attribute, a.value, a.role
            )));
        }
    }
    let tenant = console.archive.catalog.tenant_by_name(&settings.oidc.tenant).await?.ok_or_else(|| {
        WebError::BadRequest(format!(
            "tenant {:?} does not exist (Configuration → Tenants lists them)",
            settings.oidc.tenant
        ))
    })?;
    settings.save(&console.archive.catalog).await?;
    if let Some(s) = secret {
        console.archive.secrets().set(CLIENT_SECRET, s)?;
    }
    console.archive.catalog.set_role_assignments(tenant.id, assignments).await?;
    let list: Vec<String> = assignments.iter().map(|a| format!("{}={}→{}", a.attribute, a.value, a.role)).collect();
    console
        .audit(
            &who.actor(),
            "configuration",
            &format!(
                "login: single sign-on {} ({} {}, client {}, auth {}{}), role assignments [{}]",
                if settings.oidc.enabled { "on" } else { "off" },
                settings.oidc.provider,
                settings.oidc.issuer(),
                settings.oidc.client_id,
                settings.oidc.client_auth,
                if secret.is_some() { ", new secret" } else { "" },
                list.join(", ")
            ),
        )
        .await
}

async fn login_config(console: &Console) -> Result<LoginConfig, WebError> {
    let s = LoginSettings::load(&console.archive.catalog).await?;
    let tenant = console.archive.catalog.tenant_by_name(&s.oidc.tenant).await?;
    let role_assignments = match tenant {
        Some(t) => console.archive.catalog.role_assignments(t.id).await?,
        None => Vec::new(),
    };
    Ok(LoginConfig {
        redirect_uri: crate::oidc::redirect_uri(console, &s.oidc),
        sso_default: s.sso_default,
        oidc: s.oidc,
        client_secret: None,
        role_assignments: role_assignments
            .into_iter()
            .map(|a| ApiRoleAssignment { attribute: a.attribute, value: a.value, role: a.role })
            .collect(),
    })
}

/// Login settings and role assignments (administrators of the default tenant).
#[utoipa::path(get, path = "/config/login", responses((status = 200, body = LoginConfig), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn get_login(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<LoginConfig> {
    who.require_system_admin()?;
    Ok(Json(login_config(&console).await?))
}

/// Replaces login settings and role assignments; applies at the next sign-in (audited).
#[utoipa::path(put, path = "/config/login", request_body = LoginConfig,
    responses((status = 200, body = LoginConfig), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn put_login(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(c): Body<LoginConfig>,
) -> ApiResult<LoginConfig> {
    let settings = LoginSettings { sso_default: c.sso_default, oidc: c.oidc };
    let assignments: Vec<RoleAssignment> = c
        .role_assignments
        .into_iter()
        .map(|a| RoleAssignment { attribute: a.attribute.trim().into(), value: a.value.trim().into(), role: a.role })
        .collect();
    save_login(&console, &who, &settings, c.client_secret.as_deref(), &assignments).await?;
    Ok(Json(login_config(&console).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct ApiKeyRequest {
    pub name: String,
    /// The key's role: at most the caller's own (default: the caller's).
    pub role: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub id: i64,
    /// Shown once; only its hash is kept.
    pub key: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
}

/// A new key for the caller: its id, and the key itself (shown once).
pub async fn create_api_key(
    console: &Console,
    who: &Principal,
    name: &str,
    role: &str,
) -> Result<(i64, String), WebError> {
    let role = if role.trim().is_empty() {
        who.role
    } else {
        Role::parse(role)
            .ok_or_else(|| WebError::BadRequest(format!("role {role:?}: use administrator, auditor or user")))?
    };
    if role > who.role {
        return Err(WebError::Forbidden("a key cannot have a higher role than its owner".into()));
    }
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(WebError::BadRequest("give the key a name of 1 to 100 characters (what uses it)".into()));
    }
    let (key, hash) = crate::auth::new_api_key();
    let id = console.archive.catalog.add_api_key(who.user.id, name, &hash, role.as_str()).await?;
    console
        .audit(&who.actor(), "configuration", &format!("API key {id} ({name}) created with role {}", role.as_str()))
        .await?;
    Ok((id, key))
}

pub async fn revoke_api_key(console: &Console, who: &Principal, id: i64) -> Result<(), WebError> {
    let mine = console.archive.catalog.api_keys(Some(who.user.id)).await?.into_iter().any(|k| k.id == id);
    if !mine {
        return Err(WebError::NotFound);
    }
    console.archive.catalog.revoke_api_key(id).await?;
    console.audit(&who.actor(), "configuration", &format!("API key {id} revoked")).await
}

/// The caller's API keys.
#[utoipa::path(get, path = "/api-keys", responses((status = 200, body = Vec<ApiKey>), (status = 401, body = ApiError)))]
async fn api_keys(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiKey>> {
    Ok(Json(
        console
            .archive
            .catalog
            .api_keys(Some(who.user.id))
            .await?
            .into_iter()
            .map(|k| ApiKey {
                id: k.id,
                name: k.name,
                role: k.role,
                created_at: k.created_at,
                last_used_at: k.last_used_at,
                revoked: k.revoked,
            })
            .collect(),
    ))
}

/// Creates an API key for the caller (audited).
#[utoipa::path(post, path = "/api-keys", request_body = ApiKeyRequest,
    responses((status = 201, body = ApiKeyCreated), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn add_api_key(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(r): Body<ApiKeyRequest>,
) -> Result<Response, WebError> {
    let (id, key) = create_api_key(&console, &who, &r.name, r.role.as_deref().unwrap_or("")).await?;
    Ok((axum::http::StatusCode::CREATED, Json(ApiKeyCreated { id, key })).into_response())
}

/// Revokes one of the caller's API keys (audited).
#[utoipa::path(delete, path = "/api-keys/{id}", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ApiError), (status = 401, body = ApiError)))]
async fn delete_api_key(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    revoke_api_key(&console, &who, id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// Source connections (IMAP mailboxes, Microsoft 365) from the configuration (administrators of
/// the default tenant).
#[utoipa::path(get, path = "/connections", responses((status = 200, body = Vec<Connection>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn connections(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<Connection>> {
    who.require_system_admin()?;
    Ok(Json(console.sources.connections.clone()))
}

#[derive(Serialize, ToSchema)]
pub struct TestOutcome {
    pub ok: bool,
    /// What the test found, or what went wrong and how to fix it.
    pub detail: String,
}

pub async fn test_connection(console: &Console, who: &Principal, name: &str) -> Result<TestOutcome, WebError> {
    who.require_system_admin()?;
    if !console.sources.connections.iter().any(|c| c.name == name) {
        return Err(WebError::NotFound);
    }
    let tester = console
        .sources
        .test
        .clone()
        .ok_or_else(|| WebError::Unavailable("connections cannot be tested here".into()))?;
    let outcome = match tokio::time::timeout(std::time::Duration::from_secs(60), tester(name.to_owned())).await {
        Ok(Ok(detail)) => TestOutcome { ok: true, detail },
        Ok(Err(detail)) => TestOutcome { ok: false, detail },
        Err(_) => {
            TestOutcome { ok: false, detail: "no answer within 60 seconds: check host, port and firewall".into() }
        }
    };
    console
        .audit(&who.actor(), "connection test", &format!("{name}: {}", if outcome.ok { "ok" } else { "failed" }))
        .await?;
    Ok(outcome)
}

/// Tests a connection: signs in and looks at the mailbox, turning failures into advice.
#[utoipa::path(post, path = "/connections/{name}/test", params(("name" = String, Path)),
    responses((status = 200, body = TestOutcome), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn test_connection_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<TestOutcome> {
    Ok(Json(test_connection(&console, &who, &name).await?))
}

/// Starts a connection's historical import in the server (Microsoft 365); it resumes where the
/// last one stopped (audited).
pub async fn start_import(console: &Console, who: &Principal, name: &str) -> Result<String, WebError> {
    who.require_system_admin()?;
    if !console.sources.connections.iter().any(|c| c.name == name) {
        return Err(WebError::NotFound);
    }
    let start =
        console.sources.import.clone().ok_or_else(|| WebError::Unavailable("imports cannot be started here".into()))?;
    let detail = start(name.to_owned()).map_err(WebError::BadRequest)?;
    console.audit(&who.actor(), "import", &format!("{name}: {detail}")).await?;
    Ok(detail)
}

/// Starts the historical import of a Microsoft 365 connection (administrators of the default
/// tenant); progress per mailbox under `/connections/{name}/mailboxes`.
#[utoipa::path(post, path = "/connections/{name}/import", params(("name" = String, Path)),
    responses((status = 202, body = TestOutcome), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn import_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let detail = start_import(&console, &who, &name).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(TestOutcome { ok: true, detail })).into_response())
}

/// Each mailbox of a connection: state, counts, last sync, last error.
#[utoipa::path(get, path = "/connections/{name}/mailboxes", params(("name" = String, Path)),
    responses((status = 200, body = Vec<crate::MailboxStatus>), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn mailboxes_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Vec<crate::MailboxStatus>> {
    who.require_system_admin()?;
    if !console.sources.connections.iter().any(|c| c.name == name) {
        return Err(WebError::NotFound);
    }
    Ok(Json(console.sources.status.as_ref().map(|s| s(name)).unwrap_or_default()))
}
