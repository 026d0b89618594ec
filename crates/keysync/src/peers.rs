//! Peer bookkeeping: how far each peer's updates have been fetched, and
//! how far received updates have been handed to keyreg.
//!
//! `sync/peers.state` holds `peer <name> <seq>` lines (every update the
//! peer numbered up to `seq` is in our store, or was refused) and one
//! `delivered <seq>` line (every received update of ours up to `seq` is
//! in `spool/sync/`). It is rewritten whole, atomically, after the
//! updates it counts are stored: a crash loses at most the last steps,
//! which are then fetched or delivered again (both are by id, so a
//! second copy changes nothing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::SyncError;

/// The bookkeeping, as in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerBook {
    path: PathBuf,
    /// Peer name → its highest sequence number fetched.
    pub fetched: BTreeMap<String, u64>,
    /// Our highest sequence number handed to keyreg.
    pub delivered: u64,
}

impl PeerBook {
    /// Reads the file at `path`; a missing file is an empty book.
    pub fn load(path: &Path) -> Result<PeerBook, SyncError> {
        let mut book = PeerBook {
            path: path.to_path_buf(),
            ..PeerBook::default()
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(book),
            Err(source) => {
                return Err(SyncError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let damaged = |line: &str| SyncError::Damaged {
            path: path.to_path_buf(),
            problem: format!("bad line {line:?}"),
        };
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["peer", name, seq] => {
                    let seq = seq.parse().map_err(|_| damaged(line))?;
                    book.fetched.insert((*name).to_string(), seq);
                }
                ["delivered", seq] => book.delivered = seq.parse().map_err(|_| damaged(line))?,
                _ => return Err(damaged(line)),
            }
        }
        Ok(book)
    }

    /// How far `peer` has been fetched.
    pub fn fetched(&self, peer: &str) -> u64 {
        self.fetched.get(peer).copied().unwrap_or(0)
    }

    /// Writes the book atomically.
    pub fn save(&self) -> Result<(), SyncError> {
        let mut text = String::new();
        for (name, seq) in &self.fetched {
            text.push_str(&format!("peer {name} {seq}\n"));
        }
        text.push_str(&format!("delivered {}\n", self.delivered));
        ripem_core::atomic::write_atomically(&self.path, text.as_bytes()).map_err(SyncError::io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.state");
        let mut book = PeerBook::load(&path).unwrap();
        assert_eq!((book.fetched("b"), book.delivered), (0, 0));
        book.fetched.insert("b.example.org".into(), 7);
        book.delivered = 3;
        book.save().unwrap();
        let again = PeerBook::load(&path).unwrap();
        assert_eq!(again, book);
        std::fs::write(&path, "peer b x\n").unwrap();
        assert!(PeerBook::load(&path).is_err());
    }
}
