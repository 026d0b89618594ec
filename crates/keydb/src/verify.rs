//! Checking a whole database file, item by item.
//!
//! Used where a file must be vouched for before it is trusted: a file that
//! changed behind the writer's back, a rebuilt file before it is switched
//! in, a source of a repair. Every value's checksum is checked, every
//! record parses and carries the fingerprint it is stored under, every
//! address entry names a stored record that lists the address and carries
//! an exact copy of it, and every record's addresses point back at it. The cost is one pass over the file
//! and one lookup per address, so it is kept for those moments.

use super::applylog::Op;
use super::notes::NOTE_PREFIX;
use super::{
    record_key, split_address_entry, KeyStore, StoreError, GENERATION_KEY, KEY_ID_PREFIX, KEY_PREFIX, USER_PREFIX,
};
use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint};

/// What a checked file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifySummary {
    /// Items of every kind.
    pub items: usize,
    /// Key records.
    pub keys: usize,
    /// Address entries.
    pub addresses: usize,
}

fn check_item(store: &KeyStore, key: &[u8], payload: &[u8], summary: &mut VerifySummary) -> Result<(), StoreError> {
    let text = String::from_utf8_lossy(payload);
    let bad = |problem: String| store.damaged(key, problem);
    if let Some(hex) = key.strip_prefix(KEY_PREFIX) {
        let record = Record::parse(&text).map_err(|err| bad(err.to_string()))?;
        if record.fingerprint.as_str().as_bytes() != hex {
            return Err(bad(format!("holds the record of {}", record.fingerprint)));
        }
        for user in &record.users {
            if store.fingerprint_of(user)?.as_ref() != Some(&record.fingerprint) {
                return Err(bad(format!("{user} does not point back at this record")));
            }
        }
        summary.keys += 1;
    } else if let Some(address) = key.strip_prefix(USER_PREFIX) {
        let email = Email::parse(&String::from_utf8_lossy(address)).map_err(|err| bad(err.to_string()))?;
        let (owner, copy) = split_address_entry(payload);
        let owner = Fingerprint::parse(&String::from_utf8_lossy(owner)).map_err(|err| bad(err.to_string()))?;
        let stored = store.value(&record_key(&owner))?;
        let listed = stored
            .as_deref()
            .and_then(|text| Record::parse(&String::from_utf8_lossy(text)).ok())
            .is_some_and(|record| record.users.contains(&email));
        if !listed {
            return Err(bad(format!("points at {owner}, whose record does not list it")));
        }
        if copy.is_some_and(|copy| Some(copy) != stored.as_deref()) {
            return Err(bad(format!("carries a copy of {owner}'s record that differs from it")));
        }
        summary.addresses += 1;
    } else if key.starts_with(KEY_ID_PREFIX) {
        for hex in text.split_whitespace() {
            let owner = Fingerprint::parse(hex).map_err(|err| bad(err.to_string()))?;
            if store.value(&record_key(&owner))?.is_none() {
                return Err(bad(format!("lists {owner}, which is not stored")));
            }
        }
    } else if key.starts_with(NOTE_PREFIX) {
        // Replication notes: their checksum, checked by the caller, is all.
    } else if key != GENERATION_KEY {
        return Err(bad("not an item this database keeps".into()));
    }
    Ok(())
}

/// Checks every item of `store`'s file; the first problem is the error.
pub fn check(store: &KeyStore) -> Result<VerifySummary, StoreError> {
    let mut summary = VerifySummary::default();
    for key in store.raw_keys() {
        let key = key?;
        let payload = store
            .value(&key)?
            .ok_or_else(|| store.damaged(&key, "listed but not stored"))?;
        check_item(store, &key, &payload, &mut summary)?;
        summary.items += 1;
    }
    let generation = store.generation()?;
    if generation > 0 && store.value(GENERATION_KEY)?.is_none() {
        return Err(store.damaged(GENERATION_KEY, "missing"));
    }
    Ok(summary)
}

/// Every item of a checked file, as writes that rebuild it.
pub(super) fn items(store: &KeyStore) -> Result<Vec<Op>, StoreError> {
    check(store)?;
    let mut ops = Vec::new();
    for key in store.raw_keys() {
        let key = key?;
        if let Some(payload) = store.value(&key)? {
            ops.push(Op::Put(key, payload));
        }
    }
    Ok(ops)
}
