//! The apply log: every change the writer made to the database, in order.
//!
//! keyreg appends one entry per write window (and `keyreg --import`
//! one per import window) before the window is switched in: the window's
//! new generation and its writes, exactly as they went into GDBM (key and
//! value, or key deleted). Replaying the log from its start into an empty
//! file rebuilds the database byte for byte in meaning — record times
//! included, as they are part of the records — which is how
//! `keyreg --rebuild` and the automatic repair work. The log starts either
//! at generation 1 on an empty database or with a *base* entry holding
//! every item of an existing database (written once, when a database made
//! before the log existed is first opened).
//!
//! An entry is a 32-byte header — `RKAL`, kind (`B` base, `W` window),
//! three zero bytes, the generation (u64), the payload length (u64), the
//! payload's CRC-32 and the header's own CRC-32, little-endian — then the
//! payload: one operation after another, `P` with key length (u32), key,
//! value length (u32), value; or `D` with key length and key. The file is
//! only appended to and fsynced before the window becomes visible; a torn
//! or orphaned tail left by a crash is cut off when the writer next opens
//! the database (see `pair`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"RKAL";
const HEADER_LEN: u64 = 32;
/// The largest payload believed when reading; anything larger is damage.
const MAX_PAYLOAD: u64 = 1 << 34;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Every item of the database at this generation.
    Base,
    /// One write window's changes.
    Window,
}

/// One write to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `key` now holds `value` (the payload, before sealing).
    Put(Vec<u8>, Vec<u8>),
    /// `key` was deleted.
    Delete(Vec<u8>),
}

/// An entry's header, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    /// Base or window.
    pub kind: EntryKind,
    /// The generation the database has after this entry.
    pub generation: u64,
    /// Where the entry starts.
    pub offset: u64,
    /// Where the next entry starts.
    pub end: u64,
    payload_crc: u32,
}

/// The apply log file.
#[derive(Debug)]
pub struct ApplyLog {
    path: PathBuf,
}

/// Appends one operation's encoding to `payload`.
fn encode_op(op: &Op, payload: &mut Vec<u8>) {
    let field = |payload: &mut Vec<u8>, bytes: &[u8]| {
        payload.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        payload.extend_from_slice(bytes);
    };
    match op {
        Op::Put(key, value) => {
            payload.push(b'P');
            field(payload, key);
            field(payload, value);
        }
        Op::Delete(key) => {
            payload.push(b'D');
            field(payload, key);
        }
    }
}

impl Op {
    /// About how many bytes the operation holds.
    pub fn size(&self) -> usize {
        match self {
            Op::Put(key, value) => key.len() + value.len() + 9,
            Op::Delete(key) => key.len() + 5,
        }
    }
}

/// An entry being written op by op, for a window too large to hold in
/// memory: the payload goes to the file as it comes, and the header, which
/// makes the entry whole, is written last, then fsynced. Until then the
/// bytes are a torn tail, cut off at the next open.
pub struct EntryWriter {
    file: io::BufWriter<File>,
    offset: u64,
    length: u64,
    crc: crc32fast::Hasher,
    buffer: Vec<u8>,
}

impl EntryWriter {
    /// Adds one operation.
    pub fn push(&mut self, op: &Op) -> io::Result<()> {
        self.buffer.clear();
        encode_op(op, &mut self.buffer);
        self.crc.update(&self.buffer);
        self.length += self.buffer.len() as u64;
        self.file.write_all(&self.buffer)
    }

    /// The entry's file, with what was pushed so far written to it.
    pub fn flushed_file(&mut self) -> io::Result<File> {
        self.file.flush()?;
        self.file.get_ref().try_clone()
    }

    /// Writes the header and fsyncs; returns where the entry ends.
    pub fn finish(self, kind: EntryKind, generation: u64) -> io::Result<u64> {
        let file = self.file.into_inner().map_err(io::IntoInnerError::into_error)?;
        let header = encode_header(kind, generation, self.length, self.crc.finalize());
        std::os::unix::fs::FileExt::write_all_at(&file, &header, self.offset)?;
        file.sync_data()?;
        Ok(self.offset + HEADER_LEN + self.length)
    }
}

/// Decodes a payload; `None` if it is not a well-formed list of operations.
fn decode_ops(payload: &[u8]) -> Option<Vec<Op>> {
    let mut ops = Vec::new();
    let mut rest = payload;
    let field = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        let length = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let bytes = rest.get(4..4 + length)?.to_vec();
        *rest = &rest[4 + length..];
        Some(bytes)
    };
    while let Some((&tag, tail)) = rest.split_first() {
        rest = tail;
        match tag {
            b'P' => {
                let key = field(&mut rest)?;
                ops.push(Op::Put(key, field(&mut rest)?));
            }
            b'D' => ops.push(Op::Delete(field(&mut rest)?)),
            _ => return None,
        }
    }
    Some(ops)
}

fn encode_header(kind: EntryKind, generation: u64, length: u64, payload_crc: u32) -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..4].copy_from_slice(MAGIC);
    header[4] = match kind {
        EntryKind::Base => b'B',
        EntryKind::Window => b'W',
    };
    header[8..16].copy_from_slice(&generation.to_le_bytes());
    header[16..24].copy_from_slice(&length.to_le_bytes());
    header[24..28].copy_from_slice(&payload_crc.to_le_bytes());
    let crc = crc32fast::hash(&header[..28]);
    header[28..].copy_from_slice(&crc.to_le_bytes());
    header
}

fn decode_header(header: &[u8; HEADER_LEN as usize], offset: u64) -> Option<EntryHeader> {
    let word = |range: std::ops::Range<usize>| u64::from_le_bytes(header[range].try_into().unwrap_or_default());
    let crc = |range: std::ops::Range<usize>| u32::from_le_bytes(header[range].try_into().unwrap_or_default());
    if &header[..4] != MAGIC || crc(28..32) != crc32fast::hash(&header[..28]) {
        return None;
    }
    let kind = match header[4] {
        b'B' => EntryKind::Base,
        b'W' => EntryKind::Window,
        _ => return None,
    };
    let length = word(16..24);
    (length <= MAX_PAYLOAD).then_some(EntryHeader {
        kind,
        generation: word(8..16),
        offset,
        end: offset + HEADER_LEN + length,
        payload_crc: crc(24..28),
    })
}

impl ApplyLog {
    /// The log at `path` (created on the first append).
    pub fn new(path: &Path) -> ApplyLog {
        ApplyLog {
            path: path.to_path_buf(),
        }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's size in bytes (0 if it does not exist).
    pub fn size(&self) -> io::Result<u64> {
        match std::fs::metadata(&self.path) {
            Ok(meta) => Ok(meta.len()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(err) => Err(err),
        }
    }

    /// Appends one entry at `offset` (cutting off anything after it) and
    /// fsyncs it; returns where the entry ends.
    pub fn append(&self, offset: u64, kind: EntryKind, generation: u64, ops: &[Op]) -> io::Result<u64> {
        let mut entry = self.begin(offset)?;
        for op in ops {
            entry.push(op)?;
        }
        entry.finish(kind, generation)
    }

    /// Starts an entry at `offset` (cutting off anything after it) to be
    /// written op by op.
    pub fn begin(&self, offset: u64) -> io::Result<EntryWriter> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)?;
        file.set_len(offset)?;
        file.seek(SeekFrom::Start(offset + HEADER_LEN))?;
        Ok(EntryWriter {
            file: io::BufWriter::with_capacity(1 << 20, file),
            offset,
            length: 0,
            crc: crc32fast::Hasher::new(),
            buffer: Vec::new(),
        })
    }

    /// Cuts the log off at `offset` (a torn or orphaned tail).
    pub fn truncate(&self, offset: u64) -> io::Result<()> {
        match OpenOptions::new().write(true).open(&self.path) {
            Ok(file) => {
                if file.metadata()?.len() > offset {
                    file.set_len(offset)?;
                    file.sync_data()?;
                }
                Ok(())
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound && offset == 0 => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The header of the entry starting at `offset`, if a whole, valid
    /// entry starts there (its payload's checksum is checked too).
    pub fn entry_at(&self, offset: u64) -> io::Result<Option<EntryHeader>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(offset))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let Some(header) = read_header(&mut reader, offset, length)? else {
            return Ok(None);
        };
        let mut payload = Vec::new();
        (&mut reader)
            .take(header.end - offset - HEADER_LEN)
            .read_to_end(&mut payload)?;
        Ok((crc32fast::hash(&payload) == header.payload_crc).then_some(header))
    }

    /// Reads the log from its start, handing each whole entry to `each`;
    /// stops at the first torn or damaged one. Returns where the last good
    /// entry ends.
    pub fn replay(&self, each: &mut dyn FnMut(&EntryHeader, Vec<Op>) -> io::Result<()>) -> io::Result<LogEnd> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(LogEnd::default()),
            Err(err) => return Err(err),
        };
        let length = file.metadata()?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut end = LogEnd::default();
        while let Some(header) = read_header(&mut reader, end.offset, length)? {
            let mut payload = Vec::new();
            (&mut reader)
                .take(header.end - end.offset - HEADER_LEN)
                .read_to_end(&mut payload)?;
            if crc32fast::hash(&payload) != header.payload_crc {
                break;
            }
            let Some(ops) = decode_ops(&payload) else { break };
            each(&header, ops)?;
            end = LogEnd {
                offset: header.end,
                generation: Some(header.generation),
                damaged_tail: false,
            };
        }
        end.damaged_tail = end.offset < length;
        Ok(end)
    }

    /// Finds, reading headers only, where the entry that makes
    /// `generation` ends (for a writer whose state file was lost).
    pub fn end_of_generation(&self, generation: u64) -> io::Result<Option<u64>> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let length = file.metadata()?.len();
        let mut reader = BufReader::new(file);
        let mut offset = 0;
        let mut found = None;
        while let Some(header) = read_header(&mut reader, offset, length)? {
            if header.generation == generation {
                found = Some(header.end);
            }
            offset = header.end;
            reader.seek(SeekFrom::Start(offset))?;
        }
        Ok(found)
    }
}

/// Where a replayed log ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogEnd {
    /// The end of the last whole entry.
    pub offset: u64,
    /// That entry's generation (none if the log is empty).
    pub generation: Option<u64>,
    /// Bytes follow that are not a whole, valid entry.
    pub damaged_tail: bool,
}

fn read_header(reader: &mut impl Read, offset: u64, length: u64) -> io::Result<Option<EntryHeader>> {
    if offset + HEADER_LEN > length {
        return Ok(None);
    }
    let mut bytes = [0u8; HEADER_LEN as usize];
    reader.read_exact(&mut bytes)?;
    Ok(decode_header(&bytes, offset).filter(|header| header.end <= length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(n: u8) -> Vec<Op> {
        vec![Op::Put(vec![b'k', n], vec![n; 300]), Op::Delete(b"gone".to_vec())]
    }

    fn replayed(log: &ApplyLog) -> (Vec<(u64, Vec<Op>)>, LogEnd) {
        let mut seen = Vec::new();
        let end = log
            .replay(&mut |header, ops| {
                seen.push((header.generation, ops));
                Ok(())
            })
            .unwrap();
        (seen, end)
    }

    #[test]
    fn entries_replay_in_order_and_a_torn_tail_is_ignored_then_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = ApplyLog::new(&dir.path().join("keys.gdbm.log"));
        assert_eq!(replayed(&log).1, LogEnd::default());
        let first = log.append(0, EntryKind::Window, 1, &ops(1)).unwrap();
        let second = log.append(first, EntryKind::Window, 2, &ops(2)).unwrap();
        assert_eq!(log.entry_at(first).unwrap().unwrap().generation, 2);
        assert_eq!(log.end_of_generation(1).unwrap(), Some(first));
        // A crash in the middle of the third append.
        let third = log.append(second, EntryKind::Window, 3, &ops(3)).unwrap();
        OpenOptions::new()
            .write(true)
            .open(log.path())
            .unwrap()
            .set_len(third - 7)
            .unwrap();
        let (seen, end) = replayed(&log);
        assert_eq!(seen, vec![(1, ops(1)), (2, ops(2))]);
        assert_eq!((end.offset, end.generation, end.damaged_tail), (second, Some(2), true));
        assert_eq!(log.entry_at(second).unwrap(), None);
        log.truncate(second).unwrap();
        assert!(!replayed(&log).1.damaged_tail);
    }

    #[test]
    fn a_damaged_payload_stops_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let log = ApplyLog::new(&dir.path().join("log"));
        let first = log.append(0, EntryKind::Base, 7, &ops(1)).unwrap();
        log.append(first, EntryKind::Window, 8, &ops(2)).unwrap();
        let mut bytes = std::fs::read(log.path()).unwrap();
        bytes[first as usize + 40] ^= 0xff;
        std::fs::write(log.path(), &bytes).unwrap();
        let (seen, end) = replayed(&log);
        assert_eq!(seen, vec![(7, ops(1))]);
        assert!(end.damaged_tail);
        assert_eq!(log.entry_at(first).unwrap(), None);
    }

    #[test]
    fn an_entry_written_op_by_op_reads_as_one_and_is_torn_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let log = ApplyLog::new(&dir.path().join("log"));
        let first = log.append(0, EntryKind::Window, 1, &ops(1)).unwrap();
        let mut entry = log.begin(first).unwrap();
        for op in ops(2) {
            entry.push(&op).unwrap();
        }
        drop(entry);
        assert_eq!(replayed(&log).0, vec![(1, ops(1))], "not finished: a torn tail");
        let mut entry = log.begin(first).unwrap();
        for op in ops(2) {
            entry.push(&op).unwrap();
        }
        let end = entry.finish(EntryKind::Window, 2).unwrap();
        assert_eq!(end, std::fs::metadata(log.path()).unwrap().len());
        assert_eq!(replayed(&log).0, vec![(1, ops(1)), (2, ops(2))]);
    }

    #[test]
    fn an_append_cuts_off_an_orphan() {
        let dir = tempfile::tempdir().unwrap();
        let log = ApplyLog::new(&dir.path().join("log"));
        let first = log.append(0, EntryKind::Window, 1, &ops(1)).unwrap();
        log.append(first, EntryKind::Window, 2, &ops(2)).unwrap();
        // Generation 2 never became visible: the window is written again.
        log.append(first, EntryKind::Window, 2, &ops(9)).unwrap();
        assert_eq!(replayed(&log).0, vec![(1, ops(1)), (2, ops(9))]);
    }
}
