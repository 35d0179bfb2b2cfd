//! The contract every storage backend keeps, run against each one (the local disk today; object
//! storage joins this list when it lands).

use std::sync::Arc;

use coffer_store::{LocalDisk, MasterKey, Payload, SegmentStore, Store, StoreConfig};

fn backends(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn SegmentStore>)> {
    vec![("local disk", Arc::new(LocalDisk::new(dir.join("volumes"))))]
}

#[test]
fn a_backend_claims_each_volume_once_and_keeps_segments_durable_and_cut_only_when_told() {
    let dir = tempfile::tempdir().unwrap();
    for (name, b) in backends(dir.path()) {
        assert!(b.volumes().unwrap().is_empty(), "{name}");
        assert!(b.claim_volume("t1-v000001").unwrap(), "{name}: the first claim wins");
        assert!(!b.claim_volume("t1-v000001").unwrap(), "{name}: a second claim of the same id loses");
        assert_eq!(b.read_meta("t1-v000001").unwrap(), None, "{name}: claimed, not yet described");
        b.write_meta("t1-v000001", b"{\"v\":1}").unwrap();
        b.write_meta("t1-v000001", b"{\"v\":2}").unwrap();
        assert_eq!(b.read_meta("t1-v000001").unwrap().unwrap(), b"{\"v\":2}", "{name}");
        assert_eq!(b.volumes().unwrap(), ["t1-v000001"], "{name}");

        let mut seg = b.create_segment("t1-v000001", 1, b"HEADER").unwrap();
        assert!(b.create_segment("t1-v000001", 1, b"AGAIN").is_err(), "{name}: a segment is never made twice");
        seg.append(b"one").unwrap();
        seg.append(b"two").unwrap();
        assert_eq!(b.segment_len("t1-v000001", 1).unwrap(), 12, "{name}");
        assert_eq!(b.read_at("t1-v000001", 1, 6, 3).unwrap(), b"one", "{name}");
        assert_eq!(b.read_segment("t1-v000001", 1).unwrap(), b"HEADERonetwo", "{name}");
        b.cut("t1-v000001", 1, 9).unwrap();
        assert_eq!(b.read_segment("t1-v000001", 1).unwrap(), b"HEADERone", "{name}");
        let mut again = b.append_to("t1-v000001", 1).unwrap();
        again.append(b"three").unwrap();
        assert_eq!(b.read_segment("t1-v000001", 1).unwrap(), b"HEADERonethree", "{name}");
        b.create_segment("t1-v000001", 2, b"H2").unwrap();
        assert_eq!(b.segments("t1-v000001").unwrap(), [1, 2], "{name}");
        assert!(b.read_at("t1-v000001", 1, 100, 4).is_err(), "{name}: a read past the end fails");
    }
}

#[test]
fn a_backend_keeps_a_keyring_written_at_offsets_read_short_at_its_end_and_cut_when_told() {
    let dir = tempfile::tempdir().unwrap();
    for (name, b) in backends(dir.path()) {
        assert!(b.claim_volume("t1-v000001").unwrap());
        assert!(b.read_keyring("t1-v000001", 0, 80).unwrap().is_empty(), "{name}: no keyring yet");
        b.write_keyring("t1-v000001", 0, b"aaaabbbb").unwrap();
        b.write_keyring("t1-v000001", 8, b"cccc").unwrap();
        b.write_keyring("t1-v000001", 4, b"BBBB").unwrap();
        assert_eq!(b.read_keyring("t1-v000001", 0, 100).unwrap(), b"aaaaBBBBcccc", "{name}: rewritten in place");
        assert_eq!(b.read_keyring("t1-v000001", 8, 100).unwrap(), b"cccc", "{name}: short at the end");
        assert!(b.read_keyring("t1-v000001", 50, 4).unwrap().is_empty(), "{name}: nothing past the end");
        assert!(b.read_keyring("t1-v000001", u64::MAX - 2, usize::MAX).unwrap().is_empty(), "{name}");
        b.cut_keyring("t1-v000001", 6).unwrap();
        assert_eq!(b.read_keyring("t1-v000001", 0, 100).unwrap(), b"aaaaBB", "{name}");
        b.cut_keyring("t1-v000001", 60).unwrap();
        assert_eq!(b.read_keyring("t1-v000001", 0, 100).unwrap(), b"aaaaBB", "{name}: a cut never lengthens");
    }
}

#[test]
fn the_store_writes_recovers_reads_and_verifies_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in backends(dir.path()) {
        let master = MasterKey::load_or_create(&dir.path().join("master.key"), true).unwrap();
        let cfg = StoreConfig::new(dir.path().join("volumes"));
        let at = {
            let store = Store::open_on(cfg.clone(), backend.clone(), master.clone()).unwrap();
            let at = store.append(1, &[Payload::seal(b"first"), Payload::seal(b"second")]).unwrap();
            store.close_volume(&at[0].volume).unwrap();
            let later = store.append(1, &[Payload::seal(b"third")]).unwrap();
            assert_ne!(later[0].volume, at[0].volume, "{name}: a closed volume takes no more records");
            at
        };
        let store = Store::open_on(cfg, backend.clone(), master).unwrap();
        assert_eq!(store.read(&at[1]).unwrap(), b"second", "{name}");
        let report = store.verify().unwrap();
        assert!(report.problems.is_empty(), "{name}: {:?}", report.problems);
        assert_eq!((report.volumes, report.records), (2, 3), "{name}");
    }
}

/// Two writers sharing a backend (two nodes, or a restored copy beside the original) can never
/// both take one volume id: a taken number makes the writer claim the next one.
#[test]
fn a_volume_number_taken_by_another_writer_is_skipped_not_shared() {
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in backends(dir.path()) {
        assert!(backend.claim_volume("t7-v000001").unwrap());
        let master = MasterKey::load_or_create(&dir.path().join("master.key"), true).unwrap();
        let store = Store::open_on(StoreConfig::new(dir.path().join("volumes")), backend.clone(), master).unwrap();
        let at = store.append(7, &[Payload::seal(b"mine")]).unwrap();
        assert_eq!(at[0].volume, "t7-v000002", "{name}");
        assert_eq!(store.read(&at[0]).unwrap(), b"mine", "{name}");
    }
}
