//! keyserv's answers, remembered across lookups and across keyreg's writes.
//!
//! One cache serves every worker thread. It holds the answers that carry
//! the record of the key asked for, by the exact request bytes (a hit needs
//! no parsing and no GDBM), each filed under the fingerprint of the record
//! it carries. Everything in it was read at one write generation. When the
//! database moves to a newer generation, the change journal (see
//! [`ripem_keydb::journal`]) names the records the windows in between wrote, and
//! only the answers carrying those records are forgotten: an address can
//! only change hands through a write of the record that held it, so every
//! other answer is still true. When the journal can't say, everything is
//! forgotten. Answers found one domain level up (RIPEM's fallback) and
//! NOTFOUND answers are never kept: a registration elsewhere can change
//! them without touching any record they name. Memory is bounded: the
//! cache is emptied when full.

use std::collections::HashMap;
use std::path::Path;

use ripem_core::protocol::USERINFO_LINE;
use ripem_keydb::journal::{Changes, JournalReader};

/// Requests longer than this are not cached.
const REQUEST_MAX: usize = 300;
/// Bytes counted per entry besides the request and the answer.
const ENTRY_OVERHEAD: usize = 64;

/// The answers keyserv remembers; see the module's notes.
#[derive(Debug)]
pub struct AnswerCache {
    generation: Option<u64>,
    journal: JournalReader,
    answers: HashMap<Box<[u8]>, Box<[u8]>>,
    requests_by_key: HashMap<Box<str>, Vec<Box<[u8]>>>,
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
            answers: HashMap::new(),
            requests_by_key: HashMap::new(),
            bytes: 0,
            limit,
        }
    }

    /// The generation the answers were read at, if any.
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// The answer to `request` if the cache is at `generation` and has it.
    pub fn get(&self, generation: u64, request: &[u8]) -> Option<&[u8]> {
        if self.generation != Some(generation) {
            return None;
        }
        self.answers.get(request).map(|answer| &**answer)
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
        self.answers.clear();
        self.requests_by_key.clear();
        self.bytes = 0;
        self.generation = None;
    }

    /// Remembers `answer` to `request`, read at `generation`, if it is an
    /// answer that carries the record asked for
    /// ([`ripem_core::protocol::Handled::Found`]) and the cache is still at that
    /// generation.
    pub fn insert(&mut self, generation: u64, request: &[u8], answer: &[u8]) {
        if self.generation != Some(generation) || request.len() > REQUEST_MAX || !answer.starts_with(USERINFO_LINE) {
            return;
        }
        let Some(fingerprint) = fingerprint_in(answer) else {
            return;
        };
        let size = request.len() + answer.len() + ENTRY_OVERHEAD;
        if size > self.limit {
            return;
        }
        if self.bytes + size > self.limit {
            self.clear();
            self.generation = Some(generation);
        }
        if let Some(previous) = self.answers.insert(request.into(), answer.into()) {
            self.bytes -= request.len() + previous.len() + ENTRY_OVERHEAD;
        }
        self.requests_by_key
            .entry(fingerprint.into())
            .or_default()
            .push(request.into());
        self.bytes += size;
    }

    fn forget(&mut self, fingerprint: &str) {
        for request in self.requests_by_key.remove(fingerprint).unwrap_or_default() {
            if let Some(answer) = self.answers.remove(&request) {
                self.bytes -= request.len() + answer.len() + ENTRY_OVERHEAD;
            }
        }
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
        assert_eq!(cache.answers.len(), 3);
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
        assert_eq!(cache.answers.len(), 1);
    }

    #[test]
    fn a_journal_that_cannot_say_empties_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut cache) = cache_at_generation_1(&dir);
        cache.insert(1, b"LOOKUSER\nUser: b@x.org\n", &answer(B, "b@x.org"));
        journal::append(&path, 3, &[A.to_string()]).unwrap();
        cache.follow(3);
        assert!(cache.answers.is_empty(), "generation 2 is missing from the journal");
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
        assert!(cache.answers.is_empty());
        for n in 0..20 {
            cache.insert(
                0,
                format!("LOOKUSER\nUser: {n}@x.org\n").as_bytes(),
                &answer(A, "a@x.org"),
            );
            assert!(cache.bytes <= 1000);
        }
        assert!(!cache.answers.is_empty());
        assert_eq!(cache.generation(), Some(0));
    }
}
