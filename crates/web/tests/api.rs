//! The REST API and the console over real HTTP: every endpoint for every role, visibility, tenant
//! isolation, byte-exact downloads, inert hostile content, CSRF, sessions and lockout.

mod common;

use common::{PASSWORD, Site, XSS_SUBJECT};
use serde_json::json;

#[test]
fn every_api_endpoint_answers_each_role_as_its_rights_allow() {
    let site = Site::start();
    let q3 = site.id("q3");
    let carol = site.id("carol");
    let volume = site.api("administrator").get("/api/v1/volumes").json()[0]["id"].as_str().unwrap().to_owned();
    let bob_id = site.runtime.block_on(site.catalog.user_by_login("bob")).unwrap().unwrap().id;
    // (method, path, body, administrator, auditor, user, anonymous)
    let table: Vec<(&str, String, Option<serde_json::Value>, [u16; 4])> = vec![
        ("GET", "/api/v1/me".into(), None, [200, 200, 200, 401]),
        ("GET", "/api/v1/search?q=numbers".into(), None, [200, 200, 200, 401]),
        ("GET", format!("/api/v1/messages/{q3}"), None, [200, 200, 200, 401]),
        ("GET", format!("/api/v1/messages/{carol}"), None, [200, 200, 404, 401]),
        ("GET", format!("/api/v1/messages/{q3}/raw"), None, [200, 200, 200, 401]),
        ("GET", format!("/api/v1/messages/{carol}/raw"), None, [200, 200, 404, 401]),
        ("GET", format!("/api/v1/messages/{}/attachments/0", site.id("xss")), None, [200, 200, 200, 401]),
        ("GET", format!("/api/v1/messages/{q3}/attachments/5"), None, [404, 404, 404, 401]),
        ("GET", "/api/v1/folders".into(), None, [200, 200, 200, 401]),
        ("POST", "/api/v1/exports".into(), Some(json!({"query": "numbers", "format": "mbox"})), [200, 200, 403, 401]),
        ("GET", "/api/v1/status".into(), None, [200, 200, 403, 401]),
        ("GET", "/api/v1/audit".into(), None, [200, 200, 403, 401]),
        ("GET", "/api/v1/volumes".into(), None, [200, 200, 403, 401]),
        ("GET", "/api/v1/imports".into(), None, [200, 403, 403, 401]),
        ("GET", "/api/v1/users".into(), None, [200, 403, 403, 401]),
        ("GET", format!("/api/v1/users/{bob_id}/claims"), None, [200, 403, 403, 401]),
        (
            "PUT",
            format!("/api/v1/users/{bob_id}"),
            Some(json!({"display_name": "Bob", "role": "user", "addresses": ["bob@contoso.com"]})),
            [204, 403, 403, 401],
        ),
        ("GET", "/api/v1/tenants".into(), None, [200, 403, 403, 401]),
        ("POST", "/api/v1/tenants/1/networks".into(), Some(json!({"cidr": "192.0.2.0/24"})), [200, 403, 403, 401]),
        ("POST", "/api/v1/tenants/999/networks".into(), Some(json!({"cidr": "192.0.2.0/24"})), [404, 403, 403, 401]),
        ("POST", "/api/v1/connections/nothing/start".into(), None, [404, 403, 403, 401]),
        ("POST", "/api/v1/connections/nothing/stop".into(), None, [404, 403, 403, 401]),
        ("GET", "/api/v1/certificates".into(), None, [200, 403, 403, 401]),
        ("GET", "/api/v1/config/login".into(), None, [200, 403, 403, 401]),
        ("GET", "/api/v1/connections".into(), None, [200, 403, 403, 401]),
        ("POST", "/api/v1/connections/nothing/test".into(), None, [404, 403, 403, 401]),
        ("GET", "/api/v1/api-keys".into(), None, [200, 200, 200, 401]),
        ("GET", "/api/v1/retention/rules".into(), None, [200, 200, 403, 401]),
        ("GET", "/api/v1/retention/runs".into(), None, [200, 200, 403, 401]),
        ("GET", "/api/v1/holds".into(), None, [200, 200, 403, 401]),
        ("GET", "/api/v1/deletions".into(), None, [200, 200, 403, 401]),
        ("GET", "/api/v1/deletion-requests".into(), None, [200, 200, 403, 401]),
        ("POST", "/api/v1/retention/runs".into(), Some(json!({"dry_run": true})), [200, 403, 403, 401]),
        (
            "POST",
            "/api/v1/retention/rules".into(),
            Some(json!({"name": "r", "query": "*", "keep": "forever"})),
            [201, 403, 403, 401],
        ),
        ("POST", "/api/v1/holds".into(), Some(json!({"name": "h", "query": "*"})), [201, 403, 403, 401]),
        ("POST", "/api/v1/holds/none/release".into(), Some(json!({"reason": "x"})), [400, 403, 403, 401]),
        ("POST", "/api/v1/deletion-requests/999/approve".into(), None, [404, 403, 403, 401]),
        ("GET", "/api/v1/openapi.json".into(), None, [200, 200, 200, 200]),
        ("GET", "/api/v1/no-such-thing".into(), None, [404, 404, 404, 404]),
    ];
    for (method, path, body, expected) in &table {
        for (who, want) in ["administrator", "auditor", "user", "anonymous"].iter().zip(expected) {
            let api = if *who == "anonymous" { site.anonymous() } else { site.api(who) };
            let reply = match body {
                Some(b) => api.send(method, path, b.clone()),
                None if *method == "GET" => api.get(path),
                None => api.send(method, path, json!({})),
            };
            assert_eq!(reply.status, *want, "{method} {path} as {who}: {}", reply.text());
        }
    }
    // Changes, each by the role allowed to make it, and refused to the others.
    let user = site.api("user");
    let admin = site.api("administrator");
    let auditor = site.api("auditor");
    let new_user =
        json!({"login": "erin", "role": "user", "password": "a long enough password", "addresses": "erin@contoso.com"});
    assert_eq!(user.send("POST", "/api/v1/users", new_user.clone()).status, 403);
    assert_eq!(admin.send("POST", "/api/v1/users", new_user.clone()).status, 201);
    assert_eq!(admin.send("POST", "/api/v1/users", new_user).status, 400, "a login is unique");
    let short = json!({"login": "frank", "role": "user", "password": "short"});
    assert!(admin.send("POST", "/api/v1/users", short).text().contains("at least 10 characters"));
    let tenant = json!({"name": "northwind", "domains": "northwind.com"});
    assert_eq!(auditor.send("POST", "/api/v1/tenants", tenant.clone()).status, 403);
    let created = admin.send("POST", "/api/v1/tenants", tenant);
    assert_eq!(created.status, 201);
    assert!(
        created.json()["journal_address"].as_str().unwrap().starts_with("journal-"),
        "the answer is the journal address"
    );
    let cert =
        json!({"alias": "console", "common_name": "archive.contoso.com", "organization": "Contoso", "country": "CH"});
    assert_eq!(auditor.send("POST", "/api/v1/certificates", cert.clone()).status, 403);
    assert_eq!(admin.send("POST", "/api/v1/certificates", cert).status, 201);
    for country in ["Switzerland", "SW"] {
        let bad_cert = json!({"alias": "x", "common_name": "x", "country": country});
        let reply = admin.send("POST", "/api/v1/certificates", bad_cert);
        assert_eq!(reply.status, 400);
        assert!(reply.text().contains("CH for Switzerland"), "{country}: {}", reply.text());
    }
    assert_eq!(user.send("POST", &format!("/api/v1/volumes/{volume}/close"), json!({})).status, 403);
    assert_eq!(admin.send("POST", &format!("/api/v1/volumes/{volume}/close"), json!({})).status, 204);
    assert_eq!(admin.send("POST", "/api/v1/volumes/t9-v000001/close", json!({})).status, 404);
    // API keys: one's own, never above one's role.
    let key = user.send("POST", "/api/v1/api-keys", json!({"name": "script", "role": "administrator"}));
    assert_eq!(key.status, 403, "a user cannot make an administrator key");
    let key = user.send("POST", "/api/v1/api-keys", json!({"name": "script"}));
    assert_eq!(key.status, 201);
    let created = key.json();
    let fresh = common::Api { base: site.base.clone(), key: Some(created["key"].as_str().unwrap().to_owned()) };
    assert_eq!(fresh.get("/api/v1/me").json()["login"], "bob");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(admin.send("DELETE", &format!("/api/v1/api-keys/{id}"), json!({})).status, 404, "not the admin's key");
    assert_eq!(user.send("DELETE", &format!("/api/v1/api-keys/{id}"), json!({})).status, 204);
    assert_eq!(fresh.get("/api/v1/me").status, 401, "a revoked key opens nothing");
    let wrong = common::Api { base: site.base.clone(), key: Some("ck_wrong".into()) };
    assert_eq!(wrong.get("/api/v1/openapi.json").status, 401, "a wrong key is refused even where none is needed");
    // An auditor's key made for the user role sees what a user sees.
    let audrey_user_key = auditor.send("POST", "/api/v1/api-keys", json!({"name": "narrow", "role": "user"})).json();
    let narrow =
        common::Api { base: site.base.clone(), key: Some(audrey_user_key["key"].as_str().unwrap().to_owned()) };
    assert_eq!(narrow.get("/api/v1/status").status, 403);
}

#[test]
fn a_user_sees_only_their_own_mail_and_never_a_bcc_line() {
    let site = Site::start();
    let bob = site.api("user");
    let all = bob.get("/api/v1/search").json();
    let subjects: Vec<&str> =
        all["messages"].as_array().unwrap().iter().map(|m| m["subject"].as_str().unwrap()).collect();
    assert_eq!(all["total"], 2, "{subjects:?}");
    assert!(subjects.contains(&"Q3 numbers") && subjects.contains(&XSS_SUBJECT));
    assert_eq!(bob.get("/api/v1/search?q=carol").json()["total"], 0);
    let q3 = bob.get(&format!("/api/v1/messages/{}", site.id("q3"))).json();
    assert_eq!(q3["bcc"], json!([]));
    assert_eq!(q3["envelope"], json!([]));
    assert_eq!(
        bob.get("/api/v1/search?q=bcc:dave@contoso.com").json()["total"],
        0,
        "a user cannot search by Bcc either"
    );
    let admin = site.api("administrator").get(&format!("/api/v1/messages/{}", site.id("q3"))).json();
    assert_eq!(admin["bcc"], json!(["dave@contoso.com"]));
    // The console shows the same.
    let mut browser = site.browser("bob", PASSWORD);
    let page = browser.get(&format!("/messages/{}", site.id("q3"))).text();
    assert!(page.contains("Q3 numbers") && !page.contains("dave@contoso.com"), "{page}");
    assert_eq!(browser.get(&format!("/messages/{}", site.id("carol"))).status, 404);
    let folders = bob.get("/api/v1/folders").json();
    assert_eq!(folders, json!([]), "bob's folder tree does not show carol's mailbox");
    let folders = site.api("auditor").get("/api/v1/folders").json();
    assert_eq!(folders, json!([{"mailbox": "carol@contoso.com", "folder": "Inbox/Projects", "messages": 1}]));
    let search = browser.get("/search").text();
    assert!(!search.contains("Carol private plans"));
    let mut auditor = site.browser("audrey", PASSWORD);
    let page = auditor.get(&format!("/messages/{}", site.id("q3"))).text();
    assert!(page.contains("dave@contoso.com"), "an auditor sees the Bcc line");
    let tree = auditor.get("/search").text();
    assert!(
        tree.contains("data-folder=\"Inbox\"")
            && tree.contains("data-folder=\"Projects\"")
            && tree.contains("carol@contoso.com"),
        "the folder tree holds carol's Inbox and its Projects: {tree}"
    );
}

#[test]
fn another_tenants_message_id_answers_404_everywhere() {
    let site = Site::start();
    let id = site.id("fabrikam");
    for role in ["administrator", "auditor", "user"] {
        let api = site.api(role);
        for path in [
            format!("/api/v1/messages/{id}"),
            format!("/api/v1/messages/{id}/raw"),
            format!("/api/v1/messages/{id}/attachments/0"),
        ] {
            assert_eq!(api.get(&path).status, 404, "{path} as {role}");
        }
    }
    let mut admin = site.browser("admin", PASSWORD);
    for path in [
        format!("/messages/{id}"),
        format!("/messages/{id}/raw"),
        format!("/messages/{id}/body"),
        "/messages/nonsense".into(),
    ] {
        assert_eq!(admin.get(&path).status, 404, "{path}");
    }
    assert_eq!(site.api("administrator").get("/api/v1/search?q=Fabrikam").json()["total"], 0);
}

#[test]
fn the_raw_download_is_the_original_byte_for_byte_and_audited() {
    let site = Site::start();
    let raw = site.api("auditor").get(&format!("/api/v1/messages/{}/raw", site.id("q3")));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("message/rfc822"));
    assert_eq!(raw.body, site.originals["q3"], "the original, not the journal report around it");
    // A user gets a copy marked as such (here nothing else differs: no blind field in it).
    let copy = site.api("user").get(&format!("/api/v1/messages/{}/raw", site.id("q3")));
    let marker_end = copy.body.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert!(copy.body.starts_with(b"X-Coffer-Redacted: "), "{}", copy.text());
    assert_eq!(copy.body[marker_end..], site.originals["q3"]);
    let mut browser = site.browser("admin", PASSWORD);
    let page = browser.get(&format!("/messages/{}/raw", site.id("carol")));
    assert_eq!(page.body, site.originals["carol"]);
    let audit = site.audit_text();
    assert!(audit.contains(&format!("audrey | 127.0.0.1 | download | message {}", site.id("q3"))), "{audit}");
    assert!(
        audit.contains(&format!("bob | 127.0.0.1 | download | message {} (redacted copy", site.id("q3"))),
        "{audit}"
    );
    assert!(audit.contains("admin | 127.0.0.1 | sign-in | local account"), "{audit}");
}

#[test]
fn script_in_a_subject_and_a_body_renders_inert() {
    let site = Site::start();
    let id = site.id("xss");
    let mut browser = site.browser("bob", PASSWORD);
    for page in [browser.get(&format!("/messages/{id}")).text(), browser.get("/search?q=invoice").text()] {
        assert!(page.contains("&lt;script&gt;alert("), "the subject is escaped");
        assert!(!page.contains("<script>alert("), "{page}");
    }
    let body = browser.get(&format!("/messages/{id}/body"));
    let html = body.text();
    assert!(html.contains("Pay now"));
    for hostile in ["<script", "onerror", "javascript:"] {
        assert!(!html.to_lowercase().contains(hostile), "{hostile} survived: {html}");
    }
    let csp = body.header("content-security-policy").unwrap();
    assert!(csp.contains("sandbox") && csp.contains("img-src data:;"), "remote images blocked: {csp}");
    let remote = browser.get(&format!("/messages/{id}/body?remote=true"));
    assert!(remote.header("content-security-policy").unwrap().contains("https:"), "loaded when asked");
    let page = browser.get(&format!("/messages/{id}")).text();
    assert!(page.contains("<iframe id=\"body-frame\" class=\"body\" sandbox "), "the body sits in a sandboxed frame");
    let attachment = browser.get(&format!("/messages/{id}/attachments/0"));
    assert_eq!(
        attachment.header("content-type"),
        Some("application/octet-stream"),
        "an HTML attachment is never rendered"
    );
    assert!(attachment.header("content-disposition").unwrap().starts_with("attachment;"));
    let page = browser.get("/search");
    for header in ["content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy"] {
        assert!(page.header(header).is_some(), "{header} missing");
    }
}

#[test]
fn a_state_change_without_the_csrf_token_is_refused() {
    let site = Site::start();
    let mut browser = site.browser("admin", PASSWORD);
    let refused = browser.send_json("POST", "/api/v1/api-keys", None, json!({"name": "x"}));
    assert_eq!(refused.status, 403, "{}", refused.text());
    let refused = browser.post_form("/config/tenants", &[("name", "evil"), ("domains", "")]);
    assert_eq!(refused.status, 403);
    let refused = browser.post_form("/config/tenants", &[("name", "evil"), ("csrf", "forged")]);
    assert_eq!(refused.status, 403);
    let token = browser.csrf();
    let ok = browser.send_json("POST", "/api/v1/api-keys", Some(&token), json!({"name": "x"}));
    assert_eq!(ok.status, 201);
    let ok = browser.post_form("/config/tenants", &[("name", "northwind"), ("domains", ""), ("csrf", &token)]);
    assert_eq!(ok.status, 303);
    let names: Vec<String> =
        site.runtime.block_on(site.catalog.tenants()).unwrap().into_iter().map(|t| t.name).collect();
    assert!(names.contains(&"northwind".to_owned()) && !names.contains(&"evil".to_owned()));
    // The sign-on form has its own token: a form posted from elsewhere is refused.
    let mut stranger = common::Browser::new(&site.base);
    let forged =
        stranger.post_form("/signon", &[("login", "admin"), ("password", PASSWORD), ("signon_token", "guess")]);
    assert_eq!(forged.status, 403);
    assert!(!stranger.cookies.contains_key("coffer_session"));
}

#[test]
fn an_idle_session_and_a_signed_out_session_are_refused() {
    let site = Site::start();
    let mut browser = site.browser("admin", PASSWORD);
    assert_eq!(browser.get("/api/v1/me").status, 200);
    let token = browser.cookies["coffer_session"].clone();
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    let long_ago = coffer_archive::service::now_secs() - 31 * 60;
    site.runtime.block_on(site.catalog.backdate_session(&hash, long_ago)).unwrap();
    assert_eq!(browser.get("/api/v1/me").status, 401, "idle for longer than 30 minutes");
    let page = browser.get("/search");
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/signon?next=%2Fsearch"));
    // Sign out ends the session on the server, not only in the browser.
    let mut browser = site.browser("admin", PASSWORD);
    let stolen = browser.cookies["coffer_session"].clone();
    let csrf = browser.csrf();
    assert_eq!(browser.post_form("/logout", &[("csrf", &csrf)]).status, 303);
    let mut thief = common::Browser::new(&site.base);
    thief.cookies.insert("coffer_session".into(), stolen);
    assert_eq!(thief.get("/api/v1/me").status, 401);
    assert!(site.audit_text().contains("admin | 127.0.0.1 | sign-out"));
}

#[test]
fn repeated_failed_sign_ins_lock_the_account_and_are_audited() {
    let site = Site::start();
    let mut browser = common::Browser::new(&site.base);
    for _ in 0..5 {
        let reply = browser.try_sign_in("bob", "wrong password");
        assert_eq!(reply.status, 401);
        assert!(reply.text().contains("Wrong login or password"));
    }
    let refused = browser.try_sign_in("bob", "wrong password").text();
    let reply = browser.try_sign_in("bob", PASSWORD);
    assert_eq!(reply.status, 401);
    let error = |page: &str| page.split("id=\"signon-error\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert_eq!(error(&reply.text()), error(&refused), "a locked account answers as a wrong password does");
    assert!(!browser.cookies.contains_key("coffer_session"));
    let unknown = browser.try_sign_in("nobody", "whatever");
    assert_eq!(error(&unknown.text()), error(&refused), "no hint that the login does not exist");
    let audit = site.audit_text();
    assert_eq!(audit.matches("bob | 127.0.0.1 | sign-in failed | wrong login or password").count(), 5, "{audit}");
    assert_eq!(audit.matches("bob | 127.0.0.1 | sign-in failed | account locked").count(), 2, "{audit}");
    assert!(audit.contains("bob | 127.0.0.1 | sign-in failed | account locked"));
    // An administrator unlocks by setting a new password.
    let bob_id = site.runtime.block_on(site.catalog.user_by_login("bob")).unwrap().unwrap().id;
    let change = json!({"display_name": "Bob", "role": "user", "addresses": ["bob@contoso.com"], "password": "a brand new password"});
    assert_eq!(site.api("administrator").send("PUT", &format!("/api/v1/users/{bob_id}"), change).status, 204);
    browser.sign_in("bob", "a brand new password");
}

#[test]
fn an_auditor_exports_a_zip_with_a_manifest_and_a_user_may_not() {
    let site = Site::start();
    let reply = site.api("auditor").send("POST", "/api/v1/exports", json!({"query": "", "format": "zip"}));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-coffer-messages"), Some("3"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(reply.body)).unwrap();
    let names: Vec<String> = (0..zip.len()).map(|i| zip.by_index(i).unwrap().name().to_owned()).collect();
    assert!(names.contains(&"SHA256SUMS".to_owned()) && names.contains(&"manifest.csv".to_owned()), "{names:?}");
    let mut eml = Vec::new();
    std::io::Read::read_to_end(&mut zip.by_name(&format!("messages/{}.eml", site.id("q3"))).unwrap(), &mut eml)
        .unwrap();
    assert_eq!(eml, site.originals["q3"]);
    assert_eq!(site.api("user").send("POST", "/api/v1/exports", json!({"query": "", "format": "zip"})).status, 403);
    let bad = site.api("auditor").send("POST", "/api/v1/exports", json!({"query": "", "format": "pst"}));
    assert_eq!(bad.status, 400);
    assert!(site.audit_text().contains("audrey | 127.0.0.1 | export"));
}

#[test]
fn a_query_that_does_not_parse_gets_400_with_advice() {
    let site = Site::start();
    let reply = site.api("user").get("/api/v1/search?q=after%3Anot-a-date");
    assert_eq!(reply.status, 400);
    assert!(!reply.json()["error"].as_str().unwrap().is_empty());
    let mut browser = site.browser("bob", PASSWORD);
    let page = browser.get("/search?q=after%3Anot-a-date");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("id=\"query-error\""));
}

#[test]
fn a_configuration_change_is_validated_and_audited() {
    let site = Site::start();
    let admin = site.api("administrator");
    let mut login = admin.get("/api/v1/config/login").json();
    login["oidc"]["enabled"] = json!(true);
    login["oidc"]["provider"] = json!("entra");
    let refused = admin.send("PUT", "/api/v1/config/login", login.clone());
    assert_eq!(refused.status, 400);
    assert!(refused.text().contains("tenant) id"), "{}", refused.text());
    login["oidc"]["entra_tenant_id"] = json!("72f988bf-86f1-41af-91ab-2d7cd011db47");
    login["oidc"]["client_id"] = json!("11111111-2222-3333-4444-555555555555");
    login["oidc"]["callback_path"] = json!("/authorize.do");
    login["role_assignments"] = json!([{"attribute": "groups", "value": "archive-admins", "role": "administrator"}]);
    let saved = admin.send("PUT", "/api/v1/config/login", login);
    assert_eq!(saved.status, 200, "{}", saved.text());
    let saved = saved.json();
    assert_eq!(saved["redirect_uri"], format!("{}/authorize.do", site.base));
    assert_eq!(saved["role_assignments"][0]["value"], "archive-admins");
    assert!(site.audit_text().contains("configuration | login: single sign-on on (entra https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"));
    let mut browser = site.browser("admin", PASSWORD);
    let page = browser.get("/config/login").text();
    assert!(page.contains("https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/adminconsent?client_id=11111111-2222-3333-4444-555555555555"), "the admin consent button");
    // A forged or replayed state on the callback path is refused before anything else happens.
    // A state this browser did not start (login CSRF) is refused first.
    let planted = browser.get("/authorize.do?code=abc&state=forged");
    assert_eq!(planted.status, 400);
    assert!(planted.text().contains("not started in this browser"), "{}", planted.text());
    browser.cookies.insert("coffer_oidc_state".into(), "forged".into());
    let forged = browser.get("/authorize.do?code=abc&state=forged");
    assert_eq!(forged.status, 400);
    assert!(forged.text().contains("unknown sign-in state"));
    assert!(
        site.audit_text().contains("sign-in failed | the identity provider")
            || site.audit_text().contains("unknown sign-in state")
    );
}

#[test]
fn metrics_count_archived_messages_by_source_and_tenant() {
    let site = Site::start();
    let text = site.api("administrator").get("/metrics").text();
    assert!(text.contains("coffer_archived_messages_total{source=\"import\",tenant=\"default\"} 2"), "{text}");
    assert!(text.contains("coffer_archived_messages_total{source=\"smtp\",tenant=\"default\"} 1"));
    assert!(text.contains("coffer_archived_messages_total{source=\"import\",tenant=\"fabrikam\"} 1"));
    assert!(text.contains("coffer_index_lag_messages 0"));
}

#[test]
fn every_console_page_renders_for_the_roles_that_may_open_it() {
    let site = Site::start();
    let pages = [
        "/search",
        "/search?q=numbers&sort=relevance",
        "/status",
        "/audit?q=sign-in",
        "/account",
        "/config/listeners",
        "/config/connections",
        "/config/login",
        "/config/volumes",
        "/config/certificates",
        "/config/users",
        "/config/tenants",
        "/config/retention",
        "/config/holds",
        "/signonform.do",
    ];
    let mut admin = site.browser("admin", PASSWORD);
    for page in pages {
        let reply = admin.get(page);
        assert_eq!(reply.status, 200, "{page}: {}", reply.text());
    }
    let message = format!("/messages/{}", site.id("xss"));
    assert_eq!(admin.get(&message).status, 200);
    let mut bob = site.browser("bob", PASSWORD);
    for (page, status) in [
        ("/search", 200),
        ("/account", 200),
        ("/status", 403),
        ("/audit", 403),
        ("/config/users", 403),
        ("/config/volumes", 403),
        ("/config/retention", 403),
        ("/config/holds", 403),
    ] {
        assert_eq!(bob.get(page).status, status, "{page} for a user");
    }
    let mut anonymous = common::Browser::new(&site.base);
    let signon = anonymous.get("/signon").text();
    assert!(!signon.contains("id=\"first-run\""), "accounts exist: no first-run advice");
    assert_eq!(anonymous.get("/status").header("location"), Some("/signon?next=%2Fstatus"));
}

/// The admin service writes the audit entry, so a change made through the API and the same change
/// made in the console leave entries that differ only in what was changed.
#[test]
fn an_administrative_change_is_audited_alike_from_the_api_and_the_console() {
    let site = Site::start();
    let admin = site.api("administrator");
    let created = admin.send("POST", "/api/v1/tenants", json!({"name": "northwind", "domains": "northwind.com"}));
    assert_eq!(created.status, 201, "{}", created.text());
    let mut browser = site.browser("admin", PASSWORD);
    let csrf = browser.csrf();
    let form =
        browser.post_form("/config/tenants", &[("name", "tailspin"), ("domains", "tailspin.com"), ("csrf", &csrf)]);
    assert_eq!(form.status, 303, "{}", form.text());
    let tenants = admin.get("/api/v1/tenants").json();
    let address = |name: &str| {
        tenants.as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()["journal_address"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let audit = site.audit_text();
    for name in ["northwind", "tailspin"] {
        let line = format!(
            "admin | 127.0.0.1 | configuration | tenant {name} added (domains {name}.com); journal address {}\n",
            address(name)
        );
        assert!(audit.contains(&line), "no {line:?} in\n{audit}");
    }
    // Networks are parsed once, the same way: canonical form in the answer and the entry.
    let id = |name: &str| site.runtime.block_on(site.archive.tenant(Some(name))).unwrap().id;
    let api_net =
        admin.send("POST", &format!("/api/v1/tenants/{}/networks", id("northwind")), json!({"cidr": "203.0.113.7/24"}));
    assert_eq!(api_net.status, 200, "{}", api_net.text());
    assert_eq!(api_net.json()["cidr"], "203.0.113.0/24");
    let page_net = browser.post_form(
        &format!("/config/tenants/{}/networks", id("tailspin")),
        &[("cidr", "198.51.100.9/24"), ("csrf", &csrf)],
    );
    assert_eq!(page_net.status, 303, "{}", page_net.text());
    let audit = site.audit_text();
    assert!(
        audit.contains(
            "admin | 127.0.0.1 | configuration | tenant tailspin: journal reports accepted from 198.51.100.0/24"
        ),
        "{audit}"
    );
    assert!(
        audit.contains(
            "admin | 127.0.0.1 | configuration | tenant northwind: journal reports accepted from 203.0.113.0/24"
        ),
        "{audit}"
    );
    let bad = browser.post_form(
        &format!("/config/tenants/{}/networks", id("tailspin")),
        &[("cidr", "198.51.100.0/33"), ("csrf", &csrf)],
    );
    assert_eq!(bad.status, 400, "{}", bad.text());

    // A tenant's domains and networks are edited whole, alike from the API and the console; the
    // journal address stays.
    let edited = admin.send(
        "PUT",
        &format!("/api/v1/tenants/{}", id("northwind")),
        json!({"domains": ["northwind.com", "@Northwind.CH"], "networks": ["40.92.0.0/15"]}),
    );
    assert_eq!(edited.status, 200, "{}", edited.text());
    let edited = edited.json();
    assert_eq!(edited["domains"], json!(["northwind.ch", "northwind.com"]));
    assert_eq!(edited["networks"], json!(["40.92.0.0/15"]));
    assert_eq!(edited["journal_address"].as_str(), Some(address("northwind").as_str()));
    let page_edit = browser.post_form(
        &format!("/config/tenants/{}", id("tailspin")),
        &[("domains", "tailspin.com, tailspin.de"), ("networks", ""), ("csrf", &csrf)],
    );
    assert_eq!(page_edit.status, 303, "{}", page_edit.text());
    let audit = site.audit_text();
    assert!(
        audit.contains("configuration | tenant northwind: domains northwind.com → northwind.ch, northwind.com; sending networks 203.0.113.0/24 → 40.92.0.0/15"),
        "{audit}"
    );
    assert!(
        audit.contains("configuration | tenant tailspin: domains tailspin.com → tailspin.com, tailspin.de; sending networks 198.51.100.0/24 → none"),
        "{audit}"
    );
    // Another tenant's domain or a malformed network is refused beside the form, typed text kept.
    let taken = browser.post_form(
        &format!("/config/tenants/{}", id("tailspin")),
        &[("domains", "northwind.com"), ("networks", ""), ("csrf", &csrf)],
    );
    assert_eq!(taken.status, 400, "{}", taken.text());
    assert!(taken.text().contains("northwind.com belongs to another tenant"), "{}", taken.text());
    assert!(taken.text().contains("value=\"northwind.com\""), "{}", taken.text());
    let malformed =
        admin.send("PUT", &format!("/api/v1/tenants/{}", id("tailspin")), json!({"networks": ["10.0.0.0/40"]}));
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    assert_eq!(admin.send("PUT", "/api/v1/tenants/999", json!({})).status, 404);
    assert_eq!(site.api("auditor").send("PUT", &format!("/api/v1/tenants/{}", id("tailspin")), json!({})).status, 403);
}

#[test]
fn the_sign_on_page_shows_no_text_from_its_address_and_keeps_the_login_after_a_refusal() {
    let site = Site::start();
    let mut browser = common::Browser::new(&site.base);
    // A link someone sends: the page must not say what the link says.
    let page = browser.get("/signon?error=Your+account+is+suspended.+Call+%2B1-555-0100").text();
    assert!(!page.contains("suspended") && !page.contains("555-0100"), "{page}");
    let refused = browser.try_sign_in("bob", "wrong password");
    assert_eq!(refused.status, 401);
    let text = refused.text();
    assert!(text.contains("Wrong login or password"), "{text}");
    assert!(text.contains("name=\"login\" value=\"bob\""), "the login typed stays in the form: {text}");
    browser.sign_in("bob", PASSWORD);
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn message(n: u32, subject: &str) -> String {
    format!(
        "From: dora@contoso.com\r\nTo: erin@contoso.com\r\nSubject: {subject}\r\n\
Date: Tue, 0{n} Jan 2019 10:00:00 +0000\r\nMessage-ID: <upload-{subject}-{n}@contoso.com>\r\n\r\nBody {n}.\r\n"
    )
}

/// Polls an import until it has finished.
fn finished(site: &Site, id: u64) -> serde_json::Value {
    for _ in 0..600 {
        let job = site.api("administrator").get(&format!("/api/v1/imports/{id}")).json();
        if job["finished"].is_string() {
            return job;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("import {id} did not finish");
}

#[test]
fn an_uploaded_mbox_and_a_zipped_maildir_are_imported_with_their_folders_and_again_add_nothing() {
    let site = Site::start();
    let admin = site.api("administrator");
    let mbox: String = (1..=3)
        .map(|n| format!("From dora@contoso.com Tue Jan  1 10:00:00 2019\r\n{}", message(n, "walnut")))
        .collect();
    let started = admin.upload("/api/v1/imports?name=Projects.mbox&mailbox=erin@contoso.com", mbox.as_bytes());
    assert_eq!(started.status, 202, "{}", started.text());
    let job = finished(&site, started.json()["id"].as_u64().unwrap());
    assert_eq!(
        (job["state"].as_str(), job["imported"].as_u64(), job["failed"].as_u64()),
        (Some("done"), Some(3), Some(0)),
        "{job}"
    );
    // An mbox's postmark lines are not part of its messages: what was read is a little less.
    let (read, to_read) = (job["read"].as_u64().unwrap(), job["to_read"].as_u64().unwrap());
    assert!(read > 0 && read <= to_read && to_read == mbox.len() as u64, "{job}");

    let maildir = zip_of(&[
        ("Maildir/cur/1.host:2,S", message(4, "hazel").as_bytes()),
        ("Maildir/.Sent/cur/2.host:2,S", message(5, "hazel").as_bytes()),
    ]);
    let started = admin.upload("/api/v1/imports?name=erin.zip&mailbox=erin@contoso.com", &maildir);
    assert_eq!(started.status, 202, "{}", started.text());
    let job = finished(&site, started.json()["id"].as_u64().unwrap());
    assert_eq!(job["imported"].as_u64(), Some(2), "{job}");
    let unpacked = (message(4, "hazel").len() + message(5, "hazel").len()) as u64;
    assert_eq!(job["to_read"].as_u64(), Some(unpacked), "a zip reads what it unpacked to");

    site.runtime.block_on(site.archive.indexer().run_until_idle()).unwrap();
    let count =
        |q: &str| admin.get(&format!("/api/v1/search?q={}", q.replace(' ', "+"))).json()["total"].as_u64().unwrap();
    assert_eq!(count("subject:walnut folder:Projects mailbox:erin@contoso.com"), 3, "the mbox's name is its folder");
    assert_eq!(count("subject:hazel folder:Inbox"), 1);
    assert_eq!(count("subject:hazel folder:Sent"), 1, "Maildir++ subfolders are kept");

    // The same mbox again adds nothing.
    let again = admin.upload("/api/v1/imports?name=Projects.mbox&mailbox=erin@contoso.com", mbox.as_bytes());
    let job = finished(&site, again.json()["id"].as_u64().unwrap());
    assert_eq!((job["imported"].as_u64(), job["duplicates"].as_u64()), (Some(0), Some(3)), "{job}");

    let list = admin.get("/api/v1/imports").json();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[0]["file"], "Projects.mbox", "newest first");
    let audit = site.audit_text();
    assert!(audit.contains("import started | erin.zip"), "{audit}");
    assert!(audit.contains("import finished | erin.zip: done, imported 2"), "{audit}");
    let spool = site.archive.data_dir().join("spool/imports");
    assert_eq!(
        std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0),
        0,
        "finished uploads leave nothing in the spool"
    );
}

#[test]
fn an_upload_that_is_not_mail_or_does_not_unpack_safely_is_refused_before_anything_is_stored() {
    let site = Site::start_with(coffer_web::WebConfig { max_upload_bytes: 64 << 10, ..Default::default() });
    let admin = site.api("administrator");
    let before = admin.get("/api/v1/search?q=").json()["total"].as_u64().unwrap();

    let mut ost = b"!BDN\0\0\0\0SO\x17\0".to_vec();
    ost.resize(4096, 0);
    let refused = admin.upload("/api/v1/imports?name=archive.eml", &ost);
    assert_eq!(refused.status, 400, "{}", refused.text());
    let why = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(
        why.contains("archive.eml: an Outlook offline folder file (OST)") && why.contains("readpst"),
        "named by content, not name: {why}"
    );
    assert!(!why.contains("spool"), "the refusal names the upload, not the server's paths: {why}");

    let climbing = zip_of(&[("../../escaped.eml", message(1, "escaped").as_bytes())]);
    let refused = admin.upload("/api/v1/imports?name=evil.zip", &climbing);
    assert_eq!(refused.status, 400);
    assert!(refused.text().contains("outside the zip"), "{}", refused.text());
    assert!(
        !site.archive.data_dir().join("spool/escaped.eml").exists()
            && !site.archive.data_dir().join("escaped.eml").exists()
    );

    let too_large = admin.upload("/api/v1/imports?name=big.mbox", &vec![b'x'; 65 << 10]);
    assert_eq!(too_large.status, 413, "{}", too_large.text());
    let empty = admin.upload("/api/v1/imports?name=empty.mbox", b"");
    assert_eq!(empty.status, 400);

    let denied = site.api("auditor").upload("/api/v1/imports?name=a.eml", message(1, "auditor").as_bytes());
    assert_eq!(denied.status, 403);
    let unknown = admin.upload("/api/v1/imports?name=a.eml&tenant=nowhere", message(1, "nowhere").as_bytes());
    assert_eq!(unknown.status, 400, "{}", unknown.text());

    // The OST kept as it is, when asked.
    let kept = admin.upload("/api/v1/imports?name=archive.ost&as_eml=true", &ost);
    assert_eq!(kept.status, 202, "{}", kept.text());
    let job = finished(&site, kept.json()["id"].as_u64().unwrap());
    assert_eq!(job["imported"].as_u64(), Some(1), "{job}");

    site.runtime.block_on(site.archive.indexer().run_until_idle()).unwrap();
    assert_eq!(
        admin.get("/api/v1/search?q=").json()["total"].as_u64().unwrap(),
        before + 1,
        "only the kept OST was stored"
    );
    assert_eq!(std::fs::read_dir(site.archive.data_dir().join("spool/imports")).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn an_image_the_html_shows_by_cid_appears_in_place_and_is_not_an_attachment() {
    let site = Site::start();
    let raw = b"From: a@contoso.com\r\nTo: bob@contoso.com\r\nSubject: Newsletter with logo\r\nMessage-ID: <logo@contoso.com>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=r\r\n\r\n--r\r\nContent-Type: text/html\r\n\r\n\
<p>Hi</p><img src=\"cid:logo@contoso\"><a href=\"data:text/html,<b>x</b>\">link</a>\r\n--r\r\nContent-Type: image/png\r\n\
Content-ID: <logo@contoso>\r\nContent-Disposition: inline; filename=logo.png\r\nContent-Transfer-Encoding: base64\r\n\r\n\
iVBORw0KGgo=\r\n--r--\r\n";
    let id = site.add(raw, false, None);
    let mut browser = site.browser("admin", PASSWORD);
    let body = browser.get(&format!("/messages/{id}/body")).text();
    assert!(body.contains("<img src=\"data:image/png;base64,iVBORw0KGgo=\">"), "{body}");
    assert!(!body.contains("cid:") && !body.contains("text/html"), "{body}");
    let page = browser.get(&format!("/messages/{id}")).text();
    assert!(!page.contains("logo.png"), "the inline image is not listed as an attachment");
    let admin = site.api("administrator");
    let count = |q: &str| admin.get(&format!("/api/v1/search?q={q}")).json()["total"].as_u64().unwrap();
    assert_eq!(count("subject:newsletter+has:attachment"), 0);
    assert_eq!(count("subject:newsletter"), 1);
}

#[test]
fn a_refused_login_setting_keeps_what_was_typed_and_the_page_shows_the_issuer_it_checks() {
    let site = Site::start();
    let mut browser = site.browser("admin", PASSWORD);
    let csrf = browser.csrf();
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("enabled", "on"),
        ("provider", "entra"),
        ("entra_tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("login_host", ""),
        ("client_id", "typed-client-id"),
        ("client_auth", "secret"),
        ("client_secret", "a secret never sent back"),
        ("callback_path", "/authorize.do"),
        ("scopes", "openid profile email"),
        ("tenant", "default"),
        ("assignments", "groups archive-admins overlord"),
    ];
    let refused = browser.post_form("/config/login", &form);
    assert_eq!(refused.status, 400, "{}", refused.text());
    let text = refused.text();
    assert!(text.contains("overlord"), "the reason names the line: {text}");
    assert!(text.contains("value=\"typed-client-id\""), "the typed client id stays");
    assert!(text.contains("value=\"72f988bf-86f1-41af-91ab-2d7cd011db47\""), "the typed directory stays");
    assert!(!text.contains("a secret never sent back"), "the secret is never sent back");
    form.last_mut().unwrap().1 = "groups archive-admins administrator";
    assert_eq!(browser.post_form("/config/login", &form).status, 303);
    let saved = browser.get("/config/login").text();
    assert!(
        saved.contains(
            "<code id=\"issuer\">https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0</code>"
        ),
        "{saved}"
    );
}

#[test]
fn an_administrator_of_the_default_tenant_works_in_another_and_a_forged_tenant_cookie_changes_nothing() {
    let site = Site::start();
    let admin = site.api("administrator");
    assert_eq!(admin.send("POST", "/api/v1/tenants", json!({"name": "northwind"})).status, 201);
    let northwind = site.runtime.block_on(site.archive.tenant(Some("northwind"))).unwrap().id;
    site.add_to(northwind, b"From: nw@northwind.test\r\nTo: bob@contoso.com\r\nSubject: Northwind pallets\r\nMessage-ID: <nw@northwind.test>\r\n\r\nPallets.\r\n");
    let mut browser = site.browser("admin", PASSWORD);
    let csrf = browser.csrf();
    assert!(
        !browser.get("/search?q=pallets").text().contains("Northwind pallets"),
        "another tenant's mail stays apart"
    );

    let work = browser.post_form(&format!("/config/tenants/{northwind}/work"), &[("csrf", &csrf)]);
    assert_eq!(work.status, 303, "{}", work.text());
    let page = browser.get("/search?q=pallets").text();
    assert!(page.contains("Northwind pallets") && page.contains("id=\"working-tenant\">northwind<"), "{page}");
    assert!(
        !browser.get("/search?q=numbers").text().contains("Q3"),
        "the default tenant's mail is not shown meanwhile"
    );
    assert_eq!(browser.get("/config/tenants").status, 200, "what spans tenants stays the administrator's");
    assert_eq!(admin.get("/api/v1/search?q=pallets").json()["total"], 0, "an API key never follows the cookie");
    let audit = site.audit_text();
    assert!(audit.contains("admin | 127.0.0.1 | configuration | working in tenant northwind"), "{audit}");
    assert!(audit.contains("admin | 127.0.0.1 | configuration | administrator of default working here"), "{audit}");

    let leave = browser.post_form("/config/tenants/leave", &[("csrf", &csrf)]);
    assert_eq!(leave.status, 303);
    assert!(!browser.get("/search?q=pallets").text().contains("Northwind pallets"));

    // A user who sets the cookie by hand sees what they saw before.
    let mut bob = site.browser("bob", PASSWORD);
    bob.cookies.insert("coffer_tenant".into(), northwind.to_string());
    let page = bob.get("/search?q=pallets").text();
    assert!(!page.contains("Northwind pallets") && !page.contains("working-tenant"), "{page}");
    let bob_csrf = bob.csrf();
    let forged = bob.post_form(&format!("/config/tenants/{northwind}/work"), &[("csrf", &bob_csrf)]);
    assert_eq!(forged.status, 403);
}

#[test]
fn an_administrator_of_the_default_tenant_searches_all_tenants_with_each_result_tagged_and_nobody_else_can() {
    let site = Site::start();
    let fabrikam = site.runtime.block_on(site.archive.tenant(Some("fabrikam"))).unwrap().id;
    let mut browser = site.browser("admin", PASSWORD);
    let csrf = browser.csrf();
    assert!(!browser.get("/search?q=secret").text().contains("Fabrikam secret"), "one tenant at a time by default");
    assert!(browser.get("/config/tenants").text().contains("id=\"search-all-tenants\""));

    let all = browser.post_form("/config/tenants/all", &[("csrf", &csrf)]);
    assert_eq!(all.status, 303, "{}", all.text());
    let page = browser.get("/search?q=secret+OR+numbers").text();
    assert!(page.contains("id=\"working-tenant\">all tenants<"), "the header says so");
    assert!(page.contains("Fabrikam secret") && page.contains("Q3 numbers"), "both tenants' mail: {page}");
    assert!(
        page.contains("<td class=\"tenant\">fabrikam</td>") && page.contains("<td class=\"tenant\">default</td>"),
        "each result is tagged with its tenant"
    );
    // Reading another tenant's message is recorded in that tenant's audit log too.
    let id = site.id("fabrikam");
    assert_eq!(browser.get(&format!("/messages/{id}")).status, 200);
    let theirs = site.runtime.block_on(site.catalog.audit_entries(Some(fabrikam), 100)).unwrap();
    assert!(
        theirs.iter().any(|e| e.actor == "admin"
            && e.action == "view"
            && e.detail == format!("message {id} (by admin of tenant default, across tenants)")),
        "{theirs:?}"
    );
    let leave = browser.post_form("/config/tenants/leave", &[("csrf", &csrf)]);
    assert_eq!(leave.status, 303);
    assert!(!browser.get("/search?q=secret").text().contains("Fabrikam secret"));
    assert_eq!(browser.get(&format!("/messages/{id}")).status, 404, "back in one tenant, the other's mail is gone");

    // The API: asked for, by a system administrator's key only.
    let admin = site.api("administrator");
    let found = admin.get("/api/v1/search?q=secret&all_tenants=true").json();
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["messages"][0]["tenant"], "fabrikam", "{found}");
    assert!(admin.get("/api/v1/search?q=numbers").json()["messages"][0].get("tenant").is_none());
    assert_eq!(site.api("auditor").get("/api/v1/search?q=secret&all_tenants=true").status, 403);
    assert_eq!(site.api("user").get("/api/v1/search?q=secret&all_tenants=true").status, 403);

    // A user who sets the cookie by hand sees what they saw before; they cannot ask for it.
    let mut bob = site.browser("bob", PASSWORD);
    bob.cookies.insert("coffer_tenant".into(), "all".into());
    let page = bob.get("/search?q=secret+OR+numbers").text();
    assert!(!page.contains("Fabrikam secret") && !page.contains("working-tenant"), "{page}");
    let bob_csrf = bob.csrf();
    assert_eq!(bob.post_form("/config/tenants/all", &[("csrf", &bob_csrf)]).status, 403);
}

#[test]
fn an_uploaded_pst_is_imported_item_by_item_into_its_folders() {
    let Some(corpus) = coffer_testkit::corpus_dir() else { return };
    let site = Site::start();
    let admin = site.api("administrator");
    let pst = std::fs::read(corpus.join("pst/ruby-msg__attachAndInline.pst")).unwrap();
    let accepted = admin.upload("/api/v1/imports?name=mail.pst", &pst);
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let job = finished(&site, accepted.json()["id"].as_u64().unwrap());
    assert_eq!((job["imported"].as_u64(), job["failed"].as_u64()), (Some(1), Some(0)), "{job}");
    assert_eq!(job["read"].as_u64(), Some(pst.len() as u64), "progress goes by the file's bytes: {job}");
    site.runtime.block_on(site.archive.indexer().run_until_idle()).unwrap();
    let found = admin.get("/api/v1/search?q=tag:from-pst").json();
    assert_eq!(found["total"], 1, "{found}");
    let m = &found["messages"][0];
    assert_eq!(m["subject"], "Attach and inline");
    assert_eq!(m["placements"][0]["mailbox"], "attachandinline", "the store's name is the mailbox: {m}");
    assert_eq!(m["has_attachment"], true);
}

#[test]
fn a_snippet_marks_the_words_found_and_names_the_attachment_they_are_in_escaped() {
    let site = Site::start();
    let raw = b"From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: The contract\r\n\
Date: Fri, 05 Jul 2024 09:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSee the attached terms.\r\n--b\r\nContent-Type: text/plain; \
name=\"<img src=x onerror=alert(1)>.txt\"\r\nContent-Disposition: attachment; \
filename=\"<img src=x onerror=alert(1)>.txt\"\r\n\r\nThe quokkaclause binds <b>both</b> parties.\r\n--b--\r\n";
    site.add(raw, false, None);
    let found = site.api("user").get("/api/v1/search?q=quokkaclause").json();
    let m = &found["messages"][0];
    assert_eq!(m["snippet_attachment"], "<img src=x onerror=alert(1)>.txt", "{found}");
    let parts = m["snippet_parts"].as_array().unwrap();
    let marked: Vec<&str> =
        parts.iter().filter(|p| p["matched"] == true).map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(marked, ["quokkaclause"], "{found}");
    let whole: String = parts.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(whole, m["snippet"].as_str().unwrap(), "the parts make up the snippet");
    // A word of the body: the body's snippet, no attachment named.
    let body = site.api("user").get("/api/v1/search?q=terms").json();
    assert!(body["messages"][0].get("snippet_attachment").is_none(), "{body}");

    let page = site.browser("bob", PASSWORD).get("/search?q=quokkaclause").text();
    assert!(page.contains("<mark>quokkaclause</mark>"), "{page}");
    assert!(page.contains("in &lt;img src=x onerror=alert(1)&gt;.txt:"), "the name is escaped: {page}");
    assert!(page.contains("&lt;b&gt;both&lt;&#x2f;b&gt;") || page.contains("&lt;b&gt;both&lt;/b&gt;"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");
}
