//! givepubs' memory of whom it mailed the keyring today.
//!
//! The keyring is large and a request's return address can be forged, so
//! givepubs mails it at most once a day to one address: a second request
//! the same (UTC) day gets no keyring. The record is one small file under
//! the state directory, `givepubs.sent`, of `YYYY-MM-DD address` lines. It
//! is bounded: only today's lines are kept (older ones are dropped at the
//! next write), at most [`MAX_ADDRESSES`] of them (when full, no more
//! keyrings go out that day), and a file grown past [`MAX_FILE_BYTES`] by
//! other hands is read no further. It is written whole (temp file, fsync,
//! rename) under an exclusive lock on `givepubs.sent.lock`, held from the
//! check until the keyring is sent and recorded, so two requests that
//! arrive together can't both pass the check.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use nix::fcntl::{Flock, FlockArg};

use ripem_core::atomic::write_atomically;
use ripem_core::types::Email;

/// At most this many addresses are recorded a day: past it, givepubs sends
/// no more keyrings until the next day.
pub const MAX_ADDRESSES: usize = 10_000;
/// A record larger than this is not read past this point.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct DailyRecordError {
    /// The record or its lock file.
    pub path: PathBuf,
    /// The system error.
    pub source: io::Error,
}

/// Whether a keyring may go to an address today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not sent today: send it, then [`DailyRecord::record`].
    Send,
    /// Already sent to this address today.
    AlreadySent,
    /// [`MAX_ADDRESSES`] keyrings went out today.
    Full,
}

/// Today's record, locked while it is held.
pub struct DailyRecord {
    path: PathBuf,
    today: NaiveDate,
    sent: BTreeSet<String>,
    _lock: Flock<File>,
}

impl DailyRecord {
    /// [`DailyRecord::open`] for the current UTC day.
    pub fn open_today(path: &Path) -> Result<DailyRecord, DailyRecordError> {
        DailyRecord::open(path, chrono::Utc::now().date_naive())
    }

    /// Locks and reads the record at `path` for `today`, waiting for
    /// another givepubs that holds it. A missing record is empty.
    pub fn open(path: &Path, today: NaiveDate) -> Result<DailyRecord, DailyRecordError> {
        let lock_path = {
            let mut name = path.as_os_str().to_owned();
            name.push(".lock");
            PathBuf::from(name)
        };
        let failed = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DailyRecordError { path, source }
        };
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(failed(&lock_path))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| failed(&lock_path)(io::Error::from(errno)))?;
        let mut text = Vec::new();
        match File::open(path) {
            Ok(file) => {
                file.take(MAX_FILE_BYTES).read_to_end(&mut text).map_err(failed(path))?;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(failed(path)(err)),
        }
        let day = today.format("%Y-%m-%d").to_string();
        let sent = String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|line| line.split_once(' '))
            .filter(|(date, _)| *date == day)
            .map(|(_, address)| address.trim().to_string())
            .take(MAX_ADDRESSES)
            .collect();
        Ok(DailyRecord {
            path: path.to_path_buf(),
            today,
            sent,
            _lock: lock,
        })
    }

    /// Whether the keyring may go to `to` today.
    pub fn verdict(&self, to: &Email) -> Verdict {
        if self.sent.contains(to.as_str()) {
            Verdict::AlreadySent
        } else if self.sent.len() >= MAX_ADDRESSES {
            Verdict::Full
        } else {
            Verdict::Send
        }
    }

    /// Records that the keyring went to `to` today, dropping other days.
    pub fn record(&mut self, to: &Email) -> Result<(), DailyRecordError> {
        self.sent.insert(to.as_str().to_string());
        let day = self.today.format("%Y-%m-%d");
        let text: String = self.sent.iter().map(|address| format!("{day} {address}\n")).collect();
        write_atomically(&self.path, text.as_bytes()).map_err(|source| DailyRecordError {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    #[test]
    fn once_a_day_per_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("givepubs.sent");
        let a = Email::parse("a@example.org").unwrap();
        let b = Email::parse("b@example.org").unwrap();
        let mut record = DailyRecord::open(&path, day(1)).unwrap();
        assert_eq!(record.verdict(&a), Verdict::Send);
        record.record(&a).unwrap();
        drop(record);
        let record = DailyRecord::open(&path, day(1)).unwrap();
        assert_eq!(record.verdict(&a), Verdict::AlreadySent);
        assert_eq!(record.verdict(&b), Verdict::Send);
        drop(record);
        let mut record = DailyRecord::open(&path, day(2)).unwrap();
        assert_eq!(record.verdict(&a), Verdict::Send, "a new day");
        record.record(&b).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "2026-12-02 b@example.org\n");
    }

    #[test]
    fn full_after_max_addresses_and_junk_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("givepubs.sent");
        let mut text = String::from("junk line\n\u{0}\u{ff}\n");
        for i in 0..MAX_ADDRESSES + 5 {
            text.push_str(&format!("2026-12-01 u{i}@example.org\n"));
        }
        std::fs::write(&path, text).unwrap();
        let record = DailyRecord::open(&path, day(1)).unwrap();
        assert_eq!(record.verdict(&Email::parse("new@example.org").unwrap()), Verdict::Full);
    }
}
