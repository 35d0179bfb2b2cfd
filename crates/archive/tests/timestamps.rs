//! Trusted timestamps (RFC 3161) against a local TSA (`openssl ts -reply`): tokens over the
//! volumes' chain heads are stored in the volumes, checked by `verify`, carried by exports and
//! accepted by `openssl ts -verify`; a token that was altered, or that does not belong where it
//! lies, is named.

use std::process::Command;

use coffer_archive::export::ExportFormat;
use coffer_archive::{Actor, Archive, ArchiveConfig, Source, Submission};
use coffer_store::{MasterKey, Store, StoreConfig, Timestamp};
use coffer_testkit::tsa::LocalTsa;

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: contract {i}\r\nMessage-ID: <c{i}@contoso.com>\r\n\
         Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\r\nthe signed contract, version {i}\r\n{}\r\n",
        "clause ".repeat(200)
    )
    .into_bytes()
}

async fn submit(archive: &Archive, actor: &Actor, range: std::ops::Range<usize>) {
    let pipeline = archive.pipeline();
    for i in range {
        pipeline
            .submit(Submission {
                tenant: actor.tenant.id,
                source: Source::Import,
                raw: message(i),
                envelope: Vec::new(),
                envelope_from: None,
                placement: None,
                journal: false,
                origin: Default::default(),
            })
            .await
            .unwrap();
    }
}

fn config(dir: &std::path::Path, tsa: &LocalTsa) -> ArchiveConfig {
    let mut config = ArchiveConfig::new(dir.join("data"));
    config.timestamp.tsa_url = Some(tsa.url.clone());
    config.timestamp.ca_file = Some(tsa.ca_file.clone());
    config.segment_max_bytes = 8 << 10;
    config
}

#[tokio::test]
async fn chain_heads_are_timestamped_checked_by_verify_exported_and_accepted_by_openssl() {
    let tsa = LocalTsa::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &tsa);
    let archive = Archive::open(config.clone(), true).await.unwrap();
    let actor = Actor::operator(archive.tenant(None).await.unwrap());

    submit(&archive, &actor, 0..2).await;
    assert_eq!(archive.timestamp_now().await.unwrap(), 1, "one open volume, one token");
    assert_eq!(archive.timestamp_now().await.unwrap(), 0, "nothing new since the token: no request");
    let asked = tsa.answered.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(asked, 1);

    // The scheduler's rule: a volume that grew within its segment is not due before
    // `every_seconds`; once a segment is sealed, it is.
    let mut timestamper = archive.timestamper().unwrap().unwrap();
    assert_eq!(timestamper.pass(false).unwrap(), 0, "nothing since the last token");
    submit(&archive, &actor, 2..3).await;
    assert_eq!(timestamper.pass(false).unwrap(), 1, "a new timestamper knows no earlier token of a grown head");
    submit(&archive, &actor, 3..4).await;
    let before = open_segment(&archive).await;
    assert_eq!(timestamper.pass(false).unwrap(), 0, "grew, but no segment sealed and not yet an hour");
    let mut i = 4;
    while open_segment(&archive).await == before {
        submit(&archive, &actor, i..i + 1).await;
        i += 1;
    }
    assert_eq!(timestamper.pass(false).unwrap(), 1, "a sealed segment is timestamped");

    let outcome = archive.verify().await.unwrap();
    assert!(outcome.is_clean(), "{:?}", outcome.problems);
    assert_eq!(outcome.timestamp_records, 3);
    assert_eq!(outcome.messages, i);
    let [proof] = outcome.timestamps.as_slice() else { panic!("{:?}", outcome.timestamps) };
    assert_eq!(proof.tokens, 3);
    let now = coffer_archive::service::now_secs();
    assert!(proof.proven_at.is_some_and(|t| (now - 120..=now + 5).contains(&t)), "{proof:?}");
    // The last token is the volume's last record and covers every record before it.
    let all = outcome.records + outcome.evidence_records + outcome.timestamp_records;
    assert_eq!(proof.proven_through_record, Some(all - 2));

    // An export carries the latest token, and OpenSSL accepts it over the chain head.
    let out = dir.path().join("export.zip");
    archive.indexer().run_until_idle().await.unwrap();
    let exported = archive.export(&actor, "contract", ExportFormat::EmlZip, &out, false).await.unwrap();
    assert_eq!(exported.messages, i);
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let index = read_entry(&mut zip, "timestamps/index.csv");
    let index = String::from_utf8(index).unwrap();
    let row: Vec<&str> = index.lines().nth(1).unwrap().split(',').collect();
    let (chain_head, file) = (row[3].to_owned(), row[4].to_owned());
    assert!(!read_entry(&mut zip, "timestamps/README.txt").is_empty());
    let token = dir.path().join("token.tst");
    std::fs::write(&token, read_entry(&mut zip, &file)).unwrap();
    let verified = Command::new("openssl")
        .args(["ts", "-verify", "-token_in", "-in"])
        .arg(&token)
        .args(["-digest", &chain_head, "-CAfile"])
        .arg(&tsa.ca_file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && said.contains("Verification: OK"),
        "{said} {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // Over another digest, OpenSSL refuses the same token: the check above is not vacuous.
    let other = Command::new("openssl")
        .args(["ts", "-verify", "-token_in", "-in"])
        .arg(&token)
        .args(["-digest", &"00".repeat(32), "-CAfile"])
        .arg(&tsa.ca_file)
        .output()
        .unwrap();
    assert!(!other.status.success());
    archive.close().await.unwrap();
}

/// The open segment of the archive's only volume.
async fn open_segment(archive: &Archive) -> u32 {
    archive.volumes().await.unwrap().iter().map(|v| v.segments).max().unwrap()
}

fn read_entry(zip: &mut zip::ZipArchive<std::fs::File>, name: &str) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = Vec::new();
    zip.by_name(name).unwrap_or_else(|e| panic!("{name}: {e}")).read_to_end(&mut bytes).unwrap();
    bytes
}

#[tokio::test]
async fn an_altered_token_and_a_token_over_another_records_head_are_named_by_verify() {
    let tsa = LocalTsa::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &tsa);
    let archive = Archive::open(config.clone(), true).await.unwrap();
    let actor = Actor::operator(archive.tenant(None).await.unwrap());
    submit(&archive, &actor, 0..3).await;
    archive.timestamp_now().await.unwrap();
    assert!(archive.verify().await.unwrap().is_clean());
    archive.close().await.unwrap();
    drop(archive);

    // Someone with the keys writes two records of their own: the TSA's token with its time
    // changed, and the genuine token claimed for an earlier record.
    let master = MasterKey::load_or_create(&dir.path().join("data/master.key"), false).unwrap();
    let store = loop {
        // The committer lets the store go once the archive's last pipeline handle is dropped.
        match Store::open(StoreConfig::new(dir.path().join("data/volumes")), master.clone()) {
            Err(coffer_store::StoreError::Busy(_)) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            other => break other.unwrap(),
        }
    };
    let report = store.verify().unwrap();
    let genuine = report.timestamps[0].clone();
    let mut altered = genuine.timestamp.clone();
    let at = altered.token.windows(2).position(|w| w == [0x18, 0x0f]).expect("a GeneralizedTime in the TSTInfo") + 2;
    altered.token[at + 3] ^= 1; // the year's last digit
    store.append_timestamp(&genuine.volume, &altered).unwrap();
    let misplaced = Timestamp { covers: 0, ..genuine.timestamp.clone() };
    store.append_timestamp(&genuine.volume, &misplaced).unwrap();
    drop(store);

    let archive = Archive::open(config, false).await.unwrap();
    let outcome = archive.verify().await.unwrap();
    assert_eq!(outcome.problems.len(), 2, "{:?}", outcome.problems);
    let (altered_at, misplaced_at) = (format!("record {}:", genuine.seq + 1), format!("record {}:", genuine.seq + 2));
    assert!(
        outcome
            .problems
            .iter()
            .any(|p| p.contains(&altered_at) && p.contains("does not check out") && p.contains("altered")),
        "{:?}",
        outcome.problems
    );
    assert!(
        outcome.problems.iter().any(|p| p.contains(&misplaced_at) && p.contains("not the volume's after record 0")),
        "{:?}",
        outcome.problems
    );
    // The genuine token still proves the volume up to the record it covers.
    assert_eq!(outcome.timestamps[0].proven_through_record, Some(genuine.timestamp.covers));

    // Without the CA bundle the tokens cannot be checked, and verify says so.
    let mut bare = ArchiveConfig::new(dir.path().join("data"));
    bare.timestamp.ca_file = None;
    drop(archive);
    let archive = Archive::open(bare, false).await.unwrap();
    let outcome = archive.verify().await.unwrap();
    assert!(outcome.problems.iter().any(|p| p.contains("set timestamp.ca_file")), "{:?}", outcome.problems);
}

#[tokio::test]
async fn a_tsa_url_without_a_ca_bundle_is_refused_with_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ArchiveConfig::new(dir.path().join("data"));
    config.timestamp.tsa_url = Some("http://127.0.0.1:9/".into());
    let archive = Archive::open(config, true).await.unwrap();
    let e = archive.timestamper().err().expect("refused").to_string();
    assert!(e.contains("timestamp.ca_file"), "{e}");
}
