//! Core library of ripem-keyserver.
//!
//! Everything the programs share lives here, in modules named after the
//! domain: [`config`], [`types`] (addresses and fingerprints), [`record`]
//! (the RIPEM text record), [`store`] (the GDBM key database, over the safe
//! [`gdbm`] wrapper), [`spool`] (the mail queues), [`mail`] (reading
//! requests), [`reply`] (sending mail), [`openpgp`] (key checks),
//! [`request`] (add/change/remove), [`registrar`] (keyreg's cycle),
//! [`import`] (`keyreg --import`),
//! [`protocol`] (the UDP lookup protocol), [`server`] (keyserv, over the
//! batched datagram I/O of [`udp`], with the [`ratelimit`] table and the
//! server [`cookie`]s),
//! [`sdnotify`] (readiness for systemd), [`client`] (keylookup, which
//! trusts no server: [`answer_check`]), [`flat`]
//! (the flat keyring), [`daily_record`] (givepubs' once-a-day record) and [`txlog`]
//! (the transaction log). The programs' `main`s only parse flags and call
//! in here; [`cli`] is what they share.
#![warn(missing_docs)]

pub mod answer_cache;
pub mod answer_check;
pub mod atomic;
pub mod cli;
pub mod client;
pub mod config;
pub mod cookie;
pub mod daily_record;
pub mod flat;
pub mod gdbm;
pub mod import;
pub mod journal;
pub mod mail;
pub mod openpgp;
pub mod pidfile;
pub mod protocol;
pub mod ratelimit;
pub mod record;
pub mod registrar;
pub mod reply;
pub mod request;
pub mod sdnotify;
pub mod server;
pub mod signals;
pub mod spool;
pub mod store;
pub mod txlog;
pub mod types;
pub mod udp;
