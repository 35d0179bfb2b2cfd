//! Keys: the master key (one per installation, a file the operator backs up) wraps a data key per
//! volume; the data key wraps each record's own key, kept in the volume's keyring; a record key
//! seals one record. Destroying a record's keyring entry (shredding) leaves its sealed bytes, and
//! so the hash chain over them, in place, and nothing that can open them.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::{Result, StoreError};

pub const NONCE_LEN: usize = 24;

#[derive(Clone)]
pub struct MasterKey(XChaCha20Poly1305);

impl MasterKey {
    /// Reads the master key file, or creates one when `may_create` (only on a new archive: a
    /// missing key next to existing volumes means the archive cannot be read, and a new key would
    /// hide that).
    pub fn load_or_create(path: &Path, may_create: bool) -> Result<MasterKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let hex_key = text.lines().find(|l| !l.trim().is_empty() && !l.starts_with('#')).unwrap_or("");
                let bytes = hex::decode(hex_key.trim()).ok().filter(|b| b.len() == 32).ok_or_else(|| {
                    StoreError::MasterKey(format!(
                        "{} does not hold a 64-hex-digit key; restore it from your backup",
                        path.display()
                    ))
                })?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => {
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(crate::io_err(dir))?;
                }
                // Written whole under a name of its own, then linked into place: two first runs at
                // once cannot both create a key, and neither reads a half-written one.
                let temp = path.with_extension(format!("new-{}", std::process::id()));
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&temp).map_err(crate::io_err(&temp))?;
                writeln!(
                    file,
                    "# Coffer master key. Every archived message is unreadable without it.\n\
                     # Back it up apart from the data folder.\n{}",
                    hex::encode(bytes)
                )
                .and_then(|_| file.sync_all())
                .map_err(crate::io_err(&temp))?;
                let linked = std::fs::hard_link(&temp, path);
                let _ = std::fs::remove_file(&temp);
                match linked {
                    Ok(()) => Ok(Self::from_bytes(&bytes)),
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(path, false),
                    Err(e) => Err(crate::io_err(path)(e)),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::MasterKey(format!(
                "{} is missing but volumes exist; restore the key from your backup",
                path.display()
            ))),
            Err(e) => Err(crate::io_err(path)(e)),
        }
    }

    fn from_bytes(bytes: &[u8]) -> MasterKey {
        MasterKey(XChaCha20Poly1305::new_from_slice(bytes).expect("32-byte key"))
    }

    /// Seals a secret kept outside the volumes (a private key, a connection password), bound to
    /// `label` so it cannot be swapped for another.
    pub fn seal_secret(&self, label: &str, plain: &[u8]) -> Vec<u8> {
        seal(&self.0, plain, label.as_bytes())
    }

    pub fn open_secret(&self, label: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        open(&self.0, sealed, label.as_bytes()).ok_or_else(|| {
            StoreError::MasterKey(format!(
                "the master key does not open the secret {label}: this is not the master key it was sealed with \
                     (master_key_file points at another key, or master.key was replaced); put back the original \
                     master.key from your backup"
            ))
        })
    }

    /// A new random data key, and its wrapped form (nonce ‖ ciphertext) bound to `volume`.
    pub(crate) fn new_data_key(&self, volume: &str) -> (DataKey, Vec<u8>) {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let wrapped = seal(&self.0, &key, volume.as_bytes());
        (DataKey::from_bytes(&key), wrapped)
    }

    pub(crate) fn unwrap_data_key(&self, volume: &str, wrapped: &[u8]) -> Result<DataKey> {
        let key = open(&self.0, wrapped, volume.as_bytes()).ok_or_else(|| {
            StoreError::MasterKey(format!(
                "the master key does not open volume {volume}'s data key: this is not the master key the archive \
                 was made with (master_key_file points at another key, or master.key was replaced); put back the \
                 original master.key from your backup"
            ))
        })?;
        Ok(DataKey::from_bytes(&key))
    }
}

#[derive(Clone)]
pub(crate) struct DataKey(XChaCha20Poly1305);

impl DataKey {
    fn from_bytes(bytes: &[u8]) -> DataKey {
        DataKey(XChaCha20Poly1305::new_from_slice(bytes).expect("32-byte key"))
    }

    /// Seals `buffer` where it lies and returns the tag to append (no copy of a large payload).
    pub(crate) fn encrypt_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buffer: &mut [u8]) -> [u8; 16] {
        use chacha20poly1305::aead::AeadInPlace;
        self.0
            .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, buffer)
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer")
            .into()
    }

    pub(crate) fn decrypt(&self, nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        self.0.decrypt(XNonce::from_slice(nonce), AeadPayload { msg: sealed, aad }).ok()
    }
}

/// One keyring entry: `seq u64 LE ‖ nonce [24] ‖ sealed record key [32 + 16]`; all zeros once
/// shredded.
pub(crate) const KEY_ENTRY_LEN: usize = 80;

/// Why a record's key cannot be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyProblem {
    /// The entry was destroyed on purpose: the record is gone, its chain link stays.
    Shredded,
    /// The entry is absent, or does not open under the volume key.
    Damaged,
}

impl DataKey {
    /// A new key for record `seq` of `volume`, and its keyring entry.
    pub(crate) fn new_record_key(&self, volume: &str, seq: u64) -> (DataKey, [u8; KEY_ENTRY_LEN]) {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let nonce = random_nonce();
        let sealed = self
            .0
            .encrypt(XNonce::from_slice(&nonce), AeadPayload { msg: &key, aad: &record_key_aad(volume, seq) })
            .expect("XChaCha20-Poly1305 encryption of a key");
        let mut entry = [0u8; KEY_ENTRY_LEN];
        entry[..8].copy_from_slice(&seq.to_le_bytes());
        entry[8..32].copy_from_slice(&nonce);
        entry[32..].copy_from_slice(&sealed);
        (DataKey::from_bytes(&key), entry)
    }

    /// Opens record `seq`'s key from its keyring entry.
    pub(crate) fn open_record_key(
        &self,
        volume: &str,
        seq: u64,
        entry: &[u8],
    ) -> std::result::Result<DataKey, KeyProblem> {
        if entry.len() == KEY_ENTRY_LEN && entry.iter().all(|&b| b == 0) {
            return Err(KeyProblem::Shredded);
        }
        if entry.len() != KEY_ENTRY_LEN || entry[..8] != seq.to_le_bytes() {
            return Err(KeyProblem::Damaged);
        }
        let key = self
            .0
            .decrypt(
                XNonce::from_slice(&entry[8..32]),
                AeadPayload { msg: &entry[32..], aad: &record_key_aad(volume, seq) },
            )
            .map_err(|_| KeyProblem::Damaged)?;
        Ok(DataKey::from_bytes(&key))
    }
}

fn record_key_aad(volume: &str, seq: u64) -> Vec<u8> {
    let mut aad = b"record-key:".to_vec();
    aad.extend_from_slice(volume.as_bytes());
    aad.extend_from_slice(&seq.to_le_bytes());
    aad
}

pub(crate) fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

fn seal(cipher: &XChaCha20Poly1305, plain: &[u8], aad: &[u8]) -> Vec<u8> {
    let nonce = random_nonce();
    let mut out = nonce.to_vec();
    out.extend(cipher.encrypt(XNonce::from_slice(&nonce), AeadPayload { msg: plain, aad }).expect("encrypt"));
    out
}

fn open(cipher: &XChaCha20Poly1305, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher.decrypt(XNonce::from_slice(nonce), AeadPayload { msg: ct, aad }).ok()
}
