//! The archive service: opening an archive, and the operations front ends offer. Every read is
//! confined to the actor's tenant and visibility here, not in a template, so the console, the API
//! and the CLI obey the same rules; every search, view and export is audited.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coffer_catalog::{Catalog, MessageRow, PlacementRow, RecipientRow, Tenant};
use coffer_index::{Found, Scope, SearchBackend, SearchIndex, SearchRequest, Sort, Visibility};
use coffer_store::{Location, MasterKey, Store, StoreConfig, VolumeInfo};
use serde::Serialize;
use tokio::sync::Notify;

use crate::admin::Role;
use crate::indexer::Indexer;
use crate::ingest::Pipeline;
use crate::{ArchiveConfig, ArchiveError};

/// Who is asking, for rights, visibility and the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub ip: String,
    pub tenant: Tenant,
    pub role: Role,
    /// The account behind a console or API request (None for the local operator).
    pub user_id: Option<i64>,
    /// The operator at the machine's command line: every tenant's configuration.
    pub local: bool,
    /// An administrator of the default tenant: what spans tenants, also while working in another
    /// tenant (`working_in`).
    pub system: bool,
    /// None: the whole tenant (administrators, auditors, the operator on the command line).
    pub visibility: Option<Visibility>,
    /// Bcc and envelope recipients are shown only to roles allowed to see them.
    pub sees_bcc: bool,
    /// Reads mail of every tenant (a system administrator searching all tenants; `across_tenants`).
    pub all_tenants: bool,
}

impl Actor {
    /// The operator at the command line of the machine, working in `tenant`: named in the audit
    /// log as `cli:<user>@<host>`.
    pub fn operator(tenant: Tenant) -> Actor {
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        Actor {
            name: format!("cli:{user}@{host}"),
            ip: "local".into(),
            tenant,
            role: Role::Administrator,
            user_id: None,
            local: true,
            system: false,
            visibility: None,
            sees_bcc: true,
            all_tenants: false,
        }
    }

    /// A signed-in account: what it sees follows its role (users: their own addresses and
    /// mailboxes, never Bcc lines; auditors and administrators: the whole tenant).
    pub fn account(user: &coffer_catalog::UserRow, role: Role, tenant: Tenant, ip: &str) -> Actor {
        let whole_tenant = role >= Role::Auditor;
        let system = role == Role::Administrator && tenant.name == coffer_catalog::DEFAULT_TENANT;
        Actor {
            name: user.login.clone(),
            ip: ip.to_owned(),
            tenant,
            role,
            user_id: Some(user.id),
            local: false,
            system,
            visibility: (!whole_tenant)
                .then(|| Visibility { addresses: user.addresses.clone(), mailboxes: user.addresses.clone() }),
            sees_bcc: whole_tenant,
            all_tenants: false,
        }
    }
}

impl Actor {
    /// The same administrator of the default tenant working in another tenant: its mail, users,
    /// rules and holds, audited in its log; what spans tenants stays theirs.
    pub fn working_in(self, tenant: Tenant) -> Result<Actor, ArchiveError> {
        self.require_system_admin()?;
        Ok(Actor { tenant, all_tenants: false, ..self })
    }

    /// The same administrator of the default tenant reading the mail of every tenant (search,
    /// view, export); what it writes stays in its own tenant.
    pub fn across_tenants(self) -> Result<Actor, ArchiveError> {
        self.require_system_admin()?;
        Ok(Actor { all_tenants: true, ..self })
    }

    /// Whether this actor reads mail of that tenant: the one place that widens reading beyond
    /// the actor's tenant.
    pub fn reads(&self, tenant_id: i64) -> bool {
        tenant_id == self.tenant.id || self.all_tenants
    }

    /// What a search by this actor covers: its tenant (or every tenant), and for a user only
    /// their own mail.
    pub fn scope(&self) -> Scope {
        Scope { tenant: (!self.all_tenants).then_some(self.tenant.id as u64), visible_to: self.visibility.clone() }
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
    /// The snippet cut where the query's words show: the matched parts are marked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snippet_parts: Vec<SnippetPart>,
    /// The attachment the snippet comes from (None: the body).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet_attachment: Option<String>,
    pub tenant_id: i64,
    /// The tenant's name, in a search across tenants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// A piece of a snippet: text the query matched, or text around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnippetPart {
    pub text: String,
    pub matched: bool,
}

impl SnippetPart {
    /// A snippet's fragment cut at its matched byte ranges (as the index gives them).
    fn parts(snippet: &coffer_index::Snippet) -> Vec<SnippetPart> {
        let fragment = &snippet.fragment;
        let mut parts = Vec::new();
        let mut at = 0;
        for range in &snippet.highlighted {
            let (Some(before), Some(matched)) = (fragment.get(at..range.start), fragment.get(range.clone())) else {
                break;
            };
            if !before.is_empty() {
                parts.push(SnippetPart { text: before.to_owned(), matched: false });
            }
            parts.push(SnippetPart { text: matched.to_owned(), matched: true });
            at = range.end;
        }
        if let Some(rest) = fragment.get(at..).filter(|r| !r.is_empty()) {
            parts.push(SnippetPart { text: rest.to_owned(), matched: false });
        }
        parts
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchPage {
    pub total: usize,
    pub offset: usize,
    pub messages: Vec<MessageSummary>,
    /// Messages archived but not yet searchable (the index lags, or is being rebuilt): the
    /// results may be incomplete while this is above zero.
    pub not_yet_indexed: i64,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyOutcome {
    pub volumes: usize,
    pub segments: usize,
    pub records: u64,
    pub messages: usize,
    /// Records no catalog entry points to (a crash between store and catalog commit: never acknowledged).
    pub unreferenced_records: usize,
    /// Evidence records (arrivals, later events, tenant states); `records` counts message records.
    pub evidence_records: u64,
    /// Timestamp records (each token is checked: `timestamps`, `problems`).
    pub timestamp_records: u64,
    /// Records whose keys were destroyed by a deletion: gone on purpose, not damage.
    pub shredded: u64,
    /// Catalogued messages whose volumes are from before evidence records (nothing to compare).
    pub without_evidence: usize,
    /// Per volume with timestamps: how many tokens, and the latest time its content is proven.
    pub timestamps: Vec<crate::timestamp::VolumeProof>,
    pub problems: Vec<String>,
}

impl VerifyOutcome {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What `reindex` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reindexed {
    /// Rebuilt here: this many messages.
    Done(usize),
    /// The serving process holds the index: this many messages are queued for its indexer.
    Queued(usize),
}

pub struct Archive {
    pub config: ArchiveConfig,
    pub(crate) catalog: Catalog,
    pub(crate) store: Arc<Store>,
    pub(crate) index: Arc<dyn SearchBackend>,
    indexed: Arc<Notify>,
    parsed: crate::parsed::ParsedCache,
    master: MasterKey,
    /// The one committer of this process (message ids are given there).
    pipeline: std::sync::OnceLock<Pipeline>,
    imports: crate::imports::ImportQueue,
    /// Held while a list kept as one setting (the listeners) is read, changed and written, so two
    /// changes at once do not lose one.
    pub(crate) settings_write: tokio::sync::Mutex<()>,
}

impl Archive {
    /// Opens (creating on first use) the archive in the configured data folder. `writable` takes
    /// the store's writer lock and recovers a crashed writer's tail; read-only commands can run
    /// next to a serving process.
    pub async fn open(config: ArchiveConfig, writable: bool) -> Result<Archive, ArchiveError> {
        let data = &config.data_dir;
        private_data_folder(data, config.allow_shared_data)?;
        let volumes = data.join("volumes");
        let key_file = config.master_key_file.clone().unwrap_or_else(|| data.join("master.key"));
        let master = MasterKey::load_or_create(&key_file, Store::is_empty(&volumes))?;
        let url = config
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data.join("catalog.sqlite").display()));
        let catalog = Catalog::connect(&url).await?;
        belong_together(&catalog, &volumes, &url).await?;
        if writable {
            catalog.check().await?;
            crate::imports::clear_spool(data)?;
            // The store's writer lock is ours: no other process holds index-queue leases now.
            catalog.index_queue_release_all().await?;
        }
        catalog.default_tenant().await?;
        let mut store_config = StoreConfig::new(volumes.clone());
        store_config.segment_max_bytes = config.segment_max_bytes;
        store_config.volume_max_bytes = config.volume_max_bytes;
        store_config.volume_max_records = config.volume_max_messages;
        let store = if writable {
            // Recovery may cut only what was never acknowledged: the catalog knows what was.
            store_config.acknowledged = catalog.acknowledged_ends(&Store::open_volume_ids(&volumes)?).await?;
            Store::open(store_config, master.clone())?
        } else {
            Store::open_read_only(store_config, master.clone())?
        };
        let store = Arc::new(store);
        if writable {
            // Under the store's writer lock: two first runs at once never mark two ids.
            mark_together(&catalog, &volumes).await?;
            // The catalog is derived from the volumes: what a crash left unapplied is applied
            // now, and tenants not yet recorded (new, changed, or older) are recorded.
            crate::evidence::replay(&store, &catalog).await?;
            crate::evidence::record_changes(&store, &catalog).await?;
            // A deletion whose tombstone is durable is finished before anything reads.
            let recorded = catalog.deletions_in_state("recorded").await?;
            crate::retention::shred(&store, &catalog, &recorded).await?;
        }
        let index = open_index(&data.join("index"), &catalog, writable).await?;
        Ok(Archive {
            config,
            catalog,
            store,
            index: Arc::new(index),
            pipeline: Default::default(),
            indexed: Arc::new(Notify::new()),
            parsed: Default::default(),
            master,
            imports: Default::default(),
            settings_write: Default::default(),
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

    /// The group committer, started on first use. Only on a writable archive.
    pub fn pipeline(&self) -> Pipeline {
        self.pipeline
            .get_or_init(|| {
                Pipeline::start(
                    self.store.clone(),
                    self.catalog.clone(),
                    self.indexed.clone(),
                    self.parsed.clone(),
                    self.config.max_message_bytes,
                    self.config.ingest_memory_bytes,
                )
            })
            .clone()
    }

    /// Records tenant changes as evidence now when this process writes (otherwise the writing
    /// process records them within seconds, or at its next start).
    pub(crate) async fn record_changes(&self) -> Result<(), ArchiveError> {
        if let Some(p) = self.pipeline.get() {
            p.record_changes().await?;
        } else if self.store.is_writable() {
            crate::evidence::record_changes(&self.store, &self.catalog).await?;
        }
        Ok(())
    }

    /// The imports started from the console and the API in this process.
    pub fn imports(&self) -> &crate::imports::ImportQueue {
        &self.imports
    }

    /// True when this process holds the store's writer lock (false beside a serving process).
    pub fn holds_store_writer(&self) -> bool {
        self.store.is_writable()
    }

    /// The timestamper of this archive's open volumes, None when no TSA is configured. Only on a
    /// writable archive.
    pub fn timestamper(&self) -> Result<Option<crate::timestamp::Timestamper>, ArchiveError> {
        if !self.store.is_writable() {
            return Err(ArchiveError::Store(coffer_store::StoreError::ReadOnly));
        }
        crate::timestamp::Timestamper::new(self.store.clone(), &self.config.timestamp)
    }

    /// Timestamps every open volume's chain head now; returns how many tokens were stored.
    pub async fn timestamp_now(&self) -> Result<usize, ArchiveError> {
        let mut timestamper = self.timestamper()?.ok_or_else(|| {
            ArchiveError::Invalid("no TSA is configured: set timestamp.tsa_url and timestamp.ca_file".into())
        })?;
        blocking(move || timestamper.pass(true)).await?
    }

    pub fn indexer(&self) -> Indexer {
        Indexer {
            parsed: self.parsed.clone(),
            catalog: self.catalog.clone(),
            store: self.store.clone(),
            index: self.index.clone(),
            extractor: coffer_extract::Extractor::new(&self.config.extract),
        }
    }

    /// The reader of attached pictures (OCR); None when `[extract] ocr` is off.
    pub fn ocr(&self) -> Option<crate::ocr::Ocr> {
        let extractor = coffer_extract::Extractor::new(&self.config.extract);
        extractor.ocr_enabled().then(|| crate::ocr::Ocr {
            catalog: self.catalog.clone(),
            store: self.store.clone(),
            extractor,
        })
    }

    /// Indexes until idle, then reads the pictures OCR waits for and indexes what it read: for
    /// the commands that finish with everything searchable.
    pub async fn index_until_idle(&self) -> Result<usize, ArchiveError> {
        let mut indexed = self.indexer().run_until_idle().await?;
        if let Some(ocr) = self.ocr()
            && ocr.run_until_idle().await? > 0
        {
            indexed += self.indexer().run_until_idle().await?;
        }
        Ok(indexed)
    }

    /// Keeps the index caught up in the background: shortly after commits, and every few seconds.
    pub fn spawn_indexer(&self) -> tokio::task::JoinHandle<()> {
        let indexer = self.indexer();
        let wake = self.indexed.clone();
        tokio::spawn(async move {
            // Damage inside index files shows only when they are read in full: check once, in
            // the background, and rebuild rather than serve wrong or failing searches.
            if let Err(e) = indexer.replace_if_damaged().await {
                tracing::error!(error = %e, "checking the search index failed");
            }
            loop {
                if let Err(e) = indexer.run_until_idle().await {
                    tracing::error!(error = %e, "indexing failed; retrying shortly");
                    if let Err(e) = indexer.replace_if_damaged().await {
                        tracing::error!(error = %e, "checking the search index failed");
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), wake.notified()).await;
                // Let commits gather: one index commit for many messages costs far less than many.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }

    /// The tenant of that id, if there is one.
    pub async fn tenant_by_id(&self, id: i64) -> Result<Option<Tenant>, ArchiveError> {
        Ok(self.catalog.tenant(id).await?)
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
        let request = SearchRequest { query: query.to_owned(), scope: actor.scope(), limit, offset, sort, snippets };
        let results = blocking(move || index.search(&request)).await??;
        let across = if actor.all_tenants { " (all tenants)" } else { "" };
        self.audit(actor, "search", &format!("{query} → {} results{across}", results.total)).await?;
        let ids: Vec<i64> = results.hits.iter().map(|h| h.id as i64).collect();
        let mut snippets: HashMap<i64, coffer_index::Snippet> =
            results.hits.into_iter().filter_map(|h| h.snippet.map(|s| (h.id as i64, s))).collect();
        // `summaries` drops what the actor may not see; a snippet goes only with its own message.
        let mut summaries = self.summaries(actor, &ids).await?;
        for summary in &mut summaries {
            if let Some(snippet) = snippets.remove(&summary.id) {
                if !snippet.highlighted.is_empty() {
                    summary.snippet_parts = SnippetPart::parts(&snippet);
                }
                summary.snippet_attachment = snippet.attachment;
                summary.snippet = Some(snippet.fragment);
            }
        }
        let not_yet_indexed = match actor.all_tenants {
            true => self.catalog.index_queue_len().await?,
            false => self.catalog.index_queue_len_of(actor.tenant.id).await?,
        };
        Ok(SearchPage { total: results.total, offset, messages: summaries, not_yet_indexed })
    }

    /// The exact number of messages a query matches.
    pub async fn count(&self, actor: &Actor, query: &str) -> Result<usize, ArchiveError> {
        Ok(self.search(actor, query, 1, 0, Sort::Date, false).await?.total)
    }

    /// All ids a query matches, newest first (for export).
    pub async fn matching_ids(&self, actor: &Actor, query: &str) -> Result<Vec<i64>, ArchiveError> {
        let index = self.index.clone();
        index.reload()?;
        let scope = actor.scope();
        let query = query.to_owned();
        let ids = blocking(move || index.all_ids(&query, &scope)).await??;
        Ok(ids.into_iter().map(|id| id as i64).collect())
    }

    /// Summaries of messages the actor may see, in the order of `ids`.
    pub async fn summaries(&self, actor: &Actor, ids: &[i64]) -> Result<Vec<MessageSummary>, ArchiveError> {
        let rows = self.catalog.messages(ids).await?;
        let mut recipients = self.catalog.recipients(ids).await?;
        let mut placements = self.catalog.placements(ids).await?;
        // Across tenants, each message says whose it is.
        let names: HashMap<i64, String> = match actor.all_tenants {
            true => self.catalog.tenants().await?.into_iter().map(|t| (t.id, t.name)).collect(),
            false => HashMap::new(),
        };
        Ok(rows
            .into_iter()
            .filter(|r| actor.reads(r.tenant_id))
            .filter_map(|r| {
                let rc = recipients.remove(&r.id).unwrap_or_default();
                let pl = placements.remove(&r.id).unwrap_or_default();
                let mut s = visible(actor, &r, &rc, &pl).then(|| summary(actor, r, rc, pl))?;
                s.tenant = names.get(&s.tenant_id).cloned();
                Some(s)
            })
            .collect())
    }

    /// One message's summary; `NotFound` for another tenant's or an invisible message.
    pub async fn message(&self, actor: &Actor, id: i64) -> Result<MessageSummary, ArchiveError> {
        let Some(found) = self.summaries(actor, &[id]).await?.pop() else {
            return Err(self.missing(actor, id).await);
        };
        self.audit_read(actor, found.tenant_id, "view", &format!("message {id}")).await?;
        Ok(found)
    }

    /// The original bytes, exactly as they came in; for an actor who may not see blind recipients,
    /// a copy without the fields that name them, marked as such (`coffer_mail::redact`).
    pub async fn raw(&self, actor: &Actor, id: i64) -> Result<Vec<u8>, ArchiveError> {
        let (summary, raw) = self.visible_original(actor, id).await?;
        let tenant = summary.tenant_id;
        if actor.sees_bcc {
            self.audit_read(actor, tenant, "download", &format!("message {id} ({} bytes)", raw.len())).await?;
            return Ok(raw);
        }
        let copy =
            blocking(move || coffer_mail::redact::redact_blind(&raw, &format!("SHA-256 {}", summary.sha256))).await?;
        let detail = format!("message {id} (redacted copy, {} bytes)", copy.len());
        self.audit_read(actor, tenant, "download", &detail).await?;
        Ok(copy)
    }

    /// A message as a reader sees it (headers, body, attachments); audited as a view.
    pub async fn view(
        &self,
        actor: &Actor,
        id: i64,
    ) -> Result<(MessageSummary, coffer_mail::view::MessageView), ArchiveError> {
        let (summary, raw) = self.visible_original(actor, id).await?;
        let tenant = summary.tenant_id;
        let mut view = blocking(move || coffer_mail::view::view(&raw)).await?;
        if !actor.sees_bcc {
            // The header block of a sent copy can carry the Bcc line, a delivered copy the address
            // it was delivered to.
            view.headers.retain(|(name, value)| !coffer_mail::redact::is_blind_field(name, value.as_bytes()));
        }
        self.audit_read(actor, tenant, "view", &format!("message {id}")).await?;
        Ok((summary, view))
    }

    /// One attachment's decoded bytes; audited as a download.
    pub async fn attachment(
        &self,
        actor: &Actor,
        id: i64,
        index: usize,
    ) -> Result<(coffer_mail::view::AttachmentInfo, Vec<u8>), ArchiveError> {
        let (summary, raw) = self.visible_original(actor, id).await?;
        let tenant = summary.tenant_id;
        let sees_bcc = actor.sees_bcc;
        let found = blocking(move || {
            let (info, bytes) = coffer_mail::view::attachment(&raw, index)?;
            // An attached message carries its own Bcc line.
            if !sees_bcc && info.content_type == "message/rfc822" {
                let copy = coffer_mail::redact::redact_blind(
                    &bytes,
                    &format!("attachment {index} of the message with SHA-256 {}", summary.sha256),
                );
                return Some((coffer_mail::view::AttachmentInfo { size: copy.len(), ..info }, copy));
            }
            Some((info, bytes))
        })
        .await?
        .ok_or(ArchiveError::NotFound)?;
        let detail = format!("message {id} attachment {index} ({})", found.0.name);
        self.audit_read(actor, tenant, "download", &detail).await?;
        Ok(found)
    }

    /// The mailboxes and folders the actor may browse, with message counts.
    pub async fn folders(&self, actor: &Actor) -> Result<Vec<coffer_catalog::FolderRow>, ArchiveError> {
        let mailboxes = actor.visibility.as_ref().map(|v| v.mailboxes.as_slice());
        Ok(self.catalog.folders(actor.tenant.id, mailboxes).await?)
    }

    /// A message the actor may see, with its original bytes; `NotFound` for any other.
    async fn visible_original(&self, actor: &Actor, id: i64) -> Result<(MessageSummary, Vec<u8>), ArchiveError> {
        let Some(summary) = self.summaries(actor, &[id]).await?.pop() else {
            return Err(self.missing(actor, id).await);
        };
        let row = self.catalog.message(summary.tenant_id, id).await?.ok_or(ArchiveError::NotFound)?;
        Ok((summary, self.read_original(&row).await?))
    }

    /// Why a message is not there: deleted (for those who see the whole tenant: when and why),
    /// or simply not found.
    async fn missing(&self, actor: &Actor, id: i64) -> ArchiveError {
        if actor.visibility.is_some() {
            return ArchiveError::NotFound;
        }
        match self.catalog.deletion(actor.tenant.id, id).await {
            Ok(Some(d)) if d.state != "decided" => ArchiveError::Deleted(crate::retention::describe_deletion(&d)),
            Ok(_) => ArchiveError::NotFound,
            Err(e) => e.into(),
        }
    }

    pub(crate) async fn read_original(&self, row: &MessageRow) -> Result<Vec<u8>, ArchiveError> {
        let store = self.store.clone();
        let location = location_of(row);
        blocking(move || store.read(&location)).await?.map_err(Into::into)
    }

    /// Records a reading of a message of `tenant_id`; one of another tenant (a search across
    /// tenants) is also recorded in that tenant's log, so its auditors see who read its mail.
    async fn audit_read(&self, actor: &Actor, tenant_id: i64, action: &str, detail: &str) -> Result<(), ArchiveError> {
        self.audit(actor, action, detail).await?;
        if tenant_id != actor.tenant.id {
            let detail = format!("{detail} (by {} of tenant {}, across tenants)", actor.name, actor.tenant.name);
            self.catalog.audit(Some(tenant_id), &actor.name, &actor.ip, action, &detail).await?;
        }
        Ok(())
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
        let report = blocking(move || store.verify()).await??;
        let mut outcome = VerifyOutcome {
            volumes: report.volumes,
            segments: report.segments,
            records: report.records,
            shredded: report.shredded,
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
        outcome.evidence_records = report.evidence;
        outcome.timestamp_records = report.timestamp_records;
        outcome.records = report.records - report.evidence - outcome.timestamp_records;
        let (proofs, problems) = crate::timestamp::check_all(&report.timestamps, &self.config.timestamp);
        outcome.timestamps = proofs;
        outcome.problems.extend(problems);
        // Rows, recipients and placements against the evidence. Beside a serving process a
        // commit can land between the marks and the rows: a difference is confirmed by a second
        // look before it is reported.
        let (mut differences, mut without) = crate::evidence::compare_with_catalog(&self.store, &self.catalog).await?;
        if !differences.is_empty() {
            let (again, w) = crate::evidence::compare_with_catalog(&self.store, &self.catalog).await?;
            differences.retain(|d| again.contains(d));
            without = w;
        }
        outcome.without_evidence = without;
        outcome.problems.extend(differences);
        for p in self.catalog.verify_audit().await? {
            outcome.problems.push(format!("audit log entry {}: {}", p.seq, p.detail));
        }
        Ok(outcome)
    }

    /// Deletes the index and rebuilds it from the store and the catalog. When `coffer serve` holds
    /// the index, every message is queued instead and the server's indexer rebuilds it (documents
    /// are replaced by id, so searches keep working meanwhile).
    pub async fn reindex(&self) -> Result<Reindexed, ArchiveError> {
        let index = self.index.clone();
        let cleared = blocking(move || index.clear()).await?;
        match cleared {
            Err(coffer_index::IndexError::Locked) => {
                self.catalog.index_queue_all().await?;
                return Ok(Reindexed::Queued(self.catalog.index_queue_len().await? as usize));
            }
            other => other?,
        }
        self.catalog.index_queue_all().await?;
        let n = self.index_until_idle().await?;
        self.close().await?;
        Ok(Reindexed::Done(n))
    }

    /// Ends a writing session tidily: index merges finished, catalog log folded in.
    pub async fn close(&self) -> Result<(), ArchiveError> {
        let index = self.index.clone();
        blocking(move || index.finish_writing()).await??;
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

/// The setting that holds the archive's id in the catalog; the volumes hold it in `ARCHIVE`.
pub(crate) const ARCHIVE_ID: &str = "archive_id";

/// Refuses a catalog that does not belong with the volumes: a new (or emptied) catalog beside
/// volumes that hold mail — a lost catalog; starting on it would give every tenant a new journal
/// address, and Exchange's next reports would be refused for good — or another archive's. A
/// writing open that passes marks both with the archive's id ([`mark_together`]).
async fn belong_together(catalog: &Catalog, volumes: &Path, url: &str) -> Result<(), ArchiveError> {
    let in_catalog = catalog.setting(ARCHIVE_ID).await?;
    let in_volumes = Store::archive_id(volumes)?;
    let restore = "Nothing was written. Restore the catalog from your latest backup (README: The master key and \
                   backups), or rebuild it from the volumes with `coffer catalog rebuild`, or point database_url at \
                   the archive's database";
    let lost = || {
        ArchiveError::CatalogMismatch(format!(
            "the catalog ({}) is new or empty, but {} holds archived mail: Coffer does not start on a new catalog \
             (the tenants' journal addresses would change, and recipients, placements and accounts would be \
             missing). {restore}",
            url.split('?').next().unwrap_or(url),
            volumes.display()
        ))
    };
    match (&in_catalog, &in_volumes) {
        (Some(c), Some(v)) if c != v => {
            return Err(ArchiveError::CatalogMismatch(format!(
                "the catalog belongs to archive {c}, the volumes in {} to archive {v}. {restore}",
                volumes.display()
            )));
        }
        (None, Some(_)) => return Err(lost()),
        // Archives from before the mark: volumes with a catalog that knows no message.
        (None, None) if Store::has_volumes(volumes)? && catalog.count_all_messages().await? == 0 => {
            return Err(lost());
        }
        _ => {}
    }
    Ok(())
}

/// Gives a new archive its id, in the catalog and beside the volumes; called with the store's
/// writer lock held.
async fn mark_together(catalog: &Catalog, volumes: &Path) -> Result<(), ArchiveError> {
    let id = match catalog.setting(ARCHIVE_ID).await? {
        Some(id) => id,
        None => {
            let id = Store::archive_id(volumes)?.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
            catalog.set_setting(ARCHIVE_ID, &id).await?;
            id
        }
    };
    if Store::archive_id(volumes)?.is_none() {
        Store::set_archive_id(volumes, &id)?;
    }
    Ok(())
}

/// Creates the data folder readable by its owner only (0700), and refuses one that others can read
/// or enter: it holds message text, the catalog with password hashes, and the master key.
fn private_data_folder(data: &Path, allow_shared: bool) -> Result<(), ArchiveError> {
    let io = |e| ArchiveError::Io(data.display().to_string(), e);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !data.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(data).map_err(io)?;
        }
        let mode = std::fs::metadata(data).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 && !allow_shared {
            return Err(ArchiveError::Invalid(format!(
                "the data folder {} is open to other users of this machine (mode {mode:03o}), and it holds message text \
                 and password hashes: make it private with `chmod -R go-rwx {}` (or set allow_shared_data = true)",
                data.display(),
                data.display()
            )));
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(data).map_err(io)?;
    Ok(())
}

/// The index is derived: a missing, damaged, outdated or incomplete one never stops the archive.
/// A writing process replaces it and queues every message, and its indexer rebuilds it in the
/// background while mail keeps coming in (searches say how many messages are not yet searchable).
/// A read-only process leaves the folder alone and searches an empty index until then.
async fn open_index(dir: &Path, catalog: &Catalog, writable: bool) -> Result<SearchIndex, ArchiveError> {
    if !writable {
        return Ok(match SearchIndex::open(dir) {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(error = %e, "the search index does not open; searching an empty one until `coffer serve` has rebuilt it");
                SearchIndex::in_memory()
            }
        });
    }
    let (index, found) = SearchIndex::open_or_replace(dir)?;
    let messages = catalog.count_all_messages().await?;
    let queued = catalog.index_queue_len().await?;
    let rebuild = match &found {
        Found::Intact if index.num_docs() as i64 + queued < messages => {
            Some(format!("the index holds {} documents for {messages} messages", index.num_docs()))
        }
        Found::Intact => None,
        Found::Missing if messages > 0 => Some("the index folder was missing or empty".to_owned()),
        Found::Missing => None,
        Found::Replaced(why) => Some(why.clone()),
    };
    if let Some(why) = rebuild {
        tracing::warn!(reason = %why, messages, "rebuilding the search index in the background");
        catalog.index_queue_all().await?;
    }
    Ok(index)
}

pub(crate) fn location_of(row: &MessageRow) -> Location {
    Location {
        volume: row.record.volume.clone(),
        segment: row.record.segment as u32,
        offset: row.record.offset as u64,
        length: row.record.length as u32,
    }
}

/// Who takes part in a message: its sender (From, Sender, the journal report's On-Behalf-Of) and
/// every recipient of any kind (To, Cc, Bcc, envelope). Lists and forwarders a recipient came
/// through and display names do not take part. This is the one rule: the index's scope is built
/// from it (`indexer::document`), and every single-message read checks it (`visible`).
pub fn participants(row: &MessageRow, recipients: &[RecipientRow]) -> Vec<String> {
    let mut all: Vec<String> = [&row.from_addr, &row.sender, &row.on_behalf_of]
        .into_iter()
        .flatten()
        .chain(recipients.iter().map(|r| &r.address))
        .map(|a| a.trim().to_lowercase())
        .filter(|a| !a.is_empty())
        .collect();
    all.sort();
    all.dedup();
    all
}

fn visible(actor: &Actor, row: &MessageRow, recipients: &[RecipientRow], placements: &[PlacementRow]) -> bool {
    let Some(v) = &actor.visibility else {
        return true;
    };
    let people = participants(row, recipients);
    v.addresses.iter().any(|a| people.binary_search(&a.trim().to_lowercase()).is_ok())
        || placements.iter().any(|p| own_mailbox(v, &p.mailbox))
}

fn own_mailbox(v: &Visibility, mailbox: &str) -> bool {
    v.mailboxes.iter().any(|m| m.trim().eq_ignore_ascii_case(mailbox.trim()))
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
    // That a message sits in another's mailbox would name a blind recipient: a user sees only
    // where it is filed in their own mailboxes.
    let placements: Vec<PlacementRow> = match &actor.visibility {
        None => placements,
        Some(v) => placements.into_iter().filter(|p| own_mailbox(v, &p.mailbox)).collect(),
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
        snippet_parts: Vec::new(),
        snippet_attachment: None,
        tenant_id: row.tenant_id,
        tenant: None,
    }
}

/// Runs CPU-bound work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ArchiveError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ArchiveError::Internal(e.to_string()))
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
