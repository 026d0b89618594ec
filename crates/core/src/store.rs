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
//! conflicting open fails at once. keyserv must answer while keyreg
//! writes, so the file is shared through a lock file beside it
//! (`keys.gdbm.lock`) that also holds a write generation number:
//!
//! * keyreg opens GDBM as writer first ([`KeyStore::open_write`]; GDBM's
//!   own lock keeps out other writers and db2flat), while lookups go on.
//!   Then it tells keyserv (SIGUSR1) and opens a *write window*
//!   ([`KeyStore::begin_window`]): the lock file held exclusively. Writes
//!   happen only inside a window; [`KeyStore::end_window`] (or dropping
//!   the store) syncs, bumps the generation and lets go. Windows are short:
//!   one per batch, and a long import ends and reopens its window often.
//! * keyserv's workers each keep a [`LiveReader`]: a handle opened without
//!   GDBM's lock and held open between writes, plus the lock file held
//!   *shared* only while one batch of lookups is answered. A writer waits
//!   for the batch in hand (microseconds); readers wait for the window to
//!   end, then see the new generation and reopen, so a lookup is delayed
//!   by the window at worst, never answered from a half-written file.
//! * db2flat opens with GDBM's reader lock ([`KeyStore::open_read`]): it
//!   keeps writers out for the length of a dump, and keyreg retries.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::gdbm::{Gdbm, GdbmError, OpenMode};
use crate::journal;
use crate::record::{Record, RecordError};
use crate::types::{Email, Fingerprint, Query};

const KEY_PREFIX: &[u8] = b"key:";
const USER_PREFIX: &[u8] = b"user:";
const KEY_ID_PREFIX: &[u8] = b"keyid:";
/// How long to sleep between attempts while another process holds a lock.
const RETRY_PAUSE: Duration = Duration::from_micros(200);
/// How long a reader told that a writer is coming waits for it to take the lock.
const YIELD_LIMIT: Duration = Duration::from_millis(50);
/// Entries sorted in memory at once by [`KeyStore::fingerprints_by_first_address`].
const SORT_RUN: usize = 50_000;

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
    /// A write was attempted outside a write window (a bug in the caller).
    #[error("{path}: written outside a write window")]
    NoWindow {
        /// The database.
        path: PathBuf,
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

/// `flock(2)` on a file we hold open; one open file per holder, since a
/// lock belongs to the open file, not to the thread.
fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    // SAFETY: the descriptor is open for as long as `file` lives.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Takes a flock (`LOCK_SH` or `LOCK_EX`), polling until `timeout`.
fn lock_polling(file: &File, operation: libc::c_int, path: &Path, timeout: Duration) -> Result<(), StoreError> {
    let started = Instant::now();
    loop {
        match flock(file, operation | libc::LOCK_NB) {
            Ok(()) => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                if started.elapsed() >= timeout {
                    return Err(StoreError::Busy {
                        path: path.to_path_buf(),
                        waited: started.elapsed(),
                    });
                }
                std::thread::sleep(RETRY_PAUSE);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(StoreError::Lock {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// The write generation kept in the lock file (0 if never written).
fn read_generation(file: &File) -> u64 {
    let mut bytes = [0u8; 8];
    match file.read_exact_at(&mut bytes, 0) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => 0,
    }
}

/// Opens GDBM, retrying while another process holds a conflicting lock.
fn open_retrying(path: &Path, mode: OpenMode, timeout: Duration) -> Result<Gdbm, StoreError> {
    let started = Instant::now();
    loop {
        match Gdbm::open(path, mode) {
            Ok(db) => return Ok(db),
            Err(err) if err.is_lock_conflict() && started.elapsed() < timeout => {
                std::thread::sleep(RETRY_PAUSE * 10);
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

/// A writer's hold on the lock file: an open window, or the means to open
/// one; and the records the open window changed, for the journal.
struct Window {
    file: File,
    path: PathBuf,
    timeout: Duration,
    open: bool,
    changed: Vec<String>,
}

impl Window {
    fn begin(&mut self) -> Result<(), StoreError> {
        if !self.open {
            lock_polling(&self.file, libc::LOCK_EX, &self.path, self.timeout)?;
            self.open = true;
        }
        Ok(())
    }

    /// Journals the changed records, bumps the generation, so readers
    /// reopen, and lets go of the lock.
    fn end(&mut self) -> Result<(), StoreError> {
        if !self.open {
            return Ok(());
        }
        let lock_err = |source| StoreError::Lock {
            path: self.path.clone(),
            source,
        };
        let next = read_generation(&self.file).wrapping_add(1);
        let journal = journal::path_for(&self.path);
        let journaled = journal::append(&journal, next, &std::mem::take(&mut self.changed)).map_err(|source| {
            // A reader must not take a journal without this window for
            // complete: without the file it forgets everything instead.
            let _ = std::fs::remove_file(&journal);
            StoreError::Lock {
                path: journal.clone(),
                source,
            }
        });
        let written = self.file.write_all_at(&next.to_le_bytes(), 0).map_err(lock_err);
        self.open = false;
        flock(&self.file, libc::LOCK_UN).map_err(lock_err)?;
        written.and(journaled)
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // Declared after the GDBM handle in `KeyStore`, so this runs once
        // the handle is closed (and synced).
        let _ = self.end();
    }
}

/// An open key database.
pub struct KeyStore {
    db: Gdbm,
    path: PathBuf,
    window: Option<Window>,
}

fn user_key(email: &Email) -> Vec<u8> {
    [USER_PREFIX, email.as_str().as_bytes()].concat()
}

fn record_key(fingerprint: &Fingerprint) -> Vec<u8> {
    [KEY_PREFIX, fingerprint.as_str().as_bytes()].concat()
}

impl KeyStore {
    /// Opens the database read-only with GDBM's reader lock (db2flat: it
    /// keeps writers out while it reads), waiting up to `timeout` for a
    /// write window to end. A missing database is an error the caller may
    /// treat as empty (see [`StoreError::is_missing`]).
    pub fn open_read(path: &Path, lock_path: &Path, timeout: Duration) -> Result<KeyStore, StoreError> {
        let started = Instant::now();
        let lock = open_lock_file(lock_path)?;
        lock_polling(&lock, libc::LOCK_SH, lock_path, timeout)?;
        let db = open_retrying(path, OpenMode::Reader, timeout.saturating_sub(started.elapsed()));
        flock(&lock, libc::LOCK_UN).map_err(|source| StoreError::Lock {
            path: lock_path.to_path_buf(),
            source,
        })?;
        Ok(KeyStore {
            db: db?,
            path: path.to_path_buf(),
            window: None,
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

    /// Opens (creating if needed) the database as its one writer, waiting
    /// up to `timeout` for another writer or a dump to finish. Lookups go
    /// on meanwhile: nothing may be written until [`KeyStore::begin_window`].
    pub fn open_write(path: &Path, lock_path: &Path, timeout: Duration) -> Result<KeyStore, StoreError> {
        let mut window = Window {
            file: open_lock_file(lock_path)?,
            path: lock_path.to_path_buf(),
            timeout,
            open: false,
            changed: Vec::new(),
        };
        let db = if path.exists() {
            open_retrying(path, OpenMode::WriterCreate, timeout)?
        } else {
            // Create it inside a window, so no reader sees a half-made file.
            window.begin()?;
            let db = open_retrying(path, OpenMode::WriterCreate, timeout)?;
            window.end()?;
            db
        };
        Ok(KeyStore {
            db,
            path: path.to_path_buf(),
            window: Some(window),
        })
    }

    /// Opens a write window: takes the lock file exclusively, waiting up to
    /// the writer's timeout for readers to finish the batch in hand. Tell
    /// keyserv first (SIGUSR1) so that its workers step aside at once.
    pub fn begin_window(&mut self) -> Result<(), StoreError> {
        match &mut self.window {
            Some(window) => window.begin(),
            None => Err(StoreError::NoWindow {
                path: self.path.clone(),
            }),
        }
    }

    /// Ends the write window, if one is open: syncs, bumps the generation
    /// (readers reopen) and lets go of the lock. Dropping the store does
    /// the same.
    pub fn end_window(&mut self) -> Result<(), StoreError> {
        if self.window.as_ref().is_some_and(|w| w.open) {
            self.db.sync()?;
        }
        match &mut self.window {
            Some(window) => window.end(),
            None => Ok(()),
        }
    }

    /// Notes a record the open window changes, for the journal.
    fn journal_change(&mut self, fingerprint: &Fingerprint) {
        if let Some(window) = &mut self.window {
            window.changed.push(fingerprint.as_str().to_string());
        }
    }

    fn check_window(&self) -> Result<(), StoreError> {
        match &self.window {
            Some(window) if window.open => Ok(()),
            _ => Err(StoreError::NoWindow {
                path: self.path.clone(),
            }),
        }
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

    /// Appends the record text of the key a query names to `out`; false
    /// if there is none. The lookup fast path: nothing is allocated but
    /// GDBM's own copies.
    pub fn append_record(&self, query: &Query, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        let mut key = [0u8; 8 + 256];
        let fingerprint = match query {
            Query::Fingerprint(fingerprint) => fingerprint.as_str().as_bytes(),
            Query::Email(email) => {
                let Some(user) = prefixed(&mut key, USER_PREFIX, email.as_str().as_bytes()) else {
                    return Ok(false);
                };
                let mut found = [0u8; 80];
                let length = self.db.fetch_with(user, |value| {
                    let length = value.len().min(found.len());
                    found[..length].copy_from_slice(&value[..length]);
                    length
                })?;
                let Some(length) = length else {
                    return Ok(false);
                };
                let mut record_key = [0u8; 88];
                let Some(record_key) = prefixed(&mut record_key, KEY_PREFIX, &found[..length]) else {
                    return Ok(false);
                };
                return Ok(self
                    .db
                    .fetch_with(record_key, |record| out.extend_from_slice(record))?
                    .is_some());
            }
        };
        let Some(record_key) = prefixed(&mut key, KEY_PREFIX, fingerprint) else {
            return Ok(false);
        };
        Ok(self
            .db
            .fetch_with(record_key, |record| out.extend_from_slice(record))?
            .is_some())
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
        self.check_window()?;
        self.journal_change(&record.fingerprint);
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
        self.check_window()?;
        self.journal_change(fingerprint);
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

    /// Every key's fingerprint, ordered by its record's first address
    /// (then fingerprint) so dumps are deterministic, in bounded memory:
    /// runs of [`SORT_RUN`] entries are sorted and spilled to unnamed
    /// temporary files in `scratch`, then merged as they are read.
    pub fn fingerprints_by_first_address(&self, scratch: &Path) -> Result<SortedKeys, StoreError> {
        let scratch_err = |source| StoreError::Scratch {
            path: scratch.to_path_buf(),
            source,
        };
        let mut runs = Vec::new();
        let mut run: Vec<(String, String)> = Vec::with_capacity(SORT_RUN);
        let mut total = 0;
        let mut spill = |run: &mut Vec<(String, String)>| -> Result<(), StoreError> {
            run.sort_unstable();
            let mut file = BufWriter::new(tempfile::tempfile_in(scratch).map_err(scratch_err)?);
            for (email, fingerprint) in run.drain(..) {
                writeln!(file, "{email}\t{fingerprint}").map_err(scratch_err)?;
            }
            let mut file = file.into_inner().map_err(|err| scratch_err(err.into_error()))?;
            io::Seek::rewind(&mut file).map_err(scratch_err)?;
            runs.push(BufReader::new(file).lines());
            Ok(())
        };
        for key in self.db.keys() {
            let key = key?;
            let Some(hex) = key.strip_prefix(KEY_PREFIX) else {
                continue;
            };
            let first = self.db.fetch_with(&key, |record| {
                record
                    .split(|&b| b == b'\n')
                    .find_map(|line| line.strip_prefix(b"User: "))
                    .map(|user| String::from_utf8_lossy(user).trim().to_string())
            })?;
            if let Some(Some(first)) = first {
                run.push((first, String::from_utf8_lossy(hex).into_owned()));
                total += 1;
                if run.len() == SORT_RUN {
                    spill(&mut run)?;
                }
            }
        }
        spill(&mut run)?;
        let mut sorted = SortedKeys {
            runs,
            heads: BinaryHeap::new(),
            total,
            scratch: scratch.to_path_buf(),
        };
        for index in 0..sorted.runs.len() {
            sorted.advance(index)?;
        }
        Ok(sorted)
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

/// Builds `prefix` + `rest` in `buffer`; None if it does not fit.
fn prefixed<'a>(buffer: &'a mut [u8], prefix: &[u8], rest: &[u8]) -> Option<&'a [u8]> {
    let length = prefix.len() + rest.len();
    let target = buffer.get_mut(..length)?;
    target[..prefix.len()].copy_from_slice(prefix);
    target[prefix.len()..].copy_from_slice(rest);
    Some(target)
}

/// The keys of a database in dump order; see
/// [`KeyStore::fingerprints_by_first_address`].
pub struct SortedKeys {
    runs: Vec<io::Lines<BufReader<File>>>,
    /// The smallest unread entry of each run.
    heads: BinaryHeap<Reverse<(String, String, usize)>>,
    total: usize,
    scratch: PathBuf,
}

impl SortedKeys {
    /// How many keys the listing holds.
    pub fn total(&self) -> usize {
        self.total
    }

    fn advance(&mut self, run: usize) -> Result<(), StoreError> {
        if let Some(line) = self.runs[run].next() {
            let line = line.map_err(|source| StoreError::Scratch {
                path: self.scratch.clone(),
                source,
            })?;
            if let Some((email, fingerprint)) = line.split_once('\t') {
                self.heads
                    .push(Reverse((email.to_string(), fingerprint.to_string(), run)));
            }
        }
        Ok(())
    }
}

impl Iterator for SortedKeys {
    type Item = Result<Fingerprint, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse((_, fingerprint, run)) = self.heads.pop()?;
        if let Err(err) = self.advance(run) {
            return Some(Err(err));
        }
        Some(Fingerprint::parse(&fingerprint).map_err(|err| StoreError::Damaged {
            path: self.scratch.clone(),
            key: fingerprint,
            source: err.into(),
        }))
    }
}

/// keyserv's handle on the database: kept open between writes and used
/// under the lock file's shared lock, one batch of lookups at a time (see
/// the module's notes on sharing). One per worker thread.
pub struct LiveReader {
    path: PathBuf,
    lock_path: PathBuf,
    lock: Option<File>,
    store: Option<KeyStore>,
    generation: u64,
    yield_pending: bool,
}

/// One batch's read access; the shared lock is let go when it is dropped.
pub struct ReadSession<'a> {
    reader: &'a LiveReader,
}

impl ReadSession<'_> {
    /// The database, or None while none exists yet.
    pub fn store(&self) -> Option<&KeyStore> {
        self.reader.store.as_ref()
    }

    /// The write generation the data read in this session belongs to:
    /// anything derived from it stays true until the generation changes.
    pub fn generation(&self) -> u64 {
        self.reader.generation
    }
}

impl Drop for ReadSession<'_> {
    fn drop(&mut self) {
        if let Some(lock) = &self.reader.lock {
            let _ = flock(lock, libc::LOCK_UN);
        }
    }
}

impl LiveReader {
    /// A reader of the database at `path`, opened at its first session.
    pub fn new(path: &Path, lock_path: &Path) -> LiveReader {
        LiveReader {
            path: path.to_path_buf(),
            lock_path: lock_path.to_path_buf(),
            lock: None,
            store: None,
            generation: 0,
            yield_pending: false,
        }
    }

    /// keyreg is about to write (SIGUSR1): before the next session, give
    /// it the time to take the lock, so readers can't keep it out.
    pub fn yield_to_writer(&mut self) {
        self.yield_pending = true;
    }

    /// Closes the handle; the next session reopens it.
    pub fn release(&mut self) {
        self.store = None;
    }

    /// The database's current write generation, read without locking:
    /// answers remembered from this generation are still true.
    pub fn current_generation(&mut self) -> Result<u64, StoreError> {
        if self.lock.is_none() {
            self.lock = Some(open_lock_file(&self.lock_path)?);
        }
        Ok(self.lock.as_ref().map_or(0, read_generation))
    }

    /// Starts a batch's read access: waits (up to `timeout`) for any write
    /// window to end, and reopens the handle if the database was written
    /// since it was opened.
    pub fn begin(&mut self, timeout: Duration) -> Result<ReadSession<'_>, StoreError> {
        let lock = match self.lock.take() {
            Some(lock) => lock,
            None => open_lock_file(&self.lock_path)?,
        };
        let lock = &*self.lock.insert(lock);
        if std::mem::take(&mut self.yield_pending) {
            let started = Instant::now();
            while started.elapsed() < YIELD_LIMIT {
                match flock(lock, libc::LOCK_SH | libc::LOCK_NB) {
                    // The writer has not come yet: let go and give it a moment.
                    Ok(()) => {
                        let _ = flock(lock, libc::LOCK_UN);
                        std::thread::sleep(RETRY_PAUSE);
                    }
                    // The writer holds it (or something is wrong: the wait below says).
                    Err(_) => break,
                }
            }
        }
        lock_polling(lock, libc::LOCK_SH, &self.lock_path, timeout)?;
        let generation = read_generation(lock);
        if self.store.is_none() || generation != self.generation {
            self.store = None;
            self.generation = generation;
            match Gdbm::open(&self.path, OpenMode::ReaderUnlocked) {
                Ok(db) => {
                    self.store = Some(KeyStore {
                        db,
                        path: self.path.clone(),
                        window: None,
                    })
                }
                Err(err) => {
                    let err = StoreError::from(err);
                    if !err.is_missing() {
                        let _ = flock(lock, libc::LOCK_UN);
                        return Err(err);
                    }
                }
            }
        }
        Ok(ReadSession { reader: self })
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
        dir: tempfile::TempDir,
        db: PathBuf,
        lock: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            Fixture {
                db: dir.path().join("keys.gdbm"),
                lock: dir.path().join("keys.gdbm.lock"),
                dir,
            }
        }
        fn writer(&self) -> KeyStore {
            let mut store = KeyStore::open_write(&self.db, &self.lock, TIMEOUT).unwrap();
            store.begin_window().unwrap();
            store
        }
        fn reader(&self) -> KeyStore {
            KeyStore::open_read(&self.db, &self.lock, TIMEOUT).unwrap()
        }
        fn sorted(&self, store: &KeyStore) -> Vec<String> {
            store
                .fingerprints_by_first_address(self.dir.path())
                .unwrap()
                .map(|f| f.unwrap().to_string())
                .collect()
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
            let query = Query::parse(query).unwrap();
            let found = store.record(&query).unwrap().unwrap();
            assert_eq!(found.fingerprint.as_str(), A);
            let mut out = b"USERINFO\n".to_vec();
            assert!(store.append_record(&query, &mut out).unwrap());
            assert_eq!(&out[9..], found.to_text().as_bytes());
        }
        let missing = Query::parse("bob@example.com").unwrap();
        assert!(store.record(&missing).unwrap().is_none());
        let mut out = Vec::new();
        assert!(!store.append_record(&missing, &mut out).unwrap());
        assert!(out.is_empty());
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
        assert_eq!(fx.sorted(&store), [B]);
    }

    #[test]
    fn dump_order_is_by_first_address_across_sorted_runs() {
        let fx = Fixture::new();
        let mut store = fx.writer();
        store.put(&record(B, &["zed@example.com"])).unwrap();
        store.put(&record(A, &["amy@example.com"])).unwrap();
        assert_eq!(fx.sorted(&store), [A, B]);
        let count = SORT_RUN * 2 + 17;
        for n in 0..count {
            let fpr = format!("{:040X}", n * 7919);
            store
                .put(&record(&fpr, &[&format!("u{}@example.org", n * 7919 % 100_003)]))
                .unwrap();
        }
        let sorted = store.fingerprints_by_first_address(fx.dir.path()).unwrap();
        assert_eq!(sorted.total(), count + 2);
        let firsts: Vec<String> = sorted
            .map(|f| store.record(&Query::Fingerprint(f.unwrap())).unwrap().unwrap().users[0].to_string())
            .collect();
        assert_eq!(firsts.len(), count + 2);
        assert!(firsts.windows(2).all(|w| w[0] <= w[1]), "sorted");
    }

    #[test]
    fn writes_need_a_window() {
        let fx = Fixture::new();
        let mut store = KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap();
        let err = store.put(&record(A, &["a@example.com"])).unwrap_err();
        assert!(matches!(err, StoreError::NoWindow { .. }), "{err}");
        store.begin_window().unwrap();
        store.put(&record(A, &["a@example.com"])).unwrap();
        store.end_window().unwrap();
        assert!(store.put(&record(B, &["b@example.com"])).is_err());
    }

    #[test]
    fn a_dump_keeps_the_writer_out() {
        let fx = Fixture::new();
        drop(fx.writer());
        let dump = fx.reader();
        let err = KeyStore::open_write(&fx.db, &fx.lock, Duration::from_millis(50))
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::Busy { .. }), "{err}");
        drop(dump);
        fx.writer();
    }

    #[test]
    fn live_readers_wait_for_the_window_and_see_the_new_data() {
        let fx = Fixture::new();
        let mut live = LiveReader::new(&fx.db, &fx.lock);
        let a = Query::parse("a@example.com").unwrap();
        assert!(live.begin(TIMEOUT).unwrap().store().is_none(), "no database yet");
        let mut store = KeyStore::open_write(&fx.db, &fx.lock, TIMEOUT).unwrap();
        {
            let session = live.begin(TIMEOUT).unwrap();
            assert!(
                session.store().unwrap().record(&a).unwrap().is_none(),
                "the writer is open, readers go on"
            );
        }
        store.begin_window().unwrap();
        let err = live.begin(Duration::from_millis(50)).err().unwrap();
        assert!(matches!(err, StoreError::Busy { .. }), "{err}");
        store.put(&record(A, &["a@example.com"])).unwrap();
        store.end_window().unwrap();
        let session = live.begin(TIMEOUT).unwrap();
        assert!(session.store().unwrap().record(&a).unwrap().is_some(), "reopened");
        drop(session);
        live.yield_to_writer();
        let (in_window, window_open) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            store.begin_window().unwrap();
            in_window.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            store.put(&record(B, &["b@example.com"])).unwrap();
        });
        window_open.recv().unwrap();
        let session = live.begin(TIMEOUT).unwrap();
        let b = Query::parse("b@example.com").unwrap();
        assert!(
            session.store().unwrap().record(&b).unwrap().is_some(),
            "waited for the writer"
        );
        drop(session);
        writer.join().unwrap();
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
