//! A registered key meets another copy of itself, a revocation, or its
//! own stored text read back.
//!
//! Each is checked again with [`check_key`] and the caller's policy,
//! which must be the configured one: a key registered under a laxer policy
//! than the default (say `min_rsa_bits = 1536`) must keep merging and
//! reading back.

use pgp::composed::{SignedKeyDetails, SignedPublicKey};
use pgp::types::KeyDetails;

use crate::check::check_key;
use crate::error::{guarded, KeyError};
use crate::key::CheckedKey;
use crate::parse::{parse_armored_keys, ParsedKey, Revocation};
use crate::policy::KeyPolicy;
use crate::rsa_verify::Checked;
use crate::sigs::add_missing_sigs;

/// Parses the armored text of a stored key (a database record's key block)
/// back into a [`CheckedKey`], checking it again with `policy`: the
/// configured one, the one it was registered under (a key the
/// configuration lets in must read back). Expired or revoked keys are read
/// back like any other.
pub fn read_stored_key(armored: &str, policy: &KeyPolicy) -> Result<CheckedKey, KeyError> {
    let mut keys = parse_armored_keys(armored)?;
    if keys.len() != 1 {
        return Err(KeyError::SeveralKeys(keys.len()));
    }
    match keys.pop() {
        Some(key) => check_key(key, policy),
        None => Err(KeyError::NoKey),
    }
}

impl CheckedKey {
    /// Merges another copy of the same key: the union of user IDs and their
    /// self-signatures, subkeys and their binding signatures, direct-key
    /// signatures and revocations, without duplicating identical packets.
    /// The result is checked again with `policy` (the configured one). A key
    /// with a different fingerprint gives [`KeyError::NotSameKey`].
    pub fn merge(&self, other: &CheckedKey, policy: &KeyPolicy) -> Result<CheckedKey, KeyError> {
        if self.fingerprint != other.fingerprint {
            return Err(KeyError::NotSameKey(
                self.fingerprint.clone(),
                other.fingerprint.clone(),
            ));
        }
        let a = &self.key;
        let b = &other.key;

        let mut revocations = a.details.revocation_signatures.clone();
        add_missing_sigs(&mut revocations, &b.details.revocation_signatures);
        let mut directs = a.details.direct_signatures.clone();
        add_missing_sigs(&mut directs, &b.details.direct_signatures);

        let mut users = a.details.users.clone();
        for user in &b.details.users {
            match users.iter_mut().find(|u| u.id.id() == user.id.id()) {
                Some(existing) => add_missing_sigs(&mut existing.signatures, &user.signatures),
                None => users.push(user.clone()),
            }
        }

        let mut subkeys = a.public_subkeys.clone();
        for subkey in &b.public_subkeys {
            let fp = subkey.key.fingerprint();
            match subkeys.iter_mut().find(|s| s.key.fingerprint() == fp) {
                Some(existing) => add_missing_sigs(&mut existing.signatures, &subkey.signatures),
                None => subkeys.push(subkey.clone()),
            }
        }

        let merged = SignedPublicKey {
            primary_key: a.primary_key.clone(),
            details: SignedKeyDetails {
                revocation_signatures: revocations,
                direct_signatures: directs,
                users,
                user_attributes: Vec::new(),
            },
            public_subkeys: subkeys,
        };
        check_key(ParsedKey(merged), policy)
    }

    /// This key with a revocation signature added, if the signature is a
    /// key revocation made by this key's primary key; checked again with
    /// `policy` (the configured one).
    pub fn with_revocation(&self, revocation: &Revocation, policy: &KeyPolicy) -> Result<CheckedKey, KeyError> {
        let revocation = &revocation.0;
        let verified = guarded(|| {
            revocation
                .verify_key(&Checked::new(&self.key.primary_key))
                .map_err(|_| KeyError::BadSelfSignatures)
        });
        verified?;
        let mut key = self.key.clone();
        key.details.revocation_signatures.push(revocation.clone());
        check_key(ParsedKey(key), policy)
    }
}
