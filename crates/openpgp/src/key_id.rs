//! Key IDs: how a signature names the key that made it.
//!
//! A signature names its issuer by a key ID (the last eight bytes of a v4
//! fingerprint, the first eight of v5 and v6) or a fingerprint, or names
//! nothing. [`KeyIds::may_have_issued`] is the crate's one check of
//! whether a key may have issued a signature, before the cryptographic
//! check; [`issuer_key_ids_of`] gives the key IDs the database's key-ID
//! index is searched by.

use pgp::packet::Signature;
use pgp::types::{KeyDetails, KeyId};

use ripem_core::types::Fingerprint;

use crate::error::KeyError;

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

    /// Whether `key_id` is this key's (an issuer subpacket's raw bytes).
    pub(crate) fn has_key_id(&self, key_id: [u8; 8]) -> bool {
        self.key_id.as_ref() == key_id
    }

    /// Whether `fingerprint` is this key's (an issuer fingerprint
    /// subpacket's bytes, its version byte left off).
    pub(crate) fn has_fingerprint(&self, fingerprint: &[u8]) -> bool {
        self.fingerprint.as_bytes() == fingerprint
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

pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
