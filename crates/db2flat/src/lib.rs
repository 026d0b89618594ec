//! db2flat: the nightly dump of the key database to the flat keyring
//! ([`flat`]).
#![warn(missing_docs)]

pub mod flat;
