//! Connection secrets (passwords, client secrets), sealed with the master key in `<data>/secrets`
//! so that none has to sit in the configuration file.

use std::path::PathBuf;

use coffer_store::MasterKey;

use crate::ArchiveError;

pub struct SecretStore {
    dir: PathBuf,
    master: MasterKey,
}

impl SecretStore {
    pub(crate) fn new(dir: PathBuf, master: MasterKey) -> SecretStore {
        SecretStore { dir, master }
    }

    /// Stores `value` under `key` (e.g. `imap.journal.password`), replacing what was there.
    pub fn set(&self, key: &str, value: &str) -> Result<(), ArchiveError> {
        check_key(key)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| ArchiveError::Io(self.dir.display().to_string(), e))?;
        let path = self.dir.join(format!("{key}.sealed"));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.master.seal_secret(&label(key), value.as_bytes()))
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| ArchiveError::Io(path.display().to_string(), e))
    }

    pub fn get(&self, key: &str) -> Result<Option<String>, ArchiveError> {
        check_key(key)?;
        let path = self.dir.join(format!("{key}.sealed"));
        let Ok(sealed) = std::fs::read(&path) else { return Ok(None) };
        let plain = self.master.open_secret(&label(key), &sealed)?;
        String::from_utf8(plain).map(Some).map_err(|_| ArchiveError::Invalid(format!("secret {key} is not text")))
    }

    /// The keys stored (never the values).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".sealed").map(str::to_owned)).collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    }
}

fn label(key: &str) -> String {
    format!("secret:{key}")
}

fn check_key(key: &str) -> Result<(), ArchiveError> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ArchiveError::Invalid(format!("{key:?} is not a secret name (letters, digits, '.', '_', '-')")))
    }
}
