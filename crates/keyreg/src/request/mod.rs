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
//!
//! The rules ask the database only for what [`KeyDb`] names, so they run
//! on the database files ([`KeyStore`](ripem_keydb::KeyStore): the
//! registrar, `--import`) and on a
//! [`MemoryDb`](ripem_keydb::MemoryDb) (the tests) alike. The files: this
//! one holds the outcomes shared by every step; `add` prepares and applies
//! registrations and revocation certificates; `signed` authenticates and
//! applies change and remove requests.

use std::fmt;

use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint};
use ripem_keydb::KeyDb;
use ripem_openpgp::{self as openpgp, CheckedKey, KeyPolicy, StrippedUserId};

mod add;
mod signed;

pub(crate) use add::candidate;
pub use add::{apply_candidate, apply_key, apply_revocation, prepare_add, AddRequest, Candidate};
pub use signed::{
    apply_change, apply_remove, signed_parts, SignedEffect, SignedOutcome, SignedRefusal, MAX_CLOCK_SKEW,
};

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

/// Deletes a key's record, its addresses and its key-ID index entries.
pub(crate) fn delete_key<D: KeyDb>(store: &mut D, record: &Record, policy: &KeyPolicy) -> Result<(), D::Error> {
    if let Ok(key) = openpgp::read_stored_key(&record.key_armor, policy) {
        store.unindex_key_ids(&record.fingerprint, key.key_ids())?;
    }
    store.delete(&record.fingerprint)?;
    Ok(())
}

/// Puts a record back as it was (undoing a change whose new key was refused).
fn restore_key<D: KeyDb>(store: &mut D, record: &Record, key: &CheckedKey) -> Result<(), D::Error> {
    store.put(record)?;
    store.index_key_ids(&record.fingerprint, key.key_ids())
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
mod tests;
