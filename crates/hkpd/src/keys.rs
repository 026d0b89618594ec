//! hkpd's reading of the key database, the way keyserv reads it: a pool
//! of [`LiveReader`]s (one per blocking thread at most), each used under
//! the lock file's shared lock for one request and reopened when keyreg's
//! write generation changes, so hkpd never blocks keyreg and never writes.
//! Keys parsed for an index or a WKD answer are kept ([`KeyCache`],
//! bounded) by fingerprint and the record's `Updated:` time, so a repeated
//! index skips the parse; a changed record has a new time. WKD requests
//! without `?l=` are answered from a hash → address table of the WKD
//! domains, built by one scan of the database per write generation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint, Query};
use ripem_keydb::{KeyStore, LiveReader, Mappings, StoreError};
use ripem_openpgp::{read_stored_key, CheckedKey, KeyPolicy};

use crate::search::Search;
use crate::wkd;

/// How long a request waits for keyreg's write window to end.
const READER_WAIT: Duration = Duration::from_secs(10);
/// Most keys one key-ID search answers with.
const MAX_KEYS_PER_ANSWER: usize = 100;
/// Parsed keys kept; the cache starts afresh when full.
const CACHE_KEYS: usize = 8192;
/// Readers kept open between requests.
const POOL_READERS: usize = 64;

/// Parsed stored keys by fingerprint and `Updated:` time.
type KeyCache = HashMap<(Fingerprint, i64), Arc<CheckedKey>>;

/// The WKD hash table of one generation: (domain, hash) → address.
struct WkdTable {
    generation: u64,
    domains: Vec<String>,
    addresses: HashMap<(String, String), Email>,
}

/// The key database as hkpd reads it.
pub struct Database {
    policy: KeyPolicy,
    path: PathBuf,
    lock: PathBuf,
    pool: Mutex<Vec<LiveReader>>,
    maps: Mappings,
    cache: Mutex<KeyCache>,
    wkd: Mutex<Option<WkdTable>>,
}

impl Database {
    /// The database at `path` with its lock file `lock`, opened on first
    /// use; stored keys are read back under `policy` (the configured one).
    pub fn new(path: &Path, lock: &Path, policy: KeyPolicy) -> Database {
        Database {
            policy,
            path: path.to_path_buf(),
            lock: lock.to_path_buf(),
            pool: Mutex::new(Vec::new()),
            maps: Mappings::default(),
            cache: Mutex::new(HashMap::new()),
            wkd: Mutex::new(None),
        }
    }

    /// Runs `read` on the database in one read session (`None`: no
    /// database yet), with the session's write generation.
    fn read<T>(&self, read: impl FnOnce(Option<&KeyStore>, u64) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let taken = self.pool.lock().ok().and_then(|mut pool| pool.pop());
        let mut reader = taken.unwrap_or_else(|| LiveReader::new(&self.path, &self.lock, &self.maps));
        let result = match reader.begin(READER_WAIT) {
            Ok(session) => read(session.store(), session.generation()),
            Err(err) => Err(err),
        };
        if result.is_err() {
            // Reopened afresh by the next request that takes it.
            reader.release();
        }
        if let Ok(mut pool) = self.pool.lock() {
            if pool.len() < POOL_READERS {
                pool.push(reader);
            }
        }
        result
    }

    /// The records a search finds: 0 or 1 by address or fingerprint, up to
    /// [`MAX_KEYS_PER_ANSWER`] by key ID.
    pub fn find(&self, search: &Search) -> Result<Vec<Record>, StoreError> {
        self.read(|store, _| {
            let Some(store) = store else {
                return Ok(Vec::new());
            };
            let one = |query: Query| store.record(&query).map(|found| found.into_iter().collect());
            match search {
                Search::Email(email) => one(Query::Email(email.clone())),
                Search::Fingerprint(fingerprint) => one(Query::Fingerprint(fingerprint.clone())),
                Search::KeyId(key_id) => {
                    let mut records = Vec::new();
                    for fingerprint in store
                        .fingerprints_with_key_id(key_id)?
                        .into_iter()
                        .take(MAX_KEYS_PER_ANSWER)
                    {
                        if let Some(record) = store.record(&Query::Fingerprint(fingerprint))? {
                            if !records
                                .iter()
                                .any(|seen: &Record| seen.fingerprint == record.fingerprint)
                            {
                                records.push(record);
                            }
                        }
                    }
                    Ok(records)
                }
            }
        })
    }

    /// The key each address is registered to now.
    pub fn owners(&self, emails: &[Email]) -> Result<Vec<Option<Fingerprint>>, StoreError> {
        self.read(|store, _| match store {
            None => Ok(vec![None; emails.len()]),
            Some(store) => emails.iter().map(|email| store.fingerprint_of(email)).collect(),
        })
    }

    /// The stored key of a record, parsed (from the cache when it was
    /// parsed before); `None` if it does not parse, which a record written
    /// by keyreg always does.
    pub fn checked(&self, record: &Record) -> Option<Arc<CheckedKey>> {
        let id = (record.fingerprint.clone(), record.updated.timestamp());
        if let Some(found) = self.cache.lock().ok().and_then(|cache| cache.get(&id).cloned()) {
            return Some(found);
        }
        let checked = Arc::new(read_stored_key(&record.key_armor, &self.policy).ok()?);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_KEYS {
                cache.clear();
            }
            cache.insert(id, Arc::clone(&checked));
        }
        Some(checked)
    }

    /// The registered address at `domain` (one of `domains`, the WKD
    /// domains) whose local part hashes to `hash`, from the table of the
    /// current generation (built by a scan when the database changed).
    pub fn wkd_address(&self, domains: &[String], domain: &str, hash: &str) -> Result<Option<Email>, StoreError> {
        self.read(|store, generation| {
            let Ok(mut table) = self.wkd.lock() else {
                return Ok(None);
            };
            let fresh = table
                .as_ref()
                .is_some_and(|table| table.generation == generation && table.domains == domains);
            if !fresh {
                *table = Some(WkdTable {
                    generation,
                    domains: domains.to_vec(),
                    addresses: match store {
                        Some(store) => scan_wkd(store, domains)?,
                        None => HashMap::new(),
                    },
                });
            }
            Ok(table
                .as_ref()
                .and_then(|table| table.addresses.get(&(domain.to_string(), hash.to_string())).cloned()))
        })
    }
}

/// Every registered address at one of `domains`, by (domain, WKD hash).
fn scan_wkd(store: &KeyStore, domains: &[String]) -> Result<HashMap<(String, String), Email>, StoreError> {
    let mut addresses = HashMap::new();
    if domains.is_empty() {
        return Ok(addresses);
    }
    for fingerprint in store.fingerprints() {
        let Some(record) = store.record(&Query::Fingerprint(fingerprint?))? else {
            continue;
        };
        for email in record.users {
            let Some((local, domain)) = email.as_str().rsplit_once('@') else {
                continue;
            };
            if domains.iter().any(|wanted| wanted == domain) {
                addresses.insert((domain.to_string(), wkd::local_part_hash(local)), email.clone());
            }
        }
    }
    Ok(addresses)
}
