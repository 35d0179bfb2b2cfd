//! An archive with a few known messages, its console served on a free loopback port by a runtime
//! of its own, and an HTTP client that keeps cookies the way a browser does.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use coffer_archive::admin::NewAccount;
use coffer_archive::{Actor, Archive, ArchiveConfig, Catalog, Source, Submission};
use coffer_testkit::journal::{Envelope, Style, report};
use coffer_web::{Console, WebConfig};

pub struct Site {
    pub _dir: tempfile::TempDir,
    pub runtime: tokio::runtime::Runtime,
    pub archive: Arc<Archive>,
    /// The archive's database, reached directly, as only a test does (to backdate a session, or
    /// read the audit log whole).
    pub catalog: Catalog,
    pub base: String,
    /// Fixture name → message id.
    pub ids: HashMap<&'static str, i64>,
    /// Fixture name → original bytes.
    pub originals: HashMap<&'static str, Vec<u8>>,
    /// Role name → API key.
    pub keys: HashMap<&'static str, String>,
    _stop: tokio::sync::watch::Sender<bool>,
}

pub const PASSWORD: &str = "correct horse battery";

pub const XSS_SUBJECT: &str = "<script>alert('subject')</script> Invoice";

fn xss_message() -> Vec<u8> {
    format!(
        "From: Mallory <mallory@evil.test>\r\nTo: bob@contoso.com\r\nSubject: {XSS_SUBJECT}\r\n\
Date: Tue, 02 Jul 2024 10:00:00 +0000\r\nMessage-ID: <xss@evil.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p>Pay now</p><img src=x onerror=\"alert('img')\"><script>alert('body')</script>\
<a href=\"javascript:alert('link')\">click</a><img src=\"http://remote.example/pixel.png\">\r\n\
--b\r\nContent-Type: text/html; name=page.html\r\nContent-Disposition: attachment; filename=page.html\r\n\r\n\
<script>alert('attachment')</script>\r\n--b--\r\n"
    )
    .into_bytes()
}

fn plain(from: &str, to: &str, subject: &str, id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 01 Jul 2024 09:00:00 +0000\r\n\
Message-ID: <{id}>\r\n\r\nThe {subject} text.\r\n"
    )
    .into_bytes()
}

impl Site {
    pub fn start() -> Site {
        Site::start_with(WebConfig::default())
    }

    pub fn start_with(mut web: WebConfig) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        web.public_url = base.clone();
        web.journal_domain = "archive.test".into();
        let mut config = ArchiveConfig::new(dir.path().join("data"));
        config.database_url = std::env::var("COFFER_TEST_WEB_DATABASE_URL").ok();
        let url = config
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("data/catalog.sqlite").display()));
        let archive = Arc::new(runtime.block_on(Archive::open(config, true)).unwrap());
        let catalog = runtime.block_on(Catalog::connect(&url)).unwrap();
        let (ids, originals, keys) = runtime.block_on(fixtures(&archive));
        let console =
            Console::new(archive.clone(), web, Arc::new(coffer_web::NoSources), Arc::new(coffer_web::NoListeners));
        let (stop, stopping) = tokio::sync::watch::channel(false);
        runtime.spawn(coffer_web::serve(console, listener, None, stopping));
        Site { _dir: dir, runtime, archive, catalog, base, ids, originals, keys, _stop: stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn id(&self, name: &str) -> i64 {
        self.ids[name]
    }

    /// A client that signs in with a local account, as a browser would.
    pub fn browser(&self, login: &str, password: &str) -> Browser {
        let mut b = Browser::new(&self.base);
        b.sign_in(login, password);
        b
    }

    pub fn api(&self, role: &str) -> Api {
        Api { base: self.base.clone(), key: Some(self.keys[role].clone()) }
    }

    pub fn anonymous(&self) -> Api {
        Api { base: self.base.clone(), key: None }
    }

    /// Archives one more message (placed in a mailbox folder when given) and indexes it.
    pub fn add(&self, raw: &[u8], journal: bool, placement: Option<(&str, &str)>) -> i64 {
        self.runtime.block_on(async {
            let tenant = self.archive.tenant(None).await.unwrap();
            let receipt =
                self.archive.pipeline().submit(sub(tenant.id, raw.to_vec(), journal, placement)).await.unwrap();
            self.archive.indexer().run_until_idle().await.unwrap();
            receipt.id
        })
    }

    /// Archives one more message for another tenant and indexes it.
    pub fn add_to(&self, tenant: i64, raw: &[u8]) -> i64 {
        self.runtime.block_on(async {
            let receipt = self.archive.pipeline().submit(sub(tenant, raw.to_vec(), false, None)).await.unwrap();
            self.archive.indexer().run_until_idle().await.unwrap();
            receipt.id
        })
    }

    pub fn audit_text(&self) -> String {
        let entries = self.runtime.block_on(self.catalog.audit_entries(None, 1000)).unwrap();
        entries.iter().map(|e| format!("{} | {} | {} | {}\n", e.actor, e.ip, e.action, e.detail)).collect()
    }
}

async fn fixtures(
    archive: &Archive,
) -> (HashMap<&'static str, i64>, HashMap<&'static str, Vec<u8>>, HashMap<&'static str, String>) {
    let default = archive.tenant(None).await.unwrap();
    let operator = Actor::operator(default.clone());
    let admin = archive.admin();
    let fabrikam = admin.add_tenant(&operator, "fabrikam", &["fabrikam.com".into()]).await.unwrap().tenant;
    let pipeline = archive.pipeline();
    let mut ids = HashMap::new();
    let mut originals = HashMap::new();
    let q3 = plain("Alice <alice@contoso.com>", "bob@contoso.com", "Q3 numbers", "q3@contoso.com");
    let journaled = report(
        &q3,
        &Envelope::new("alice@contoso.com", "Q3 numbers", "<q3@contoso.com>")
            .line("To", "bob@contoso.com")
            .line("Bcc", "dave@contoso.com"),
        Style::ExchangeOnline,
        "journal@archive.test",
    );
    let carol = plain("carol@contoso.com", "erin@contoso.com", "Carol private plans", "carol@contoso.com");
    let fab = plain("frank@fabrikam.com", "bob@contoso.com", "Fabrikam secret", "fab@fabrikam.com");
    let submissions: Vec<(&'static str, Vec<u8>, Submission)> = vec![
        ("q3", q3.clone(), sub(default.id, journaled, true, None)),
        ("carol", carol.clone(), sub(default.id, carol.clone(), false, Some(("carol@contoso.com", "Inbox/Projects")))),
        ("xss", xss_message(), sub(default.id, xss_message(), false, None)),
        ("fabrikam", fab.clone(), sub(fabrikam.id, fab.clone(), false, None)),
    ];
    for (name, original, s) in submissions {
        let receipt = pipeline.submit(s).await.unwrap();
        ids.insert(name, receipt.id);
        originals.insert(name, original);
    }
    archive.indexer().run_until_idle().await.unwrap();
    let mut keys = HashMap::new();
    for (login, role, addresses) in [
        ("admin", "administrator", vec![]),
        ("audrey", "auditor", vec![]),
        ("bob", "user", vec!["bob@contoso.com".to_owned()]),
    ] {
        let new = NewAccount {
            login: login.into(),
            display_name: login.into(),
            role: role.into(),
            password: PASSWORD.into(),
            addresses,
        };
        admin.add_user(&operator, &default, &new).await.unwrap();
        let (_, key) = admin.create_api_key(&operator, Some(login), "tests", Some(role)).await.unwrap();
        keys.insert(role_name(role), key);
    }
    (ids, originals, keys)
}

fn role_name(role: &str) -> &'static str {
    match role {
        "administrator" => "administrator",
        "auditor" => "auditor",
        _ => "user",
    }
}

fn sub(tenant: i64, raw: Vec<u8>, journal: bool, placement: Option<(&str, &str)>) -> Submission {
    Submission {
        tenant,
        source: if journal { Source::Smtp } else { Source::Import },
        raw,
        envelope: Vec::new(),
        envelope_from: None,
        placement: placement.map(|(m, f)| (m.to_owned(), f.to_owned())),
        journal,
        origin: Default::default(),
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text; in HTML, the entities the templates use for `/`, quotes and `&` are
    /// read back (`&lt;` and `&gt;` stay, so escaped markup remains visible as such).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .replace("&#x2f;", "/")
            .replace("&#x27;", "'")
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).and_then(|v| v.first()).map(String::as_str)
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

fn finish(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for name in response.headers_names() {
        headers.insert(name.to_ascii_lowercase(), response.all(&name).iter().map(|v| v.to_string()).collect());
    }
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
    Reply { status, headers, body }
}

/// API calls with a key (or none).
pub struct Api {
    pub base: String,
    pub key: Option<String>,
}

impl Api {
    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let mut r = agent().request(method, &format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            r = r.set("Authorization", &format!("Bearer {k}"));
        }
        r
    }
    pub fn get(&self, path: &str) -> Reply {
        finish(self.request("GET", path).call())
    }
    pub fn send(&self, method: &str, path: &str, body: serde_json::Value) -> Reply {
        finish(self.request(method, path).send_json(body))
    }
    /// A POST whose body is a file's bytes.
    pub fn upload(&self, path: &str, bytes: &[u8]) -> Reply {
        finish(self.request("POST", path).set("Content-Type", "application/octet-stream").send_bytes(bytes))
    }
}

/// A browser: cookies kept, redirects not followed (the tests look at them).
pub struct Browser {
    pub base: String,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser { base: base.to_owned(), cookies: HashMap::new() }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let cookie: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        agent().request(method, &format!("{}{path}", self.base)).set("Cookie", &cookie.join("; "))
    }

    fn keep(&mut self, reply: &Reply) {
        for c in reply.headers.get("set-cookie").into_iter().flatten() {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
    }

    pub fn get(&mut self, path: &str) -> Reply {
        let reply = finish(self.request("GET", path).call());
        self.keep(&reply);
        reply
    }

    pub fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let reply = finish(self.request("POST", path).send_form(form));
        self.keep(&reply);
        reply
    }

    pub fn send_json(&mut self, method: &str, path: &str, csrf: Option<&str>, body: serde_json::Value) -> Reply {
        let mut r = self.request(method, path);
        if let Some(t) = csrf {
            r = r.set("X-CSRF-Token", t);
        }
        let reply = finish(r.send_json(body));
        self.keep(&reply);
        reply
    }

    /// Fills in and sends the sign-on form; the reply is the redirect (or the refusal).
    pub fn try_sign_in(&mut self, login: &str, password: &str) -> Reply {
        let form = self.get("/signon").text();
        let token = value_of(&form, "signon_token").expect("sign-on token");
        self.post_form(
            "/signon",
            &[("login", login), ("password", password), ("signon_token", &token), ("next", "/search")],
        )
    }

    pub fn sign_in(&mut self, login: &str, password: &str) {
        let reply = self.try_sign_in(login, password);
        assert_eq!(reply.status, 303);
        assert_eq!(reply.header("location"), Some("/search"), "sign-in of {login} refused");
        assert!(self.cookies.contains_key("coffer_session"));
    }

    /// The CSRF token the console put into its forms.
    pub fn csrf(&mut self) -> String {
        value_of(&self.get("/account").text(), "csrf").expect("csrf field")
    }
}

/// The value of the first hidden input named `name` in a page.
pub fn value_of(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}
