//! hkpd: the key server's web side — HKP (`gpg --recv-keys`,
//! `--search-keys`, `--send-keys`), WKD (`gpg --locate-keys`) and Hagrid's
//! VKS API — over HTTP, or HTTPS with `tls_cert`/`tls_key`.
//!
//! It reads the key database the way keyserv does ([`keys`]) and never
//! writes it: a submitted key is checked and written into the spool as a
//! request ([`submit`]), and keyreg, the only writer, registers it. What
//! a client asks for is read once into a [`search::Search`]; [`routes`]
//! answers each request, [`index`] formats keys and indexes, [`wkd`] knows
//! WKD's hashes and paths, [`service`] is what one request is answered
//! with (replaced whole on SIGHUP), and [`server`] runs the listeners with their
//! limits, signals and pid file.
#![warn(missing_docs)]

pub mod error;
pub mod index;
pub mod keys;
pub mod routes;
pub mod search;
pub mod server;
pub mod service;
pub mod submit;
pub mod wkd;

/// Logs one line on stderr, prefixed with the program name.
pub fn log(line: &str) {
    eprintln!("hkpd: {line}");
}
