//! keyserv's handle on the database: kept open between writes, used under
//! the lock file's shared lock one batch of lookups at a time.
//!
//! The writer never writes the file readers have open: it writes the other
//! file of the pair and switches names (see `pair`) under the lock file
//! held exclusively, bumping the generation. So a reader that begins a
//! batch waits at most for that instant, sees the new generation, and
//! reopens `keys.gdbm` by name; the handle it had stays valid until then.
//! The handle maps the file as well ([`mapped`](super::mapped)), opened
//! under the same shared lock, so both are the same file; lookups read the
//! mapping, which is safe for the same reason: the file it maps is not
//! written while a session is open on it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::locks::{flock, lock_polling, open_lock_file, read_generation, RETRY_PAUSE};
use super::{KeyStore, StoreError};
use crate::gdbm::{Gdbm, OpenMode};

/// How long a reader told that a writer is coming waits for it to take the lock.
const YIELD_LIMIT: Duration = Duration::from_millis(50);

/// keyserv's reader of the database; one per worker thread.
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
                Ok(db) => self.store = Some(KeyStore::reading_mapped(db, &self.path)),
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
