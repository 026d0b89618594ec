//! Errors, and the one panic guard.
//!
//! Every refusal is a [`KeyError`] (or, for signed requests, a
//! [`SignatureError`]) whose `Display` text is plain English, fit for a
//! reply mail; rPGP's nested error dumps are cut down to their innermost
//! reason. Every call into rPGP on data from outside runs inside
//! [`guarded`], which turns a panic into an error of the caller's type
//! ([`FromPanic`]) instead of taking the process down.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ripem_core::types::Fingerprint;

use crate::signed::SignatureError;
use crate::user_ids::{self, StrippedUserId};

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
