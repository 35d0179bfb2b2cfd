//! Retention rules, legal holds and defensible deletion.
//!
//! A run decides, per tenant, which messages their first matching rule (by priority) lets go:
//! older than the rule's keep period, counted from the message's date (its Date header, else its
//! arrival), younger than no matching rule's minimum, and under no active hold. Deciding takes
//! the catalog's hold-version row, so a hold placed during a run always wins for what is not yet
//! decided. A decided deletion is carried out in three durable steps, each of which the next run
//! (or the next writing open) finishes after a crash:
//!
//! 1. `decided`: the deletion certificate is in the catalog; nothing else changed.
//! 2. `recorded`: a tombstone is in the volume's chain and the message's rows are gone (the
//!    committer applies it like any evidence); the index document is queued for removal.
//! 3. `shredded`: the keys of the original and of its arrival evidence are destroyed.
//!
//! Manual deletions go through a request a second administrator approves (four eyes).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use coffer_catalog::{Catalog, Deletion, DeletionRequest, LegalHold, MessageRow, RetentionRule, RetentionRun};
use coffer_index::Scope;
use coffer_store::Store;
use serde::{Deserialize, Serialize};

use crate::evidence::{RecordAt, Tombstone};
use crate::service::{Actor, Archive, blocking};
use crate::{ArchiveError, Role};

/// `[retention]` in `coffer.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// `serve` runs the rules every day inside the window (UTC hours, start included, end not).
    pub schedule: bool,
    pub window_start_hour: u32,
    pub window_end_hour: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { schedule: true, window_start_hour: 2, window_end_hour: 5 }
    }
}

/// How long a command beside `serve` waits for it to take a run.
const HANDOVER_WAIT: Duration = Duration::from_secs(120);
/// Messages decided and carried out together.
const BATCH: usize = 200;
const DAY: i64 = 86_400;
/// Longest keep or minimum period: longer is "forever".
const MAX_DAYS: i64 = 200 * 366;
const MAX_NAME: usize = 100;
const MAX_REASON: usize = 2000;
const MAX_CUSTODIANS: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_and_write_back_the_same() {
        for text in ["1y", "7y", "10y", "90d", "forever"] {
            assert_eq!(period_text(parse_period(text).unwrap()), text);
        }
        assert_eq!(parse_period("12w").unwrap(), Some(84));
        assert_eq!(parse_period("6m").unwrap(), Some(180));
        assert_eq!(parse_period("1Y").unwrap(), Some(365));
        assert_eq!(parse_day("2023-01-01", false).unwrap(), 1_672_531_200);
        assert_eq!(parse_day("2024-03-05", true).unwrap(), 1_709_683_199);
        assert!(parse_day("2024-13-01", false).is_err() && parse_day("yesterday", false).is_err());
        for bad in ["", "y", "7 years", "-1d", "1.5y", "999999999999999999y"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }
}

/// `90d`, `12w`, `6m` (30 days), `7y` (365 days and a quarter), `forever` → days (None: forever).
pub fn parse_period(text: &str) -> Result<Option<i64>, ArchiveError> {
    let t = text.trim().to_ascii_lowercase();
    if t == "forever" {
        return Ok(None);
    }
    let explain = || ArchiveError::Invalid(format!("period {text:?}: write it as 90d, 12w, 6m, 7y or forever"));
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).ok_or_else(explain)?);
    let n: i64 = number.parse().map_err(|_| explain())?;
    let days = match unit {
        "d" => n,
        "w" => n.checked_mul(7).ok_or_else(explain)?,
        "m" => n.checked_mul(30).ok_or_else(explain)?,
        "y" => n.checked_mul(1461).ok_or_else(explain)? / 4,
        _ => return Err(explain()),
    };
    if days > MAX_DAYS {
        return Err(ArchiveError::Invalid(format!("period {text:?} is longer than 200 years: use forever")));
    }
    Ok(Some(days))
}

/// A day (`YYYY-MM-DD`, UTC) as Unix seconds at its start, or with `end` at its last second: the
/// date range of a hold.
pub fn parse_day(text: &str, end: bool) -> Result<i64, ArchiveError> {
    let t = text.trim();
    let bad = || ArchiveError::Invalid(format!("date {t:?}: write it as YYYY-MM-DD"));
    let parts: Vec<i64> = t.split('-').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let [y, m, d] = parts[..] else { return Err(bad()) };
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Ok(days * DAY + if end { DAY - 1 } else { 0 })
}

/// A period as it is written back.
pub fn period_text(days: Option<i64>) -> String {
    match days {
        None => "forever".into(),
        Some(d) => {
            let years = (d * 4 + 730) / 1461;
            if years > 0 && years * 1461 / 4 == d { format!("{years}y") } else { format!("{d}d") }
        }
    }
}

/// A rule as an administrator writes it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleSpec {
    pub name: String,
    pub query: String,
    pub keep: String,
    #[serde(default)]
    pub min: Option<String>,
    #[serde(default)]
    pub priority: Option<i64>,
}

/// A hold as an administrator places it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HoldSpec {
    pub name: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub custodians: Vec<String>,
    /// Unix seconds; message dates outside are not held.
    #[serde(default)]
    pub date_from: Option<i64>,
    #[serde(default)]
    pub date_until: Option<i64>,
}

/// What a run did (or would do) under one rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleOutcome {
    pub rule: String,
    pub keep: String,
    /// Messages this rule decides (the first matching one by priority).
    pub matched: usize,
    /// Of those, older than the keep period.
    pub expired: usize,
    /// Deleted (a dry run: would be).
    pub deleted: usize,
    /// Expired, but under a legal hold.
    pub held: usize,
    /// Expired, but younger than another matching rule's minimum.
    pub minimum: usize,
    /// Expired, but waiting to be indexed again (decided at the next run).
    pub waiting: usize,
    /// Expired, but stored before record keys: they cannot be shredded alone.
    pub unshreddable: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantOutcome {
    pub tenant: String,
    pub rules: Vec<RuleOutcome>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub run: i64,
    pub dry_run: bool,
    pub tenants: Vec<TenantOutcome>,
    /// Deletions an interrupted run had decided or recorded, finished now.
    pub finished: usize,
}

impl RunReport {
    pub fn deleted(&self) -> usize {
        self.tenants.iter().flat_map(|t| &t.rules).map(|r| r.deleted).sum()
    }

    pub fn held(&self) -> usize {
        self.tenants.iter().flat_map(|t| &t.rules).map(|r| r.held).sum()
    }
}

/// Why a message stays, when someone asks to delete it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub message: i64,
    pub why: String,
}

/// What an approved manual deletion did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ManualOutcome {
    pub deleted: Vec<i64>,
    pub kept: Vec<Kept>,
}

/// "message 12 was deleted on … under retention rule X": what `show` says of a deleted message.
pub fn describe_deletion(d: &Deletion) -> String {
    let when = crate::service::rfc3339(d.decided_at);
    let why = match d.reason.split_once(':') {
        Some(("rule", name)) => format!("under retention rule {name}"),
        Some(("approval", id)) => format!("by approved deletion request {id}"),
        _ => d.reason.clone(),
    };
    format!(
        "message {} was deleted on {when} {why}; its content is gone (SHA-256 {}, dated {}, from {})",
        d.message,
        d.sha256,
        crate::service::rfc3339(d.date),
        if d.sender_domain.is_empty() { "an unknown domain" } else { &d.sender_domain }
    )
}

fn check_name(what: &str, name: &str) -> Result<String, ArchiveError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ArchiveError::Invalid(format!("a {what} name has 1 to {MAX_NAME} characters")));
    }
    Ok(name.to_owned())
}

fn check_text(what: &str, text: &str, required: bool) -> Result<String, ArchiveError> {
    let text = text.trim();
    if required && text.is_empty() {
        return Err(ArchiveError::Invalid(format!("{what} is required")));
    }
    if text.chars().count() > MAX_REASON {
        return Err(ArchiveError::Invalid(format!("{what} has at most {MAX_REASON} characters")));
    }
    Ok(text.to_owned())
}

/// A rule or hold query: checked with the search language's parser (`*` is every message).
fn check_query(query: &str) -> Result<String, ArchiveError> {
    let q = query.trim();
    let q = if q == "*" { "" } else { q };
    coffer_index::query::parse(q).map_err(|e| ArchiveError::Invalid(format!("query {query:?}: {e}")))?;
    Ok(q.to_owned())
}

/// The day a message's age counts from.
fn message_date(row: &MessageRow) -> i64 {
    if row.date > 0 { row.date } else { row.archived_at }
}

fn sender_domain(row: &MessageRow) -> String {
    row.from_addr
        .as_deref()
        .or(row.sender.as_deref())
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

impl crate::admin::Admin<'_> {
    // --- rules ---

    pub async fn add_rule(
        &self,
        actor: &Actor,
        tenant_id: i64,
        spec: &RuleSpec,
    ) -> Result<RetentionRule, ArchiveError> {
        actor.require_in(Role::Administrator, tenant_id)?;
        let name = check_name("rule", &spec.name)?;
        let query = check_query(&spec.query)?;
        let keep_days = parse_period(&spec.keep)?;
        let min_days = match spec.min.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
            None => None,
            Some(m) => parse_period(m)?.or(Some(MAX_DAYS)),
        };
        if let (Some(keep), Some(min)) = (keep_days, min_days)
            && keep < min
        {
            return Err(ArchiveError::Invalid(format!(
                "rule {name}: it keeps mail {} but may not delete it before {}: make keep at least the minimum",
                period_text(Some(keep)),
                period_text(Some(min))
            )));
        }
        let rule = RetentionRule {
            tenant_id,
            name,
            query,
            keep_days,
            min_days,
            priority: spec.priority.unwrap_or(100).clamp(-1_000_000, 1_000_000),
            created_by: actor.name.clone(),
            created_at: crate::now(),
            removed_by: None,
            removed_at: None,
        };
        self.archive().catalog.put_rule(&rule).await?;
        self.archive().record_changes().await?;
        let detail = format!(
            "retention rule {} set: query {:?}, keep {}, minimum {}, priority {}",
            rule.name,
            rule.query,
            period_text(rule.keep_days),
            rule.min_days.map_or("none".into(), |d| period_text(Some(d))),
            rule.priority
        );
        self.archive().audit(actor, "retention", &detail).await?;
        Ok(rule)
    }

    pub async fn rules(&self, actor: &Actor, tenant_id: i64) -> Result<Vec<RetentionRule>, ArchiveError> {
        actor.require_in(Role::Auditor, tenant_id)?;
        Ok(self.archive().catalog.rules(tenant_id, false).await?)
    }

    pub async fn remove_rule(&self, actor: &Actor, tenant_id: i64, name: &str) -> Result<(), ArchiveError> {
        actor.require_in(Role::Administrator, tenant_id)?;
        if !self.archive().catalog.remove_rule(tenant_id, name.trim(), &actor.name).await? {
            return Err(ArchiveError::Invalid(format!("there is no retention rule named {name:?}")));
        }
        self.archive().record_changes().await?;
        self.archive().audit(actor, "retention", &format!("retention rule {} removed", name.trim())).await
    }

    // --- holds ---

    pub async fn place_hold(&self, actor: &Actor, tenant_id: i64, spec: &HoldSpec) -> Result<LegalHold, ArchiveError> {
        actor.require_in(Role::Administrator, tenant_id)?;
        let name = check_name("hold", &spec.name)?;
        let reason = check_text("the reason", &spec.reason, false)?;
        let query = match spec.query.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) => Some(check_query(q)?),
            None => None,
        };
        let custodians: Vec<String> = spec
            .custodians
            .iter()
            .flat_map(|c| c.split([',', ' ', '\n']))
            .map(|c| c.trim().to_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        if custodians.len() > MAX_CUSTODIANS {
            return Err(ArchiveError::Invalid(format!("a hold names at most {MAX_CUSTODIANS} custodians")));
        }
        if let Some(bad) = custodians.iter().find(|c| !c.contains('@') || c.len() > 320) {
            return Err(ArchiveError::Invalid(format!("custodian {bad:?}: give an email address")));
        }
        if query.is_none() && custodians.is_empty() {
            return Err(ArchiveError::Invalid(
                "a hold needs a query, custodians, or both (use * to hold every message)".into(),
            ));
        }
        if let (Some(from), Some(until)) = (spec.date_from, spec.date_until)
            && from > until
        {
            return Err(ArchiveError::Invalid("the hold's date range ends before it starts".into()));
        }
        let hold = LegalHold {
            tenant_id,
            name,
            reason,
            query,
            custodians,
            date_from: spec.date_from,
            date_until: spec.date_until,
            placed_by: actor.name.clone(),
            placed_at: crate::now(),
            released_by: None,
            released_at: None,
            release_reason: None,
        };
        self.archive().catalog.place_hold(&hold).await?;
        self.archive().record_changes().await?;
        let detail = format!(
            "legal hold {} placed: query {:?}, custodians {}, reason {:?}",
            hold.name,
            hold.query.as_deref().unwrap_or(""),
            if hold.custodians.is_empty() { "none".into() } else { hold.custodians.join(", ") },
            hold.reason
        );
        self.archive().audit(actor, "hold", &detail).await?;
        Ok(hold)
    }

    /// Holds of a tenant (or, for a system administrator with None, of all), released ones too.
    pub async fn holds(&self, actor: &Actor, tenant_id: Option<i64>) -> Result<Vec<LegalHold>, ArchiveError> {
        let tenant_id = match tenant_id {
            None if actor.is_system_admin() => None,
            None => Some(actor.tenant.id),
            Some(t) => {
                actor.require_in(Role::Auditor, t)?;
                Some(t)
            }
        };
        actor.require(Role::Auditor)?;
        Ok(self.archive().catalog.holds(tenant_id, false).await?)
    }

    pub async fn release_hold(
        &self,
        actor: &Actor,
        tenant_id: i64,
        name: &str,
        reason: &str,
    ) -> Result<(), ArchiveError> {
        actor.require_in(Role::Administrator, tenant_id)?;
        let reason = check_text("a reason for the release", reason, true)?;
        if !self.archive().catalog.release_hold(tenant_id, name.trim(), &actor.name, &reason).await? {
            return Err(ArchiveError::Invalid(format!("there is no active hold named {name:?}")));
        }
        self.archive().record_changes().await?;
        self.archive().audit(actor, "hold", &format!("legal hold {} released: {reason:?}", name.trim())).await
    }

    // --- runs ---

    /// Runs the rules of one tenant (or of all, for a system administrator with None). A dry
    /// run only counts. A run that deletes needs the store's writer: beside `serve` it is handed
    /// to the serving process, and this waits for its report.
    pub async fn run_retention(
        &self,
        actor: &Actor,
        tenant_id: Option<i64>,
        dry_run: bool,
    ) -> Result<RunReport, ArchiveError> {
        match tenant_id {
            Some(t) => actor.require_in(Role::Administrator, t)?,
            None => actor.require_system_admin()?,
        }
        let archive = self.archive();
        if dry_run || archive.store.is_writable() {
            let run = archive.catalog.add_run(tenant_id, dry_run, &actor.name, true).await?;
            let report = archive.retention().run(run, tenant_id, dry_run).await;
            return archive.retention().finish_run(actor, run, report).await;
        }
        let run = archive.catalog.add_run(tenant_id, dry_run, &actor.name, false).await?;
        let asked = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Some(r) = archive.catalog.run(run).await? else { return Err(ArchiveError::NotFound) };
            match r.state.as_str() {
                // The serving process takes requested runs every few seconds; one that never does
                // has stopped (the run stays queued for its next start).
                "requested" if asked.elapsed() > HANDOVER_WAIT => {
                    return Err(ArchiveError::Unavailable(format!(
                        "no serving process took retention run {run}: is `coffer serve` running? The run stays \
                         queued for its next start"
                    )));
                }
                "done" => {
                    return serde_json::from_str(r.report.as_deref().unwrap_or("{}"))
                        .map_err(|e| ArchiveError::Internal(format!("run {run}'s report does not read: {e}")))
                        .map(|report: RunReport| RunReport { run, ..report });
                }
                "failed" => {
                    return Err(ArchiveError::Internal(format!(
                        "retention run {run} failed: {}",
                        r.report.unwrap_or_default()
                    )));
                }
                _ => {}
            }
        }
    }

    /// Queues a run that deletes for the serving process's retention task; returns its id.
    pub async fn queue_retention(&self, actor: &Actor, tenant_id: Option<i64>) -> Result<i64, ArchiveError> {
        match tenant_id {
            Some(t) => actor.require_in(Role::Administrator, t)?,
            None => actor.require_system_admin()?,
        }
        let run = self.archive().catalog.add_run(tenant_id, false, &actor.name, false).await?;
        self.archive().audit(actor, "retention", &format!("retention run {run} queued")).await?;
        Ok(run)
    }

    pub async fn retention_runs(&self, actor: &Actor, tenant_id: i64) -> Result<Vec<RetentionRun>, ArchiveError> {
        actor.require_in(Role::Auditor, tenant_id)?;
        Ok(self.archive().catalog.runs(Some(tenant_id), 50).await?)
    }

    /// The deletion certificates of a tenant, newest first.
    pub async fn deletions(&self, actor: &Actor, tenant_id: i64, limit: i64) -> Result<Vec<Deletion>, ArchiveError> {
        actor.require_in(Role::Auditor, tenant_id)?;
        Ok(self.archive().catalog.deletions(tenant_id, limit.clamp(1, 10_000)).await?)
    }

    // --- four eyes ---

    /// Asks for messages to be deleted by hand: by id, or every match of a query now. A second
    /// administrator approves (or rejects) it.
    pub async fn request_deletion(
        &self,
        actor: &Actor,
        tenant_id: i64,
        ids: &[i64],
        query: Option<&str>,
        reason: &str,
    ) -> Result<DeletionRequest, ArchiveError> {
        actor.require_in(Role::Administrator, tenant_id)?;
        let reason = check_text("a reason", reason, true)?;
        let mut all: Vec<i64> = ids.to_vec();
        let query = match query.map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) => {
                let q = check_query(q)?;
                let index = self.archive().index.clone();
                let scope = Scope { tenant: Some(tenant_id as u64), visible_to: None };
                let q2 = q.clone();
                index.reload()?;
                all.extend(blocking(move || index.all_ids(&q2, &scope)).await??.into_iter().map(|i| i as i64));
                Some(q)
            }
            None => None,
        };
        all.sort_unstable();
        all.dedup();
        if all.is_empty() {
            return Err(ArchiveError::Invalid(
                "name the messages to delete (ids, or a query that matches some)".into(),
            ));
        }
        if all.len() > 100_000 {
            return Err(ArchiveError::Invalid("at most 100,000 messages per deletion request".into()));
        }
        let id = self
            .archive()
            .catalog
            .add_deletion_request(tenant_id, query.as_deref(), &all, &reason, &actor.name)
            .await?;
        self.archive()
            .audit(actor, "deletion", &format!("deletion request {id}: {} messages, reason {reason:?}", all.len()))
            .await?;
        self.archive().catalog.deletion_request(tenant_id, id).await?.ok_or(ArchiveError::NotFound)
    }

    pub async fn deletion_requests(&self, actor: &Actor, tenant_id: i64) -> Result<Vec<DeletionRequest>, ArchiveError> {
        actor.require_in(Role::Auditor, tenant_id)?;
        Ok(self.archive().catalog.deletion_requests(tenant_id, 100).await?)
    }

    /// The second administrator's decision. Approving deletes what no hold and no minimum
    /// period protects (and says why the rest stays); whoever asked cannot approve.
    pub async fn decide_deletion(
        &self,
        actor: &Actor,
        tenant_id: i64,
        id: i64,
        approve: bool,
    ) -> Result<ManualOutcome, ArchiveError> {
        actor.require_in(Role::Administrator, tenant_id)?;
        let archive = self.archive();
        let request = archive.catalog.deletion_request(tenant_id, id).await?.ok_or(ArchiveError::NotFound)?;
        if request.state != "pending" {
            return Err(ArchiveError::Invalid(format!("deletion request {id} was {} already", request.state)));
        }
        if request.requested_by == actor.name {
            return Err(ArchiveError::Forbidden(
                "a deletion needs a second administrator: whoever asked for it cannot approve it".into(),
            ));
        }
        if !approve {
            archive.catalog.decide_deletion_request(id, &actor.name, "rejected", "{}").await?;
            archive.audit(actor, "deletion", &format!("deletion request {id} rejected")).await?;
            return Ok(ManualOutcome::default());
        }
        if !archive.store.is_writable() {
            return Err(ArchiveError::Invalid(
                "deleting needs the store's writer: approve it in the console or API of the serving process".into(),
            ));
        }
        if !archive.catalog.decide_deletion_request(id, &actor.name, "approved", "{}").await? {
            return Err(ArchiveError::Invalid(format!("deletion request {id} was decided meanwhile")));
        }
        let outcome = archive.retention().delete_by_hand(tenant_id, &request.ids, &format!("approval:{id}")).await?;
        let result = serde_json::to_string(&outcome).expect("outcome serialises");
        archive.catalog.decide_deletion_request_result(id, &result).await?;
        archive
            .audit(
                actor,
                "deletion",
                &format!(
                    "deletion request {id} (asked by {}) approved: {} deleted, {} kept",
                    request.requested_by,
                    outcome.deleted.len(),
                    outcome.kept.len()
                ),
            )
            .await?;
        Ok(outcome)
    }
}

/// What governs one message: the rule that decides its retention and the holds over it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Governing {
    pub rule: Option<String>,
    pub keep: String,
    /// When the rule lets it go (None: kept forever).
    pub deletable_from: Option<i64>,
    /// Before this, no one may delete it (the longest minimum of the rules that match).
    pub protected_until: Option<i64>,
    pub holds: Vec<String>,
}

impl crate::admin::Admin<'_> {
    /// The rule and the holds that apply to one message (auditors and administrators).
    pub async fn governing(&self, actor: &Actor, id: i64) -> Result<Governing, ArchiveError> {
        actor.require(Role::Auditor)?;
        let archive = self.archive();
        // The rules and holds of the message's own tenant (another one's, across tenants).
        let row = archive.catalog.messages(&[id]).await?.pop().filter(|r| actor.reads(r.tenant_id));
        let row = row.ok_or(ArchiveError::NotFound)?;
        let tenant = row.tenant_id;
        let date = message_date(&row);
        let index = archive.index.clone();
        let scope = Scope { tenant: Some(tenant as u64), visible_to: None };
        let matches = |query: String| {
            let (index, scope) = (index.clone(), scope.clone());
            blocking(move || index.matches(&query, &scope, id as u64))
        };
        let mut out = Governing { keep: "forever".into(), ..Default::default() };
        for rule in archive.catalog.rules(tenant, false).await? {
            if !matches(rule.query.clone()).await?? {
                continue;
            }
            if out.rule.is_none() {
                out.rule = Some(rule.name.clone());
                out.keep = period_text(rule.keep_days);
                out.deletable_from = rule.keep_days.map(|d| date + (d + 1) * DAY);
            }
            if let Some(m) = rule.min_days {
                let until = date + (m + 1) * DAY;
                out.protected_until = Some(out.protected_until.map_or(until, |u| u.max(until)));
            }
        }
        for hold in archive.catalog.holds(Some(tenant), true).await? {
            let by_query = match &hold.query {
                Some(q) => matches(q.clone()).await??,
                None => true,
            };
            let by_custodian = hold.custodians.is_empty()
                || archive.catalog.messages_of_custodians(tenant, &hold.custodians).await?.contains(&id);
            let dated = hold.date_from.is_none_or(|f| date >= f) && hold.date_until.is_none_or(|u| date <= u);
            if by_query && by_custodian && dated {
                out.holds.push(hold.name);
            }
        }
        Ok(out)
    }
}

/// The retention engine of an archive; `archive.retention()`.
pub struct Retention<'a> {
    archive: &'a Archive,
}

impl Archive {
    pub fn retention(&self) -> Retention<'_> {
        Retention { archive: self }
    }

    /// Runs what commands beside this process asked for, and the daily schedule in its window.
    pub fn spawn_retention(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let archive = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = archive.retention_tick().await {
                    tracing::error!(error = %e, "retention: a run failed; retrying later");
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    }

    async fn retention_tick(&self) -> Result<(), ArchiveError> {
        let operator = Actor::operator;
        while let Some(run) = self.catalog.take_requested_run().await? {
            let mut actor = operator(self.catalog.default_tenant().await?);
            actor.name = run.requested_by.clone();
            let report = self.retention().run(run.id, run.tenant_id, run.dry_run).await;
            self.retention().finish_run(&actor, run.id, report).await?;
        }
        let config = &self.config.retention;
        if !config.schedule {
            return Ok(());
        }
        let now = crate::now();
        let hour = (now.rem_euclid(DAY) / 3600) as u32;
        let in_window = if config.window_start_hour <= config.window_end_hour {
            (config.window_start_hour..config.window_end_hour).contains(&hour)
        } else {
            hour >= config.window_start_hour || hour < config.window_end_hour
        };
        let last = self.catalog.last_run_finished().await?;
        if in_window && last.is_none_or(|l| now - l > DAY - 4 * 3600) {
            let mut actor = operator(self.catalog.default_tenant().await?);
            actor.name = "schedule".into();
            let run = self.catalog.add_run(None, false, &actor.name, true).await?;
            let report = self.retention().run(run, None, false).await;
            self.retention().finish_run(&actor, run, report).await?;
        }
        Ok(())
    }
}

impl Retention<'_> {
    fn catalog(&self) -> &Catalog {
        &self.archive.catalog
    }

    async fn finish_run(
        &self,
        actor: &Actor,
        run: i64,
        report: Result<RunReport, ArchiveError>,
    ) -> Result<RunReport, ArchiveError> {
        match report {
            Ok(report) => {
                let text = serde_json::to_string(&report).expect("report serialises");
                self.catalog().finish_run(run, false, &text).await?;
                let detail = format!(
                    "retention run {run}{}: {} {}, {} protected by holds",
                    if report.dry_run { " (dry run)" } else { "" },
                    report.deleted(),
                    if report.dry_run { "would be deleted" } else { "deleted" },
                    report.held()
                );
                self.archive.audit(actor, "retention", &detail).await?;
                Ok(report)
            }
            Err(e) => {
                self.catalog().finish_run(run, true, &e.to_string()).await?;
                self.archive.audit(actor, "retention", &format!("retention run {run} failed: {e}")).await?;
                Err(e)
            }
        }
    }

    /// One run over one tenant or all of them.
    pub async fn run(&self, run: i64, tenant_id: Option<i64>, dry_run: bool) -> Result<RunReport, ArchiveError> {
        let mut report = RunReport { run, dry_run, ..Default::default() };
        if !dry_run {
            report.finished = self.finish_interrupted().await?;
        }
        // Decisions need the index to be current for what they look at.
        self.archive.index.reload()?;
        for tenant in self.catalog().tenants().await? {
            if tenant_id.is_some_and(|t| t != tenant.id) {
                continue;
            }
            let rules = self.catalog().rules(tenant.id, false).await?;
            if rules.is_empty() {
                continue;
            }
            let outcome = self.run_tenant(tenant.id, &rules, dry_run).await?;
            report.tenants.push(TenantOutcome { tenant: tenant.name.clone(), rules: outcome });
        }
        if !dry_run && report.deleted() + report.finished > 0 {
            self.purge_traces().await?;
        }
        Ok(report)
    }

    async fn ids_of(&self, tenant_id: i64, query: &str) -> Result<HashSet<i64>, ArchiveError> {
        let index = self.archive.index.clone();
        let scope = Scope { tenant: Some(tenant_id as u64), visible_to: None };
        let query = query.to_owned();
        Ok(blocking(move || index.all_ids(&query, &scope)).await??.into_iter().map(|i| i as i64).collect())
    }

    /// Each matching rule's minimum (the longest) for these messages.
    async fn minimums(&self, tenant_id: i64, rules: &[RetentionRule]) -> Result<HashMap<i64, i64>, ArchiveError> {
        let mut min: HashMap<i64, i64> = HashMap::new();
        for rule in rules {
            if let Some(days) = rule.min_days {
                for id in self.ids_of(tenant_id, &rule.query).await? {
                    let m = min.entry(id).or_insert(days);
                    *m = (*m).max(days);
                }
            }
        }
        Ok(min)
    }

    /// Which of `ids` an active hold covers, and the holds' version that was evaluated.
    async fn held(
        &self,
        tenant_id: i64,
        rows: &HashMap<i64, MessageRow>,
    ) -> Result<(HashMap<i64, String>, i64), ArchiveError> {
        let version = self.catalog().holds_version().await?;
        let mut held: HashMap<i64, String> = HashMap::new();
        for hold in self.catalog().holds(Some(tenant_id), true).await? {
            let by_query = match &hold.query {
                Some(q) => Some(self.ids_of(tenant_id, q).await?),
                None => None,
            };
            let by_custodian = if hold.custodians.is_empty() {
                None
            } else {
                Some(self.catalog().messages_of_custodians(tenant_id, &hold.custodians).await?)
            };
            for (id, row) in rows {
                let date = message_date(row);
                let covered = by_query.as_ref().is_none_or(|s| s.contains(id))
                    && by_custodian.as_ref().is_none_or(|s| s.contains(id))
                    && hold.date_from.is_none_or(|f| date >= f)
                    && hold.date_until.is_none_or(|u| date <= u);
                if covered {
                    held.entry(*id).or_insert_with(|| hold.name.clone());
                }
            }
        }
        Ok((held, version))
    }

    async fn rows(&self, ids: &[i64]) -> Result<HashMap<i64, MessageRow>, ArchiveError> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            out.extend(self.catalog().messages(chunk).await?.into_iter().map(|r| (r.id, r)));
        }
        Ok(out)
    }

    async fn run_tenant(
        &self,
        tenant_id: i64,
        rules: &[RetentionRule],
        dry_run: bool,
    ) -> Result<Vec<RuleOutcome>, ArchiveError> {
        let now = crate::now();
        // The first matching rule by priority decides.
        let mut decided: HashMap<i64, usize> = HashMap::new();
        let mut outcomes: Vec<RuleOutcome> = rules
            .iter()
            .map(|r| RuleOutcome { rule: r.name.clone(), keep: period_text(r.keep_days), ..Default::default() })
            .collect();
        for (i, rule) in rules.iter().enumerate() {
            for id in self.ids_of(tenant_id, &rule.query).await? {
                decided.entry(id).or_insert(i);
            }
        }
        for &i in decided.values() {
            outcomes[i].matched += 1;
        }
        let finite: Vec<i64> =
            decided.iter().filter(|(_, i)| rules[**i].keep_days.is_some()).map(|(id, _)| *id).collect();
        let rows = self.rows(&finite).await?;
        let minimums = self.minimums(tenant_id, rules).await?;
        let waiting = self.catalog().queued_for_index(&finite).await?;
        let mut expired: Vec<i64> = Vec::new();
        for (id, row) in &rows {
            let rule = decided[id];
            let age_days = (now - message_date(row)) / DAY;
            if age_days <= rules[rule].keep_days.expect("finite") {
                continue;
            }
            outcomes[rule].expired += 1;
            if minimums.get(id).is_some_and(|&m| age_days <= m) {
                outcomes[rule].minimum += 1;
            } else if waiting.contains(id) {
                outcomes[rule].waiting += 1;
            } else {
                expired.push(*id);
            }
        }
        expired.sort_unstable();
        let expired_rows: HashMap<i64, MessageRow> =
            expired.iter().filter_map(|id| rows.get(id).map(|r| (*id, r.clone()))).collect();
        let (mut held, mut version) = self.held(tenant_id, &expired_rows).await?;
        for batch in expired.chunks(BATCH) {
            // Decided against the holds evaluated at `version`; a hold placed since sends the
            // batch round again with the holds evaluated anew.
            let (certificates, unshreddable) = loop {
                let go: Vec<i64> = batch.iter().copied().filter(|id| !held.contains_key(id)).collect();
                if dry_run {
                    break (Vec::new(), HashSet::new());
                }
                let reason = |id: i64| format!("rule:{}", rules[decided[&id]].name);
                let (certificates, unshreddable) = self.certificates(&go, &expired_rows, reason).await?;
                if certificates.is_empty() || self.catalog().decide_deletions(version, &certificates).await? {
                    break (certificates, unshreddable);
                }
                (held, version) = self.held(tenant_id, &expired_rows).await?;
            };
            for id in batch {
                let o = &mut outcomes[decided[id]];
                if held.contains_key(id) {
                    o.held += 1;
                } else if unshreddable.contains(id) {
                    o.unshreddable += 1;
                } else if dry_run {
                    o.deleted += 1;
                }
            }
            if certificates.is_empty() {
                continue;
            }
            crate::crash_point("retention-after-decide");
            for c in &certificates {
                outcomes[decided[&c.message]].deleted += 1;
            }
            self.carry_out(certificates).await?;
        }
        Ok(outcomes)
    }

    /// Deletion certificates for these messages, and the ones whose records cannot be shredded
    /// alone (stored before record keys).
    async fn certificates(
        &self,
        ids: &[i64],
        rows: &HashMap<i64, MessageRow>,
        reason: impl Fn(i64) -> String,
    ) -> Result<(Vec<Deletion>, HashSet<i64>), ArchiveError> {
        let mut arrivals = self.catalog().arrival_records(ids).await?;
        let now = crate::now();
        let mut out = Vec::new();
        let mut unshreddable = HashSet::new();
        let records: Vec<(i64, Vec<coffer_catalog::RecordRef>)> = ids
            .iter()
            .filter_map(|id| {
                let row = rows.get(id)?;
                let mut records = vec![row.record.clone()];
                records.extend(arrivals.remove(id).unwrap_or_default());
                Some((*id, records))
            })
            .collect();
        // Each record's header says whether it has its own key: read for the whole batch at once.
        let store = self.archive.store.clone();
        let checked = records.clone();
        let shreddable: HashSet<i64> = blocking(move || {
            let mut ok = HashSet::new();
            for (id, records) in &checked {
                if records
                    .iter()
                    .try_fold(true, |all, r| store.can_shred(&RecordAt::of(r).location()).map(|c| all && c))?
                {
                    ok.insert(*id);
                }
            }
            Ok::<_, coffer_store::StoreError>(ok)
        })
        .await??;
        for (id, records) in records {
            if !shreddable.contains(&id) {
                unshreddable.insert(id);
                continue;
            }
            let row = &rows[&id];
            out.push(Deletion {
                message: id,
                tenant_id: row.tenant_id,
                sha256: row.sha256.clone(),
                date: message_date(row),
                sender_domain: sender_domain(row),
                reason: reason(id),
                decided_at: now,
                records,
                state: "decided".into(),
            });
        }
        Ok((out, unshreddable))
    }

    /// Steps 2 and 3 for decided deletions: tombstones through the committer, then the keys.
    async fn carry_out(&self, deletions: Vec<Deletion>) -> Result<(), ArchiveError> {
        let tombstones: Vec<Tombstone> = deletions
            .iter()
            .map(|d| Tombstone {
                message: d.message,
                tenant: d.tenant_id,
                sha256: d.sha256.clone(),
                date: d.date,
                sender_domain: d.sender_domain.clone(),
                reason: d.reason.clone(),
                decided_at: d.decided_at,
                record: RecordAt::of(&d.records[0]),
                arrivals: d.records[1..].iter().map(RecordAt::of).collect(),
                at: crate::now(),
            })
            .collect();
        // Every deletion is in the audit log, a batch per entry.
        let mut by_reason: HashMap<(i64, &str), Vec<String>> = HashMap::new();
        for d in &deletions {
            by_reason.entry((d.tenant_id, d.reason.as_str())).or_default().push(d.message.to_string());
        }
        for ((tenant, reason), ids) in by_reason {
            let detail = format!("messages deleted ({reason}): {}", ids.join(", "));
            self.catalog().audit(Some(tenant), "retention", "", "deletion", &detail).await?;
        }
        self.archive.pipeline().record_deletions(tombstones).await?;
        crate::crash_point("retention-after-tombstones");
        shred(&self.archive.store, self.catalog(), &deletions).await
    }

    /// Finishes what an interrupted run left: decided deletions a hold now covers are taken
    /// back, the others carried out; recorded ones are shredded. Returns how many were finished.
    async fn finish_interrupted(&self) -> Result<usize, ArchiveError> {
        let recorded = self.catalog().deletions_in_state("recorded").await?;
        shred(&self.archive.store, self.catalog(), &recorded).await?;
        let decided = self.catalog().deletions_in_state("decided").await?;
        let mut finished = recorded.len();
        let mut by_tenant: HashMap<i64, Vec<Deletion>> = HashMap::new();
        for d in decided {
            by_tenant.entry(d.tenant_id).or_default().push(d);
        }
        for (tenant_id, deletions) in by_tenant {
            let ids: Vec<i64> = deletions.iter().map(|d| d.message).collect();
            let rows = self.rows(&ids).await?;
            let (held, _) = self.held(tenant_id, &rows).await?;
            let (cancel, go): (Vec<Deletion>, Vec<Deletion>) =
                deletions.into_iter().partition(|d| held.contains_key(&d.message) || !rows.contains_key(&d.message));
            self.catalog().cancel_deletions(&cancel.iter().map(|d| d.message).collect::<Vec<_>>()).await?;
            finished += go.len();
            if !go.is_empty() {
                self.carry_out(go).await?;
            }
        }
        Ok(finished)
    }

    /// Deletes what an approved request names, but nothing a hold or a minimum period protects.
    async fn delete_by_hand(&self, tenant_id: i64, ids: &[i64], reason: &str) -> Result<ManualOutcome, ArchiveError> {
        self.archive.index.reload()?;
        let rows = self.rows(ids).await?;
        let mut outcome = ManualOutcome::default();
        for id in ids {
            if !rows.get(id).is_some_and(|r| r.tenant_id == tenant_id) {
                outcome.kept.push(Kept { message: *id, why: "no such message (deleted already?)".into() });
            }
        }
        let rows: HashMap<i64, MessageRow> = rows.into_iter().filter(|(_, r)| r.tenant_id == tenant_id).collect();
        let rules = self.catalog().rules(tenant_id, false).await?;
        let minimums = self.minimums(tenant_id, &rules).await?;
        let waiting = self.catalog().queued_for_index(&rows.keys().copied().collect::<Vec<_>>()).await?;
        let now = crate::now();
        let mut candidates: Vec<i64> = Vec::new();
        for (id, row) in &rows {
            let age_days = (now - message_date(row)) / DAY;
            if let Some(m) = minimums.get(id).filter(|&&m| age_days <= m) {
                outcome
                    .kept
                    .push(Kept { message: *id, why: format!("a rule's minimum period ({})", period_text(Some(*m))) });
            } else if waiting.contains(id) {
                outcome.kept.push(Kept { message: *id, why: "waiting to be indexed; ask again shortly".into() });
            } else {
                candidates.push(*id);
            }
        }
        candidates.sort_unstable();
        loop {
            let (held, version) = self.held(tenant_id, &rows).await?;
            let go: Vec<i64> = candidates.iter().copied().filter(|id| !held.contains_key(id)).collect();
            let (certificates, unshreddable) = self.certificates(&go, &rows, |_| reason.to_owned()).await?;
            if !self.catalog().decide_deletions(version, &certificates).await? {
                continue;
            }
            for id in &candidates {
                if let Some(h) = held.get(id) {
                    outcome.kept.push(Kept { message: *id, why: format!("legal hold {h}") });
                } else if unshreddable.contains(id) {
                    outcome.kept.push(Kept {
                        message: *id,
                        why: "stored before record keys: it cannot be shredded alone".into(),
                    });
                }
            }
            outcome.deleted = certificates.iter().map(|c| c.message).collect();
            for chunk in certificates.chunks(BATCH) {
                self.carry_out(chunk.to_vec()).await?;
            }
            break;
        }
        outcome.kept.sort_by_key(|k| k.message);
        if !outcome.deleted.is_empty() {
            self.purge_traces().await?;
        }
        Ok(outcome)
    }

    /// After deletions: the index documents go (here, or by the serving indexer) and the index
    /// and the catalog keep nothing of them in their files.
    async fn purge_traces(&self) -> Result<(), ArchiveError> {
        self.archive.indexer().run_until_idle().await?;
        let index = self.archive.index.clone();
        blocking(move || index.purge()).await??;
        self.catalog().compact().await?;
        Ok(())
    }
}

/// Destroys the keys of these deletions' records and marks them done. Shredding twice does no
/// harm, so a crash in between only means doing it again.
pub(crate) async fn shred(store: &Arc<Store>, catalog: &Catalog, deletions: &[Deletion]) -> Result<(), ArchiveError> {
    if deletions.is_empty() {
        return Ok(());
    }
    let store = store.clone();
    let locations: Vec<coffer_store::Location> =
        deletions.iter().flat_map(|d| d.records.iter().map(|r| RecordAt::of(r).location())).collect();
    blocking(move || locations.iter().try_for_each(|l| store.shred(l).map(|_| ()))).await??;
    catalog.deletions_shredded(&deletions.iter().map(|d| d.message).collect::<Vec<_>>()).await?;
    Ok(())
}
