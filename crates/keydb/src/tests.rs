//! The store's own tests: layout, windows, readers, crashes and repair.

use super::applylog::{self, ApplyLog};
use super::pair::PairPaths;
use super::sort::SORT_RUN;
use super::*;
use crate::gdbm::{Gdbm, OpenMode};
use chrono::Utc;
use std::path::PathBuf;
use std::sync::Arc;

const TIMEOUT: Duration = Duration::from_secs(2);

fn record(fpr: &str, users: &[&str]) -> Record {
    Record {
        users: users.iter().map(|u| Email::parse(u).unwrap()).collect(),
        fingerprint: Fingerprint::parse(fpr).unwrap(),
        registered: Utc::now(),
        updated: Utc::now(),
        key_armor: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----".into(),
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    db: PathBuf,
    lock: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            db: dir.path().join("keys.gdbm"),
            lock: dir.path().join("keys.gdbm.lock"),
            dir,
        }
    }
    fn writer(&self) -> KeyStore {
        let mut store = KeyStore::open_write(&self.db, &self.lock, TIMEOUT).unwrap();
        store.begin_window().unwrap();
        store
    }
    fn reader(&self) -> KeyStore {
        KeyStore::open_read(&self.db, &self.lock, TIMEOUT).unwrap()
    }
    fn sorted(&self, store: &KeyStore) -> Vec<String> {
        store
            .fingerprints_by_first_address(self.dir.path())
            .unwrap()
            .map(|f| f.unwrap().to_string())
            .collect()
    }
}

const A: &str = "AAAA000011112222333344445555666677778888";
const B: &str = "BBBB000011112222333344445555666677778888";

#[test]
fn put_lookup_by_address_and_fingerprint() {
    let fx = Fixture::new();
    let mut store = fx.writer();
    store
        .put(&record(A, &["alice@example.com", "alice@example.org"]))
        .unwrap();
    store.end_window().unwrap();
    drop(store);
    let store = fx.reader();
    for query in ["alice@example.org", "ALICE@example.com", &format!("0x{A}")] {
        let query = Query::parse(query).unwrap();
        let found = store.record(&query).unwrap().unwrap();
        assert_eq!(found.fingerprint.as_str(), A);
        let mut out = b"USERINFO\n".to_vec();
        assert!(store.append_record(&query, &mut out).unwrap());
        assert_eq!(&out[9..], found.to_text().as_bytes());
    }
    let missing = Query::parse("bob@example.com").unwrap();
    assert!(store.record(&missing).unwrap().is_none());
    let mut out = Vec::new();
    assert!(!store.append_record(&missing, &mut out).unwrap());
    assert!(out.is_empty());
    assert_eq!(store.key_count().unwrap(), 1);
}

#[test]
fn put_releases_dropped_addresses_and_delete_cleans_up() {
    let fx = Fixture::new();
    let mut store = fx.writer();
    store.put(&record(A, &["a@example.com", "old@example.com"])).unwrap();
    store.put(&record(B, &["b@example.com"])).unwrap();
    store.put(&record(A, &["a@example.com"])).unwrap();
    let old = Email::parse("old@example.com").unwrap();
    assert_eq!(store.fingerprint_of(&old).unwrap(), None);
    assert!(store.delete(&Fingerprint::parse(A).unwrap()).unwrap());
    assert!(!store.delete(&Fingerprint::parse(A).unwrap()).unwrap());
    let a = Email::parse("a@example.com").unwrap();
    assert_eq!(store.fingerprint_of(&a).unwrap(), None);
    assert_eq!(fx.sorted(&store), [B]);
}

#[test]
fn dump_order_is_by_first_address_across_sorted_runs() {
    let fx = Fixture::new();
    let mut store = fx.writer();
    store.put(&record(B, &["zed@example.com"])).unwrap();
    store.put(&record(A, &["amy@example.com"])).unwrap();
    assert_eq!(fx.sorted(&store), [A, B]);
    let count = SORT_RUN * 2 + 17;
    for n in 0..count {
        let fpr = format!("{:040X}", n * 7919);
        store
            .put(&record(&fpr, &[&format!("u{}@example.org", n * 7919 % 100_003)]))
            .unwrap();
    }
    let sorted = store.fingerprints_by_first_address(fx.dir.path()).unwrap();
    assert_eq!(sorted.total(), count + 2);
    let firsts: Vec<String> = sorted
        .map(|f| store.record(&Query::Fingerprint(f.unwrap())).unwrap().unwrap().users[0].to_string())
        .collect();
    assert_eq!(firsts.len(), count + 2);
    assert!(firsts.windows(2).all(|w| w[0] <= w[1]), "sorted");
}

#[test]
fn writes_need_a_window() {
    let fx = Fixture::new();
    let mut store = KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap();
    let err = store.put(&record(A, &["a@example.com"])).unwrap_err();
    assert!(matches!(err, StoreError::NoWindow { .. }), "{err}");
    store.begin_window().unwrap();
    store.put(&record(A, &["a@example.com"])).unwrap();
    store.end_window().unwrap();
    assert!(store.put(&record(B, &["b@example.com"])).is_err());
}

#[test]
fn a_dump_does_not_keep_the_writer_out_and_reads_one_state() {
    let fx = Fixture::new();
    let mut store = fx.writer();
    store.put(&record(A, &["a@example.com"])).unwrap();
    store.end_window().unwrap();
    let dump = fx.reader();
    for (fpr, user) in [
        (B, "b@example.com"),
        ("CCCC000011112222333344445555666677778888", "c@example.com"),
    ] {
        store.begin_window().unwrap();
        store.put(&record(fpr, &[user])).unwrap();
        store.end_window().unwrap();
    }
    assert_eq!(dump.key_count().unwrap(), 1, "the dump still reads the state it opened");
    assert_eq!(fx.reader().key_count().unwrap(), 3);
}

#[test]
fn live_readers_go_on_during_a_window_and_see_it_once_switched_in() {
    let fx = Fixture::new();
    let mut live = LiveReader::new(&fx.db, &fx.lock, &Mappings::default());
    let a = Query::parse("a@example.com").unwrap();
    assert!(live.begin(TIMEOUT).unwrap().store().is_none(), "no database yet");
    let mut store = fx.writer();
    store.put(&record(A, &["a@example.com"])).unwrap();
    {
        let session = live.begin(Duration::from_millis(50)).unwrap();
        assert!(
            session.store().unwrap().record(&a).unwrap().is_none(),
            "the window is under way: readers go on, with the last state"
        );
    }
    store.end_window().unwrap();
    let session = live.begin(TIMEOUT).unwrap();
    assert!(session.store().unwrap().record(&a).unwrap().is_some(), "reopened");
    drop(session);
    live.yield_to_writer();
    let (switching, switched) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        store.begin_window().unwrap();
        store.put(&record(B, &["b@example.com"])).unwrap();
        store.end_window_announced(&|| switching.send(()).unwrap()).unwrap();
    });
    switched.recv().unwrap();
    writer.join().unwrap();
    let session = live.begin(TIMEOUT).unwrap();
    let b = Query::parse("b@example.com").unwrap();
    assert!(session.store().unwrap().record(&b).unwrap().is_some());
}

/// Puts one window of `count` keys with addresses `w<window>n<n>@example.org`.
fn put_window(store: &mut KeyStore, window: usize, count: usize) {
    store.begin_window().unwrap();
    for n in 0..count {
        let fpr = format!("{:040X}", 500_000 + window * 1000 + n);
        store
            .put(&record(&fpr, &[&format!("w{window}n{n}@example.org")]))
            .unwrap();
    }
    store.end_window().unwrap();
}

#[test]
fn live_readers_share_one_mapping_per_file_and_keep_it_across_switches() {
    let fx = Fixture::new();
    // Large enough that a small window is replayed into the standby, not copied.
    put_window(&mut KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap(), 0, 400);
    let maps = Mappings::default();
    let mut one = LiveReader::new(&fx.db, &fx.lock, &maps);
    let mut two = LiveReader::new(&fx.db, &fx.lock, &maps);
    let found = |live: &mut LiveReader, address: &str| {
        let session = live.begin(TIMEOUT).unwrap();
        let store = session.store().unwrap();
        assert!(store.table.is_some(), "read through the mapping");
        let found = store.record(&Query::parse(address).unwrap()).unwrap().is_some();
        assert!(
            store.db.get().is_none(),
            "libgdbm is left closed while the mapping answers"
        );
        found
    };
    assert!(found(&mut one, "w0n3@example.org") && found(&mut two, "w0n399@example.org"));
    let first = maps.kept();
    assert_eq!(first.len(), 1, "the two readers share one mapping");
    // Window 1 goes to the other file, window 2 back to the first, which
    // the writer caught up in place and which grew meanwhile.
    let mut store = KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap();
    put_window(&mut store, 1, 2);
    assert!(found(&mut two, "w1n1@example.org"));
    put_window(&mut store, 2, 2);
    assert!(found(&mut one, "w1n0@example.org") && found(&mut one, "w2n1@example.org"));
    assert!(found(&mut two, "w2n0@example.org") && !found(&mut two, "w3n0@example.org"));
    let kept = maps.kept();
    assert_eq!(kept.len(), 2, "one mapping per file of the pair");
    assert!(
        kept.iter().any(|map| Arc::ptr_eq(map, &first[0])),
        "the first file's mapping was kept across both switches"
    );
    // A dump holds the active file, so the writer takes a fresh copy as
    // its standby: the file it replaced is not kept mapped.
    let dump = fx.reader();
    put_window(&mut store, 3, 2);
    assert!(found(&mut one, "w3n1@example.org"));
    let kept = maps.kept();
    assert_eq!(kept.len(), 1, "only the active file is mapped now");
    assert!(!Arc::ptr_eq(&kept[0], &first[0]));
    drop(dump);
}

/// Many switches, some onto a freshly copied standby (a dump holding
/// the file): readers sharing their mappings always find every key
/// written so far, through the mapping, and never keep more than the
/// pair's two files mapped.
#[test]
fn live_readers_sharing_mappings_stay_right_over_many_switches() {
    let fx = Fixture::new();
    let mut store = KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap();
    put_window(&mut store, 0, 400);
    let maps = Mappings::default();
    let mut readers = [
        LiveReader::new(&fx.db, &fx.lock, &maps),
        LiveReader::new(&fx.db, &fx.lock, &maps),
    ];
    let mut written = vec![(0, 400)];
    for window in 1..40 {
        let dump = (window % 7 == 0).then(|| fx.reader());
        put_window(&mut store, window, 1 + window % 3);
        written.push((window, 1 + window % 3));
        drop(dump);
        let reader = &mut readers[window % 2];
        let session = reader.begin(TIMEOUT).unwrap();
        let store = session.store().unwrap();
        assert!(store.table.is_some());
        for &(window, count) in &written {
            for n in 0..count {
                let query = Query::parse(&format!("w{window}n{n}@example.org")).unwrap();
                assert!(store.record(&query).unwrap().is_some(), "w{window}n{n}");
            }
        }
        assert!(store
            .record(&Query::parse("nobody@example.org").unwrap())
            .unwrap()
            .is_none());
        drop(session);
        assert!(
            maps.kept().len() <= 2,
            "window {window}: {} mappings",
            maps.kept().len()
        );
    }
}

#[test]
fn key_id_index_lists_owners() {
    let fx = Fixture::new();
    let mut store = fx.writer();
    let a = Fingerprint::parse(A).unwrap();
    let b = Fingerprint::parse(B).unwrap();
    let ids = ["5555666677778888".to_string(), "0123456789ABCDEF".to_string()];
    store.index_key_ids(&a, &ids).unwrap();
    store.index_key_ids(&b, &ids[1..]).unwrap();
    store.index_key_ids(&b, &ids[1..]).unwrap();
    assert_eq!(
        store.fingerprints_with_key_id("0123456789abcdef").unwrap(),
        [a.clone(), b.clone()]
    );
    store.unindex_key_ids(&a, &ids).unwrap();
    assert!(store.fingerprints_with_key_id("5555666677778888").unwrap().is_empty());
    assert_eq!(store.fingerprints_with_key_id("0123456789ABCDEF").unwrap(), [b]);
    assert_eq!(store.key_count().unwrap(), 0, "index entries are not keys");
}

#[test]
fn missing_database_is_recognised() {
    let fx = Fixture::new();
    let err = KeyStore::open_read(&fx.db, &fx.lock, TIMEOUT).err().unwrap();
    assert!(err.is_missing(), "{err}");
}

/// Every item of the file readers see, for comparing two databases.
fn items_of(fx: &Fixture) -> Vec<Op> {
    let mut items = verify::items(&fx.reader()).unwrap();
    items.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    items
}

fn fill(fx: &Fixture, windows: usize) {
    let mut store = KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap();
    for window in 0..windows {
        store.begin_window().unwrap();
        for n in 0..20 {
            let fpr = format!("{:040X}", window * 1000 + n);
            store
                .put(&record(&fpr, &[&format!("u{window}x{n}@example.org")]))
                .unwrap();
        }
        if window > 0 {
            store
                .delete(&Fingerprint::parse(&format!("{:040X}", (window - 1) * 1000)).unwrap())
                .unwrap();
        }
        store.end_window().unwrap();
    }
}

#[test]
fn a_window_never_switched_in_leaves_the_last_state() {
    let fx = Fixture::new();
    fill(&fx, 3);
    let before = items_of(&fx);
    // Killed in the middle of a window: the process goes without ending it.
    let mut store = KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap();
    store.begin_window().unwrap();
    store.put(&record(A, &["half@example.com"])).unwrap();
    drop(store);
    assert_eq!(items_of(&fx), before);
    let mut store = KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap();
    assert_eq!(
        store.record(&Query::parse("half@example.com").unwrap()).unwrap(),
        None,
        "the standby was copied afresh"
    );
    store.begin_window().unwrap();
    store.put(&record(B, &["next@example.com"])).unwrap();
    store.end_window().unwrap();
    assert_eq!(
        fx.reader().key_count().unwrap(),
        before
            .iter()
            .filter(|op| matches!(op, Op::Put(k, _) if k.starts_with(b"key:")))
            .count()
            + 1
    );
}

#[test]
fn an_orphaned_log_entry_is_cut_off() {
    let fx = Fixture::new();
    fill(&fx, 2);
    let paths = PairPaths::new(&fx.db, &fx.lock);
    let logged = std::fs::metadata(&paths.log).unwrap().len();
    // Killed between the log's fsync and the switch: the entry is there,
    // the window is not.
    let log = ApplyLog::new(&paths.log);
    log.append(logged, applylog::EntryKind::Window, 3, &[Op::Delete(b"x".to_vec())])
        .unwrap();
    drop(KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap());
    assert_eq!(std::fs::metadata(&paths.log).unwrap().len(), logged);
}

#[test]
fn junk_in_the_database_is_found_and_repaired_from_the_log() {
    let fx = Fixture::new();
    fill(&fx, 5);
    let before = items_of(&fx);
    let length = std::fs::metadata(&fx.db).unwrap().len();
    let mut bytes = std::fs::read(&fx.db).unwrap();
    // Overwrite every 4 KiB block but the first with junk.
    for block in (4096..length as usize).step_by(4096) {
        for byte in &mut bytes[block..(block + 4096).min(length as usize)] {
            *byte = 0x5a;
        }
    }
    std::fs::write(&fx.db, &bytes).unwrap();
    let err = match KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT) {
        Err(err) => err,
        Ok(store) => {
            drop(store);
            verify::check(&fx.reader()).err().unwrap()
        }
    };
    assert!(err.is_damage(), "{err}");
    let report = KeyStore::repair(&fx.db, &fx.lock, TIMEOUT, true).unwrap();
    assert!(report.source.contains("apply log"), "{}", report.source);
    assert!(report.kept.to_string_lossy().contains(".damaged-"));
    assert!(report.kept.exists());
    assert_eq!(items_of(&fx), before);
    let mut store = KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap();
    store.begin_window().unwrap();
    store.put(&record(A, &["after@example.com"])).unwrap();
    store.end_window().unwrap();
    verify::check(&fx.reader()).unwrap();
}

#[test]
fn without_a_log_a_checked_file_is_the_source() {
    let fx = Fixture::new();
    fill(&fx, 3);
    let before = items_of(&fx);
    let paths = PairPaths::new(&fx.db, &fx.lock);
    std::fs::remove_file(&paths.log).unwrap();
    let report = KeyStore::repair(&fx.db, &fx.lock, TIMEOUT, false).unwrap();
    assert!(report.source.contains("checked item by item"), "{}", report.source);
    assert!(report.kept.to_string_lossy().contains(".replaced-"));
    assert_eq!(items_of(&fx), before);
    // The log starts again with a base entry, so it can rebuild from here.
    fill(&fx, 1);
    let after = items_of(&fx);
    KeyStore::repair(&fx.db, &fx.lock, TIMEOUT, false).unwrap();
    assert_eq!(items_of(&fx), after);
}

/// Flips one bit near the end of the value stored under `key`, in place.
fn damage(fx: &Fixture, key: &str) {
    let mut db = Gdbm::open(&fx.db, OpenMode::WriterCreate).unwrap();
    let mut stored = db.fetch(key.as_bytes()).unwrap().unwrap();
    let last = stored.len() - 10;
    stored[last] ^= 0x01;
    db.replace(key.as_bytes(), &stored).unwrap();
}

#[test]
fn a_damaged_value_is_damage_not_data() {
    let fx = Fixture::new();
    fill(&fx, 1);
    damage(&fx, &format!("key:{:040X}", 3));
    let by_fingerprint = Query::parse(&format!("0x{:040X}", 3)).unwrap();
    let by_address = Query::parse("u0x3@example.org").unwrap();
    let reader = fx.reader();
    let err = reader.record(&by_fingerprint).unwrap_err();
    assert!(err.is_damage() && err.to_string().contains("checksum"), "{err}");
    // The address entry's own copy is whole and checksummed: still served.
    assert!(reader.record(&by_address).unwrap().is_some());
    drop(reader);
    damage(&fx, "user:u0x3@example.org");
    let reader = fx.reader();
    let mut out = Vec::new();
    assert!(reader.append_record(&by_address, &mut out).is_err());
    // keyserv's reader, through the mapped table, finds the same damage.
    let mut live = LiveReader::new(&fx.db, &fx.lock, &Mappings::default());
    let session = live.begin(TIMEOUT).unwrap();
    let store = session.store().unwrap();
    assert!(store.table.is_some(), "keyserv's reader maps the file");
    assert!(store.append_record(&by_address, &mut out).unwrap_err().is_damage());
    assert!(store.append_record(&by_fingerprint, &mut out).unwrap_err().is_damage());
    assert!(out.is_empty());
    let other = Query::parse("u0x4@example.org").unwrap();
    assert!(store.append_record(&other, &mut out).unwrap());
    assert_eq!(out, reader.record_text(&other).unwrap().unwrap());
    assert!(!store
        .append_record(&Query::parse("nobody@example.org").unwrap(), &mut out)
        .unwrap());
}

#[test]
fn an_address_entry_of_the_earlier_layout_still_reads() {
    let fx = Fixture::new();
    fill(&fx, 1);
    let text = fx
        .reader()
        .record_text(&Query::parse("u0x3@example.org").unwrap())
        .unwrap();
    let mut db = Gdbm::open(&fx.db, OpenMode::WriterCreate).unwrap();
    db.replace(b"user:u0x3@example.org", format!("{:040X}", 3).as_bytes())
        .unwrap();
    drop(db);
    let mut live = LiveReader::new(&fx.db, &fx.lock, &Mappings::default());
    let session = live.begin(TIMEOUT).unwrap();
    let store = session.store().unwrap();
    let query = Query::parse("u0x3@example.org").unwrap();
    assert_eq!(store.record_text(&query).unwrap(), text);
    assert_eq!(
        store
            .fingerprint_of(&Email::parse("u0x3@example.org").unwrap())
            .unwrap(),
        Some(Fingerprint::parse(&format!("{:040X}", 3)).unwrap())
    );
    assert!(verify::check(store).is_ok());
}

#[test]
fn an_address_entry_whose_copy_differs_from_the_record_fails_the_check() {
    let fx = Fixture::new();
    fill(&fx, 1);
    let stale = fx
        .reader()
        .record(&Query::parse("u0x3@example.org").unwrap())
        .unwrap()
        .unwrap();
    let mut store = fx.writer();
    let mut moved = stale.clone();
    moved.key_armor = moved.key_armor.replace("AAAA", "BBBB");
    store.put(&moved).unwrap();
    store.end_window().unwrap();
    drop(store);
    let entry = address_entry(&stale.fingerprint, stale.to_text().as_bytes());
    let mut db = Gdbm::open(&fx.db, OpenMode::WriterCreate).unwrap();
    db.replace(b"user:u0x3@example.org", &value::seal(&entry)).unwrap();
    drop(db);
    let err = verify::check(&fx.reader()).unwrap_err();
    assert!(err.to_string().contains("differs"), "{err}");
}

#[test]
fn a_log_cut_short_by_hand_starts_again_from_a_base_entry() {
    let fx = Fixture::new();
    fill(&fx, 3);
    let before = items_of(&fx);
    let paths = PairPaths::new(&fx.db, &fx.lock);
    let length = std::fs::metadata(&paths.log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&paths.log)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    fill(&fx, 1);
    let after = items_of(&fx);
    assert_ne!(after, before);
    let report = KeyStore::repair(&fx.db, &fx.lock, TIMEOUT, false).unwrap();
    assert!(report.source.contains("apply log"), "{}", report.source);
    assert_eq!(items_of(&fx), after);
}

#[test]
fn a_window_too_large_for_memory_is_logged_as_it_comes_and_written_out_early() {
    let fx = Fixture::new();
    fill(&fx, 1);
    let mut store = KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap();
    store.stream_windows_past(10_000);
    store.begin_window().unwrap();
    for n in 0..500 {
        store
            .put(&record(
                &format!("{:040X}", 900_000 + n),
                &[&format!("big{n}@example.org")],
            ))
            .unwrap();
    }
    store.end_window().unwrap();
    assert!(store.writeback_requested(), "the disk was asked to catch up");
    drop(store);
    let after = items_of(&fx);
    assert_eq!(fx.reader().key_count().unwrap(), 520);
    // The standby was copied afresh: the next window starts from it.
    fill(&fx, 1);
    let paths = PairPaths::new(&fx.db, &fx.lock);
    let standby = KeyStore::reading(
        Gdbm::open(&paths.standby, OpenMode::ReaderUnlocked).unwrap(),
        &paths.standby,
    );
    assert_eq!(standby.key_count().unwrap(), 520);
    drop(standby);
    let again = items_of(&fx);
    assert_ne!(again, after);
    KeyStore::repair(&fx.db, &fx.lock, TIMEOUT, false).unwrap();
    assert_eq!(items_of(&fx), again, "the streamed entry replays");
}
