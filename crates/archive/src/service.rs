//! The archive service: opening an archive, and the operations front ends offer. Every read is
//! confined to the actor's tenant and visibility here, not in a template, so the console, the API
//! and the CLI obey the same rules; every search, view and export is audited.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coffer_catalog::{Catalog, MessageRow, PlacementRow, RecipientRow, Tenant};
use coffer_index::{Scope, SearchIndex, SearchRequest, Sort, Visibility};
use coffer_store::{Location, MasterKey, Store, StoreConfig, VolumeInfo};
use serde::Serialize;
use tokio::sync::Notify;

use crate::indexer::Indexer;
use crate::ingest::Pipeline;
use crate::{ArchiveConfig, ArchiveError};

/// Who is asking, for visibility and for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub ip: String,
    pub tenant: Tenant,
    /// None: the whole tenant (administrators, auditors, the operator on the command line).
    pub visibility: Option<Visibility>,
    /// Bcc and envelope recipients are shown only to roles allowed to see them.
    pub sees_bcc: bool,
}

impl Actor {
    /// The operator at the command line of the machine: the whole tenant.
    pub fn operator(tenant: Tenant) -> Actor {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Actor { name: format!("cli:{user}"), ip: "local".into(), tenant, visibility: None, sees_bcc: true }
    }
}

/// One message as a result list or the CLI's `--json` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MessageSummary {
    pub id: i64,
    pub message_id: Option<String>,
    /// RFC 3339, UTC.
    pub date: String,
    pub from: Option<String>,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub envelope: Vec<String>,
    pub subject: Option<String>,
    pub size: i64,
    pub sha256: String,
    pub mailbox: Option<String>,
    pub folder: Option<String>,
    pub placements: Vec<PlacementRow>,
    pub has_attachment: bool,
    pub flags: Vec<&'static str>,
    pub source: String,
    pub archived_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchPage {
    pub total: usize,
    pub offset: usize,
    pub messages: Vec<MessageSummary>,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyOutcome {
    pub volumes: usize,
    pub segments: usize,
    pub records: u64,
    pub messages: usize,
    /// Records no catalog entry points to (a crash between store and catalog commit: never acknowledged).
    pub unreferenced_records: usize,
    pub problems: Vec<String>,
}

impl VerifyOutcome {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

pub struct Archive {
    pub config: ArchiveConfig,
    pub catalog: Catalog,
    pub(crate) store: Arc<Store>,
    pub(crate) index: Arc<SearchIndex>,
    indexed: Arc<Notify>,
    parsed: crate::parsed::ParsedCache,
    master: MasterKey,
}

impl Archive {
    /// Opens (creating on first use) the archive in the configured data folder. `writable` takes
    /// the store's writer lock and recovers a crashed writer's tail; read-only commands can run
    /// next to a serving process.
    pub async fn open(config: ArchiveConfig, writable: bool) -> Result<Archive, ArchiveError> {
        let data = &config.data_dir;
        std::fs::create_dir_all(data).map_err(|e| ArchiveError::Io(data.display().to_string(), e))?;
        let volumes = data.join("volumes");
        let key_file = config.master_key_file.clone().unwrap_or_else(|| data.join("master.key"));
        let master = MasterKey::load_or_create(&key_file, Store::is_empty(&volumes))?;
        let mut store_config = StoreConfig::new(volumes);
        store_config.segment_max_bytes = config.segment_max_bytes;
        store_config.volume_max_bytes = config.volume_max_bytes;
        store_config.volume_max_records = config.volume_max_messages;
        let store = if writable {
            Store::open(store_config, master.clone())?
        } else {
            Store::open_read_only(store_config, master.clone())?
        };
        let url = config
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data.join("catalog.sqlite").display()));
        let catalog = Catalog::connect(&url).await?;
        catalog.default_tenant().await?;
        let index = SearchIndex::open(&data.join("index"))?;
        Ok(Archive {
            config,
            catalog,
            store: Arc::new(store),
            index: Arc::new(index),
            indexed: Arc::new(Notify::new()),
            parsed: Default::default(),
            master,
        })
    }

    /// Connection secrets, sealed with the master key (`<data>/secrets`).
    pub fn secrets(&self) -> crate::secrets::SecretStore {
        crate::secrets::SecretStore::new(self.config.data_dir.join("secrets"), self.master.clone())
    }

    /// The certificate store (`<data>/certs`).
    pub fn certs(&self) -> crate::certs::CertStore {
        crate::certs::CertStore::new(self.config.data_dir.join("certs"), self.master.clone())
    }

    /// Starts the group committer. Only on a writable archive.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::start(
            self.store.clone(),
            self.catalog.clone(),
            self.indexed.clone(),
            self.parsed.clone(),
            self.config.max_message_bytes,
        )
    }

    pub fn indexer(&self) -> Indexer {
        Indexer {
            parsed: self.parsed.clone(),
            catalog: self.catalog.clone(),
            store: self.store.clone(),
            index: self.index.clone(),
        }
    }

    /// Keeps the index caught up in the background: shortly after commits, and every few seconds.
    pub fn spawn_indexer(&self) -> tokio::task::JoinHandle<()> {
        let indexer = self.indexer();
        let wake = self.indexed.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = indexer.run_until_idle().await {
                    tracing::error!(error = %e, "indexing failed; retrying shortly");
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), wake.notified()).await;
                // Let commits gather: one index commit for many messages costs far less than many.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }

    /// The named tenant, or the default one.
    pub async fn tenant(&self, name: Option<&str>) -> Result<Tenant, ArchiveError> {
        match name {
            None => Ok(self.catalog.default_tenant().await?),
            Some(n) => self.catalog.tenant_by_name(n).await?.ok_or_else(|| ArchiveError::UnknownTenant(n.to_owned())),
        }
    }

    pub async fn search(
        &self,
        actor: &Actor,
        query: &str,
        limit: usize,
        offset: usize,
        sort: Sort,
        snippets: bool,
    ) -> Result<SearchPage, ArchiveError> {
        let index = self.index.clone();
        index.reload()?;
        let request = SearchRequest {
            query: query.to_owned(),
            scope: Scope { tenant: actor.tenant.id as u64, visible_to: actor.visibility.clone() },
            limit,
            offset,
            sort,
            snippets,
        };
        let results = tokio::task::spawn_blocking(move || index.search(&request))
            .await
            .map_err(|e| ArchiveError::Internal(e.to_string()))??;
        self.audit(actor, "search", &format!("{query} → {} results", results.total)).await?;
        let ids: Vec<i64> = results.hits.iter().map(|h| h.id as i64).collect();
        let mut summaries = self.summaries(actor, &ids).await?;
        for (summary, hit) in summaries.iter_mut().zip(&results.hits) {
            summary.snippet = hit.snippet.as_ref().map(|s| s.fragment.clone());
        }
        Ok(SearchPage { total: results.total, offset, messages: summaries })
    }

    /// The exact number of messages a query matches.
    pub async fn count(&self, actor: &Actor, query: &str) -> Result<usize, ArchiveError> {
        Ok(self.search(actor, query, 1, 0, Sort::Date, false).await?.total)
    }

    /// All ids a query matches, newest first (for export).
    pub async fn matching_ids(&self, actor: &Actor, query: &str) -> Result<Vec<i64>, ArchiveError> {
        let index = self.index.clone();
        index.reload()?;
        let scope = Scope { tenant: actor.tenant.id as u64, visible_to: actor.visibility.clone() };
        let query = query.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut ids = Vec::new();
            loop {
                let page = index.search(&SearchRequest {
                    query: query.clone(),
                    scope: scope.clone(),
                    limit: 10_000,
                    offset: ids.len(),
                    sort: Sort::Date,
                    snippets: false,
                })?;
                let n = page.hits.len();
                ids.extend(page.hits.into_iter().map(|h| h.id as i64));
                if n == 0 || ids.len() >= page.total {
                    return Ok(ids);
                }
            }
        })
        .await
        .map_err(|e| ArchiveError::Internal(e.to_string()))?
    }

    /// Summaries of messages the actor may see, in the order of `ids`.
    pub async fn summaries(&self, actor: &Actor, ids: &[i64]) -> Result<Vec<MessageSummary>, ArchiveError> {
        let rows = self.catalog.messages(ids).await?;
        let mut recipients = self.catalog.recipients(ids).await?;
        let mut placements = self.catalog.placements(ids).await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.tenant_id == actor.tenant.id)
            .filter_map(|r| {
                let rc = recipients.remove(&r.id).unwrap_or_default();
                let pl = placements.remove(&r.id).unwrap_or_default();
                visible(actor, &r, &rc, &pl).then(|| summary(actor, r, rc, pl))
            })
            .collect())
    }

    /// One message's summary; `NotFound` for another tenant's or an invisible message.
    pub async fn message(&self, actor: &Actor, id: i64) -> Result<MessageSummary, ArchiveError> {
        let found = self.summaries(actor, &[id]).await?.pop().ok_or(ArchiveError::NotFound)?;
        self.audit(actor, "view", &format!("message {id}")).await?;
        Ok(found)
    }

    /// The original bytes, exactly as they came in.
    pub async fn raw(&self, actor: &Actor, id: i64) -> Result<Vec<u8>, ArchiveError> {
        let (_, raw) = self.visible_original(actor, id).await?;
        self.audit(actor, "download", &format!("message {id} ({} bytes)", raw.len())).await?;
        Ok(raw)
    }

    /// A message as a reader sees it (headers, body, attachments); audited as a view.
    pub async fn view(
        &self,
        actor: &Actor,
        id: i64,
    ) -> Result<(MessageSummary, coffer_mail::view::MessageView), ArchiveError> {
        let (summary, raw) = self.visible_original(actor, id).await?;
        let mut view = tokio::task::spawn_blocking(move || coffer_mail::view::view(&raw))
            .await
            .map_err(|e| ArchiveError::Internal(e.to_string()))?;
        if !actor.sees_bcc {
            // The header block of a sent copy can carry the Bcc line.
            view.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("bcc"));
        }
        self.audit(actor, "view", &format!("message {id}")).await?;
        Ok((summary, view))
    }

    /// One attachment's decoded bytes; audited as a download.
    pub async fn attachment(
        &self,
        actor: &Actor,
        id: i64,
        index: usize,
    ) -> Result<(coffer_mail::view::AttachmentInfo, Vec<u8>), ArchiveError> {
        let (_, raw) = self.visible_original(actor, id).await?;
        let found = tokio::task::spawn_blocking(move || coffer_mail::view::attachment(&raw, index))
            .await
            .map_err(|e| ArchiveError::Internal(e.to_string()))?
            .ok_or(ArchiveError::NotFound)?;
        self.audit(actor, "download", &format!("message {id} attachment {index} ({})", found.0.name)).await?;
        Ok(found)
    }

    /// The mailboxes and folders the actor may browse, with message counts.
    pub async fn folders(&self, actor: &Actor) -> Result<Vec<coffer_catalog::FolderRow>, ArchiveError> {
        let mailboxes = actor.visibility.as_ref().map(|v| v.mailboxes.as_slice());
        Ok(self.catalog.folders(actor.tenant.id, mailboxes).await?)
    }

    /// A message the actor may see, with its original bytes; `NotFound` for any other.
    async fn visible_original(&self, actor: &Actor, id: i64) -> Result<(MessageSummary, Vec<u8>), ArchiveError> {
        let summary = self.summaries(actor, &[id]).await?.pop().ok_or(ArchiveError::NotFound)?;
        let row = self.catalog.message(actor.tenant.id, id).await?.ok_or(ArchiveError::NotFound)?;
        Ok((summary, self.read_original(&row).await?))
    }

    pub(crate) async fn read_original(&self, row: &MessageRow) -> Result<Vec<u8>, ArchiveError> {
        let store = self.store.clone();
        let location = location_of(row);
        tokio::task::spawn_blocking(move || store.read(&location))
            .await
            .map_err(|e| ArchiveError::Internal(e.to_string()))?
            .map_err(Into::into)
    }

    /// Records an action in the hash-chained audit log, with who did it and from where.
    pub async fn audit(&self, actor: &Actor, action: &str, detail: &str) -> Result<(), ArchiveError> {
        self.catalog.audit(Some(actor.tenant.id), &actor.name, &actor.ip, action, detail).await?;
        Ok(())
    }

    /// Checks every record and chain in the store, every catalog entry against its record, and the
    /// audit log's chain.
    pub async fn verify(&self) -> Result<VerifyOutcome, ArchiveError> {
        let store = self.store.clone();
        let report = tokio::task::spawn_blocking(move || store.verify())
            .await
            .map_err(|e| ArchiveError::Internal(e.to_string()))??;
        let mut outcome = VerifyOutcome {
            volumes: report.volumes,
            segments: report.segments,
            records: report.records,
            problems: report.problems.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        };
        let good: HashMap<(String, u32, u64), [u8; 32]> =
            report.good.into_iter().map(|(l, h)| ((l.volume, l.segment, l.offset), h)).collect();
        let mut referenced = HashSet::new();
        let locations = self.catalog.locations().await?;
        outcome.messages = locations.len();
        for m in &locations {
            let key = (m.record.volume.clone(), m.record.segment as u32, m.record.offset as u64);
            match good.get(&key) {
                Some(hash) if hex::encode(hash) == m.sha256 => {
                    referenced.insert(key);
                }
                Some(_) => outcome.problems.push(format!(
                    "message {} (tenant {}): the record at {} segment {} offset {} holds other content",
                    m.id, m.tenant_id, m.record.volume, m.record.segment, m.record.offset
                )),
                None => outcome.problems.push(format!(
                    "message {} (tenant {}, sha256 {}): its record at {} segment {} offset {} is missing or damaged",
                    m.id, m.tenant_id, m.sha256, m.record.volume, m.record.segment, m.record.offset
                )),
            }
        }
        outcome.unreferenced_records = good.len() - referenced.len();
        for p in self.catalog.verify_audit().await? {
            outcome.problems.push(format!("audit log entry {}: {}", p.seq, p.detail));
        }
        Ok(outcome)
    }

    /// Deletes the index and rebuilds it from the store and the catalog.
    pub async fn reindex(&self) -> Result<usize, ArchiveError> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.clear())
            .await
            .map_err(|e| ArchiveError::Internal(e.to_string()))??;
        self.catalog.index_queue_all().await?;
        let n = self.indexer().run_until_idle().await?;
        self.close().await?;
        Ok(n)
    }

    /// Ends a writing session tidily: index merges finished, catalog log folded in.
    pub async fn close(&self) -> Result<(), ArchiveError> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.finish_writing())
            .await
            .map_err(|e| ArchiveError::Internal(e.to_string()))??;
        self.catalog.close().await;
        Ok(())
    }

    /// Volumes with the number of catalogued messages in each (the store's own record count can
    /// include records a crash left unreferenced).
    pub async fn volumes(&self) -> Result<Vec<VolumeInfo>, ArchiveError> {
        let counts = self.catalog.messages_per_volume().await?;
        let mut volumes = self.store.volumes()?;
        for v in &mut volumes {
            v.records = counts.get(&v.id).copied().unwrap_or(0) as u64;
        }
        Ok(volumes)
    }

    pub fn close_volume(&self, id: &str) -> Result<(), ArchiveError> {
        Ok(self.store.close_volume(id)?)
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }
}

pub(crate) fn location_of(row: &MessageRow) -> Location {
    Location {
        volume: row.record.volume.clone(),
        segment: row.record.segment as u32,
        offset: row.record.offset as u64,
        length: row.record.length as u32,
    }
}

fn visible(actor: &Actor, row: &MessageRow, recipients: &[RecipientRow], placements: &[PlacementRow]) -> bool {
    let Some(v) = &actor.visibility else {
        return true;
    };
    let mine = |a: &str| v.addresses.iter().any(|x| x.eq_ignore_ascii_case(a));
    row.from_addr.as_deref().is_some_and(mine)
        || row.sender.as_deref().is_some_and(mine)
        || recipients.iter().any(|r| mine(&r.address))
        || placements.iter().any(|p| v.mailboxes.iter().any(|m| m.eq_ignore_ascii_case(&p.mailbox)))
}

fn summary(
    actor: &Actor,
    row: MessageRow,
    recipients: Vec<RecipientRow>,
    placements: Vec<PlacementRow>,
) -> MessageSummary {
    let of = |kind: &str| -> Vec<String> {
        let mut list: Vec<String> = recipients.iter().filter(|r| r.kind == kind).map(|r| r.address.clone()).collect();
        list.dedup();
        list
    };
    let first = placements.first().cloned();
    MessageSummary {
        id: row.id,
        message_id: row.message_id,
        date: rfc3339(row.date),
        from: row.from_addr,
        from_name: row.from_name,
        to: of("to"),
        cc: of("cc"),
        bcc: if actor.sees_bcc { of("bcc") } else { Vec::new() },
        envelope: if actor.sees_bcc { of("envelope") } else { Vec::new() },
        subject: row.subject,
        size: row.size,
        sha256: row.sha256,
        mailbox: first.as_ref().map(|p| p.mailbox.clone()),
        folder: first.map(|p| p.folder),
        placements,
        has_attachment: row.has_attachment,
        flags: coffer_mail::Flags(row.flags as u32).names(),
        source: row.source,
        archived_at: rfc3339(row.archived_at),
        snippet: None,
    }
}

pub use coffer_store::VolumeState;

/// Now, in Unix seconds.
pub fn now_secs() -> i64 {
    crate::now()
}

pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
