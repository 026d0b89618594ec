//! The queues between keyreg and keysync.
//!
//! Outbound, `sync/queue/`: the updates made here are appended, as they
//! are made inside a write window, to a batch in `tmp/` (the form is
//! [`ripem_update::BatchWriter`]'s; a file is named by its first update's
//! id and holds about [`BATCH_BYTES`]). Each batch is fsynced before its
//! window is switched in, and renamed into `new/` only after, so keysync
//! never announces an update the database does not hold; one file per
//! batch, not per update, which an import of many keys would otherwise
//! spend most of its time on. A full batch is only closed, its writeback
//! started (`sync_file_range`); the window's batches are all fsynced at
//! its end, when the disk has mostly written them, so an import does not
//! wait for the disk every [`BATCH_BYTES`]. A file left in `tmp/` by a crash
//! is settled by the next writer ([`Outbound::settle`]): renamed if its
//! first update is in the database (its window was switched in, so the
//! whole batch is there and was synced), deleted if not (the requests are
//! still spooled and make their updates again). Inbound,
//! `spool/sync/new/`: the updates keysync received from peers, one file
//! each, named by its id; each is deleted only after the window that
//! applied it is switched in.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ripem_core::atomic::{start_writeback, sync_dir};
use ripem_keydb::{KeyDb, KeyStore};
use ripem_update::{BatchWriter, Clock, Update};

use super::log;
use crate::error::RegistrarError;

/// A batch is sealed and a new one begun once it holds this many bytes.
pub const BATCH_BYTES: u64 = 4 << 20;

/// `sync/queue/` under the state directory.
#[derive(Debug)]
pub struct Outbound {
    tmp: PathBuf,
    new: PathBuf,
    /// The window's batches: the one being written, and those closed.
    batches: Mutex<Batches>,
}

/// A window's batches, not yet synced.
#[derive(Debug, Default)]
struct Batches {
    open: Option<OpenBatch>,
    closed: Vec<(PathBuf, File)>,
}

#[derive(Debug)]
struct OpenBatch {
    path: PathBuf,
    writer: BatchWriter<BufWriter<File>>,
}

fn with_path(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |err| io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// Whether a file name is an update id (64 lower-case hex digits).
fn is_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Outbound {
    /// The queue under `state_dir`, creating its directories.
    pub fn new(state_dir: &Path) -> io::Result<Outbound> {
        let root = state_dir.join("sync").join("queue");
        let queue = Outbound {
            tmp: root.join("tmp"),
            new: root.join("new"),
            batches: Mutex::new(Batches::default()),
        };
        for dir in [&queue.tmp, &queue.new] {
            fs::create_dir_all(dir).map_err(with_path(dir))?;
        }
        Ok(queue)
    }

    /// The queue's directory, for error messages.
    pub fn dir(&self) -> &Path {
        self.tmp.parent().unwrap_or(&self.tmp)
    }

    /// A failure of this queue, as keyreg reports it (naming the directory).
    pub fn error(&self, source: io::Error) -> RegistrarError {
        RegistrarError::SyncQueue {
            path: self.dir().to_path_buf(),
            source,
        }
    }

    /// Switches the write window in and hands its updates to keysync, in
    /// the order the hand-off needs: the clock saved inside the window, the
    /// open batch sealed before the switch, the batches released after it.
    /// `announce` tells keyserv the switch is coming.
    pub fn switch_in(&self, store: &mut KeyStore, clock: &Clock, announce: &dyn Fn()) -> Result<(), RegistrarError> {
        log::save_clock(store, clock)?;
        self.seal().map_err(|source| self.error(source))?;
        store.end_window_announced(announce)?;
        self.release().map_err(|source| self.error(source))?;
        Ok(())
    }

    fn batches(&self) -> MutexGuard<'_, Batches> {
        // A panic while writing leaves batches that settle() clears.
        self.batches.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `update` to the open batch in `tmp/` (inside its write
    /// window), beginning one if none is open.
    pub fn stage(&self, update: &Update) -> io::Result<()> {
        let mut batches = self.batches();
        let batch = match &mut batches.open {
            Some(batch) => batch,
            None => {
                let path = self.tmp.join(update.id());
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o640)
                    .open(&path)
                    .map_err(with_path(&path))?;
                let writer = BatchWriter::new(BufWriter::with_capacity(1 << 20, file)).map_err(with_path(&path))?;
                batches.open.insert(OpenBatch { path, writer })
            }
        };
        batch.writer.push(update.to_bytes()).map_err(with_path(&batch.path))?;
        if batch.writer.bytes() >= BATCH_BYTES {
            if let Some(full) = batches.open.take() {
                let (path, file) = close(full)?;
                start_writeback(&file).map_err(with_path(&path))?;
                batches.closed.push((path, file));
            }
        }
        Ok(())
    }

    /// Flushes and fsyncs the window's batches: called before the window
    /// is switched in, so a batch whose updates the database holds is whole.
    pub fn seal(&self) -> io::Result<()> {
        let mut batches = self.batches();
        if let Some(open) = batches.open.take() {
            let closed = close(open)?;
            batches.closed.push(closed);
        }
        for (path, file) in batches.closed.drain(..) {
            file.sync_all().map_err(with_path(&path))?;
        }
        Ok(())
    }

    fn staged(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.tmp).map_err(with_path(&self.tmp))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if is_id(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn release_one(&self, name: &str) -> io::Result<()> {
        let from = self.tmp.join(name);
        fs::rename(&from, self.new.join(name)).map_err(with_path(&from))
    }

    /// Hands every staged batch to keysync (after its window was switched in).
    pub fn release(&self) -> io::Result<usize> {
        self.seal()?;
        let staged = self.staged()?;
        for name in &staged {
            self.release_one(name)?;
        }
        if !staged.is_empty() {
            sync_dir(&self.new)?;
        }
        Ok(staged.len())
    }

    /// Settles what a crash (or a window given up) left in `tmp/` (see
    /// the [module](self) docs); called by the writer before it begins a
    /// window.
    pub fn settle<D: KeyDb>(&self, db: &D) -> Result<usize, SettleError<D::Error>> {
        *self.batches() = Batches::default();
        let mut released = 0;
        for name in self.staged().map_err(SettleError::Io)? {
            if log::has_update(db, &name).map_err(SettleError::Store)? {
                self.release_one(&name).map_err(SettleError::Io)?;
                released += 1;
            } else {
                let path = self.tmp.join(&name);
                fs::remove_file(&path).map_err(|err| SettleError::Io(with_path(&path)(err)))?;
            }
        }
        if released > 0 {
            sync_dir(&self.new).map_err(SettleError::Io)?;
        }
        Ok(released)
    }
}

/// Flushes `batch` to its file, which it gives back unsynced.
fn close(batch: OpenBatch) -> io::Result<(PathBuf, File)> {
    let OpenBatch { path, writer } = batch;
    match writer.into_inner().into_inner() {
        Ok(file) => Ok((path, file)),
        Err(err) => Err(with_path(&path)(err.into_error())),
    }
}

/// Why settling the outbound queue failed.
#[derive(Debug, thiserror::Error)]
pub enum SettleError<E: std::error::Error + 'static> {
    /// A queue file could not be handled.
    #[error("{0}")]
    Io(io::Error),
    /// The database could not be read.
    #[error("{0}")]
    Store(E),
}

/// One update received from a peer, waiting in `spool/sync/new/`.
#[derive(Debug)]
pub struct Inbound {
    /// Its file.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// The update files in `dir` (dot files aside), at most `limit`, in name
/// order. An error on a file names it; one on `dir` itself does not (the
/// caller names the directory).
pub fn inbound_dir(dir: &Path, limit: usize) -> io::Result<Vec<Inbound>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    let mut found = Vec::new();
    for path in paths.into_iter().take(limit) {
        match read_bounded(&path) {
            Ok(bytes) => found.push(Inbound { path, bytes }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(with_path(&path)(err)),
        }
    }
    Ok(found)
}

/// Reads at most one byte more than an update may have, so a huge file
/// costs no more than a refused one.
fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let limit = ripem_update::MAX_UPDATE_BYTES as u64 + 1;
    io::Read::read_to_end(&mut io::Read::take(File::open(path)?, limit), &mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ripem_keydb::MemoryDb;
    use ripem_update::{BatchReader, Fields, Kind};

    fn update(n: u64, key_bytes: usize) -> Update {
        let fingerprint = "A".repeat(40).parse().expect("fingerprint");
        let mut fields = Fields::new(Kind::Merge, "a.example.org", 1_000 + n, fingerprint);
        fields.key = Some("k".repeat(key_bytes));
        Update::new(fields).expect("update")
    }

    fn entries(path: &Path) -> Vec<String> {
        let reader = BatchReader::new(io::BufReader::new(File::open(path).unwrap()), 1 << 20);
        reader.map(|entry| ripem_update::id_of(&entry.unwrap())).collect()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_window_s_updates_go_out_in_batches_of_about_batch_bytes() {
        let state = tempfile::tempdir().unwrap();
        let queue = Outbound::new(state.path()).unwrap();
        // Under the 1 MiB an update may have: five fill a batch.
        let big = BATCH_BYTES as usize / 5 + 10_000;
        let made: Vec<Update> = (0..7).map(|n| update(n, big)).collect();
        for update in &made {
            queue.stage(update).unwrap();
        }
        assert!(names(&queue.new).is_empty(), "nothing is handed over before the switch");
        queue.seal().unwrap();
        assert_eq!(queue.release().unwrap(), 2);
        let first: Vec<String> = made[..5].iter().map(|u| u.id().to_string()).collect();
        let rest: Vec<String> = made[5..].iter().map(|u| u.id().to_string()).collect();
        let mut expected = vec![first[0].clone(), rest[0].clone()];
        expected.sort();
        assert_eq!(names(&queue.new), expected);
        assert_eq!(entries(&queue.new.join(&first[0])), first);
        assert_eq!(entries(&queue.new.join(&rest[0])), rest);
        assert!(names(&queue.tmp).is_empty());
    }

    #[test]
    fn settling_releases_what_the_database_holds_and_deletes_the_rest() {
        let state = tempfile::tempdir().unwrap();
        let queue = Outbound::new(state.path()).unwrap();
        let mut db = MemoryDb::default();
        let (kept, lost) = (update(1, 10), update(2, 10));
        queue.stage(&kept).unwrap();
        queue.seal().unwrap();
        log::store(&mut db, &kept).unwrap();
        // A window given up (or a crash) with its batch still open.
        queue.stage(&lost).unwrap();
        assert_eq!(queue.settle(&db).unwrap(), 1);
        assert_eq!(names(&queue.new), vec![kept.id().to_string()]);
        assert!(names(&queue.tmp).is_empty());
        assert_eq!(queue.release().unwrap(), 0, "the given-up batch is gone");
    }
}
