//! The spool: maildir-style queues of incoming requests.
//!
//! Each queue (`add`, `change`, `remove`) has `tmp/` and `new/`. A message
//! is written to `tmp/`, fsynced, renamed into `new/` under a unique name
//! starting `key.`, and the directory is fsynced: a file in `new/` is
//! always whole. keyreg takes files from `new/` oldest first and deletes
//! each only after its outcome is logged. Files that can't be processed go
//! to `failed/` with a `.reason` file beside them. Replies waiting to be
//! sent wait in `outgoing/`, so a mail outage loses nothing either.
//!
//! Anyone who can write to a queue can leave anything there, so files are
//! only ever opened with [`open_regular`]: `O_NOFOLLOW` (a symlink is not
//! followed), `O_NONBLOCK` (a FIFO does not hang keyreg), then `fstat`;
//! anything but a regular file is refused and moved aside. File names are
//! bytes: a name that is not UTF-8 is shown, logged and used for its reply
//! in an escaped form ([`escape_name`]) that no other name shares.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::atomic;
use crate::exit::{self, io_exit_code, ExitStatus};

/// The three request queues, and the queue of updates from peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// Registrations.
    Add,
    /// Key changes signed by the old key.
    Change,
    /// Removals signed by the registered key.
    Remove,
    /// Updates received from peers by keysync, each named by its id; not
    /// a mail queue, so not in [`QueueName::ALL`].
    Sync,
}

impl QueueName {
    /// Every mail queue, in processing order.
    pub const ALL: [QueueName; 3] = [QueueName::Add, QueueName::Change, QueueName::Remove];

    /// The queue's directory name.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Add => "add",
            QueueName::Change => "change",
            QueueName::Remove => "remove",
            QueueName::Sync => "sync",
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueueName::ALL
            .into_iter()
            .find(|queue| queue.as_str() == s)
            .ok_or_else(|| format!("unknown queue {s:?} (expected add, change or remove)"))
    }
}

/// Why a message could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The message is larger than the configured limit.
    #[error("message larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The entry is not a regular file (a symlink, FIFO, device, socket or
    /// directory), so it is not opened or read.
    #[error("{path}: not a regular file but {kind}")]
    NotRegular {
        /// The entry.
        path: PathBuf,
        /// What it is instead, e.g. "a symlink".
        kind: &'static str,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
}

impl ExitStatus for SpoolError {
    fn exit_code(&self) -> u8 {
        match self {
            SpoolError::TooLarge { .. } | SpoolError::NotRegular { .. } => exit::DATAERR,
            SpoolError::Io { source, .. } => io_exit_code(source, exit::TEMPFAIL),
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    atomic::sync_dir(dir).map_err(io_error(dir))
}

/// A name no other delivery, on this host or another sharing the spool, uses.
fn unique_name(prefix: &str) -> String {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
        .replace(['/', '.'], "_");
    format!(
        "{prefix}.{}.{:06}.P{}Q{}R{:08x}.{host}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>(),
    )
}

/// The spool directory tree.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

/// A request file waiting in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolFile {
    /// Which queue it is in.
    pub queue: QueueName,
    /// Its path in `new/`.
    pub path: PathBuf,
    /// When it arrived (its modification time).
    pub arrived: SystemTime,
    /// Its size in bytes.
    pub size: u64,
}

impl SpoolFile {
    /// The file's unique name, escaped ([`short_name`]): two files never
    /// share it, so it names the reply and the quarantined copy safely.
    pub fn name(&self) -> String {
        short_name(self.path.file_name().unwrap_or_default())
    }
}

/// A file name as printable ASCII that no other name maps to: letters,
/// digits and `._-+=,` stay, every other byte (and `%` itself) becomes
/// `%XX`. Names copymail makes are unchanged.
pub fn escape_name(name: &OsStr) -> String {
    let mut escaped = String::with_capacity(name.len());
    for &byte in name.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"._-+=,".contains(&byte) {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

/// What a directory entry is, if it is not a regular file.
fn irregular_kind(file_type: fs::FileType) -> Option<&'static str> {
    if file_type.is_file() {
        None
    } else if file_type.is_symlink() {
        Some("a symlink")
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_fifo() {
        Some("a FIFO")
    } else if file_type.is_socket() {
        Some("a socket")
    } else if file_type.is_block_device() || file_type.is_char_device() {
        Some("a device")
    } else {
        Some("not a file")
    }
}

/// Opens a spool file for reading without following a symlink, without
/// blocking on a FIFO, and only if it is a regular file once open (the
/// `fstat` is what counts: the entry may be swapped after it was listed).
/// Devices, sockets and directories are refused by their `lstat` before
/// any open, so opening one has no side effect.
pub fn open_regular(path: &Path) -> Result<File, SpoolError> {
    let not_regular = |kind| SpoolError::NotRegular {
        path: path.to_path_buf(),
        kind,
    };
    let listed = fs::symlink_metadata(path).map_err(io_error(path))?;
    if let Some(kind) = irregular_kind(listed.file_type()) {
        return Err(not_regular(kind));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| {
            match fs::symlink_metadata(path)
                .ok()
                .and_then(|m| irregular_kind(m.file_type()))
            {
                Some(kind) => not_regular(kind),
                None => SpoolError::Io {
                    path: path.to_path_buf(),
                    source,
                },
            }
        })?;
    let opened = file.metadata().map_err(io_error(path))?;
    match irregular_kind(opened.file_type()) {
        Some(kind) => Err(not_regular(kind)),
        None => Ok(file),
    }
}

impl Spool {
    /// The spool rooted at `root` (`state_dir/spool` by default).
    pub fn new(root: &Path) -> Spool {
        Spool {
            root: root.to_path_buf(),
        }
    }

    /// `new/` of a queue: where complete messages wait.
    pub fn new_dir(&self, queue: QueueName) -> PathBuf {
        self.root.join(queue.as_str()).join("new")
    }

    fn tmp_dir(&self, queue: QueueName) -> PathBuf {
        self.root.join(queue.as_str()).join("tmp")
    }

    /// Where unprocessable requests are kept.
    pub fn failed_dir(&self) -> PathBuf {
        self.root.join("failed")
    }

    /// Where replies wait to be sent.
    pub fn outgoing_dir(&self) -> PathBuf {
        self.root.join("outgoing")
    }

    /// Creates every spool directory that is missing.
    pub fn create_dirs(&self) -> Result<(), SpoolError> {
        let mut dirs = vec![self.failed_dir(), self.outgoing_dir()];
        for queue in QueueName::ALL {
            dirs.push(self.tmp_dir(queue));
            dirs.push(self.new_dir(queue));
        }
        for dir in dirs {
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(())
    }

    /// Creates `tmp/` and `new/` of one queue if they are missing.
    pub fn create_queue_dirs(&self, queue: QueueName) -> Result<(), SpoolError> {
        for dir in [self.tmp_dir(queue), self.new_dir(queue)] {
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(())
    }

    /// Spools `bytes` under the caller's `name` (keysync names an update
    /// by its id, so delivering one twice leaves one file): written to
    /// `tmp/`, fsynced, renamed into `new/`, the directory fsynced.
    /// `name` must be a plain file name.
    pub fn deliver_named(&self, queue: QueueName, name: &str, bytes: &[u8]) -> Result<PathBuf, SpoolError> {
        let temp = self.tmp_dir(queue).join(name);
        self.deliver_as(queue, name, false, &mut |file| {
            io::Write::write_all(file, bytes).map_err(io_error(&temp))
        })
    }

    /// Spools one message from `input`, refusing it if it is over
    /// `max_bytes`. Returns the path in `new/` once the message is safely
    /// on disk; on any error nothing is left in `new/`.
    pub fn deliver(&self, queue: QueueName, input: &mut dyn Read, max_bytes: u64) -> Result<PathBuf, SpoolError> {
        let name = unique_name("key");
        let temp = self.tmp_dir(queue).join(&name);
        self.deliver_as(queue, &name, true, &mut |file| {
            let copied = io::copy(&mut input.take(max_bytes.saturating_add(1)), file).map_err(io_error(&temp))?;
            match copied > max_bytes {
                true => Err(SpoolError::TooLarge { limit: max_bytes }),
                false => Ok(()),
            }
        })
    }

    /// Writes `name` in `tmp/` with `write` (a fresh file, or one replacing
    /// a leftover of an earlier try), fsyncs it and renames it into `new/`;
    /// on any error nothing is left in `new/`.
    fn deliver_as(
        &self,
        queue: QueueName,
        name: &str,
        fresh: bool,
        write: &mut dyn FnMut(&mut File) -> Result<(), SpoolError>,
    ) -> Result<PathBuf, SpoolError> {
        let temp = self.tmp_dir(queue).join(name);
        let final_path = self.new_dir(queue).join(name);
        let result = (|| {
            let mut options = OpenOptions::new();
            options.write(true).custom_flags(libc::O_NOFOLLOW).mode(0o640);
            match fresh {
                true => options.create_new(true),
                false => options.create(true).truncate(true),
            };
            let mut file = options.open(&temp).map_err(io_error(&temp))?;
            write(&mut file)?;
            file.sync_all().map_err(io_error(&temp))?;
            fs::rename(&temp, &final_path).map_err(io_error(&final_path))?;
            sync_dir(&self.new_dir(queue))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map(|()| final_path)
    }

    /// Every entry waiting in `queue`, oldest first (by modification
    /// time, then name). Dot files are skipped. Entries that are not
    /// regular files are listed too (by their `lstat`, never followed), so
    /// that reading them fails with [`SpoolError::NotRegular`] and they are
    /// moved aside rather than left there unnoticed.
    pub fn pending(&self, queue: QueueName) -> Result<Vec<SpoolFile>, SpoolError> {
        let dir = self.new_dir(queue);
        let mut files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            if entry.file_name().as_bytes().starts_with(b".") {
                continue;
            }
            // DirEntry::metadata is an lstat: a symlink is not followed.
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().unwrap_or(UNIX_EPOCH);
            files.push((modified, entry.path(), meta.len()));
        }
        files.sort();
        Ok(files
            .into_iter()
            .map(|(arrived, path, size)| SpoolFile {
                queue,
                path,
                arrived,
                size,
            })
            .collect())
    }

    /// Every complete message in all queues, oldest first, so requests are
    /// applied in the order they arrived whatever their queue.
    pub fn pending_all(&self) -> Result<Vec<SpoolFile>, SpoolError> {
        let mut files = Vec::new();
        for queue in QueueName::ALL {
            files.extend(self.pending(queue)?);
        }
        files.sort_by(|a, b| (a.arrived, &a.path).cmp(&(b.arrived, &b.path)));
        Ok(files)
    }

    /// Deletes a processed request.
    pub fn remove(&self, file: &SpoolFile) -> Result<(), SpoolError> {
        match fs::remove_file(&file.path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SpoolError::Io {
                    path: file.path.clone(),
                    source,
                })
            }
        }
        sync_dir(&self.new_dir(file.queue))
    }

    /// Moves a request that can't be processed to `failed/`, with the
    /// reason in `<name>.reason` beside it. Returns the new path.
    pub fn quarantine(&self, file: &SpoolFile, reason: &str) -> Result<PathBuf, SpoolError> {
        self.move_aside(&file.path, &self.new_dir(file.queue), file.queue.as_str(), reason)
    }

    /// Moves an entry of `outgoing/` that is not a queued reply (a FIFO, a
    /// symlink...) to `failed/` as `outgoing.<name>`, with its reason.
    pub fn quarantine_outgoing(&self, path: &Path, reason: &str) -> Result<PathBuf, SpoolError> {
        self.move_aside(path, &self.outgoing_dir(), "outgoing", reason)
    }

    /// Renames `path` (whatever it is: a symlink moves as a link, a
    /// directory as a whole) into `failed/` as `<label>.<escaped name>`.
    fn move_aside(&self, path: &Path, from_dir: &Path, label: &str, reason: &str) -> Result<PathBuf, SpoolError> {
        let dir = self.failed_dir();
        let mut name = format!("{label}.{}", short_name(path.file_name().unwrap_or_default()));
        // An entry already there (the same name failed before, or someone
        // put a directory in the way) is kept, and must not stop the queue.
        while fs::symlink_metadata(dir.join(&name)).is_ok() {
            name = format!(
                "{label}.{}.{:08x}",
                short_name(path.file_name().unwrap_or_default()),
                rand::random::<u32>()
            );
        }
        let target = dir.join(&name);
        let reason_path = dir.join(format!("{name}.reason"));
        atomic::write_atomically(&reason_path, format!("{reason}\n").as_bytes()).map_err(io_error(&reason_path))?;
        fs::rename(path, &target).map_err(io_error(&target))?;
        sync_dir(&dir)?;
        sync_dir(from_dir)?;
        Ok(target)
    }
}

/// [`escape_name`], cut short with a digest of the whole name when
/// escaping would pass the 255-byte limit of a name (with room for a
/// queue prefix and `.reason`): still one name per original name.
pub fn short_name(name: &OsStr) -> String {
    use sha2::{Digest, Sha256};
    let escaped = escape_name(name);
    if escaped.len() <= 200 {
        return escaped;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{}~{hex}", &escaped[..120])
}

/// Reads a whole spool file, opened by [`open_regular`], refusing to
/// read more than `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, SpoolError> {
    let file = open_regular(path)?;
    let size = file.metadata().map_err(io_error(path))?.len();
    if size > limit {
        return Err(SpoolError::TooLarge { limit });
    }
    // Sized from fstat, so a 50 MB mail takes 50 MB, not a doubled buffer.
    let mut bytes = Vec::with_capacity(usize::try_from(size.saturating_add(1)).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    if bytes.len() as u64 > limit {
        return Err(SpoolError::TooLarge { limit });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_then_pending_then_remove() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        spool.create_dirs().unwrap();
        let first = spool.deliver(QueueName::Add, &mut &b"one"[..], 100).unwrap();
        let second = spool.deliver(QueueName::Add, &mut &b"two"[..], 100).unwrap();
        assert!(first.file_name().unwrap().to_string_lossy().starts_with("key."));
        let pending = spool.pending(QueueName::Add).unwrap();
        assert_eq!(
            pending.iter().map(|f| f.path.clone()).collect::<Vec<_>>(),
            [first, second]
        );
        assert!(fs::read_dir(spool.tmp_dir(QueueName::Add)).unwrap().next().is_none());
        spool.remove(&pending[0]).unwrap();
        spool.remove(&pending[0]).unwrap();
        assert_eq!(spool.pending(QueueName::Add).unwrap().len(), 1);
    }

    #[test]
    fn too_large_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        spool.create_dirs().unwrap();
        let err = spool.deliver(QueueName::Change, &mut &[0u8; 101][..], 100).unwrap_err();
        assert!(matches!(err, SpoolError::TooLarge { limit: 100 }));
        assert!(spool.pending(QueueName::Change).unwrap().is_empty());
        assert!(fs::read_dir(spool.tmp_dir(QueueName::Change)).unwrap().next().is_none());
        spool.deliver(QueueName::Change, &mut &[0u8; 100][..], 100).unwrap();
    }

    #[test]
    fn quarantine_keeps_file_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        spool.create_dirs().unwrap();
        spool.deliver(QueueName::Remove, &mut &b"junk"[..], 100).unwrap();
        let file = spool.pending(QueueName::Remove).unwrap().remove(0);
        let moved = spool.quarantine(&file, "not a mail message").unwrap();
        assert_eq!(fs::read(&moved).unwrap(), b"junk");
        let reason = fs::read_to_string(format!("{}.reason", moved.display())).unwrap();
        assert_eq!(reason, "not a mail message\n");
        assert!(spool.pending(QueueName::Remove).unwrap().is_empty());
        // The same name failing again, with a directory in the way.
        fs::remove_file(&moved).unwrap();
        fs::create_dir(&moved).unwrap();
        fs::write(&file.path, b"again").unwrap();
        let again = spool.quarantine(&file, "still not mail").unwrap();
        assert_ne!(again, moved);
        assert_eq!(fs::read(&again).unwrap(), b"again");
    }

    #[test]
    fn names_escape_apart_and_stay_short() {
        use std::os::unix::ffi::OsStrExt;
        let name = |bytes: &[u8]| short_name(OsStr::from_bytes(bytes));
        assert_eq!(
            name(b"key.1764.000001.P1Q0Rab.host_x"),
            "key.1764.000001.P1Q0Rab.host_x"
        );
        assert_eq!(name(b"key.\xff"), "key.%FF");
        assert_ne!(name(b"key.\xff"), name(b"key.\xfe"));
        assert_ne!(name(b"a%FF"), name(b"a\xff"), "% itself is escaped");
        let long_a = [b'\xff'; 250];
        let mut long_b = long_a;
        long_b[249] = b'\xfe';
        assert!(name(&long_a).len() <= 200);
        assert_ne!(name(&long_a), name(&long_b));
    }

    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "mail").unwrap();
        assert!(open_regular(&file).is_ok());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for (path, kind) in [
            (&link, "a symlink"),
            (&fifo, "a FIFO"),
            (&dir.path().to_path_buf(), "a directory"),
        ] {
            match open_regular(path) {
                Err(SpoolError::NotRegular { kind: found, .. }) => assert_eq!(found, kind),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        assert!(matches!(read_limited(&file, 3), Err(SpoolError::TooLarge { limit: 3 })));
    }
}
