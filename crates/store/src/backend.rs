//! Where volumes' bytes live. The store's logic (writer, recovery, reader, verifier) speaks only
//! this trait; the local disk is the first backend, and object storage will be a sibling. Every
//! backend passes the same contract tests (`tests/backend.rs`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{Result, StoreError, io_err};

/// A volume's files: its description (`volume.json`) and its numbered, append-only segments.
pub trait SegmentStore: Send + Sync {
    /// The ids of the volumes present.
    fn volumes(&self) -> Result<Vec<String>>;
    /// Claims a new volume id: true when this caller made it, false when it exists already (then
    /// the caller picks another), so two writers sharing the storage never both take one id.
    fn claim_volume(&self, volume: &str) -> Result<bool>;
    /// The volume's description, None while a claimed volume has none yet.
    fn read_meta(&self, volume: &str) -> Result<Option<Vec<u8>>>;
    /// Replaces the description at once: a reader sees the old one or the new one, never a mix.
    fn write_meta(&self, volume: &str, bytes: &[u8]) -> Result<()>;
    /// The volume's segment numbers, ascending.
    fn segments(&self, volume: &str) -> Result<Vec<u32>>;
    fn segment_len(&self, volume: &str, segment: u32) -> Result<u64>;
    fn read_segment(&self, volume: &str, segment: u32) -> Result<Vec<u8>>;
    fn read_at(&self, volume: &str, segment: u32, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// A new segment holding `header`, durable; refused when the segment exists.
    fn create_segment(&self, volume: &str, segment: u32, header: &[u8]) -> Result<Box<dyn SegmentAppender>>;
    /// Appends to an existing segment (after a restart).
    fn append_to(&self, volume: &str, segment: u32) -> Result<Box<dyn SegmentAppender>>;
    /// Cuts a segment back to `len` bytes; the bytes cut are kept aside for forensics.
    fn cut(&self, volume: &str, segment: u32, len: u64) -> Result<()>;
    /// Writes `bytes` at `offset` of the volume's keyring (made on first use), durably.
    fn write_keyring(&self, volume: &str, offset: u64, bytes: &[u8]) -> Result<()>;
    /// Up to `len` bytes of the keyring from `offset`: fewer where it ends, none before it exists.
    fn read_keyring(&self, volume: &str, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// Cuts the keyring back to `len` bytes (entries of records that were never written).
    fn cut_keyring(&self, volume: &str, len: u64) -> Result<()>;
    /// Where a segment is, for messages an operator acts on.
    fn describe(&self, volume: &str, segment: u32) -> String;
}

/// The open end of a segment.
pub trait SegmentAppender: Send {
    /// Appends `bytes` and makes them durable; on failure the segment is left as it was before.
    fn append(&mut self, bytes: &[u8]) -> Result<()>;
}

/// Volumes as folders of a local file system: `<root>/<volume>/volume.json`,
/// `<root>/<volume>/<segment:06>.seg` and `<root>/<volume>/keyring`. Every change is fsynced, the folder entry included.
pub struct LocalDisk {
    root: PathBuf,
}

impl LocalDisk {
    pub fn new(root: PathBuf) -> LocalDisk {
        LocalDisk { root }
    }

    fn segment_path(&self, volume: &str, segment: u32) -> PathBuf {
        self.root.join(volume).join(format!("{segment:06}.seg"))
    }
}

impl SegmentStore for LocalDisk {
    fn volumes(&self) -> Result<Vec<String>> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let entry = entry.map_err(io_err(&self.root))?;
            if entry.path().join("volume.json").exists() {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn claim_volume(&self, volume: &str) -> Result<bool> {
        std::fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let dir = self.root.join(volume);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                sync_dir(&self.root)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(&dir)(e)),
        }
    }

    fn read_meta(&self, volume: &str) -> Result<Option<Vec<u8>>> {
        let path = self.root.join(volume).join("volume.json");
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn write_meta(&self, volume: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.root.join(volume);
        let tmp = dir.join("volume.json.tmp");
        let path = dir.join("volume.json");
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(bytes).and_then(|_| file.sync_all()).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&dir)
    }

    fn segments(&self, volume: &str) -> Result<Vec<u32>> {
        let dir = self.root.join(volume);
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let name = entry.map_err(io_err(&dir))?.file_name();
            if let Some(n) = name.to_string_lossy().strip_suffix(".seg").and_then(|n| n.parse().ok()) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    fn segment_len(&self, volume: &str, segment: u32) -> Result<u64> {
        let path = self.segment_path(volume, segment);
        std::fs::metadata(&path).map(|m| m.len()).map_err(io_err(&path))
    }

    fn read_segment(&self, volume: &str, segment: u32) -> Result<Vec<u8>> {
        let path = self.segment_path(volume, segment);
        std::fs::read(&path).map_err(io_err(&path))
    }

    fn read_at(&self, volume: &str, segment: u32, offset: u64, len: usize) -> Result<Vec<u8>> {
        let path = self.segment_path(volume, segment);
        let file = File::open(&path).map_err(io_err(&path))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).map_err(io_err(&path))?;
        Ok(buf)
    }

    fn create_segment(&self, volume: &str, segment: u32, header: &[u8]) -> Result<Box<dyn SegmentAppender>> {
        let path = self.segment_path(volume, segment);
        let mut file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io_err(&path))?;
        file.write_all(header).and_then(|_| file.sync_all()).map_err(io_err(&path))?;
        sync_dir(&self.root.join(volume))?;
        Ok(Box::new(LocalSegment { file, path }))
    }

    fn append_to(&self, volume: &str, segment: u32) -> Result<Box<dyn SegmentAppender>> {
        let path = self.segment_path(volume, segment);
        let file = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
        Ok(Box::new(LocalSegment { file, path }))
    }

    fn cut(&self, volume: &str, segment: u32, len: u64) -> Result<()> {
        let path = self.segment_path(volume, segment);
        let data = std::fs::read(&path).map_err(io_err(&path))?;
        let Some(cut) = data.get(len as usize..).filter(|c| !c.is_empty()) else { return Ok(()) };
        let aside = path.with_extension(format!("seg.torn-{len}"));
        std::fs::write(&aside, cut).map_err(io_err(&aside))?;
        let file = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
        file.set_len(len).and_then(|_| file.sync_all()).map_err(io_err(&path))?;
        tracing::warn!(segment = %path.display(), bytes = cut.len(), kept = %aside.display(), "cut a torn tail");
        Ok(())
    }

    fn write_keyring(&self, volume: &str, offset: u64, bytes: &[u8]) -> Result<()> {
        let path = self.root.join(volume).join("keyring");
        let created = !path.exists();
        let file = OpenOptions::new().create(true).write(true).truncate(false).open(&path).map_err(io_err(&path))?;
        file.write_all_at(bytes, offset).and_then(|_| file.sync_data()).map_err(io_err(&path))?;
        if created {
            sync_dir(&self.root.join(volume))?;
        }
        Ok(())
    }

    fn read_keyring(&self, volume: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let path = self.root.join(volume).join("keyring");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let size = file.metadata().map_err(io_err(&path))?.len();
        // Never more than the file holds, whatever was asked.
        let len = (len as u64).min(size.saturating_sub(offset)) as usize;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).map_err(io_err(&path))?;
        Ok(buf)
    }

    fn cut_keyring(&self, volume: &str, len: u64) -> Result<()> {
        let path = self.root.join(volume).join("keyring");
        match OpenOptions::new().write(true).open(&path) {
            Ok(file) if file.metadata().map_err(io_err(&path))?.len() > len => {
                file.set_len(len).and_then(|_| file.sync_all()).map_err(io_err(&path))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn describe(&self, volume: &str, segment: u32) -> String {
        self.segment_path(volume, segment).display().to_string()
    }
}

struct LocalSegment {
    file: File,
    path: PathBuf,
}

impl SegmentAppender for LocalSegment {
    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let start = self.file.metadata().map_err(io_err(&self.path))?.len();
        if let Err(e) = self.file.write_all(bytes).and_then(|_| self.file.sync_data()) {
            // Leave the segment as it was before the batch: no half record stays behind.
            let _ = self.file.set_len(start);
            let _ = self.file.sync_data();
            return Err(StoreError::Io { path: self.path.display().to_string(), source: e });
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}
