//! keysync: replication between ripem-keyserver servers.
//!
//! keyreg stays the only writer of the key database. keysync takes the
//! updates keyreg makes locally from `sync/queue/` ([`queue`]), keeps every
//! update ever accepted in an append-only [`store`] numbered by local
//! sequence numbers, and exchanges them with its peers over KX ([`wire`],
//! [`session`]) inside mutually authenticated TLS 1.3 ([`tls`]); an update
//! received from a peer is checked ([`update`]), stored, handed to keyreg
//! through `spool/sync/` and announced to the other peers ([`hub`]).
//! [`peers`] remembers how far each peer has been fetched, [`daemon`] runs
//! the listeners, the dialers and the signals, [`status`] is what
//! `keysync --status` reads. Each connection also reconciles the two
//! stores' sets of ids (`RECON`, then `GETID` for what is missing; the
//! session's `recon` submodule, over `ripem_reconcile`), which is how a
//! restored, fresh or bookkeeping-less server recovers. Rules: an update
//! is fsynced in the store before it is announced or handed on, and a
//! peer's position advances only after what it names is stored, so a
//! crash re-fetches and never skips.

pub mod daemon;
pub mod error;
pub mod hub;
pub mod peers;
pub mod queue;
pub mod session;
pub mod status;
pub mod store;
pub mod tls;
pub mod update;
pub mod wire;

/// One log line on stderr, led by the program's name.
pub fn log(message: &str) {
    eprintln!("keysync: {message}");
}
