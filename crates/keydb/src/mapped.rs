//! keyserv's lookups read GDBM's hash table straight from the mapped file.
//!
//! `gdbm_fetch` copies the 4 KB bucket a key hashes to into GDBM's bucket
//! cache, then copies the entry into a buffer it mallocs for the caller:
//! at a million keys, with a file far larger than any bucket cache, that
//! was most of a lookup's cost (README, "Benchmarks"). This module maps
//! the file read-only and follows GDBM's own layout — header, directory,
//! bucket, element, then the key and value stored together — so a lookup
//! reads only the few cache lines on its path and hands the caller a slice
//! of the mapping, which the page cache backs (no anonymous memory).
//!
//! Rules: it reads only files GDBM 1.23 writes with 64-bit offsets (both
//! header magics of that format), checks the header when the file is
//! mapped and every offset before it is followed, and never writes. When
//! it can't tell (an offset out of bounds, a header it doesn't know), the
//! caller asks libgdbm instead, which reports damage properly; a value it
//! finds is still checked against its checksum (`value`) by the caller.
//! It is used only on files the writer never writes while a read session
//! is open (`live`): the pair protocol guarantees the mapping doesn't
//! change under a lookup.
//!
//! A batch of lookups is also warmed first ([`MappedTable::prefetch`]):
//! each probe is three dependent reads of random lines in a file of
//! gigabytes (directory entry, element, item), and one at a time they
//! queue behind each other's cache and TLB misses. Asked for in rounds
//! across the batch, a round's misses overlap. It is only a hint: it reads
//! what `find` would check, and `find` still does every check.

use std::fs::{File, Metadata};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
#[cfg(test)]
use std::path::Path;
use std::sync::Arc;

/// GDBM 1.23's magics for files with 64-bit offsets, without and with the
/// extended (numsync) header; neither changes the fields read here.
const MAGICS: [u32; 2] = [0x1357_9acf, 0x1357_9ad1];
/// GDBM's hash values have 31 bits.
const HASH_BITS: u32 = 31;
/// Where a bucket's element table starts: `av_count` (padded to 8),
/// six 16-byte avail elements, `bucket_bits`, `count`.
const BUCKET_TABLE: usize = 112;
/// One bucket element: hash, 4 key bytes, data pointer, key and data sizes.
const ELEMENT: usize = 24;
/// How many key bytes an element keeps.
const KEY_START: usize = 4;
/// The element hash that marks an empty slot.
const EMPTY: i32 = -1;

/// How many elements from a key's home slot the prefetch looks through
/// for its item (three or four cache lines): GDBM's linear probing keeps
/// about 19 keys in 20 that near home, and a key further away is only
/// read without the warming.
const PREFETCH_SLOTS: usize = 8;
/// The item lines prefetched: the key, and the value's first lines, after
/// which the hardware's own stream prefetch takes over the copy.
const PREFETCH_ITEM: usize = 256;

/// One key on its way through [`MappedTable::prefetch`]: its hash and
/// length, and the offset the last round reached (at the end, its item's;
/// `None` where the path left the file or the item was not near home).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Prefetch {
    hash: u32,
    len: usize,
    at: Option<usize>,
}

impl Prefetch {
    /// The prefetch of `key`'s probe.
    pub(crate) fn of(key: &[u8]) -> Prefetch {
        Prefetch {
            hash: gdbm_hash(key),
            len: key.len(),
            at: None,
        }
    }
}

/// Asks the CPU to bring the cache line holding `bytes[at]` in, without
/// waiting for it. A hint: where the architecture has no stable prefetch
/// instruction, nothing is done.
fn prefetch_line(bytes: &[u8], at: usize) {
    if let Some(byte) = bytes.get(at) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch never faults, and the address is in the mapping.
        unsafe {
            std::arch::x86_64::_mm_prefetch(std::ptr::from_ref(byte).cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = byte;
    }
}

/// What a probe of the table found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Probe<'a> {
    /// The value stored under the key.
    Found(&'a [u8]),
    /// The key is not stored.
    Absent,
    /// An offset on the way is out of the file: ask libgdbm.
    Unreadable,
}

/// A read-only shared mapping of one file, made larger than the file so
/// that it still covers it after the writer has grown it: readers keep it
/// across write windows (see `live`), and the pages they touched stay
/// mapped instead of being faulted in again after every switch.
pub(crate) struct Mapping {
    base: *const u8,
    capacity: usize,
    device: u64,
    inode: u64,
}

// SAFETY: the mapping is read-only and lives as long as the value; the
// pair protocol keeps the file unchanged while sessions read it.
unsafe impl Send for Mapping {}
// SAFETY: as above; probes only read.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/capacity are the mapping made in `of`, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.capacity) };
    }
}

impl Mapping {
    /// Maps `file`, which `meta` describes, with room to grow by a
    /// quarter (and 64 MiB) before it must be mapped again. The part past
    /// the end of the file is never read: a table reads only the length
    /// the file had at its session.
    pub(crate) fn of(file: &File, meta: &Metadata) -> Option<Mapping> {
        let len = usize::try_from(meta.len()).ok()?;
        let capacity = len.checked_add(len / 4)?.checked_add(64 << 20)?;
        // SAFETY: a fresh read-only shared mapping of an open file; the
        // result is checked before use and unmapped on drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                capacity,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        // Pages a lookup faults in from disk come in as 2 MB folios and
        // are mapped whole, so a random lookup over a file of gigabytes
        // is not also a TLB miss per page (at a million keys, every page
        // of the 7.7 GB file was mapped huge once read through keyserv).
        // Only advice: refused, the mapping works the same.
        // SAFETY: base/capacity are the mapping just made.
        unsafe { libc::madvise(base, capacity, libc::MADV_HUGEPAGE) };
        Some(Mapping {
            base: base as *const u8,
            capacity,
            device: meta.dev(),
            inode: meta.ino(),
        })
    }

    /// Whether this maps the file `meta` describes.
    pub(crate) fn is_of(&self, meta: &Metadata) -> bool {
        self.device == meta.dev() && self.inode == meta.ino()
    }

    /// Whether it covers the first `len` bytes of its file.
    pub(crate) fn covers(&self, len: usize) -> bool {
        len <= self.capacity
    }
}

/// One generation's view of a GDBM file through a [`Mapping`], with the
/// header fields a lookup needs.
pub(crate) struct MappedTable {
    map: Arc<Mapping>,
    len: usize,
    dir: usize,
    dir_bits: u32,
    bucket_elems: usize,
}

/// GDBM's hash of a key (`_gdbm_hash`); its bytes are C's signed `char`s.
fn gdbm_hash(key: &[u8]) -> u32 {
    let mut value = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for (index, &byte) in key.iter().enumerate() {
        let shifted = (i32::from(byte as i8) << (index * 5 % 24)) as u32;
        value = value.wrapping_add(shifted) & 0x7FFF_FFFF;
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345) & 0x7FFF_FFFF
}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn read_offset(bytes: &[u8], at: usize) -> Option<usize> {
    let value = i64::from_ne_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?);
    usize::try_from(value).ok()
}

impl MappedTable {
    /// Maps the GDBM file at `path` afresh; `None` if it can't be mapped
    /// or its header is not one this reader knows.
    #[cfg(test)]
    pub(crate) fn open(path: &Path) -> Option<MappedTable> {
        let file = File::open(path).ok()?;
        let meta = file.metadata().ok()?;
        let len = usize::try_from(meta.len()).ok()?;
        MappedTable::over(Arc::new(Mapping::of(&file, &meta)?), len)
    }

    /// The table in the first `len` bytes of the file `map` maps (its
    /// length now); `None` if the header is not one this reader knows
    /// (libgdbm then does every read).
    pub(crate) fn over(map: Arc<Mapping>, len: usize) -> Option<MappedTable> {
        if len < 64 || !map.covers(len) {
            return None;
        }
        let mut table = MappedTable {
            map,
            len,
            dir: 0,
            dir_bits: 0,
            bucket_elems: 0,
        };
        table.read_header().then_some(table)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping covers the file's first `len` bytes (checked
        // in `over`), and lives as long as the `Arc` held here.
        unsafe { std::slice::from_raw_parts(self.map.base, self.len) }
    }

    /// Reads and checks the header fields; false if they don't describe
    /// a table inside the file.
    fn read_header(&mut self) -> bool {
        let bytes = self.bytes();
        let field = |at| read_i32(bytes, at).and_then(|v| usize::try_from(v).ok());
        let magic = read_i32(bytes, 0).map(|m| m as u32);
        let (Some(magic), Some(dir), Some(dir_size), Some(dir_bits), Some(bucket_size), Some(elems)) =
            (magic, read_offset(bytes, 8), field(16), field(20), field(24), field(28))
        else {
            return false;
        };
        let known = MAGICS.contains(&magic)
            && dir_bits <= HASH_BITS as usize
            && dir_size == 8usize << dir_bits
            && dir.checked_add(dir_size).is_some_and(|end| end <= bytes.len())
            && elems > 0
            && bucket_size >= BUCKET_TABLE + ELEMENT * elems;
        self.dir = dir;
        self.dir_bits = dir_bits as u32;
        self.bucket_elems = elems;
        known
    }

    /// Looks `key` up as `gdbm_fetch` does (`_gdbm_findkey`): the
    /// directory entry of the hash's top bits, then linear probing in that
    /// bucket from the hash modulo its size.
    pub(crate) fn probe(&self, key: &[u8]) -> Probe<'_> {
        self.find(key).unwrap_or(Probe::Unreadable)
    }

    /// Warms the lines the probes of `keys` will read, one round for
    /// each step of the path across all of them (see the module's notes).
    pub(crate) fn prefetch(&self, keys: &mut [Prefetch]) {
        let bytes = self.bytes();
        for key in keys.iter_mut() {
            let index = (key.hash >> (HASH_BITS - self.dir_bits)) as usize;
            let entry = self.dir + 8 * index;
            prefetch_line(bytes, entry);
            key.at = Some(entry);
        }
        for key in keys.iter_mut() {
            let home = key.hash as usize % self.bucket_elems;
            key.at = key
                .at
                .and_then(|entry| read_offset(bytes, entry))
                .and_then(|bucket| bucket.checked_add(BUCKET_TABLE + ELEMENT * home));
            if let Some(element) = key.at {
                for line in (element..element + ELEMENT * PREFETCH_SLOTS).step_by(64) {
                    prefetch_line(bytes, line);
                }
            }
        }
        for key in keys.iter_mut() {
            key.at = key.at.and_then(|element| self.item_near(element, key));
            if let Some(item) = key.at {
                for line in (item..item + PREFETCH_ITEM).step_by(64) {
                    prefetch_line(bytes, line);
                }
            }
        }
    }

    /// Where the item of the element at `element` (`key`'s home slot) or
    /// one of the next few in its bucket that has `key`'s hash and length
    /// is stored, if one does.
    fn item_near(&self, element: usize, key: &Prefetch) -> Option<usize> {
        let bytes = self.bytes();
        let home = key.hash as usize % self.bucket_elems;
        for slot in 0..PREFETCH_SLOTS.min(self.bucket_elems - home) {
            let at = element + ELEMENT * slot;
            let hash = read_i32(bytes, at)?;
            if hash == EMPTY {
                return None;
            }
            let size = usize::try_from(read_i32(bytes, at + 16)?).ok();
            if hash as u32 == key.hash && size == Some(key.len) {
                return read_offset(bytes, at + 8);
            }
        }
        None
    }

    fn find(&self, key: &[u8]) -> Option<Probe<'_>> {
        let bytes = self.bytes();
        let hash = gdbm_hash(key);
        let index = (hash >> (HASH_BITS - self.dir_bits)) as usize;
        let bucket = read_offset(bytes, self.dir + 8 * index)?;
        let table = bucket.checked_add(BUCKET_TABLE)?;
        let home = hash as usize % self.bucket_elems;
        let mut slot = home;
        loop {
            let element = table + ELEMENT * slot;
            let element_hash = read_i32(bytes, element)?;
            if element_hash == EMPTY {
                return Some(Probe::Absent);
            }
            let key_size = usize::try_from(read_i32(bytes, element + 16)?).ok()?;
            let start = bytes.get(element + 4..element + 4 + KEY_START.min(key_size))?;
            if element_hash as u32 == hash && key_size == key.len() && start == &key[..start.len()] {
                let at = read_offset(bytes, element + 8)?;
                let data_size = usize::try_from(read_i32(bytes, element + 20)?).ok()?;
                let data_at = at.checked_add(key_size)?;
                if bytes.get(at..data_at)? == key {
                    return Some(Probe::Found(bytes.get(data_at..data_at.checked_add(data_size)?)?));
                }
            }
            slot = (slot + 1) % self.bucket_elems;
            if slot == home {
                return Some(Probe::Absent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gdbm::{Gdbm, OpenMode};

    /// Every key of a file of many buckets (splits and a grown directory),
    /// with replaced and deleted items, is found with GDBM's own value, and
    /// keys it doesn't hold are absent.
    #[test]
    fn finds_what_libgdbm_finds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gdbm");
        let mut db = Gdbm::open(&path, OpenMode::WriterCreate).unwrap();
        let key = |n: usize| format!("user:person{n}@example-{}.org\u{e9}", n % 7).into_bytes();
        let value = |n: usize, round: usize| vec![(n % 251) as u8; n % 3000 + round];
        for round in 0..2 {
            for n in 0..6000 {
                db.replace(&key(n), &value(n, round)).unwrap();
            }
        }
        for n in (0..6000).step_by(5) {
            assert!(db.delete(&key(n)).unwrap());
        }
        db.sync().unwrap();
        drop(db);
        let table = MappedTable::open(&path).expect("a GDBM 1.23 file");
        let buckets: std::collections::HashSet<_> = (0..1usize << table.dir_bits)
            .map(|index| read_offset(table.bytes(), table.dir + 8 * index))
            .collect();
        assert!(buckets.len() > 8, "the table has split into many buckets");
        let db = Gdbm::open(&path, OpenMode::ReaderUnlocked).unwrap();
        for n in 0..6000 {
            let expected = db.fetch(&key(n)).unwrap();
            match table.probe(&key(n)) {
                Probe::Found(found) => assert_eq!(Some(found.to_vec()), expected, "key {n}"),
                Probe::Absent => assert_eq!(expected, None, "key {n}"),
                Probe::Unreadable => panic!("key {n} unreadable"),
            }
        }
        assert_eq!(table.probe(b"user:nobody@example.org"), Probe::Absent);
        assert_eq!(table.probe(b""), Probe::Absent);
    }

    /// The prefetch's rounds end at the very item the probe reads, for
    /// nearly every key; where they don't, they end nowhere.
    #[test]
    fn prefetch_reaches_the_item_the_probe_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gdbm");
        let mut db = Gdbm::open(&path, OpenMode::WriterCreate).unwrap();
        let key = |n: usize| format!("user:someone{n}@example.org").into_bytes();
        for n in 0..5000 {
            db.replace(&key(n), &vec![b'v'; n % 2000]).unwrap();
        }
        db.sync().unwrap();
        drop(db);
        let table = MappedTable::open(&path).unwrap();
        let base = table.bytes().as_ptr() as usize;
        let mut reached = 0;
        for chunk in (0..5000).collect::<Vec<_>>().chunks(64) {
            let mut pending: Vec<_> = chunk.iter().map(|&n| Prefetch::of(&key(n))).collect();
            table.prefetch(&mut pending);
            for (&n, prefetch) in chunk.iter().zip(&pending) {
                let Probe::Found(value) = table.probe(&key(n)) else {
                    panic!("key {n} not found");
                };
                if let Some(item) = prefetch.at {
                    assert_eq!(item + key(n).len(), value.as_ptr() as usize - base, "key {n}");
                    reached += 1;
                }
            }
        }
        assert!(reached > 4700, "only {reached} of 5000 items reached");
        let mut absent = [Prefetch::of(b"user:nobody@example.org")];
        table.prefetch(&mut absent);
        assert_eq!(absent[0].at, None);
    }

    #[test]
    fn a_file_that_is_not_gdbm_is_not_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        assert!(MappedTable::open(&path).is_none());
        std::fs::write(&path, b"short").unwrap();
        assert!(MappedTable::open(&path).is_none());
        assert!(MappedTable::open(&dir.path().join("missing")).is_none());
    }

    #[test]
    fn damaged_offsets_are_unreadable_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gdbm");
        let mut db = Gdbm::open(&path, OpenMode::WriterCreate).unwrap();
        db.replace(b"key:A", b"value").unwrap();
        db.sync().unwrap();
        drop(db);
        let mut bytes = std::fs::read(&path).unwrap();
        let table = MappedTable::open(&path).unwrap();
        let (directory, entries) = (table.dir, 1usize << table.dir_bits);
        drop(table);
        // Every bucket pointer of the directory now points past the end.
        for entry in 0..entries {
            let at = directory + 8 * entry;
            bytes[at..at + 8].copy_from_slice(&i64::MAX.to_ne_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        let table = MappedTable::open(&path).unwrap();
        assert_eq!(table.probe(b"key:A"), Probe::Unreadable);
        let mut pending = [Prefetch::of(b"key:A")];
        table.prefetch(&mut pending);
        assert_eq!(pending[0].at, None);
    }
}
