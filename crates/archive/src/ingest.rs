//! The ingest pipeline: the one path by which mail enters the archive.
//!
//! A source hands in a [`Submission`] (raw bytes, tenant, what the source knows). [`prepare`] does
//! the CPU work anywhere (parse, unwrap a journal report, hash, compress); the [`Pipeline`]'s single
//! committer then takes whatever is waiting, stores the new records with one fsync, records the
//! batch in one catalog transaction and only then answers each submitter: the acknowledgement a
//! source passes on (SMTP 250, an IMAP delete, a Graph delta link) means durable.

use std::collections::HashMap;
use std::sync::Arc;

use coffer_catalog::{Catalog, CommitOutcome, NewMessage, NewPlacement, NewRecipient, RecordRef};
use coffer_mail::{Flags, journal};
use coffer_store::{Compressor, Payload, Store};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::ArchiveError;
use crate::parsed::ParsedCache;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Smtp,
    Imap,
    Graph,
    Import,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Smtp => "smtp",
            Source::Imap => "imap",
            Source::Graph => "m365",
            Source::Import => "import",
        }
    }
}

/// What every source hands the pipeline.
#[derive(Debug, Clone)]
pub struct Submission {
    pub tenant: i64,
    pub source: Source,
    pub raw: Vec<u8>,
    /// Envelope recipients the source saw (SMTP RCPT TO, minus the archive's own addresses).
    pub envelope: Vec<String>,
    /// SMTP MAIL FROM, when known.
    pub envelope_from: Option<String>,
    /// Mailbox and folder the message sits in, when the source knows.
    pub placement: Option<(String, String)>,
    /// Unwrap Exchange journal reports: only where the input is known to come from journaling.
    pub journal: bool,
}

/// A submission after the CPU work, ready for the committer.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub message: NewMessage,
    pub payload: Payload,
    pub source: Source,
    /// The parse of the original, handed to the indexer through the [`ParsedCache`].
    pub document: Arc<coffer_mail::ArchivedDocument>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub id: i64,
    pub sha256: String,
    /// The tenant had these bytes already (recipients and placements were merged).
    pub duplicate: bool,
    pub flags: Flags,
}

/// Parses, unwraps and seals one submission. Never fails on content: only on size.
pub fn prepare(sub: Submission, max_message_bytes: u64, compressor: &Compressor) -> Result<Prepared, ArchiveError> {
    if sub.raw.len() as u64 > max_message_bytes {
        return Err(ArchiveError::TooLarge { size: sub.raw.len() as u64, limit: max_message_bytes });
    }
    let mut flags = Flags::default();
    let mut report = None;
    let original = if sub.journal {
        match journal::unwrap(&sub.raw) {
            journal::Unwrapped::Report(mut r) => {
                flags.insert(Flags::JOURNALED);
                let original = std::mem::take(&mut r.original);
                report = Some(r);
                // The report around it is not kept: its bytes go now, not after the parse.
                drop(sub.raw);
                original
            }
            journal::Unwrapped::Malformed => {
                flags.insert(Flags::JOURNAL_MALFORMED);
                sub.raw
            }
            journal::Unwrapped::NotAReport => sub.raw,
        }
    } else {
        sub.raw
    };
    let doc = coffer_mail::parse(&original);
    flags.insert(doc.flags);

    let mut recipients = Vec::new();
    let mut add = |kind: &str, address: &str, name: Option<&str>, via: String| {
        let address = address.trim().trim_matches(['<', '>']).to_lowercase();
        if !address.is_empty() {
            recipients.push(NewRecipient { kind: kind.into(), address, name: name.map(str::to_owned), via });
        }
    };
    for (kind, list) in [("to", &doc.to), ("cc", &doc.cc), ("bcc", &doc.bcc)] {
        for m in list {
            add(kind, &m.address, m.name.as_deref(), String::new());
        }
    }
    let mut sender = sub.envelope_from.clone();
    let mut on_behalf_of = None;
    match &report {
        Some(r) => {
            for rcpt in &r.recipients {
                let via = match (&rcpt.expanded_from, &rcpt.forwarded_from) {
                    (Some(list), _) => format!("expanded:{}", list.to_lowercase()),
                    (None, Some(mailbox)) => format!("forwarded:{}", mailbox.to_lowercase()),
                    (None, None) => String::new(),
                };
                add("envelope", &rcpt.address, None, via);
                // The report's Bcc lines are the only record of Bcc recipients.
                if rcpt.kind == journal::RecipientKind::Bcc {
                    add("bcc", &rcpt.address, None, String::new());
                }
            }
            sender = r.sender.clone().or(sender);
            on_behalf_of = r.on_behalf_of.clone();
        }
        None => {
            for address in &sub.envelope {
                add("envelope", address, None, String::new());
            }
        }
    }
    recipients.sort_by(|a, b| (&a.kind, &a.address, &a.via).cmp(&(&b.kind, &b.address, &b.via)));
    recipients.dedup_by(|a, b| (&a.kind, &a.address, &a.via) == (&b.kind, &b.address, &b.via));

    let now = crate::now();
    let payload = Payload::seal_with(&original, compressor);
    let from = doc.from.first();
    let message = NewMessage {
        tenant_id: sub.tenant,
        sha256: hex::encode(payload.content_hash),
        size: original.len() as i64,
        message_id: doc.message_id.clone().or_else(|| report.as_ref().and_then(|r| r.message_id.clone())),
        date: doc.date.unwrap_or(now),
        from_addr: from.map(|m| m.address.to_lowercase()),
        from_name: from.and_then(|m| m.name.clone()),
        sender: sender.map(|s| s.to_lowercase()),
        on_behalf_of: on_behalf_of.map(|s| s.to_lowercase()),
        subject: doc.subject.clone(),
        has_attachment: doc.has_attachments(),
        flags: flags.0 as i64,
        source: sub.source.as_str().into(),
        archived_at: now,
        recipients,
        placements: sub
            .placement
            .iter()
            .map(|(mailbox, folder)| NewPlacement {
                mailbox: mailbox.trim().to_lowercase(),
                folder: folder.trim_matches('/').to_owned(),
                source: sub.source.as_str().into(),
            })
            .collect(),
    };
    Ok(Prepared { message, payload, source: sub.source, document: Arc::new(doc) })
}

struct Job {
    prepared: Prepared,
    reply: oneshot::Sender<Result<Receipt, ArchiveError>>,
}

/// Handle to the committer task. Cheap to clone; every source holds one.
#[derive(Clone)]
pub struct Pipeline {
    jobs: mpsc::Sender<Job>,
    store: Arc<Store>,
    max_message_bytes: u64,
    /// Memory for messages in flight across the process, in KiB: a source reserves a message's
    /// working set before it holds the message in memory, so many large messages at once wait
    /// their turn instead of exhausting memory.
    memory: Arc<tokio::sync::Semaphore>,
    memory_kib: u32,
}

/// A message's share of the in-flight memory, given back when dropped.
pub struct Reservation(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// The memory a message takes while it is prepared and committed, as a multiple of its size: the
/// raw bytes, the original cut out of a journal report, the parser's decoded parts, the
/// compressed and the sealed record.
const WORKING_SET: usize = 3;
/// How long a message waits for its share before the source is told to retry later.
const RESERVE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Most messages one group commit takes, and most bytes.
const BATCH_MESSAGES: usize = 1000;
const BATCH_BYTES: usize = 64 << 20;

impl Pipeline {
    /// Starts the committer on the current tokio runtime. `indexed` is notified after each commit.
    pub fn start(
        store: Arc<Store>,
        catalog: Catalog,
        indexed: Arc<Notify>,
        parsed: ParsedCache,
        max_message_bytes: u64,
        memory_bytes: u64,
    ) -> Pipeline {
        let (tx, rx) = mpsc::channel(4 * BATCH_MESSAGES);
        tokio::spawn(committer(rx, store.clone(), catalog, indexed, parsed));
        let memory_kib = (memory_bytes >> 10).clamp(1024, u32::MAX as u64 >> 4) as u32;
        let memory = Arc::new(tokio::sync::Semaphore::new(memory_kib as usize));
        Pipeline { jobs: tx, store, max_message_bytes, memory, memory_kib }
    }

    /// Reserves the in-flight memory a message of `bytes` needs (a message larger than the whole
    /// budget takes all of it, alone). Waits for others to finish; after a while, a
    /// [`ArchiveError::Saturated`] the source answers with "try again later".
    pub async fn reserve(&self, bytes: usize) -> Result<Reservation, ArchiveError> {
        let kib = (bytes.saturating_mul(WORKING_SET) >> 10).clamp(1, self.memory_kib as usize) as u32;
        match tokio::time::timeout(RESERVE_WAIT, self.memory.clone().acquire_many_owned(kib)).await {
            Ok(Ok(permit)) => Ok(Reservation(permit)),
            Ok(Err(_)) => Err(ArchiveError::ShuttingDown),
            Err(_) => Err(ArchiveError::Saturated(
                "the memory for messages in flight (ingest_memory_bytes) is taken by other large messages".into(),
            )),
        }
    }

    /// What compresses the tenant's messages (with its dictionary once there is one).
    pub fn compressor(&self, tenant: i64) -> Compressor {
        self.store.compressor(tenant as u64)
    }

    /// Prepares (on a blocking thread) and commits one submission; returns once it is durable.
    pub async fn submit(&self, sub: Submission) -> Result<Receipt, ArchiveError> {
        let reservation = self.reserve(sub.raw.len()).await?;
        self.submit_reserved(sub, reservation).await
    }

    /// [`Pipeline::submit`] for a source that reserved the memory before it read the message in.
    pub async fn submit_reserved(&self, sub: Submission, _reservation: Reservation) -> Result<Receipt, ArchiveError> {
        let limit = self.max_message_bytes;
        let compressor = self.compressor(sub.tenant);
        let prepared = tokio::task::spawn_blocking(move || prepare(sub, limit, &compressor))
            .await
            .map_err(|e| ArchiveError::Internal(e.to_string()))??;
        self.commit(prepared).await
    }

    /// Commits an already prepared submission; returns once it is durable.
    pub async fn commit(&self, prepared: Prepared) -> Result<Receipt, ArchiveError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { prepared, reply }).await.map_err(|_| ArchiveError::ShuttingDown)?;
        answer.await.map_err(|_| ArchiveError::ShuttingDown)?
    }

    /// True when the committer's queue is full: a source should shed load (SMTP 421).
    pub fn is_saturated(&self) -> bool {
        self.jobs.capacity() == 0
    }

    pub fn max_message_bytes(&self) -> u64 {
        self.max_message_bytes
    }
}

async fn committer(
    mut rx: mpsc::Receiver<Job>,
    store: Arc<Store>,
    catalog: Catalog,
    indexed: Arc<Notify>,
    parsed: ParsedCache,
) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.prepared.message.size as usize;
        let mut jobs = vec![first];
        while jobs.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.prepared.message.size as usize;
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let result = commit_batch(&store, &catalog, &jobs).await;
        match result {
            Ok(receipts) => {
                for (job, receipt) in jobs.iter().zip(&receipts) {
                    if !receipt.duplicate {
                        parsed.put(receipt.id, job.prepared.document.clone());
                    }
                }
                for (job, receipt) in jobs.into_iter().zip(receipts) {
                    let _ = job.reply.send(Ok(receipt));
                }
                indexed.notify_one();
            }
            Err(e) => {
                tracing::error!(error = %e, messages = jobs.len(), "group commit failed; senders are told to retry");
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone_transient()));
                }
            }
        }
    }
}

async fn commit_batch(store: &Arc<Store>, catalog: &Catalog, jobs: &[Job]) -> Result<Vec<Receipt>, ArchiveError> {
    // Which contents are new: not in the catalog, and the first of their kind in this batch.
    let mut by_tenant: HashMap<i64, Vec<String>> = HashMap::new();
    for job in jobs {
        let m = &job.prepared.message;
        by_tenant.entry(m.tenant_id).or_default().push(m.sha256.clone());
    }
    let mut known: HashMap<(i64, String), ()> = HashMap::new();
    for (tenant, hashes) in &by_tenant {
        for hash in catalog.existing(*tenant, hashes).await?.into_keys() {
            known.insert((*tenant, hash), ());
        }
    }
    let mut to_store: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        let m = &job.prepared.message;
        let key = (m.tenant_id, m.sha256.clone());
        if known.insert(key, ()).is_none() {
            to_store.entry(m.tenant_id).or_default().push(i);
        }
    }
    // One fsync per tenant's volume for the whole batch.
    let mut records: Vec<Option<RecordRef>> = vec![None; jobs.len()];
    for (tenant, indexes) in to_store {
        let payloads: Vec<Payload> = indexes.iter().map(|&i| jobs[i].prepared.payload.clone()).collect();
        let store = store.clone();
        let locations = tokio::task::spawn_blocking(move || store.append(tenant as u64, &payloads))
            .await
            .map_err(|e| ArchiveError::Internal(e.to_string()))??;
        for (i, loc) in indexes.into_iter().zip(locations) {
            records[i] = Some(RecordRef {
                volume: loc.volume,
                segment: loc.segment as i64,
                offset: loc.offset as i64,
                length: loc.length as i64,
            });
        }
    }
    let batch: Vec<(NewMessage, Option<RecordRef>)> =
        jobs.iter().zip(records).map(|(j, r)| (j.prepared.message.clone(), r)).collect();
    let outcomes = catalog.commit(&batch).await?;

    let receipts = jobs
        .iter()
        .zip(outcomes)
        .map(|(job, outcome)| {
            let m = &job.prepared.message;
            let duplicate = matches!(outcome, CommitOutcome::Duplicate { .. });
            Receipt { id: outcome.id(), sha256: m.sha256.clone(), duplicate, flags: Flags(m.flags as u32) }
        })
        .collect();
    Ok(receipts)
}
