//! Retention through the command line as scripts use it: rules and holds, dry run and run,
//! kill -9 in the middle of a run (each message whole or gone, `verify` clean), and a catalog
//! rebuilt from the volumes that brings back the rules and holds and none of the deleted mail.

mod common;

use std::collections::BTreeSet;

use common::{Coffer, receipts, write_maildir};

const DAY: i64 = 86_400;
const MESSAGES: usize = 500;

struct Sample {
    age_days: i64,
    subject: String,
    from: &'static str,
}

fn samples() -> Vec<Sample> {
    (0..MESSAGES)
        .map(|i| Sample {
            // Ten years back, half a day off any period's boundary.
            age_days: i as i64 * 7 + 1,
            subject: if i % 6 == 0 { format!("keepme project {i}") } else { format!("weekly report {i}") },
            from: if i % 10 == 3 { "carol@fabrikam.com" } else { "alice@contoso.com" },
        })
        .collect()
}

fn raw(s: &Sample, i: usize, now: i64) -> Vec<u8> {
    format!(
        "From: {}\r\nTo: dave@contoso.com\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <r{i}@test>\r\n\r\nText {i}.\r\n",
        s.from,
        s.subject,
        coffer_testkit::corpus::rfc2822(now - s.age_days * DAY - DAY / 2)
    )
    .into_bytes()
}

/// Kept a year, unless held by query (keepme) or by custodian (carol).
fn goes(s: &Sample) -> bool {
    s.age_days > 365 && !s.subject.starts_with("keepme") && s.from != "carol@fabrikam.com"
}

fn fails_with(c: &Coffer, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = c.command().args(args).envs(env.iter().copied()).output().unwrap();
    assert!(!out.status.success(), "coffer {args:?} was to fail:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_run_killed_twice_finishes_each_deletion_and_a_rebuilt_catalog_keeps_rules_holds_and_deletions() {
    let c = Coffer::new();
    let now = coffer_archive::service::now_secs();
    let samples = samples();
    let maildir = c.dir.path().join("Maildir");
    let messages: Vec<(Vec<u8>, String)> =
        samples.iter().enumerate().map(|(i, s)| (raw(s, i, now), String::new())).collect();
    write_maildir(&maildir, &messages);
    let imported = receipts(&c.ok(&["import", "-v", maildir.to_str().unwrap()]));
    assert_eq!(imported.len(), MESSAGES);
    // Maildir file names are the sample's index.
    let index_of =
        |origin: &str| -> usize { origin.rsplit('/').next().unwrap().split('.').next().unwrap().parse().unwrap() };
    let expected: BTreeSet<i64> =
        imported.iter().filter(|(_, _, _, o)| goes(&samples[index_of(o)])).map(|(_, id, _, _)| *id).collect();
    let all: BTreeSet<i64> = imported.iter().map(|(_, id, _, _)| *id).collect();

    c.ok(&["retention", "add", "year", "--query", "*", "--keep", "1y", "--priority", "5"]);
    c.ok(&["hold", "add", "Matter 7", "--query", "subject:keepme", "--reason", "litigation"]);
    c.ok(&["hold", "add", "Fabrikam", "--custodian", "carol@fabrikam.com"]);
    let rules = c.ok(&["retention", "list"]);
    assert!(rules.contains("year") && rules.contains("1y"), "{rules}");
    let holds = c.ok(&["hold", "list"]);
    assert!(holds.contains("Matter 7") && holds.contains("Fabrikam") && holds.contains("active"), "{holds}");

    let dry = c.ok(&["retention", "run", "--dry-run"]);
    assert!(dry.contains(&format!("total: would delete {}", expected.len())), "{dry}");
    assert_eq!(c.count(""), MESSAGES, "a dry run deletes nothing");

    // Killed after the first batch is decided, then after the next one's tombstones are durable.
    for point in ["retention-after-decide", "retention-after-tombstones"] {
        let e = fails_with(&c, &["retention", "run"], &[("COFFER_CRASH_AT", point)]);
        assert!(e.contains("crash injected"), "{e}");
        let verify = c.ok(&["verify"]);
        assert!(verify.contains("all intact"), "after a crash at {point}: {verify}");
    }
    // The next writing open shreds what has its tombstone; the next run carries out the rest.
    c.ok(&["retention", "run"]);
    let verify = c.ok(&["verify"]);
    assert!(verify.contains("all intact") && verify.contains("shredded"), "{verify}");

    // Each message is whole (shown, its original readable) or gone (deleted, nothing readable).
    c.ok(&["reindex"]);
    let remaining: BTreeSet<i64> = c.json("", 1000).iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(remaining, all.difference(&expected).copied().collect(), "exactly the held and young remain");
    for id in expected.iter().take(20) {
        let e = fails_with(&c, &["show", &id.to_string()], &[]);
        assert!(e.contains("was deleted") && e.contains("retention rule year"), "{e}");
        let e = fails_with(&c, &["show", "--raw", &id.to_string()], &[]);
        assert!(e.contains("was deleted"), "{e}");
    }
    for id in remaining.iter().take(20) {
        c.ok(&["show", "--raw", &id.to_string()]);
    }
    let again = c.ok(&["retention", "run"]);
    assert!(again.contains("total: deleted 0"), "{again}");
    let certificates = c.ok(&["retention", "deleted", "--limit", "10000"]);
    assert_eq!(certificates.lines().count() - 1, expected.len(), "one certificate per deletion");
    let zip = c.dir.path().join("all.zip");
    c.ok(&["export", "--format", "eml-zip", "--out", zip.to_str().unwrap(), ""]);
    let entries = common::zip_entries(&zip);
    assert_eq!(entries.keys().filter(|n| n.starts_with("messages/")).count(), remaining.len());
    let deleted_csv = String::from_utf8(entries["DELETED.csv"].clone()).unwrap();
    assert_eq!(deleted_csv.lines().count() - 1, expected.len(), "the export lists every deletion");
    let audit = c.ok(&["audit", "list", "--limit", "1000"]);
    let audited: usize = audit
        .lines()
        .filter_map(|l| l.split("messages deleted (rule:year): ").nth(1))
        .map(|ids| ids.split(", ").count())
        .sum();
    assert!(audited >= expected.len(), "the audit log names every deleted message ({audited})");

    // The catalog is lost: a rebuild from the volumes brings back rules, holds and certificates,
    // and none of the deleted messages.
    for f in ["catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"] {
        let _ = std::fs::remove_file(c.data().join(f));
    }
    c.ok(&["catalog", "rebuild"]);
    assert_eq!(c.count(""), remaining.len(), "a rebuild brings no deleted message back");
    let holds = c.ok(&["hold", "list"]);
    assert!(holds.contains("Matter 7") && holds.contains("Fabrikam"), "{holds}");
    assert!(c.ok(&["retention", "list"]).contains("year"));
    let e = fails_with(&c, &["show", &expected.first().unwrap().to_string()], &[]);
    assert!(e.contains("was deleted"), "{e}");
    let after = c.ok(&["retention", "run"]);
    assert!(after.contains("total: deleted 0"), "the holds came back with the catalog: {after}");
    assert!(c.ok(&["verify"]).contains("all intact"));

    // Releasing a hold needs a reason; afterwards its mail goes at the next run.
    let e = fails_with(&c, &["hold", "release", "Fabrikam"], &[]);
    assert!(e.contains("--reason"), "{e}");
    c.ok(&["hold", "release", "Fabrikam", "--reason", "audit closed"]);
    let released = c.ok(&["retention", "run"]);
    let carol_old = samples
        .iter()
        .filter(|s| s.from == "carol@fabrikam.com" && s.age_days > 365 && !s.subject.starts_with("keepme"))
        .count();
    assert!(released.contains(&format!("total: deleted {carol_old}")), "{released}");
}

#[test]
fn two_administrators_set_retention_and_delete_with_four_eyes_in_headless_chromium() {
    let c = Coffer::new();
    let now = coffer_archive::service::now_secs();
    let mail = c.dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    for (i, subject) in ["merger talks", "lunch on friday", "merger numbers", "quarterly figures"].iter().enumerate() {
        let file = mail.join(format!("{i}.eml"));
        let raw = format!(
            "From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <b{i}@test>\r\n\r\nText.\r\n",
            coffer_testkit::corpus::rfc2822(now - (i as i64 + 1) * 400 * DAY)
        );
        std::fs::write(&file, raw).unwrap();
    }
    let imported = receipts(&c.ok(&["import", "-v", mail.to_str().unwrap()]));
    assert_eq!(imported.len(), 4);
    let held = imported.iter().find(|(_, _, _, o)| o.ends_with("0.eml")).unwrap().1;
    let lunch = imported.iter().find(|(_, _, _, o)| o.ends_with("1.eml")).unwrap().1;
    c.user_with_key("admin1", "administrator", &[]);
    c.user_with_key("admin2", "administrator", &[]);
    let server = common::Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../e2e-screenshots");
    let status = coffer_testkit::peer("node")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/retention.mjs"))
        .env("BASE", format!("http://{}", server.http))
        .env("PASSWORD", common::PASSWORD)
        .env("HELD_ID", held.to_string())
        .env("ARTIFACTS", &artifacts)
        .status()
        .unwrap();
    assert!(status.success(), "the browser test failed (its output above says where)");
    for shot in ["holds", "retention", "message-governed", "retention-approved"] {
        assert!(artifacts.join(format!("{shot}-phone.png")).is_file(), "screenshot {shot}");
    }
    drop(server);
    // The approval deleted lunch (unheld) and kept both merger messages (held).
    let e = fails_with(&c, &["show", &lunch.to_string()], &[]);
    assert!(e.contains("approved deletion request"), "{e}");
    c.ok(&["show", &held.to_string()]);
    let audit = c.ok(&["audit", "list", "--limit", "50"]);
    assert!(audit.contains("admin1") && audit.contains("deletion request"), "{audit}");
    assert!(audit.contains("admin2") && audit.contains("approved"), "{audit}");
}

#[test]
fn a_run_asked_for_beside_serve_is_carried_out_by_the_serving_process() {
    let c = Coffer::new();
    let now = coffer_archive::service::now_secs();
    let mail = c.dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    for i in 0..6 {
        let raw = format!(
            "From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: note {i}\r\nDate: {}\r\n\r\nText {i}.\r\n",
            coffer_testkit::corpus::rfc2822(now - (i * 100 + 50) * DAY)
        );
        std::fs::write(mail.join(format!("{i}.eml")), raw).unwrap();
    }
    c.ok(&["import", mail.to_str().unwrap()]);
    let server = common::Server::start(&c, &[("COFFER_SMTP__TLS", "off")]);
    // Beside serve: the catalog takes the rule at once; the serving process records it as evidence.
    c.ok(&["retention", "add", "quarter", "--query", "*", "--keep", "90d"]);
    let out = c.command().args(["retention", "run"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("handed to it"), "{stderr}");
    // Ages 50, 150, … 550 days: five are older than 90 days.
    assert!(stdout.contains("total: deleted 5"), "{stdout}");
    drop(server);
    assert!(c.ok(&["verify"]).contains("all intact"));
    let log = c.ok(&["audit", "list", "--limit", "20"]);
    // (Between 02:00 and 05:00 UTC the server's daily run may have come first: any run number.)
    assert!(
        log.lines().any(|l| l.contains("retention run ") && l.contains(": 5 deleted, 0 protected by holds")),
        "{log}"
    );
}
