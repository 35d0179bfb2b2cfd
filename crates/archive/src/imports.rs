//! Imports started from the console or the API: an uploaded file — an mbox, one message, or a
//! zip of EML files or of a Maildir — is staged under `<data>/spool/imports/<id>`, checked before
//! anything is stored (a zip unpacks only inside its folder and within a bound; Outlook files and
//! other non-mail are refused with what to do), then imported by [`crate::import::import`], the
//! same path as `coffer import`. Two run at once and a few more wait their turn; each keeps its
//! progress, summary and first failures for the console, and its start and end are audited.
//!
//! The queue lives in the serving process: an import cut by a restart is uploaded again, and
//! re-running an import adds nothing. Whatever a crash left in the spool is removed at the next
//! writing open.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::import::{ImportEvent, ImportOptions, ImportSummary};
use crate::service::{Actor, Archive, blocking, now_secs};
use crate::{ArchiveError, Role};

/// Imports that run at once; more wait for a slot.
pub const RUNNING_AT_ONCE: usize = 2;
/// Imports that may wait for a slot; one more is refused until one finishes.
pub const WAITING_AT_MOST: usize = 16;
/// A zip may expand to at most this many times its own size, and hold at most this many entries.
const ZIP_EXPANSION: u64 = 20;
const ZIP_ENTRIES: usize = 200_000;
/// Finished imports kept for the list, and failures kept per import.
const FINISHED_KEPT: usize = 50;
const FAILURES_KEPT: usize = 20;
/// Most characters of a mailbox, a folder, and an uploaded file's name.
const MAX_MAILBOX: usize = 320;
const MAX_FOLDER: usize = 1000;
const MAX_NAME: usize = 200;

/// One import as the console and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct ImportJob {
    pub id: u64,
    #[serde(skip)]
    pub tenant: i64,
    /// The uploaded file's name.
    pub file: String,
    /// The upload's size in bytes.
    pub bytes: u64,
    /// What the import reads: the upload, or what its zip unpacked to (the summary's `bytes`
    /// counts up to it).
    pub to_read: u64,
    /// Who started it.
    pub by: String,
    pub mailbox: Option<String>,
    pub folder: Option<String>,
    /// `waiting`, `running`, `done` (see the summary: messages may have failed) or `failed`.
    pub state: String,
    /// Unix seconds.
    pub started: i64,
    pub finished: Option<i64>,
    /// Counts so far; final once the state is `done` or `failed`.
    pub summary: ImportSummary,
    /// The first failed messages, each as `origin: why`.
    pub failures: Vec<String>,
    /// Why the whole import failed or stopped early.
    pub error: Option<String>,
}

/// The imports of this serving process.
pub struct ImportQueue {
    jobs: std::sync::Mutex<Vec<ImportJob>>,
    slots: Arc<tokio::sync::Semaphore>,
    next: AtomicU64,
}

impl Default for ImportQueue {
    fn default() -> Self {
        ImportQueue {
            jobs: Default::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(RUNNING_AT_ONCE)),
            next: AtomicU64::new(1),
        }
    }
}

/// An upload's place in the spool; removed with everything in it when dropped.
pub struct Staged {
    id: u64,
    dir: PathBuf,
    name: String,
}

impl Staged {
    /// Where the front end writes the upload.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "an import's spool could not be removed");
        }
    }
}

/// What the person starting an import chose.
#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    /// The tenant to import into, by name (administrators of the default tenant); default: the
    /// actor's own.
    pub tenant: Option<String>,
    pub mailbox: Option<String>,
    pub folder: Option<String>,
    /// Archive files that are not mail (a PST, a PDF) as single messages instead of refusing.
    pub as_eml: bool,
}

fn spool(data: &Path) -> PathBuf {
    data.join("spool").join("imports")
}

/// Removes what imports cut by a crash or a restart left in the spool (at a writing open).
pub(crate) fn clear_spool(data: &Path) -> Result<(), ArchiveError> {
    let dir = spool(data);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ArchiveError::Io(dir.display().to_string(), e)),
        _ => Ok(()),
    }
}

/// The last part of a client's file name, without control characters, bounded; never a name
/// that walks out of its folder.
pub fn upload_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|c| !c.is_control()).take(MAX_NAME).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." { "upload".into() } else { clean.into() }
}

impl ImportQueue {
    /// A place in the spool for an upload named `name` (as the client named it).
    pub fn stage(&self, archive: &Archive, name: &str) -> Result<Staged, ArchiveError> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let dir = spool(archive.data_dir()).join(id.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| ArchiveError::Io(dir.display().to_string(), e))?;
        Ok(Staged { id, dir, name: upload_name(name) })
    }

    /// The imports `actor` may see: their tenant's, or every tenant's for a system administrator;
    /// newest first.
    pub fn list(&self, actor: &Actor) -> Result<Vec<ImportJob>, ArchiveError> {
        actor.require(Role::Administrator)?;
        let jobs = self.jobs.lock().unwrap();
        Ok(jobs.iter().rev().filter(|j| j.tenant == actor.tenant.id || actor.is_system_admin()).cloned().collect())
    }

    pub fn get(&self, actor: &Actor, id: u64) -> Result<ImportJob, ArchiveError> {
        self.list(actor)?.into_iter().find(|j| j.id == id).ok_or(ArchiveError::NotFound)
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut ImportJob)) {
        if let Some(job) = self.jobs.lock().unwrap().iter_mut().find(|j| j.id == id) {
            f(job);
        }
    }

    /// Adds a job unless too many wait; forgets the oldest finished ones.
    fn enqueue(&self, job: ImportJob) -> Result<(), ArchiveError> {
        let mut jobs = self.jobs.lock().unwrap();
        let waiting = jobs.iter().filter(|j| j.state == "waiting").count();
        if waiting >= WAITING_AT_MOST {
            return Err(ArchiveError::Saturated(format!(
                "{waiting} imports are waiting already; start this one when one has finished"
            )));
        }
        jobs.push(job);
        let finished = jobs.iter().filter(|j| j.finished.is_some()).count();
        let mut surplus = finished.saturating_sub(FINISHED_KEPT);
        jobs.retain(|j| {
            let drop = surplus > 0 && j.finished.is_some();
            surplus -= drop as usize;
            !drop
        });
        Ok(())
    }
}

/// Checks a staged upload and queues its import into the actor's tenant. Refused before anything
/// is stored: a zip that does not unpack safely, files that are not mail (unless `as_eml`), too
/// many imports waiting.
pub async fn start(
    archive: &Arc<Archive>,
    actor: &Actor,
    staged: Staged,
    options: UploadOptions,
) -> Result<ImportJob, ArchiveError> {
    actor.require(Role::Administrator)?;
    let tenant = match bounded("tenant", options.tenant, MAX_NAME)? {
        Some(name) => archive.tenant(Some(&name)).await?,
        None => actor.tenant.clone(),
    };
    actor.require_in(Role::Administrator, tenant.id)?;
    let mailbox = bounded("mailbox", options.mailbox, MAX_MAILBOX)?;
    let folder = bounded("folder", options.folder, MAX_FOLDER)?;
    let import_options = ImportOptions {
        tenant: tenant.id,
        mailbox: mailbox.clone(),
        folder: folder.clone(),
        journal: true,
        as_eml: options.as_eml,
    };
    let upload = staged.path();
    let bytes = std::fs::metadata(&upload).map_err(|e| ArchiveError::Io(staged.name.clone(), e))?.len();
    let (input, to_read, staged) = {
        let options = import_options.clone();
        blocking(move || -> Result<(PathBuf, u64, Staged), ArchiveError> {
            let (input, to_read) = match unpack_if_zip(&staged)? {
                Some(unpacked) => unpacked,
                None => (staged.path(), bytes),
            };
            crate::import::check(std::slice::from_ref(&input), &options).map_err(|e| in_upload(e, &staged))?;
            Ok((input, to_read, staged))
        })
        .await??
    };
    let job = ImportJob {
        id: staged.id,
        tenant: tenant.id,
        file: staged.name.clone(),
        bytes,
        to_read,
        by: actor.name.clone(),
        mailbox,
        folder,
        state: "waiting".into(),
        started: now_secs(),
        finished: None,
        summary: ImportSummary::default(),
        failures: Vec::new(),
        error: None,
    };
    archive.imports().enqueue(job.clone())?;
    if let Err(e) = archive.audit(actor, "import started", &describe(&job, &tenant.name)).await {
        // Nothing runs unaudited: the job ends here, and the upload goes with `staged`.
        archive.imports().update(job.id, |j| {
            j.state = "failed".into();
            j.error = Some(format!("the start could not be audited: {e}"));
            j.finished = Some(now_secs());
        });
        return Err(e);
    }
    tokio::spawn(run(archive.clone(), actor.clone(), staged, input, import_options));
    Ok(job)
}

fn bounded(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ArchiveError> {
    let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    match value {
        Some(v) if v.chars().count() > max => Err(ArchiveError::Invalid(format!("{field}: at most {max} characters"))),
        Some(v) if v.chars().any(char::is_control) => {
            Err(ArchiveError::Invalid(format!("{field}: no control characters")))
        }
        v => Ok(v),
    }
}

fn describe(job: &ImportJob, tenant: &str) -> String {
    let mut text = format!("{} ({} bytes) into tenant {tenant}", job.file, job.bytes);
    if let Some(m) = &job.mailbox {
        text.push_str(&format!(", mailbox {m}"));
    }
    if let Some(f) = &job.folder {
        text.push_str(&format!(", folder {f}"));
    }
    text
}

/// Refusals and failures name files as the uploader knows them, never the spool's paths.
fn in_upload(e: ArchiveError, staged: &Staged) -> ArchiveError {
    match e {
        ArchiveError::Invalid(m) => ArchiveError::Invalid(relative(&m, staged)),
        other => other,
    }
}

fn relative(text: &str, staged: &Staged) -> String {
    let prefix = format!("{}/", staged.dir.display());
    text.replace(&prefix, "")
}

async fn run(archive: Arc<Archive>, actor: Actor, staged: Staged, input: PathBuf, options: ImportOptions) {
    let queue = archive.imports();
    let id = staged.id;
    let Ok(_slot) = queue.slots.clone().acquire_owned().await else { return };
    queue.update(id, |j| j.state = "running".into());
    let mut on_event = |event: ImportEvent<'_>| match event {
        ImportEvent::Progress(summary) => queue.update(id, |j| j.summary = summary.clone()),
        // The counts come with the next progress; only the first failures are kept in words.
        ImportEvent::Failed { origin, error } => queue.update(id, |j| {
            if j.failures.len() < FAILURES_KEPT {
                j.failures.push(relative(&format!("{origin}: {error}"), &staged));
            }
        }),
        ImportEvent::Stored { .. } => {}
    };
    let outcome = crate::import::import(&archive.pipeline(), &[input], &options, &mut on_event).await;
    let (state, error, summary) = match outcome {
        Ok(summary) => {
            let state = if summary.stopped.is_some() { "failed" } else { "done" };
            (state, summary.stopped.clone(), Some(summary))
        }
        Err(e) => ("failed", Some(relative(&e.to_string(), &staged)), None),
    };
    queue.update(id, |j| {
        j.state = state.into();
        j.error = error.clone();
        if let Some(s) = summary {
            j.summary = s;
        }
        j.finished = Some(now_secs());
    });
    let job = queue.jobs.lock().unwrap().iter().find(|j| j.id == id).cloned();
    if let Some(job) = job {
        let s = &job.summary;
        let mut detail = format!(
            "{}: {}, imported {}, duplicates {}, flagged {}, failed {}",
            job.file, job.state, s.imported, s.duplicates, s.flagged, s.failed
        );
        if let Some(e) = &job.error {
            detail.push_str(&format!("; {e}"));
        }
        if let Err(e) = archive.audit(&actor, "import finished", &detail).await {
            tracing::error!(error = %e, import = id, "the end of an import could not be audited");
        }
    }
    drop(staged);
}

/// A zip is unpacked beside it (and removed): what to import and its size. None for anything
/// else, imported as it is.
fn unpack_if_zip(staged: &Staged) -> Result<Option<(PathBuf, u64)>, ArchiveError> {
    let upload = staged.path();
    let io = |e: std::io::Error| ArchiveError::Io(staged.name.clone(), e);
    let mut head = [0u8; 4];
    let n = std::fs::File::open(&upload).and_then(|mut f| f.read(&mut head)).map_err(io)?;
    if !(head[..n].starts_with(b"PK\x03\x04") || head[..n].starts_with(b"PK\x05\x06")) {
        return Ok(None);
    }
    let into = staged.dir.join("unpacked");
    let unpacked = unpack_zip(&upload, &into)
        .map_err(|why| ArchiveError::Invalid(format!("{}: {why}; nothing was imported", staged.name)))?;
    std::fs::remove_file(&upload).map_err(io)?;
    // A zip of one folder (a Maildir zipped with its name, say) is that folder: its name is the
    // wrapping, not a folder of the mail.
    let entries: Vec<PathBuf> =
        std::fs::read_dir(&into).map_err(io)?.filter_map(|e| e.ok().map(|e| e.path())).take(2).collect();
    match entries.as_slice() {
        [only] if only.is_dir() => Ok(Some((only.clone(), unpacked))),
        _ => Ok(Some((into, unpacked))),
    }
}

/// Unpacks a zip into `into`: only names inside it, at most [`ZIP_ENTRIES`] entries and
/// [`ZIP_EXPANSION`] times the zip's size in all (counted as written, whatever the zip claims).
/// Links and folders are not made; every entry becomes a plain file. Returns the bytes written.
pub fn unpack_zip(zip: &Path, into: &Path) -> Result<u64, String> {
    let file = std::fs::File::open(zip).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let budget = size.saturating_mul(ZIP_EXPANSION);
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("not a readable zip ({e})"))?;
    if archive.len() > ZIP_ENTRIES {
        return Err(format!("the zip holds {} entries, more than {ZIP_ENTRIES}", archive.len()));
    }
    std::fs::create_dir_all(into).map_err(|e| e.to_string())?;
    let mut written = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| format!("entry {} cannot be read ({e})", i + 1))?;
        let Some(name) = entry.enclosed_name() else {
            return Err(format!("the entry {:?} points outside the zip's own folder", entry.name()));
        };
        if entry.is_dir() || entry.is_symlink() {
            continue;
        }
        let path = into.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut out = std::fs::File::create_new(&path)
            .map_err(|e| format!("the entry {:?} cannot be written ({e})", entry.name()))?;
        let left = budget.saturating_sub(written);
        let copied = std::io::copy(&mut (&mut entry).take(left + 1), &mut out)
            .map_err(|e| format!("the entry {:?} is damaged ({e})", entry.name()))?;
        written += copied;
        if written > budget {
            return Err(format!("the zip expands to more than {ZIP_EXPANSION} times its size"));
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upload.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        (dir, path)
    }

    #[test]
    fn a_zip_of_a_maildir_unpacks_with_its_folders() {
        let (dir, zip) = zip_of(&[("Maildir/cur/1:2,S", b"Subject: a\r\n\r\na\r\n"), ("Maildir/.Sent/cur/2", b"x")]);
        let into = dir.path().join("out");
        unpack_zip(&zip, &into).unwrap();
        assert_eq!(std::fs::read(into.join("Maildir/cur/1:2,S")).unwrap(), b"Subject: a\r\n\r\na\r\n");
        assert!(into.join("Maildir/.Sent/cur/2").is_file());
    }

    #[test]
    fn a_zip_entry_that_climbs_out_of_its_folder_is_refused_and_nothing_is_written_outside() {
        let (dir, zip) = zip_of(&[("../escaped.eml", b"x")]);
        let into = dir.path().join("out");
        let why = unpack_zip(&zip, &into).unwrap_err();
        assert!(why.contains("outside"), "{why}");
        assert!(!dir.path().join("escaped.eml").exists());
    }

    #[test]
    fn a_zip_bomb_stops_at_twenty_times_its_size() {
        let zeros = vec![0u8; 8 << 20];
        let (dir, zip) = zip_of(&[("bomb.eml", &zeros)]);
        assert!(std::fs::metadata(&zip).unwrap().len() * ZIP_EXPANSION < zeros.len() as u64);
        let into = dir.path().join("out");
        let why = unpack_zip(&zip, &into).unwrap_err();
        assert!(why.contains("20 times"), "{why}");
        let written = std::fs::metadata(into.join("bomb.eml")).unwrap().len();
        assert!(written <= std::fs::metadata(&zip).unwrap().len() * ZIP_EXPANSION + 1, "{written}");
    }

    #[test]
    fn a_damaged_zip_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.zip");
        std::fs::write(&path, b"PK\x03\x04 not really a zip").unwrap();
        assert!(unpack_zip(&path, &dir.path().join("out")).unwrap_err().contains("not a readable zip"));
    }

    #[test]
    fn upload_names_keep_only_their_last_part() {
        assert_eq!(upload_name("../../etc/passwd"), "passwd");
        assert_eq!(upload_name("C:\\Users\\me\\Inbox.mbox"), "Inbox.mbox");
        assert_eq!(upload_name(".."), "upload");
        assert_eq!(upload_name("a\u{0}b\nc.eml"), "abc.eml");
        assert_eq!(upload_name(&"x".repeat(500)).len(), MAX_NAME);
    }
}
