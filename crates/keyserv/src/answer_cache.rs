//! keyserv's answers, remembered across lookups and across keyreg's writes.
//!
//! One cache serves every worker thread. It holds the answers that carry
//! the record of the key asked for, by the exact request bytes (a hit needs
//! no parsing and no database), each filed under the fingerprint of the
//! record it carries. Everything in it was read at one write generation.
//! When the database moves to a newer generation, the change journal (see
//! [`ripem_keydb::journal`]) names the records the windows in between
//! wrote, and only the answers carrying those records are forgotten: an
//! address can only change hands through a write of the record that held
//! it, so every other answer is still true. When the journal can't say,
//! everything is forgotten. Answers found one domain level up (RIPEM's
//! fallback) and NOTFOUND answers are never kept: a registration elsewhere
//! can change them without touching any record they name.
//!
//! Memory is bounded by bytes, and a full cache evicts rather than empties:
//! CLOCK (second chance) — a hit marks its entry, and the hand sweeping the
//! slots for room spares a marked entry once, clearing the mark, and
//! evicts the first unmarked one. A hit only sets an atomic flag, so it
//! needs no more than the shared read lock. What gets in is filtered by a
//! [`Doorkeeper`]: an answer is kept only when its request was seen once
//! before, recently. Under lookups spread over a million keys, most
//! answers are never asked for again before they would be evicted; the
//! doorkeeper spares the copy, the allocation and the eviction each would
//! cost, and keeps the hot answers of a skewed load. What isn't kept is
//! read from the database, whose file the page cache holds (see
//! `ripem_keydb`).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use ripem_core::protocol::USERINFO_LINE;
use ripem_keydb::journal::{Changes, JournalReader};

/// Requests longer than this are not cached.
const REQUEST_MAX: usize = 300;
/// Bytes counted per entry besides its request, answer and fingerprint:
/// the slot, the index's entry and copy of the request, the allocations.
const ENTRY_OVERHEAD: usize = 160;
/// A typical entry's size, to size the doorkeeper for the cache.
const TYPICAL_ENTRY: usize = 1600;
/// Doorkeeper bits per entry the cache can hold: at most one bit in eight
/// is set before it is cleared, so a request never seen passes it at most
/// one time in eight.
const DOORKEEPER_BITS_PER_ENTRY: usize = 8;

/// One remembered answer.
#[derive(Debug)]
struct Entry {
    request: Box<[u8]>,
    answer: Box<[u8]>,
    fingerprint: Box<str>,
    /// Set by a hit, cleared by the CLOCK hand passing.
    visited: AtomicBool,
}

impl Entry {
    /// The bytes an entry of these parts counts against the limit.
    fn size_of(request: &[u8], answer: &[u8], fingerprint: &str) -> usize {
        request.len() + answer.len() + fingerprint.len() + ENTRY_OVERHEAD
    }

    fn size(&self) -> usize {
        Entry::size_of(&self.request, &self.answer, &self.fingerprint)
    }
}

/// The answers keyserv remembers; see the module's notes.
#[derive(Debug)]
pub struct AnswerCache {
    generation: Option<u64>,
    journal: JournalReader,
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    by_request: HashMap<Box<[u8]>, usize>,
    by_key: HashMap<Box<str>, Vec<usize>>,
    hand: usize,
    bytes: usize,
    limit: usize,
}

/// The fingerprint of the record a USERINFO answer carries.
fn fingerprint_in(answer: &[u8]) -> Option<&str> {
    answer
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"Fingerprint: "))
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

impl AnswerCache {
    /// An empty cache of at most `limit` bytes, following the journal at
    /// `journal`.
    pub fn new(journal: &Path, limit: usize) -> AnswerCache {
        AnswerCache {
            generation: None,
            journal: JournalReader::new(journal),
            slots: Vec::new(),
            free: Vec::new(),
            by_request: HashMap::new(),
            by_key: HashMap::new(),
            hand: 0,
            bytes: 0,
            limit,
        }
    }

    /// The generation the answers were read at, if any.
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// The answer to `request` if the cache is at `generation` and has it;
    /// a hit marks the entry, so the next sweep spares it.
    pub fn get(&self, generation: u64, request: &[u8]) -> Option<&[u8]> {
        if self.generation != Some(generation) {
            return None;
        }
        let entry = self.slots.get(*self.by_request.get(request)?)?.as_ref()?;
        if !entry.visited.load(Ordering::Relaxed) {
            entry.visited.store(true, Ordering::Relaxed);
        }
        Some(&entry.answer)
    }

    /// Brings the cache to `generation`, forgetting the answers whose
    /// records were written since. Call it with the database's lock file
    /// held shared, so the journal is complete.
    pub fn follow(&mut self, generation: u64) {
        match self.generation {
            Some(current) if current == generation => return,
            Some(current) if current < generation => match self.journal.changes(current, generation) {
                Changes::Keys(keys) => {
                    for key in keys {
                        self.forget(&key);
                    }
                }
                Changes::Unknown => self.clear(),
            },
            _ => self.clear(),
        }
        self.generation = Some(generation);
    }

    /// Forgets everything, and the generation too.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.by_request.clear();
        self.by_key.clear();
        self.hand = 0;
        self.bytes = 0;
        self.generation = None;
    }

    /// Remembers `answer` to `request`, read at `generation`, if it is an
    /// answer that carries the record asked for
    /// ([`crate::lookup::Handled::Found`]) and the cache is still at that
    /// generation; evicts what must go to make room.
    pub fn insert(&mut self, generation: u64, request: &[u8], answer: &[u8]) {
        if self.generation != Some(generation) || request.len() > REQUEST_MAX || !answer.starts_with(USERINFO_LINE) {
            return;
        }
        let Some(fingerprint) = fingerprint_in(answer) else {
            return;
        };
        // Sized before it is built: an answer too large is not copied.
        let size = Entry::size_of(request, answer, fingerprint);
        if size > self.limit {
            return;
        }
        let entry = Entry {
            request: request.into(),
            answer: answer.into(),
            fingerprint: fingerprint.into(),
            visited: AtomicBool::new(false),
        };
        if let Some(&slot) = self.by_request.get(request) {
            self.remove(slot);
        }
        while self.bytes + size > self.limit && self.evict_one() {}
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.by_request.insert(entry.request.clone(), slot);
        self.by_key.entry(entry.fingerprint.clone()).or_default().push(slot);
        self.bytes += size;
        self.slots[slot] = Some(entry);
    }

    /// Moves the CLOCK hand to the first unmarked entry, clearing the marks
    /// it passes, and evicts it; false if the cache is empty.
    fn evict_one(&mut self) -> bool {
        if self.by_request.is_empty() {
            return false;
        }
        // Two turns at most: the first clears every mark.
        for _ in 0..2 * self.slots.len() {
            self.hand = (self.hand + 1) % self.slots.len();
            if let Some(entry) = &self.slots[self.hand] {
                if !entry.visited.swap(false, Ordering::Relaxed) {
                    self.remove(self.hand);
                    return true;
                }
            }
        }
        false
    }

    /// Takes the entry in `slot` out of the cache and its indexes.
    fn remove(&mut self, slot: usize) {
        let Some(entry) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.by_request.remove(&entry.request);
        if let Some(slots) = self.by_key.get_mut(&entry.fingerprint) {
            slots.retain(|&other| other != slot);
            if slots.is_empty() {
                self.by_key.remove(&entry.fingerprint);
            }
        }
        self.bytes -= entry.size();
        self.free.push(slot);
    }

    fn forget(&mut self, fingerprint: &str) {
        for slot in self.by_key.remove(fingerprint).unwrap_or_default() {
            if let Some(entry) = self.slots.get_mut(slot).and_then(Option::take) {
                self.by_request.remove(&entry.request);
                self.bytes -= entry.size();
                self.free.push(slot);
            }
        }
    }

    /// How many answers are kept (tests and figures).
    pub fn len(&self) -> usize {
        self.by_request.len()
    }

    /// Whether no answer is kept.
    pub fn is_empty(&self) -> bool {
        self.by_request.is_empty()
    }
}

/// Which requests were seen recently: a bit per hash of the request, in a
/// table cleared whenever one bit in [`DOORKEEPER_BITS_PER_ENTRY`] has been
/// set, so "recently" is about as many requests as the cache holds
/// answers. Shared by the workers without a lock: a race at worst lets one
/// answer in, or keeps one out.
#[derive(Debug)]
pub struct Doorkeeper {
    bits: Box<[AtomicU64]>,
    set: AtomicUsize,
}

impl Doorkeeper {
    /// A doorkeeper for a cache of `limit` bytes.
    pub fn for_cache(limit: usize) -> Doorkeeper {
        let bits = (limit / TYPICAL_ENTRY * DOORKEEPER_BITS_PER_ENTRY).max(64);
        Doorkeeper {
            bits: (0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            set: AtomicUsize::new(0),
        }
    }

    /// Notes `request`; true if it was noted before, since the last clear.
    pub fn seen_before(&self, request: &[u8]) -> bool {
        let mut hasher = DefaultHasher::new();
        request.hash(&mut hasher);
        let bit = hasher.finish() % (self.bits.len() as u64 * 64);
        let mask = 1u64 << (bit % 64);
        let before = self.bits[(bit / 64) as usize].fetch_or(mask, Ordering::Relaxed);
        if before & mask != 0 {
            return true;
        }
        if self.set.fetch_add(1, Ordering::Relaxed) + 1 >= self.bits.len() * 64 / DOORKEEPER_BITS_PER_ENTRY {
            self.set.store(0, Ordering::Relaxed);
            for word in self.bits.iter() {
                word.store(0, Ordering::Relaxed);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ripem_keydb::journal;

    const A: &str = "AAAA000011112222333344445555666677778888";
    const B: &str = "BBBB000011112222333344445555666677778888";

    fn answer(fingerprint: &str, user: &str) -> Vec<u8> {
        format!("USERINFO\nUser: {user}\nFingerprint: {fingerprint}\nPublicKeyInfo:\n x\n\0").into_bytes()
    }

    /// A cache brought to generation 1 of a fresh journal.
    fn cache_at_generation_1(dir: &tempfile::TempDir) -> (std::path::PathBuf, AnswerCache) {
        let path = dir.path().join("keys.gdbm.journal");
        journal::append(&path, 1, &[]).unwrap();
        let mut cache = AnswerCache::new(&path, 1 << 20);
        cache.follow(1);
        (path, cache)
    }

    #[test]
    fn answers_survive_writes_to_other_records() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut cache) = cache_at_generation_1(&dir);
        cache.insert(1, b"LOOKUSER\nUser: a@x.org\n", &answer(A, "a@x.org"));
        cache.insert(1, b"LOOKUSER\nUser: 0xAAAA", &answer(A, "a@x.org"));
        cache.insert(1, b"LOOKUSER\nUser: b@x.org\n", &answer(B, "b@x.org"));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(1, b"LOOKUSER\nUser: a@x.org\n").is_some());
        assert!(
            cache.get(2, b"LOOKUSER\nUser: a@x.org\n").is_none(),
            "not yet at generation 2"
        );

        journal::append(&path, 2, &[A.to_string()]).unwrap();
        cache.follow(2);
        assert!(cache.get(2, b"LOOKUSER\nUser: a@x.org\n").is_none());
        assert!(cache.get(2, b"LOOKUSER\nUser: 0xAAAA").is_none());
        assert!(cache.get(2, b"LOOKUSER\nUser: b@x.org\n").is_some());

        // Data read at an older generation is not taken.
        cache.insert(1, b"LOOKUSER\nUser: a@x.org\n", &answer(A, "a@x.org"));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_journal_that_cannot_say_empties_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut cache) = cache_at_generation_1(&dir);
        cache.insert(1, b"LOOKUSER\nUser: b@x.org\n", &answer(B, "b@x.org"));
        journal::append(&path, 3, &[A.to_string()]).unwrap();
        cache.follow(3);
        assert!(cache.is_empty(), "generation 2 is missing from the journal");
        assert_eq!(cache.generation(), Some(3));
    }

    #[test]
    fn only_answers_carrying_a_record_are_kept_and_memory_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.gdbm.journal");
        let mut cache = AnswerCache::new(&path, 1000);
        cache.follow(0);
        cache.insert(0, b"LOOKUSER\nUser: c@x.org\n", b"NOTFOUND\nUser: c@x.org\n\0");
        cache.insert(0, b"LOOKUSER\nUser: c@x.org\n", b"USERINFO\nUser: c@x.org\n\0");
        assert!(cache.is_empty());
        for n in 0..20 {
            cache.insert(
                0,
                format!("LOOKUSER\nUser: {n}@x.org\n").as_bytes(),
                &answer(A, "a@x.org"),
            );
            assert!(cache.bytes <= 1000);
        }
        assert!(!cache.is_empty());
        assert_eq!(cache.generation(), Some(0));
        // An answer larger than the whole cache is refused without evicting.
        let held = cache.bytes;
        let huge = answer(A, &format!("{}@x.org", "h".repeat(1000)));
        cache.insert(0, b"LOOKUSER\nUser: huge@x.org\n", &huge);
        assert_eq!(cache.bytes, held);
        assert_eq!(cache.get(0, b"LOOKUSER\nUser: huge@x.org\n"), None);
    }

    #[test]
    fn a_full_cache_evicts_an_answer_not_asked_for_again_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.gdbm.journal");
        let request = |n: usize| format!("LOOKUSER\nUser: {n}@x.org\n").into_bytes();
        let size = request(0).len() + answer(A, "a@x.org").len() + A.len() + ENTRY_OVERHEAD;
        let mut cache = AnswerCache::new(&path, 3 * size);
        cache.follow(0);
        for n in 0..3 {
            cache.insert(0, &request(n), &answer(A, "a@x.org"));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(0, &request(0)).is_some());
        assert!(cache.get(0, &request(1)).is_some());
        cache.insert(0, &request(3), &answer(A, "a@x.org"));
        let kept = |cache: &AnswerCache| {
            (0..5)
                .filter(|&n| cache.get(0, &request(n)).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(cache.len(), 3, "one evicted, not emptied");
        assert!(
            cache.get(0, &request(2)).is_none(),
            "the one never asked for again went"
        );
        cache.insert(0, &request(4), &answer(A, "a@x.org"));
        assert_eq!(cache.len(), 3);
        assert!(cache.bytes <= 3 * size);
        assert_eq!(kept(&cache).len(), 3);
        // Forgetting a record's answers leaves the indexes consistent.
        journal::append(&path, 1, &[A.to_string()]).unwrap();
        cache.follow(1);
        assert!(cache.is_empty());
        assert_eq!(cache.bytes, 0);
        assert!(cache.by_key.is_empty());
    }

    #[test]
    fn the_doorkeeper_lets_in_what_was_seen_recently() {
        let doorkeeper = Doorkeeper::for_cache(64 * TYPICAL_ENTRY);
        assert!(!doorkeeper.seen_before(b"LOOKUSER\nUser: a@x.org\n"));
        assert!(doorkeeper.seen_before(b"LOOKUSER\nUser: a@x.org\n"));
        // Many other requests later, it was not seen recently.
        for n in 0..64 * DOORKEEPER_BITS_PER_ENTRY {
            doorkeeper.seen_before(format!("LOOKUSER\nUser: {n}@y.org\n").as_bytes());
        }
        assert!(!doorkeeper.seen_before(b"LOOKUSER\nUser: a@x.org\n"));
        let passed = (0..1000)
            .filter(|n| doorkeeper.seen_before(format!("LOOKUSER\nUser: {n}@z.org\n").as_bytes()))
            .count();
        assert!(passed < 1000 / 4, "{passed} of 1000 new requests passed");
    }
}
