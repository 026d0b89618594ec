//! The update store: every update ever accepted, by id and by local
//! sequence number, kept forever.
//!
//! One append-only file, `sync/updates.log`, of framed records
//! `[len u32][crc32 u32][seq u64][flags u8][bytes]` (big-endian; the CRC
//! covers seq, flags and bytes). Sequence numbers are 1, 2, 3… in file
//! order. Each append is fsynced before [`Store::append`] returns, so an
//! update is on disk before anyone hears of it. At open the file is read
//! whole and the indexes (by id, by sequence number) are rebuilt in
//! memory; a torn last record (a crash in the middle of an append) is cut
//! off with a log line, while damage before the last record is an error:
//! cutting there would silently drop good updates.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ripem_core::types::Fingerprint;

use crate::error::SyncError;
use crate::update::{self, UpdateMeta};

const HEADER: usize = 17;
/// Flag: the update was made here (keyreg has applied it already).
const LOCAL: u8 = 1;

/// What the store knows of one update without reading it.
#[derive(Debug, Clone)]
pub struct Entry {
    offset: u64,
    len: u32,
    /// The update's id.
    pub id: String,
    /// The key it is about.
    pub fingerprint: Fingerprint,
    /// Made here rather than received from a peer.
    pub local: bool,
}

/// The open store.
pub struct Store {
    path: PathBuf,
    file: File,
    entries: Vec<Entry>,
    by_id: HashMap<String, u64>,
    end: u64,
}

fn crc(seq: u64, flags: u8, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_be_bytes());
    hasher.update(&[flags]);
    hasher.update(bytes);
    hasher.finalize()
}

/// One record read back, or why the file ends there.
enum Read1 {
    Record {
        seq: u64,
        flags: u8,
        bytes: Vec<u8>,
    },
    End,
    /// A bad record; `last` when nothing follows it.
    Torn {
        problem: String,
        last: bool,
    },
}

fn read_record(reader: &mut impl Read, remaining: u64) -> std::io::Result<Read1> {
    if remaining == 0 {
        return Ok(Read1::End);
    }
    if remaining < HEADER as u64 {
        return Ok(Read1::Torn {
            problem: format!("{remaining} bytes of a header"),
            last: true,
        });
    }
    let mut header = [0u8; HEADER];
    reader.read_exact(&mut header)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let sum = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&header[8..16]);
    let seq = u64::from_be_bytes(seq_bytes);
    let flags = header[16];
    if u64::from(len) > remaining - HEADER as u64 {
        return Ok(Read1::Torn {
            problem: format!("record {seq} claims {len} bytes, fewer remain"),
            last: true,
        });
    }
    let mut bytes = vec![0u8; len as usize];
    reader.read_exact(&mut bytes)?;
    if crc(seq, flags, &bytes) != sum {
        return Ok(Read1::Torn {
            problem: format!("record {seq}: checksum mismatch"),
            last: u64::from(len) == remaining - HEADER as u64,
        });
    }
    Ok(Read1::Record { seq, flags, bytes })
}

impl Store {
    /// Opens (or creates) the store at `path`, rebuilding the indexes.
    pub fn open(path: &Path) -> Result<Store, SyncError> {
        Store::open_with(path, true)
    }

    /// Opens the store only to read it (`--dump` beside a running
    /// daemon): a torn tail is left alone, as it may be an append under way.
    pub fn open_read_only(path: &Path) -> Result<Store, SyncError> {
        Store::open_with(path, false)
    }

    fn open_with(path: &Path, write: bool) -> Result<Store, SyncError> {
        let file = OpenOptions::new()
            .read(true)
            .append(write)
            .create(write)
            .open(path)
            .map_err(SyncError::io(path))?;
        let size = file.metadata().map_err(SyncError::io(path))?.len();
        let mut store = Store {
            path: path.to_path_buf(),
            file,
            entries: Vec::new(),
            by_id: HashMap::new(),
            end: 0,
        };
        let mut reader = BufReader::with_capacity(1 << 16, store.file.try_clone().map_err(SyncError::io(path))?);
        let damaged = |problem: String| SyncError::Damaged {
            path: path.to_path_buf(),
            problem,
        };
        loop {
            match read_record(&mut reader, size - store.end).map_err(SyncError::io(path))? {
                Read1::End => break,
                Read1::Torn { problem, last: false } => {
                    return Err(damaged(format!(
                        "{problem} at byte {}, with records after it",
                        store.end
                    )));
                }
                Read1::Torn { last: true, .. } if !write => break,
                Read1::Torn { problem, last: true } => {
                    crate::log(&format!(
                        "{}: cutting a torn last record at byte {} ({problem}; {} bytes)",
                        path.display(),
                        store.end,
                        size - store.end
                    ));
                    store.file.set_len(store.end).map_err(SyncError::io(path))?;
                    store.file.sync_all().map_err(SyncError::io(path))?;
                    break;
                }
                Read1::Record { seq, flags, bytes } => {
                    let expected = store.entries.len() as u64 + 1;
                    if seq != expected {
                        return Err(damaged(format!("record {expected} is numbered {seq}")));
                    }
                    let meta = update::inspect(&bytes).map_err(|err| damaged(format!("record {seq}: {err}")))?;
                    store.push(meta, flags, store.end + HEADER as u64, bytes.len());
                    store.end += (HEADER + bytes.len()) as u64;
                }
            }
        }
        Ok(store)
    }

    fn push(&mut self, meta: UpdateMeta, flags: u8, offset: u64, len: usize) {
        let seq = self.entries.len() as u64 + 1;
        self.by_id.insert(meta.id.clone(), seq);
        self.entries.push(Entry {
            offset,
            len: len as u32,
            id: meta.id,
            fingerprint: meta.fingerprint,
            local: flags & LOCAL != 0,
        });
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The highest sequence number (0: empty).
    pub fn max_seq(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The sequence number of the update with this id, if stored.
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// The index entry of `seq`.
    pub fn entry(&self, seq: u64) -> Option<&Entry> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.entries.get(index)
    }

    /// Stores an update (whose `meta` came from [`update::inspect`] of
    /// these `bytes`) under the next sequence number and fsyncs it.
    /// Returns `None` if its id is stored already.
    pub fn append(&mut self, bytes: &[u8], meta: UpdateMeta, local: bool) -> Result<Option<u64>, SyncError> {
        if self.by_id.contains_key(&meta.id) {
            return Ok(None);
        }
        let len = u32::try_from(bytes.len()).map_err(|_| SyncError::Damaged {
            path: self.path.clone(),
            problem: "an update over 4 GiB".into(),
        })?;
        let seq = self.max_seq() + 1;
        let flags = if local { LOCAL } else { 0 };
        let mut record = Vec::with_capacity(HEADER + bytes.len());
        record.extend_from_slice(&len.to_be_bytes());
        record.extend_from_slice(&crc(seq, flags, bytes).to_be_bytes());
        record.extend_from_slice(&seq.to_be_bytes());
        record.push(flags);
        record.extend_from_slice(bytes);
        let written = self.file.write_all(&record).and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // Leave no partial record for the next append to follow.
            let _ = self.file.set_len(self.end);
            return Err(SyncError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.push(meta, flags, self.end + HEADER as u64, bytes.len());
        self.end += record.len() as u64;
        Ok(Some(seq))
    }

    /// The bytes of update `seq`.
    pub fn read(&self, seq: u64) -> Result<Vec<u8>, SyncError> {
        let entry = self.entry(seq).ok_or_else(|| SyncError::Damaged {
            path: self.path.clone(),
            problem: format!("no update {seq}"),
        })?;
        let mut bytes = vec![0u8; entry.len as usize];
        self.file
            .read_exact_at(&mut bytes, entry.offset)
            .map_err(SyncError::io(&self.path))?;
        Ok(bytes)
    }

    /// Writes every stored update into `dir` as a file named by its id
    /// (for `keyreg --rebuild`); returns how many.
    pub fn dump(&self, dir: &Path) -> Result<u64, SyncError> {
        std::fs::create_dir_all(dir).map_err(SyncError::io(dir))?;
        for seq in 1..=self.max_seq() {
            let bytes = self.read(seq)?;
            let target = dir.join(&self.entries[seq as usize - 1].id);
            ripem_core::atomic::write_atomically(&target, &bytes).map_err(SyncError::io(&target))?;
        }
        Ok(self.max_seq())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::update::tests::sample;

    fn add(store: &mut Store, bytes: &[u8]) -> Option<u64> {
        let meta = update::inspect(bytes).unwrap();
        store.append(bytes, meta, false).unwrap()
    }

    #[test]
    fn appends_dedups_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("updates.log");
        let mut store = Store::open(&path).unwrap();
        assert_eq!(add(&mut store, &sample(1)), Some(1));
        assert_eq!(add(&mut store, &sample(2)), Some(2));
        assert_eq!(add(&mut store, &sample(1)), None);
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.max_seq(), 2);
        assert_eq!(store.read(2).unwrap(), sample(2));
        assert_eq!(store.seq_of(&update::id_of(&sample(1))), Some(1));
        assert_eq!(store.dump(&dir.path().join("dump")).unwrap(), 2);
        let dumped = dir.path().join("dump").join(update::id_of(&sample(2)));
        assert_eq!(std::fs::read(dumped).unwrap(), sample(2));
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_before_it_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("updates.log");
        let mut store = Store::open(&path).unwrap();
        add(&mut store, &sample(1));
        add(&mut store, &sample(2));
        let full = std::fs::metadata(&path).unwrap().len();
        drop(store);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(full - 3).unwrap();
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.max_seq(), 1);
        assert_eq!(add(&mut store, &sample(2)), Some(2));
        drop(store);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 2] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("checksum mismatch at byte 0, with records after it"),
            "{err}"
        );
    }
}
