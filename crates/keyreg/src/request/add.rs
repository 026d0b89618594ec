//! Registrations: finding and checking the keys of a mail before the
//! write window ([`prepare_add`]), and applying each inside it
//! ([`apply_key`], [`apply_candidate`]): first come, first served per
//! address, merging into a registration of the same key, a revoked key's
//! address going to its successor. Revocation certificates mailed on
//! their own are merged into the key they revoke ([`apply_revocation`]).

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use ripem_core::protocol::{MAX_DATAGRAM, USERINFO_OVERHEAD};
use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint, Query};
use ripem_keydb::KeyDb;
use ripem_openpgp::{self as openpgp, CheckedKey, KeyError, KeyPolicy, ParsedKey, Revocation};

use super::{delete_key, AddressOutcome, KeyOutcome};

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

/// Applies one checked key to the store: first come, first served per
/// address, merging into an existing registration of the same key.
pub fn apply_key<D: KeyDb>(
    store: &mut D,
    key: &CheckedKey,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<KeyOutcome, D::Error> {
    let fingerprint = key.fingerprint().clone();
    let refused = |reason: String| KeyOutcome::Refused {
        key: format!("key {fingerprint}"),
        reason,
    };
    let existing = store.record(&Query::Fingerprint(fingerprint.clone()))?;
    // A new key is applied as offered, uncopied: an import applies
    // thousands a second on one thread.
    let merged = match &existing {
        None => {
            if key.is_revoked() {
                return Ok(refused("the key is revoked".into()));
            }
            if key.is_expired(now) {
                return Ok(refused("the key has expired".into()));
            }
            Cow::Borrowed(key)
        }
        Some(record) => {
            match openpgp::read_stored_key(&record.key_armor, policy).and_then(|stored| stored.merge(key, policy)) {
                Ok(merged) => Cow::Owned(merged),
                Err(err) => return Ok(refused(format!("could not be merged with the registered copy: {err}"))),
            }
        }
    };
    let (users, mut outcomes) = claim_addresses(store, existing.as_ref(), &merged, policy, now)?;

    // Only what the record's addresses vouch for is published; a revoked
    // key keeps its user IDs, which clients need to take the revocation.
    let published = match merged.is_revoked() {
        true => Cow::Borrowed(&*merged),
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
    store.index_key_ids(&fingerprint, merged.key_ids())?;
    Ok(outcome)
}

/// What happened to each address of a key, in the reply's order.
type AddressOutcomes = Vec<(Email, AddressOutcome)>;

/// Decides each address of `merged` (and of its registered copy
/// `existing`) first come, first served: the addresses the record is to
/// hold, and what happened to each. An address held by a revoked key is
/// taken off it ([`release_from_revoked`]) unless `merged` is revoked too.
fn claim_addresses<D: KeyDb>(
    store: &mut D,
    existing: Option<&Record>,
    merged: &CheckedKey,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<(Vec<Email>, AddressOutcomes), D::Error> {
    let fingerprint = merged.fingerprint();
    let mut users: Vec<Email> = Vec::new();
    let mut outcomes = Vec::new();
    if let Some(record) = existing {
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
            // apply_key makes it Updated if the published key changes.
            outcomes.push((email.clone(), AddressOutcome::Unchanged));
            continue;
        }
        match store.fingerprint_of(email)? {
            Some(owner) if owner != *fingerprint => {
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
    Ok((users, outcomes))
}

/// If the key holding `email` is revoked, takes the address off its record
/// (which stays published, with its other addresses or none) so a
/// successor key can have it; false if the holder is not revoked.
fn release_from_revoked<D: KeyDb>(
    store: &mut D,
    holder: &Fingerprint,
    email: &Email,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<bool, D::Error> {
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
pub fn apply_candidate<D: KeyDb>(
    store: &mut D,
    candidate: &Candidate,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<KeyOutcome, D::Error> {
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

/// Merges a revocation certificate into the registered key it revokes.
pub fn apply_revocation<D: KeyDb>(
    store: &mut D,
    revocation: &Revocation,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<KeyOutcome, D::Error> {
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
