//! The writer: batches of payloads sealed into records of an owner's open volume, made durable
//! with one fsync; new segments and volumes as they fill; closing a volume.

use crate::backend::SegmentAppender;
use crate::crypto::{DataKey, KEY_ENTRY_LEN, random_nonce};
use crate::format::{self, RECORD_HEADER_LEN, RecordHeader, RecordKind, SEGMENT_HEADER_LEN, SegmentHeader};
use crate::volume::{Store, VolumeMeta, VolumeState, now};
use crate::{Location, Payload, Result, StoreError, Timestamp};

/// The open end of one owner's volume.
pub(crate) struct Writer {
    pub(crate) meta: VolumeMeta,
    pub(crate) key: DataKey,
    pub(crate) segment: u32,
    pub(crate) file: Box<dyn SegmentAppender>,
    pub(crate) offset: u64,
    pub(crate) next_seq: u64,
    pub(crate) chain: [u8; 32],
    pub(crate) volume_bytes: u64,
    /// The kind of the volume's last record (None while it has none).
    pub(crate) last_kind: Option<RecordKind>,
}

impl Writer {
    /// A volume with no record yet: its first segment, chaining from zero.
    pub(crate) fn empty(store: &Store, meta: VolumeMeta, key: DataKey) -> Result<Writer> {
        let header = SegmentHeader { segment: 1, first_seq: 0, chain_in: [0; 32] };
        let file = store.backend.create_segment(&meta.id, 1, &header.encode())?;
        Ok(Writer {
            meta,
            key,
            segment: 1,
            file,
            offset: SEGMENT_HEADER_LEN as u64,
            next_seq: 0,
            chain: [0; 32],
            volume_bytes: SEGMENT_HEADER_LEN as u64,
            last_kind: None,
        })
    }
}

/// What one append wrote: where each record went, and where the volume's records now end.
#[derive(Debug, Clone)]
pub struct Appended {
    pub volume: String,
    pub contents: Vec<Location>,
    pub evidence: Vec<Location>,
    /// The sequence number the volume's next record will have.
    pub next_seq: u64,
    /// Where the volume's durable records now end: segment and offset.
    pub segment: u32,
    pub end: u64,
}

/// Where an open volume's chain stands: what a timestamp is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub volume: String,
    pub segment: u32,
    /// The volume's next record number; the head is the chain after record `next_seq - 1`.
    pub next_seq: u64,
    pub chain: [u8; 32],
    /// The last record is a timestamp: nothing was written since the last token.
    pub last_is_timestamp: bool,
}

impl Store {
    /// The chain heads of the open volumes that hold at least one record.
    pub fn chain_heads(&self) -> Vec<ChainHead> {
        let writers = self.writers.lock().unwrap();
        let mut heads: Vec<ChainHead> = writers
            .values()
            .filter(|w| w.next_seq > 0)
            .map(|w| ChainHead {
                volume: w.meta.id.clone(),
                segment: w.segment,
                next_seq: w.next_seq,
                chain: w.chain,
                last_is_timestamp: w.last_kind == Some(RecordKind::Timestamp),
            })
            .collect();
        heads.sort_by(|a, b| a.volume.cmp(&b.volume));
        heads
    }

    /// Appends a timestamp record to `volume`, which must still be open (a token that comes back
    /// after its volume was closed has nowhere to go: [`StoreError::Closed`]).
    pub fn append_timestamp(&self, volume: &str, timestamp: &Timestamp) -> Result<Location> {
        if self.writer_lock.is_none() {
            return Err(StoreError::ReadOnly);
        }
        let mut writers = self.writers.lock().unwrap();
        let w =
            writers.values_mut().find(|w| w.meta.id == volume).ok_or_else(|| StoreError::Closed(volume.to_owned()))?;
        if timestamp.covers >= w.next_seq {
            return Err(StoreError::Corrupt {
                volume: volume.to_owned(),
                segment: w.segment,
                offset: w.offset,
                detail: format!("a timestamp for record {} which the volume does not hold yet", timestamp.covers),
            });
        }
        let payload = Payload::timestamp(timestamp);
        let mut buf = Vec::with_capacity(payload.compressed.len() + 140);
        let mut keys = Vec::new();
        let (mut seq, mut chain) = (w.next_seq, w.chain);
        let mut at = seal_into(&mut buf, &mut keys, w, w.offset, &mut seq, &mut chain, &[&payload]);
        self.write_batch(w, &buf, &keys, seq, chain, RecordKind::Timestamp)?;
        Ok(at.remove(0))
    }

    /// Seals the payloads into records of `owner`'s open volume and makes them durable with one
    /// fsync. On any error nothing of the batch remains and the caller may retry.
    pub fn append(&self, owner: u64, payloads: &[Payload]) -> Result<Vec<Location>> {
        let payloads: Vec<&Payload> = payloads.iter().collect();
        Ok(self.append_with_evidence(owner, &payloads, |_| Vec::new())?.contents)
    }

    /// Appends `contents`, then the evidence `evidence` makes once it knows where each content
    /// record lies, all under one fsync: a message and the facts of its arrival are durable
    /// together or not at all.
    pub fn append_with_evidence(
        &self,
        owner: u64,
        contents: &[&Payload],
        evidence: impl FnOnce(&[Location]) -> Vec<Payload>,
    ) -> Result<Appended> {
        if self.writer_lock.is_none() {
            return Err(StoreError::ReadOnly);
        }
        let mut writers = self.writers.lock().unwrap();
        let w = match writers.entry(owner) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(self.create_volume(owner, 1)?),
        };
        if w.volume_bytes >= self.cfg.volume_max_bytes || w.next_seq >= self.cfg.volume_max_records {
            let next = w.meta.number + 1;
            self.close_writer(w)?;
            *w = self.create_volume(owner, next)?;
        } else if w.offset >= self.cfg.segment_max_bytes {
            self.next_segment(w)?;
        }

        let start = w.offset;
        let mut buf = Vec::with_capacity(contents.iter().map(|p| p.compressed.len() + 140).sum());
        let mut keys = Vec::with_capacity(contents.len() * 2 * KEY_ENTRY_LEN);
        let (mut seq, mut chain) = (w.next_seq, w.chain);
        let content_locations = seal_into(&mut buf, &mut keys, w, start, &mut seq, &mut chain, contents);
        let evidence = evidence(&content_locations);
        let evidence: Vec<&Payload> = evidence.iter().collect();
        let evidence_locations = seal_into(&mut buf, &mut keys, w, start, &mut seq, &mut chain, &evidence);
        if let Some(last) = evidence.last().or(contents.last()) {
            self.write_batch(w, &buf, &keys, seq, chain, last.kind)?;
        }
        Ok(Appended {
            volume: w.meta.id.clone(),
            contents: content_locations,
            evidence: evidence_locations,
            next_seq: seq,
            segment: w.segment,
            end: w.offset,
        })
    }

    /// Makes a sealed batch durable and moves the writer past it. The batch's keys go to the
    /// keyring, durably, before its records go to the segment: a record is never without its
    /// key. Entries of a batch that then fails are overwritten by the next one, or cut when the
    /// volume is resumed; on a failure the backend leaves the segment as it was.
    fn write_batch(
        &self,
        w: &mut Writer,
        records: &[u8],
        keys: &[u8],
        next_seq: u64,
        chain: [u8; 32],
        last_kind: RecordKind,
    ) -> Result<()> {
        self.backend.write_keyring(&w.meta.id, w.next_seq * KEY_ENTRY_LEN as u64, keys)?;
        w.file.append(records)?;
        w.offset += records.len() as u64;
        w.volume_bytes += records.len() as u64;
        w.next_seq = next_seq;
        w.chain = chain;
        w.last_kind = Some(last_kind);
        Ok(())
    }

    pub(crate) fn create_volume(&self, owner: u64, mut number: u32) -> Result<Writer> {
        // Never reuse a number, even one whose volume was closed long ago.
        let highest = self.metas()?.iter().filter(|m| m.owner == owner).map(|m| m.number).max().unwrap_or(0);
        number = number.max(highest + 1);
        // The id is claimed, not assumed: a writer sharing the storage that took this number
        // first makes us take the next one.
        let id = loop {
            let id = format!("t{owner}-v{number:06}");
            if self.backend.claim_volume(&id)? {
                break id;
            }
            number += 1;
        };
        let (key, wrapped) = self.master.new_data_key(&id);
        let meta = VolumeMeta {
            id: id.clone(),
            owner,
            number,
            state: VolumeState::Open,
            created_at: now(),
            closed_at: None,
            wrapped_key: hex::encode(wrapped),
            chain_head: None,
            records: None,
        };
        self.write_meta(&meta)?;
        self.keys.write().unwrap().insert(id.clone(), key.clone());
        Writer::empty(self, meta, key)
    }

    pub(crate) fn next_segment(&self, w: &mut Writer) -> Result<()> {
        let header = SegmentHeader { segment: w.segment + 1, first_seq: w.next_seq, chain_in: w.chain };
        w.file = self.backend.create_segment(&w.meta.id, header.segment, &header.encode())?;
        w.segment += 1;
        w.offset = SEGMENT_HEADER_LEN as u64;
        w.volume_bytes += SEGMENT_HEADER_LEN as u64;
        Ok(())
    }

    pub(crate) fn close_writer(&self, w: &mut Writer) -> Result<()> {
        w.meta.state = VolumeState::Closed;
        w.meta.closed_at = Some(now());
        w.meta.chain_head = Some(hex::encode(w.chain));
        w.meta.records = Some(w.next_seq);
        self.write_meta(&w.meta)
    }
}

/// Seals `payloads` as records into `buf` (which will be written at `start` of the writer's
/// segment), each under a key of its own whose keyring entry goes to `keys`, advancing the
/// sequence number and the chain.
#[allow(clippy::too_many_arguments)]
fn seal_into(
    buf: &mut Vec<u8>,
    keys: &mut Vec<u8>,
    w: &Writer,
    start: u64,
    seq: &mut u64,
    chain: &mut [u8; 32],
    payloads: &[&Payload],
) -> Vec<Location> {
    let mut locations = Vec::with_capacity(payloads.len());
    for p in payloads {
        let nonce = random_nonce();
        let (key, entry) = w.key.new_record_key(&w.meta.id, *seq);
        keys.extend_from_slice(&entry);
        let mut header = RecordHeader {
            kind: p.kind,
            own_key: true,
            seq: *seq,
            original_len: p.original_len,
            payload_len: (p.compressed.len() + 16) as u32,
            dictionary: p.dictionary,
            content_hash: p.content_hash,
            nonce,
            chain: [0; 32],
        }
        .encode_unchained();
        // Sealed where it will be written: no copy of a large payload on the way.
        let at = buf.len();
        buf.extend_from_slice(&header);
        buf.extend_from_slice(&p.compressed);
        let tag = key.encrypt_in_place(&nonce, &format::aad(&header, &w.meta.id), &mut buf[at + RECORD_HEADER_LEN..]);
        buf.extend_from_slice(&tag);
        *chain = format::chain(chain, &header, &buf[at + RECORD_HEADER_LEN..]);
        header[88..120].copy_from_slice(chain);
        buf[at..at + RECORD_HEADER_LEN].copy_from_slice(&header);
        locations.push(Location {
            volume: w.meta.id.clone(),
            segment: w.segment,
            offset: start + at as u64,
            length: (buf.len() - at) as u32,
        });
        *seq += 1;
    }
    locations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::format::RECORD_HEADER_LEN;
    use crate::volume::StoreConfig;

    /// Records as versions before record keys wrote them: sealed under the volume's data key and
    /// compressed with a dictionary trained from the owner's mail.
    #[test]
    fn records_of_earlier_versions_still_read_and_verify_and_new_ones_follow_them() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::load_or_create(&dir.path().join("master.key"), true).unwrap();
        let root = dir.path().join("volumes");
        let raw =
            b"From: Alice Martin <alice.martin@contoso.com>\r\nTo: Bob Stone <bob@contoso.com>\r\nSubject: ".repeat(8);
        std::fs::create_dir_all(root.join("dicts")).unwrap();
        std::fs::write(root.join("dicts/t1-d0001.sealed"), master.seal_secret("dictionary:t1-d1", &raw)).unwrap();
        let store = Store::open(StoreConfig::new(root.clone()), master.clone()).unwrap();
        let dictionary = store.dictionaries.get(1, 1).expect("the earlier dictionary is read");
        let originals: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                format!(
                    "From: Alice Martin <alice.martin@contoso.com>\r\nTo: Bob Stone <bob@contoso.com>\r\nSubject: old {i}\r\n\r\nhi\r\n"
                )
                .into_bytes()
            })
            .collect();
        let mut w = store.create_volume(1, 1).unwrap();
        let (mut buf, mut locations) = (Vec::new(), Vec::new());
        for (seq, original) in originals.iter().enumerate() {
            let compressed = dictionary.compress(original);
            let nonce = random_nonce();
            let mut header = RecordHeader {
                kind: RecordKind::Message,
                own_key: false,
                seq: seq as u64,
                original_len: original.len() as u64,
                payload_len: (compressed.len() + 16) as u32,
                dictionary: 1,
                content_hash: crate::content_hash(original),
                nonce,
                chain: [0; 32],
            }
            .encode_unchained();
            let at = buf.len();
            buf.extend_from_slice(&header);
            buf.extend_from_slice(&compressed);
            let tag =
                w.key.encrypt_in_place(&nonce, &format::aad(&header, &w.meta.id), &mut buf[at + RECORD_HEADER_LEN..]);
            buf.extend_from_slice(&tag);
            w.chain = format::chain(&w.chain, &header, &buf[at + RECORD_HEADER_LEN..]);
            header[88..120].copy_from_slice(&w.chain);
            buf[at..at + RECORD_HEADER_LEN].copy_from_slice(&header);
            let length = (buf.len() - at) as u32;
            locations.push(Location { volume: w.meta.id.clone(), segment: 1, offset: w.offset + at as u64, length });
        }
        w.file.append(&buf).unwrap();
        drop((w, store));

        let store = Store::open(StoreConfig::new(root), master).unwrap();
        for (loc, original) in locations.iter().zip(&originals) {
            assert_eq!(&store.read(loc).unwrap(), original);
        }
        let new =
            store.append(1, &[Payload::seal_with(b"Subject: new\r\n\r\nhello\r\n", &store.compressor())]).unwrap();
        assert_eq!(store.read(&new[0]).unwrap(), b"Subject: new\r\n\r\nhello\r\n");
        let report = store.verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.good.len(), 4);
        assert!(store.shred(&locations[0]).is_err(), "a record without a key of its own cannot be shredded alone");
        assert!(store.shred(&new[0]).is_ok());
    }
}
