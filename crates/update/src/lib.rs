//! Updates: what one accepted request did, in a form every server can
//! check and apply alike.
//!
//! Servers that keep one registry replicate updates, not databases: each
//! request a server accepts (a registration, a merge, a change, a removal)
//! becomes an [`Update`] with the accepting server's id (`Origin:`), its
//! clock's time ([`Clock`], a hybrid logical clock, so one server's times
//! never go backwards) and an id, SHA-256 over its one canonical text
//! (`form`). A received update is checked as if it had come by mail
//! (`check`) before it is stored, forwarded or applied. Applying is
//! keyreg's: every server applies the updates it holds in one order, by
//! [`Update::order`], so the same set gives the same database everywhere.
//!
//! Files: `form` (the text, parsing, the id), `clock`, `check`, `error`,
//! `batch` (several updates in one file, for keyreg's hand-off to keysync).

mod batch;
mod check;
mod clock;
mod error;
mod form;

pub use batch::{BatchError, BatchReader, BatchWriter, BATCH_HEADER};
pub use check::check;
pub use clock::{millis, time_of, Clock};
pub use error::UpdateError;
pub use form::{id_of, Fields, Kind, Update, MAX_UPDATE_BYTES};

#[cfg(test)]
mod tests;
