//! keyserv's pid file, and how other programs signal keyserv through it.
//!
//! keyserv creates the file, takes an exclusive lock on it and writes its
//! pid once it is ready to answer; the lock lives as long as the process,
//! so a second keyserv refuses to start, and a stale file left by a crash
//! is recognised (nobody holds its lock) and never signalled.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::exit::{self, io_exit_code, ExitStatus};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Why the pid file could not be taken or used.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Another process holds the lock.
    #[error("{path}: already running as pid {pid}")]
    AlreadyRunning {
        /// The pid file.
        path: PathBuf,
        /// The pid written in it (0 if unreadable).
        pid: i32,
    },
    /// A file or signal operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The pid file.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
}

impl ExitStatus for PidFileError {
    fn exit_code(&self) -> u8 {
        match self {
            PidFileError::AlreadyRunning { .. } => exit::TEMPFAIL,
            PidFileError::Io { source, .. } => io_exit_code(source, exit::CANTCREAT),
        }
    }
}

/// A pid file held for the life of the process; removed on drop.
pub struct PidFile {
    lock: Option<Flock<File>>,
    path: PathBuf,
}

fn read_pid(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok().filter(|pid| *pid > 0)
}

impl PidFile {
    /// Creates and locks the pid file and writes our pid into it.
    pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        let io_err = |source: io::Error| PidFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(PidFileError::AlreadyRunning {
                    path: path.to_path_buf(),
                    pid: read_pid(&mut file).unwrap_or(0),
                })
            }
            Err((_, errno)) => return Err(io_err(errno.into())),
        };
        lock.set_len(0).map_err(io_err)?;
        lock.rewind().map_err(io_err)?;
        writeln!(lock, "{}", std::process::id()).map_err(io_err)?;
        lock.sync_all().map_err(io_err)?;
        Ok(PidFile {
            lock: Some(lock),
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Remove the name while still holding the lock, so nobody reads a
        // pid that is about to be gone.
        let _ = std::fs::remove_file(&self.path);
        self.lock.take();
    }
}

/// The pid of the running process holding the pid file, or `None` if none
/// runs (no file, or a stale file nobody holds).
pub fn running_pid(path: &Path) -> Result<Option<i32>, PidFileError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PidFileError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let pid = read_pid(&mut file);
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => Ok(None),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(pid),
        Err((_, errno)) => Err(PidFileError::Io {
            path: path.to_path_buf(),
            source: errno.into(),
        }),
    }
}

/// Fails with [`PidFileError::AlreadyRunning`] if a process holds the pid
/// file: checked before keyserv binds its ports, so that a second keyserv
/// says "already running" rather than "address in use".
pub fn refuse_if_running(path: &Path) -> Result<(), PidFileError> {
    match running_pid(path)? {
        Some(pid) => Err(PidFileError::AlreadyRunning {
            path: path.to_path_buf(),
            pid,
        }),
        None => Ok(()),
    }
}

/// Sends `signal` to the process holding the pid file. Returns whether one
/// was running.
pub fn signal_running(path: &Path, signal: Signal) -> Result<bool, PidFileError> {
    let Some(pid) = running_pid(path)? else {
        return Ok(false);
    };
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(errno) => Err(PidFileError::Io {
            path: path.to_path_buf(),
            source: errno.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_stale_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pid");
        assert_eq!(running_pid(&path).unwrap(), None);
        let held = PidFile::acquire(&path).unwrap();
        assert_eq!(running_pid(&path).unwrap(), Some(std::process::id() as i32));
        match PidFile::acquire(&path) {
            Err(PidFileError::AlreadyRunning { pid, .. }) => {
                assert_eq!(pid, std::process::id() as i32)
            }
            other => panic!("second acquire: {:?}", other.err()),
        }
        drop(held);
        assert!(!path.exists());
        std::fs::write(&path, "999999\n").unwrap();
        assert_eq!(running_pid(&path).unwrap(), None);
        assert!(!signal_running(&path, Signal::SIGUSR1).unwrap());
    }
}
