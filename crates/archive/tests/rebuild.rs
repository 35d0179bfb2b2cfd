//! The volumes are the system of record: a lost catalog is rebuilt from their evidence records
//! exactly — every message, recipient, placement, source item, tenant and journal address — on
//! SQLite and PostgreSQL alike; volumes from before evidence records still rebuild.

mod common;

use coffer_archive::rebuild::rebuild_catalog;
use coffer_archive::{Archive, ArchiveError, Origin, Source, Submission};
use coffer_testkit::journal::{Envelope, Style, report};

fn original(i: usize) -> Vec<u8> {
    format!(
        "From: Alice <alice@contoso.com>\r\nTo: bob@contoso.com\r\nSubject: quarterly figures {i}\r\n\
         Message-ID: <q{i}@contoso.com>\r\nDate: Tue, 5 Mar 2024 10:00:00 +0000\r\n\r\nthe numbers, part {i}\r\n"
    )
    .into_bytes()
}

fn submission(tenant: i64, source: Source, raw: Vec<u8>, journal: bool, placement: Option<(&str, &str)>) -> Submission {
    Submission {
        tenant,
        source,
        raw,
        envelope: Vec::new(),
        envelope_from: None,
        placement: placement.map(|(m, f)| (m.to_owned(), f.to_owned())),
        journal,
        origin: Origin::default(),
    }
}

#[tokio::test]
async fn a_lost_catalog_is_rebuilt_from_the_volumes_exactly_and_the_journal_address_still_works() {
    for t in common::archives().await {
        let label = t.label.clone();
        let admin = t.archive.admin();
        let contoso = admin.add_tenant(&t.actor, "contoso", &["contoso.com".into()]).await.unwrap().tenant;
        admin.allow_network(&t.actor, contoso.id, "192.0.2.0/24").await.unwrap();
        // An edit of the tenant's domains and networks is evidence too.
        let domains = ["contoso.com".to_owned(), "contoso.ch".to_owned()];
        let networks = ["192.0.2.0/24".to_owned(), "198.51.100.7".to_owned()];
        let edited = admin.update_tenant(&t.actor, contoso.id, &domains, &networks).await.unwrap();
        assert_eq!(edited.tenant.domains, ["contoso.ch", "contoso.com"], "{label}");
        assert_eq!(edited.networks, ["192.0.2.0/24", "198.51.100.7/32"], "{label}");
        assert_eq!(edited.tenant.journal_token, contoso.journal_token, "{label}: the journal address never changes");
        let journal_address = contoso.journal_address("archive.localhost");
        let p = &t.pipeline;

        // Journal reports over SMTP, with Bcc and a list expansion; a second report of the
        // same message merges another Bcc.
        for i in 0..20 {
            let env =
                Envelope::new("alice@contoso.com", &format!("quarterly figures {i}"), &format!("<q{i}@contoso.com>"))
                    .line("To", "bob@contoso.com")
                    .line("Bcc", "carol@contoso.com")
                    .line("To", "dave@contoso.com, Expanded: sales@contoso.com");
            let mut sub = submission(
                contoso.id,
                Source::Smtp,
                report(&original(i), &env, Style::ExchangeOnline, &journal_address),
                true,
                None,
            );
            sub.envelope_from = Some("journal@contoso.com".into());
            sub.origin = Origin {
                peer: Some("192.0.2.25".into()),
                helo: Some("mail.contoso.com".into()),
                tls: Some("TLSv1_3".into()),
                rcpt_to: vec![journal_address.clone()],
                item: None,
            };
            p.submit(sub).await.unwrap();
        }
        let env = Envelope::new("alice@contoso.com", "quarterly figures 3", "<q3@contoso.com>")
            .line("Bcc", "erin@contoso.com");
        let merged = p
            .submit(submission(
                contoso.id,
                Source::Smtp,
                report(&original(3), &env, Style::ExchangeOnline, &journal_address),
                true,
                None,
            ))
            .await
            .unwrap();
        assert!(merged.duplicate, "{label}");

        // IMAP and Microsoft 365 placements with their source items; a folder move.
        for i in 20..30 {
            let mut sub =
                submission(contoso.id, Source::Imap, original(i), false, Some(("bob@contoso.com", "INBOX/Projects")));
            sub.origin.item = Some(("imap-bob".into(), format!("1712:{i}/INBOX/Projects")));
            p.submit(sub).await.unwrap();
        }
        let mut moved = None;
        for i in 30..40 {
            let mut sub =
                submission(contoso.id, Source::Graph, original(i), false, Some(("alice@contoso.com", "Inbox")));
            sub.origin.item = Some(("m365-contoso".into(), format!("AAMk{i}")));
            let r = p.submit(sub).await.unwrap();
            moved.get_or_insert(r.id);
        }
        let moved = moved.unwrap();
        let mut again =
            submission(contoso.id, Source::Graph, original(30), false, Some(("alice@contoso.com", "Archive/2024")));
        again.origin.item = Some(("m365-contoso".into(), "AAMk30-moved".into()));
        p.submit(again).await.unwrap();
        assert!(p.remove_placement(contoso.id, moved, "alice@contoso.com", "Inbox").await.unwrap(), "{label}");
        assert!(!p.remove_placement(contoso.id, moved, "alice@contoso.com", "Inbox").await.unwrap(), "{label}: once");

        // An import into the default tenant.
        for i in 40..50 {
            t.submit(&original(i), false, Some(("archive@contoso.com", "Old/2019"))).await;
        }
        t.index().await;
        let before = t.archive.catalog_dump(&t.actor).await.unwrap();
        assert_eq!(before.messages.len(), 50, "{label}");
        assert!(
            before
                .messages
                .iter()
                .any(|m| m.recipients.iter().any(|r| r.kind == "bcc" && r.address == "erin@contoso.com"))
        );
        assert!(before.messages.iter().any(|m| m.recipients.iter().any(|r| r.via == "expanded:sales@contoso.com")));
        let config = t.config.clone();
        t.archive.close().await.unwrap();
        drop(t.pipeline);
        drop(t.archive);

        // The catalog is lost.
        let mut lost = config.clone();
        match label.as_str() {
            "sqlite" => {
                for f in ["catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"] {
                    let _ = std::fs::remove_file(config.data_dir.join(f));
                }
            }
            _ => lost.database_url = coffer_testkit::fresh_postgres().await,
        }
        let refused = Archive::open(lost.clone(), true).await.err().unwrap_or_else(|| panic!("{label}: opened"));
        assert!(matches!(refused, ArchiveError::CatalogMismatch(_)), "{label}: {refused}");
        assert!(refused.to_string().contains("coffer catalog rebuild"), "{label}: {refused}");

        let rebuilt = rebuild_catalog(&lost).await.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert!(rebuilt.problems.is_empty(), "{label}: {:?}", rebuilt.problems);
        assert_eq!((rebuilt.messages, rebuilt.without_evidence, rebuilt.tenants), (50, 0, 2), "{label}");
        assert_eq!(rebuilt.cursors, 1, "{label}: the IMAP folder's cursor is derived");
        assert!(rebuild_catalog(&lost).await.is_err(), "{label}: never on top of a catalog that holds data");

        // `reindex` ends the writing session, as the command does.
        Archive::open(lost.clone(), true).await.unwrap().reindex().await.unwrap();
        let archive = Archive::open(lost.clone(), true).await.unwrap_or_else(|e| panic!("{label}: {e}"));
        let actor = coffer_archive::Actor::operator(archive.tenant(None).await.unwrap());
        let after = archive.catalog_dump(&actor).await.unwrap();
        assert_eq!(after.tenants, before.tenants, "{label}: tenants, journal tokens, domains, networks");
        for (a, b) in after.messages.iter().zip(&before.messages) {
            assert_eq!(a, b, "{label}: message {}", b.row.id);
        }
        assert_eq!(after, before, "{label}: the whole derived catalog");

        // The old journal address still finds its tenant, and a report to it is archived.
        let cursor = archive.source_state().cursor("imap-bob", "INBOX/Projects").await.unwrap();
        assert_eq!(cursor.as_deref(), Some("1712:29"), "{label}: polling goes on after the last archived UID");
        let tenants = archive.source_state().journal_tenants().await.unwrap();
        let (found, networks) =
            tenants.iter().find(|(t, _)| t.journal_address("archive.localhost") == journal_address).unwrap();
        assert_eq!(
            (found.id, networks.as_slice()),
            (contoso.id, ["192.0.2.0/24", "198.51.100.7/32"].map(String::from).as_slice()),
            "{label}: the edit survives"
        );
        let env = Envelope::new("alice@contoso.com", "after the rebuild", "<after@contoso.com>")
            .line("Bcc", "carol@contoso.com");
        let fresh = archive
            .pipeline()
            .submit(submission(
                contoso.id,
                Source::Smtp,
                report(&original(99), &env, Style::ExchangeOnline, &journal_address),
                true,
                None,
            ))
            .await
            .unwrap();
        assert!(!fresh.duplicate && fresh.id > 50, "{label}: {fresh:?}");
        let contoso_actor = coffer_archive::Actor::operator(archive.tenant(Some("contoso")).await.unwrap());
        archive.indexer().run_until_idle().await.unwrap();
        assert_eq!(
            archive.count(&contoso_actor, "bcc:carol@contoso.com").await.unwrap(),
            21,
            "{label}: searchable again"
        );
        let verify = archive.verify().await.unwrap();
        assert!(verify.is_clean(), "{label}: {:?}", verify.problems);
    }
}

#[tokio::test]
async fn volumes_from_before_evidence_records_still_read_verify_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    // The previous format: message records only, no evidence.
    {
        let master = coffer_store::MasterKey::load_or_create(&data.join("master.key"), true).unwrap();
        let store = coffer_store::Store::open(coffer_store::StoreConfig::new(data.join("volumes")), master).unwrap();
        let payloads: Vec<_> = (0..12).map(|i| coffer_store::Payload::seal(&original(i))).collect();
        store.append(1, &payloads).unwrap();
    }
    let config = coffer_archive::ArchiveConfig::new(data.clone());
    let rebuilt = rebuild_catalog(&config).await.unwrap();
    assert_eq!((rebuilt.messages, rebuilt.without_evidence), (12, 12));
    assert_eq!(rebuilt.tenants_made_anew, ["default"], "its journal address was never recorded");
    Archive::open(config.clone(), true).await.unwrap().reindex().await.unwrap();
    let archive = Archive::open(config, true).await.unwrap();
    let actor = coffer_archive::Actor::operator(archive.tenant(None).await.unwrap());
    assert_eq!(archive.count(&actor, "subject:quarterly").await.unwrap(), 12);
    let verify = archive.verify().await.unwrap();
    assert!(verify.is_clean(), "{:?}", verify.problems);
    assert_eq!(verify.messages, 12);
}

/// A row edited in the database behind Coffer's back is named by `verify`: a recipient changed,
/// a recipient added, a placement deleted, a message row's subject changed.
#[tokio::test]
async fn a_catalog_row_changed_added_or_deleted_behind_coffers_back_is_named_by_verify() {
    for t in common::archives().await {
        let label = t.label.clone();
        let j = t.actor.tenant.journal_address("archive.localhost");
        let mut ids = Vec::new();
        for i in 0..3 {
            let env = Envelope::new("alice@contoso.com", "q", &format!("<q{i}@contoso.com>"))
                .line("Bcc", "carol@contoso.com");
            let r = t
                .submit(
                    &report(&original(i), &env, Style::ExchangeOnline, &j),
                    true,
                    Some(("alice@contoso.com", "Sent")),
                )
                .await;
            ids.push(r.id);
        }
        let clean = t.archive.verify().await.unwrap();
        assert!(clean.is_clean(), "{label}: {:?}", clean.problems);

        let url = t
            .config
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", t.config.data_dir.join("catalog.sqlite").display()));
        let db = coffer_archive::catalog::Catalog::connect(&url).await.unwrap();
        let pool = db.pool_for_tests();
        let run = |sql: String| async move { sqlx::query(&sql).execute(pool).await.unwrap() };
        run(format!(
            "UPDATE recipients SET address = 'mallory@contoso.com' WHERE message = {} AND kind = 'bcc'",
            ids[0]
        ))
        .await;
        run(format!(
            "INSERT INTO recipients (message, kind, address, name, via) VALUES ({}, 'to', 'eve@contoso.com', NULL, '')",
            ids[1]
        ))
        .await;
        run(format!("DELETE FROM placements WHERE message = {}", ids[2])).await;
        run(format!("UPDATE messages SET subject = 'nothing to see' WHERE id = {}", ids[1])).await;

        let found = t.archive.verify().await.unwrap().problems.join("\n");
        for expected in [
            format!("message {}: recipient bcc mallory@contoso.com is in the catalog but not in the evidence", ids[0]),
            format!(
                "message {}: recipient bcc carol@contoso.com is in the evidence but missing from the catalog",
                ids[0]
            ),
            format!("message {}: recipient to eve@contoso.com is in the catalog but not in the evidence", ids[1]),
            format!(
                "message {}: placement alice@contoso.com:Sent is in the evidence but missing from the catalog",
                ids[2]
            ),
            format!("message {}: the subject is Some(\"nothing to see\") in the catalog", ids[1]),
        ] {
            assert!(found.contains(&expected), "{label}: {expected}\n--- verify said:\n{found}");
        }
    }
}
