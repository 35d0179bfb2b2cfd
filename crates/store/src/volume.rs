//! The store over a [`SegmentStore`]: volumes and their descriptions, opening (with recovery of
//! every open volume), listing and closing. Writing is in `writer.rs`, recovery in
//! `recovery.rs`, reads in `reader.rs`, verification in `verifier.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::backend::{LocalDisk, SegmentStore};
use crate::crypto::{DataKey, MasterKey};
use crate::dictionary::{Compressor, Dictionaries};
use crate::writer::Writer;
use crate::{Result, StoreError, io_err};

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
pub(crate) struct VolumeMeta {
    pub(crate) id: String,
    pub(crate) owner: u64,
    pub(crate) number: u32,
    pub(crate) state: VolumeState,
    pub(crate) created_at: u64,
    pub(crate) closed_at: Option<u64>,
    /// The data key, sealed by the master key (nonce ‖ ciphertext), hex.
    pub(crate) wrapped_key: String,
    /// Set on close: the last chain link and the record count, so a cut tail is noticed.
    pub(crate) chain_head: Option<String>,
    pub(crate) records: Option<u64>,
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

pub struct Store {
    /// Held while this process may write: one writer per store, or recovery could cut another
    /// process's write in flight.
    pub(crate) writer_lock: Option<std::fs::File>,
    pub(crate) cfg: StoreConfig,
    pub(crate) backend: Arc<dyn SegmentStore>,
    pub(crate) master: MasterKey,
    pub(crate) writers: Mutex<HashMap<u64, Writer>>,
    pub(crate) keys: RwLock<HashMap<String, DataKey>>,
    pub(crate) dictionaries: Arc<Dictionaries>,
}

impl Store {
    /// Opens the store on the local disk at `cfg.root`, recovering every open volume: a torn
    /// record at the end of its last segment (a crash during a write that was never
    /// acknowledged) is moved aside and cut off.
    pub fn open(cfg: StoreConfig, master: MasterKey) -> Result<Store> {
        let backend = Arc::new(LocalDisk::new(cfg.root.clone()));
        Store::open_on(cfg, backend, master)
    }

    /// Opens the store on the given backend; `cfg.root` keeps the local writer lock and the
    /// compression dictionaries of earlier versions.
    pub fn open_on(cfg: StoreConfig, backend: Arc<dyn SegmentStore>, master: MasterKey) -> Result<Store> {
        std::fs::create_dir_all(&cfg.root).map_err(io_err(&cfg.root))?;
        let lock_path = cfg.root.join(".writer.lock");
        let lock = std::fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Busy(cfg.root.display().to_string()));
        }
        let dictionaries = Dictionaries::open(cfg.root.join("dicts"), master.clone())?;
        let store = Store {
            writer_lock: Some(lock),
            cfg,
            backend,
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

    /// The volumes still open for writing on the local disk at `root` (recovery looks at their
    /// last segments).
    pub fn open_volume_ids(root: &Path) -> Result<Vec<String>> {
        let disk = LocalDisk::new(root.to_owned());
        Ok(read_metas(&disk)?.into_iter().filter(|m| m.state == VolumeState::Open).map(|m| m.id).collect())
    }

    /// Opens the store for reading only, next to a process that may be writing: no recovery, and
    /// `append` is refused.
    pub fn open_read_only(cfg: StoreConfig, master: MasterKey) -> Result<Store> {
        let dictionaries = Dictionaries::open(cfg.root.join("dicts"), master.clone())?;
        Ok(Store {
            writer_lock: None,
            backend: Arc::new(LocalDisk::new(cfg.root.clone())),
            cfg,
            master,
            writers: Mutex::new(HashMap::new()),
            keys: RwLock::new(HashMap::new()),
            dictionaries,
        })
    }

    /// Compresses messages for [`Payload::seal_with`](crate::Payload::seal_with): every owner's
    /// with the built-in mail dictionary, which holds nothing of any tenant's mail.
    pub fn compressor(&self) -> Compressor {
        Compressor::mail()
    }

    /// True when this process holds the writer lock.
    pub fn is_writable(&self) -> bool {
        self.writer_lock.is_some()
    }

    /// True when the folder holds no volume yet (a new archive may create its master key).
    pub fn is_empty(root: &Path) -> bool {
        std::fs::read_dir(root).map(|mut d| d.next().is_none()).unwrap_or(true)
    }

    /// True when volumes exist at `root` (on the local disk).
    pub fn has_volumes(root: &Path) -> Result<bool> {
        Ok(!LocalDisk::new(root.to_owned()).volumes()?.is_empty())
    }

    /// The id of the archive these volumes belong to (`<root>/ARCHIVE`), None before one is set.
    /// The catalog keeps the same id, so a catalog and volumes that do not belong together (a
    /// lost catalog made anew, another archive's database) are told apart before anything is
    /// written.
    pub fn archive_id(root: &Path) -> Result<Option<String>> {
        let path = root.join("ARCHIVE");
        match std::fs::read_to_string(&path) {
            Ok(id) => Ok(Some(id.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Writes the archive id (durably; replaced at once).
    pub fn set_archive_id(root: &Path, id: &str) -> Result<()> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        let tmp = root.join("ARCHIVE.tmp");
        std::fs::write(&tmp, format!("{id}\n"))
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .map_err(io_err(&tmp))?;
        let path = root.join("ARCHIVE");
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        std::fs::File::open(root).and_then(|d| d.sync_all()).map_err(io_err(root))
    }

    pub fn volumes(&self) -> Result<Vec<VolumeInfo>> {
        let writers = self.writers.lock().unwrap();
        let mut out = Vec::new();
        for meta in self.metas()? {
            let segments = self.backend.segments(&meta.id)?;
            let bytes = segments.iter().map(|&s| self.backend.segment_len(&meta.id, s).unwrap_or(0)).sum();
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

    pub(crate) fn metas(&self) -> Result<Vec<VolumeMeta>> {
        read_metas(self.backend.as_ref())
    }

    pub(crate) fn data_key(&self, volume: &str) -> Result<DataKey> {
        if let Some(k) = self.keys.read().unwrap().get(volume) {
            return Ok(k.clone());
        }
        let text = self.backend.read_meta(volume)?.ok_or_else(|| StoreError::UnknownVolume(volume.to_owned()))?;
        let meta: VolumeMeta = serde_json::from_slice(&text).map_err(|e| StoreError::MasterKey(e.to_string()))?;
        let wrapped = hex::decode(&meta.wrapped_key).map_err(|e| StoreError::MasterKey(e.to_string()))?;
        let key = self.master.unwrap_data_key(volume, &wrapped)?;
        self.keys.write().unwrap().insert(volume.to_owned(), key.clone());
        Ok(key)
    }

    pub(crate) fn write_meta(&self, meta: &VolumeMeta) -> Result<()> {
        self.backend.write_meta(&meta.id, &serde_json::to_vec_pretty(meta).expect("volume meta serialises"))
    }
}

fn read_metas(backend: &dyn SegmentStore) -> Result<Vec<VolumeMeta>> {
    let mut metas = Vec::new();
    for id in backend.volumes()? {
        let Some(text) = backend.read_meta(&id)? else { continue };
        let meta: VolumeMeta = serde_json::from_slice(&text).map_err(|e| StoreError::Corrupt {
            volume: id.clone(),
            segment: 0,
            offset: 0,
            detail: format!("volume.json unreadable: {e}"),
        })?;
        metas.push(meta);
    }
    metas.sort_by_key(|m| (m.owner, m.number));
    Ok(metas)
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
