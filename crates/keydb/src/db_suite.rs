//! One suite of behaviour tests for [`KeyDb`], run on every implementation.
//!
//! Each test is a generic function over the trait, written once; the
//! `suite!` macro runs it on a fresh [`MemoryDb`] and on a fresh GDBM
//! [`KeyStore`] (in a temporary directory, inside a write window), so the
//! two stores are held to the same contract: lookups of what is missing,
//! put and get, overwriting, the address index, delete, the key-ID index.

use chrono::{DateTime, TimeZone, Utc};
use std::time::Duration;

use super::*;

const A: &str = "AAAA000011112222333344445555666677778888";
const B: &str = "BBBB000011112222333344445555666677778888";
const KEY_ID: &str = "0011223344556677";

fn time(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds, 0).single().unwrap()
}

fn fpr(hex: &str) -> Fingerprint {
    Fingerprint::parse(hex).unwrap()
}

fn email(address: &str) -> Email {
    Email::parse(address).unwrap()
}

fn record(hex: &str, users: &[&str]) -> Record {
    Record {
        users: users.iter().map(|user| email(user)).collect(),
        fingerprint: fpr(hex),
        registered: time(0),
        updated: time(60),
        key_armor: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----".into(),
    }
}

fn by_fpr(hex: &str) -> Query {
    Query::Fingerprint(fpr(hex))
}

fn owner<D: KeyDb>(db: &D, address: &str) -> Option<String> {
    db.fingerprint_of(&email(address)).unwrap().map(|f| f.to_string())
}

fn missing_keys_are_none_not_errors<D: KeyDb>(db: &mut D) {
    assert_eq!(db.record(&by_fpr(A)).unwrap(), None);
    assert_eq!(db.record(&Query::Email(email("a@example.org"))).unwrap(), None);
    assert_eq!(db.record_text(&by_fpr(A)).unwrap(), None);
    assert_eq!(db.fingerprint_of(&email("a@example.org")).unwrap(), None);
    assert!(db.fingerprints_with_key_id(KEY_ID).unwrap().is_empty());
    assert_eq!(db.key_count().unwrap(), 0);
    assert!(!db.delete(&fpr(A)).unwrap());
    db.unindex_key_ids(&fpr(A), &[KEY_ID.into()]).unwrap();
    assert!(db.fingerprints_with_key_id(KEY_ID).unwrap().is_empty());
}

fn put_then_get_by_fingerprint_and_address<D: KeyDb>(db: &mut D) {
    let alice = record(A, &["a@example.org", "a@example.net"]);
    db.put(&alice).unwrap();
    assert_eq!(db.record(&by_fpr(A)).unwrap().as_ref(), Some(&alice));
    assert_eq!(
        db.record(&Query::Email(email("a@example.net"))).unwrap().as_ref(),
        Some(&alice)
    );
    assert_eq!(db.record_text(&by_fpr(A)).unwrap(), Some(alice.to_text().into_bytes()));
    assert_eq!(
        db.record_text(&Query::Email(email("a@example.org"))).unwrap(),
        Some(alice.to_text().into_bytes())
    );
    assert_eq!(owner(db, "a@example.org").as_deref(), Some(A));
    assert_eq!(db.record(&by_fpr(B)).unwrap(), None);
    assert_eq!(db.key_count().unwrap(), 1);
}

fn overwrite_replaces_the_record_and_releases_dropped_addresses<D: KeyDb>(db: &mut D) {
    db.put(&record(A, &["a@example.org", "b@example.org"])).unwrap();
    let mut second = record(A, &["b@example.org", "c@example.org"]);
    second.updated = time(120);
    db.put(&second).unwrap();
    assert_eq!(db.record(&by_fpr(A)).unwrap().as_ref(), Some(&second));
    assert_eq!(owner(db, "a@example.org"), None);
    assert_eq!(owner(db, "b@example.org").as_deref(), Some(A));
    assert_eq!(owner(db, "c@example.org").as_deref(), Some(A));
    assert_eq!(db.key_count().unwrap(), 1);
}

fn an_address_released_only_while_it_points_at_its_key<D: KeyDb>(db: &mut D) {
    db.put(&record(A, &["a@example.org", "x@example.org"])).unwrap();
    // put does not judge: the address now points at B (the rules decide).
    db.put(&record(B, &["a@example.org"])).unwrap();
    assert_eq!(owner(db, "a@example.org").as_deref(), Some(B));
    // A dropping it, or being deleted, leaves B's entry alone.
    db.put(&record(A, &["x@example.org"])).unwrap();
    assert_eq!(owner(db, "a@example.org").as_deref(), Some(B));
    db.put(&record(A, &["a@example.org", "x@example.org"])).unwrap();
    db.put(&record(B, &["a@example.org"])).unwrap();
    assert!(db.delete(&fpr(A)).unwrap());
    assert_eq!(owner(db, "a@example.org").as_deref(), Some(B));
    assert_eq!(owner(db, "x@example.org"), None);
    assert_eq!(db.key_count().unwrap(), 1);
}

fn delete_removes_the_record_and_its_addresses<D: KeyDb>(db: &mut D) {
    db.put(&record(A, &["a@example.org", "a@example.net"])).unwrap();
    db.put(&record(B, &["b@example.org"])).unwrap();
    assert!(db.delete(&fpr(A)).unwrap());
    assert_eq!(db.record(&by_fpr(A)).unwrap(), None);
    assert_eq!(db.record(&Query::Email(email("a@example.org"))).unwrap(), None);
    assert_eq!(owner(db, "a@example.org"), None);
    assert_eq!(owner(db, "a@example.net"), None);
    assert_eq!(owner(db, "b@example.org").as_deref(), Some(B));
    assert_eq!(db.key_count().unwrap(), 1);
    assert!(!db.delete(&fpr(A)).unwrap());
}

fn the_key_id_index_lists_each_key_once_in_order<D: KeyDb>(db: &mut D) {
    let other = "8899AABBCCDDEEFF".to_string();
    db.index_key_ids(&fpr(A), &[KEY_ID.into(), other.clone()]).unwrap();
    db.index_key_ids(&fpr(B), &[KEY_ID.to_lowercase()]).unwrap();
    db.index_key_ids(&fpr(A), &[KEY_ID.into()]).unwrap();
    assert_eq!(db.fingerprints_with_key_id(KEY_ID).unwrap(), vec![fpr(A), fpr(B)]);
    assert_eq!(
        db.fingerprints_with_key_id(&other.to_lowercase()).unwrap(),
        vec![fpr(A)]
    );
    db.unindex_key_ids(&fpr(A), &[KEY_ID.into(), other.clone()]).unwrap();
    assert_eq!(db.fingerprints_with_key_id(KEY_ID).unwrap(), vec![fpr(B)]);
    assert!(db.fingerprints_with_key_id(&other).unwrap().is_empty());
    db.unindex_key_ids(&fpr(B), &[KEY_ID.into()]).unwrap();
    assert!(db.fingerprints_with_key_id(KEY_ID).unwrap().is_empty());
}

fn put_and_delete_leave_the_key_id_index_alone<D: KeyDb>(db: &mut D) {
    db.put(&record(A, &["a@example.org"])).unwrap();
    assert!(db.fingerprints_with_key_id(KEY_ID).unwrap().is_empty());
    db.index_key_ids(&fpr(A), &[KEY_ID.into()]).unwrap();
    assert!(db.delete(&fpr(A)).unwrap());
    assert_eq!(db.fingerprints_with_key_id(KEY_ID).unwrap(), vec![fpr(A)]);
}

fn notes_are_kept_apart_from_the_keys<D: KeyDb>(db: &mut D) {
    assert_eq!(db.note("clock").unwrap(), None);
    db.set_note("update:b", b"two").unwrap();
    db.set_note("update:a", b"one").unwrap();
    db.set_note("clock", b"17").unwrap();
    db.put(&record(A, &["a@example.org"])).unwrap();
    assert_eq!(db.note("update:a").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(db.note_names("update:").unwrap(), vec!["update:a", "update:b"]);
    assert_eq!(db.key_count().unwrap(), 1, "notes are not keys");
    assert!(db.delete_note("update:a").unwrap());
    assert!(!db.delete_note("update:a").unwrap());
    assert_eq!(db.note_names("update:").unwrap(), vec!["update:b"]);
}

/// A GDBM store in `dir`, inside a write window.
fn gdbm_store(dir: &tempfile::TempDir) -> KeyStore {
    let mut store = KeyStore::open_write(
        &dir.path().join("keys.gdbm"),
        &dir.path().join("keys.gdbm.lock"),
        Duration::from_secs(2),
    )
    .unwrap();
    store.begin_window().unwrap();
    store
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[test]
                fn $test() {
                    super::$test(&mut crate::MemoryDb::new());
                }
            )*
        }
        mod gdbm {
            $(
                #[test]
                fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$test(&mut super::gdbm_store(&dir));
                }
            )*
        }
    };
}

suite!(
    missing_keys_are_none_not_errors,
    put_then_get_by_fingerprint_and_address,
    overwrite_replaces_the_record_and_releases_dropped_addresses,
    an_address_released_only_while_it_points_at_its_key,
    delete_removes_the_record_and_its_addresses,
    the_key_id_index_lists_each_key_once_in_order,
    put_and_delete_leave_the_key_id_index_alone,
    notes_are_kept_apart_from_the_keys,
);
