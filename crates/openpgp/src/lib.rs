//! OpenPGP public keys as the server sees them: found in mail, parsed,
//! checked, stripped, merged and written back out.
//!
//! Everything here reads hostile input (keys arrive by mail from anyone), so
//! nothing in this module panics or unwraps on data from outside, and every
//! refusal is a [`KeyError`] whose `Display` text is plain English, fit for a
//! reply mail. The rules: a key is accepted when its primary key is RSA of at
//! least [`KeyPolicy::min_rsa_bits`] or an elliptic-curve signing key, when at
//! least one user ID carries a self-signature that verifies, and when at
//! least one of those user IDs holds an email address. What is published is
//! the *stripped* key: the primary key, its self-signed user IDs that are
//! clean enough to publish ([`check_user_id`]: one address at most, no
//! control characters) each with its newest valid self-signature (and the
//! self-made certification revocations not older than it), subkeys with
//! their newest valid binding signature (and revocations), the newest
//! direct-key self-signature and key revocations. Superseded
//! self-signatures, third-party certifications and user attributes (photo
//! IDs) are dropped; that keeps records small and defeats certificate
//! flooding. Self-signatures are verified newest first, one at a time,
//! until one verifies (rPGP's `verify_bindings` checks them all and refuses
//! a whole key for one third-party certification); RSA ones through
//! OpenSSL ([`rsa_verify`]). Expired and revoked keys are *reported*, not
//! refused: the caller decides. A signed request's signature counts only
//! from a key that could sign when it did, by the registered copy:
//! [`validity`].
//!
//! The crate also writes armored keyrings in a streaming way
//! ([`ArmoredKeyringWriter`]) for the flat file `pubkeys.asc`, and, with
//! the `keygen` feature, generates keys (`generate_key`,
//! `certify_user_ids`, `revoke_key`) for tests, demos and benchmarks.
//!
//! rPGP's types stay inside: a key as parsed is a [`ParsedKey`], a
//! revocation certificate a [`Revocation`], a checked key a [`CheckedKey`].
//!
//! One file per step: [`armor`] finds armored blocks in text and dearmors
//! them, [`keyring_writer`] writes them, [`parse`] reads keys, [`policy`]
//! says which algorithms and sizes pass, [`check`] checks and strips a key
//! (with [`user_ids`] for its user IDs), [`key`] is the checked key (merge,
//! revocation, re-reading a stored copy, key IDs), [`signed`] verifies
//! signed requests and [`validity`] whether the signer could sign then.

pub mod armor;
pub mod check;
mod error;
pub mod key;
#[cfg(any(test, feature = "keygen"))]
mod keygen;
pub mod keyring_writer;
pub mod parse;
pub mod policy;
mod rsa_verify;
pub mod signed;
#[cfg(test)]
mod tests;
pub mod user_ids;
pub mod validity;

pub use armor::{dearmor, find_armored_keys, public_key_blocks, PublicKeyBlocks, BEGIN_PUBLIC_KEY, END_PUBLIC_KEY};
pub use check::{check_key, has_expired};
pub use error::KeyError;
pub use key::{read_stored_key, CheckedKey, Revocation};
#[cfg(any(test, feature = "keygen"))]
pub use keygen::{
    armor_public_key, armor_secret_key, certify_user_ids, clearsign, generate_key, generate_material,
    key_from_material, read_secret_key, revocation_of, revoke_key, revoke_user_id, GenAlgorithm, KeyMaterial, KeySpec,
};
pub use keyring_writer::ArmoredKeyringWriter;
pub use parse::{parse_armored_keys, parse_binary_keys, parse_revocation_certificate, read_keyring, ParsedKey};
/// rPGP's key types, for code that makes test keys (the `keygen` feature).
#[cfg(any(test, feature = "keygen"))]
pub use pgp::composed::{SignedPublicKey, SignedSecretKey};
pub use policy::KeyPolicy;
pub use signed::{find_signed_parts, SignatureError, SignedPart, Verified, MAX_SIGNED_CONTENT};
pub use user_ids::{check_user_id, email_of_user_id, StrippedUserId, UncleanUserId};
pub use validity::{check_signer, InvalidSigner};
