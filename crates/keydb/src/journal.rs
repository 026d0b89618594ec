//! The change journal: which keys each write window changed.
//!
//! keyserv keeps the answers it has sent, shared by its threads, across
//! keyreg's writes; it must then forget exactly the answers a write made
//! wrong. keyreg appends one line per write window to `keys.gdbm.journal`,
//! inside the window and before it bumps the generation in the lock file:
//! the window's new generation and the fingerprints of the records it wrote
//! or deleted. A reader that holds the lock file shared (no window open)
//! and was up to date at generation G reads the lines after G: the keys
//! whose answers to forget. When the journal can't say (it was started
//! anew past G, or a line is missing), the reader forgets everything.
//!
//! The file starts with a header naming the first generation it covers.
//! Past [`ROTATE_BYTES`] keyreg starts a new file (written aside and
//! renamed over the old one), so it stays small; a reader notices the new
//! file by its inode.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A journal larger than this is started anew at the next window.
pub const ROTATE_BYTES: u64 = 8 << 20;
const HEADER: &str = "ripem-keyserver change journal, from generation ";

/// The journal beside a database's lock file (`keys.gdbm.lock` →
/// `keys.gdbm.journal`).
pub fn path_for(lock_path: &Path) -> PathBuf {
    lock_path.with_extension("journal")
}

fn line(generation: u64, fingerprints: &[String]) -> String {
    let mut line = generation.to_string();
    for fingerprint in fingerprints {
        line.push(' ');
        line.push_str(fingerprint);
    }
    line.push('\n');
    line
}

/// Records that the window which makes `generation` changed the records of
/// `fingerprints`. Called by the writer inside its window.
pub fn append(path: &Path, generation: u64, fingerprints: &[String]) -> io::Result<()> {
    let entry = line(generation, fingerprints);
    let size = fs::metadata(path).map(|meta| meta.len()).ok();
    if size.is_some_and(|size| size < ROTATE_BYTES) {
        let mut file = OpenOptions::new().append(true).open(path)?;
        return file.write_all(entry.as_bytes());
    }
    // A new journal, complete before it takes the old one's name.
    let mut fresh = path.as_os_str().to_owned();
    fresh.push(".new");
    let fresh = PathBuf::from(fresh);
    fs::write(&fresh, format!("{HEADER}{generation}\n{entry}"))?;
    fs::rename(&fresh, path)
}

/// What a reader learns from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// The fingerprints of every record changed since the reader's generation.
    Keys(Vec<String>),
    /// The journal does not cover every window since then: forget everything.
    Unknown,
}

/// Reads the journal from where it last stopped.
#[derive(Debug)]
pub struct JournalReader {
    path: PathBuf,
    /// The file read so far (device, inode), and how far.
    file: Option<(u64, u64)>,
    offset: u64,
}

impl JournalReader {
    /// A reader of the journal at `path`, which has read nothing yet.
    pub fn new(path: &Path) -> JournalReader {
        JournalReader {
            path: path.to_path_buf(),
            file: None,
            offset: 0,
        }
    }

    /// The records changed by the windows after generation `from` up to
    /// `to`, read with the lock file held shared (no window open).
    pub fn changes(&mut self, from: u64, to: u64) -> Changes {
        match self.read(from, to) {
            Ok(Some(keys)) => Changes::Keys(keys),
            Ok(None) | Err(_) => {
                // Start over at the next call, from whatever file is there.
                self.file = None;
                Changes::Unknown
            }
        }
    }

    fn read(&mut self, from: u64, to: u64) -> io::Result<Option<Vec<String>>> {
        let mut file = File::open(&self.path)?;
        let meta = file.metadata()?;
        let identity = (meta.dev(), meta.ino());
        if self.file != Some(identity) || meta.len() < self.offset {
            // A new file: its header says where it starts.
            let mut reader = BufReader::new(&mut file);
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let Some(first) = header.strip_prefix(HEADER).and_then(|g| g.trim().parse::<u64>().ok()) else {
                return Ok(None);
            };
            if first > from + 1 {
                return Ok(None);
            }
            self.file = Some(identity);
            self.offset = header.len() as u64;
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut text = String::new();
        file.take(meta.len() - self.offset).read_to_string(&mut text)?;
        // Every generation after `from` must have a line. A generation may
        // have two: a writer killed between its line and its generation
        // bump leaves one, and the next window, which makes the same
        // generation, another; both windows' keys count.
        let mut reached = from;
        let mut keys = Vec::new();
        for entry in text.split_inclusive('\n') {
            let Some(entry_text) = entry.strip_suffix('\n') else {
                break;
            };
            let mut fields = entry_text.split(' ');
            let Some(generation) = fields.next().and_then(|g| g.parse::<u64>().ok()) else {
                return Ok(None);
            };
            if generation > to {
                break;
            }
            self.offset += entry.len() as u64;
            if generation <= from {
                continue;
            }
            if generation > reached + 1 {
                return Ok(None);
            }
            keys.extend(fields.filter(|f| !f.is_empty()).map(str::to_string));
            reached = reached.max(generation);
        }
        Ok((reached == to).then_some(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Changes {
        Changes::Keys(list.iter().map(|k| k.to_string()).collect())
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_reader_sees_the_keys_of_each_window_since_its_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("keys.gdbm.lock"));
        assert_eq!(path.file_name().unwrap(), "keys.gdbm.journal");
        let mut reader = JournalReader::new(&path);
        assert_eq!(reader.changes(0, 1), Changes::Unknown, "no journal yet");

        append(&path, 1, &strings(&["A"])).unwrap();
        append(&path, 2, &strings(&[])).unwrap();
        append(&path, 3, &strings(&["B", "C"])).unwrap();
        let mut reader = JournalReader::new(&path);
        assert_eq!(reader.changes(0, 3), keys(&["A", "B", "C"]));
        append(&path, 4, &strings(&["D"])).unwrap();
        assert_eq!(reader.changes(3, 4), keys(&["D"]));
        assert_eq!(reader.changes(4, 4), keys(&[]));

        // A reader that starts late skips what it does not need.
        let mut late = JournalReader::new(&path);
        assert_eq!(late.changes(2, 4), keys(&["B", "C", "D"]));
    }

    #[test]
    fn a_gap_or_a_journal_started_later_means_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.gdbm.journal");
        append(&path, 5, &strings(&["A"])).unwrap();
        append(&path, 7, &strings(&["B"])).unwrap();
        assert_eq!(
            JournalReader::new(&path).changes(4, 7),
            Changes::Unknown,
            "6 is missing"
        );
        assert_eq!(
            JournalReader::new(&path).changes(3, 5),
            Changes::Unknown,
            "4 is not covered"
        );
        assert_eq!(JournalReader::new(&path).changes(4, 5), keys(&["A"]));
    }

    #[test]
    fn a_generation_journaled_twice_counts_both_windows() {
        // A writer killed after its line, before its generation bump; the
        // next window makes the same generation.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.gdbm.journal");
        append(&path, 1, &strings(&["A"])).unwrap();
        let mut reader = JournalReader::new(&path);
        assert_eq!(reader.changes(0, 1), keys(&["A"]));
        append(&path, 2, &strings(&["B"])).unwrap();
        append(&path, 2, &strings(&["C"])).unwrap();
        assert_eq!(reader.changes(1, 2), keys(&["B", "C"]));
    }

    #[test]
    fn a_rotated_journal_is_read_from_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.gdbm.journal");
        let big: Vec<String> = (0..3000).map(|n| format!("{n:040X}")).collect();
        append(&path, 1, &strings(&["A"])).unwrap();
        let mut reader = JournalReader::new(&path);
        assert_eq!(reader.changes(0, 1), keys(&["A"]));
        let mut generation = 1;
        while fs::metadata(&path).unwrap().len() < ROTATE_BYTES {
            generation += 1;
            append(&path, generation, &big).unwrap();
        }
        // The next window starts a new file.
        append(&path, generation + 1, &strings(&["Z"])).unwrap();
        assert!(fs::metadata(&path).unwrap().len() < 1000);
        assert_eq!(reader.changes(generation, generation + 1), keys(&["Z"]));
        // A reader behind the new file's start can't know.
        assert_eq!(JournalReader::new(&path).changes(1, generation + 1), Changes::Unknown);
    }
}
