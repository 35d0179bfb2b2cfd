//! An operator's bad day, against the real binary: a damaged or lost catalog, a damaged or missing
//! index, a failed export, racing first runs, the wrong master key, a data folder others can read.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use coffer_testkit::corpus::Generator;
use common::{Coffer, Server, zip_entries};

/// Imports `n` generated messages as .eml files.
fn imported(c: &Coffer, n: usize) {
    let dir = c.dir.path().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    let mut g = Generator::new(7);
    for i in 0..n {
        std::fs::write(dir.join(format!("{i}.eml")), g.message(i).raw).unwrap();
    }
    c.ok(&["import", dir.to_str().unwrap()]);
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `coffer serve` and expects it to stop by itself within a while (it refused to start).
fn serve_refuses(c: &Coffer) -> String {
    let mut child = c
        .command()
        .args(["serve", "--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("coffer serve started on top of the damage");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    stderr(&out)
}

#[test]
fn a_corrupt_catalog_stops_serve_and_import_with_what_to_do() {
    let c = Coffer::new();
    imported(&c, 300);
    let path = c.data().join("catalog.sqlite");
    let mut bytes = std::fs::read(&path).unwrap();
    let pages = bytes.len() / 4096;
    assert!(pages > 8, "a catalog of {pages} pages");
    // Scribble over pages in the second half, as a failing disk would.
    for page in (pages / 2..pages - 1).step_by(3) {
        let at = page * 4096;
        for b in &mut bytes[at + 8..at + 4000] {
            *b = 0x5a;
        }
    }
    std::fs::write(&path, &bytes).unwrap();
    let said = serve_refuses(&c);
    assert!(said.contains("catalog database is damaged") && said.contains("restore"), "{said}");
    let import = c.run(&["import", c.dir.path().join("in").to_str().unwrap()]);
    assert!(!import.status.success());
    assert!(stderr(&import).contains("catalog database is damaged"), "{}", stderr(&import));
}

#[test]
fn a_missing_or_damaged_index_is_rebuilt_while_serve_keeps_accepting_mail() {
    let c = Coffer::new();
    imported(&c, 150);
    assert_eq!(c.count(""), 150);
    std::fs::remove_dir_all(c.data().join("index")).unwrap();
    // A read-only command on a missing index answers (nothing yet), it does not fail.
    assert_eq!(c.count(""), 0);
    let mut server = Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    assert_eq!(common::wait_for_count(&c, "default", "", 150), 150, "rebuilt in the background");
    // verify and volume list run beside serve, read-only.
    let verify = c.run(&["verify"]);
    assert!(verify.status.success(), "{}{}", String::from_utf8_lossy(&verify.stdout), stderr(&verify));
    c.ok(&["volume", "list"]);
    // reindex beside serve hands the work to the server.
    let reindex = c.run(&["reindex"]);
    assert!(reindex.status.success(), "{}", stderr(&reindex));
    assert!(stderr(&reindex).contains("queued"), "{}", stderr(&reindex));
    assert_eq!(common::wait_for_count(&c, "default", "", 150), 150);
    server.stop();

    // Damage inside an index file: the next serve moves the index aside and rebuilds it.
    let index = c.data().join("index");
    let victim = std::fs::read_dir(&index)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx" || e == "term" || e == "store"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("an index segment file");
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    bytes[mid / 2] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    let _server = Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_dir(c.data())
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().starts_with("index.damaged-"))
    {
        assert!(Instant::now() < deadline, "the damaged index was not set aside");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(common::wait_for_count(&c, "default", "", 150), 150, "rebuilt after the damage");
}

#[test]
fn a_failed_export_leaves_no_file_and_is_audited_and_skip_damaged_lists_what_it_left_out() {
    let c = Coffer::new();
    imported(&c, 20);
    // Damage the first message record's sealed payload (records start after the 64-byte segment
    // header; each has a 120-byte header with its kind at byte 6 and its payload length at 24..28;
    // the tenant's evidence record comes first) so its original no longer reads.
    let volume = std::fs::read_dir(c.data().join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("volume.json").exists())
        .unwrap();
    let segment = volume.join("000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let mut at = 64;
    while bytes[at + 6] != 0 {
        at += 120 + u32::from_le_bytes(bytes[at + 24..at + 28].try_into().unwrap()) as usize;
    }
    bytes[at + 120 + 5] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();

    let out = c.dir.path().join("case.zip");
    let failed = c.run(&["export", "--format", "eml-zip", "--out", out.to_str().unwrap(), ""]);
    assert!(!failed.status.success());
    assert!(!out.exists(), "no complete-looking partial export");
    assert!(
        std::fs::read_dir(c.dir.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("partial")),
        "the partial file is gone too"
    );
    let audit = c.ok(&["audit", "list"]);
    assert!(audit.contains("export failed"), "{audit}");

    let partial = c.run(&["export", "--skip-damaged", "--format", "eml-zip", "--out", out.to_str().unwrap(), ""]);
    assert_eq!(partial.status.code(), Some(2), "{}", stderr(&partial));
    assert!(stderr(&partial).contains("skipped message"), "{}", stderr(&partial));
    let entries = zip_entries(&out);
    let skipped = String::from_utf8(entries["SKIPPED.csv"].clone()).unwrap();
    assert_eq!(skipped.lines().count(), 2, "one damaged message listed: {skipped}");
    assert_eq!(entries.keys().filter(|k| k.starts_with("messages/")).count(), 19);
    assert!(c.ok(&["audit", "list"]).contains("1 damaged left out"));
}

#[test]
fn a_manifest_cell_a_spreadsheet_would_run_is_escaped() {
    let c = Coffer::new();
    let dir = c.dir.path().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.eml"),
        "From: a@contoso.com\r\nSubject: =HYPERLINK(\"http://evil.example\",\"x\")\r\nMessage-ID: <@evil>\r\n\r\nx\r\n",
    )
    .unwrap();
    c.ok(&["import", dir.to_str().unwrap()]);
    let out = c.dir.path().join("m.zip");
    c.ok(&["export", "--format", "eml-zip", "--out", out.to_str().unwrap(), ""]);
    let manifest = String::from_utf8(zip_entries(&out)["manifest.csv"].clone()).unwrap();
    assert!(manifest.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\""), "{manifest}");
    assert!(manifest.contains(",'@evil,"), "{manifest}");
}

#[test]
fn two_first_runs_at_once_make_one_master_key_and_the_loser_says_why() {
    for _ in 0..4 {
        let c = Coffer::new();
        let dir = c.dir.path().join("in");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.eml"), "From: a@contoso.com\r\nSubject: one\r\n\r\nx\r\n").unwrap();
        let runs: Vec<_> = (0..2)
            .map(|_| c.command().args(["import", dir.to_str().unwrap()]).stderr(Stdio::piped()).spawn().unwrap())
            .collect();
        let mut succeeded = 0;
        for r in runs {
            let out = r.wait_with_output().unwrap();
            if out.status.success() {
                succeeded += 1;
            } else {
                // One writer at a time: the other is told so, never "File exists" about the key.
                assert!(stderr(&out).contains("another Coffer process is writing"), "{}", stderr(&out));
            }
        }
        assert!(succeeded >= 1);
        c.ok(&["import", dir.to_str().unwrap()]);
        let raw = c.ok(&["show", "--raw", "1"]);
        assert!(raw.contains("Subject: one"), "the key both runs used opens the archive");
    }
}

#[test]
fn a_wrong_master_key_says_what_is_wrong_and_what_to_do() {
    let c = Coffer::new();
    imported(&c, 3);
    std::fs::write(c.data().join("master.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    let out = c.run(&["show", "--raw", "1"]);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("not the master key") && said.contains("backup"), "{said}");
}

#[test]
fn a_data_folder_others_can_read_is_refused_and_what_coffer_writes_is_private() {
    let c = Coffer::new();
    imported(&c, 2);
    for file in ["catalog.sqlite", "master.key"] {
        let mode = std::fs::metadata(c.data().join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{file} is {mode:o}");
    }
    let mode = std::fs::metadata(c.data()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    std::fs::set_permissions(c.data(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = c.run(&["search", "--count", ""]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("chmod -R go-rwx"), "{}", stderr(&refused));
    let allowed = c.command().args(["search", "--count", ""]).env("COFFER_ALLOW_SHARED_DATA", "true").output().unwrap();
    assert!(allowed.status.success(), "{}", stderr(&allowed));
}

/// A deleted catalog beside volumes that hold mail: `serve`, an import and a read refuse, saying
/// how to restore, instead of starting on a new catalog whose default tenant would get a new
/// journal address. Another archive's catalog is refused the same way. The restored catalog
/// works, with the journal address it had.
#[test]
fn a_lost_catalog_is_never_replaced_by_a_new_one_and_the_journal_address_never_changes() {
    let c = Coffer::new();
    imported(&c, 3);
    let tenants = c.ok(&["tenant", "list"]);
    assert!(tenants.contains("journal-"), "{tenants}");
    let path = c.data().join("catalog.sqlite");
    let backup = c.dir.path().join("catalog.backup");
    std::fs::copy(&path, &backup).unwrap();
    let gone = || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(c.data().join(format!("catalog.sqlite{suffix}")));
        }
    };
    gone();
    let said = serve_refuses(&c);
    assert!(said.contains("new or empty") && said.contains("Restore the catalog"), "{said}");
    let one = c.dir.path().join("one.eml");
    std::fs::write(&one, Generator::new(9).message(0).raw).unwrap();
    for args in [vec!["import", one.to_str().unwrap()], vec!["tenant", "list"], vec!["search", "--count", ""]] {
        let out = c.run(&args);
        assert!(!out.status.success(), "{args:?} ran on a new catalog");
        assert!(stderr(&out).contains("does not start on a new catalog"), "{args:?}: {}", stderr(&out));
    }
    // Still refused after those attempts made an empty catalog file.
    assert!(serve_refuses(&c).contains("new or empty"));

    // Another archive's catalog does not belong with these volumes either.
    let other = Coffer::new();
    imported(&other, 1);
    gone();
    std::fs::copy(other.data().join("catalog.sqlite"), &path).unwrap();
    let said = serve_refuses(&c);
    assert!(said.contains("belongs to archive"), "{said}");

    gone();
    std::fs::copy(&backup, &path).unwrap();
    assert_eq!(c.ok(&["tenant", "list"]), tenants, "the journal address is the one it was");
    assert_eq!(c.count(""), 3);
    c.ok(&["import", one.to_str().unwrap()]);
    assert_eq!(c.count(""), 4);
}

/// A crash after the originals and their evidence are durable but before the catalog commit: the
/// next writing start applies the evidence, so the message is archived with its folder, and
/// nothing is left unreferenced.
#[test]
fn a_crash_between_the_durable_append_and_the_catalog_commit_loses_nothing() {
    let c = Coffer::new();
    let first = c.dir.path().join("first.eml");
    std::fs::write(&first, Generator::new(3).message(0).raw).unwrap();
    let crashed = c
        .command()
        .args(["import", "--mailbox", "alice@contoso.com", "--folder", "Projects", first.to_str().unwrap()])
        .env("COFFER_CRASH_AT", "ingest-after-append")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the import was to be cut: {}", stderr(&crashed));
    assert!(stderr(&crashed).contains("crash injected at ingest-after-append"), "{}", stderr(&crashed));
    let before = c.ok(&["verify"]);
    assert!(before.contains("0 catalog messages, 1 unreferenced records"), "{before}");

    // The next writing command catches the catalog up with the volumes first.
    let second = c.dir.path().join("second.eml");
    std::fs::write(&second, Generator::new(4).message(1).raw).unwrap();
    c.ok(&["import", second.to_str().unwrap()]);
    c.ok(&["reindex"]);
    assert_eq!(c.count(""), 2);
    assert_eq!(c.count("folder:Projects"), 1, "the replayed arrival keeps its placement");
    let after = c.ok(&["verify"]);
    assert!(after.contains("2 catalog messages, 0 unreferenced records: all intact"), "{after}");
    let again = c.run(&["import", first.to_str().unwrap()]);
    assert!(stderr(&again).contains("imported 0, duplicates 1"), "{}", stderr(&again));
}
