//! Compression dictionaries. Compressed one by one, mail loses the redundancy *between* messages
//! (the same headers, MIME and HTML boilerplate); a dictionary gives part of it back.
//!
//! New records are compressed with Coffer's built-in mail dictionary (`mail-dictionary.txt`,
//! header lines and boilerplate written for Coffer, holding no tenant's mail). A dictionary trained
//! from a tenant's own messages compresses better but keeps fragments of them, which would survive
//! the shredding of a message's record key; so none is trained any more. Those earlier versions
//! trained (`dicts/t<owner>-d<n>.sealed`, sealed with the master key) are still read for the
//! records that name them. `bench/README.md` has the measured sizes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crypto::MasterKey;
use crate::format;
use crate::{Result, io_err};

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
    /// Dictionaries live as long as the process (the built-in one and a few old ones), so compression
    /// contexts can hold them.
    pub(crate) fn leak(number: u32, raw: &[u8]) -> &'static Dictionary {
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

/// The dictionaries earlier versions trained, by owner, for reading the records that name them.
pub struct Dictionaries {
    by_owner: HashMap<u64, Vec<&'static Dictionary>>,
}

/// What compresses messages: the built-in mail dictionary, or nothing.
#[derive(Clone)]
pub struct Compressor {
    dictionary: Option<&'static Dictionary>,
}

static MAIL: std::sync::LazyLock<&'static Dictionary> =
    std::sync::LazyLock::new(|| Dictionary::leak(format::MAIL_DICTIONARY_NUMBER, &format::mail_dictionary()));

impl Compressor {
    /// Plain zstd, no dictionary.
    pub fn plain() -> Compressor {
        Compressor { dictionary: None }
    }

    /// With the built-in mail dictionary.
    pub fn mail() -> Compressor {
        Compressor { dictionary: Some(*MAIL) }
    }

    pub(crate) fn compress(&self, original: &[u8]) -> (Vec<u8>, u32) {
        match self.dictionary {
            Some(d) => (d.compress(original), d.number),
            None => (compress_plain(original), 0),
        }
    }
}

/// The built-in mail dictionary, for reading.
pub(crate) fn mail() -> &'static Dictionary {
    &MAIL
}

impl Dictionaries {
    pub(crate) fn open(dir: PathBuf, master: MasterKey) -> Result<Arc<Dictionaries>> {
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
        Ok(Arc::new(Dictionaries { by_owner }))
    }

    pub(crate) fn get(&self, owner: u64, number: u32) -> Option<&'static Dictionary> {
        self.by_owner.get(&owner)?.iter().find(|d| d.number == number).copied()
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
