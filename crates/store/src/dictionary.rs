//! Per-owner zstd dictionaries. Compressed one by one, mail loses the redundancy *between* messages
//! (the same headers, signatures, HTML boilerplate); a dictionary trained on an owner's first
//! messages gives it back (`bench/README.md` has the measured sizes).
//!
//! A dictionary is trained once per owner from samples of its first messages (in the thread whose
//! sample completed the set; the others wait for it); until then, records are compressed without one. It holds fragments of mail, so it is kept
//! sealed with the master key (`dicts/t<owner>-d<n>.sealed`), written and fsync'd before any record
//! uses it; a record names the dictionary it needs in its header.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::crypto::MasterKey;
use crate::{Result, StoreError, io_err};

/// Bytes of one message taken as a sample (the start: headers and the first part repeat most).
const SAMPLE_BYTES: usize = 16 << 10;
/// Training starts at this many sample bytes from at least `MIN_SAMPLES` messages, or earlier at
/// `ENOUGH_SAMPLES` messages with at least `MIN_BYTES` (many small messages).
const TRAIN_AT_BYTES: usize = 4 << 20;
const MIN_SAMPLES: usize = 500;
const ENOUGH_SAMPLES: usize = 2_000;
const MIN_BYTES: usize = 256 << 10;
const DICTIONARY_BYTES: usize = 112 << 10;
pub(crate) const LEVEL: i32 = 3;

pub struct Dictionary {
    pub(crate) number: u32,
    encoder: zstd::dict::EncoderDictionary<'static>,
    decoder: zstd::dict::DecoderDictionary<'static>,
}

thread_local! {
    /// Compression contexts are costly to make: each thread keeps one per dictionary (and one
    /// without), keyed by the dictionary's address.
    static CONTEXTS: std::cell::RefCell<HashMap<usize, zstd::bulk::Compressor<'static>>> = Default::default();
}

fn with_context<T>(
    dictionary: Option<&'static Dictionary>,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> T,
) -> T {
    CONTEXTS.with(|contexts| {
        let mut contexts = contexts.borrow_mut();
        let key = dictionary.map_or(0, |d| d as *const Dictionary as usize);
        let context = contexts.entry(key).or_insert_with(|| {
            match dictionary {
                Some(d) => zstd::bulk::Compressor::with_prepared_dictionary(&d.encoder),
                None => zstd::bulk::Compressor::new(LEVEL),
            }
            .expect("a zstd compression context")
        });
        f(context)
    })
}

/// Plain zstd at the store's level, with a reused context.
pub(crate) fn compress_plain(original: &[u8]) -> Vec<u8> {
    with_context(None, |c| c.compress(original)).expect("zstd compression of an in-memory buffer")
}

impl Dictionary {
    /// Dictionaries live as long as the process (a few per tenant at most), so compression
    /// contexts can hold them.
    fn leak(number: u32, raw: &[u8]) -> &'static Dictionary {
        Box::leak(Box::new(Dictionary {
            number,
            encoder: zstd::dict::EncoderDictionary::copy(raw, LEVEL),
            decoder: zstd::dict::DecoderDictionary::copy(raw),
        }))
    }

    pub(crate) fn compress(&'static self, original: &[u8]) -> Vec<u8> {
        with_context(Some(self), |c| c.compress(original)).expect("zstd compression of an in-memory buffer")
    }

    pub(crate) fn decompress(&self, compressed: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
        zstd::bulk::Decompressor::with_prepared_dictionary(&self.decoder)?.decompress(compressed, capacity)
    }
}

#[derive(Default)]
struct Samples {
    messages: Vec<Vec<u8>>,
    bytes: usize,
    training: bool,
    /// Training failed (too little variety, say): carry on without a dictionary.
    failed: bool,
}

pub struct Dictionaries {
    dir: PathBuf,
    master: MasterKey,
    writable: bool,
    by_owner: RwLock<HashMap<u64, Vec<&'static Dictionary>>>,
    samples: Mutex<HashMap<u64, Samples>>,
    trained: std::sync::Condvar,
}

/// What compresses one owner's messages: its newest dictionary, or none yet (then the message is
/// offered as a training sample).
#[derive(Clone)]
pub struct Compressor {
    owner: u64,
    dictionary: Option<&'static Dictionary>,
    dictionaries: Option<Arc<Dictionaries>>,
}

impl Compressor {
    /// Plain zstd, no dictionary and no sampling.
    pub fn plain() -> Compressor {
        Compressor { owner: 0, dictionary: None, dictionaries: None }
    }

    pub(crate) fn compress(&self, original: &[u8]) -> (Vec<u8>, u32) {
        let dictionary = self.dictionary.or_else(|| self.dictionaries.as_ref()?.sample_or_wait(self.owner, original));
        match dictionary {
            Some(d) => (d.compress(original), d.number),
            None => (compress_plain(original), 0),
        }
    }
}

impl Dictionaries {
    pub(crate) fn open(dir: PathBuf, master: MasterKey, writable: bool) -> Result<Arc<Dictionaries>> {
        let mut by_owner: HashMap<u64, Vec<&'static Dictionary>> = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries {
                let path = entry.map_err(io_err(&dir))?.path();
                let Some((owner, number)) = parse_name(&path) else { continue };
                let sealed = std::fs::read(&path).map_err(io_err(&path))?;
                let raw = master.open_secret(&label(owner, number), &sealed)?;
                by_owner.entry(owner).or_default().push(Dictionary::leak(number, &raw));
            }
        }
        for list in by_owner.values_mut() {
            list.sort_by_key(|d| d.number);
        }
        Ok(Arc::new(Dictionaries {
            dir,
            master,
            writable,
            by_owner: RwLock::new(by_owner),
            samples: Mutex::default(),
            trained: Default::default(),
        }))
    }

    pub(crate) fn compressor(self: &Arc<Self>, owner: u64) -> Compressor {
        let dictionary = self.current(owner);
        Compressor { owner, dictionary, dictionaries: self.writable.then(|| self.clone()) }
    }

    pub(crate) fn get(&self, owner: u64, number: u32) -> Option<&'static Dictionary> {
        self.by_owner.read().unwrap().get(&owner)?.iter().find(|d| d.number == number).copied()
    }

    /// Offers a message as a training sample. Returns the owner's dictionary when there is one by
    /// now: training happens in the thread whose sample completed the set, and other threads wait
    /// for it (briefly, once per owner) rather than compress many messages without it.
    fn sample_or_wait(&self, owner: u64, original: &[u8]) -> Option<&'static Dictionary> {
        let mut all = self.samples.lock().unwrap();
        loop {
            if let Some(d) = self.current(owner) {
                return Some(d);
            }
            let s = all.entry(owner).or_default();
            if !s.training {
                break;
            }
            let (guard, timeout) = self.trained.wait_timeout(all, std::time::Duration::from_secs(10)).unwrap();
            all = guard;
            if timeout.timed_out() {
                return self.current(owner);
            }
        }
        let s = all.entry(owner).or_default();
        if s.failed {
            return None;
        }
        let sample = original[..original.len().min(SAMPLE_BYTES)].to_vec();
        s.bytes += sample.len();
        s.messages.push(sample);
        let n = s.messages.len();
        if !((s.bytes >= TRAIN_AT_BYTES && n >= MIN_SAMPLES) || (n >= ENOUGH_SAMPLES && s.bytes >= MIN_BYTES)) {
            return None;
        }
        s.training = true;
        let samples = std::mem::take(&mut s.messages);
        drop(all);
        let trained = self.train(owner, &samples);
        let mut all = self.samples.lock().unwrap();
        let s = all.entry(owner).or_default();
        s.training = false;
        if let Err(e) = &trained {
            s.failed = true;
            tracing::warn!(owner, error = %e, "could not train a compression dictionary; compressing without one");
        }
        self.trained.notify_all();
        self.current(owner)
    }

    fn current(&self, owner: u64) -> Option<&'static Dictionary> {
        self.by_owner.read().unwrap().get(&owner).and_then(|l| l.last().copied())
    }

    fn train(&self, owner: u64, samples: &[Vec<u8>]) -> Result<()> {
        // A dictionary about a tenth of the samples' size; zstd's own advice is samples ~100x the dictionary.
        let total: usize = samples.iter().map(Vec::len).sum();
        let raw =
            zstd::dict::from_samples(samples, DICTIONARY_BYTES.min(total / 10)).map_err(|e| StoreError::Corrupt {
                volume: format!("t{owner}"),
                segment: 0,
                offset: 0,
                detail: format!("dictionary training: {e}"),
            })?;
        let number = self.by_owner.read().unwrap().get(&owner).and_then(|l| l.last()).map_or(1, |d| d.number + 1);
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.dir.join(format!("t{owner}-d{number:04}.sealed"));
        let tmp = path.with_extension("tmp");
        let sealed = self.master.seal_secret(&label(owner, number), &raw);
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&sealed)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(io_err(&path))?;
        // Durable before any record can name it.
        self.by_owner.write().unwrap().entry(owner).or_default().push(Dictionary::leak(number, &raw));
        tracing::info!(owner, number, bytes = raw.len(), samples = samples.len(), "trained a compression dictionary");
        Ok(())
    }
}

fn label(owner: u64, number: u32) -> String {
    format!("dictionary:t{owner}-d{number}")
}

fn parse_name(path: &Path) -> Option<(u64, u32)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".sealed")?;
    let (owner, number) = name.strip_prefix('t')?.split_once("-d")?;
    Some((owner.parse().ok()?, number.parse().ok()?))
}

/// The owner a volume id (`t<owner>-v<n>`) belongs to.
pub(crate) fn owner_of(volume: &str) -> Option<u64> {
    volume.strip_prefix('t')?.split_once("-v")?.0.parse().ok()
}
