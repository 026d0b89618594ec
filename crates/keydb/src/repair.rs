//! Repair: a damaged database rebuilt, checked and switched in, unattended.
//!
//! The source is the apply log, which holds every write since the database
//! was made (or since a base entry that holds all of it): replayed into an
//! empty file it gives the database as the last completed window left it,
//! record times included. When the log can't vouch for the whole history
//! (it is missing, damaged mid-way, or does not reach the active file's
//! generation), the next sources are the active file and then the standby,
//! each used only if it checks out item by item ([`verify::check`]). The
//! rebuilt file is checked the same way, then switched in atomically under
//! the lock file; the damaged file is kept beside it as
//! `keys.gdbm.damaged-<time>` (or `.replaced-<time>` for a rebuild asked
//! for by hand), the standby is copied afresh, and the log restarts with a
//! base entry if it was not the source. Killed at any point, a repair
//! leaves the old files in place and runs again.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::applylog::{ApplyLog, EntryKind, Op};
use super::pair::{PairPaths, Writer};
use super::{io_error, locks, value, verify, KeyStore, StoreError};
use crate::gdbm::{Gdbm, OpenMode};

/// What a repair did.
#[derive(Debug, Clone)]
pub struct RepairReport {
    /// Where the data came from.
    pub source: String,
    /// What the rebuilt file holds.
    pub summary: verify::VerifySummary,
    /// Where the replaced file was kept.
    pub kept: PathBuf,
    /// How long it took.
    pub elapsed: Duration,
}

/// Replays the whole log into `db`; the generation it reaches, or why the
/// log can't be the source.
fn replay_log(log: &ApplyLog, db: &mut Gdbm) -> Result<u64, String> {
    let mut expected: Option<u64> = None;
    let mut failure = None;
    let end = log.replay(&mut |header, ops| {
        let follows = match expected {
            None => header.kind == EntryKind::Base || header.generation == 1,
            Some(previous) => header.generation == previous + 1,
        };
        if !follows {
            failure.get_or_insert(format!("the log skips to generation {}", header.generation));
            return Ok(());
        }
        if header.kind == EntryKind::Base && expected.is_some() {
            failure.get_or_insert("a base entry in the middle of the log".to_string());
        }
        expected = Some(header.generation);
        for op in ops {
            let done = match &op {
                Op::Put(key, payload) => db.replace(key, &value::seal(payload)),
                Op::Delete(key) => db.delete(key).map(|_| ()),
            };
            done.map_err(|err| std::io::Error::other(err.to_string()))?;
        }
        Ok(())
    });
    let end = end.map_err(|err| format!("the log could not be read: {err}"))?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    if end.damaged_tail {
        return Err(format!("the log is damaged after generation {:?}", end.generation));
    }
    end.generation.ok_or_else(|| "the log is empty".to_string())
}

/// Copies every item of a file that checks out into `db`.
fn copy_checked(source: &Path, db: &mut Gdbm) -> Result<(), String> {
    let reader = Gdbm::open(source, OpenMode::ReaderUnlocked).map_err(|err| err.to_string())?;
    let store = KeyStore::reading(reader, source);
    for op in verify::items(&store).map_err(|err| err.to_string())? {
        if let Op::Put(key, payload) = op {
            db.replace(&key, &value::seal(&payload))
                .map_err(|err| err.to_string())?;
        }
    }
    Ok(())
}

/// Builds the replacement file from the best source; returns which.
fn rebuild(paths: &PairPaths, target: &Path, log: &ApplyLog) -> Result<(String, bool), StoreError> {
    let mut reasons = Vec::new();
    let fresh = || -> Result<Gdbm, StoreError> {
        let _ = fs::remove_file(target);
        Ok(Gdbm::open(target, OpenMode::WriterCreate)?)
    };
    let mut db = fresh()?;
    match replay_log(log, &mut db) {
        Ok(generation) => {
            db.sync()?;
            return Ok((format!("the apply log, through generation {generation}"), true));
        }
        Err(reason) => reasons.push(format!("apply log: {reason}")),
    }
    for source in [&paths.active, &paths.standby] {
        db = fresh()?;
        match copy_checked(source, &mut db) {
            Ok(()) => {
                db.sync()?;
                return Ok((format!("{}, checked item by item", source.display()), false));
            }
            Err(reason) => reasons.push(format!("{}: {reason}", source.display())),
        }
    }
    Err(StoreError::Unrepairable {
        path: paths.active.clone(),
        reason: reasons.join("; "),
    })
}

impl KeyStore {
    /// Rebuilds the database at `path` (see the module's notes) and
    /// switches the result in, keeping the replaced file beside it. `damaged`
    /// says why: the file was found damaged (kept as `.damaged-<time>`), or
    /// a rebuild was asked for (`.replaced-<time>`). Waits up to `timeout`
    /// for another writer.
    pub fn repair(path: &Path, lock_path: &Path, timeout: Duration, damaged: bool) -> Result<RepairReport, StoreError> {
        let started = Instant::now();
        let paths = PairPaths::new(path, lock_path);
        let writer_lock = Writer::lock(&paths, timeout)?;
        let log = ApplyLog::new(&paths.log);
        let target = paths.scratch("rebuild");
        let (source, from_log) = rebuild(&paths, &target, &log)?;
        let rebuilt = KeyStore::reading(Gdbm::open(&target, OpenMode::ReaderUnlocked)?, &target);
        let summary = verify::check(&rebuilt)?;
        let generation = rebuilt.generation()?;
        let base = if from_log { None } else { Some(verify::items(&rebuilt)?) };
        drop(rebuilt);
        fs::File::open(&target)
            .and_then(|file| file.sync_all())
            .map_err(io_error(&target))?;
        let kept = kept_name(&paths.active, if damaged { "damaged" } else { "replaced" });
        install(&paths, &target, &kept, timeout)?;
        if let Some(base) = base {
            log.append(0, EntryKind::Base, generation, &base)
                .map_err(io_error(&paths.log))?;
        }
        // The state is cleared (not clean): the next writer settles the log
        // and copies the standby afresh from the new file.
        writer_lock
            .write_all_at(&[0; 8], 0)
            .and_then(|()| writer_lock.sync_data())
            .map_err(io_error(&paths.state))?;
        drop(writer_lock);
        Ok(RepairReport {
            source,
            summary,
            kept,
            elapsed: started.elapsed(),
        })
    }
}

/// `keys.gdbm.<why>-<time>`, with a counter if that name is taken.
fn kept_name(active: &Path, why: &str) -> PathBuf {
    let base = format!("{}.{why}-{}", active.display(), Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut candidate = PathBuf::from(&base);
    let mut counter = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{counter}"));
        counter += 1;
    }
    candidate
}

/// Switches the rebuilt file in under the lock file, keeping the old one.
fn install(paths: &PairPaths, rebuilt: &Path, kept: &Path, timeout: Duration) -> Result<(), StoreError> {
    let lock = locks::open_lock_file(&paths.lock)?;
    locks::lock_polling(&lock, libc::LOCK_EX, &paths.lock, timeout)?;
    let result = (|| {
        if paths.active.exists() {
            fs::hard_link(&paths.active, kept).map_err(io_error(kept))?;
        }
        fs::rename(rebuilt, &paths.active).map_err(io_error(&paths.active))?;
        paths.sync_dir()?;
        locks::bump_generation(&lock, &paths.lock, None)
    })();
    let _ = locks::flock(&lock, libc::LOCK_UN);
    result.map(|_| ())
}
