//! Configuration → Retention (rules, dry run, runs, deletion requests with their approval) and
//! Configuration → Holds. The operations are the archive's, as in the API (`governance`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use coffer_archive::retention::{HoldSpec, RuleSpec, RunReport, period_text};
use coffer_archive::service::rfc3339;
use minijinja::context;
use serde::Deserialize;

use crate::auth::{Principal, Role};
use crate::error::PageError;
use crate::render::page;
use crate::{Console, WebError};

type PageResult = Result<Response, PageError>;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/config/retention", get(retention).post(add_rule))
        .route("/config/retention/{name}/remove", post(remove_rule))
        .route("/config/retention/run", post(run))
        .route("/config/retention/requests", post(request_deletion))
        .route("/config/retention/requests/{id}/approve", post(approve))
        .route("/config/retention/requests/{id}/reject", post(reject))
        .route("/config/holds", get(holds).post(place_hold))
        .route("/config/holds/{name}/release", post(release_hold))
}

/// What the retention page shows besides its tables: an error beside the form it belongs to,
/// the values typed before it, a dry run's counts, a request's outcome.
#[derive(Default)]
struct Shown {
    error: Option<(&'static str, String)>,
    rule: Option<RuleForm>,
    report: Option<RunReport>,
    notice: Option<String>,
}

async fn retention(State(console): State<Arc<Console>>, who: Principal) -> PageResult {
    render_retention(&console, &who, Shown::default()).await
}

async fn render_retention(console: &Console, who: &Principal, shown: Shown) -> PageResult {
    who.require(Role::Administrator)?;
    let admin = console.archive.admin();
    let actor = who.actor();
    let tenant = who.tenant.id;
    let rules: Vec<_> = admin
        .rules(&actor, tenant)
        .await?
        .into_iter()
        .map(|r| {
            context! {
                name => r.name, query => if r.query.is_empty() { "*".to_owned() } else { r.query },
                keep => period_text(r.keep_days), minimum => r.min_days.map(|d| period_text(Some(d))),
                priority => r.priority, by => r.created_by,
            }
        })
        .collect();
    let runs: Vec<_> = admin
        .retention_runs(&actor, tenant)
        .await?
        .into_iter()
        .take(20)
        .map(|r| {
            let summary = r
                .report
                .as_deref()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                .map(|v| {
                    let sum = |field: &str| -> u64 {
                        v["tenants"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .flat_map(|t| t["rules"].as_array().into_iter().flatten())
                            .filter_map(|r| r[field].as_u64())
                            .sum()
                    };
                    let verb = if r.dry_run { "would delete" } else { "deleted" };
                    format!("{verb} {}, {} held", sum("deleted"), sum("held"))
                })
                .unwrap_or_else(|| r.report.clone().unwrap_or_default());
            context! {
                id => r.id, dry_run => r.dry_run, by => r.requested_by, state => r.state,
                at => rfc3339(r.started_at.unwrap_or(r.requested_at)), summary,
            }
        })
        .collect();
    let requests: Vec<_> = admin
        .deletion_requests(&actor, tenant)
        .await?
        .into_iter()
        .map(|r| {
            context! {
                id => r.id, messages => r.ids.len(), query => r.query, reason => r.reason,
                by => r.requested_by, at => rfc3339(r.requested_at), state => r.state,
                decided_by => r.decided_by, mine => r.requested_by == actor.name,
            }
        })
        .collect();
    let deletions: Vec<_> = admin
        .deletions(&actor, tenant, 50)
        .await?
        .into_iter()
        .map(|d| {
            context! {
                message => d.message, sha256 => d.sha256, date => rfc3339(d.date), domain => d.sender_domain,
                reason => d.reason, at => rfc3339(d.decided_at),
            }
        })
        .collect();
    let report = shown.report.map(|r| {
        let rules: Vec<_> = r
            .tenants
            .iter()
            .flat_map(|t| &t.rules)
            .map(|o| {
                context! {
                    rule => o.rule, keep => o.keep, matched => o.matched, expired => o.expired,
                    deleted => o.deleted, held => o.held, minimum => o.minimum, waiting => o.waiting,
                }
            })
            .collect();
        context! { dry_run => r.dry_run, rules, deleted => r.deleted(), held => r.held() }
    });
    let (error_at, error) = shown.error.map_or((None, None), |(at, e)| (Some(at), Some(e)));
    let rule = shown.rule.unwrap_or_default();
    let ctx = context! {
        rules, runs, requests, deletions, report, error_at, error, notice => shown.notice,
        form => context! { name => rule.name, query => rule.query, keep => rule.keep, minimum => rule.minimum, priority => rule.priority },
    };
    Ok(page(console, Some(who), "config_retention.html", ctx)?.into_response())
}

#[derive(Deserialize, Default, Clone)]
struct RuleForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    keep: String,
    #[serde(default)]
    minimum: String,
    #[serde(default)]
    priority: String,
}

async fn add_rule(State(console): State<Arc<Console>>, who: Principal, Form(f): Form<RuleForm>) -> PageResult {
    let priority = match f.priority.trim() {
        "" => Ok(None),
        p => p.parse::<i64>().map(Some).map_err(|_| "the priority is a whole number, lowest tried first".to_owned()),
    };
    let result: Result<(), String> = match priority {
        Err(e) => Err(e),
        Ok(priority) => {
            let spec = RuleSpec {
                name: f.name.clone(),
                query: f.query.clone(),
                keep: f.keep.clone(),
                min: Some(f.minimum.clone()).filter(|m| !m.trim().is_empty()),
                priority,
            };
            match console.archive.admin().add_rule(&who.actor(), who.tenant.id, &spec).await {
                Ok(_) => return Ok(Redirect::to("/config/retention").into_response()),
                Err(e) => match WebError::from(e) {
                    WebError::BadRequest(m) => Err(m),
                    other => return Err(other.into()),
                },
            }
        }
    };
    let error = result.err().map(|e| ("rule", e));
    render_retention(&console, &who, Shown { error, rule: Some(f), ..Default::default() }).await
}

async fn remove_rule(State(console): State<Arc<Console>>, who: Principal, Path(name): Path<String>) -> PageResult {
    console.archive.admin().remove_rule(&who.actor(), who.tenant.id, &name).await.map_err(WebError::from)?;
    Ok(Redirect::to("/config/retention").into_response())
}

#[derive(Deserialize)]
struct RunForm {
    #[serde(default)]
    dry_run: Option<String>,
}

async fn run(State(console): State<Arc<Console>>, who: Principal, Form(f): Form<RunForm>) -> PageResult {
    let dry_run = f.dry_run.is_some();
    match crate::governance::start_run(&console, &who, dry_run).await {
        Ok(report) => {
            let notice = (!dry_run).then(|| "The run is queued; its report appears under Runs shortly.".to_owned());
            render_retention(&console, &who, Shown { report, notice, ..Default::default() }).await
        }
        Err(WebError::BadRequest(e)) => {
            render_retention(&console, &who, Shown { error: Some(("run", e)), ..Default::default() }).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct RequestForm {
    #[serde(default)]
    ids: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    reason: String,
}

async fn request_deletion(
    State(console): State<Arc<Console>>,
    who: Principal,
    Form(f): Form<RequestForm>,
) -> PageResult {
    let ids: Result<Vec<i64>, _> =
        f.ids.split([',', ' ', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect();
    let Ok(ids) = ids else {
        let error = Some(("request", "message ids are numbers, separated by commas or spaces".to_owned()));
        return render_retention(&console, &who, Shown { error, ..Default::default() }).await;
    };
    let query = Some(f.query.as_str()).filter(|q| !q.trim().is_empty());
    match console.archive.admin().request_deletion(&who.actor(), who.tenant.id, &ids, query, &f.reason).await {
        Ok(r) => {
            let notice = Some(format!(
                "Deletion request {} ({} messages) waits for a second administrator's approval.",
                r.id,
                r.ids.len()
            ));
            render_retention(&console, &who, Shown { notice, ..Default::default() }).await
        }
        Err(e) => match WebError::from(e) {
            WebError::BadRequest(m) => {
                render_retention(&console, &who, Shown { error: Some(("request", m)), ..Default::default() }).await
            }
            other => Err(other.into()),
        },
    }
}

async fn decide(console: &Console, who: &Principal, id: i64, approve: bool) -> PageResult {
    match console.archive.admin().decide_deletion(&who.actor(), who.tenant.id, id, approve).await {
        Ok(outcome) => {
            let notice = Some(if approve {
                format!(
                    "Deletion request {id} approved: {} deleted, {} kept{}.",
                    outcome.deleted.len(),
                    outcome.kept.len(),
                    outcome
                        .kept
                        .first()
                        .map(|k| format!(" (e.g. message {}: {})", k.message, k.why))
                        .unwrap_or_default()
                )
            } else {
                format!("Deletion request {id} rejected.")
            });
            render_retention(console, who, Shown { notice, ..Default::default() }).await
        }
        Err(e) => match WebError::from(e) {
            WebError::BadRequest(m) | WebError::Forbidden(m) => {
                render_retention(console, who, Shown { error: Some(("requests", m)), ..Default::default() }).await
            }
            other => Err(other.into()),
        },
    }
}

async fn approve(State(console): State<Arc<Console>>, who: Principal, Path(id): Path<i64>) -> PageResult {
    decide(&console, &who, id, true).await
}

async fn reject(State(console): State<Arc<Console>>, who: Principal, Path(id): Path<i64>) -> PageResult {
    decide(&console, &who, id, false).await
}

// --- holds ---

#[derive(Deserialize, Default, Clone)]
struct HoldForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    custodians: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
}

async fn holds(State(console): State<Arc<Console>>, who: Principal) -> PageResult {
    render_holds(&console, &who, None, HoldForm::default()).await
}

async fn render_holds(
    console: &Console,
    who: &Principal,
    error: Option<(&'static str, String)>,
    form: HoldForm,
) -> PageResult {
    who.require(Role::Administrator)?;
    let holds: Vec<_> = console
        .archive
        .admin()
        .holds(&who.actor(), Some(who.tenant.id))
        .await?
        .into_iter()
        .map(|h| {
            context! {
                active => h.is_active(), name => h.name, reason => h.reason, query => h.query,
                custodians => h.custodians.join(", "), placed_by => h.placed_by, placed_at => rfc3339(h.placed_at),
                from => h.date_from.map(|d| rfc3339(d)[..10].to_owned()), until => h.date_until.map(|d| rfc3339(d)[..10].to_owned()),
                released_by => h.released_by, released_at => h.released_at.map(rfc3339), release_reason => h.release_reason,
            }
        })
        .collect();
    let (error_at, error) = error.map_or((None, None), |(at, e)| (Some(at), Some(e)));
    let ctx = context! {
        holds, error_at, error,
        form => context! { name => form.name, reason => form.reason, query => form.query, custodians => form.custodians, from => form.from, until => form.until },
    };
    Ok(page(console, Some(who), "config_holds.html", ctx)?.into_response())
}

/// An optional day from the form's date field.
fn day(text: &str, end: bool) -> Result<Option<i64>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    coffer_archive::retention::parse_day(text, end).map(Some).map_err(|e| e.to_string())
}

async fn place_hold(State(console): State<Arc<Console>>, who: Principal, Form(f): Form<HoldForm>) -> PageResult {
    let dates = day(&f.from, false).and_then(|from| day(&f.until, true).map(|until| (from, until)));
    let (date_from, date_until) = match dates {
        Ok(d) => d,
        Err(e) => return render_holds(&console, &who, Some(("hold", e)), f).await,
    };
    let spec = HoldSpec {
        name: f.name.clone(),
        reason: f.reason.clone(),
        query: Some(f.query.clone()).filter(|q| !q.trim().is_empty()),
        custodians: vec![f.custodians.clone()],
        date_from,
        date_until,
    };
    match console.archive.admin().place_hold(&who.actor(), who.tenant.id, &spec).await {
        Ok(_) => Ok(Redirect::to("/config/holds").into_response()),
        Err(e) => match WebError::from(e) {
            WebError::BadRequest(m) => render_holds(&console, &who, Some(("hold", m)), f).await,
            other => Err(other.into()),
        },
    }
}

#[derive(Deserialize)]
struct ReleaseForm {
    #[serde(default)]
    reason: String,
}

async fn release_hold(
    State(console): State<Arc<Console>>,
    who: Principal,
    Path(name): Path<String>,
    Form(f): Form<ReleaseForm>,
) -> PageResult {
    match console.archive.admin().release_hold(&who.actor(), who.tenant.id, &name, &f.reason).await {
        Ok(()) => Ok(Redirect::to("/config/holds").into_response()),
        Err(e) => match WebError::from(e) {
            WebError::BadRequest(m) => render_holds(&console, &who, Some(("release", m)), HoldForm::default()).await,
            other => Err(other.into()),
        },
    }
}
