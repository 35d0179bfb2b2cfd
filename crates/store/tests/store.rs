use std::path::{Path, PathBuf};

use coffer_store::{Location, MasterKey, Payload, Store, StoreConfig, VolumeState};

fn open(dir: &Path, cfg: impl FnOnce(&mut StoreConfig)) -> Store {
    let master = MasterKey::load_or_create(&dir.join("master.key"), true).unwrap();
    let mut config = StoreConfig::new(dir.join("volumes"));
    cfg(&mut config);
    Store::open(config, master).unwrap()
}

fn message(i: usize) -> Vec<u8> {
    format!("Subject: message {i}\r\nMessage-ID: <{i}@test>\r\n\r\n{}\r\n", "body text ".repeat(i % 50)).into_bytes()
}

fn segment_file(dir: &Path, loc: &Location) -> PathBuf {
    dir.join("volumes").join(&loc.volume).join(format!("{:06}.seg", loc.segment))
}

#[test]
fn appended_records_read_back_byte_exact_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let messages: Vec<_> = (0..200).map(message).collect();
    let locations = {
        let store = open(dir.path(), |_| {});
        let payloads: Vec<_> = messages.iter().map(|m| Payload::seal(m)).collect();
        store
            .append(1, &payloads[..100])
            .unwrap()
            .into_iter()
            .chain(store.append(1, &payloads[100..]).unwrap())
            .collect::<Vec<_>>()
    };
    let store = open(dir.path(), |_| {});
    for (loc, original) in locations.iter().zip(&messages) {
        assert_eq!(&store.read(loc).unwrap(), original);
    }
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records, 200);
    assert_eq!(report.good.len(), 200);
}

#[test]
fn segments_and_volumes_roll_over_and_the_chain_spans_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |c| {
        c.segment_max_bytes = 2_000;
        c.volume_max_records = 25;
    });
    for i in 0..60 {
        store.append(7, &[Payload::seal(&message(i))]).unwrap();
    }
    let volumes = store.volumes().unwrap();
    assert_eq!(volumes.len(), 3);
    assert_eq!(volumes.iter().filter(|v| v.state == VolumeState::Closed).count(), 2);
    assert!(volumes[0].segments > 1, "segments did not roll over");
    assert_eq!(volumes.iter().map(|v| v.records).sum::<u64>(), 60);
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn owners_get_separate_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |_| {});
    let a = store.append(1, &[Payload::seal(b"Subject: a\r\n\r\na")]).unwrap();
    let b = store.append(2, &[Payload::seal(b"Subject: b\r\n\r\nb")]).unwrap();
    assert_ne!(a[0].volume, b[0].volume);
    assert!(a[0].volume.starts_with("t1-"));
}

#[test]
fn torn_tail_is_cut_on_reopen_and_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let loc = {
        let store = open(dir.path(), |_| {});
        store.append(1, &[Payload::seal(&message(1))]).unwrap().remove(0)
    };
    let seg = segment_file(dir.path(), &loc);
    let good_len = std::fs::metadata(&seg).unwrap().len();
    // A crash in the middle of the next write: half a record at the end.
    let mut bytes = std::fs::read(&seg).unwrap();
    let half: Vec<u8> = bytes[loc.offset as usize..][..loc.length as usize / 2].to_vec();
    bytes.extend_from_slice(&half);
    std::fs::write(&seg, &bytes).unwrap();

    let store = open(dir.path(), |_| {});
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
    let aside: Vec<_> = std::fs::read_dir(seg.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(store.read(&loc).unwrap(), message(1));
    let next = store.append(1, &[Payload::seal(&message(2))]).unwrap();
    assert_eq!(store.read(&next[0]).unwrap(), message(2));
    assert!(store.verify().unwrap().problems.is_empty());
}

fn tampered(f: impl FnOnce(&mut Vec<u8>, &[Location])) -> Vec<coffer_store::Problem> {
    let dir = tempfile::tempdir().unwrap();
    let locs = {
        let store = open(dir.path(), |_| {});
        let payloads: Vec<_> = (0..6).map(|i| Payload::seal(&message(i))).collect();
        store.append(1, &payloads).unwrap()
    };
    let seg = segment_file(dir.path(), &locs[0]);
    let mut bytes = std::fs::read(&seg).unwrap();
    f(&mut bytes, &locs);
    std::fs::write(&seg, &bytes).unwrap();
    let store = Store::open(
        StoreConfig::new(dir.path().join("volumes")),
        MasterKey::load_or_create(&dir.path().join("master.key"), false).unwrap(),
    );
    // Recovery must not "repair" tampering in the middle by cutting acknowledged records silently;
    // whatever it does, verify reports.
    let store = store.unwrap();
    store.verify().unwrap().problems
}

#[test]
fn flipped_byte_is_named_by_verify() {
    let problems = tampered(|b, locs| {
        let at = (locs[2].offset + 150) as usize;
        b[at] ^= 0x01;
    });
    assert!(problems.iter().any(|p| p.seq == Some(2) && p.detail.contains("authenticate")), "{problems:?}");
}

#[test]
fn deleted_record_is_named_by_verify() {
    let problems = tampered(|b, locs| {
        let (start, len) = (locs[3].offset as usize, locs[3].length as usize);
        b.drain(start..start + len);
    });
    assert!(problems.iter().any(|p| p.detail.contains("records 3 to 3 are missing")), "{problems:?}");
}

#[test]
fn swapped_records_are_named_by_verify() {
    let problems = tampered(|b, locs| {
        let (a, c) = (&locs[1], &locs[2]);
        let first = b[a.offset as usize..][..a.length as usize].to_vec();
        let second = b[c.offset as usize..][..c.length as usize].to_vec();
        let mut swapped = second;
        swapped.extend(first);
        b.splice(a.offset as usize..(c.offset + c.length as u64) as usize, swapped);
    });
    assert!(problems.iter().any(|p| p.seq == Some(2) && p.detail.contains("missing")), "{problems:?}");
    assert!(problems.iter().any(|p| p.seq == Some(1) && p.detail.contains("out of order")), "{problems:?}");
}

#[test]
fn a_missing_master_key_next_to_volumes_is_refused_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), |_| {}).append(1, &[Payload::seal(b"Subject: x\r\n\r\n")]).unwrap();
    std::fs::remove_file(dir.path().join("master.key")).unwrap();
    let err = MasterKey::load_or_create(&dir.path().join("master.key"), false).err().unwrap();
    assert!(err.to_string().contains("restore"), "{err}");
}

#[test]
fn a_different_master_key_cannot_read_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let loc = open(dir.path(), |_| {}).append(1, &[Payload::seal(b"Subject: x\r\n\r\n")]).unwrap().remove(0);
    std::fs::remove_file(dir.path().join("master.key")).unwrap();
    let other = MasterKey::load_or_create(&dir.path().join("master.key"), true).unwrap();
    let store = Store::open(StoreConfig::new(dir.path().join("volumes")), other);
    match store {
        Err(e) => assert!(e.to_string().contains("master key"), "{e}"),
        Ok(s) => assert!(s.read(&loc).is_err()),
    }
}

#[test]
fn the_built_in_mail_dictionary_shrinks_records_and_nothing_is_trained_from_tenant_mail() {
    let dir = tempfile::tempdir().unwrap();
    let messages: Vec<Vec<u8>> = (0..2_500)
        .map(|i| {
            format!(
                "Received: from mail.contoso.com (mail.contoso.com [192.0.2.7])\r\n\tby mx.contoso.com (Postfix) with ESMTPS id {i}\r\n\
                 From: Alice Martin <alice.martin@contoso.com>\r\nTo: Bob Stone <bob@contoso.com>\r\n\
                 Subject: Weekly report {i}\r\nMessage-ID: <{i}.weekly@contoso.com>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                 Hello Bob, here are the figures for week {i}.\r\n"
            )
            .into_bytes()
        })
        .collect();
    let store = open(dir.path(), |_| {});
    let compressor = store.compressor();
    let with: Vec<_> = messages.iter().map(|m| Payload::seal_with(m, &compressor)).collect();
    let plain: u64 = messages.iter().map(|m| Payload::seal(m).original_len).sum();
    let locations = store.append(1, &with).unwrap();
    let stored: u64 = locations.iter().map(|l| l.length as u64).sum();
    let plain_stored: u64 = store
        .append(
            2,
            &messages.iter().map(|m| Payload::seal_with(m, &coffer_store::Compressor::plain())).collect::<Vec<_>>(),
        )
        .unwrap()
        .iter()
        .map(|l| l.length as u64)
        .sum();
    assert!(
        stored < plain_stored * 9 / 10,
        "with the mail dictionary {stored} bytes, without {plain_stored} (raw {plain})"
    );
    // After more than enough messages to have trained one before: no dictionary of tenant mail.
    assert!(!dir.path().join("volumes/dicts").exists());
    drop(store);
    let store = open(dir.path(), |_| {});
    for (loc, original) in locations.iter().zip(&messages) {
        assert_eq!(&store.read(loc).unwrap(), original);
    }
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn a_shredded_record_cannot_be_read_its_chain_still_verifies_and_its_text_survives_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let secret = b"the merger with Fabrikam closes on Friday";
    let messages: Vec<Vec<u8>> =
        (0..6).map(|i| if i == 2 { [b"Subject: x\r\n\r\n".as_slice(), secret].concat() } else { message(i) }).collect();
    let store = open(dir.path(), |_| {});
    let compressor = store.compressor();
    let locations =
        store.append(1, &messages.iter().map(|m| Payload::seal_with(m, &compressor)).collect::<Vec<_>>()).unwrap();
    let hash = store.shred(&locations[2]).unwrap();
    assert_eq!(hash, coffer_store::content_hash(&messages[2]), "the shredded record's hash stays provable");
    drop(store);

    let store = open(dir.path(), |_| {});
    match store.read(&locations[2]) {
        Err(coffer_store::StoreError::Shredded(at)) => assert!(at.contains(&locations[2].volume)),
        other => panic!("a shredded record read as {other:?}"),
    }
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "shredding is not damage: {:?}", report.problems);
    assert_eq!((report.records, report.shredded, report.good.len()), (6, 1, 5));
    // Everything the master key still opens: the other records, and no dictionary of tenant mail.
    for (i, loc) in locations.iter().enumerate().filter(|(i, _)| *i != 2) {
        let text = store.read(loc).unwrap();
        assert_eq!(text, messages[i]);
        assert!(!text.windows(secret.len()).any(|w| w == secret));
    }
    assert!(!dir.path().join("volumes/dicts").exists());
    // The keyring entry is gone, not merely marked.
    let keyring = std::fs::read(dir.path().join("volumes").join(&locations[2].volume).join("keyring")).unwrap();
    assert_eq!(keyring.len(), 6 * 80);
    assert!(keyring[2 * 80..3 * 80].iter().all(|&b| b == 0));
    assert!(keyring[3 * 80..4 * 80].iter().any(|&b| b != 0));
}

#[test]
fn keys_of_records_a_crash_kept_from_the_segment_are_cut_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |_| {});
    let locations = store.append(1, &(0..3).map(|i| Payload::seal(&message(i))).collect::<Vec<_>>()).unwrap();
    drop(store);
    // A crash after the keys of the next batch were written, before its records.
    let keyring = dir.path().join("volumes").join(&locations[0].volume).join("keyring");
    let mut keys = std::fs::read(&keyring).unwrap();
    keys.extend_from_slice(&[7u8; 160]);
    std::fs::write(&keyring, &keys).unwrap();
    let store = open(dir.path(), |_| {});
    assert_eq!(std::fs::metadata(&keyring).unwrap().len(), 3 * 80);
    let more = store.append(1, &[Payload::seal(&message(3))]).unwrap();
    assert_eq!(store.read(&more[0]).unwrap(), message(3));
    assert!(store.verify().unwrap().problems.is_empty());
}

/// 300 acknowledged records in one open segment; `flip` damages the bytes of one of them.
fn damaged_open_segment(dir: &Path, flip: impl FnOnce(&mut Vec<u8>, &[Location])) -> (Vec<Location>, Vec<Vec<u8>>) {
    let messages: Vec<_> = (0..300).map(message).collect();
    let locations = {
        let store = open(dir, |_| {});
        let payloads: Vec<_> = messages.iter().map(|m| Payload::seal(m)).collect();
        payloads.chunks(30).flat_map(|batch| store.append(1, batch).unwrap()).collect::<Vec<_>>()
    };
    let path = segment_file(dir, &locations[0]);
    let mut bytes = std::fs::read(&path).unwrap();
    flip(&mut bytes, &locations);
    std::fs::write(&path, &bytes).unwrap();
    (locations, messages)
}

#[test]
fn a_flipped_byte_in_a_record_header_mid_segment_cuts_nothing_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // The declared payload length of record 22 (bytes 24..28 of its header): walking by lengths
    // stops there, as it does at a torn write.
    let (locations, messages) = damaged_open_segment(dir.path(), |b, l| b[l[22].offset as usize + 26] ^= 0x40);
    let store = open(dir.path(), |_| {});
    for (i, (loc, original)) in locations.iter().zip(&messages).enumerate() {
        if i != 22 {
            assert_eq!(&store.read(loc).unwrap(), original, "record {i} survives the writable open");
        }
    }
    // New mail goes on, in a new segment, and is readable.
    let new = store.append(1, &[Payload::seal(b"Subject: after\r\n\r\nafter the damage\r\n")]).unwrap();
    assert_ne!(new[0].segment, locations[0].segment);
    assert_eq!(store.read(&new[0]).unwrap(), b"Subject: after\r\n\r\nafter the damage\r\n");
    let report = store.verify().unwrap();
    assert!(!report.problems.is_empty(), "verify names the damaged record");
    // Record 22, and the chain link of record 23 (computed over 22's bytes as they were).
    let named: Vec<Option<u64>> = report.problems.iter().map(|p| p.offset).collect();
    assert_eq!(named, [Some(locations[22].offset), Some(locations[23].offset)], "{:?}", report.problems);
    assert_eq!(report.good.len(), 299, "298 old records and the new one: {:?}", report.problems);
    assert!(
        !std::fs::read_dir(dir.path().join("volumes").join(&locations[0].volume)).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("torn")),
        "nothing was cut aside"
    );
}

#[test]
fn a_damaged_last_record_that_was_acknowledged_is_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (locations, messages) = damaged_open_segment(dir.path(), |b, l| b[l[299].offset as usize + 1] ^= 0x01);
    let last = &locations[299];
    let segment_len = std::fs::metadata(segment_file(dir.path(), last)).unwrap().len();
    let store = open(dir.path(), |c| {
        c.acknowledged.insert((last.volume.clone(), last.segment), last.offset + last.length as u64);
    });
    assert_eq!(std::fs::metadata(segment_file(dir.path(), last)).unwrap().len(), segment_len, "nothing cut");
    assert_eq!(&store.read(&locations[298]).unwrap(), &messages[298]);
    assert!(store.read(last).is_err(), "the damaged record itself does not read");
    store.append(1, &[Payload::seal(b"Subject: next\r\n\r\n")]).unwrap();
    assert!(!store.verify().unwrap().problems.is_empty(), "verify names the damage");
}

#[test]
fn evidence_is_sealed_in_the_same_append_as_its_messages_and_scanned_back_in_order() {
    use coffer_store::RecordKind;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |c| c.segment_max_bytes = 3_000);
    let mut written = Vec::new();
    for batch in 0..6 {
        let payloads: Vec<_> = (0..4).map(|i| Payload::seal(&message(batch * 4 + i))).collect();
        let refs: Vec<&Payload> = payloads.iter().collect();
        let appended = store
            .append_with_evidence(1, &refs, |at| {
                at.iter().map(|l| Payload::evidence(format!("{}:{}", l.segment, l.offset).as_bytes())).collect()
            })
            .unwrap();
        assert_eq!(appended.contents.len(), 4);
        assert_eq!(appended.evidence.len(), 4);
        assert_eq!(appended.next_seq, (batch as u64 + 1) * 8);
        assert_eq!(appended.end, appended.evidence[3].offset + appended.evidence[3].length as u64);
        written.extend(appended.contents.iter().map(|l| format!("{}:{}", l.segment, l.offset)));
    }
    let volume = store.volume_ids().unwrap().remove(0);
    let mut evidence = Vec::new();
    let mut messages = 0;
    let problems = store
        .scan::<coffer_store::StoreError>(
            &volume,
            0,
            None,
            |k| k == RecordKind::Evidence,
            |r| {
                match r.kind {
                    RecordKind::Evidence => evidence.push(String::from_utf8(r.body.unwrap()).unwrap()),
                    RecordKind::Message => {
                        assert!(r.body.is_none(), "a message was opened though only evidence was asked for");
                        messages += 1;
                    }
                    RecordKind::Timestamp => panic!("no timestamp was appended"),
                }
                Ok(())
            },
        )
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(messages, 24);
    assert_eq!(evidence, written, "each evidence record names where its message went");

    // From a sequence number on, and up to a bound: only those records.
    let mut seqs = Vec::new();
    store.scan::<coffer_store::StoreError>(&volume, 30, Some(41), |_| false, |r| Ok(seqs.push(r.seq))).unwrap();
    assert_eq!(seqs, (30..41).collect::<Vec<u64>>());

    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.records, report.evidence, report.good.len()), (48, 24, 24));
}

#[test]
fn a_timestamp_record_is_checked_against_the_chain_head_of_the_record_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |_| {});
    store.append(1, &(0..3).map(|i| Payload::seal(&message(i))).collect::<Vec<_>>()).unwrap();
    let head = store.chain_heads().remove(0);
    assert_eq!(head.next_seq, 3);
    // Records arrive between the request and the token: the token still names record 2.
    store.append(1, &[Payload::seal(&message(3))]).unwrap();
    let good = coffer_store::Timestamp { covers: 2, chain_head: head.chain, token: b"token one".to_vec() };
    let at = store.append_timestamp(&head.volume, &good).unwrap();
    // One that claims another record's head.
    let wrong = coffer_store::Timestamp { covers: 1, chain_head: head.chain, token: b"token two".to_vec() };
    store.append_timestamp(&head.volume, &wrong).unwrap();
    assert!(store.append_timestamp("t9-v000001", &good).is_err(), "no such open volume");

    let report = store.verify().unwrap();
    assert_eq!(report.timestamps.len(), 1);
    assert_eq!(report.timestamps[0].timestamp, good);
    assert_eq!(report.timestamps[0].seq, 4);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].seq, Some(5));
    assert!(report.problems[0].detail.contains("not the volume's after record 1"), "{}", report.problems[0]);
    assert_eq!(report.good.len(), 4, "timestamps are not messages");
    drop(store);
    // The chain goes on through them after a reopen.
    let store = open(dir.path(), |_| {});
    store.append(1, &[Payload::seal(&message(9))]).unwrap();
    assert_eq!(store.verify().unwrap().records, 7);
    assert!(store.read(&at).is_ok());
}
