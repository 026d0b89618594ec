//! The request rules' tests: the first on a GDBM store, as before the
//! rules were generic; the rest on a [`MemoryDb`], without files.

use super::add::key_fingerprint;
use super::*;
use chrono::Utc;
use ripem_core::types::Query;
use ripem_keydb::KeyStore;
use ripem_openpgp::KeyPolicy;
use ripem_openpgp::{generate_key, KeySpec};
use std::time::Duration;

fn store(dir: &tempfile::TempDir) -> KeyStore {
    let mut store = KeyStore::open_write(
        &dir.path().join("keys.gdbm"),
        &dir.path().join("keys.gdbm.lock"),
        Duration::from_secs(2),
    )
    .expect("open");
    store.begin_window().expect("window");
    store
}

#[test]
fn an_expired_key_is_refused_when_new_and_merged_when_registered() {
    let policy = KeyPolicy::default();
    let mut spec = KeySpec::ed25519(&["Old <old@example.org>", "Old <old@example.net>"]);
    spec.expires_after = Some(Duration::from_secs(365 * 86400));
    let full = generate_key(rand::thread_rng(), &spec).expect("key").to_public_key();
    let while_valid = spec.created + chrono::Duration::days(1);
    let after_expiry = spec.created + chrono::Duration::days(400);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = store(&dir);

    let late = candidate(full.clone(), &policy, after_expiry);
    assert!(matches!(late, Candidate::Expired { .. }));
    let outcome = apply_candidate(&mut store, &late, &policy, after_expiry).expect("apply");
    assert!(matches!(&outcome, KeyOutcome::Refused { reason, .. } if reason == "the key has expired"));

    // Registered while valid with one user ID...
    let mut first = full.clone();
    first.details.users.truncate(1);
    let early = candidate(first, &policy, while_valid);
    assert!(matches!(early, Candidate::Key(_)));
    let outcome = apply_candidate(&mut store, &early, &policy, while_valid).expect("apply");
    assert!(matches!(outcome, KeyOutcome::Applied { .. }));
    // ...an expired copy with both is checked in full and merged.
    let outcome = apply_candidate(&mut store, &late, &policy, after_expiry).expect("apply");
    assert!(matches!(outcome, KeyOutcome::Applied { .. }), "{outcome:?}");
    let record = store
        .record(&Query::Fingerprint(key_fingerprint(&full).expect("fingerprint")))
        .expect("read")
        .expect("registered");
    assert_eq!(
        openpgp::read_stored_key(&record.key_armor)
            .expect("stored")
            .signed_public_key()
            .details
            .users
            .len(),
        2
    );
}

#[test]
fn keys_past_the_limit_are_not_parsed() {
    let policy = KeyPolicy::default();
    let armored: Vec<String> = (0..3)
        .map(|i| {
            let spec = KeySpec::ed25519(&[&format!("K{i} <k{i}@example.org>")]);
            let key = generate_key(rand::thread_rng(), &spec).expect("key").to_public_key();
            openpgp::check_key(key, &policy).expect("check").to_armored()
        })
        .collect();
    let texts = [format!("{}\njunk\n", armored.join("\n"))];
    let add = prepare_add(&texts, &[], &policy, Utc::now(), 2);
    assert_eq!(add.candidates.len(), 2);
    assert!(add.candidates.iter().all(|c| matches!(c, Candidate::Key(_))));
    assert_eq!(
        add.not_considered_line().as_deref(),
        Some("1 further keys not considered: at most 2 keys per request")
    );
    let all = prepare_add(&texts, &[], &policy, Utc::now(), 100);
    assert_eq!((all.candidates.len(), all.not_considered_line()), (3, None));
}
