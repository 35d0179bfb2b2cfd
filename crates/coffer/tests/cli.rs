//! The command-line contract other parts of the product and operators script against.

mod common;

use std::collections::BTreeSet;

use coffer_testkit::corpus::Generator;
use common::{Coffer, receipts, sha256, write_maildir, zip_entries};

fn generated(n: usize, seed: u64) -> Vec<coffer_testkit::corpus::Generated> {
    let mut g = Generator::new(seed);
    (0..n).map(|i| g.message(i)).collect()
}

#[test]
fn maildir_import_is_searchable_byte_exact_and_idempotent() {
    let c = Coffer::new();
    let corpus = generated(120, 1);
    let maildir = c.dir.path().join("Maildir");
    let folders = ["", "Sent", "Projects/Alpha"];
    write_maildir(
        &maildir,
        &corpus.iter().enumerate().map(|(i, g)| (g.raw.clone(), folders[i % 3].to_owned())).collect::<Vec<_>>(),
    );

    let out = c.run(&["import", "-v", "--mailbox", "alice.martin@contoso.com", maildir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("imported 120, duplicates 0, flagged 0, failed 0"), "{stderr}");
    let stored = receipts(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(stored.len(), 120);

    // Folders come from Maildir++ names; the inbox is Inbox.
    assert_eq!(c.count("folder:inbox"), 40);
    assert_eq!(c.count("folder:Projects/Alpha"), 40);
    assert_eq!(c.count("folder:projects"), 40);
    assert_eq!(c.count("mailbox:alice.martin@contoso.com"), 120);

    // --json carries the contract's fields.
    let hits = c.json("from:bob@contoso.com", 1000);
    let expected = corpus.iter().filter(|g| g.truth.from == "bob@contoso.com").count();
    assert_eq!(hits.len(), expected);
    for field in
        ["id", "message_id", "date", "from", "to", "cc", "bcc", "subject", "size", "sha256", "mailbox", "folder"]
    {
        assert!(hits[0].get(field).is_some(), "--json lacks {field}: {}", hits[0]);
    }
    assert!(hits.windows(2).all(|w| w[0]["date"].as_str() >= w[1]["date"].as_str()), "newest first");

    // show --raw gives back the original bytes.
    for (what, id, sha, origin) in stored.iter().take(10) {
        assert_eq!(what, "stored");
        let raw = c.command().args(["show", "--raw", &id.to_string()]).output().unwrap().stdout;
        assert_eq!(&sha256(&raw), sha);
        assert_eq!(raw, std::fs::read(origin).unwrap());
    }

    // Re-running adds nothing.
    let again = c.run(&["import", "--mailbox", "alice.martin@contoso.com", maildir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("imported 0, duplicates 120"));
    assert_eq!(c.count(""), 120);
    let verify = c.ok(&["verify"]);
    assert!(
        verify.contains("120 records, 241 evidence records, 120 catalog messages") && verify.contains("all intact"),
        "{verify}"
    );
}

#[test]
fn export_zip_has_every_message_and_a_manifest_of_their_hashes() {
    let c = Coffer::new();
    let corpus = generated(40, 2);
    let dir = c.dir.path().join("eml");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, g) in corpus.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.eml")), &g.raw).unwrap();
    }
    c.ok(&["import", dir.to_str().unwrap()]);
    let out = c.dir.path().join("export.zip");
    c.ok(&["export", "--format", "eml-zip", "--out", out.to_str().unwrap(), "has:attachment"]);
    let entries = zip_entries(&out);
    let expected: BTreeSet<String> =
        corpus.iter().filter(|g| !g.truth.attachment_names.is_empty()).map(|g| sha256(&g.raw)).collect();
    let sums = String::from_utf8(entries["SHA256SUMS"].clone()).unwrap();
    let listed: BTreeSet<String> = sums.lines().map(|l| l.split_whitespace().next().unwrap().to_owned()).collect();
    assert_eq!(listed, expected);
    for line in sums.lines() {
        let (sha, name) = line.split_once("  ").unwrap();
        assert_eq!(sha256(&entries[name]), sha, "{name} differs from its manifest hash");
    }
    assert!(entries["manifest.csv"].starts_with(b"id,sha256,size,date,message_id,subject\n"));

    // An mbox export imports into another archive as the same messages.
    let mbox = c.dir.path().join("export.mbox");
    c.ok(&["export", "--format", "mbox", "--out", mbox.to_str().unwrap(), "from:contoso.com"]);
    let other = Coffer::new();
    other.ok(&["import", mbox.to_str().unwrap()]);
    assert_eq!(other.count(""), c.count("from:contoso.com"));
    assert_eq!(other.count("from:contoso.com"), c.count("from:contoso.com"));
}

#[test]
fn mbox_import_counts_messages_and_names_the_folder_after_the_file() {
    let c = Coffer::new();
    let corpus = generated(30, 3);
    let mut mbox = Vec::new();
    for g in &corpus {
        coffer_archive::export::write_mbox_entry(&mut mbox, &g.truth.from, g.truth.date, &g.raw).unwrap();
    }
    let path = c.dir.path().join("Archive 2023.mbox");
    std::fs::write(&path, &mbox).unwrap();
    c.ok(&["import", "--folder", "Imported", path.to_str().unwrap()]);
    assert_eq!(c.count(""), 30);
    assert_eq!(c.count("folder:\"Imported/Archive 2023\""), 30);
    let hits = c.json("", 100);
    let hashes: BTreeSet<String> = hits.iter().map(|h| h["sha256"].as_str().unwrap().to_owned()).collect();
    let expected: BTreeSet<String> = corpus.iter().map(|g| sha256(&g.raw)).collect();
    assert_eq!(hashes, expected, "mbox round trip is byte-exact");
}

#[test]
fn a_google_takeout_mbox_keeps_its_labels_as_folders() {
    let c = Coffer::new();
    let labelled = "X-Gmail-Labels: Inbox,Opened,\"Clients, 2019\",Projects/Alpha\r\nFrom: ann@gmail.com\r\n\
To: bo@gmail.com\r\nSubject: labelled\r\nMessage-ID: <labelled@gmail.com>\r\n\r\nBody\r\n";
    let plain = "From: ann@gmail.com\r\nTo: bo@gmail.com\r\nSubject: unlabelled\r\nMessage-ID: <plain@gmail.com>\r\n\r\nBody\r\n";
    let mut mbox = Vec::new();
    for raw in [labelled, plain] {
        coffer_archive::export::write_mbox_entry(&mut mbox, "ann@gmail.com", 1_546_300_800, raw.as_bytes()).unwrap();
    }
    let path = c.dir.path().join("All mail Including Spam and Trash.mbox");
    std::fs::write(&path, &mbox).unwrap();
    let out = c.ok(&["import", "-v", "--mailbox", "ann@gmail.com", path.to_str().unwrap()]);
    assert_eq!(receipts(&out).len(), 2, "each message once: {out}");
    assert_eq!(c.count(""), 2);
    for folder in ["Inbox", "\"Clients, 2019\"", "Projects/Alpha"] {
        assert_eq!(c.count(&format!("subject:labelled folder:{folder} mailbox:ann@gmail.com")), 1, "{folder}");
    }
    assert_eq!(c.count("folder:Opened"), 0, "a state label is no folder");
    assert_eq!(c.count("subject:labelled folder:\"All mail Including Spam and Trash\""), 0);
    assert_eq!(
        c.count("subject:unlabelled folder:\"All mail Including Spam and Trash\""),
        1,
        "no labels: the file's name"
    );
}

#[test]
fn tenants_get_journal_addresses_and_their_own_mail() {
    let c = Coffer::new();
    let out = c.ok(&["tenant", "add", "contoso", "--domain", "contoso.com"]);
    assert!(out.contains("journal address: journal-") && out.contains("@archive.localhost"), "{out}");
    let list = c.ok(&["tenant", "list"]);
    assert!(list.contains("contoso") && list.contains("default"), "{list}");

    let eml = c.dir.path().join("one.eml");
    std::fs::write(&eml, &generated(1, 4)[0].raw).unwrap();
    c.ok(&["import", "--tenant", "contoso", eml.to_str().unwrap()]);
    assert_eq!(c.ok(&["search", "--tenant", "contoso", "--count", ""]).trim(), "1");
    assert_eq!(c.ok(&["search", "--count", ""]).trim(), "0", "the default tenant does not see contoso's mail");
    let id = c.json("", 1);
    assert!(id.is_empty());
    let contoso_id = c.ok(&["search", "--tenant", "contoso", "--json", ""]);
    let id: serde_json::Value = serde_json::from_str(contoso_id.lines().next().unwrap()).unwrap();
    let shown = c.run(&["show", &id["id"].to_string()]);
    assert!(!shown.status.success(), "another tenant's message id is not found");

    let unknown = c.run(&["search", "--tenant", "nope", "x"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("tenant list"));
}

#[test]
fn volumes_list_and_close_and_verify_names_a_flipped_byte() {
    let c = Coffer::new();
    let dir = c.dir.path().join("eml");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, g) in generated(10, 5).iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.eml")), &g.raw).unwrap();
    }
    c.ok(&["import", dir.to_str().unwrap()]);
    let list = c.ok(&["volume", "list"]);
    assert!(list.contains("t1-v000001") && list.contains("open"), "{list}");
    c.ok(&["volume", "close", "t1-v000001"]);
    std::fs::write(dir.join("late.eml"), &generated(11, 5)[10].raw).unwrap();
    c.ok(&["import", dir.to_str().unwrap()]);
    let list = c.ok(&["volume", "list"]);
    assert!(list.contains("t1-v000001       closed") && list.contains("t1-v000002       open"), "{list}");
    assert!(c.ok(&["verify"]).contains("all intact"));

    let segment = c.data().join("volumes/t1-v000001/000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    let out = c.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PROBLEM: volume t1-v000001 segment 1"), "{text}");
    assert!(text.contains("its record at t1-v000001"), "the damaged message is named: {text}");
}

#[test]
fn configuration_comes_from_the_file_and_the_environment() {
    let c = Coffer::new();
    std::fs::write(c.dir.path().join("coffer.toml"), "journal_domain = \"journal.contoso.test\"\n").unwrap();
    let out = c.ok(&["tenant", "add", "fabrikam"]);
    assert!(out.contains("@journal.contoso.test"), "{out}");
    let out = c.command().args(["tenant", "list"]).env("COFFER_JOURNAL_DOMAIN", "env.test").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("@env.test"));
    let bad = c.command().args(["tenant", "list"]).env("COFFER_MAX_MESSAGE_BYTES", "lots").output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("configuration is invalid"));
}

#[test]
fn certificates_are_generated_imported_from_pem_and_pkcs12_and_listed() {
    let c = Coffer::new();
    let out = c.ok(&[
        "cert",
        "generate",
        "--alias",
        "smtp",
        "--cn",
        "archive.contoso.com",
        "--org",
        "Contoso",
        "--country",
        "US",
    ]);
    assert!(out.contains("CN=archive.contoso.com"), "{out}");
    let dir = c.dir.path();
    let openssl = |args: &[&str]| {
        let st = coffer_testkit::peer("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(st.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&st.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "k.pem",
        "-out",
        "c.pem",
        "-days",
        "30",
        "-subj",
        "/CN=mx.fabrikam.test/O=Fabrikam",
    ]);
    openssl(&["pkcs12", "-export", "-inkey", "k.pem", "-in", "c.pem", "-out", "f.p12", "-passout", "pass:s3cret"]);
    let both = [std::fs::read(dir.join("c.pem")).unwrap(), std::fs::read(dir.join("k.pem")).unwrap()].concat();
    std::fs::write(dir.join("both.pem"), both).unwrap();
    c.ok(&["cert", "import", "--alias", "pem", dir.join("both.pem").to_str().unwrap()]);
    let wrong = c
        .command()
        .args(["cert", "import", "--alias", "p12", "f.p12"])
        .env("COFFER_CERT_PASSWORD", "nope")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong password"));
    let ok = c
        .command()
        .args(["cert", "import", "--alias", "p12", "f.p12"])
        .env("COFFER_CERT_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let list = c.ok(&["cert", "list"]);
    for want in ["smtp", "CN=archive.contoso.com", "pem", "p12", "CN=mx.fabrikam.test", "SHA-256"] {
        assert!(list.contains(want), "{want} missing from:\n{list}");
    }
    // The private key is never kept in the clear.
    let key = std::fs::read(c.data().join("certs/p12.key.sealed")).unwrap();
    assert!(!key.windows(11).any(|w| w == b"PRIVATE KEY"));
    assert!(c.ok(&["cert", "export", "--alias", "p12"]).starts_with("-----BEGIN CERTIFICATE-----"));
}

/// The operator at the command line goes through the same admin service as the console: every
/// change is audited, named `cli:<user>@<host>`, and no secret's value reaches the log.
#[test]
fn every_administrative_command_is_audited_as_the_local_operator() {
    let c = Coffer::new();
    let mail = c.dir.path().join("one.eml");
    std::fs::write(&mail, &generated(1, 7)[0].raw).unwrap();
    c.ok(&["import", mail.to_str().unwrap()]);
    c.ok(&["tenant", "add", "acme", "--domain", "Acme.com"]);
    let allowed = c.ok(&["tenant", "allow", "acme", "203.0.113.7/24", "2001:db8::1"]);
    assert!(allowed.contains("203.0.113.0/24, 2001:db8::1/128"), "networks in canonical form: {allowed}");
    let bad = c.run(&["tenant", "allow", "acme", "203.0.113.0/33"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not a network"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let mut secret = c
        .command()
        .args(["secret", "set", "imap.journal.password"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut secret.stdin.take().unwrap(), b"s3cret-value\n").unwrap();
    assert!(secret.wait().unwrap().success());
    c.user_with_key("erin", "auditor", &["erin@contoso.com"]);
    let volume = c.ok(&["volume", "list"]).lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    c.ok(&["volume", "close", &volume]);
    c.ok(&["cert", "generate", "--alias", "web", "--cn", "archive.test"]);
    let audit = c.ok(&["audit", "list", "--limit", "100"]);
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    let operator = format!("cli:{user}@{host}");
    for detail in [
        "tenant acme added (domains acme.com); journal address journal-",
        "tenant acme: journal reports accepted from 203.0.113.0/24",
        "tenant acme: journal reports accepted from 2001:db8::1/128",
        "secret imap.journal.password set",
        "user erin added to tenant default with role auditor, addresses erin@contoso.com",
        "for erin created with role auditor",
        &format!("volume {volume} closed"),
        "certificate web generated: CN=archive.test",
    ] {
        assert!(
            audit.lines().any(|l| l.contains(&operator) && l.contains("configuration") && l.contains(detail)),
            "no entry by {operator} with {detail:?}:\n{audit}"
        );
    }
    assert!(!audit.contains("s3cret-value"), "a secret's value is never audited:\n{audit}");
    assert!(c.ok(&["audit", "verify"]).contains("audit log intact"));
}
