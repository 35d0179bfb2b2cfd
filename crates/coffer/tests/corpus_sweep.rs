//! The corpus sweep: every file of ../shared/corpora goes in and comes back byte-exact.
//! The corpus path comes from COFFER_CORPUS_DIR (`scripts/test.sh` sets it); `skip` leaves this test out on purpose.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use common::{Coffer, receipts, sha256, zip_entries};

const MBOXES: &[(&str, usize)] = &[
    ("mimekit/UnitTests/TestData/mbox/content-length.mbox.txt", 29),
    ("mimekit/UnitTests/TestData/mbox/issue1189.mbox.txt", 4),
    ("mimekit/UnitTests/TestData/mbox/simple.mbox.txt", 3),
    // Two messages whose bodies hold unquoted "From Russia with love" lines.
    ("mimekit/UnitTests/TestData/mbox/unmunged.mbox.txt", 2),
    ("spamassassin-t/t/data/nice.mbox", 3),
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_corpus_file_is_archived_and_comes_back_byte_exact() {
    let Some(corpus) = coffer_testkit::corpus_dir() else {
        return;
    };
    let c = Coffer::new();
    let mut all = Vec::new();
    files(&corpus, &mut all);
    all.sort();
    let mbox_paths: Vec<PathBuf> = MBOXES.iter().map(|(p, _)| corpus.join(p)).collect();

    // Every other file is imported as one message, whatever it holds (PST, JSON, images: with
    // --as-eml they are archived as they are and flagged). Links named .eml make the importer take
    // them whole.
    let staging = c.dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let mut source_of = HashMap::new();
    for (i, path) in all.iter().filter(|p| !mbox_paths.contains(p)).enumerate() {
        let link = staging.join(format!("{i:05}.eml"));
        std::os::unix::fs::symlink(path, &link).unwrap();
        source_of.insert(link.display().to_string(), path.clone());
    }
    // Without --as-eml, files that are not mail (the PDF, the old Word documents) refuse the whole
    // import, each named by what it is, whatever its name, before anything is stored (the PST and
    // .msg files would be read item by item).
    let refused = c.run(&["import", "--no-journal", staging.to_str().unwrap()]);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "an import holding a PDF is refused");
    assert!(why.contains("nothing was imported") && why.contains("a PDF document, not mail"), "{why}");
    assert!(why.contains("OLE compound document"), "{why}");
    for line in why.lines().filter(|l| l.contains("staging/")) {
        let link = line.trim().split(": ").next().unwrap();
        let source = &source_of[link];
        assert!(!source.extension().is_some_and(|e| e == "pst" || e == "msg"), "Outlook files are read: {line}");
    }
    assert!(why.contains("--as-eml"), "the refusal says how to keep such files as they are: {why}");
    assert_eq!(c.count(""), 0, "nothing was stored by the refused import");

    let out = c.run(&["import", "-v", "--no-journal", "--as-eml", staging.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import failed: {stderr}");
    assert!(stderr.contains("failed 0"), "{stderr}");
    let stored = receipts(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(stored.len(), source_of.len(), "every file yields a receipt");

    let mut by_id: BTreeMap<i64, PathBuf> = BTreeMap::new();
    for (_, id, sha, origin) in &stored {
        let path = &source_of[origin];
        assert_eq!(&sha256(&std::fs::read(path).unwrap()), sha, "{} was stored with another hash", path.display());
        by_id.entry(*id).or_insert_with(|| path.clone());
    }
    assert_eq!(c.count(""), by_id.len(), "one message per distinct file");

    // Everything back out: each exported original equals its file.
    let zip = c.dir.path().join("all.zip");
    c.ok(&["export", "--format", "eml-zip", "--out", zip.to_str().unwrap(), ""]);
    let entries = zip_entries(&zip);
    for (id, path) in &by_id {
        let exported =
            entries.get(&format!("messages/{id}.eml")).unwrap_or_else(|| panic!("message {id} missing from export"));
        assert!(exported == &std::fs::read(path).unwrap(), "{} does not come back byte-exact", path.display());
    }
    // And through `show --raw`, for a spread of them.
    for (id, path) in by_id.iter().step_by(97) {
        let raw = c.command().args(["show", "--raw", &id.to_string()]).output().unwrap().stdout;
        assert!(raw == std::fs::read(path).unwrap(), "show --raw {id} differs from {}", path.display());
    }

    // What no parser understands is kept and flagged, not dropped.
    let flagged = c.count("tag:unparseable");
    assert!(flagged > 0, "the PST and image files are flagged unparseable");
    let pst = by_id.iter().find(|(_, p)| p.extension().is_some_and(|e| e == "pst")).map(|(id, _)| *id).unwrap();
    let shown: serde_json::Value = serde_json::from_str(&c.ok(&["show", &pst.to_string()])).unwrap();
    assert!(shown["flags"].as_array().unwrap().iter().any(|f| f == "unparseable"), "{shown}");
    assert!(c.ok(&["verify"]).contains("all intact"));

    // The mbox files yield their real message counts.
    for (path, expected) in MBOXES {
        let other = Coffer::new();
        let out = other.ok(&["import", "-v", "--no-journal", corpus.join(path).to_str().unwrap()]);
        assert_eq!(receipts(&out).len(), *expected, "{path}");
    }
}
