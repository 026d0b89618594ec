//! The key database: records in GDBM, and the rules that keep it whole.
//!
//! Layout: `key:<FINGERPRINT>` holds the record text of one key, and
//! `user:<address>` holds the fingerprint the address belongs to, a
//! newline, and a copy of that record's text, so a lookup by address — what
//! keyserv answers all day — is one fetch, and a dump still lists each key
//! once (from the `key:` items). The copies cost disk and writes: a record
//! is stored once more per address it has (a put writes every copy in the
//! same window, so they never disagree; `verify` checks they match). An
//! address entry of the earlier layout (the fingerprint alone) still
//! reads, through the record; `keyreg --rebuild` rewrites it.
//! keyserv reads the file through [`mapped`], GDBM's table followed in
//! the mapped file without libgdbm's copies. `keyid:<16 hex digits>` lists the fingerprints of the keys that
//! have a primary key or subkey with that key ID, so the key that made a
//! signature can be found from the signature. `meta:generation` counts the
//! write windows the file has seen. Every value carries a checksum
//! ([`value`]), so damage is found when it is read. Nothing but this crate
//! reaches GDBM.
//!
//! Crash safety and sharing come from a *pair* of files ([`pair`]):
//! readers only ever open `keys.gdbm`, which is never written in place; the
//! writer applies each window to the other file, `keys.gdbm.standby`, syncs
//! it, logs the window's writes in the apply log ([`applylog`]), and
//! switches the two names in one atomic `rename(2)`. A kill at any instant
//! leaves `keys.gdbm` holding exactly the last completed window, and the
//! standby is brought up to date (or copied afresh) before it is written
//! again. Damage — a file GDBM refuses, a value whose checksum fails, a
//! record that does not parse — is repaired from the apply log
//! ([`repair`]). Readers:
//!
//! * keyserv's workers each keep a [`LiveReader`]: a handle opened without
//!   GDBM's lock and held between writes, plus the lock file held shared
//!   while one batch is answered. The writer holds the lock file
//!   exclusively only for the switch, so lookups never wait for a window.
//! * db2flat opens with GDBM's reader lock ([`KeyStore::open_read`]), which
//!   the writer sees when it wants that file back as its standby; it then
//!   takes a fresh copy instead, so a dump never holds keyreg off.

pub mod gdbm;
pub mod journal;

mod db;
mod memory;
mod notes;

mod applylog;
mod live;
mod locks;
mod mapped;
mod pair;
mod repair;
mod sort;
mod value;
mod verify;

use std::cell::OnceCell;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use applylog::Op;
pub use db::KeyDb;
pub use live::{LiveReader, Mappings, ReadSession};
pub use memory::MemoryDb;
pub use repair::RepairReport;
pub use sort::SortedKeys;
pub use verify::VerifySummary;

use crate::gdbm::{Gdbm, GdbmError, OpenMode};
use pair::Writer;
use ripem_core::exit::{self, io_exit_code, ExitStatus};
use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint, Query};

const KEY_PREFIX: &[u8] = b"key:";
const USER_PREFIX: &[u8] = b"user:";
/// The most lookups [`KeyStore::prefetch_records`] warms in one go: more
/// than the CPU can have misses outstanding.
const PREFETCH_BATCH: usize = 64;
const KEY_ID_PREFIX: &[u8] = b"keyid:";
const GENERATION_KEY: &[u8] = b"meta:generation";

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
        source: io::Error,
    },
    /// Another process kept the database for longer than allowed.
    #[error("{path}: still in use by another process after {waited:?}")]
    Busy {
        /// The database or lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// A stored item fails its checksum or does not parse: the file is damaged.
    #[error("{path}: damaged item {key}: {problem}")]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// The item's key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A write was attempted outside a write window (a bug in the caller).
    #[error("{path}: written outside a write window")]
    NoWindow {
        /// The database.
        path: PathBuf,
    },
    /// A file of the database pair, its state file or apply log could not
    /// be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// The database is damaged and could not be rebuilt.
    #[error("{path}: damaged, and it could not be rebuilt: {reason}")]
    Unrepairable {
        /// The database.
        path: PathBuf,
        /// Why each source failed.
        reason: String,
    },
    /// The temporary files of a sorted listing could not be used.
    #[error("sorting the database's keys in {path}: {source}")]
    Scratch {
        /// The directory of the temporary files.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
}

impl ExitStatus for StoreError {
    fn exit_code(&self) -> u8 {
        match self {
            StoreError::Busy { .. } => exit::TEMPFAIL,
            StoreError::Damaged { .. } | StoreError::Unrepairable { .. } => exit::DATAERR,
            StoreError::Gdbm(gdbm) if gdbm.is_damaged() => exit::DATAERR,
            StoreError::Lock { source, .. } | StoreError::Io { source, .. } => io_exit_code(source, exit::IOERR),
            _ => exit::IOERR,
        }
    }
}

impl StoreError {
    /// True when the database file does not exist yet (nothing registered).
    pub fn is_missing(&self) -> bool {
        matches!(self, StoreError::Gdbm(err) if err.code == gdbm_sys::GDBM_FILE_OPEN_ERROR as i32
            && !err.path.exists())
    }

    /// True when a file is damaged (GDBM refuses it, or an item fails its
    /// checksum or does not parse): [`KeyStore::repair`] is the answer.
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Gdbm(err) => err.is_damaged(),
            StoreError::Damaged { .. } | StoreError::Unrepairable { .. } => true,
            _ => false,
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open key database: a reader of `keys.gdbm`, or the writer, whose
/// handle is on the standby file.
pub struct KeyStore {
    /// libgdbm's handle; a mapped reader opens it only when the mapping
    /// can't answer (see [`live`]).
    db: OnceCell<Gdbm>,
    /// The same file mapped, for keyserv's readers (see [`mapped`]).
    table: Option<mapped::MappedTable>,
    path: PathBuf,
    writer: Option<Writer>,
}

fn user_key(email: &Email) -> Vec<u8> {
    [USER_PREFIX, email.as_str().as_bytes()].concat()
}

fn record_key(fingerprint: &Fingerprint) -> Vec<u8> {
    [KEY_PREFIX, fingerprint.as_str().as_bytes()].concat()
}

fn key_id_key(key_id: &str) -> Vec<u8> {
    [KEY_ID_PREFIX, key_id.to_ascii_uppercase().as_bytes()].concat()
}

/// Opens GDBM, retrying while another process holds a conflicting lock.
fn open_retrying(path: &Path, mode: OpenMode, timeout: Duration) -> Result<Gdbm, StoreError> {
    let started = Instant::now();
    loop {
        match Gdbm::open(path, mode) {
            Ok(db) => return Ok(db),
            Err(err) if err.is_lock_conflict() && started.elapsed() < timeout => {
                std::thread::sleep(locks::RETRY_PAUSE * 10);
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

impl KeyStore {
    fn reading(db: Gdbm, path: &Path) -> KeyStore {
        KeyStore {
            db: OnceCell::from(db),
            table: None,
            path: path.to_path_buf(),
            writer: None,
        }
    }

    /// A reader of the file `table` maps, the one at `path` (keyserv's,
    /// under the lock file's protocol, so libgdbm opens that same file
    /// when it is needed).
    fn reading_mapped(table: mapped::MappedTable, path: &Path) -> KeyStore {
        KeyStore {
            db: OnceCell::new(),
            table: Some(table),
            path: path.to_path_buf(),
            writer: None,
        }
    }

    /// libgdbm's handle, opened now if this reader had not needed it yet.
    fn gdbm(&self) -> Result<&Gdbm, StoreError> {
        if let Some(db) = self.db.get() {
            return Ok(db);
        }
        let db = Gdbm::open(&self.path, OpenMode::ReaderUnlocked)?;
        Ok(self.db.get_or_init(|| db))
    }

    /// The writer's handle, which it opens with the store; a reader has
    /// no window to write in.
    fn gdbm_mut(&mut self) -> Result<&mut Gdbm, StoreError> {
        self.db.get_mut().ok_or_else(|| StoreError::NoWindow {
            path: self.path.clone(),
        })
    }

    /// Opens the database read-only with GDBM's reader lock (db2flat). The
    /// lock file is held shared while the file is opened, so the file
    /// opened is the current one; the writer never writes it while this
    /// handle is open. A missing database is an error the caller may treat
    /// as empty (see [`StoreError::is_missing`]).
    pub fn open_read(path: &Path, lock_path: &Path, timeout: Duration) -> Result<KeyStore, StoreError> {
        let started = Instant::now();
        let lock = locks::open_lock_file(lock_path)?;
        locks::lock_polling(&lock, libc::LOCK_SH, lock_path, timeout)?;
        let db = open_retrying(path, OpenMode::Reader, timeout.saturating_sub(started.elapsed()));
        locks::flock(&lock, libc::LOCK_UN).map_err(|source| StoreError::Lock {
            path: lock_path.to_path_buf(),
            source,
        })?;
        Ok(KeyStore::reading(db?, path))
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

    fn damaged(&self, key: &[u8], problem: impl Into<String>) -> StoreError {
        StoreError::Damaged {
            path: self.path.clone(),
            key: String::from_utf8_lossy(key).into_owned(),
            problem: problem.into(),
        }
    }

    /// Calls `read` with the payload stored under `key`, checksum checked.
    /// The mapped table answers when it can; a value failing its checksum
    /// there is read again through libgdbm, which has the last word.
    fn value_with<T>(&self, key: &[u8], read: impl FnOnce(&[u8]) -> T) -> Result<Option<T>, StoreError> {
        let probe = self.table.as_ref().map(|table| table.probe(key));
        match probe {
            Some(mapped::Probe::Absent) => return Ok(None),
            Some(mapped::Probe::Found(stored)) => {
                if let Some(payload) = value::open(stored) {
                    return Ok(Some(read(payload)));
                }
            }
            Some(mapped::Probe::Unreadable) | None => {}
        }
        match self.gdbm()?.fetch_with(key, |stored| value::open(stored).map(read))? {
            None => Ok(None),
            Some(Some(found)) => Ok(Some(found)),
            Some(None) => Err(self.damaged(key, "checksum mismatch")),
        }
    }

    fn value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.value_with(key, <[u8]>::to_vec)
    }

    /// Every key of the file, raw, in GDBM's order.
    fn raw_keys(&self) -> impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_ {
        let keys = self.gdbm().map(Gdbm::keys);
        let (keys, opening) = match keys {
            Ok(keys) => (Some(keys), None),
            Err(err) => (None, Some(Err(err))),
        };
        opening
            .into_iter()
            .chain(keys.into_iter().flatten().map(|key| key.map_err(StoreError::from)))
    }

    /// The number of write windows this file has seen.
    pub fn generation(&self) -> Result<u64, StoreError> {
        let Some(bytes) = self.value(GENERATION_KEY)? else {
            return Ok(0);
        };
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| self.damaged(GENERATION_KEY, "not a number"))
    }

    /// The fingerprint an address is registered to.
    pub fn fingerprint_of(&self, email: &Email) -> Result<Option<Fingerprint>, StoreError> {
        let key = user_key(email);
        let owner = self.value_with(&key, |entry| {
            let (owner, _) = split_address_entry(entry);
            Fingerprint::parse(&String::from_utf8_lossy(owner)).map_err(|err| err.to_string())
        })?;
        owner.transpose().map_err(|problem| self.damaged(&key, problem))
    }

    /// The raw record text of the key a query names, without parsing it.
    pub fn record_text(&self, query: &Query) -> Result<Option<Vec<u8>>, StoreError> {
        let mut text = Vec::new();
        Ok(self.append_record(query, &mut text)?.then_some(text))
    }

    /// Appends the record text of the key a query names to `out`; false
    /// if there is none. The lookup fast path: one fetch for an address
    /// (its entry carries the record), and nothing allocated.
    pub fn append_record(&self, query: &Query, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        let mut key = [0u8; 8 + 256];
        let mut found = [0u8; 80];
        let fingerprint = match query {
            Query::Fingerprint(fingerprint) => fingerprint.as_str().as_bytes(),
            Query::Email(email) => {
                let Some(user) = prefixed(&mut key, USER_PREFIX, email.as_str().as_bytes()) else {
                    return Ok(false);
                };
                let entry = self.value_with(user, |entry| match split_address_entry(entry) {
                    (_, Some(record)) => {
                        out.extend_from_slice(record);
                        None
                    }
                    // The earlier layout: the fingerprint alone.
                    (owner, None) => {
                        let length = owner.len().min(found.len());
                        found[..length].copy_from_slice(&owner[..length]);
                        Some(length)
                    }
                })?;
                match entry {
                    None => return Ok(false),
                    Some(None) => return Ok(true),
                    Some(Some(length)) => &found[..length],
                }
            }
        };
        let mut record_key = [0u8; 88];
        let Some(record_key) = prefixed(&mut record_key, KEY_PREFIX, fingerprint) else {
            return Ok(false);
        };
        Ok(self
            .value_with(record_key, |record| out.extend_from_slice(record))?
            .is_some())
    }

    /// Warms the lines the records of `queries` will be read from (the
    /// address entry for an address, the record for a fingerprint), all
    /// of a batch's at once so that their misses overlap (see
    /// [`mapped`]). A hint only: a store that is not mapped does nothing.
    pub fn prefetch_records<'q>(&self, queries: impl IntoIterator<Item = &'q Query>) {
        let Some(table) = &self.table else {
            return;
        };
        let mut pending = [mapped::Prefetch::default(); PREFETCH_BATCH];
        let mut count = 0;
        let mut key = [0u8; 8 + 256];
        for query in queries {
            let (prefix, rest) = match query {
                Query::Email(email) => (USER_PREFIX, email.as_str().as_bytes()),
                Query::Fingerprint(fingerprint) => (KEY_PREFIX, fingerprint.as_str().as_bytes()),
            };
            let Some(key) = prefixed(&mut key, prefix, rest) else {
                continue;
            };
            pending[count] = mapped::Prefetch::of(key);
            count += 1;
            if count == PREFETCH_BATCH {
                table.prefetch(&mut pending);
                count = 0;
            }
        }
        table.prefetch(&mut pending[..count]);
    }

    /// The parsed record of the key a query names.
    pub fn record(&self, query: &Query) -> Result<Option<Record>, StoreError> {
        let Some(bytes) = self.record_text(query)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        Record::parse(&text)
            .map(Some)
            .map_err(|err| self.damaged(query.to_string().as_bytes(), err.to_string()))
    }

    /// The fingerprints of the stored keys having a primary key or subkey
    /// with `key_id` (16 hex digits).
    pub fn fingerprints_with_key_id(&self, key_id: &str) -> Result<Vec<Fingerprint>, StoreError> {
        let key = key_id_key(key_id);
        let Some(value) = self.value(&key)? else {
            return Ok(Vec::new());
        };
        String::from_utf8_lossy(&value)
            .split_whitespace()
            .map(|hex| Fingerprint::parse(hex).map_err(|err| self.damaged(&key, err.to_string())))
            .collect()
    }

    /// The fingerprints of every stored key, in no particular order.
    pub fn fingerprints(&self) -> impl Iterator<Item = Result<Fingerprint, StoreError>> + '_ {
        self.raw_keys().filter_map(move |key| match key {
            Err(err) => Some(Err(err)),
            Ok(key) => {
                let hex = key.strip_prefix(KEY_PREFIX)?;
                let parsed = Fingerprint::parse(&String::from_utf8_lossy(hex));
                Some(parsed.map_err(|err| self.damaged(&key, err.to_string())))
            }
        })
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

    fn check_window(&self) -> Result<&Writer, StoreError> {
        match &self.writer {
            Some(writer) if writer.window_open() => Ok(writer),
            _ => Err(StoreError::NoWindow {
                path: self.path.clone(),
            }),
        }
    }

    /// Stores `payload` under `key`, in the window's log too.
    fn write(&mut self, key: &[u8], payload: &[u8]) -> Result<(), StoreError> {
        self.check_window()?;
        self.gdbm_mut()?.replace(key, &value::seal(payload))?;
        match (&mut self.writer, self.db.get()) {
            (Some(writer), Some(db)) => writer.logged(Op::Put(key.to_vec(), payload.to_vec()), db),
            _ => Ok(()),
        }
    }

    /// Deletes `key`, in the window's log too; returns whether it was there.
    fn erase(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        self.check_window()?;
        let existed = self.gdbm_mut()?.delete(key)?;
        if let (true, Some(writer), Some(db)) = (existed, &mut self.writer, self.db.get()) {
            writer.logged(Op::Delete(key.to_vec()), db)?;
        }
        Ok(existed)
    }

    /// Stores a record and points each of its addresses at it. Addresses
    /// the previous version of the record held but this one does not are
    /// released.
    pub fn put(&mut self, record: &Record) -> Result<(), StoreError> {
        self.check_window()?;
        if let Some(writer) = &mut self.writer {
            writer.changed(&record.fingerprint);
        }
        if let Some(previous) = self.record(&Query::Fingerprint(record.fingerprint.clone()))? {
            for user in previous.users.iter().filter(|user| !record.users.contains(user)) {
                self.release_address(user, &record.fingerprint)?;
            }
        }
        let text = record.to_text();
        self.write(&record_key(&record.fingerprint), text.as_bytes())?;
        let entry = address_entry(&record.fingerprint, text.as_bytes());
        for user in &record.users {
            self.write(&user_key(user), &entry)?;
        }
        Ok(())
    }

    /// Deletes a key's record and every address pointing at it.
    pub fn delete(&mut self, fingerprint: &Fingerprint) -> Result<bool, StoreError> {
        self.check_window()?;
        if let Some(writer) = &mut self.writer {
            writer.changed(fingerprint);
        }
        let Some(record) = self.record(&Query::Fingerprint(fingerprint.clone()))? else {
            return Ok(false);
        };
        for user in &record.users {
            self.release_address(user, fingerprint)?;
        }
        self.erase(&record_key(fingerprint))
    }

    /// Removes an address entry, but only if it still points at `owner`.
    fn release_address(&mut self, email: &Email, owner: &Fingerprint) -> Result<(), StoreError> {
        if self.fingerprint_of(email)?.as_ref() == Some(owner) {
            self.erase(&user_key(email))?;
        }
        Ok(())
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
        let key = key_id_key(key_id);
        if owners.is_empty() {
            self.erase(&key)?;
        } else {
            let value: Vec<&str> = owners.iter().map(Fingerprint::as_str).collect();
            self.write(&key, value.join(" ").as_bytes())?;
        }
        Ok(())
    }
}

/// An address entry's payload: the owner's fingerprint, a newline, and
/// the owner's record text.
fn address_entry(owner: &Fingerprint, record: &[u8]) -> Vec<u8> {
    [owner.as_str().as_bytes(), b"\n", record].concat()
}

/// An address entry's fingerprint and the record it carries (`None` in an
/// entry of the earlier layout, the fingerprint alone).
fn split_address_entry(entry: &[u8]) -> (&[u8], Option<&[u8]>) {
    match entry.iter().position(|&b| b == b'\n') {
        Some(newline) => (&entry[..newline], Some(&entry[newline + 1..])),
        None => (entry, None),
    }
}

/// Builds `prefix` + `rest` in `buffer`; None if it does not fit.
fn prefixed<'a>(buffer: &'a mut [u8], prefix: &[u8], rest: &[u8]) -> Option<&'a [u8]> {
    let length = prefix.len() + rest.len();
    let target = buffer.get_mut(..length)?;
    target[..prefix.len()].copy_from_slice(prefix);
    target[prefix.len()..].copy_from_slice(rest);
    Some(target)
}

#[cfg(test)]
mod db_suite;
#[cfg(test)]
mod tests;
