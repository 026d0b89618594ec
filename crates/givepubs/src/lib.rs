//! givepubs: the flat keyring by mail ([`answer`]), at most once a day to
//! one address ([`daily_record`]).
#![warn(missing_docs)]

pub mod answer;
pub mod daily_record;
