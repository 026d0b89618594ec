//! Requests: what a mail asks for, and applying it to the store.
//!
//! Work is split in two so the database is held for as short a time as
//! possible. [`prepare_add`] runs outside the write window: it finds every
//! key in the mail and checks it (parsing and verifying signatures is the
//! expensive part). [`apply_key`] runs inside it: first come, first served
//! per address, as in RIPEM. An address that is free is registered; one
//! that already belongs to the same key is merged (new self-signatures,
//! subkeys, revocations); one that belongs to another key is refused.
//! Applying the same request twice changes nothing the second time.
//!
//! Change and remove requests must be signed by the registered key (its
//! primary key or a signing subkey): [`apply_change`] and [`apply_remove`]
//! authenticate them inside the write window, since the answer depends on
//! what is registered at that moment. A signature older than the record's
//! last update, older than `max_request_age`, or dated in the future is
//! refused, so a captured request can't be replayed. A revocation
//! certificate mailed to the register address is merged into the key it
//! revokes.

use std::fmt;

use chrono::{DateTime, Utc};

use ripem_core::mail::{RequestMail, MAX_SIGNED_PARTS};
use ripem_core::protocol::{MAX_DATAGRAM, USERINFO_OVERHEAD};
use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint, Query};
use ripem_keydb::{KeyStore, StoreError};
use ripem_openpgp::{
    self as openpgp, CheckedKey, KeyError, KeyPolicy, ParsedKey, Revocation, SignedPart, StrippedUserId, Verified,
};

/// A key found in a request, checked or refused before the write window.
#[derive(Debug)]
pub enum Candidate {
    /// Passed the checks that don't need the database.
    Key(Box<CheckedKey>),
    /// Expired by its newest valid self-signature ([`openpgp::has_expired`]),
    /// not checked further: refused unless the key is registered already,
    /// when it is checked in full and merged (a copy of an expired key may
    /// still bring news, such as a revocation).
    Expired {
        /// The key's fingerprint.
        fingerprint: Fingerprint,
        /// The key as offered.
        key: Box<ParsedKey>,
    },
    /// A revocation certificate, to be merged into the key it revokes.
    Revocation(Box<Revocation>),
    /// Refused: a description of the key (fingerprint if known) and why.
    Refused {
        /// Which key (fingerprint, or its position in the mail).
        key: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The keys of a registration mail, as far as they were considered.
#[derive(Debug)]
pub struct AddRequest {
    /// The keys considered, checked or refused, in the mail's order
    /// (revocation certificates first).
    pub candidates: Vec<Candidate>,
    /// Key blocks and attachments past the limit, not parsed (each counts
    /// as one key; the rest of a block cut short counts as one too).
    pub not_considered: usize,
    /// The limit that applied.
    pub max_keys: usize,
}

impl AddRequest {
    /// The reply's line for the keys past the limit, if there were any.
    pub fn not_considered_line(&self) -> Option<String> {
        (self.not_considered > 0).then(|| {
            format!(
                "{} further keys not considered: at most {} keys per request",
                self.not_considered, self.max_keys
            )
        })
    }
}

/// Finds and checks the public keys in the texts and binary blobs of a
/// request, at most `max_keys` of them: past the limit nothing more is
/// parsed, so a mail of 80,000 key blocks costs what 100 do. Expired and
/// revoked keys pass here: they may still merge into a registration of
/// the same key (see [`apply_key`]).
pub fn prepare_add(
    texts: &[String],
    binary: &[Vec<u8>],
    policy: &KeyPolicy,
    now: DateTime<Utc>,
    max_keys: usize,
) -> AddRequest {
    let mut parsed: Vec<(String, Result<Vec<ParsedKey>, KeyError>)> = Vec::new();
    let mut revocations = Vec::new();
    let mut considered = 0;
    let mut not_considered = 0;
    let armored = texts.iter().flat_map(|text| openpgp::find_armored_keys(text));
    let blobs = armored
        .map(|block| (true, block.as_bytes()))
        .chain(binary.iter().map(|bytes| (false, bytes.as_slice())));
    let (mut block_number, mut attachment_number) = (0, 0);
    for (is_armored, bytes) in blobs {
        if considered >= max_keys {
            not_considered += 1;
            continue;
        }
        let label = if is_armored {
            block_number += 1;
            format!("key block {block_number}")
        } else {
            attachment_number += 1;
            format!("attachment {attachment_number}")
        };
        let (keys, cut) = read_keys(bytes, max_keys - considered);
        if keys.is_err() && is_armored {
            let revocation = std::str::from_utf8(bytes)
                .ok()
                .and_then(openpgp::parse_revocation_certificate);
            if let Some(revocation) = revocation {
                revocations.push(Candidate::Revocation(Box::new(revocation)));
                considered += 1;
                continue;
            }
        }
        considered += keys.as_ref().map_or(1, Vec::len);
        not_considered += usize::from(cut);
        parsed.push((label, keys));
    }
    let mut candidates = revocations;
    for (label, keys) in parsed {
        match keys {
            Err(err) => candidates.push(Candidate::Refused {
                key: label,
                reason: err.to_string(),
            }),
            Ok(keys) => {
                candidates.extend(keys.into_iter().map(|key| candidate(key, policy, now)));
            }
        }
    }
    AddRequest {
        candidates,
        not_considered,
        max_keys,
    }
}

/// Reads at most `room` keys from one armored block or binary blob, one
/// at a time; any unreadable key among them makes the whole blob an
/// error. Also says whether keys were left unread past `room`.
fn read_keys(bytes: &[u8], room: usize) -> (Result<Vec<ParsedKey>, KeyError>, bool) {
    let mut keys = match openpgp::read_keyring(bytes) {
        Ok(keys) => keys,
        Err(err) => return (Err(err), false),
    };
    let read: Result<Vec<_>, KeyError> = keys.by_ref().take(room).collect();
    match read {
        Ok(read) if read.is_empty() => (Err(KeyError::NoKey), false),
        // Only whether one more is there: its contents are not looked at.
        Ok(read) => {
            let cut = read.len() == room && keys.next().is_some();
            (Ok(read), cut)
        }
        Err(err) => (Err(err), false),
    }
}

/// Checks one offered key as far as can be done without the database.
pub(crate) fn candidate(key: ParsedKey, policy: &KeyPolicy, now: DateTime<Utc>) -> Candidate {
    // SHA-1 over the key, once: for the candidate or the refusal's label.
    let fingerprint = key.fingerprint();
    if let Ok(fingerprint) = &fingerprint {
        if openpgp::has_expired(&key, now) {
            return Candidate::Expired {
                fingerprint: fingerprint.clone(),
                key: Box::new(key),
            };
        }
    }
    match openpgp::check_key(key, policy) {
        Ok(checked) => Candidate::Key(Box::new(checked)),
        Err(err) => Candidate::Refused {
            key: fingerprint.map_or_else(|_| "a key".into(), |fpr| format!("key {fpr}")),
            reason: err.to_string(),
        },
    }
}

/// What happened to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressOutcome {
    /// Newly registered to this key.
    Registered,
    /// Already registered to this key; the key was updated.
    Updated,
    /// Already registered to this key; nothing new in this copy.
    Unchanged,
    /// Belongs to another key.
    Taken(Fingerprint),
    /// Was registered to a key that is revoked, and now to this one, its
    /// successor.
    TakenOver(Fingerprint),
    /// Was registered to this key, but the key no longer carries it (a
    /// revoked user ID), so it was released.
    Released,
}

impl fmt::Display for AddressOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressOutcome::Registered => f.write_str("registered"),
            AddressOutcome::Updated => f.write_str("already registered to this key; the key was updated"),
            AddressOutcome::Unchanged => f.write_str("already registered to this key; nothing new, no change"),
            AddressOutcome::Taken(owner) => write!(f, "refused: already registered to key {owner}"),
            AddressOutcome::TakenOver(revoked) => {
                write!(f, "registered (it was registered to key {revoked}, which is revoked)")
            }
            AddressOutcome::Released => f.write_str("removed: the key no longer has a valid user ID for it"),
        }
    }
}

/// What happened to one key of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    /// The key was applied; one outcome per address it carries.
    Applied {
        /// The key.
        fingerprint: Fingerprint,
        /// The key is revoked (the revocation is now published).
        revoked: bool,
        /// Per address.
        addresses: Vec<(Email, AddressOutcome)>,
        /// The key's self-signed user IDs that may not be published, and why.
        stripped: Vec<StrippedUserId>,
    },
    /// The key was refused as a whole.
    Refused {
        /// Which key.
        key: String,
        /// Why.
        reason: String,
    },
}

impl KeyOutcome {
    /// Plain-English lines for the reply and the log.
    pub fn lines(&self) -> Vec<String> {
        match self {
            KeyOutcome::Refused { key, reason } => vec![format!("{key}: refused: {reason}")],
            KeyOutcome::Applied {
                fingerprint,
                revoked,
                addresses,
                stripped,
            } => {
                let mut lines = vec![format!("key {fingerprint}:")];
                if *revoked {
                    lines.push(
                        "  the key is revoked; the revocation is now published, and the key can sign no request".into(),
                    );
                    lines.push("  its addresses stay listed with the revoked key until a successor key is registered for them: mail the new key to the register address and it takes them over".into());
                }
                lines.extend(stripped.iter().map(|user_id| format!("  {user_id}")));
                lines.extend(addresses.iter().map(|(email, outcome)| format!("  {email}: {outcome}")));
                lines
            }
        }
    }

    /// True if any address was registered, updated or released.
    pub fn changed(&self) -> bool {
        matches!(self, KeyOutcome::Applied { addresses, .. }
            if addresses.iter().any(|(_, o)| matches!(o, AddressOutcome::Registered | AddressOutcome::TakenOver(_) | AddressOutcome::Updated | AddressOutcome::Released)))
    }
}

/// Applies one checked key to the store: first come, first served per
/// address, merging into an existing registration of the same key.
pub fn apply_key(
    store: &mut KeyStore,
    key: &CheckedKey,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<KeyOutcome, StoreError> {
    let fingerprint = key.fingerprint().clone();
    let refused = |reason: String| KeyOutcome::Refused {
        key: format!("key {fingerprint}"),
        reason,
    };
    let existing = store.record(&Query::Fingerprint(fingerprint.clone()))?;
    let merged = match &existing {
        None => {
            if key.is_revoked() {
                return Ok(refused("the key is revoked".into()));
            }
            if key.is_expired(now) {
                return Ok(refused("the key has expired".into()));
            }
            key.clone()
        }
        Some(record) => {
            match openpgp::read_stored_key(&record.key_armor, policy).and_then(|stored| stored.merge(key, policy)) {
                Ok(merged) => merged,
                Err(err) => return Ok(refused(format!("could not be merged with the registered copy: {err}"))),
            }
        }
    };
    let mut users: Vec<Email> = Vec::new();
    let mut outcomes = Vec::new();
    if let Some(record) = &existing {
        for user in &record.users {
            if merged.emails().contains(user) {
                users.push(user.clone());
            } else {
                outcomes.push((user.clone(), AddressOutcome::Released));
            }
        }
    }
    for email in merged.emails() {
        if users.contains(email) {
            // Updated instead, below, if the published key changes.
            outcomes.push((email.clone(), AddressOutcome::Unchanged));
            continue;
        }
        match store.fingerprint_of(email)? {
            Some(owner) if owner != fingerprint => {
                if merged.is_revoked() || !release_from_revoked(store, &owner, email, policy, now)? {
                    outcomes.push((email.clone(), AddressOutcome::Taken(owner)));
                } else {
                    users.push(email.clone());
                    outcomes.push((email.clone(), AddressOutcome::TakenOver(owner)));
                }
            }
            _ => {
                users.push(email.clone());
                outcomes.push((email.clone(), AddressOutcome::Registered));
            }
        }
    }

    // Only what the record's addresses vouch for is published; a revoked
    // key keeps its user IDs, which clients need to take the revocation.
    let published = match merged.is_revoked() {
        true => merged.clone(),
        false => merged.keeping_user_ids(|email| users.contains(email)),
    };
    let key_armor = published.to_armored().trim_end().to_string();
    if existing.as_ref().is_none_or(|record| record.key_armor != key_armor) {
        for (_, outcome) in &mut outcomes {
            if *outcome == AddressOutcome::Unchanged {
                *outcome = AddressOutcome::Updated;
            }
        }
    }
    let outcome = KeyOutcome::Applied {
        fingerprint: fingerprint.clone(),
        revoked: merged.is_revoked(),
        addresses: outcomes,
        stripped: key.stripped_user_ids().to_vec(),
    };
    if users.is_empty() && !merged.is_revoked() {
        if let Some(record) = &existing {
            delete_key(store, record, policy)?;
        }
        return Ok(outcome);
    }
    let record = Record {
        users,
        fingerprint: fingerprint.clone(),
        registered: existing.as_ref().map_or(now, |record| record.registered),
        updated: if outcome.changed() {
            now
        } else {
            existing.as_ref().map_or(now, |r| r.updated)
        },
        key_armor,
    };
    if existing.as_ref() == Some(&record) {
        return Ok(outcome);
    }
    let size = record.to_text().len() + USERINFO_OVERHEAD;
    if size > MAX_DATAGRAM {
        return Ok(refused(format!(
            "the key is too large to be served in one lookup datagram ({size} bytes with its record; the limit is {MAX_DATAGRAM}); remove unneeded user IDs or subkeys"
        )));
    }
    store.put(&record)?;
    store.index_key_ids(&fingerprint, &merged.key_ids())?;
    Ok(outcome)
}

/// If the key holding `email` is revoked, takes the address off its record
/// (which stays published, with its other addresses or none) so a
/// successor key can have it; false if the holder is not revoked.
fn release_from_revoked(
    store: &mut KeyStore,
    holder: &Fingerprint,
    email: &Email,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let Some(mut record) = store.record(&Query::Fingerprint(holder.clone()))? else {
        return Ok(false);
    };
    let revoked = openpgp::read_stored_key(&record.key_armor, policy).is_ok_and(|key| key.is_revoked());
    if revoked {
        record.users.retain(|user| user != email);
        record.updated = now;
        store.put(&record)?;
    }
    Ok(revoked)
}

/// Applies one candidate of a registration or an import.
pub fn apply_candidate(
    store: &mut KeyStore,
    candidate: &Candidate,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<KeyOutcome, StoreError> {
    match candidate {
        Candidate::Key(key) => apply_key(store, key, policy, now),
        Candidate::Expired { fingerprint, key } => {
            let refused = |reason: String| KeyOutcome::Refused {
                key: format!("key {fingerprint}"),
                reason,
            };
            if store.record_text(&Query::Fingerprint(fingerprint.clone()))?.is_none() {
                return Ok(refused("the key has expired".into()));
            }
            match openpgp::check_key((**key).clone(), policy) {
                Ok(checked) => apply_key(store, &checked, policy, now),
                Err(err) => Ok(refused(err.to_string())),
            }
        }
        Candidate::Revocation(revocation) => apply_revocation(store, revocation, policy, now),
        Candidate::Refused { key, reason } => Ok(KeyOutcome::Refused {
            key: key.clone(),
            reason: reason.clone(),
        }),
    }
}

/// Deletes a key's record, its addresses and its key-ID index entries.
fn delete_key(store: &mut KeyStore, record: &Record, policy: &KeyPolicy) -> Result<(), StoreError> {
    if let Ok(key) = openpgp::read_stored_key(&record.key_armor, policy) {
        store.unindex_key_ids(&record.fingerprint, &key.key_ids())?;
    }
    store.delete(&record.fingerprint)?;
    Ok(())
}

/// Puts a record back as it was (undoing a change whose new key was refused).
fn restore_key(store: &mut KeyStore, record: &Record, key: &CheckedKey) -> Result<(), StoreError> {
    store.put(record)?;
    store.index_key_ids(&record.fingerprint, &key.key_ids())
}

/// Merges a revocation certificate into the registered key it revokes.
pub fn apply_revocation(
    store: &mut KeyStore,
    revocation: &Revocation,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<KeyOutcome, StoreError> {
    let refused = |reason: &str| KeyOutcome::Refused {
        key: "revocation certificate".into(),
        reason: reason.into(),
    };
    let part_ids = revocation.issuer_key_ids();
    let mut owners = Vec::new();
    for key_id in &part_ids {
        owners.extend(store.fingerprints_with_key_id(key_id)?);
    }
    for fingerprint in owners {
        let Some(record) = store.record(&Query::Fingerprint(fingerprint))? else {
            continue;
        };
        let Ok(key) = openpgp::read_stored_key(&record.key_armor, policy) else {
            continue;
        };
        if let Ok(revoked) = key.with_revocation(revocation, policy) {
            return apply_key(store, &revoked, policy, now);
        }
    }
    Ok(refused("it does not revoke a key registered here"))
}

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
}

/// Every signed part of a request mail, at most
/// [`MAX_SIGNED_PARTS`](ripem_core::mail::MAX_SIGNED_PARTS): its PGP/MIME
/// parts, then the cleartext- and inline-signed armor in its texts.
pub fn signed_parts(mail: &RequestMail) -> Vec<SignedPart> {
    let detached = mail.detached_signed.iter().map(|part| SignedPart::Detached {
        content: part.content.clone(),
        text: part.text.clone(),
        signature: part.signature.clone(),
    });
    let armored = mail.texts.iter().flat_map(|text| openpgp::find_signed_parts(text));
    detached.chain(armored).take(MAX_SIGNED_PARTS).collect()
}

/// Finds the registered key that signed one of `parts` and checks the
/// signature, that the key (or subkey) that made it could sign then by the
/// registered copy ([`openpgp::check_signer`]: not revoked, not expired,
/// bound for signing), and its age.
fn authenticate(
    store: &KeyStore,
    parts: &[SignedPart],
    policy: &KeyPolicy,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
) -> Result<Result<Authenticated, SignedRefusal>, StoreError> {
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
            return Ok(Ok(Authenticated { record, key, verified }));
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
pub fn apply_change(
    store: &mut KeyStore,
    parts: &[SignedPart],
    policy: &KeyPolicy,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
) -> Result<SignedOutcome, StoreError> {
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
        lines.extend(apply_key(store, &new_key, policy, now)?.lines());
        return Ok(SignedOutcome {
            lines,
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
    for user in &old.users {
        let moved = addresses
            .iter()
            .any(|(email, o)| email == user && *o == AddressOutcome::Registered);
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
    }
    Ok(SignedOutcome {
        lines,
        notify,
        signer: Some(old.fingerprint.clone()),
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
pub fn apply_remove(
    store: &mut KeyStore,
    parts: &[SignedPart],
    policy: &KeyPolicy,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
) -> Result<SignedOutcome, StoreError> {
    let auth = match authenticate(store, parts, policy, now, max_age)? {
        Ok(auth) => auth,
        Err(refusal) => return Ok(SignedOutcome::refused(&refusal)),
    };
    if !auth.verified.content.trim_start().starts_with("RemoveKey") {
        return Ok(SignedOutcome::refused(&SignedRefusal::NotRemoveKey));
    }
    delete_key(store, &auth.record, policy)?;
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
    })
}

/// Tallies of a batch or an import, for logs and summaries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Keys registered for the first time.
    pub keys_added: usize,
    /// Keys merged into an existing registration.
    pub keys_merged: usize,
    /// Keys refused as a whole.
    pub keys_refused: usize,
    /// Addresses newly registered.
    pub addresses_added: usize,
    /// Addresses refused (taken by another key).
    pub addresses_refused: usize,
}

impl Tally {
    /// Counts one key's outcome.
    pub fn count(&mut self, outcome: &KeyOutcome) {
        match outcome {
            KeyOutcome::Refused { .. } => self.keys_refused += 1,
            KeyOutcome::Applied { addresses, .. } => {
                let added = addresses
                    .iter()
                    .filter(|(_, o)| matches!(o, AddressOutcome::Registered | AddressOutcome::TakenOver(_)))
                    .count();
                let refused = addresses
                    .iter()
                    .filter(|(_, o)| matches!(o, AddressOutcome::Taken(_)))
                    .count();
                let merged = addresses.iter().any(|(_, o)| {
                    matches!(
                        o,
                        AddressOutcome::Updated | AddressOutcome::Unchanged | AddressOutcome::Released
                    )
                });
                if merged {
                    self.keys_merged += 1;
                } else if added > 0 {
                    self.keys_added += 1;
                } else {
                    self.keys_refused += 1;
                }
                self.addresses_added += added;
                self.addresses_refused += refused;
            }
        }
    }
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.keys_added += other.keys_added;
        self.keys_merged += other.keys_merged;
        self.keys_refused += other.keys_refused;
        self.addresses_added += other.addresses_added;
        self.addresses_refused += other.addresses_refused;
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys added, {} merged, {} refused; {} addresses added, {} refused",
            self.keys_added, self.keys_merged, self.keys_refused, self.addresses_added, self.addresses_refused
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ripem_openpgp::{generate_key, KeySpec};
    use std::time::Duration;

    fn store(dir: &tempfile::TempDir) -> KeyStore {
        let mut store = KeyStore::open_write(
            &dir.path().join("keys.gdbm"),
            &dir.path().join("keys.gdbm.lock"),
            Duration::from_secs(2),
        )
        .expect("open");
        store.begin_window().expect("window");
        store
    }

    #[test]
    fn an_expired_key_is_refused_when_new_and_merged_when_registered() {
        let policy = KeyPolicy::default();
        let mut spec = KeySpec::ed25519(&["Old <old@example.org>", "Old <old@example.net>"]);
        spec.expires_after = Some(Duration::from_secs(365 * 86400));
        let full = generate_key(rand::thread_rng(), &spec).expect("key").to_public_key();
        let while_valid = spec.created + chrono::Duration::days(1);
        let after_expiry = spec.created + chrono::Duration::days(400);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = store(&dir);

        let late = candidate(full.clone().into(), &policy, after_expiry);
        assert!(matches!(late, Candidate::Expired { .. }));
        let outcome = apply_candidate(&mut store, &late, &policy, after_expiry).expect("apply");
        assert!(matches!(&outcome, KeyOutcome::Refused { reason, .. } if reason == "the key has expired"));

        // Registered while valid with one user ID...
        let mut first = full.clone();
        first.details.users.truncate(1);
        let early = candidate(first.into(), &policy, while_valid);
        assert!(matches!(early, Candidate::Key(_)));
        let outcome = apply_candidate(&mut store, &early, &policy, while_valid).expect("apply");
        assert!(matches!(outcome, KeyOutcome::Applied { .. }));
        // ...an expired copy with both is checked in full and merged.
        let outcome = apply_candidate(&mut store, &late, &policy, after_expiry).expect("apply");
        assert!(matches!(outcome, KeyOutcome::Applied { .. }), "{outcome:?}");
        let record = store
            .record(&Query::Fingerprint(
                ParsedKey::from(full).fingerprint().expect("fingerprint"),
            ))
            .expect("read")
            .expect("registered");
        assert_eq!(
            openpgp::read_stored_key(&record.key_armor, &policy)
                .expect("stored")
                .user_ids()
                .len(),
            2
        );
    }

    #[test]
    fn keys_past_the_limit_are_not_parsed() {
        let policy = KeyPolicy::default();
        let armored: Vec<String> = (0..3)
            .map(|i| {
                let spec = KeySpec::ed25519(&[&format!("K{i} <k{i}@example.org>")]);
                let key = generate_key(rand::thread_rng(), &spec).expect("key").to_public_key();
                openpgp::check_key(key, &policy).expect("check").to_armored()
            })
            .collect();
        let texts = [format!("{}\njunk\n", armored.join("\n"))];
        let add = prepare_add(&texts, &[], &policy, Utc::now(), 2);
        assert_eq!(add.candidates.len(), 2);
        assert!(add.candidates.iter().all(|c| matches!(c, Candidate::Key(_))));
        assert_eq!(
            add.not_considered_line().as_deref(),
            Some("1 further keys not considered: at most 2 keys per request")
        );
        let all = prepare_add(&texts, &[], &policy, Utc::now(), 100);
        assert_eq!((all.candidates.len(), all.not_considered_line()), (3, None));
    }
}
