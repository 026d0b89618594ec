//! `keyreg --import`: bulk loading keyrings and flat files at speed.
//!
//! A file is read as a stream, whatever its size: a binary keyring or one
//! armored block with [`openpgp::split_keyring`] (which frames it into
//! keys and steps over third-party certifications unparsed), a db2flat flat file record
//! by record, anything else (armored blocks among other text) block by
//! block, found by the crate's one armor rule ([`openpgp::public_key_blocks`]).
//! A block that holds only a key revocation signature (a revocation
//! certificate, `gpg --gen-revoke`) is read with
//! [`openpgp::parse_revocation_certificate`] and applied to the registered
//! key it revokes, as in a registration mail; so is a file that is one
//! small such block. One thread reads the file (for a keyring it only
//! frames the packets); one thread per core parses and checks the keys
//! (verifying self-signatures is the expensive part); the calling thread
//! applies the checked keys in file order, so first come, first served
//! holds exactly as in the spool. Queues between the stages are bounded, so
//! the file's size does not matter (GDBM's writer cache still grows with the
//! database). Keys are applied as they come, in write windows of up to
//! [`WINDOW_TIME`], each switched in like a spool batch's (lookups go
//! on throughout, and see each window once it is in; a kill loses at most
//! the open window, which the next import applies again); each window's
//! outcomes are appended to the transaction log as one entry.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

use crate::error::RegistrarError;
use crate::replication::handoff::Outbound;
use crate::replication::{self, Replication};
use crate::request::{self, Candidate, Tally};
use ripem_core::record::Record;
use ripem_core::txlog::{LogEntry, TransactionLog};
use ripem_keydb::KeyStore;
use ripem_openpgp::{self as openpgp, KeyPackets, KeyPolicy, ParsedKey, Revocation, BEGIN_PUBLIC_KEY};
use ripem_update::{time_of, Clock};

/// A window of an import is switched in once it has been open this long,
/// so lookups see a long import's progress, and a kill loses at most this
/// much work. Each switch costs a copy of the database file when the
/// window's writes are many (see `store`), so windows are long.
pub const WINDOW_TIME: Duration = Duration::from_secs(120);
/// A window opens once this long has passed since the first key waiting for it.
const WINDOW_GATHER: Duration = Duration::from_millis(100);
/// Keys waiting to be checked: few, as one may be megabytes.
const PARSED_QUEUE: usize = 64;
/// Checked keys waiting to be applied: stripped and small, and enough of
/// them that the applying thread rarely waits for the checkers.
const CHECKED_QUEUE: usize = 2000;

/// How far an import has got, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct ImportProgress {
    /// Bytes read of the current file.
    pub bytes_read: u64,
    /// The current file's size.
    pub bytes_total: u64,
    /// Keys applied so far, in every file.
    pub keys: usize,
}

/// What the importer needs of keyreg.
pub struct Importer<'a> {
    /// Checks keys.
    pub policy: &'a KeyPolicy,
    /// Receives one entry per window.
    pub log: &'a TransactionLog,
    /// Opens the database as writer, no window open yet.
    pub open: &'a dyn Fn() -> Result<KeyStore, RegistrarError>,
    /// Tells keyserv a window is about to be switched in (SIGUSR1).
    pub announce: &'a dyn Fn(),
    /// Makes each change an update, as for mail.
    pub replication: &'a Replication,
    /// Where the updates go for keysync.
    pub outbound: &'a Outbound,
}

/// A key as read from the file, before checking.
enum Parsed {
    /// A keyring's key, framed but not parsed yet: the checkers parse it.
    Packets(KeyPackets),
    Key(Box<ParsedKey>),
    Revocation(Box<Revocation>),
    Unreadable(String),
}

/// A file of one armored block from its first line is read as a keyring,
/// as a stream, unless it is this small: then it may be a revocation
/// certificate (a few hundred bytes), which only the block reader takes.
const SMALL_BLOCK: u64 = 16 * 1024;

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.count.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

type Input = BufReader<Counted<File>>;

fn open_input(path: &Path, count: &Arc<AtomicU64>) -> Result<Input, RegistrarError> {
    let file = File::open(path).map_err(|source| import_error(path, source))?;
    Ok(BufReader::with_capacity(
        1 << 16,
        Counted {
            inner: file,
            count: Arc::clone(count),
        },
    ))
}

fn import_error(path: &Path, source: io::Error) -> RegistrarError {
    RegistrarError::Import {
        path: path.to_path_buf(),
        source,
    }
}

/// A window of an import, under way.
struct OpenWindow {
    /// The position in the file of its first key.
    first: usize,
    keys: usize,
    tally: Tally,
    lines: Vec<String>,
    now: chrono::DateTime<Utc>,
    started: std::time::Instant,
    /// The replication clock, as the database left it.
    clock: Clock,
}

impl OpenWindow {
    fn new(first: usize, clock: Clock) -> OpenWindow {
        OpenWindow {
            first,
            keys: 0,
            tally: Tally::default(),
            lines: Vec::new(),
            now: Utc::now(),
            started: std::time::Instant::now(),
            clock,
        }
    }
}

/// How a file holds its keys.
enum Format {
    /// Binary packets, or one armored block from the first line on.
    Keyring,
    /// db2flat's text file.
    Flat,
    /// Armored blocks among other text.
    Blocks,
}

/// Looks at the file's start, and for armor counts its blocks (a quick
/// streaming pass), to choose how to read it.
fn detect(path: &Path) -> Result<Format, RegistrarError> {
    let count = Arc::new(AtomicU64::new(0));
    let mut input = open_input(path, &count)?;
    let start = input.fill_buf().map_err(|err| import_error(path, err))?;
    if start.first().is_some_and(|b| b & 0x80 != 0) {
        return Ok(Format::Keyring);
    }
    let mut first = String::new();
    let mut blocks = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .map_err(|err| import_error(path, err))?
            == 0
        {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        if first.is_empty() && !text.trim().is_empty() {
            first = text.trim().to_string();
            if first.starts_with('#') || first.starts_with("User:") {
                return Ok(Format::Flat);
            }
        }
        if text.starts_with(BEGIN_PUBLIC_KEY) {
            blocks += 1;
        }
    }
    if blocks == 1 && first.starts_with(BEGIN_PUBLIC_KEY) && !is_revocation_certificate(path)? {
        return Ok(Format::Keyring);
    }
    Ok(Format::Blocks)
}

/// Whether the file at `path` is one small revocation certificate.
fn is_revocation_certificate(path: &Path) -> Result<bool, RegistrarError> {
    let size = std::fs::metadata(path).map_err(|err| import_error(path, err))?.len();
    if size > SMALL_BLOCK {
        return Ok(false);
    }
    let text = std::fs::read(path).map_err(|err| import_error(path, err))?;
    Ok(openpgp::parse_revocation_certificate(&String::from_utf8_lossy(&text)).is_some())
}

/// What one read gives the checkers: its keys, or why it gave none.
fn parsed(keys: Result<Vec<ParsedKey>, openpgp::KeyError>) -> Vec<Parsed> {
    match keys {
        Ok(found) => found.into_iter().map(|key| Parsed::Key(Box::new(key))).collect(),
        Err(err) => vec![Parsed::Unreadable(err.to_string())],
    }
}

/// Hands every key of `input` to `send`, in order, until it returns false.
fn read_keys(format: Format, input: Input, send: &mut dyn FnMut(Parsed) -> bool) {
    let mut send_all = |items: Vec<Parsed>| -> bool { items.into_iter().all(&mut *send) };
    match format {
        Format::Keyring => match openpgp::split_keyring(input) {
            Ok(keys) => {
                for key in keys {
                    let item = match key {
                        Ok(packets) => Parsed::Packets(packets),
                        Err(err) => Parsed::Unreadable(err.to_string()),
                    };
                    if !send(item) {
                        return;
                    }
                }
            }
            Err(err) => {
                send_all(parsed(Err(err)));
            }
        },
        Format::Flat => {
            let lines = input.lines().map_while(Result::ok);
            for chunk in Record::split_lines(lines) {
                let keys = Record::parse(&chunk)
                    .map_err(|err| openpgp::KeyError::Unreadable(err.to_string()))
                    .and_then(|record| openpgp::parse_armored_keys(&record.key_armor));
                if !send_all(parsed(keys)) {
                    return;
                }
            }
        }
        Format::Blocks => {
            for block in openpgp::public_key_blocks(input.lines().map_while(Result::ok)) {
                // As in a registration mail: a block that is no key may be
                // a revocation certificate.
                let items = match openpgp::parse_armored_keys(&block) {
                    Err(err) => match openpgp::parse_revocation_certificate(&block) {
                        Some(revocation) => vec![Parsed::Revocation(Box::new(revocation))],
                        None => parsed(Err(err)),
                    },
                    keys => parsed(keys),
                };
                if !send_all(items) {
                    return;
                }
            }
        }
    }
}

/// The candidates of one item read: one, or for a keyring's key as
/// many as its packets parse into (normally one); a key's armored text
/// and key IDs made here, on a checker thread
/// ([`ripem_openpgp::CheckedKey::with_derived`]).
fn candidates(sequence: usize, parsed: Parsed, policy: &KeyPolicy) -> Vec<Candidate> {
    checked_candidates(sequence, parsed, policy)
        .into_iter()
        .map(|candidate| match candidate {
            Candidate::Key(key) => Candidate::Key(Box::new((*key).with_derived())),
            other => other,
        })
        .collect()
}

fn checked_candidates(sequence: usize, parsed: Parsed, policy: &KeyPolicy) -> Vec<Candidate> {
    let unreadable = |reason: String| Candidate::Refused {
        key: format!("key {}", sequence + 1),
        reason,
    };
    match parsed {
        Parsed::Unreadable(reason) => vec![unreadable(reason)],
        Parsed::Packets(packets) => packets
            .parse()
            .into_iter()
            .map(|key| match key {
                Ok(key) => request::candidate(key, policy, Utc::now()),
                Err(err) => unreadable(err.to_string()),
            })
            .collect(),
        Parsed::Key(key) => vec![request::candidate(*key, policy, Utc::now())],
        Parsed::Revocation(revocation) => vec![Candidate::Revocation(revocation)],
    }
}

/// Checks keys from `jobs` until it closes, sending each result to `done`.
fn check_keys(
    jobs: &Mutex<Receiver<(usize, Parsed)>>,
    done: &mpsc::SyncSender<(usize, Vec<Candidate>)>,
    policy: &KeyPolicy,
) {
    loop {
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        let Ok((sequence, parsed)) = job else {
            return;
        };
        if done.send((sequence, candidates(sequence, parsed, policy))).is_err() {
            return;
        }
    }
}

impl Importer<'_> {
    /// Imports every file in turn; returns the tally of all of them.
    pub fn import(&self, files: &[PathBuf], progress: &dyn Fn(ImportProgress)) -> Result<Tally, RegistrarError> {
        let mut store = (self.open)()?;
        let mut tally = Tally::default();
        let mut keys = 0;
        for path in files {
            tally += self.import_file(&mut store, path, &mut keys, progress)?;
        }
        Ok(tally)
    }

    fn import_file(
        &self,
        store: &mut KeyStore,
        path: &Path,
        keys: &mut usize,
        progress: &dyn Fn(ImportProgress),
    ) -> Result<Tally, RegistrarError> {
        let format = detect(path)?;
        let bytes_total = std::fs::metadata(path).map_err(|err| import_error(path, err))?.len();
        let count = Arc::new(AtomicU64::new(0));
        let input = open_input(path, &count)?;
        let (job_sender, job_receiver) = mpsc::sync_channel::<(usize, Parsed)>(PARSED_QUEUE);
        let (done_sender, done) = mpsc::sync_channel::<(usize, Vec<Candidate>)>(CHECKED_QUEUE);
        // Shared by the checkers and dropped with the last of them, so the
        // reader stops too if applying fails.
        let jobs = Arc::new(Mutex::new(job_receiver));
        let checkers = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut sequence = 0;
                read_keys(format, input, &mut |parsed| {
                    sequence += 1;
                    job_sender.send((sequence - 1, parsed)).is_ok()
                });
            });
            for _ in 0..checkers {
                let done = done_sender.clone();
                let jobs = Arc::clone(&jobs);
                let policy = self.policy;
                scope.spawn(move || check_keys(&jobs, &done, policy));
            }
            drop(jobs);
            drop(done_sender);
            let result = self.apply_in_windows(store, path, &done, |applied| {
                *keys += applied;
                progress(ImportProgress {
                    bytes_read: count.load(Ordering::Relaxed),
                    bytes_total,
                    keys: *keys,
                });
            });
            // On an error, stop the other stages: they end when their queues close.
            drop(done);
            result
        })
    }

    /// Takes candidates in file order and applies them as they come, in
    /// windows of up to [`WINDOW_TIME`]; a window also ends when no key
    /// has come for [`WINDOW_GATHER`], so lookups see a slow import's
    /// progress. Readers never wait for a window, so it may stay open
    /// while the checkers work.
    fn apply_in_windows(
        &self,
        store: &mut KeyStore,
        path: &Path,
        done: &Receiver<(usize, Vec<Candidate>)>,
        mut applied: impl FnMut(usize),
    ) -> Result<Tally, RegistrarError> {
        let mut waiting: BTreeMap<usize, Vec<Candidate>> = BTreeMap::new();
        let mut next = 0;
        // Keys applied so far: an item read may give several.
        let mut position = 0;
        let mut tally = Tally::default();
        let mut window: Option<OpenWindow> = None;
        loop {
            let wait = if window.is_some() {
                WINDOW_GATHER
            } else {
                Duration::from_secs(3600)
            };
            let received = match done.recv_timeout(wait) {
                Ok(received) => Some(received),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let Some((sequence, candidates)) = received else {
                if let Some(open) = window.take() {
                    applied(open.keys);
                    tally += self.end_window(store, path, open)?;
                }
                continue;
            };
            waiting.insert(sequence, candidates);
            while let Some(candidates) = waiting.remove(&next) {
                next += 1;
                for candidate in candidates {
                    let open = match &mut window {
                        Some(open) => open,
                        None => {
                            store.begin_window()?;
                            window.insert(OpenWindow::new(position, replication::log::clock(store)?))
                        }
                    };
                    let time = open.clock.tick(open.now);
                    let outcome = request::apply_candidate(store, &candidate, self.policy, time_of(time))?;
                    let offered = match &candidate {
                        Candidate::Key(key) => Some(&**key),
                        _ => None,
                    };
                    if let Some(update) = self
                        .replication
                        .key_update(store, offered, &outcome, time, self.policy)?
                    {
                        self.outbound
                            .stage(&update)
                            .map_err(|source| self.outbound.error(source))?;
                    }
                    open.tally.count(&outcome);
                    open.lines.extend(outcome.lines());
                    open.keys += 1;
                    position += 1;
                    if open.started.elapsed() >= WINDOW_TIME {
                        if let Some(open) = window.take() {
                            applied(open.keys);
                            tally += self.end_window(store, path, open)?;
                        }
                    }
                }
            }
        }
        if let Some(open) = window.take() {
            applied(open.keys);
            tally += self.end_window(store, path, open)?;
        }
        let summary = [format!("import summary: {tally}")];
        self.log_entry(path, &summary)?;
        Ok(tally)
    }

    /// Switches a window in and logs its outcomes as one entry.
    fn end_window(&self, store: &mut KeyStore, path: &Path, open: OpenWindow) -> Result<Tally, RegistrarError> {
        self.outbound.switch_in(store, &open.clock, self.announce)?;
        let mut lines = open.lines;
        lines.push(format!(
            "keys {} to {} of the file: {}",
            open.first + 1,
            open.first + open.keys,
            open.tally
        ));
        self.log_entry(path, &lines)?;
        Ok(open.tally)
    }

    fn log_entry(&self, path: &Path, lines: &[String]) -> Result<(), RegistrarError> {
        self.log
            .append(&LogEntry {
                time: Utc::now(),
                queue: "import",
                source: &path.display().to_string(),
                reply_to: None,
                outcome: lines,
                request: b"(bulk import; see the file)",
            })
            .map_err(|source| RegistrarError::Log {
                path: self.log.path().to_path_buf(),
                source,
            })
    }
}
