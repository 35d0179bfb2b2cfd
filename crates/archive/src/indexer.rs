//! Feeds the search index from the catalog's index queue. The index is derived: each document is
//! rebuilt from the catalog row and the original in the store, so the index can lag, be deleted
//! and be rebuilt, and catches up after a crash (the queue entry goes only after the index commit).

use std::collections::HashMap;
use std::sync::Arc;

use coffer_catalog::{Catalog, MessageRow, PlacementRow, RecipientRow};
use coffer_index::{Address, IndexDocument, SearchBackend};
use coffer_mail::ArchivedDocument;
use coffer_store::Store;
use rayon::prelude::*;

use crate::ArchiveError;
use crate::service::blocking;

pub struct Indexer {
    pub(crate) parsed: crate::parsed::ParsedCache,
    pub(crate) catalog: Catalog,
    pub(crate) store: Arc<Store>,
    pub(crate) index: Arc<dyn SearchBackend>,
    pub(crate) extractor: coffer_extract::Extractor,
}

/// One message to index: its catalog row, recipients, placements and, when ingest parsed it just
/// now, the parse.
type Work = (MessageRow, Vec<RecipientRow>, Vec<PlacementRow>, Option<Arc<ArchivedDocument>>, Vec<OcrText>);

/// What OCR read from one picture of a message: its part number, name and text.
pub type OcrText = (i64, String, String);

/// Messages indexed per index commit.
const BATCH: i64 = 2000;
/// How long a batch is held before another indexer may take it (its holder died): far longer
/// than a batch takes.
const LEASE_SECS: i64 = 600;

/// This process as an index-queue consumer, for its leases (worked out once).
fn consumer() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        format!("indexer@{host}:{}", std::process::id())
    })
}

impl Indexer {
    /// Indexes one batch from the queue; returns how many messages it indexed (0: caught up).
    pub async fn run_once(&self) -> Result<usize, ArchiveError> {
        let lease = self.catalog.index_queue_take(consumer(), BATCH, LEASE_SECS).await?;
        let ids = lease.ids.clone();
        if ids.is_empty() {
            return Ok(0);
        }
        let rows = self.catalog.messages(&ids).await?;
        // A queued message without a row was deleted: its document goes.
        let present: std::collections::HashSet<i64> = rows.iter().map(|r| r.id).collect();
        let removed: Vec<u64> = ids.iter().filter(|id| !present.contains(id)).map(|&id| id as u64).collect();
        let mut recipients = self.catalog.recipients(&ids).await?;
        let mut placements = self.catalog.placements(&ids).await?;
        let mut ocr = self.catalog.ocr_texts(&ids).await?;
        let work: Vec<Work> = rows
            .into_iter()
            .map(|r| {
                let id = r.id;
                (
                    r,
                    recipients.remove(&id).unwrap_or_default(),
                    placements.remove(&id).unwrap_or_default(),
                    self.parsed.take(id),
                    ocr.remove(&id).unwrap_or_default(),
                )
            })
            .collect();
        let store = self.store.clone();
        let index = self.index.clone();
        let extractor = self.extractor.clone();
        let count = work.len();
        let read_pictures = extractor.ocr_enabled();
        let for_ocr = blocking(move || {
            let docs: Vec<(IndexDocument, bool)> = work
                .par_iter()
                .map(|(row, r, p, parsed, ocr)| document(&store, &extractor, row, r, p, parsed.as_deref(), ocr))
                .collect();
            index.remove(&removed)?;
            let for_ocr: Vec<i64> = docs
                .iter()
                .zip(&work)
                .filter(|((_, pictures), (.., ocr))| read_pictures && *pictures && ocr.is_empty())
                .map(|(_, (row, ..))| row.id)
                .collect();
            let docs: Vec<IndexDocument> = docs.into_iter().map(|(d, _)| d).collect();
            index.apply(&docs).map(|()| for_ocr)
        })
        .await??;
        // Pictures are read after: the message is searchable by everything else meanwhile.
        self.catalog.ocr_queue_add(&for_ocr).await?;
        self.catalog.index_queue_done(&lease).await?;
        Ok(count)
    }

    /// Checks the index files' checksums; when one is damaged, moves the index aside and queues
    /// everything for a rebuild. True when it did.
    pub async fn replace_if_damaged(&self) -> Result<bool, ArchiveError> {
        let index = self.index.clone();
        let damaged = blocking(move || index.damaged_files()).await?;
        // Only files whose checksum fails are damage; a failure to read them (a full disk, say)
        // is not a reason to throw the index away.
        let damaged = match damaged? {
            files if files.is_empty() => return Ok(false),
            files => files.join(", "),
        };
        let index = self.index.clone();
        let aside = blocking(move || index.replace()).await??;
        tracing::warn!(damaged = %damaged, moved_to = %aside, "the search index is damaged; rebuilding it in the background");
        self.catalog.index_queue_all().await?;
        Ok(true)
    }

    /// Indexes until the queue is empty; returns the number of messages indexed.
    pub async fn run_until_idle(&self) -> Result<usize, ArchiveError> {
        until_idle(|| self.run_once()).await
    }
}

/// Runs `turn` until it finds nothing to do; the sum of what it did.
pub(crate) async fn until_idle<F: Future<Output = Result<usize, ArchiveError>>>(
    mut turn: impl FnMut() -> F,
) -> Result<usize, ArchiveError> {
    let mut total = 0;
    loop {
        match turn().await? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

/// The start of an attachment's text, enough for a snippet (the index cuts it again).
fn preview(text: &str) -> String {
    text.chars().take(coffer_index::PREVIEW_CHARS * 4).collect()
}

/// The index document of one message: catalog facts plus the text of the original (parsed here
/// unless ingest already did) and what OCR read from its pictures; and whether it has pictures.
pub fn document(
    store: &Store,
    extractor: &coffer_extract::Extractor,
    row: &MessageRow,
    recipients: &[RecipientRow],
    placements: &[PlacementRow],
    parsed: Option<&ArchivedDocument>,
    ocr: &[OcrText],
) -> (IndexDocument, bool) {
    let location = crate::service::location_of(row);
    let read = || match store.read(&location) {
        Ok(raw) => Some(raw),
        Err(e) => {
            // Still findable by its catalog facts; `coffer verify` names the damage.
            tracing::warn!(message = row.id, error = %e, "indexing without text: the original could not be read");
            None
        }
    };
    let mut raw = None;
    let owned;
    let parsed = match parsed {
        Some(p) => p,
        None => {
            raw = read();
            owned = raw.as_deref().map(coffer_mail::parse).unwrap_or_default();
            &owned
        }
    };
    let mut by_kind: HashMap<&str, Vec<Address>> = HashMap::new();
    for r in recipients {
        by_kind.entry(r.kind.as_str()).or_default().push(Address { address: r.address.clone(), name: r.name.clone() });
        // A recipient reached through a list or a forward is also found by that list or mailbox.
        if let Some((_, via)) = r.via.split_once(':') {
            by_kind.entry("envelope").or_default().push(Address { address: via.to_owned(), name: None });
        }
    }
    let mut from: Vec<Address> =
        row.from_addr.iter().map(|a| Address { address: a.clone(), name: row.from_name.clone() }).collect();
    for extra in [&row.sender, &row.on_behalf_of].into_iter().flatten() {
        if row.from_addr.as_ref() != Some(extra) {
            from.push(Address { address: extra.clone(), name: None });
        }
    }
    let mut attachment_text = String::new();
    let mut attachment_previews = Vec::new();
    let mut filenames = Vec::new();
    for a in &parsed.attachments {
        if let Some(t) = &a.text {
            attachment_text.push_str(t);
            attachment_text.push('\n');
            attachment_previews.push((a.name.clone().unwrap_or_else(|| "attachment".into()), preview(t)));
        }
        if let Some(n) = &a.name {
            filenames.push(n.clone());
        }
    }
    for (_, name, text) in ocr.iter().filter(|(_, _, t)| !t.trim().is_empty()) {
        attachment_previews.push((name.clone(), preview(text)));
        attachment_text.push_str(text);
        attachment_text.push('\n');
    }
    let mut pictures = parsed.attachments.iter().any(|a| a.content_type.starts_with("image/"));
    // The text of attached documents (the index may lag; the acknowledgement never waits for this).
    let mut tags: Vec<String> = coffer_mail::Flags(row.flags as u32).names().into_iter().map(str::to_owned).collect();
    let mut filetypes = Vec::new();
    // Only for what may be a document: pictures, sound and film hold no text to extract here.
    if parsed.attachments.iter().any(|a| a.documents) {
        let raw = raw.or_else(read).unwrap_or_default();
        for (info, bytes) in coffer_mail::view::document_attachments(&raw) {
            let Some(found) = extractor.extract(&bytes) else { continue };
            filetypes.push(found.filetype.to_owned());
            match found.text {
                Ok(text) => {
                    // A PDF without text is a scan: its pages are pictures for OCR.
                    pictures |= found.filetype == "pdf" && coffer_extract::scanned(&text);
                    attachment_previews.push((info.name.clone(), preview(&text)));
                    attachment_text.push_str(&text);
                    attachment_text.push('\n');
                }
                Err(why) => {
                    tracing::info!(message = row.id, attachment = %info.name, %why, "attachment text not extracted");
                    tags.push("extraction-failed".into());
                }
            }
        }
        filetypes.sort();
        filetypes.dedup();
        tags.dedup();
    }
    let document = IndexDocument {
        id: row.id as u64,
        tenant: row.tenant_id as u64,
        date: row.date,
        size: row.size as u64,
        from,
        to: by_kind.remove("to").unwrap_or_default(),
        cc: by_kind.remove("cc").unwrap_or_default(),
        bcc: by_kind.remove("bcc").unwrap_or_default(),
        envelope: by_kind.remove("envelope").unwrap_or_default(),
        subject: row.subject.clone().unwrap_or_default(),
        body: parsed.body.clone(),
        attachment_text,
        attachment_previews,
        filenames,
        message_id: row.message_id.clone(),
        placements: placements.iter().map(|p| (p.mailbox.clone(), p.folder.clone())).collect(),
        participants: crate::service::participants(row, recipients),
        tags,
        filetypes,
        has_attachment: row.has_attachment,
    };
    (document, pictures)
}
