//! Scanning: a volume's records in order, for what is derived from them (the catalog's replay
//! and rebuild, and `verify`'s comparison of the catalog with the evidence).

use crate::format::{RECORD_MAGIC, RecordHeader, RecordKind, SEGMENT_HEADER_LEN, SegmentHeader};
use crate::keyring::Unreadable;
use crate::recovery::find;
use crate::verifier::Problem;
use crate::volume::Store;
use crate::{Location, Result, StoreError};

/// One record found by [`Store::scan`].
#[derive(Debug, Clone)]
pub struct Scanned {
    pub seq: u64,
    pub kind: RecordKind,
    pub location: Location,
    pub content_hash: [u8; 32],
    /// The opened payload, for the kinds the scan was asked to open.
    pub body: Option<Vec<u8>>,
}

impl Store {
    /// The first record number of each of `volume`'s segments, from their headers, ascending
    /// (what [`Store::scan`] takes as `from` to start at a segment).
    pub fn segment_starts(&self, volume: &str) -> Result<Vec<u64>> {
        let segments = self.backend.segments(volume)?;
        Ok(self.first_seqs(volume, &segments)?.into_iter().flatten().collect())
    }

    fn first_seqs(&self, volume: &str, segments: &[u32]) -> Result<Vec<Option<u64>>> {
        let mut firsts = Vec::with_capacity(segments.len());
        for &s in segments {
            let head = self.backend.read_at(volume, s, 0, SEGMENT_HEADER_LEN)?;
            firsts.push(SegmentHeader::decode(&head).map(|h| h.first_seq));
        }
        Ok(firsts)
    }

    /// Every volume, in order of owner and number.
    pub fn volume_ids(&self) -> Result<Vec<String>> {
        Ok(self.metas()?.into_iter().map(|m| m.id).collect())
    }

    /// The records of `volume` numbered from `from` up to (not including) `until`, in order;
    /// payloads of the kinds `open` picks are opened (seal and hash checked). A record that does
    /// not read is left out and named in the problems returned (`verify` says more); the scan
    /// goes on after it. Segments wholly before `from` are not read.
    pub fn scan<E: From<StoreError>>(
        &self,
        volume: &str,
        from: u64,
        until: Option<u64>,
        open: impl Fn(RecordKind) -> bool,
        mut each: impl FnMut(Scanned) -> std::result::Result<(), E>,
    ) -> std::result::Result<Vec<Problem>, E> {
        let key = self.data_key(volume)?;
        let segments = self.backend.segments(volume)?;
        let firsts = self.first_seqs(volume, &segments)?;
        let mut problems = Vec::new();
        let problem = |segment: u32, offset: u64, seq: Option<u64>, detail: String| Problem {
            volume: volume.to_owned(),
            segment: Some(segment),
            offset: Some(offset),
            seq,
            detail,
        };
        for (i, &number) in segments.iter().enumerate() {
            // The next segment starts at or before `from`: nothing wanted here.
            if firsts.get(i + 1).copied().flatten().is_some_and(|next| next <= from) {
                continue;
            }
            if until.is_some_and(|u| firsts[i].is_some_and(|first| first >= u)) {
                break;
            }
            let data = self.backend.read_segment(volume, number)?;
            let keys = self.segment_keys(volume, firsts[i].unwrap_or(0), data.len())?;
            let mut pos = SEGMENT_HEADER_LEN;
            while pos < data.len() {
                let header = match RecordHeader::decode(&data[pos..]) {
                    Ok(h) if pos as u64 + h.record_len() <= data.len() as u64 => h,
                    // A record being written beside us, or a torn tail: the end of what there is.
                    Ok(_) | Err("record header cut short") => break,
                    Err(e) => {
                        problems.push(problem(number, pos as u64, None, e.to_owned()));
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
                if until.is_some_and(|u| header.seq >= u) {
                    return Ok(problems);
                }
                if header.seq >= from {
                    let record = &data[pos..end];
                    let location = Location {
                        volume: volume.into(),
                        segment: number,
                        offset: pos as u64,
                        length: record.len() as u32,
                    };
                    let body = if open(header.kind) {
                        match self.open_record(&key, &keys, volume, record, &header) {
                            Ok(body) => Some(body),
                            // Deleted on purpose: nothing to read, nothing wrong.
                            Err(Unreadable::Shredded) => {
                                pos = end;
                                continue;
                            }
                            Err(Unreadable::Damaged(e)) => {
                                problems.push(problem(number, pos as u64, Some(header.seq), e));
                                pos = end;
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    each(Scanned {
                        seq: header.seq,
                        kind: header.kind,
                        location,
                        content_hash: header.content_hash,
                        body,
                    })?;
                }
                pos = end;
            }
        }
        Ok(problems)
    }
}
