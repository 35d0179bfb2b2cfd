use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor, Row};

use crate::{CatalogError, Result};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "archive", include_str!("../migrations/0001_archive.sql")),
    (2, "listener_figures", include_str!("../migrations/0002_listener_figures.sql")),
    (3, "tenant_networks", include_str!("../migrations/0003_tenant_networks.sql")),
    (4, "drop_unused_indexes", include_str!("../migrations/0004_drop_unused_indexes.sql")),
    (5, "sync_state", include_str!("../migrations/0005_sync_state.sql")),
    (6, "accounts", include_str!("../migrations/0006_accounts.sql")),
    (7, "source_items", include_str!("../migrations/0007_source_items.sql")),
    (8, "index_queue_leases", include_str!("../migrations/0008_index_queue_leases.sql")),
    (9, "evidence_marks", include_str!("../migrations/0009_evidence_marks.sql")),
    (10, "retention", include_str!("../migrations/0010_retention.sql")),
    (11, "ocr", include_str!("../migrations/0011_ocr.sql")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Catalog {
    pub(crate) pool: AnyPool,
    dialect: Dialect,
}

impl Catalog {
    /// Connects and brings the schema up to date. `sqlite://path` creates the file when missing;
    /// `postgres://…` expects the database to exist.
    pub async fn connect(url: &str) -> Result<Catalog> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(CatalogError::Invalid(format!(
                "database_url {url:?} is neither sqlite://PATH nor postgres://USER@HOST/DB"
            )));
        };
        let url = match dialect {
            Dialect::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = match dialect {
            Dialect::Sqlite => {
                // A damaged file fails here at once, saying what to do (the pool would retry
                // until its timeout and then say only that it timed out).
                // Switching a new database to WAL can answer "locked" at once, without waiting,
                // while another process creates the same database: the probe tries again then.
                let corrupt = |e: sqlx::Error| if is_corruption(&e) { damaged(e) } else { CatalogError::Db(e) };
                let mut attempt = 0;
                loop {
                    let probed = async {
                        let mut probe = sqlx::AnyConnection::connect_with(&options).await?;
                        probe
                            .execute(
                                "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; SELECT COUNT(*) FROM sqlite_master;",
                            )
                            .await?;
                        let _ = probe.close().await;
                        Ok::<(), sqlx::Error>(())
                    }
                    .await;
                    match probed {
                        Err(e) if is_locked(&e) && attempt < 50 => {
                            attempt += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                        other => break other.map_err(corrupt)?,
                    }
                }
                AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL for concurrent readers; FULL so a commit is on disk before we ack.
                            // The busy timeout first: switching to WAL waits for a lock another
                            // process starting at the same moment may hold. secure_delete: the
                            // rows of a deleted message (subject, addresses) are overwritten, not
                            // left in free pages.
                            conn.execute(
                                "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                                 PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Dialect::Postgres => AnyPoolOptions::new().max_connections(8).connect_with(options).await?,
        };
        let catalog = Catalog { pool, dialect };
        catalog.migrate().await.map_err(|e| match (dialect, &e) {
            (Dialect::Sqlite, CatalogError::Db(db)) if is_corruption(db) => damaged_with(&db.to_string()),
            _ => e,
        })?;
        Ok(catalog)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A transaction that will write. On SQLite it takes the write lock at BEGIN, so waiting for
    /// another writer (another process included) goes through the busy timeout; a deferred
    /// transaction that reads first would instead fail at once with "database is locked" when it
    /// tries to write after someone else did.
    pub(crate) async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    async fn migrate(&self) -> Result<()> {
        self.pool
            .execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
            .await?;
        // Most starts find nothing to do: read first, and take the write lock only for a pending
        // migration (checked again under the lock, in case another process just applied it).
        let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for &(version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| !applied.contains(v)) {
            let mut tx = self.write().await?;
            let done: Option<i64> = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.get(0));
            if done.is_some() {
                continue;
            }
            let id = match self.dialect {
                Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
                Dialect::Postgres => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            };
            let sql: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
            for statement in sql.replace("{id}", id).split(';').filter(|s| !s.trim().is_empty()) {
                tx.execute(statement).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(name)
                .bind(crate::now())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// A consistent copy of the whole catalog at one moment, written to `path` while others keep
    /// writing (SQLite's `VACUUM INTO`; PostgreSQL is backed up with `pg_dump`).
    pub async fn snapshot_to(&self, path: &std::path::Path) -> Result<()> {
        if self.dialect != Dialect::Sqlite {
            return Err(CatalogError::Invalid("a PostgreSQL catalog is backed up with pg_dump".into()));
        }
        let tmp = path.with_extension("snapshot");
        let _ = std::fs::remove_file(&tmp);
        let quoted = tmp.display().to_string().replace('\'', "''");
        sqlx::query(&format!("VACUUM INTO '{quoted}'")).execute(&self.pool).await?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| CatalogError::Invalid(format!("catalog snapshot {}: {e}", path.display())))?;
        Ok(())
    }

    /// Direct access for tests that tamper with rows.
    #[doc(hidden)]
    pub fn pool_for_tests(&self) -> &sqlx::AnyPool {
        &self.pool
    }

    /// SQLite's `quick_check` over the whole catalog: a damaged one is refused with what to do, so
    /// that nothing is acknowledged on top of it. (PostgreSQL checks its own pages.)
    pub async fn check(&self) -> Result<()> {
        if self.dialect != Dialect::Sqlite {
            return Ok(());
        }
        let rows = sqlx::query("PRAGMA quick_check(20)")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| if is_corruption(&e) { damaged(e) } else { CatalogError::Db(e) })?;
        let findings: Vec<String> = rows.iter().filter_map(|r| r.try_get::<String, _>(0).ok()).collect();
        if findings.len() == 1 && findings[0] == "ok" {
            return Ok(());
        }
        Err(damaged_with(&findings.join("; ")))
    }

    /// Folds SQLite's write-ahead log back into the database file (after a large import, so the
    /// catalog does not keep a WAL as big as the batch), then closes the pool.
    pub async fn close(&self) {
        if self.dialect == Dialect::Sqlite {
            let _ = self.pool.execute("PRAGMA wal_checkpoint(TRUNCATE)").await;
        }
        self.pool.close().await;
    }
}

/// What a database failure means for a caller, told by the database's own code (SQLite's result
/// code, PostgreSQL's SQLSTATE), never by the words of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbFailure {
    /// Locked, busy, a lost connection, a serialization conflict, a shutdown: retry.
    Busy,
    /// The disk (or the database's quota) is full: retry once there is room.
    Full,
    /// An I/O error of the database's files: retry, and look at the disk.
    Io,
    /// The database's files are damaged: stop, restore.
    Damaged,
    /// Anything else (a constraint, a type, a bug).
    Other,
}

pub(crate) fn db_failure(e: &sqlx::Error) -> DbFailure {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            return DbFailure::Busy;
        }
        sqlx::Error::Database(_) => {}
        _ => return DbFailure::Other,
    }
    let Some(code) = e.as_database_error().and_then(|d| d.code()) else { return DbFailure::Other };
    // SQLSTATE is five characters; SQLite's (extended) result codes are numbers of at most four digits.
    if code.len() == 5 {
        return match (&code[..2], code.as_ref()) {
            (_, "53100") => DbFailure::Full,
            (_, "XX001" | "XX002") => DbFailure::Damaged,
            ("08" | "40" | "53" | "57", _) | (_, "55P03") => DbFailure::Busy,
            ("58", _) => DbFailure::Io,
            _ => DbFailure::Other,
        };
    }
    match code.parse::<i64>().map(|c| c & 0xff) {
        Ok(5 | 6) => DbFailure::Busy,
        Ok(13) => DbFailure::Full,
        Ok(10) => DbFailure::Io,
        Ok(11 | 26) => DbFailure::Damaged,
        _ => DbFailure::Other,
    }
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6).
fn is_locked(e: &sqlx::Error) -> bool {
    db_failure(e) == DbFailure::Busy && e.as_database_error().is_some()
}

/// SQLITE_CORRUPT (11) or SQLITE_NOTADB (26).
fn is_corruption(e: &sqlx::Error) -> bool {
    db_failure(e) == DbFailure::Damaged
}

fn damaged(e: sqlx::Error) -> CatalogError {
    damaged_with(&e.to_string())
}

fn damaged_with(findings: &str) -> CatalogError {
    CatalogError::Damaged(format!(
        "the catalog database is damaged ({findings}); Coffer will not archive on top of it. Stop every \
         Coffer process, move catalog.sqlite (and catalog.sqlite-wal, -shm) aside, and restore your latest \
         backup of it"
    ))
}
