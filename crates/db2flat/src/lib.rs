//! db2flat: the nightly dump of the key database to the flat keyring
//! ([`flat`]), and with `--wkd` a static Web Key Directory ([`wkd`]).
#![warn(missing_docs)]

pub mod flat;
pub mod wkd;
