//! Bad input is archived as it is (or refused with a clear message over a configured limit),
//! never a crash or a hang.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Coffer, receipts, sha256};

/// Runs with a deadline: a hang fails the test instead of stalling the suite.
fn run_within(mut command: Command, limit: Duration) -> Output {
    let child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let started = Instant::now();
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(200));
            if std::fs::metadata(format!("/proc/{pid}")).is_err() {
                return false;
            }
        }
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        true
    });
    let out = child.wait_with_output().unwrap();
    assert!(!watchdog.join().unwrap(), "coffer hung for {limit:?}");
    out
}

fn bad_files(dir: &std::path::Path) -> Vec<(&'static str, Vec<u8>)> {
    let mut files = vec![("empty.eml", Vec::new())];
    let mut garbage = vec![0u8; 1 << 20];
    let mut x: u32 = 12345;
    for b in garbage.iter_mut() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    files.push(("garbage.eml", garbage));

    let mut many_headers = String::new();
    for i in 0..10_000 {
        many_headers.push_str(&format!("X-Header-{i}: value {i}\r\n"));
    }
    many_headers.push_str("Subject: ten thousand headers\r\n\r\nbody\r\n");
    files.push(("headers.eml", many_headers.into_bytes()));

    let mut nested = String::from("Subject: deeply nested\r\nMIME-Version: 1.0\r\n");
    for i in 0..5_000 {
        nested.push_str(&format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"));
    }
    nested.push_str("Content-Type: text/plain\r\n\r\nthe innermost text\r\n");
    for i in (0..5_000).rev() {
        nested.push_str(&format!("--b{i}--\r\n"));
    }
    files.push(("nested.eml", nested.into_bytes()));

    let mut big = String::from("Subject: sixty megabytes\r\nContent-Type: text/plain\r\n\r\n");
    let line = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+/abcd\r\n";
    while big.len() < 60 << 20 {
        big.push_str(line);
    }
    files.push(("big.eml", big.into_bytes()));
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    files
}

#[test]
fn hostile_messages_are_archived_byte_exact_without_crash_or_hang() {
    let c = Coffer::new();
    let dir = c.dir.path().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let files = bad_files(&dir);

    let mut import = c.command();
    import.args(["import", "-v", dir.to_str().unwrap()]);
    let out = run_within(import, Duration::from_secs(300));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored = receipts(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(stored.len(), files.len());
    for (name, bytes) in &files {
        let (_, id, sha, _) = stored.iter().find(|r| r.3.ends_with(name)).unwrap();
        assert_eq!(sha, &sha256(bytes), "{name}");
        let mut show = c.command();
        show.args(["show", "--raw", &id.to_string()]);
        let raw = run_within(show, Duration::from_secs(120)).stdout;
        assert!(raw == *bytes, "{name} does not come back byte-exact");
    }
    assert!(c.count("tag:unparseable") >= 2, "empty and garbage files are flagged");
    assert_eq!(c.count("subject:\"ten thousand headers\""), 1);
    assert_eq!(c.count("innermost"), 1, "the text at the bottom of 5,000 levels is found");
    assert_eq!(c.count("subject:sixty size:>50M"), 1);
}

#[test]
fn a_message_over_the_configured_limit_is_refused_with_a_clear_message() {
    let c = Coffer::new();
    let dir = c.dir.path().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    bad_files(&dir);
    let mut import = c.command();
    import.args(["import", dir.to_str().unwrap()]).env("COFFER_MAX_MESSAGE_BYTES", (50u64 << 20).to_string());
    let out = run_within(import, Duration::from_secs(300));
    assert_eq!(out.status.code(), Some(2), "some messages failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("big.eml") && stderr.contains("over the limit") && stderr.contains("max_message_bytes"),
        "{stderr}"
    );
    assert_eq!(c.count(""), 4, "the other files are archived");
}
