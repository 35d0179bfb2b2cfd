//! `/api/v1` for retention rules, legal holds, retention runs, deletion certificates and
//! four-eyes deletion requests. Every rule (role, validation, audit, who may approve) is the
//! archive's (`coffer_archive::retention`); these handlers only translate.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use coffer_archive::catalog::{Deletion, DeletionRequest, LegalHold, RetentionRule, RetentionRun};
use coffer_archive::retention::{HoldSpec, ManualOutcome, RuleSpec, RunReport, period_text};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{ApiError, Body, Path};
use crate::auth::Principal;
use crate::{Console, WebError};

type ApiResult<T> = Result<Json<T>, WebError>;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/retention/rules", get(rules).post(add_rule))
        .route("/retention/rules/{name}/remove", post(remove_rule))
        .route("/retention/runs", get(runs).post(run))
        .route("/holds", get(holds).post(place_hold))
        .route("/holds/{name}/release", post(release_hold))
        .route("/deletions", get(deletions))
        .route("/deletion-requests", get(requests).post(request_deletion))
        .route("/deletion-requests/{id}/approve", post(approve))
        .route("/deletion-requests/{id}/reject", post(reject))
}

#[derive(Serialize, ToSchema)]
pub struct ApiRule {
    pub name: String,
    /// In the search language; empty matches every message.
    pub query: String,
    /// `90d`, `7y` or `forever`.
    pub keep: String,
    pub minimum: Option<String>,
    pub priority: i64,
    pub created_by: String,
    pub created_at: i64,
}

impl From<RetentionRule> for ApiRule {
    fn from(r: RetentionRule) -> Self {
        ApiRule {
            keep: period_text(r.keep_days),
            minimum: r.min_days.map(|d| period_text(Some(d))),
            name: r.name,
            query: r.query,
            priority: r.priority,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct RuleRequest {
    pub name: String,
    pub query: String,
    /// `90d`, `12w`, `6m`, `7y` or `forever`.
    pub keep: String,
    /// Nothing the rule matches may be deleted, by anyone, before this age.
    #[serde(default)]
    pub minimum: Option<String>,
    /// Rules are tried from the lowest number up (default 100).
    #[serde(default)]
    pub priority: Option<i64>,
}

/// The caller's tenant's retention rules, in the order they are tried (auditors, administrators).
#[utoipa::path(get, path = "/retention/rules", responses((status = 200, body = Vec<ApiRule>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn rules(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiRule>> {
    let list = console.archive.admin().rules(&who.actor(), who.tenant.id).await?;
    Ok(Json(list.into_iter().map(ApiRule::from).collect()))
}

/// Adds a rule, or replaces the one of that name (administrators; audited).
#[utoipa::path(post, path = "/retention/rules", request_body = RuleRequest,
    responses((status = 201, body = ApiRule), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn add_rule(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(r): Body<RuleRequest>,
) -> Result<Response, WebError> {
    let spec = RuleSpec { name: r.name, query: r.query, keep: r.keep, min: r.minimum, priority: r.priority };
    let rule = console.archive.admin().add_rule(&who.actor(), who.tenant.id, &spec).await?;
    Ok((axum::http::StatusCode::CREATED, Json(ApiRule::from(rule))).into_response())
}

/// Removes a rule (administrators; audited). Its record stays in the volumes.
#[utoipa::path(post, path = "/retention/rules/{name}/remove", params(("name" = String, Path)),
    responses((status = 204), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn remove_rule(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    console.archive.admin().remove_rule(&who.actor(), who.tenant.id, &name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize, ToSchema)]
pub struct ApiHold {
    pub name: String,
    pub reason: String,
    pub query: Option<String>,
    pub custodians: Vec<String>,
    pub date_from: Option<i64>,
    pub date_until: Option<i64>,
    pub placed_by: String,
    pub placed_at: i64,
    pub active: bool,
    pub released_by: Option<String>,
    pub released_at: Option<i64>,
    pub release_reason: Option<String>,
}

impl From<LegalHold> for ApiHold {
    fn from(h: LegalHold) -> Self {
        ApiHold {
            active: h.is_active(),
            name: h.name,
            reason: h.reason,
            query: h.query,
            custodians: h.custodians,
            date_from: h.date_from,
            date_until: h.date_until,
            placed_by: h.placed_by,
            placed_at: h.placed_at,
            released_by: h.released_by,
            released_at: h.released_at,
            release_reason: h.release_reason,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct HoldRequest {
    /// The matter.
    pub name: String,
    #[serde(default)]
    pub reason: String,
    /// The messages held, in the search language (`*` for all).
    #[serde(default)]
    pub query: Option<String>,
    /// Addresses whose mail (as a participant or in their mailbox) is held.
    #[serde(default)]
    pub custodians: Vec<String>,
    /// Message dates (Unix seconds) the hold is limited to.
    #[serde(default)]
    pub date_from: Option<i64>,
    #[serde(default)]
    pub date_until: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct Reason {
    pub reason: String,
}

/// The caller's tenant's legal holds, released ones too (auditors, administrators).
#[utoipa::path(get, path = "/holds", responses((status = 200, body = Vec<ApiHold>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn holds(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiHold>> {
    let list = console.archive.admin().holds(&who.actor(), Some(who.tenant.id)).await?;
    Ok(Json(list.into_iter().map(ApiHold::from).collect()))
}

/// Places a legal hold: nothing it covers is deleted until it is released (administrators; audited).
#[utoipa::path(post, path = "/holds", request_body = HoldRequest,
    responses((status = 201, body = ApiHold), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn place_hold(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(r): Body<HoldRequest>,
) -> Result<Response, WebError> {
    let spec = HoldSpec {
        name: r.name,
        reason: r.reason,
        query: r.query,
        custodians: r.custodians,
        date_from: r.date_from,
        date_until: r.date_until,
    };
    let hold = console.archive.admin().place_hold(&who.actor(), who.tenant.id, &spec).await?;
    Ok((axum::http::StatusCode::CREATED, Json(ApiHold::from(hold))).into_response())
}

/// Releases a hold; the reason is required and recorded (administrators; audited).
#[utoipa::path(post, path = "/holds/{name}/release", params(("name" = String, Path)), request_body = Reason,
    responses((status = 204), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn release_hold(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
    Body(r): Body<Reason>,
) -> Result<Response, WebError> {
    console.archive.admin().release_hold(&who.actor(), who.tenant.id, &name, &r.reason).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, ToSchema)]
pub struct RunRequest {
    /// Only count what would be deleted (answered at once); otherwise the run is queued.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ApiRuleOutcome {
    pub rule: String,
    pub keep: String,
    pub matched: usize,
    pub expired: usize,
    /// Deleted, or (dry run) would be.
    pub deleted: usize,
    pub held: usize,
    pub minimum: usize,
    pub waiting: usize,
    pub unshreddable: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ApiRunReport {
    pub run: i64,
    pub dry_run: bool,
    pub rules: Vec<ApiRuleOutcome>,
    pub deleted: usize,
    pub held: usize,
}

impl From<RunReport> for ApiRunReport {
    fn from(r: RunReport) -> Self {
        ApiRunReport {
            run: r.run,
            dry_run: r.dry_run,
            deleted: r.deleted(),
            held: r.held(),
            rules: r
                .tenants
                .into_iter()
                .flat_map(|t| t.rules)
                .map(|o| ApiRuleOutcome {
                    rule: o.rule,
                    keep: o.keep,
                    matched: o.matched,
                    expired: o.expired,
                    deleted: o.deleted,
                    held: o.held,
                    minimum: o.minimum,
                    waiting: o.waiting,
                    unshreddable: o.unshreddable,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiRun {
    pub id: i64,
    pub dry_run: bool,
    pub requested_by: String,
    pub requested_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// requested, running, done or failed.
    pub state: String,
    /// The report (JSON) or the failure.
    pub report: Option<String>,
}

impl From<RetentionRun> for ApiRun {
    fn from(r: RetentionRun) -> Self {
        ApiRun {
            id: r.id,
            dry_run: r.dry_run,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            state: r.state,
            report: r.report,
        }
    }
}

/// A dry run answers with its counts; a run that deletes is queued for the server's retention
/// task and answered 202 with its id (`GET /retention/runs` shows its report).
pub async fn start_run(console: &Console, who: &Principal, dry_run: bool) -> Result<Option<RunReport>, WebError> {
    let admin = console.archive.admin();
    if dry_run {
        return Ok(Some(admin.run_retention(&who.actor(), Some(who.tenant.id), true).await?));
    }
    admin.queue_retention(&who.actor(), Some(who.tenant.id)).await?;
    Ok(None)
}

/// Runs the tenant's rules: a dry run at once, a real one queued (administrators; audited).
#[utoipa::path(post, path = "/retention/runs", request_body = RunRequest,
    responses((status = 200, body = ApiRunReport), (status = 202), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn run(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(r): Body<RunRequest>,
) -> Result<Response, WebError> {
    Ok(match start_run(&console, &who, r.dry_run).await? {
        Some(report) => Json(ApiRunReport::from(report)).into_response(),
        None => axum::http::StatusCode::ACCEPTED.into_response(),
    })
}

/// The newest retention runs of the tenant, with their reports (auditors, administrators).
#[utoipa::path(get, path = "/retention/runs", responses((status = 200, body = Vec<ApiRun>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn runs(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiRun>> {
    let list = console.archive.admin().retention_runs(&who.actor(), who.tenant.id).await?;
    Ok(Json(list.into_iter().map(ApiRun::from).collect()))
}

#[derive(Serialize, ToSchema)]
pub struct ApiDeletion {
    pub message: i64,
    pub sha256: String,
    /// The message's date.
    pub date: i64,
    pub sender_domain: String,
    /// `rule:<name>` or `approval:<request id>`.
    pub reason: String,
    pub deleted_at: i64,
    /// recorded (keys being destroyed) or shredded (done).
    pub state: String,
}

impl From<Deletion> for ApiDeletion {
    fn from(d: Deletion) -> Self {
        ApiDeletion {
            message: d.message,
            sha256: d.sha256,
            date: d.date,
            sender_domain: d.sender_domain,
            reason: d.reason,
            deleted_at: d.decided_at,
            state: d.state,
        }
    }
}

/// Deletion certificates: what was deleted, when and why, newest first (auditors, administrators).
#[utoipa::path(get, path = "/deletions", responses((status = 200, body = Vec<ApiDeletion>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn deletions(State(console): State<Arc<Console>>, who: Principal) -> ApiResult<Vec<ApiDeletion>> {
    let list = console.archive.admin().deletions(&who.actor(), who.tenant.id, 1000).await?;
    Ok(Json(list.into_iter().map(ApiDeletion::from).collect()))
}

#[derive(Deserialize, ToSchema)]
pub struct DeletionRequestBody {
    /// Message ids to delete.
    #[serde(default)]
    pub ids: Vec<i64>,
    /// Or every message a query matches now.
    #[serde(default)]
    pub query: Option<String>,
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiDeletionRequest {
    pub id: i64,
    pub query: Option<String>,
    pub messages: usize,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// pending, approved or rejected.
    pub state: String,
}

impl From<DeletionRequest> for ApiDeletionRequest {
    fn from(r: DeletionRequest) -> Self {
        ApiDeletionRequest {
            id: r.id,
            query: r.query,
            messages: r.ids.len(),
            reason: r.reason,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            state: r.state,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiKept {
    pub message: i64,
    pub why: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiManualOutcome {
    pub deleted: Vec<i64>,
    pub kept: Vec<ApiKept>,
}

impl From<ManualOutcome> for ApiManualOutcome {
    fn from(o: ManualOutcome) -> Self {
        ApiManualOutcome {
            deleted: o.deleted,
            kept: o.kept.into_iter().map(|k| ApiKept { message: k.message, why: k.why }).collect(),
        }
    }
}

/// Asks for messages to be deleted by hand; a second administrator approves (administrators; audited).
#[utoipa::path(post, path = "/deletion-requests", request_body = DeletionRequestBody,
    responses((status = 201, body = ApiDeletionRequest), (status = 400, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn request_deletion(
    State(console): State<Arc<Console>>,
    who: Principal,
    Body(r): Body<DeletionRequestBody>,
) -> Result<Response, WebError> {
    let request = console
        .archive
        .admin()
        .request_deletion(&who.actor(), who.tenant.id, &r.ids, r.query.as_deref(), &r.reason)
        .await?;
    Ok((axum::http::StatusCode::CREATED, Json(ApiDeletionRequest::from(request))).into_response())
}

/// Deletion requests of the tenant, newest first (auditors, administrators).
#[utoipa::path(get, path = "/deletion-requests", responses((status = 200, body = Vec<ApiDeletionRequest>), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn requests(
    State(console): State<Arc<Console>>,
    who: Principal,
) -> ApiResult<Vec<ApiDeletionRequest>> {
    let list = console.archive.admin().deletion_requests(&who.actor(), who.tenant.id).await?;
    Ok(Json(list.into_iter().map(ApiDeletionRequest::from).collect()))
}

/// Approves a request: deletes what no hold and no minimum period protects; whoever asked cannot
/// approve (a second administrator; audited).
#[utoipa::path(post, path = "/deletion-requests/{id}/approve", params(("id" = i64, Path)),
    responses((status = 200, body = ApiManualOutcome), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn approve(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<i64>,
) -> ApiResult<ApiManualOutcome> {
    let outcome = console.archive.admin().decide_deletion(&who.actor(), who.tenant.id, id, true).await?;
    Ok(Json(outcome.into()))
}

/// Rejects a request (administrators; audited).
#[utoipa::path(post, path = "/deletion-requests/{id}/reject", params(("id" = i64, Path)),
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 403, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn reject(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    console.archive.admin().decide_deletion(&who.actor(), who.tenant.id, id, false).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}
