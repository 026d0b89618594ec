//! Notices for keys registered from a web submission (hkpd's `POST
//! /pks/add` and VKS upload): such a request has no return address, so
//! the owner of each address it newly registers is told by mail instead
//! ("your key was registered … from a web upload; if this was not you …")
//! and a web upload is never silent. So that uploads can't be used to
//! flood a mailbox, an address gets at most one notice per
//! [`NOTICE_INTERVAL`]: the times of the notices sent lately are kept in
//! `STATE_DIR/web-notices` (one `<unix seconds> <address>` line each),
//! entries older than the interval are dropped, and the file never holds
//! more than [`MAX_RECORDED`] lines (the oldest go first), so it stays
//! small whatever the traffic. The file is rewritten atomically; a notice
//! is queued before it is recorded, so a crash between the two sends it
//! rather than losing it, and a request processed again queues nothing
//! twice (the notice's name derives from the request's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ripem_core::atomic::write_atomically;
use ripem_core::reply::{Mailer, Reply};
use ripem_core::spool::{Spool, SpoolFile};
use ripem_core::types::{Email, Fingerprint};

use crate::error::RegistrarError;

/// An address gets at most one web-submission notice this often (seconds).
pub const NOTICE_INTERVAL: i64 = 3600;
/// Most addresses the record remembers.
pub const MAX_RECORDED: usize = 100_000;

/// The record file under the state directory.
pub fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join("web-notices")
}

/// When each address was last sent a notice, within the interval.
struct Record {
    path: PathBuf,
    sent: BTreeMap<Email, i64>,
}

impl Record {
    fn read(path: &Path, now: i64) -> Result<Record, RegistrarError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(RegistrarError::NoticeRecord {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mut sent = BTreeMap::new();
        for line in text.lines() {
            let Some((time, address)) = line.split_once(' ') else {
                continue;
            };
            let (Ok(time), Ok(email)) = (time.parse::<i64>(), Email::parse(address)) else {
                continue;
            };
            if now - time < NOTICE_INTERVAL && time <= now {
                sent.insert(email, time);
            }
        }
        Ok(Record {
            path: path.to_path_buf(),
            sent,
        })
    }

    fn write(&self) -> Result<(), RegistrarError> {
        let mut entries: Vec<(&Email, &i64)> = self.sent.iter().collect();
        entries.sort_by_key(|(_, time)| std::cmp::Reverse(**time));
        entries.truncate(MAX_RECORDED);
        let mut text = String::new();
        for (email, time) in entries.into_iter().rev() {
            text.push_str(&format!("{time} {email}\n"));
        }
        write_atomically(&self.path, text.as_bytes()).map_err(|source| RegistrarError::NoticeRecord {
            path: self.path.clone(),
            source,
        })
    }
}

/// What one notice needs to say.
pub struct Notice<'a> {
    /// The address newly registered.
    pub email: &'a Email,
    /// The key it is registered to now.
    pub fingerprint: &'a Fingerprint,
}

/// Queues a notice to each address of `registered` that had none within
/// the interval, then records them; returns how many were queued.
/// `via` is the submission header's value (`hkp`, `vks`).
// Each is a separate piece of keyreg's state; a struct for one call buys nothing.
#[allow(clippy::too_many_arguments)]
pub fn queue_notices(
    mailer: &Mailer,
    spool: &Spool,
    state_dir: &Path,
    register_address: &str,
    file: &SpoolFile,
    via: &str,
    registered: &[Notice<'_>],
    now: DateTime<Utc>,
) -> Result<usize, RegistrarError> {
    if registered.is_empty() {
        return Ok(0);
    }
    let seconds = now.timestamp();
    let mut record = Record::read(&record_path(state_dir), seconds)?;
    let mut queued = 0;
    for (index, notice) in registered.iter().enumerate() {
        if record.sent.contains_key(notice.email) {
            continue;
        }
        let via = match via {
            "hkp" => "an HKP upload (gpg --send-keys)",
            "vks" => "a VKS upload",
            _ => "a web upload",
        };
        let body = format!(
            "This is the RIPEM key server at {server}.\n\nThe OpenPGP key {fpr} was registered for your address\n\n  {email}\n\nat {time} from a web upload: {via}. Anyone who looks your\naddress up here now gets that key.\n\nIf this was you, there is nothing to do. If it was not you, someone else\nhas published a key under your address, and mail encrypted to it can be\nread by them: write to {server}, and do not trust that key for {email}.\n(To replace a key of your own, mail the new one signed by the old one to\nthe change address; see the help at {register}.)\n",
            server = mailer.from_address(),
            fpr = notice.fingerprint,
            email = notice.email,
            time = now.format("%Y-%m-%d %H:%M UTC"),
            register = register_address,
        );
        let reply = Reply {
            to: notice.email.clone(),
            subject: format!("A key was registered for {} from a web upload", notice.email),
            in_reply_to: None,
            body,
            attachment: None,
        };
        mailer.queue(spool, &format!("{}.web{index}", file.name()), &reply)?;
        record.sent.insert(notice.email.clone(), seconds);
        queued += 1;
    }
    if queued > 0 {
        record.write()?;
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_forgets_after_an_hour_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = record_path(dir.path());
        let email = |n: usize| Email::parse(&format!("u{n}@example.org")).unwrap();
        let mut record = Record::read(&path, 10_000).unwrap();
        record.sent.insert(email(1), 10_000 - NOTICE_INTERVAL - 1);
        record.sent.insert(email(2), 10_000 - 10);
        record.write().unwrap();
        let again = Record::read(&path, 10_000).unwrap();
        assert!(!again.sent.contains_key(&email(1)));
        assert!(again.sent.contains_key(&email(2)));
        std::fs::write(&path, "junk\n12 not-an-address\n9999 u3@example.org\n").unwrap();
        let junk = Record::read(&path, 10_000).unwrap();
        assert_eq!(junk.sent.len(), 1);

        let mut big = Record::read(&path, 10_000).unwrap();
        for n in 0..MAX_RECORDED + 5 {
            big.sent.insert(email(n), 9_000 + (n % 1000) as i64);
        }
        big.write().unwrap();
        let read = Record::read(&path, 10_000).unwrap();
        assert_eq!(read.sent.len(), MAX_RECORDED);
    }
}
