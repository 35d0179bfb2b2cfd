//! File import: EML files and folders of them, mbox files (mboxo, mboxrd, Content-Length),
//! Maildir (cur/new; Maildir++ subfolders become folders) and Outlook data files (PST, Unicode
//! format: each item rebuilt as MIME by `coffer-outlook`, in its folder, with the file's SHA-256
//! and the item's node id as where it came from). Parsing runs on all cores; commits go
//! through the same pipeline as every other source, so re-running an import adds nothing.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::ArchiveError;
use crate::ingest::{Pipeline, Prepared, Receipt, Source, Submission, prepare};

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub tenant: i64,
    /// The mailbox the messages belong to (e.g. `alice@contoso.com`), when known.
    pub mailbox: Option<String>,
    /// A folder to put everything under; discovered folders go beneath it.
    pub folder: Option<String>,
    /// Unwrap Exchange journal reports (and reports attached to bounces). On by default: an
    /// administrator importing files knows where they come from.
    pub journal: bool,
    /// Take every file whole, as one message: files that are not mail by their content (a PDF)
    /// are archived as they are instead of refusing the import, and a PST is kept as it is
    /// instead of read item by item.
    pub as_eml: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSummary {
    pub imported: u64,
    pub duplicates: u64,
    /// Archived, but unparseable or malformed: see `tag:unparseable`, `tag:malformed`.
    pub flagged: u64,
    pub failed: u64,
    /// Bytes read so far (all of them once the import is done).
    pub bytes: u64,
    /// Why the import stopped before the end (the disk is full, the catalog is unreachable):
    /// nothing more could be made durable. What was committed stays; running the same import
    /// again continues (duplicates are skipped).
    pub stopped: Option<String>,
}

pub enum ImportEvent<'a> {
    Stored {
        origin: &'a str,
        receipt: &'a Receipt,
    },
    Failed {
        origin: &'a str,
        error: &'a str,
    },
    /// After each committed batch.
    Progress(&'a ImportSummary),
}

/// One file found on disk, and how to read it.
#[derive(Debug, Clone)]
enum Input {
    Eml { path: PathBuf, folder: String },
    Mbox { path: PathBuf, folder: String },
    Pst { path: PathBuf, folder: String },
    Msg { path: PathBuf, folder: String },
}

/// Messages prepared per batch handed from the parsing threads to the committer.
const BATCH_MESSAGES: usize = 256;
const BATCH_BYTES: usize = 32 << 20;

/// Prepared messages (by origin) and the bytes they were read from.
type Batch = (Vec<(String, Result<Prepared, ArchiveError>)>, u64);

pub async fn import(
    pipeline: &Pipeline,
    paths: &[PathBuf],
    options: &ImportOptions,
    on_event: &mut (dyn FnMut(ImportEvent<'_>) + Send),
) -> Result<ImportSummary, ArchiveError> {
    let inputs = inputs(paths, options)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let options_for_reader = options.clone();
    let for_reader = pipeline.clone();
    let reader = tokio::task::spawn_blocking(move || read_all(inputs, &options_for_reader, &for_reader, tx));

    let mut summary = ImportSummary::default();
    'batches: while let Some((batch, batch_bytes)) = rx.recv().await {
        summary.bytes += batch_bytes;
        let mut commits = JoinSet::new();
        for (origin, prepared) in batch {
            match prepared {
                Ok(p) => {
                    let pipeline = pipeline.clone();
                    commits.spawn(async move { (origin, pipeline.commit(p).await) });
                }
                Err(e) => {
                    summary.failed += 1;
                    on_event(ImportEvent::Failed { origin: &origin, error: &e.to_string() });
                }
            }
        }
        while let Some(done) = commits.join_next().await {
            let (origin, result) = done.map_err(|e| ArchiveError::Internal(e.to_string()))?;
            match result {
                Ok(receipt) => {
                    if receipt.duplicate {
                        summary.duplicates += 1;
                    } else {
                        summary.imported += 1;
                    }
                    let f = receipt.flags;
                    if f.contains(coffer_mail::Flags::UNPARSEABLE) || f.contains(coffer_mail::Flags::MALFORMED) {
                        summary.flagged += 1;
                    }
                    on_event(ImportEvent::Stored { origin: &origin, receipt: &receipt });
                }
                // A storage failure stops the import at once: nothing more can be made durable now;
                // so does what an operator must look at.
                Err(e) if matches!(e.class(), crate::Class::Transient | crate::Class::Fatal) => {
                    summary.stopped = Some(e.to_string());
                    commits.abort_all();
                    break 'batches;
                }
                Err(e) => {
                    summary.failed += 1;
                    on_event(ImportEvent::Failed { origin: &origin, error: &e.to_string() });
                }
            }
        }
        on_event(ImportEvent::Progress(&summary));
    }
    // Stopped early: the reader stops at its next batch once nobody receives.
    drop(rx);
    let (bytes, read_failures) = reader.await.map_err(|e| ArchiveError::Internal(e.to_string()))?;
    if summary.stopped.is_some() {
        summary.bytes = bytes;
        return Ok(summary);
    }
    summary.bytes = bytes;
    for (origin, error) in read_failures {
        summary.failed += 1;
        on_event(ImportEvent::Failed { origin: &origin, error: &error });
    }
    Ok(summary)
}

/// Checks what an import of `paths` would read, without storing anything: the paths can be read
/// and hold only mail (unless `as_eml`).
pub fn check(paths: &[PathBuf], options: &ImportOptions) -> Result<(), ArchiveError> {
    inputs(paths, options).map(|_| ())
}

/// Finds the inputs under `paths`; files that are not mail refuse the whole import unless `as_eml`.
fn inputs(paths: &[PathBuf], options: &ImportOptions) -> Result<Vec<Input>, ArchiveError> {
    let mut inputs = Vec::new();
    let mut not_mail = Vec::new();
    for path in paths {
        discover(path, "", options.as_eml, &mut inputs, &mut not_mail)
            .map_err(|e| ArchiveError::Io(path.display().to_string(), e))?;
    }
    if !not_mail.is_empty() && !options.as_eml {
        return Err(ArchiveError::Invalid(refusal(&not_mail)));
    }
    Ok(inputs)
}

/// Reads every input, prepares its messages in parallel batches and hands them on. Returns the
/// bytes read and the files that could not be read.
fn read_all(
    inputs: Vec<Input>,
    options: &ImportOptions,
    pipeline: &Pipeline,
    tx: tokio::sync::mpsc::Sender<Batch>,
) -> (u64, Vec<(String, String)>) {
    let mut pending: Vec<Found> = Vec::new();
    let mut pending_bytes = 0usize;
    // Shared by the closures below: bytes of the inputs read so far.
    let total = std::cell::Cell::new(0u64);
    let mut failures = Vec::new();
    let limit = pipeline.max_message_bytes();
    let flush = |pending: &mut Vec<Found>| -> bool {
        // Taken per batch, so a dictionary trained meanwhile is used from the next batch on.
        let compressor = pipeline.compressor();
        let bytes = pending.iter().map(|f| f.read).sum();
        let batch = std::mem::take(pending)
            .into_par_iter()
            .map(|Found { origin, raw, folder, mbox, owner, item, .. }| {
                // Gmail's labels are its folders: the first is the message's placement, the
                // others are more (the mbox's own name says nothing then).
                let labels = if mbox { coffer_mail::mbox::gmail_labels(&raw) } else { Vec::new() };
                let Some((first, more)) = labels.split_first() else {
                    let mut sub = submission(options, raw, &folder);
                    // A PST's owner, unless the import names one.
                    if let Some(owner) = owner.filter(|_| options.mailbox.is_none()) {
                        sub.placement = Some((owner, sub.placement.map(|(_, f)| f).unwrap_or_default()));
                    }
                    sub.origin.item = item;
                    return (origin, prepare(sub, limit, &compressor));
                };
                let sub = submission(options, raw, first);
                let mut prepared = prepare(sub, limit, &compressor);
                if let Ok(p) = &mut prepared {
                    let mailbox = options.mailbox.clone().unwrap_or_default();
                    for label in more {
                        p.also_place(&mailbox, &join(options.folder.as_deref().unwrap_or(""), label));
                    }
                }
                (origin, prepared)
            })
            .collect();
        tx.blocking_send((batch, bytes)).is_ok()
    };
    let push = |found: Found, pending: &mut Vec<_>, pending_bytes: &mut usize| -> bool {
        total.set(total.get() + found.read);
        *pending_bytes += found.raw.len();
        pending.push(found);
        if pending.len() >= BATCH_MESSAGES || *pending_bytes >= BATCH_BYTES {
            *pending_bytes = 0;
            return flush(pending);
        }
        true
    };
    for input in inputs {
        match &input {
            Input::Eml { path, folder } => match std::fs::read(path) {
                Ok(raw) => {
                    let found = Found::new(path.display().to_string(), raw, folder, false);
                    if !push(found, &mut pending, &mut pending_bytes) {
                        return (total.get(), failures);
                    }
                }
                Err(e) => failures.push((path.display().to_string(), e.to_string())),
            },
            Input::Mbox { path, folder } => {
                let file = match std::fs::File::open(path) {
                    Ok(f) => f,
                    Err(e) => {
                        failures.push((path.display().to_string(), e.to_string()));
                        continue;
                    }
                };
                // SAFETY: the file is only read; an mbox changed by another program while being
                // imported yields odd messages, not memory unsafety beyond what mmap allows.
                let map = match unsafe { memmap2::Mmap::map(&file) } {
                    Ok(m) => m,
                    Err(e) => {
                        failures.push((path.display().to_string(), e.to_string()));
                        continue;
                    }
                };
                for (n, message) in coffer_mail::mbox::Mbox::new(&map).enumerate() {
                    let origin = format!("{}#{}", path.display(), n + 1);
                    if !push(Found::new(origin, message.into_owned(), folder, true), &mut pending, &mut pending_bytes) {
                        return (total.get(), failures);
                    }
                }
            }
            Input::Pst { path, folder } => {
                let hash = match file_sha256(path) {
                    Ok(h) => h,
                    Err(e) => {
                        failures.push((path.display().to_string(), e.to_string()));
                        continue;
                    }
                };
                let mut owner = String::new();
                let mut going = true;
                // Progress goes by the file's bytes: each item accounts for its share of them.
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                let (mut share, mut accounted) = (0u64, 0u64);
                // A reader that trips over damaged data in a hostile file stops this file only:
                // what it read stays, and the summary names the file.
                let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    coffer_outlook::read_pst(path, &mut |event| {
                        match event {
                            coffer_outlook::PstEvent::Store { display_name, items } => {
                                owner = display_name;
                                share = size / items.max(1) as u64;
                            }
                            coffer_outlook::PstEvent::Item(item) => {
                                let origin = format!("{}#node-{:x}", path.display(), item.node);
                                for problem in &item.problems {
                                    failures.push((origin.clone(), problem.clone()));
                                }
                                let mut found = Found::new(origin, item.mime, &join(folder, &item.folder), false);
                                found.owner = Some(owner.clone());
                                found.read = share.min(size - accounted);
                                accounted += found.read;
                                found.item = Some((format!("pst:{hash}"), format!("{:x}", item.node)));
                                going = push(found, &mut pending, &mut pending_bytes);
                            }
                            coffer_outlook::PstEvent::Damaged { folder: f, node, why } => {
                                let at = node.map(|n| format!("#node-{n:x}")).unwrap_or_default();
                                let place = if f.is_empty() { String::new() } else { format!(" (folder {f})") };
                                failures.push((format!("{}{at}{place}", path.display()), format!("not read: {why}")));
                            }
                        }
                        going
                    })
                }));
                // The rest of the file (what damaged items and the rounding left) is read too.
                let rest = size - accounted;
                total.set(total.get() + rest);
                if rest > 0 && tx.blocking_send((Vec::new(), rest)).is_err() {
                    return (total.get(), failures);
                }
                match read {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push((path.display().to_string(), e.to_string())),
                    Err(_) => failures.push((
                        path.display().to_string(),
                        "the PST reader stopped on damaged data; the items before it came in".to_owned(),
                    )),
                }
                if !going {
                    return (total.get(), failures);
                }
            }
            Input::Msg { path, folder } => {
                let read = file_sha256(path).map_err(|e| e.to_string()).and_then(|hash| {
                    let read = std::panic::catch_unwind(|| coffer_outlook::read_msg(path))
                        .map_err(|_| "the .msg reader stopped on damaged data".to_owned())?;
                    Ok((hash, read.map_err(|e| e.to_string())?))
                });
                match read {
                    Ok((hash, (_, mime))) => {
                        let mut found = Found::new(path.display().to_string(), mime, folder, false);
                        found.item = Some((format!("msg:{hash}"), "item".into()));
                        if !push(found, &mut pending, &mut pending_bytes) {
                            return (total.get(), failures);
                        }
                    }
                    Err(why) => failures.push((path.display().to_string(), why)),
                }
            }
        }
    }
    if !pending.is_empty() {
        flush(&mut pending);
    }
    (total.get(), failures)
}

/// A message found in an input, on its way to the parsing threads.
struct Found {
    /// Where it came from, for the summary (`file`, `file#3`, `file#node-200024`).
    origin: String,
    raw: Vec<u8>,
    folder: String,
    /// Read from an mbox: a Google Takeout mbox files it by its labels.
    mbox: bool,
    /// From a PST: the store's owner (its display name), the mailbox unless the import names one.
    owner: Option<String>,
    /// From an Outlook file: where in it (`pst:<SHA-256 of the file>`, node id; `msg:<SHA-256>`).
    item: Option<(String, String)>,
    /// The bytes of the input it accounts for (for progress): its own, or a PST item's share.
    read: u64,
}

impl Found {
    fn new(origin: String, raw: Vec<u8>, folder: &str, mbox: bool) -> Found {
        let read = raw.len() as u64;
        Found { origin, raw, folder: folder.to_owned(), mbox, owner: None, item: None, read }
    }
}

/// The SHA-256 of a file, read in pieces.
fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hash = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hash)?;
    Ok(hex::encode(hash.finalize()))
}

fn submission(options: &ImportOptions, raw: Vec<u8>, discovered: &str) -> Submission {
    let folder = [options.folder.as_deref().unwrap_or(""), discovered]
        .iter()
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    let mailbox = options.mailbox.clone().unwrap_or_default();
    Submission {
        tenant: options.tenant,
        source: Source::Import,
        raw,
        envelope: Vec::new(),
        envelope_from: None,
        placement: (!mailbox.is_empty() || !folder.is_empty()).then_some((mailbox, folder)),
        journal: options.journal,
        origin: crate::ingest::Origin::default(),
    }
}

/// What a file is when its first bytes say it is not mail, whatever its name, and how to bring
/// its mail in.
/// The signature of a compound file (OLE): Outlook items (.msg), old Office documents.
const CFB: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

pub fn not_mail(head: &[u8]) -> Option<&'static str> {
    if is_ost(head) {
        return Some(
            "an Outlook offline folder file (OST); Coffer cannot read it yet: convert it with `readpst -e -o DIR FILE` (Debian's pst-utils) and import DIR",
        );
    }
    if head.starts_with(CFB) {
        return Some("an OLE compound document (an old Office file?) that is not an Outlook item, not mail");
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Some("a zip archive; unpack it and import the folder (the console's Import unpacks a zip itself)");
    }
    if head.starts_with(&[0x1F, 0x8B]) {
        return Some("a gzip file; decompress it and import what it holds");
    }
    if head.starts_with(b"%PDF-") {
        return Some("a PDF document, not mail");
    }
    None
}

/// An Outlook data file (PST), by its magic and client signature.
fn is_pst(head: &[u8]) -> bool {
    head.starts_with(b"!BDN") && head.get(8..10) == Some(b"SM")
}

fn is_ost(head: &[u8]) -> bool {
    head.starts_with(b"!BDN") && head.get(8..10) == Some(b"SO")
}

/// The refusal of an import that found files that are not mail: each named, with what to do.
fn refusal(not_mail: &[(PathBuf, &str)]) -> String {
    const LISTED: usize = 20;
    let mut text = format!(
        "nothing was imported: {} {} not mail",
        not_mail.len(),
        if not_mail.len() == 1 { "file is" } else { "files are" }
    );
    for (path, what) in not_mail.iter().take(LISTED) {
        text.push_str(&format!("\n  {}: {what}", path.display()));
    }
    if not_mail.len() > LISTED {
        text.push_str(&format!("\n  and {} more", not_mail.len() - LISTED));
    }
    text.push_str("\nto archive such files as they are, each as one message flagged unparseable, import with --as-eml");
    text
}

/// Finds the inputs under `path`; `folder` is the folder path discovered so far. Files whose
/// content is not mail go to `not_mail` with what they are.
fn discover(
    path: &Path,
    folder: &str,
    as_eml: bool,
    out: &mut Vec<Input>,
    not_mail: &mut Vec<(PathBuf, &'static str)>,
) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        // A `.eml` file is one message even when it starts with a `From ` postmark line (as the
        // SpamAssassin corpus does): its bytes are kept whole.
        let is_eml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("eml"));
        let mut head = [0u8; 512];
        let n = std::io::Read::read(&mut std::fs::File::open(path)?, &mut head)?;
        let pst = !as_eml && is_pst(&head[..n]);
        let compound = (!as_eml && head[..n].starts_with(CFB)).then(|| coffer_outlook::compound_kind(path));
        let msg = compound == Some(coffer_outlook::CompoundKind::OutlookItem);
        let what = match compound {
            Some(coffer_outlook::CompoundKind::Damaged) => {
                Some("a compound (OLE) file whose directory cannot be read: a damaged .msg or Office document")
            }
            _ => self::not_mail(&head[..n]),
        };
        if let Some(what) = what.filter(|_| !pst && !msg) {
            not_mail.push((path.into(), what));
        }
        if pst {
            out.push(Input::Pst { path: path.into(), folder: folder.into() });
        } else if msg {
            out.push(Input::Msg { path: path.into(), folder: folder.into() });
        } else if !is_eml && coffer_mail::mbox::looks_like_mbox(&head[..n]) {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            out.push(Input::Mbox { path: path.into(), folder: join(folder, &name) });
        } else {
            out.push(Input::Eml { path: path.into(), folder: folder.into() });
        }
        return Ok(());
    }
    if is_maildir(path) {
        return discover_maildir(path, folder, out);
    }
    for entry in sorted_entries(path)? {
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        let sub = if entry.is_dir() { join(folder, &name) } else { folder.to_owned() };
        discover(&entry, &sub, as_eml, out, not_mail)?;
    }
    Ok(())
}

fn is_maildir(path: &Path) -> bool {
    path.join("cur").is_dir() || path.join("new").is_dir()
}

/// Maildir++: the root is the inbox; `.Sent` and `.Projects.Alpha` are `Sent` and `Projects/Alpha`.
fn discover_maildir(root: &Path, folder: &str, out: &mut Vec<Input>) -> std::io::Result<()> {
    let mut add_messages = |dir: &Path, name: &str| -> std::io::Result<()> {
        for sub in ["cur", "new"] {
            let d = dir.join(sub);
            if d.is_dir() {
                for file in sorted_entries(&d)? {
                    if file.is_file() {
                        out.push(Input::Eml { path: file, folder: join(folder, name) });
                    }
                }
            }
        }
        Ok(())
    };
    add_messages(root, "Inbox")?;
    for entry in sorted_entries(root)? {
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(sub) = name.strip_prefix('.')
            && !sub.is_empty()
            && entry.is_dir()
            && is_maildir(&entry)
        {
            add_messages(&entry, &sub.replace('.', "/"))?;
        }
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    Ok(entries)
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}
