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
//! The module also writes armored keyrings in a streaming way
//! ([`ArmoredKeyringWriter`]) for the flat file `pubkeys.asc`, and can
//! generate keys ([`generate_key`], [`certify_user_ids`], [`revoke_key`]) for
//! tests, demos and benchmarks.

use std::collections::HashSet;
use std::io::{self, BufRead, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, TimeZone, Utc};
use pgp::armor::{BlockType, Dearmor, DearmorOptions};
use pgp::composed::{
    ArmorOptions, Deserializable, KeyType, SignedKeyDetails, SignedPublicKey, SignedPublicSubKey, SignedSecretKey,
    SignedSecretSubKey,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::errors::Error as PgpError;
use pgp::packet::{
    Features, KeyFlags, PubKeyInner, PublicKey, PublicSubkey, SecretKey, SecretSubkey, Signature, SignatureConfig,
    SignatureType, Subpacket, SubpacketData, UserId,
};
use pgp::ser::Serialize;
use pgp::types::{
    CompressionAlgorithm, Duration as PgpDuration, KeyDetails as _, KeyId, KeyVersion, Password, PublicParams,
    SignatureBytes, Tag, Timestamp,
};
use rand::{CryptoRng, Rng};

use ripem_core::types::{Email, Fingerprint};

mod rsa_verify;
mod user_ids;
pub mod validity;
use rsa_verify::Checked;
pub use user_ids::{check_user_id, email_of_user_id, StrippedUserId, UncleanUserId};
use validity::Judge;
pub use validity::{check_signer, InvalidSigner};

/// The armor line that opens a public key block.
pub const BEGIN_PUBLIC_KEY: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
/// The armor line that closes a public key block.
pub const END_PUBLIC_KEY: &str = "-----END PGP PUBLIC KEY BLOCK-----";

/// Most bytes of armor header lines the dearmorer will buffer.
const ARMOR_HEADER_LIMIT: usize = 1024 * 1024;

/// Why a key is refused, or why key data could not be read. `Display`
/// strings are plain English for a reply mail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The data is not a readable OpenPGP public key (bad armor, bad packets).
    #[error("the key could not be read: {0}")]
    Unreadable(String),
    /// The data held no public key at all.
    #[error("no OpenPGP public key was found")]
    NoKey,
    /// One key was expected but the data held several.
    #[error("expected one key but found {0}")]
    SeveralKeys(usize),
    /// Only version 4 and version 6 keys are accepted.
    #[error("the key is an old version {0} key; only version 4 and 6 keys are accepted")]
    UnsupportedVersion(u8),
    /// The primary key's algorithm is not accepted.
    #[error("the key's primary algorithm ({0}) is not accepted; use RSA of at least 2048 bits or an elliptic-curve key such as Ed25519")]
    UnsupportedAlgorithm(String),
    /// An RSA primary key below the policy's minimum size.
    #[error("RSA keys must be at least {min} bits; this one has {bits}")]
    WeakRsa {
        /// Size of the offered key, in bits.
        bits: usize,
        /// Smallest size accepted.
        min: usize,
    },
    /// The key has no user ID at all.
    #[error("the key has no user ID")]
    NoUserId,
    /// No user ID carries a self-signature that verifies.
    #[error("the key's self-signatures do not verify")]
    BadSelfSignatures,
    /// No self-signed, unrevoked user ID holds an email address.
    #[error("none of the key's self-signed user IDs holds an email address")]
    NoEmail,
    /// The user IDs that would give an address may not be published
    /// ([`check_user_id`]); the stripped ones, with their reasons.
    #[error("no user ID with an email address can be published: {}", user_ids::describe_stripped(.0))]
    NoCleanEmail(Vec<StrippedUserId>),
    /// More user IDs than the policy allows.
    #[error("the key has {count} user IDs; at most {max} are accepted")]
    TooManyUserIds {
        /// User IDs in the key.
        count: usize,
        /// Most accepted.
        max: usize,
    },
    /// More subkeys than the policy allows.
    #[error("the key has {count} subkeys; at most {max} are accepted")]
    TooManySubkeys {
        /// Subkeys in the key.
        count: usize,
        /// Most accepted.
        max: usize,
    },
    /// More candidate self-signatures than the policy is willing to verify.
    #[error("the key carries too many signatures to check (more than {0})")]
    TooManySignatures(usize),
    /// A merge was asked for two different keys.
    #[error("the keys are different keys ({0} and {1})")]
    NotSameKey(Fingerprint, Fingerprint),
    /// The key could not be written out (should not happen for a checked key).
    #[error("the key could not be encoded: {0}")]
    Encoding(String),
    /// Key generation failed (test and demo helpers only).
    #[error("key generation failed: {0}")]
    Generation(String),
}

fn unreadable(err: impl std::error::Error + 'static) -> KeyError {
    KeyError::Unreadable(innermost_reason(&err))
}

/// The text of an error's innermost cause, without the `Debug` dump of
/// nested errors (backtraces and all) that some of rPGP's messages carry:
/// `error while parsing composed key: InvalidPacketContent { source:
/// RSAError { source: ModulusTooLarge, .. } }` becomes `error while
/// parsing composed key: ModulusTooLarge`. It goes into reply mail and
/// log lines.
fn innermost_reason(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let text = cause.to_string();
    let Some(dump) = text.find(" {") else {
        return text;
    };
    let head = text[..dump].rsplit_once(": ").map_or("", |(head, _)| head);
    let innermost = text
        .rsplit("source: ")
        .next()
        .and_then(|rest| rest.split(|c: char| !c.is_alphanumeric()).next())
        .filter(|name| !name.is_empty())
        .unwrap_or(&text[..dump]);
    match head {
        "" => innermost.to_string(),
        head => format!("{head}: {innermost}"),
    }
}

/// Runs `f`, turning a panic inside rPGP into an error instead of taking the
/// process down (a last line of defence against hostile packets).
fn guarded<T>(f: impl FnOnce() -> Result<T, KeyError>) -> Result<T, KeyError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(KeyError::Unreadable("malformed key data (parser failure)".to_string())),
    }
}

/// Finds every ASCII-armored public key block in `text` (a mail body: prose
/// around it, LF or CRLF line endings). A block runs from a line starting
/// with `-----BEGIN PGP PUBLIC KEY BLOCK-----` to the end of the next line
/// starting with `-----END PGP PUBLIC KEY BLOCK-----`; the returned slices
/// include both armor lines (without the final line ending). Quoted blocks
/// (`> -----BEGIN ...`) are not recognised. A BEGIN without an END before the
/// next BEGIN is skipped. Blocks are returned in order.
pub fn find_armored_keys(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut pos = 0;
    while let Some(start) = find_at_line_start(text, BEGIN_PUBLIC_KEY, pos) {
        let after_begin = start + BEGIN_PUBLIC_KEY.len();
        let next_begin = find_at_line_start(text, BEGIN_PUBLIC_KEY, after_begin);
        match find_at_line_start(text, END_PUBLIC_KEY, after_begin) {
            Some(end) if next_begin.is_none_or(|nb| end < nb) => {
                let end_of_marker = end + END_PUBLIC_KEY.len();
                blocks.push(&text[start..end_of_marker]);
                pos = end_of_marker;
            }
            Some(_) => {
                // BEGIN without its own END: skip to the next BEGIN.
                pos = after_begin;
            }
            None => break,
        }
    }
    blocks
}

/// Byte offset of the first occurrence of `needle` at or after `from` that
/// starts a line.
fn find_at_line_start(text: &str, needle: &str, from: usize) -> Option<usize> {
    let mut pos = from;
    while pos <= text.len() {
        let rel = text.get(pos..)?.find(needle)?;
        let at = pos + rel;
        if at == 0 || text.as_bytes().get(at - 1) == Some(&b'\n') {
            return Some(at);
        }
        pos = at + needle.len();
    }
    None
}

/// Parses one armored public key block into all the keys it holds (a block
/// may hold several keys). Pass one block at a time (see
/// [`find_armored_keys`]): rPGP reads only the first block of a text. Any
/// unreadable key in the block makes the whole block an error; use
/// [`read_keyring`] to get keys one by one instead.
pub fn parse_armored_keys(block: &str) -> Result<Vec<SignedPublicKey>, KeyError> {
    let keys = guarded(|| {
        let iter = armored_iter(io::BufReader::new(block.as_bytes()))?;
        collect_all(iter)
    })?;
    if keys.is_empty() {
        return Err(KeyError::NoKey);
    }
    Ok(keys)
}

/// Parses binary (non-armored) OpenPGP data, such as a binary
/// `application/pgp-keys` attachment, into all the public keys it holds.
/// Any unreadable key makes the whole input an error.
pub fn parse_binary_keys(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, KeyError> {
    let keys = guarded(|| {
        let iter = SignedPublicKey::from_bytes_many(bytes).map_err(unreadable)?;
        collect_all(iter.map(|r| r.map_err(unreadable)))
    })?;
    if keys.is_empty() {
        return Err(KeyError::NoKey);
    }
    Ok(keys)
}

fn collect_all(
    iter: impl Iterator<Item = Result<SignedPublicKey, KeyError>>,
) -> Result<Vec<SignedPublicKey>, KeyError> {
    iter.collect()
}

fn armored_iter<'a, R: BufRead + 'a>(
    input: R,
) -> Result<Box<dyn Iterator<Item = Result<SignedPublicKey, KeyError>> + 'a>, KeyError> {
    let options = DearmorOptions::new().set_limit(ARMOR_HEADER_LIMIT);
    let (iter, _headers) = SignedPublicKey::from_armor_many_buf_with_options(input, options).map_err(unreadable)?;
    Ok(Box::new(iter.map(|r| r.map_err(unreadable))))
}

/// Reads a keyring (armored or binary, detected from the first byte) key by
/// key, with bounded memory whatever its size: for `keyreg --import` of
/// large flat files. Each item is one key or the reason it could not be
/// read; reading goes on after a bad key. Armored input must start with the
/// armor line (leading prose is not skipped).
pub fn read_keyring<'a, R: BufRead + 'a>(
    mut input: R,
) -> Result<Box<dyn Iterator<Item = Result<SignedPublicKey, KeyError>> + 'a>, KeyError> {
    let first = match input.fill_buf() {
        Ok(buf) => buf.first().copied(),
        Err(err) => return Err(unreadable(err)),
    };
    let Some(first) = first else {
        return Err(KeyError::NoKey);
    };
    let inner: Box<dyn Iterator<Item = Result<SignedPublicKey, KeyError>> + 'a> = if first & 0x80 != 0 {
        let iter = SignedPublicKey::from_bytes_many(input).map_err(unreadable)?;
        Box::new(iter.map(|r| r.map_err(unreadable)))
    } else {
        guarded(|| armored_iter(input))?
    };
    Ok(Box::new(PanicFreeIter { inner: Some(inner) }))
}

/// Iterator adaptor that ends (after one error item) if the inner iterator
/// panics.
struct PanicFreeIter<'a> {
    inner: Option<Box<dyn Iterator<Item = Result<SignedPublicKey, KeyError>> + 'a>>,
}

impl Iterator for PanicFreeIter<'_> {
    type Item = Result<SignedPublicKey, KeyError>;
    fn next(&mut self) -> Option<Self::Item> {
        let inner = self.inner.as_mut()?;
        match catch_unwind(AssertUnwindSafe(|| inner.next())) {
            Ok(item) => item,
            Err(_) => {
                self.inner = None;
                Some(Err(KeyError::Unreadable(
                    "malformed key data (parser failure)".to_string(),
                )))
            }
        }
    }
}

/// Limits that make a key eligible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Smallest RSA primary key accepted, in bits (2048).
    pub min_rsa_bits: usize,
    /// Most user IDs a key may carry (counted before stripping).
    pub max_user_ids: usize,
    /// Most subkeys a key may carry (counted before stripping).
    pub max_subkeys: usize,
    /// Most signatures that will be cryptographically checked for one key.
    /// Signatures whose issuer is plainly another key are dropped without
    /// checking and do not count.
    pub max_signature_checks: usize,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            min_rsa_bits: 2048,
            max_user_ids: 100,
            max_subkeys: 100,
            max_signature_checks: 2000,
        }
    }
}

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
    key: SignedPublicKey,
    fingerprint: Fingerprint,
    emails: Vec<Email>,
    stripped: Vec<StrippedUserId>,
    revoked: bool,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
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
    /// The result is checked again (with the default policy). A key with a
    /// different fingerprint gives [`KeyError::NotSameKey`].
    pub fn merge(&self, other: &CheckedKey) -> Result<CheckedKey, KeyError> {
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
        check_key(merged, &KeyPolicy::default())
    }

    /// The stripped key as rPGP's type.
    pub fn signed_public_key(&self) -> &SignedPublicKey {
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
fn dedup_sigs(sigs: Vec<Signature>) -> Vec<Signature> {
    let mut seen = HashSet::new();
    sigs.into_iter().filter(|s| seen.insert(sig_identity(s))).collect()
}

fn describe_algorithm(key: &PublicKey) -> String {
    match key.public_params() {
        PublicParams::RSA(_) => match rsa_bits(key) {
            Some(bits) => format!("RSA {bits}"),
            None => "RSA".to_string(),
        },
        PublicParams::DSA(_) => "DSA".to_string(),
        PublicParams::Elgamal(_) => "Elgamal".to_string(),
        PublicParams::ECDSA(p) => format!("ECDSA {}", p.curve().name()),
        PublicParams::ECDH(p) => format!("ECDH {}", p.curve().name()),
        PublicParams::EdDSALegacy(_) => "EdDSA".to_string(),
        PublicParams::Ed25519(_) => "Ed25519".to_string(),
        PublicParams::Ed448(_) => "Ed448".to_string(),
        PublicParams::X25519(_) => "X25519".to_string(),
        PublicParams::X448(_) => "X448".to_string(),
        #[allow(unreachable_patterns)]
        _ => format!("{:?}", key.algorithm()),
    }
}

/// Bit length of an RSA key's modulus, read from the MPI bit count that
/// starts its serialised public parameters.
fn rsa_bits(key: &PublicKey) -> Option<usize> {
    match key.public_params() {
        PublicParams::RSA(params) => {
            let bytes = params.to_bytes().ok()?;
            let hi = *bytes.first()?;
            let lo = *bytes.get(1)?;
            Some(usize::from(u16::from_be_bytes([hi, lo])))
        }
        _ => None,
    }
}

fn check_algorithm(key: &PublicKey, policy: &KeyPolicy) -> Result<(), KeyError> {
    let ok = match key.public_params() {
        PublicParams::RSA(_) => {
            if !matches!(key.algorithm(), PublicKeyAlgorithm::RSA | PublicKeyAlgorithm::RSASign) {
                false
            } else {
                let bits = rsa_bits(key).unwrap_or(0);
                if bits < policy.min_rsa_bits {
                    return Err(KeyError::WeakRsa {
                        bits,
                        min: policy.min_rsa_bits,
                    });
                }
                true
            }
        }
        PublicParams::ECDSA(p) => p.is_supported(),
        PublicParams::EdDSALegacy(p) => {
            matches!(p, pgp::types::EddsaLegacyPublicParams::Ed25519 { .. })
        }
        PublicParams::Ed25519(_) | PublicParams::Ed448(_) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(KeyError::UnsupportedAlgorithm(describe_algorithm(key)))
    }
}

/// How signatures name the primary key, worked out once per key: a key
/// carries dozens of third-party certifications, each asked about.
struct PrimaryIds {
    key_id: KeyId,
    fingerprint: pgp::types::Fingerprint,
}

impl PrimaryIds {
    fn of(primary: &PublicKey) -> PrimaryIds {
        PrimaryIds {
            key_id: primary.legacy_key_id(),
            fingerprint: primary.fingerprint(),
        }
    }

    /// Whether `sig` may have been made by the primary key: its issuer
    /// subpackets name it, or it names no issuer at all (then only the
    /// cryptographic check can tell).
    fn may_have_issued(&self, sig: &Signature) -> bool {
        let ids = sig.issuer_key_id();
        let fps = sig.issuer_fingerprint();
        if ids.is_empty() && fps.is_empty() {
            return true;
        }
        ids.iter().any(|id| **id == self.key_id) || fps.iter().any(|fp| **fp == self.fingerprint)
    }
}

/// Counts signature verifications against the policy's limit.
struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    fn spend(&mut self) -> Result<(), KeyError> {
        if self.left == 0 {
            return Err(KeyError::TooManySignatures(self.limit));
        }
        self.left -= 1;
        Ok(())
    }
}

fn sig_time(sig: &Signature) -> u32 {
    sig.created().map_or(0, |t| t.as_secs())
}

fn to_utc(secs: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(i64::from(secs), 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Checks one parsed key and strips it (see [`CheckedKey`]). Refuses keys
/// whose primary algorithm is not accepted (DSA, Elgamal, RSA below
/// `policy.min_rsa_bits`, encryption-only algorithms), keys over the
/// policy's counts, keys with no user ID carrying a valid self-signature,
/// and keys with no email address in those user IDs. Does not refuse
/// expired or revoked keys: see [`CheckedKey::is_expired`] and
/// [`CheckedKey::is_revoked`].
pub fn check_key(key: SignedPublicKey, policy: &KeyPolicy) -> Result<CheckedKey, KeyError> {
    guarded(move || check_key_inner(key, policy))
}

fn check_key_inner(key: SignedPublicKey, policy: &KeyPolicy) -> Result<CheckedKey, KeyError> {
    let primary = key.primary_key;
    let (ids, fingerprint) = check_primary(&primary, &key.details, key.public_subkeys.len(), policy)?;
    let mut budget = Budget {
        left: policy.max_signature_checks,
        limit: policy.max_signature_checks,
    };
    let details = key.details;

    // Key revocations and direct-key signatures made by the primary key.
    let signer = Checked::new(&primary);
    let revocations = verified(
        by_primary(details.revocation_signatures, &ids, SignatureType::KeyRevocation),
        &mut budget,
        |sig| sig.verify_key(&signer),
    )?;
    let directs = newest_verified(
        by_primary(details.direct_signatures, &ids, SignatureType::Key),
        &mut budget,
        |sig| sig.verify_key(&signer),
    )?;
    let users = user_ids::check_user_ids(details.users, directs.first(), &signer, &ids, &mut budget)?;

    // Expiry from the newest valid self-signature.
    let created_secs = primary.created_at().as_secs();
    let expires_at = users
        .newest_self_sig
        .as_ref()
        .and_then(|sig| expiry_set_by(sig, created_secs));
    let subkeys = check_subkeys(key.public_subkeys, &signer, &ids, &mut budget)?;

    let revoked = !revocations.is_empty();
    let created_at = to_utc(created_secs);
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
        created_at,
    })
}

/// The primary-key step of [`check_key`]: its version, its algorithm and
/// the policy's counts; returns how signatures name it, and its
/// fingerprint.
fn check_primary(
    primary: &PublicKey,
    details: &SignedKeyDetails,
    subkey_count: usize,
    policy: &KeyPolicy,
) -> Result<(PrimaryIds, Fingerprint), KeyError> {
    match primary.version() {
        KeyVersion::V4 | KeyVersion::V6 => {}
        other => return Err(KeyError::UnsupportedVersion(u8::from(other))),
    }
    let ids = PrimaryIds::of(primary);
    let fingerprint =
        Fingerprint::from_bytes(ids.fingerprint.as_bytes()).map_err(|e| KeyError::Unreadable(e.to_string()))?;
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
    ids: &PrimaryIds,
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

/// When a self-signature says a key created at `created_secs` expires;
/// `None` if never.
fn expiry_set_by(sig: &Signature, created_secs: u32) -> Option<DateTime<Utc>> {
    let lifetime = sig.key_expiration_time()?.as_secs();
    (lifetime != 0).then(|| {
        Utc.timestamp_opt(i64::from(created_secs) + i64::from(lifetime), 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    })
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
pub fn has_expired(key: &SignedPublicKey, now: DateTime<Utc>) -> bool {
    guarded(|| Ok(expired_by_newest_self_signature(key, now))).unwrap_or(false)
}

fn expired_by_newest_self_signature(key: &SignedPublicKey, now: DateTime<Utc>) -> bool {
    let primary = &key.primary_key;
    let ids = PrimaryIds::of(primary);
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

/// The signatures the primary key may have made, deduplicated, newest
/// first.
fn newest_first(sigs: Vec<Signature>, ids: &PrimaryIds) -> Vec<Signature> {
    let mut sigs = dedup_sigs(sigs.into_iter().filter(|sig| ids.may_have_issued(sig)).collect());
    sigs.sort_by_key(|sig| std::cmp::Reverse(sig_time(sig)));
    sigs
}

/// The signatures of type `wanted` that the primary key may have made,
/// newest first.
fn by_primary(sigs: Vec<Signature>, ids: &PrimaryIds, wanted: SignatureType) -> Vec<Signature> {
    newest_first(sigs, ids)
        .into_iter()
        .filter(|sig| sig.typ() == Some(wanted))
        .collect()
}

/// Every signature that `verify` accepts, each check paid from `budget`.
fn verified(
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
fn newest_verified(
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

/// Parses the armored text of a stored key (a database record's key block)
/// back into a [`CheckedKey`], checking it again with the default policy.
/// Expired or revoked keys are read back like any other.
pub fn read_stored_key(armored: &str) -> Result<CheckedKey, KeyError> {
    let mut keys = parse_armored_keys(armored)?;
    if keys.len() != 1 {
        return Err(KeyError::SeveralKeys(keys.len()));
    }
    match keys.pop() {
        Some(key) => check_key(key, &KeyPolicy::default()),
        None => Err(KeyError::NoKey),
    }
}

/// A revocation certificate (`gpg --gen-revoke`): an armored public key
/// block holding only a key revocation signature. Returns the signature, or
/// `None` if `block` is anything else.
pub fn parse_revocation_certificate(block: &str) -> Option<Signature> {
    guarded(|| {
        let bytes = dearmor_any(block)?;
        let mut packets = pgp::packet::PacketParser::new(io::BufReader::new(&bytes[..]));
        let first = packets.next().ok_or(KeyError::NoKey)?.map_err(unreadable)?;
        if packets.next().is_some() {
            return Err(KeyError::NoKey);
        }
        match first {
            pgp::packet::Packet::Signature(sig) if sig.typ() == Some(SignatureType::KeyRevocation) => Ok(sig),
            _ => Err(KeyError::NoKey),
        }
    })
    .ok()
}

/// The base64 payload of any ASCII-armored block, checksum ignored.
fn dearmor_any(armored: &str) -> Result<Vec<u8>, KeyError> {
    let mut bytes = Vec::new();
    Dearmor::new(io::BufReader::new(armored.as_bytes()))
        .take(MAX_SIGNED_CONTENT as u64)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    Ok(bytes)
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
    /// key revocation made by this key's primary key.
    pub fn with_revocation(&self, revocation: &Signature) -> Result<CheckedKey, KeyError> {
        if revocation.verify_key(&Checked::new(&self.key.primary_key)).is_err() {
            return Err(KeyError::BadSelfSignatures);
        }
        let mut key = self.key.clone();
        key.details.revocation_signatures.push(revocation.clone());
        check_key(key, &KeyPolicy::default())
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The largest signed content read from a request (a key or `RemoveKey`).
pub const MAX_SIGNED_CONTENT: usize = 4 << 20;

/// A part of a request mail that carries a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedPart {
    /// A cleartext-signed message (`gpg --clearsign`): the armored block
    /// from `-----BEGIN PGP SIGNED MESSAGE-----` to `-----END PGP SIGNATURE-----`.
    Cleartext(String),
    /// An inline-signed armored message (`gpg --sign --armor`), usually compressed.
    Inline(String),
    /// PGP/MIME `multipart/signed`: the signed MIME part's bytes, exactly as
    /// they stand in the mail, its decoded text, and the armored detached
    /// signature. The mail reader decodes the text; this crate knows no MIME.
    Detached {
        /// The first part of the `multipart/signed`, headers and body.
        content: Vec<u8>,
        /// That part's body text, headers dropped and transfer encoding undone.
        text: String,
        /// The armored `application/pgp-signature` part.
        signature: String,
    },
}

/// Why a signed part could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signed part does not parse.
    #[error("the signed message could not be read: {0}")]
    Unreadable(String),
    /// No signature in it verifies with the key.
    #[error("the signature does not verify with the registered key (was the text changed after signing?)")]
    DoesNotVerify,
    /// The signature carries no creation time, so its age can't be judged.
    #[error("the signature has no creation time")]
    NoTime,
    /// The signature verifies, but the registered key says the key that
    /// made it could not sign then ([`check_signer`]).
    #[error("{0}")]
    InvalidSigner(InvalidSigner),
}

/// What a verified signed part says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed text (line ends normalised to `\n`).
    pub content: String,
    /// When it was signed, by the signature's own clock.
    pub signed_at: DateTime<Utc>,
}

const SIGNED_BEGIN: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE_END: &str = "-----END PGP SIGNATURE-----";
const MESSAGE_BEGIN: &str = "-----BEGIN PGP MESSAGE-----";
const MESSAGE_END: &str = "-----END PGP MESSAGE-----";

/// Blocks of `text` between a line starting with `begin` and the next line
/// starting with `end`, armor lines included.
fn armored_blocks<'a>(text: &'a str, begin: &str, end: &str) -> Vec<&'a str> {
    let mut blocks = Vec::new();
    let mut offset = 0;
    let mut start: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        if line.starts_with(begin) {
            start = Some(offset);
        } else if line.starts_with(end) {
            if let Some(begin_at) = start.take() {
                blocks.push(text[begin_at..offset + line.len()].trim_end());
            }
        }
        offset += line.len();
    }
    blocks
}

/// Finds the cleartext-signed and inline-signed armored messages in `text`.
pub fn find_signed_parts(text: &str) -> Vec<SignedPart> {
    let mut parts: Vec<SignedPart> = armored_blocks(text, SIGNED_BEGIN, SIGNATURE_END)
        .into_iter()
        .map(|block| SignedPart::Cleartext(block.to_string()))
        .collect();
    parts.extend(
        armored_blocks(text, MESSAGE_BEGIN, MESSAGE_END)
            .into_iter()
            .map(|block| SignedPart::Inline(block.to_string())),
    );
    parts
}

fn signature_error(err: impl std::fmt::Display) -> SignatureError {
    SignatureError::Unreadable(err.to_string())
}

/// A key a signature may be checked against.
enum Verifier<'a> {
    Primary(&'a PublicKey),
    Subkey(&'a PublicSubkey),
}

impl Verifier<'_> {
    fn key_id(&self) -> KeyId {
        match self {
            Verifier::Primary(key) => key.legacy_key_id(),
            Verifier::Subkey(key) => key.legacy_key_id(),
        }
    }

    fn as_dyn(&self) -> &dyn pgp::types::VerifyingKey {
        match self {
            Verifier::Primary(key) => *key,
            Verifier::Subkey(key) => *key,
        }
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        let fingerprint = match self {
            Verifier::Primary(key) => key.fingerprint(),
            Verifier::Subkey(key) => key.fingerprint(),
        };
        Fingerprint::from_bytes(fingerprint.as_bytes()).ok()
    }

    fn verifies(&self, sig: &Signature, data: &[u8]) -> bool {
        names_issuer(sig, &self.key_id())
            && match self {
                Verifier::Primary(key) => sig.verify(&Checked::new(*key), data).is_ok(),
                Verifier::Subkey(key) => sig.verify(&Checked::new(*key), data).is_ok(),
            }
    }
}

/// The keys a signature may be checked against: the primary key and every
/// subkey. Whether the one that verifies may have signed is
/// [`check_signer`]'s to say, so that the refusal can name the reason (a
/// revoked or expired subkey, one not bound for signing).
fn verifying_keys(key: &SignedPublicKey) -> Vec<Verifier<'_>> {
    let mut keys = vec![Verifier::Primary(&key.primary_key)];
    keys.extend(key.public_subkeys.iter().map(|sub| Verifier::Subkey(&sub.key)));
    keys
}

/// The key ID a fingerprint stands for: its last eight bytes for v4, its
/// first eight for v5 and v6.
fn key_id_bytes_of(fingerprint: &pgp::types::Fingerprint) -> Option<[u8; 8]> {
    let bytes: &[u8] = match fingerprint {
        pgp::types::Fingerprint::V4(bytes) => &bytes[12..],
        pgp::types::Fingerprint::V5(bytes) | pgp::types::Fingerprint::V6(bytes) => &bytes[..8],
        _ => return None,
    };
    bytes.try_into().ok()
}

/// Whether a signature names `key_id` (or names no issuer at all).
fn names_issuer(sig: &Signature, key_id: &KeyId) -> bool {
    let ids = sig.issuer_key_id();
    let fingerprints = sig.issuer_fingerprint();
    (ids.is_empty() && fingerprints.is_empty())
        || ids.contains(&key_id)
        || fingerprints
            .iter()
            .any(|fp| key_id_bytes_of(fp).as_ref().map(|b| &b[..]) == Some(key_id.as_ref()))
}

/// The key IDs a signature names as its issuer (16 upper-case hex digits).
pub fn issuer_key_ids_of(sig: &Signature) -> Vec<String> {
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

fn utc_of(sig: &Signature) -> Result<DateTime<Utc>, SignatureError> {
    sig.created().map(|t| to_utc(t.as_secs())).ok_or(SignatureError::NoTime)
}

/// Normalises line ends to `\n`.
fn lf_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", "\n")
}

/// Converts bare `\n` line ends to `\r\n`, as PGP/MIME signs.
fn crlf_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut previous = 0u8;
    for &byte in bytes {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

/// Reads an inline-signed message: its literal data and its signatures,
/// with a verifier over them.
fn with_inline<T>(
    armored: &str,
    then: impl FnOnce(&pgp::composed::Message<'_>, Vec<u8>) -> Result<T, SignatureError>,
) -> Result<T, SignatureError> {
    let (message, _) = pgp::composed::Message::from_string(armored).map_err(signature_error)?;
    let mut message = message.decompress().map_err(signature_error)?;
    let mut data = Vec::new();
    (&mut message)
        .take(MAX_SIGNED_CONTENT as u64)
        .read_to_end(&mut data)
        .map_err(signature_error)?;
    then(&message, data)
}

fn inline_signatures(message: &pgp::composed::Message<'_>) -> Vec<Signature> {
    match message {
        pgp::composed::Message::Signed { reader, .. } => (0..reader.num_signatures())
            .filter_map(|i| reader.signature(i).cloned())
            .collect(),
        _ => Vec::new(),
    }
}

impl SignedPart {
    /// The key IDs the signatures name as their issuers (16 upper-case hex
    /// digits each); empty if there is no readable signature.
    pub fn issuer_key_ids(&self) -> Vec<String> {
        let signatures = guarded_sig(|| match self {
            SignedPart::Cleartext(block) => pgp::composed::CleartextSignedMessage::from_string(block)
                .map(|(message, _)| message.signatures().to_vec())
                .map_err(signature_error),
            SignedPart::Inline(armored) => with_inline(armored, |message, _| Ok(inline_signatures(message))),
            SignedPart::Detached { signature, .. } => parse_detached(signature).map(|sigs| sigs.into_iter().collect()),
        })
        .unwrap_or_default();
        let mut ids: Vec<String> = signatures.iter().flat_map(issuer_key_ids_of).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Verifies the part with `key`'s primary key or any of its subkeys,
    /// and checks that the one that signed could sign then
    /// ([`check_signer`]); returns the signed text and when it was signed.
    pub fn verify(&self, key: &CheckedKey) -> Result<Verified, SignatureError> {
        guarded_sig(|| {
            let candidates = verifying_keys(&key.key);
            let mut judge = Judge::new(key);
            match self {
                SignedPart::Cleartext(block) => {
                    let (message, _) =
                        pgp::composed::CleartextSignedMessage::from_string(block).map_err(signature_error)?;
                    let signed = message.signed_text();
                    for sig in message.signatures() {
                        for verifier in &candidates {
                            if !verifier.verifies(sig, signed.as_bytes()) {
                                continue;
                            }
                            if let Some(signed_at) = judge.accepts(sig, verifier)? {
                                return Ok(Verified {
                                    content: lf_text(signed.as_bytes()),
                                    signed_at,
                                });
                            }
                        }
                    }
                    Err(judge.refusal())
                }
                SignedPart::Inline(armored) => with_inline(armored, |message, data| {
                    let count = match message {
                        pgp::composed::Message::Signed { reader, .. } => reader.num_signatures(),
                        _ => 0,
                    };
                    for index in 0..count {
                        for verifier in &candidates {
                            let Ok(sig) = message.verify_nested_explicit(index, verifier.as_dyn()) else {
                                continue;
                            };
                            if let Some(signed_at) = judge.accepts(sig, verifier)? {
                                return Ok(Verified {
                                    content: lf_text(&data),
                                    signed_at,
                                });
                            }
                        }
                    }
                    Err(judge.refusal())
                }),
                SignedPart::Detached {
                    content,
                    text,
                    signature,
                } => {
                    // RFC 3156 signs the part with CRLF line ends; some mailers
                    // hand over the part with its final line end, some without.
                    let canonical = crlf_bytes(content);
                    let trimmed = canonical.strip_suffix(b"\r\n").unwrap_or(&canonical);
                    for sig in parse_detached(signature)? {
                        for verifier in &candidates {
                            if ![&canonical[..], trimmed]
                                .iter()
                                .any(|data| verifier.verifies(&sig, data))
                            {
                                continue;
                            }
                            if let Some(signed_at) = judge.accepts(&sig, verifier)? {
                                return Ok(Verified {
                                    content: text.clone(),
                                    signed_at,
                                });
                            }
                        }
                    }
                    Err(judge.refusal())
                }
            }
        })
    }
}

fn parse_detached(armored: &str) -> Result<Vec<Signature>, SignatureError> {
    let (signatures, _) = pgp::composed::DetachedSignature::from_string_many(armored).map_err(signature_error)?;
    let mut out = Vec::new();
    for signature in signatures.take(16) {
        out.push(signature.map_err(signature_error)?.signature);
    }
    Ok(out)
}

/// [`guarded`] for signature work.
fn guarded_sig<T>(f: impl FnOnce() -> Result<T, SignatureError>) -> Result<T, SignatureError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(SignatureError::Unreadable(
            "malformed signature data (parser failure)".into(),
        )),
    }
}

/// Binary packets of an armored public key block (the inverse of
/// [`CheckedKey::to_armored`]); the packets are not parsed, only the first
/// packet header is checked to be a public key's. E.g. to feed [`ArmoredKeyringWriter`]
/// from stored records without parsing the keys.
pub fn dearmor(armored: &str) -> Result<Vec<u8>, KeyError> {
    guarded(|| {
        let options = DearmorOptions::new().set_limit(ARMOR_HEADER_LIMIT);
        let mut reader = Dearmor::with_options(io::BufReader::new(armored.as_bytes()), options);
        reader.read_header().map_err(unreadable)?;
        if reader.typ != Some(BlockType::PublicKey) {
            return Err(KeyError::Unreadable("not a PGP PUBLIC KEY BLOCK".to_string()));
        }
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(unreadable)?;
        if !starts_with_public_key_packet(&bytes) {
            return Err(KeyError::NoKey);
        }
        Ok(bytes)
    })
}

/// Whether `bytes` begin with the header of a public key packet (tag 6, old
/// or new packet format).
fn starts_with_public_key_packet(bytes: &[u8]) -> bool {
    match bytes.first() {
        Some(&b) if b & 0x80 != 0 => {
            let tag = if b & 0x40 != 0 { b & 0x3f } else { (b >> 2) & 0x0f };
            tag == 6
        }
        _ => false,
    }
}

const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const ARMOR_LINE_CHARS: usize = 64;
const CRC24_INIT: u32 = 0x00B7_04CE;
const CRC24_POLY: u32 = 0x0186_4CFB;

/// Streams one armored keyring holding many keys, for the flat file
/// `pubkeys.asc` that `gpg --import` must read: the BEGIN line, a blank
/// line, the base64 of the concatenated binary keys in 64-character lines,
/// a CRC24 checksum line and the END line, all `"\n"`-terminated. Memory
/// stays bounded whatever the number of keys: only a partial base64 group
/// (at most two bytes) is held between calls.
pub struct ArmoredKeyringWriter<W: Write> {
    inner: Option<W>,
    pending: [u8; 3],
    pending_len: usize,
    column: usize,
    crc: u32,
}

impl<W: Write> ArmoredKeyringWriter<W> {
    /// Starts a keyring on `w`, writing the BEGIN line and the blank line.
    pub fn new(mut w: W) -> io::Result<Self> {
        w.write_all(BEGIN_PUBLIC_KEY.as_bytes())?;
        w.write_all(b"\n\n")?;
        Ok(ArmoredKeyringWriter {
            inner: Some(w),
            pending: [0; 3],
            pending_len: 0,
            column: 0,
            crc: CRC24_INIT,
        })
    }

    fn writer(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("keyring writer already finished"))
    }

    /// Appends one key's binary packets (e.g. [`CheckedKey::to_bytes`] or
    /// [`dearmor`] of a stored record).
    pub fn write_key(&mut self, binary_key: &[u8]) -> io::Result<()> {
        for &byte in binary_key {
            self.crc = crc24_update(self.crc, byte);
        }
        let mut out: Vec<u8> = Vec::with_capacity(8192 + 80);
        for &byte in binary_key {
            self.pending[self.pending_len] = byte;
            self.pending_len += 1;
            if self.pending_len == 3 {
                let group = encode_group(&self.pending, 3);
                self.push_chars(&mut out, &group);
                self.pending_len = 0;
                if out.len() >= 8192 {
                    self.writer()?.write_all(&out)?;
                    out.clear();
                }
            }
        }
        if !out.is_empty() {
            self.writer()?.write_all(&out)?;
        }
        Ok(())
    }

    fn push_chars(&mut self, out: &mut Vec<u8>, chars: &[u8]) {
        for &c in chars {
            out.push(c);
            self.column += 1;
            if self.column == ARMOR_LINE_CHARS {
                out.push(b'\n');
                self.column = 0;
            }
        }
    }

    fn finish_inner(&mut self) -> io::Result<()> {
        let mut out = Vec::with_capacity(128);
        if self.pending_len > 0 {
            let group = encode_group(&self.pending, self.pending_len);
            self.push_chars(&mut out, &group);
            self.pending_len = 0;
        }
        if self.column != 0 {
            out.push(b'\n');
            self.column = 0;
        }
        let crc = self.crc & 0x00FF_FFFF;
        let crc_bytes = [(crc >> 16) as u8, (crc >> 8) as u8, crc as u8];
        out.push(b'=');
        out.extend_from_slice(&encode_group(&crc_bytes, 3));
        out.push(b'\n');
        out.extend_from_slice(END_PUBLIC_KEY.as_bytes());
        out.push(b'\n');
        let w = self.writer()?;
        w.write_all(&out)?;
        w.flush()
    }

    /// Writes the rest of the base64, the checksum and the END line, flushes,
    /// and gives the underlying writer back.
    pub fn finish(mut self) -> io::Result<W> {
        self.finish_inner()?;
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("keyring writer already finished"))
    }
}

/// CRC-24 (RFC 9580, 6.1) a byte at a time.
const CRC24_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = (index as u32) << 16;
        let mut bit = 0;
        while bit < 8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= CRC24_POLY;
            }
            bit += 1;
        }
        table[index] = crc & 0x00FF_FFFF;
        index += 1;
    }
    table
};

fn crc24_update(crc: u32, byte: u8) -> u32 {
    ((crc << 8) ^ CRC24_TABLE[((crc >> 16) as u8 ^ byte) as usize]) & 0x00FF_FFFF
}

/// Base64 of one group of `len` (1 to 3) bytes, padded with `=`.
fn encode_group(bytes: &[u8; 3], len: usize) -> [u8; 4] {
    let b0 = bytes[0];
    let b1 = if len > 1 { bytes[1] } else { 0 };
    let b2 = if len > 2 { bytes[2] } else { 0 };
    let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
    let c = |shift: u32| BASE64_ALPHABET[((n >> shift) & 0x3F) as usize];
    [
        c(18),
        c(12),
        if len > 1 { c(6) } else { b'=' },
        if len > 2 { c(0) } else { b'=' },
    ]
}

// ---------------------------------------------------------------------------
// Key generation, for tests, demos and benchmarks.
// ---------------------------------------------------------------------------

/// Primary key algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenAlgorithm {
    /// Ed25519 in the legacy EdDSA form (algorithm 22) that gpg 2.2 reads,
    /// with a Curve25519 ECDH encryption subkey.
    Ed25519,
    /// RSA of the given size (sizes below 2048 are allowed here, to test
    /// refusals), with an RSA encryption subkey of the same size if asked.
    Rsa(u32),
}

/// What [`generate_key`] makes.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// User IDs, the first one primary (e.g. `"Alice <alice@example.org>"`).
    pub user_ids: Vec<String>,
    /// Primary key algorithm.
    pub algorithm: GenAlgorithm,
    /// Creation time of the key and of its self-signatures.
    pub created: DateTime<Utc>,
    /// Key lifetime after creation written into the self-signatures, if any.
    pub expires_after: Option<std::time::Duration>,
    /// Whether to add an encryption subkey.
    pub encryption_subkey: bool,
}

impl KeySpec {
    /// An Ed25519 key with an encryption subkey, created now, never expiring.
    pub fn ed25519(user_ids: &[&str]) -> KeySpec {
        KeySpec {
            user_ids: user_ids.iter().map(|s| s.to_string()).collect(),
            algorithm: GenAlgorithm::Ed25519,
            created: Utc::now(),
            expires_after: None,
            encryption_subkey: true,
        }
    }
}

fn gen_err(err: impl std::fmt::Display) -> KeyError {
    KeyError::Generation(err.to_string())
}

fn timestamp_of(time: DateTime<Utc>) -> Result<Timestamp, KeyError> {
    let secs = u32::try_from(time.timestamp()).map_err(|_| gen_err("time out of range"))?;
    Ok(Timestamp::from_secs(secs))
}

/// A v4 SHA-256 signature configuration of type `typ` by `signer`, with
/// the creation time and issuer subpackets set.
fn self_config(typ: SignatureType, signer: &SecretKey, created: Timestamp) -> Result<SignatureConfig, KeyError> {
    let mut config = SignatureConfig::v4(typ, signer.algorithm(), HashAlgorithm::Sha256);
    config
        .hashed_subpackets
        .push(Subpacket::regular(SubpacketData::SignatureCreationTime(created)).map_err(gen_err)?);
    config
        .hashed_subpackets
        .push(Subpacket::regular(SubpacketData::IssuerFingerprint(signer.fingerprint())).map_err(gen_err)?);
    config
        .unhashed_subpackets
        .push(Subpacket::regular(SubpacketData::IssuerKeyId(signer.legacy_key_id())).map_err(gen_err)?);
    Ok(config)
}

fn key_type_of(algorithm: GenAlgorithm) -> (KeyType, PublicKeyAlgorithm) {
    match algorithm {
        GenAlgorithm::Ed25519 => (KeyType::Ed25519Legacy, PublicKeyAlgorithm::EdDSALegacy),
        GenAlgorithm::Rsa(bits) => (KeyType::Rsa(bits), PublicKeyAlgorithm::RSA),
    }
}

/// Generates a secret key as `spec` says (version 4, unprotected, SHA-256
/// self-signatures). Unlike rPGP's builder it allows small RSA keys and a
/// key expiration time, so tests can make weak and expired keys. Use
/// `SignedSecretKey::to_public_key` for the public half.
pub fn generate_key<R: Rng + CryptoRng>(rng: R, spec: &KeySpec) -> Result<SignedSecretKey, KeyError> {
    key_from_material(&generate_material(rng, spec.algorithm, spec.encryption_subkey)?, spec)
}

/// The key pairs of a key (primary, and encryption subkey if any) without
/// creation time, user IDs or signatures. Generating RSA pairs is slow, so
/// a benchmark makes a few and builds many keys from them with
/// [`key_from_material`], each with its own creation time (which a v4
/// fingerprint covers).
#[derive(Clone)]
pub struct KeyMaterial {
    algorithm: GenAlgorithm,
    primary: (PublicParams, pgp::types::SecretParams),
    subkey: Option<(PublicParams, pgp::types::SecretParams)>,
}

/// Generates the key pairs for a key of `algorithm`.
pub fn generate_material<R: Rng + CryptoRng>(
    mut rng: R,
    algorithm: GenAlgorithm,
    encryption_subkey: bool,
) -> Result<KeyMaterial, KeyError> {
    let primary = key_type_of(algorithm).0.generate(&mut rng).map_err(gen_err)?;
    let subkey = match (encryption_subkey, algorithm) {
        (false, _) => None,
        (true, GenAlgorithm::Ed25519) => Some(KeyType::ECDH(ECCCurve::Curve25519Legacy).generate(&mut rng)),
        (true, GenAlgorithm::Rsa(bits)) => Some(KeyType::Rsa(bits).generate(&mut rng)),
    };
    Ok(KeyMaterial {
        algorithm,
        primary,
        subkey: subkey.transpose().map_err(gen_err)?,
    })
}

/// Builds and self-signs a key from `material` as `spec` says (its
/// algorithm and encryption subkey come from the material).
pub fn key_from_material(material: &KeyMaterial, spec: &KeySpec) -> Result<SignedSecretKey, KeyError> {
    if spec.user_ids.is_empty() {
        return Err(gen_err("at least one user ID is needed"));
    }
    let created = timestamp_of(spec.created)?;
    let expiry = match spec.expires_after {
        Some(d) => Some(PgpDuration::try_from(d).map_err(gen_err)?),
        None => None,
    };
    let (_, alg) = key_type_of(material.algorithm);
    let (public_params, secret_params) = material.primary.clone();
    let inner = PubKeyInner::new(KeyVersion::V4, alg, created, None, public_params).map_err(gen_err)?;
    let public = PublicKey::from_inner(inner).map_err(gen_err)?;
    let secret = SecretKey::new(public.clone(), secret_params).map_err(gen_err)?;
    let pw = Password::empty();

    let mut users = Vec::new();
    for (index, uid) in spec.user_ids.iter().enumerate() {
        let id = UserId::from_str(Default::default(), uid).map_err(gen_err)?;
        let mut config = self_config(SignatureType::CertPositive, &secret, created)?;
        let mut flags = KeyFlags::default();
        flags.set_certify(true);
        flags.set_sign(true);
        let mut features = Features::new();
        features.set_seipd_v1(true);
        let mut hashed = vec![
            SubpacketData::KeyFlags(flags),
            SubpacketData::Features(features),
            SubpacketData::PreferredSymmetricAlgorithms(
                vec![SymmetricKeyAlgorithm::AES256, SymmetricKeyAlgorithm::AES128].into(),
            ),
            SubpacketData::PreferredHashAlgorithms(vec![HashAlgorithm::Sha512, HashAlgorithm::Sha256].into()),
            SubpacketData::PreferredCompressionAlgorithms(
                vec![CompressionAlgorithm::ZLIB, CompressionAlgorithm::ZIP].into(),
            ),
        ];
        if let Some(expiry) = expiry {
            hashed.push(SubpacketData::KeyExpirationTime(expiry));
        }
        if index == 0 {
            hashed.push(SubpacketData::IsPrimary(true));
        }
        for data in hashed {
            config
                .hashed_subpackets
                .push(Subpacket::regular(data).map_err(gen_err)?);
        }
        let sig = config
            .sign_certification(&secret, &public, &pw, Tag::UserId, &id)
            .map_err(gen_err)?;
        users.push(id.into_signed(sig));
    }

    let mut secret_subkeys = Vec::new();
    if let Some((sub_public_params, sub_secret_params)) = material.subkey.clone() {
        let sub_alg = match material.algorithm {
            GenAlgorithm::Ed25519 => PublicKeyAlgorithm::ECDH,
            GenAlgorithm::Rsa(_) => PublicKeyAlgorithm::RSA,
        };
        let sub_inner = PubKeyInner::new(KeyVersion::V4, sub_alg, created, None, sub_public_params).map_err(gen_err)?;
        let sub_public = PublicSubkey::from_inner(sub_inner).map_err(gen_err)?;
        let sub_secret = SecretSubkey::new(sub_public.clone(), sub_secret_params).map_err(gen_err)?;
        let mut config = self_config(SignatureType::SubkeyBinding, &secret, created)?;
        let mut flags = KeyFlags::default();
        flags.set_encrypt_comms(true);
        flags.set_encrypt_storage(true);
        config
            .hashed_subpackets
            .push(Subpacket::regular(SubpacketData::KeyFlags(flags)).map_err(gen_err)?);
        if let Some(expiry) = expiry {
            config
                .hashed_subpackets
                .push(Subpacket::regular(SubpacketData::KeyExpirationTime(expiry)).map_err(gen_err)?);
        }
        let binding = config
            .sign_subkey_binding(&secret, &public, &pw, &sub_public)
            .map_err(gen_err)?;
        secret_subkeys.push(SignedSecretSubKey::new(sub_secret, vec![binding]));
    }

    Ok(SignedSecretKey::new(
        secret,
        SignedKeyDetails::new(Vec::new(), Vec::new(), users, Vec::new()),
        Vec::new(),
        secret_subkeys,
    ))
}

/// Adds a third-party certification (type 0x10) by `signer` to every user
/// ID of `key`: for testing that such certifications are stripped.
pub fn certify_user_ids(signer: &SignedSecretKey, key: &SignedPublicKey) -> Result<SignedPublicKey, KeyError> {
    let mut out = key.clone();
    let now = timestamp_of(Utc::now())?;
    for user in &mut out.details.users {
        let config = self_config(SignatureType::CertGeneric, &signer.primary_key, now)?;
        let sig = config
            .sign_certification_third_party(
                &signer.primary_key,
                &Password::empty(),
                &key.primary_key,
                Tag::UserId,
                &user.id,
            )
            .map_err(gen_err)?;
        user.signatures.push(sig);
    }
    Ok(out)
}

/// Adds a key revocation signature (type 0x20, "key is no longer used")
/// made by `secret` to its public key `key`.
pub fn revoke_key(secret: &SignedSecretKey, key: &SignedPublicKey) -> Result<SignedPublicKey, KeyError> {
    let mut out = key.clone();
    let now = timestamp_of(Utc::now())?;
    let mut config = self_config(SignatureType::KeyRevocation, &secret.primary_key, now)?;
    config.hashed_subpackets.push(
        Subpacket::regular(SubpacketData::RevocationReason(
            pgp::packet::RevocationCode::KeyRetired,
            "key retired".as_bytes().to_vec().into(),
        ))
        .map_err(gen_err)?,
    );
    let sig = config
        .sign_key(&secret.primary_key, &Password::empty(), &key.primary_key)
        .map_err(gen_err)?;
    out.details.revocation_signatures.push(sig);
    Ok(out)
}

/// Adds a certification revocation (type 0x30) made by `secret` to the user
/// ID of `key` whose text is `user_id`, one second after `after` so it is
/// newer than self-signatures made at `after`.
pub fn revoke_user_id(
    secret: &SignedSecretKey,
    key: &SignedPublicKey,
    user_id: &str,
    after: DateTime<Utc>,
) -> Result<SignedPublicKey, KeyError> {
    let mut out = key.clone();
    let when = timestamp_of(after + chrono::Duration::seconds(1))?;
    let Some(user) = out.details.users.iter_mut().find(|u| u.id.id() == user_id.as_bytes()) else {
        return Err(gen_err(format!("no user ID {user_id:?}")));
    };
    let config = self_config(SignatureType::CertRevocation, &secret.primary_key, when)?;
    let sig = config
        .sign_certification(
            &secret.primary_key,
            &key.primary_key,
            &Password::empty(),
            Tag::UserId,
            &user.id,
        )
        .map_err(gen_err)?;
    user.signatures.push(sig);
    Ok(out)
}

/// ASCII armor of any public key (not stripped), e.g. to write out a
/// generated or certified key. Deterministic like [`CheckedKey::to_armored`].
pub fn armor_public_key(key: &SignedPublicKey) -> Result<String, KeyError> {
    key.to_armored_string(ArmorOptions {
        headers: None,
        include_checksum: true,
    })
    .map_err(|e| KeyError::Encoding(e.to_string()))
}

/// ASCII armor of a secret key (for the key generation tool).
pub fn armor_secret_key(key: &SignedSecretKey) -> Result<String, KeyError> {
    key.to_armored_string(ArmorOptions {
        headers: None,
        include_checksum: true,
    })
    .map_err(|e| KeyError::Encoding(e.to_string()))
}

/// Reads one armored secret key (for the key generation tool).
pub fn read_secret_key(armored: &str) -> Result<SignedSecretKey, KeyError> {
    guarded(|| {
        let (key, _headers) = SignedSecretKey::from_string(armored).map_err(unreadable)?;
        Ok(key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;
    use std::sync::OnceLock;

    fn rng() -> rand::rngs::ThreadRng {
        rand::thread_rng()
    }

    fn ed25519_secret(uids: &[&str]) -> SignedSecretKey {
        generate_key(rng(), &KeySpec::ed25519(uids)).expect("generate ed25519")
    }

    fn rsa_spec(bits: u32, uid: &str) -> KeySpec {
        KeySpec {
            user_ids: vec![uid.to_string()],
            algorithm: GenAlgorithm::Rsa(bits),
            created: Utc::now(),
            expires_after: None,
            encryption_subkey: false,
        }
    }

    /// The one RSA-2048 key of the test module (RSA generation is slow in debug).
    fn rsa2048() -> &'static SignedSecretKey {
        static KEY: OnceLock<SignedSecretKey> = OnceLock::new();
        KEY.get_or_init(|| generate_key(rng(), &rsa_spec(2048, "Rita <rita@example.org>")).expect("rsa2048"))
    }

    /// The one RSA-1024 key of the test module.
    fn rsa1024() -> &'static SignedSecretKey {
        static KEY: OnceLock<SignedSecretKey> = OnceLock::new();
        KEY.get_or_init(|| generate_key(rng(), &rsa_spec(1024, "Weak <weak@example.org>")).expect("rsa1024"))
    }

    fn gpg(home: &Path, args: &[&str]) -> std::process::Output {
        let out = Command::new("gpg")
            .arg("--batch")
            .arg("--homedir")
            .arg(home)
            .args(args)
            .output()
            .expect("gpg must be installed (package gnupg)");
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn gpg_home() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        // gpg wants a private home directory.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        dir
    }

    /// The fingerprint of the key with `uid` in the gpg home.
    fn gpg_fingerprint(home: &Path, uid: &str) -> String {
        let listing = gpg(home, &["--with-colons", "--list-keys", uid]);
        String::from_utf8_lossy(&listing.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').nth(8))
            .expect("fingerprint")
            .to_string()
    }

    fn gpg_key(algo: &str, sub_algo: &str, uid: &str) -> String {
        let home = gpg_home();
        let common = ["--passphrase", "", "--pinentry-mode", "loopback"];
        let mut args = common.to_vec();
        args.extend(["--quick-gen-key", uid, algo, "sign", "never"]);
        gpg(home.path(), &args);
        let fpr = gpg_fingerprint(home.path(), uid);
        let mut args = common.to_vec();
        args.extend(["--quick-add-key", &fpr, sub_algo, "encr", "never"]);
        gpg(home.path(), &args);
        let out = gpg(home.path(), &["--armor", "--export", &fpr]);
        String::from_utf8(out.stdout).expect("armor is text")
    }

    fn check_one(armored: &str) -> Result<CheckedKey, KeyError> {
        let blocks = find_armored_keys(armored);
        assert_eq!(blocks.len(), 1);
        let mut keys = parse_armored_keys(blocks[0])?;
        assert_eq!(keys.len(), 1);
        check_key(keys.remove(0), &KeyPolicy::default())
    }

    #[test]
    fn rpgp_ed25519_key_passes() {
        let secret = ed25519_secret(&["Alice <Alice@Example.org>", "alice@work.example.com"]);
        let public = secret.to_public_key();
        let checked = check_key(public.clone(), &KeyPolicy::default()).expect("accepted");
        let emails: Vec<&str> = checked.emails().iter().map(Email::as_str).collect();
        assert_eq!(emails, ["alice@example.org", "alice@work.example.com"]);
        assert_eq!(checked.algorithm(), "EdDSA");
        assert!(!checked.is_revoked());
        assert_eq!(checked.expires_at(), None);
        assert!(!checked.is_expired(Utc::now()));
        assert_eq!(checked.signed_public_key().public_subkeys.len(), 1);
        assert_eq!(checked.fingerprint().as_str(), format!("{:X}", public.fingerprint()));
        // Nothing to strip: the stripped key is the key.
        assert_eq!(checked.to_bytes(), public.to_bytes().expect("bytes"));
        assert!(checked.signed_public_key().verify_bindings().is_ok());
    }

    #[test]
    fn rpgp_rsa_key_passes_and_rsa1024_is_refused() {
        let checked = check_key(rsa2048().to_public_key(), &KeyPolicy::default()).expect("rsa2048 accepted");
        assert_eq!(checked.algorithm(), "RSA 2048");
        assert_eq!(checked.emails()[0].as_str(), "rita@example.org");

        let err = check_key(rsa1024().to_public_key(), &KeyPolicy::default()).unwrap_err();
        assert_eq!(err, KeyError::WeakRsa { bits: 1024, min: 2048 });
        assert_eq!(
            err.to_string(),
            "RSA keys must be at least 2048 bits; this one has 1024"
        );
    }

    #[test]
    fn gpg_made_ed25519_key_passes() {
        let armored = gpg_key("ed25519", "cv25519", "Bob <bob@example.org>");
        let checked = check_one(&armored).expect("gpg key accepted");
        assert_eq!(checked.emails()[0].as_str(), "bob@example.org");
        assert_eq!(checked.algorithm(), "EdDSA");
        assert_eq!(checked.signed_public_key().public_subkeys.len(), 1);
        assert!(!checked.is_revoked());
    }

    #[test]
    fn gpg_made_rsa3072_key_passes() {
        let armored = gpg_key("rsa3072", "rsa3072", "Ray <ray@example.org>");
        let checked = check_one(&armored).expect("gpg key accepted");
        assert_eq!(checked.algorithm(), "RSA 3072");
        assert_eq!(checked.signed_public_key().public_subkeys.len(), 1);
    }

    #[test]
    fn third_party_certifications_are_stripped() {
        let alice = ed25519_secret(&["Alice <alice@example.org>", "Alice <alice@example.net>"]);
        let carol = ed25519_secret(&["Carol <carol@example.org>"]);
        let certified = certify_user_ids(&carol, &alice.to_public_key()).expect("certify");
        for user in &certified.details.users {
            assert_eq!(user.signatures.len(), 2);
        }
        // rPGP's own check refuses the whole key for one third-party signature.
        assert!(certified.verify_bindings().is_err());

        // Round trip through armor to be sure the certification travels.
        let armored = armor_public_key(&certified).expect("armor");
        let checked = check_one(&armored).expect("still accepted");
        assert_eq!(checked.emails().len(), 2);
        for user in &checked.signed_public_key().details.users {
            assert_eq!(user.signatures.len(), 1);
            assert!(user.signatures[0]
                .issuer_fingerprint()
                .iter()
                .all(|fp| **fp == alice.primary_key.fingerprint()));
        }
        assert!(checked.signed_public_key().verify_bindings().is_ok());
        assert_eq!(checked.to_bytes(), alice.to_public_key().to_bytes().expect("bytes"));
    }

    #[test]
    fn key_without_email_is_refused() {
        let key = ed25519_secret(&["Just A Name", "Someone <not an address>"]).to_public_key();
        let err = check_key(key, &KeyPolicy::default()).unwrap_err();
        assert_eq!(err, KeyError::NoEmail);

        // A bare address is an email; a user ID without one stays in the key.
        let key = ed25519_secret(&["Just A Name", "dave@example.org"]).to_public_key();
        let checked = check_key(key, &KeyPolicy::default()).expect("accepted");
        assert_eq!(checked.emails().len(), 1);
        assert_eq!(checked.emails()[0].as_str(), "dave@example.org");
        assert_eq!(checked.signed_public_key().details.users.len(), 2);
    }

    #[test]
    fn tampered_keys_are_refused() {
        let mut spec = KeySpec::ed25519(&["Eve <eve@example.org>"]);
        spec.encryption_subkey = false;
        let public = generate_key(rng(), &spec).expect("gen").to_public_key();
        let bytes = public.to_bytes().expect("bytes");

        // The last packet is the user ID's self-signature: flip its last byte.
        let mut flipped = bytes.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 0x01;
        }
        let result = parse_binary_keys(&flipped).and_then(|mut keys| check_key(keys.remove(0), &KeyPolicy::default()));
        assert_eq!(result.unwrap_err(), KeyError::BadSelfSignatures);

        // Change the user ID text: its signature no longer covers it.
        let pos = bytes.windows(3).position(|w| w == b"eve").expect("user id in packets");
        let mut renamed = bytes.clone();
        renamed[pos] = b'x';
        let result = parse_binary_keys(&renamed).and_then(|mut keys| check_key(keys.remove(0), &KeyPolicy::default()));
        assert_eq!(result.unwrap_err(), KeyError::BadSelfSignatures);
        assert_eq!(
            KeyError::BadSelfSignatures.to_string(),
            "the key's self-signatures do not verify"
        );
    }

    #[test]
    fn merge_unions_user_ids_and_subkeys() {
        let secret = ed25519_secret(&["Mia <mia@example.org>", "Mia <mia@example.net>"]);
        let full = secret.to_public_key();
        let mut first = full.clone();
        first.details.users.truncate(1);
        first.public_subkeys.clear();
        let mut second = full.clone();
        second.details.users.remove(0);

        let a = check_key(first, &KeyPolicy::default()).expect("a");
        let b = check_key(second, &KeyPolicy::default()).expect("b");
        assert_eq!(a.emails().len(), 1);
        assert_eq!(b.emails().len(), 1);

        let merged = a.merge(&b).expect("merge");
        let emails: Vec<&str> = merged.emails().iter().map(Email::as_str).collect();
        assert_eq!(emails, ["mia@example.org", "mia@example.net"]);
        assert_eq!(merged.signed_public_key().public_subkeys.len(), 1);
        assert_eq!(merged.to_bytes(), full.to_bytes().expect("bytes"));

        // Merging again adds nothing.
        let again = merged.merge(&b).expect("merge again").merge(&a).expect("and again");
        assert_eq!(again, merged);

        // A revocation merges in.
        let revoked = check_key(revoke_key(&secret, &full).expect("revoke"), &KeyPolicy::default())
            .expect("revoked key still checks");
        assert!(revoked.is_revoked());
        let merged = merged.merge(&revoked).expect("merge revocation");
        assert!(merged.is_revoked());
        assert_eq!(merged.signed_public_key().details.revocation_signatures.len(), 1);

        let other = check_key(
            ed25519_secret(&["O <o@example.org>"]).to_public_key(),
            &KeyPolicy::default(),
        )
        .expect("other");
        assert!(matches!(a.merge(&other), Err(KeyError::NotSameKey(_, _))));
    }

    /// A gpg key made at 2025-01-01 with `first_expiry`, exported, then
    /// given a newer self-signature at 2026-01-01 with `second_expiry`,
    /// exported again: (old copy, new copy, the new self-signature).
    fn gpg_key_re_signed(uid: &str, first_expiry: &str, second_expiry: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let home = gpg_home();
        let common = ["--passphrase", "", "--pinentry-mode", "loopback"];
        let at = |time: &str, extra: &[&str]| {
            let mut args = vec!["--faked-system-time", time];
            args.extend(common);
            args.extend(extra);
            gpg(home.path(), &args);
        };
        at(
            "20250101T000000!",
            &["--quick-gen-key", uid, "ed25519", "sign", first_expiry],
        );
        let export = || gpg(home.path(), &["--export", uid]).stdout;
        let old_copy = export();
        let fpr = gpg_fingerprint(home.path(), uid);
        at("20260101T000000!", &["--quick-set-expire", &fpr, second_expiry]);
        let new_copy = export();
        // gpg keeps only the newest self-signature of a user ID.
        let newest = parse_binary_keys(&new_copy).expect("parse").remove(0).details.users[0].signatures[0]
            .to_bytes()
            .expect("bytes");
        (old_copy, new_copy, newest)
    }

    /// `copy` with `signature`'s last byte damaged, and the user ID's
    /// self-signatures from `old_copy` added.
    fn forged_next_to_old(copy: &[u8], signature: &[u8], old_copy: &[u8]) -> SignedPublicKey {
        let at = copy
            .windows(signature.len())
            .position(|w| w == signature)
            .expect("signature in export");
        let mut forged = copy.to_vec();
        forged[at + signature.len() - 1] ^= 0x55;
        let mut key = parse_binary_keys(&forged).expect("parse").remove(0);
        let old_sigs = parse_binary_keys(old_copy).expect("parse").remove(0).details.users[0]
            .signatures
            .clone();
        key.details.users[0].signatures.extend(old_sigs);
        key
    }

    fn first_key(bytes: &[u8]) -> SignedPublicKey {
        parse_binary_keys(bytes).expect("parse").remove(0)
    }

    #[test]
    fn only_the_newest_valid_self_signature_is_kept() {
        let (old_copy, new_copy, newest) = gpg_key_re_signed("Nell <nell@example.org>", "1y", "3y");
        let check = |key: SignedPublicKey| check_key(key, &KeyPolicy::default());
        let old = check(first_key(&old_copy)).expect("old copy");
        let new = check(first_key(&new_copy)).expect("new copy");
        assert!(
            new.expires_at() > old.expires_at(),
            "the newer self-signature's expiry counts"
        );
        let users = &new.signed_public_key().details.users;
        assert_eq!(users[0].signatures.len(), 1, "the superseded self-signature is dropped");
        assert_eq!(old.merge(&new).expect("merge"), new);
        assert_eq!(new.merge(&old).expect("merge"), new);

        // A forged newer self-signature does not displace the real one.
        let checked = check(forged_next_to_old(&new_copy, &newest, &old_copy)).expect("the older one verifies");
        assert_eq!(checked.expires_at(), old.expires_at());
    }

    #[test]
    fn expiry_is_probed_from_the_newest_self_signature_that_verifies() {
        let now = Utc::now();
        // Extended in 2026 until 2029: the 2026 expiry is superseded.
        let (old_copy, new_copy, _) = gpg_key_re_signed("Olga <olga@example.org>", "1y", "3y");
        assert!(has_expired(&first_key(&old_copy), now));
        assert!(!has_expired(&first_key(&new_copy), now));
        // Cut short in 2026 to a day: expired, unless that self-signature is a forgery.
        let (old_copy, new_copy, newest_short) = gpg_key_re_signed("Pia <pia@example.org>", "never", "1d");
        assert!(has_expired(&first_key(&new_copy), now));
        let forged = forged_next_to_old(&new_copy, &newest_short, &old_copy);
        assert!(!has_expired(&forged, now));
        let checked = check_key(forged, &KeyPolicy::default()).expect("the older self-signature verifies");
        assert_eq!(checked.expires_at(), None);
    }

    #[test]
    fn nested_error_dumps_become_one_plain_reason() {
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Dumped(String);
        let dumped = Dumped(
            "error while parsing composed key: InvalidPacketContent { source: RSAError { source: ModulusTooLarge, backtrace: Some(Backtrace [{ fn: \"x\" }]) } }".into(),
        );
        assert_eq!(
            innermost_reason(&dumped),
            "error while parsing composed key: ModulusTooLarge"
        );
        assert_eq!(
            innermost_reason(&Dumped("modulus too large".into())),
            "modulus too large"
        );
        assert_eq!(innermost_reason(&Dumped("Oops { x: 1 }".into())), "Oops");
    }

    #[test]
    fn revoked_user_id_gives_no_email() {
        let spec = KeySpec::ed25519(&["Ann <ann@example.org>", "Ann <ann@old.example.org>"]);
        let secret = generate_key(rng(), &spec).expect("gen");
        let revoked = revoke_user_id(
            &secret,
            &secret.to_public_key(),
            "Ann <ann@old.example.org>",
            spec.created,
        )
        .expect("revoke uid");
        let checked = check_key(revoked, &KeyPolicy::default()).expect("accepted");
        let emails: Vec<&str> = checked.emails().iter().map(Email::as_str).collect();
        assert_eq!(emails, ["ann@example.org"]);
        // The revoked user ID stays, with its revocation, for clients.
        let users = &checked.signed_public_key().details.users;
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].signatures.len(), 2);
    }

    #[test]
    fn find_armored_keys_in_prose_with_crlf() {
        let k1 = armor_public_key(&ed25519_secret(&["A <a@example.org>"]).to_public_key()).expect("armor");
        let k2 = armor_public_key(&ed25519_secret(&["B <b@example.org>"]).to_public_key()).expect("armor");
        let text = format!(
            "Hello,\n{BEGIN_PUBLIC_KEY}\nthis one is cut short\n\nplease register these:\n\n{k1}\nand\n> {BEGIN_PUBLIC_KEY}\n> quoted, ignored\n\n{k2}\nThanks!\n"
        )
        .replace('\n', "\r\n");
        let blocks = find_armored_keys(&text);
        assert_eq!(blocks.len(), 2);
        let emails: Vec<String> = blocks
            .iter()
            .map(|b| {
                let mut keys = parse_armored_keys(b).expect("parse");
                assert_eq!(keys.len(), 1);
                let checked = check_key(keys.remove(0), &KeyPolicy::default()).expect("check");
                checked.emails()[0].to_string()
            })
            .collect();
        assert_eq!(emails, ["a@example.org", "b@example.org"]);
        assert!(find_armored_keys("no keys here").is_empty());
        assert!(find_armored_keys(BEGIN_PUBLIC_KEY).is_empty());
    }

    #[test]
    fn keyring_writer_output_imports_in_gpg_and_rpgp() {
        let keys: Vec<CheckedKey> = (0..3)
            .map(|i| {
                let uid = format!("User {i} <user{i}@example.org>");
                check_key(ed25519_secret(&[&uid]).to_public_key(), &KeyPolicy::default()).expect("check")
            })
            .collect();

        // One key: the same bytes as rPGP's own armor writer.
        let single = keys[0].to_armored();
        let reference = armor_public_key(keys[0].signed_public_key()).expect("armor");
        assert_eq!(single, reference);
        assert_eq!(dearmor(&single).expect("dearmor"), keys[0].to_bytes());
        let back = read_stored_key(&single).expect("read back");
        assert_eq!(back, keys[0]);

        let mut writer = ArmoredKeyringWriter::new(Vec::new()).expect("new");
        for key in &keys {
            writer.write_key(&key.to_bytes()).expect("write");
        }
        let ring = String::from_utf8(writer.finish().expect("finish")).expect("utf8");
        assert!(ring.lines().all(|l| l.len() <= 64));

        let parsed = parse_armored_keys(&ring).expect("rpgp parses the ring");
        assert_eq!(parsed.len(), 3);
        let streamed: Vec<_> = read_keyring(ring.as_bytes())
            .expect("read_keyring")
            .collect::<Result<_, _>>()
            .expect("all keys read");
        assert_eq!(streamed, parsed);
        for (key, original) in parsed.into_iter().zip(&keys) {
            assert_eq!(&check_key(key, &KeyPolicy::default()).expect("check"), original);
        }

        let home = gpg_home();
        let file = home.path().join("pubkeys.asc");
        std::fs::write(&file, &ring).expect("write ring");
        gpg(home.path(), &["--import", file.to_str().expect("path")]);
        let listing = gpg(home.path(), &["--with-colons", "--list-keys"]);
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert_eq!(listing.lines().filter(|l| l.starts_with("pub:")).count(), 3);
    }

    #[test]
    fn expired_key_is_reported_not_refused() {
        let created = Utc::now() - chrono::Duration::days(730);
        let spec = KeySpec {
            created,
            expires_after: Some(std::time::Duration::from_secs(365 * 86_400)),
            ..KeySpec::ed25519(&["Old <old@example.org>"])
        };
        let checked = check_key(
            generate_key(rng(), &spec).expect("gen").to_public_key(),
            &KeyPolicy::default(),
        )
        .expect("accepted");
        assert!(checked.is_expired(Utc::now()));
        assert!(!checked.is_expired(created));
        assert_eq!(
            checked.expires_at().map(|t| t.timestamp()),
            Some(created.timestamp() + 365 * 86_400)
        );
        assert_eq!(checked.created_at().timestamp(), created.timestamp());
    }

    #[test]
    fn policy_counts_are_enforced() {
        let key = ed25519_secret(&["A <a@example.org>", "B <b@example.org>"]).to_public_key();
        let policy = KeyPolicy {
            max_user_ids: 1,
            ..KeyPolicy::default()
        };
        assert_eq!(
            check_key(key.clone(), &policy).unwrap_err(),
            KeyError::TooManyUserIds { count: 2, max: 1 }
        );
        let policy = KeyPolicy {
            max_signature_checks: 1,
            ..KeyPolicy::default()
        };
        assert_eq!(check_key(key, &policy).unwrap_err(), KeyError::TooManySignatures(1));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "hello",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP MESSAGE-----\n\nAAAA\n-----END PGP MESSAGE-----",
        ] {
            assert!(parse_armored_keys(text).is_err(), "{text:?}");
            assert!(dearmor(text).is_err(), "{text:?}");
            assert!(read_stored_key(text).is_err(), "{text:?}");
        }
        assert!(parse_binary_keys(&[]).is_err());
        assert!(parse_binary_keys(&[0x99, 0xff, 0xff, 0xff]).is_err());
        assert!(read_keyring(&[][..]).is_err());

        // Random bytes.
        let mut r = rng();
        for _ in 0..300 {
            let len = r.gen_range(0..200);
            let bytes: Vec<u8> = (0..len).map(|_| r.gen()).collect();
            if let Ok(keys) = parse_binary_keys(&bytes) {
                for key in keys {
                    let _ = check_key(key, &KeyPolicy::default());
                }
            }
            if let Ok(iter) = read_keyring(&bytes[..]) {
                for key in iter.take(10).flatten() {
                    let _ = check_key(key, &KeyPolicy::default());
                }
            };
        }

        // Every byte of a real key flipped, and every truncation.
        let mut spec = KeySpec::ed25519(&["F <f@example.org>"]);
        spec.encryption_subkey = false;
        let bytes = generate_key(rng(), &spec)
            .expect("gen")
            .to_public_key()
            .to_bytes()
            .expect("bytes");
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut mutated = bytes.clone();
                mutated[i] ^= mask;
                if let Ok(keys) = parse_binary_keys(&mutated) {
                    for key in keys {
                        let _ = check_key(key, &KeyPolicy::default());
                    }
                }
            }
            let _ = parse_binary_keys(&bytes[..i]);
        }
    }
}
