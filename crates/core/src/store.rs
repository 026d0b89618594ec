//! The key database: records in GDBM, and the rules for sharing the file.
//!
//! Layout: `key:<FINGERPRINT>` holds the record text of one key, and
//! `user:<address>` holds the fingerprint the address belongs to, so a
//! lookup by any address finds the whole record and a dump lists each key
//! once. `keyid:<16 hex digits>` lists the fingerprints of the keys that
//! have a primary key or subkey with that key ID, so the key that made a
//! signature can be found from the signature. Nothing but this module
//! reaches GDBM.
//!
//! Sharing: GDBM lets many readers or one writer open the file, and a
//! conflicting open fails at once. To keep readers from starving the
//! writer, and to let readers wait out a write instead of failing, every
//! open goes through a lock file beside the database (`keys.gdbm.lock`):
//! a writer holds it exclusively for the whole write window, a reader
//! holds it shared only while opening. So keyreg takes the lock, asks
//! keyserv to let go of its handle, opens, writes, syncs and closes; a
//! lookup arriving meanwhile waits on the lock and then sees the new data.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::gdbm::{Gdbm, GdbmError, OpenMode};
use crate::record::{Record, RecordError};
use crate::types::{Email, Fingerprint, Query};

const KEY_PREFIX: &[u8] = b"key:";
const USER_PREFIX: &[u8] = b"user:";
const KEY_ID_PREFIX: &[u8] = b"keyid:";
/// How long to sleep between attempts while another process holds a lock.
const RETRY_PAUSE: Duration = Duration::from_millis(2);

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// libgdbm reported an error.
    #[error(transparent)]
    Gdbm(#[from] GdbmError),
    /// The lock file could not be opened or locked.
    #[error("{path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// Another process kept the database for longer than allowed.
    #[error("{path}: still in use by another process after {waited:?}")]
    Busy {
        /// The database or lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// A stored record does not parse: the database is damaged.
    #[error("{path}: damaged record for {key}: {source}")]
    Damaged {
        /// The database.
        path: PathBuf,
        /// The item's key.
        key: String,
        /// What is wrong with it.
        source: RecordError,
    },
}

/// An exclusive hold on the database's lock file, taken before keyreg asks
/// keyserv to release the database; dropped after the write window.
pub struct WriteLock {
    _lock: Flock<File>,
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| StoreError::Lock {
            path: path.to_path_buf(),
            source,
        })
}

/// Takes a flock, polling until `timeout`.
fn lock_with_timeout(path: &Path, arg: FlockArg, timeout: Duration) -> Result<Flock<File>, StoreError> {
    let started = Instant::now();
    let mut file = open_lock_file(path)?;
    loop {
        match Flock::lock(file, arg) {
            Ok(lock) => return Ok(lock),
            Err((returned, nix::errno::Errno::EWOULDBLOCK)) => {
                if started.elapsed() >= timeout {
                    return Err(StoreError::Busy {
                        path: path.to_path_buf(),
                        waited: started.elapsed(),
                    });
                }
                file = returned;
                std::thread::sleep(RETRY_PAUSE);
            }
            Err((_, errno)) => {
                return Err(StoreError::Lock {
                    path: path.to_path_buf(),
                    source: errno.into(),
                })
            }
        }
    }
}

impl WriteLock {
    /// Takes the lock file exclusively, waiting up to `timeout` for other
    /// writers and for readers that are in the middle of opening.
    pub fn acquire(lock_path: &Path, timeout: Duration) -> Result<WriteLock, StoreError> {
        Ok(WriteLock {
            _lock: lock_with_timeout(lock_path, FlockArg::LockExclusiveNonblock, timeout)?,
        })
    }
}

/// Opens GDBM, retrying while another process holds a conflicting lock.
fn open_retrying(path: &Path, mode: OpenMode, timeout: Duration) -> Result<Gdbm, StoreError> {
    let started = Instant::now();
    loop {
        match Gdbm::open(path, mode) {
            Ok(db) => return Ok(db),
            Err(err) if err.is_lock_conflict() && started.elapsed() < timeout => {
                std::thread::sleep(RETRY_PAUSE);
            }
            Err(err) if err.is_lock_conflict() => {
                return Err(StoreError::Busy {
                    path: path.to_path_buf(),
                    waited: started.elapsed(),
                })
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// An open key database.
pub struct KeyStore {
    db: Gdbm,
    path: PathBuf,
    _write_lock: Option<WriteLock>,
}

fn user_key(email: &Email) -> Vec<u8> {
    [USER_PREFIX, email.as_str().as_bytes()].concat()
}

fn record_key(fingerprint: &Fingerprint) -> Vec<u8> {
    [KEY_PREFIX, fingerprint.as_str().as_bytes()].concat()
}

impl KeyStore {
    /// Opens the database read-only, waiting up to `timeout` for a writer
    /// to finish. A missing database is an error the caller may treat as
    /// empty (see [`StoreError::is_missing`]).
    pub fn open_read(path: &Path, lock_path: &Path, timeout: Duration) -> Result<KeyStore, StoreError> {
        let started = Instant::now();
        let shared = lock_with_timeout(lock_path, FlockArg::LockSharedNonblock, timeout)?;
        let db = open_retrying(path, OpenMode::Reader, timeout.saturating_sub(started.elapsed()))?;
        drop(shared);
        Ok(KeyStore {
            db,
            path: path.to_path_buf(),
            _write_lock: None,
        })
    }

    /// Like [`KeyStore::open_read`], but `None` when no database exists
    /// yet (nothing was ever registered).
    pub fn open_read_if_exists(
        path: &Path,
        lock_path: &Path,
        timeout: Duration,
    ) -> Result<Option<KeyStore>, StoreError> {
        match KeyStore::open_read(path, lock_path, timeout) {
            Ok(store) => Ok(Some(store)),
            Err(err) if err.is_missing() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Opens (creating if needed) the database for writing under `lock`,
    /// retrying up to `timeout` while readers still hold it.
    pub fn open_write(path: &Path, lock: WriteLock, timeout: Duration) -> Result<KeyStore, StoreError> {
        let db = open_retrying(path, OpenMode::WriterCreate, timeout)?;
        Ok(KeyStore {
            db,
            path: path.to_path_buf(),
            _write_lock: Some(lock),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn damaged(&self, key: &[u8], source: RecordError) -> StoreError {
        StoreError::Damaged {
            path: self.path.clone(),
            key: String::from_utf8_lossy(key).into_owned(),
            source,
        }
    }

    /// The fingerprint an address is registered to.
    pub fn fingerprint_of(&self, email: &Email) -> Result<Option<Fingerprint>, StoreError> {
        let key = user_key(email);
        let Some(value) = self.db.fetch(&key)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&value);
        Fingerprint::parse(&text)
            .map(Some)
            .map_err(|err| self.damaged(&key, err.into()))
    }

    /// The raw record text of the key a query names, without parsing it:
    /// the fast path for lookups.
    pub fn record_text(&self, query: &Query) -> Result<Option<Vec<u8>>, StoreError> {
        let fingerprint = match query {
            Query::Fingerprint(fingerprint) => fingerprint.clone(),
            Query::Email(email) => match self.fingerprint_of(email)? {
                Some(fingerprint) => fingerprint,
                None => return Ok(None),
            },
        };
        Ok(self.db.fetch(&record_key(&fingerprint))?)
    }

    /// The parsed record of the key a query names.
    pub fn record(&self, query: &Query) -> Result<Option<Record>, StoreError> {
        let Some(bytes) = self.record_text(query)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        Record::parse(&text)
            .map(Some)
            .map_err(|err| self.damaged(query.to_string().as_bytes(), err))
    }

    /// Stores a record and points each of its addresses at it. Addresses
    /// the previous version of the record held but this one does not are
    /// released.
    pub fn put(&mut self, record: &Record) -> Result<(), StoreError> {
        if let Some(previous) = self.record(&Query::Fingerprint(record.fingerprint.clone()))? {
            for user in previous.users.iter().filter(|user| !record.users.contains(user)) {
                self.release_address(user, &record.fingerprint)?;
            }
        }
        self.db
            .replace(&record_key(&record.fingerprint), record.to_text().as_bytes())?;
        for user in &record.users {
            self.db
                .replace(&user_key(user), record.fingerprint.as_str().as_bytes())?;
        }
        Ok(())
    }

    /// Deletes a key's record and every address pointing at it.
    pub fn delete(&mut self, fingerprint: &Fingerprint) -> Result<bool, StoreError> {
        let Some(record) = self.record(&Query::Fingerprint(fingerprint.clone()))? else {
            return Ok(false);
        };
        for user in &record.users {
            self.release_address(user, fingerprint)?;
        }
        Ok(self.db.delete(&record_key(fingerprint))?)
    }

    /// Removes an address entry, but only if it still points at `owner`.
    fn release_address(&mut self, email: &Email, owner: &Fingerprint) -> Result<(), StoreError> {
        if self.fingerprint_of(email)?.as_ref() == Some(owner) {
            self.db.delete(&user_key(email))?;
        }
        Ok(())
    }

    /// The fingerprints of the stored keys having a primary key or subkey
    /// with `key_id` (16 hex digits).
    pub fn fingerprints_with_key_id(&self, key_id: &str) -> Result<Vec<Fingerprint>, StoreError> {
        let key = [KEY_ID_PREFIX, key_id.to_ascii_uppercase().as_bytes()].concat();
        let Some(value) = self.db.fetch(&key)? else {
            return Ok(Vec::new());
        };
        String::from_utf8_lossy(&value)
            .split_whitespace()
            .map(|hex| Fingerprint::parse(hex).map_err(|err| self.damaged(&key, err.into())))
            .collect()
    }

    /// Records that the key `fingerprint` has (sub)keys with these key IDs.
    pub fn index_key_ids(&mut self, fingerprint: &Fingerprint, key_ids: &[String]) -> Result<(), StoreError> {
        for key_id in key_ids {
            let mut owners = self.fingerprints_with_key_id(key_id)?;
            if !owners.contains(fingerprint) {
                owners.push(fingerprint.clone());
                self.write_key_id(key_id, &owners)?;
            }
        }
        Ok(())
    }

    /// Forgets that the key `fingerprint` has these key IDs.
    pub fn unindex_key_ids(&mut self, fingerprint: &Fingerprint, key_ids: &[String]) -> Result<(), StoreError> {
        for key_id in key_ids {
            let mut owners = self.fingerprints_with_key_id(key_id)?;
            let before = owners.len();
            owners.retain(|owner| owner != fingerprint);
            if owners.len() != before {
                self.write_key_id(key_id, &owners)?;
            }
        }
        Ok(())
    }

    fn write_key_id(&mut self, key_id: &str, owners: &[Fingerprint]) -> Result<(), StoreError> {
        let key = [KEY_ID_PREFIX, key_id.to_ascii_uppercase().as_bytes()].concat();
        if owners.is_empty() {
            self.db.delete(&key)?;
        } else {
            let value: Vec<&str> = owners.iter().map(Fingerprint::as_str).collect();
            self.db.replace(&key, value.join(" ").as_bytes())?;
        }
        Ok(())
    }

    /// Flushes all writes to disk.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        Ok(self.db.sync()?)
    }

    /// The fingerprints of every stored key, in no particular order.
    pub fn fingerprints(&self) -> impl Iterator<Item = Result<Fingerprint, StoreError>> + '_ {
        self.db.keys().filter_map(move |key| match key {
            Err(err) => Some(Err(err.into())),
            Ok(key) => {
                let hex = key.strip_prefix(KEY_PREFIX)?;
                let parsed = Fingerprint::parse(&String::from_utf8_lossy(hex));
                Some(parsed.map_err(|err| self.damaged(&key, err.into())))
            }
        })
    }

    /// Every record, each key once, ordered by its first address (then
    /// fingerprint) so dumps are deterministic.
    pub fn records_sorted(&self) -> Result<Vec<(Email, Fingerprint)>, StoreError> {
        let mut order = Vec::new();
        for fingerprint in self.fingerprints() {
            let fingerprint = fingerprint?;
            if let Some(record) = self.record(&Query::Fingerprint(fingerprint.clone()))? {
                if let Some(first) = record.users.first() {
                    order.push((first.clone(), fingerprint));
                }
            }
        }
        order.sort();
        Ok(order)
    }

    /// How many keys are stored.
    pub fn key_count(&self) -> Result<usize, StoreError> {
        let mut count = 0;
        for fingerprint in self.fingerprints() {
            fingerprint?;
            count += 1;
        }
        Ok(count)
    }
}

impl StoreError {
    /// True when the database file does not exist yet (nothing registered).
    pub fn is_missing(&self) -> bool {
        matches!(self, StoreError::Gdbm(err) if err.code == gdbm_sys::GDBM_FILE_OPEN_ERROR as i32
            && !err.path.exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    const TIMEOUT: Duration = Duration::from_secs(2);

    fn record(fpr: &str, users: &[&str]) -> Record {
        Record {
            users: users.iter().map(|u| Email::parse(u).unwrap()).collect(),
            fingerprint: Fingerprint::parse(fpr).unwrap(),
            registered: Utc::now(),
            updated: Utc::now(),
            key_armor: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----".into(),
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        db: PathBuf,
        lock: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            Fixture {
                db: dir.path().join("keys.gdbm"),
                lock: dir.path().join("keys.gdbm.lock"),
                _dir: dir,
            }
        }
        fn writer(&self) -> KeyStore {
            KeyStore::open_write(&self.db, WriteLock::acquire(&self.lock, TIMEOUT).unwrap(), TIMEOUT).unwrap()
        }
        fn reader(&self) -> KeyStore {
            KeyStore::open_read(&self.db, &self.lock, TIMEOUT).unwrap()
        }
    }

    const A: &str = "AAAA000011112222333344445555666677778888";
    const B: &str = "BBBB000011112222333344445555666677778888";

    #[test]
    fn put_lookup_by_address_and_fingerprint() {
        let fx = Fixture::new();
        let mut store = fx.writer();
        store
            .put(&record(A, &["alice@example.com", "alice@example.org"]))
            .unwrap();
        store.sync().unwrap();
        drop(store);
        let store = fx.reader();
        for query in ["alice@example.org", "ALICE@example.com", &format!("0x{A}")] {
            let found = store.record(&Query::parse(query).unwrap()).unwrap().unwrap();
            assert_eq!(found.fingerprint.as_str(), A);
        }
        assert!(store
            .record(&Query::parse("bob@example.com").unwrap())
            .unwrap()
            .is_none());
        assert_eq!(store.key_count().unwrap(), 1);
    }

    #[test]
    fn put_releases_dropped_addresses_and_delete_cleans_up() {
        let fx = Fixture::new();
        let mut store = fx.writer();
        store.put(&record(A, &["a@example.com", "old@example.com"])).unwrap();
        store.put(&record(B, &["b@example.com"])).unwrap();
        store.put(&record(A, &["a@example.com"])).unwrap();
        let old = Email::parse("old@example.com").unwrap();
        assert_eq!(store.fingerprint_of(&old).unwrap(), None);
        assert!(store.delete(&Fingerprint::parse(A).unwrap()).unwrap());
        assert!(!store.delete(&Fingerprint::parse(A).unwrap()).unwrap());
        let a = Email::parse("a@example.com").unwrap();
        assert_eq!(store.fingerprint_of(&a).unwrap(), None);
        let sorted = store.records_sorted().unwrap();
        assert_eq!(sorted.len(), 1);
        assert_eq!(sorted[0].1.as_str(), B);
    }

    #[test]
    fn dump_order_is_by_first_address() {
        let fx = Fixture::new();
        let mut store = fx.writer();
        store.put(&record(B, &["zed@example.com"])).unwrap();
        store.put(&record(A, &["amy@example.com"])).unwrap();
        let order: Vec<String> = store
            .records_sorted()
            .unwrap()
            .into_iter()
            .map(|(e, _)| e.to_string())
            .collect();
        assert_eq!(order, ["amy@example.com", "zed@example.com"]);
    }

    #[test]
    fn writer_waits_for_reader_then_reader_waits_for_writer() {
        let fx = Fixture::new();
        drop(fx.writer());
        let reader = fx.reader();
        let lock = WriteLock::acquire(&fx.lock, TIMEOUT).unwrap();
        // The reader still holds GDBM's lock, so the writer gives up after its timeout.
        let err = KeyStore::open_write(&fx.db, lock, Duration::from_millis(50))
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::Busy { .. }), "{err}");
        drop(reader);
        let writer = fx.writer();
        // While the write lock is held a reader can't even start opening.
        let err = KeyStore::open_read(&fx.db, &fx.lock, Duration::from_millis(50))
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::Busy { .. }), "{err}");
        drop(writer);
        fx.reader();
    }

    #[test]
    fn key_id_index_lists_owners() {
        let fx = Fixture::new();
        let mut store = fx.writer();
        let a = Fingerprint::parse(A).unwrap();
        let b = Fingerprint::parse(B).unwrap();
        let ids = ["5555666677778888".to_string(), "0123456789ABCDEF".to_string()];
        store.index_key_ids(&a, &ids).unwrap();
        store.index_key_ids(&b, &ids[1..]).unwrap();
        store.index_key_ids(&b, &ids[1..]).unwrap();
        assert_eq!(
            store.fingerprints_with_key_id("0123456789abcdef").unwrap(),
            [a.clone(), b.clone()]
        );
        store.unindex_key_ids(&a, &ids).unwrap();
        assert!(store.fingerprints_with_key_id("5555666677778888").unwrap().is_empty());
        assert_eq!(store.fingerprints_with_key_id("0123456789ABCDEF").unwrap(), [b]);
        assert_eq!(store.key_count().unwrap(), 0, "index entries are not keys");
    }

    #[test]
    fn missing_database_is_recognised() {
        let fx = Fixture::new();
        let err = KeyStore::open_read(&fx.db, &fx.lock, TIMEOUT).err().unwrap();
        assert!(err.is_missing(), "{err}");
    }
}
