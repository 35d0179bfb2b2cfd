//! Volumes and segments on local disk: the writer, recovery, reads and verification.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::crypto::{DataKey, MasterKey, random_nonce};
use crate::dictionary::{Compressor, Dictionaries, owner_of};
use crate::format::{self, RECORD_HEADER_LEN, RECORD_MAGIC, RecordHeader, SEGMENT_HEADER_LEN, SegmentHeader};
use crate::{Location, Payload, Result, StoreError, io_err};

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Folder holding one sub-folder per volume.
    pub root: PathBuf,
    /// A segment is sealed and a new one started once it holds this many bytes.
    pub segment_max_bytes: u64,
    /// A volume is closed and a new one opened once it holds this many bytes …
    pub volume_max_bytes: u64,
    /// … or this many records.
    pub volume_max_records: u64,
    /// Where the acknowledged records of each (volume, segment) end, as the catalog knows them:
    /// recovery never cuts below this, whatever it finds there.
    pub acknowledged: HashMap<(String, u32), u64>,
}

impl StoreConfig {
    pub fn new(root: PathBuf) -> Self {
        StoreConfig {
            root,
            segment_max_bytes: 256 << 20,
            volume_max_bytes: 32 << 30,
            volume_max_records: 10_000_000,
            acknowledged: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeState {
    Open,
    Closed,
}

/// `volume.json`: what a volume is, written atomically when it is created and when it is closed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VolumeMeta {
    id: String,
    owner: u64,
    number: u32,
    state: VolumeState,
    created_at: u64,
    closed_at: Option<u64>,
    /// The data key, sealed by the master key (nonce ‖ ciphertext), hex.
    wrapped_key: String,
    /// Set on close: the last chain link and the record count, so a cut tail is noticed.
    chain_head: Option<String>,
    records: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    pub id: String,
    pub owner: u64,
    pub state: VolumeState,
    pub created_at: u64,
    pub closed_at: Option<u64>,
    pub segments: u32,
    pub records: u64,
    pub bytes: u64,
}

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
    /// Every record that checked out, with its content hash, for the catalog cross-check.
    pub good: Vec<(Location, [u8; 32])>,
}

struct Writer {
    meta: VolumeMeta,
    dir: PathBuf,
    key: DataKey,
    segment: u32,
    file: File,
    offset: u64,
    next_seq: u64,
    chain: [u8; 32],
    volume_bytes: u64,
}

impl Writer {
    /// A volume with no record yet: its first segment, chaining from zero.
    fn empty(meta: VolumeMeta, dir: PathBuf, key: DataKey) -> Result<Writer> {
        let file = new_segment(&dir, &SegmentHeader { segment: 1, first_seq: 0, chain_in: [0; 32] })?;
        Ok(Writer {
            meta,
            dir,
            key,
            segment: 1,
            file,
            offset: SEGMENT_HEADER_LEN as u64,
            next_seq: 0,
            chain: [0; 32],
            volume_bytes: SEGMENT_HEADER_LEN as u64,
        })
    }
}

pub struct Store {
    /// Held while this process may write: one writer per store, or recovery could cut another
    /// process's write in flight.
    writer_lock: Option<File>,
    cfg: StoreConfig,
    master: MasterKey,
    writers: Mutex<HashMap<u64, Writer>>,
    keys: RwLock<HashMap<String, DataKey>>,
    dictionaries: Arc<Dictionaries>,
}

impl Store {
    /// Opens the store, recovering every open volume: a torn record at the end of its last segment
    /// (a crash during a write that was never acknowledged) is moved aside and cut off.
    pub fn open(cfg: StoreConfig, master: MasterKey) -> Result<Store> {
        std::fs::create_dir_all(&cfg.root).map_err(io_err(&cfg.root))?;
        let lock_path = cfg.root.join(".writer.lock");
        let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Busy(cfg.root.display().to_string()));
        }
        let dictionaries = Dictionaries::open(cfg.root.join("dicts"), master.clone(), true)?;
        let store = Store {
            writer_lock: Some(lock),
            cfg,
            master,
            writers: Mutex::new(HashMap::new()),
            keys: RwLock::new(HashMap::new()),
            dictionaries,
        };
        let mut writers = HashMap::new();
        for meta in store.metas()? {
            if meta.state == VolumeState::Open {
                let newer = writers.get(&meta.owner).is_none_or(|w: &Writer| w.meta.number < meta.number);
                if newer {
                    writers.insert(meta.owner, store.resume(meta)?);
                }
            }
        }
        *store.writers.lock().unwrap() = writers;
        Ok(store)
    }

    /// The volumes still open for writing (recovery looks at their last segments).
    pub fn open_volume_ids(root: &Path) -> Result<Vec<String>> {
        if !root.exists() {
            return Ok(Vec::new());
        }
        Ok(read_metas(root)?.into_iter().filter(|m| m.state == VolumeState::Open).map(|m| m.id).collect())
    }

    /// Opens the store for reading only, next to a process that may be writing: no recovery, and
    /// `append` is refused.
    pub fn open_read_only(cfg: StoreConfig, master: MasterKey) -> Result<Store> {
        let dictionaries = Dictionaries::open(cfg.root.join("dicts"), master.clone(), false)?;
        Ok(Store {
            writer_lock: None,
            cfg,
            master,
            writers: Mutex::new(HashMap::new()),
            keys: RwLock::new(HashMap::new()),
            dictionaries,
        })
    }

    /// Compresses `owner`'s messages for [`Payload::seal_with`](crate::Payload::seal_with): with the
    /// owner's dictionary once one is trained.
    pub fn compressor(&self, owner: u64) -> Compressor {
        self.dictionaries.compressor(owner)
    }

    /// True when the folder holds no volume yet (a new archive may create its master key).
    pub fn is_empty(root: &Path) -> bool {
        std::fs::read_dir(root).map(|mut d| d.next().is_none()).unwrap_or(true)
    }

    /// Seals the payloads into records of `owner`'s open volume and makes them durable with one
    /// fsync. On any error nothing of the batch remains and the caller may retry.
    pub fn append(&self, owner: u64, payloads: &[Payload]) -> Result<Vec<Location>> {
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
        let (seq0, chain0) = (w.next_seq, w.chain);
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.compressed.len() + 140).sum());
        let mut locations = Vec::with_capacity(payloads.len());
        let (mut seq, mut chain) = (seq0, chain0);
        for p in payloads {
            let nonce = random_nonce();
            let mut header = RecordHeader {
                seq,
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
            let tag =
                w.key.encrypt_in_place(&nonce, &format::aad(&header, &w.meta.id), &mut buf[at + RECORD_HEADER_LEN..]);
            buf.extend_from_slice(&tag);
            chain = format::chain(&chain, &header, &buf[at + RECORD_HEADER_LEN..]);
            header[88..120].copy_from_slice(&chain);
            buf[at..at + RECORD_HEADER_LEN].copy_from_slice(&header);
            locations.push(Location {
                volume: w.meta.id.clone(),
                segment: w.segment,
                offset: start + at as u64,
                length: (buf.len() - at) as u32,
            });
            seq += 1;
        }
        let path = segment_path(&w.dir, w.segment);
        if let Err(e) = w.file.write_all(&buf).and_then(|_| w.file.sync_data()) {
            // Leave the segment as it was before the batch: no half record stays behind.
            let _ = w.file.set_len(start);
            let _ = w.file.sync_data();
            return Err(io_err(&path)(e));
        }
        w.offset += buf.len() as u64;
        w.volume_bytes += buf.len() as u64;
        w.next_seq = seq;
        w.chain = chain;
        Ok(locations)
    }

    /// Reads one record back, checking its seal and its content hash.
    pub fn read(&self, loc: &Location) -> Result<Vec<u8>> {
        let path = segment_path(&self.cfg.root.join(&loc.volume), loc.segment);
        let file = File::open(&path).map_err(io_err(&path))?;
        let mut record = vec![0u8; loc.length as usize];
        file.read_exact_at(&mut record, loc.offset).map_err(io_err(&path))?;
        let corrupt = |detail: &str| StoreError::Corrupt {
            volume: loc.volume.clone(),
            segment: loc.segment,
            offset: loc.offset,
            detail: detail.to_owned(),
        };
        let header = RecordHeader::decode(&record).map_err(corrupt)?;
        if header.record_len() != loc.length as u64 {
            return Err(corrupt("record length differs from the catalog's"));
        }
        let key = self.data_key(&loc.volume)?;
        self.open_record(&key, &loc.volume, &record, &header).map_err(|d| corrupt(&d))
    }

    fn open_record(
        &self,
        key: &DataKey,
        volume: &str,
        record: &[u8],
        header: &RecordHeader,
    ) -> std::result::Result<Vec<u8>, String> {
        let (head, sealed) = record.split_at(RECORD_HEADER_LEN);
        let compressed = key
            .decrypt(&header.nonce, &format::aad(head, volume), sealed)
            .ok_or("payload does not authenticate (altered, or moved from another place)")?;
        let original = match header.dictionary {
            0 => zstd::bulk::decompress(&compressed, header.original_len as usize),
            number => {
                let dictionary = owner_of(volume)
                    .and_then(|owner| self.dictionaries.get(owner, number))
                    .ok_or_else(|| format!("compression dictionary {number} of this volume's owner is missing"))?;
                dictionary.decompress(&compressed, header.original_len as usize)
            }
        }
        .map_err(|e| format!("payload does not decompress: {e}"))?;
        if crate::content_hash(&original) != header.content_hash {
            return Err("content does not match its hash".into());
        }
        Ok(original)
    }

    pub fn volumes(&self) -> Result<Vec<VolumeInfo>> {
        let writers = self.writers.lock().unwrap();
        let mut out = Vec::new();
        for meta in self.metas()? {
            let dir = self.cfg.root.join(&meta.id);
            let segments = segment_numbers(&dir)?;
            let bytes =
                segments.iter().map(|&s| std::fs::metadata(segment_path(&dir, s)).map(|m| m.len()).unwrap_or(0)).sum();
            let records = match writers.get(&meta.owner) {
                Some(w) if w.meta.id == meta.id => w.next_seq,
                _ => meta.records.unwrap_or(0),
            };
            out.push(VolumeInfo {
                id: meta.id,
                owner: meta.owner,
                state: meta.state,
                created_at: meta.created_at,
                closed_at: meta.closed_at,
                segments: segments.len() as u32,
                records,
                bytes,
            });
        }
        Ok(out)
    }

    /// Closes a volume: its chain head is written down and the next append opens a new volume.
    pub fn close_volume(&self, id: &str) -> Result<()> {
        let mut writers = self.writers.lock().unwrap();
        let owner = writers.iter().find(|(_, w)| w.meta.id == id).map(|(o, _)| *o);
        match owner {
            Some(owner) => {
                let mut w = writers.remove(&owner).unwrap();
                self.close_writer(&mut w)
            }
            None if self.metas()?.iter().any(|m| m.id == id) => Ok(()), // already closed
            None => Err(StoreError::UnknownVolume(id.to_owned())),
        }
    }

    /// Reads every record of every volume and checks the whole structure. Never stops at the
    /// first problem: each one is reported and the scan resynchronises after it.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let _guard = self.writers.lock().unwrap(); // no append while we read the tails
        for meta in self.metas()? {
            report.volumes += 1;
            let dir = self.cfg.root.join(&meta.id);
            let key = match self.data_key(&meta.id) {
                Ok(k) => k,
                Err(e) => {
                    report.problems.push(problem(&meta.id, None, None, None, e.to_string()));
                    continue;
                }
            };
            let mut expected_seq = 0u64;
            let mut chain = [0u8; 32];
            let mut expected_segment = 1u32;
            for number in segment_numbers(&dir)? {
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
                self.verify_segment(&meta.id, &key, &dir, number, &mut expected_seq, &mut chain, &mut report)?;
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
        dir: &Path,
        number: u32,
        expected_seq: &mut u64,
        chain: &mut [u8; 32],
        report: &mut VerifyReport,
    ) -> Result<()> {
        let path = segment_path(dir, number);
        let data = std::fs::read(&path).map_err(io_err(&path))?;
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
            match self.open_record(key, volume, record, &header) {
                Ok(_) if faults.is_empty() => report.good.push((loc, header.content_hash)),
                Ok(_) => {}
                Err(e) => faults.push(e),
            }
            if !faults.is_empty() {
                report.problems.push(p(Some(pos as u64), Some(header.seq), faults.join("; ")));
            }
            report.records += 1;
            *expected_seq = header.seq + 1;
            *chain = header.chain;
            pos = end;
        }
        Ok(())
    }

    fn metas(&self) -> Result<Vec<VolumeMeta>> {
        read_metas(&self.cfg.root)
    }

    fn data_key(&self, volume: &str) -> Result<DataKey> {
        if let Some(k) = self.keys.read().unwrap().get(volume) {
            return Ok(k.clone());
        }
        let path = self.cfg.root.join(volume).join("volume.json");
        let text = std::fs::read(&path).map_err(|_| StoreError::UnknownVolume(volume.to_owned()))?;
        let meta: VolumeMeta = serde_json::from_slice(&text).map_err(|e| StoreError::MasterKey(e.to_string()))?;
        let wrapped = hex::decode(&meta.wrapped_key).map_err(|e| StoreError::MasterKey(e.to_string()))?;
        let key = self.master.unwrap_data_key(volume, &wrapped)?;
        self.keys.write().unwrap().insert(volume.to_owned(), key.clone());
        Ok(key)
    }

    fn create_volume(&self, owner: u64, mut number: u32) -> Result<Writer> {
        // Never reuse a number, even one whose volume was closed long ago.
        let highest = self.metas()?.iter().filter(|m| m.owner == owner).map(|m| m.number).max().unwrap_or(0);
        number = number.max(highest + 1);
        let id = format!("t{owner}-v{number:06}");
        let dir = self.cfg.root.join(&id);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
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
        write_meta(&dir, &meta)?;
        sync_dir(&self.cfg.root)?;
        self.keys.write().unwrap().insert(id.clone(), key.clone());
        Writer::empty(meta, dir, key)
    }

    fn next_segment(&self, w: &mut Writer) -> Result<()> {
        let header = SegmentHeader { segment: w.segment + 1, first_seq: w.next_seq, chain_in: w.chain };
        w.file = new_segment(&w.dir, &header)?;
        w.segment += 1;
        w.offset = SEGMENT_HEADER_LEN as u64;
        w.volume_bytes += SEGMENT_HEADER_LEN as u64;
        Ok(())
    }

    fn close_writer(&self, w: &mut Writer) -> Result<()> {
        w.meta.state = VolumeState::Closed;
        w.meta.closed_at = Some(now());
        w.meta.chain_head = Some(hex::encode(w.chain));
        w.meta.records = Some(w.next_seq);
        write_meta(&w.dir, &w.meta)
    }

    /// Picks up an open volume after a restart: scans its last segment, cutting a torn tail.
    fn resume(&self, meta: VolumeMeta) -> Result<Writer> {
        let dir = self.cfg.root.join(&meta.id);
        let key = self.data_key(&meta.id)?;
        let segments = segment_numbers(&dir)?;
        let Some(&last) = segments.last() else {
            return Writer::empty(meta, dir, key);
        };
        let path = segment_path(&dir, last);
        let data = std::fs::read(&path).map_err(io_err(&path))?;
        let corrupt =
            |detail: String| StoreError::Corrupt { volume: meta.id.clone(), segment: last, offset: 0, detail };
        let header = SegmentHeader::decode(&data)
            .ok_or_else(|| corrupt("segment header unreadable; run `coffer verify`".into()))?;
        // Walk the records by their declared lengths. Whatever does not form a whole record at
        // the end is a torn write; so is a last record whose chain link does not hold (a write
        // cut off after the header).
        let (mut pos, mut seq, mut chain) = (SEGMENT_HEADER_LEN, header.first_seq, header.chain_in);
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
                segment = %path.display(),
                offset = pos,
                "a damaged record in the middle of the segment (not a torn write); nothing was cut, new records go to a new segment; `coffer verify` names the damage"
            );
        } else if pos < data.len() {
            // Keep the cut bytes for forensics; they were never acknowledged.
            let aside = dir.join(format!("{last:06}.seg.torn-{pos}"));
            std::fs::write(&aside, &data[pos..]).map_err(io_err(&aside))?;
            let file = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
            file.set_len(pos as u64).and_then(|_| file.sync_all()).map_err(io_err(&path))?;
            tracing::warn!(segment = %path.display(), bytes = data.len() - pos, kept = %aside.display(), "cut a torn tail");
        }
        let file = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
        let earlier: u64 = segments[..segments.len() - 1]
            .iter()
            .map(|&s| std::fs::metadata(segment_path(&dir, s)).map(|m| m.len()).unwrap_or(0))
            .sum();
        let size = if damaged_middle { data.len() } else { pos };
        let mut writer = Writer {
            meta,
            dir,
            key,
            segment: last,
            file,
            offset: size as u64,
            next_seq: seq,
            chain,
            volume_bytes: earlier + size as u64,
        };
        if damaged_middle {
            self.next_segment(&mut writer)?;
        }
        Ok(writer)
    }
}

/// After damage at `from`: the sequence number and chain link of the last whole record that
/// follows it (found by its magic, then walked by declared lengths), or None when none follows.
fn records_after(data: &[u8], from: usize) -> Option<(u64, [u8; 32])> {
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

fn read_metas(root: &Path) -> Result<Vec<VolumeMeta>> {
    let mut metas = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io_err(root))? {
        let entry = entry.map_err(io_err(root))?;
        let path = entry.path().join("volume.json");
        if !path.exists() {
            continue;
        }
        let text = std::fs::read(&path).map_err(io_err(&path))?;
        let meta: VolumeMeta = serde_json::from_slice(&text).map_err(|e| StoreError::Corrupt {
            volume: entry.file_name().to_string_lossy().into(),
            segment: 0,
            offset: 0,
            detail: format!("volume.json unreadable: {e}"),
        })?;
        metas.push(meta);
    }
    metas.sort_by_key(|m| (m.owner, m.number));
    Ok(metas)
}

fn problem(volume: &str, segment: Option<u32>, offset: Option<u64>, seq: Option<u64>, detail: String) -> Problem {
    Problem { volume: volume.to_owned(), segment, offset, seq, detail }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:06}.seg"))
}

fn segment_numbers(dir: &Path) -> Result<Vec<u32>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let name = entry.map_err(io_err(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn new_segment(dir: &Path, header: &SegmentHeader) -> Result<File> {
    let path = segment_path(dir, header.segment);
    let mut file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io_err(&path))?;
    file.write_all(&header.encode()).and_then(|_| file.sync_all()).map_err(io_err(&path))?;
    sync_dir(dir)?;
    Ok(file)
}

fn write_meta(dir: &Path, meta: &VolumeMeta) -> Result<()> {
    let tmp = dir.join("volume.json.tmp");
    let path = dir.join("volume.json");
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(&serde_json::to_vec_pretty(meta).expect("volume meta serialises"))
        .and_then(|_| file.sync_all())
        .map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
