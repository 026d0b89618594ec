//! Self-signatures, one step at a time: the helpers every check shares.
//!
//! A key carries many signatures and most are not worth verifying: only
//! those the primary key may have issued ([`KeyIds::may_have_issued`]) are
//! tried, newest first, until one verifies ([`newest_verified`]), and a
//! [`Budget`] bounds the verifications one key may cost, so a flooded key
//! can't buy unbounded work. RSA signatures go through OpenSSL
//! (`rsa_verify`). Signature times are read here ([`sig_time`],
//! [`utc_of`]), and a key or subkey a signed request may be checked
//! against is a [`Verifier`].

use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};
use pgp::packet::{PublicKey, PublicSubkey, Signature, SignatureType};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, SignatureBytes};

use ripem_core::types::Fingerprint;

use crate::error::{KeyError, SignatureError};
use crate::key_id::KeyIds;
use crate::rsa_verify::Checked;

/// Counts signature verifications against the policy's limit.
pub(crate) struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    /// A budget of `limit` verifications.
    pub(crate) fn new(limit: usize) -> Budget {
        Budget { left: limit, limit }
    }

    pub(crate) fn spend(&mut self) -> Result<(), KeyError> {
        if self.left == 0 {
            return Err(KeyError::TooManySignatures(self.limit));
        }
        self.left -= 1;
        Ok(())
    }
}

pub(crate) fn sig_time(sig: &Signature) -> u32 {
    sig.created().map_or(0, |t| t.as_secs())
}

pub(crate) fn to_utc(secs: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(i64::from(secs), 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// When a self-signature says a key created at `created_secs` expires;
/// `None` if never.
pub(crate) fn expiry_set_by(sig: &Signature, created_secs: u32) -> Option<DateTime<Utc>> {
    let lifetime = sig.key_expiration_time()?.as_secs();
    (lifetime != 0).then(|| {
        Utc.timestamp_opt(i64::from(created_secs) + i64::from(lifetime), 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    })
}

/// The signatures the primary key may have made, deduplicated, newest
/// first.
pub(crate) fn newest_first(sigs: Vec<Signature>, ids: &KeyIds) -> Vec<Signature> {
    let mut sigs = dedup_sigs(sigs.into_iter().filter(|sig| ids.may_have_issued(sig)).collect());
    sigs.sort_by_key(|sig| std::cmp::Reverse(sig_time(sig)));
    sigs
}

/// The signatures of type `wanted` that the primary key may have made,
/// newest first.
pub(crate) fn by_primary(sigs: Vec<Signature>, ids: &KeyIds, wanted: SignatureType) -> Vec<Signature> {
    newest_first(sigs, ids)
        .into_iter()
        .filter(|sig| sig.typ() == Some(wanted))
        .collect()
}

/// Every signature that `verify` accepts, each check paid from `budget`.
pub(crate) fn verified(
    sigs: Vec<Signature>,
    budget: &mut Budget,
    verify: impl Fn(&Signature) -> pgp::errors::Result<()>,
) -> Result<Vec<Signature>, KeyError> {
    let mut kept = Vec::new();
    for sig in sigs {
        budget.spend()?;
        if verify(&sig).is_ok() {
            kept.push(sig);
        }
    }
    Ok(kept)
}

/// The first signature (of `sigs`, newest first) that `verify` accepts,
/// alone: a newer self-signature supersedes the older ones (RFC 9580,
/// 5.2.3.10), so they are neither checked nor published.
pub(crate) fn newest_verified(
    sigs: Vec<Signature>,
    budget: &mut Budget,
    verify: impl Fn(&Signature) -> pgp::errors::Result<()>,
) -> Result<Vec<Signature>, KeyError> {
    for sig in sigs {
        budget.spend()?;
        if verify(&sig).is_ok() {
            return Ok(vec![sig]);
        }
    }
    Ok(Vec::new())
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

pub(crate) fn add_missing_sigs(into: &mut Vec<Signature>, from: &[Signature]) {
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

/// A key a signature may be checked against.
pub(crate) enum Verifier<'a> {
    Primary(&'a PublicKey),
    Subkey(&'a PublicSubkey),
}

impl Verifier<'_> {
    pub(crate) fn ids(&self) -> KeyIds {
        match self {
            Verifier::Primary(key) => KeyIds::of(*key),
            Verifier::Subkey(key) => KeyIds::of(*key),
        }
    }

    pub(crate) fn as_dyn(&self) -> &dyn pgp::types::VerifyingKey {
        match self {
            Verifier::Primary(key) => *key,
            Verifier::Subkey(key) => *key,
        }
    }

    pub(crate) fn fingerprint(&self) -> Option<Fingerprint> {
        let fingerprint = match self {
            Verifier::Primary(key) => key.fingerprint(),
            Verifier::Subkey(key) => key.fingerprint(),
        };
        Fingerprint::from_bytes(fingerprint.as_bytes()).ok()
    }

    pub(crate) fn verifies(&self, sig: &Signature, data: &[u8]) -> bool {
        self.ids().may_have_issued(sig)
            && match self {
                Verifier::Primary(key) => sig.verify(&Checked::new(*key), data).is_ok(),
                Verifier::Subkey(key) => sig.verify(&Checked::new(*key), data).is_ok(),
            }
    }
}

pub(crate) fn utc_of(sig: &Signature) -> Result<DateTime<Utc>, SignatureError> {
    sig.created().map(|t| to_utc(t.as_secs())).ok_or(SignatureError::NoTime)
}
