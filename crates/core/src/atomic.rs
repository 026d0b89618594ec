//! Files published whole: written to a temp file in the same directory,
//! fsynced, renamed into place, and the directory fsynced. A reader sees
//! the old file or the new one, never half of one, and a crash leaves at
//! most a stray dot-file behind, which [`remove_abandoned`] clears for
//! the large files that are worth a look at the directory (the nightly
//! dump's, a gigabyte each at a million keys). Also the two steps of a
//! large file's durability: its writeback started early
//! ([`start_writeback`]), so the fsync that must come later finds the
//! disk has done most of the work.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Flushes a directory so a rename or unlink in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Asks the kernel to begin writing the file's dirty pages out now,
/// without waiting for them (`sync_file_range(SYNC_FILE_RANGE_WRITE)`).
/// Only a head start: it promises nothing, and a later fsync still must.
pub fn start_writeback(file: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: sync_file_range only reads its integer arguments; the
    // descriptor is open for as long as `file` is borrowed.
    let done = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    match done {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A file being written that appears at its final path only on [`commit`](AtomicFile::commit).
pub struct AtomicFile {
    writer: BufWriter<File>,
    temp: PathBuf,
    target: PathBuf,
}

/// The directory `target` is published in, and its file name.
fn dir_and_name(target: &Path) -> (&Path, String) {
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, name)
}

/// The writing process's id, if `file_name` is the name [`AtomicFile`]
/// gives a temp file of `name`: `.{name}.{pid}.{8 hex digits}.tmp`.
fn temp_writer(file_name: &str, name: &str) -> Option<i32> {
    let rest = file_name
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix('.')?
        .strip_suffix(".tmp")?;
    let (pid, tag) = rest.split_once('.')?;
    let tagged = tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit());
    let pid = pid.parse::<i32>().ok().filter(|pid| *pid > 0)?;
    tagged.then_some(pid)
}

/// Whether process `pid` exists (`kill(pid, 0)`; one we may not signal exists too).
fn process_exists(pid: i32) -> bool {
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// Removes the temp files of `target` whose writer is no longer running
/// (killed before it committed), and returns how many. A writer that is
/// still running keeps its file, so two dumps never remove each other's.
/// It reads the whole directory, so it is for a few large files, not for
/// directories of many small ones.
pub fn remove_abandoned(target: &Path) -> io::Result<usize> {
    let (dir, name) = dir_and_name(target);
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|file| temp_writer(file, &name)) else {
            continue;
        };
        if !process_exists(pid) {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(removed)
}

impl AtomicFile {
    /// Starts writing what will become `target` (mode 0644).
    pub fn create(target: &Path) -> io::Result<AtomicFile> {
        let (dir, name) = dir_and_name(target);
        let temp = dir.join(format!(
            ".{name}.{}.{:08x}.tmp",
            std::process::id(),
            rand::random::<u32>()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        Ok(AtomicFile {
            writer: BufWriter::with_capacity(1 << 16, file),
            temp,
            target: target.to_path_buf(),
        })
    }

    /// Flushes, fsyncs and renames the file into place.
    pub fn commit(mut self) -> io::Result<()> {
        self.writer.flush()?;
        self.writer.get_ref().sync_all()?;
        fs::rename(&self.temp, &self.target)?;
        sync_dir(dir_and_name(&self.target).0)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // After a successful commit the temp name no longer exists.
        let _ = fs::remove_file(&self.temp);
    }
}

/// Writes `bytes` to `target` atomically.
pub fn write_atomically(target: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(target)?;
    file.write_all(bytes)?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.txt");
        fs::write(&target, "old").unwrap();
        let mut file = AtomicFile::create(&target).unwrap();
        file.write_all(b"new").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        file.commit().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        let abandoned = AtomicFile::create(&target).unwrap();
        drop(abandoned);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn abandoned_temp_files_go_and_live_writers_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("pubkeys.txt");
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        exited.wait().unwrap();
        let dead = exited.id();
        let names = [
            format!(".pubkeys.txt.{dead}.0badc0de.tmp"),
            format!(".pubkeys.txt.{}.0badc0de.tmp", std::process::id()),
            format!(".pubkeys.asc.{dead}.0badc0de.tmp"),
            format!(".pubkeys.txt.{dead}.notahex.tmp"),
            format!(".pubkeys.txt.{dead}.0badc0de"),
            "pubkeys.txt".to_string(),
        ];
        for name in &names {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        let live = AtomicFile::create(&target).unwrap();
        assert_eq!(remove_abandoned(&target).unwrap(), 1);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert!(!left.contains(&names[0]), "{left:?}");
        assert_eq!(left.len(), names.len(), "the live writer's temp file stays: {left:?}");
        drop(live);
        assert_eq!(remove_abandoned(&target).unwrap(), 0);
    }

    #[test]
    fn a_temp_name_is_read_exactly() {
        assert_eq!(temp_writer(".a.12.0000abcd.tmp", "a"), Some(12));
        assert_eq!(temp_writer(".a.b.12.0000abcd.tmp", "a"), None);
        assert_eq!(temp_writer(".a.5.12.0000abcd.tmp", "a"), None);
        assert_eq!(temp_writer(".a.0.0000abcd.tmp", "a"), None);
        assert_eq!(temp_writer(".a.-3.0000abcd.tmp", "a"), None);
        assert_eq!(temp_writer("a.12.0000abcd.tmp", "a"), None);
    }
}
