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
//! OpenSSL (`rsa_verify`). Expired and revoked keys are *reported*, not
//! refused: the caller decides. A signed request's signature counts only
//! from a key that could sign when it did, by the registered copy:
//! [`check_signer`].
//!
//! The crate also writes armored keyrings in a streaming way
//! ([`ArmoredKeyringWriter`]) for the flat file `pubkeys.asc`, and, with
//! the `keygen` feature, generates keys (`generate_key`,
//! `certify_user_ids`, `revoke_key`) for tests, demos and benchmarks.
//!
//! rPGP's types stay inside: a key as parsed is a [`ParsedKey`], a
//! revocation certificate a [`Revocation`], a checked key a [`CheckedKey`].
//!
//! One file per step, each depending only on those listed before it:
//! `error` (every error type and the panic guard), `key_id` (how a
//! signature names its issuer), `rsa_verify` (RSA through OpenSSL),
//! `sigs` (trying self-signatures newest first, within a budget), `armor`
//! (finding and dearmoring armored blocks), `keyring_writer`, `policy`
//! (which algorithms and sizes pass), `parse` (reading keys and revocation
//! certificates), `split` (a keyring key by key, third-party
//! certifications stepped over unparsed), `user_ids` (which user IDs may be published), `key` (the
//! checked key and what it says), `check` (checking and stripping a key:
//! primary key, user IDs, subkeys), `merge` (another copy, a revocation, a
//! stored copy read back), `validity` (whether a signer could sign then),
//! `signed` (verifying signed requests), `encrypt` (a message encrypted
//! to a checked key: keyreg's confirmation requests) and `keygen` (test keys).
//! Everything public is re-exported here, so each item has one path.

mod armor;
mod check;
mod encrypt;
mod error;
mod key;
mod key_id;
#[cfg(any(test, feature = "keygen"))]
mod keygen;
mod keyring_writer;
mod merge;
mod parse;
mod policy;
mod rsa_verify;
mod signed;
mod sigs;
mod split;
#[cfg(test)]
mod tests;
mod user_ids;
mod validity;

pub use armor::{
    dearmor, find_armored_keys, public_key_blocks, PublicKeyBlocks, BEGIN_PUBLIC_KEY, END_PUBLIC_KEY,
    MAX_SIGNED_CONTENT,
};
pub use check::{check_key, has_expired};
pub use encrypt::{encrypt_to_key, EncryptError, ServerKey, MAX_DECRYPTED};
pub use error::{InvalidSigner, KeyError, RevocationReason, SignatureError, SignerKey, StrippedUserId, UncleanUserId};
pub use key::{CheckedKey, UserIdSummary};
#[cfg(any(test, feature = "keygen"))]
pub use keygen::{
    armor_public_key, armor_secret_key, certify_user_ids, clearsign, generate_key, generate_material,
    key_from_material, read_secret_key, revocation_of, revoke_key, revoke_user_id, GenAlgorithm, KeyMaterial, KeySpec,
};
pub use keyring_writer::ArmoredKeyringWriter;
pub use merge::read_stored_key;
pub use parse::{parse_armored_keys, parse_binary_keys, parse_revocation_certificate, ParsedKey, Revocation};
/// rPGP's key types, for code that makes test keys (the `keygen` feature).
#[cfg(any(test, feature = "keygen"))]
pub use pgp::composed::{SignedPublicKey, SignedSecretKey};
pub use policy::KeyPolicy;
pub use signed::{find_signed_parts, SignedPart, Verified};
pub use split::{read_keyring, split_keyring, KeyPackets, KeySplitter};
pub use user_ids::{check_user_id, email_of_user_id};
pub use validity::check_signer;
