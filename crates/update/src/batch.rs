//! Batches: the updates of one write window in one file, the form of
//! keyreg's hand-off to keysync (`sync/queue/`).
//!
//! A file per update cost an import a file creation and an fsync per key;
//! a batch costs one of each per window. The form: the line
//! `ripem-updates 1`, then each update as its length in decimal on a line
//! of its own followed by its bytes. A reader takes one entry at a time,
//! so a batch may be larger than anything held in memory, and refuses an
//! entry over its limit, a malformed length or a file cut short, naming
//! the entry; the bytes it yields are still to be parsed as updates.

use std::io::{self, BufRead, Read, Write};

/// The first line of every batch.
pub const BATCH_HEADER: &[u8] = b"ripem-updates 1\n";

/// Why a batch could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// It does not begin with [`BATCH_HEADER`].
    #[error("not a batch of updates (no \"ripem-updates 1\" line)")]
    NotABatch,
    /// An entry's length line is not a decimal number.
    #[error("entry {entry}: malformed length line")]
    BadLength {
        /// 1 for the first entry.
        entry: usize,
    },
    /// An entry is longer than the reader accepts.
    #[error("entry {entry}: {bytes} bytes, over the limit of {limit}")]
    TooLarge {
        /// 1 for the first entry.
        entry: usize,
        /// Its length line.
        bytes: u64,
        /// The reader's limit.
        limit: u64,
    },
    /// The file ends inside an entry.
    #[error("entry {entry}: the file ends inside it")]
    Truncated {
        /// 1 for the first entry.
        entry: usize,
    },
}

/// Writes a batch to `inner`, entry by entry.
#[derive(Debug)]
pub struct BatchWriter<W: Write> {
    inner: W,
    entries: usize,
    bytes: u64,
}

impl<W: Write> BatchWriter<W> {
    /// Begins a batch: writes its header.
    pub fn new(mut inner: W) -> io::Result<BatchWriter<W>> {
        inner.write_all(BATCH_HEADER)?;
        Ok(BatchWriter {
            inner,
            entries: 0,
            bytes: BATCH_HEADER.len() as u64,
        })
    }

    /// Appends one update's bytes.
    pub fn push(&mut self, update: &[u8]) -> io::Result<()> {
        let line = format!("{}\n", update.len());
        self.inner.write_all(line.as_bytes())?;
        self.inner.write_all(update)?;
        self.entries += 1;
        self.bytes += (line.len() + update.len()) as u64;
        Ok(())
    }

    /// Entries written so far.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Bytes written so far, the header included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The writer, to flush and sync.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Reads a batch's entries in order; each is at most `limit` bytes.
#[derive(Debug)]
pub struct BatchReader<R: BufRead> {
    inner: R,
    limit: u64,
    entries: usize,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Entries,
    Done,
}

impl<R: BufRead> BatchReader<R> {
    /// A reader of the batch in `inner`.
    pub fn new(inner: R, limit: u64) -> BatchReader<R> {
        BatchReader {
            inner,
            limit,
            entries: 0,
            state: State::Header,
        }
    }

    /// A line of at most `max` bytes, its newline stripped; `None` at
    /// the end of the file.
    fn line(&mut self, max: u64) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        (&mut self.inner).take(max + 1).read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Ok(None);
        }
        if line.pop() != Some(b'\n') {
            return Err(io::ErrorKind::InvalidData.into());
        }
        Ok(Some(line))
    }

    fn next_entry(&mut self) -> Result<Option<Vec<u8>>, BatchError> {
        if self.state == State::Header {
            let header = self.line(BATCH_HEADER.len() as u64);
            match header {
                Ok(Some(line)) if line == BATCH_HEADER[..BATCH_HEADER.len() - 1] => {}
                Ok(_) | Err(_) => return Err(BatchError::NotABatch),
            }
            self.state = State::Entries;
        }
        let entry = self.entries + 1;
        // u64::MAX has 20 digits.
        let length = match self.line(20) {
            Ok(None) => return Ok(None),
            Ok(Some(line)) => line,
            Err(err) if err.kind() == io::ErrorKind::InvalidData => return Err(BatchError::BadLength { entry }),
            Err(err) => return Err(err.into()),
        };
        let bytes: u64 = std::str::from_utf8(&length)
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse().ok())
            .ok_or(BatchError::BadLength { entry })?;
        if bytes > self.limit {
            return Err(BatchError::TooLarge {
                entry,
                bytes,
                limit: self.limit,
            });
        }
        let mut update = Vec::with_capacity(bytes as usize);
        (&mut self.inner).take(bytes).read_to_end(&mut update)?;
        if update.len() as u64 != bytes {
            return Err(BatchError::Truncated { entry });
        }
        self.entries = entry;
        Ok(Some(update))
    }
}

impl<R: BufRead> Iterator for BatchReader<R> {
    type Item = Result<Vec<u8>, BatchError>;

    /// The next entry's bytes; after an error, nothing more.
    fn next(&mut self) -> Option<Self::Item> {
        if self.state == State::Done {
            return None;
        }
        let next = self.next_entry();
        if !matches!(next, Ok(Some(_))) {
            self.state = State::Done;
        }
        next.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(entries: &[&[u8]]) -> Vec<u8> {
        let mut writer = BatchWriter::new(Vec::new()).unwrap();
        for entry in entries {
            writer.push(entry).unwrap();
        }
        assert_eq!(writer.entries(), entries.len());
        assert_eq!(writer.bytes(), writer_len(entries));
        writer.into_inner()
    }

    fn writer_len(entries: &[&[u8]]) -> u64 {
        let lines: usize = entries.iter().map(|e| format!("{}\n", e.len()).len() + e.len()).sum();
        (BATCH_HEADER.len() + lines) as u64
    }

    fn read(bytes: &[u8], limit: u64) -> Vec<Result<Vec<u8>, String>> {
        BatchReader::new(bytes, limit)
            .map(|entry| entry.map_err(|err| err.to_string()))
            .collect()
    }

    #[test]
    fn entries_come_back_as_written_newlines_and_all() {
        let entries: [&[u8]; 3] = [b"Update: 1\nline\n", b"", b"no newline at the end"];
        let read = read(&batch(&entries), 100);
        let expected: Vec<Result<Vec<u8>, String>> = entries.iter().map(|e| Ok(e.to_vec())).collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn an_empty_batch_has_no_entries_and_an_empty_file_is_no_batch() {
        assert!(read(&batch(&[]), 100).is_empty());
        assert_eq!(read(b"", 100), vec![Err(BatchError::NotABatch.to_string())]);
        assert_eq!(read(b"Update: 1\n", 100), vec![Err(BatchError::NotABatch.to_string())]);
    }

    #[test]
    fn damage_is_named_by_its_entry_and_ends_the_reading() {
        let good = batch(&[b"first", b"second"]);
        let cut = &good[..good.len() - 2];
        assert_eq!(
            read(cut, 100),
            vec![Ok(b"first".to_vec()), Err("entry 2: the file ends inside it".into())]
        );
        let mut junk = batch(&[b"first"]);
        junk.extend_from_slice(b"12x\nsecond");
        assert_eq!(read(&junk, 100)[1], Err("entry 2: malformed length line".into()));
        let mut endless = batch(&[]);
        endless.extend_from_slice(&[b'9'; 40]);
        assert_eq!(read(&endless, 100), vec![Err("entry 1: malformed length line".into())]);
        assert_eq!(
            read(&batch(&[b"0123456789"]), 9),
            vec![Err("entry 1: 10 bytes, over the limit of 9".into())]
        );
    }
}
