//! On-disk layout of segments and records (all integers little-endian).
//!
//! Segment header, 64 bytes:
//! `magic "CFSEG\0\0\x01"` · `segment u32` · `reserved u32` · `first_seq u64` · `chain_in [32]` · `reserved [8]`
//!
//! Record, a 120-byte header and the sealed payload:
//! `magic "CFRC"` · `version u8 (1 = sealed under the volume's data key, 2 = under the record's own
//! key, kept in the volume's keyring)` · `compression u8 (1 = zstd, 2 = zstd with a dictionary)` · `kind u8
//! (0 = an original message, 1 = evidence, 2 = a trusted timestamp; volumes from before kinds hold
//! only 0)` · `reserved u8` · `seq u64` ·
//! `original_len u64` · `payload_len u32` · `dictionary u32` · `content_hash [32]` · `nonce [24]` ·
//! `chain [32]` · `payload [payload_len]`
//!
//! `chain = SHA-256(previous chain ‖ header[..88] ‖ payload)`; the first record of a volume chains
//! from 32 zero bytes and each segment header repeats the chain it continues from. The AEAD's
//! associated data is `header[..64] ‖ volume id`, which binds a payload to its place and volume.

use sha2::{Digest, Sha256};

pub const SEGMENT_MAGIC: &[u8; 8] = b"CFSEG\0\0\x01";
pub const SEGMENT_HEADER_LEN: usize = 64;
pub const RECORD_MAGIC: &[u8; 4] = b"CFRC";
pub const RECORD_HEADER_LEN: usize = 120;
const CHAINED_LEN: usize = 88;
const AAD_LEN: usize = 64;
/// The dictionary number of evidence records compressed with [`EVIDENCE_DICTIONARY`].
pub const EVIDENCE_DICTIONARY_NUMBER: u32 = u32::MAX;
/// A raw zstd dictionary of the words evidence records are made of (their JSON keys and common
/// values), so that a record of a few hundred bytes need not spell its keys out. It holds no
/// tenant's data, and it never changes: records written with it name it by
/// [`EVIDENCE_DICTIONARY_NUMBER`]; a new one would take another number.
pub const EVIDENCE_DICTIONARY: &[u8] = br#"{"fact":"arrival","message":,"tenant":,"sha256":"","record":{"volume":"t1-v000001","segment":,"offset":,"length":},"source":"import","archived_at":,"size":,"message_id":"","date":,"from_addr":"","from_name":"","sender":null,"on_behalf_of":null,"subject":"","has_attachment":false,"flags":0,"recipients":[{"kind":"to","address":"","name":null,"via":""},{"kind":"cc","address":"","name":null,"via":""},{"kind":"bcc","address":"","name":null,"via":""},{"kind":"envelope","address":"","name":null,"via":"expanded:"}],"placements":[{"mailbox":"","folder":"","source":"imap"}],"origin":{"peer":"","helo":"","tls":"TLSv1_3","rcpt_to":["journal-@"],"item":["",""]}}{"fact":"placement_removed","message":,"tenant":,"mailbox":"","folder":"","at":}{"fact":"tenant","id":,"name":"","journal_token":"","domains":[""],"networks":[""],"created_at":,"at":}"#;

/// The dictionary number of message records compressed with the built-in mail dictionary.
pub const MAIL_DICTIONARY_NUMBER: u32 = u32::MAX - 1;

/// The built-in mail dictionary (raw zstd content): `mail-dictionary.txt` with CRLF line ends,
/// as mail has them. Records name it by [`MAIL_DICTIONARY_NUMBER`], so its bytes never change
/// (a test pins their hash); a better one would take another number.
pub fn mail_dictionary() -> Vec<u8> {
    let text = include_bytes!("mail-dictionary.txt");
    let mut out = Vec::with_capacity(text.len() + text.len() / 16);
    for &b in text {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// No single record may claim more than this; a larger length is corruption, not a message.
pub const MAX_PAYLOAD: u32 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment: u32,
    pub first_seq: u64,
    pub chain_in: [u8; 32],
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[..8].copy_from_slice(SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.segment.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        b[24..56].copy_from_slice(&self.chain_in);
        b
    }

    pub fn decode(b: &[u8]) -> Option<SegmentHeader> {
        if b.len() < SEGMENT_HEADER_LEN || &b[..8] != SEGMENT_MAGIC {
            return None;
        }
        Some(SegmentHeader {
            segment: u32::from_le_bytes(b[8..12].try_into().ok()?),
            first_seq: u64::from_le_bytes(b[16..24].try_into().ok()?),
            chain_in: b[24..56].try_into().ok()?,
        })
    }
}

/// What a record holds. The kind is part of the chained and authenticated header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RecordKind {
    /// The original bytes of a message.
    #[default]
    Message,
    /// A fact about messages or tenants (an arrival with its envelope, a placement removed, a
    /// tenant's journal address), as JSON: what the catalog is derived from.
    Evidence,
    /// An RFC 3161 timestamp token over the volume's chain head at an earlier record
    /// ([`crate::Timestamp`]).
    Timestamp,
}

impl RecordKind {
    fn byte(self) -> u8 {
        match self {
            RecordKind::Message => 0,
            RecordKind::Evidence => 1,
            RecordKind::Timestamp => 2,
        }
    }

    fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            0 => Some(RecordKind::Message),
            1 => Some(RecordKind::Evidence),
            2 => Some(RecordKind::Timestamp),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordKind,
    /// Sealed under its own key (the keyring's entry for `seq`); volumes from before hold none.
    pub own_key: bool,
    pub seq: u64,
    pub original_len: u64,
    pub payload_len: u32,
    /// The owner's dictionary the payload was compressed with; 0 for none.
    pub dictionary: u32,
    pub content_hash: [u8; 32],
    pub nonce: [u8; 24],
    pub chain: [u8; 32],
}

impl RecordHeader {
    /// Header bytes with the chain field left zero (it is computed over the rest).
    pub fn encode_unchained(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        b[..4].copy_from_slice(RECORD_MAGIC);
        b[4] = if self.own_key { 2 } else { 1 };
        b[5] = if self.dictionary == 0 { 1 } else { 2 };
        b[6] = self.kind.byte();
        b[28..32].copy_from_slice(&self.dictionary.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.original_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.payload_len.to_le_bytes());
        b[32..64].copy_from_slice(&self.content_hash);
        b[64..88].copy_from_slice(&self.nonce);
        b
    }

    pub fn decode(b: &[u8]) -> Result<RecordHeader, &'static str> {
        if b.len() < RECORD_HEADER_LEN {
            return Err("record header cut short");
        }
        if &b[..4] != RECORD_MAGIC {
            return Err("no record starts here (bad magic)");
        }
        if !(1..=2).contains(&b[4]) || !(1..=2).contains(&b[5]) {
            return Err("unknown record version or compression");
        }
        let kind = RecordKind::from_byte(b[6]).ok_or("unknown record kind")?;
        let header = RecordHeader {
            kind,
            own_key: b[4] == 2,
            seq: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            original_len: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            payload_len: u32::from_le_bytes(b[24..28].try_into().unwrap()),
            dictionary: if b[5] == 2 { u32::from_le_bytes(b[28..32].try_into().unwrap()) } else { 0 },
            content_hash: b[32..64].try_into().unwrap(),
            nonce: b[64..88].try_into().unwrap(),
            chain: b[88..120].try_into().unwrap(),
        };
        if header.payload_len > MAX_PAYLOAD {
            return Err("record claims an impossible length");
        }
        Ok(header)
    }

    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + self.payload_len as u64
    }
}

pub fn chain(prev: &[u8; 32], header: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(&header[..CHAINED_LEN]);
    h.update(payload);
    h.finalize().into()
}

pub fn aad(header: &[u8], volume: &str) -> Vec<u8> {
    let mut aad = header[..AAD_LEN].to_vec();
    aad.extend_from_slice(volume.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let s = SegmentHeader { segment: 7, first_seq: 99, chain_in: [3; 32] };
        assert_eq!(SegmentHeader::decode(&s.encode()), Some(s));
        let r = RecordHeader {
            kind: RecordKind::Evidence,
            own_key: true,
            seq: 5,
            original_len: 1234,
            payload_len: 77,
            dictionary: 3,
            content_hash: [9; 32],
            nonce: [1; 24],
            chain: [0; 32],
        };
        assert_eq!(RecordHeader::decode(&r.encode_unchained()), Ok(r));
    }

    #[test]
    fn the_built_in_mail_dictionary_never_changes() {
        // Records written with it can only be read with these exact bytes.
        assert_eq!(
            hex::encode(Sha256::digest(mail_dictionary())),
            "8629aa3ce7856ecd2f5cd92bbdbb88b91f54ac28dd865499d8c7cdfd2f17e201"
        );
    }

    #[test]
    fn garbage_is_not_a_record() {
        assert!(RecordHeader::decode(&[0u8; RECORD_HEADER_LEN]).is_err());
        assert!(RecordHeader::decode(b"CFRC").is_err());
    }
}
