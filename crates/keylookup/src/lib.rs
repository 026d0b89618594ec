//! keylookup: the user's client. [`client`] asks servers in turn, RIPEM
//! style; [`answer_check`] believes an answer only if it carries the key
//! asked for.
#![warn(missing_docs)]

pub mod answer_check;
pub mod client;
