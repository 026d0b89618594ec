//! The flat keyring: the whole database as two files for download.
//!
//! `pubkeys.txt` starts with `# Created on <date>` and lists each key's
//! record once, sorted by its first address, records separated by a blank
//! line; `keyreg --import` reads it back. `pubkeys.asc` is one armored
//! keyring holding every key, which `gpg --import` reads. Both are written
//! atomically, streaming record by record; a dump killed half-way leaves
//! its temp files, a gigabyte each at a million keys, and the next dump
//! removes them.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use ripem_core::atomic::{self, AtomicFile};
use ripem_core::exit::{self, io_exit_code, ExitStatus};
use ripem_core::record::Record;
use ripem_core::types::Query;
use ripem_keydb::{KeyStore, StoreError};
use ripem_openpgp::{self as openpgp, ArmoredKeyringWriter};

/// Why the flat files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FlatError {
    /// Reading the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
}

impl ExitStatus for FlatError {
    fn exit_code(&self) -> u8 {
        match self {
            FlatError::Store(inner) => inner.exit_code(),
            FlatError::Io { source, .. } => io_exit_code(source, exit::IOERR),
        }
    }
}

/// What a dump wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpSummary {
    /// Keys written.
    pub keys: usize,
    /// Keys whose stored armor could not be decoded (left out of the `.asc`).
    pub skipped: usize,
    /// Temp files of earlier dumps that were killed, removed.
    pub abandoned: usize,
}

/// Writes both flat files from `store`, streaming: memory stays bounded
/// whatever the database's size (the sort spills to temporary files beside
/// `text_path`). `progress` is told (keys written, keys in all) as it goes.
pub fn dump(
    store: &KeyStore,
    text_path: &Path,
    armored_path: &Path,
    now: DateTime<Utc>,
    progress: &dyn Fn(usize, usize),
) -> Result<DumpSummary, FlatError> {
    let scratch = text_path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let sorted = store.fingerprints_by_first_address(scratch)?;
    let total = sorted.total();
    let records = sorted.filter_map(|fingerprint| match fingerprint {
        Ok(fingerprint) => store.record(&Query::Fingerprint(fingerprint)).transpose(),
        Err(err) => Some(Err(err)),
    });
    dump_records(records, total, text_path, armored_path, now, progress)
}

/// Writes flat files holding no key (no database exists yet).
pub fn dump_empty(text_path: &Path, armored_path: &Path, now: DateTime<Utc>) -> Result<DumpSummary, FlatError> {
    dump_records(std::iter::empty(), 0, text_path, armored_path, now, &|_, _| {})
}

fn dump_records(
    records: impl Iterator<Item = Result<Record, StoreError>>,
    total: usize,
    text_path: &Path,
    armored_path: &Path,
    now: DateTime<Utc>,
    progress: &dyn Fn(usize, usize),
) -> Result<DumpSummary, FlatError> {
    let text_err = |source| FlatError::Io {
        path: text_path.to_path_buf(),
        source,
    };
    let armored_err = |source| FlatError::Io {
        path: armored_path.to_path_buf(),
        source,
    };
    let abandoned = atomic::remove_abandoned(text_path).map_err(text_err)?
        + atomic::remove_abandoned(armored_path).map_err(armored_err)?;
    let mut text = AtomicFile::create(text_path).map_err(text_err)?;
    let armored = AtomicFile::create(armored_path).map_err(armored_err)?;
    let mut keyring = ArmoredKeyringWriter::new(armored).map_err(armored_err)?;
    writeln!(text, "# Created on {}", now.to_rfc3339_opts(SecondsFormat::Secs, true)).map_err(text_err)?;

    let mut summary = DumpSummary {
        keys: 0,
        skipped: 0,
        abandoned,
    };
    for record in records {
        let record = record?;
        write_record(&mut text, &record).map_err(text_err)?;
        match openpgp::dearmor(&record.key_armor) {
            Ok(binary) => keyring.write_key(&binary).map_err(armored_err)?,
            Err(_) => summary.skipped += 1,
        }
        summary.keys += 1;
        if summary.keys.is_multiple_of(1000) {
            progress(summary.keys, total);
        }
    }
    progress(summary.keys, total);
    text.commit().map_err(text_err)?;
    keyring.finish().map_err(armored_err)?.commit().map_err(armored_err)?;
    Ok(summary)
}

fn write_record(out: &mut impl Write, record: &Record) -> io::Result<()> {
    out.write_all(b"\n")?;
    out.write_all(record.to_text().as_bytes())
}
