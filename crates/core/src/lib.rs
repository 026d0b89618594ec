//! The shared core of ripem-keyserver: what several of its programs use.
//!
//! [`config`] (`keyserver.toml`), [`types`] (addresses, fingerprints,
//! queries), [`record`] (the RIPEM text record), [`spool`] (the mail
//! queues) with [`atomic`] file writes, [`mail`] (reading a request mail)
//! and [`reply`] (sending mail), [`txlog`] (the transaction log),
//! [`protocol`] (the UDP lookup protocol's wire format) with the server
//! [`cookie`]s, [`ratelimit`] (requests per source network, for keyserv
//! and hkpd), [`wkd`] (Web Key Directory names), and what every daemon's `main` needs: [`cli`] (flags,
//! [`exit`] codes), [`pidfile`], [`signals`] and [`sdnotify`].
//!
//! The rules live elsewhere, each in its own crate: the OpenPGP checks in
//! `ripem-openpgp`, the key database in `ripem-keydb`, and each program's
//! logic in the crate named after it (`keyreg`, `keyserv`, `keylookup`,
//! `db2flat`, `givepubs`, `hkpd`). Nothing here knows rPGP or GDBM.
#![warn(missing_docs)]

pub mod atomic;
pub mod cli;
pub mod config;
pub mod cookie;
pub mod exit;
pub mod mail;
pub mod pidfile;
pub mod protocol;
pub mod ratelimit;
pub mod record;
pub mod reply;
pub mod sdnotify;
pub mod signals;
pub mod spool;
pub mod txlog;
pub mod types;
pub mod wkd;
