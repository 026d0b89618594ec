//! The writer's pair of files, and how a window is switched in.
//!
//! Readers open `keys.gdbm` (the *active* file), which is never written in
//! place. The writer keeps `keys.gdbm.standby` identical to it between
//! windows and applies each window there. A window ends like this:
//!
//! 1. the window's last write sets `meta:generation` to G+1; the standby is
//!    synced (`fsync`);
//! 2. the window's writes are appended to the apply log and fsynced;
//! 3. with the lock file held exclusively (readers are between batches),
//!    the two names are exchanged in one `renameat2(RENAME_EXCHANGE)`, the
//!    directory is fsynced and the generation in the lock file bumped, so
//!    readers reopen `keys.gdbm` and find the new data;
//! 4. the window's writes are applied again to the file that is now the
//!    standby, which makes it identical again (or, when that is cheaper —
//!    a large import window into a small file — the standby is copied
//!    afresh from the active file).
//!
//! `keys.gdbm.state` says whether the standby is known to be identical to
//! the active file ("clean"), the generation, where the apply log ends, and
//! both files' inode, size and modification time as the writer left them.
//! It is marked dirty (fsynced) before a window's first write and clean
//! after step 4. The writer holds it locked for as long as it is open, so
//! there is one writer. On opening, the writer trusts what it finds only as
//! far as the state file vouches for it: a dirty or unreadable state (a
//! crash) means the standby is copied afresh from the active file and the
//! readers are told to reopen; an apply log longer than the active file's
//! generation (killed between steps 2 and 3) is cut back; a file whose
//! inode, size or time changed behind the writer's back is checked item by
//! item before it is used. A file a dump holds open (db2flat takes GDBM's
//! reader lock) is not taken back as the standby: the writer copies the
//! active file to a new standby instead, and the dump reads on undisturbed.

use std::cell::OnceCell;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::applylog::{ApplyLog, EntryKind, EntryWriter, Op};
use super::{io_error, locks, value, verify, KeyStore, StoreError, GENERATION_KEY};
use crate::gdbm::{Gdbm, OpenMode};
use ripem_core::atomic;
use ripem_core::types::Fingerprint;

/// The files of a database pair, all derived from the database's path.
#[derive(Debug, Clone)]
pub struct PairPaths {
    /// `keys.gdbm`: what readers open.
    pub active: PathBuf,
    /// `keys.gdbm.standby`: what the writer writes.
    pub standby: PathBuf,
    /// `keys.gdbm.state`: the writer's notes, and its lock.
    pub state: PathBuf,
    /// `keys.gdbm.log`: the apply log.
    pub log: PathBuf,
    /// `keys.gdbm.lock`: the readers' lock and the generation.
    pub lock: PathBuf,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl PairPaths {
    /// The files of the database at `database`, with its lock file.
    pub fn new(database: &Path, lock: &Path) -> PairPaths {
        PairPaths {
            active: database.to_path_buf(),
            standby: with_suffix(database, ".standby"),
            state: with_suffix(database, ".state"),
            log: with_suffix(database, ".log"),
            lock: lock.to_path_buf(),
        }
    }

    /// Where a copy is made before it is renamed into place.
    pub(super) fn scratch(&self, what: &str) -> PathBuf {
        with_suffix(&self.active, &format!(".{what}.tmp"))
    }

    fn dir(&self) -> &Path {
        self.active
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    pub(super) fn sync_dir(&self) -> Result<(), StoreError> {
        atomic::sync_dir(self.dir()).map_err(io_error(self.dir()))
    }
}

/// A file as the writer left it: a change behind its back shows here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Stamp {
    inode: u64,
    size: u64,
    modified_ns: i64,
}

impl Stamp {
    fn of(path: &Path) -> Stamp {
        fs::metadata(path).map_or(Stamp::default(), |meta| Stamp {
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
        })
    }
}

/// What `keys.gdbm.state` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    clean: bool,
    generation: u64,
    log_offset: u64,
    active: Stamp,
    standby: Stamp,
}

const STATE_MAGIC: &[u8; 4] = b"RKST";
const STATE_LEN: usize = 128;

impl State {
    fn encode(&self) -> [u8; STATE_LEN] {
        let mut bytes = [0u8; STATE_LEN];
        bytes[..4].copy_from_slice(STATE_MAGIC);
        bytes[4] = u8::from(self.clean);
        let mut fields = vec![self.generation, self.log_offset];
        for stamp in [self.active, self.standby] {
            fields.extend([stamp.inode, stamp.size, stamp.modified_ns as u64]);
        }
        for (index, field) in fields.iter().enumerate() {
            bytes[8 + index * 8..16 + index * 8].copy_from_slice(&field.to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes[..STATE_LEN - 4]);
        bytes[STATE_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8; STATE_LEN]) -> Option<State> {
        let crc = u32::from_le_bytes(bytes[STATE_LEN - 4..].try_into().ok()?);
        if &bytes[..4] != STATE_MAGIC || crc != crc32fast::hash(&bytes[..STATE_LEN - 4]) {
            return None;
        }
        let field =
            |index: usize| u64::from_le_bytes(bytes[8 + index * 8..16 + index * 8].try_into().unwrap_or_default());
        let stamp = |first: usize| Stamp {
            inode: field(first),
            size: field(first + 1),
            modified_ns: field(first + 2) as i64,
        };
        Some(State {
            clean: bytes[4] == 1,
            generation: field(0),
            log_offset: field(1),
            active: stamp(2),
            standby: stamp(5),
        })
    }
}

/// The writer's side of a [`KeyStore`]: the pair, the state file (held
/// locked), and the window under way.
pub(super) struct Writer {
    paths: PairPaths,
    state_file: File,
    log: ApplyLog,
    timeout: Duration,
    window: bool,
    /// The window's writes, kept for its log entry and to replay into the
    /// other file, while they take at most [`WINDOW_MEMORY`] bytes...
    ops: Vec<Op>,
    ops_bytes: usize,
    /// ...and past that written to the log as they come (the other file
    /// is then copied afresh at the switch).
    streaming: Option<EntryWriter>,
    /// [`WINDOW_MEMORY`], but for tests of the streaming path.
    window_memory: usize,
    /// Bytes written since the disk was last asked to catch up, the
    /// threshold ([`WRITEBACK_BYTES`] but for tests), and that request.
    unwritten: usize,
    writeback_bytes: usize,
    writeback: Option<std::thread::JoinHandle<()>>,
    changed: Vec<String>,
    generation: u64,
    log_offset: u64,
}

/// Bytes of a window's writes kept in memory; a larger window (a long
/// import) writes them to its log entry as they come.
const WINDOW_MEMORY: usize = 64 << 20;

/// A long window asks the disk to write out what it has written (the
/// standby and a streamed log entry) every this many bytes, so the fsyncs
/// that close the window do not wait for all of it at once: for an import
/// of 100,000 keys, 800 MB, that wait was 2 s.
const WRITEBACK_BYTES: usize = 64 << 20;

impl Writer {
    pub(super) fn window_open(&self) -> bool {
        self.window
    }

    /// Adds a write made to `standby` (the open GDBM handle) to the
    /// window's log, and every [`WRITEBACK_BYTES`] asks the disk to catch up.
    pub(super) fn logged(&mut self, op: Op, standby: &impl AsFd) -> Result<(), StoreError> {
        self.unwritten += op.size();
        self.log_op(op)?;
        if self.unwritten >= self.writeback_bytes {
            self.unwritten = 0;
            self.start_writeback(standby)?;
        }
        Ok(())
    }

    fn log_op(&mut self, op: Op) -> Result<(), StoreError> {
        if let Some(entry) = &mut self.streaming {
            return entry.push(&op).map_err(io_error(&self.paths.log));
        }
        self.ops_bytes += op.size();
        self.ops.push(op);
        if self.ops_bytes > self.window_memory {
            let mut entry = self.log.begin(self.log_offset).map_err(io_error(&self.paths.log))?;
            for op in self.ops.drain(..) {
                entry.push(&op).map_err(io_error(&self.paths.log))?;
            }
            self.streaming = Some(entry);
        }
        Ok(())
    }

    /// Asks the disk to write out what the window has written so far to
    /// `standby` (the open GDBM handle's file) and to a streamed log
    /// entry, on a thread of its own: the request can block for a good
    /// part of a second on a busy disk, which the window need not wait
    /// for. Skipped while the last request is still under way.
    fn start_writeback(&mut self, standby: &impl AsFd) -> Result<(), StoreError> {
        if self.writeback.as_ref().is_some_and(|request| !request.is_finished()) {
            return Ok(());
        }
        let mut files = vec![File::from(
            standby
                .as_fd()
                .try_clone_to_owned()
                .map_err(io_error(&self.paths.standby))?,
        )];
        if let Some(entry) = &mut self.streaming {
            files.push(entry.flushed_file().map_err(io_error(&self.paths.log))?);
        }
        // Only a head start: the window's closing fsyncs report any error.
        let request = std::thread::spawn(move || {
            for file in files {
                let _ = atomic::start_writeback(&file);
            }
        });
        self.writeback = Some(request);
        Ok(())
    }

    pub(super) fn changed(&mut self, fingerprint: &Fingerprint) {
        self.changed.push(fingerprint.as_str().to_string());
    }

    fn read_state(&self) -> Option<State> {
        let mut bytes = [0u8; STATE_LEN];
        self.state_file.read_exact_at(&mut bytes, 0).ok()?;
        State::decode(&bytes)
    }

    fn write_state(&self, clean: bool) -> Result<(), StoreError> {
        let state = State {
            clean,
            generation: self.generation,
            log_offset: self.log_offset,
            active: Stamp::of(&self.paths.active),
            standby: Stamp::of(&self.paths.standby),
        };
        if self.read_state() == Some(state) {
            return Ok(());
        }
        let io = io_error(&self.paths.state);
        self.state_file
            .write_all_at(&state.encode(), 0)
            .and_then(|()| self.state_file.sync_data())
            .map_err(io)
    }

    /// Takes the writer's lock on the pair.
    pub(super) fn lock(paths: &PairPaths, timeout: Duration) -> Result<File, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&paths.state)
            .map_err(io_error(&paths.state))?;
        locks::lock_polling(&file, libc::LOCK_EX, &paths.state, timeout)?;
        Ok(file)
    }

    /// Makes the standby a fresh copy of the active file, written aside and
    /// renamed into place, so a reader of the old standby is undisturbed.
    pub(super) fn copy_active_to_standby(paths: &PairPaths) -> Result<(), StoreError> {
        let scratch = paths.scratch("standby");
        fs::copy(&paths.active, &scratch).map_err(io_error(&scratch))?;
        File::open(&scratch)
            .and_then(|file| file.sync_all())
            .map_err(io_error(&scratch))?;
        fs::rename(&scratch, &paths.standby).map_err(io_error(&paths.standby))?;
        paths.sync_dir()
    }

    /// Tells readers to reopen `keys.gdbm`, forgetting what they remember.
    pub(super) fn bump_readers(paths: &PairPaths, timeout: Duration) -> Result<(), StoreError> {
        let lock = locks::open_lock_file(&paths.lock)?;
        locks::lock_polling(&lock, libc::LOCK_EX, &paths.lock, timeout)?;
        let bumped = locks::bump_generation(&lock, &paths.lock, None);
        let _ = locks::flock(&lock, libc::LOCK_UN);
        bumped.map(|_| ())
    }

    /// Brings the log in line with the active file's generation: cuts off
    /// what a crash left after it, or starts the log afresh with a base
    /// entry when it can't vouch for the active file.
    fn settle_log(&mut self, state: Option<State>, active: &KeyStore) -> Result<(), StoreError> {
        let generation = self.generation;
        let io = |err| StoreError::Io {
            path: self.log.path().to_path_buf(),
            source: err,
        };
        let end = match state {
            Some(state) if state.generation == generation => Some(state.log_offset),
            Some(state) if state.generation + 1 == generation => self
                .log
                .entry_at(state.log_offset)
                .map_err(io)?
                .filter(|entry| entry.generation == generation)
                .map(|entry| entry.end),
            _ => self.log.end_of_generation(generation).map_err(io)?,
        };
        // A log shorter than it should be (cut or deleted by hand) can't
        // vouch for anything: it starts again from a base entry.
        let size = self.log.size().map_err(io)?;
        self.log_offset = match end.filter(|end| *end <= size) {
            Some(end) => {
                self.log.truncate(end).map_err(io)?;
                end
            }
            None if generation == 0 && size == 0 && active.raw_keys().next().is_none() => 0,
            None => {
                let ops = verify::items(active)?;
                self.log.append(0, EntryKind::Base, generation, &ops).map_err(io)?
            }
        };
        Ok(())
    }

    /// Opening after a crash, or after someone else touched the files:
    /// believes the active file only as far as it checks out, cuts the log
    /// back to it, tells readers to reopen, and copies the standby afresh
    /// unless it too checks out.
    fn settle(&mut self, mut state: Option<State>) -> Result<(), StoreError> {
        let paths = self.paths.clone();
        if !paths.active.exists() {
            if self.log.size().map_err(io_error(&paths.log))? > 0 {
                return Err(StoreError::Damaged {
                    path: paths.active.clone(),
                    key: "(the file)".into(),
                    problem: "missing, though the apply log holds windows".into(),
                });
            }
            create_empty(&paths)?;
            state = None;
        }
        let active = KeyStore::reading(Gdbm::open(&paths.active, OpenMode::ReaderUnlocked)?, &paths.active);
        self.generation = active.generation()?;
        let trusted = state.filter(|state| state.clean && state.generation == self.generation);
        if trusted.is_none() {
            Writer::bump_readers(&paths, self.timeout)?;
        }
        if trusted.is_some_and(|state| state.active != Stamp::of(&paths.active)) {
            verify::check(&active)?;
        }
        self.settle_log(state, &active)?;
        drop(active);
        let standby_ok = trusted.is_some_and(|state| state.standby == Stamp::of(&paths.standby))
            || (trusted.is_some() && standby_verifies(&paths, self.generation));
        if !standby_ok {
            Writer::copy_active_to_standby(&paths)?;
        }
        Ok(())
    }
}

/// Creates an empty database file at `path`, atomically.
pub(super) fn create_empty(paths: &PairPaths) -> Result<(), StoreError> {
    let scratch = paths.scratch("create");
    let _ = fs::remove_file(&scratch);
    drop(Gdbm::open(&scratch, OpenMode::WriterCreate)?);
    File::open(&scratch)
        .and_then(|file| file.sync_all())
        .map_err(io_error(&scratch))?;
    fs::rename(&scratch, &paths.active).map_err(io_error(&paths.active))?;
    paths.sync_dir()
}

/// Exchanges two names atomically; false if the filesystem can't.
fn exchange(a: &Path, b: &Path) -> Result<bool, StoreError> {
    let c = |path: &Path| std::ffi::CString::new(path.as_os_str().as_bytes()).ok();
    let (Some(ca), Some(cb)) = (c(a), c(b)) else {
        return Ok(false);
    };
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let status = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if status == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => Ok(false),
        _ => Err(StoreError::Io {
            path: a.to_path_buf(),
            source: err,
        }),
    }
}

fn apply_ops(db: &mut Gdbm, ops: &[Op]) -> Result<(), StoreError> {
    for op in ops {
        match op {
            Op::Put(key, payload) => db.replace(key, &value::seal(payload))?,
            Op::Delete(key) => {
                db.delete(key)?;
            }
        }
    }
    Ok(db.sync()?)
}

impl KeyStore {
    /// Opens the database as its one writer, waiting up to `timeout` for
    /// another writer, and makes it ready for a window: whatever a crash
    /// left is settled first (see the module's notes). Damage found here
    /// is an error for which [`StoreError::is_damage`] is true: call
    /// [`KeyStore::repair`]. Nothing may be written until
    /// [`KeyStore::begin_window`]; lookups go on meanwhile.
    pub fn open_write(path: &Path, lock_path: &Path, timeout: Duration) -> Result<KeyStore, StoreError> {
        let paths = PairPaths::new(path, lock_path);
        let state_file = Writer::lock(&paths, timeout)?;
        let mut writer = Writer {
            log: ApplyLog::new(&paths.log),
            paths,
            state_file,
            timeout,
            window: false,
            ops: Vec::new(),
            ops_bytes: 0,
            streaming: None,
            window_memory: WINDOW_MEMORY,
            unwritten: 0,
            writeback_bytes: WRITEBACK_BYTES,
            writeback: None,
            changed: Vec::new(),
            generation: 0,
            log_offset: 0,
        };
        let paths = writer.paths.clone();
        for what in ["standby", "create", "rebuild"] {
            let _ = fs::remove_file(paths.scratch(what));
        }
        let state = writer.read_state();
        // The common case: the writer left both files as its state notes,
        // so neither needs opening to be believed.
        let log_size = writer.log.size().map_err(io_error(&paths.log))?;
        let untouched = state.filter(|state| {
            state.clean
                && state.active == Stamp::of(&paths.active)
                && state.standby == Stamp::of(&paths.standby)
                && state.active != Stamp::default()
                && state.log_offset <= log_size
        });
        match untouched {
            Some(state) => {
                writer.generation = state.generation;
                writer.log_offset = state.log_offset;
                writer.log.truncate(state.log_offset).map_err(io_error(&paths.log))?;
            }
            None => writer.settle(state)?,
        }
        let db = open_standby(&paths, timeout)?;
        writer.write_state(true)?;
        Ok(KeyStore {
            db: OnceCell::from(db),
            table: None,
            path: paths.standby.clone(),
            writer: Some(writer),
        })
    }

    /// Opens a write window: from here on writes go to the standby (marked
    /// dirty first, so a crash can't leave it trusted half-written).
    pub fn begin_window(&mut self) -> Result<(), StoreError> {
        let writer = self.writer.as_mut().ok_or_else(|| StoreError::NoWindow {
            path: self.path.clone(),
        })?;
        if !writer.window {
            writer.write_state(false)?;
            writer.window = true;
            writer.ops.clear();
            writer.ops_bytes = 0;
            writer.streaming = None;
            writer.changed.clear();
        }
        Ok(())
    }

    /// Ends the write window, if one is open, switching it in (see the
    /// module's notes); `announce` runs just before the switch (keyreg
    /// tells keyserv, so its workers step aside for the instant).
    pub fn end_window_announced(&mut self, announce: &dyn Fn()) -> Result<(), StoreError> {
        let Some(writer) = self.writer.as_ref().filter(|writer| writer.window) else {
            return Ok(());
        };
        if writer.ops.is_empty() && writer.streaming.is_none() {
            let writer = self.writer.as_mut().ok_or_else(|| StoreError::NoWindow {
                path: self.path.clone(),
            })?;
            writer.window = false;
            return writer.write_state(true);
        }
        let next = writer.generation + 1;
        self.write(GENERATION_KEY, next.to_string().as_bytes())?;
        self.gdbm_mut()?.sync()?;
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let ops = std::mem::take(&mut writer.ops);
        let changed = std::mem::take(&mut writer.changed);
        let paths = writer.paths.clone();
        let streamed = writer.streaming.take();
        let replayable = streamed.is_none();
        let log_end = match streamed {
            Some(entry) => entry.finish(EntryKind::Window, next),
            None => writer.log.append(writer.log_offset, EntryKind::Window, next, &ops),
        }
        .map_err(io_error(&paths.log))?;
        announce();
        let exchanged = switch(&paths, writer.timeout, &changed)?;
        writer.generation = next;
        writer.log_offset = log_end;
        writer.window = false;
        let timeout = writer.timeout;
        // Our handle is on the file now active; take the other one back.
        let replay = exchanged && replayable && !copy_is_cheaper(&paths, ops.len());
        let caught_up = match replay {
            true => open_standby_now(&paths).and_then(|mut db| apply_ops(&mut db, &ops).ok().map(|()| db)),
            false => None,
        };
        self.db = OnceCell::from(match caught_up {
            Some(db) => db,
            None => {
                Writer::copy_active_to_standby(&paths)?;
                open_standby(&paths, timeout)?
            }
        });
        match &self.writer {
            Some(writer) => writer.write_state(true),
            None => Ok(()),
        }
    }

    /// Makes windows stream their writes past `bytes`, and ask the disk to
    /// catch up every quarter of that, for tests.
    #[cfg(test)]
    pub(super) fn stream_windows_past(&mut self, bytes: usize) {
        if let Some(writer) = &mut self.writer {
            writer.window_memory = bytes;
            writer.writeback_bytes = bytes / 4;
        }
    }

    /// Whether the disk was asked to catch up with a window, for tests.
    #[cfg(test)]
    pub(super) fn writeback_requested(&self) -> bool {
        self.writer.as_ref().is_some_and(|writer| writer.writeback.is_some())
    }

    /// [`KeyStore::end_window_announced`] with no one to tell.
    pub fn end_window(&mut self) -> Result<(), StoreError> {
        self.end_window_announced(&|| {})
    }
}

/// Step 3: with readers between batches, the standby becomes `keys.gdbm`.
/// Returns whether the old active file is now the standby (false: the
/// filesystem can't exchange names, and the standby must be copied).
fn switch(paths: &PairPaths, timeout: Duration, changed: &[String]) -> Result<bool, StoreError> {
    let lock = locks::open_lock_file(&paths.lock)?;
    locks::lock_polling(&lock, libc::LOCK_EX, &paths.lock, timeout)?;
    let result = (|| {
        let exchanged = exchange(&paths.standby, &paths.active)?;
        if !exchanged {
            fs::rename(&paths.standby, &paths.active).map_err(io_error(&paths.active))?;
        }
        paths.sync_dir()?;
        locks::bump_generation(&lock, &paths.lock, Some(changed))?;
        Ok(exchanged)
    })();
    let _ = locks::flock(&lock, libc::LOCK_UN);
    result
}

/// Bytes of file a fresh copy costs about as much as replaying one write
/// into GDBM (a hash, a bucket found and rewritten: tens of microseconds,
/// against a kernel copy at a gigabyte or so a second).
const COPY_BYTES_PER_WRITE: u64 = 16 << 10;

/// True when copying the active file costs less than replaying `writes`
/// into the standby: a large import window into a small database.
fn copy_is_cheaper(paths: &PairPaths, writes: usize) -> bool {
    fs::metadata(&paths.active).is_ok_and(|meta| meta.len() < writes as u64 * COPY_BYTES_PER_WRITE)
}

/// The standby opened as GDBM's writer, unless a dump holds it.
fn open_standby_now(paths: &PairPaths) -> Option<Gdbm> {
    Gdbm::open(&paths.standby, OpenMode::WriterCreate).ok()
}

/// The standby opened as GDBM's writer; a dump holding it gets a copy.
fn open_standby(paths: &PairPaths, timeout: Duration) -> Result<Gdbm, StoreError> {
    match Gdbm::open(&paths.standby, OpenMode::WriterCreate) {
        Ok(db) => Ok(db),
        Err(err) if err.is_lock_conflict() => {
            Writer::copy_active_to_standby(paths)?;
            super::open_retrying(&paths.standby, OpenMode::WriterCreate, timeout)
        }
        Err(err) => Err(err.into()),
    }
}

/// True when the standby, changed behind the writer's back, still checks
/// out item by item at the active file's generation.
fn standby_verifies(paths: &PairPaths, generation: u64) -> bool {
    let Ok(db) = Gdbm::open(&paths.standby, OpenMode::ReaderUnlocked) else {
        return false;
    };
    let standby = KeyStore::reading(db, &paths.standby);
    standby.generation().ok() == Some(generation) && verify::check(&standby).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips_and_damage_reads_as_none() {
        let state = State {
            clean: true,
            generation: 42,
            log_offset: 4096,
            active: Stamp {
                inode: 7,
                size: 8,
                modified_ns: 9,
            },
            standby: Stamp::default(),
        };
        let bytes = state.encode();
        assert_eq!(State::decode(&bytes), Some(state));
        let mut damaged = bytes;
        damaged[20] ^= 1;
        assert_eq!(State::decode(&damaged), None);
        assert_eq!(State::decode(&[0; STATE_LEN]), None);
    }
}
