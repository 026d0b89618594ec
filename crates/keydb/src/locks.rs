//! The lock file beside the database, and the write generation it holds.
//!
//! `keys.gdbm.lock` orders the writer and keyserv's readers: a reader holds
//! it shared while it answers one batch of lookups, and the writer holds it
//! exclusively only for the instant it switches a finished window in (see
//! `pair`). Its first eight bytes are the *write generation*, bumped at
//! every switch, so a reader knows when to reopen the database and which
//! answers it remembered are still true (the change journal says which
//! keys each generation changed). `flock(2)` locks belong to an open file,
//! so each holder opens the file itself.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::StoreError;
use crate::journal;

/// How long to sleep between attempts while another process holds a lock.
pub(super) const RETRY_PAUSE: Duration = Duration::from_micros(200);

pub(super) fn open_lock_file(path: &Path) -> Result<File, StoreError> {
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

/// `flock(2)` on a file we hold open.
pub(super) fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    // SAFETY: the descriptor is open for as long as `file` lives.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Takes a flock (`LOCK_SH` or `LOCK_EX`), polling until `timeout`.
pub(super) fn lock_polling(
    file: &File,
    operation: libc::c_int,
    path: &Path,
    timeout: Duration,
) -> Result<(), StoreError> {
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
pub(super) fn read_generation(file: &File) -> u64 {
    let mut bytes = [0u8; 8];
    match file.read_exact_at(&mut bytes, 0) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => 0,
    }
}

/// Bumps the generation of a lock file held exclusively, after journaling
/// which keys the new generation changed (`None`: unknown, so readers
/// forget every answer they remember).
pub(super) fn bump_generation(file: &File, lock_path: &Path, changed: Option<&[String]>) -> Result<u64, StoreError> {
    let next = read_generation(file).wrapping_add(1);
    let journal = journal::path_for(lock_path);
    let journaled = match changed {
        Some(changed) => journal::append(&journal, next, changed),
        None => match std::fs::remove_file(&journal) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        },
    };
    if let Err(source) = journaled {
        // A reader must not take a journal without this generation for
        // complete: without the file it forgets everything instead.
        let _ = std::fs::remove_file(&journal);
        return Err(StoreError::Lock { path: journal, source });
    }
    file.write_all_at(&next.to_le_bytes(), 0)
        .map_err(|source| StoreError::Lock {
            path: lock_path.to_path_buf(),
            source,
        })?;
    Ok(next)
}
