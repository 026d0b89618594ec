//! givepubs: the flat keyring by mail, at most once a day to one address
//! ([`daily_record`]).
#![warn(missing_docs)]

pub mod daily_record;
