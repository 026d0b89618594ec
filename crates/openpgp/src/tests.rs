//! The crate's tests across its steps: real keys from rPGP and gpg, parsed,
//! checked, merged, armored.

use super::*;
use crate::error::innermost_reason;
use chrono::Utc;
use pgp::composed::SignedSecretKey;
use pgp::ser::Serialize;
use pgp::types::KeyDetails as _;
use rand::Rng as _;
use ripem_core::types::Email;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

fn rng() -> rand::rngs::ThreadRng {
    rand::thread_rng()
}

fn ed25519_secret(uids: &[&str]) -> SignedSecretKey {
    generate_key(rng(), &KeySpec::ed25519(uids)).expect("generate ed25519")
}

fn rsa_spec(bits: u32, uid: &str) -> KeySpec {
    KeySpec {
        user_ids: vec![uid.to_string()],
        algorithm: GenAlgorithm::Rsa(bits),
        created: Utc::now(),
        expires_after: None,
        encryption_subkey: false,
    }
}

/// The one RSA-2048 key of the test module (RSA generation is slow in debug).
fn rsa2048() -> &'static SignedSecretKey {
    static KEY: OnceLock<SignedSecretKey> = OnceLock::new();
    KEY.get_or_init(|| generate_key(rng(), &rsa_spec(2048, "Rita <rita@example.org>")).expect("rsa2048"))
}

/// The one RSA-1024 key of the test module.
fn rsa1024() -> &'static SignedSecretKey {
    static KEY: OnceLock<SignedSecretKey> = OnceLock::new();
    KEY.get_or_init(|| generate_key(rng(), &rsa_spec(1024, "Weak <weak@example.org>")).expect("rsa1024"))
}

fn gpg(home: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("gpg")
        .arg("--batch")
        .arg("--homedir")
        .arg(home)
        .args(args)
        .output()
        .expect("gpg must be installed (package gnupg)");
    assert!(
        out.status.success(),
        "gpg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn gpg_home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    // gpg wants a private home directory.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    dir
}

/// The fingerprint of the key with `uid` in the gpg home.
fn gpg_fingerprint(home: &Path, uid: &str) -> String {
    let listing = gpg(home, &["--with-colons", "--list-keys", uid]);
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|l| l.split(':').nth(8))
        .expect("fingerprint")
        .to_string()
}

fn gpg_key(algo: &str, sub_algo: &str, uid: &str) -> String {
    let home = gpg_home();
    let common = ["--passphrase", "", "--pinentry-mode", "loopback"];
    let mut args = common.to_vec();
    args.extend(["--quick-gen-key", uid, algo, "sign", "never"]);
    gpg(home.path(), &args);
    let fpr = gpg_fingerprint(home.path(), uid);
    let mut args = common.to_vec();
    args.extend(["--quick-add-key", &fpr, sub_algo, "encr", "never"]);
    gpg(home.path(), &args);
    let out = gpg(home.path(), &["--armor", "--export", &fpr]);
    String::from_utf8(out.stdout).expect("armor is text")
}

fn check_one(armored: &str) -> Result<CheckedKey, KeyError> {
    let blocks = find_armored_keys(armored);
    assert_eq!(blocks.len(), 1);
    let mut keys = parse_armored_keys(blocks[0])?;
    assert_eq!(keys.len(), 1);
    check_key(keys.remove(0), &KeyPolicy::default())
}

#[test]
fn rpgp_ed25519_key_passes() {
    let secret = ed25519_secret(&["Alice <Alice@Example.org>", "alice@work.example.com"]);
    let public = secret.to_public_key();
    let checked = check_key(public.clone(), &KeyPolicy::default()).expect("accepted");
    let emails: Vec<&str> = checked.emails().iter().map(Email::as_str).collect();
    assert_eq!(emails, ["alice@example.org", "alice@work.example.com"]);
    assert_eq!(checked.algorithm(), "EdDSA");
    assert_eq!(checked.algorithm_number_and_bits(), (22, 255));
    let uids = checked.user_id_summaries();
    assert_eq!(uids.len(), 2);
    assert_eq!(uids[0].text, b"Alice <Alice@Example.org>");
    assert!(uids.iter().all(|uid| !uid.revoked && uid.created.is_some()));
    assert!(!checked.is_revoked());
    assert_eq!(checked.expires_at(), None);
    assert!(!checked.is_expired(Utc::now()));
    assert_eq!(checked.signed_public_key().public_subkeys.len(), 1);
    assert_eq!(checked.fingerprint().as_str(), format!("{:X}", public.fingerprint()));
    // Nothing to strip: the stripped key is the key.
    assert_eq!(checked.to_bytes(), public.to_bytes().expect("bytes"));
    assert!(checked.signed_public_key().verify_bindings().is_ok());
}

#[test]
fn keeping_user_ids_copies_only_a_key_it_changes_and_keeps_what_it_made() {
    let secret = ed25519_secret(&["Kim <kim@example.org>", "kim@work.example.com"]);
    let checked = check_key(secret.to_public_key(), &KeyPolicy::default())
        .expect("accepted")
        .with_derived();
    let whole = checked.keeping_user_ids(|_| true);
    assert!(
        matches!(whole, std::borrow::Cow::Borrowed(_)),
        "nothing dropped, nothing copied"
    );
    let work = checked.keeping_user_ids(|email| email.as_str() == "kim@work.example.com");
    assert!(matches!(work, std::borrow::Cow::Owned(_)));
    let emails: Vec<&str> = work.emails().iter().map(Email::as_str).collect();
    assert_eq!(emails, ["kim@work.example.com"]);
    assert_eq!(work.user_ids(), ["kim@work.example.com"]);
    // The armor is made again for the smaller key; the key IDs stay.
    assert_ne!(work.to_armored(), checked.to_armored());
    let reread = parse_armored_keys(&work.to_armored()).expect("parses").remove(0);
    let reread = check_key(reread, &KeyPolicy::default()).expect("accepted");
    assert_eq!(reread.user_ids(), ["kim@work.example.com"]);
    assert_eq!(work.key_ids(), checked.key_ids());
    assert_eq!(checked.key_ids().len(), 2);
}

#[test]
fn rpgp_rsa_key_passes_and_rsa1024_is_refused() {
    let checked = check_key(rsa2048().to_public_key(), &KeyPolicy::default()).expect("rsa2048 accepted");
    assert_eq!(checked.algorithm(), "RSA 2048");
    assert_eq!(checked.algorithm_number_and_bits(), (1, 2048));
    assert_eq!(checked.emails()[0].as_str(), "rita@example.org");

    let err = check_key(rsa1024().to_public_key(), &KeyPolicy::default()).unwrap_err();
    assert_eq!(err, KeyError::WeakRsa { bits: 1024, min: 2048 });
    assert_eq!(
        err.to_string(),
        "RSA keys must be at least 2048 bits; this one has 1024"
    );
}

#[test]
fn gpg_made_ed25519_key_passes() {
    let armored = gpg_key("ed25519", "cv25519", "Bob <bob@example.org>");
    let checked = check_one(&armored).expect("gpg key accepted");
    assert_eq!(checked.emails()[0].as_str(), "bob@example.org");
    assert_eq!(checked.algorithm(), "EdDSA");
    assert_eq!(checked.signed_public_key().public_subkeys.len(), 1);
    assert!(!checked.is_revoked());
}

#[test]
fn gpg_made_rsa3072_key_passes() {
    let armored = gpg_key("rsa3072", "rsa3072", "Ray <ray@example.org>");
    let checked = check_one(&armored).expect("gpg key accepted");
    assert_eq!(checked.algorithm(), "RSA 3072");
    assert_eq!(checked.signed_public_key().public_subkeys.len(), 1);
}

#[test]
fn third_party_certifications_are_stripped() {
    let alice = ed25519_secret(&["Alice <alice@example.org>", "Alice <alice@example.net>"]);
    let carol = ed25519_secret(&["Carol <carol@example.org>"]);
    let certified = certify_user_ids(&carol, &alice.to_public_key()).expect("certify");
    for user in &certified.details.users {
        assert_eq!(user.signatures.len(), 2);
    }
    // rPGP's own check refuses the whole key for one third-party signature.
    assert!(certified.verify_bindings().is_err());

    // Round trip through armor to be sure the certification travels.
    let armored = armor_public_key(&certified).expect("armor");
    let checked = check_one(&armored).expect("still accepted");
    assert_eq!(checked.emails().len(), 2);
    for user in &checked.signed_public_key().details.users {
        assert_eq!(user.signatures.len(), 1);
        assert!(user.signatures[0]
            .issuer_fingerprint()
            .iter()
            .all(|fp| **fp == alice.primary_key.fingerprint()));
    }
    assert!(checked.signed_public_key().verify_bindings().is_ok());
    assert_eq!(checked.to_bytes(), alice.to_public_key().to_bytes().expect("bytes"));
}

#[test]
fn key_without_email_is_refused() {
    let key = ed25519_secret(&["Just A Name", "Someone <not an address>"]).to_public_key();
    let err = check_key(key, &KeyPolicy::default()).unwrap_err();
    assert_eq!(err, KeyError::NoEmail);

    // A bare address is an email; a user ID without one stays in the key.
    let key = ed25519_secret(&["Just A Name", "dave@example.org"]).to_public_key();
    let checked = check_key(key, &KeyPolicy::default()).expect("accepted");
    assert_eq!(checked.emails().len(), 1);
    assert_eq!(checked.emails()[0].as_str(), "dave@example.org");
    assert_eq!(checked.signed_public_key().details.users.len(), 2);
}

#[test]
fn tampered_keys_are_refused() {
    let mut spec = KeySpec::ed25519(&["Eve <eve@example.org>"]);
    spec.encryption_subkey = false;
    let public = generate_key(rng(), &spec).expect("gen").to_public_key();
    let bytes = public.to_bytes().expect("bytes");

    // The last packet is the user ID's self-signature: flip its last byte.
    let mut flipped = bytes.clone();
    if let Some(last) = flipped.last_mut() {
        *last ^= 0x01;
    }
    let result = parse_binary_keys(&flipped).and_then(|mut keys| check_key(keys.remove(0), &KeyPolicy::default()));
    assert_eq!(result.unwrap_err(), KeyError::BadSelfSignatures);

    // Change the user ID text: its signature no longer covers it.
    let pos = bytes.windows(3).position(|w| w == b"eve").expect("user id in packets");
    let mut renamed = bytes.clone();
    renamed[pos] = b'x';
    let result = parse_binary_keys(&renamed).and_then(|mut keys| check_key(keys.remove(0), &KeyPolicy::default()));
    assert_eq!(result.unwrap_err(), KeyError::BadSelfSignatures);
    assert_eq!(
        KeyError::BadSelfSignatures.to_string(),
        "the key's self-signatures do not verify"
    );
}

#[test]
fn merge_unions_user_ids_and_subkeys() {
    let secret = ed25519_secret(&["Mia <mia@example.org>", "Mia <mia@example.net>"]);
    let full = secret.to_public_key();
    let mut first = full.clone();
    first.details.users.truncate(1);
    first.public_subkeys.clear();
    let mut second = full.clone();
    second.details.users.remove(0);

    let a = check_key(first, &KeyPolicy::default()).expect("a");
    let b = check_key(second, &KeyPolicy::default()).expect("b");
    assert_eq!(a.emails().len(), 1);
    assert_eq!(b.emails().len(), 1);

    let merged = a.merge(&b, &KeyPolicy::default()).expect("merge");
    let emails: Vec<&str> = merged.emails().iter().map(Email::as_str).collect();
    assert_eq!(emails, ["mia@example.org", "mia@example.net"]);
    assert_eq!(merged.signed_public_key().public_subkeys.len(), 1);
    assert_eq!(merged.to_bytes(), full.to_bytes().expect("bytes"));

    // Merging again adds nothing.
    let again = merged
        .merge(&b, &KeyPolicy::default())
        .expect("merge again")
        .merge(&a, &KeyPolicy::default())
        .expect("and again");
    assert_eq!(again, merged);

    // A revocation merges in.
    let revoked = check_key(revoke_key(&secret, &full).expect("revoke"), &KeyPolicy::default())
        .expect("revoked key still checks");
    assert!(revoked.is_revoked());
    let merged = merged.merge(&revoked, &KeyPolicy::default()).expect("merge revocation");
    assert!(merged.is_revoked());
    assert_eq!(merged.signed_public_key().details.revocation_signatures.len(), 1);

    let other = check_key(
        ed25519_secret(&["O <o@example.org>"]).to_public_key(),
        &KeyPolicy::default(),
    )
    .expect("other");
    assert!(matches!(
        a.merge(&other, &KeyPolicy::default()),
        Err(KeyError::NotSameKey(_, _))
    ));
}

/// A gpg key made at 2025-01-01 with `first_expiry`, exported, then
/// given a newer self-signature at 2026-01-01 with `second_expiry`,
/// exported again: (old copy, new copy, the new self-signature).
fn gpg_key_re_signed(uid: &str, first_expiry: &str, second_expiry: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let home = gpg_home();
    let common = ["--passphrase", "", "--pinentry-mode", "loopback"];
    let at = |time: &str, extra: &[&str]| {
        let mut args = vec!["--faked-system-time", time];
        args.extend(common);
        args.extend(extra);
        gpg(home.path(), &args);
    };
    at(
        "20250101T000000!",
        &["--quick-gen-key", uid, "ed25519", "sign", first_expiry],
    );
    let export = || gpg(home.path(), &["--export", uid]).stdout;
    let old_copy = export();
    let fpr = gpg_fingerprint(home.path(), uid);
    at("20260101T000000!", &["--quick-set-expire", &fpr, second_expiry]);
    let new_copy = export();
    // gpg keeps only the newest self-signature of a user ID.
    let newest = parse_binary_keys(&new_copy).expect("parse").remove(0).0.details.users[0].signatures[0]
        .to_bytes()
        .expect("bytes");
    (old_copy, new_copy, newest)
}

/// `copy` with `signature`'s last byte damaged, and the user ID's
/// self-signatures from `old_copy` added.
fn forged_next_to_old(copy: &[u8], signature: &[u8], old_copy: &[u8]) -> ParsedKey {
    let at = copy
        .windows(signature.len())
        .position(|w| w == signature)
        .expect("signature in export");
    let mut forged = copy.to_vec();
    forged[at + signature.len() - 1] ^= 0x55;
    let mut key = parse_binary_keys(&forged).expect("parse").remove(0);
    let old_sigs = parse_binary_keys(old_copy).expect("parse").remove(0).0.details.users[0]
        .signatures
        .clone();
    key.0.details.users[0].signatures.extend(old_sigs);
    key
}

fn first_key(bytes: &[u8]) -> ParsedKey {
    parse_binary_keys(bytes).expect("parse").remove(0)
}

#[test]
fn only_the_newest_valid_self_signature_is_kept() {
    let (old_copy, new_copy, newest) = gpg_key_re_signed("Nell <nell@example.org>", "1y", "3y");
    let check = |key: ParsedKey| check_key(key, &KeyPolicy::default());
    let old = check(first_key(&old_copy)).expect("old copy");
    let new = check(first_key(&new_copy)).expect("new copy");
    assert!(
        new.expires_at() > old.expires_at(),
        "the newer self-signature's expiry counts"
    );
    let users = &new.signed_public_key().details.users;
    assert_eq!(users[0].signatures.len(), 1, "the superseded self-signature is dropped");
    assert_eq!(old.merge(&new, &KeyPolicy::default()).expect("merge"), new);
    assert_eq!(new.merge(&old, &KeyPolicy::default()).expect("merge"), new);

    // A forged newer self-signature does not displace the real one.
    let checked = check(forged_next_to_old(&new_copy, &newest, &old_copy)).expect("the older one verifies");
    assert_eq!(checked.expires_at(), old.expires_at());
}

#[test]
fn expiry_is_probed_from_the_newest_self_signature_that_verifies() {
    let now = Utc::now();
    // Extended in 2026 until 2029: the 2026 expiry is superseded.
    let (old_copy, new_copy, _) = gpg_key_re_signed("Olga <olga@example.org>", "1y", "3y");
    assert!(has_expired(&first_key(&old_copy), now));
    assert!(!has_expired(&first_key(&new_copy), now));
    // Cut short in 2026 to a day: expired, unless that self-signature is a forgery.
    let (old_copy, new_copy, newest_short) = gpg_key_re_signed("Pia <pia@example.org>", "never", "1d");
    assert!(has_expired(&first_key(&new_copy), now));
    let forged = forged_next_to_old(&new_copy, &newest_short, &old_copy);
    assert!(!has_expired(&forged, now));
    let checked = check_key(forged, &KeyPolicy::default()).expect("the older self-signature verifies");
    assert_eq!(checked.expires_at(), None);
}

#[test]
fn nested_error_dumps_become_one_plain_reason() {
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Dumped(String);
    let dumped = Dumped(
        "error while parsing composed key: InvalidPacketContent { source: RSAError { source: ModulusTooLarge, backtrace: Some(Backtrace [{ fn: \"x\" }]) } }".into(),
    );
    assert_eq!(
        innermost_reason(&dumped),
        "error while parsing composed key: ModulusTooLarge"
    );
    assert_eq!(
        innermost_reason(&Dumped("modulus too large".into())),
        "modulus too large"
    );
    assert_eq!(innermost_reason(&Dumped("Oops { x: 1 }".into())), "Oops");
}

#[test]
fn revoked_user_id_gives_no_email() {
    let spec = KeySpec::ed25519(&["Ann <ann@example.org>", "Ann <ann@old.example.org>"]);
    let secret = generate_key(rng(), &spec).expect("gen");
    let revoked = revoke_user_id(
        &secret,
        &secret.to_public_key(),
        "Ann <ann@old.example.org>",
        spec.created,
    )
    .expect("revoke uid");
    let checked = check_key(revoked, &KeyPolicy::default()).expect("accepted");
    let emails: Vec<&str> = checked.emails().iter().map(Email::as_str).collect();
    assert_eq!(emails, ["ann@example.org"]);
    // The revoked user ID stays, with its revocation, for clients.
    let users = &checked.signed_public_key().details.users;
    assert_eq!(users.len(), 2);
    assert_eq!(users[1].signatures.len(), 2);
}

#[test]
fn find_armored_keys_in_prose_with_crlf() {
    let k1 = armor_public_key(&ed25519_secret(&["A <a@example.org>"]).to_public_key()).expect("armor");
    let k2 = armor_public_key(&ed25519_secret(&["B <b@example.org>"]).to_public_key()).expect("armor");
    let text = format!(
        "Hello,\n{BEGIN_PUBLIC_KEY}\nthis one is cut short\n\nplease register these:\n\n{k1}\nand\n> {BEGIN_PUBLIC_KEY}\n> quoted, ignored\n\n{k2}\nThanks!\n"
    )
    .replace('\n', "\r\n");
    let blocks = find_armored_keys(&text);
    assert_eq!(blocks.len(), 2);
    let emails: Vec<String> = blocks
        .iter()
        .map(|b| {
            let mut keys = parse_armored_keys(b).expect("parse");
            assert_eq!(keys.len(), 1);
            let checked = check_key(keys.remove(0), &KeyPolicy::default()).expect("check");
            checked.emails()[0].to_string()
        })
        .collect();
    assert_eq!(emails, ["a@example.org", "b@example.org"]);
    assert!(find_armored_keys("no keys here").is_empty());
    assert!(find_armored_keys(BEGIN_PUBLIC_KEY).is_empty());
}

#[test]
fn keyring_writer_output_imports_in_gpg_and_rpgp() {
    let keys: Vec<CheckedKey> = (0..3)
        .map(|i| {
            let uid = format!("User {i} <user{i}@example.org>");
            check_key(ed25519_secret(&[&uid]).to_public_key(), &KeyPolicy::default()).expect("check")
        })
        .collect();

    // One key: the same bytes as rPGP's own armor writer.
    let single = keys[0].to_armored();
    let reference = armor_public_key(keys[0].signed_public_key()).expect("armor");
    assert_eq!(single, reference);
    assert_eq!(dearmor(&single).expect("dearmor"), keys[0].to_bytes());
    let back = read_stored_key(&single, &KeyPolicy::default()).expect("read back");
    assert_eq!(back, keys[0]);

    let mut writer = ArmoredKeyringWriter::new(Vec::new()).expect("new");
    for key in &keys {
        writer.write_key(&key.to_bytes()).expect("write");
    }
    let ring = String::from_utf8(writer.finish().expect("finish")).expect("utf8");
    assert!(ring.lines().all(|l| l.len() <= 64));

    let parsed = parse_armored_keys(&ring).expect("rpgp parses the ring");
    assert_eq!(parsed.len(), 3);
    let streamed: Vec<_> = read_keyring(ring.as_bytes())
        .expect("read_keyring")
        .collect::<Result<_, _>>()
        .expect("all keys read");
    assert_eq!(streamed, parsed);
    for (key, original) in parsed.into_iter().zip(&keys) {
        assert_eq!(&check_key(key, &KeyPolicy::default()).expect("check"), original);
    }

    let home = gpg_home();
    let file = home.path().join("pubkeys.asc");
    std::fs::write(&file, &ring).expect("write ring");
    gpg(home.path(), &["--import", file.to_str().expect("path")]);
    let listing = gpg(home.path(), &["--with-colons", "--list-keys"]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert_eq!(listing.lines().filter(|l| l.starts_with("pub:")).count(), 3);
}

#[test]
fn expired_key_is_reported_not_refused() {
    let created = Utc::now() - chrono::Duration::days(730);
    let spec = KeySpec {
        created,
        expires_after: Some(std::time::Duration::from_secs(365 * 86_400)),
        ..KeySpec::ed25519(&["Old <old@example.org>"])
    };
    let checked = check_key(
        generate_key(rng(), &spec).expect("gen").to_public_key(),
        &KeyPolicy::default(),
    )
    .expect("accepted");
    assert!(checked.is_expired(Utc::now()));
    assert!(!checked.is_expired(created));
    assert_eq!(
        checked.expires_at().map(|t| t.timestamp()),
        Some(created.timestamp() + 365 * 86_400)
    );
    assert_eq!(checked.created_at().timestamp(), created.timestamp());
}

#[test]
fn policy_counts_are_enforced() {
    let key = ed25519_secret(&["A <a@example.org>", "B <b@example.org>"]).to_public_key();
    let policy = KeyPolicy {
        max_user_ids: 1,
        ..KeyPolicy::default()
    };
    assert_eq!(
        check_key(key.clone(), &policy).unwrap_err(),
        KeyError::TooManyUserIds { count: 2, max: 1 }
    );
    let policy = KeyPolicy {
        max_signature_checks: 1,
        ..KeyPolicy::default()
    };
    assert_eq!(check_key(key, &policy).unwrap_err(), KeyError::TooManySignatures(1));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for text in [
        "",
        "hello",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP MESSAGE-----\n\nAAAA\n-----END PGP MESSAGE-----",
    ] {
        assert!(parse_armored_keys(text).is_err(), "{text:?}");
        assert!(dearmor(text).is_err(), "{text:?}");
        assert!(read_stored_key(text, &KeyPolicy::default()).is_err(), "{text:?}");
    }
    assert!(parse_binary_keys(&[]).is_err());
    assert!(parse_binary_keys(&[0x99, 0xff, 0xff, 0xff]).is_err());
    assert!(read_keyring(&[][..]).is_err());

    // Random bytes.
    let mut r = rng();
    for _ in 0..300 {
        let len = r.gen_range(0..200);
        let bytes: Vec<u8> = (0..len).map(|_| r.gen()).collect();
        if let Ok(keys) = parse_binary_keys(&bytes) {
            for key in keys {
                let _ = check_key(key, &KeyPolicy::default());
            }
        }
        if let Ok(iter) = read_keyring(&bytes[..]) {
            for key in iter.take(10).flatten() {
                let _ = check_key(key, &KeyPolicy::default());
            }
        };
    }

    // Every byte of a real key flipped, and every truncation.
    let mut spec = KeySpec::ed25519(&["F <f@example.org>"]);
    spec.encryption_subkey = false;
    let bytes = generate_key(rng(), &spec)
        .expect("gen")
        .to_public_key()
        .to_bytes()
        .expect("bytes");
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut mutated = bytes.clone();
            mutated[i] ^= mask;
            if let Ok(keys) = parse_binary_keys(&mutated) {
                for key in keys {
                    let _ = check_key(key, &KeyPolicy::default());
                }
            }
        }
        let _ = parse_binary_keys(&bytes[..i]);
    }
}
