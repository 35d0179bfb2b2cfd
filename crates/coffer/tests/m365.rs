//! Microsoft 365 through Microsoft Graph, against the test kit's stateful fake of the identity
//! platform and Graph (nothing here can reach Microsoft): the manifest round trip, advice for a
//! certificate Entra ID does not know, a resumable historical import of three mailboxes side by
//! side with nested folders under throttling, an expired delta link and a SIGKILL, mailboxes that
//! are refused or missing beside good ones, folder sync by webhook through an outage, and the
//! console's Entra ID sign-in.

mod common;

use std::collections::BTreeSet;

use coffer_testkit::microsoft::FakeMicrosoft;
use common::{Coffer, sha256, zip_entries};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "5f1f4d1b-7e25-4a2a-9c37-0d1a3e0c9a11";

fn configure(c: &Coffer, fake: &FakeMicrosoft, certificate: &str) {
    let toml = format!(
        "[[m365]]\nname = \"contoso\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\ncertificate = \"{certificate}\"\n\
         login_host = \"{base}\"\ngraph_host = \"{base}\"\n",
        base = fake.base
    );
    std::fs::write(c.dir.path().join("coffer.toml"), toml).unwrap();
}

/// Downloads the manifest, lets Coffer add its certificate, uploads the result.
fn register_certificate(c: &Coffer, fake: &FakeMicrosoft, alias: &str) -> serde_json::Value {
    let input = c.dir.path().join("manifest.json");
    let output = c.dir.path().join("manifest.updated.json");
    std::fs::write(&input, serde_json::to_vec(&fake.manifest()).unwrap()).unwrap();
    let out = c.ok(&[
        "m365",
        "manifest",
        "--alias",
        alias,
        "--cn",
        "Coffer archive",
        "--org",
        "Contoso",
        "--country",
        "CH",
        input.to_str().unwrap(),
        output.to_str().unwrap(),
    ]);
    assert!(out.contains("upload it in the Azure portal"), "{out}");
    let updated: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    fake.upload_manifest(&updated);
    updated
}

#[test]
fn the_manifest_round_trip_makes_entra_id_accept_coffers_certificate() {
    let fake = FakeMicrosoft::start(TENANT, CLIENT);
    fake.add_user("alice@contoso.com");
    let c = Coffer::new();
    configure(&c, &fake, "m365");
    let missing = c.run(&["m365", "test"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("coffer m365 manifest --alias m365"));

    // The certificate exists but the app does not know it yet: Entra ID's AADSTS700027, explained.
    let input = c.dir.path().join("original.json");
    std::fs::write(&input, serde_json::to_vec(&fake.manifest()).unwrap()).unwrap();
    c.ok(&[
        "m365",
        "manifest",
        "--alias",
        "m365",
        input.to_str().unwrap(),
        c.dir.path().join("unused.json").to_str().unwrap(),
    ]);
    let refused = c.run(&["m365", "test"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("AADSTS700027") && err.contains("upload the updated manifest"), "{err}");

    let updated = register_certificate(&c, &fake, "m365");
    let keys = updated["keyCredentials"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let cert = c.ok(&["cert", "list"]);
    assert!(cert.contains("m365"), "{cert}");
    assert_eq!(keys[0]["type"], "AsymmetricX509Cert");
    let out = c.ok(&["m365", "test"]);
    assert!(out.contains("token ok; user alice@contoso.com has 5 top-level mail folders"), "{out}");

    // The console's Connections page tests the same way.
    let key = c.user_with_key("admin", "administrator", &[]);
    {
        let server = common::Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
        let tested = call_api(server.http, &key, "POST", "/connections/contoso/test");
        assert_eq!(tested["ok"], true, "{tested}");
        assert!(tested["detail"].as_str().unwrap().contains("alice@contoso.com"));
    }

    // A group limits the mailboxes; the choice is in the audit log.
    let bob = fake.add_user("bob@contoso.com");
    let group = fake.add_group(&[&bob]);
    let toml = std::fs::read_to_string(c.dir.path().join("coffer.toml")).unwrap()
        + &format!("group = \"{group}\"\nskip_drafts = false\n");
    std::fs::write(c.dir.path().join("coffer.toml"), toml).unwrap();
    let out = c.ok(&["m365", "import"]);
    assert!(out.starts_with("bob@contoso.com:") && out.contains("done: 1 mailboxes"), "{out}");
    let audit = c.ok(&["audit", "list"]);
    assert!(audit.contains(&format!("m365 contoso: mailboxes: members of group {group}; archiving mail, calendar, contacts; skipping Junk Email, Deleted Items")), "{audit}");

    // Another certificate, signed correctly, but not the registered one: refused as Entra ID would.
    c.ok(&[
        "m365",
        "manifest",
        "--alias",
        "other",
        input.to_str().unwrap(),
        c.dir.path().join("other.json").to_str().unwrap(),
    ]);
    configure(&c, &fake, "other");
    let refused = c.run(&["m365", "test"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("AADSTS700027"));
}

struct Mailbox {
    id: String,
    upn: String,
    /// (folder path, original bytes) of every message that must be archived.
    expected: Vec<(String, Vec<u8>)>,
}

fn message(upn: &str, folder: &str, i: usize) -> Vec<u8> {
    format!(
        "From: Sender {i} <sender{i}@contoso.com>\r\nTo: {upn}\r\nSubject: {folder} message {i} for {upn}\r\n\
Date: Mon, 01 Jul 2024 {:02}:{:02}:00 +0000\r\nMessage-ID: <m365-{i}-{upn}>\r\n\r\nBody {i} in {folder}.\r\n",
        i % 24,
        i % 60
    )
    .into_bytes()
}

fn populate(fake: &FakeMicrosoft, upn: &str, per_folder: usize) -> Mailbox {
    let id = fake.add_user(upn);
    let inbox = fake.folder_id(&id, "inbox");
    let projects = fake.add_folder(&id, Some(&inbox), "Projects");
    let alpha = fake.add_folder(&id, Some(&projects), "Alpha");
    let beta = fake.add_folder(&id, Some(&projects), "Beta");
    let year = fake.add_folder(&id, Some(&beta), "2024");
    let sent = fake.folder_id(&id, "sentitems");
    let mut expected = Vec::new();
    let mut n = 0;
    for (fid, path) in [
        (inbox.clone(), "Inbox"),
        (alpha, "Inbox/Projects/Alpha"),
        (year, "Inbox/Projects/Beta/2024"),
        (sent, "Sent Items"),
    ] {
        for _ in 0..per_folder {
            n += 1;
            let raw = message(upn, path, n);
            fake.add_message(&id, &fid, &raw);
            expected.push((path.to_owned(), raw));
        }
    }
    // A calendar and contacts, archived as iCalendar and vCard items.
    for (subject, hour) in [("Budget review", 9), ("Team lunch", 12)] {
        fake.add_event(
            &id,
            serde_json::json!({
                "subject": subject, "lastModifiedDateTime": "2024-06-01T10:00:00Z",
                "start": {"dateTime": format!("2024-07-01T{hour:02}:00:00.0000000"), "timeZone": "UTC"},
                "end": {"dateTime": format!("2024-07-01T{:02}:00:00.0000000", hour + 1), "timeZone": "UTC"},
                "organizer": {"emailAddress": {"name": "Organiser", "address": upn}},
                "attendees": [{"emailAddress": {"name": "Guest", "address": "guest@fabrikam.com"}}],
                "location": {"displayName": "Room 4"}, "body": {"contentType": "text", "content": "Agenda attached"},
            }),
        );
    }
    for (name, folder) in [("Frank Supplier", Some("Suppliers")), ("Grace Hopper", None), ("Heidi Klum", None)] {
        let (given, sur) = name.split_once(' ').unwrap();
        fake.add_contact(
            &id,
            folder,
            serde_json::json!({
                "displayName": name, "givenName": given, "surname": sur,
                "emailAddresses": [{"name": name, "address": format!("{}@fabrikam.com", given.to_lowercase())}],
                "businessPhones": ["+41 44 000 00 00"], "companyName": "Fabrikam",
            }),
        );
    }
    // Junk and deleted mail is skipped by default.
    fake.add_message(&id, &fake.folder_id(&id, "junkemail"), &message(upn, "Junk", 9_000));
    fake.add_message(&id, &fake.folder_id(&id, "deleteditems"), &message(upn, "Deleted", 9_001));
    Mailbox { id, upn: upn.into(), expected }
}

#[test]
fn a_throttled_interrupted_import_of_three_mailboxes_archives_every_message_once_byte_exact() {
    let fake = FakeMicrosoft::start(TENANT, CLIENT);
    let mailboxes: Vec<Mailbox> =
        ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"].iter().map(|u| populate(&fake, u, 170)).collect();
    let total: usize = mailboxes.iter().map(|m| m.expected.len()).sum();
    assert!(total >= 2000, "{total}");
    let c = Coffer::new();
    configure(&c, &fake, "m365");
    register_certificate(&c, &fake, "m365");

    // Throttling at several moments.
    fake.throttle_requests([3, 40, 41, 200, 700]);
    // Killed on the spot after the 30th durable page, before its cursor is saved.
    let crashed = c
        .command()
        .args(["m365", "import"])
        .env("COFFER_CRASH_AT", "m365-after-page")
        .env("COFFER_CRASH_AFTER", "30")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the import was meant to die");
    let out = c.ok(&["m365", "import"]);
    assert!(out.contains("done: 3 mailboxes"), "{out}");
    assert!(out.contains("bob@contoso.com: 6 folders"), "Inbox, Projects, Alpha, Beta, 2024, Sent Items: {out}");
    assert_eq!(fake.pending_throttles(), 0, "every planned 429 was answered, and waited out");
    assert!(
        fake.max_concurrent_per_mailbox() <= 4,
        "at most 4 requests per mailbox: {}",
        fake.max_concurrent_per_mailbox()
    );
    assert!(fake.max_mailboxes_at_once() >= 2, "mailboxes are imported side by side (parallel_mailboxes = 4)");

    // Every message exactly once, nothing from Junk or Deleted Items, byte-exact.
    assert_eq!(c.count("subject:message").to_string(), total.to_string());
    assert_eq!(c.count("subject:junk"), 0);
    assert_eq!(c.count("subject:deleted"), 0);
    let zip = c.dir.path().join("all.zip");
    c.ok(&["export", "--format", "eml-zip", "--out", zip.to_str().unwrap(), "subject:message"]);
    let exported: BTreeSet<String> =
        zip_entries(&zip).into_iter().filter(|(n, _)| n.ends_with(".eml")).map(|(_, raw)| sha256(&raw)).collect();
    let originals: BTreeSet<String> =
        mailboxes.iter().flat_map(|m| m.expected.iter().map(|(_, raw)| sha256(raw))).collect();
    assert_eq!(exported, originals);

    // Placements: each message in its mailbox and full folder path.
    for m in &mailboxes {
        let hits = c.json(&format!("mailbox:{} folder:\"Inbox/Projects/Beta/2024\"", m.upn), 1000);
        assert_eq!(hits.len(), 170, "{}", m.upn);
        assert!(hits.iter().all(|h| h["mailbox"] == m.upn.as_str() && h["folder"] == "Inbox/Projects/Beta/2024"));
    }

    // Calendars and contacts, searchable and in their folders.
    for m in &mailboxes {
        assert_eq!(c.count(&format!("mailbox:{} folder:Calendar", m.upn)), 2);
        assert_eq!(c.count(&format!("mailbox:{} folder:Contacts", m.upn)), 3, "Contacts and Contacts/Suppliers");
        assert_eq!(c.count(&format!("mailbox:{} folder:Contacts/Suppliers fabrikam", m.upn)), 1);
    }
    assert_eq!(c.count("budget review agenda"), 3);
    assert_eq!(c.count("participant:guest@fabrikam.com"), 6, "attendees are recipients");

    // The console's folder tree is the mailboxes' folders.
    let key = c.user_with_key("admin", "administrator", &[]);
    {
        let server = common::Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
        let tree = call_api(server.http, &key, "GET", "/folders");
        let alice: Vec<(String, i64)> = tree
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["mailbox"] == "alice@contoso.com")
            .map(|f| (f["folder"].as_str().unwrap().to_owned(), f["messages"].as_i64().unwrap()))
            .collect();
        let want: Vec<(String, i64)> = [
            ("Calendar", 2),
            ("Contacts", 2),
            ("Contacts/Suppliers", 1),
            ("Inbox", 170),
            ("Inbox/Projects/Alpha", 170),
            ("Inbox/Projects/Beta/2024", 170),
            ("Sent Items", 170),
        ]
        .iter()
        .map(|(f, n)| (f.to_string(), *n))
        .collect();
        assert_eq!(alice, want);
    }

    // The next run reads only what changed; a folder whose delta link expired (410) is read
    // again from the start, and dedup absorbs what it had already.
    let alice = &mailboxes[0];
    let inbox = fake.folder_id(&alice.id, "inbox");
    fake.add_message(&alice.id, &inbox, &message(&alice.upn, "Inbox", 50_000));
    fake.expire_delta(&fake.folder_id(&mailboxes[1].id, "inbox"));
    let out = c.ok(&["m365", "import"]);
    assert!(out.contains("alice@contoso.com: 6 folders, fetched 1, archived 1, duplicates 0"), "{out}");
    assert!(
        out.contains(
            "bob@contoso.com: 6 folders, fetched 170, archived 0, duplicates 170, folders read again after 410: 1"
        ),
        "bob's inbox started over after the 410: {out}"
    );
    assert!(out.contains("carol@contoso.com: 6 folders, fetched 0, archived 0"), "{out}");
}

#[test]
fn a_mailbox_that_is_refused_or_missing_does_not_stop_the_others() {
    let fake = FakeMicrosoft::start(TENANT, CLIENT);
    let mut users = Vec::new();
    for upn in ["alice@contoso.com", "carol@contoso.com", "dave@contoso.com"] {
        let id = fake.add_user(upn);
        let inbox = fake.folder_id(&id, "inbox");
        for i in 0..5 {
            fake.add_message(&id, &inbox, &message(upn, "Inbox", i));
        }
        users.push(id);
    }
    fake.add_user_without_mailbox("printer@contoso.com");
    fake.block_by_access_policy(&users[1]);
    let c = Coffer::new();
    configure(&c, &fake, "m365");
    register_certificate(&c, &fake, "m365");

    let run = c.run(&["m365", "import"]);
    let (out, err) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert_eq!(run.status.code(), Some(1), "a failed mailbox makes the run fail: {out}{err}");
    for upn in ["alice@contoso.com", "dave@contoso.com"] {
        assert!(out.contains(&format!("{upn}: 2 folders, fetched 5, archived 5")), "Inbox, Sent Items: {out}");
    }
    assert!(out.contains("printer@contoso.com: skipped: no Exchange Online mailbox"), "{out}");
    assert!(
        out.contains("carol@contoso.com: failed: Graph answered 403")
            && out.contains("Blocked by tenant configured AppOnly AccessPolicy")
            && out.contains("outside the app's application access policy"),
        "the refusal comes with advice: {out}"
    );
    assert!(out.contains("done: 4 mailboxes, fetched 10, archived 10, duplicates 0, failed 1"), "{out}");
    assert!(err.contains("1 mailboxes failed (carol@contoso.com)"), "{err}");
    assert_eq!(c.count("from:contoso.com"), 10);

    // The server subscribes every mailbox it can, whatever the others answer, and the console
    // shows each mailbox's state after an import.
    let http = common::free_port();
    add_webhook(&c, http);
    let key = c.user_with_key("admin", "administrator", &[]);
    let _server =
        common::Server::start_at(&c, common::free_port(), &format!("127.0.0.1:{http}"), &[("COFFER_SMTP__TLS", "off")]);
    wait_until("subscriptions for alice and dave", || {
        let subscribed: BTreeSet<String> = fake.subscriptions().into_iter().map(|s| s.user).collect();
        subscribed == BTreeSet::from([users[0].clone(), users[2].clone()])
    });
    let api = |method: &str, path: &str| call_api(format!("127.0.0.1:{http}"), &key, method, path);
    assert_eq!(api("POST", "/connections/contoso/start")["ok"], true);
    wait_until("every mailbox's state on the console", || {
        let rows = api("GET", "/connections/contoso/mailboxes");
        let state =
            |upn: &str| rows.as_array().unwrap().iter().find(|m| m["mailbox"] == upn).map(|m| m["state"].clone());
        state("alice@contoso.com") == Some("synced".into())
            && state("dave@contoso.com") == Some("synced".into())
            && state("printer@contoso.com") == Some("no mailbox".into())
            && state("carol@contoso.com") == Some("failed".into())
    });
    let rows = api("GET", "/connections/contoso/mailboxes");
    let carol = rows.as_array().unwrap().iter().find(|m| m["mailbox"] == "carol@contoso.com").unwrap();
    assert!(carol["last_error"].as_str().unwrap().contains("AccessPolicy"), "{carol}");
}

#[test]
fn parallel_mailboxes_out_of_range_is_a_configuration_error_that_says_what_to_do() {
    let fake = FakeMicrosoft::start(TENANT, CLIENT);
    let c = Coffer::new();
    configure(&c, &fake, "m365");
    let toml = std::fs::read_to_string(c.dir.path().join("coffer.toml")).unwrap() + "parallel_mailboxes = 0\n";
    std::fs::write(c.dir.path().join("coffer.toml"), toml).unwrap();
    let run = c.run(&["m365", "import"]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("[[m365]] contoso: parallel_mailboxes = 0 must be between 1 and 32"), "{err}");
}

/// The connection's folder sync: Graph's notifications go to the console's listener on `http`.
fn add_webhook(c: &Coffer, http: u16) {
    let mut toml = std::fs::read_to_string(c.dir.path().join("coffer.toml")).unwrap();
    toml.push_str(&format!(
        "webhook_url = \"http://127.0.0.1:{http}/o365\"\nclient_state = \"a-secret-of-sufficient-length\"\n"
    ));
    std::fs::write(c.dir.path().join("coffer.toml"), toml).unwrap();
}

/// A JSON call to the console's API (listening on `http`) with an API key.
fn call_api(http: impl std::fmt::Display, key: &str, method: &str, path: &str) -> serde_json::Value {
    ureq::request(method, &format!("http://{http}/api/v1{path}"))
        .set("Authorization", &format!("Bearer {key}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn the_webhook_keeps_the_folder_tree_in_step_with_the_mailbox() {
    let fake = FakeMicrosoft::start(TENANT, CLIENT);
    fake.set_subscription_lifetime(8);
    let alice = fake.add_user("alice@contoso.com");
    let inbox = fake.folder_id(&alice, "inbox");
    let projects = fake.add_folder(&alice, Some(&inbox), "Projects");
    let first = fake.add_message(&alice, &inbox, &message("alice@contoso.com", "Inbox", 1));
    fake.add_message(&alice, &inbox, &message("alice@contoso.com", "Inbox", 2));
    let c = Coffer::new();
    let http = common::free_port();
    configure(&c, &fake, "m365");
    add_webhook(&c, http);
    register_certificate(&c, &fake, "m365");
    assert!(c.ok(&["m365", "import"]).contains("archived 2"));

    let _server =
        common::Server::start_at(&c, common::free_port(), &format!("127.0.0.1:{http}"), &[("COFFER_SMTP__TLS", "off")]);
    wait_until("a validated subscription for alice", || fake.subscriptions().iter().any(|s| s.user == alice));
    let hook = format!("http://127.0.0.1:{http}/o365");
    let get = ureq::get(&hook).call();
    assert!(matches!(get, Err(ureq::Error::Status(405, _))), "GET answers 405");
    let echo = ureq::post(&format!("{hook}?validationToken=abc%20123")).send_string("").unwrap();
    assert_eq!(echo.content_type(), "text/plain");
    assert_eq!(echo.into_string().unwrap(), "abc 123");
    assert_eq!(fake.notify(&alice, &first, "updated", Some("guessed")), 403, "a wrong clientState is refused");

    // The console starts an import and shows each mailbox's state.
    let key = c.user_with_key("admin", "administrator", &[]);
    let api = |method: &str, path: &str| call_api(format!("127.0.0.1:{http}"), &key, method, path);
    assert_eq!(api("POST", "/connections/contoso/start")["ok"], true);
    wait_until("the console shows alice synced", || {
        let rows = api("GET", "/connections/contoso/mailboxes");
        rows.as_array()
            .unwrap()
            .iter()
            .any(|m| m["mailbox"] == "alice@contoso.com" && m["state"] == "synced" && m["last_sync"].is_string())
    });

    // A new message arrives and is announced.
    let new = fake.add_message(&alice, &inbox, &message("alice@contoso.com", "Inbox", 3));
    assert_eq!(fake.notify(&alice, &new, "created", None), 202);
    wait_until("the announced message is archived", || c.count("message-id:<m365-3-alice@contoso.com>") == 1);

    // A message moves to a subfolder: it moves in the folder tree, and stays archived.
    fake.move_message(&alice, &first, &inbox, &projects);
    assert_eq!(fake.notify(&alice, &first, "updated", None), 202);
    wait_until("the moved message sits only in Inbox/Projects", || {
        let hit = c.json("message-id:<m365-1-alice@contoso.com>", 1);
        hit.len() == 1
            && hit[0]["placements"].as_array().unwrap().iter().map(|p| p["folder"].clone()).collect::<Vec<_>>()
                == ["Inbox/Projects"]
    });

    // A missed notification: the lifecycle event makes Coffer look for itself.
    fake.add_message(&alice, &inbox, &message("alice@contoso.com", "Inbox", 4));
    assert_eq!(fake.lifecycle(&alice, "missed"), 202);
    wait_until("the missed message is archived", || c.count("message-id:<m365-4-alice@contoso.com>") == 1);

    // Graph fails while a notification is handled: the sync is tried again until it goes through.
    fake.fail_next_requests(2);
    let fifth = fake.add_message(&alice, &inbox, &message("alice@contoso.com", "Inbox", 5));
    assert_eq!(fake.notify(&alice, &fifth, "created", None), 202);
    wait_until("the message announced during the outage is archived", || {
        c.count("message-id:<m365-5-alice@contoso.com>") == 1
    });
    assert_eq!(c.count("from:contoso.com"), 5, "nothing was deleted, nothing stored twice");

    // Renewed at half the lifetime Graph granted; recreated when Graph lost it.
    wait_until("a renewal before expiry", || fake.subscriptions().iter().any(|s| s.user == alice && s.renewals >= 1));
    fake.drop_subscriptions();
    wait_until("the lost subscription is created again", || fake.subscriptions().iter().any(|s| s.user == alice));
}

/// Follows a browser's redirects by hand: /login/oidc → the fake's authorize → Coffer's callback.
fn entra_sign_in(base: &str) -> (u16, String, Option<String>) {
    sign_in_through(base, true)
}

/// `same_browser`: the callback carries the state cookie the start set (false: another browser
/// delivers the callback, as in login CSRF).
fn sign_in_through(base: &str, same_browser: bool) -> (u16, String, Option<String>) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let answer = |r: Result<ureq::Response, ureq::Error>| match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let start = answer(agent.get(&format!("{base}/login/oidc")).call());
    let state_cookie = start
        .all("set-cookie")
        .iter()
        .find(|c| c.starts_with("coffer_oidc_state="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .expect("the start binds the state to the browser");
    let authorize = start.header("location").unwrap().to_owned();
    assert!(
        authorize.contains("/oauth2/v2.0/authorize?") && authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    let back = answer(agent.get(&authorize).call());
    let callback = back.header("location").unwrap().to_owned();
    assert!(callback.starts_with(&format!("{base}/authorize.do?code=")), "{callback}");
    let mut request = agent.get(&callback);
    if same_browser {
        request = request.set("Cookie", &state_cookie);
    }
    let done = answer(request.call());
    let status = done.status();
    let cookie = done
        .all("set-cookie")
        .iter()
        .find(|c| c.starts_with("coffer_session="))
        .map(|c| c.split(';').next().unwrap().to_owned());
    (status, done.into_string().unwrap_or_default(), cookie)
}

/// `coffer serve` with the fake's Microsoft 365 connection and Entra ID sign-in by its certificate,
/// addresses from `addresses_from`, these role assignments; the server and the console's URL.
fn serve_with_entra_sign_in(
    c: &Coffer,
    fake: &FakeMicrosoft,
    addresses_from: &str,
    role_assignments: serde_json::Value,
) -> (common::Server, String, String) {
    configure(c, fake, "m365");
    register_certificate(c, fake, "m365");
    let key = c.user_with_key("admin", "administrator", &[]);
    let server = common::Server::start(c, &[("COFFER_SMTP__TLS", "off")]);
    let base = format!("http://{}", server.http);
    let login = serde_json::json!({
        "sso_default": false,
        "oidc": {"enabled": true, "provider": "entra", "entra_tenant_id": TENANT, "login_host": fake.base, "client_id": CLIENT,
                 "client_auth": "certificate", "certificate_alias": "m365", "callback_path": "/authorize.do",
                 "scopes": "openid profile email", "tenant": "default", "issuer": "", "addresses_from": addresses_from},
        "role_assignments": role_assignments,
    });
    let saved = ureq::put(&format!("{base}/api/v1/config/login"))
        .set("Authorization", &format!("Bearer {key}"))
        .send_json(login);
    assert!(saved.is_ok(), "{saved:?}");
    (server, base, key)
}

#[test]
fn entra_id_sign_in_uses_the_app_certificate_and_maps_roles_from_wids() {
    let fake = FakeMicrosoft::start(TENANT, CLIENT);
    let c = Coffer::new();
    let (_server, base, _) = serve_with_entra_sign_in(
        &c,
        &fake,
        "verified_email",
        serde_json::json!([{"attribute": "wids", "value": "62e90394-69f5-4237-9190-012177145e10", "role": "administrator"},
                           {"attribute": "roles", "value": "Archive.Audit", "role": "auditor"}]),
    );

    // A Global Administrator (wids) signs in: the token came with Coffer's certificate (private_key_jwt).
    // Entra ID vouches for the email with the optional claim xms_edov.
    fake.sign_in_as(serde_json::json!({
        "sub": "pairwise-1", "oid": "00000000-0000-0000-0000-0000000000a1", "preferred_username": "alice@contoso.com",
        "email": "alice@contoso.com", "xms_edov": true,
        "name": "Alice", "wids": ["62e90394-69f5-4237-9190-012177145e10", "b79fbf4d-3ef9-4689-8143-76b194e85509"],
    }));
    let (status, body, cookie) = entra_sign_in(&base);
    assert_eq!(status, 303, "{body}");
    let me: serde_json::Value =
        ureq::get(&format!("{base}/api/v1/me")).set("Cookie", &cookie.unwrap()).call().unwrap().into_json().unwrap();
    assert_eq!(me["role"], "administrator");
    assert_eq!(me["addresses"], serde_json::json!(["alice@contoso.com"]));

    // An app role gives the auditor role; an ordinary user gets the user role.
    fake.sign_in_as(serde_json::json!({"sub": "p2", "oid": "o2", "preferred_username": "carol@contoso.com", "roles": ["Archive.Audit"],
        "wids": ["b79fbf4d-3ef9-4689-8143-76b194e85509"]}));
    let (_, _, cookie) = entra_sign_in(&base);
    let me: serde_json::Value =
        ureq::get(&format!("{base}/api/v1/me")).set("Cookie", &cookie.unwrap()).call().unwrap().into_json().unwrap();
    assert_eq!(me["role"], "auditor");
    assert_eq!(me["addresses"], serde_json::json!([]), "a user-chosen preferred_username is no address: {me}");

    // A token not valid yet (nbf an hour ahead, beyond the clock leeway) is refused.
    let later = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    fake.sign_in_as(
        serde_json::json!({"sub": "p2", "oid": "o2", "preferred_username": "carol@contoso.com", "nbf": later}),
    );
    let (status, body, cookie) = entra_sign_in(&base);
    assert_eq!(status, 400);
    assert!(body.contains("ID token was refused") && cookie.is_none(), "{body}");

    // A callback delivered to another browser than the one that started the sign-in is refused.
    fake.sign_in_as(serde_json::json!({"sub": "p2", "oid": "o2", "preferred_username": "carol@contoso.com"}));
    let (status, body, cookie) = sign_in_through(&base, false);
    assert_eq!(status, 400);
    assert!(body.contains("not started in this browser") && cookie.is_none(), "{body}");

    // A token from another directory is refused, whatever it claims.
    fake.sign_in_as(serde_json::json!({"sub": "p3", "oid": "o3", "preferred_username": "eve@fabrikam.com",
        "tid": "11111111-1111-1111-1111-111111111111", "wids": ["62e90394-69f5-4237-9190-012177145e10"]}));
    let (status, body, cookie) = entra_sign_in(&base);
    assert_eq!(status, 400);
    assert!(body.contains("another directory") && cookie.is_none(), "{body}");

    // The app without Coffer's certificate: Entra ID refuses the code exchange.
    fake.upload_manifest(
        &fake
            .manifest()
            .as_object()
            .cloned()
            .map(|mut m| {
                m.insert("keyCredentials".into(), serde_json::json!([]));
                serde_json::Value::Object(m)
            })
            .unwrap(),
    );
    fake.sign_in_as(serde_json::json!({"sub": "p1", "oid": "00000000-0000-0000-0000-0000000000a1", "preferred_username": "alice@contoso.com"}));
    let (status, body, _) = entra_sign_in(&base);
    assert_eq!(status, 400);
    assert!(body.contains("AADSTS700027"), "{body}");
}

#[test]
fn entra_sign_in_can_take_a_users_addresses_from_the_directory() {
    let fake = FakeMicrosoft::start(TENANT, CLIENT);
    let alice = fake.add_user("alice@contoso.com");
    fake.add_alias(&alice, "Alice.Martin@Contoso.com");
    let c = Coffer::new();
    let (_server, base, _) = serve_with_entra_sign_in(&c, &fake, "directory", serde_json::json!([]));
    // The token's email claims another's address; the directory's entry for the oid decides.
    fake.sign_in_as(serde_json::json!({"sub": "s1", "oid": alice, "preferred_username": "ceo@contoso.com",
        "email": "ceo@contoso.com", "xms_edov": true}));
    let (status, body, cookie) = entra_sign_in(&base);
    assert_eq!(status, 303, "{body}");
    let me: serde_json::Value =
        ureq::get(&format!("{base}/api/v1/me")).set("Cookie", &cookie.unwrap()).call().unwrap().into_json().unwrap();
    assert_eq!(me["addresses"], serde_json::json!(["alice.martin@contoso.com", "alice@contoso.com"]), "{me}");
    // An object the directory does not know gets no address.
    fake.sign_in_as(serde_json::json!({"sub": "s2", "oid": "11111111-0000-0000-0000-000000000000", "email": "ceo@contoso.com", "xms_edov": true}));
    let (status, _, cookie) = entra_sign_in(&base);
    assert_eq!(status, 303);
    let me: serde_json::Value =
        ureq::get(&format!("{base}/api/v1/me")).set("Cookie", &cookie.unwrap()).call().unwrap().into_json().unwrap();
    assert_eq!(me["addresses"], serde_json::json!([]), "{me}");
}

#[test]
fn lookup_asks_the_directory_and_the_group_it_offers_makes_that_person_an_administrator() {
    let fake = FakeMicrosoft::start(TENANT, CLIENT);
    let alice = fake.add_user("alice@contoso.com");
    let group = fake.add_to_group(&alice, "Archive Admins");
    fake.add_to_directory_role(&alice, "Company Administrator", "62e90394-69f5-4237-9190-012177145e10");
    let c = Coffer::new();
    let (_server, base, key) = serve_with_entra_sign_in(&c, &fake, "verified_email", serde_json::json!([]));
    let get = |path: &str| match ureq::get(&format!("{base}/api/v1{path}"))
        .set("Authorization", &format!("Bearer {key}"))
        .call()
    {
        Ok(r) => (200, r.into_json::<serde_json::Value>().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json::<serde_json::Value>().unwrap()),
        Err(e) => panic!("{e}"),
    };

    let (status, found) = get("/directory/lookup?user=alice@contoso.com");
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["id"], alice.as_str());
    let suggestions = found["suggestions"].as_array().unwrap();
    assert_eq!(suggestions[0]["attribute"], "wids");
    assert_eq!(suggestions[0]["value"], "62e90394-69f5-4237-9190-012177145e10");
    assert_eq!(suggestions[0]["label"], "directory role Company Administrator");
    assert_eq!(suggestions[1]["attribute"], "groups");
    assert_eq!(suggestions[1]["value"], group.as_str(), "the group's object id, as the groups claim carries it");
    let (status, refused) = get("/directory/lookup?user=nobody@contoso.com");
    assert_eq!(status, 400);
    assert!(refused["error"].as_str().unwrap().contains("has no user"), "{refused}");

    // Before the assignment alice is a user; after it, the group makes her an administrator.
    fake.sign_in_as(
        serde_json::json!({"sub": "s1", "oid": alice, "preferred_username": "alice@contoso.com", "groups": [group]}),
    );
    let (_, _, cookie) = entra_sign_in(&base);
    let me: serde_json::Value =
        ureq::get(&format!("{base}/api/v1/me")).set("Cookie", &cookie.unwrap()).call().unwrap().into_json().unwrap();
    assert_eq!(me["role"], "user");
    let assigned = ureq::post(&format!("{base}/api/v1/config/login/assignments"))
        .set("Authorization", &format!("Bearer {key}"))
        .send_json(serde_json::json!({"attribute": "groups", "value": group, "role": "administrator"}));
    assert_eq!(assigned.unwrap().status(), 204);
    let (status, _, cookie) = entra_sign_in(&base);
    assert_eq!(status, 303);
    let cookie = cookie.unwrap();
    let me: serde_json::Value =
        ureq::get(&format!("{base}/api/v1/me")).set("Cookie", &cookie).call().unwrap().into_json().unwrap();
    assert_eq!(me["role"], "administrator", "{me}");

    // The console's Lookup offers the same, with an Assign button for each.
    let page =
        ureq::get(&format!("{base}/config/login?lookup=alice%40contoso.com")).set("Cookie", &cookie).call().unwrap();
    let page = page.into_string().unwrap();
    assert!(page.contains("group Archive Admins") && page.contains(&format!("value=\"{group}\"")), "{page}");
    let audit = c.ok(&["audit", "list", "--limit", "50"]);
    assert!(
        audit.contains("directory lookup")
            && audit.contains(&format!("role assignment groups={group}→administrator added first")),
        "{audit}"
    );
}

#[test]
fn update_manifest_through_the_api_makes_the_certificate_and_starts_the_connection_that_lacked_it() {
    let fake = FakeMicrosoft::start(TENANT, CLIENT);
    fake.add_user("alice@contoso.com");
    let c = Coffer::new();
    configure(&c, &fake, "m365");
    let key = c.user_with_key("admin", "administrator", &[]);
    let server = common::Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    let state = || call_api(server.http, &key, "GET", "/connections")[0]["job"]["state"].as_str().unwrap().to_owned();
    assert_eq!(state(), "not started", "no certificate yet");
    let post = |query: &str, body: &[u8]| {
        let url = format!("http://{}/api/v1/connections/contoso/manifest?{query}", server.http);
        match ureq::post(&url).set("Authorization", &format!("Bearer {key}")).send_bytes(body) {
            Ok(r) => (200, r.into_json::<serde_json::Value>().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json::<serde_json::Value>().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    let manifest = serde_json::to_vec(&fake.manifest()).unwrap();

    // Mistakes are refused with what to do; nothing is made.
    let (status, refused) = post("common_name=archive.contoso.com&country=Switzerland", &manifest);
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("ISO 3166"), "{refused}");
    let (status, _) = post("common_name=archive.contoso.com&country=CH", b"{not json");
    assert_eq!(status, 400);
    assert!(!c.ok(&["cert", "list"]).contains("m365"));

    let (status, updated) = post("common_name=archive.contoso.com&organization=Contoso&country=CH", &manifest);
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["keyCredentials"].as_array().unwrap().len(), 1);
    assert!(c.ok(&["cert", "list"]).contains("CN=archive.contoso.com"));
    assert_eq!(state(), "on demand", "the connection starts once its certificate exists, without a restart");
    fake.upload_manifest(&updated);
    let tested = call_api(server.http, &key, "POST", "/connections/contoso/test");
    assert_eq!(tested["ok"], true, "Entra ID accepts the certificate: {tested}");
    assert!(c.ok(&["audit", "list", "--limit", "20"]).contains("app manifest updated with certificate m365"));

    // The console's form: the updated manifest comes back as a download; a file that is not a
    // manifest is refused on the Connections page.
    let form = |file: &[u8]| {
        let mut body = Vec::new();
        for (name, value) in [("common_name", "archive.contoso.com"), ("country", "CH")] {
            body.extend(
                format!("--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
            );
        }
        body.extend(b"--b\r\nContent-Disposition: form-data; name=\"manifest\"; filename=\"manifest.json\"\r\nContent-Type: application/json\r\n\r\n");
        body.extend(file);
        body.extend(b"\r\n--b--\r\n");
        let url = format!("http://{}/config/connections/contoso/manifest", server.http);
        let request = ureq::post(&url)
            .set("Authorization", &format!("Bearer {key}"))
            .set("Content-Type", "multipart/form-data; boundary=b");
        match request.send_bytes(&body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        }
    };
    let download = form(&serde_json::to_vec(&updated).unwrap());
    assert_eq!(download.status(), 200);
    assert_eq!(download.header("Content-Disposition"), Some("attachment; filename=\"contoso-manifest.json\""));
    let again: serde_json::Value = download.into_json().unwrap();
    assert_eq!(again["keyCredentials"], updated["keyCredentials"], "the same certificate is not added twice");
    let refused = form(b"{\"displayName\": \"not a manifest\"}");
    assert_eq!(refused.status(), 400);
    assert!(refused.into_string().unwrap().contains("no appId"));
}
