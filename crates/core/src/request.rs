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

use std::fmt;

use chrono::{DateTime, Utc};

use crate::openpgp::{self, CheckedKey, KeyError, KeyPolicy};
use crate::protocol::{MAX_DATAGRAM, USERINFO_OVERHEAD};
use crate::record::Record;
use crate::store::{KeyStore, StoreError};
use crate::types::{Email, Fingerprint, Query};

/// A key found in a request, checked or refused before the write window.
#[derive(Debug)]
pub enum Candidate {
    /// Passed the checks that don't need the database.
    Key(Box<CheckedKey>),
    /// Refused: a description of the key (fingerprint if known) and why.
    Refused {
        /// Which key (fingerprint, or its position in the mail).
        key: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Finds and checks every public key in the texts and binary blobs of a
/// request. Expired and revoked keys pass here: they may still merge into
/// a registration of the same key (see [`apply_key`]).
pub fn prepare_add(texts: &[String], binary: &[Vec<u8>], policy: &KeyPolicy) -> Vec<Candidate> {
    let mut parsed: Vec<(String, Result<Vec<pgp::composed::SignedPublicKey>, KeyError>)> = Vec::new();
    let mut block_number = 0;
    for text in texts {
        for block in openpgp::find_armored_keys(text) {
            block_number += 1;
            parsed.push((format!("key block {block_number}"), openpgp::parse_armored_keys(block)));
        }
    }
    for (index, bytes) in binary.iter().enumerate() {
        parsed.push((format!("attachment {}", index + 1), openpgp::parse_binary_keys(bytes)));
    }
    let mut candidates = Vec::new();
    for (label, keys) in parsed {
        match keys {
            Err(err) => candidates.push(Candidate::Refused {
                key: label,
                reason: err.to_string(),
            }),
            Ok(keys) => {
                for key in keys {
                    let name = key_label(&key);
                    candidates.push(match openpgp::check_key(key, policy) {
                        Ok(checked) => Candidate::Key(Box::new(checked)),
                        Err(err) => Candidate::Refused {
                            key: name,
                            reason: err.to_string(),
                        },
                    });
                }
            }
        }
    }
    candidates
}

pub(crate) fn key_label(key: &pgp::composed::SignedPublicKey) -> String {
    use pgp::types::KeyDetails;
    Fingerprint::from_bytes(key.fingerprint().as_bytes())
        .map(|fpr| format!("key {fpr}"))
        .unwrap_or_else(|_| "a key".into())
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
            } => {
                let mut lines = vec![format!("key {fingerprint}:")];
                if *revoked {
                    lines.push("  the key is revoked; the revocation is now published".into());
                }
                lines.extend(addresses.iter().map(|(email, outcome)| format!("  {email}: {outcome}")));
                lines
            }
        }
    }

    /// True if any address was registered, updated or released.
    pub fn changed(&self) -> bool {
        matches!(self, KeyOutcome::Applied { addresses, .. }
            if addresses.iter().any(|(_, o)| matches!(o, AddressOutcome::Registered | AddressOutcome::Updated | AddressOutcome::Released)))
    }
}

/// Applies one checked key to the store: first come, first served per
/// address, merging into an existing registration of the same key.
pub fn apply_key(store: &mut KeyStore, key: &CheckedKey, now: DateTime<Utc>) -> Result<KeyOutcome, StoreError> {
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
        Some(record) => match openpgp::read_stored_key(&record.key_armor).and_then(|stored| stored.merge(key)) {
            Ok(merged) => merged,
            Err(err) => return Ok(refused(format!("could not be merged with the registered copy: {err}"))),
        },
    };
    let key_armor = merged.to_armored().trim_end().to_string();
    let key_changed = existing.as_ref().is_none_or(|record| record.key_armor != key_armor);

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
            let outcome = if key_changed {
                AddressOutcome::Updated
            } else {
                AddressOutcome::Unchanged
            };
            outcomes.push((email.clone(), outcome));
            continue;
        }
        match store.fingerprint_of(email)? {
            Some(owner) if owner != fingerprint => outcomes.push((email.clone(), AddressOutcome::Taken(owner))),
            _ => {
                users.push(email.clone());
                outcomes.push((email.clone(), AddressOutcome::Registered));
            }
        }
    }

    let outcome = KeyOutcome::Applied {
        fingerprint: fingerprint.clone(),
        revoked: merged.is_revoked(),
        addresses: outcomes,
    };
    if users.is_empty() {
        if existing.is_some() {
            store.delete(&fingerprint)?;
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
    Ok(outcome)
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
                    .filter(|(_, o)| *o == AddressOutcome::Registered)
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
