//! Retention rules, legal holds and defensible deletion, on SQLite and PostgreSQL: a generated
//! corpus spanning ten years whose fate under three rules and two holds is known beforehand.

mod common;

use std::collections::BTreeSet;

use coffer_archive::retention::{HoldSpec, RuleSpec};
use coffer_archive::{Actor, ArchiveError};

const DAY: i64 = 86_400;
const MESSAGES: usize = 240;

/// One message every 15 days back from now, over ten years, each with its own token.
struct Sample {
    subject: String,
    from: &'static str,
    age_days: i64,
    token: String,
}

fn samples() -> Vec<Sample> {
    (0..MESSAGES)
        .map(|i| {
            let kind = match i % 4 {
                0 => "Newsletter",
                1 => "Invoice",
                2 => "Status",
                _ => "Newsletter with invoice",
            };
            let merger = if i % 7 == 0 { " merger" } else { "" };
            let from = match i % 5 {
                0 => "carol@fabrikam.com",
                1 | 3 => "alice@contoso.com",
                _ => "bob@contoso.com",
            };
            Sample {
                subject: format!("{kind}{merger} number {i}"),
                from,
                age_days: i as i64 * 15 + 1,
                token: format!("zqx{i:03}token"),
            }
        })
        .collect()
}

fn raw(s: &Sample, now: i64) -> Vec<u8> {
    // Half a day past the age: no message sits exactly on a period's boundary.
    let date = now - s.age_days * DAY - DAY / 2;
    format!(
        "From: {}\r\nTo: dave@contoso.com\r\nSubject: {} {}\r\nDate: {}\r\nMessage-ID: <{}@test>\r\n\r\nBody of {}.\r\n",
        s.from,
        s.subject,
        s.token,
        coffer_testkit::corpus::rfc2822(date),
        s.token,
        s.token
    )
    .into_bytes()
}

/// What the rules and holds below decide, worked out by hand.
fn expected_deleted(s: &Sample) -> bool {
    let lower = s.subject.to_lowercase();
    let held = lower.contains("merger") || s.from == "carol@fabrikam.com";
    // Rules by priority: newsletters 1y (365 days), finance 7y (2556), everything 3y (1095);
    // finance forbids deleting an invoice before 5y (1826), whichever rule decides.
    let keep = if lower.contains("newsletter") {
        365
    } else if lower.contains("invoice") {
        2556
    } else {
        1095
    };
    let minimum = if lower.contains("invoice") { 1826 } else { 0 };
    s.age_days > keep && s.age_days > minimum && !held
}

async fn set_up(t: &common::TestArchive) {
    let admin = t.archive.admin();
    let tenant = t.actor.tenant.id;
    for (name, query, keep, min, priority) in [
        ("newsletters", "subject:newsletter", "1y", None, 10),
        ("finance", "subject:invoice", "7y", Some("5y"), 20),
        ("everything", "*", "3y", None, 100),
    ] {
        let spec = RuleSpec {
            name: name.into(),
            query: query.into(),
            keep: keep.into(),
            min: min.map(Into::into),
            priority: Some(priority),
        };
        admin.add_rule(&t.actor, tenant, &spec).await.unwrap();
    }
    let by_query = HoldSpec {
        name: "Smith v. Contoso".into(),
        reason: "litigation".into(),
        query: Some("subject:merger".into()),
        ..Default::default()
    };
    admin.place_hold(&t.actor, tenant, &by_query).await.unwrap();
    let by_custodian = HoldSpec {
        name: "Fabrikam audit".into(),
        reason: "regulator".into(),
        custodians: vec!["Carol@Fabrikam.com".into()],
        ..Default::default()
    };
    admin.place_hold(&t.actor, tenant, &by_custodian).await.unwrap();
}

async fn ingest(t: &common::TestArchive, now: i64) -> Vec<(i64, Sample)> {
    let mut out = Vec::new();
    for s in samples() {
        let receipt = t.submit(&raw(&s, now), false, Some(("dave@contoso.com", "Inbox"))).await;
        out.push((receipt.id, s));
    }
    t.index().await;
    out
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_rules_and_two_holds_delete_exactly_the_expired_unheld_messages_of_ten_years() {
    for t in common::archives().await {
        let now = coffer_archive::service::now_secs();
        set_up(&t).await;
        // The test reads only by id before it scans the files for tokens.
        let messages = ingest(&t, now).await;
        let expected: BTreeSet<i64> = messages.iter().filter(|(_, s)| expected_deleted(s)).map(|(id, _)| *id).collect();
        let all: BTreeSet<i64> = messages.iter().map(|(id, _)| *id).collect();
        assert!(
            expected.len() > 40 && expected.len() < 200,
            "{}: the corpus tests little ({})",
            t.label,
            expected.len()
        );
        let admin = t.archive.admin();

        let dry = admin.run_retention(&t.actor, Some(t.actor.tenant.id), true).await.unwrap();
        assert_eq!(dry.deleted(), expected.len(), "{}: dry run counts {:?}", t.label, dry.tenants);
        assert!(dry.held() > 0, "{}: the holds protect something", t.label);
        assert_eq!(t.ids("").await, all, "{}: a dry run deletes nothing", t.label);

        // A deleted message's subject is plain text in the catalog until it is deleted.
        let sample_gone = messages.iter().find(|(id, _)| expected.contains(id)).unwrap();
        let data = t.config.data_dir.clone();
        if t.label == "sqlite" {
            assert!(!files_holding(&data, sample_gone.1.token.as_bytes()).is_empty(), "the token is findable before");
        }

        let report = admin.run_retention(&t.actor, Some(t.actor.tenant.id), false).await.unwrap();
        assert_eq!(report.deleted(), expected.len(), "{}: {:?}", t.label, report.tenants);
        let remaining: BTreeSet<i64> = all.difference(&expected).copied().collect();
        assert_eq!(t.ids("").await, remaining, "{}: exactly the held and young ones remain", t.label);
        let newsletters = report.tenants[0].rules.iter().find(|r| r.rule == "newsletters").unwrap();
        assert!(newsletters.minimum > 0, "{}: finance's minimum protects young newsletter invoices", t.label);

        let again = admin.run_retention(&t.actor, Some(t.actor.tenant.id), false).await.unwrap();
        assert_eq!(again.deleted(), 0, "{}: a second run deletes nothing more", t.label);

        // Gone everywhere: search, show, the original; the certificate stays.
        let (id, sample) = sample_gone;
        match t.archive.message(&t.actor, *id).await {
            Err(ArchiveError::Deleted(text)) => {
                assert!(text.contains("retention rule"), "{text}");
                assert!(text.contains(&format!("message {id}")), "{text}");
            }
            other => panic!("{}: show of a deleted message: {other:?}", t.label),
        }
        assert!(matches!(t.archive.raw(&t.actor, *id).await, Err(ArchiveError::Deleted(_))));
        let certificates = admin.deletions(&t.actor, t.actor.tenant.id, 1000).await.unwrap();
        assert_eq!(certificates.len(), expected.len());
        assert!(certificates.iter().all(|c| c.state == "shredded"), "{}: every key destroyed", t.label);
        let export = tempfile::tempdir().unwrap();
        let out = export.path().join("all.mbox");
        t.archive.export(&t.actor, "", coffer_archive::export::ExportFormat::Mbox, &out, false).await.unwrap();
        let mbox = std::fs::read(&out).unwrap();
        assert!(!mbox.windows(sample.token.len()).any(|w| w == sample.token.as_bytes()), "export has it");

        let verified = t.archive.verify().await.unwrap();
        assert!(verified.is_clean(), "{}: {:?}", t.label, verified.problems);
        if t.label == "sqlite" {
            for (id, s) in &messages {
                if expected.contains(id) {
                    assert_eq!(files_holding(&data, s.token.as_bytes()), Vec::<String>::new(), "message {id}");
                }
            }
        }
        // (After the scan: the audit log keeps every search, this one's words too.)
        assert_eq!(t.count(&sample.token).await, 0, "{}: search finds the token", t.label);
        let log = admin.audit_log(&t.actor, "retention run", 10).await.unwrap();
        assert!(log.iter().any(|e| e.detail.contains(&format!("{} deleted", expected.len()))), "{log:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_placed_after_the_holds_were_read_stops_the_deletion_being_decided() {
    for t in common::archives().await {
        let now = coffer_archive::service::now_secs();
        let admin = t.archive.admin();
        let spec = RuleSpec { name: "short".into(), query: "*".into(), keep: "30d".into(), ..Default::default() };
        admin.add_rule(&t.actor, t.actor.tenant.id, &spec).await.unwrap();
        let messages = ingest(&t, now).await;
        // A hold that covers everything arrives between the evaluation and the decision: the
        // decision sees another version and the run evaluates the holds again.
        let hold = HoldSpec { name: "everything".into(), query: Some("*".into()), ..Default::default() };
        let run = {
            let archive = &t.archive;
            let actor = t.actor.clone();
            async move { archive.admin().run_retention(&actor, None, false).await }
        };
        let place = async {
            tokio::task::yield_now().await;
            admin.place_hold(&t.actor, t.actor.tenant.id, &hold).await.unwrap();
            coffer_archive::service::now_secs()
        };
        let (report, placed) = tokio::join!(run, place);
        let report = report.unwrap();
        let remaining = t.ids("").await.len();
        assert_eq!(report.deleted() + remaining, messages.len(), "{}", t.label);
        // Whatever was decided before the hold existed went; nothing after it.
        for c in admin.deletions(&t.actor, t.actor.tenant.id, 1000).await.unwrap() {
            assert!(c.decided_at <= placed, "{}: message {} decided after the hold", t.label, c.message);
        }
        let again = admin.run_retention(&t.actor, None, false).await.unwrap();
        assert_eq!(again.deleted(), 0, "{}: the hold protects the rest", t.label);
        assert_eq!(again.held(), remaining - messages.iter().filter(|(_, s)| s.age_days <= 30).count());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_deletion_needs_a_second_administrator_and_spares_held_mail() {
    for t in common::archives().await {
        let now = coffer_archive::service::now_secs();
        let admin = t.archive.admin();
        let tenant = t.actor.tenant.id;
        let messages = ingest(&t, now).await;
        admin
            .place_hold(
                &t.actor,
                tenant,
                &HoldSpec { name: "keep merger".into(), query: Some("subject:merger".into()), ..Default::default() },
            )
            .await
            .unwrap();
        let first = Actor { name: "alice-admin".into(), ..t.actor.clone() };
        let second = Actor { name: "bob-admin".into(), ..t.actor.clone() };
        let request =
            admin.request_deletion(&first, tenant, &[], Some("subject:status"), "GDPR erasure").await.unwrap();
        let status: Vec<&(i64, Sample)> = messages.iter().filter(|(_, s)| s.subject.starts_with("Status")).collect();
        assert_eq!(request.ids.len(), status.len());

        let alone = admin.decide_deletion(&first, tenant, request.id, true).await;
        assert!(matches!(alone, Err(ArchiveError::Forbidden(_))), "{}: {alone:?}", t.label);
        assert_eq!(t.ids("subject:status").await.len(), status.len(), "{}: nothing went", t.label);

        let outcome = admin.decide_deletion(&second, tenant, request.id, true).await.unwrap();
        let held: BTreeSet<i64> =
            status.iter().filter(|(_, s)| s.subject.contains("merger")).map(|(id, _)| *id).collect();
        assert!(!held.is_empty());
        assert_eq!(outcome.deleted.len(), status.len() - held.len(), "{}", t.label);
        assert_eq!(outcome.kept.iter().map(|k| k.message).collect::<BTreeSet<_>>(), held);
        assert!(outcome.kept.iter().all(|k| k.why.contains("keep merger")), "{:?}", outcome.kept);
        assert_eq!(t.ids("subject:status").await, held, "{}", t.label);

        let again = admin.decide_deletion(&second, tenant, request.id, true).await;
        assert!(matches!(again, Err(ArchiveError::Invalid(_))), "decided once");
        let log = admin.audit_log(&t.actor, "deletion request", 10).await.unwrap();
        assert!(log.iter().any(|e| e.actor == "alice-admin" && e.detail.contains("GDPR erasure")), "{log:?}");
        assert!(log.iter().any(|e| e.actor == "bob-admin" && e.detail.contains("approved")), "{log:?}");
        let shown = t.archive.message(&t.actor, outcome.deleted[0]).await;
        assert!(
            matches!(&shown, Err(ArchiveError::Deleted(text)) if text.contains("approved deletion request")),
            "{shown:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_holds_are_checked_before_they_are_kept() {
    let t = common::archives().await.remove(0);
    let admin = t.archive.admin();
    let tenant = t.actor.tenant.id;
    let bad = |keep: &str, min: Option<&str>| RuleSpec {
        name: "r".into(),
        query: "*".into(),
        keep: keep.into(),
        min: min.map(Into::into),
        priority: None,
    };
    for (spec, says) in [
        (bad("7 years", None), "write it as"),
        (bad("1y", Some("2y")), "at least the minimum"),
        (bad("900y", None), "forever"),
        (RuleSpec { query: "subject:(".into(), ..bad("1y", None) }, "query"),
    ] {
        let e = admin.add_rule(&t.actor, tenant, &spec).await.unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
    let e = admin.place_hold(&t.actor, tenant, &HoldSpec { name: "h".into(), ..Default::default() }).await;
    assert!(e.unwrap_err().to_string().contains("needs a query, custodians"));
    let hold = HoldSpec { name: "h".into(), query: Some("*".into()), ..Default::default() };
    admin.place_hold(&t.actor, tenant, &hold).await.unwrap();
    assert!(admin.place_hold(&t.actor, tenant, &hold).await.is_err(), "a matter's name is taken");
    let e = admin.release_hold(&t.actor, tenant, "h", " ").await.unwrap_err().to_string();
    assert!(e.contains("reason"), "{e}");
    admin.release_hold(&t.actor, tenant, "h", "settled").await.unwrap();
    let holds = admin.holds(&t.actor, Some(tenant)).await.unwrap();
    assert_eq!(holds[0].release_reason.as_deref(), Some("settled"));
    let user = Actor { role: coffer_archive::Role::Auditor, ..t.actor.clone() };
    assert!(matches!(admin.add_rule(&user, tenant, &bad("1y", None)).await, Err(ArchiveError::Forbidden(_))));
}
