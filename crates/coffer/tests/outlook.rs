//! Outlook import against Debian's reference readers on the shared corpus, computed live from
//! their output: each PST against readpst (the same items in the same folders, the same subjects,
//! recipient counts and attachment names), each .msg against msgconvert (subject, sender,
//! recipients, body, attachments).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::Coffer;

/// What readpst wrote for one item: its folder (relative to the output directory), and for a
/// message its subject, how many To/Cc addresses and which attachment names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    folder: String,
    subject: Option<String>,
    recipients: usize,
    /// Name and size of each attachment.
    attachments: Vec<(String, usize)>,
    /// A contact's or an appointment's fields both readers write alike (N, EMAIL; SUMMARY,
    /// DTSTART, DTEND), as `NAME:value`. (FN differs by design: readpst writes Outlook's "file
    /// as", Coffer the display name.)
    card: Vec<String>,
}

/// The vCard / iCalendar fields compared, parameters left out.
fn card_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let (name, value) = l.trim_end_matches('\r').split_once(':')?;
            let name = name.split(';').next()?;
            ["N", "EMAIL", "SUMMARY", "DTSTART", "DTEND"].contains(&name).then(|| format!("{name}:{value}"))
        })
        .collect();
    lines.sort();
    lines
}

/// The decoded body of the message's text/vcard or text/calendar part (base64 in Coffer's).
fn card_part(raw: &str) -> String {
    use base64::Engine;
    let Some(at) = raw.find("Content-Type: text/vcard").or_else(|| raw.find("Content-Type: text/calendar")) else {
        return String::new();
    };
    let part = &raw[at..];
    let Some((_, body)) = part.split_once("\r\n\r\n") else { return String::new() };
    let encoded: String = body.lines().take_while(|l| !l.starts_with("--")).flat_map(|l| l.trim().chars()).collect();
    String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default()).into_owned()
}

/// A header field's value, unfolded (first occurrence, in the top header block only).
fn field(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw).split("\n\n").next().unwrap_or(raw);
    let mut value: Option<String> = None;
    for line in head.lines() {
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line.trim_end_matches('\r')),
            Some(_) => break,
            None => {
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case(name)
                {
                    value = Some(v.trim().trim_end_matches('\r').to_owned());
                }
            }
        }
    }
    value
}

/// The attachments of a message, as (`filename="…"` of the part, decoded size), sorted; the part
/// must be base64 (both readers write attachments so).
fn attachment_names(raw: &str) -> Vec<(String, usize)> {
    use base64::Engine;
    let mut found: Vec<(String, usize)> = raw
        .split("filename=\"")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.split('"').next()?.to_owned();
            // The part's body: after the blank line ending its header, up to the next boundary.
            let body = rest.split_once("\r\n\r\n").or_else(|| rest.split_once("\n\n"))?.1;
            let encoded: String =
                body.lines().take_while(|l| !l.starts_with("--")).flat_map(|l| l.trim().chars()).collect();
            let size = base64::engine::general_purpose::STANDARD.decode(encoded.as_bytes()).map_or(0, |b| b.len());
            Some((name, size))
        })
        .collect();
    found.sort();
    found
}

fn count_addresses(raw: &str) -> usize {
    ["To", "Cc"].iter().filter_map(|f| field(raw, f)).map(|v| v.matches('@').count()).sum()
}

fn readpst(pst: &Path, out: &Path) -> Vec<Seen> {
    std::fs::create_dir_all(out).unwrap();
    let status = coffer_testkit::peer("readpst")
        .args(["-q", "-e", "-b", "-o", out.to_str().unwrap(), pst.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "readpst {}", pst.display());
    let mut seen = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            // The first component is the store's name, which Coffer keeps as the mailbox (lower case).
            let folder = path.parent().unwrap().strip_prefix(out).unwrap().to_string_lossy().into_owned();
            let folder = match folder.split_once('/') {
                Some((store, rest)) => format!("{}/{rest}", store.to_lowercase()),
                None => folder.to_lowercase(),
            };
            let raw = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            let message = path.extension().is_some_and(|e| e == "eml");
            seen.push(Seen {
                folder,
                subject: if message { field(&raw, "Subject") } else { None },
                recipients: if message { count_addresses(&raw) } else { 0 },
                attachments: if message { attachment_names(&raw) } else { Vec::new() },
                card: if message { Vec::new() } else { card_lines(&raw) },
            });
        }
    }
    seen.sort();
    seen
}

/// What Coffer archived from the file, seen the same way.
fn coffer(c: &Coffer) -> Vec<(Seen, String)> {
    let mut seen: Vec<(Seen, String)> = c
        .json("", 1000)
        .iter()
        .map(|m| {
            let id = m["id"].as_i64().unwrap().to_string();
            let raw = String::from_utf8_lossy(&c.command().args(["show", "--raw", &id]).output().unwrap().stdout)
                .into_owned();
            let placement = &m["placements"][0];
            let folder = [placement["mailbox"].as_str().unwrap_or(""), placement["folder"].as_str().unwrap_or("")]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            let class = field(&raw, "X-MS-Message-Class").unwrap_or_else(|| "IPM.Note".into());
            let message = class.starts_with("IPM.Note");
            let to_cc = m["to"].as_array().unwrap().len() + m["cc"].as_array().unwrap().len();
            let s = Seen {
                folder,
                subject: if message { m["subject"].as_str().map(str::to_owned) } else { None },
                recipients: if message { to_cc } else { 0 },
                attachments: if message { attachment_names(&raw) } else { Vec::new() },
                card: if message { Vec::new() } else { card_lines(&card_part(&raw)) },
            };
            (s, class)
        })
        .collect();
    seen.sort();
    seen
}

fn corpus_psts() -> Option<Vec<PathBuf>> {
    let dir = coffer_testkit::corpus_dir()?.join("pst");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pst"))
        .collect();
    files.sort();
    Some(files)
}

#[test]
fn each_corpus_pst_imports_the_items_folders_subjects_recipients_and_attachments_readpst_finds() {
    let Some(files) = corpus_psts() else { return };
    let mut failures_by_file = BTreeMap::new();
    for pst in &files {
        let c = Coffer::new();
        let expected = readpst(pst, &c.dir.path().join("readpst"));
        let out = c.command().args(["import", "--no-journal", pst.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(matches!(out.status.code(), Some(0 | 2)), "{}: {stderr}", pst.display());
        let got = coffer(&c);
        let name = pst.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            got.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
            expected,
            "{name}: items, folders, subjects, recipient counts and attachment names as readpst finds them"
        );
        for (s, _) in &got {
            assert!(s.attachments.iter().all(|(_, size)| *size > 0), "{name}: sizes decoded: {s:?}");
        }
        failures_by_file.insert(name, stderr);

        // Importing the same file again adds nothing.
        let again = c.command().args(["import", "--no-journal", pst.to_str().unwrap()]).output().unwrap();
        let again = String::from_utf8_lossy(&again.stderr);
        assert!(again.contains("imported 0,"), "{}: {again}", pst.display());
    }
    // The 200-recipient message keeps all 200; every item is tagged as rebuilt from a PST.
    let c = Coffer::new();
    c.ok(&[
        "import",
        "--no-journal",
        files.iter().find(|f| f.ends_with("ruby-msg__200_recipients.pst")).unwrap().to_str().unwrap(),
    ]);
    let m = &c.json("subject:recipients", 10)[0];
    assert_eq!(m["to"].as_array().unwrap().len(), 200, "{m}");
    assert_eq!(c.count("tag:from-pst"), 1);

    // What cannot be read is named, and the rest comes in: the distribution list whose sub-node
    // tree is missing, and the attached messages (which outlook-pst cannot open yet).
    let dist = &failures_by_file["java-libpst__dist-list.pst"];
    assert!(dist.contains("#node-200024") && dist.contains("not read: Missing Sub-Node Tree"), "{dist}");
    let nested = &failures_by_file["ruby-msg__msgInMsg.pst"];
    assert!(nested.contains("an attached message (an Outlook item attached to it) is not read yet"), "{nested}");
}

#[test]
fn a_truncated_pst_imports_what_is_whole_and_names_what_is_not_without_a_panic() {
    let Some(files) = corpus_psts() else { return };
    let file = files.iter().find(|f| f.ends_with("ruby-msg__attachAndInline.pst")).unwrap();
    let whole = std::fs::read(file).unwrap();
    let reference = Coffer::new();
    let complete: Vec<String> =
        common::receipts(&reference.ok(&["import", "-v", "--no-journal", file.to_str().unwrap()]))
            .into_iter()
            .map(|(_, _, sha, _)| sha)
            .collect();
    assert_eq!(complete.len(), 1);
    for keep in [600, whole.len() / 4, whole.len() / 2, whole.len() * 3 / 4] {
        let c = Coffer::new();
        let cut = c.dir.path().join("cut.pst");
        std::fs::write(&cut, &whole[..keep]).unwrap();
        let out = c.command().args(["import", "-v", "--no-journal", cut.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{keep} bytes: {stderr}");
        // What came in is exactly what the whole file gives; what did not is named.
        let stored = common::receipts(&String::from_utf8_lossy(&out.stdout));
        assert!(stored.iter().all(|(_, _, sha, _)| complete.contains(sha)), "{keep} bytes: only whole items");
        match out.status.code() {
            Some(0) => assert_eq!(stored.len(), 1, "{keep} bytes: {stderr}"),
            Some(2) => assert!(stderr.contains("failed: ") && stderr.contains("cut.pst"), "{keep} bytes: {stderr}"),
            other => panic!("{keep} bytes: exit {other:?}: {stderr}"),
        }
    }
    // With only its header, the file is not readable, and the import says so.
    let c = Coffer::new();
    let cut = c.dir.path().join("cut.pst");
    std::fs::write(&cut, &whole[..600]).unwrap();
    let stderr = String::from_utf8_lossy(
        &c.command().args(["import", "--no-journal", cut.to_str().unwrap()]).output().unwrap().stderr,
    )
    .into_owned();
    assert!(stderr.contains("not a readable Outlook data file"), "{stderr}");
}

/// The first line of the first text/plain part that is not base64, trimmed.
fn first_plain_line(raw: &str) -> Option<String> {
    let at = raw.find("Content-Type: text/plain")?;
    let part = &raw[at..];
    let head_end = part.find("\n\n").or_else(|| part.find("\r\n\r\n"))?;
    if part[..head_end].to_ascii_lowercase().contains("base64") {
        return None;
    }
    part[head_end..].lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned)
}

/// The display name of the From field (`Name <address>` → `Name`).
fn from_name(raw: &str) -> Option<String> {
    let from = field(raw, "From")?;
    let name = from.split('<').next().unwrap_or("").trim().trim_matches('"').to_owned();
    (!name.is_empty()).then_some(name)
}

#[test]
fn each_corpus_msg_imports_its_sender_recipients_subject_body_and_attachments_as_msgconvert_reads_them() {
    let Some(corpus) = coffer_testkit::corpus_dir() else { return };
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus.join("msg"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "msg"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut bodies = 0;
    for msg in &files {
        let c = Coffer::new();
        let name = msg.file_name().unwrap().to_string_lossy().into_owned();
        let converted = c.dir.path().join("msgconvert.eml");
        let status = coffer_testkit::peer("msgconvert")
            .args(["--outfile", converted.to_str().unwrap(), msg.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "msgconvert {name}");
        let reference = String::from_utf8_lossy(&std::fs::read(&converted).unwrap()).into_owned();

        c.ok(&["import", "--no-journal", msg.to_str().unwrap()]);
        let found = c.json("", 10);
        assert_eq!(found.len(), 1, "{name}: one item, one message");
        let m = &found[0];
        let raw = String::from_utf8_lossy(
            &c.command().args(["show", "--raw", &m["id"].to_string()]).output().unwrap().stdout,
        )
        .into_owned();
        assert_eq!(m["subject"].as_str(), field(&reference, "Subject").as_deref(), "{name}: subject");
        assert_eq!(from_name(&raw), from_name(&reference), "{name}: sender");
        assert_eq!(count_addresses(&raw), count_addresses(&reference), "{name}: recipients");
        assert_eq!(attachment_names(&raw), attachment_names(&reference), "{name}: attachments");
        if let Some(line) = first_plain_line(&reference) {
            let word = line.split(|c: char| !c.is_alphanumeric()).find(|w| w.len() >= 4).unwrap_or("");
            if !word.is_empty() {
                assert_eq!(c.count(word), 1, "{name}: its body is searchable ({word:?} from {line:?})");
                bodies += 1;
            }
        }
        assert_eq!(c.count("tag:from-msg"), 1, "{name}: tagged as rebuilt from a .msg");
        // Importing it again adds nothing.
        let again = c.command().args(["import", "--no-journal", msg.to_str().unwrap()]).output().unwrap();
        assert!(String::from_utf8_lossy(&again.stderr).contains("imported 0,"));
    }
    assert!(bodies >= 2, "bodies compared: {bodies}");
}

#[test]
fn a_damaged_msg_is_named_as_such_and_kept_whole_when_asked() {
    let Some(corpus) = coffer_testkit::corpus_dir() else { return };
    let c = Coffer::new();
    let whole = std::fs::read(corpus.join("msg/ruby-msg__note.msg")).unwrap();
    let cut = c.dir.path().join("note.msg");
    std::fs::write(&cut, &whole[..1024]).unwrap();
    let out = c.command().args(["import", "--no-journal", cut.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("note.msg: a compound (OLE) file whose directory cannot be read: a damaged .msg"),
        "{stderr}"
    );
    assert_eq!(c.count(""), 0, "nothing was stored");
    c.ok(&["import", "--no-journal", "--as-eml", cut.to_str().unwrap()]);
    assert_eq!(c.count("tag:unparseable"), 1, "kept as it is, flagged");
}
