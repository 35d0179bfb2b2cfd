use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Catalog, Result};

/// Where the store keeps a message's record, as plain values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordRef {
    pub volume: String,
    pub segment: i64,
    pub offset: i64,
    pub length: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewRecipient {
    /// to | cc | bcc | envelope
    pub kind: String,
    /// Lowercased.
    pub address: String,
    pub name: Option<String>,
    /// '' or `expanded:<list>` / `forwarded:<mailbox>`.
    pub via: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewPlacement {
    pub mailbox: String,
    pub folder: String,
    pub source: String,
}

/// One archived message as the ingest pipeline describes it.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    pub tenant_id: i64,
    pub sha256: String,
    pub size: i64,
    pub message_id: Option<String>,
    pub date: i64,
    pub from_addr: Option<String>,
    pub from_name: Option<String>,
    pub sender: Option<String>,
    pub on_behalf_of: Option<String>,
    pub subject: Option<String>,
    pub has_attachment: bool,
    pub flags: i64,
    pub source: String,
    pub archived_at: i64,
    pub recipients: Vec<NewRecipient>,
    pub placements: Vec<NewPlacement>,
}

/// A message's arrival as its evidence record tells it.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Given by the committer before the evidence is written, so a rebuild gives the same ids.
    pub id: i64,
    pub message: NewMessage,
    /// The record of a new message; None for bytes the tenant had already.
    pub record: Option<RecordRef>,
    /// The source's own id for the item (connection, item): a Graph id, an IMAP UID.
    pub source_item: Option<(String, String)>,
    /// Where this arrival's evidence record lies (shredded with the message).
    pub evidence_at: Option<RecordRef>,
}

/// A fact the catalog is derived from, in the order the volumes hold them.
#[derive(Debug, Clone)]
pub enum Fact {
    Arrival(Arrival),
    /// A folder sync took the message out of one folder; the message stays archived.
    PlacementRemoved {
        message: i64,
        mailbox: String,
        folder: String,
    },
    /// A tenant's state as recorded: journal token, domains, the sending networks it accepts.
    Tenant {
        tenant: crate::Tenant,
        networks: Vec<String>,
    },
    /// A retention rule's state: added, changed or removed.
    Rule(crate::RetentionRule),
    /// A legal hold's state: placed or released.
    Hold(crate::LegalHold),
    /// A message deleted: its rows go, its deletion certificate stays.
    Deleted(crate::Deletion),
}

/// Evidence of `volume` is applied below sequence number `applied`; those records end at
/// `segment`, `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceMark {
    pub volume: String,
    pub applied: u64,
    pub segment: u32,
    pub end: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// A new message (its record was stored for it).
    Stored { id: i64 },
    /// The same bytes were archived before; `merged` when this arrival added recipients or placements.
    Duplicate { id: i64, merged: bool },
}

impl CommitOutcome {
    pub fn id(self) -> i64 {
        match self {
            CommitOutcome::Stored { id } | CommitOutcome::Duplicate { id, .. } => id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageRow {
    pub id: i64,
    pub tenant_id: i64,
    pub sha256: String,
    #[serde(skip)]
    pub record: RecordRef,
    pub size: i64,
    pub message_id: Option<String>,
    pub date: i64,
    pub from_addr: Option<String>,
    pub from_name: Option<String>,
    pub sender: Option<String>,
    pub on_behalf_of: Option<String>,
    pub subject: Option<String>,
    pub has_attachment: bool,
    pub flags: i64,
    pub source: String,
    pub archived_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecipientRow {
    pub kind: String,
    pub address: String,
    pub name: Option<String>,
    pub via: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlacementRow {
    pub mailbox: String,
    pub folder: String,
    pub source: String,
}

/// A message row with its recipients and placements (sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullMessage {
    pub row: MessageRow,
    pub recipients: Vec<RecipientRow>,
    pub placements: Vec<PlacementRow>,
}

/// A message's record location, for cross-checking the catalog against the store.
#[derive(Debug, Clone)]
pub struct StoredLocation {
    pub id: i64,
    pub tenant_id: i64,
    pub sha256: String,
    pub record: RecordRef,
}

/// A message row's columns, in the order `arrivals` binds them and `message_row` decodes them.
/// One list, so reads and writes agree.
macro_rules! message_columns {
    () => {
        "id, tenant_id, sha256, volume, segment, record_offset, record_length, size, message_id, \
         date, from_addr, from_name, sender, on_behalf_of, subject, has_attachment, flags, source, archived_at"
    };
}
/// A mailbox folder with the number of messages placed in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FolderRow {
    pub mailbox: String,
    pub folder: String,
    pub messages: i64,
}

const MESSAGE_COLUMNS: &str = message_columns!();

impl Catalog {
    /// Which of these content hashes the tenant has archived already, and as which message.
    pub async fn existing(&self, tenant_id: i64, hashes: &[String]) -> Result<HashMap<String, i64>> {
        let mut found = HashMap::new();
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "SELECT sha256, id FROM messages WHERE tenant_id = $1 AND sha256 IN ({})",
                placeholders(2, chunk.len())
            );
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql).bind(tenant_id);
            for h in chunk {
                query = query.bind(h.clone());
            }
            for row in query.fetch_all(&self.pool).await? {
                found.insert(row.get(0), row.get(1));
            }
        }
        Ok(found)
    }

    /// Applies facts read from (or just written to) the volumes' evidence records in one
    /// transaction, with the marks saying how far each volume's evidence is now applied. An
    /// arrival carries its message id: a new message with its record, or a known one (`record:
    /// None`) whose recipients and placements are merged. Applying a fact twice changes nothing,
    /// so a replay may overlap what was applied. Rows go in as multi-row statements: a batch costs
    /// a handful of statements, not a few per message. Returns one outcome per arrival, in order.
    pub async fn apply(&self, facts: &[Fact], marks: &[EvidenceMark]) -> Result<Vec<CommitOutcome>> {
        let mut tx = self.write().await?;
        let mut outcomes = Vec::new();
        let mut run: Vec<&Arrival> = Vec::new();
        for fact in facts {
            match fact {
                Fact::Arrival(a) => run.push(a),
                other => {
                    outcomes.extend(self.arrivals(&mut tx, &run).await?);
                    run.clear();
                    match other {
                        Fact::PlacementRemoved { message, mailbox, folder } => {
                            crate::sources::remove_placement(&mut tx, *message, mailbox, folder).await?;
                        }
                        Fact::Tenant { tenant, networks } => self.apply_tenant(&mut tx, tenant, networks).await?,
                        Fact::Rule(rule) => crate::governance::put_rule(&mut tx, rule, Some(1)).await?,
                        Fact::Hold(hold) => {
                            sqlx::query("UPDATE holds_version SET version = version + 1 WHERE id = 1")
                                .execute(&mut *tx)
                                .await?;
                            crate::governance::put_hold(&mut tx, hold, Some(1)).await?
                        }
                        Fact::Deleted(d) => crate::governance::apply_deletion(&mut tx, d).await?,
                        Fact::Arrival(_) => unreachable!(),
                    }
                }
            }
        }
        outcomes.extend(self.arrivals(&mut tx, &run).await?);
        for m in marks {
            sqlx::query(
                "INSERT INTO evidence_marks (volume, applied, segment, end_offset) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (volume) DO UPDATE SET applied = excluded.applied, segment = excluded.segment, \
                 end_offset = excluded.end_offset WHERE excluded.applied > evidence_marks.applied",
            )
            .bind(&m.volume)
            .bind(m.applied as i64)
            .bind(m.segment as i64)
            .bind(m.end as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn arrivals(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        batch: &[&Arrival],
    ) -> Result<Vec<CommitOutcome>> {
        let mut stored = vec![false; batch.len()];
        let new: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].record.is_some()).collect();
        for chunk in new.chunks(50) {
            let mut sql = format!("INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ");
            sql.push_str(&rows_of(chunk.len(), MESSAGE_COLUMNS.split(',').count()));
            // Any conflict (the id, or the tenant's hash) means it is there already.
            sql.push_str(" ON CONFLICT DO NOTHING RETURNING id");
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql);
            for &i in chunk {
                let (a, r) = (batch[i], batch[i].record.as_ref().unwrap());
                let m = &a.message;
                query = query
                    .bind(a.id)
                    .bind(m.tenant_id)
                    .bind(&m.sha256)
                    .bind(&r.volume)
                    .bind(r.segment)
                    .bind(r.offset)
                    .bind(r.length)
                    .bind(m.size)
                    .bind(m.message_id.clone())
                    .bind(m.date)
                    .bind(m.from_addr.clone())
                    .bind(m.from_name.clone())
                    .bind(m.sender.clone())
                    .bind(m.on_behalf_of.clone())
                    .bind(m.subject.clone())
                    .bind(m.has_attachment as i64)
                    .bind(m.flags)
                    .bind(&m.source)
                    .bind(m.archived_at);
            }
            let inserted: std::collections::HashSet<i64> = query
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
            for &i in chunk {
                stored[i] = inserted.contains(&batch[i].id);
            }
        }

        // A later arrival of a message deleted meanwhile has nothing to merge into.
        let merged: Vec<i64> = batch.iter().filter(|a| a.record.is_none()).map(|a| a.id).collect();
        let mut present: std::collections::HashSet<i64> = std::collections::HashSet::new();
        for chunk in merged.chunks(500) {
            let sql =
                self.positional(format!("SELECT id FROM messages WHERE id IN ({})", placeholders(1, chunk.len())));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut **tx).await? {
                present.insert(row.try_get(0)?);
            }
        }
        let live: Vec<&Arrival> =
            batch.iter().copied().filter(|a| a.record.is_some() || present.contains(&a.id)).collect();

        // Recipients and placements; RETURNING names the messages that gained a row.
        let mut gained: std::collections::HashSet<i64> = std::collections::HashSet::new();
        let recipients: Vec<(i64, &NewRecipient)> =
            live.iter().flat_map(|a| a.message.recipients.iter().map(move |r| (a.id, r))).collect();
        for chunk in recipients.chunks(200) {
            let sql = format!(
                "INSERT INTO recipients (message, kind, address, name, via) VALUES {} ON CONFLICT DO NOTHING RETURNING message",
                rows_of(chunk.len(), 5)
            );
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql);
            for (id, r) in chunk {
                query = query.bind(*id).bind(&r.kind).bind(&r.address).bind(r.name.clone()).bind(&r.via);
            }
            for row in query.fetch_all(&mut **tx).await? {
                gained.insert(row.try_get(0)?);
            }
        }
        let placements: Vec<(i64, &NewPlacement)> =
            live.iter().flat_map(|a| a.message.placements.iter().map(move |p| (a.id, p))).collect();
        for chunk in placements.chunks(200) {
            let sql = format!(
                "INSERT INTO placements (message, mailbox, folder, source) VALUES {} ON CONFLICT DO NOTHING RETURNING message",
                rows_of(chunk.len(), 4)
            );
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql);
            for (id, p) in chunk {
                query = query.bind(*id).bind(&p.mailbox).bind(&p.folder).bind(&p.source);
            }
            for row in query.fetch_all(&mut **tx).await? {
                gained.insert(row.try_get(0)?);
            }
        }
        for a in &live {
            if let Some((connection, item)) = &a.source_item {
                crate::sources::set_source_item(&mut **tx, connection, item, a.id).await?;
            }
        }
        let evidence: Vec<(i64, &RecordRef)> =
            live.iter().filter_map(|a| a.evidence_at.as_ref().map(|r| (a.id, r))).collect();
        for chunk in evidence.chunks(100) {
            let sql = format!(
                "INSERT INTO arrival_records (message, volume, segment, record_offset, record_length) VALUES {} \
                 ON CONFLICT DO NOTHING",
                rows_of(chunk.len(), 5)
            );
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql);
            for (id, r) in chunk {
                query = query.bind(*id).bind(&r.volume).bind(r.segment).bind(r.offset).bind(r.length);
            }
            query.execute(&mut **tx).await?;
        }

        let outcomes: Vec<CommitOutcome> = batch
            .iter()
            .zip(&stored)
            .map(|(a, &new)| {
                if new {
                    CommitOutcome::Stored { id: a.id }
                } else {
                    CommitOutcome::Duplicate { id: a.id, merged: gained.contains(&a.id) }
                }
            })
            .collect();
        // The batch's traffic figures, in the same transaction: they agree with what was stored,
        // and a rebuild counts them again into the same hours.
        let mut traffic: HashMap<(i64, i64, &str), (i64, i64, i64)> = HashMap::new();
        for (a, outcome) in batch.iter().zip(&outcomes) {
            let m = &a.message;
            let hour = m.archived_at - m.archived_at.rem_euclid(crate::traffic::BUCKET_SECONDS);
            let t = traffic.entry((hour, m.tenant_id, m.source.as_str())).or_default();
            t.0 += 1;
            t.1 += m.size;
            t.2 += matches!(outcome, CommitOutcome::Duplicate { .. }) as i64;
        }
        for ((hour, tenant, source), (messages, bytes, duplicates)) in traffic {
            crate::traffic::add(
                &mut **tx,
                hour,
                tenant,
                source,
                &crate::TrafficDelta { messages, bytes, duplicates, ..Default::default() },
            )
            .await?;
        }
        let mut to_index: Vec<i64> = outcomes
            .iter()
            .filter(|o| matches!(o, CommitOutcome::Stored { .. } | CommitOutcome::Duplicate { merged: true, .. }))
            .map(|o| o.id())
            .collect();
        to_index.sort_unstable();
        to_index.dedup();
        for chunk in to_index.chunks(500) {
            let sql = format!("INSERT INTO index_queue (message) VALUES {} {REQUEUE}", rows_of(chunk.len(), 1));
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(outcomes)
    }

    /// Messages with ids above `after`, at most `limit`, in id order, each with its recipients
    /// and placements: for dumps and for comparing the catalog with the evidence.
    pub async fn messages_in_full(&self, after: i64, limit: i64) -> Result<Vec<FullMessage>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id > $1 ORDER BY id LIMIT $2");
        let rows = sqlx::query(&sql).bind(after).bind(limit).fetch_all(&self.pool).await?;
        let messages: Vec<MessageRow> = rows.iter().map(message_row).collect::<Result<_>>()?;
        let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        let (mut recipients, mut placements) = (self.recipients(&ids).await?, self.placements(&ids).await?);
        Ok(messages
            .into_iter()
            .map(|m| FullMessage {
                recipients: recipients.remove(&m.id).unwrap_or_default(),
                placements: placements.remove(&m.id).unwrap_or_default(),
                row: m,
            })
            .collect())
    }

    /// True when the message sits in that folder.
    pub async fn has_placement(&self, message: i64, mailbox: &str, folder: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM placements WHERE message = $1 AND mailbox = $2 AND folder = $3")
            .bind(message)
            .bind(mailbox)
            .bind(folder)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// The highest message id given so far (0 for none): the committer numbers new messages
    /// after it, before their evidence is written.
    pub async fn max_message_id(&self) -> Result<i64> {
        // A deleted message's id is never given again: its certificate keeps it.
        Ok(sqlx::query(
            "SELECT MAX(n) FROM (SELECT COALESCE(MAX(id), 0) AS n FROM messages \
             UNION ALL SELECT COALESCE(MAX(message), 0) FROM deletions) AS ids",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?)
    }

    /// How far each volume's evidence is applied.
    pub async fn evidence_marks(&self) -> Result<HashMap<String, EvidenceMark>> {
        let rows = sqlx::query("SELECT volume, applied, segment, end_offset FROM evidence_marks")
            .fetch_all(&self.pool)
            .await?;
        let mut out = HashMap::new();
        for r in rows {
            let m = EvidenceMark {
                volume: r.try_get(0)?,
                applied: r.try_get::<i64, _>(1)? as u64,
                segment: r.try_get::<i64, _>(2)? as u32,
                end: r.try_get::<i64, _>(3)? as u64,
            };
            out.insert(m.volume.clone(), m);
        }
        Ok(out)
    }

    /// One message, only if it belongs to `tenant_id`.
    pub async fn message(&self, tenant_id: i64, id: i64) -> Result<Option<MessageRow>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1 AND tenant_id = $2");
        let row = sqlx::query(&sql).bind(id).bind(tenant_id).fetch_optional(&self.pool).await?;
        row.map(|r| message_row(&r)).transpose()
    }

    /// Messages by id in the order asked (unknown ids are left out). No tenant filter: callers
    /// pass ids that came out of a tenant-filtered search or queue.
    pub async fn messages(&self, ids: &[i64]) -> Result<Vec<MessageRow>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({{}})");
        let mut by_id = HashMap::new();
        for row in self.rows_for(ids, &sql).await? {
            let m = message_row(&row)?;
            by_id.insert(m.id, m);
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    pub async fn recipients(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<RecipientRow>>> {
        let rows = self
            .rows_for(ids, "SELECT message, kind, address, name, via FROM recipients WHERE message IN ({}) ORDER BY message, kind, address, via")
            .await?;
        let mut out: HashMap<i64, Vec<RecipientRow>> = HashMap::new();
        for row in rows {
            out.entry(row.try_get(0)?).or_default().push(RecipientRow {
                kind: row.try_get(1)?,
                address: row.try_get(2)?,
                name: row.try_get(3)?,
                via: row.try_get(4)?,
            });
        }
        Ok(out)
    }

    pub async fn placements(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<PlacementRow>>> {
        let rows = self
            .rows_for(ids, "SELECT message, mailbox, folder, source FROM placements WHERE message IN ({}) ORDER BY message, mailbox, folder")
            .await?;
        let mut out: HashMap<i64, Vec<PlacementRow>> = HashMap::new();
        for row in rows {
            out.entry(row.try_get(0)?).or_default().push(PlacementRow {
                mailbox: row.try_get(1)?,
                folder: row.try_get(2)?,
                source: row.try_get(3)?,
            });
        }
        Ok(out)
    }

    /// The text OCR read from each message's pictures: (part, picture's name, text), by message.
    /// A message with an entry has been read (its pictures may have held no text).
    pub async fn ocr_texts(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<(i64, String, String)>>> {
        let rows = self
            .rows_for(
                ids,
                "SELECT message, part, name, text FROM ocr_text WHERE message IN ({}) ORDER BY message, part",
            )
            .await?;
        let mut out: HashMap<i64, Vec<(i64, String, String)>> = HashMap::new();
        for row in rows {
            out.entry(row.try_get(0)?).or_default().push((row.try_get(1)?, row.try_get(2)?, row.try_get(3)?));
        }
        Ok(out)
    }

    /// Queues messages whose pictures OCR should read.
    pub async fn ocr_queue_add(&self, ids: &[i64]) -> Result<()> {
        for chunk in ids.chunks(500) {
            let sql = format!(
                "INSERT INTO ocr_queue (message) VALUES {} ON CONFLICT (message) DO NOTHING",
                rows_of(chunk.len(), 1)
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// The next messages OCR should read, oldest first.
    pub async fn ocr_queue_next(&self, limit: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT message FROM ocr_queue ORDER BY message LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub async fn ocr_queue_len(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM ocr_queue").fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// What OCR read from a message's pictures: kept, the message leaves the OCR queue and is
    /// queued for indexing with it. A message deleted meanwhile keeps nothing.
    pub async fn ocr_done(&self, message: i64, texts: &[(i64, String, String)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ocr_queue WHERE message = $1").bind(message).execute(&mut *tx).await?;
        let exists = sqlx::query("SELECT 1 FROM messages WHERE id = $1").bind(message).fetch_optional(&mut *tx).await?;
        if exists.is_some() {
            for (part, name, text) in texts {
                sqlx::query(
                    "INSERT INTO ocr_text (message, part, name, text) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (message, part) DO UPDATE SET name = $3, text = $4",
                )
                .bind(message)
                .bind(*part)
                .bind(name)
                .bind(text)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(&format!("INSERT INTO index_queue (message) VALUES ($1) {REQUEUE}"))
                .bind(message)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Runs `sql` (whose `{}` stands for the id list) over `ids` in chunks the databases accept.
    async fn rows_for(&self, ids: &[i64], sql: &str) -> Result<Vec<AnyRow>> {
        let mut rows = Vec::new();
        for chunk in ids.chunks(500) {
            let sql = sql.replace("{}", &placeholders(1, chunk.len()));
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            rows.extend(query.fetch_all(&self.pool).await?);
        }
        Ok(rows)
    }

    /// Every message's record location (all tenants), for `verify`.
    pub async fn locations(&self) -> Result<Vec<StoredLocation>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, sha256, volume, segment, record_offset, record_length FROM messages ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredLocation {
                    id: r.try_get(0)?,
                    tenant_id: r.try_get(1)?,
                    sha256: r.try_get(2)?,
                    record: RecordRef {
                        volume: r.try_get(3)?,
                        segment: r.try_get(4)?,
                        offset: r.try_get(5)?,
                        length: r.try_get(6)?,
                    },
                })
            })
            .collect()
    }

    /// Where the catalogued (so acknowledged) records of these volumes end, per segment: the store's
    /// recovery never cuts below it.
    pub async fn acknowledged_ends(&self, volumes: &[String]) -> Result<HashMap<(String, u32), u64>> {
        let mut out = HashMap::new();
        let marks = self.evidence_marks().await?;
        for volume in volumes {
            if let Some(m) = marks.get(volume) {
                out.insert((volume.clone(), m.segment), m.end);
                continue;
            }
            // A volume from before evidence records: where its catalogued records end.
            let rows = sqlx::query(
                "SELECT segment, MAX(record_offset + record_length) FROM messages WHERE volume = $1 GROUP BY segment",
            )
            .bind(volume)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                let segment: i64 = r.try_get(0)?;
                let end: i64 = r.try_get(1)?;
                out.insert((volume.clone(), segment as u32), end as u64);
            }
        }
        Ok(out)
    }

    pub async fn count_messages(&self, tenant_id: i64) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM messages WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// Messages per volume (all tenants).
    pub async fn messages_per_volume(&self) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query("SELECT volume, COUNT(*) FROM messages GROUP BY volume").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Leases up to `limit` messages whose index document is due, oldest first, to `consumer`
    /// for `lease_secs`: no other consumer takes them meanwhile.
    pub async fn index_queue_take(&self, consumer: &str, limit: i64, lease_secs: i64) -> Result<IndexLease> {
        let token = format!("{consumer}/{:016x}", rand::random::<u64>());
        let now = crate::now();
        // An idle indexer asks often: finding nothing free takes no write lock.
        let any = sqlx::query("SELECT 1 FROM index_queue WHERE lease_until IS NULL OR lease_until < $1 LIMIT 1")
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        if any.is_none() {
            return Ok(IndexLease { token, ids: Vec::new() });
        }
        // Each parameter once, in order (SQLite numbers them by appearance).
        let free =
            "SELECT message FROM index_queue WHERE lease_until IS NULL OR lease_until < $3 ORDER BY message LIMIT $4";
        let sql = match self.dialect() {
            crate::Dialect::Sqlite => format!(
                "UPDATE index_queue SET lease = $1, lease_until = $2 WHERE message IN ({free}) RETURNING message"
            ),
            // Two consumers at once skip each other's rows instead of taking them twice.
            crate::Dialect::Postgres => format!(
                "UPDATE index_queue SET lease = $1, lease_until = $2 WHERE message IN ({free} FOR UPDATE SKIP LOCKED) RETURNING message"
            ),
        };
        let mut tx = self.write().await?;
        let rows =
            sqlx::query(&sql).bind(&token).bind(now + lease_secs).bind(now).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut ids = rows.iter().map(|r| r.try_get(0)).collect::<std::result::Result<Vec<i64>, _>>()?;
        ids.sort_unstable();
        Ok(IndexLease { token, ids })
    }

    /// Called after the index committed the lease's documents: removes the rows the lease still
    /// holds (one queued again meanwhile stays, to be indexed in its newer state).
    pub async fn index_queue_done(&self, lease: &IndexLease) -> Result<()> {
        for chunk in lease.ids.chunks(500) {
            let sql =
                format!("DELETE FROM index_queue WHERE lease = $1 AND message IN ({})", placeholders(2, chunk.len()));
            let sql = self.positional(sql);
            let mut query = sqlx::query(&sql).bind(&lease.token);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Frees every lease (at the start of the only writing process: nobody else holds one).
    pub async fn index_queue_release_all(&self) -> Result<()> {
        sqlx::query("UPDATE index_queue SET lease = NULL, lease_until = NULL WHERE lease IS NOT NULL")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// When the oldest message still waiting for the index was archived (the index lag), of one
    /// tenant or of all.
    pub async fn oldest_queued_at(&self, tenant_id: Option<i64>) -> Result<Option<i64>> {
        let sql = "SELECT MIN(m.archived_at) FROM index_queue q JOIN messages m ON m.id = q.message";
        Ok(match tenant_id {
            None => sqlx::query(sql).fetch_one(&self.pool).await?,
            Some(t) => sqlx::query(&format!("{sql} WHERE m.tenant_id = $1")).bind(t).fetch_one(&self.pool).await?,
        }
        .try_get(0)?)
    }

    pub async fn index_queue_len(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM index_queue").fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// A tenant's messages still waiting for the index.
    pub async fn index_queue_len_of(&self, tenant_id: i64) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM index_queue q JOIN messages m ON m.id = q.message WHERE m.tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    pub async fn count_all_messages(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM messages").fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// Queues every message for indexing (after the index was deleted).
    pub async fn index_queue_all(&self) -> Result<()> {
        sqlx::query(&format!("INSERT INTO index_queue (message) SELECT id FROM messages WHERE true {REQUEUE}"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn message_row(r: &AnyRow) -> Result<MessageRow> {
    Ok(MessageRow {
        id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        sha256: r.try_get(2)?,
        record: RecordRef {
            volume: r.try_get(3)?,
            segment: r.try_get(4)?,
            offset: r.try_get(5)?,
            length: r.try_get(6)?,
        },
        size: r.try_get(7)?,
        message_id: r.try_get(8)?,
        date: r.try_get(9)?,
        from_addr: r.try_get(10)?,
        from_name: r.try_get(11)?,
        sender: r.try_get(12)?,
        on_behalf_of: r.try_get(13)?,
        subject: r.try_get(14)?,
        has_attachment: r.try_get::<i64, _>(15)? != 0,
        flags: r.try_get(16)?,
        source: r.try_get(17)?,
        archived_at: r.try_get(18)?,
    })
}

/// `($1, $2, …), ($k+1, …), …`: `rows` rows of `width` placeholders each.
pub(crate) fn rows_of(rows: usize, width: usize) -> String {
    (0..rows).map(|r| format!("({})", placeholders(r * width + 1, width))).collect::<Vec<_>>().join(", ")
}

impl Catalog {
    /// SQLite looks up a named parameter (`$7`) by walking all names, so binding the hundreds of
    /// parameters of a multi-row statement costs their square; plain `?` costs nothing. Only for
    /// statements whose `$n` appear once each, in order.
    pub(crate) fn positional(&self, sql: String) -> String {
        if self.dialect() != crate::Dialect::Sqlite {
            return sql;
        }
        let mut out = String::with_capacity(sql.len());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
                out.push('?');
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// `$first, $first+1, …` for `n` values.
/// How a change queues a message for the index: a row already queued loses its lease, so the
/// consumer holding it does not delete it, and the newer state is indexed too.
pub(crate) const REQUEUE: &str = "ON CONFLICT (message) DO UPDATE SET lease = NULL, lease_until = NULL";

/// A consumer's hold on some rows of the index queue.
#[derive(Debug, Clone)]
pub struct IndexLease {
    pub token: String,
    pub ids: Vec<i64>,
}

pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl Catalog {
    /// Mailboxes and their folders with message counts; only `mailboxes` when given.
    pub async fn folders(&self, tenant_id: i64, mailboxes: Option<&[String]>) -> Result<Vec<FolderRow>> {
        let rows = sqlx::query(
            "SELECT p.mailbox, p.folder, COUNT(*) FROM placements p JOIN messages m ON m.id = p.message \
             WHERE m.tenant_id = $1 GROUP BY p.mailbox, p.folder ORDER BY p.mailbox, p.folder",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let row = FolderRow { mailbox: r.try_get(0)?, folder: r.try_get(1)?, messages: r.try_get(2)? };
            if mailboxes.is_none_or(|list| list.iter().any(|m| m.eq_ignore_ascii_case(&row.mailbox))) {
                out.push(row);
            }
        }
        Ok(out)
    }
}
