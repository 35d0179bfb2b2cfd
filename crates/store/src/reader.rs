//! Reads: one record by its location, its seal and content hash checked.

use crate::crypto::DataKey;
use crate::dictionary::owner_of;
use crate::format::{self, RECORD_HEADER_LEN, RecordHeader};
use crate::keyring::{Keys, Unreadable};
use crate::volume::Store;
use crate::{Location, Result, StoreError};

impl Store {
    /// Reads one record back, checking its seal and its content hash.
    pub fn read(&self, loc: &Location) -> Result<Vec<u8>> {
        let record = self.backend.read_at(&loc.volume, loc.segment, loc.offset, loc.length as usize)?;
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
        let keys = self.keys_from(&loc.volume, header.seq, 1)?;
        self.open_record(&key, &keys, &loc.volume, &record, &header).map_err(|e| match e {
            Unreadable::Shredded => {
                StoreError::Shredded(format!("{} segment {} offset {}", loc.volume, loc.segment, loc.offset))
            }
            Unreadable::Damaged(d) => corrupt(&d),
        })
    }

    pub(crate) fn open_record(
        &self,
        data_key: &DataKey,
        keys: &Keys,
        volume: &str,
        record: &[u8],
        header: &RecordHeader,
    ) -> std::result::Result<Vec<u8>, Unreadable> {
        let key = keys.key_for(data_key, volume, header)?;
        let (head, sealed) = record.split_at(RECORD_HEADER_LEN);
        let damaged = |d: String| Unreadable::Damaged(d);
        let compressed = key
            .decrypt(&header.nonce, &format::aad(head, volume), sealed)
            .ok_or_else(|| damaged("payload does not authenticate (altered, or moved from another place)".into()))?;
        let original = match header.dictionary {
            0 => zstd::bulk::decompress(&compressed, header.original_len as usize),
            format::EVIDENCE_DICTIONARY_NUMBER if header.kind == format::RecordKind::Evidence => {
                zstd::bulk::Decompressor::with_dictionary(format::EVIDENCE_DICTIONARY)
                    .and_then(|mut d| d.decompress(&compressed, header.original_len as usize))
            }
            format::MAIL_DICTIONARY_NUMBER => {
                crate::dictionary::mail().decompress(&compressed, header.original_len as usize)
            }
            number => {
                let dictionary =
                    owner_of(volume).and_then(|owner| self.dictionaries.get(owner, number)).ok_or_else(|| {
                        damaged(format!("compression dictionary {number} of this volume's owner is missing"))
                    })?;
                dictionary.decompress(&compressed, header.original_len as usize)
            }
        }
        .map_err(|e| damaged(format!("payload does not decompress: {e}")))?;
        if crate::content_hash(&original) != header.content_hash {
            return Err(damaged("content does not match its hash".into()));
        }
        Ok(original)
    }
}
