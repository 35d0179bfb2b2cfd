//! Retention rules, legal holds, deletion certificates, retention runs and four-eyes deletion
//! requests. Rules and holds are configuration that protects evidence, so they are recorded in
//! the volumes as evidence (`evidenced` NULL until then) and come back with a rebuilt catalog.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::messages::{placeholders, rows_of};
use crate::{Catalog, CatalogError, RecordRef, Result};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionRule {
    pub tenant_id: i64,
    pub name: String,
    /// In the search language; `*` matches every message.
    pub query: String,
    /// None: kept forever.
    pub keep_days: Option<i64>,
    /// Nothing the rule matches may be deleted, by anyone, before this age.
    pub min_days: Option<i64>,
    /// Rules are tried from the lowest number up; the first that matches decides.
    pub priority: i64,
    pub created_by: String,
    pub created_at: i64,
    pub removed_by: Option<String>,
    pub removed_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegalHold {
    pub tenant_id: i64,
    /// The matter.
    pub name: String,
    pub reason: String,
    pub query: Option<String>,
    /// Addresses whose mail is held: as a participant, or as the owner of a mailbox.
    pub custodians: Vec<String>,
    /// Message dates (Unix seconds) the hold is limited to, both ends included.
    pub date_from: Option<i64>,
    pub date_until: Option<i64>,
    pub placed_by: String,
    pub placed_at: i64,
    pub released_by: Option<String>,
    pub released_at: Option<i64>,
    pub release_reason: Option<String>,
}

impl LegalHold {
    pub fn is_active(&self) -> bool {
        self.released_at.is_none()
    }
}

/// What stays of a deleted message: the fact of its deletion.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deletion {
    pub message: i64,
    pub tenant_id: i64,
    pub sha256: String,
    pub date: i64,
    pub sender_domain: String,
    /// `rule:<name>` or `approval:<request id>`.
    pub reason: String,
    pub decided_at: i64,
    /// The records whose keys go: the original first, then its arrivals' evidence.
    pub records: Vec<RecordRef>,
    /// decided | recorded | shredded
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetentionRun {
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub dry_run: bool,
    pub requested_by: String,
    pub requested_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// requested | running | done | failed
    pub state: String,
    /// JSON: the run's report, or the error.
    pub report: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeletionRequest {
    pub id: i64,
    pub tenant_id: i64,
    pub query: Option<String>,
    pub ids: Vec<i64>,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// pending | approved | rejected
    pub state: String,
    pub result: Option<String>,
}

const RULE_COLUMNS: &str =
    "tenant_id, name, query, keep_days, min_days, priority, created_by, created_at, removed_by, removed_at";
const HOLD_COLUMNS: &str = "tenant_id, name, reason, query, custodians, date_from, date_until, placed_by, placed_at, \
                            released_by, released_at, release_reason";
const DELETION_COLUMNS: &str = "message, tenant_id, sha256, date, sender_domain, reason, decided_at, records, state";

fn records_text(records: &[RecordRef]) -> String {
    let list: Vec<(&str, i64, i64, i64)> =
        records.iter().map(|r| (r.volume.as_str(), r.segment, r.offset, r.length)).collect();
    serde_json::to_string(&list).expect("records serialise")
}
const RUN_COLUMNS: &str = "id, tenant_id, dry_run, requested_by, requested_at, started_at, finished_at, state, report";
const REQUEST_COLUMNS: &str =
    "id, tenant_id, query, ids, reason, requested_by, requested_at, decided_by, decided_at, state, result";

fn rule_row(r: &AnyRow) -> Result<RetentionRule> {
    Ok(RetentionRule {
        tenant_id: r.try_get(0)?,
        name: r.try_get(1)?,
        query: r.try_get(2)?,
        keep_days: r.try_get(3)?,
        min_days: r.try_get(4)?,
        priority: r.try_get(5)?,
        created_by: r.try_get(6)?,
        created_at: r.try_get(7)?,
        removed_by: r.try_get(8)?,
        removed_at: r.try_get(9)?,
    })
}

fn hold_row(r: &AnyRow) -> Result<LegalHold> {
    let custodians: String = r.try_get(4)?;
    Ok(LegalHold {
        tenant_id: r.try_get(0)?,
        name: r.try_get(1)?,
        reason: r.try_get(2)?,
        query: r.try_get(3)?,
        custodians: serde_json::from_str(&custodians)
            .map_err(|e| CatalogError::Invalid(format!("a hold's custodians do not read: {e}")))?,
        date_from: r.try_get(5)?,
        date_until: r.try_get(6)?,
        placed_by: r.try_get(7)?,
        placed_at: r.try_get(8)?,
        released_by: r.try_get(9)?,
        released_at: r.try_get(10)?,
        release_reason: r.try_get(11)?,
    })
}

fn deletion_row(r: &AnyRow) -> Result<Deletion> {
    Ok(Deletion {
        message: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        sha256: r.try_get(2)?,
        date: r.try_get(3)?,
        sender_domain: r.try_get(4)?,
        reason: r.try_get(5)?,
        decided_at: r.try_get(6)?,
        records: {
            let text: String = r.try_get(7)?;
            let list: Vec<(String, i64, i64, i64)> = serde_json::from_str(&text)
                .map_err(|e| CatalogError::Invalid(format!("a deletion's records do not read: {e}")))?;
            list.into_iter()
                .map(|(volume, segment, offset, length)| RecordRef { volume, segment, offset, length })
                .collect()
        },
        state: r.try_get(8)?,
    })
}

fn run_row(r: &AnyRow) -> Result<RetentionRun> {
    Ok(RetentionRun {
        id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        dry_run: r.try_get::<i64, _>(2)? != 0,
        requested_by: r.try_get(3)?,
        requested_at: r.try_get(4)?,
        started_at: r.try_get(5)?,
        finished_at: r.try_get(6)?,
        state: r.try_get(7)?,
        report: r.try_get(8)?,
    })
}

fn request_row(r: &AnyRow) -> Result<DeletionRequest> {
    let ids: String = r.try_get(3)?;
    Ok(DeletionRequest {
        id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        query: r.try_get(2)?,
        ids: serde_json::from_str(&ids)
            .map_err(|e| CatalogError::Invalid(format!("a deletion request's ids do not read: {e}")))?,
        reason: r.try_get(4)?,
        requested_by: r.try_get(5)?,
        requested_at: r.try_get(6)?,
        decided_by: r.try_get(7)?,
        decided_at: r.try_get(8)?,
        state: r.try_get(9)?,
        result: r.try_get(10)?,
    })
}

impl Catalog {
    // ---- rules ----

    /// Adds a rule, or replaces the one of that name (a removed one comes back).
    pub async fn put_rule(&self, rule: &RetentionRule) -> Result<()> {
        let mut tx = self.write().await?;
        put_rule(&mut tx, rule, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks the rule removed (it stays, for the record). False when there was no such rule.
    pub async fn remove_rule(&self, tenant_id: i64, name: &str, by: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE retention_rules SET removed_by = $1, removed_at = $2, evidenced = NULL \
             WHERE tenant_id = $3 AND name = $4 AND removed_at IS NULL",
        )
        .bind(by)
        .bind(crate::now())
        .bind(tenant_id)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A tenant's rules in the order they are tried (removed ones only when asked).
    pub async fn rules(&self, tenant_id: i64, with_removed: bool) -> Result<Vec<RetentionRule>> {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM retention_rules WHERE tenant_id = $1 AND ($2 = 1 OR removed_at IS NULL) \
             ORDER BY priority, name"
        );
        let rows = sqlx::query(&sql).bind(tenant_id).bind(with_removed as i64).fetch_all(&self.pool).await?;
        rows.iter().map(rule_row).collect()
    }

    // ---- holds ----

    /// Places a hold. Fails when the tenant has a hold of that name (placed or released: a
    /// matter's name is never reused).
    pub async fn place_hold(&self, hold: &LegalHold) -> Result<()> {
        let mut tx = self.write().await?;
        // The version row first: a deletion being decided waits, then sees a new version.
        sqlx::query("UPDATE holds_version SET version = version + 1 WHERE id = 1").execute(&mut *tx).await?;
        let exists = sqlx::query("SELECT 1 FROM legal_holds WHERE tenant_id = $1 AND name = $2")
            .bind(hold.tenant_id)
            .bind(&hold.name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(CatalogError::Invalid(format!(
                "there is already a hold named {:?} (released holds keep their names): choose another name",
                hold.name
            )));
        }
        put_hold(&mut tx, hold, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Releases an active hold. False when there was no active hold of that name.
    pub async fn release_hold(&self, tenant_id: i64, name: &str, by: &str, reason: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE legal_holds SET released_by = $1, released_at = $2, release_reason = $3, evidenced = NULL \
             WHERE tenant_id = $4 AND name = $5 AND released_at IS NULL",
        )
        .bind(by)
        .bind(crate::now())
        .bind(reason)
        .bind(tenant_id)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Holds, newest first: of one tenant or all, active ones only or all.
    pub async fn holds(&self, tenant_id: Option<i64>, active_only: bool) -> Result<Vec<LegalHold>> {
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM legal_holds WHERE ($1 IS NULL OR tenant_id = $1) \
             AND ($2 = 0 OR released_at IS NULL) ORDER BY placed_at DESC, name"
        );
        let rows = sqlx::query(&sql).bind(tenant_id).bind(active_only as i64).fetch_all(&self.pool).await?;
        rows.iter().map(hold_row).collect()
    }

    /// Changes whenever a hold is placed.
    pub async fn holds_version(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT version FROM holds_version WHERE id = 1").fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// Rules and holds whose current state has no evidence record yet.
    pub async fn unrecorded_governance(&self) -> Result<(Vec<RetentionRule>, Vec<LegalHold>)> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM retention_rules WHERE evidenced IS NULL ORDER BY id");
        let rules = sqlx::query(&sql).fetch_all(&self.pool).await?.iter().map(rule_row).collect::<Result<_>>()?;
        let sql = format!("SELECT {HOLD_COLUMNS} FROM legal_holds WHERE evidenced IS NULL ORDER BY id");
        let holds = sqlx::query(&sql).fetch_all(&self.pool).await?.iter().map(hold_row).collect::<Result<_>>()?;
        Ok((rules, holds))
    }

    /// Messages of the tenant a custodian took part in (From, Sender, any recipient) or that lie
    /// in a custodian's mailbox. Addresses are compared lowercased.
    pub async fn messages_of_custodians(&self, tenant_id: i64, custodians: &[String]) -> Result<HashSet<i64>> {
        let mut out = HashSet::new();
        let addresses: Vec<String> = custodians.iter().map(|a| a.trim().to_lowercase()).collect();
        for chunk in addresses.chunks(100) {
            let list = placeholders(2, chunk.len());
            let sql = format!(
                "SELECT r.message FROM recipients r JOIN messages m ON m.id = r.message \
                 WHERE m.tenant_id = $1 AND r.address IN ({list}) \
                 UNION SELECT id FROM messages WHERE tenant_id = $1 AND (lower(from_addr) IN ({list}) OR lower(sender) IN ({list})) \
                 UNION SELECT p.message FROM placements p JOIN messages m ON m.id = p.message \
                 WHERE m.tenant_id = $1 AND lower(p.mailbox) IN ({list})"
            );
            let mut query = sqlx::query(&sql).bind(tenant_id);
            for a in chunk {
                query = query.bind(a.clone());
            }
            for row in query.fetch_all(&self.pool).await? {
                out.insert(row.try_get(0)?);
            }
        }
        Ok(out)
    }

    /// Of these messages, those waiting to be (re)indexed: their index document may be behind.
    pub async fn queued_for_index(&self, ids: &[i64]) -> Result<HashSet<i64>> {
        let mut out = HashSet::new();
        for chunk in ids.chunks(500) {
            let sql = format!("SELECT message FROM index_queue WHERE message IN ({})", placeholders(1, chunk.len()));
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await? {
                out.insert(row.try_get(0)?);
            }
        }
        Ok(out)
    }

    // ---- deletions ----

    /// Decides these deletions, unless a hold was placed since `holds_version` (then nothing is
    /// decided and false comes back: evaluate the holds again). Taking the version row first
    /// makes placing a hold and deciding a deletion happen one after the other.
    pub async fn decide_deletions(&self, holds_version: i64, deletions: &[Deletion]) -> Result<bool> {
        let mut tx = self.write().await?;
        let now: i64 = sqlx::query("UPDATE holds_version SET version = version WHERE id = 1 RETURNING version")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if now != holds_version {
            return Ok(false);
        }
        for chunk in deletions.chunks(50) {
            let sql = format!(
                "INSERT INTO deletions ({DELETION_COLUMNS}) VALUES {} ON CONFLICT (message) DO NOTHING",
                rows_of(chunk.len(), 9)
            );
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql);
            for d in chunk {
                query = query
                    .bind(d.message)
                    .bind(d.tenant_id)
                    .bind(&d.sha256)
                    .bind(d.date)
                    .bind(&d.sender_domain)
                    .bind(&d.reason)
                    .bind(d.decided_at)
                    .bind(records_text(&d.records))
                    .bind("decided");
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletions in one state (decided: nothing written yet; recorded: keys still to shred).
    pub async fn deletions_in_state(&self, state: &str) -> Result<Vec<Deletion>> {
        let sql = format!("SELECT {DELETION_COLUMNS} FROM deletions WHERE state = $1 ORDER BY message");
        let rows = sqlx::query(&sql).bind(state).fetch_all(&self.pool).await?;
        rows.iter().map(deletion_row).collect()
    }

    /// Takes back decided deletions that were not carried out (a hold now covers them).
    pub async fn cancel_deletions(&self, ids: &[i64]) -> Result<()> {
        for id in ids {
            sqlx::query("DELETE FROM deletions WHERE message = $1 AND state = 'decided'")
                .bind(*id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Marks deletions done: the keys of their records are destroyed.
    pub async fn deletions_shredded(&self, ids: &[i64]) -> Result<()> {
        for chunk in ids.chunks(500) {
            let sql =
                format!("UPDATE deletions SET state = 'shredded' WHERE message IN ({})", placeholders(1, chunk.len()));
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// The deletion certificate of a message, if it was deleted.
    pub async fn deletion(&self, tenant_id: i64, message: i64) -> Result<Option<Deletion>> {
        let sql = format!("SELECT {DELETION_COLUMNS} FROM deletions WHERE message = $1 AND tenant_id = $2");
        let row = sqlx::query(&sql).bind(message).bind(tenant_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(deletion_row).transpose()
    }

    /// A tenant's deletion certificates, newest first.
    pub async fn deletions(&self, tenant_id: i64, limit: i64) -> Result<Vec<Deletion>> {
        let sql = format!(
            "SELECT {DELETION_COLUMNS} FROM deletions WHERE tenant_id = $1 AND state <> 'decided' \
             ORDER BY decided_at DESC, message DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(tenant_id).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(deletion_row).collect()
    }

    /// Messages deleted per hour since `since`: (the hour's start, tenant, count).
    pub async fn deletions_per_hour(&self, since: i64) -> Result<Vec<(i64, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT (decided_at / 3600) * 3600 AS hour, tenant_id, COUNT(*) FROM deletions \
             WHERE decided_at >= $1 AND state <> 'decided' GROUP BY hour, tenant_id ORDER BY hour",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
    }

    /// Where the arrival evidence records of these messages lie.
    pub async fn arrival_records(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<RecordRef>>> {
        let mut out: HashMap<i64, Vec<RecordRef>> = HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT message, volume, segment, record_offset, record_length FROM arrival_records \
                 WHERE message IN ({}) ORDER BY message, volume, segment, record_offset",
                placeholders(1, chunk.len())
            );
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for r in query.fetch_all(&self.pool).await? {
                out.entry(r.try_get(0)?).or_default().push(RecordRef {
                    volume: r.try_get(1)?,
                    segment: r.try_get(2)?,
                    offset: r.try_get(3)?,
                    length: r.try_get(4)?,
                });
            }
        }
        Ok(out)
    }

    // ---- runs ----

    /// Records a run asked for (state `requested`) or starting now (`running`); returns its id.
    pub async fn add_run(&self, tenant_id: Option<i64>, dry_run: bool, by: &str, running: bool) -> Result<i64> {
        let now = crate::now();
        let id: i64 = sqlx::query(
            "INSERT INTO retention_runs (tenant_id, dry_run, requested_by, requested_at, started_at, state) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(tenant_id)
        .bind(dry_run as i64)
        .bind(by)
        .bind(now)
        .bind(running.then_some(now))
        .bind(if running { "running" } else { "requested" })
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(id)
    }

    /// Takes the oldest run asked for, marking it running.
    pub async fn take_requested_run(&self) -> Result<Option<RetentionRun>> {
        // Asked every few seconds: a read first, the write lock only when there is one to take.
        let waiting = sqlx::query("SELECT 1 FROM retention_runs WHERE state = 'requested' LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        if waiting.is_none() {
            return Ok(None);
        }
        let mut tx = self.write().await?;
        let sql = format!("SELECT {RUN_COLUMNS} FROM retention_runs WHERE state = 'requested' ORDER BY id LIMIT 1");
        let Some(row) = sqlx::query(&sql).fetch_optional(&mut *tx).await? else { return Ok(None) };
        let mut run = run_row(&row)?;
        let now = crate::now();
        sqlx::query("UPDATE retention_runs SET state = 'running', started_at = $1 WHERE id = $2")
            .bind(now)
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        run.state = "running".into();
        run.started_at = Some(now);
        Ok(Some(run))
    }

    pub async fn finish_run(&self, id: i64, failed: bool, report: &str) -> Result<()> {
        sqlx::query("UPDATE retention_runs SET state = $1, finished_at = $2, report = $3 WHERE id = $4")
            .bind(if failed { "failed" } else { "done" })
            .bind(crate::now())
            .bind(report)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn run(&self, id: i64) -> Result<Option<RetentionRun>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM retention_runs WHERE id = $1");
        sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?.as_ref().map(run_row).transpose()
    }

    /// The newest runs (of a tenant, or of all when `tenant_id` is None).
    pub async fn runs(&self, tenant_id: Option<i64>, limit: i64) -> Result<Vec<RetentionRun>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM retention_runs WHERE ($1 IS NULL OR tenant_id IS NULL OR tenant_id = $1) \
             ORDER BY id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(tenant_id).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(run_row).collect()
    }

    /// When the last run that deleted (not a dry run) finished.
    pub async fn last_run_finished(&self) -> Result<Option<i64>> {
        Ok(sqlx::query("SELECT MAX(finished_at) FROM retention_runs WHERE dry_run = 0 AND state = 'done'")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    // ---- four eyes ----

    pub async fn add_deletion_request(
        &self,
        tenant_id: i64,
        query: Option<&str>,
        ids: &[i64],
        reason: &str,
        by: &str,
    ) -> Result<i64> {
        let ids = serde_json::to_string(ids).expect("ids serialise");
        let id: i64 = sqlx::query(
            "INSERT INTO deletion_requests (tenant_id, query, ids, reason, requested_by, requested_at, state) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending') RETURNING id",
        )
        .bind(tenant_id)
        .bind(query)
        .bind(ids)
        .bind(reason)
        .bind(by)
        .bind(crate::now())
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(id)
    }

    pub async fn deletion_request(&self, tenant_id: i64, id: i64) -> Result<Option<DeletionRequest>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM deletion_requests WHERE id = $1 AND tenant_id = $2");
        sqlx::query(&sql)
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(request_row)
            .transpose()
    }

    pub async fn deletion_requests(&self, tenant_id: i64, limit: i64) -> Result<Vec<DeletionRequest>> {
        let sql =
            format!("SELECT {REQUEST_COLUMNS} FROM deletion_requests WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2");
        let rows = sqlx::query(&sql).bind(tenant_id).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(request_row).collect()
    }

    /// What an approved request did (JSON).
    pub async fn decide_deletion_request_result(&self, id: i64, result: &str) -> Result<()> {
        sqlx::query("UPDATE deletion_requests SET result = $1 WHERE id = $2")
            .bind(result)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Folds SQLite's write-ahead log into the database file and empties it, so that rows just
    /// deleted (overwritten there by secure_delete) survive in no older page copy.
    pub async fn compact(&self) -> Result<()> {
        if self.dialect() == crate::Dialect::Sqlite {
            // Busy while a reader still uses an older snapshot: a few tries, then the next
            // automatic checkpoint does it.
            for _ in 0..20 {
                let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&self.pool).await?;
                let busy: i64 = row.try_get(0)?;
                if busy == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Decides a pending request (approved or rejected). False when it was no longer pending.
    pub async fn decide_deletion_request(&self, id: i64, by: &str, state: &str, result: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE deletion_requests SET decided_by = $1, decided_at = $2, state = $3, result = $4 \
             WHERE id = $5 AND state = 'pending'",
        )
        .bind(by)
        .bind(crate::now())
        .bind(state)
        .bind(result)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

pub(crate) async fn put_rule(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    rule: &RetentionRule,
    evidenced: Option<i64>,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO retention_rules ({RULE_COLUMNS}, evidenced) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (tenant_id, name) DO UPDATE SET query = excluded.query, keep_days = excluded.keep_days, \
         min_days = excluded.min_days, priority = excluded.priority, created_by = excluded.created_by, \
         created_at = excluded.created_at, removed_by = excluded.removed_by, removed_at = excluded.removed_at, \
         evidenced = excluded.evidenced"
    ))
    .bind(rule.tenant_id)
    .bind(&rule.name)
    .bind(&rule.query)
    .bind(rule.keep_days)
    .bind(rule.min_days)
    .bind(rule.priority)
    .bind(&rule.created_by)
    .bind(rule.created_at)
    .bind(rule.removed_by.clone())
    .bind(rule.removed_at)
    .bind(evidenced)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) async fn put_hold(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    hold: &LegalHold,
    evidenced: Option<i64>,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO legal_holds ({HOLD_COLUMNS}, evidenced) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (tenant_id, name) DO UPDATE SET reason = excluded.reason, query = excluded.query, \
         custodians = excluded.custodians, date_from = excluded.date_from, date_until = excluded.date_until, \
         placed_by = excluded.placed_by, placed_at = excluded.placed_at, released_by = excluded.released_by, \
         released_at = excluded.released_at, release_reason = excluded.release_reason, evidenced = excluded.evidenced"
    ))
    .bind(hold.tenant_id)
    .bind(&hold.name)
    .bind(&hold.reason)
    .bind(hold.query.clone())
    .bind(serde_json::to_string(&hold.custodians).expect("custodians serialise"))
    .bind(hold.date_from)
    .bind(hold.date_until)
    .bind(&hold.placed_by)
    .bind(hold.placed_at)
    .bind(hold.released_by.clone())
    .bind(hold.released_at)
    .bind(hold.release_reason.clone())
    .bind(evidenced)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A deletion as its tombstone tells it: the message's rows go, its certificate stays (recorded:
/// its keys are destroyed next, by whoever applies it).
pub(crate) async fn apply_deletion(tx: &mut sqlx::Transaction<'static, sqlx::Any>, d: &Deletion) -> Result<()> {
    for table in ["recipients", "placements", "source_items", "ocr_text", "ocr_queue"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE message = $1")).bind(d.message).execute(&mut **tx).await?;
    }
    sqlx::query("DELETE FROM arrival_records WHERE message = $1").bind(d.message).execute(&mut **tx).await?;
    sqlx::query("DELETE FROM messages WHERE id = $1").bind(d.message).execute(&mut **tx).await?;
    // The indexer finds no row and takes the document out of the index.
    sqlx::query(&format!("INSERT INTO index_queue (message) VALUES ($1) {}", crate::messages::REQUEUE))
        .bind(d.message)
        .execute(&mut **tx)
        .await?;
    sqlx::query(&format!(
        "INSERT INTO deletions ({DELETION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'recorded') \
         ON CONFLICT (message) DO UPDATE SET state = CASE WHEN deletions.state = 'shredded' THEN 'shredded' ELSE 'recorded' END"
    ))
    .bind(d.message)
    .bind(d.tenant_id)
    .bind(&d.sha256)
    .bind(d.date)
    .bind(&d.sender_domain)
    .bind(&d.reason)
    .bind(d.decided_at)
    .bind(records_text(&d.records))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
