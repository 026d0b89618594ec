//! Checking a received update as if its request had come by mail.
//!
//! A peer is trusted as far as a mail front end is: it may claim free
//! addresses and its clock dates its claims, but it cannot change or
//! remove a key without the key owner's own signature. So every key an
//! update carries must pass the checks a mailed key passes (under this
//! server's [`KeyPolicy`]), each address it claims must be one of the
//! key's own, and a change or removal must carry a request signed by the
//! old key it names, saying `ChangeKey` (with the new key) or `RemoveKey`,
//! made before the update's time. Whether the request still applies (the
//! signer holds the addresses, the signature is not stale or replayed) is
//! decided when the update is applied, in the one order of all updates.

use chrono::{DateTime, Duration, Utc};
use ripem_core::types::Fingerprint;
use ripem_openpgp::{self as openpgp, CheckedKey, KeyPolicy, SignedPart};

use crate::clock::time_of;
use crate::error::UpdateError;
use crate::form::{Kind, Update};

/// A signature may be dated this far after the update that carries it
/// (the two come from different clocks).
const SIGNATURE_SKEW: Duration = Duration::minutes(5);

/// Reads the one key of an armored block and checks it; it must be the
/// key `expected` names.
fn key_in(block: &str, expected: &Fingerprint, policy: &KeyPolicy) -> Result<CheckedKey, UpdateError> {
    let mut keys = openpgp::parse_armored_keys(block).map_err(|err| UpdateError::BadKey(err.to_string()))?;
    if keys.len() != 1 {
        return Err(UpdateError::BadKey(format!("{} keys where one belongs", keys.len())));
    }
    let key = keys.pop().ok_or_else(|| UpdateError::BadKey("no key".into()))?;
    let key = openpgp::check_key(key, policy).map_err(|err| UpdateError::BadKey(err.to_string()))?;
    if key.fingerprint() != expected {
        return Err(UpdateError::BadKey(format!(
            "the key is {}, not {expected}",
            key.fingerprint()
        )));
    }
    Ok(key)
}

/// Verifies a change's or removal's signed request against the old key;
/// the signed text.
fn signed_text(request: &SignedPart, old: &CheckedKey, time: DateTime<Utc>) -> Result<String, UpdateError> {
    let verified = request
        .verify(old)
        .map_err(|err| UpdateError::BadRequest(err.to_string()))?;
    if verified.signed_at > time + SIGNATURE_SKEW {
        return Err(UpdateError::BadRequest(format!(
            "signed at {}, after the update's time {}",
            verified.signed_at, time
        )));
    }
    Ok(verified.content)
}

/// Checks `update` (see the [module](self) docs).
pub fn check(update: &Update, policy: &KeyPolicy) -> Result<(), UpdateError> {
    let fields = update.fields();
    let missing = |what: &str| UpdateError::Malformed(format!("no {what}"));
    let time = time_of(fields.time_ms);
    let new_key = match &fields.key {
        Some(block) => Some(key_in(block, &fields.fingerprint, policy)?),
        None => None,
    };
    if let Some(key) = &new_key {
        if let Some(stranger) = fields.claims.iter().find(|email| !key.emails().contains(email)) {
            return Err(UpdateError::BadKey(format!("the key has no user ID for {stranger}")));
        }
    }
    if matches!(fields.kind, Kind::Register | Kind::Merge) {
        return Ok(());
    }
    let old_fingerprint = fields.old_fingerprint.as_ref().unwrap_or(&fields.fingerprint);
    let old_key = key_in(
        fields.old_key.as_deref().ok_or_else(|| missing("old key"))?,
        old_fingerprint,
        policy,
    )?;
    let request = fields.request.as_ref().ok_or_else(|| missing("signed request"))?;
    let text = signed_text(request, &old_key, time)?;
    let first_line = text.trim_start().lines().next().unwrap_or_default().trim().to_string();
    if fields.kind == Kind::Remove {
        if !first_line.starts_with("RemoveKey") {
            return Err(UpdateError::BadRequest(
                "the signed text does not start with RemoveKey".into(),
            ));
        }
        return Ok(());
    }
    let carried = openpgp::find_armored_keys(&text).into_iter().any(|block| {
        openpgp::parse_armored_keys(block).is_ok_and(|keys| {
            keys.iter()
                .any(|key| key.fingerprint().as_ref() == Ok(&fields.fingerprint))
        })
    });
    if !carried {
        return Err(UpdateError::BadRequest(format!(
            "the signed text does not hold the new key {}",
            fields.fingerprint
        )));
    }
    Ok(())
}
