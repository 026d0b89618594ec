//! keyreg: the only program that writes the key database.
//!
//! A mail's path: [`registrar`] takes the spooled request files a batch at
//! a time (read, apply, commit); [`request`] decides what each asks for
//! (add, change, remove) and applies it first come, first served;
//! [`import`] is `keyreg --import`, the same rules at bulk speed;
//! [`web_notice`] tells the owners of addresses registered from the web;
//! [`replication`] makes every change an update that keysync spreads, and
//! applies the updates of other servers in the one order; [`confirm`]
//! holds new addresses back until their owners confirm them
//! (`policy = "confirm"`). The key
//! checks are `ripem-openpgp`'s, the database `ripem-keydb`'s.
#![warn(missing_docs)]

pub mod confirm;
pub mod error;
pub mod import;
pub mod received;
pub mod registrar;
pub mod replication;
pub mod request;
pub mod web_notice;
