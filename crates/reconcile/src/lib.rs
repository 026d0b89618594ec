//! ripem-reconcile: two keysync peers find which update ids one holds and
//! the other does not, at a cost that follows the number of differences k
//! and grows only with the logarithm of the store's size n.
//!
//! # Design: a hash tree descended only where the two sides differ
//!
//! Each side keeps a [`Summary`]: a 16-ary prefix tree on the ids' hex
//! digits whose nodes hold the count of ids below them and the XOR of those
//! ids (the ids are SHA-256 values, so their XOR is already a good
//! digest, and being order-independent it is kept by touching only the
//! O(log16 n) nodes on an insert's path; no rebuild per session). The
//! initiator sends the root's 16 child summaries; whoever receives a `c`
//! entry compares each child with its own and, for each that differs,
//! sends its own 16 grandchildren (a `c` entry) or, once it holds at most
//! 16 ids there, the ids themselves (an `l` entry), which the other side
//! answers with the exact differences (`h`: ids it holds that the list
//! lacks, `w`: listed ids it lacks). Each message goes one digit deeper, so
//! both sides work at once and a round trip descends two levels.
//!
//! Why not SKS/Hockeypuck's polynomials: they need a bound on k chosen in
//! advance, and fail (and retry deeper) past it; their prefix tree is a
//! separate on-disk structure that drifts from the database; and they
//! refuse to reconcile while it changes. Here nothing is estimated: a
//! descent simply continues where digests differ, whatever k is (k = n,
//! a fresh server, degrades to one `l` per leaf and the `h` stream, i.e.
//! about the cost of listing everything); the summary is not persisted but
//! built from the store's ids at start (a million in well under a second)
//! and updated by keysync on every insert, so it is never out of step with
//! the store, even after a crash; and a session reads the live summary at
//! each step, so ids inserted meanwhile are either seen or found by the
//! next session, and the session still ends (each prefix is sent at most
//! once, one digit longer than the one it answers).
//!
//! # Cost
//!
//! With b = 16 children per node, L = 16 ids per list, a `c` line of
//! C ≈ 16 × (34 + digits of the count) ≈ 600 bytes, an `l` line of about
//! 65 bytes per id, an `h`/`w` line of 67 bytes, n ids and k differences
//! spread over the id space: the descent stops at the depth D where a node
//! holds at most L ids, D ≈ ⌈log16(n / L)⌉ (one more under the fuller
//! nodes). Level d holds min(k, 16^d) differing nodes, so
//!
//! ```text
//! bytes       ≈ Σ_{d<D} min(k, 16^d) · C  +  min(k, 16^D) · 65 · n/16^D  +  67 · k
//!             ≤ k · (C · D + 65 · L + 67)
//! round trips ≈ ⌈(D + 2) / 2⌉ + (messages of a level beyond the first MiB)
//! ```
//!
//! At fixed k each sixteenfold growth of n adds one level: about k · C
//! bytes and half a round trip, logarithmic in n and linear in k. Sending
//! every id instead costs 65 · n bytes of hex and ⌈65 · n / 1 MiB⌉
//! messages. Measured (`reconcile-bench`, release build): k = 10 costs
//! 14.0 kB at n = 10k, 17.1 kB at 100k and 25.3 kB at 1M (3, 3 and 4
//! round trips), against 0.65, 6.5 and 65 MB.
//!
//! # Limits and trust
//!
//! A message is at most 1 MiB and 12,288 ids ([`Limits`]); a `c` is
//! answered whole within one message and a long `h` stream is carried over
//! several. Every entry must answer one the other side sent, in order; a
//! peer that breaks that, repeats itself or stalls gets a typed
//! [`Error`]; nothing recurses on its input, and what a session holds is
//! bounded by the two trees it walks and [`Limits::max_differences`]. The
//! digests are 128 bits of a XOR: collision-free for ids that are honest
//! SHA-256 values, but a peer that grinds ids could make two different
//! sets of its own updates look alike in one subtree, and so keep them out
//! of a repair between two other servers; it could as well withhold them,
//! and flooding (KX `IHAVE`) still carries them.
//!
//! # Framing in KX
//!
//! A message is text lines each ending in `\n`, none starting with `.`,
//! none over [`message::MAX_LINE`] bytes: keysync sends them as a KX
//! command's data lines (with CRLF, dot-stuffing changes nothing) and
//! joins received data lines with `\n` to rebuild the [`Message`].
//!
//! ```
//! use ripem_reconcile::{reconcile, Id, Responder, Summary, Limits};
//!
//! let ours = Summary::from_ids((0..100u8).map(|i| Id([i; 32])));
//! let theirs = Summary::from_ids((1..101u8).map(|i| Id([i; 32])));
//! let mut responder = Responder::new(Limits::default());
//! let outcome = reconcile(&ours, &mut |message| responder.answer(&theirs, &message)).unwrap();
//! assert_eq!(outcome.lacks, [Id([100; 32])]);
//! assert_eq!(outcome.other_lacks, [Id([0; 32])]);
//! assert_eq!(responder.lacks(), [Id([0; 32])]);
//! ```
#![warn(missing_docs)]

pub mod driver;
pub mod error;
pub mod id;
pub mod message;
pub mod session;
mod side;
pub mod summary;

pub use driver::{reconcile, reconcile_within, Outcome, Stats};
pub use error::{DriveError, Error, Malformed};
pub use id::{Id, Prefix};
pub use message::{Limits, Message};
pub use session::{Initiator, Responder};
pub use summary::Summary;
