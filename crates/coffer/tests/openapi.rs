//! The OpenAPI document against the running server, checked by schemathesis (PyPI): thousands of
//! generated requests, no 5xx answer, every answer's status, content type and body as documented.

mod common;

use common::{Coffer, Server};

fn schemathesis(dir: &std::path::Path, base: &str, key: &str, extra: &[&str]) {
    let out = coffer_testkit::peer("schemathesis")
        // It keeps a cache of what it found in the working folder: the test's, not the checkout.
        .current_dir(dir)
        .args(["run", &format!("{base}/api/v1/openapi.json"), "-H", &format!("Authorization: Bearer {key}")])
        // Revoking the key under test would only turn the rest of the run into 401s.
        .args(["--exclude-method", "DELETE", "--generation-deterministic", "--no-color"])
        .args(extra)
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("schemathesis runs (.ci/run installs it from PyPI)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found problems:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("generated") && text.contains("passed"), "{text}");
}

#[test]
fn the_openapi_document_holds_under_schemathesis_without_server_errors() {
    let c = Coffer::new();
    let mail = c.dir.path().join("mail.eml");
    std::fs::write(&mail, "From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: Q3\r\n\r\nNumbers.\r\n").unwrap();
    c.ok(&["import", "--mailbox", "bob@contoso.com", "--folder", "Inbox", mail.to_str().unwrap()]);
    let admin = c.user_with_key("admin", "administrator", &[]);
    let user = c.user_with_key("bob", "user", &["bob@contoso.com"]);
    let server = Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    let base = format!("http://{}", server.http);
    // Every documented check except "a schema-valid request is accepted": the API also validates
    // what a schema cannot say (a query's syntax, a unique login, a password's length).
    schemathesis(
        c.dir.path(),
        &base,
        &admin,
        &["--checks", "all", "--exclude-checks", "positive_data_acceptance", "-n", "25"],
    );
    schemathesis(c.dir.path(), &base, &user, &["--checks", "not_a_server_error", "-n", "10"]);
}
