//! The dump order: every key sorted by its record's first address, in
//! bounded memory (runs sorted in memory, spilled to unnamed temporary
//! files, merged as they are read back), so db2flat's output is
//! deterministic whatever the database's size.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{KeyStore, StoreError, KEY_PREFIX};
use ripem_core::record::Record;
use ripem_core::types::Fingerprint;

/// Entries sorted in memory at once.
pub(super) const SORT_RUN: usize = 50_000;

impl KeyStore {
    /// Every key's fingerprint, ordered by its record's first address
    /// (then fingerprint) so dumps are deterministic, in bounded memory:
    /// runs of [`SORT_RUN`] entries are sorted and spilled to unnamed
    /// temporary files in `scratch`, then merged as they are read.
    pub fn fingerprints_by_first_address(&self, scratch: &Path) -> Result<SortedKeys, StoreError> {
        let scratch_err = |source| StoreError::Scratch {
            path: scratch.to_path_buf(),
            source,
        };
        let mut runs = Vec::new();
        let mut run: Vec<(String, String)> = Vec::with_capacity(SORT_RUN);
        let mut total = 0;
        let mut spill = |run: &mut Vec<(String, String)>| -> Result<(), StoreError> {
            run.sort_unstable();
            let mut file = BufWriter::new(tempfile::tempfile_in(scratch).map_err(scratch_err)?);
            for (email, fingerprint) in run.drain(..) {
                writeln!(file, "{email}\t{fingerprint}").map_err(scratch_err)?;
            }
            let mut file = file.into_inner().map_err(|err| scratch_err(err.into_error()))?;
            io::Seek::rewind(&mut file).map_err(scratch_err)?;
            runs.push(BufReader::new(file).lines());
            Ok(())
        };
        for key in self.raw_keys() {
            let key = key?;
            let Some(hex) = key.strip_prefix(KEY_PREFIX) else {
                continue;
            };
            let first = self.value_with(&key, |record| {
                Record::first_user(record).map(|user| String::from_utf8_lossy(user).into_owned())
            })?;
            if let Some(first) = first {
                let hex = String::from_utf8_lossy(hex).into_owned();
                // A revoked key whose addresses all passed on sorts by its fingerprint.
                run.push((first.unwrap_or_else(|| format!("0x{hex}")), hex));
                total += 1;
                if run.len() == SORT_RUN {
                    spill(&mut run)?;
                }
            }
        }
        spill(&mut run)?;
        let mut sorted = SortedKeys {
            runs,
            heads: BinaryHeap::new(),
            total,
            scratch: scratch.to_path_buf(),
        };
        for index in 0..sorted.runs.len() {
            sorted.advance(index)?;
        }
        Ok(sorted)
    }
}

/// The keys of a database in dump order; see
/// [`KeyStore::fingerprints_by_first_address`].
pub struct SortedKeys {
    runs: Vec<io::Lines<BufReader<File>>>,
    /// The smallest unread entry of each run.
    heads: BinaryHeap<Reverse<(String, String, usize)>>,
    total: usize,
    scratch: PathBuf,
}

impl SortedKeys {
    /// How many keys the listing holds.
    pub fn total(&self) -> usize {
        self.total
    }

    fn advance(&mut self, run: usize) -> Result<(), StoreError> {
        if let Some(line) = self.runs[run].next() {
            let line = line.map_err(|source| StoreError::Scratch {
                path: self.scratch.clone(),
                source,
            })?;
            if let Some((email, fingerprint)) = line.split_once('\t') {
                self.heads
                    .push(Reverse((email.to_string(), fingerprint.to_string(), run)));
            }
        }
        Ok(())
    }
}

impl Iterator for SortedKeys {
    type Item = Result<Fingerprint, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse((_, fingerprint, run)) = self.heads.pop()?;
        if let Err(err) = self.advance(run) {
            return Some(Err(err));
        }
        Some(Fingerprint::parse(&fingerprint).map_err(|err| StoreError::Damaged {
            path: self.scratch.clone(),
            key: fingerprint,
            problem: err.to_string(),
        }))
    }
}
