//! The servers' clock: a hybrid logical clock in milliseconds.
//!
//! An update's `Time:` decides first come, first served on every server,
//! so one server's times must never go backwards (a clock stepped back, a
//! restart) and must follow every time it has seen from its peers: a
//! request accepted here after an update from elsewhere was applied is
//! later than it in the one order, whatever the two wall clocks say. So a
//! new time is the wall clock, or one more than the last time issued or
//! seen if that is not earlier. The caller persists [`Clock::last`] with
//! the database so that a restart goes on from it.

use chrono::{DateTime, Utc};

/// A hybrid logical clock (see the [module](self) docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    last: u64,
}

/// Milliseconds since 1970 of a wall-clock time (0 before 1970).
pub fn millis(time: DateTime<Utc>) -> u64 {
    u64::try_from(time.timestamp_millis()).unwrap_or(0)
}

/// The wall-clock time of `ms` milliseconds since 1970.
pub fn time_of(ms: u64) -> DateTime<Utc> {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Clock {
    /// A clock that has issued or seen times up to `last`.
    pub fn starting_at(last: u64) -> Clock {
        Clock { last }
    }

    /// The last time issued or seen.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// A new time, later than every one issued or seen, at wall time `now`.
    pub fn tick(&mut self, now: DateTime<Utc>) -> u64 {
        self.last = millis(now).max(self.last.saturating_add(1));
        self.last
    }

    /// Takes note of a time seen in an update from a peer.
    pub fn observe(&mut self, time_ms: u64) {
        self.last = self.last.max(time_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_back_and_follows_what_it_saw() {
        let now = time_of(1_000_000);
        let mut clock = Clock::starting_at(0);
        assert_eq!(clock.tick(now), 1_000_000);
        assert_eq!(clock.tick(now), 1_000_001, "same wall time: one more");
        assert_eq!(clock.tick(time_of(5)), 1_000_002, "wall clock stepped back");
        clock.observe(2_000_000);
        assert_eq!(clock.tick(now), 2_000_001, "after a peer's later time");
        clock.observe(10);
        assert_eq!(clock.last(), 2_000_001);
        assert_eq!(millis(time_of(123_456)), 123_456);
    }
}
