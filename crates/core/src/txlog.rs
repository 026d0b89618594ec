//! The transaction log: every request, verbatim, with its outcome.
//!
//! The file is only ever appended to, one entry per write (a writev of its
//! parts, so a large request is not copied first), and fsynced
//! before keyreg deletes the request from the spool. An entry is a header
//! block of `Name: value` lines (time, queue, spool file, return address,
//! outcome lines), then `Request-Bytes: N`, a blank line and exactly N
//! bytes of the request as received, then a closing line. The byte count
//! makes the log unambiguous whatever the request holds.

use std::fs::OpenOptions;
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

/// One logged request.
#[derive(Debug, Clone)]
pub struct LogEntry<'a> {
    /// When it was processed.
    pub time: DateTime<Utc>,
    /// The queue it came from (or `import` for `keyreg --import`).
    pub queue: &'a str,
    /// The spool file name or imported file path.
    pub source: &'a str,
    /// Where the reply goes, if anywhere.
    pub reply_to: Option<&'a str>,
    /// One line per outcome (per address or per key).
    pub outcome: &'a [String],
    /// The request exactly as received.
    pub request: &'a [u8],
}

/// The append-only transaction log.
#[derive(Debug, Clone)]
pub struct TransactionLog {
    path: PathBuf,
}

/// Replaces line breaks so a header value stays on one line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

impl TransactionLog {
    /// The log at `path` (created on first append).
    pub fn new(path: &Path) -> TransactionLog {
        TransactionLog {
            path: path.to_path_buf(),
        }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry in a single write and fsyncs it.
    pub fn append(&self, entry: &LogEntry<'_>) -> io::Result<()> {
        let mut text = String::new();
        text.push_str(&format!(
            "=== {} {} {}\n",
            entry.time.to_rfc3339_opts(SecondsFormat::Secs, true),
            entry.queue,
            one_line(entry.source)
        ));
        text.push_str(&format!("Reply-To: {}\n", one_line(entry.reply_to.unwrap_or("(none)"))));
        for line in entry.outcome {
            text.push_str(&format!("Outcome: {}\n", one_line(line)));
        }
        text.push_str(&format!("Request-Bytes: {}\n\n", entry.request.len()));
        let end: &[u8] = if entry.request.ends_with(b"\n") {
            b"=== end\n"
        } else {
            b"\n=== end\n"
        };
        let mut file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        // One writev of the three pieces: a 50 MB request is not copied
        // into a second buffer just to be written.
        let mut slices = [
            IoSlice::new(text.as_bytes()),
            IoSlice::new(entry.request),
            IoSlice::new(end),
        ];
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => IoSlice::advance_slices(&mut rest, written),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let log = TransactionLog::new(&dir.path().join("t.log"));
        let outcome = vec!["a@example.com: registered".to_string(), "line\nbreak".to_string()];
        for request in [&b"From: x\n\n=== end\nbody"[..], b"second\n"] {
            log.append(&LogEntry {
                time: Utc::now(),
                queue: "add",
                source: "key.1",
                reply_to: Some("x@example.com"),
                outcome: &outcome,
                request,
            })
            .unwrap();
        }
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.matches("Request-Bytes: ").count(), 2);
        assert!(text.contains("Outcome: a@example.com: registered\nOutcome: line break\n"));
        assert!(text.contains("Request-Bytes: 21\n\nFrom: x\n\n=== end\nbody\n=== end\n"));
    }
}
