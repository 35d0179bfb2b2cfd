//! Recovery: an open volume picked up after a restart. A torn tail (a write that was never
//! acknowledged) is cut and kept aside; damage in the middle is never cut, and new records go to
//! a new segment.

use crate::format::{self, RECORD_HEADER_LEN, RECORD_MAGIC, RecordHeader, SEGMENT_HEADER_LEN, SegmentHeader};
use crate::volume::{Store, VolumeMeta};
use crate::writer::Writer;
use crate::{Result, StoreError};

impl Store {
    /// Picks up an open volume after a restart: scans its last segment, cutting a torn tail.
    pub(crate) fn resume(&self, meta: VolumeMeta) -> Result<Writer> {
        let key = self.data_key(&meta.id)?;
        let segments = self.backend.segments(&meta.id)?;
        let Some(&last) = segments.last() else {
            return Writer::empty(self, meta, key);
        };
        let data = self.backend.read_segment(&meta.id, last)?;
        let path = self.backend.describe(&meta.id, last);
        let corrupt =
            |detail: String| StoreError::Corrupt { volume: meta.id.clone(), segment: last, offset: 0, detail };
        let header = SegmentHeader::decode(&data)
            .ok_or_else(|| corrupt("segment header unreadable; run `coffer verify`".into()))?;
        // Walk the records by their declared lengths. Whatever does not form a whole record at
        // the end is a torn write; so is a last record whose chain link does not hold (a write
        // cut off after the header).
        let (mut pos, mut seq, mut chain) = (SEGMENT_HEADER_LEN, header.first_seq, header.chain_in);
        let mut last_kind = None;
        while let Ok(h) = RecordHeader::decode(&data[pos..]) {
            let end = pos as u64 + h.record_len();
            if end > data.len() as u64 {
                break;
            }
            let record = &data[pos..end as usize];
            let is_last = end == data.len() as u64;
            if is_last && format::chain(&chain, &record[..RECORD_HEADER_LEN], &record[RECORD_HEADER_LEN..]) != h.chain {
                break;
            }
            chain = h.chain;
            seq = h.seq + 1;
            last_kind = Some(h.kind);
            pos = end as usize;
        }
        let acknowledged = self.cfg.acknowledged.get(&(meta.id.clone(), last)).copied().unwrap_or(0);
        let after = records_after(&data, pos);
        let mut damaged_middle = false;
        if pos < data.len() && (after.is_some() || (pos as u64) < acknowledged) {
            // Damage in the middle, not a torn tail: records after it, or acknowledged ones, would
            // be lost by a cut. Nothing is cut or appended here; `verify` names the damage, and
            // new records go to a new segment that continues the chain from the last record.
            damaged_middle = true;
            if let Some((last_seq, last_chain)) = after {
                seq = last_seq + 1;
                chain = last_chain;
            }
            tracing::error!(
                segment = %path,
                offset = pos,
                "a damaged record in the middle of the segment (not a torn write); nothing was cut, new records go to a new segment; `coffer verify` names the damage"
            );
        } else if pos < data.len() {
            // Cut, keeping the cut bytes aside for forensics: they were never acknowledged.
            self.backend.cut(&meta.id, last, pos as u64)?;
        }
        // Keys of records that never made it into the segment.
        self.backend.cut_keyring(&meta.id, seq * crate::crypto::KEY_ENTRY_LEN as u64)?;
        let file = self.backend.append_to(&meta.id, last)?;
        let earlier: u64 =
            segments[..segments.len() - 1].iter().map(|&s| self.backend.segment_len(&meta.id, s).unwrap_or(0)).sum();
        let size = if damaged_middle { data.len() } else { pos };
        let mut writer = Writer {
            meta,
            key,
            segment: last,
            file,
            offset: size as u64,
            next_seq: seq,
            chain,
            volume_bytes: earlier + size as u64,
            last_kind,
        };
        if damaged_middle {
            self.next_segment(&mut writer)?;
        }
        Ok(writer)
    }
}

/// After damage at `from`: the sequence number and chain link of the last whole record that
/// follows it (found by its magic, then walked by declared lengths), or None when none follows.
pub(crate) fn records_after(data: &[u8], from: usize) -> Option<(u64, [u8; 32])> {
    let mut at = from + 1;
    while at < data.len() {
        let start = at + find(&data[at..], RECORD_MAGIC)?;
        let mut pos = start;
        let mut last = None;
        while let Ok(h) = RecordHeader::decode(&data[pos..]) {
            let end = pos as u64 + h.record_len();
            if end > data.len() as u64 {
                break;
            }
            last = Some((h.seq, h.chain));
            pos = end as usize;
        }
        if last.is_some() {
            return last;
        }
        at = start + 1;
    }
    None
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
