//! The console end to end: `coffer serve` with mail arriving over SMTP, sign-in through a real
//! OpenID provider (oidc-provider) with client secret and with the certificate (private_key_jwt),
//! and the pages in headless Chromium (tests/e2e/console.mjs, screenshots kept in
//! target/e2e-screenshots).

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{Coffer, PASSWORD, Server, free_port, python, sha256};
use serde_json::json;

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

struct Provider(Child);

impl Provider {
    fn start(port: u16, redirect_uri: &str, cert: &Path) -> Provider {
        let mut child = coffer_testkit::peer("node")
            .arg(e2e_dir().join("oidc-provider.mjs"))
            .env("PORT", port.to_string())
            .env("REDIRECT_URI", redirect_uri)
            .env("COFFER_CERT_PEM", cert)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (npm ci --prefix crates/coffer/tests/e2e installs the provider)");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("oidc-provider printed nothing").unwrap();
        assert!(line.contains("listening"), "{line}");
        std::thread::spawn(move || for _ in lines {});
        Provider(child)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn api(base: &str, key: &str, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
    let request = ureq::request(method, &format!("{base}/api/v1{path}")).set("Authorization", &format!("Bearer {key}"));
    let response = match body {
        Some(b) => request.send_json(b),
        None => request.call(),
    };
    match response {
        Ok(r) => r.into_json().unwrap(),
        Err(ureq::Error::Status(code, r)) => panic!("{method} {path}: {code} {}", r.into_string().unwrap()),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

const SEND: &str = r#"
import smtplib, sys
port, journal = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP("127.0.0.1", port, local_hostname="exchange.test")
for path in sys.argv[3:]:
    s.sendmail("MicrosoftExchange@contoso.com", [journal], open(path, "rb").read())
s.quit()
print("sent")
"#;

fn original(from: &str, to: &str, subject: &str, id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Wed, 03 Jul 2024 08:00:00 +0000\r\n\
Message-ID: <{id}>\r\n\r\n{subject}: see the attached figures.\r\n"
    )
    .into_bytes()
}

#[test]
fn console_in_headless_chromium_with_single_sign_on() {
    let c = Coffer::new();
    let key = c.user_with_key("admin", "administrator", &[]);
    c.ok(&["cert", "generate", "--alias", "oidc", "--cn", "coffer-console"]);
    let cert = c.dir.path().join("oidc.pem");
    std::fs::write(&cert, c.ok(&["cert", "export", "--alias", "oidc"])).unwrap();
    let journal = c
        .ok(&["tenant", "list"])
        .split_whitespace()
        .find(|w| w.starts_with("journal-"))
        .unwrap()
        .replace("archive.localhost", "archive.test");
    // A mailbox connection whose server does not answer: the Connections page shows it backing off.
    let closed = free_port();
    std::fs::write(
        c.dir.path().join("coffer.toml"),
        format!(
            "[[imap]]\nname = \"journal\"\nhost = \"127.0.0.1\"\nport = {closed}\nsecurity = \"none\"\n\
             username = \"journal\"\npassword = \"secret1\"\nmode = \"journal\"\npoll_interval_secs = 600\n"
        ),
    )
    .unwrap();
    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    let base = format!("http://{}", server.http);

    // Mail over SMTP: one for bob (with a Bcc only the journal report knows), one not for him.
    let quarterly = original("Alice <alice@contoso.com>", "bob@contoso.com", "Quarterly results", "q@contoso.com");
    let carol = original("carol@contoso.com", "erin@contoso.com", "Carol's plans", "c@contoso.com");
    let mut files = Vec::new();
    for (name, raw, bcc) in [("q", &quarterly, Some("dave@contoso.com")), ("c", &carol, None)] {
        let subject =
            String::from_utf8_lossy(raw).lines().find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned)).unwrap();
        let mut envelope = coffer_testkit::journal::Envelope::new("alice@contoso.com", &subject, "<x@contoso.com>");
        envelope = envelope.line("To", if name == "q" { "bob@contoso.com" } else { "erin@contoso.com" });
        if let Some(b) = bcc {
            envelope = envelope.line("Bcc", b);
        }
        let report =
            coffer_testkit::journal::report(raw, &envelope, coffer_testkit::journal::Style::ExchangeOnline, &journal);
        let file = c.dir.path().join(format!("{name}.eml"));
        std::fs::write(&file, report).unwrap();
        files.push(file.to_string_lossy().into_owned());
    }
    let mut args = vec![server.smtp.port().to_string(), journal.clone()];
    args.extend(files);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(python(SEND, &args).trim(), "sent");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while api(&base, &key, "GET", "/search", None)["total"] != 2 {
        assert!(std::time::Instant::now() < deadline, "the two messages never became searchable");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    // Single sign-on against oidc-provider, roles from groups.
    let port = free_port();
    let _provider = Provider::start(port, &format!("{base}/oidc/callback"), &cert);
    let mut login = api(&base, &key, "GET", "/config/login", None);
    login["oidc"]["enabled"] = json!(true);
    login["oidc"]["issuer"] = json!(format!("http://127.0.0.1:{port}"));
    login["oidc"]["client_id"] = json!("coffer-console");
    login["oidc"]["scopes"] = json!("openid email profile groups");
    login["client_secret"] = json!("coffer-console-secret");
    login["role_assignments"] = json!([
        {"attribute": "groups", "value": "archive-admins", "role": "administrator"},
        {"attribute": "domain", "value": "contoso.com", "role": "user"},
    ]);
    api(&base, &key, "PUT", "/config/login", Some(login.clone()));
    let driver = e2e_dir().join("oidc_sign_in.py");
    let me = |user: &str| -> serde_json::Value {
        let out = Command::new("python3").arg(&driver).args([base.as_str(), user]).output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let alice = me("alice");
    assert_eq!(alice["role"], "administrator");
    assert_eq!(alice["addresses"], json!(["alice@contoso.com"]));
    assert_eq!(me("bob")["role"], "user");
    // The claims alice presented, for the administrator's Lookup.
    let users = api(&base, &key, "GET", "/users", None);
    let alice_id =
        users.as_array().unwrap().iter().find(|u| u["login"] == "alice@contoso.com").unwrap()["id"].as_i64().unwrap();
    assert_eq!(
        api(&base, &key, "GET", &format!("/users/{alice_id}/claims"), None)["groups"],
        json!(["archive-admins"])
    );

    // A nonce that is not the one sent: the ID token is refused.
    let db = c.data().join("catalog.sqlite");
    let out = Command::new("python3")
        .arg(&driver)
        .args([base.as_str(), "alice", "--forge-nonce", db.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("400") && text.contains("nonce"), "{text}{}", String::from_utf8_lossy(&out.stderr));

    // The browser: local sign-in, search, message, download, charts, audit, single sign-on.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../e2e-screenshots");
    let status = coffer_testkit::peer("node")
        .arg(e2e_dir().join("console.mjs"))
        .env("BASE", &base)
        .env("PASSWORD", PASSWORD)
        .env("EXPECTED_SHA256", sha256(&quarterly))
        .env("LISTENER_PORT", common::free_port().to_string())
        .env("ARTIFACTS", &artifacts)
        .status()
        .unwrap();
    assert!(status.success(), "the browser test failed (its output above says where)");
    for shot in [
        "signon",
        "search",
        "message",
        "status",
        "audit",
        "alice",
        "bob-search",
        "bob-message",
        "listeners",
        "volumes-import",
    ] {
        assert!(artifacts.join(format!("{shot}.png")).is_file(), "screenshot {shot}");
    }

    // The same sign-in with the certificate instead of a secret (private_key_jwt).
    login["oidc"]["client_id"] = json!("coffer-console-cert");
    login["oidc"]["client_auth"] = json!("certificate");
    login["oidc"]["certificate_alias"] = json!("oidc");
    login["client_secret"] = json!(null);
    api(&base, &key, "PUT", "/config/login", Some(login));
    assert_eq!(me("alice")["role"], "administrator");
    let audit = api(&base, &key, "GET", "/audit?q=single%20sign-on", None);
    let sign_ins = audit.as_array().unwrap().iter().filter(|e| e["action"] == "sign-in").count();
    assert!(sign_ins >= 5, "every single sign-on is audited: {audit}");
}

#[test]
fn https_from_a_stored_certificate_sets_secure_cookies_and_hsts() {
    let c = Coffer::new();
    c.ok(&["cert", "generate", "--alias", "console", "--cn", "localhost"]);
    let ca = c.dir.path().join("console.pem");
    std::fs::write(&ca, c.ok(&["cert", "export", "--alias", "console"])).unwrap();
    let server = Server::start(&c, &[("COFFER_HTTP__CERTIFICATE", "console"), ("COFFER_SMTP__TLS", "off")]);
    let out = python(
        r#"
import sys, requests
r = requests.get(f"https://localhost:{sys.argv[1]}/signon", verify=sys.argv[2])
print(r.status_code, r.headers.get("Strict-Transport-Security"), r.headers.get("Set-Cookie"))
"#,
        &[&server.http.port().to_string(), ca.to_str().unwrap()],
    );
    assert!(out.starts_with("200 max-age=31536000 coffer_signon="), "{out}");
    assert!(out.contains("HttpOnly; SameSite=Lax; Secure"), "{out}");
}

#[test]
fn reading_pages_fit_a_desktop_and_a_phone_with_overlong_subjects_and_keep_the_search() {
    let c = Coffer::new();
    let mail = c.dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    // One word of 300 characters: nothing to break a line at.
    let long = format!("Overlong {}", "Unbroken".repeat(38));
    for i in 0..3 {
        let raw = format!(
            "From: {}@{}.example\r\nTo: {}@contoso.com\r\nSubject: {long}{i}\r\nDate: {}\r\n\r\n{}\r\n",
            "a".repeat(60),
            "very-long-subdomain-name".repeat(3),
            "recipient".repeat(8),
            coffer_testkit::corpus::rfc2822(1_700_000_000 + i * 86_400),
            "word".repeat(200)
        );
        std::fs::write(mail.join(format!("{i}.eml")), raw).unwrap();
    }
    c.ok(&["import", "--mailbox", "alice@contoso.com", "--folder", "Inbox/Projects", mail.to_str().unwrap()]);
    c.user_with_key("admin", "administrator", &[]);
    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../e2e-screenshots");
    let status = coffer_testkit::peer("node")
        .arg(e2e_dir().join("layout.mjs"))
        .env("BASE", format!("http://{}", server.http))
        .env("PASSWORD", PASSWORD)
        .env("ARTIFACTS", &artifacts)
        .status()
        .unwrap();
    assert!(status.success(), "the browser test failed (its output above says where)");
    assert!(artifacts.join("layout-search-phone.png").is_file());
}

#[test]
fn the_first_administrator_is_made_in_the_browser_with_the_link_serve_printed() {
    let c = Coffer::new();
    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    let link = server.setup_link.clone().expect("serve prints a set-up link while no account exists");
    assert!(link.starts_with(&format!("http://{}/setup?token=", server.http)), "{link}");
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../e2e-screenshots");
    let status = coffer_testkit::peer("node")
        .arg(e2e_dir().join("first_run.mjs"))
        .env("BASE", format!("http://{}", server.http))
        .env("LINK", &link)
        .env("ARTIFACTS", &artifacts)
        .status()
        .unwrap();
    assert!(status.success(), "the browser test failed (its output above says where)");
    drop(server);
    let users = c.ok(&["user", "list"]);
    assert!(users.contains("admin") && users.contains("administrator"), "{users}");
    let audit = c.ok(&["audit", "list", "--limit", "20"]);
    assert!(audit.contains("set-up link") && audit.contains("user admin added"), "{audit}");
    // With an account, serve prints no link.
    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    assert_eq!(server.setup_link, None);
}
