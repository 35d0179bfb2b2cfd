//! The ingest pipeline: the one path by which mail enters the archive.
//!
//! A source hands in a [`Submission`] (raw bytes, tenant, what the source knows). [`prepare`] does
//! the CPU work anywhere (parse, unwrap a journal report, hash, compress); the [`Pipeline`]'s single
//! committer then takes whatever is waiting, stores the new records with one fsync, records the
//! batch in one catalog transaction and only then answers each submitter: the acknowledgement a
//! source passes on (SMTP 250, an IMAP delete, a Graph delta link) means durable.

use std::collections::HashMap;
use std::sync::Arc;

use coffer_catalog::{Catalog, CommitOutcome, NewMessage, NewPlacement, NewRecipient};
use coffer_mail::{Flags, journal};
use coffer_store::{Compressor, Payload, Store};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::ArchiveError;
pub use crate::evidence::Origin;
use crate::evidence::{ArrivalEvidence, Evidence, RecordAt};
use crate::parsed::ParsedCache;
use crate::service::blocking;

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
    /// What the source saw of the message's way in (SMTP peer and TLS, the source's item id):
    /// kept in the arrival's evidence.
    pub origin: Origin,
}

/// A submission after the CPU work, ready for the committer.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub message: NewMessage,
    pub payload: Payload,
    pub source: Source,
    pub origin: Origin,
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
    // Rebuilt from an Outlook file: the file import names such items `pst:<hash>` / `msg:<hash>`.
    match sub.origin.item.as_ref().map(|(container, _)| container.split(':').next().unwrap_or("")) {
        Some("pst") => flags.insert(Flags::FROM_PST),
        Some("msg") => flags.insert(Flags::FROM_MSG),
        _ => {}
    }

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
        placements: Vec::new(),
    };
    let mut prepared = Prepared { message, payload, source: sub.source, origin: sub.origin, document: Arc::new(doc) };
    if let Some((mailbox, folder)) = &sub.placement {
        prepared.also_place(mailbox, folder);
    }
    Ok(prepared)
}

impl Prepared {
    /// One more place the message sits in (a Gmail label besides its first, say).
    pub fn also_place(&mut self, mailbox: &str, folder: &str) {
        self.message.placements.push(NewPlacement {
            mailbox: mailbox.trim().to_lowercase(),
            folder: folder.trim_matches('/').to_owned(),
            source: self.source.as_str().into(),
        });
    }
}

enum Job {
    Arrival {
        prepared: Prepared,
        reply: oneshot::Sender<Result<Receipt, ArchiveError>>,
    },
    /// A later fact about an archived message (a placement removed), answered with whether it
    /// changed anything.
    Event {
        evidence: Evidence,
        reply: oneshot::Sender<Result<bool, ArchiveError>>,
    },
    /// Record the tenants whose state has no evidence yet.
    RecordChanges {
        reply: oneshot::Sender<Result<usize, ArchiveError>>,
    },
}

impl Job {
    fn size(&self) -> usize {
        match self {
            Job::Arrival { prepared, .. } => prepared.message.size as usize,
            _ => 0,
        }
    }

    fn fail(self, e: &ArchiveError) {
        match self {
            Job::Arrival { reply, .. } => drop(reply.send(Err(e.clone_transient()))),
            Job::Event { reply, .. } => drop(reply.send(Err(e.clone_transient()))),
            Job::RecordChanges { reply } => drop(reply.send(Err(e.clone_transient()))),
        }
    }
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

    /// What compresses messages (the store's built-in mail dictionary).
    pub fn compressor(&self) -> Compressor {
        self.store.compressor()
    }

    /// Prepares (on a blocking thread) and commits one submission; returns once it is durable.
    pub async fn submit(&self, sub: Submission) -> Result<Receipt, ArchiveError> {
        let reservation = self.reserve(sub.raw.len()).await?;
        self.submit_reserved(sub, reservation).await
    }

    /// [`Pipeline::submit`] for a source that reserved the memory before it read the message in.
    pub async fn submit_reserved(&self, sub: Submission, _reservation: Reservation) -> Result<Receipt, ArchiveError> {
        let limit = self.max_message_bytes;
        let compressor = self.compressor();
        let prepared = tokio::task::spawn_blocking(move || prepare(sub, limit, &compressor))
            .await
            .map_err(|e| ArchiveError::Internal(e.to_string()))??;
        self.commit(prepared).await
    }

    /// Commits an already prepared submission; returns once it is durable.
    pub async fn commit(&self, prepared: Prepared) -> Result<Receipt, ArchiveError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Arrival { prepared, reply }).await.map_err(|_| ArchiveError::ShuttingDown)?;
        answer.await.map_err(|_| ArchiveError::ShuttingDown)?
    }

    /// Takes a message out of one folder (a folder sync saw it moved or deleted there), recorded
    /// as evidence first; the message stays archived. False when it was not in that folder.
    pub async fn remove_placement(
        &self,
        tenant: i64,
        message: i64,
        mailbox: &str,
        folder: &str,
    ) -> Result<bool, ArchiveError> {
        let evidence = Evidence::PlacementRemoved {
            message,
            tenant,
            mailbox: mailbox.to_owned(),
            folder: folder.to_owned(),
            at: crate::now(),
        };
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Event { evidence, reply }).await.map_err(|_| ArchiveError::ShuttingDown)?;
        answer.await.map_err(|_| ArchiveError::ShuttingDown)?
    }

    /// Records deletions (tombstones) in the volumes and applies them to the catalog; returns
    /// once that is durable. Their keys are shredded afterwards by the caller.
    pub async fn record_deletions(&self, tombstones: Vec<crate::evidence::Tombstone>) -> Result<(), ArchiveError> {
        let mut answers = Vec::with_capacity(tombstones.len());
        for t in tombstones {
            let (reply, answer) = oneshot::channel();
            self.jobs
                .send(Job::Event { evidence: Evidence::Deleted(t), reply })
                .await
                .map_err(|_| ArchiveError::ShuttingDown)?;
            answers.push(answer);
        }
        for answer in answers {
            answer.await.map_err(|_| ArchiveError::ShuttingDown)??;
        }
        Ok(())
    }

    /// Records every tenant, retention rule and legal hold whose state has no evidence yet;
    /// returns once that is durable.
    pub async fn record_changes(&self) -> Result<usize, ArchiveError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::RecordChanges { reply }).await.map_err(|_| ArchiveError::ShuttingDown)?;
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

/// How often the committer looks for tenants changed by another process (a CLI command), busy
/// or idle.
const TENANT_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

async fn committer(
    mut rx: mpsc::Receiver<Job>,
    store: Arc<Store>,
    catalog: Catalog,
    indexed: Arc<Notify>,
    parsed: ParsedCache,
) {
    // The writing open replayed the evidence already; the first batch only reads the next id.
    let mut state = Committer { store, catalog, next_id: None, needs_replay: false };
    let mut checked = std::time::Instant::now();
    loop {
        let wait = TENANT_CHECK.saturating_sub(checked.elapsed());
        let first = match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(job)) => Some(job),
            Ok(None) => break,
            Err(_) => None,
        };
        if checked.elapsed() >= TENANT_CHECK {
            if let Err(e) = state.record_changes().await {
                tracing::error!(error = %e, "recording tenant changes as evidence failed; retrying shortly");
            }
            checked = std::time::Instant::now();
        }
        let Some(first) = first else { continue };
        if let Job::RecordChanges { reply } = first {
            let _ = reply.send(state.record_changes().await);
            continue;
        }
        let mut bytes = first.size();
        let mut jobs = vec![first];
        while jobs.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(Job::RecordChanges { reply }) => {
                    let _ = reply.send(state.record_changes().await);
                }
                Ok(job) => {
                    bytes += job.size();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        match state.commit_batch(&mut jobs).await {
            Ok(answers) => {
                for (job, answer) in jobs.into_iter().zip(answers) {
                    match (job, answer) {
                        (Job::Arrival { prepared, reply }, Answer::Receipt(receipt)) => {
                            if !receipt.duplicate {
                                parsed.put(receipt.id, prepared.document.clone());
                            }
                            let _ = reply.send(Ok(receipt));
                        }
                        (Job::Event { reply, .. }, Answer::Changed(changed)) => {
                            let _ = reply.send(Ok(changed));
                        }
                        _ => unreachable!("one answer per job, in order"),
                    }
                }
                indexed.notify_one();
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = jobs.len(), "group commit failed; senders are told to retry");
                for job in jobs {
                    job.fail(&e);
                }
            }
        }
    }
}

enum Answer {
    Receipt(Receipt),
    Changed(bool),
}

struct Committer {
    store: Arc<Store>,
    catalog: Catalog,
    /// The next message id to give: numbered here, before the evidence naming it is written.
    next_id: Option<i64>,
    /// A batch's evidence may be durable while its catalog commit failed: before the next batch,
    /// the catalog catches up with the volumes (the marks only ever move over applied evidence).
    needs_replay: bool,
}

impl Committer {
    async fn catch_up(&mut self) -> Result<(), ArchiveError> {
        if self.needs_replay {
            crate::evidence::replay(&self.store, &self.catalog).await?;
            self.needs_replay = false;
        } else if self.next_id.is_some() {
            return Ok(());
        }
        // Never below an id given before, even to a batch that failed.
        let max = self.catalog.max_message_id().await?;
        self.next_id = Some(self.next_id.unwrap_or(0).max(max + 1));
        Ok(())
    }

    async fn record_changes(&mut self) -> Result<usize, ArchiveError> {
        self.catch_up().await?;
        crate::evidence::record_changes(&self.store, &self.catalog).await.inspect_err(|_| self.needs_replay = true)
    }

    async fn commit_batch(&mut self, jobs: &mut [Job]) -> Result<Vec<Answer>, ArchiveError> {
        self.catch_up().await?;
        let result = self.write_and_apply(jobs).await;
        if result.is_err() {
            self.needs_replay = true;
        }
        result
    }

    async fn write_and_apply(&mut self, jobs: &mut [Job]) -> Result<Vec<Answer>, ArchiveError> {
        let catalog = &self.catalog;
        // Which contents are new: not in the catalog, and the first of their kind in this batch.
        let mut by_tenant: HashMap<i64, Vec<String>> = HashMap::new();
        for job in jobs.iter() {
            if let Job::Arrival { prepared, .. } = job {
                let m = &prepared.message;
                by_tenant.entry(m.tenant_id).or_default().push(m.sha256.clone());
            }
        }
        // A message deleted in this batch is no duplicate to merge into: the same bytes
        // arriving now are a new message (its deletion goes first, below).
        let deleting: std::collections::HashSet<i64> = jobs
            .iter()
            .filter_map(|j| match j {
                Job::Event { evidence: Evidence::Deleted(t), .. } => Some(t.message),
                _ => None,
            })
            .collect();
        let mut known: HashMap<(i64, String), i64> = HashMap::new();
        for (tenant, hashes) in &by_tenant {
            for (hash, id) in catalog.existing(*tenant, hashes).await? {
                if !deleting.contains(&id) {
                    known.insert((*tenant, hash), id);
                }
            }
        }
        // Each job's evidence, grouped by the tenant whose volume takes it; a new message's
        // content goes first in the same append.
        struct Group {
            contents: Vec<usize>,
            evidence: Vec<(usize, Evidence)>,
        }
        let mut groups: HashMap<i64, Group> = HashMap::new();
        let mut next_id = self.next_id.expect("caught up");
        let mut answers: Vec<Option<Answer>> = (0..jobs.len()).map(|_| None).collect();
        // Deletions first, so that an arrival of the same bytes in this batch is stored anew.
        let deletions_first: Vec<usize> = (0..jobs.len())
            .filter(|&i| matches!(&jobs[i], Job::Event { evidence: Evidence::Deleted(_), .. }))
            .chain((0..jobs.len()).filter(|&i| !matches!(&jobs[i], Job::Event { evidence: Evidence::Deleted(_), .. })))
            .collect();
        for i in deletions_first {
            let job = &jobs[i];
            match job {
                Job::Arrival { prepared, .. } => {
                    let m = &prepared.message;
                    let group = groups
                        .entry(m.tenant_id)
                        .or_insert_with(|| Group { contents: Vec::new(), evidence: Vec::new() });
                    let id = match known.get(&(m.tenant_id, m.sha256.clone())) {
                        Some(&id) => id,
                        None => {
                            let id = next_id;
                            next_id += 1;
                            known.insert((m.tenant_id, m.sha256.clone()), id);
                            group.contents.push(i);
                            id
                        }
                    };
                    group.evidence.push((i, Evidence::Arrival(ArrivalEvidence::new(id, m, &prepared.origin))));
                }
                Job::Event { evidence, .. } => {
                    let changed = match evidence {
                        Evidence::PlacementRemoved { message, mailbox, folder, .. } => {
                            catalog.has_placement(*message, mailbox, folder).await?
                        }
                        _ => true,
                    };
                    if changed {
                        let group = groups
                            .entry(evidence.owner())
                            .or_insert_with(|| Group { contents: Vec::new(), evidence: Vec::new() });
                        group.evidence.push((i, evidence.clone()));
                    }
                    answers[i] = Some(Answer::Changed(changed));
                }
                Job::RecordChanges { .. } => unreachable!("answered apart"),
            }
        }
        // Ids are never given twice, even when this batch fails.
        self.next_id = Some(next_id);

        // One fsync per tenant's volume for the whole batch: originals and their evidence.
        let mut facts = Vec::new();
        let mut marks = Vec::new();
        let mut order = Vec::new();
        for (tenant, group) in groups {
            let store = self.store.clone();
            // The sealed bytes move to the writer: no copy of a large message.
            let payloads: Vec<Payload> =
                group.contents.iter().map(|&i| std::mem::take(&mut arrival_mut(&mut jobs[i]).payload)).collect();
            let content_of: Vec<usize> = group.contents.clone();
            let (evidence, appended) = blocking(move || {
                let refs: Vec<&Payload> = payloads.iter().collect();
                let mut evidence = group.evidence;
                let appended = store.append_with_evidence(tenant as u64, &refs, |at| {
                    let where_: HashMap<usize, &coffer_store::Location> = content_of.iter().copied().zip(at).collect();
                    for (i, e) in &mut evidence {
                        if let (Evidence::Arrival(a), Some(loc)) = (e, where_.get(i)) {
                            a.record = Some(RecordAt {
                                volume: loc.volume.clone(),
                                segment: loc.segment,
                                offset: loc.offset,
                                length: loc.length,
                            });
                        }
                    }
                    evidence.iter().map(|(_, e)| e.payload()).collect()
                });
                appended.map(|a| (evidence, a))
            })
            .await??;
            crate::crash_point("ingest-after-append");
            marks.push(crate::evidence::mark_of(&appended));
            for ((i, e), at) in evidence.into_iter().zip(&appended.evidence) {
                facts.push(e.fact(Some(at)));
                order.push(i);
            }
        }
        let outcomes = catalog.apply(&facts, &marks).await?;
        let mut outcomes = outcomes.into_iter();
        for (fact, i) in facts.iter().zip(order) {
            if let coffer_catalog::Fact::Arrival(_) = fact {
                let outcome = outcomes.next().expect("one outcome per arrival");
                let m = &arrival(&jobs[i]).message;
                answers[i] = Some(Answer::Receipt(Receipt {
                    id: outcome.id(),
                    sha256: m.sha256.clone(),
                    duplicate: matches!(outcome, CommitOutcome::Duplicate { .. }),
                    flags: Flags(m.flags as u32),
                }));
            }
        }
        Ok(answers.into_iter().map(|a| a.expect("every job answered")).collect())
    }
}

fn arrival_mut(job: &mut Job) -> &mut Prepared {
    match job {
        Job::Arrival { prepared, .. } => prepared,
        _ => unreachable!("contents come from arrivals"),
    }
}

fn arrival(job: &Job) -> &Prepared {
    match job {
        Job::Arrival { prepared, .. } => prepared,
        _ => unreachable!("contents come from arrivals"),
    }
}
