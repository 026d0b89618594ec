//! keysync's errors, each knowing its exit code.

use std::io;
use std::path::PathBuf;

use ripem_core::exit::{self, io_exit_code, ExitStatus};

/// Why keysync stopped or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// The update store is damaged beyond a torn tail.
    #[error("{path}: damaged update store: {problem}")]
    Damaged {
        /// The store file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The TLS key or certificate could not be made or read.
    #[error("{path}: {problem}")]
    Tls {
        /// The key or certificate file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The system error.
        source: io::Error,
    },
    /// A received update could not be handed to keyreg.
    #[error(transparent)]
    Spool(#[from] ripem_core::spool::SpoolError),
    /// The tokio runtime, the signal handlers or the queue watcher could
    /// not be set up.
    #[error("cannot start: {0}")]
    Start(String),
}

impl SyncError {
    /// A closure wrapping an I/O error with the path it happened on.
    pub fn io(path: &std::path::Path) -> impl FnOnce(io::Error) -> SyncError + '_ {
        move |source| SyncError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl ExitStatus for SyncError {
    fn exit_code(&self) -> u8 {
        match self {
            SyncError::Io { source, .. } => io_exit_code(source, exit::IOERR),
            SyncError::Damaged { .. } => exit::DATAERR,
            SyncError::Tls { .. } => exit::CONFIG,
            SyncError::Bind { .. } => exit::UNAVAILABLE,
            SyncError::Spool(err) => err.exit_code(),
            SyncError::Start(_) => exit::OSERR,
        }
    }
}
