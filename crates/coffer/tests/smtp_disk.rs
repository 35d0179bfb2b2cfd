//! Disk trouble: with the data folder on a small filesystem that fills up, delivery gets a 4xx and
//! an import stops with its summary, nothing is corrupted, and both succeed once space is freed.
//! Needs root (mount).

mod common;

use std::process::Command;

use coffer_testkit::journal::{Envelope, Style, report};
use common::{Coffer, Server, journal_archive, python, wait_for_count};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const SEND: &str = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("exchange.test")
s.mail("MicrosoftExchange@contoso.com")
s.rcpt(sys.argv[2])
code, reply = s.data(open(sys.argv[3], "rb").read())
print(code, reply.decode())
s.quit()
"#;

/// A data folder on a tmpfs of `size` (root only), unmounted when dropped.
fn small_disk(c: &Coffer, size: &str) -> Mount {
    let data = c.data();
    std::fs::create_dir_all(&data).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs", data.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs needs root (CI runs as root)");
    Mount(data)
}

/// Text that does not compress away.
fn incompressible(seed: u64, lines: usize) -> String {
    let mut x: u64 = 0x9e3779b97f4a7c15 ^ seed;
    let mut out = String::new();
    for _ in 0..lines {
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push_str(&format!("{x:016x}"));
        }
        out.push_str("\r\n");
    }
    out
}

#[test]
fn an_import_that_fills_the_disk_stops_at_once_with_its_summary_and_continues_after_space_is_freed() {
    let c = Coffer::new();
    let input = c.dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..1500u64 {
        let body = incompressible(i, 300);
        std::fs::write(
            input.join(format!("{i}.eml")),
            format!("From: a@contoso.com\r\nSubject: fill {i}\r\n\r\n{body}"),
        )
        .unwrap();
    }
    let mount = small_disk(&c, "12m");
    let out = c.run(&["import", input.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("done: imported ")
            && stderr.contains("stopped early: ")
            && stderr.contains("run the same import again"),
        "{stderr}"
    );
    assert!(stderr.matches("failed: ").count() < 3, "no flood of failure lines: {stderr}");
    // More space: the same import continues and ends clean.
    let grown = Command::new("mount").args(["-o", "remount,size=200m", mount.0.to_str().unwrap()]).status().unwrap();
    assert!(grown.success());
    let again = c.run(&["import", input.to_str().unwrap()]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(c.count("subject:fill"), 1500);
    assert!(c.ok(&["verify"]).contains("all intact"));
}

#[test]
fn a_full_disk_answers_4xx_corrupts_nothing_and_recovers_when_space_is_freed() {
    let c = Coffer::new();
    let data = c.data();
    let _mount = small_disk(&c, "40m");
    let (journal, _) = journal_archive(&c);
    let server = Server::start(&c, &[("COFFER_SMTP__MIN_FREE_BYTES", "0")]);
    let port = server.smtp.port().to_string();

    let original = |i: usize| {
        let mut body =
            format!("From: alice@contoso.com\r\nSubject: disk test {i}\r\nMessage-ID: <disk-{i}@contoso.com>\r\n\r\n");
        // Random-looking text that does not compress away.
        let mut x: u64 = 0x9e3779b97f4a7c15 ^ i as u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push_str(&format!("{:016x}", x));
            if x.is_multiple_of(5) {
                body.push_str("\r\n");
            }
        }
        body.push_str("\r\n");
        body.into_bytes()
    };
    let write_report = |i: usize| {
        let env = Envelope::new("alice@contoso.com", "disk", &format!("<disk-{i}@contoso.com>"))
            .line("To", "bob@contoso.com");
        let path = c.dir.path().join(format!("r{i}.eml"));
        std::fs::write(&path, report(&original(i), &env, Style::ExchangeOnline, &journal)).unwrap();
        path
    };
    let first = write_report(0);
    assert!(python(SEND, &[&port, &journal, first.to_str().unwrap()]).starts_with("250"));

    // Fill the filesystem.
    let filler = data.join("filler");
    let _ =
        Command::new("dd").args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=1M", "count=64"]).output();
    let second = write_report(1);
    let answer = python(SEND, &[&port, &journal, second.to_str().unwrap()]);
    assert!(answer.starts_with("451") || answer.starts_with("452"), "a full disk is a temporary failure: {answer}");

    std::fs::remove_file(&filler).unwrap();
    let answer = python(SEND, &[&port, &journal, second.to_str().unwrap()]);
    assert!(answer.starts_with("250"), "once space is freed the retry is archived: {answer}");
    assert_eq!(wait_for_count(&c, "contoso", "subject:disk", 2), 2);
    drop(server);
    let verify = c.ok(&["verify"]);
    assert!(verify.contains("all intact"), "{verify}");
}
