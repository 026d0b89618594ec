//! Response rate limiting: answers and bytes per second per source network.
//!
//! A lookup is a small datagram that can draw a large answer, and a UDP
//! source address can be forged, so keyserv could be used to flood a third
//! party. The limiter caps answers per source network (IPv4 /24, IPv6 /56;
//! see [`source_network`]) at `rate` per
//! second with bursts of up to `burst`, and the bytes of those answers at
//! `byte_rate` per second with bursts of `byte_burst`; requests over either
//! limit get no answer. Counting answers alone would let a network draw a
//! full datagram per answer. Each network's two buckets are kept as two
//! numbers, their "theoretical arrival time" (the generic cell rate
//! algorithm, equivalent to a token bucket). An answer's size is known only
//! once it is made, so [`RateLimiter::allow`] admits a request while the
//! byte bucket is not overdrawn and [`RateLimiter::spend`] then charges the
//! answer's bytes: a network can overdraw by one answer, then waits. The
//! table has a fixed number of entries, so memory stays bounded however
//! many sources there are: it is set-associative with a secret hash key,
//! and a network new to a full set takes the entry whose buckets are
//! fullest (which forgets the least). Sets are locked one by one, so
//! workers rarely wait for each other.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

/// Sets in the table.
const SETS: usize = 4096;
/// Entries per set: the table remembers `SETS × WAYS` networks.
const WAYS: usize = 4;

#[derive(Clone, Copy, Default)]
struct Entry {
    network: u128,
    /// When the answer bucket is full again, in ns since the limiter's
    /// epoch (0: the entry is unused).
    full_at: u64,
    /// When the byte bucket is full again, likewise.
    bytes_full_at: u64,
}

impl Entry {
    /// When both buckets are full again: the entry that forgets least.
    fn settled_at(&self) -> u64 {
        self.full_at.max(self.bytes_full_at)
    }
}

/// The limits of a [`RateLimiter`]; a rate of 0 turns its limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Answers per second per network.
    pub rate: u32,
    /// Answers a network may have in a burst (at least 1).
    pub burst: u32,
    /// Bytes of answers per second per network.
    pub byte_rate: u64,
    /// Bytes a network may have in a burst.
    pub byte_burst: u64,
}

/// A fixed-size table of per-network answer and byte budgets.
pub struct RateLimiter {
    /// Nanoseconds one answer costs (1 s / rate; 0 when answers are not limited).
    interval: u64,
    /// How far ahead of now the answer bucket may run before answers stop.
    tolerance: u64,
    /// Bytes per second (0: bytes are not limited).
    byte_rate: u64,
    /// How far ahead of now the byte bucket may run before answers stop.
    byte_tolerance: u64,
    sets: Box<[Mutex<[Entry; WAYS]>]>,
    hasher: RandomState,
    epoch: Instant,
}

impl RateLimiter {
    /// A limiter for `limits`; `None` when both rates are 0 (limiting off).
    pub fn new(limits: Limits) -> Option<RateLimiter> {
        if limits.rate == 0 && limits.byte_rate == 0 {
            return None;
        }
        let interval = match limits.rate {
            0 => 0,
            rate => 1_000_000_000 / u64::from(rate),
        };
        let mut limiter = RateLimiter {
            interval,
            tolerance: interval * u64::from(limits.burst.max(1) - 1),
            byte_rate: limits.byte_rate,
            byte_tolerance: 0,
            sets: (0..SETS).map(|_| Mutex::new([Entry::default(); WAYS])).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        };
        limiter.byte_tolerance = limiter.byte_cost(limits.byte_burst);
        Some(limiter)
    }

    /// Nanoseconds `bytes` cost in the byte bucket.
    fn byte_cost(&self, bytes: u64) -> u64 {
        match self.byte_rate {
            0 => 0,
            rate => u64::try_from(u128::from(bytes) * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX / 4),
        }
    }

    /// Nanoseconds since the epoch, offset by one so that 0 can mean "unused".
    fn clock(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX / 2) + 1
    }

    /// Runs `f` on `network`'s entry, taking one for it if it has none.
    fn with_entry<T>(&self, network: u128, now: u64, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let set = (self.hasher.hash_one(network) as usize) % SETS;
        let mut entries = self.sets[set].lock().ok()?;
        let index = match entries.iter().position(|e| e.full_at != 0 && e.network == network) {
            Some(index) => index,
            None => {
                let (stalest, _) = entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.settled_at())
                    .unwrap_or((0, &entries[0]));
                entries[stalest] = Entry {
                    network,
                    full_at: now,
                    bytes_full_at: now,
                };
                stalest
            }
        };
        Some(f(&mut entries[index]))
    }

    /// Whether `network` may have one more answer at `now`: it has answers
    /// left and has not overdrawn its bytes. Counts the answer if so.
    pub fn allow(&self, network: u128, now: Instant) -> bool {
        let now = self.clock(now);
        self.with_entry(network, now, |entry| {
            let start = entry.full_at.max(now);
            // Threads read the clock at their batch's start, so `now` may
            // lag an entry another thread just made by microseconds: with
            // bytes not limited (no tolerance at all) that lag alone must
            // not refuse an answer.
            let bytes_overdrawn = self.byte_rate != 0 && entry.bytes_full_at.max(now) - now > self.byte_tolerance;
            if start - now > self.tolerance || bytes_overdrawn {
                return false;
            }
            entry.full_at = start + self.interval;
            true
        })
        .unwrap_or(true)
    }

    /// Whether `network` has overdrawn its bytes at `now`: a request
    /// [`RateLimiter::allow`] admitted is answered only if not (the
    /// answers admitted with it may have spent the bytes since).
    pub fn overdrawn(&self, network: u128, now: Instant) -> bool {
        if self.byte_rate == 0 {
            return false;
        }
        let now = self.clock(now);
        self.with_entry(network, now, |entry| {
            entry.bytes_full_at.max(now) - now > self.byte_tolerance
        })
        .unwrap_or(false)
    }

    /// Charges `bytes` of an answer sent to `network` at `now`.
    pub fn spend(&self, network: u128, bytes: usize, now: Instant) {
        if self.byte_rate == 0 {
            return;
        }
        let now = self.clock(now);
        let cost = self.byte_cost(bytes as u64);
        self.with_entry(network, now, |entry| {
            entry.bytes_full_at = entry.bytes_full_at.max(now).saturating_add(cost);
        });
    }
}

/// The source network a peer belongs to for rate limiting: IPv4 /24 or
/// IPv6 /56 (an IPv4-mapped IPv6 address counts as IPv4), as one number.
pub fn source_network(peer: &SocketAddr) -> u128 {
    let ip = match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4) & 0xFFFF_FF00),
        IpAddr::V6(v6) => (u128::from(v6) & !((1u128 << 72) - 1)) | 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn answers(rate: u32, burst: u32) -> Limits {
        Limits {
            rate,
            burst,
            byte_rate: 0,
            byte_burst: 0,
        }
    }

    #[test]
    fn burst_then_rate_per_network() {
        let limiter = RateLimiter::new(answers(10, 5)).unwrap();
        let start = Instant::now();
        let allowed = (0..100).filter(|_| limiter.allow(1, start)).count();
        assert_eq!(allowed, 5, "the burst");
        assert!(limiter.allow(2, start), "another network has its own budget");
        let later = start + Duration::from_millis(1000);
        let allowed = (0..100).filter(|_| limiter.allow(1, later)).count();
        assert_eq!(allowed, 5, "refilled at 10/s, capped at the burst");
        let soon = later + Duration::from_millis(100);
        assert_eq!((0..100).filter(|_| limiter.allow(1, soon)).count(), 1);
    }

    #[test]
    fn a_thread_whose_clock_lags_by_microseconds_is_not_refused() {
        // One worker makes the network's entry with its batch's time; the
        // next, whose batch began a moment earlier, asks with that time.
        let limiter = RateLimiter::new(answers(4, 5)).unwrap();
        let earlier = Instant::now();
        assert!(limiter.allow(7, earlier + Duration::from_micros(5)));
        assert!(
            limiter.allow(7, earlier),
            "bytes are not limited: no byte budget to overdraw"
        );
        assert!(limiter.allow(7, earlier));
    }

    #[test]
    fn off_at_zero_and_bounded_with_many_networks() {
        assert!(RateLimiter::new(answers(0, 5)).is_none());
        let limiter = RateLimiter::new(answers(1, 1)).unwrap();
        let now = Instant::now();
        for network in 0..200_000u128 {
            limiter.allow(network, now);
        }
        assert_eq!(limiter.sets.len() * WAYS, SETS * WAYS, "the table never grows");
        // A flooding network seen just now is still limited.
        assert!(limiter.allow(7_000_000, now));
        assert!(!limiter.allow(7_000_000, now));
    }

    #[test]
    fn bytes_are_limited_as_well_as_answers() {
        // 10,000 bytes/s with bursts of 20,000; answers all but unlimited.
        let limits = Limits {
            rate: 1000,
            burst: 1000,
            byte_rate: 10_000,
            byte_burst: 20_000,
        };
        let limiter = RateLimiter::new(limits).unwrap();
        let start = Instant::now();
        let mut answered = 0;
        while limiter.allow(1, start) {
            limiter.spend(1, 6_000, start);
            answered += 1;
            assert!(answered < 100, "never stops");
        }
        assert_eq!(answered, 4, "20,000 bytes of burst, overdrawn by one answer");
        assert!(limiter.allow(2, start), "another network has its own budget");
        assert!(limiter.overdrawn(1, start) && !limiter.overdrawn(2, start));
        // 24,000 bytes spent: the bucket is back under its burst after
        // 0.4 s, and admits again.
        assert!(!limiter.allow(1, start + Duration::from_millis(300)));
        assert!(limiter.allow(1, start + Duration::from_millis(500)));
        // Bytes alone can be limited; small answers then go on and on.
        let bytes_only = RateLimiter::new(Limits { rate: 0, ..limits }).unwrap();
        for _ in 0..5000 {
            assert!(bytes_only.allow(3, start));
            bytes_only.spend(3, 1, start);
        }
    }

    #[test]
    fn networks_are_slash_24_and_slash_56() {
        let net = |s: &str| source_network(&s.parse().unwrap());
        assert_eq!(net("127.0.0.2:1"), net("127.0.0.3:9"));
        assert_ne!(net("127.0.0.2:1"), net("127.0.1.2:1"));
        assert_eq!(net("[::ffff:127.0.0.9]:1"), net("127.0.0.2:1"));
        assert_eq!(net("[2001:db8:0:ab::1]:1"), net("[2001:db8:0:ff::2]:1"));
        assert_ne!(net("[2001:db8:0:100::1]:1"), net("[2001:db8:0:200::1]:1"));
    }
}
