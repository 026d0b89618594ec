//! Why hkpd could not start, each with its exit code.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use ripem_core::exit::{self, ExitStatus};
use ripem_core::pidfile::PidFileError;
use ripem_core::spool::SpoolError;

/// Why hkpd could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum HkpdError {
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The system error (e.g. address in use).
        source: io::Error,
    },
    /// No listening address was given.
    #[error("no address to listen on")]
    NoListen,
    /// The TLS certificate or key could not be used.
    #[error("TLS: {path}: {message}")]
    Tls {
        /// The certificate or key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The pid file is held by another hkpd, or can't be written.
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    /// The spool's directories could not be made.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(nix::Error),
    /// The async runtime could not be started.
    #[error("starting the runtime: {0}")]
    Runtime(io::Error),
}

impl ExitStatus for HkpdError {
    fn exit_code(&self) -> u8 {
        match self {
            HkpdError::Bind { .. } => exit::UNAVAILABLE,
            HkpdError::NoListen | HkpdError::Tls { .. } => exit::CONFIG,
            HkpdError::PidFile(inner) => inner.exit_code(),
            HkpdError::Spool(inner) => inner.exit_code(),
            HkpdError::Signals(_) | HkpdError::Runtime(_) => exit::OSERR,
        }
    }
}
