//! Online backup and restore. A backup runs beside `coffer serve`: first a consistent snapshot of
//! the catalog (SQLite's `VACUUM INTO`; with PostgreSQL, a `pg_dump` taken before the backup), then
//! the key material, then the volumes — each segment up to the end of its last acknowledged
//! record, so the copy holds everything the catalog snapshot points to and no torn tail. Copying
//! volumes before the catalog would leave records the catalog points past. Closed volumes and
//! sealed segments never change: a later backup into the same folder reuses them (a hard link to
//! the earlier copy where one is kept, or the file as it is) and copies only what is new.
//! `MANIFEST.sha256` lists every file's SHA-256; `restore` checks each one as it copies.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ArchiveError;
use crate::service::{Actor, Archive, now_secs};

const MANIFEST: &str = "MANIFEST.sha256";
const BACKUP_INFO: &str = "BACKUP.json";

/// What a backup did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupSummary {
    pub files: usize,
    /// Files written now; the rest were already in the folder from an earlier backup, unchanged.
    pub copied: usize,
    pub bytes_copied: u64,
    pub bytes: u64,
    /// How the catalog was saved.
    pub catalog: String,
    pub created_at: i64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |e| ArchiveError::Io(path.display().to_string(), e)
}

/// The SHA-256 of a file and its size.
fn hash_file(path: &Path) -> Result<(String, u64), ArchiveError> {
    let mut reader = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Writes through to a file and hashes what passes, so a copy is read once.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `len` bytes (all when None) of `from` to `to` durably, through a temporary name; the
/// answer is the bytes copied and their SHA-256.
fn copy_prefix(from: &Path, to: &Path, len: Option<u64>) -> Result<(u64, String), ArchiveError> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = to.with_extension("partial");
    let file = std::fs::File::open(from).map_err(io(from))?;
    let mut reader: Box<dyn Read> = match len {
        Some(n) => Box::new(file.take(n)),
        None => Box::new(file),
    };
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut out = Hashing { inner: file, hasher: Sha256::new() };
    let n = std::io::copy(&mut reader, &mut out).map_err(io(&tmp))?;
    out.flush().and_then(|_| out.inner.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, to).map_err(io(to))?;
    Ok((n, hex::encode(out.hasher.finalize())))
}

/// The earlier backup's manifest: relative path → SHA-256.
fn read_manifest(dir: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(dir.join(MANIFEST))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(h, p)| (p.to_owned(), h.to_owned())))
        .collect()
}

struct Copier<'a> {
    data: &'a Path,
    out: &'a Path,
    earlier: HashMap<String, String>,
    manifest: Vec<(String, String)>,
    summary: BackupSummary,
}

impl Copier<'_> {
    /// Backs up `rel` (relative to the data folder): `len` bytes of it, or all; `immutable` files
    /// already in the folder from an earlier backup with the same size are kept as they are.
    fn file(&mut self, rel: &str, len: Option<u64>, immutable: bool) -> Result<(), ArchiveError> {
        let from = self.data.join(rel);
        self.file_from(&from, rel, len, immutable)
    }

    fn file_from(&mut self, from: &Path, rel: &str, len: Option<u64>, immutable: bool) -> Result<(), ArchiveError> {
        let from = from.to_owned();
        let to = self.out.join(rel);
        let size = match len {
            Some(n) => n,
            None => std::fs::metadata(&from).map_err(io(&from))?.len(),
        };
        let kept = immutable && self.earlier.contains_key(rel) && std::fs::metadata(&to).is_ok_and(|m| m.len() == size);
        let hash = if kept {
            self.earlier[rel].clone()
        } else {
            let (n, hash) = copy_prefix(&from, &to, len)?;
            self.summary.copied += 1;
            self.summary.bytes_copied += n;
            hash
        };
        self.summary.files += 1;
        self.summary.bytes += size;
        self.manifest.push((hash, rel.to_owned()));
        Ok(())
    }

    /// Every file under `rel` (a folder of the data folder), whole; none when it does not exist.
    fn folder(&mut self, rel: &str, immutable: bool) -> Result<(), ArchiveError> {
        let dir = self.data.join(rel);
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".tmp") && !n.ends_with(".lock"))
            .collect();
        names.sort();
        for name in names {
            self.file(&format!("{rel}/{name}"), None, immutable)?;
        }
        Ok(())
    }
}

impl Archive {
    /// Backs the archive up into `out` (made when missing; an earlier backup there is brought up
    /// to date). Runs beside a serving process. The operator's or a system administrator's.
    pub async fn backup(&self, actor: &Actor, out: &Path) -> Result<BackupSummary, ArchiveError> {
        actor.require_system_admin()?;
        let data = self.config.data_dir.clone();
        {
            use std::os::unix::fs::DirBuilderExt;
            // It holds the master key: for the owner alone.
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(out).map_err(io(out))?;
        }
        let earlier = read_manifest(out);
        let mut copier = Copier { data: &data, out, earlier, manifest: Vec::new(), summary: BackupSummary::default() };
        // 1. The catalog, consistent at one moment.
        copier.summary.catalog = match self.catalog.dialect() {
            coffer_catalog::Dialect::Sqlite => {
                let snapshot = out.join("catalog.sqlite");
                self.catalog.snapshot_to(&snapshot).await?;
                let (hash, size) = hash_file(&snapshot)?;
                copier.manifest.push((hash, "catalog.sqlite".into()));
                copier.summary.files += 1;
                copier.summary.copied += 1;
                copier.summary.bytes += size;
                copier.summary.bytes_copied += size;
                "SQLite snapshot (catalog.sqlite)".into()
            }
            coffer_catalog::Dialect::Postgres => format!(
                "PostgreSQL: not in this folder; it pairs with a pg_dump taken before {} (README: backups)",
                crate::service::rfc3339(now_secs())
            ),
        };
        // 2. Where the acknowledged records end now: at or past what the snapshot points to.
        let volumes = data.join("volumes");
        let open = coffer_store::Store::open_volume_ids(&volumes)?;
        let ends = self.catalog.acknowledged_ends(&open).await?;
        // 3. Keys and configuration sealed with them, then the volumes.
        let key = self.config.master_key_file.clone().unwrap_or_else(|| data.join("master.key"));
        copier.file_from(&key, "master.key", None, false)?;
        copier.folder("certs", false)?;
        copier.folder("secrets", false)?;
        copier.folder("volumes/dicts", true)?;
        if volumes.join("ARCHIVE").exists() {
            copier.file("volumes/ARCHIVE", None, false)?;
        }
        let backend = coffer_store::LocalDisk::new(volumes.clone());
        use coffer_store::SegmentStore;
        for volume in backend.volumes()? {
            // The description first: a volume closed after this point is copied as open.
            let meta = backend.read_meta(&volume)?.unwrap_or_default();
            let closed =
                serde_json::from_slice::<serde_json::Value>(&meta).ok().is_some_and(|m| m["state"] == "closed");
            let rel_meta = format!("volumes/{volume}/volume.json");
            std::fs::create_dir_all(out.join(format!("volumes/{volume}"))).map_err(io(out))?;
            std::fs::write(out.join(&rel_meta), &meta).map_err(io(out))?;
            copier.manifest.push((hex::encode(Sha256::digest(&meta)), rel_meta));
            copier.summary.files += 1;
            let segments = backend.segments(&volume)?;
            for (i, &segment) in segments.iter().enumerate() {
                let rel = format!("volumes/{volume}/{segment:06}.seg");
                let last_of_open = !closed && i + 1 == segments.len();
                if last_of_open {
                    let end = ends.get(&(volume.clone(), segment)).copied().unwrap_or(0);
                    let end = end.max(coffer_store::SEGMENT_HEADER_LEN as u64);
                    copier.file(&rel, Some(end), false)?;
                } else {
                    copier.file(&rel, None, true)?;
                }
            }
            // After the segments: their records' keys are written before them, so the copy holds
            // every copied record's key. It changes in place when a record is shredded, so it is
            // copied whole each time.
            if volumes.join(&volume).join("keyring").exists() {
                copier.file(&format!("volumes/{volume}/keyring"), None, false)?;
            }
        }
        copier.summary.created_at = now_secs();
        let mut manifest = String::new();
        for (hash, rel) in &copier.manifest {
            manifest.push_str(&format!("{hash}  {rel}\n"));
        }
        write_durably(&out.join(MANIFEST), manifest.as_bytes())?;
        let info = serde_json::to_vec_pretty(&copier.summary).expect("summary serialises");
        write_durably(&out.join(BACKUP_INFO), &info)?;
        let s = &copier.summary;
        let detail = format!(
            "backup to {}: {} files, {} copied ({} bytes), catalog: {}",
            out.display(),
            s.files,
            s.copied,
            s.bytes_copied,
            s.catalog
        );
        self.audit(actor, "backup", &detail).await?;
        Ok(copier.summary)
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let tmp = path.with_extension("partial");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreSummary {
    pub files: usize,
    pub bytes: u64,
}

/// Restores the backup in `from` into `data`, which must be missing or empty; every file's
/// SHA-256 is checked against the manifest as it is copied. Run `coffer verify` afterwards.
pub fn restore(from: &Path, data: &Path) -> Result<RestoreSummary, ArchiveError> {
    let manifest = std::fs::read_to_string(from.join(MANIFEST)).map_err(|_| {
        ArchiveError::Invalid(format!("{} holds no {MANIFEST}: it is not a Coffer backup", from.display()))
    })?;
    if std::fs::read_dir(data).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ArchiveError::Invalid(format!(
            "{} is not empty: restore into a new, empty data folder (nothing was written)",
            data.display()
        )));
    }
    let mut summary = RestoreSummary::default();
    let mut entries = Vec::new();
    for line in manifest.lines() {
        let (hash, rel) = line
            .split_once("  ")
            .ok_or_else(|| ArchiveError::Invalid(format!("{MANIFEST}: a line that is not `sha256  path`: {line:?}")))?;
        let rel_path = PathBuf::from(rel);
        if rel_path.is_absolute() || rel_path.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(ArchiveError::Invalid(format!("{MANIFEST}: {rel:?} is not a path inside the backup")));
        }
        let (actual, _) = hash_file(&from.join(rel))?;
        if actual != hash {
            return Err(ArchiveError::Invalid(format!(
                "{rel} in the backup does not match its SHA-256 in {MANIFEST}: the backup is damaged (nothing was restored)"
            )));
        }
        entries.push(rel_path);
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(data).map_err(io(data))?;
    }
    for rel in entries {
        let (n, _) = copy_prefix(&from.join(&rel), &data.join(&rel), None)?;
        summary.files += 1;
        summary.bytes += n;
    }
    Ok(summary)
}
