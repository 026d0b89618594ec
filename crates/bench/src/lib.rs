//! Benchmarks for ripem-keyserver (`ripem-bench`, run by `scripts/bench`).
//!
//! [`corpus`] generates and caches the keys; [`load`] is the UDP load
//! generator; [`noop`] is the no-op responder keyserv is compared with;
//! [`run`] builds a database and prints every figure; [`sks`] compares
//! `keyreg --import` with SKS's build on the same keyrings; [`recon`]
//! measures a repair by reconciliation between two keysync daemons. Only loopback
//! addresses are used, and every loop is bounded in count and time.

pub mod corpus;
pub mod load;
pub mod noop;
pub mod recon;
pub mod run;
pub mod sks;
