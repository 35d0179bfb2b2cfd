use sqlx::Row;

use crate::{Catalog, Result};

/// What one source did for one tenant, to be added to the hour it happened in.
#[derive(Debug, Clone, Default)]
pub struct TrafficDelta {
    pub messages: i64,
    pub bytes: i64,
    pub duplicates: i64,
    pub rejected: i64,
    pub errors: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrafficRow {
    pub bucket: i64,
    pub tenant_id: i64,
    pub source: String,
    pub messages: i64,
    pub bytes: i64,
    pub duplicates: i64,
    pub rejected: i64,
    pub errors: i64,
}

pub const BUCKET_SECONDS: i64 = 3600;

impl Catalog {
    pub async fn add_traffic(&self, at: i64, tenant_id: i64, source: &str, d: &TrafficDelta) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        add(&mut conn, at, tenant_id, source, d).await
    }

    pub async fn traffic(&self, since: i64) -> Result<Vec<TrafficRow>> {
        let rows = sqlx::query(
            "SELECT bucket, tenant_id, source, messages, bytes, duplicates, rejected, errors FROM traffic \
             WHERE bucket >= $1 ORDER BY bucket, tenant_id, source",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TrafficRow {
                    bucket: r.try_get(0)?,
                    tenant_id: r.try_get(1)?,
                    source: r.try_get(2)?,
                    messages: r.try_get(3)?,
                    bytes: r.try_get(4)?,
                    duplicates: r.try_get(5)?,
                    rejected: r.try_get(6)?,
                    errors: r.try_get(7)?,
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListenerFigure {
    pub bucket: i64,
    pub listener: String,
    pub tenant_id: i64,
    pub figure: String,
    pub value: i64,
}

impl Catalog {
    pub async fn add_listener_figure(
        &self,
        at: i64,
        listener: &str,
        tenant_id: i64,
        figure: &str,
        n: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO listener_figures (bucket, listener, tenant_id, figure, value) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (bucket, listener, tenant_id, figure) DO UPDATE SET value = listener_figures.value + excluded.value",
        )
        .bind(at - at.rem_euclid(BUCKET_SECONDS))
        .bind(listener)
        .bind(tenant_id)
        .bind(figure)
        .bind(n)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn listener_figures(&self, since: i64) -> Result<Vec<ListenerFigure>> {
        let rows = sqlx::query(
            "SELECT bucket, listener, tenant_id, figure, value FROM listener_figures WHERE bucket >= $1 \
             ORDER BY bucket, listener, tenant_id, figure",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ListenerFigure {
                    bucket: r.try_get(0)?,
                    listener: r.try_get(1)?,
                    tenant_id: r.try_get(2)?,
                    figure: r.try_get(3)?,
                    value: r.try_get(4)?,
                })
            })
            .collect()
    }
}

/// Adds to the hour `at` falls in (on any connection or transaction).
pub(crate) async fn add(
    conn: &mut sqlx::AnyConnection,
    at: i64,
    tenant_id: i64,
    source: &str,
    d: &TrafficDelta,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO traffic (bucket, tenant_id, source, messages, bytes, duplicates, rejected, errors) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (bucket, tenant_id, source) DO UPDATE SET \
         messages = traffic.messages + excluded.messages, bytes = traffic.bytes + excluded.bytes, \
         duplicates = traffic.duplicates + excluded.duplicates, rejected = traffic.rejected + excluded.rejected, \
         errors = traffic.errors + excluded.errors",
    )
    .bind(at - at.rem_euclid(BUCKET_SECONDS))
    .bind(tenant_id)
    .bind(source)
    .bind(d.messages)
    .bind(d.bytes)
    .bind(d.duplicates)
    .bind(d.rejected)
    .bind(d.errors)
    .execute(conn)
    .await?;
    Ok(())
}

impl Catalog {
    /// Where `connection` stands in `scope`, if it has been there before.
    pub async fn sync_cursor(&self, connection: &str, scope: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT cursor FROM sync_state WHERE connection = $1 AND scope = $2")
            .bind(connection)
            .bind(scope)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Moves the cursor; call only once what it covers is durable.
    pub async fn set_sync_cursor(&self, connection: &str, scope: &str, cursor: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO sync_state (connection, scope, cursor, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (connection, scope) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(connection)
        .bind(scope)
        .bind(cursor)
        .bind(crate::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Catalog {
    /// Remembers which message a source's item became (idempotent).
    pub async fn set_source_item(&self, connection: &str, item: &str, message: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO source_items (connection, item, message) VALUES ($1, $2, $3) \
             ON CONFLICT (connection, item) DO UPDATE SET message = excluded.message",
        )
        .bind(connection)
        .bind(item)
        .bind(message)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn source_item(&self, connection: &str, item: &str) -> Result<Option<i64>> {
        Ok(sqlx::query("SELECT message FROM source_items WHERE connection = $1 AND item = $2")
            .bind(connection)
            .bind(item)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    /// Takes a message out of one folder (it moved, or was deleted there); the message itself
    /// stays archived. The index learns it through the queue.
    pub async fn remove_placement(&self, message: i64, mailbox: &str, folder: &str) -> Result<bool> {
        let mut tx = self.write().await?;
        let gone = sqlx::query("DELETE FROM placements WHERE message = $1 AND mailbox = $2 AND folder = $3")
            .bind(message)
            .bind(mailbox)
            .bind(folder)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if gone {
            sqlx::query(&format!("INSERT INTO index_queue (message) VALUES ($1) {}", crate::messages::REQUEUE))
                .bind(message)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(gone)
    }
}
