//! Why keyreg could not go on: the one error type of its cycle, its
//! import and its daemon's start, shared by the registrar and
//! the import (so neither depends on the other for it). A request
//! that cannot be applied is not an error here: it is answered, logged,
//! or moved to `spool/failed/`. These are the failures that leave the
//! spool files where they are for the next cycle.

use std::path::PathBuf;

use ripem_core::exit::{self, io_exit_code, ExitStatus};
use ripem_core::pidfile::PidFileError;
use ripem_core::reply::ReplyError;
use ripem_core::spool::SpoolError;
use ripem_keydb::StoreError;

/// Why a cycle could not run; the spool files stay where they are.
#[derive(Debug, thiserror::Error)]
pub enum RegistrarError {
    /// The spool could not be read or changed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The database could not be opened or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// keyserv could not be signalled.
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    /// The mail transport is misconfigured.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// The transaction log could not be written.
    #[error("{path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// An update could not be handed to keysync, or one from it read.
    #[error("{path}: {source}")]
    SyncQueue {
        /// The queue directory.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// Updates received from keysync, or given to replay, could not be
    /// read or removed.
    #[error("{path}: {source}")]
    Inbound {
        /// The directory of received updates, or the file that could
        /// not be removed.
        path: PathBuf,
        /// The system error (naming the file, if one could not be read).
        source: std::io::Error,
    },
    /// A lookup-only replica takes no keys but its peers'.
    #[error("this server ({0}) is a lookup-only replica: it imports nothing (replica = true in [sync])")]
    Replica(String),
    /// An update file to be replayed is not a valid update.
    #[error("{path}: {reason}")]
    BadUpdate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The record of the notices sent for web submissions could not be
    /// read or written.
    #[error("{path}: {source}")]
    NoticeRecord {
        /// The record file.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// The store of addresses waiting for confirmation could not be read
    /// or written.
    #[error("{path}: {source}")]
    Pending {
        /// The entry or its directory.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// The server's key pair (`policy = "confirm"`) could not be read or made.
    #[error("{path}: {reason}")]
    ServerKey {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An import file could not be read.
    #[error("{path}: {source}")]
    Import {
        /// The file.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
}

impl ExitStatus for RegistrarError {
    fn exit_code(&self) -> u8 {
        match self {
            RegistrarError::Spool(inner) => inner.exit_code(),
            RegistrarError::Store(inner) => inner.exit_code(),
            RegistrarError::PidFile(inner) => inner.exit_code(),
            RegistrarError::Reply(inner) => inner.exit_code(),
            RegistrarError::BadUpdate { .. } => exit::DATAERR,
            RegistrarError::Replica(_) => exit::USAGE,
            RegistrarError::ServerKey { .. } => exit::CONFIG,
            RegistrarError::Log { source, .. }
            | RegistrarError::Import { source, .. }
            | RegistrarError::SyncQueue { source, .. }
            | RegistrarError::Inbound { source, .. }
            | RegistrarError::NoticeRecord { source, .. }
            | RegistrarError::Pending { source, .. } => io_exit_code(source, exit::IOERR),
        }
    }
}
