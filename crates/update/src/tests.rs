//! The canonical form read back byte for byte, everything else refused,
//! and the checks a received update must pass, on keys made by rPGP.

use proptest::prelude::*;
use ripem_core::types::{Email, Fingerprint};
use ripem_openpgp::{check_key, clearsign, generate_key, CheckedKey, KeyPolicy, KeySpec, SignedPart, SignedSecretKey};

use crate::{check, Fields, Kind, Update, UpdateError};

fn email(address: &str) -> Email {
    Email::parse(address).expect("address")
}

struct Holder {
    secret: SignedSecretKey,
    key: CheckedKey,
}

impl Holder {
    fn new(user_id: &str) -> Holder {
        let secret = generate_key(rand::thread_rng(), &KeySpec::ed25519(&[user_id])).expect("key");
        let key = check_key(secret.to_public_key(), &KeyPolicy::default()).expect("checked");
        Holder { secret, key }
    }

    fn armor(&self) -> String {
        self.key.to_armored().trim_end().to_string()
    }

    fn fingerprint(&self) -> Fingerprint {
        self.key.fingerprint().clone()
    }

    fn sign(&self, text: &str) -> SignedPart {
        SignedPart::Cleartext(clearsign(&self.secret, text).expect("signed"))
    }
}

fn register(holder: &Holder, claims: &[&str]) -> Fields {
    Fields {
        kind: Kind::Register,
        origin: "keys-a.example.org".into(),
        time_ms: 1_764_601_234_567,
        fingerprint: holder.fingerprint(),
        old_fingerprint: None,
        claims: claims.iter().map(|a| email(a)).collect(),
        transfers: Vec::new(),
        releases: Vec::new(),
        key: Some(holder.armor()),
        old_key: None,
        request: None,
    }
}

fn change(old: &Holder, new: &Holder, signer: &Holder) -> Fields {
    let text = format!("ChangeKey\n{}\n", new.armor());
    Fields {
        kind: Kind::Change,
        old_fingerprint: Some(old.fingerprint()),
        fingerprint: new.fingerprint(),
        key: Some(new.armor()),
        old_key: Some(old.armor()),
        request: Some(signer.sign(&text)),
        transfers: vec![email("alice@example.org")],
        time_ms: chrono::Utc::now().timestamp_millis() as u64,
        ..register(new, &[])
    }
}

#[test]
fn an_update_reads_back_to_the_same_bytes_and_id() {
    let alice = Holder::new("Alice <alice@example.org>");
    let update = Update::new(register(&alice, &["alice@example.org", "alice@example.org"])).expect("update");
    assert_eq!(update.fields().claims.len(), 1, "repeats are dropped");
    let again = Update::parse(update.to_bytes()).expect("parses");
    assert_eq!(again, update);
    assert_eq!(update.id().len(), 64);
    assert_eq!(update.id(), crate::id_of(update.to_bytes()));
    let text = String::from_utf8(update.to_bytes().to_vec()).expect("text");
    assert!(text.starts_with("Update: register\nOrigin: keys-a.example.org\nTime: 1764601234567\n"));
    assert!(text.contains("\nKey:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n"));
}

#[test]
fn a_signed_request_survives_byte_for_byte() {
    let alice = Holder::new("Alice <alice@example.org>");
    let bob = Holder::new("Bob <alice@example.org>");
    let mut fields = change(&alice, &bob, &alice);
    fields.request = Some(SignedPart::Detached {
        content: b"Content-Type: text/plain\r\n\r\nChangeKey \r\n".to_vec(),
        text: "ChangeKey \n".into(),
        signature: "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n".into(),
    });
    let update = Update::new(fields.clone()).expect("update");
    assert_eq!(Update::parse(update.to_bytes()).expect("parses").fields(), &fields);
}

#[test]
fn any_other_text_is_refused() {
    let alice = Holder::new("Alice <alice@example.org>");
    let update = Update::new(register(&alice, &["alice@example.org"])).expect("update");
    let text = String::from_utf8(update.to_bytes().to_vec()).expect("text");
    let cases = [
        text.replacen("Origin: ", "Origin:  ", 1),
        text.replace('\n', "\r\n"),
        text.trim_end().to_string(),
        format!("{text}Claim: bob@example.org\n"),
        text.replacen("Update: register", "Update: merge", 1),
        text.replacen("Update: register", "Update: remove", 1),
        text.replacen("Time: 1764601234567", "Time: -1", 1),
        text.replacen("Time: 1764601234567", "Time: 01764601234567", 1),
        format!("X-Extra: 1\n{text}"),
        String::new(),
    ];
    for case in cases {
        let refused = Update::parse(case.as_bytes());
        assert!(refused.is_err(), "accepted {case:?}");
    }
    assert_eq!(Update::parse(&vec![b'a'; 2 << 20]), Err(UpdateError::TooLarge(2 << 20)));
    let no_claims = text.replacen("Claim: alice@example.org\n", "", 1);
    assert!(
        Update::parse(no_claims.as_bytes()).is_ok(),
        "a register may claim nothing"
    );
}

#[test]
fn a_received_registration_is_checked_like_a_mailed_key() {
    let alice = Holder::new("Alice <alice@example.org>");
    let policy = KeyPolicy::default();
    let good = Update::new(register(&alice, &["alice@example.org"])).expect("update");
    assert_eq!(check(&good, &policy), Ok(()));
    let stranger = Update::new(register(&alice, &["bob@example.org"])).expect("update");
    assert!(matches!(check(&stranger, &policy), Err(UpdateError::BadKey(_))));
    let bob = Holder::new("Bob <bob@example.org>");
    let mut wrong = register(&alice, &[]);
    wrong.key = Some(bob.armor());
    let wrong = Update::new(wrong).expect("update");
    assert!(matches!(check(&wrong, &policy), Err(UpdateError::BadKey(_))));
    let mut broken = register(&alice, &[]);
    broken.key = Some(alice.armor().replacen('A', "B", 3));
    let broken = Update::new(broken).expect("update");
    assert!(check(&broken, &policy).is_err());
}

#[test]
fn a_change_must_be_signed_by_the_old_key_and_hold_the_new_one() {
    let alice = Holder::new("Alice <alice@example.org>");
    let successor = Holder::new("Alice <alice@example.org>");
    let mallory = Holder::new("Mallory <alice@example.org>");
    let policy = KeyPolicy::default();
    let good = Update::new(change(&alice, &successor, &alice)).expect("update");
    assert_eq!(check(&good, &policy), Ok(()));
    let forged = Update::new(change(&alice, &successor, &mallory)).expect("update");
    assert!(matches!(check(&forged, &policy), Err(UpdateError::BadRequest(_))));
    let mut other_key = change(&alice, &successor, &alice);
    other_key.fingerprint = mallory.fingerprint();
    other_key.key = Some(mallory.armor());
    let other_key = Update::new(other_key).expect("update");
    assert!(matches!(check(&other_key, &policy), Err(UpdateError::BadRequest(_))));
    let mut remove = change(&alice, &successor, &alice);
    remove.kind = Kind::Remove;
    remove.old_fingerprint = None;
    remove.fingerprint = alice.fingerprint();
    remove.key = None;
    remove.transfers.clear();
    let not_remove = Update::new(remove.clone()).expect("update");
    assert!(matches!(check(&not_remove, &policy), Err(UpdateError::BadRequest(_))));
    remove.request = Some(alice.sign("RemoveKey\n"));
    assert_eq!(check(&Update::new(remove).expect("update"), &policy), Ok(()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn junk_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Update::parse(&bytes);
    }

    #[test]
    fn field_shaped_junk_never_panics(lines in proptest::collection::vec(
        "(Update|Origin|Time|Fingerprint|Claim|Key|Request|Request-Data| ): ?[a-z0-9=+/ ]{0,20}", 0..12)) {
        let text = lines.join("\n") + "\n";
        let _ = Update::parse(text.as_bytes());
    }
}
