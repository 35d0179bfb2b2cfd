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
use coffer_archive::admin::{AccountChange, LoginChange, NewAccount, TenantInfo};
use coffer_archive::catalog::{AuditEntry, FolderRow, RoleAssignment};
use coffer_archive::{MessageSummary, Sort};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{Principal, Role};
use crate::settings::LoginSettings;
use crate::{Console, WebError};

type ApiResult<T> = Result<Json<T>, WebError>;

// The extractors of the API answer malformed input with a JSON error (400; 404 for a path id
// that cannot exist), like every other API error.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(WebError))]
pub(crate) struct Body<T>(pub(crate) T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(WebError))]
pub(crate) struct Path<T>(pub(crate) T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(WebError))]
pub(crate) struct Query<T>(pub(crate) T);

#[derive(OpenApi)]
#[openapi(
    info(title = "Coffer API", version = "1", description = "Search, read and export archived mail; configure Coffer. \
        Authenticate with an API key: `Authorization: Bearer ck_…` (create one under Account in the console)."),
    paths(
        me, search, message, raw, attachment, folders, export, status, audit, volumes, close_volume_api,
        users, add_user_api, update_user_api, user_claims, tenants, add_tenant_api, update_tenant_api, allow_network_api, certificates, generate_certificate_api,
        get_login, put_login, api_keys, add_api_key, delete_api_key, crate::connections::list_api, crate::connections::get_api, crate::connections::add_api, crate::connections::put_api, crate::connections::delete_api, test_connection_api, start_api, stop_api, mailboxes_api,
        crate::governance::rules, crate::governance::add_rule, crate::governance::remove_rule, crate::governance::runs,
        crate::governance::run, crate::governance::holds, crate::governance::place_hold, crate::governance::release_hold,
        crate::governance::deletions, crate::governance::requests, crate::governance::request_deletion,
        crate::governance::approve, crate::governance::reject,
        crate::imports::start_api, crate::imports::list_api, crate::imports::get_api,
        crate::listeners::list_api, crate::listeners::get_api, crate::listeners::add_api, crate::listeners::put_api,
        crate::listeners::delete_api, crate::directory::lookup_api, crate::directory::assign_api,
        crate::manifest::manifest_api,
    ),
    components(schemas(
        Me, SearchResult, ApiMessage, ApiPlacement, ApiSnippetPart, ApiFolder, ExportRequest, Status, ApiVolume, ApiTenant, ApiUser,
        NewUserRequest, UserChange, NewTenantRequest, TenantChange, CertificateRequest, ApiCertificate, LoginConfig, ApiAuditEntry,
        ApiKeyRequest, ApiKeyCreated, ApiKey, TestOutcome, ApiError, ApiRole, crate::connections::ApiConnection, coffer_archive::connections::Connection, coffer_archive::connections::ImapConfig, coffer_archive::connections::M365Config, coffer_archive::connections::Security, coffer_archive::connections::AuthMethod, coffer_archive::connections::Mode, crate::JobState, crate::settings::OidcSettings,
        ApiRoleAssignment, ApiTraffic, crate::MailboxStatus, Network, TenantCreated, CertificateCreated, UserCreated,
        crate::governance::ApiRule, crate::governance::RuleRequest, crate::governance::ApiHold, crate::governance::HoldRequest,
        crate::governance::Reason, crate::governance::RunRequest, crate::governance::ApiRunReport,
        crate::governance::ApiRuleOutcome, crate::governance::ApiRun, crate::governance::ApiDeletion,
        crate::governance::DeletionRequestBody, crate::governance::ApiDeletionRequest, crate::governance::ApiKept,
        crate::governance::ApiManualOutcome, crate::imports::ApiImport, crate::listeners::ApiListener,
        crate::directory::ApiDirectoryEntry, crate::directory::Suggestion, crate::directory::NewAssignment,
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
        .merge(crate::governance::routes())
        .merge(crate::imports::api_routes())
        .merge(crate::listeners::api_routes())
        .merge(crate::connections::api_routes())
        .merge(crate::directory::api_routes())
        .merge(crate::manifest::api_routes())
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
        .route("/tenants/{id}", put(update_tenant_api))
        .route("/tenants/{id}/networks", post(allow_network_api))
        .route("/certificates", get(certificates).post(generate_certificate_api))
        .route("/config/login", get(get_login).put(put_login))
        .route("/api-keys", get(api_keys).post(add_api_key))
        .route("/api-keys/{id}", delete(delete_api_key))
        .route("/connections/{name}/test", post(test_connection_api))
        .route("/connections/{name}/start", post(start_api))
        .route("/connections/{name}/stop", post(stop_api))
        .route("/connections/{name}/mailboxes", get(mailboxes_api))
        .fallback(|| async { WebError::NotFound })
}

#[derive(Serialize, ToSchema)]
pub struct ApiError {
    pub error: String,
}

/// What an account may do: `user` (their own mail), `auditor` (the tenant's mail, read-only, and
/// the audit log), `administrator` (also the configuration).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Role)]
pub enum ApiRole {
    User,
    Auditor,
    Administrator,
}

impl From<Role> for ApiRole {
    fn from(r: Role) -> Self {
        match r {
            Role::User => ApiRole::User,
            Role::Auditor => ApiRole::Auditor,
            Role::Administrator => ApiRole::Administrator,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub login: String,
    pub display_name: String,
    pub role: ApiRole,
    pub tenant: String,
    pub addresses: Vec<String>,
}

/// Who the key or session belongs to.
#[utoipa::path(get, path = "/me", responses((status = 200, body = Me), (status = 401, body = ApiError)))]
async fn me(who: Principal) -> ApiResult<Me> {
    Ok(Json(Me {
        login: who.user.login,
        display_name: who.user.display_name,
        role: who.role.into(),
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
    /// `date` (newest first, the default), `oldest`, `relevance` or `size` (largest first).
    pub sort: Option<String>,
    /// Every tenant's mail, each result tagged with its tenant (administrators of the default
    /// tenant only; 403 for anyone else).
    #[serde(default)]
    pub all_tenants: bool,
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
pub struct ApiSnippetPart {
    pub text: String,
    /// The query matched this piece.
    pub matched: bool,
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
    /// Where the query's words show (the body's start, or an attachment's).
    pub snippet: Option<String>,
    /// The snippet in pieces, the matched ones marked; empty when nothing in it matched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snippet_parts: Vec<ApiSnippetPart>,
    /// The attachment the snippet comes from; absent for the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet_attachment: Option<String>,
    /// The tenant's name, in a search across tenants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
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
            snippet_parts: m
                .snippet_parts
                .into_iter()
                .map(|p| ApiSnippetPart { text: p.text, matched: p.matched })
                .collect(),
            snippet_attachment: m.snippet_attachment,
            tenant: m.tenant,
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
        None => Sort::Date,
        Some(name) => Sort::parse(name).ok_or_else(|| {
            WebError::BadRequest(format!("sort {name:?}: use date (newest first), oldest, relevance or size"))
        })?,
    };
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    let offset = p.offset.unwrap_or(0);
    let actor = if p.all_tenants { who.actor().across_tenants()? } else { who.actor() };
    let page = console.archive.search(&actor, &p.q, limit, offset, sort, true).await?;
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
    let now = coffer_archive::service::now_secs();
    let s = console.archive.admin().status(&who.actor(), now - 48 * 3600).await?;
    let name = |id: i64| s.tenant_name(id).map(str::to_owned);
    let traffic = s
        .traffic
        .iter()
        .filter_map(|r| {
            Some(ApiTraffic {
                bucket: r.bucket,
                tenant: name(r.tenant_id)?,
                source: r.source.clone(),
                messages: r.messages,
                bytes: r.bytes,
                duplicates: r.duplicates,
                rejected: r.rejected,
                errors: r.errors,
            })
        })
        .collect();
    Ok(Json(Status {
        index_lag: s.index_lag,
        index_lag_seconds: s.index_lag_seconds,
        traffic,
        volumes: s.volumes.into_iter().map(ApiVolume::from).collect(),
        tenants: s.tenants.into_iter().map(ApiTenant::from).collect(),
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
    let entries = console.archive.admin().audit_log(&who.actor(), &p.q, p.limit.unwrap_or(200)).await?;
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

impl From<coffer_archive::VolumeInfo> for ApiVolume {
    fn from(v: coffer_archive::VolumeInfo) -> Self {
        ApiVolume {
            id: v.id,
            state: format!("{:?}", v.state).to_lowercase(),
            tenant_id: v.owner as i64,
            created_at: v.created_at as i64,
            closed_at: v.closed_at.map(|c| c as i64),
            segments: v.segments,
            messages: v.records,
            bytes: v.bytes,
        }
    }
}

/// Volumes, their state and use: the caller's tenant's (auditors and administrators), every
/// volume (administrators of the default tenant).
#[utoipa::path(get, path = "/volumes", responses((status = 200, body = Vec<ApiVolume>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn volumes(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiVolume>> {
    let list = console.archive.admin().volumes(&who.actor()).await?;
    Ok(Json(list.into_iter().map(ApiVolume::from).collect()))
}

pub async fn close_volume(console: &Console, who: &Principal, id: &str) -> Result<(), WebError> {
    Ok(console.archive.admin().close_volume(&who.actor(), id).await?)
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
    let now = coffer_archive::service::now_secs();
    Ok(Json(
        console
            .archive
            .admin()
            .users(&who.actor(), Some(who.tenant.id))
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

pub use coffer_archive::admin::MIN_PASSWORD;

pub async fn add_user(console: &Console, who: &Principal, r: &NewUserRequest) -> Result<i64, WebError> {
    let new = NewAccount {
        login: r.login.clone(),
        display_name: r.display_name.clone(),
        role: r.role.clone(),
        password: r.password.clone(),
        addresses: vec![r.addresses.clone()],
    };
    Ok(console.archive.admin().add_user(&who.actor(), &who.tenant, &new).await?.id)
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
    let change = AccountChange {
        display_name: c.display_name.clone(),
        role: c.role.clone(),
        addresses: c.addresses.clone(),
        disabled: c.disabled,
        password: c.password.clone(),
    };
    Ok(console.archive.admin().update_user(&who.actor(), id, &change).await?)
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
    let user = console.archive.admin().user(&who.actor(), id).await?;
    let claims =
        user.last_claims.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or(serde_json::json!({}));
    Ok(Json(claims))
}

#[derive(Serialize, ToSchema)]
pub struct ApiTenant {
    pub id: i64,
    pub name: String,
    pub domains: Vec<String>,
    /// Where Exchange's journal rule sends this tenant's reports.
    pub journal_address: String,
    pub messages: i64,
    /// Sending networks its journal reports are accepted from (empty: any host).
    pub networks: Vec<String>,
}

impl From<TenantInfo> for ApiTenant {
    fn from(t: TenantInfo) -> Self {
        ApiTenant {
            id: t.tenant.id,
            name: t.tenant.name,
            domains: t.tenant.domains,
            journal_address: t.journal_address,
            messages: t.messages,
            networks: t.networks,
        }
    }
}

/// Tenants and their journal addresses (administrators of the default tenant).
#[utoipa::path(get, path = "/tenants", responses((status = 200, body = Vec<ApiTenant>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn tenants(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiTenant>> {
    let list = console.archive.admin().tenants(&who.actor()).await?;
    Ok(Json(list.into_iter().map(ApiTenant::from).collect()))
}

#[derive(Deserialize, ToSchema)]
pub struct NewTenantRequest {
    pub name: String,
    /// The tenant's mail domains, separated by commas or spaces.
    #[serde(default)]
    pub domains: String,
}

pub async fn add_tenant(console: &Console, who: &Principal, r: &NewTenantRequest) -> Result<String, WebError> {
    let t = console.archive.admin().add_tenant(&who.actor(), &r.name, std::slice::from_ref(&r.domains)).await?;
    Ok(t.journal_address)
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

#[derive(Deserialize, ToSchema)]
pub struct TenantChange {
    /// The tenant's mail domains (each may also be a comma-separated list); replaces the old ones.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Sending networks its journal reports are accepted from, e.g. `40.92.0.0/15`; replaces the
    /// old ones (none: any host).
    #[serde(default)]
    pub networks: Vec<String>,
}

/// Changes a tenant's domains and sending networks; its journal address never changes. Recorded
/// as evidence and audited with before and after (administrators of the default tenant).
#[utoipa::path(put, path = "/tenants/{id}", params(("id" = i64, Path)), request_body = TenantChange,
    responses((status = 200, body = ApiTenant), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn update_tenant_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<i64>,
    Body(c): Body<TenantChange>,
) -> ApiResult<ApiTenant> {
    let t = console.archive.admin().update_tenant(&who.actor(), id, &c.domains, &c.networks).await?;
    Ok(Json(t.into()))
}

pub async fn allow_network(console: &Console, who: &Principal, tenant_id: i64, cidr: &str) -> Result<String, WebError> {
    Ok(console.archive.admin().allow_network(&who.actor(), tenant_id, cidr).await?)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Network {
    /// An address or address/prefix, e.g. `40.92.0.0/15`; answered in canonical form.
    pub cidr: String,
}

/// Accepts the tenant's journal reports from this sending network too; a tenant with none
/// accepts any (administrators of the default tenant; audited).
#[utoipa::path(post, path = "/tenants/{id}/networks", params(("id" = i64, Path)), request_body = Network,
    responses((status = 200, body = Network), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn allow_network_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<i64>,
    Body(n): Body<Network>,
) -> ApiResult<Network> {
    Ok(Json(Network { cidr: allow_network(&console, &who, id, &n.cidr).await? }))
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
    Ok(Json(
        console
            .archive
            .admin()
            .certificates(&who.actor())?
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
    let opt = |s: &str| Some(s.to_owned());
    let subject = coffer_archive::certs::Subject {
        common_name: r.common_name.clone(),
        organization: opt(&r.organization),
        unit: opt(&r.unit),
        city: opt(&r.city),
        state: opt(&r.state),
        country: opt(&r.country),
    };
    let kind = coffer_archive::certs::KeyKind::default();
    let info = console.archive.admin().generate_certificate(&who.actor(), &r.alias, &subject, kind).await?;
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
    let alias = alias.trim_end_matches(".pem");
    let pem = console.archive.admin().certificate_pem(&who.actor(), alias)?;
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
    let problems = settings.oidc.problems();
    if !problems.is_empty() {
        return Err(WebError::BadRequest(problems.join("; ")));
    }
    let change = LoginChange {
        settings_json: serde_json::to_string(settings).map_err(|e| WebError::Internal(e.to_string()))?,
        tenant: &settings.oidc.tenant,
        client_secret: secret,
        assignments,
        summary: format!(
            "single sign-on {} ({} {}, client {}, auth {})",
            if settings.oidc.enabled { "on" } else { "off" },
            settings.oidc.provider,
            settings.oidc.issuer(),
            settings.oidc.client_id,
            settings.oidc.client_auth,
        ),
    };
    Ok(console.archive.admin().save_login(&who.actor(), &change).await?)
}

async fn login_config(console: &Console) -> Result<LoginConfig, WebError> {
    let s = LoginSettings::load(&console.archive).await?;
    let role_assignments = console.archive.admin().role_assignments(&s.oidc.tenant).await?;
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
    let role = Some(role).filter(|r| !r.trim().is_empty());
    Ok(console.archive.admin().create_api_key(&who.actor(), None, name, role).await?)
}

pub async fn revoke_api_key(console: &Console, who: &Principal, id: i64) -> Result<(), WebError> {
    Ok(console.archive.admin().revoke_api_key(&who.actor(), id).await?)
}

/// The caller's API keys.
#[utoipa::path(get, path = "/api-keys", responses((status = 200, body = Vec<ApiKey>), (status = 401, body = ApiError)))]
async fn api_keys(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiKey>> {
    Ok(Json(
        console
            .archive
            .admin()
            .api_keys(&who.actor())
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

#[derive(Serialize, ToSchema)]
pub struct TestOutcome {
    pub ok: bool,
    /// What the test found, or what went wrong and how to fix it.
    pub detail: String,
}

pub async fn test_connection(console: &Console, who: &Principal, name: &str) -> Result<TestOutcome, WebError> {
    let o = console.archive.admin().test_connection(&who.actor(), console.sources.as_ref(), name).await?;
    Ok(TestOutcome { ok: o.ok, detail: o.detail })
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

/// Starts a connection's job now: an IMAP poll, or a Microsoft 365 import that resumes where the
/// last one stopped (audited).
pub async fn start_source(console: &Console, who: &Principal, name: &str) -> Result<String, WebError> {
    Ok(console.archive.admin().start_source(&who.actor(), console.sources.as_ref(), name).await?)
}

/// Starts a connection's job now (an IMAP poll; a Microsoft 365 import, resuming where the last
/// one stopped) and lets it run on its schedule (administrators of the default tenant; audited).
#[utoipa::path(post, path = "/connections/{name}/start", params(("name" = String, Path)),
    responses((status = 202, body = TestOutcome), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn start_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let detail = start_source(&console, &who, &name).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(TestOutcome { ok: true, detail })).into_response())
}

/// Stops a connection's job: the run in progress ends after its batch, and none starts until the
/// connection is started again (administrators of the default tenant; audited).
#[utoipa::path(post, path = "/connections/{name}/stop", params(("name" = String, Path)),
    responses((status = 200, body = TestOutcome), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
async fn stop_api(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<TestOutcome> {
    let detail = console.archive.admin().stop_source(&who.actor(), console.sources.as_ref(), &name).await?;
    Ok(Json(TestOutcome { ok: true, detail }))
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
    console.sources.connection(&name).ok_or(WebError::NotFound)?;
    Ok(Json(console.sources.mailboxes(&name).into_iter().map(crate::MailboxStatus::from).collect()))
}
