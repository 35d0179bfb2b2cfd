//! Online backup and restore against the real binary, while SMTP deliveries run.

mod common;

use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Coffer, Server};

/// Sends `count` numbered messages over one SMTP session, printing each number once it is
/// acknowledged (250).
const LOAD: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="exchange.test", timeout=30)
s.ehlo("exchange.test")
for i in range(int(sys.argv[3])):
    body = ("From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: load %d\r\nMessage-ID: <load-%d@contoso.com>\r\n\r\n" % (i, i)) + ("line of the message %d\r\n" % i) * 40
    s.mail("MicrosoftExchange@contoso.com")
    s.rcpt(sys.argv[2])
    code, _ = s.data(body.encode())
    if code != 250:
        sys.exit("message %d: %d" % (i, code))
    print(i, flush=True)
s.quit()
"#;

fn in_data(c: &Coffer, data: &std::path::Path, args: &[&str]) -> std::process::Output {
    c.command().env("COFFER_DATA", data).args(args).stdin(Stdio::null()).output().unwrap()
}

fn ok_in(c: &Coffer, data: &std::path::Path, args: &[&str]) -> String {
    let out = in_data(c, data, args);
    assert!(
        out.status.success(),
        "coffer {args:?} in {}: {}{}",
        data.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subjects a restored archive holds, after rebuilding its index there.
fn subjects(c: &Coffer, data: &std::path::Path) -> Vec<String> {
    ok_in(c, data, &["reindex"]);
    ok_in(c, data, &["search", "--tenant", "contoso", "--json", "--limit", "10000", "subject:load"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["subject"].as_str().unwrap().to_owned())
        .collect()
}

/// Inode of every sealed segment in a backup (all segments but the last of each volume).
fn sealed_segments(backup: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for volume in std::fs::read_dir(backup.join("volumes")).unwrap().flatten().filter(|e| e.path().is_dir()) {
        let mut segs: Vec<_> = std::fs::read_dir(volume.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segs.sort();
        segs.pop();
        out.extend(segs.into_iter().map(|p| (p.display().to_string(), std::fs::metadata(&p).unwrap().ino())));
    }
    out.sort();
    out
}

#[test]
fn a_backup_taken_under_smtp_load_restores_clean_and_the_next_one_copies_only_what_changed() {
    let c = Coffer::new();
    let (address, _) = common::journal_archive(&c);
    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "off"), ("COFFER_SEGMENT_MAX_BYTES", "2048")]);
    let acked = Arc::new(AtomicUsize::new(0));
    let mut load = Command::new("python3")
        .arg("-c")
        .arg(LOAD)
        .args([&server.smtp.port().to_string(), &address, "300"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = {
        let acked = acked.clone();
        let stdout = load.stdout.take().unwrap();
        std::thread::spawn(move || {
            for _ in std::io::BufReader::new(stdout).lines() {
                acked.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 60 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // Taken while deliveries go on; restored elsewhere at once.
    let backup = c.dir.path().join("backup");
    let before = acked.load(Ordering::SeqCst);
    let first = ok_in(&c, &c.data(), &["backup", "--out", backup.to_str().unwrap()]);
    assert!(first.contains("catalog: SQLite snapshot"), "{first}");
    let restored = c.dir.path().join("restored");
    ok_in(&c, &restored, &["restore", backup.to_str().unwrap()]);
    let verified = ok_in(&c, &restored, &["verify"]);
    assert!(verified.contains("all intact"), "{verified}");
    let got = subjects(&c, &restored);
    for i in 0..before {
        assert!(got.contains(&format!("load {i}")), "message {i}, acknowledged before the backup began, is missing");
    }
    let tenants = ok_in(&c, &restored, &["tenant", "list"]);
    let token = address.split('@').next().unwrap();
    assert!(tenants.contains(token), "the restored archive keeps the journal address {address}: {tenants}");

    assert!(load.wait().unwrap().success());
    reader.join().unwrap();
    assert_eq!(acked.load(Ordering::SeqCst), 300);

    // The next backup into the same folder keeps every sealed segment of the first one.
    let sealed = sealed_segments(&backup);
    assert!(sealed.len() >= 3, "the small segment size gives several sealed segments: {sealed:?}");
    let second = ok_in(&c, &c.data(), &["backup", "--out", backup.to_str().unwrap()]);
    let still: Vec<_> = sealed_segments(&backup).into_iter().filter(|s| sealed.contains(s)).collect();
    assert_eq!(still, sealed, "a sealed segment was copied again: {second}");
    let again = c.dir.path().join("again");
    ok_in(&c, &again, &["restore", backup.to_str().unwrap()]);
    assert!(ok_in(&c, &again, &["verify"]).contains("all intact"));
    assert_eq!(subjects(&c, &again).len(), 300);

    // A damaged backup, or a data folder that is not empty, is refused before anything is written.
    let refused = in_data(&c, &again, &["restore", backup.to_str().unwrap()]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("not empty"));
    let segment = std::fs::read_dir(backup.join("volumes")).unwrap().flatten().find(|e| e.path().is_dir()).unwrap();
    let victim = segment.path().join("000001.seg");
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&victim, bytes).unwrap();
    let third = c.dir.path().join("third");
    let damaged = in_data(&c, &third, &["restore", backup.to_str().unwrap()]);
    assert!(!damaged.status.success());
    assert!(String::from_utf8_lossy(&damaged.stderr).contains("does not match its SHA-256"), "{damaged:?}");
    assert!(!third.exists(), "nothing was restored");
    let audit = c.ok(&["audit", "list"]);
    assert!(audit.contains("backup to"), "{audit}");
    drop(server);
}

/// The catalog lost after journaling over SMTP, with no backup: `coffer catalog rebuild` brings
/// back the messages and the tenant's journal address from the volumes, and Exchange's next
/// reports to that address are taken.
#[test]
fn a_lost_catalog_is_rebuilt_from_the_volumes_and_the_old_journal_address_takes_reports_again() {
    let c = Coffer::new();
    let (address, _) = common::journal_archive(&c);
    let send = |server: &Server, n: &str| {
        let out = Command::new("python3")
            .arg("-c")
            .arg(LOAD)
            .args([&server.smtp.port().to_string(), &address, n])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    send(&server, "20");
    // A tenant added from the command line beside `serve` is recorded by the serving process.
    let evidence_records = |c: &Coffer| -> usize {
        let out = ok_in(c, &c.data(), &["verify"]);
        let before = out.split(" evidence records").next().unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let recorded = evidence_records(&c);
    c.ok(&["tenant", "add", "fabrikam", "--domain", "fabrikam.com"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while evidence_records(&c) == recorded {
        assert!(std::time::Instant::now() < deadline, "the new tenant was never recorded");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(server);
    let tenants = c.ok(&["tenant", "list"]);
    assert!(tenants.contains("fabrikam"), "{tenants}");
    ok_in(&c, &c.data(), &["reindex"]);
    // Sorted: the messages share one date, and ties come in the index's order.
    let listing = |c: &Coffer| {
        let out = ok_in(c, &c.data(), &["search", "--tenant", "contoso", "--json", "--limit", "100", ""]);
        let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    let before = listing(&c);
    assert_eq!(before.len(), 20);

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(c.data().join(format!("catalog.sqlite{suffix}")));
    }
    let refused = in_data(&c, &c.data(), &["tenant", "list"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("coffer catalog rebuild"), "{refused:?}");
    let rebuilt = in_data(&c, &c.data(), &["catalog", "rebuild"]);
    let said = String::from_utf8_lossy(&rebuilt.stderr);
    assert!(rebuilt.status.success(), "{said}");
    assert!(said.contains("3 tenants, 20 messages"), "{said}");
    assert_eq!(c.ok(&["tenant", "list"]), tenants, "the journal addresses are the ones they were");
    assert_eq!(listing(&c), before, "every message as it was: ids, recipients, folders");
    assert!(ok_in(&c, &c.data(), &["verify"]).contains("all intact"));

    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    send(&server, "5");
    drop(server);
    ok_in(&c, &c.data(), &["reindex"]);
    assert_eq!(listing(&c).len(), 20, "the same five messages again are duplicates");
}

/// With a TSA configured, `serve` timestamps the journal volume's chain head by itself while mail
/// arrives, and `coffer verify` checks the tokens and says up to when the volume is proven.
#[test]
fn serve_timestamps_the_volumes_by_itself_and_verify_says_up_to_when_they_are_proven() {
    let tsa = coffer_testkit::tsa::LocalTsa::start();
    let c = Coffer::new();
    let (address, _) = common::journal_archive(&c);
    let ca = tsa.ca_file.display().to_string();
    let timestamps = [
        ("COFFER_TIMESTAMP__TSA_URL", tsa.url.as_str()),
        ("COFFER_TIMESTAMP__CA_FILE", ca.as_str()),
        ("COFFER_TIMESTAMP__EVERY_SECONDS", "1"),
    ];
    let mut env = vec![("COFFER_SMTP__TLS", "off")];
    env.extend(timestamps);
    let server = Server::start(&c, &env);
    let out = Command::new("python3")
        .arg("-c")
        .arg(LOAD)
        .args([&server.smtp.port().to_string(), &address, "10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verify = || {
        let out = c.command().envs(timestamps).arg("verify").stdin(Stdio::null()).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let said = loop {
        let (clean, said) = verify();
        if said.contains("proven through record") {
            assert!(clean, "{said}");
            break said;
        }
        assert!(std::time::Instant::now() < deadline, "no timestamp within a minute: {said}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(said.contains("all intact"), "{said}");
    assert!(tsa.answered.load(Ordering::SeqCst) >= 1);
    drop(server);
    // Without the CA bundle the tokens cannot be checked, and verify fails saying why.
    let out = c.run(&["verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("set timestamp.ca_file"));
}
