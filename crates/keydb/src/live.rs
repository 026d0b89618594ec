//! keyserv's handle on the database: kept open between writes, used under
//! the lock file's shared lock one batch of lookups at a time.
//!
//! The writer never writes the file readers have open: it writes the other
//! file of the pair and switches names (see `pair`) under the lock file
//! held exclusively, bumping the generation. So a reader that begins a
//! batch waits at most for that instant, sees the new generation, and
//! reopens `keys.gdbm` by name; the handle it had stays valid until then.
//! Lookups read the file through a mapping ([`mapped`](super::mapped)),
//! made under the same shared lock, which is safe for the same reason: the
//! file it maps is not written while a session is open on it. libgdbm's
//! own handle, which reads GDBM's whole directory when opened (16 MB at a
//! million keys), is opened only when the mapping can't answer.
//!
//! The readers of one database share its mappings ([`Mappings`]): one per
//! file of the pair, kept across switches. A switch then costs a reader a
//! `stat` and a look at the header, not a new mapping whose every page is
//! faulted in again; the writer's changes to a file it maps reach the
//! mapping through the page cache before that file is switched in again.
//! A mapping is dropped once its file is neither `keys.gdbm` nor the
//! standby (the writer copied a fresh standby), so a replaced file's pages
//! are not kept.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::locks::{flock, lock_polling, open_lock_file, read_generation, RETRY_PAUSE};
use super::mapped::{MappedTable, Mapping};
use super::pair::PairPaths;
use super::{io_error, KeyStore, StoreError};
use crate::gdbm::{Gdbm, OpenMode};

/// The mappings a process's readers of one database share (see the
/// module's notes); cloning shares them.
#[derive(Clone, Default)]
pub struct Mappings(Arc<Mutex<Vec<Arc<Mapping>>>>);

impl Mappings {
    /// The table of `file` (the active file, opened under the shared
    /// lock), through the mapping kept for it or a new one; `None` if it
    /// can't be mapped or read (libgdbm then does every read).
    fn table(&self, file: &File, standby: &Path) -> Option<MappedTable> {
        let meta = file.metadata().ok()?;
        let len = usize::try_from(meta.len()).ok()?;
        let standby = fs::metadata(standby).ok();
        let mut maps = self.0.lock().ok()?;
        maps.retain(|map| map.is_of(&meta) || standby.as_ref().is_some_and(|standby| map.is_of(standby)));
        let kept = maps.iter().find(|map| map.is_of(&meta) && map.covers(len)).cloned();
        let map = match kept {
            Some(map) => map,
            None => {
                let map = Arc::new(Mapping::of(file, &meta)?);
                maps.retain(|old| !old.is_of(&meta));
                maps.push(Arc::clone(&map));
                map
            }
        };
        drop(maps);
        MappedTable::over(map, len)
    }

    /// The mappings kept now.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> Vec<Arc<Mapping>> {
        self.0.lock().map(|maps| maps.clone()).unwrap_or_default()
    }
}

/// How long a reader told that a writer is coming waits for it to take the lock.
const YIELD_LIMIT: Duration = Duration::from_millis(50);

/// keyserv's reader of the database; one per worker thread.
pub struct LiveReader {
    path: PathBuf,
    lock_path: PathBuf,
    standby: PathBuf,
    maps: Mappings,
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
    /// A reader of the database at `path`, opened at its first session,
    /// sharing `maps` with the process's other readers of it.
    pub fn new(path: &Path, lock_path: &Path, maps: &Mappings) -> LiveReader {
        LiveReader {
            path: path.to_path_buf(),
            lock_path: lock_path.to_path_buf(),
            standby: PairPaths::new(path, lock_path).standby,
            maps: maps.clone(),
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
            match open_store(&self.path, &self.standby, &self.maps) {
                Ok(store) => self.store = store,
                Err(err) => {
                    let _ = flock(lock, libc::LOCK_UN);
                    return Err(err);
                }
            }
        }
        Ok(ReadSession { reader: self })
    }
}

/// Opens `keys.gdbm` (under the shared lock): mapped, with libgdbm
/// left for when the mapping can't answer, or through libgdbm alone
/// when it can't be mapped. `None` while no database exists.
fn open_store(path: &Path, standby: &Path, maps: &Mappings) -> Result<Option<KeyStore>, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error(path)(err)),
    };
    if let Some(table) = maps.table(&file, standby) {
        return Ok(Some(KeyStore::reading_mapped(table, path)));
    }
    match Gdbm::open(path, OpenMode::ReaderUnlocked) {
        Ok(db) => Ok(Some(KeyStore::reading(db, path))),
        Err(err) => {
            let err = StoreError::from(err);
            match err.is_missing() {
                true => Ok(None),
                false => Err(err),
            }
        }
    }
}
