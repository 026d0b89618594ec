//! The checked key ([`CheckedKey`]): what a key that passed `check`
//! says — fingerprint, addresses, user IDs dropped and why, revocation,
//! expiry, algorithm, key IDs — and its stripped form as bytes or armor,
//! optionally with only the user IDs of some addresses. Making one is
//! `check`'s job; merging and re-reading one is `merge`'s, so this module
//! depends on neither.

use std::borrow::Cow;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use pgp::composed::SignedPublicKey;
use pgp::packet::SignatureType;
use pgp::ser::Serialize;
use pgp::types::KeyDetails;

use ripem_core::types::{Email, Fingerprint};

use crate::error::StrippedUserId;
use crate::key_id::hex_upper;
use crate::keyring_writer::ArmoredKeyringWriter;
use crate::policy::{algorithm_number_and_bits, describe_algorithm};
use crate::sigs::to_utc;
use crate::user_ids::email_of_user_id;

/// One published user ID of a key, as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdSummary {
    /// The user ID's bytes (UTF-8 by convention, not by guarantee).
    pub text: Vec<u8>,
    /// When its newest self-signature was made.
    pub created: Option<DateTime<Utc>>,
    /// Whether its owner revoked it.
    pub revoked: bool,
}

/// A key that passed the structural checks of [`check_key`](crate::check_key), stripped to
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
    /// What is made from the packets once and kept.
    pub(crate) derived: Derived,
}

/// What a key's packets give that is made at most once: its armored text
/// ([`CheckedKey::to_armored`], emptied by whatever changes the packets)
/// and its key IDs ([`CheckedKey::key_ids`], which dropping user IDs
/// leaves alone). Never part of a key's identity: two keys are equal
/// whether or not either has made them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Derived {
    armor: OnceLock<String>,
    key_ids: OnceLock<Vec<String>>,
}

impl PartialEq for Derived {
    fn eq(&self, _: &Derived) -> bool {
        true
    }
}

impl Eq for Derived {}

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
    /// they may not be published ([`check_user_id`](crate::check_user_id)), with the reasons, for
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
    /// Made once per key and kept (see [`CheckedKey::with_derived`]).
    pub fn to_armored(&self) -> String {
        self.derived
            .armor
            .get_or_init(|| {
                // Writing into a Vec cannot fail.
                let out = ArmoredKeyringWriter::new(Vec::new())
                    .and_then(|mut writer| {
                        writer.write_key(&self.to_bytes())?;
                        writer.finish()
                    })
                    .unwrap_or_default();
                String::from_utf8(out).unwrap_or_default()
            })
            .clone()
    }

    /// The key with its armored text and key IDs made now: an import
    /// makes them on a checker thread, so the one thread that applies keys
    /// (the import's bottleneck) finds them made for the record, the
    /// key-ID index and the update.
    pub fn with_derived(self) -> CheckedKey {
        self.to_armored();
        self.key_ids();
        self
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

    /// The key with only the user IDs whose address `keep` accepts (user
    /// IDs without an address stay). A record publishes only the user IDs
    /// its own addresses vouch for: one for an address another key holds
    /// stays out of the block, or `gpg --list-keys victim@example.org` on
    /// the flat keyring would list whoever added victim's address to their
    /// key. The key itself, uncopied, when every user ID stays.
    pub fn keeping_user_ids(&self, keep: impl Fn(&Email) -> bool) -> Cow<'_, CheckedKey> {
        let stays = |user: &pgp::types::SignedUser| {
            std::str::from_utf8(user.id.id())
                .ok()
                .and_then(email_of_user_id)
                .is_none_or(|email| keep(&email))
        };
        if self.key.details.users.iter().all(stays) && self.emails.iter().all(&keep) {
            return Cow::Borrowed(self);
        }
        let mut kept = self.clone();
        kept.key.details.users.retain(stays);
        if kept.key.details.users.len() != self.key.details.users.len() {
            kept.derived.armor = OnceLock::new();
        }
        kept.emails.retain(|email| keep(email));
        Cow::Owned(kept)
    }

    /// The primary key's OpenPGP algorithm number (1 RSA, 19 ECDSA, 22
    /// EdDSA, …) and size in bits, as HKP's index lines give them.
    pub fn algorithm_number_and_bits(&self) -> (u8, u32) {
        algorithm_number_and_bits(&self.key.primary_key)
    }

    /// Each published user ID with when it was last self-signed and whether
    /// it is revoked: the `uid:` lines of an HKP index.
    pub fn user_id_summaries(&self) -> Vec<UserIdSummary> {
        self.key
            .details
            .users
            .iter()
            .map(|user| UserIdSummary {
                text: user.id.id().to_vec(),
                created: user
                    .signatures
                    .iter()
                    .filter(|sig| sig.typ() != Some(SignatureType::CertRevocation))
                    .filter_map(|sig| sig.created())
                    .map(|time| to_utc(time.as_secs()))
                    .max(),
                revoked: user
                    .signatures
                    .iter()
                    .any(|sig| sig.typ() == Some(SignatureType::CertRevocation)),
            })
            .collect()
    }
}

impl CheckedKey {
    /// The key IDs of the primary key and every subkey, as 16 upper-case hex
    /// digits: what a signature names as its issuer. Made once per key
    /// and kept.
    pub fn key_ids(&self) -> &[String] {
        self.derived.key_ids.get_or_init(|| {
            let mut ids = vec![hex_upper(self.key.primary_key.legacy_key_id().as_ref())];
            ids.extend(
                self.key
                    .public_subkeys
                    .iter()
                    .map(|sub| hex_upper(sub.key.legacy_key_id().as_ref())),
            );
            ids
        })
    }
}
