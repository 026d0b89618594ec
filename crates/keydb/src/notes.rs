//! Notes: replication state kept in the database beside the keys.
//!
//! A server's database is a function of the updates it holds, so the
//! updates themselves, the clock and the order reached are written in the
//! same write windows as the records they produced, under names starting
//! `sync:`. One window thus switches in the records and the history that
//! made them together, and a crash at any point leaves both or neither.
//! Readers (keyserv, db2flat, hkpd) never look at notes; checking a file
//! item by item only checks their checksums, like every value's.

use crate::{KeyStore, StoreError};

/// The prefix of every note's key.
pub(crate) const NOTE_PREFIX: &[u8] = b"sync:";

fn note_key(name: &str) -> Vec<u8> {
    [NOTE_PREFIX, name.as_bytes()].concat()
}

impl KeyStore {
    /// The note `name`, if there is one.
    pub fn note(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.value(&note_key(name))
    }

    /// Writes the note `name` (inside a write window).
    pub fn set_note(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(&note_key(name), value)
    }

    /// Deletes the note `name` (inside a write window); whether it was there.
    pub fn delete_note(&mut self, name: &str) -> Result<bool, StoreError> {
        self.erase(&note_key(name))
    }

    /// The names of every note starting with `prefix`: one pass over the
    /// whole file, for a replay or a listing, not for every request.
    pub fn note_names(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let wanted = note_key(prefix);
        let mut names = Vec::new();
        for key in self.raw_keys() {
            let key = key?;
            if key.starts_with(&wanted) {
                names.push(String::from_utf8_lossy(&key[NOTE_PREFIX.len()..]).into_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}
