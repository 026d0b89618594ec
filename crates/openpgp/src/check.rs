//! Checking a key ([`check_key`]) and stripping it to what is published,
//! step by step: the primary key (version, algorithm, the policy's
//! counts), the key's own signatures (key revocations and direct-key
//! self-signatures), the user IDs ([`user_ids`](crate::user_ids)), the
//! subkeys; then expiry and revocation are read off what is kept.
//!
//! The rules: only signatures the primary key may have issued
//! ([`KeyIds::may_have_issued`]) are verified, newest first, each paid
//! from the policy's budget; of self-signatures only the newest that
//! verifies is kept (a newer one supersedes the older), of revocations
//! every one that verifies. [`has_expired`] asks the cheap question of a
//! key before the full check.

use chrono::{DateTime, Utc};
use pgp::composed::{SignedKeyDetails, SignedPublicKey, SignedPublicSubKey};
use pgp::errors::Error as PgpError;
use pgp::packet::{PublicKey, Signature, SignatureType, UserId};
use pgp::types::{KeyDetails as _, KeyVersion, Tag};

use ripem_core::types::Fingerprint;

use crate::error::{guarded, KeyError};
use crate::key::CheckedKey;
use crate::key_id::KeyIds;
use crate::parse::ParsedKey;
use crate::policy::{check_algorithm, KeyPolicy};
use crate::rsa_verify::Checked;
use crate::sigs::{by_primary, expiry_set_by, newest_first, newest_verified, sig_time, to_utc, verified, Budget};
use crate::user_ids::{self, check_user_id};

/// Checks one parsed key and strips it (see [`CheckedKey`]). Refuses keys
/// whose primary algorithm is not accepted (DSA, Elgamal, RSA below
/// `policy.min_rsa_bits`, encryption-only algorithms), keys over the
/// policy's counts, keys with no user ID carrying a valid self-signature,
/// and keys with no email address in those user IDs. Does not refuse
/// expired or revoked keys: see [`CheckedKey::is_expired`] and
/// [`CheckedKey::is_revoked`].
pub fn check_key(key: impl Into<ParsedKey>, policy: &KeyPolicy) -> Result<CheckedKey, KeyError> {
    let ParsedKey(key) = key.into();
    guarded(move || check_key_inner(key, policy))
}

/// The steps of [`check_key`], in order.
fn check_key_inner(key: SignedPublicKey, policy: &KeyPolicy) -> Result<CheckedKey, KeyError> {
    let primary = key.primary_key;
    let (ids, fingerprint) = check_primary(&primary, &key.details, key.public_subkeys.len(), policy)?;
    let mut budget = Budget::new(policy.max_signature_checks);
    let signer = Checked::new(&primary);
    let details = key.details;
    let (revocations, directs) = check_key_signatures(
        details.revocation_signatures,
        details.direct_signatures,
        &signer,
        &ids,
        &mut budget,
    )?;
    let users = user_ids::check_user_ids(details.users, directs.first(), &signer, &ids, &mut budget)?;
    let subkeys = check_subkeys(key.public_subkeys, &signer, &ids, &mut budget)?;

    // Expiry from the newest valid self-signature.
    let created_secs = primary.created_at().as_secs();
    let expires_at = users
        .newest_self_sig
        .as_ref()
        .and_then(|sig| expiry_set_by(sig, created_secs));
    let revoked = !revocations.is_empty();
    let stripped = SignedPublicKey {
        primary_key: primary,
        details: SignedKeyDetails {
            revocation_signatures: revocations,
            direct_signatures: directs,
            users: users.users,
            user_attributes: Vec::new(),
        },
        public_subkeys: subkeys,
    };
    Ok(CheckedKey {
        key: stripped,
        fingerprint,
        emails: users.emails,
        stripped: users.stripped,
        revoked,
        expires_at,
        created_at: to_utc(created_secs),
        derived: Default::default(),
    })
}

/// The key-signature step of [`check_key`]: the key revocations made by
/// the primary key that verify, and its newest direct-key self-signature
/// that verifies.
fn check_key_signatures(
    revocations: Vec<Signature>,
    directs: Vec<Signature>,
    signer: &Checked<'_, PublicKey>,
    ids: &KeyIds,
    budget: &mut Budget,
) -> Result<(Vec<Signature>, Vec<Signature>), KeyError> {
    let revocations = verified(
        by_primary(revocations, ids, SignatureType::KeyRevocation),
        budget,
        |sig| sig.verify_key(signer),
    )?;
    let directs = newest_verified(by_primary(directs, ids, SignatureType::Key), budget, |sig| {
        sig.verify_key(signer)
    })?;
    Ok((revocations, directs))
}

/// The primary-key step of [`check_key`]: its version, its algorithm and
/// the policy's counts; returns how signatures name it, and its
/// fingerprint.
fn check_primary(
    primary: &PublicKey,
    details: &SignedKeyDetails,
    subkey_count: usize,
    policy: &KeyPolicy,
) -> Result<(KeyIds, Fingerprint), KeyError> {
    match primary.version() {
        KeyVersion::V4 | KeyVersion::V6 => {}
        other => return Err(KeyError::UnsupportedVersion(u8::from(other))),
    }
    let ids = KeyIds::of(primary);
    let fingerprint = ids.fingerprint()?;
    check_algorithm(primary, policy)?;

    let user_count = details.users.len();
    if user_count > policy.max_user_ids {
        return Err(KeyError::TooManyUserIds {
            count: user_count,
            max: policy.max_user_ids,
        });
    }
    if subkey_count > policy.max_subkeys {
        return Err(KeyError::TooManySubkeys {
            count: subkey_count,
            max: policy.max_subkeys,
        });
    }
    if user_count == 0 {
        return Err(KeyError::NoUserId);
    }
    Ok((ids, fingerprint))
}

/// The subkey step of [`check_key`]: each subkey with its newest binding
/// that verifies and its revocations; a subkey without a valid binding is
/// dropped. A subkey repeated in the key counts once.
fn check_subkeys(
    offered: Vec<SignedPublicSubKey>,
    signer: &Checked<'_, PublicKey>,
    ids: &KeyIds,
    budget: &mut Budget,
) -> Result<Vec<SignedPublicSubKey>, KeyError> {
    let mut distinct: Vec<(pgp::types::Fingerprint, SignedPublicSubKey)> = Vec::new();
    for subkey in offered {
        let fingerprint = subkey.key.fingerprint();
        match distinct.iter_mut().find(|(seen, _)| *seen == fingerprint) {
            Some((_, first)) => first.signatures.extend(subkey.signatures),
            None => distinct.push((fingerprint, subkey)),
        }
    }
    let mut subkeys = Vec::new();
    for (_, subkey) in distinct {
        let (bindings, revocations): (Vec<Signature>, Vec<Signature>) = newest_first(subkey.signatures, ids)
            .into_iter()
            .partition(|sig| sig.typ() == Some(SignatureType::SubkeyBinding));
        let bound = Checked::new(&subkey.key);
        let binding = newest_verified(bindings, budget, |sig| {
            sig.verify_subkey_binding(signer, &bound)?;
            // A signing subkey must sign its binding back (a back
            // signature), or anyone could claim someone else's subkey.
            if sig.key_flags().sign() {
                let backsig = sig.embedded_signature().ok_or_else(|| PgpError::Message {
                    message: "signing subkey without a back signature".to_string(),
                    backtrace: None,
                })?;
                backsig.verify_primary_key_binding(&bound, signer)?;
            }
            Ok(())
        })?;
        if binding.is_empty() {
            continue;
        }
        let revocations = verified(
            revocations
                .into_iter()
                .filter(|sig| sig.typ() == Some(SignatureType::SubkeyRevocation))
                .collect(),
            budget,
            |sig| sig.verify_subkey_binding(signer, &bound),
        )?;
        let mut signatures = binding;
        signatures.extend(revocations);
        subkeys.push(SignedPublicSubKey {
            key: subkey.key,
            signatures,
        });
    }
    Ok(subkeys)
}

/// Most signatures [`has_expired`] checks before leaving the question to
/// [`check_key`].
const EXPIRY_PROBE_CHECKS: usize = 8;

/// Whether `key` has expired at `now` by its newest self-signature that
/// verifies (the rule of [`CheckedKey::expires_at`]), found by checking as
/// few signatures as that takes: usually one, and none unless the newest
/// self-signature claims an expiry already past. `false` when in doubt:
/// a key revocation (which [`check_key`] must weigh), no self-signature
/// that verifies among the first few. A keyring of old keys then costs a
/// check per key rather than one per user ID and subkey: the Debian
/// keyring's expired keys are a third of it.
pub fn has_expired(key: &ParsedKey, now: DateTime<Utc>) -> bool {
    guarded(|| Ok::<_, KeyError>(expired_by_newest_self_signature(&key.0, now))).unwrap_or(false)
}

fn expired_by_newest_self_signature(key: &SignedPublicKey, now: DateTime<Utc>) -> bool {
    let primary = &key.primary_key;
    let ids = KeyIds::of(primary);
    if key
        .details
        .revocation_signatures
        .iter()
        .any(|sig| ids.may_have_issued(sig))
    {
        return false;
    }
    // User IDs that may not be published say nothing about expiry: the
    // check strips them.
    let mut candidates: Vec<(&Signature, Option<&UserId>)> = key
        .details
        .users
        .iter()
        .filter(|user| check_user_id(user.id.id()).is_ok())
        .flat_map(|user| user.signatures.iter().map(move |sig| (sig, Some(&user.id))))
        .filter(|(sig, _)| sig.is_certification() && sig.typ() != Some(SignatureType::CertRevocation))
        .chain(
            key.details
                .direct_signatures
                .iter()
                .filter(|sig| sig.typ() == Some(SignatureType::Key))
                .map(|sig| (sig, None)),
        )
        .filter(|(sig, _)| ids.may_have_issued(sig))
        .collect();
    candidates.sort_by_key(|(sig, _)| std::cmp::Reverse(sig_time(sig)));
    let created = primary.created_at().as_secs();
    let expired = |sig: &Signature| expiry_set_by(sig, created).is_some_and(|at| at <= now);
    if !candidates.first().is_some_and(|(sig, _)| expired(sig)) {
        return false;
    }
    let signer = Checked::new(primary);
    for (sig, user_id) in candidates.iter().take(EXPIRY_PROBE_CHECKS) {
        let verified = match user_id {
            Some(id) => sig.verify_certification(&signer, Tag::UserId, *id),
            None => sig.verify_key(&signer),
        };
        if verified.is_ok() {
            // Self-signatures made in the same second may disagree; which
            // one counts is check_key's to say.
            let tie = candidates
                .iter()
                .any(|(other, _)| sig_time(other) == sig_time(sig) && expired(other) != expired(sig));
            return expired(sig) && !tie;
        }
    }
    false
}
