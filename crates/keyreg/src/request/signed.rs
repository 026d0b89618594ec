//! Change and remove requests: signed by the registered key, authenticated
//! inside the write window against what is registered at that moment
//! ([`authenticate`]), then applied ([`apply_change`], [`apply_remove`]).
//! A signature older than the record's last update, older than
//! `max_request_age`, or dated in the future is refused, so a captured
//! request can't be replayed.

use chrono::{DateTime, Utc};

use ripem_core::mail::{RequestMail, MAX_SIGNED_PARTS};
use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint, Query};
use ripem_keydb::KeyDb;
use ripem_openpgp::{self as openpgp, CheckedKey, KeyPolicy, SignedPart, Verified};

use super::{apply_key, delete_key, restore_key, AddressOutcome, KeyOutcome};

/// How far in the future a signature may be dated (clocks drift).
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Why a change or remove request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedRefusal {
    /// Nothing in the mail is signed.
    #[error("the message is not signed; sign it with your registered key (gpg --clearsign, gpg --sign --armor, or PGP/MIME)")]
    NotSigned,
    /// The signature names no registered key.
    #[error("it is signed by a key that is not registered here (key ID {0})")]
    UnknownSigner(String),
    /// The signature does not verify.
    #[error("{0}")]
    BadSignature(String),
    /// Signed before the record last changed: stale or replayed.
    #[error("the signature ({signed_at}) is not newer than the last change to the registered key ({updated}): a stale or replayed request; sign a new one")]
    Stale {
        /// When it was signed.
        signed_at: String,
        /// When the record last changed.
        updated: String,
    },
    /// Older than the configured age.
    #[error("the signature ({signed_at}) is older than {days} days; sign a new request")]
    TooOld {
        /// When it was signed.
        signed_at: String,
        /// The limit in days.
        days: i64,
    },
    /// Dated in the future.
    #[error("the signature is dated in the future ({0}); check your clock")]
    Future(String),
    /// A remove request whose text does not start with `RemoveKey`.
    #[error("the signed text does not start with RemoveKey")]
    NotRemoveKey,
    /// A change request whose text does not say it is one.
    #[error("the signed text does not start with a ChangeKey line followed by the new key (a signed key alone is taken as a change only when it is the whole signed text and carries an address of the registered key)")]
    NotChangeKey,
    /// A change request without exactly one new key.
    #[error("the signed text must hold exactly one public key (the new key); it holds {0}")]
    NewKeyCount(usize),
    /// The new key failed a check.
    #[error("the new key was refused: {0}")]
    NewKeyRefused(String),
}

/// A signed request whose signature verified with a registered key.
struct Authenticated {
    record: Record,
    key: CheckedKey,
    verified: Verified,
    /// The part that verified.
    part: SignedPart,
}

/// What an applied change or removal did, as its update records it: the
/// signed part that authenticated it (the only one a replay needs), the
/// signing key as it was registered, and the addresses it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEffect {
    /// The signed part that verified.
    pub part: SignedPart,
    /// The signing key's registered record's key, armored.
    pub old_key: String,
    /// The signing key.
    pub old_fingerprint: Fingerprint,
    /// A change: the new key and its stripped armor.
    pub new_key: Option<(Fingerprint, String)>,
    /// A change: the addresses the new key newly registered.
    pub claims: Vec<Email>,
    /// A change: the addresses passed from the old key to the new one.
    pub transfers: Vec<Email>,
    /// The addresses set free.
    pub releases: Vec<Email>,
}

/// Every signed part of a request mail, at most
/// [`MAX_SIGNED_PARTS`](ripem_core::mail::MAX_SIGNED_PARTS): its PGP/MIME
/// parts (moved out of the mail, not copied: each may be megabytes), then
/// the cleartext- and inline-signed armor in its texts.
pub fn signed_parts(mail: &mut RequestMail) -> Vec<SignedPart> {
    let detached = std::mem::take(&mut mail.detached_signed)
        .into_iter()
        .map(|part| SignedPart::Detached {
            content: part.content,
            text: part.text,
            signature: part.signature,
        });
    let armored = mail.texts.iter().flat_map(|text| openpgp::find_signed_parts(text));
    detached.chain(armored).take(MAX_SIGNED_PARTS).collect()
}

/// Finds the registered key that signed one of `parts` and checks the
/// signature, that the key (or subkey) that made it could sign then by the
/// registered copy ([`openpgp::check_signer`]: not revoked, not expired,
/// bound for signing), and its age.
fn authenticate<D: KeyDb>(
    store: &D,
    parts: &[SignedPart],
    policy: &KeyPolicy,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
) -> Result<Result<Authenticated, SignedRefusal>, D::Error> {
    let mut refusal = SignedRefusal::NotSigned;
    for part in parts {
        let key_ids = part.issuer_key_ids();
        if key_ids.is_empty() {
            refusal = SignedRefusal::BadSignature("the signature could not be read".into());
            continue;
        }
        let mut owners = Vec::new();
        for key_id in &key_ids {
            owners.extend(store.fingerprints_with_key_id(key_id)?);
        }
        owners.sort();
        owners.dedup();
        if owners.is_empty() {
            refusal = SignedRefusal::UnknownSigner(key_ids.join(", "));
            continue;
        }
        for fingerprint in owners {
            let Some(record) = store.record(&Query::Fingerprint(fingerprint))? else {
                continue;
            };
            let Ok(key) = openpgp::read_stored_key(&record.key_armor, policy) else {
                continue;
            };
            let verified = match part.verify(&key) {
                Ok(verified) => verified,
                Err(err) => {
                    refusal = SignedRefusal::BadSignature(err.to_string());
                    continue;
                }
            };
            let stamp = |time: DateTime<Utc>| time.format("%Y-%m-%d %H:%M:%S UTC").to_string();
            if verified.signed_at > now + MAX_CLOCK_SKEW {
                return Ok(Err(SignedRefusal::Future(stamp(verified.signed_at))));
            }
            if now - verified.signed_at > max_age {
                return Ok(Err(SignedRefusal::TooOld {
                    signed_at: stamp(verified.signed_at),
                    days: max_age.num_days(),
                }));
            }
            if verified.signed_at <= record.updated {
                return Ok(Err(SignedRefusal::Stale {
                    signed_at: stamp(verified.signed_at),
                    updated: stamp(record.updated),
                }));
            }
            return Ok(Ok(Authenticated {
                record,
                key,
                verified,
                part: part.clone(),
            }));
        }
    }
    Ok(Err(refusal))
}

/// A refused signed request's outcome lines.
fn refused_lines(refusal: &SignedRefusal) -> Vec<String> {
    vec![format!("refused: {refusal}")]
}

/// What a change or remove request did: the reply's lines, and the
/// addresses that lost their key, each with what happened to it. Those are
/// told by mail as well as the sender, so that a forged or replayed
/// request cannot pass unnoticed.
#[derive(Debug, Default)]
pub struct SignedOutcome {
    /// The reply's outcome lines.
    pub lines: Vec<String>,
    /// Each address taken from the signing key, and what became of it.
    pub notify: Vec<(Email, String)>,
    /// The key that signed the request, when it was applied.
    pub signer: Option<Fingerprint>,
    /// What it did, when it was applied as a change or removal.
    pub effect: Option<SignedEffect>,
    /// A "change" to the registered key itself, merged into it: that key.
    pub merged: Option<CheckedKey>,
}

impl SignedOutcome {
    fn refused(refusal: &SignedRefusal) -> SignedOutcome {
        SignedOutcome {
            lines: refused_lines(refusal),
            ..SignedOutcome::default()
        }
    }
}

/// Applies a change request: signed by the registered (old) key, its signed
/// text holds the new key. The new key takes over the old key's addresses
/// that it also carries; the others are removed; its new addresses are
/// registered first come, first served.
pub fn apply_change<D: KeyDb>(
    store: &mut D,
    parts: &[SignedPart],
    policy: &KeyPolicy,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
) -> Result<SignedOutcome, D::Error> {
    let auth = match authenticate(store, parts, policy, now, max_age)? {
        Ok(auth) => auth,
        Err(refusal) => return Ok(SignedOutcome::refused(&refusal)),
    };
    let new_key = match new_key_of(&auth.verified.content, &auth.record, policy, now) {
        Ok(key) => key,
        Err(refusal) => return Ok(SignedOutcome::refused(&refusal)),
    };
    let old = &auth.record;
    if new_key.fingerprint() == &old.fingerprint {
        let mut lines = vec!["the new key is the registered key itself; merged into it".to_string()];
        let outcome = apply_key(store, &new_key, policy, now)?;
        lines.extend(outcome.lines());
        return Ok(SignedOutcome {
            lines,
            merged: outcome.changed().then_some(new_key),
            ..SignedOutcome::default()
        });
    }
    delete_key(store, old, policy)?;
    let outcome = apply_key(store, &new_key, policy, now)?;
    let KeyOutcome::Applied { addresses, .. } = &outcome else {
        restore_key(store, old, &auth.key)?;
        let reason = outcome.lines().join(" ");
        return Ok(SignedOutcome::refused(&SignedRefusal::NewKeyRefused(reason)));
    };
    let mut lines = vec![format!(
        "key {} replaced by key {}:",
        old.fingerprint,
        new_key.fingerprint()
    )];
    lines.extend(new_key.stripped_user_ids().iter().map(|user_id| format!("  {user_id}")));
    let mut notify = Vec::new();
    let mut effect = SignedEffect {
        part: auth.part.clone(),
        old_key: old.key_armor.clone(),
        old_fingerprint: old.fingerprint.clone(),
        new_key: Some((
            new_key.fingerprint().clone(),
            new_key.to_armored().trim_end().to_string(),
        )),
        claims: Vec::new(),
        transfers: Vec::new(),
        releases: Vec::new(),
    };
    for user in &old.users {
        let moved = addresses
            .iter()
            .any(|(email, o)| email == user && *o == AddressOutcome::Registered);
        match moved {
            true => effect.transfers.push(user.clone()),
            false => effect.releases.push(user.clone()),
        }
        let what = if moved {
            format!("moved to the new key {}", new_key.fingerprint())
        } else {
            "removed (the new key does not carry it)".to_string()
        };
        lines.push(format!("  {user}: {what}"));
        notify.push((user.clone(), what));
    }
    for (email, address_outcome) in addresses.iter().filter(|(email, _)| !old.users.contains(email)) {
        lines.push(format!("  {email}: {address_outcome}"));
        if matches!(
            address_outcome,
            AddressOutcome::Registered | AddressOutcome::TakenOver(_)
        ) {
            effect.claims.push(email.clone());
        }
    }
    Ok(SignedOutcome {
        lines,
        notify,
        signer: Some(old.fingerprint.clone()),
        effect: Some(effect),
        merged: None,
    })
}

/// The one key a change request's signed text holds, checked. The text
/// must say it is a change: a `ChangeKey` line first, then the new key; or
/// RIPEM's bare signed successor key — the key block as the whole signed
/// text — carrying at least one address of the registered key. So a signed
/// note that merely quotes a key, forwarded by anyone, changes nothing.
fn new_key_of(
    content: &str,
    old: &Record,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<CheckedKey, SignedRefusal> {
    let explicit = content
        .trim_start()
        .lines()
        .next()
        .is_some_and(|line| line.trim() == "ChangeKey");
    let blocks = openpgp::find_armored_keys(content);
    let bare = blocks.len() == 1 && blocks.first().is_some_and(|block| block.trim() == content.trim());
    if !explicit && !bare {
        return Err(SignedRefusal::NotChangeKey);
    }
    let mut keys = Vec::new();
    for block in blocks {
        keys.extend(openpgp::parse_armored_keys(block).map_err(|err| SignedRefusal::NewKeyRefused(err.to_string()))?);
    }
    if keys.len() != 1 {
        return Err(SignedRefusal::NewKeyCount(keys.len()));
    }
    let Some(key) = keys.pop() else {
        return Err(SignedRefusal::NewKeyCount(0));
    };
    let key = openpgp::check_key(key, policy).map_err(|err| SignedRefusal::NewKeyRefused(err.to_string()))?;
    if key.is_revoked() {
        return Err(SignedRefusal::NewKeyRefused("the key is revoked".into()));
    }
    if key.is_expired(now) {
        return Err(SignedRefusal::NewKeyRefused("the key has expired".into()));
    }
    if !explicit && !key.emails().iter().any(|email| old.users.contains(email)) {
        return Err(SignedRefusal::NotChangeKey);
    }
    Ok(key)
}

/// Applies a remove request: signed by the registered key, its signed text
/// starting with `RemoveKey`. Every address of that key is removed.
pub fn apply_remove<D: KeyDb>(
    store: &mut D,
    parts: &[SignedPart],
    policy: &KeyPolicy,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
) -> Result<SignedOutcome, D::Error> {
    let auth = match authenticate(store, parts, policy, now, max_age)? {
        Ok(auth) => auth,
        Err(refusal) => return Ok(SignedOutcome::refused(&refusal)),
    };
    if !auth.verified.content.trim_start().starts_with("RemoveKey") {
        return Ok(SignedOutcome::refused(&SignedRefusal::NotRemoveKey));
    }
    delete_key(store, &auth.record, policy)?;
    let effect = SignedEffect {
        part: auth.part.clone(),
        old_key: auth.record.key_armor.clone(),
        old_fingerprint: auth.record.fingerprint.clone(),
        new_key: None,
        claims: Vec::new(),
        transfers: Vec::new(),
        releases: auth.record.users.clone(),
    };
    let mut lines = vec![format!("key {} removed:", auth.record.fingerprint)];
    lines.extend(auth.record.users.iter().map(|user| format!("  {user}: removed")));
    Ok(SignedOutcome {
        lines,
        notify: auth
            .record
            .users
            .iter()
            .map(|user| (user.clone(), "removed".to_string()))
            .collect(),
        signer: Some(auth.record.fingerprint.clone()),
        effect: Some(effect),
        merged: None,
    })
}
