//! What an attacker with a user's account, or none, tries over HTTP: huge page numbers, reading
//! blind recipients out of downloads, headers and placements, finding text of messages they may
//! not open, redirects to other hosts after sign-in, and the metrics of every tenant.

mod common;

use coffer_testkit::journal::{Envelope, Style, report};
use common::{PASSWORD, Site};

#[test]
fn a_page_number_past_the_end_answers_an_empty_page_and_the_server_keeps_serving() {
    let site = Site::start();
    let mut bob = site.browser("bob", PASSWORD);
    for path in ["/search?page=30000000", "/search?q=numbers&page=18446744073709551615", "/search?page=2000"] {
        let page = bob.get(path);
        assert_eq!(page.status, 200, "{path}: {}", page.text());
        assert!(!page.text().contains("data-id="), "{path} lists no message");
    }
    for path in
        ["/api/v1/search?q=numbers&offset=18446744073709551615", "/api/v1/search?q=numbers&offset=99999999&limit=500"]
    {
        let reply = site.api("user").get(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.json()["messages"].as_array().unwrap().len(), 0, "{path}");
        assert_eq!(reply.json()["total"], 1, "{path}: the total is still told");
    }
    // Still serving, and ordinary paging still works.
    let first = site.api("user").get("/api/v1/search?q=numbers&limit=100000");
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["messages"].as_array().unwrap().len(), 1);
}

/// A sent copy whose header names a Bcc recipient, with an attached message that names one too,
/// filed in the blind recipient's mailbox.
fn sent_copy_with_blind_recipients() -> Vec<u8> {
    b"From: Alice <alice@contoso.com>\r\nTo: bob@contoso.com\r\nBcc: dave@contoso.com\r\n\
Resent-Bcc: dave@contoso.com\r\nX-Original-Bcc: dave@contoso.com\r\nDelivered-To: dave@contoso.com\r\n\
Subject: Merger plans\r\nDate: Wed, 03 Jul 2024 09:00:00 +0000\r\nMessage-ID: <merger@contoso.com>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\n\
Content-Type: text/plain\r\n\r\nSee the forwarded note.\r\n--outer\r\nContent-Type: message/rfc822\r\n\
Content-Disposition: attachment; filename=note.eml\r\n\r\nFrom: carol@contoso.com\r\nTo: alice@contoso.com\r\n\
Bcc: dave@contoso.com\r\nSubject: note\r\n\r\nThe note.\r\n--outer--\r\n"
        .to_vec()
}

#[test]
fn a_user_never_learns_a_blind_recipient_from_downloads_headers_placements_or_mailbox_search() {
    let site = Site::start();
    let original = sent_copy_with_blind_recipients();
    let id = site.add(&original, false, Some(("dave@contoso.com", "Inbox/Legal")));
    let bob = site.api("user");

    let raw = bob.get(&format!("/api/v1/messages/{id}/raw"));
    assert_eq!(raw.status, 200);
    let text = raw.text();
    assert!(text.starts_with("X-Coffer-Redacted: "), "the copy says it is not the original: {text}");
    assert!(!text.to_lowercase().contains("dave@"), "{text}");
    assert!(text.contains("To: bob@contoso.com\r\n") && text.contains("The note.\r\n"), "{text}");

    let view = bob.get(&format!("/api/v1/messages/{id}"));
    assert_eq!(view.status, 200);
    let json = view.text();
    assert!(!json.to_lowercase().contains("dave@"), "no Bcc-like header, no placement in dave's mailbox: {json}");

    let attachment = bob.get(&format!("/api/v1/messages/{id}/attachments/0"));
    assert_eq!(attachment.status, 200, "{}", attachment.text());
    assert!(!attachment.text().contains("dave@") && attachment.text().contains("The note."), "{}", attachment.text());

    let mut browser = site.browser("bob", PASSWORD);
    let page = browser.get(&format!("/messages/{id}"));
    assert_eq!(page.status, 200);
    assert!(!page.text().to_lowercase().contains("dave@"), "{}", page.text());

    for q in ["mailbox:dave@contoso.com", "mailbox:dave*", "folder:inbox/legal", "bcc:dave@contoso.com", "dave"] {
        let found = bob.get(&format!("/api/v1/search?q={}", q.replace(':', "%3A").replace('/', "%2F")));
        assert_eq!(found.json()["total"], 0, "{q} finds the message for bob: {}", found.text());
    }
    assert_eq!(bob.get("/api/v1/search?q=merger").json()["total"], 1, "bob, its To recipient, finds it");

    // Auditors and administrators get the exact bytes and every placement.
    let exact = site.api("auditor").get(&format!("/api/v1/messages/{id}/raw"));
    assert_eq!(exact.body, original);
    assert!(site.api("auditor").get(&format!("/api/v1/messages/{id}")).text().contains("dave@contoso.com"));
    assert_eq!(site.api("auditor").get("/api/v1/search?q=mailbox%3Adave%40contoso.com").json()["total"], 1);
    assert!(site.audit_text().contains(&format!("download | message {id} (redacted copy")), "{}", site.audit_text());
}

#[test]
fn a_user_finds_exactly_the_messages_they_may_open_and_no_snippet_of_another() {
    let site = Site::start();
    // Bob's address only as a display name: he does not take part.
    let spoof = b"From: \"bob@contoso.com\" <mallory@contoso.com>\r\nTo: erin@contoso.com\r\n\
Subject: Payroll secret\r\nDate: Thu, 04 Jul 2024 09:00:00 +0000\r\n\r\nThe payroll secret is qz-forty-two.\r\n";
    let hidden = site.add(spoof, false, None);
    // Bob's address as the list an envelope recipient came through, and as the On-Behalf-Of of
    // another: the list is not a participant (the delegate's principal is).
    let original = b"From: erin@contoso.com\r\nTo: all@contoso.com\r\nSubject: Payroll list\r\n\
Message-ID: <list@contoso.com>\r\n\r\nThe payroll list.\r\n";
    let envelope = Envelope::new("erin@contoso.com", "Payroll list", "<list@contoso.com>")
        .line("To", "frank@contoso.com, Expanded: bob@contoso.com");
    let listed = site.add(&report(original, &envelope, Style::ExchangeOnline, "journal@archive.test"), true, None);
    // Sent by a delegate on bob's behalf: bob takes part (his mail went out), so he finds and opens it.
    let delegated = b"From: carol@contoso.com\r\nTo: frank@fabrikam.com\r\nSubject: Payroll delegated\r\n\
Message-ID: <delegated@contoso.com>\r\n\r\nSent for bob.\r\n";
    let envelope = Envelope::new("carol@contoso.com", "Payroll delegated", "<delegated@contoso.com>")
        .line("On-Behalf-Of", "bob@contoso.com")
        .line("To", "frank@fabrikam.com");
    let on_behalf = site.add(&report(delegated, &envelope, Style::ExchangeOnline, "journal@archive.test"), true, None);
    let bob = site.api("user");
    let found = bob.get("/api/v1/search?q=payroll").json();
    assert_eq!(found["total"], 1, "only the message sent on his behalf: {found}");
    assert_eq!(found["messages"][0]["id"], on_behalf, "{found}");
    // (A word no time or hash can contain: "42" alone failed whenever a second read :42.)
    assert!(!found.to_string().contains("forty-two"), "{found}");
    assert_eq!(bob.get(&format!("/api/v1/messages/{on_behalf}")).status, 200);
    assert_eq!(bob.get(&format!("/api/v1/messages/{hidden}")).status, 404);
    assert_eq!(bob.get(&format!("/api/v1/messages/{listed}")).status, 404);
    // Whatever bob searches, the total is what he can open.
    for q in ["", "contoso.com", "the", "from:contoso.com"] {
        let page = bob.get(&format!("/api/v1/search?q={q}&limit=500")).json();
        let ids: Vec<i64> = page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
        assert_eq!(page["total"].as_u64().unwrap() as usize, ids.len(), "{q:?}: {page}");
        for id in ids {
            assert_eq!(bob.get(&format!("/api/v1/messages/{id}")).status, 200, "{q:?} listed {id}");
        }
    }
}

#[test]
fn after_sign_in_a_next_that_leads_to_another_host_goes_to_search() {
    let site = Site::start();
    for next in
        ["//evil.example/", "/\\evil.example", "/\t/evil.example", "/%2F%2Fevil.example", "https://evil.example"]
    {
        let mut b = common::Browser::new(&site.base);
        let form = b.get("/signon").text();
        let token = common::value_of(&form, "signon_token").unwrap();
        let reply = b.post_form(
            "/signon",
            &[("login", "bob"), ("password", PASSWORD), ("signon_token", &token), ("next", next)],
        );
        assert_eq!(reply.status, 303);
        assert_eq!(reply.header("location"), Some("/search"), "{next:?}");
    }
}

#[test]
fn metrics_need_the_scraper_token_or_a_system_administrator() {
    let site =
        Site::start_with(coffer_web::WebConfig { metrics_token: Some("scrape-secret".into()), ..Default::default() });
    assert_eq!(site.anonymous().get("/metrics").status, 401);
    assert_eq!(site.api("user").get("/metrics").status, 403);
    assert_eq!(site.api("auditor").get("/metrics").status, 403);
    let wrong = common::Api { base: site.base.clone(), key: Some("not-the-token".into()) };
    assert_eq!(wrong.get("/metrics").status, 401);
    let scraper = common::Api { base: site.base.clone(), key: Some("scrape-secret".into()) };
    let text = scraper.get("/metrics").text();
    assert!(text.contains("coffer_archived_messages_total{source=\"import\",tenant=\"fabrikam\"} 1"), "{text}");
    assert!(site.api("administrator").get("/metrics").text().contains("coffer_index_lag_messages 0"));
}

#[test]
fn forty_wrong_passwords_at_once_are_checked_only_up_to_the_lockout() {
    let site = Site::start();
    let forms: Vec<(common::Browser, String)> = (0..40)
        .map(|_| {
            let mut b = common::Browser::new(&site.base);
            let token = common::value_of(&b.get("/signon").text(), "signon_token").unwrap();
            (b, token)
        })
        .collect();
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = forms
            .into_iter()
            .map(|(mut b, token)| {
                s.spawn(move || {
                    let form = [
                        ("login", "bob"),
                        ("password", "wrong"),
                        ("signon_token", token.as_str()),
                        ("next", "/search"),
                    ];
                    refusal(&b.post_form("/signon", &form))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let audit = site.audit_text();
    assert_eq!(audit.matches("bob | 127.0.0.1 | sign-in failed | wrong login or password").count(), 5, "{audit}");
    assert_eq!(audit.matches("bob | 127.0.0.1 | sign-in failed | account locked").count(), 35, "{audit}");
    assert!(answers.iter().all(|a| *a == answers[0]), "one answer for all: {answers:?}");
    let mut b = common::Browser::new(&site.base);
    assert_eq!(refusal(&b.try_sign_in("bob", PASSWORD)), answers[0], "still locked");
    // An unknown login gets the same answer.
    assert_eq!(refusal(&b.try_sign_in("nobody", "x")), answers[0]);
}

#[test]
fn a_sign_in_that_cannot_reach_its_provider_tells_a_visitor_nothing_internal() {
    let site = Site::start();
    let admin = site.api("administrator");
    let mut login = admin.get("/api/v1/config/login").json();
    login["oidc"]["enabled"] = serde_json::json!(true);
    login["oidc"]["issuer"] = serde_json::json!("http://127.0.0.1:9/realms/internal-idp");
    login["oidc"]["client_id"] = serde_json::json!("coffer");
    assert_eq!(admin.send("PUT", "/api/v1/config/login", login).status, 200);
    let page = site.anonymous().get("/login/oidc");
    assert_eq!(page.status, 503);
    let text = page.text();
    assert!(text.contains("temporarily unavailable"), "{text}");
    for secret in ["127.0.0.1:9", "internal-idp", "os error", "refused"] {
        assert!(!text.contains(secret), "the page shows {secret:?}: {text}");
    }
}

#[test]
fn another_tenants_logins_cannot_be_probed_by_adding_users() {
    let site = Site::start();
    // An administrator of tenant fabrikam.
    let key = site.runtime.block_on(async {
        let fabrikam = site.archive.tenant(Some("fabrikam")).await.unwrap();
        let operator = coffer_archive::Actor::operator(fabrikam.clone());
        let admin = site.archive.admin();
        let new = coffer_archive::admin::NewAccount {
            login: "admin@fabrikam.com".into(),
            display_name: "Fabrikam admin".into(),
            role: "administrator".into(),
            password: PASSWORD.into(),
            addresses: vec![],
        };
        admin.add_user(&operator, &fabrikam, &new).await.unwrap();
        let (_, key) = admin.create_api_key(&operator, Some("admin@fabrikam.com"), "tests", None).await.unwrap();
        key
    });
    let fab = common::Api { base: site.base.clone(), key: Some(key) };
    let user = |login: &str| serde_json::json!({"login": login, "display_name": "x", "role": "user", "password": "a long enough password"});
    // "bob" exists in the default tenant; the answer does not say so.
    for probe in ["bob", "admin", "bob@contoso.com"] {
        let reply = fab.send("POST", "/api/v1/users", user(probe));
        assert_eq!(reply.status, 400, "{probe}");
        assert!(reply.text().contains("a login is name@fabrikam"), "{probe}: {}", reply.text());
        assert!(!reply.text().contains("exists"), "{probe}: {}", reply.text());
    }
    assert_eq!(fab.send("POST", "/api/v1/users", user("erin@fabrikam.com")).status, 201);
    assert_eq!(fab.send("POST", "/api/v1/users", user("erin@fabrikam")).status, 201);
    assert_eq!(fab.send("POST", "/api/v1/users", user("erin@fabrikam.com")).status, 400, "its own namespace collides");
}

#[test]
fn an_auditor_sees_the_volumes_of_their_own_tenant_alike_in_the_console_and_the_api() {
    let site = Site::start();
    let fabrikam = site.runtime.block_on(site.archive.tenant(Some("fabrikam"))).unwrap();
    let fabrikam_volume = format!("t{}-v000001", fabrikam.id);
    let default = site.runtime.block_on(site.archive.tenant(None)).unwrap();
    let own_volume = format!("t{}-v000001", default.id);
    // Audrey audits the default tenant, not fabrikam.
    let mut audrey = site.browser("audrey", PASSWORD);
    let page = audrey.get("/status").text();
    assert!(page.contains(&own_volume), "{page}");
    assert!(!page.contains(&fabrikam_volume), "the console shows another tenant's volume: {page}");
    let status = site.api("auditor").get("/api/v1/status").json();
    let ids: Vec<&str> = status["volumes"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [own_volume.as_str()], "the API shows the same: {status}");
    let listed = site.api("auditor").get("/api/v1/volumes").json();
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [own_volume.as_str()], "and so does the volume list: {listed}");
    // The system administrator sees every volume on both.
    let all = site.api("administrator").get("/api/v1/status").json();
    assert_eq!(all["volumes"].as_array().unwrap().len(), 2, "{all}");
    assert!(site.browser("admin", PASSWORD).get("/status").text().contains(&fabrikam_volume));
}

/// A refused sign-in: 401 and the form again, with one message for every reason.
fn refusal(reply: &common::Reply) -> String {
    assert_eq!(reply.status, 401, "{}", reply.text());
    reply.text().split("id=\"signon-error\">").nth(1).and_then(|t| t.split('<').next()).unwrap_or_default().to_owned()
}
