//! The IMAP poller against Dovecot: a journal mailbox filled through Dovecot's LDA is archived,
//! unwrapped, and emptied only after the messages are durable; new mail is picked up; a
//! recreated folder (new UIDVALIDITY) causes no duplicates; a mailbox in mailbox mode keeps its
//! folders and loses nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use coffer_testkit::journal::{Envelope, Style, report};
use common::{Coffer, free_port};

struct Dovecot {
    root: PathBuf,
    child: std::process::Child,
    imaps: u16,
    imap: u16,
}

impl Dovecot {
    fn start(root: &Path) -> Dovecot {
        Dovecot::start_with(root, None)
    }

    /// With `oauth`: the port of an RFC 7662 introspection endpoint for XOAUTH2/OAUTHBEARER logins.
    fn start_with(root: &Path, oauth: Option<u16>) -> Dovecot {
        // Once per process: tests start Dovecots side by side, and a second `useradd` while the
        // first holds /etc/passwd's lock fails, which left that test's maildir owned by root.
        static VMAIL: std::sync::Once = std::sync::Once::new();
        VMAIL.call_once(|| {
            let exists = Command::new("id").arg("vmail").output().unwrap().status.success();
            if !exists {
                let out =
                    Command::new("useradd").args(["-r", "-U", "-s", "/usr/sbin/nologin", "vmail"]).output().unwrap();
                assert!(out.status.success(), "useradd vmail: {}", String::from_utf8_lossy(&out.stderr));
            }
        });
        for d in ["run", "state", "log", "mail"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let owned =
            Command::new("chown").args(["-R", "vmail:vmail", root.join("mail").to_str().unwrap()]).status().unwrap();
        assert!(owned.success(), "chown vmail");
        Command::new("chmod")
            .args(["755", root.to_str().unwrap(), root.parent().unwrap().to_str().unwrap()])
            .status()
            .unwrap();
        let ok = coffer_testkit::peer("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-keyout", "key.pem", "-out", "cert.pem"])
            .current_dir(root)
            .output()
            .unwrap();
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        let hash =
            coffer_testkit::peer("doveadm").args(["pw", "-s", "SHA512-CRYPT", "-p", "secret1"]).output().unwrap();
        let hash = String::from_utf8(hash.stdout).unwrap();
        std::fs::write(root.join("users"), format!("journal:{}::::::\nalice:{}::::::\n", hash.trim(), hash.trim()))
            .unwrap();
        let (imap, imaps) = (free_port(), free_port());
        let r = root.display();
        let conf = format!(
            "base_dir = {r}/run\nstate_dir = {r}/state\ninstance_name = coffer-test-{imap}\nprotocols = imap\nlisten = 127.0.0.1\n\
             log_path = {r}/log/dovecot.log\ninfo_log_path = {r}/log/dovecot.log\nfirst_valid_uid = 100\n\
             mail_uid = vmail\nmail_gid = vmail\nmail_location = maildir:{r}/mail/%u/Maildir\nssl = yes\n\
             ssl_cert = <{r}/cert.pem\nssl_key = <{r}/key.pem\ndisable_plaintext_auth = no\nauth_mechanisms = plain login\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=SHA512-CRYPT {r}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid=vmail gid=vmail home={r}/mail/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap}\n  }}\n\
               inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps}\n    ssl = yes\n  }}\n}}\n\
             service auth {{\n  unix_listener auth-userdb {{\n    mode = 0666\n  }}\n}}\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n}}\nlda_mailbox_autocreate = yes\n"
        );
        let conf = match oauth {
            None => conf,
            Some(port) => {
                std::fs::write(
                    root.join("oauth2.conf.ext"),
                    format!(
                        "introspection_mode = post\nintrospection_url = http://127.0.0.1:{port}/introspect\n\
                         username_attribute = username\nactive_attribute = active\nactive_value = true\n"
                    ),
                )
                .unwrap();
                conf.replace("auth_mechanisms = plain login\n", "auth_mechanisms = plain login xoauth2 oauthbearer\n")
                    + &format!(
                        "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {r}/oauth2.conf.ext\n}}\n"
                    )
            }
        };
        std::fs::write(root.join("dovecot.conf"), conf).unwrap();
        let child = coffer_testkit::peer("dovecot")
            .args(["-F", "-c", root.join("dovecot.conf").to_str().unwrap()])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", imaps)).is_err() {
            assert!(std::time::Instant::now() < deadline, "dovecot did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Dovecot { root: root.to_owned(), child, imaps, imap }
    }

    fn deliver(&self, user: &str, folder: Option<&str>, message: &[u8]) {
        use std::io::Write;
        let mut cmd = coffer_testkit::peer("/usr/lib/dovecot/dovecot-lda");
        cmd.args(["-c", self.root.join("dovecot.conf").to_str().unwrap(), "-d", user, "-f", "sender@contoso.com"]);
        if let Some(f) = folder {
            cmd.args(["-m", f]);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(message).unwrap();
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            let log = std::fs::read_to_string(self.root.join("log/dovecot.log")).unwrap_or_default();
            panic!(
                "dovecot-lda failed ({}): {}{}\ndovecot.log:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Messages left in a user's folder on the server (Maildir files).
    /// The folder's count once the poller has removed what it archived (that follows the commit,
    /// so it may come just after the mail is searchable).
    fn count_settled(&self, user: &str, folder: &str, expected: usize) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.count(user, folder) != expected && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.count(user, folder)
    }

    fn count(&self, user: &str, folder: &str) -> usize {
        let base = self.root.join("mail").join(user).join("Maildir");
        let dir = if folder == "INBOX" { base } else { base.join(format!(".{}", folder.replace('/', "."))) };
        ["cur", "new"].iter().map(|d| std::fs::read_dir(dir.join(d)).map(|e| e.count()).unwrap_or(0)).sum()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `[[imap]]` connection to this Dovecot; mailbox mode archives INBOX and Projects/Alpha.
fn config(d: &Dovecot, name: &str, user: &str, security: &str, mode: &str) -> String {
    let port = if security == "imaps" { d.imaps } else { d.imap };
    let folders = if mode == "mailbox" { "folders = [\"INBOX\", \"Projects/Alpha\"]\n" } else { "" };
    format!(
        "[[imap]]\nname = \"{name}\"\nhost = \"localhost\"\nport = {port}\nsecurity = \"{security}\"\n\
         ca_file = \"{}\"\nusername = \"{user}\"\npassword = \"secret1\"\nmode = \"{mode}\"\n{folders}",
        d.root.join("cert.pem").display()
    )
}

fn journal_report(i: usize) -> (Vec<u8>, Vec<u8>) {
    let original = format!(
        "From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: imap journal {i}\r\nMessage-ID: <imap-{i}@contoso.com>\r\n\r\nbody {i}\r\n"
    )
    .into_bytes();
    let env = Envelope::new("alice@contoso.com", "imap", &format!("<imap-{i}@contoso.com>"))
        .line("To", "bob@contoso.com")
        .line("Bcc", &format!("hidden{i}@contoso.com"));
    (report(&original, &env, Style::ExchangeOnline, "journal@contoso.com"), original)
}

#[test]
fn a_journal_mailbox_over_imaps_is_archived_unwrapped_and_emptied_after_commit() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    for i in 0..5 {
        d.deliver("journal", None, &journal_report(i).0);
    }
    std::fs::write(c.dir.path().join("coffer.toml"), config(&d, "journal", "journal", "imaps", "journal")).unwrap();
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 5, archived 5, duplicates 0, removed from the server 5"), "{out}");
    assert_eq!(d.count("journal", "INBOX"), 0);
    assert_eq!(c.count("subject:journal"), 5);
    assert_eq!(c.count("bcc:hidden3@contoso.com"), 1);
    let hit = &c.json("message-id:<imap-2@contoso.com>", 1)[0];
    assert_eq!(hit["sha256"], common::sha256(&journal_report(2).1), "the original is archived, not the report");

    // New mail is picked up; what was archived is not fetched again.
    for i in 5..8 {
        d.deliver("journal", None, &journal_report(i).0);
    }
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 3, archived 3"), "{out}");
    assert_eq!(c.count("subject:journal"), 8);

    // The connection's figures are in the status.
    assert_eq!(common::listener_figure(&c, "imap:journal", "messages"), 8);
}

#[test]
fn a_message_over_the_size_limit_is_left_on_the_server_and_polling_goes_on_past_it() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    d.deliver("journal", None, &journal_report(0).0);
    let (big, _) = journal_report(1);
    let big = [big.as_slice(), "x".repeat(200_000).as_bytes(), b"\r\n"].concat();
    d.deliver("journal", None, &big);
    d.deliver("journal", None, &journal_report(2).0);
    let toml = format!("max_message_bytes = 100000\n{}", config(&d, "journal", "journal", "imaps", "journal"));
    std::fs::write(c.dir.path().join("coffer.toml"), toml).unwrap();
    let out = c.run(&["imap", "poll"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("fetched 3, archived 2, duplicates 0, removed from the server 2, refused 1"), "{stdout}");
    assert!(stderr.contains("UID 2 refused, left on the server") && stderr.contains("max_message_bytes"), "{stderr}");
    assert_eq!(d.count("journal", "INBOX"), 1, "the refused message stays on the server");
    // The mailbox is not stuck: new mail comes in, the refused one is not fetched again.
    d.deliver("journal", None, &journal_report(3).0);
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 1, archived 1"), "{out}");
    assert_eq!(common::listener_figure(&c, "imap:journal", "refused"), 1);
}

#[test]
fn starttls_mailbox_mode_keeps_folders_and_deletes_nothing_and_a_new_uidvalidity_adds_no_duplicates() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    for i in 0..3 {
        d.deliver("alice", None, &journal_report(i).1);
    }
    for i in 3..5 {
        d.deliver("alice", Some("Projects/Alpha"), &journal_report(i).1);
    }
    std::fs::write(c.dir.path().join("coffer.toml"), config(&d, "alice", "alice", "starttls", "mailbox")).unwrap();
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 5, archived 5, duplicates 0, removed from the server 0"), "{out}");
    assert_eq!(d.count("alice", "INBOX"), 3, "nothing is deleted in mailbox mode");
    assert_eq!(c.count("folder:Projects/Alpha mailbox:alice"), 2);
    assert_eq!(c.count("folder:INBOX"), 3);

    // Recreate the folder: Dovecot gives it a new UIDVALIDITY; the poller reads it again.
    // (UIDVALIDITY is a timestamp: let a second pass first.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let maildir = d.root.join("mail/alice/Maildir");
    std::fs::remove_file(maildir.join("dovecot-uidlist")).unwrap();
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 3, archived 0, duplicates 3"), "the inbox is read again: {out}");
    assert_eq!(c.count(""), 5, "a new UIDVALIDITY causes no duplicates");
}

#[test]
fn a_wrong_password_is_a_clear_error() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    let cfg = config(&d, "journal", "journal", "imaps", "journal").replace("secret1", "wrong");
    std::fs::write(c.dir.path().join("coffer.toml"), cfg).unwrap();
    let out = c.run(&["imap", "poll"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the login of journal") && err.contains("check username and password"), "{err}");
}

#[test]
fn imap_test_lists_the_folders_with_their_counts_and_archives_nothing() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    for i in 0..2 {
        d.deliver("alice", None, &journal_report(i).1);
    }
    d.deliver("alice", Some("Projects/Alpha"), &journal_report(9).1);
    std::fs::write(c.dir.path().join("coffer.toml"), config(&d, "alice", "alice", "imaps", "mailbox")).unwrap();
    let out = c.ok(&["imap", "test", "alice"]);
    assert!(out.contains("logged in as alice"), "{out}");
    let count_of = |folder: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(folder))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    assert_eq!(count_of("INBOX").as_deref(), Some("2"), "{out}");
    assert_eq!(count_of("Projects/Alpha").as_deref(), Some("1"), "{out}");
    assert_eq!(c.count(""), 0);
    assert_eq!(d.count("alice", "INBOX"), 2);
    let unknown = c.run(&["imap", "test", "nope"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no IMAP connection named"));
}

#[test]
fn a_crash_between_fetch_and_commit_or_commit_and_delete_loses_nothing_and_stores_nothing_twice() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    for i in 0..6 {
        d.deliver("journal", None, &journal_report(i).0);
    }
    std::fs::write(c.dir.path().join("coffer.toml"), config(&d, "journal", "journal", "imaps", "journal")).unwrap();

    // Killed after the commit, before the delete: the messages are durable and still on the server.
    let crashed = c.command().args(["imap", "poll"]).env("COFFER_CRASH_AT", "imap-after-commit").output().unwrap();
    assert!(!crashed.status.success());
    assert_eq!(d.count("journal", "INBOX"), 6, "nothing left the server before the crash");
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 6, archived 0, duplicates 6, removed from the server 6"), "{out}");
    assert_eq!(d.count("journal", "INBOX"), 0);

    // Killed after the fetch, before the commit: nothing was archived, nothing left the server.
    for i in 6..9 {
        d.deliver("journal", None, &journal_report(i).0);
    }
    let crashed = c.command().args(["imap", "poll"]).env("COFFER_CRASH_AT", "imap-after-fetch").output().unwrap();
    assert!(!crashed.status.success());
    assert_eq!(d.count("journal", "INBOX"), 3);
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 3, archived 3, duplicates 0, removed from the server 3"), "{out}");

    assert_eq!(c.count("subject:journal"), 9);
    let verify = c.ok(&["verify"]);
    assert!(verify.contains("9 catalog messages") && verify.contains("all intact"), "{verify}");
}

#[test]
fn bounce_mode_archives_the_report_inside_an_ndr_and_move_keeps_it_on_the_server() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    // The folder the archived bounces move to exists already (with an unrelated message in it).
    d.deliver("alice", Some("Archived"), b"Subject: already here\r\n\r\nx\r\n");
    for i in 0..2 {
        d.deliver("alice", None, &coffer_testkit::journal::bounce(&journal_report(i).0));
    }
    let cfg = config(&d, "bounces", "alice", "imaps", "bounces") + "after_archive = \"move:Archived\"\n";
    std::fs::write(c.dir.path().join("coffer.toml"), cfg).unwrap();
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 2, archived 2"), "{out}");
    assert_eq!(d.count("alice", "INBOX"), 0);
    assert_eq!(d.count("alice", "Archived"), 3, "moved, not deleted");
    let hit = &c.json("message-id:<imap-1@contoso.com>", 1)[0];
    assert_eq!(hit["sha256"], common::sha256(&journal_report(1).1), "the original inside the bounced report");
    assert_eq!(c.count("bcc:hidden0@contoso.com"), 1);
}

/// A token endpoint (client-credentials grant) and Dovecot's introspection endpoint in one: the
/// secret "right" gets a token Dovecot accepts for "journal", any other a revoked one; tokens the
/// test kit's Entra ID issued are accepted too.
const TOKEN_SERVER: &str = r#"
import json, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
        if self.path == "/token":
            ok = form.get("client_secret", [""])[0] == "right" and form.get("grant_type", [""])[0] == "client_credentials"
            out = {"access_token": "tok-journal" if ok else "tok-revoked", "token_type": "Bearer", "expires_in": 3600}
        else:
            token = form.get("token", [""])[0]
            # tok-journal from /token; eyFake.… from the test kit's Entra ID (a certificate's assertion).
            ok = token == "tok-journal" or token.startswith("eyFake.")
            out = {"active": True, "username": "journal"} if ok else {"active": False}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// Dovecot checking OAuth2 tokens against [`TOKEN_SERVER`] (running, on the returned port).
fn dovecot_with_tokens(c: &Coffer) -> (Killed, Dovecot, u16) {
    let port = free_port();
    let server = Killed(Command::new("python3").args(["-c", TOKEN_SERVER, &port.to_string()]).spawn().unwrap());
    let d = Dovecot::start_with(&c.dir.path().join("dovecot"), Some(port));
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (server, d, port)
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn xoauth2_and_oauthbearer_log_in_with_a_token_and_a_revoked_token_is_a_clear_error() {
    let c = Coffer::new();
    let (_tokens, d, port) = dovecot_with_tokens(&c);
    for i in 0..3 {
        d.deliver("journal", None, &journal_report(i).0);
    }
    let oauth = |method: &str, secret: &str| {
        config(&d, "journal", "journal", "imaps", "journal")
            + &format!(
                "auth = \"{method}\"\ntoken_url = \"http://127.0.0.1:{port}/token\"\nclient_id = \"coffer\"\n\
                 client_secret = \"{secret}\"\nscope = \"https://outlook.office365.com/.default\"\n"
            )
    };
    std::fs::write(c.dir.path().join("coffer.toml"), oauth("xoauth2", "right")).unwrap();
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 3, archived 3"), "{out}");

    d.deliver("journal", None, &journal_report(3).0);
    std::fs::write(c.dir.path().join("coffer.toml"), oauth("oauthbearer", "right")).unwrap();
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 1, archived 1"), "{out}");

    std::fs::write(c.dir.path().join("coffer.toml"), oauth("xoauth2", "wrong")).unwrap();
    let refused = c.run(&["imap", "poll"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("refused the token for journal") && err.contains("IMAP.AccessAsApp"), "{err}");
}

#[test]
fn serve_picks_up_new_mail_through_idle_long_before_the_poll_interval() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    let cfg = config(&d, "journal", "journal", "imaps", "journal") + "poll_interval_secs = 600\n";
    std::fs::write(c.dir.path().join("coffer.toml"), cfg).unwrap();
    let server = common::Server::start(&c, &[]);
    std::thread::sleep(std::time::Duration::from_secs(1)); // the first poll, then IDLE
    for i in 0..2 {
        d.deliver("journal", None, &journal_report(i).0);
    }
    assert_eq!(common::wait_for_count(&c, "default", "subject:journal", 2), 2, "IDLE woke the poller");
    assert_eq!(d.count_settled("journal", "INBOX", 0), 0);
    drop(server);
}

#[test]
fn a_password_sealed_in_the_secret_store_replaces_one_in_the_configuration() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    d.deliver("journal", None, &journal_report(0).0);
    let cfg = config(&d, "journal", "journal", "imaps", "journal").replace("password = \"secret1\"\n", "");
    assert!(!cfg.contains("secret1"));
    std::fs::write(c.dir.path().join("coffer.toml"), cfg).unwrap();
    let mut set = c
        .command()
        .args(["secret", "set", "imap.journal.password"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        set.stdin.take().unwrap().write_all(b"secret1\n").unwrap();
    }
    assert!(set.wait().unwrap().success());
    assert_eq!(c.ok(&["secret", "list"]).trim(), "imap.journal.password");
    let sealed = std::fs::read(c.data().join("secrets/imap.journal.password.sealed")).unwrap();
    assert!(!sealed.windows(7).any(|w| w == b"secret1"), "the password is not on disk in the clear");
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 1, archived 1"), "{out}");
}

/// `coffer serve` with two connections to the same journal mailbox (one report waiting in it):
/// `journal` with the right password, `wrong` with a wrong one. The answer is an administrator's
/// API key and the server.
fn serve_a_good_and_a_wrong_connection(c: &Coffer, d: &Dovecot) -> (String, common::Server) {
    d.deliver("journal", None, &journal_report(0).0);
    let good = config(d, "journal", "journal", "imaps", "journal") + "poll_interval_secs = 600\n";
    let bad = config(d, "wrong", "journal", "imaps", "journal").replace("secret1", "not-the-password")
        + "poll_interval_secs = 600\n";
    std::fs::write(c.dir.path().join("coffer.toml"), format!("{good}\n{bad}")).unwrap();
    let key = c.user_with_key("admin", "administrator", &[]);
    (key, common::Server::start(c, &[]))
}

#[test]
fn the_consoles_test_connection_button_signs_in_to_dovecot_and_explains_a_wrong_password() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    let (key, server) = serve_a_good_and_a_wrong_connection(&c, &d);
    let post = |name: &str| -> serde_json::Value {
        ureq::post(&format!("http://{}/api/v1/connections/{name}/test", server.http))
            .set("Authorization", &format!("Bearer {key}"))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    };
    let listed: serde_json::Value = ureq::get(&format!("http://{}/api/v1/connections", server.http))
        .set("Authorization", &format!("Bearer {key}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains("secret1"), "no password is shown: {listed}");
    let ok = post("journal");
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(ok["detail"].as_str().unwrap().contains("logged in as journal"), "{ok}");
    let refused = post("wrong");
    assert_eq!(refused["ok"], false);
    assert!(refused["detail"].as_str().unwrap().to_lowercase().contains("password"), "{refused}");
}

#[test]
fn xoauth2_takes_its_token_from_a_microsoft_365_certificate() {
    let c = Coffer::new();
    let fake = coffer_testkit::microsoft::FakeMicrosoft::start(
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "5f1f4d1b-7e25-4a2a-9c37-0d1a3e0c9a11",
    );
    let manifest = c.dir.path().join("manifest.json");
    std::fs::write(&manifest, serde_json::to_vec(&fake.manifest()).unwrap()).unwrap();
    let updated = c.dir.path().join("manifest.updated.json");
    c.ok(&["m365", "manifest", "--alias", "m365", manifest.to_str().unwrap(), updated.to_str().unwrap()]);
    fake.upload_manifest(&serde_json::from_slice(&std::fs::read(&updated).unwrap()).unwrap());
    let (_introspection, d, _) = dovecot_with_tokens(&c);
    for i in 0..2 {
        d.deliver("journal", None, &journal_report(i).0);
    }
    let cfg = config(&d, "journal", "journal", "imaps", "journal")
        + "auth = \"xoauth2\"\nm365 = \"contoso\"\n\n"
        + &format!(
            "[[m365]]\nname = \"contoso\"\ntenant_id = \"{}\"\nclient_id = \"{}\"\ncertificate = \"m365\"\n\
             login_host = \"{base}\"\ngraph_host = \"{base}\"\n",
            fake.tenant_id,
            fake.client_id,
            base = fake.base
        );
    std::fs::write(c.dir.path().join("coffer.toml"), cfg).unwrap();
    let out = c.ok(&["imap", "poll"]);
    assert!(out.contains("fetched 2, archived 2"), "{out}");
    assert_eq!(fake.scopes_issued(), ["https://outlook.office365.com/.default"], "one token, for Exchange Online");
}

/// The source supervisor runs each connection on its own: one whose password is wrong fails,
/// backs off and shows its last error while the other archives on; the API stops a connection
/// (new mail waits on the server) and starts it again (the mail comes in).
#[test]
fn a_failing_source_backs_off_with_its_error_while_the_other_archives_and_the_api_stops_and_starts_one() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    let (key, server) = serve_a_good_and_a_wrong_connection(&c, &d);
    let api = |method: &str, path: &str| -> serde_json::Value {
        ureq::request(method, &format!("http://{}/api/v1{path}", server.http))
            .set("Authorization", &format!("Bearer {key}"))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    };
    let job = |name: &str| -> serde_json::Value {
        let list = api("GET", "/connections");
        list.as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["job"].clone()
    };
    let until = |name: &str, ok: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let j = job(name);
            if ok(&j) || std::time::Instant::now() > deadline {
                return j;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let wrong = until("wrong", &|j| j["state"] == "backing off");
    assert_eq!(wrong["state"], "backing off", "{wrong}");
    assert!(wrong["failures"].as_u64().unwrap() >= 1, "{wrong}");
    assert!(wrong["last_success"].is_null(), "{wrong}");
    assert!(wrong["next_run"].is_string(), "{wrong}");
    let error = wrong["last_error"].as_str().unwrap().to_lowercase();
    assert!(error.contains("authenticat") || error.contains("password") || error.contains("login"), "{wrong}");
    let journal = until("journal", &|j| j["state"] == "waiting");
    assert_eq!(journal["state"], "waiting", "{journal}");
    assert!(journal["last_success"].is_string() && journal["last_error"].is_null(), "{journal}");
    assert!(journal["progress"].as_str().unwrap().contains("archived 1"), "{journal}");
    assert_eq!(common::wait_for_count(&c, "default", "subject:journal", 1), 1);

    let stopped = api("POST", "/connections/journal/stop");
    assert_eq!(stopped["ok"], true, "{stopped}");
    assert_eq!(until("journal", &|j| j["state"] == "stopped")["state"], "stopped");
    d.deliver("journal", None, &journal_report(1).0);
    // IDLE would have woken a running poller within moments; a stopped one leaves the mail.
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(d.count("journal", "INBOX"), 1, "a stopped connection leaves new mail on the server");
    let runs = job("journal")["runs"].as_u64().unwrap();

    let started = api("POST", "/connections/journal/start");
    assert_eq!(started["ok"], true, "{started}");
    let again = until("journal", &|j| j["runs"].as_u64().unwrap() > runs && j["state"] == "waiting");
    assert!(again["progress"].as_str().unwrap().contains("archived 1"), "{again}");
    assert_eq!(common::wait_for_count(&c, "default", "subject:journal", 2), 2);
    assert_eq!(d.count("journal", "INBOX"), 0);
    let audit = c.ok(&["audit", "list", "--limit", "50"]);
    assert!(audit.contains("journal: stopped") && audit.contains("journal: poll started"), "{audit}");
}

/// The API as an administrator: (status, body) whatever the status.
fn call(
    server: &common::Server,
    key: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let req = ureq::request(method, &format!("http://{}/api/v1{path}", server.http))
        .set("Authorization", &format!("Bearer {key}"));
    let res = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let res = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = res.status();
    (status, res.into_json().unwrap_or(serde_json::Value::Null))
}

fn job_until(
    server: &common::Server,
    key: &str,
    name: &str,
    ok: &dyn Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, c) = call(server, key, "GET", &format!("/connections/{name}"), None);
        if ok(&c["job"]) || std::time::Instant::now() > deadline {
            return c["job"].clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Connections are configuration in the catalog: one made through the API runs at once, without a
/// restart; its password is sealed and never shown; a change without the password keeps it;
/// disabling stops it and enabling starts it again; every change is audited with before and after.
#[test]
fn an_imap_connection_made_through_the_api_runs_at_once_and_a_change_applies_live() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    d.deliver("journal", None, &journal_report(0).0);
    let key = c.user_with_key("admin", "administrator", &[]);
    let server = common::Server::start(&c, &[]);
    let settings = serde_json::json!({
        "kind": "imap", "name": "journal", "host": "localhost", "port": d.imaps, "security": "imaps",
        "ca_file": d.root.join("cert.pem"), "username": "journal", "password": "secret1", "mode": "journal",
        "poll_interval_secs": 600,
    });
    let (status, made) = call(&server, &key, "POST", "/connections", Some(settings.clone()));
    assert_eq!(status, 201, "{made}");
    assert!(!made.to_string().contains("secret1") && made["config"].get("password").is_none(), "{made}");
    assert!(c.data().join("secrets/imap.journal.password.sealed").is_file(), "the password is sealed");
    assert!(
        !std::fs::read_to_string(c.data().join("secrets/imap.journal.password.sealed"))
            .unwrap_or_default()
            .contains("secret1")
    );
    assert_eq!(common::wait_for_count(&c, "default", "subject:journal", 1), 1, "it ran without a restart");
    assert_eq!(d.count_settled("journal", "INBOX", 0), 0);

    // The same name again, and a new connection without its password, are refused with why.
    let (status, dup) = call(&server, &key, "POST", "/connections", Some(settings.clone()));
    assert_eq!((status, dup["error"].as_str().unwrap().starts_with("name")), (400, true), "{dup}");
    let mut no_password = settings.clone();
    no_password["name"] = "journal-2".into();
    no_password.as_object_mut().unwrap().remove("password");
    let (status, refused) = call(&server, &key, "POST", "/connections", Some(no_password));
    assert_eq!((status, refused["error"].as_str().unwrap().starts_with("password")), (400, true), "{refused}");

    // A change without the password keeps the stored one.
    let mut changed = settings.clone();
    changed.as_object_mut().unwrap().remove("password");
    changed["poll_interval_secs"] = 900.into();
    let (status, after) = call(&server, &key, "PUT", "/connections/journal", Some(changed.clone()));
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["config"]["poll_interval_secs"], 900);
    let (_, tested) = call(&server, &key, "POST", "/connections/journal/test", None);
    assert_eq!(tested["ok"], true, "the stored password still signs in: {tested}");

    // Disabled, it leaves new mail on the server; enabled again, the mail comes in.
    changed["enabled"] = false.into();
    call(&server, &key, "PUT", "/connections/journal", Some(changed.clone()));
    assert_eq!(job_until(&server, &key, "journal", &|j| j["state"] == "disabled")["state"], "disabled");
    d.deliver("journal", None, &journal_report(1).0);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(d.count("journal", "INBOX"), 1, "a disabled connection takes nothing");
    changed["enabled"] = true.into();
    call(&server, &key, "PUT", "/connections/journal", Some(changed));
    assert_eq!(common::wait_for_count(&c, "default", "subject:journal", 2), 2);

    let (status, _) = call(&server, &key, "DELETE", "/connections/journal", None);
    assert_eq!(status, 204);
    let (_, list) = call(&server, &key, "GET", "/connections", None);
    assert_eq!(list, serde_json::json!([]));
    let audit = c.ok(&["audit", "list", "--limit", "50"]);
    for line in [
        "connection journal (IMAP) added: enabled yes, server localhost:",
        "; new password sealed",
        "connection journal changed: poll interval 600 s (and IDLE) → 900 s (and IDLE)",
        "connection journal changed: enabled yes → no",
        "connection journal removed (was: enabled yes",
    ] {
        assert!(audit.contains(line), "{line}: {audit}");
    }
    assert!(!audit.contains("secret1"), "{audit}");
}

/// coffer.toml's [[imap]] seeds the catalog: its password is sealed, a console edit stands across
/// a restart while the file is unchanged, and a change to the file is applied at the next start.
#[test]
fn imap_connections_in_coffer_toml_seed_the_catalog_and_a_console_edit_stands_until_the_file_changes() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    let toml = config(&d, "journal", "journal", "imaps", "journal") + "poll_interval_secs = 600\n";
    std::fs::write(c.dir.path().join("coffer.toml"), &toml).unwrap();
    let key = c.user_with_key("admin", "administrator", &[]);
    let interval = |server: &common::Server| {
        call(server, &key, "GET", "/connections/journal", None).1["config"]["poll_interval_secs"].clone()
    };

    let mut server = common::Server::start(&c, &[]);
    let (_, seeded) = call(&server, &key, "GET", "/connections/journal", None);
    assert_eq!(seeded["config"]["poll_interval_secs"], 600, "{seeded}");
    assert!(!seeded.to_string().contains("secret1"), "{seeded}");
    assert!(c.data().join("secrets/imap.journal.password.sealed").is_file());
    let mut edit = seeded["config"].clone();
    edit["poll_interval_secs"] = 1200.into();
    assert_eq!(call(&server, &key, "PUT", "/connections/journal", Some(edit)).0, 200);
    server.stop();

    let mut server = common::Server::start(&c, &[]);
    assert_eq!(interval(&server), 1200, "the file did not change: the console's edit stands");
    server.stop();

    std::fs::write(c.dir.path().join("coffer.toml"), toml.replace("600", "300")).unwrap();
    let server = common::Server::start(&c, &[]);
    assert_eq!(interval(&server), 300, "the file changed: it is applied");
    let (_, tested) = call(&server, &key, "POST", "/connections/journal/test", None);
    assert_eq!(tested["ok"], true, "{tested}");
}

/// The guide's set-up in headless Chromium: an Office 365 connection made in the console, its
/// certificate through Update Manifest (the fake's portal takes the updated manifest), Test,
/// Synchronize (the fake then holds a subscription for the mailbox in scope), and an IMAP
/// connection signing in with OAuth2 through that connection's certificate (the journal mailbox
/// is archived); then Entra ID sign-in with that certificate, admin consent, and a role assignment
/// through Lookup after which that person signs in as an administrator. Screenshots go to
/// target/e2e-screenshots.
#[test]
fn the_guides_office_365_imap_oauth2_and_entra_sign_in_are_set_up_in_chromium() {
    let c = Coffer::new();
    let fake = coffer_testkit::microsoft::FakeMicrosoft::start(
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "5f1f4d1b-7e25-4a2a-9c37-0d1a3e0c9a11",
    );
    let alice = fake.add_user("alice@contoso.com");
    let group = fake.add_to_group(&alice, "Archive Admins");
    fake.sign_in_as(serde_json::json!({
        "sub": "s1", "oid": alice, "preferred_username": "alice@contoso.com", "groups": [group],
    }));
    let (_introspection, d, _) = dovecot_with_tokens(&c);
    d.deliver("journal", None, &journal_report(0).0);
    c.user_with_key("admin", "administrator", &[]);
    let http = free_port();
    let server =
        common::Server::start_at(&c, free_port(), &format!("127.0.0.1:{http}"), &[("COFFER_SMTP__TLS", "off")]);
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../e2e-screenshots");
    let status = coffer_testkit::peer("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/connections.mjs"))
        .env("BASE", format!("http://{}", server.http))
        .env("PASSWORD", common::PASSWORD)
        .env("FAKE", &fake.base)
        .env("TENANT_ID", &fake.tenant_id)
        .env("CLIENT_ID", &fake.client_id)
        .env("IMAP_PORT", d.imaps.to_string())
        .env("CA_FILE", d.root.join("cert.pem"))
        .env("GROUP", &group)
        .env("ARTIFACTS", &artifacts)
        .status()
        .unwrap();
    assert!(status.success(), "the browser flow failed (its output says where)");
    assert!(fake.admin_consented(), "the administrator granted the app's permissions");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fake.subscriptions().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(fake.subscriptions().len(), 1, "synchronize subscribed the one mailbox in scope");
    assert_eq!(common::wait_for_count(&c, "default", "subject:journal", 1), 1, "the OAuth2 connection archived");
    assert_eq!(d.count_settled("journal", "INBOX", 0), 0);
}

/// While a poll reads a large journal mailbox, the connection shows its backlog: the messages
/// still waiting on the server, counting down; between polls there is none.
#[test]
fn a_poll_through_a_large_mailbox_shows_its_backlog_counting_down() {
    let c = Coffer::new();
    let d = Dovecot::start(&c.dir.path().join("dovecot"));
    // Written straight into the Maildir: two thousand reports arrive before the first poll.
    d.deliver("journal", None, &journal_report(0).0);
    let new = d.root.join("mail/journal/Maildir/new");
    for i in 1..2000 {
        std::fs::write(new.join(format!("{i}.coffer-test:2,")), journal_report(i).0).unwrap();
    }
    let owned = Command::new("chown").args(["-R", "vmail:vmail", new.to_str().unwrap()]).status().unwrap();
    assert!(owned.success());
    std::fs::write(
        c.dir.path().join("coffer.toml"),
        config(&d, "journal", "journal", "imaps", "journal") + "poll_interval_secs = 600\n",
    )
    .unwrap();
    let key = c.user_with_key("admin", "administrator", &[]);
    let server = common::Server::start(&c, &[]);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let last = loop {
        let (_, conn) = call(&server, &key, "GET", "/connections/journal", None);
        let job = conn["job"].clone();
        if let Some(b) = job["backlog"].as_str() {
            let n: usize = b.split(' ').next().unwrap().parse().unwrap();
            assert!(b.ends_with("messages waiting in INBOX"), "{b}");
            seen.push(n);
        }
        // Waiting after a run (a job also says waiting before its first).
        let polled = job["state"] == "waiting" && job["runs"].as_u64().is_some_and(|r| r >= 1);
        if polled || std::time::Instant::now() > deadline {
            break job;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(last["progress"].as_str().unwrap().contains("archived 2000"), "{last}");
    assert!(last["backlog"].is_null(), "no backlog between polls: {last}");
    assert!(!seen.is_empty(), "the backlog was shown while the poll ran");
    assert!(seen.iter().all(|n| *n <= 2000) && seen.windows(2).all(|w| w[1] <= w[0]), "counting down: {seen:?}");
}
