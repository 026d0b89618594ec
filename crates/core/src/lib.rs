//! Core library of ripem-keyserver.
//!
//! Everything the programs share lives here, in modules named after the
//! domain: [`config`], [`types`] (addresses and fingerprints), [`record`]
//! (the RIPEM text record), [`store`] (the GDBM key database, over the safe
//! [`gdbm`] wrapper), [`spool`] (the mail queues), [`mail`] (reading
//! requests), [`reply`] (sending mail), [`openpgp`] (key checks),
//! [`request`] (add/change/remove), [`protocol`] (the UDP lookup protocol),
//! [`flat`] (the flat keyring) and [`txlog`] (the transaction log).
#![warn(missing_docs)]

pub mod config;
pub mod gdbm;
pub mod record;
pub mod store;
pub mod types;
pub mod mail;
pub mod protocol;
pub mod reply;
pub mod spool;
pub mod txlog;
