//! The checked key ([`CheckedKey`]): what it says, merging another copy
//! into it, adding a revocation, reading a stored copy back, and key IDs.
//!
//! Every re-check (a merge, a revocation added, a stored copy read back)
//! runs [`check_key`] with the caller's policy, which must be the
//! configured one: a key registered under a laxer policy than the default
//! (say `min_rsa_bits = 1536`) must keep merging and reading back. Which
//! signatures a key may have issued is asked in one place,
//! [`KeyIds::may_have_issued`].

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use pgp::composed::{SignedKeyDetails, SignedPublicKey};
use pgp::packet::Signature;
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, KeyId, SignatureBytes};

use ripem_core::types::{Email, Fingerprint};

use crate::check::check_key;
use crate::error::{guarded, KeyError};
use crate::keyring_writer::ArmoredKeyringWriter;
use crate::parse::{parse_armored_keys, ParsedKey};
use crate::policy::{describe_algorithm, KeyPolicy};
use crate::rsa_verify::Checked;
use crate::user_ids::StrippedUserId;

/// A key that passed the structural checks of [`check_key`], stripped to
/// what the server publishes: the primary key; user IDs that carry a valid
/// self-signature, each with its newest one (and the self-made
/// certification revocations not older than it); subkeys with their newest
/// valid binding signature and the revocations that verify; the newest
/// direct-key self-signature and the key revocations that verify against
/// the primary key. Superseded self-signatures, user attributes and
/// third-party certifications are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedKey {
    pub(crate) key: SignedPublicKey,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) emails: Vec<Email>,
    pub(crate) stripped: Vec<StrippedUserId>,
    pub(crate) revoked: bool,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    pub(crate) created_at: DateTime<Utc>,
}

impl CheckedKey {
    /// The primary key's fingerprint.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Emails from the user IDs that carry a valid, non-revoked
    /// self-signature, deduplicated, in the order of the key's user IDs.
    /// The email of a user ID is its `<...>` part if any, else the whole
    /// user ID if that is a bare address. User IDs without a usable address
    /// stay in the key but give no email.
    pub fn emails(&self) -> &[Email] {
        &self.emails
    }

    /// The self-signed user IDs that were taken out of the key because
    /// they may not be published ([`check_user_id`]), with the reasons, for
    /// the reply.
    pub fn stripped_user_ids(&self) -> &[StrippedUserId] {
        &self.stripped
    }

    /// Whether the key carries a valid key revocation signature made by
    /// its primary key.
    pub fn is_revoked(&self) -> bool {
        self.revoked
    }

    /// When the key expires, from the key expiration time of the newest
    /// valid self-signature (user ID certification or direct-key
    /// signature); `None` if it never expires.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    /// Whether the key has expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The primary key's creation time.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// A short description of the primary key's algorithm, such as
    /// `"EdDSA"`, `"RSA 3072"` or `"ECDSA NIST P-256"`.
    pub fn algorithm(&self) -> String {
        describe_algorithm(&self.key.primary_key)
    }

    /// The stripped key as binary OpenPGP packets (a transferable public key).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a checked key into memory does not fail in practice;
        // an empty result would simply be refused by any reader.
        self.key.to_bytes().unwrap_or_default()
    }

    /// ASCII armor of the stripped key: deterministic (no `Version:` or
    /// `Comment:` headers, with a CRC24 checksum line), lines ending in `"\n"`.
    pub fn to_armored(&self) -> String {
        // Writing into a Vec cannot fail.
        let out = ArmoredKeyringWriter::new(Vec::new())
            .and_then(|mut writer| {
                writer.write_key(&self.to_bytes())?;
                writer.finish()
            })
            .unwrap_or_default();
        String::from_utf8(out).unwrap_or_default()
    }

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

    /// The published user IDs, in the key's order, as text (invalid UTF-8
    /// replaced).
    pub fn user_ids(&self) -> Vec<String> {
        self.key
            .details
            .users
            .iter()
            .map(|user| String::from_utf8_lossy(user.id.id()).into_owned())
            .collect()
    }

    /// The stripped key as rPGP's type.
    pub(crate) fn signed_public_key(&self) -> &SignedPublicKey {
        &self.key
    }
}

/// What makes a signature the same signature: its cryptographic value
/// (two packets that differ only in unhashed subpackets count as one),
/// with the packet's body only for a packet without one.
fn sig_identity(sig: &Signature) -> Vec<u8> {
    match sig.signature() {
        Some(SignatureBytes::Mpis(mpis)) => {
            let mut identity = Vec::new();
            for mpi in mpis {
                let bytes = mpi.as_ref();
                identity.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                identity.extend_from_slice(bytes);
            }
            identity
        }
        Some(SignatureBytes::Native(bytes)) => bytes.to_vec(),
        None => sig.to_bytes().unwrap_or_default(),
    }
}

fn add_missing_sigs(into: &mut Vec<Signature>, from: &[Signature]) {
    let mut seen: HashSet<Vec<u8>> = into.iter().map(sig_identity).collect();
    for sig in from {
        if seen.insert(sig_identity(sig)) {
            into.push(sig.clone());
        }
    }
}

/// Drops identical signature packets, keeping the first of each.
pub(crate) fn dedup_sigs(sigs: Vec<Signature>) -> Vec<Signature> {
    let mut seen = HashSet::new();
    sigs.into_iter().filter(|s| seen.insert(sig_identity(s))).collect()
}

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

/// A key revocation signature on its own, as a revocation certificate
/// holds it ([`parse_revocation_certificate`](crate::parse_revocation_certificate)),
/// to be added to the key it revokes ([`CheckedKey::with_revocation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation(pub(crate) Signature);

impl Revocation {
    /// The key IDs the revocation names as its issuer (16 upper-case hex
    /// digits each).
    pub fn issuer_key_ids(&self) -> Vec<String> {
        issuer_key_ids_of(&self.0)
    }
}

impl CheckedKey {
    /// The key IDs of the primary key and every subkey, as 16 upper-case hex
    /// digits: what a signature names as its issuer.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids = vec![hex_upper(self.key.primary_key.legacy_key_id().as_ref())];
        ids.extend(
            self.key
                .public_subkeys
                .iter()
                .map(|sub| hex_upper(sub.key.legacy_key_id().as_ref())),
        );
        ids
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

/// How signatures name a key (primary key or subkey), worked out once per
/// key: a key carries dozens of third-party certifications, each asked
/// about.
pub(crate) struct KeyIds {
    key_id: KeyId,
    fingerprint: pgp::types::Fingerprint,
}

impl KeyIds {
    pub(crate) fn of(key: &impl KeyDetails) -> KeyIds {
        KeyIds {
            key_id: key.legacy_key_id(),
            fingerprint: key.fingerprint(),
        }
    }

    /// Whether `sig` may have been made by this key, the one check of the
    /// crate for it: its issuer subpackets name the key (by key ID or
    /// fingerprint), or it names no issuer at all (then only the
    /// cryptographic check can tell).
    pub(crate) fn may_have_issued(&self, sig: &Signature) -> bool {
        let ids = sig.issuer_key_id();
        let fps = sig.issuer_fingerprint();
        if ids.is_empty() && fps.is_empty() {
            return true;
        }
        ids.iter().any(|id| **id == self.key_id) || fps.iter().any(|fp| **fp == self.fingerprint)
    }

    /// The fingerprint, as ripem's type.
    pub(crate) fn fingerprint(&self) -> Result<Fingerprint, KeyError> {
        Fingerprint::from_bytes(self.fingerprint.as_bytes()).map_err(|e| KeyError::Unreadable(e.to_string()))
    }
}

/// The key ID a fingerprint stands for: its last eight bytes for v4, its
/// first eight for v5 and v6.
pub(crate) fn key_id_bytes_of(fingerprint: &pgp::types::Fingerprint) -> Option<[u8; 8]> {
    let bytes: &[u8] = match fingerprint {
        pgp::types::Fingerprint::V4(bytes) => &bytes[12..],
        pgp::types::Fingerprint::V5(bytes) | pgp::types::Fingerprint::V6(bytes) => &bytes[..8],
        _ => return None,
    };
    bytes.try_into().ok()
}

/// The key IDs a signature names as its issuer (16 upper-case hex digits).
pub(crate) fn issuer_key_ids_of(sig: &Signature) -> Vec<String> {
    let mut ids: Vec<String> = sig.issuer_key_id().iter().map(|id| hex_upper(id.as_ref())).collect();
    for fingerprint in sig.issuer_fingerprint() {
        if let Some(id) = key_id_bytes_of(fingerprint) {
            ids.push(hex_upper(&id));
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
