//! keylookup trusts no server: an answer counts only if it carries the key
//! asked for.
//!
//! A key server, or anyone who can answer for one on the path, could send
//! another key's record. The client therefore checks the key block itself,
//! not what the record's `User:` and `Fingerprint:` lines claim. The block
//! must parse, hold one key, and pass the same checks keyreg made before
//! it stored it (self-signatures verified, so a user ID a server added to
//! someone else's key does not count). Asked by fingerprint, the key must
//! have that fingerprint; asked by address, one of the key's self-signed
//! user IDs must carry that address or one of its up-a-level parents
//! (`a@mail.cs.example.edu` may be answered with a key for
//! `a@cs.example.edu` or `a@example.edu`: RIPEM's fallback, which keyserv
//! follows).

use ripem_core::record::{Record, RecordError};
use ripem_core::types::{Email, Fingerprint, Query};
use ripem_openpgp::{self as openpgp, KeyError, KeyPolicy};

/// Smallest RSA key the client accepts: the least any server's
/// `min_rsa_bits` may be, so no correct answer is refused.
const CLIENT_MIN_RSA_BITS: usize = 1024;

/// Why an answer is not the key asked for.
#[derive(Debug, thiserror::Error)]
pub enum WrongAnswer {
    /// The record text does not parse.
    #[error("the record is damaged: {0}")]
    Record(#[from] RecordError),
    /// The record's key block does not parse or does not check.
    #[error("its key block is not a usable key: {0}")]
    Key(#[from] KeyError),
    /// The key block holds more than one key, or none.
    #[error("its key block holds {0} keys, not one")]
    KeyCount(usize),
    /// Asked by fingerprint, the key has another.
    #[error("it carries key {found}, not {asked}")]
    OtherKey {
        /// The fingerprint asked for.
        asked: Fingerprint,
        /// The key's fingerprint.
        found: Fingerprint,
    },
    /// Asked by address, no self-signed user ID of the key carries it.
    #[error("its key {fingerprint} has no user ID for {asked}")]
    NoSuchUser {
        /// The address asked for.
        asked: Email,
        /// The key's fingerprint.
        fingerprint: Fingerprint,
    },
}

/// Checks a `USERINFO` record text against `query`; returns the record.
pub fn check_answer(query: &Query, text: &str) -> Result<Record, WrongAnswer> {
    let record = Record::parse(text)?;
    let mut keys = openpgp::parse_armored_keys(&record.key_armor)?;
    if keys.len() != 1 {
        return Err(WrongAnswer::KeyCount(keys.len()));
    }
    let Some(key) = keys.pop() else {
        return Err(WrongAnswer::KeyCount(0));
    };
    let policy = KeyPolicy {
        min_rsa_bits: CLIENT_MIN_RSA_BITS,
        ..KeyPolicy::default()
    };
    let key = openpgp::check_key(key, &policy)?;
    match query {
        Query::Fingerprint(asked) if asked != key.fingerprint() => Err(WrongAnswer::OtherKey {
            asked: asked.clone(),
            found: key.fingerprint().clone(),
        }),
        Query::Fingerprint(_) => Ok(record),
        Query::Email(asked) => {
            let mut acceptable = std::iter::successors(Some(asked.clone()), Email::up_one_level);
            if acceptable.any(|email| key.emails().contains(&email)) {
                Ok(record)
            } else {
                Err(WrongAnswer::NoSuchUser {
                    asked: asked.clone(),
                    fingerprint: key.fingerprint().clone(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ripem_openpgp::KeySpec;

    fn record_for(user_ids: &[&str], users: &[&str]) -> (String, Fingerprint) {
        let secret = openpgp::generate_key(rand::thread_rng(), &KeySpec::ed25519(user_ids)).unwrap();
        let key = openpgp::check_key(secret.to_public_key(), &KeyPolicy::default()).unwrap();
        let record = Record {
            users: users.iter().map(|u| Email::parse(u).unwrap()).collect(),
            fingerprint: key.fingerprint().clone(),
            registered: chrono::Utc::now(),
            updated: chrono::Utc::now(),
            key_armor: key.to_armored(),
        };
        (record.to_text(), key.fingerprint().clone())
    }

    #[test]
    fn the_key_must_be_the_one_asked_for() {
        let (alice, alice_fpr) = record_for(&["Alice <alice@cs.example.edu>"], &["alice@cs.example.edu"]);
        let (bob, bob_fpr) = record_for(&["Bob <bob@example.org>"], &["bob@example.org"]);
        let q = |text: &str| Query::parse(text).unwrap();
        assert!(check_answer(&q("alice@cs.example.edu"), &alice).is_ok());
        assert!(
            check_answer(&q("Alice@mail.cs.example.edu"), &alice).is_ok(),
            "one level up"
        );
        assert!(check_answer(&q(&format!("0x{alice_fpr}")), &alice).is_ok());
        assert!(matches!(
            check_answer(&q("alice@cs.example.edu"), &bob),
            Err(WrongAnswer::NoSuchUser { .. })
        ));
        assert!(
            matches!(
                check_answer(&q("alice@example.edu"), &alice),
                Err(WrongAnswer::NoSuchUser { .. })
            ),
            "a parent is not answered with a child's key"
        );
        match check_answer(&q(&format!("0x{alice_fpr}")), &bob) {
            Err(WrongAnswer::OtherKey { found, .. }) => assert_eq!(found, bob_fpr),
            other => panic!("{other:?}"),
        }
        // A record whose User: lines claim an address its key lacks.
        let (claims, _) = record_for(&["Bob <bob@example.org>"], &["alice@cs.example.edu"]);
        assert!(check_answer(&q("alice@cs.example.edu"), &claims).is_err());
        assert!(matches!(
            check_answer(&q("bob@example.org"), "User: bob@example.org\n"),
            Err(WrongAnswer::Record(_))
        ));
        let mut broken = Record::parse(&bob).unwrap();
        broken.key_armor = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----".into();
        assert!(check_answer(&q("bob@example.org"), &broken.to_text()).is_err());
    }
}
