//! The audit log: every search, view, export and change, hash-chained so that an edited, removed
//! or reordered entry is found by [`Catalog::verify_audit`].

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Catalog, Result};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub tenant_id: Option<i64>,
    pub actor: String,
    pub ip: String,
    pub action: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditProblem {
    pub seq: i64,
    pub detail: String,
}

fn entry_hash(prev: &str, e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &e.seq.to_string(),
        &e.at.to_string(),
        &e.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
        &e.actor,
        &e.ip,
        &e.action,
        &e.detail,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

impl Catalog {
    pub async fn audit(
        &self,
        tenant_id: Option<i64>,
        actor: &str,
        ip: &str,
        action: &str,
        detail: &str,
    ) -> Result<i64> {
        let mut tx = self.write().await?;
        // Taking the head row first serialises appends (a row lock on PostgreSQL).
        let seq: i64 = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let prev: String =
            sqlx::query("SELECT hash FROM audit_head WHERE id = 1").fetch_one(&mut *tx).await?.try_get(0)?;
        let entry = AuditEntry {
            seq,
            at: crate::now(),
            tenant_id,
            actor: actor.into(),
            ip: ip.into(),
            action: action.into(),
            detail: detail.into(),
        };
        let hash = entry_hash(&prev, &entry);
        sqlx::query(
            "INSERT INTO audit (seq, at, tenant_id, actor, ip, action, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(seq)
        .bind(entry.at)
        .bind(tenant_id)
        .bind(actor)
        .bind(ip)
        .bind(action)
        .bind(detail)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(&hash).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// The newest entries first.
    pub async fn audit_entries(&self, tenant_id: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, tenant_id, actor, ip, action, detail FROM audit \
             WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY seq DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_row).collect()
    }

    /// The newest entries first whose actor, ip, action or detail contains `text` (any case).
    pub async fn audit_entries_matching(
        &self,
        tenant_id: Option<i64>,
        text: &str,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let pattern =
            format!("%{}%", text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let rows = sqlx::query(
            "SELECT seq, at, tenant_id, actor, ip, action, detail FROM audit \
             WHERE ($1 IS NULL OR tenant_id = $1) AND (lower(actor) LIKE $2 ESCAPE '\\' OR lower(ip) LIKE $2 ESCAPE '\\' \
             OR lower(action) LIKE $2 ESCAPE '\\' OR lower(detail) LIKE $2 ESCAPE '\\') ORDER BY seq DESC LIMIT $3",
        )
        .bind(tenant_id)
        .bind(pattern)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_row).collect()
    }

    /// Walks the whole chain; an empty answer means every entry is as it was written.
    pub async fn verify_audit(&self) -> Result<Vec<AuditProblem>> {
        let rows = sqlx::query(
            "SELECT seq, at, tenant_id, actor, ip, action, detail, prev_hash, hash FROM audit ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut problems = Vec::new();
        let mut prev = "0".repeat(64);
        let mut expected = 1;
        for row in &rows {
            let entry = audit_row(row)?;
            let (stored_prev, stored_hash): (String, String) = (row.try_get(7)?, row.try_get(8)?);
            if entry.seq != expected {
                problems.push(AuditProblem {
                    seq: entry.seq,
                    detail: format!("entries {expected} to {} are missing", entry.seq - 1),
                });
            }
            if stored_prev != prev {
                problems.push(AuditProblem { seq: entry.seq, detail: "does not continue the chain".into() });
            }
            if entry_hash(&stored_prev, &entry) != stored_hash {
                problems.push(AuditProblem { seq: entry.seq, detail: "entry was altered".into() });
            }
            prev = stored_hash;
            expected = entry.seq + 1;
        }
        let head: (i64, String) = {
            let r = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?;
            (r.try_get(0)?, r.try_get(1)?)
        };
        if head.0 != expected - 1 || head.1 != prev {
            problems.push(AuditProblem { seq: head.0, detail: "the newest entries were removed".into() });
        }
        Ok(problems)
    }
}

fn audit_row(r: &sqlx::any::AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.try_get(0)?,
        at: r.try_get(1)?,
        tenant_id: r.try_get(2)?,
        actor: r.try_get(3)?,
        ip: r.try_get(4)?,
        action: r.try_get(5)?,
        detail: r.try_get(6)?,
    })
}
