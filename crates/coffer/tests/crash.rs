//! Crash safety: kill -9 in the middle of a large import, then restart. Everything the import had
//! reported as stored is there, `verify` is clean, and finishing the import stores nothing twice.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use coffer_testkit::corpus::Generator;
use common::{Coffer, receipts, zip_entries};

const MESSAGES: usize = 15_000;
const KILL_AFTER: usize = 5_000;

#[test]
fn kill_9_during_import_loses_nothing_that_was_reported_stored() {
    let c = Coffer::new();
    let mut generator = Generator::new(99);
    let mut mbox = Vec::new();
    for i in 0..MESSAGES {
        let g = generator.message(i);
        coffer_archive::export::write_mbox_entry(&mut mbox, &g.truth.from, g.truth.date, &g.raw).unwrap();
    }
    let path = c.dir.path().join("big.mbox");
    std::fs::write(&path, &mbox).unwrap();

    let mut child = c
        .command()
        .args(["import", "-v", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reported = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        reported.push(line.unwrap());
        if reported.len() == KILL_AFTER {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    // Lines already written before the kill were reported too.
    reported.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    assert!(!status.success(), "the import was killed, not finished");
    let reported = receipts(&reported.join("\n"));
    assert!(reported.len() >= KILL_AFTER && reported.len() < MESSAGES, "killed mid-import: {}", reported.len());

    let verify = c.ok(&["verify"]);
    assert!(verify.contains("all intact"), "{verify}");

    // Every message reported stored is in the archive (found through the catalog and the store).
    let zip = c.dir.path().join("after-crash.zip");
    c.ok(&["reindex"]);
    c.ok(&["export", "--format", "eml-zip", "--out", zip.to_str().unwrap(), ""]);
    let sums = String::from_utf8(zip_entries(&zip)["SHA256SUMS"].clone()).unwrap();
    let present: BTreeSet<&str> = sums.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    for (_, id, sha, origin) in &reported {
        assert!(present.contains(sha.as_str()), "{origin} (id {id}) was reported stored but is missing");
    }

    // Finishing the import completes the archive without storing anything twice.
    let out = c.run(&["import", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.count(""), MESSAGES);
    let verify = c.ok(&["verify"]);
    assert!(verify.contains(&format!("{MESSAGES} catalog messages")) && verify.contains("all intact"), "{verify}");
}
