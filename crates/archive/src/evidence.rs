//! Evidence records: the facts that make an archived message evidence — who it was delivered to,
//! where it was filed, when and how it arrived, which tenant owns it — sealed in the volumes
//! beside the originals, in the same append and fsync, chained like them. The catalog is derived
//! from them: the committer applies each batch's facts in the same transaction that moves the
//! volume's mark ([`EvidenceMark`]); a writing open replays what follows a mark (a crash between
//! the two); `catalog rebuild` replays everything; `verify` compares the catalog with them.
//!
//! The records are JSON, so that they can be read in ten years without this program.

use std::sync::Arc;

use coffer_catalog::{
    Arrival, Catalog, Deletion, EvidenceMark, Fact, LegalHold, NewMessage, NewPlacement, NewRecipient, RecordRef,
    RetentionRule, Tenant,
};
use coffer_store::{Location, Payload, RecordKind, Scanned, Store};
use serde::{Deserialize, Serialize};

use crate::ArchiveError;
use crate::service::blocking;

/// One evidence record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Evidence {
    /// A message arrived (new bytes, or bytes the tenant had: then `record` is None).
    Arrival(ArrivalEvidence),
    /// A folder sync reported the message gone from a folder (moved or deleted there).
    PlacementRemoved { message: i64, tenant: i64, mailbox: String, folder: String, at: i64 },
    /// A tenant's state: created, or changed (journal token, domains, sending networks).
    Tenant {
        id: i64,
        name: String,
        journal_token: String,
        domains: Vec<String>,
        networks: Vec<String>,
        created_at: i64,
        at: i64,
    },
    /// A retention rule's state: added, changed or removed.
    Rule(RetentionRule),
    /// A legal hold's state: placed, or released (by whom and why).
    Hold(LegalHold),
    /// A message deleted: its content and arrival records are shredded; this stays.
    Deleted(Tombstone),
}

/// What is left of a deleted message, and why it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub message: i64,
    pub tenant: i64,
    pub sha256: String,
    /// The message's date (its Date header, else its arrival).
    pub date: i64,
    pub sender_domain: String,
    /// `rule:<name>` or `approval:<request id>`.
    pub reason: String,
    pub decided_at: i64,
    /// Its original's record, and the records of its arrivals' evidence: shredded.
    pub record: RecordAt,
    pub arrivals: Vec<RecordAt>,
    pub at: i64,
}

impl Tombstone {
    pub(crate) fn deletion(&self) -> Deletion {
        Deletion {
            message: self.message,
            tenant_id: self.tenant,
            sha256: self.sha256.clone(),
            date: self.date,
            sender_domain: self.sender_domain.clone(),
            reason: self.reason.clone(),
            decided_at: self.decided_at,
            records: self
                .records()
                .map(|l| RecordRef {
                    volume: l.volume,
                    segment: l.segment as i64,
                    offset: l.offset as i64,
                    length: l.length as i64,
                })
                .collect(),
            state: "recorded".into(),
        }
    }

    /// Every record whose key goes.
    pub(crate) fn records(&self) -> impl Iterator<Item = Location> + '_ {
        std::iter::once(&self.record).chain(&self.arrivals).map(RecordAt::location)
    }
}

impl RecordAt {
    pub(crate) fn location(&self) -> Location {
        Location { volume: self.volume.clone(), segment: self.segment, offset: self.offset, length: self.length }
    }

    pub(crate) fn of(r: &RecordRef) -> RecordAt {
        RecordAt {
            volume: r.volume.clone(),
            segment: r.segment as u32,
            offset: r.offset as u64,
            length: r.length as u32,
        }
    }
}

/// Where a message's original lies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordAt {
    pub volume: String,
    pub segment: u32,
    pub offset: u64,
    pub length: u32,
}

/// What a source saw of the message's way in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// SMTP: the client's address, its HELO name, the TLS version, the RCPT TO addresses (the
    /// journal addresses, for journaling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rcpt_to: Vec<String>,
    /// The source's own id for the item: (connection, id) — a Graph message id, an IMAP
    /// `UIDVALIDITY:UID/folder`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArrivalEvidence {
    pub message: i64,
    pub tenant: i64,
    pub sha256: String,
    pub record: Option<RecordAt>,
    pub source: String,
    pub archived_at: i64,
    pub size: i64,
    pub message_id: Option<String>,
    pub date: i64,
    pub from_addr: Option<String>,
    pub from_name: Option<String>,
    /// MAIL FROM, or the journal report's sender.
    pub sender: Option<String>,
    pub on_behalf_of: Option<String>,
    pub subject: Option<String>,
    pub has_attachment: bool,
    pub flags: i64,
    /// Header recipients and every journal-report line (`envelope`, with `via`; `bcc`).
    pub recipients: Vec<NewRecipient>,
    pub placements: Vec<NewPlacement>,
    #[serde(default)]
    pub origin: Origin,
}

impl ArrivalEvidence {
    pub(crate) fn new(id: i64, m: &NewMessage, origin: &Origin) -> ArrivalEvidence {
        ArrivalEvidence {
            message: id,
            tenant: m.tenant_id,
            sha256: m.sha256.clone(),
            record: None,
            source: m.source.clone(),
            archived_at: m.archived_at,
            size: m.size,
            message_id: m.message_id.clone(),
            date: m.date,
            from_addr: m.from_addr.clone(),
            from_name: m.from_name.clone(),
            sender: m.sender.clone(),
            on_behalf_of: m.on_behalf_of.clone(),
            subject: m.subject.clone(),
            has_attachment: m.has_attachment,
            flags: m.flags,
            recipients: m.recipients.clone(),
            placements: m.placements.clone(),
            origin: origin.clone(),
        }
    }
}

impl Evidence {
    pub(crate) fn tenant(t: &Tenant, networks: &[String]) -> Evidence {
        Evidence::Tenant {
            id: t.id,
            name: t.name.clone(),
            journal_token: t.journal_token.clone(),
            domains: t.domains.clone(),
            networks: networks.to_vec(),
            created_at: t.created_at,
            at: crate::now(),
        }
    }

    /// The volume series (owner) this fact is written to: its tenant's.
    pub(crate) fn owner(&self) -> i64 {
        match self {
            Evidence::Arrival(a) => a.tenant,
            Evidence::PlacementRemoved { tenant, .. } => *tenant,
            Evidence::Tenant { id, .. } => *id,
            Evidence::Rule(r) => r.tenant_id,
            Evidence::Hold(h) => h.tenant_id,
            Evidence::Deleted(t) => t.tenant,
        }
    }

    pub(crate) fn payload(&self) -> Payload {
        Payload::evidence(&serde_json::to_vec(self).expect("evidence serialises"))
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<Evidence, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("evidence record unreadable: {e}"))
    }

    /// What the catalog makes of it; `at` is where this record lies.
    pub(crate) fn fact(&self, at: Option<&Location>) -> Fact {
        match self {
            Evidence::Arrival(a) => Fact::Arrival(Arrival {
                id: a.message,
                message: NewMessage {
                    tenant_id: a.tenant,
                    sha256: a.sha256.clone(),
                    size: a.size,
                    message_id: a.message_id.clone(),
                    date: a.date,
                    from_addr: a.from_addr.clone(),
                    from_name: a.from_name.clone(),
                    sender: a.sender.clone(),
                    on_behalf_of: a.on_behalf_of.clone(),
                    subject: a.subject.clone(),
                    has_attachment: a.has_attachment,
                    flags: a.flags,
                    source: a.source.clone(),
                    archived_at: a.archived_at,
                    recipients: a.recipients.clone(),
                    placements: a.placements.clone(),
                },
                record: a.record.as_ref().map(|r| RecordRef {
                    volume: r.volume.clone(),
                    segment: r.segment as i64,
                    offset: r.offset as i64,
                    length: r.length as i64,
                }),
                source_item: a.origin.item.clone(),
                evidence_at: at.map(|l| RecordRef {
                    volume: l.volume.clone(),
                    segment: l.segment as i64,
                    offset: l.offset as i64,
                    length: l.length as i64,
                }),
            }),
            Evidence::PlacementRemoved { message, mailbox, folder, .. } => {
                Fact::PlacementRemoved { message: *message, mailbox: mailbox.clone(), folder: folder.clone() }
            }
            Evidence::Tenant { id, name, journal_token, domains, networks, created_at, .. } => Fact::Tenant {
                tenant: Tenant {
                    id: *id,
                    name: name.clone(),
                    journal_token: journal_token.clone(),
                    domains: domains.clone(),
                    created_at: *created_at,
                },
                networks: networks.clone(),
            },
            Evidence::Rule(r) => Fact::Rule(r.clone()),
            Evidence::Hold(h) => Fact::Hold(h.clone()),
            Evidence::Deleted(t) => Fact::Deleted(t.deletion()),
        }
    }
}

/// What a replay found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub facts: usize,
    /// Message records with no evidence (volumes written before evidence records).
    pub bare: Vec<Bare>,
    /// Records that did not read (named by `verify`).
    pub problems: Vec<String>,
}

/// An original with no arrival evidence: its owner (tenant), where it lies, its content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bare {
    pub owner: i64,
    pub location: coffer_store::Location,
    pub content_hash: [u8; 32],
}

/// What one volume's records say, in record order.
pub(crate) struct VolumeFacts {
    /// Each evidence record with where it lies.
    pub(crate) evidence: Vec<(Location, Evidence)>,
    /// The message records (originals), not opened.
    pub(crate) messages: Vec<Scanned>,
    /// Where the records read end, as a mark; None when there were none.
    pub(crate) mark: Option<EvidenceMark>,
    pub(crate) problems: Vec<String>,
}

/// The records of one volume from sequence number `from` up to (not including) `until`.
pub(crate) fn read_volume(
    store: &Store,
    volume: &str,
    from: u64,
    until: Option<u64>,
) -> Result<VolumeFacts, ArchiveError> {
    let mut evidence = Vec::new();
    let mut messages = Vec::new();
    let mut last: Option<(u64, coffer_store::Location)> = None;
    let mut problems = Vec::new();
    let found = store.scan::<ArchiveError>(
        volume,
        from,
        until,
        |k| k == RecordKind::Evidence,
        |r| {
            last = Some((r.seq, r.location.clone()));
            match r.kind {
                RecordKind::Evidence => match Evidence::parse(r.body.as_deref().unwrap_or_default()) {
                    Ok(e) => evidence.push((r.location.clone(), e)),
                    Err(e) => problems.push(format!("volume {volume} record {}: {e}", r.seq)),
                },
                RecordKind::Message => messages.push(r),
                // Proof of time, not a fact about messages (verify checks them).
                RecordKind::Timestamp => {}
            }
            Ok(())
        },
    )?;
    problems.extend(found.iter().map(|p| p.to_string()));
    let mark = last.map(|(seq, at)| EvidenceMark {
        volume: volume.to_owned(),
        applied: seq + 1,
        segment: at.segment,
        end: at.offset + at.length as u64,
    });
    Ok(VolumeFacts { evidence, messages, mark, problems })
}

/// Applies every evidence record that follows the catalog's marks (all of them for a new
/// catalog), volume by volume, each volume's facts and its new mark in one transaction. Message
/// records with no arrival among the evidence are returned as `bare` (older volumes; a rebuild
/// catalogues them from their bytes).
pub(crate) async fn replay(store: &Arc<Store>, catalog: &Catalog) -> Result<Replayed, ArchiveError> {
    let marks = catalog.evidence_marks().await?;
    let mut out = Replayed::default();
    // Records a tombstone names (in this volume or a later one) are deleted, not bare.
    let mut deleted: std::collections::HashSet<(String, u32, u64)> = std::collections::HashSet::new();
    let volumes = {
        let store = store.clone();
        blocking(move || store.volumes()).await??
    };
    for v in volumes {
        let from = marks.get(&v.id).map(|m| m.applied).unwrap_or(0);
        if v.records <= from {
            continue;
        }
        let (store, id) = (store.clone(), v.id.clone());
        let read = blocking(move || read_volume(&store, &id, from, None)).await??;
        out.problems.extend(read.problems);
        let arrived: std::collections::HashSet<(u32, u64)> = read
            .evidence
            .iter()
            .filter_map(|(_, e)| match e {
                Evidence::Arrival(a) => a.record.as_ref().map(|r| (r.segment, r.offset)),
                _ => None,
            })
            .collect();
        for (_, e) in &read.evidence {
            if let Evidence::Deleted(t) = e {
                deleted.extend(t.records().map(|l| (l.volume, l.segment, l.offset)));
            }
        }
        out.bare.extend(
            read.messages
                .into_iter()
                .filter(|m| !arrived.contains(&(m.location.segment, m.location.offset)))
                .map(|m| Bare { owner: v.owner as i64, location: m.location, content_hash: m.content_hash }),
        );
        let facts: Vec<Fact> = read.evidence.iter().map(|(at, e)| e.fact(Some(at))).collect();
        out.facts += facts.len();
        // Large volumes go in steps; only the last carries the mark, so a crash in between
        // replays from the old one (applying a fact twice changes nothing).
        let steps: Vec<&[Fact]> = if facts.is_empty() { vec![&[]] } else { facts.chunks(2000).collect() };
        for (i, step) in steps.iter().enumerate() {
            let mark = if i + 1 == steps.len() { read.mark.as_slice() } else { &[] };
            catalog.apply(step, mark).await?;
        }
    }
    out.bare.retain(|b| !deleted.contains(&(b.location.volume.clone(), b.location.segment, b.location.offset)));
    if out.facts > 0 {
        tracing::info!(facts = out.facts, "evidence records past the catalog's marks applied");
    }
    Ok(out)
}

/// Tenants, retention rules and legal holds whose state has no evidence record yet get one
/// (new or changed, or from before evidence records), appended to their tenants' volumes and
/// applied with their marks. Returns how many were recorded.
pub(crate) async fn record_changes(store: &Arc<Store>, catalog: &Catalog) -> Result<usize, ArchiveError> {
    let mut pending: Vec<Evidence> =
        catalog.unrecorded_tenants().await?.iter().map(|(t, networks)| Evidence::tenant(t, networks)).collect();
    let (rules, holds) = catalog.unrecorded_governance().await?;
    pending.extend(rules.into_iter().map(Evidence::Rule));
    pending.extend(holds.into_iter().map(Evidence::Hold));
    let mut facts = Vec::new();
    let mut marks = Vec::new();
    for evidence in &pending {
        let (store, payload) = (store.clone(), evidence.payload());
        let owner = evidence.owner() as u64;
        let appended = blocking(move || store.append_with_evidence(owner, &[], |_| vec![payload])).await??;
        facts.push(evidence.fact(appended.evidence.first()));
        marks.push(mark_of(&appended));
    }
    if !facts.is_empty() {
        catalog.apply(&facts, &marks).await?;
    }
    Ok(pending.len())
}

/// Where a volume's durable records now end, as the catalog's mark for it.
pub(crate) fn mark_of(appended: &coffer_store::Appended) -> EvidenceMark {
    EvidenceMark {
        volume: appended.volume.clone(),
        applied: appended.next_seq,
        segment: appended.segment,
        end: appended.end,
    }
}

/// What the evidence says a message is.
#[derive(Default)]
struct Expected {
    row: Option<ArrivalEvidence>,
    recipients: std::collections::BTreeSet<(String, String, Option<String>, String)>,
    placements: std::collections::BTreeSet<(String, String, String)>,
}

/// The catalog compared with the evidence records up to its marks: every message row,
/// recipient and placement, and every recorded tenant. Each difference is named (message id,
/// what differs). Also returns how many catalogued messages have no evidence (volumes from before
/// evidence records).
pub(crate) async fn compare_with_catalog(
    store: &Arc<Store>,
    catalog: &Catalog,
) -> Result<(Vec<String>, usize), ArchiveError> {
    use std::collections::{BTreeMap, HashSet};
    let marks = catalog.evidence_marks().await?;
    let mut expected: BTreeMap<i64, Expected> = BTreeMap::new();
    let mut tenants: BTreeMap<i64, Evidence> = BTreeMap::new();
    let mut evidenced: HashSet<(String, u32, u64)> = HashSet::new();
    let mut problems = Vec::new();
    let volumes = {
        let store = store.clone();
        blocking(move || store.volume_ids()).await??
    };
    for volume in volumes {
        let Some(mark) = marks.get(&volume) else { continue };
        let (store, v, until) = (store.clone(), volume.clone(), mark.applied);
        let read = blocking(move || read_volume(&store, &v, 0, Some(until))).await??;
        problems.extend(read.problems);
        for (_, e) in read.evidence {
            match e {
                Evidence::Arrival(a) => {
                    let x = expected.entry(a.message).or_default();
                    for r in &a.recipients {
                        x.recipients.insert((r.kind.clone(), r.address.clone(), r.name.clone(), r.via.clone()));
                    }
                    for p in &a.placements {
                        x.placements.insert((p.mailbox.clone(), p.folder.clone(), p.source.clone()));
                    }
                    if let Some(r) = &a.record {
                        evidenced.insert((r.volume.clone(), r.segment, r.offset));
                        if x.row.is_none() {
                            x.row = Some(a);
                        }
                    }
                }
                Evidence::PlacementRemoved { message, mailbox, folder, .. } => {
                    if let Some(x) = expected.get_mut(&message) {
                        x.placements.retain(|(m, f, _)| !(m == &mailbox && f == &folder));
                    }
                }
                t @ Evidence::Tenant { .. } => {
                    tenants.insert(t.owner(), t);
                }
                Evidence::Deleted(t) => {
                    expected.remove(&t.message);
                    evidenced.insert((t.record.volume.clone(), t.record.segment, t.record.offset));
                }
                Evidence::Rule(_) | Evidence::Hold(_) => {}
            }
        }
    }

    let mut without_evidence = 0;
    let mut after = 0;
    loop {
        let page = catalog.messages_in_full(after, 500).await?;
        let Some(last) = page.last() else { break };
        after = last.row.id;
        for m in page {
            let r = &m.row.record;
            let at = (r.volume.clone(), r.segment as u32, r.offset as u64);
            // Committed after the marks were read (verify beside a serving process).
            let newer = marks.get(&r.volume).is_none_or(|k| (at.1, at.2) >= (k.segment, k.end));
            let Some(x) = expected.remove(&m.row.id) else {
                if newer {
                    continue;
                }
                if evidenced.contains(&at) {
                    problems.push(format!(
                        "message {}: in the catalog, but the evidence records its original as another message (a row added?)",
                        m.row.id
                    ));
                } else {
                    without_evidence += 1;
                }
                continue;
            };
            let id = m.row.id;
            match &x.row {
                None => problems.push(format!("message {id}: its evidence names no stored original")),
                Some(a) => {
                    for (field, catalog_says, evidence_says) in row_differences(&m.row, a) {
                        problems.push(format!(
                            "message {id}: {field} is {catalog_says} in the catalog but {evidence_says} in the evidence"
                        ));
                    }
                }
            }
            let recipients: std::collections::BTreeSet<_> = m
                .recipients
                .iter()
                .map(|r| (r.kind.clone(), r.address.clone(), r.name.clone(), r.via.clone()))
                .collect();
            for (kind, address, _, via) in recipients.difference(&x.recipients) {
                problems.push(format!(
                    "message {id}: recipient {kind} {address}{} is in the catalog but not in the evidence (added or changed)",
                    via_text(via)
                ));
            }
            for (kind, address, _, via) in x.recipients.difference(&recipients) {
                problems.push(format!(
                    "message {id}: recipient {kind} {address}{} is in the evidence but missing from the catalog (removed or changed)",
                    via_text(via)
                ));
            }
            let placements: std::collections::BTreeSet<_> =
                m.placements.iter().map(|p| (p.mailbox.clone(), p.folder.clone(), p.source.clone())).collect();
            for (mailbox, folder, _) in placements.difference(&x.placements) {
                problems.push(format!(
                    "message {id}: placement {mailbox}:{folder} is in the catalog but not in the evidence (added or changed)"
                ));
            }
            for (mailbox, folder, _) in x.placements.difference(&placements) {
                problems.push(format!(
                    "message {id}: placement {mailbox}:{folder} is in the evidence but missing from the catalog (removed)"
                ));
            }
        }
    }
    for (id, x) in expected {
        if let Some(a) = x.row {
            problems.push(format!(
                "message {id} (sha256 {}): in the evidence but missing from the catalog (removed?)",
                a.sha256
            ));
        }
    }

    let unrecorded: HashSet<i64> = catalog.unrecorded_tenants().await?.iter().map(|(t, _)| t.id).collect();
    let mut networks = catalog.tenant_networks().await?;
    for t in catalog.tenants().await? {
        if unrecorded.contains(&t.id) {
            continue;
        }
        let n = networks.remove(&t.id).unwrap_or_default();
        match tenants.get(&t.id) {
            Some(Evidence::Tenant { name, journal_token, domains, networks: recorded, .. }) => {
                if (name, journal_token, domains, recorded) != (&t.name, &t.journal_token, &t.domains, &n) {
                    problems.push(format!(
                        "tenant {} ({}): its name, journal address, domains or networks differ from the evidence",
                        t.id, t.name
                    ));
                }
            }
            _ => {
                problems.push(format!("tenant {} ({}): marked recorded, but no evidence record holds it", t.id, t.name))
            }
        }
    }
    Ok((problems, without_evidence))
}

fn via_text(via: &str) -> String {
    if via.is_empty() { String::new() } else { format!(" (via {via})") }
}

/// The fields of a message row that differ from its arrival's evidence: (field, catalog, evidence).
fn row_differences(row: &coffer_catalog::MessageRow, a: &ArrivalEvidence) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let mut check = |field: &'static str, catalog: String, evidence: String| {
        if catalog != evidence {
            out.push((field, catalog, evidence));
        }
    };
    let opt = |v: &Option<String>| format!("{v:?}");
    check("the tenant", row.tenant_id.to_string(), a.tenant.to_string());
    check("the sha256", row.sha256.clone(), a.sha256.clone());
    if let Some(r) = &a.record {
        let c = &row.record;
        check(
            "the record",
            format!("{} {} {} {}", c.volume, c.segment, c.offset, c.length),
            format!("{} {} {} {}", r.volume, r.segment, r.offset, r.length),
        );
    }
    check("the size", row.size.to_string(), a.size.to_string());
    check("the Message-ID", opt(&row.message_id), opt(&a.message_id));
    check("the date", row.date.to_string(), a.date.to_string());
    check("the sender address", opt(&row.from_addr), opt(&a.from_addr));
    check("the sender name", opt(&row.from_name), opt(&a.from_name));
    check("the envelope sender", opt(&row.sender), opt(&a.sender));
    check("on behalf of", opt(&row.on_behalf_of), opt(&a.on_behalf_of));
    check("the subject", opt(&row.subject), opt(&a.subject));
    check("has-attachment", row.has_attachment.to_string(), a.has_attachment.to_string());
    check("the flags", row.flags.to_string(), a.flags.to_string());
    check("the source", row.source.clone(), a.source.clone());
    check("the arrival time", row.archived_at.to_string(), a.archived_at.to_string());
    out
}
