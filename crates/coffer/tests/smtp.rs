//! The SMTP journaling listener against real clients: Python's smtplib, swaks and a scripted
//! client for what those do not do (pipelining in one write, BDAT, a client vanishing mid-DATA).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use coffer_testkit::journal::{Envelope, Style, report};
use common::{Coffer, Server, journal_archive, python, sha256, wait_for_count};

const ORIGINAL: &[u8] = b"From: Alice <alice@contoso.com>\r\nTo: bob@contoso.com\r\nSubject: Q3 numbers\r\n\
Message-ID: <q3-smtp@contoso.com>\r\nDate: Tue, 05 Mar 2024 09:59:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\nThe quarterly numbers, \xc3\xbcber gut.\r\n";

fn journal_report(original: &[u8], message_id: &str, journal: &str) -> Vec<u8> {
    let env = Envelope::new("alice@contoso.com", "Q3 numbers", message_id)
        .line("To", "bob@contoso.com")
        .line("Bcc", "dave@contoso.com");
    report(original, &env, Style::ExchangeOnline, journal)
}

const SMTPLIB: &str = r#"
import smtplib, ssl, sys
host, port, ca, journal, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
s = smtplib.SMTP(host, port, local_hostname="exchange.test")
s.starttls(context=ctx)
s.ehlo("exchange.test")
data = open(path, "rb").read()
code, reply = s.mail("MicrosoftExchange@contoso.com")
assert code == 250, (code, reply)
code, reply = s.rcpt(journal)
assert code == 250, (code, reply)
code, reply = s.data(data)
print(code, reply.decode())
s.quit()
"#;

#[test]
fn smtplib_over_verified_starttls_delivers_a_journal_report_with_its_bcc_searchable() {
    let c = Coffer::new();
    let (journal, ca) = journal_archive(&c);
    let server = Server::start(&c, &[]);
    let report_file = c.dir.path().join("report.eml");
    std::fs::write(&report_file, journal_report(ORIGINAL, "<q3-smtp@contoso.com>", &journal)).unwrap();
    let out = python(
        SMTPLIB,
        &["localhost", &server.smtp.port().to_string(), ca.to_str().unwrap(), &journal, report_file.to_str().unwrap()],
    );
    assert!(out.starts_with("250 2.0.0 Archived as"), "{out}");

    assert_eq!(wait_for_count(&c, "contoso", "bcc:dave@contoso.com", 1), 1);
    let hit: serde_json::Value = serde_json::from_str(
        c.ok(&["search", "--tenant", "contoso", "--json", "message-id:<q3-smtp@contoso.com>"]).lines().next().unwrap(),
    )
    .unwrap();
    assert_eq!(hit["sha256"], sha256(ORIGINAL), "the original's bytes are archived, not the report's");
    let raw =
        c.command().args(["show", "--tenant", "contoso", "--raw", &hit["id"].to_string()]).output().unwrap().stdout;
    assert_eq!(raw, ORIGINAL);
}

#[test]
fn messages_larger_than_the_in_memory_spool_arrive_byte_exact_over_data_and_bdat() {
    let c = Coffer::new();
    let (journal, ca) = journal_archive(&c);
    let server = Server::start(&c, &[]);
    // 3 MiB of lines: spooled to disk on the way in, past the first MiB.
    let mut original =
        b"From: alice@contoso.com\r\nSubject: large spooled\r\nMessage-ID: <large@contoso.com>\r\n\r\n".to_vec();
    for i in 0..40_000 {
        original.extend_from_slice(format!("line {i:06} of a large message, with .dots. at the end.\r\n").as_bytes());
    }
    original.extend_from_slice(b".leading dot line\r\n");
    let report_file = c.dir.path().join("large.eml");
    std::fs::write(&report_file, journal_report(&original, "<large@contoso.com>", &journal)).unwrap();
    let out = python(
        SMTPLIB,
        &["localhost", &server.smtp.port().to_string(), ca.to_str().unwrap(), &journal, report_file.to_str().unwrap()],
    );
    assert!(out.starts_with("250 2.0.0 Archived as"), "{out}");
    let id = out.trim().rsplit(' ').next().unwrap().to_owned();
    let raw = c.command().args(["show", "--tenant", "contoso", "--raw", &id]).output().unwrap().stdout;
    assert_eq!(raw.len(), original.len());
    assert!(raw == original, "byte-exact");
    assert_eq!(wait_for_count(&c, "contoso", "subject:spooled", 1), 1);
    assert!(std::fs::read_dir(c.data().join("spool")).unwrap().next().is_none(), "the spool file is gone");
}

#[test]
fn tls_required_refuses_mail_before_starttls() {
    let c = Coffer::new();
    let (journal, _) = journal_archive(&c);
    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "require")]);
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("client.test")
print(s.mail("a@contoso.com")[0], s.rcpt(sys.argv[2])[0])
"#,
        &[&server.smtp.port().to_string(), &journal],
    );
    assert_eq!(out.trim(), "530 530");
}

#[test]
fn swaks_with_verified_starttls_and_smtputf8_delivers() {
    let c = Coffer::new();
    let (journal, ca) = journal_archive(&c);
    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "require")]);
    let original = "From: Jörg <jörg@müller.example>\r\nTo: bob@contoso.com\r\nSubject: Grüße\r\nMessage-ID: <utf8@müller.example>\r\n\r\nHallo\r\n";
    let file = c.dir.path().join("report.eml");
    std::fs::write(&file, journal_report(original.as_bytes(), "<utf8@müller.example>", &journal)).unwrap();
    let out = coffer_testkit::peer("swaks")
        .args([
            "--server",
            &format!("localhost:{}", server.smtp.port()),
            "--tls",
            "--tls-verify",
            "--tls-ca-path",
            ca.to_str().unwrap(),
        ])
        .args(["--from", "jörg@müller.example", "--to", &journal, "--data", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("250 2.0.0 Archived as"), "{text}");
    assert_eq!(wait_for_count(&c, "contoso", "subject:grüße", 1), 1);
}

/// A minimal scripted SMTP client over a plain socket.
struct Client {
    stream: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Client { stream };
        assert!(c.read_replies(1).starts_with("220 "));
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads until `n` final reply lines (`NNN ` not `NNN-`) have arrived.
    fn read_replies(&mut self, n: usize) -> String {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while text.lines().filter(|l| l.len() >= 4 && &l[3..4] == " ").count() < n {
            let got = self.stream.read(&mut buf).unwrap();
            assert!(got > 0, "connection closed; so far: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..got]));
        }
        text
    }
}

#[test]
fn a_message_smuggled_behind_a_bare_cr_dot_stays_inside_the_first_and_bdat_zero_last_is_answered() {
    let c = Coffer::new();
    let (journal, _) = journal_archive(&c);
    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    let mut client = Client::connect(server.smtp.port());
    client
        .send(format!("EHLO exchange.test\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<{journal}>\r\nDATA\r\n").as_bytes());
    assert!(client.read_replies(4).contains("354 "));
    // `<CR><LF>.<CR><CR><LF>` is no end of data: what follows is the same message.
    client.send(
        format!(
            "From: a@contoso.com\r\nSubject: carrier\r\n\r\nhello\r\n.\r\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<{journal}>\r\nDATA\r\nSubject: smuggled\r\n\r\nforged\r\n.\r\n"
        )
        .as_bytes(),
    );
    let reply = client.read_replies(1);
    assert!(reply.starts_with("250 2.0.0 Archived as"), "{reply}");
    // BDAT 0 LAST ends a chunked message at once; BDAT without MAIL gets one reply.
    client.send(
        format!("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<{journal}>\r\nBDAT 22\r\nSubject: bdat zero\r\n\r\n").as_bytes(),
    );
    let replies = client.read_replies(3);
    assert!(replies.contains("250 2.1.5") && replies.contains("250 2.0.0 22 octets received"), "{replies}");
    client.send(b"BDAT 0 LAST\r\n");
    let replies = client.read_replies(1);
    assert!(replies.starts_with("250 2.0.0 Archived as"), "{replies}");
    client.send(b"BDAT 3 LAST\r\nabcNOOP\r\n");
    let replies = client.read_replies(2);
    assert_eq!(replies, "503 5.5.1 Send MAIL and RCPT first\r\n250 2.0.0 OK\r\n");
    assert_eq!(wait_for_count(&c, "contoso", "subject:carrier", 1), 1);
    let smuggled = c.ok(&["search", "--tenant", "contoso", "--count", "subject:smuggled"]);
    assert_eq!(smuggled.trim(), "0", "no second message");
    assert_eq!(wait_for_count(&c, "contoso", "", 2), 2);
}

#[test]
fn scripted_sessions_pipelining_bdat_sizes_and_mistakes() {
    let c = Coffer::new();
    let (journal, _) = journal_archive(&c);
    let server = Server::start(&c, &[("COFFER_MAX_MESSAGE_BYTES", "100000")]);
    let port = server.smtp.port();

    // Pipelining: the whole transaction in one write; the replies come in order.
    let mut client = Client::connect(port);
    let first = journal_report(ORIGINAL, "<q3-smtp@contoso.com>", &journal);
    let mut batch =
        format!("EHLO exchange.test\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<{journal}>\r\nDATA\r\n").into_bytes();
    batch.extend_from_slice(&first);
    batch.extend_from_slice(b".\r\nQUIT\r\n");
    client.send(&batch);
    let replies = client.read_replies(6);
    let codes: Vec<&str> = replies.lines().filter(|l| &l[3..4] == " ").map(|l| &l[..3]).collect();
    assert_eq!(codes, ["250", "250", "250", "354", "250", "221"], "{replies}");

    // BDAT in three chunks.
    let other =
        b"From: carol@contoso.com\r\nSubject: chunked\r\nMessage-ID: <bdat@contoso.com>\r\n\r\nin three pieces\r\n"
            .to_vec();
    let bdat = journal_report(&other, "<bdat@contoso.com>", &journal);
    let (a, rest) = bdat.split_at(100);
    let (b, last) = rest.split_at(rest.len() / 2);
    let mut client = Client::connect(port);
    client.send(format!("EHLO x\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<{journal}>\r\n").as_bytes());
    client.read_replies(3);
    for (chunk, is_last) in [(a, false), (b, false), (last, true)] {
        client.send(format!("BDAT {}{}\r\n", chunk.len(), if is_last { " LAST" } else { "" }).as_bytes());
        client.send(chunk);
        let reply = client.read_replies(1);
        assert!(reply.starts_with("250"), "{reply}");
    }

    // Mistakes: unknown recipient, syntax error, over SIZE, VRFY.
    let mut client = Client::connect(port);
    client.send(b"EHLO x\r\nVRFY bob\r\nMAIL FROM:<a@contoso.com> SIZE=200000\r\nMAIL FROM:bad address\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<bob@contoso.com>\r\n");
    let replies = client.read_replies(6);
    let codes: Vec<&str> = replies.lines().filter(|l| &l[3..4] == " ").map(|l| &l[..3]).collect();
    assert_eq!(codes, ["250", "502", "552", "501", "250", "550"], "{replies}");

    // A message over the size limit after DATA.
    client.send(format!("RCPT TO:<{journal}>\r\nDATA\r\n").as_bytes());
    client.read_replies(2);
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 150_000));
    big.extend_from_slice(b"\r\n.\r\n");
    client.send(&big);
    assert!(client.read_replies(1).starts_with("552 5.3.4"));

    // A client that disappears in the middle of DATA: nothing half-stored.
    let mut client = Client::connect(port);
    client.send(format!("EHLO x\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<{journal}>\r\nDATA\r\n").as_bytes());
    client.read_replies(4);
    client.send(b"From: eve@contoso.com\r\nSubject: vanished\r\nMessage-ID: <gone@contoso.com>\r\n\r\nhalf a mess");
    drop(client);

    assert_eq!(wait_for_count(&c, "contoso", "", 2), 2);
    assert_eq!(wait_for_count(&c, "contoso", "subject:chunked", 1), 1);
    assert_eq!(c.ok(&["search", "--tenant", "contoso", "--count", "message-id:<gone@contoso.com>"]).trim(), "0");
    // verify takes the store's writer lock: after the server has stopped.
    drop(server);
    assert!(c.ok(&["verify"]).contains("all intact"));
}

#[test]
fn sigterm_finishes_the_transaction_in_flight_then_exits() {
    let c = Coffer::new();
    let (journal, _) = journal_archive(&c);
    let mut server = Server::start(&c, &[]);
    let mut client = Client::connect(server.smtp.port());
    client.send(format!("EHLO x\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<{journal}>\r\nDATA\r\n").as_bytes());
    client.read_replies(4);
    let report = journal_report(ORIGINAL, "<q3-smtp@contoso.com>", &journal);
    let (head, tail) = report.split_at(report.len() / 2);
    client.send(head);
    std::thread::sleep(Duration::from_millis(200));
    let _ = std::process::Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status();
    std::thread::sleep(Duration::from_millis(300));
    // New connections are no longer accepted …
    assert!(
        TcpStream::connect(server.smtp).is_err() || {
            let mut s = TcpStream::connect(server.smtp).unwrap();
            let mut b = [0u8; 64];
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            matches!(s.read(&mut b), Ok(0) | Err(_))
        }
    );
    // … but the message in flight is finished and acknowledged.
    client.send(tail);
    client.send(b".\r\n");
    let reply = client.read_replies(1);
    assert!(reply.starts_with("250 2.0.0 Archived"), "{reply}");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(c.ok(&["search", "--tenant", "contoso", "--count", "message-id:<q3-smtp@contoso.com>"]).trim(), "1");
}

#[test]
fn one_message_for_two_tenants_is_archived_for_each_and_allow_lists_are_enforced() {
    let c = Coffer::new();
    let (contoso, _) = journal_archive(&c);
    let out =
        c.command().args(["tenant", "add", "fabrikam"]).env("COFFER_JOURNAL_DOMAIN", "archive.test").output().unwrap();
    let fabrikam = String::from_utf8(out.stdout).unwrap().split("journal address: ").nth(1).unwrap().trim().to_owned();
    // fabrikam accepts reports only from its own network, not from this host.
    c.ok(&["tenant", "allow", "fabrikam", "203.0.113.0/24"]);
    assert!(c.run(&["tenant", "allow", "fabrikam", "not-a-network"]).status.code() != Some(0));
    let server = Server::start(&c, &[]);

    let mut client = Client::connect(server.smtp.port());
    client.send(
        format!("EHLO x\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<{contoso}>\r\nRCPT TO:<{fabrikam}>\r\n").as_bytes(),
    );
    let replies = client.read_replies(4);
    assert!(replies.contains("550 5.7.1"), "{replies}");

    c.ok(&["tenant", "allow", "fabrikam", "127.0.0.0/8"]);
    std::thread::sleep(Duration::from_secs(6)); // the listener refreshes tenants every 5 s
    let mut client = Client::connect(server.smtp.port());
    let report = journal_report(ORIGINAL, "<q3-smtp@contoso.com>", &contoso);
    let mut batch =
        format!("EHLO x\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<{contoso}>\r\nRCPT TO:<{fabrikam}>\r\nDATA\r\n")
            .into_bytes();
    batch.extend_from_slice(&report);
    batch.extend_from_slice(b".\r\n");
    client.send(&batch);
    let replies = client.read_replies(6);
    assert!(replies.lines().last().unwrap().starts_with("250 2.0.0 Archived as"), "{replies}");
    assert_eq!(wait_for_count(&c, "contoso", "bcc:dave@contoso.com", 1), 1);
    assert_eq!(wait_for_count(&c, "fabrikam", "bcc:dave@contoso.com", 1), 1);
}

#[test]
fn connection_limits_per_address_answer_421() {
    let c = Coffer::new();
    journal_archive(&c);
    let server = Server::start(&c, &[("COFFER_SMTP__MAX_CONNECTIONS_PER_MINUTE_PER_IP", "3")]);
    for _ in 0..3 {
        Client::connect(server.smtp.port());
    }
    let mut refused = TcpStream::connect(server.smtp).unwrap();
    let mut text = String::new();
    refused.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    refused.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("421 4.7.0"), "{text}");
}

#[test]
fn also_listen_serves_more_addresses_with_the_same_settings() {
    let c = Coffer::new();
    journal_archive(&c);
    let second = common::free_port();
    let also = format!("[\"127.0.0.1:{second}\"]");
    let _server = Server::start(&c, &[("COFFER_SMTP__ALSO_LISTEN", also.as_str())]);
    std::thread::sleep(Duration::from_millis(300));
    let mut client = Client::connect(second);
    client.send(b"EHLO x\r\n");
    assert!(client.read_replies(1).contains("STARTTLS"));
}

#[test]
fn a_configured_alias_is_a_journal_address_of_its_tenant() {
    let c = Coffer::new();
    journal_archive(&c);
    std::fs::write(c.dir.path().join("coffer.toml"), "[smtp.aliases]\n\"archive@contoso.com\" = \"contoso\"\n")
        .unwrap();
    let server = Server::start(&c, &[]);
    let mut client = Client::connect(server.smtp.port());
    let report = journal_report(ORIGINAL, "<q3-smtp@contoso.com>", "archive@contoso.com");
    let mut batch = b"EHLO x\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<Archive@Contoso.com>\r\nDATA\r\n".to_vec();
    batch.extend_from_slice(&report);
    batch.extend_from_slice(b".\r\n");
    client.send(&batch);
    let replies = client.read_replies(5);
    assert!(replies.lines().last().unwrap().starts_with("250 2.0.0"), "{replies}");
    assert_eq!(wait_for_count(&c, "contoso", "bcc:dave@contoso.com", 1), 1);
}

#[test]
fn status_shows_the_listener_figures_and_traffic_in_hourly_buckets() {
    let c = Coffer::new();
    let (journal, _) = journal_archive(&c);
    let mut server = Server::start(&c, &[]);
    let mut client = Client::connect(server.smtp.port());
    let report = journal_report(ORIGINAL, "<q3-smtp@contoso.com>", &journal);
    let mut batch = format!(
        "EHLO x\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<{journal}>\r\nRCPT TO:<nobody@archive.test>\r\nDATA\r\n"
    )
    .into_bytes();
    batch.extend_from_slice(&report);
    batch.extend_from_slice(b".\r\nQUIT\r\n");
    client.send(&batch);
    client.read_replies(7);
    assert!(server.stop().success());
    let status: serde_json::Value = serde_json::from_str(&c.ok(&["status", "--json"])).unwrap();
    let figure = |name: &str| -> i64 {
        status["listener_figures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["figure"] == name)
            .map(|f| f["value"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(figure("connections"), 1);
    assert_eq!(figure("messages"), 1);
    assert_eq!(figure("bytes"), report.len() as i64);
    assert_eq!(figure("reject:unknown-recipient"), 1);
    let traffic = &status["traffic"].as_array().unwrap()[0];
    assert_eq!((traffic["source"].as_str(), traffic["messages"].as_i64()), (Some("smtp"), Some(1)));
    assert_eq!(traffic["bucket"].as_i64().unwrap() % 3600, 0, "hourly buckets");
    assert!(c.ok(&["status"]).contains("journal address journal-"));
}

/// An API call as an administrator's script makes it: (status, JSON body or null).
fn api(
    server: &Server,
    key: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let request = ureq::request(method, &format!("http://{}/api/v1{path}", server.http))
        .set("Authorization", &format!("Bearer {key}"));
    let response = match body {
        Some(b) => request.send_json(b),
        None => request.call(),
    };
    let response = match response {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

fn greeting(port: u16) -> String {
    let mut client = Client::connect_raw(port).expect("the listener answers");
    client.read_replies(1)
}

impl Client {
    fn connect_raw(port: u16) -> std::io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Client { stream })
    }
}

#[test]
fn a_listener_added_through_the_api_answers_at_once_is_changed_live_and_survives_a_restart() {
    let c = Coffer::new();
    let (journal, ca) = journal_archive(&c);
    let key = c.user_with_key("admin", "administrator", &[]);
    let smtp_port = common::free_port();
    let mut server = Server::start_on(&c, smtp_port, &[]);
    let port = common::free_port();
    let second = serde_json::json!({
        "name": "second", "listen": format!("127.0.0.1:{port}"), "hostname": "mx2.archive.test",
        "tls": "offer", "certificate": "smtp", "max_recipients": 10,
    });
    let (status, created) = api(&server, &key, "POST", "/listeners", Some(second.clone()));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["state"], format!("listening on 127.0.0.1:{port}"));
    assert!(greeting(port).starts_with("220 mx2.archive.test"), "the new listener answers without a restart");

    // A journal report over verified STARTTLS through the new listener is archived.
    let report_file = c.dir.path().join("report.eml");
    std::fs::write(&report_file, journal_report(ORIGINAL, "<q3-second@contoso.com>", &journal)).unwrap();
    let out = python(
        SMTPLIB,
        &["localhost", &port.to_string(), ca.to_str().unwrap(), &journal, report_file.to_str().unwrap()],
    );
    assert!(out.starts_with("250"), "{out}");
    assert_eq!(wait_for_count(&c, "contoso", "subject:q3", 1), 1);

    // Mistakes are refused, each naming its field, and nothing is saved or started.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    for (change, field) in [
        (serde_json::json!({"name": "third", "listen": "127.0.0.1"}), "listen"),
        (serde_json::json!({"name": "third", "listen": format!("127.0.0.1:{smtp_port}")}), "listen"),
        (serde_json::json!({"name": "third", "listen": busy, "tls": "off"}), "cannot listen there"),
        (serde_json::json!({"name": "third", "listen": "127.0.0.1:0", "certificate": "nowhere"}), "certificate"),
        (serde_json::json!({"name": "Third", "listen": "127.0.0.1:0"}), "name"),
    ] {
        let (status, body) = api(&server, &key, "POST", "/listeners", Some(change.clone()));
        assert_eq!(status, 400, "{change}: {body}");
        assert!(body["error"].as_str().unwrap().contains(field), "{change}: {body}");
    }
    let (_, list) = api(&server, &key, "GET", "/listeners", None);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["smtp", "second"]);

    // Disabled: the port closes at once. Enabled on another port: that one answers.
    let mut disabled = second.clone();
    disabled["enabled"] = false.into();
    let (status, body) = api(&server, &key, "PUT", "/listeners/second", Some(disabled));
    assert_eq!((status, body["state"].as_str()), (200, Some("stopped")), "{body}");
    assert!(Client::connect_raw(port).is_err(), "a disabled listener accepts no connection");
    let moved_port = common::free_port();
    let mut moved = second.clone();
    moved["listen"] = format!("127.0.0.1:{moved_port}").into();
    let (status, body) = api(&server, &key, "PUT", "/listeners/second", Some(moved));
    assert_eq!(status, 200, "{body}");
    assert!(greeting(moved_port).starts_with("220 mx2.archive.test"));
    // Changed on the same address: the old listener lets go of the port before the new one binds.
    let mut renamed = second.clone();
    renamed["listen"] = format!("127.0.0.1:{moved_port}").into();
    renamed["hostname"] = "mx3.archive.test".into();
    let (status, body) = api(&server, &key, "PUT", "/listeners/second", Some(renamed));
    assert_eq!(status, 200, "{body}");
    assert!(greeting(moved_port).starts_with("220 mx3.archive.test"));

    // A restart runs what the catalog holds.
    server.stop();
    let server = Server::start_on(&c, smtp_port, &[]);
    assert!(greeting(moved_port).starts_with("220 mx3.archive.test"), "the listener survives a restart");
    let audit = c.ok(&["audit", "list", "--limit", "100"]);
    assert!(audit.contains("listener second added: enabled yes, listen 127.0.0.1:"), "{audit}");
    assert!(audit.contains("listener second changed: enabled yes → no"), "{audit}");

    let (status, _) = api(&server, &key, "DELETE", "/listeners/second", None);
    assert_eq!(status, 204);
    assert!(Client::connect_raw(moved_port).is_err(), "a removed listener accepts no connection");
    assert!(greeting(smtp_port).starts_with("220 "), "the configured listener runs on");
}
