//! What the request rules need from a key database, as a trait.
//!
//! [`KeyDb`] names the operations keyreg's rules (add, merge, change,
//! remove, revocations, `--import`) call inside a write window: look a
//! record up by fingerprint or address, store and delete records, and keep
//! the key-ID index. [`KeyStore`](crate::KeyStore) implements it over GDBM
//! (in the crash-proof pair, inside a write window); [`MemoryDb`](crate::MemoryDb)
//! implements it with maps in memory, so the rules can be run and tested
//! without files. Opening, windows, repair and listing stay with each
//! store: the trait is only what happens between the start and the end of
//! a window.

use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint, Query};

/// A key database as the request rules see it, within one write window.
///
/// The layout every implementation keeps: each stored key has one
/// [`Record`], found by its fingerprint; each address of a record points
/// at that record's fingerprint (an address belongs to at most one key);
/// and a key-ID index lists, for a key ID (16 hex digits, compared without
/// regard to case), the fingerprints of the keys that have a primary key
/// or subkey with it. The index is kept by the caller
/// ([`index_key_ids`](KeyDb::index_key_ids),
/// [`unindex_key_ids`](KeyDb::unindex_key_ids)): [`put`](KeyDb::put) and
/// [`delete`](KeyDb::delete) do not touch it.
///
/// A missing key, address or key ID is not an error: lookups return
/// `Ok(None)` or an empty list, and deleting what is not there returns
/// `Ok(false)`. An `Err` means the store itself failed — a file could not
/// be read or written, or a stored item is damaged, or a write was tried
/// outside a write window — and says nothing about the request: the
/// caller stops and gives the window up, so none of its writes is kept.
pub trait KeyDb {
    /// Why the store failed (never "not found").
    type Error: std::error::Error + Send + Sync + 'static;

    /// The record of the key a query names (by fingerprint, or by an
    /// address through the address index); `None` if there is none.
    fn record(&self, query: &Query) -> Result<Option<Record>, Self::Error>;

    /// The record text ([`Record::to_text`]) of the key a query names,
    /// without parsing it; `None` if there is none.
    fn record_text(&self, query: &Query) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The fingerprint an address is registered to; `None` if it is free.
    fn fingerprint_of(&self, email: &Email) -> Result<Option<Fingerprint>, Self::Error>;

    /// The fingerprints of the stored keys having a primary key or subkey
    /// with `key_id` (16 hex digits, either case), in the order they were
    /// indexed; empty if there are none.
    fn fingerprints_with_key_id(&self, key_id: &str) -> Result<Vec<Fingerprint>, Self::Error>;

    /// How many records are stored.
    fn key_count(&self) -> Result<usize, Self::Error>;

    /// Stores a record, replacing any earlier one of the same fingerprint,
    /// and points each of its addresses at it (an address another key held
    /// now points here; the caller decides first whether it may). Addresses
    /// the previous version held but this one does not are released, if
    /// they still point at this key.
    fn put(&mut self, record: &Record) -> Result<(), Self::Error>;

    /// Deletes a key's record and every address pointing at it; returns
    /// whether there was a record. The key-ID index is left alone.
    fn delete(&mut self, fingerprint: &Fingerprint) -> Result<bool, Self::Error>;

    /// Records that the key `fingerprint` has (sub)keys with these key IDs;
    /// a key ID already listed for it is not listed twice.
    fn index_key_ids(&mut self, fingerprint: &Fingerprint, key_ids: &[String]) -> Result<(), Self::Error>;

    /// Forgets that the key `fingerprint` has these key IDs; a key ID left
    /// with no key is dropped from the index.
    fn unindex_key_ids(&mut self, fingerprint: &Fingerprint, key_ids: &[String]) -> Result<(), Self::Error>;

    /// The note `name` (replication state kept beside the keys: stored
    /// updates, the clock, the order reached), if there is one.
    fn note(&self, name: &str) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Writes the note `name`, replacing any earlier value.
    fn set_note(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error>;

    /// Deletes the note `name`; whether it was there.
    fn delete_note(&mut self, name: &str) -> Result<bool, Self::Error>;

    /// The names of every note starting with `prefix`, sorted. This may
    /// read the whole database: it is for replays, not for each request.
    fn note_names(&self, prefix: &str) -> Result<Vec<String>, Self::Error>;
}

impl KeyDb for crate::KeyStore {
    type Error = crate::StoreError;

    fn record(&self, query: &Query) -> Result<Option<Record>, Self::Error> {
        crate::KeyStore::record(self, query)
    }

    fn record_text(&self, query: &Query) -> Result<Option<Vec<u8>>, Self::Error> {
        crate::KeyStore::record_text(self, query)
    }

    fn fingerprint_of(&self, email: &Email) -> Result<Option<Fingerprint>, Self::Error> {
        crate::KeyStore::fingerprint_of(self, email)
    }

    fn fingerprints_with_key_id(&self, key_id: &str) -> Result<Vec<Fingerprint>, Self::Error> {
        crate::KeyStore::fingerprints_with_key_id(self, key_id)
    }

    fn key_count(&self) -> Result<usize, Self::Error> {
        crate::KeyStore::key_count(self)
    }

    fn put(&mut self, record: &Record) -> Result<(), Self::Error> {
        crate::KeyStore::put(self, record)
    }

    fn delete(&mut self, fingerprint: &Fingerprint) -> Result<bool, Self::Error> {
        crate::KeyStore::delete(self, fingerprint)
    }

    fn index_key_ids(&mut self, fingerprint: &Fingerprint, key_ids: &[String]) -> Result<(), Self::Error> {
        crate::KeyStore::index_key_ids(self, fingerprint, key_ids)
    }

    fn unindex_key_ids(&mut self, fingerprint: &Fingerprint, key_ids: &[String]) -> Result<(), Self::Error> {
        crate::KeyStore::unindex_key_ids(self, fingerprint, key_ids)
    }

    fn note(&self, name: &str) -> Result<Option<Vec<u8>>, Self::Error> {
        crate::KeyStore::note(self, name)
    }

    fn set_note(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error> {
        crate::KeyStore::set_note(self, name, value)
    }

    fn delete_note(&mut self, name: &str) -> Result<bool, Self::Error> {
        crate::KeyStore::delete_note(self, name)
    }

    fn note_names(&self, prefix: &str) -> Result<Vec<String>, Self::Error> {
        crate::KeyStore::note_names(self, prefix)
    }
}
