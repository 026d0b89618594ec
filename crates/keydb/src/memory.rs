//! A key database in memory: the layout of the GDBM store in maps.
//!
//! [`MemoryDb`] keeps what [`KeyStore`](crate::KeyStore) keeps — records by
//! fingerprint, addresses pointing at fingerprints, the key-ID index, the
//! replication notes —
//! with the same rules for overwriting and releasing addresses, and each
//! record kept as its text reads back, but in `BTreeMap`s, with no files,
//! windows or checksums. Every write is
//! visible at once and nothing can fail ([`KeyDb::Error`] is
//! [`Infallible`]). The request rules run on it unchanged, so they can be
//! tested without GDBM; a program that only needs a scratch database can
//! use it too.

use std::collections::BTreeMap;
use std::convert::Infallible;

use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint, Query};

use crate::db::KeyDb;

/// A key database held in memory (see the [module](self) docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryDb {
    records: BTreeMap<Fingerprint, Record>,
    addresses: BTreeMap<Email, Fingerprint>,
    key_ids: BTreeMap<String, Vec<Fingerprint>>,
    notes: BTreeMap<String, Vec<u8>>,
}

impl MemoryDb {
    /// An empty database.
    pub fn new() -> MemoryDb {
        MemoryDb::default()
    }

    /// Removes an address entry, but only if it still points at `owner`.
    fn release_address(&mut self, email: &Email, owner: &Fingerprint) {
        if self.addresses.get(email) == Some(owner) {
            self.addresses.remove(email);
        }
    }

    fn fingerprint_for<'a>(&'a self, query: &'a Query) -> Option<&'a Fingerprint> {
        match query {
            Query::Fingerprint(fingerprint) => Some(fingerprint),
            Query::Email(email) => self.addresses.get(email),
        }
    }
}

impl KeyDb for MemoryDb {
    type Error = Infallible;

    fn record(&self, query: &Query) -> Result<Option<Record>, Infallible> {
        Ok(self
            .fingerprint_for(query)
            .and_then(|fingerprint| self.records.get(fingerprint))
            .cloned())
    }

    fn record_text(&self, query: &Query) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.record(query)?.map(|record| record.to_text().into_bytes()))
    }

    fn fingerprint_of(&self, email: &Email) -> Result<Option<Fingerprint>, Infallible> {
        Ok(self.addresses.get(email).cloned())
    }

    fn fingerprints_with_key_id(&self, key_id: &str) -> Result<Vec<Fingerprint>, Infallible> {
        Ok(self
            .key_ids
            .get(&key_id.to_ascii_uppercase())
            .cloned()
            .unwrap_or_default())
    }

    fn key_count(&self) -> Result<usize, Infallible> {
        Ok(self.records.len())
    }

    fn put(&mut self, record: &Record) -> Result<(), Infallible> {
        if let Some(previous) = self.records.get(&record.fingerprint) {
            let released: Vec<Email> = previous
                .users
                .iter()
                .filter(|user| !record.users.contains(user))
                .cloned()
                .collect();
            for user in &released {
                self.release_address(user, &record.fingerprint);
            }
        }
        // Kept as the GDBM store reads it back: through its text, so
        // times are to the second and armor lines end without blanks.
        let stored = Record::parse(&record.to_text()).unwrap_or_else(|_| record.clone());
        self.records.insert(record.fingerprint.clone(), stored);
        for user in &record.users {
            self.addresses.insert(user.clone(), record.fingerprint.clone());
        }
        Ok(())
    }

    fn delete(&mut self, fingerprint: &Fingerprint) -> Result<bool, Infallible> {
        let Some(record) = self.records.remove(fingerprint) else {
            return Ok(false);
        };
        for user in &record.users {
            self.release_address(user, fingerprint);
        }
        Ok(true)
    }

    fn index_key_ids(&mut self, fingerprint: &Fingerprint, key_ids: &[String]) -> Result<(), Infallible> {
        for key_id in key_ids {
            let owners = self.key_ids.entry(key_id.to_ascii_uppercase()).or_default();
            if !owners.contains(fingerprint) {
                owners.push(fingerprint.clone());
            }
        }
        Ok(())
    }

    fn unindex_key_ids(&mut self, fingerprint: &Fingerprint, key_ids: &[String]) -> Result<(), Infallible> {
        for key_id in key_ids {
            let key_id = key_id.to_ascii_uppercase();
            if let Some(owners) = self.key_ids.get_mut(&key_id) {
                owners.retain(|owner| owner != fingerprint);
                if owners.is_empty() {
                    self.key_ids.remove(&key_id);
                }
            }
        }
        Ok(())
    }

    fn note(&self, name: &str) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.notes.get(name).cloned())
    }

    fn set_note(&mut self, name: &str, value: &[u8]) -> Result<(), Infallible> {
        self.notes.insert(name.to_string(), value.to_vec());
        Ok(())
    }

    fn delete_note(&mut self, name: &str) -> Result<bool, Infallible> {
        Ok(self.notes.remove(name).is_some())
    }

    fn note_names(&self, prefix: &str) -> Result<Vec<String>, Infallible> {
        Ok(self
            .notes
            .range(prefix.to_string()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, _)| name.clone())
            .collect())
    }
}
