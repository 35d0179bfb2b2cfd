//! Postfix as the sending MTA (Exchange Online's stand-in): it relays journal reports built around
//! corpus messages to Coffer with mandatory, verified STARTTLS.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use coffer_testkit::journal::{Envelope, Style, report};
use common::{Coffer, Server, journal_archive, sha256, wait_for_count};

/// A Postfix instance in a folder of its own, relaying everything to `relay_port` over TLS.
struct Postfix {
    etc: std::path::PathBuf,
    root: std::path::PathBuf,
}

impl Postfix {
    fn start(root: &Path, smtpd_port: u16, relay_port: u16, ca: &Path) -> Postfix {
        for d in ["etc", "spool", "data"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        // Postfix's daemons run as the postfix user and must traverse the folders.
        Command::new("chmod")
            .args(["755", root.to_str().unwrap(), root.parent().unwrap().to_str().unwrap()])
            .status()
            .unwrap();
        Command::new("chown").args(["postfix", root.join("data").to_str().unwrap()]).status().unwrap();
        std::fs::copy(ca, root.join("ca.pem")).unwrap();
        let r = root.display();
        let main_cf = format!(
            "compatibility_level = 3.6\nqueue_directory = {r}/spool\ndata_directory = {r}/data\n\
             maillog_file = {r}/maillog\nmaillog_file_prefixes = /var, /dev/stdout, {r}\n\
             myhostname = relay.archive.test\nmydomain = archive.test\nmyorigin = $mydomain\nmydestination =\n\
             local_recipient_maps =\nalias_maps =\nalias_database =\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject\n\
             relayhost = [localhost]:{relay_port}\nsmtp_tls_security_level = verify\nsmtp_tls_verify_cert_match = hostname\n\
             smtp_tls_CAfile = {r}/ca.pem\nsmtp_tls_loglevel = 1\nmessage_size_limit = 52428800\n\
             smtp_host_lookup = native\n"
        );
        std::fs::write(root.join("etc/main.cf"), main_cf).unwrap();
        let master =
            std::fs::read_to_string("/etc/postfix/master.cf").expect("Postfix is installed (.ci/run installs it)");
        let master: String = master
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if line.starts_with('#') || line.starts_with(' ') || fields.len() < 8 {
                    return format!("{line}\n");
                }
                let service = if fields[0] == "smtp" && fields[1] == "inet" {
                    format!("127.0.0.1:{smtpd_port}")
                } else {
                    fields[0].to_owned()
                };
                // Column 5 is chroot: off, so the daemons see the same files.
                format!("{} {} {} {} n {}\n", service, fields[1], fields[2], fields[3], fields[5..].join(" "))
            })
            .collect();
        std::fs::write(root.join("etc/master.cf"), master).unwrap();
        let global = std::fs::read_to_string("/etc/postfix/main.cf").unwrap_or_default();
        let line = format!("alternate_config_directories = {}/etc", r);
        if !global.contains(&line) {
            std::fs::write("/etc/postfix/main.cf", format!("{global}\n{line}\n")).unwrap();
        }
        let etc = root.join("etc");
        let out = coffer_testkit::peer("postfix").args(["-c", etc.to_str().unwrap(), "start"]).output().unwrap();
        assert!(
            out.status.success(),
            "postfix start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Postfix { etc, root: root.to_owned() }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = coffer_testkit::peer("postfix").args(["-c", self.etc.to_str().unwrap(), "stop"]).output();
    }
}

fn crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 40);
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[test]
fn postfix_relays_journal_reports_over_verified_tls_and_bcc_and_bytes_survive() {
    let c = Coffer::new();
    let (journal, ca) = journal_archive(&c);
    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "require")]);
    let smtpd_port = common::free_port();
    let postfix = Postfix::start(&c.dir.path().join("postfix"), smtpd_port, server.smtp.port(), &ca);

    // Originals: corpus messages when the corpus is there, generated ones otherwise.
    let mut originals: Vec<Vec<u8>> = Vec::new();
    if let Some(corpus) = coffer_testkit::corpus_dir() {
        let dir = corpus.join("spamassassin-public/easy-ham-1");
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        // Postfix folds lines over 998 bytes (as RFC 5321 allows); those are left out here.
        let short_lines = |m: &Vec<u8>| m.split(|&b| b == b'\n').all(|l| l.len() < 990);
        originals.extend(files.iter().map(|p| std::fs::read(p).unwrap()).filter(short_lines).take(20));
    }
    let mut generator = coffer_testkit::corpus::Generator::new(5);
    originals.extend((0..10).map(|i| generator.message(i).raw));

    let reports: Vec<Vec<u8>> = originals
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let env = Envelope::new("sender@contoso.com", "journaled", &format!("<relay-{i}@contoso.com>"))
                .line("To", "bob@contoso.com")
                .line("Bcc", &format!("hidden{i}@contoso.com"));
            report(o, &env, Style::ExchangeOnline, &journal)
        })
        .collect();
    let dir = c.dir.path().join("reports");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, r) in reports.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.eml")), r).unwrap();
    }
    common::python(
        r#"
import smtplib, sys, os
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
for name in sorted(os.listdir(sys.argv[2])):
    s.sendmail("sender@contoso.com", [sys.argv[3]], open(os.path.join(sys.argv[2], name), "rb").read())
s.quit()
"#,
        &[&smtpd_port.to_string(), dir.to_str().unwrap(), &journal],
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while postfix.log().matches("status=sent").count() < reports.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = postfix.log();
    assert!(log.contains("Verified TLS connection established to localhost[127.0.0.1]"), "{log}");
    assert_eq!(log.matches("status=sent").count(), reports.len(), "{log}");

    // SMTP carries lines ending in CRLF: an original written with bare LF arrives in that form,
    // which is the form Exchange itself would send.
    let distinct: std::collections::BTreeSet<String> = originals.iter().map(|o| sha256(&crlf(o))).collect();
    assert_eq!(wait_for_count(&c, "contoso", "", distinct.len()), distinct.len());
    assert_eq!(wait_for_count(&c, "contoso", "bcc:hidden3@contoso.com", 1), 1);
    let hits = c.ok(&["search", "--tenant", "contoso", "--json", "--limit", "1000", ""]);
    let stored: std::collections::BTreeSet<String> = hits
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["sha256"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, distinct, "every original arrives byte-exact through Postfix");
}
