//! The keyring of a volume: one entry per record number (`KEY_ENTRY_LEN` bytes at
//! `seq × KEY_ENTRY_LEN`), each the record's own key sealed by the volume's data key. Shredding
//! a record overwrites its entry with zeros: the sealed record and the chain over it stay, and
//! nothing can open it any more.

use crate::crypto::{DataKey, KEY_ENTRY_LEN, KeyProblem};
use crate::format::{RECORD_HEADER_LEN, RecordHeader};
use crate::volume::Store;
use crate::{Location, Result, StoreError};

/// The keyring entries of a run of records, read at once.
pub(crate) struct Keys {
    first_seq: u64,
    bytes: Vec<u8>,
}

impl Keys {
    fn entry(&self, seq: u64) -> Option<&[u8]> {
        let at = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?.checked_mul(KEY_ENTRY_LEN)?;
        self.bytes.get(at..at + KEY_ENTRY_LEN)
    }

    /// The key that seals record `seq`: its own, or for records from before keyrings the volume's.
    pub(crate) fn key_for(
        &self,
        data_key: &DataKey,
        volume: &str,
        header: &RecordHeader,
    ) -> std::result::Result<DataKey, KeyProblem> {
        if !header.own_key {
            return Ok(data_key.clone());
        }
        data_key.open_record_key(volume, header.seq, self.entry(header.seq).ok_or(KeyProblem::Damaged)?)
    }
}

impl Store {
    /// The entries of the records a segment of `data_len` bytes starting at `first_seq` can hold.
    pub(crate) fn segment_keys(&self, volume: &str, first_seq: u64, data_len: usize) -> Result<Keys> {
        let most = data_len / RECORD_HEADER_LEN + 1;
        self.keys_from(volume, first_seq, most)
    }

    pub(crate) fn keys_from(&self, volume: &str, first_seq: u64, count: usize) -> Result<Keys> {
        let bytes = match first_seq.checked_mul(KEY_ENTRY_LEN as u64) {
            Some(offset) => self.backend.read_keyring(volume, offset, count.saturating_mul(KEY_ENTRY_LEN))?,
            None => Vec::new(),
        };
        Ok(Keys { first_seq, bytes })
    }

    /// True when the record at `loc` is sealed under its own key, so it can be shredded alone
    /// (records from before record keys cannot).
    pub fn can_shred(&self, loc: &Location) -> Result<bool> {
        let head = self.backend.read_at(&loc.volume, loc.segment, loc.offset, RECORD_HEADER_LEN)?;
        Ok(RecordHeader::decode(&head).is_ok_and(|h| h.own_key))
    }

    /// Shreds the record at `loc`: its key is destroyed, so its content can never be read again,
    /// while the record's bytes (and the hash chain over them) stay where they are. Returns the
    /// record's content hash. Only records sealed under their own key can be shredded.
    pub fn shred(&self, loc: &Location) -> Result<[u8; 32]> {
        if self.writer_lock.is_none() {
            return Err(StoreError::ReadOnly);
        }
        let head = self.backend.read_at(&loc.volume, loc.segment, loc.offset, RECORD_HEADER_LEN)?;
        let corrupt = |detail: &str| StoreError::Corrupt {
            volume: loc.volume.clone(),
            segment: loc.segment,
            offset: loc.offset,
            detail: detail.to_owned(),
        };
        let header = RecordHeader::decode(&head).map_err(corrupt)?;
        if !header.own_key {
            return Err(corrupt("this record is from before record keys and cannot be shredded alone"));
        }
        let offset = header.seq.checked_mul(KEY_ENTRY_LEN as u64).ok_or_else(|| corrupt("impossible record number"))?;
        self.backend.write_keyring(&loc.volume, offset, &[0u8; KEY_ENTRY_LEN])?;
        Ok(header.content_hash)
    }
}

/// Why a record does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Its key was shredded: deleted on purpose, not damage.
    Shredded,
    Damaged(String),
}

impl From<KeyProblem> for Unreadable {
    fn from(p: KeyProblem) -> Self {
        match p {
            KeyProblem::Shredded => Unreadable::Shredded,
            KeyProblem::Damaged => {
                Unreadable::Damaged("its key is missing from the volume's keyring or damaged".into())
            }
        }
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Shredded => write!(f, "its key was shredded (the record was deleted)"),
            Unreadable::Damaged(d) => write!(f, "{d}"),
        }
    }
}
