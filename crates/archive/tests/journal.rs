//! Exchange journal reports through the real pipeline: every variant of ARCHITECTURE.md.

mod common;

use coffer_testkit::journal::{Envelope, Style, bounce, report};

const ORIGINAL: &[u8] = b"From: Alice <alice@contoso.com>\r\nTo: Bob <bob@contoso.com>\r\nCc: carol@contoso.com\r\n\
Subject: Q3 numbers\r\nMessage-ID: <q3-numbers@contoso.com>\r\nDate: Tue, 05 Mar 2024 09:59:00 +0000\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nThe quarterly numbers: \xc3\xbcber gut.\r\n";

fn full_envelope() -> Envelope {
    Envelope::new("alice@contoso.com", "Q3 numbers", "<q3-numbers@contoso.com>")
        .line("To", "bob@contoso.com")
        .line("Cc", "carol@contoso.com")
        .line("Bcc", "dave@contoso.com")
        .line("To", "member@contoso.com, Expanded: sales@contoso.com")
        .line("Cc", "fwd@contoso.com, Forwarded: erin@contoso.com")
        .line("Recipient", "someone@fabrikam.com")
        .line("On-Behalf-Of", "boss@contoso.com")
}

#[tokio::test]
async fn journal_report_archives_the_original_byte_exact_with_envelope_recipients() {
    for t in common::archives().await {
        let raw = report(ORIGINAL, &full_envelope(), Style::ExchangeOnline, "journal-x@archive.test");
        let receipt = t.submit(&raw, true, None).await;
        t.index().await;
        assert_eq!(t.archive.raw(&t.actor, receipt.id).await.unwrap(), ORIGINAL, "{}", t.label);
        let m = t.archive.message(&t.actor, receipt.id).await.unwrap();
        assert!(m.flags.contains(&"journaled"));
        assert_eq!(m.bcc, ["dave@contoso.com"]);
        for q in [
            "bcc:dave@contoso.com",
            "envelope:member@contoso.com",
            "envelope:sales@contoso.com",
            "envelope:erin@contoso.com",
            "recipient:someone@fabrikam.com",
            "participant:dave",
            "from:boss@contoso.com",
            "message-id:<q3-numbers@contoso.com>",
            "über",
        ] {
            assert_eq!(t.ids(q).await.into_iter().collect::<Vec<_>>(), [receipt.id], "{}: {q}", t.label);
        }
        assert!(t.ids("bcc:bob@contoso.com").await.is_empty(), "{}: bob was not a Bcc recipient", t.label);
    }
}

#[tokio::test]
async fn journal_report_with_bcc_is_visible_to_the_bcc_recipient_and_auditors_not_to_others() {
    for t in common::archives().await {
        let raw = report(ORIGINAL, &full_envelope(), Style::ExchangeOnline, "journal-x@archive.test");
        let id = t.submit(&raw, true, None).await.id;
        t.index().await;
        let user = |address: &str| coffer_archive::Actor {
            name: address.into(),
            ip: "127.0.0.1".into(),
            tenant: t.actor.tenant.clone(),
            role: coffer_archive::Role::User,
            user_id: None,
            local: false,
            system: false,
            visibility: Some(coffer_archive::Visibility { addresses: vec![address.into()], mailboxes: vec![] }),
            sees_bcc: false,
            all_tenants: false,
        };
        assert!(t.ids_as(&user("dave@contoso.com"), "numbers").await.contains(&id), "{}", t.label);
        assert!(t.ids_as(&user("nobody@contoso.com"), "numbers").await.is_empty(), "{}", t.label);
        let seen_by_bob = t.archive.message(&user("bob@contoso.com"), id).await.unwrap();
        assert!(seen_by_bob.bcc.is_empty(), "{}: the Bcc line is not shown to an ordinary user", t.label);
        assert!(t.archive.message(&user("nobody@contoso.com"), id).await.is_err());
    }
}

#[tokio::test]
async fn two_reports_of_one_message_are_stored_once_with_recipients_merged() {
    for t in common::archives().await {
        let first = Envelope::new("alice@contoso.com", "Q3", "<q3-numbers@contoso.com>").line("To", "bob@contoso.com");
        let second =
            Envelope::new("alice@contoso.com", "Q3", "<q3-numbers@contoso.com>").line("Bcc", "dave@contoso.com");
        let a = t.submit(&report(ORIGINAL, &first, Style::ExchangeOnline, "j@a"), true, None).await;
        let b = t.submit(&report(ORIGINAL, &second, Style::ExchangeOnline, "j@a"), true, None).await;
        t.index().await;
        assert_eq!(a.id, b.id, "{}", t.label);
        assert!(!a.duplicate && b.duplicate);
        assert_eq!(t.count("message-id:<q3-numbers@contoso.com>").await, 1);
        assert_eq!(t.ids("bcc:dave@contoso.com").await.into_iter().collect::<Vec<_>>(), [a.id], "{}", t.label);
        let volumes = t.archive.volumes().await.unwrap();
        assert_eq!(volumes.iter().map(|v| v.records).sum::<u64>(), 1, "{}: one stored copy", t.label);
    }
}

#[tokio::test]
async fn exchange_2003_report_and_a_report_inside_a_bounce_are_unwrapped() {
    for t in common::archives().await {
        let env = Envelope::new("alice@contoso.com", "Q3", "<q3-numbers@contoso.com>")
            .line("Recipients", "bob@contoso.com, BCC: hidden@contoso.com");
        let old = t.submit(&report(ORIGINAL, &env, Style::Exchange2003, "j@a"), true, None).await;
        assert_eq!(t.archive.raw(&t.actor, old.id).await.unwrap(), ORIGINAL);

        let other = b"From: x@fabrikam.com\r\nSubject: bounced\r\nMessage-ID: <bounced@fabrikam.com>\r\n\r\nbody\r\n";
        let env =
            Envelope::new("x@fabrikam.com", "bounced", "<bounced@fabrikam.com>").line("To", "ndr-rcpt@contoso.com");
        let ndr = bounce(&report(other, &env, Style::ExchangeOnline, "j@a"));
        let r = t.submit(&ndr, true, Some(("undeliverable@contoso.com", "Inbox"))).await;
        t.index().await;
        assert_eq!(t.archive.raw(&t.actor, r.id).await.unwrap(), other, "{}", t.label);
        assert_eq!(t.ids("bcc:hidden@contoso.com").await.into_iter().collect::<Vec<_>>(), [old.id]);
        assert_eq!(t.ids("envelope:ndr-rcpt@contoso.com").await.into_iter().collect::<Vec<_>>(), [r.id]);
    }
}

#[tokio::test]
async fn untrusted_or_broken_reports_are_kept_as_they_are() {
    for t in common::archives().await {
        let raw = report(ORIGINAL, &full_envelope(), Style::ExchangeOnline, "j@a");
        let kept = t.submit(&raw, false, None).await;
        assert_eq!(
            t.archive.raw(&t.actor, kept.id).await.unwrap(),
            raw,
            "{}: without trust the report itself is archived",
            t.label
        );

        let broken =
            b"X-MS-Journal-Report: \r\nSubject: no original\r\nContent-Type: text/plain\r\n\r\nSender: a@x.com\r\n";
        let r = t.submit(broken, true, None).await;
        t.index().await;
        assert_eq!(t.archive.raw(&t.actor, r.id).await.unwrap(), broken);
        assert!(t.ids("tag:journal-malformed").await.contains(&r.id), "{}", t.label);
    }
}
