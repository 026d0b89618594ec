//! The pending store: addresses waiting for their owner's confirmation,
//! kept outside the key database so that nothing serves them.
//!
//! One small file per address under `STATE_DIR/pending/`, named by the
//! z-base-32 SHA-1 of the address (the WKD hash, taken over the whole
//! address), written with [`write_atomically`] (temp file, fsync, rename):
//! a crash leaves the old entry or the new one, never half of one. An
//! entry holds the address, the key's fingerprint, the nonce, when it was
//! made, the request file it came from (so that a request processed again
//! after a crash queues its mail again under the same name instead of
//! being told "a mail is on its way") and the key itself, armored. A file
//! that does not read as an entry counts as no entry. Entries older than
//! [`EXPIRY_SECONDS`] are dead; the store never holds more than
//! `max_pending` of them: making room removes the dead ones, then the
//! oldest.

use std::path::{Path, PathBuf};

use ripem_core::atomic::write_atomically;
use ripem_core::types::{Email, Fingerprint};
use ripem_core::wkd::local_part_hash;

use crate::error::RegistrarError;

/// A pending entry expires this long after its request was mailed: 3 days.
pub const EXPIRY_SECONDS: i64 = 3 * 86_400;
/// At most one confirmation mail per address this often: an hour.
pub const MAIL_INTERVAL: i64 = 3_600;
/// An entry file larger than this is not one of ours (a key that fits a
/// datagram is far smaller).
const MAX_ENTRY_BYTES: u64 = 256 * 1024;

/// One address waiting for confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The address.
    pub email: Email,
    /// The key it is to be registered to.
    pub fingerprint: Fingerprint,
    /// The secret the confirmation must carry back (32 hex digits).
    pub nonce: String,
    /// When the confirmation request was made (Unix seconds).
    pub created: i64,
    /// The spool file name of the request that made it.
    pub request: String,
    /// The submitted key, armored.
    pub key_armor: String,
}

impl Entry {
    /// Whether the entry is past its 3 days at `now`.
    pub fn expired(&self, now: i64) -> bool {
        now - self.created >= EXPIRY_SECONDS || self.created > now + MAIL_INTERVAL
    }

    fn to_text(&self) -> String {
        format!(
            "address: {}\nfingerprint: {}\nnonce: {}\ncreated: {}\nrequest: {}\n\n{}\n",
            self.email, self.fingerprint, self.nonce, self.created, self.request, self.key_armor
        )
    }

    fn parse(text: &str) -> Option<Entry> {
        let (head, key_armor) = text.split_once("\n\n")?;
        let field = |name: &str| {
            head.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
                .map(str::trim)
        };
        Some(Entry {
            email: Email::parse(field("address")?).ok()?,
            fingerprint: Fingerprint::parse(field("fingerprint")?).ok()?,
            nonce: field("nonce").filter(|nonce| is_nonce(nonce))?.to_string(),
            created: field("created")?.parse().ok()?,
            request: field("request")?.to_string(),
            key_armor: key_armor.trim().to_string(),
        })
    }
}

/// A nonce as keyreg makes them: 32 lower-case hex digits.
pub fn is_nonce(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh nonce: 128 random bits from the system's generator.
pub fn new_nonce() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The directory of entries.
pub struct PendingStore {
    dir: PathBuf,
    max_entries: usize,
}

impl PendingStore {
    /// The store under `state_dir`, holding at most `max_entries`.
    pub fn new(state_dir: &Path, max_entries: usize) -> PendingStore {
        PendingStore {
            dir: state_dir.join("pending"),
            max_entries,
        }
    }

    fn error(&self, path: &Path, source: std::io::Error) -> RegistrarError {
        RegistrarError::Pending {
            path: path.to_path_buf(),
            source,
        }
    }

    fn path_of(&self, email: &Email) -> PathBuf {
        self.dir.join(local_part_hash(email.as_str()))
    }

    /// The entry for `email`, if there is one that reads (expired or not).
    pub fn get(&self, email: &Email) -> Result<Option<Entry>, RegistrarError> {
        let path = self.path_of(email);
        let file = match ripem_core::spool::read_limited(&path, MAX_ENTRY_BYTES) {
            Ok(bytes) => bytes,
            Err(ripem_core::spool::SpoolError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(ripem_core::spool::SpoolError::Io { source, .. }) => return Err(self.error(&path, source)),
            Err(_) => return Ok(None),
        };
        Ok(std::str::from_utf8(&file)
            .ok()
            .and_then(Entry::parse)
            .filter(|entry| entry.email == *email))
    }

    /// Writes `entry`, replacing any entry for its address, after making
    /// room if the store is full.
    pub fn put(&self, entry: &Entry, now: i64) -> Result<(), RegistrarError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| self.error(&self.dir, source))?;
        let path = self.path_of(&entry.email);
        if !path.exists() {
            self.make_room(now)?;
        }
        write_atomically(&path, entry.to_text().as_bytes()).map_err(|source| self.error(&path, source))
    }

    /// Deletes the entry of `email` (a confirmed or dead one).
    pub fn remove(&self, email: &Email) -> Result<(), RegistrarError> {
        let path = self.path_of(email);
        match std::fs::remove_file(&path) {
            Ok(()) => ripem_core::atomic::sync_dir(&self.dir).map_err(|source| self.error(&self.dir, source)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.error(&path, source)),
        }
    }

    /// With the store full, removes dead and unreadable entries, then the
    /// oldest, until one more fits.
    fn make_room(&self, now: i64) -> Result<(), RegistrarError> {
        let names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|source| self.error(&self.dir, source))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .is_some_and(|name| !name.to_string_lossy().starts_with('.'))
            })
            .collect();
        if names.len() < self.max_entries {
            return Ok(());
        }
        let mut live = Vec::new();
        for path in names {
            let entry = ripem_core::spool::read_limited(&path, MAX_ENTRY_BYTES)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| Entry::parse(&text));
            match entry {
                Some(entry) if !entry.expired(now) => live.push((entry.created, path)),
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        live.sort();
        let excess = (live.len() + 1).saturating_sub(self.max_entries);
        for (_, path) in live.into_iter().take(excess) {
            std::fs::remove_file(&path).map_err(|source| self.error(&path, source))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize, created: i64) -> Entry {
        Entry {
            email: Email::parse(&format!("u{n}@example.org")).unwrap(),
            fingerprint: Fingerprint::parse("0123456789ABCDEF0123456789ABCDEF01234567").unwrap(),
            nonce: new_nonce(),
            created,
            request: format!("req{n}"),
            key_armor: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n-----END PGP PUBLIC KEY BLOCK-----".into(),
        }
    }

    #[test]
    fn entries_survive_reading_back_and_the_store_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = PendingStore::new(dir.path(), 3);
        let now = 1_000_000;
        for n in 0..5 {
            store.put(&entry(n, now - 100 + n as i64), now).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path().join("pending")).unwrap().count(), 3);
        assert_eq!(store.get(&entry(0, 0).email).unwrap(), None);
        let kept = store.get(&entry(4, 0).email).unwrap().unwrap();
        assert_eq!(kept.request, "req4");
        assert!(is_nonce(&kept.nonce));
        assert!(!kept.expired(now));
        assert!(kept.expired(now + EXPIRY_SECONDS));
        store.remove(&kept.email).unwrap();
        assert_eq!(store.get(&kept.email).unwrap(), None);
        std::fs::write(store.path_of(&kept.email), "address: junk\n").unwrap();
        assert_eq!(store.get(&kept.email).unwrap(), None);
    }
}
