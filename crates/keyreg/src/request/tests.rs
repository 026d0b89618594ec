//! The request rules' tests: the two from before the split (one on a
//! `KeyStore`, as it was), then the rules on a [`MemoryDb`], without files.

use super::*;
use chrono::Utc;
use ripem_core::types::Query;
use ripem_keydb::KeyStore;
use ripem_openpgp::{generate_key, KeyPolicy, KeySpec, ParsedKey};
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

    let late = candidate(full.clone().into(), &policy, after_expiry);
    assert!(matches!(late, Candidate::Expired { .. }));
    let outcome = apply_candidate(&mut store, &late, &policy, after_expiry).expect("apply");
    assert!(matches!(&outcome, KeyOutcome::Refused { reason, .. } if reason == "the key has expired"));

    // Registered while valid with one user ID...
    let mut first = full.clone();
    first.details.users.truncate(1);
    let early = candidate(first.into(), &policy, while_valid);
    assert!(matches!(early, Candidate::Key(_)));
    let outcome = apply_candidate(&mut store, &early, &policy, while_valid).expect("apply");
    assert!(matches!(outcome, KeyOutcome::Applied { .. }));
    // ...an expired copy with both is checked in full and merged.
    let outcome = apply_candidate(&mut store, &late, &policy, after_expiry).expect("apply");
    assert!(matches!(outcome, KeyOutcome::Applied { .. }), "{outcome:?}");
    let record = store
        .record(&Query::Fingerprint(
            ParsedKey::from(full).fingerprint().expect("fingerprint"),
        ))
        .expect("read")
        .expect("registered");
    assert_eq!(
        openpgp::read_stored_key(&record.key_armor, &policy)
            .expect("stored")
            .user_ids()
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

// ---- The rules on a MemoryDb --------------------------------------------

use ripem_core::types::{Email, Fingerprint};
use ripem_keydb::{KeyDb, MemoryDb};
use ripem_openpgp::{CheckedKey, SignedPart, SignedPublicKey, SignedSecretKey};

/// A key holder: the secret key, and the public key as mailed.
struct Holder {
    secret: SignedSecretKey,
    public: SignedPublicKey,
}

impl Holder {
    /// A new Ed25519 key, made a day ago, with these user IDs.
    fn new(user_ids: &[&str]) -> Holder {
        let mut spec = KeySpec::ed25519(user_ids);
        spec.created = Utc::now() - chrono::Duration::days(1);
        let secret = generate_key(rand::thread_rng(), &spec).expect("key");
        let public = secret.to_public_key();
        Holder { secret, public }
    }

    fn checked(&self) -> CheckedKey {
        checked(&self.public)
    }

    fn fingerprint(&self) -> Fingerprint {
        self.checked().fingerprint().clone()
    }

    /// `text`, clearsigned by the primary key now.
    fn clearsign(&self, text: &str) -> SignedPart {
        SignedPart::Cleartext(openpgp::clearsign(&self.secret, text).expect("sign"))
    }
}

fn checked(key: &SignedPublicKey) -> CheckedKey {
    openpgp::check_key(key.clone(), &KeyPolicy::default()).expect("check")
}

fn email(address: &str) -> Email {
    Email::parse(address).expect("email")
}

/// An hour ago: when the tests register keys, so requests signed now are newer.
fn earlier() -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::hours(1)
}

const MAX_AGE: chrono::Duration = chrono::Duration::days(14);

fn register(db: &mut MemoryDb, key: &CheckedKey, now: chrono::DateTime<Utc>) -> KeyOutcome {
    apply_key(db, key, &KeyPolicy::default(), now).expect("apply")
}

/// The per-address outcomes of an applied key.
fn addresses(outcome: &KeyOutcome) -> Vec<(String, AddressOutcome)> {
    match outcome {
        KeyOutcome::Applied { addresses, .. } => addresses
            .iter()
            .map(|(email, outcome)| (email.to_string(), outcome.clone()))
            .collect(),
        KeyOutcome::Refused { key, reason } => panic!("{key} refused: {reason}"),
    }
}

fn owner(db: &MemoryDb, address: &str) -> Option<Fingerprint> {
    db.fingerprint_of(&email(address)).expect("lookup")
}

fn users_of(db: &MemoryDb, fingerprint: &Fingerprint) -> Vec<String> {
    let record = db.record(&Query::Fingerprint(fingerprint.clone())).expect("read");
    record.map_or_else(Vec::new, |record| record.users.iter().map(Email::to_string).collect())
}

fn user_id_count(db: &MemoryDb, fingerprint: &Fingerprint) -> usize {
    let record = db
        .record(&Query::Fingerprint(fingerprint.clone()))
        .expect("read")
        .expect("registered");
    let stored = openpgp::read_stored_key(&record.key_armor, &KeyPolicy::default()).expect("stored");
    stored.user_ids().len()
}

#[test]
fn a_free_address_is_registered_and_a_held_one_refused() {
    let mut db = MemoryDb::new();
    let alice = Holder::new(&["Alice <alice@example.org>"]);
    let outcome = register(&mut db, &alice.checked(), earlier());
    assert_eq!(
        addresses(&outcome),
        vec![("alice@example.org".into(), AddressOutcome::Registered)]
    );
    assert!(outcome.changed());
    assert_eq!(owner(&db, "alice@example.org"), Some(alice.fingerprint()));
    for key_id in alice.checked().key_ids() {
        assert_eq!(
            db.fingerprints_with_key_id(key_id).expect("index"),
            vec![alice.fingerprint()]
        );
    }

    // First come, first served: mallory gets only the free address, and
    // only its user ID is published.
    let mallory = Holder::new(&["Alice <alice@example.org>", "Mallory <mallory@example.org>"]);
    let outcome = register(&mut db, &mallory.checked(), earlier());
    assert_eq!(
        addresses(&outcome),
        vec![
            ("alice@example.org".into(), AddressOutcome::Taken(alice.fingerprint())),
            ("mallory@example.org".into(), AddressOutcome::Registered),
        ]
    );
    assert_eq!(owner(&db, "alice@example.org"), Some(alice.fingerprint()));
    assert_eq!(users_of(&db, &mallory.fingerprint()), vec!["mallory@example.org"]);
    assert_eq!(user_id_count(&db, &mallory.fingerprint()), 1);
    assert_eq!(db.key_count().expect("count"), 2);

    // A key whose every address is taken is not stored.
    let eve = Holder::new(&["Alice <alice@example.org>"]);
    let outcome = register(&mut db, &eve.checked(), earlier());
    assert_eq!(
        addresses(&outcome),
        vec![("alice@example.org".into(), AddressOutcome::Taken(alice.fingerprint()))]
    );
    assert!(!outcome.changed());
    assert_eq!(users_of(&db, &eve.fingerprint()), Vec::<String>::new());
    assert_eq!(db.key_count().expect("count"), 2);
}

#[test]
fn the_same_key_again_is_merged_and_a_replay_changes_nothing() {
    let mut db = MemoryDb::new();
    let bob = Holder::new(&["Bob <bob@example.org>", "Bob <bob@example.net>"]);
    // First one user ID and no subkey...
    let mut first = bob.public.clone();
    first.details.users.truncate(1);
    first.public_subkeys.clear();
    let outcome = register(&mut db, &checked(&first), earlier());
    assert_eq!(
        addresses(&outcome),
        vec![("bob@example.org".into(), AddressOutcome::Registered)]
    );
    let record = db
        .record(&Query::Fingerprint(bob.fingerprint()))
        .expect("read")
        .expect("stored");
    assert_eq!(
        db.fingerprints_with_key_id(&bob.checked().key_ids()[1]).expect("index"),
        vec![]
    );

    // ...then the whole key: the new user ID and the subkey are merged.
    let later = earlier() + chrono::Duration::minutes(1);
    let outcome = register(&mut db, &bob.checked(), later);
    assert_eq!(
        addresses(&outcome),
        vec![
            ("bob@example.org".into(), AddressOutcome::Updated),
            ("bob@example.net".into(), AddressOutcome::Registered),
        ]
    );
    assert_eq!(user_id_count(&db, &bob.fingerprint()), 2);
    let merged = db
        .record(&Query::Fingerprint(bob.fingerprint()))
        .expect("read")
        .expect("stored");
    assert_eq!(merged.registered, record.registered);
    assert!(merged.updated > record.updated);
    for key_id in bob.checked().key_ids() {
        assert_eq!(
            db.fingerprints_with_key_id(key_id).expect("index"),
            vec![bob.fingerprint()]
        );
    }

    // The same copy again, or the older one: nothing changes.
    let before = db.clone();
    for copy in [&bob.public, &first] {
        let outcome = register(&mut db, &checked(copy), Utc::now());
        assert!(!outcome.changed(), "{outcome:?}");
        assert!(addresses(&outcome)
            .iter()
            .all(|(_, outcome)| *outcome == AddressOutcome::Unchanged));
        assert_eq!(db, before);
    }
}

#[test]
fn a_revoked_key_is_refused_when_new_and_keeps_its_addresses_until_a_successor() {
    let mut db = MemoryDb::new();
    let carol = Holder::new(&["Carol <carol@example.org>"]);
    let revoked = openpgp::revoke_key(&carol.secret, &carol.public).expect("revoke");
    let outcome = register(&mut db, &checked(&revoked), earlier());
    assert!(matches!(&outcome, KeyOutcome::Refused { reason, .. } if reason == "the key is revoked"));
    assert_eq!(db, MemoryDb::new());

    register(&mut db, &carol.checked(), earlier());
    // The revocation certificate alone is merged into the registered key.
    let certificate = openpgp::revocation_of(&revoked).expect("certificate");
    let outcome = apply_revocation(&mut db, &certificate, &KeyPolicy::default(), earlier()).expect("apply");
    assert!(
        matches!(outcome, KeyOutcome::Applied { revoked: true, .. }),
        "{outcome:?}"
    );
    assert_eq!(owner(&db, "carol@example.org"), Some(carol.fingerprint()));
    let stored = db
        .record(&Query::Fingerprint(carol.fingerprint()))
        .expect("read")
        .expect("stored");
    assert!(openpgp::read_stored_key(&stored.key_armor, &KeyPolicy::default())
        .expect("stored")
        .is_revoked());
    // Again: nothing new.
    let before = db.clone();
    let outcome = apply_revocation(&mut db, &certificate, &KeyPolicy::default(), Utc::now()).expect("apply");
    assert!(!outcome.changed(), "{outcome:?}");
    assert_eq!(db, before);

    // A successor takes the address over; the revoked key stays published.
    let successor = Holder::new(&["Carol <carol@example.org>"]);
    let outcome = register(&mut db, &successor.checked(), Utc::now());
    assert_eq!(
        addresses(&outcome),
        vec![(
            "carol@example.org".into(),
            AddressOutcome::TakenOver(carol.fingerprint())
        )]
    );
    assert_eq!(owner(&db, "carol@example.org"), Some(successor.fingerprint()));
    assert_eq!(users_of(&db, &carol.fingerprint()), Vec::<String>::new());
    assert_eq!(db.key_count().expect("count"), 2);

    // A revocation certificate of no registered key is refused.
    let stranger = Holder::new(&["Stranger <stranger@example.org>"]);
    let other = openpgp::revoke_key(&stranger.secret, &stranger.public).expect("revoke");
    let other = openpgp::revocation_of(&other).expect("certificate");
    let outcome = apply_revocation(&mut db, &other, &KeyPolicy::default(), Utc::now()).expect("apply");
    assert!(matches!(outcome, KeyOutcome::Refused { .. }));
}

#[test]
fn a_signed_change_moves_the_addresses_the_new_key_carries() {
    let mut db = MemoryDb::new();
    let old = Holder::new(&["Dan <dan@example.org>", "Dan <dan@example.net>"]);
    register(&mut db, &old.checked(), earlier());
    let new = Holder::new(&["Dan <dan@example.org>", "Dan <dan@example.com>"]);
    let request = [old.clearsign(&format!("ChangeKey\n{}", new.checked().to_armored()))];

    let outcome = apply_change(&mut db, &request, &KeyPolicy::default(), Utc::now(), MAX_AGE).expect("apply");
    assert_eq!(outcome.signer, Some(old.fingerprint()), "{:?}", outcome.lines);
    assert_eq!(
        outcome.lines[0],
        format!("key {} replaced by key {}:", old.fingerprint(), new.fingerprint())
    );
    let told: Vec<String> = outcome.notify.iter().map(|(email, _)| email.to_string()).collect();
    assert_eq!(told, vec!["dan@example.org", "dan@example.net"]);
    assert_eq!(owner(&db, "dan@example.org"), Some(new.fingerprint()));
    assert_eq!(owner(&db, "dan@example.com"), Some(new.fingerprint()));
    assert_eq!(owner(&db, "dan@example.net"), None);
    assert_eq!(db.record(&Query::Fingerprint(old.fingerprint())).expect("read"), None);
    for key_id in old.checked().key_ids() {
        assert!(db.fingerprints_with_key_id(key_id).expect("index").is_empty());
    }

    // The same request again: the old key is gone, so it signs nothing.
    let before = db.clone();
    let again = apply_change(&mut db, &request, &KeyPolicy::default(), Utc::now(), MAX_AGE).expect("apply");
    assert_eq!(again.signer, None);
    assert!(again.lines[0].starts_with("refused: it is signed by a key that is not registered here"));
    assert_eq!(db, before);
}

#[test]
fn a_change_needs_a_change_text_and_a_new_key_that_passes() {
    let mut db = MemoryDb::new();
    let old = Holder::new(&["Fay <fay@example.org>"]);
    register(&mut db, &old.checked(), earlier());
    let before = db.clone();
    let quoting = Holder::new(&["Gus <gus@example.org>"]);
    let revoked_new = {
        let holder = Holder::new(&["Fay <fay@example.org>"]);
        openpgp::revoke_key(&holder.secret, &holder.public).expect("revoke")
    };
    let revoked_armor = openpgp::armor_public_key(&revoked_new).expect("armor");
    let cases = [
        (
            format!("Here is Gus's key:\n{}", quoting.checked().to_armored()),
            SignedRefusal::NotChangeKey.to_string(),
        ),
        (
            "ChangeKey\nno key here\n".to_string(),
            SignedRefusal::NewKeyCount(0).to_string(),
        ),
        (
            format!("ChangeKey\n{revoked_armor}"),
            SignedRefusal::NewKeyRefused("the key is revoked".into()).to_string(),
        ),
    ];
    for (text, refusal) in cases {
        let outcome = apply_change(
            &mut db,
            &[old.clearsign(&text)],
            &KeyPolicy::default(),
            Utc::now(),
            MAX_AGE,
        )
        .expect("apply");
        assert_eq!(outcome.lines, vec![format!("refused: {refusal}")]);
        assert_eq!(outcome.signer, None);
        assert_eq!(db, before);
    }

    // A bare signed successor key carrying an address of the old one is a change.
    let successor = Holder::new(&["Fay <fay@example.org>"]);
    let bare = [old.clearsign(&successor.checked().to_armored())];
    let outcome = apply_change(&mut db, &bare, &KeyPolicy::default(), Utc::now(), MAX_AGE).expect("apply");
    assert_eq!(outcome.signer, Some(old.fingerprint()), "{:?}", outcome.lines);
    assert_eq!(owner(&db, "fay@example.org"), Some(successor.fingerprint()));
}

#[test]
fn a_signed_remove_deletes_the_key_and_its_replay_is_refused() {
    let mut db = MemoryDb::new();
    let hal = Holder::new(&["Hal <hal@example.org>", "Hal <hal@example.net>"]);
    register(&mut db, &hal.checked(), earlier());
    let before = db.clone();

    // Not signed, signed by a stranger, or not saying RemoveKey: refused.
    let stranger = Holder::new(&["Ivy <ivy@example.org>"]);
    let refusals = [
        (Vec::new(), SignedRefusal::NotSigned.to_string()),
        (
            vec![hal.clearsign("Please remove my key\n")],
            SignedRefusal::NotRemoveKey.to_string(),
        ),
    ];
    for (parts, refusal) in refusals {
        let outcome = apply_remove(&mut db, &parts, &KeyPolicy::default(), Utc::now(), MAX_AGE).expect("apply");
        assert_eq!(outcome.lines, vec![format!("refused: {refusal}")]);
        assert_eq!(db, before);
    }
    let outcome = apply_remove(
        &mut db,
        &[stranger.clearsign("RemoveKey\n")],
        &KeyPolicy::default(),
        Utc::now(),
        MAX_AGE,
    )
    .expect("apply");
    assert!(outcome.lines[0].starts_with("refused: it is signed by a key that is not registered here"));
    assert_eq!(db, before);
    // Signed long before it arrives: too old.
    let late = Utc::now() + chrono::Duration::days(20);
    let outcome = apply_remove(
        &mut db,
        &[hal.clearsign("RemoveKey\n")],
        &KeyPolicy::default(),
        late,
        MAX_AGE,
    )
    .expect("apply");
    assert!(
        outcome.lines[0].contains("is older than 14 days"),
        "{:?}",
        outcome.lines
    );
    assert_eq!(db, before);

    let remove = [hal.clearsign("RemoveKey\n")];
    let outcome = apply_remove(&mut db, &remove, &KeyPolicy::default(), Utc::now(), MAX_AGE).expect("apply");
    assert_eq!(outcome.signer, Some(hal.fingerprint()));
    assert_eq!(
        outcome.lines,
        vec![
            format!("key {} removed:", hal.fingerprint()),
            "  hal@example.org: removed".into(),
            "  hal@example.net: removed".into(),
        ]
    );
    assert_eq!(outcome.notify.len(), 2);
    assert_eq!(db, MemoryDb::new());

    // Registered again later, the captured request is stale.
    register(&mut db, &hal.checked(), Utc::now() + chrono::Duration::minutes(1));
    let before = db.clone();
    let replay = Utc::now() + chrono::Duration::minutes(2);
    let outcome = apply_remove(&mut db, &remove, &KeyPolicy::default(), replay, MAX_AGE).expect("apply");
    assert!(outcome.lines[0].contains("stale or replayed"), "{:?}", outcome.lines);
    assert_eq!(db, before);
}

#[test]
fn the_registrar_s_candidates_run_on_memory_too() {
    let mut db = MemoryDb::new();
    let policy = KeyPolicy::default();
    let jo = Holder::new(&["Jo <jo@example.org>"]);
    let texts = [format!("my key:\n{}\n", jo.checked().to_armored())];
    let add = prepare_add(&texts, &[], &policy, Utc::now(), 10);
    let mut tally = Tally::default();
    for _ in 0..2 {
        for candidate in &add.candidates {
            tally.count(&apply_candidate(&mut db, candidate, &policy, Utc::now()).expect("apply"));
        }
    }
    assert_eq!(
        tally,
        Tally {
            keys_added: 1,
            keys_merged: 1,
            addresses_added: 1,
            ..Tally::default()
        }
    );
    assert_eq!(owner(&db, "jo@example.org"), Some(jo.fingerprint()));
}
