//! Extraction in a worker process. A parser that meets a hostile document may loop, allocate
//! what the file claims, or crash; in a child process with a CPU-time and address-space limit
//! (and a wall-clock limit the parent enforces) that costs one attachment, never the indexer.
//! The worker is the `coffer` binary itself (`coffer extract-worker`): it reads one attachment
//! on stdin and writes its type, outcome and text on stdout.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

use crate::{Extracted, FILETYPES, MAX_TEXT};

/// `[extract]` in coffer.toml: the limits of each attachment's extraction.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ExtractConfig {
    /// Seconds one attachment may take, in CPU time and on the clock.
    pub time_limit_seconds: u64,
    /// Memory (address space) of the worker reading one attachment, in MiB.
    pub memory_limit_mib: u64,
    /// Read the text of attached pictures with Tesseract (Debian's `tesseract-ocr`), in a queue
    /// of its own after plain indexing.
    pub ocr: bool,
    /// Tesseract's languages, `+` between them (`eng+deu`; each needs its `tesseract-ocr-*` package).
    pub ocr_languages: String,
    /// The worker's program and arguments; set by the binary (itself), not by the file. Unset,
    /// extraction stays in the process and PDFs are only named.
    #[serde(skip)]
    pub worker: Option<(PathBuf, Vec<OsString>)>,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            time_limit_seconds: 30,
            memory_limit_mib: 1024,
            ocr: false,
            ocr_languages: "eng".into(),
            worker: None,
        }
    }
}

impl ExtractConfig {
    /// Checks what the file says; the error says how to fix it.
    pub fn check(&self) -> Result<(), String> {
        let languages = &self.ocr_languages;
        let fine = !languages.is_empty()
            && languages.split('+').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !fine {
            return Err(format!(
                "[extract] ocr_languages = {languages:?}: give Tesseract's language codes joined by +, like \"eng+deu\""
            ));
        }
        Ok(())
    }
}

/// Where attachments are read: in this process (bounded parsers only) or in a worker.
#[derive(Debug, Clone)]
pub enum Extractor {
    InProcess,
    Worker(Worker),
}

#[derive(Debug, Clone)]
pub struct Worker {
    program: PathBuf,
    args: Vec<OsString>,
    time: Duration,
    memory: u64,
    /// Tesseract's languages, when OCR is on.
    ocr: Option<String>,
}

impl Extractor {
    pub fn new(config: &ExtractConfig) -> Extractor {
        match &config.worker {
            None => Extractor::InProcess,
            Some((program, args)) => Extractor::Worker(Worker {
                program: program.clone(),
                args: args.clone(),
                time: Duration::from_secs(config.time_limit_seconds.max(1)),
                memory: config.memory_limit_mib.max(64) << 20,
                ocr: config.ocr.then(|| config.ocr_languages.clone()),
            }),
        }
    }

    /// The type and text of one attachment; None when it is of no type known here.
    pub fn extract(&self, data: &[u8]) -> Option<Extracted> {
        match self {
            Extractor::InProcess => crate::extract(data),
            Extractor::Worker(worker) => {
                let filetype = crate::sniff(data)?;
                match worker.limited(&worker.program, &worker.args, data).and_then(|out| parse_output(&out)) {
                    Ok(found) => found,
                    Err(why) => Some(Extracted { filetype, text: Err(why) }),
                }
            }
        }
    }

    /// Whether pictures are read ([`Extractor::ocr`]).
    pub fn ocr_enabled(&self) -> bool {
        matches!(self, Extractor::Worker(Worker { ocr: Some(_), .. }))
    }

    /// The text Tesseract reads in a picture (PNG, JPEG, TIFF, GIF, BMP, WebP), or in the pages
    /// of a scanned PDF (drawn by poppler's `pdftoppm`, at most [`MAX_SCANNED_PAGES`]), under the
    /// same limits as any extraction; None when OCR is off or `data` is neither.
    pub fn ocr(&self, data: &[u8]) -> Option<Result<String, String>> {
        let Extractor::Worker(worker) = self else { return None };
        worker.ocr.as_ref()?;
        if data.starts_with(b"%PDF-") {
            return match self.extract(data) {
                Some(crate::Extracted { text: Ok(text), .. }) if crate::scanned(&text) => Some(worker.ocr_pages(data)),
                _ => None,
            };
        }
        crate::picture(data)?;
        Some(worker.ocr_picture(data))
    }
}

/// Pages of a scanned PDF read by OCR, at most.
pub const MAX_SCANNED_PAGES: usize = 50;

impl Worker {
    fn ocr_picture(&self, data: &[u8]) -> Result<String, String> {
        let languages = self.ocr.as_deref().unwrap_or("eng");
        let args: Vec<OsString> = ["stdin", "stdout", "-l", languages].iter().map(OsString::from).collect();
        self.limited(std::path::Path::new("tesseract"), &args, data)
            .map(|out| String::from_utf8_lossy(&out).into_owned())
    }

    /// Each page drawn at 150 dpi into a folder of its own, then read.
    fn ocr_pages(&self, pdf: &[u8]) -> Result<String, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("a folder for the pages: {e}"))?;
        let root = dir.path().join("page");
        let last = MAX_SCANNED_PAGES.to_string();
        let args: Vec<OsString> =
            vec!["-r".into(), "150".into(), "-l".into(), last.into(), "-png".into(), "-".into(), root.into()];
        self.limited(std::path::Path::new("pdftoppm"), &args, pdf)?;
        let mut pages: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        pages.sort();
        let mut text = String::new();
        for page in pages {
            let picture = std::fs::read(&page).map_err(|e| e.to_string())?;
            text.push_str(&self.ocr_picture(&picture)?);
            text.push('\n');
        }
        Ok(text)
    }
}

/// What the worker may write: the text and its two header lines.
const MAX_OUTPUT: u64 = MAX_TEXT as u64 + 64 * 1024;
/// What the worker reads: more than any message Coffer accepts.
const MAX_INPUT: u64 = 512 << 20;

impl Worker {
    /// Runs `program` on `data` (its stdin) under the limits; its stdout.
    fn limited(&self, program: &std::path::Path, args: &[OsString], data: &[u8]) -> Result<Vec<u8>, String> {
        let mut command = Command::new(program);
        // One thread: OCR must not take both cores from the server.
        command
            .args(args)
            .env("OMP_THREAD_LIMIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let (memory, cpu) = (self.memory, self.time.as_secs());
        // SAFETY: between fork and exec only system calls are made (no allocation, no locks).
        unsafe {
            command.pre_exec(move || {
                use rustix::process::{Resource, Rlimit, Signal, set_parent_process_death_signal, setrlimit};
                setrlimit(Resource::As, Rlimit { current: Some(memory), maximum: Some(memory) })?;
                setrlimit(Resource::Cpu, Rlimit { current: Some(cpu), maximum: Some(cpu + 1) })?;
                set_parent_process_death_signal(Some(Signal::KILL))?;
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| format!("{} could not start: {e}", program.display()))?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let output = std::thread::scope(|scope| {
            // A worker that dies early closes its stdin: the write fails, and the exit says why.
            scope.spawn(move || {
                let _ = stdin.write_all(data);
            });
            let reader = scope.spawn(move || {
                let mut out = Vec::new();
                let _ = (&mut stdout).take(MAX_OUTPUT).read_to_end(&mut out);
                out
            });
            let status = match child.wait_timeout(self.time) {
                Ok(Some(status)) => status,
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("took longer than {} s: stopped", self.time.as_secs()));
                }
                Err(e) => return Err(format!("waiting for the extraction worker: {e}")),
            };
            if !status.success() {
                return Err(match status.signal() {
                    Some(24) => format!("used more than {} s of CPU: stopped", self.time.as_secs()),
                    Some(_) => {
                        format!("the parser crashed (or needed more than {} MiB of memory): stopped", self.memory >> 20)
                    }
                    None => "the parser failed on this file".into(),
                });
            }
            Ok(reader.join().unwrap_or_default())
        })?;
        Ok(output)
    }
}

/// The worker's answer: nothing (no known type), or `filetype\n`, `ok\n` or `err <why>\n`, text.
fn parse_output(output: &[u8]) -> Result<Option<Extracted>, String> {
    if output.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(output);
    let mut lines = text.splitn(3, '\n');
    let (Some(filetype), Some(outcome)) = (lines.next(), lines.next()) else {
        return Err("the extraction worker's answer is cut short".into());
    };
    let filetype = FILETYPES
        .into_iter()
        .find(|t| *t == filetype)
        .ok_or_else(|| "the extraction worker named an unknown type".to_owned())?;
    let text = match outcome.strip_prefix("err ") {
        Some(why) => Err(why.to_owned()),
        None if outcome == "ok" => Ok(lines.next().unwrap_or_default().to_owned()),
        None => return Err("the extraction worker's answer is not understood".into()),
    };
    Ok(Some(Extracted { filetype, text }))
}

/// The worker's side (`coffer extract-worker`): one attachment from stdin, the answer to stdout.
/// `outlook` reads an attached Outlook item (the caller's Outlook reader).
pub fn serve(outlook: crate::OutlookReader) -> ExitCode {
    let mut data = Vec::new();
    if std::io::stdin().take(MAX_INPUT).read_to_end(&mut data).is_err() {
        return ExitCode::FAILURE;
    }
    let answer = match crate::extract_isolated(&data, outlook) {
        None => String::new(),
        Some(Extracted { filetype, text: Ok(text) }) => format!("{filetype}\nok\n{text}"),
        Some(Extracted { filetype, text: Err(why) }) => format!("{filetype}\nerr {}\n", why.replace('\n', " ")),
    };
    match std::io::stdout().lock().write_all(answer.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_answer_is_read_back_and_a_garbled_one_is_refused() {
        let found = parse_output(b"pdf\nok\nline one\nline two").unwrap().unwrap();
        assert_eq!((found.filetype, found.text), ("pdf", Ok("line one\nline two".to_owned())));
        let failed = parse_output(b"docx\nerr word/document.xml: bad\n").unwrap().unwrap();
        assert_eq!(failed.text, Err("word/document.xml: bad".to_owned()));
        assert_eq!(parse_output(b"").unwrap(), None);
        assert!(parse_output(b"exe\nok\n").is_err());
        assert!(parse_output(b"pdf").is_err());
    }
}
