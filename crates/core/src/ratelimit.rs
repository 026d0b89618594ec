//! Response rate limiting: answers per second per source network.
//!
//! A lookup is a small datagram that can draw a large answer, and a UDP
//! source address can be forged, so keyserv could be used to flood a third
//! party. The limiter caps answers per source network (IPv4 /24, IPv6 /56;
//! see [`udp::source_network`](crate::udp::source_network)) at `rate` per
//! second with bursts of up to `burst`; requests over the limit get no
//! answer. Each network's bucket is kept as one number, its "theoretical
//! arrival time" (the generic cell rate algorithm, equivalent to a token
//! bucket). The table has a fixed number of entries, so memory stays
//! bounded however many sources there are: it is set-associative with a
//! secret hash key, and a network new to a full set takes the entry whose
//! bucket is fullest (which forgets the least). Sets are locked one by one,
//! so workers rarely wait for each other.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Instant;

/// Sets in the table.
const SETS: usize = 4096;
/// Entries per set: the table remembers `SETS × WAYS` networks.
const WAYS: usize = 4;

#[derive(Clone, Copy, Default)]
struct Entry {
    network: u128,
    /// When the bucket is full again, in ns since the limiter's epoch
    /// (0: the entry is unused).
    full_at: u64,
}

/// A fixed-size table of per-network answer budgets.
pub struct RateLimiter {
    /// Nanoseconds one answer costs (1 s / rate).
    interval: u64,
    /// How far ahead of now a bucket may run before answers stop.
    tolerance: u64,
    sets: Box<[Mutex<[Entry; WAYS]>]>,
    hasher: RandomState,
    epoch: Instant,
}

impl RateLimiter {
    /// `rate` answers per second with bursts of `burst` (at least 1);
    /// `None` when `rate` is 0 (limiting off).
    pub fn new(rate: u32, burst: u32) -> Option<RateLimiter> {
        if rate == 0 {
            return None;
        }
        let interval = 1_000_000_000 / u64::from(rate);
        Some(RateLimiter {
            interval,
            tolerance: interval * u64::from(burst.max(1) - 1),
            sets: (0..SETS).map(|_| Mutex::new([Entry::default(); WAYS])).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        })
    }

    /// Whether `network` may have one more answer at `now`; counts it if so.
    pub fn allow(&self, network: u128, now: Instant) -> bool {
        // Offset by one so that 0 can mean "unused".
        let now = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        let set = (self.hasher.hash_one(network) as usize) % SETS;
        let Ok(mut entries) = self.sets[set].lock() else {
            return true;
        };
        let index = match entries.iter().position(|e| e.full_at != 0 && e.network == network) {
            Some(index) => index,
            None => {
                let (stalest, _) = entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.full_at)
                    .unwrap_or((0, &entries[0]));
                entries[stalest] = Entry { network, full_at: now };
                stalest
            }
        };
        let entry = &mut entries[index];
        let start = entry.full_at.max(now);
        if start - now > self.tolerance {
            return false;
        }
        entry.full_at = start + self.interval;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate_per_network() {
        let limiter = RateLimiter::new(10, 5).unwrap();
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
    fn off_at_zero_and_bounded_with_many_networks() {
        assert!(RateLimiter::new(0, 5).is_none());
        let limiter = RateLimiter::new(1, 1).unwrap();
        let now = Instant::now();
        for network in 0..200_000u128 {
            limiter.allow(network, now);
        }
        assert_eq!(limiter.sets.len() * WAYS, SETS * WAYS, "the table never grows");
        // A flooding network seen just now is still limited.
        assert!(limiter.allow(7_000_000, now));
        assert!(!limiter.allow(7_000_000, now));
    }
}
