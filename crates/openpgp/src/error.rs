//! Errors, and the one panic guard.
//!
//! Every refusal is a [`KeyError`] (or, for signed requests, a
//! [`SignatureError`]) whose `Display` text is plain English, fit for a
//! reply mail; rPGP's nested error dumps are cut down to their innermost
//! reason. Every call into rPGP on data from outside runs inside
//! [`guarded`], which turns a panic into an error of the caller's type
//! ([`FromPanic`]) instead of taking the process down.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, Utc};
use pgp::packet::{RevocationCode, Signature};

use ripem_core::types::Fingerprint;

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
    /// ([`check_user_id`](crate::check_user_id)); the stripped ones, with their reasons.
    #[error("no user ID with an email address can be published: {}", describe_stripped(.0))]
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

pub(crate) fn unreadable(err: impl std::error::Error + 'static) -> KeyError {
    KeyError::Unreadable(innermost_reason(&err))
}

/// The text of an error's innermost cause, without the `Debug` dump of
/// nested errors (backtraces and all) that some of rPGP's messages carry:
/// `error while parsing composed key: InvalidPacketContent { source:
/// RSAError { source: ModulusTooLarge, .. } }` becomes `error while
/// parsing composed key: ModulusTooLarge`. It goes into reply mail and
/// log lines.
pub(crate) fn innermost_reason(err: &(dyn std::error::Error + 'static)) -> String {
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

/// An error type a panic inside rPGP can become.
pub(crate) trait FromPanic {
    /// The error standing for a panic while reading hostile data.
    fn from_panic() -> Self;
}

impl FromPanic for KeyError {
    fn from_panic() -> Self {
        KeyError::Unreadable("malformed key data (parser failure)".to_string())
    }
}

impl FromPanic for SignatureError {
    fn from_panic() -> Self {
        SignatureError::Unreadable("malformed signature data (parser failure)".into())
    }
}

/// Runs `f`, turning a panic inside rPGP into an error instead of taking the
/// process down (a last line of defence against hostile packets).
pub(crate) fn guarded<T, E: FromPanic>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(E::from_panic()))
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
    /// made it could not sign then ([`check_signer`](crate::check_signer)).
    #[error("{0}")]
    InvalidSigner(InvalidSigner),
}

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
    pub(crate) fn of(sig: &Signature) -> RevocationReason {
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

/// Why a self-signed user ID is not published. `Display` completes the
/// sentence "the user ID is not published: …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UncleanUserId {
    /// The user ID's bytes are not UTF-8 text.
    #[error("it is not UTF-8 text")]
    NotUtf8,
    /// A control character: a line break, a tab, an escape, DEL, a C1
    /// control, a Unicode line or paragraph separator, or a bidirectional
    /// embedding, override or isolate.
    #[error("it holds a control character (a line break, a tab or the like)")]
    ControlCharacter,
    /// More than one email address.
    #[error("it holds {0} email addresses; a user ID may hold only one")]
    SeveralAddresses(usize),
    /// An address that this server does not accept (see
    /// [`Email::parse`](ripem_core::types::Email::parse)), or one outside the `<…>` that holds something else.
    #[error("its email address is not one this server accepts (a plain ASCII address such as name@example.org, in <…> or alone)")]
    UnusableAddress,
}

/// A self-signed user ID that [`check_key`](super::check_key) took out of
/// the key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrippedUserId {
    /// The user ID made safe to quote on one line: control characters and
    /// quotes escaped as Rust does (`\n`, `\t`, `\"`, `\u{1b}`), bytes
    /// that are not UTF-8 replaced, at most 100 characters (then `…`).
    pub user_id: String,
    /// Why it was stripped.
    pub reason: UncleanUserId,
}

impl fmt::Display for StrippedUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user ID \"{}\" is not published: {}", self.user_id, self.reason)
    }
}

/// The stripped user IDs of a refusal, as one phrase.
fn describe_stripped(stripped: &[StrippedUserId]) -> String {
    stripped.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
