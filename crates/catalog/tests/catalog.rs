use coffer_catalog::{
    Arrival, Catalog, CatalogError, CommitOutcome, EvidenceMark, Fact, NewMessage, NewPlacement, NewRecipient,
    RecordRef, TrafficDelta,
};

fn message(tenant_id: i64, sha: &str, recipients: &[(&str, &str)], folder: &str) -> NewMessage {
    NewMessage {
        tenant_id,
        sha256: sha.into(),
        size: 100,
        message_id: Some(format!("{sha}@test")),
        date: 1_700_000_000,
        from_addr: Some("alice@contoso.com".into()),
        subject: Some("hello".into()),
        source: "import".into(),
        archived_at: 1_700_000_001,
        recipients: recipients
            .iter()
            .map(|(kind, address)| NewRecipient {
                kind: kind.to_string(),
                address: address.to_string(),
                name: None,
                via: String::new(),
            })
            .collect(),
        placements: vec![NewPlacement {
            mailbox: "alice@contoso.com".into(),
            folder: folder.into(),
            source: "import".into(),
        }],
        ..Default::default()
    }
}

fn record(offset: i64) -> Option<RecordRef> {
    Some(RecordRef { volume: "t1-v000001".into(), segment: 1, offset, length: 200 })
}

/// What the committer does: a known hash keeps its message id, a new one gets the next.
async fn commit(c: &Catalog, batch: &[(NewMessage, Option<RecordRef>)]) -> Result<Vec<CommitOutcome>, CatalogError> {
    let mut next = c.max_message_id().await?;
    let mut facts = Vec::new();
    for (m, record) in batch {
        let id = match c.existing(m.tenant_id, std::slice::from_ref(&m.sha256)).await?.get(&m.sha256) {
            Some(&id) => id,
            None => {
                next += 1;
                next
            }
        };
        facts.push(Fact::Arrival(Arrival {
            id,
            message: m.clone(),
            record: record.clone(),
            source_item: None,
            evidence_at: None,
        }));
    }
    c.apply(&facts, &[]).await
}

async fn for_each_database(test: impl AsyncFn(Catalog)) {
    let dir = tempfile::tempdir().unwrap();
    for url in coffer_testkit::catalog_urls(dir.path()).await {
        let catalog = Catalog::connect(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        test(catalog).await;
    }
}

#[tokio::test]
async fn same_bytes_twice_are_one_message_with_recipients_and_placements_merged() {
    for_each_database(async |c: Catalog| {
        let t = c.default_tenant().await.unwrap();
        let first =
            commit(&c, &[(message(t.id, "aa", &[("to", "bob@contoso.com")], "Inbox"), record(64))]).await.unwrap();
        let CommitOutcome::Stored { id } = first[0] else { panic!("{first:?}") };
        assert_eq!(c.existing(t.id, &["aa".into(), "bb".into()]).await.unwrap().get("aa"), Some(&id));
        let lease = c.index_queue_take("tests", 10, 60).await.unwrap();
        assert_eq!(lease.ids, [id]);
        c.index_queue_done(&lease).await.unwrap();

        let again = commit(
            &c,
            &[(message(t.id, "aa", &[("envelope", "dave@contoso.com"), ("bcc", "dave@contoso.com")], "Sent"), None)],
        )
        .await
        .unwrap();
        assert_eq!(again[0], CommitOutcome::Duplicate { id, merged: true });
        let recipients = &c.recipients(&[id]).await.unwrap()[&id];
        let kinds: Vec<_> = recipients.iter().map(|r| (r.kind.as_str(), r.address.as_str())).collect();
        assert_eq!(kinds, [("bcc", "dave@contoso.com"), ("envelope", "dave@contoso.com"), ("to", "bob@contoso.com")]);
        assert_eq!(c.placements(&[id]).await.unwrap()[&id].len(), 2);
        // The merge changed what the message is found by: it is queued for indexing again.
        assert_eq!(c.index_queue_take("tests", 10, 60).await.unwrap().ids, [id]);

        let nothing_new =
            commit(&c, &[(message(t.id, "aa", &[("to", "bob@contoso.com")], "Inbox"), None)]).await.unwrap();
        assert_eq!(nothing_new[0], CommitOutcome::Duplicate { id, merged: false });
        assert_eq!(c.count_messages(t.id).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn tenants_are_isolated_and_have_journal_addresses() {
    for_each_database(async |c: Catalog| {
        let a = c.add_tenant("contoso", &["contoso.com".into()]).await.unwrap();
        let b = c.add_tenant("fabrikam", &["fabrikam.com".into()]).await.unwrap();
        assert!(c.add_tenant("other", &["contoso.com".into()]).await.is_err(), "a domain has one tenant");
        assert!(c.add_tenant("contoso", &[]).await.is_err());
        assert!(a.journal_address("archive.test").starts_with("journal-"));
        assert_eq!(c.tenant_by_journal_token(&a.journal_token).await.unwrap().unwrap().id, a.id);

        let stored = commit(&c, &[(message(a.id, "cc", &[], "Inbox"), record(64))]).await.unwrap();
        let id = stored[0].id();
        assert!(c.message(a.id, id).await.unwrap().is_some());
        assert!(c.message(b.id, id).await.unwrap().is_none(), "another tenant's id must not be found");
        // The same bytes in another tenant are that tenant's own message.
        let other = commit(&c, &[(message(b.id, "cc", &[], "Inbox"), record(400))]).await.unwrap();
        assert!(matches!(other[0], CommitOutcome::Stored { .. }));
        assert_ne!(other[0].id(), id);
    })
    .await;
}

#[tokio::test]
async fn audit_chain_detects_an_altered_entry() {
    for_each_database(async |c: Catalog| {
        for i in 0..5 {
            c.audit(None, "cli:root", "127.0.0.1", "search", &format!("query {i}")).await.unwrap();
        }
        assert!(c.verify_audit().await.unwrap().is_empty());
        assert_eq!(c.audit_entries(None, 2).await.unwrap()[0].detail, "query 4");
        sqlx::query("UPDATE audit SET detail = 'nothing to see' WHERE seq = 3")
            .execute(c.pool_for_tests())
            .await
            .unwrap();
        let problems = c.verify_audit().await.unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].seq, 3);
    })
    .await;
}

#[tokio::test]
async fn traffic_adds_up_per_hour_tenant_and_source() {
    for_each_database(async |c: Catalog| {
        let t = c.default_tenant().await.unwrap();
        let d = TrafficDelta { messages: 2, bytes: 100, ..Default::default() };
        c.add_traffic(7_200 + 5, t.id, "smtp", &d).await.unwrap();
        c.add_traffic(7_200 + 3_000, t.id, "smtp", &d).await.unwrap();
        c.add_traffic(7_200 + 3_600, t.id, "smtp", &d).await.unwrap();
        let rows = c.traffic(0).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].bucket, rows[0].messages, rows[0].bytes), (7_200, 4, 200));
    })
    .await;
}

#[tokio::test]
async fn two_processes_merging_into_one_message_at_once_both_succeed() {
    // Two pools on one database stand for `coffer serve` and a CLI command beside it. A merge
    // reads before it writes: on SQLite that must wait for the other writer, not fail as locked.
    let dir = tempfile::tempdir().unwrap();
    for url in coffer_testkit::catalog_urls(dir.path()).await {
        let (a, b) = (Catalog::connect(&url).await.unwrap(), Catalog::connect(&url).await.unwrap());
        let t = a.default_tenant().await.unwrap();
        let first = commit(&a, &[(message(t.id, "aa", &[], "Inbox"), record(64))]).await.unwrap();
        let CommitOutcome::Stored { id } = first[0] else { panic!("{first:?}") };
        let mut tasks = Vec::new();
        for (side, catalog) in [("a", &a), ("b", &b)] {
            for worker in 0..3 {
                let catalog = catalog.clone();
                tasks.push(tokio::spawn(async move {
                    for n in 0..20 {
                        let folder = format!("{side}{worker}-{n}");
                        commit(&catalog, &[(message(t.id, "aa", &[], &folder), None)]).await?;
                        catalog.audit(Some(t.id), side, "127.0.0.1", "merge", &folder).await?;
                    }
                    Ok::<_, coffer_catalog::CatalogError>(())
                }));
            }
        }
        for task in tasks {
            task.await.unwrap().unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        assert_eq!(a.placements(&[id]).await.unwrap()[&id].len(), 1 + 2 * 3 * 20, "{url}");
        assert_eq!(b.verify_audit().await.unwrap(), vec![], "{url}: the audit chain stays whole");
    }
}

/// Two indexers never take the same queued message; one that dies frees its rows when its lease
/// runs out; a message queued again while leased is not lost when the old lease is done.
#[tokio::test]
async fn index_queue_consumers_lease_disjoint_batches_and_a_requeued_message_survives_its_old_lease() {
    for_each_database(async |c: Catalog| {
        let t = c.default_tenant().await.unwrap();
        let batch: Vec<_> = (0..6)
            .map(|i| (message(t.id, &format!("m{i}"), &[("to", "bob@contoso.com")], "Inbox"), record(64 + i)))
            .collect();
        commit(&c, &batch).await.unwrap();
        let a = c.index_queue_take("a", 4, 60).await.unwrap();
        let b = c.index_queue_take("b", 4, 60).await.unwrap();
        assert_eq!((a.ids.len(), b.ids.len()), (4, 2), "{a:?} {b:?}");
        assert!(a.ids.iter().all(|id| !b.ids.contains(id)), "{a:?} {b:?}");
        assert!(c.index_queue_take("c", 4, 60).await.unwrap().ids.is_empty(), "everything is leased");
        // While `a` holds its batch, one of its messages changes (a second report merges a Bcc).
        let changed = a.ids[0];
        let again = commit(&c, &[(message(t.id, "m0", &[("bcc", "dave@contoso.com")], "Inbox"), None)]).await.unwrap();
        assert_eq!(again[0], CommitOutcome::Duplicate { id: changed, merged: true });
        c.index_queue_done(&a).await.unwrap();
        c.index_queue_done(&b).await.unwrap();
        let left = c.index_queue_take("c", 10, 60).await.unwrap();
        assert_eq!(left.ids, [changed], "the newer state is indexed too");
        // `c` died holding it; the next writing process frees every lease at its start.
        assert!(c.index_queue_take("d", 10, 60).await.unwrap().ids.is_empty());
        c.index_queue_release_all().await.unwrap();
        // `d`'s lease has run out the moment it is taken (a consumer that stalled): `e` takes over.
        assert_eq!(c.index_queue_take("d", 10, -1).await.unwrap().ids, [changed]);
        assert_eq!(c.index_queue_take("e", 10, 60).await.unwrap().ids, [changed], "an expired lease frees the row");
    })
    .await;
}

/// A replay may overlap what was applied (a crash between the catalog commit and nothing else):
/// applying the same facts again changes nothing, and a mark never moves back.
#[tokio::test]
async fn evidence_applied_twice_changes_nothing_and_marks_only_move_forward() {
    for_each_database(async |c: Catalog| {
        let t = c.default_tenant().await.unwrap();
        let arrival = |id: i64, sha: &str, record: Option<RecordRef>, folder: &str| {
            Fact::Arrival(Arrival {
                id,
                message: message(t.id, sha, &[("bcc", "dave@contoso.com")], folder),
                record,
                source_item: Some(("graph".into(), format!("item-{sha}"))),
                evidence_at: None,
            })
        };
        let facts = vec![
            arrival(41, "aa", record(64), "Inbox"),
            arrival(41, "aa", None, "Archive"),
            Fact::PlacementRemoved { message: 41, mailbox: "alice@contoso.com".into(), folder: "Inbox".into() },
        ];
        let mark = |applied| EvidenceMark { volume: "t1-v000001".into(), applied, segment: 1, end: 900 };
        let first = c.apply(&facts, &[mark(3)]).await.unwrap();
        assert_eq!(first, [CommitOutcome::Stored { id: 41 }, CommitOutcome::Duplicate { id: 41, merged: true }]);
        let again = c.apply(&facts, &[mark(2)]).await.unwrap();
        assert!(matches!(again[0], CommitOutcome::Duplicate { id: 41, .. }), "the message is there once: {again:?}");
        assert_eq!(c.count_messages(t.id).await.unwrap(), 1);
        let folders: Vec<String> = c.placements(&[41]).await.unwrap()[&41].iter().map(|p| p.folder.clone()).collect();
        assert_eq!(folders, ["Archive"], "the removal follows the arrival it undoes, both times");
        assert_eq!(c.source_item("graph", "item-aa").await.unwrap(), Some(41));
        assert_eq!(c.evidence_marks().await.unwrap()["t1-v000001"].applied, 3, "a mark never moves back");
        assert_eq!(c.max_message_id().await.unwrap(), 41);
    })
    .await;
}

/// A tenant recorded in the evidence comes back with its id and journal token; a tenant made
/// afterwards gets a new id (PostgreSQL's identity is moved past the recorded ones).
#[tokio::test]
async fn a_recorded_tenant_keeps_its_journal_token_and_the_next_tenant_gets_a_fresh_id() {
    for_each_database(async |c: Catalog| {
        let recorded = coffer_catalog::Tenant {
            id: 7,
            name: "contoso".into(),
            journal_token: "abcdefgh2345".into(),
            domains: vec!["contoso.com".into()],
            created_at: 1_700_000_000,
        };
        let fact = Fact::Tenant { tenant: recorded.clone(), networks: vec!["192.0.2.0/24".into()] };
        c.apply(&[fact], &[]).await.unwrap();
        assert_eq!(c.tenant_by_journal_token("abcdefgh2345").await.unwrap(), Some(recorded));
        assert_eq!(c.tenant_networks().await.unwrap()[&7], ["192.0.2.0/24"]);
        assert!(c.unrecorded_tenants().await.unwrap().iter().all(|(t, _)| t.id != 7), "it is recorded");
        let next = c.add_tenant("fabrikam", &[]).await.unwrap();
        assert!(next.id > 7, "{next:?}");
        assert!(c.unrecorded_tenants().await.unwrap().iter().any(|(t, _)| t.id == next.id), "not yet recorded");
        c.allow_network(7, "198.51.100.0/24").await.unwrap();
        assert!(c.unrecorded_tenants().await.unwrap().iter().any(|(t, _)| t.id == 7), "changed: recorded again");
    })
    .await;
}

#[tokio::test]
async fn a_deletion_decided_against_the_holds_before_a_new_one_is_refused_and_a_merge_into_a_deleted_message_is_dropped()
 {
    for_each_database(async |c: Catalog| {
        let t = c.default_tenant().await.unwrap();
        let outcomes =
            commit(&c, &[(message(t.id, "d1", &[("to", "bob@contoso.com")], "Inbox"), record(64))]).await.unwrap();
        let id = outcomes[0].id();
        let certificate = coffer_catalog::Deletion {
            message: id,
            tenant_id: t.id,
            sha256: "d1".into(),
            date: 1_700_000_000,
            sender_domain: "contoso.com".into(),
            reason: "rule:test".into(),
            decided_at: 1_800_000_000,
            records: vec![record(64).unwrap()],
            state: "decided".into(),
        };
        let seen = c.holds_version().await.unwrap();
        let hold = coffer_catalog::LegalHold {
            tenant_id: t.id,
            name: "matter".into(),
            reason: String::new(),
            query: Some(String::new()),
            custodians: Vec::new(),
            date_from: None,
            date_until: None,
            placed_by: "test".into(),
            placed_at: 1_800_000_000,
            released_by: None,
            released_at: None,
            release_reason: None,
        };
        c.place_hold(&hold).await.unwrap();
        assert!(!c.decide_deletions(seen, std::slice::from_ref(&certificate)).await.unwrap(), "a hold came in between");
        assert!(c.deletions_in_state("decided").await.unwrap().is_empty());
        let now = c.holds_version().await.unwrap();
        assert!(c.decide_deletions(now, std::slice::from_ref(&certificate)).await.unwrap());
        assert_eq!(c.deletions_in_state("decided").await.unwrap().len(), 1);

        // The tombstone applied; then a late duplicate arrival names the deleted message.
        c.apply(&[Fact::Deleted(certificate.clone())], &[]).await.unwrap();
        assert!(c.messages(&[id]).await.unwrap().is_empty());
        let late = Arrival {
            id,
            message: message(t.id, "d1", &[("bcc", "eve@contoso.com")], "Archive"),
            record: None,
            source_item: None,
            evidence_at: None,
        };
        c.apply(&[Fact::Arrival(late)], &[]).await.unwrap();
        assert!(c.recipients(&[id]).await.unwrap().is_empty(), "nothing merged into a deleted message");
        assert!(c.max_message_id().await.unwrap() >= id, "a deleted message's id is never given again");
    })
    .await;
}

#[tokio::test]
async fn ocr_keeps_what_it_read_queues_the_message_for_indexing_and_keeps_nothing_of_a_deleted_message() {
    for_each_database(async |c: Catalog| {
        let t = c.default_tenant().await.unwrap();
        let batch: Vec<_> = (0..2)
            .map(|i| (message(t.id, &format!("o{i}"), &[("to", "bob@contoso.com")], "Inbox"), record(i)))
            .collect();
        let ids: Vec<i64> = commit(&c, &batch)
            .await
            .unwrap()
            .iter()
            .map(|o| match o {
                CommitOutcome::Stored { id } => *id,
                other => panic!("{other:?}"),
            })
            .collect();
        let lease = c.index_queue_take("i", 10, 60).await.unwrap();
        c.index_queue_done(&lease).await.unwrap();
        c.ocr_queue_add(&ids).await.unwrap();
        c.ocr_queue_add(&ids[..1]).await.unwrap();
        assert_eq!(c.ocr_queue_next(10).await.unwrap(), ids, "queued once each");
        c.ocr_done(ids[0], &[(1, "scan.png".into(), "wombat".into())]).await.unwrap();
        assert_eq!(c.ocr_queue_next(10).await.unwrap(), ids[1..]);
        let texts = c.ocr_texts(&ids).await.unwrap();
        assert_eq!(texts[&ids[0]], [(1, "scan.png".to_owned(), "wombat".to_owned())]);
        assert!(!texts.contains_key(&ids[1]));
        assert_eq!(c.index_queue_take("i", 10, 60).await.unwrap().ids, ids[..1], "indexed again with its text");
        // A message that is gone when OCR finishes keeps nothing.
        c.ocr_done(999_999, &[(1, "x.png".into(), "secret".into())]).await.unwrap();
        assert!(c.ocr_texts(&[999_999]).await.unwrap().is_empty());
        assert_eq!(c.ocr_queue_len().await.unwrap(), 1);
    })
    .await;
}
