//! Whether a key registered here may have made a signature at a given time:
//! the one rule every signed request (change, remove, and updates from
//! peer servers) is held to before what it asks for counts.
//!
//! A signature that verifies cryptographically proves only that someone
//! held the secret key, not that the key still speaks for its owner. The
//! question is put to the *registered* copy, with everything known about it
//! now (a revocation merged last week counts against a signature dated
//! before it), never to the copy the request carries: a copy whose expiry
//! was extended only on the sender's machine, or an old copy from before a
//! revocation, proves nothing. The rules, for a signature made at time T
//! by the primary key or by a subkey:
//!
//! * No key signs before it was created.
//! * A revoked key signs nothing, and a subkey of a revoked primary key
//!   signs nothing: a revocation stops every signature, earlier ones too
//!   (the secret key may have leaked long before anyone noticed), except a
//!   *soft* one, whose reason says the key was superseded or retired and so
//!   was not compromised: that stops only the signatures made at or after
//!   the revocation's own creation time. No reason, "compromised" and any
//!   other reason are hard.
//! * An expired key signs nothing after its expiry: the primary key's
//!   expiry by its newest self-signature ([`CheckedKey::expires_at`]), a
//!   subkey's by its binding, and a subkey's signatures also stop when its
//!   primary key expires.
//! * A subkey signs only under a binding signature made at or before T that
//!   carries the signing flag ([`check_key`](super::check_key) has already
//!   kept only bindings that verify, with a back signature for signing
//!   subkeys, and only the newest of them).
//!
//! Each refusal is an [`InvalidSigner`] whose `Display` text names the key
//! and the date, for the reply mail.

use std::fmt;

use chrono::{DateTime, Utc};
use pgp::composed::SignedPublicSubKey;
use pgp::packet::{RevocationCode, Signature, SignatureType};
use pgp::types::KeyDetails as _;

use super::{expiry_set_by, sig_time, to_utc, CheckedKey};
use crate::types::Fingerprint;

/// One of a registered key's keys, named in a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerKey {
    /// The primary key.
    Primary(Fingerprint),
    /// A subkey.
    Subkey(Fingerprint),
}

impl fmt::Display for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignerKey::Primary(fingerprint) => write!(f, "key {fingerprint}"),
            SignerKey::Subkey(fingerprint) => write!(f, "subkey {fingerprint}"),
        }
    }
}

/// The reason a revocation gives, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    /// No reason subpacket, or reason 0.
    Unspecified,
    /// The key was superseded by another (soft).
    Superseded,
    /// The key's secret was compromised.
    Compromised,
    /// The key is no longer used (soft).
    Retired,
    /// Any other code (treated as hard).
    Other(u8),
}

impl RevocationReason {
    fn of(sig: &Signature) -> RevocationReason {
        match sig.revocation_reason_code() {
            None | Some(RevocationCode::NoReason) => RevocationReason::Unspecified,
            Some(RevocationCode::KeySuperseded) => RevocationReason::Superseded,
            Some(RevocationCode::KeyCompromised) => RevocationReason::Compromised,
            Some(RevocationCode::KeyRetired) => RevocationReason::Retired,
            Some(other) => RevocationReason::Other(u8::from(*other)),
        }
    }

    /// Whether the revocation says the key was not compromised, so that
    /// signatures made before it still stand.
    pub fn is_soft(self) -> bool {
        matches!(self, RevocationReason::Superseded | RevocationReason::Retired)
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevocationReason::Unspecified => f.write_str("no reason given"),
            RevocationReason::Superseded => f.write_str("superseded by another key"),
            RevocationReason::Compromised => f.write_str("the secret key was compromised"),
            RevocationReason::Retired => f.write_str("no longer used"),
            RevocationReason::Other(code) => write!(f, "reason code {code}"),
        }
    }
}

/// Why a key registered here may not have made a signature, in plain
/// English for the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSigner {
    /// The signer is neither the primary key nor a subkey of the key.
    #[error("signed by key {0}, which is not part of the registered key")]
    NotPartOfKey(Fingerprint),
    /// Dated before the signing key existed.
    #[error("signed by {signer} on {signed_at}, before the key was created on {created}")]
    BeforeCreation {
        /// The key that signed.
        signer: SignerKey,
        /// When the signature says it was made.
        signed_at: DateTime<Utc>,
        /// When that key was created.
        created: DateTime<Utc>,
    },
    /// The signing key itself is revoked.
    #[error("signed by {signer}, which was revoked on {on} ({reason})")]
    Revoked {
        /// The key that signed.
        signer: SignerKey,
        /// When the revocation was made.
        on: DateTime<Utc>,
        /// The revocation's reason.
        reason: RevocationReason,
    },
    /// A subkey signed, but its primary key is revoked.
    #[error("signed by subkey {subkey} of key {primary}, which was revoked on {on} ({reason})")]
    PrimaryRevoked {
        /// The subkey that signed.
        subkey: Fingerprint,
        /// The revoked primary key.
        primary: Fingerprint,
        /// When the revocation was made.
        on: DateTime<Utc>,
        /// The revocation's reason.
        reason: RevocationReason,
    },
    /// The signing key had expired when it signed.
    #[error("signed by {signer} after it expired on {on}")]
    Expired {
        /// The key that signed.
        signer: SignerKey,
        /// When it expired.
        on: DateTime<Utc>,
    },
    /// A subkey signed after its primary key had expired.
    #[error("signed by subkey {subkey} after its key {primary} expired on {on}")]
    PrimaryExpired {
        /// The subkey that signed.
        subkey: Fingerprint,
        /// The expired primary key.
        primary: Fingerprint,
        /// When the primary key expired.
        on: DateTime<Utc>,
    },
    /// The subkey's binding does not allow signing.
    #[error("signed by subkey {0}, which the registered key does not bind for signing")]
    NotSigningSubkey(Fingerprint),
    /// The subkey's binding is newer than the signature.
    #[error("signed by subkey {subkey} on {signed_at}, before the registered key bound it for signing on {bound}")]
    NotYetBound {
        /// The subkey that signed.
        subkey: Fingerprint,
        /// When the signature says it was made.
        signed_at: DateTime<Utc>,
        /// When the binding that is registered was made.
        bound: DateTime<Utc>,
    },
}

/// Whether `signer` (the fingerprint of `key`'s primary key or of one of
/// its subkeys) may have made a signature at `signed_at`, judged by the
/// registered copy `key` and everything it says now (see the module's
/// rules). Call it after the signature has verified cryptographically with
/// that key, with the signature's own creation time.
pub fn check_signer(key: &CheckedKey, signer: &Fingerprint, signed_at: DateTime<Utc>) -> Result<(), InvalidSigner> {
    let primary = key.fingerprint();
    if signer == primary {
        return check_primary(key, signed_at);
    }
    let Some(subkey) = key
        .signed_public_key()
        .public_subkeys
        .iter()
        .find(|sub| Fingerprint::from_bytes(sub.key.fingerprint().as_bytes()).is_ok_and(|fpr| fpr == *signer))
    else {
        return Err(InvalidSigner::NotPartOfKey(signer.clone()));
    };
    check_primary(key, signed_at).map_err(|err| match err {
        InvalidSigner::Revoked { on, reason, .. } => InvalidSigner::PrimaryRevoked {
            subkey: signer.clone(),
            primary: primary.clone(),
            on,
            reason,
        },
        InvalidSigner::Expired { on, .. } => InvalidSigner::PrimaryExpired {
            subkey: signer.clone(),
            primary: primary.clone(),
            on,
        },
        other => other,
    })?;
    check_subkey(subkey, signer, signed_at)
}

/// The rules for the primary key, named as the signer.
fn check_primary(key: &CheckedKey, signed_at: DateTime<Utc>) -> Result<(), InvalidSigner> {
    let signer = || SignerKey::Primary(key.fingerprint().clone());
    if signed_at < key.created_at() {
        return Err(InvalidSigner::BeforeCreation {
            signer: signer(),
            signed_at,
            created: key.created_at(),
        });
    }
    if let Some((on, reason)) = revoked_for(&key.signed_public_key().details.revocation_signatures, signed_at) {
        return Err(InvalidSigner::Revoked {
            signer: signer(),
            on,
            reason,
        });
    }
    match key.expires_at() {
        Some(on) if on <= signed_at => Err(InvalidSigner::Expired { signer: signer(), on }),
        _ => Ok(()),
    }
}

/// The rules for a subkey of a key that may sign at `signed_at`.
fn check_subkey(
    subkey: &SignedPublicSubKey,
    fingerprint: &Fingerprint,
    signed_at: DateTime<Utc>,
) -> Result<(), InvalidSigner> {
    let signer = || SignerKey::Subkey(fingerprint.clone());
    let created_secs = subkey.key.created_at().as_secs();
    let created = to_utc(created_secs);
    if signed_at < created {
        return Err(InvalidSigner::BeforeCreation {
            signer: signer(),
            signed_at,
            created,
        });
    }
    let revocations: Vec<Signature> = subkey
        .signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::SubkeyRevocation))
        .cloned()
        .collect();
    if let Some((on, reason)) = revoked_for(&revocations, signed_at) {
        return Err(InvalidSigner::Revoked {
            signer: signer(),
            on,
            reason,
        });
    }
    let Some(binding) = subkey
        .signatures
        .iter()
        .find(|sig| sig.typ() == Some(SignatureType::SubkeyBinding))
    else {
        return Err(InvalidSigner::NotSigningSubkey(fingerprint.clone()));
    };
    let bound = to_utc(sig_time(binding));
    if bound > signed_at {
        return Err(InvalidSigner::NotYetBound {
            subkey: fingerprint.clone(),
            signed_at,
            bound,
        });
    }
    if !binding.key_flags().sign() {
        return Err(InvalidSigner::NotSigningSubkey(fingerprint.clone()));
    }
    match expiry_set_by(binding, created_secs) {
        Some(on) if on <= signed_at => Err(InvalidSigner::Expired { signer: signer(), on }),
        _ => Ok(()),
    }
}

/// The first of `revocations` (all verified by [`check_key`](super::check_key))
/// that stops a signature made at `signed_at`, with its date and reason.
fn revoked_for(revocations: &[Signature], signed_at: DateTime<Utc>) -> Option<(DateTime<Utc>, RevocationReason)> {
    revocations.iter().find_map(|sig| {
        let on = to_utc(sig_time(sig));
        let reason = RevocationReason::of(sig);
        (!reason.is_soft() || signed_at >= on).then_some((on, reason))
    })
}
