//! What sources keep besides the mail: a cursor per connection and scope (how far a folder was
//! read), the message each source item became, and placements a folder sync takes away.

use sqlx::Row;

use crate::{Catalog, Result};

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

/// Remembers which message a source's item became (idempotent).
pub(crate) async fn set_source_item(
    conn: &mut sqlx::AnyConnection,
    connection: &str,
    item: &str,
    message: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO source_items (connection, item, message) VALUES ($1, $2, $3) \
         ON CONFLICT (connection, item) DO UPDATE SET message = excluded.message",
    )
    .bind(connection)
    .bind(item)
    .bind(message)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes a message out of one folder (it moved, or was deleted there); the message itself stays
/// archived. The index learns it through the queue.
pub(crate) async fn remove_placement(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    message: i64,
    mailbox: &str,
    folder: &str,
) -> Result<bool> {
    let gone = sqlx::query("DELETE FROM placements WHERE message = $1 AND mailbox = $2 AND folder = $3")
        .bind(message)
        .bind(mailbox)
        .bind(folder)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        > 0;
    if gone {
        sqlx::query(&format!("INSERT INTO index_queue (message) VALUES ($1) {}", crate::messages::REQUEUE))
            .bind(message)
            .execute(&mut **tx)
            .await?;
    }
    Ok(gone)
}

impl Catalog {
    /// Every source item with its message, in order.
    pub async fn source_items(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query("SELECT connection, item, message FROM source_items ORDER BY connection, item")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
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
}
