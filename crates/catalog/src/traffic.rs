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
