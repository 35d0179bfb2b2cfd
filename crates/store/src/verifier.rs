//! Verification: every record of every volume read and checked — seal, content hash, sequence
//! and hash chain, and that each timestamp record carries the chain head of the record it covers —
//! never stopping at the first problem.

use serde::Serialize;

use crate::crypto::DataKey;
use crate::format::{
    self, RECORD_HEADER_LEN, RECORD_MAGIC, RecordHeader, RecordKind, SEGMENT_HEADER_LEN, SegmentHeader,
};
use crate::keyring::Unreadable;
use crate::recovery::{find, records_after};
use crate::volume::{Store, VolumeState};
use crate::{Location, Result, Timestamp};

/// One thing `verify` found wrong, named precisely enough to go and look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub volume: String,
    pub segment: Option<u32>,
    pub offset: Option<u64>,
    pub seq: Option<u64>,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "volume {}", self.volume)?;
        if let Some(s) = self.segment {
            write!(f, " segment {s}")?;
        }
        if let Some(o) = self.offset {
            write!(f, " offset {o}")?;
        }
        if let Some(q) = self.seq {
            write!(f, " record {q}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub volumes: usize,
    pub segments: usize,
    pub records: u64,
    pub problems: Vec<Problem>,
    /// Evidence records among `records`.
    pub evidence: u64,
    /// Timestamp records among `records`.
    pub timestamp_records: u64,
    /// Records whose key was shredded (deleted on purpose) among `records`.
    pub shredded: u64,
    /// Every message record that checked out, with its content hash, for the catalog cross-check.
    pub good: Vec<(Location, [u8; 32])>,
    /// Every timestamp record whose chain head is the volume's at the record it covers; the
    /// token itself is the caller's to check (signature, the TSA's certificates).
    pub timestamps: Vec<FoundTimestamp>,
}

/// A timestamp record [`Store::verify`] found in place.
#[derive(Debug, Clone)]
pub struct FoundTimestamp {
    pub volume: String,
    /// The timestamp record's own number.
    pub seq: u64,
    pub timestamp: Timestamp,
}

impl Store {
    /// Reads every record of every volume and checks the whole structure. Never stops at the
    /// first problem: each one is reported and the scan resynchronises after it.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let _guard = self.writers.lock().unwrap(); // no append while we read the tails
        for meta in self.metas()? {
            report.volumes += 1;
            let key = match self.data_key(&meta.id) {
                Ok(k) => k,
                Err(e) => {
                    report.problems.push(problem(&meta.id, None, None, None, e.to_string()));
                    continue;
                }
            };
            let mut expected_seq = 0u64;
            let mut chain = [0u8; 32];
            // The chain after each record, by record number, for the timestamps that name one.
            let mut chains: Vec<[u8; 32]> = Vec::new();
            let mut expected_segment = 1u32;
            for number in self.backend.segments(&meta.id)? {
                report.segments += 1;
                if number != expected_segment {
                    report.problems.push(problem(
                        &meta.id,
                        Some(number),
                        None,
                        None,
                        format!("segment {expected_segment} is missing"),
                    ));
                }
                expected_segment = number + 1;
                self.verify_segment(&meta.id, &key, number, &mut expected_seq, &mut chain, &mut chains, &mut report)?;
            }
            if meta.state == VolumeState::Closed {
                let head_ok = meta.chain_head.as_deref() == Some(&hex::encode(chain));
                if !head_ok || meta.records != Some(expected_seq) {
                    report.problems.push(problem(
                        &meta.id,
                        None,
                        None,
                        None,
                        format!(
                            "closed volume ends at record {expected_seq} but was closed with {} records: records cut from its end",
                            meta.records.unwrap_or(0)
                        ),
                    ));
                }
            }
        }
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn verify_segment(
        &self,
        volume: &str,
        key: &DataKey,
        number: u32,
        expected_seq: &mut u64,
        chain: &mut [u8; 32],
        chains: &mut Vec<[u8; 32]>,
        report: &mut VerifyReport,
    ) -> Result<()> {
        let data = self.backend.read_segment(volume, number)?;
        let first_seq = SegmentHeader::decode(&data).map_or(*expected_seq, |h| h.first_seq);
        let keys = self.segment_keys(volume, first_seq, data.len())?;
        let p =
            |offset: Option<u64>, seq: Option<u64>, detail: String| problem(volume, Some(number), offset, seq, detail);
        match SegmentHeader::decode(&data) {
            None => report.problems.push(p(Some(0), None, "segment header unreadable".into())),
            Some(h) => {
                if h.segment != number {
                    report.problems.push(p(Some(0), None, format!("file holds segment {}", h.segment)));
                }
                if h.first_seq != *expected_seq {
                    report.problems.push(p(
                        Some(0),
                        None,
                        format!("segment starts at record {} but {} was expected", h.first_seq, expected_seq),
                    ));
                }
                if h.chain_in != *chain {
                    report.problems.push(p(Some(0), None, "segment does not continue the volume's hash chain".into()));
                }
                *expected_seq = h.first_seq;
                *chain = h.chain_in;
            }
        }
        let mut pos = SEGMENT_HEADER_LEN;
        while pos < data.len() {
            let header = match RecordHeader::decode(&data[pos..]) {
                Ok(h) if pos as u64 + h.record_len() <= data.len() as u64 => h,
                Ok(_) | Err("record header cut short") if records_after(&data, pos).is_none() => {
                    report.problems.push(p(Some(pos as u64), None, "torn record at the end of the segment".into()));
                    break;
                }
                other => {
                    let detail = match other {
                        Err(e) => e.to_owned(),
                        Ok(_) => "damaged record header (its length runs past the end of the segment)".into(),
                    };
                    report.problems.push(p(Some(pos as u64), None, detail));
                    match find(&data[pos + 1..], RECORD_MAGIC) {
                        Some(skip) => {
                            pos += 1 + skip;
                            continue;
                        }
                        None => break,
                    }
                }
            };
            let end = pos + header.record_len() as usize;
            let record = &data[pos..end];
            let loc =
                Location { volume: volume.into(), segment: number, offset: pos as u64, length: record.len() as u32 };
            let mut faults = Vec::new();
            if header.seq > *expected_seq {
                faults.push(format!("records {} to {} are missing", expected_seq, header.seq - 1));
            } else if header.seq < *expected_seq {
                faults.push(format!("out of order (record {} expected here)", expected_seq));
            }
            if format::chain(chain, &record[..RECORD_HEADER_LEN], &record[RECORD_HEADER_LEN..]) != header.chain {
                faults
                    .push("hash chain broken (this record or the one before it was altered, removed or moved)".into());
            }
            match self.open_record(key, &keys, volume, record, &header) {
                Ok(_) if faults.is_empty() && header.kind == RecordKind::Message => {
                    report.good.push((loc, header.content_hash))
                }
                Ok(body) if header.kind == RecordKind::Timestamp => match Timestamp::decode(&body) {
                    None => faults.push("timestamp record unreadable".into()),
                    Some(t) if t.covers >= header.seq => {
                        faults.push(format!("timestamp claims to cover record {}, which comes after it", t.covers))
                    }
                    Some(t) if chains.get(t.covers as usize) != Some(&t.chain_head) => faults.push(format!(
                        "timestamp's chain head is not the volume's after record {} (the token does not belong here)",
                        t.covers
                    )),
                    Some(timestamp) => {
                        report.timestamps.push(FoundTimestamp { volume: volume.to_owned(), seq: header.seq, timestamp })
                    }
                },
                Ok(_) => {}
                // Deleted on purpose: counted apart from damage; its chain link was checked above.
                Err(Unreadable::Shredded) => report.shredded += 1,
                Err(Unreadable::Damaged(e)) => faults.push(e),
            }
            if !faults.is_empty() {
                report.problems.push(p(Some(pos as u64), Some(header.seq), faults.join("; ")));
            }
            report.records += 1;
            report.evidence += (header.kind == RecordKind::Evidence) as u64;
            report.timestamp_records += (header.kind == RecordKind::Timestamp) as u64;
            *expected_seq = header.seq + 1;
            *chain = header.chain;
            // Numbered as they come; after damage the numbers no longer line up and a timestamp
            // past it is reported as not belonging (the damage is reported anyway).
            if header.seq == chains.len() as u64 {
                chains.push(header.chain);
            }
            pos = end;
        }
        Ok(())
    }
}

fn problem(volume: &str, segment: Option<u32>, offset: Option<u64>, seq: Option<u64>, detail: String) -> Problem {
    Problem { volume: volume.to_owned(), segment, offset, seq, detail }
}
