//! The queues between keyreg and keysync.
//!
//! Outbound, `sync/queue/`: each update made here is written to `tmp/`
//! (fsynced) inside the write window that applies it, and renamed into
//! `new/` only once the window is switched in, so keysync never announces
//! an update the database does not hold. A file left in `tmp/` by a crash
//! is settled by the next writer ([`Outbound::settle`]): renamed if its
//! update is in the database (the window was switched in), deleted if not
//! (the request is still spooled and makes its update again). Inbound,
//! `spool/sync/new/`: the updates keysync received from peers, one file
//! each, named by its id; each is deleted only after the window that
//! applied it is switched in.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ripem_core::atomic::sync_dir;
use ripem_keydb::KeyDb;
use ripem_update::Update;

use super::log;

/// `sync/queue/` under the state directory.
#[derive(Debug, Clone)]
pub struct Outbound {
    tmp: PathBuf,
    new: PathBuf,
}

fn with_path(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |err| io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// Whether a file name is an update id (64 lower-case hex digits).
fn is_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Outbound {
    /// The queue under `state_dir`, creating its directories and those of
    /// the inbound queue under `spool_dir`.
    pub fn new(state_dir: &Path, spool_dir: &Path) -> io::Result<Outbound> {
        let root = state_dir.join("sync").join("queue");
        let queue = Outbound {
            tmp: root.join("tmp"),
            new: root.join("new"),
        };
        let inbound = spool_dir.join("sync");
        for dir in [&queue.tmp, &queue.new, &inbound.join("tmp"), &inbound.join("new")] {
            fs::create_dir_all(dir).map_err(with_path(dir))?;
        }
        Ok(queue)
    }

    /// The queue's directory, for error messages.
    pub fn dir(&self) -> &Path {
        self.tmp.parent().unwrap_or(&self.tmp)
    }

    /// Writes `update` to `tmp/`, fsynced (inside its write window).
    pub fn stage(&self, update: &Update) -> io::Result<()> {
        let path = self.tmp.join(update.id());
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&path)
            .map_err(with_path(&path))?;
        file.write_all(update.to_bytes()).map_err(with_path(&path))?;
        file.sync_all().map_err(with_path(&path))
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

    /// Hands every staged update to keysync (after its window was switched in).
    pub fn release(&self) -> io::Result<usize> {
        let staged = self.staged()?;
        for name in &staged {
            self.release_one(name)?;
        }
        if !staged.is_empty() {
            sync_dir(&self.new)?;
        }
        Ok(staged.len())
    }

    /// Settles what a crash left in `tmp/` (see the [module](self) docs);
    /// called by the writer before it begins a window.
    pub fn settle<D: KeyDb>(&self, db: &D) -> Result<usize, SettleError<D::Error>> {
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

/// The updates waiting in `spool/sync/new/`, at most `limit`, in name order.
pub fn inbound(spool_dir: &Path, limit: usize) -> io::Result<Vec<Inbound>> {
    inbound_dir(&spool_dir.join("sync").join("new"), limit)
}

/// The update files in `dir` (dot files aside), at most `limit`, in name order.
pub fn inbound_dir(dir: &Path, limit: usize) -> io::Result<Vec<Inbound>> {
    let dir = dir.to_path_buf();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(with_path(&dir)(err)),
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
