//! keyserv: real-time key lookups over UDP (port 1611).
//!
//! A datagram's path: [`server`] runs one worker per core on each socket,
//! reading and answering datagrams in batches ([`udp`]); each request is
//! refused by the rate limit table (`ripem_core::ratelimit`) or answered from the
//! [`answer_cache`], else by [`lookup`] from the key database
//! (`ripem-keydb`). The wire format is `ripem_core::protocol`.
#![warn(missing_docs)]

pub mod answer_cache;
pub mod lookup;
pub mod server;
pub mod udp;
