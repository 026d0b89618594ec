//! A small safe wrapper over the GDBM C library (`gdbm-sys`).
//!
//! The `gdbm` crate keeps pointers into dropped buffers and misreports
//! errors, so this module talks to libgdbm directly and keeps the rules in
//! one place: every `datum` handed to C borrows a live Rust slice for the
//! duration of the call only; every `datum` returned by C was `malloc`'d
//! and is copied into a `Vec` and freed at once; the error is read from
//! `gdbm_errno` right after the failing call. A [`Gdbm`] handle is closed
//! on drop. GDBM itself locks the file: many readers or one writer, and a
//! conflicting open fails at once (callers retry, see `store`).

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use gdbm_sys as sys;

// gdbm-sys declares these as returning nothing; GDBM 1.23 returns a status
// (and has gdbm_count, which gdbm-sys lacks), so declare them as they are.
unsafe extern "C" {
    #[link_name = "gdbm_sync"]
    fn gdbm_sync_status(dbf: sys::GDBM_FILE) -> c_int;
    #[link_name = "gdbm_close"]
    fn gdbm_close_status(dbf: sys::GDBM_FILE) -> c_int;
    #[cfg(test)]
    fn gdbm_count(dbf: sys::GDBM_FILE, count: *mut u64) -> c_int;
}

/// How to open a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Shared read-only access; fails while a writer holds the file. Reads
    /// with `read(2)` rather than mapping the file, so a full scan (db2flat)
    /// keeps a small resident size whatever the file's size.
    Reader,
    /// Read-only access without GDBM's own file lock, the file mapped into
    /// memory: for keyserv, which coordinates with the writer through the
    /// lock file instead (see `store`). Never use it without that protocol.
    ReaderUnlocked,
    /// Exclusive read-write access, creating the file if missing; writes
    /// go through GDBM's cache with `pwrite(2)`, not a mapping.
    WriterCreate,
}

/// Buckets a reader keeps cached (GDBM's default grows with the file).
/// Measured at a million keys (README, "Benchmarks"): caching every bucket
/// (`GDBM_SETCACHEAUTO`) cost keyserv 420 MB more and was no faster, and
/// reading with `read(2)` (`GDBM_NOMMAP`) was slower, so keyserv keeps this
/// small cache over the mapped file.
const READER_CACHE_BUCKETS: usize = 256;
const GDBM_NOLOCK: c_int = 0x0040;
const GDBM_NOMMAP: c_int = 0x0080;
const GDBM_CLOEXEC: c_int = 0x0100;
const GDBM_SETCACHESIZE: c_int = 1;

/// GDBM's error codes that callers act on.
pub const CANT_BE_READER: c_int = sys::GDBM_CANT_BE_READER as c_int;
/// A reader holds the file, so it can't be opened for writing now.
pub const CANT_BE_WRITER: c_int = sys::GDBM_CANT_BE_WRITER as c_int;
const ITEM_NOT_FOUND: c_int = sys::GDBM_ITEM_NOT_FOUND as c_int;

/// An error reported by libgdbm, with the file it concerns.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {operation}: {message}")]
pub struct GdbmError {
    /// The database file.
    pub path: PathBuf,
    /// What was being done ("open", "store", …).
    pub operation: &'static str,
    /// GDBM's error code (`gdbm_errno`); 0 if the failure was not GDBM's.
    pub code: c_int,
    /// GDBM's (or the system's) description.
    pub message: String,
}

impl GdbmError {
    /// True when the open failed only because another process holds a
    /// conflicting lock: worth retrying.
    pub fn is_lock_conflict(&self) -> bool {
        self.code == CANT_BE_READER || self.code == CANT_BE_WRITER
    }

    /// True when the file is not a GDBM database or is damaged: retrying
    /// won't help; restore it (db2flat's dump, `keyreg --import`).
    pub fn is_damaged(&self) -> bool {
        is_damage_code(self.code)
    }
}

/// An open GDBM database.
pub struct Gdbm {
    handle: sys::GDBM_FILE,
    path: PathBuf,
}

// The handle is only ever used through &mut self or &self from one thread
// at a time; GDBM handles carry no thread affinity.
unsafe impl Send for Gdbm {}

/// Reads and clears libgdbm's thread-local error code.
fn take_errno() -> c_int {
    // SAFETY: gdbm_errno_location returns a valid pointer to a thread-local int.
    unsafe {
        let location = sys::gdbm_errno_location();
        let code = *location;
        *location = 0;
        code
    }
}

/// GDBM's codes for a file that is not a database or is damaged (gdbm.h).
fn is_damage_code(code: c_int) -> bool {
    // A seek to a junk offset, a byte-swapped or junk file offset, a
    // directory that overflows: what blocks of junk in the file look like.
    const FILE_SEEK_ERROR: c_int = 5;
    const BYTE_SWAPPED: c_int = 21;
    const BAD_FILE_OFFSET: c_int = 22;
    const FILE_EOF: c_int = 25;
    const NEED_RECOVERY: c_int = 29;
    const DIR_OVERFLOW: c_int = 31;
    const BAD_DIR_ENTRY: c_int = 36;
    const BUCKET_CACHE_CORRUPTED: c_int = 40;
    const BAD_HASH_ENTRY: c_int = 41;
    code == sys::GDBM_BAD_MAGIC_NUMBER as c_int
        || code == FILE_SEEK_ERROR
        || code == BYTE_SWAPPED
        || code == BAD_FILE_OFFSET
        || code == FILE_EOF
        || code == NEED_RECOVERY
        || (DIR_OVERFLOW..=BAD_DIR_ENTRY).contains(&code)
        || code == BUCKET_CACHE_CORRUPTED
        || code == BAD_HASH_ENTRY
}

fn describe(code: c_int) -> String {
    // SAFETY: gdbm_strerror returns a pointer to a static NUL-terminated string.
    let text = unsafe { CStr::from_ptr(sys::gdbm_strerror(code)) };
    let mut message = text.to_string_lossy().into_owned();
    let os = std::io::Error::last_os_error();
    if matches!(
        code as u32,
        sys::GDBM_FILE_OPEN_ERROR | sys::GDBM_FILE_READ_ERROR | sys::GDBM_FILE_WRITE_ERROR
    ) && os.raw_os_error().unwrap_or(0) != 0
    {
        message = format!("{message} ({os})");
    }
    if is_damage_code(code) {
        message.push_str(" (not a GDBM database, or a damaged one)");
    }
    message
}

/// A datum that borrows `bytes` for one call into libgdbm.
fn borrow_datum(bytes: &[u8]) -> Result<sys::datum, c_int> {
    let size = c_int::try_from(bytes.len()).map_err(|_| sys::GDBM_ILLEGAL_DATA as c_int)?;
    Ok(sys::datum {
        // libgdbm never writes through a key or content datum.
        dptr: bytes.as_ptr() as *mut c_char,
        dsize: size,
    })
}

/// Copies a datum returned by libgdbm into Rust memory and frees it.
///
/// # Safety
/// `datum` must come from gdbm_fetch/firstkey/nextkey and not be used again.
unsafe fn take_datum(datum: sys::datum) -> Option<Vec<u8>> {
    if datum.dptr.is_null() {
        return None;
    }
    let len = usize::try_from(datum.dsize).unwrap_or(0);
    // SAFETY: libgdbm returned `dsize` readable bytes at `dptr`, malloc'd for us.
    let bytes = unsafe { std::slice::from_raw_parts(datum.dptr as *const u8, len).to_vec() };
    // SAFETY: the buffer was malloc'd by libgdbm and ownership passed to us.
    unsafe { libc::free(datum.dptr.cast()) };
    Some(bytes)
}

impl Gdbm {
    /// Opens (or, for a writer, creates with mode 0644) the database at `path`.
    /// A lock conflict fails at once; see [`GdbmError::is_lock_conflict`].
    pub fn open(path: &Path, mode: OpenMode) -> Result<Gdbm, GdbmError> {
        let fail = |code: c_int, message: String| GdbmError {
            path: path.to_path_buf(),
            operation: "open",
            code,
            message,
        };
        let c_path =
            CString::new(path.as_os_str().as_bytes()).map_err(|_| fail(0, "path contains a NUL byte".into()))?;
        // GDBM_CLOEXEC: don't leak the file into sendmail children.
        let flags = match mode {
            OpenMode::Reader => sys::GDBM_READER as c_int | GDBM_NOMMAP,
            OpenMode::ReaderUnlocked => sys::GDBM_READER as c_int | GDBM_NOLOCK,
            // A mapped writer remaps the file each time it grows; through
            // its bucket cache and pwrite(2) an import of 100,000 keys
            // takes a third less time (README, "How keyreg --import is
            // fast"). keyserv still maps the file.
            OpenMode::WriterCreate => sys::GDBM_WRCREAT as c_int | GDBM_NOMMAP,
        } | GDBM_CLOEXEC;
        take_errno();
        // SAFETY: c_path is a valid NUL-terminated string that outlives the call;
        // a null fatal function makes libgdbm report errors instead of exiting.
        let handle = unsafe { sys::gdbm_open(c_path.as_ptr() as *mut c_char, 0, flags, 0o644, None) };
        if handle.is_null() {
            let code = take_errno();
            return Err(fail(code, describe(code)));
        }
        if mode != OpenMode::WriterCreate {
            let mut buckets = READER_CACHE_BUCKETS;
            // SAFETY: the handle is open and `buckets` is a valid size_t for the call.
            // A failure only leaves GDBM's default cache, so it is ignored.
            unsafe {
                sys::gdbm_setopt(
                    handle,
                    GDBM_SETCACHESIZE,
                    (&raw mut buckets).cast(),
                    std::mem::size_of::<usize>() as c_int,
                )
            };
        }
        Ok(Gdbm {
            handle,
            path: path.to_path_buf(),
        })
    }

    fn error(&self, operation: &'static str) -> GdbmError {
        let code = take_errno();
        GdbmError {
            path: self.path.clone(),
            operation,
            code,
            message: describe(code),
        }
    }

    /// The value stored under `key`, if any (the tests' look at raw values).
    #[cfg(test)]
    pub fn fetch(&self, key: &[u8]) -> Result<Option<Vec<u8>>, GdbmError> {
        self.fetch_with(key, <[u8]>::to_vec)
    }

    /// Calls `read` with the value stored under `key`, if any, without
    /// copying it into a `Vec` first (the lookup fast path).
    pub fn fetch_with<T>(&self, key: &[u8], read: impl FnOnce(&[u8]) -> T) -> Result<Option<T>, GdbmError> {
        let key = borrow_datum(key).map_err(|_| self.error("fetch"))?;
        take_errno();
        // SAFETY: the handle is open; `key` borrows a live slice for this call.
        let datum = unsafe { sys::gdbm_fetch(self.handle, key) };
        if datum.dptr.is_null() {
            return match take_errno() {
                0 | ITEM_NOT_FOUND => Ok(None),
                code => Err(GdbmError {
                    path: self.path.clone(),
                    operation: "fetch",
                    code,
                    message: describe(code),
                }),
            };
        }
        let len = usize::try_from(datum.dsize).unwrap_or(0);
        // SAFETY: libgdbm returned `dsize` readable bytes at `dptr`, malloc'd
        // for us; the slice is dropped before the buffer is freed.
        let result = read(unsafe { std::slice::from_raw_parts(datum.dptr as *const u8, len) });
        // SAFETY: the buffer was malloc'd by libgdbm and ownership passed to us.
        unsafe { libc::free(datum.dptr.cast()) };
        Ok(Some(result))
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<(), GdbmError> {
        let (Ok(key), Ok(value)) = (borrow_datum(key), borrow_datum(value)) else {
            return Err(GdbmError {
                path: self.path.clone(),
                operation: "store",
                code: sys::GDBM_ILLEGAL_DATA as c_int,
                message: "item larger than 2 GiB".into(),
            });
        };
        take_errno();
        // SAFETY: the handle is open; both datums borrow live slices for this call.
        let status = unsafe { sys::gdbm_store(self.handle, key, value, sys::GDBM_REPLACE as c_int) };
        if status != 0 {
            return Err(self.error("store"));
        }
        Ok(())
    }

    /// Deletes `key`; returns whether it was there.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, GdbmError> {
        let key = borrow_datum(key).map_err(|_| self.error("delete"))?;
        take_errno();
        // SAFETY: the handle is open; `key` borrows a live slice for this call.
        let status = unsafe { sys::gdbm_delete(self.handle, key) };
        if status == 0 {
            return Ok(true);
        }
        match take_errno() {
            ITEM_NOT_FOUND => Ok(false),
            code => Err(GdbmError {
                path: self.path.clone(),
                operation: "delete",
                code,
                message: describe(code),
            }),
        }
    }

    /// Flushes everything written so far to disk.
    pub fn sync(&mut self) -> Result<(), GdbmError> {
        take_errno();
        // SAFETY: the handle is open.
        if unsafe { gdbm_sync_status(self.handle) } != 0 {
            return Err(self.error("sync"));
        }
        Ok(())
    }

    /// How many items the database holds (for the tests).
    #[cfg(test)]
    pub fn count(&self) -> Result<u64, GdbmError> {
        let mut count = 0u64;
        take_errno();
        // SAFETY: the handle is open and `count` is a valid out-pointer.
        if unsafe { gdbm_count(self.handle, &mut count) } != 0 {
            return Err(self.error("count"));
        }
        Ok(count)
    }

    /// Iterates over every key, in GDBM's hash order. Must not be
    /// interleaved with writes to the same handle.
    pub fn keys(&self) -> Keys<'_> {
        Keys {
            db: self,
            previous: None,
            done: false,
        }
    }
}

/// GDBM's own descriptor of the file, lent: for asking the kernel about
/// the file (its writeback), never for reading or writing it.
impl std::os::fd::AsFd for Gdbm {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the handle is open, and its descriptor stays open for as
        // long as the handle, which the borrow cannot outlive.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(sys::gdbm_fdesc(self.handle)) }
    }
}

impl Drop for Gdbm {
    fn drop(&mut self) {
        // SAFETY: the handle is open and is never used after this.
        unsafe { gdbm_close_status(self.handle) };
    }
}

/// Iterator over the keys of a [`Gdbm`]; see [`Gdbm::keys`].
pub struct Keys<'a> {
    db: &'a Gdbm,
    previous: Option<Vec<u8>>,
    done: bool,
}

impl Iterator for Keys<'_> {
    type Item = Result<Vec<u8>, GdbmError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        take_errno();
        let next = match &self.previous {
            None => {
                // SAFETY: the handle is open.
                unsafe { take_datum(sys::gdbm_firstkey(self.db.handle)) }
            }
            Some(previous) => {
                let key = match borrow_datum(previous) {
                    Ok(key) => key,
                    Err(_) => return Some(Err(self.db.error("nextkey"))),
                };
                // SAFETY: the handle is open; `key` borrows `previous`, which
                // lives until after the call and is freed by Rust, not C.
                unsafe { take_datum(sys::gdbm_nextkey(self.db.handle, key)) }
            }
        };
        match next {
            Some(key) => {
                self.previous = Some(key.clone());
                Some(Ok(key))
            }
            None => {
                self.done = true;
                match take_errno() {
                    0 | ITEM_NOT_FOUND => None,
                    code => Some(Err(GdbmError {
                        path: self.db.path.clone(),
                        operation: "nextkey",
                        code,
                        message: describe(code),
                    })),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_fetch_delete_iterate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gdbm");
        let mut db = Gdbm::open(&path, OpenMode::WriterCreate).unwrap();
        assert_eq!(db.keys().count(), 0);
        for i in 0..200 {
            // Owned, short-lived buffers: the wrapper must not keep pointers to them.
            let key = format!("key{i}");
            let value = format!("value{i}").repeat(i % 7 + 1);
            db.replace(key.as_bytes(), value.as_bytes()).unwrap();
        }
        db.replace(b"key3", b"new").unwrap();
        assert_eq!(db.fetch(b"key3").unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(db.fetch(b"missing").unwrap(), None);
        assert!(db.delete(b"key4").unwrap());
        assert!(!db.delete(b"key4").unwrap());
        db.sync().unwrap();
        assert_eq!(db.count().unwrap(), 199);
        let mut keys: Vec<Vec<u8>> = db.keys().collect::<Result<_, _>>().unwrap();
        keys.sort();
        assert_eq!(keys.len(), 199);
        assert!(!keys.contains(&b"key4".to_vec()));
        drop(db);

        let db = Gdbm::open(&path, OpenMode::Reader).unwrap();
        assert_eq!(
            db.fetch(b"key10").unwrap().unwrap(),
            b"value10value10value10value10".to_vec()
        );
    }

    #[test]
    fn readers_share_and_exclude_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gdbm");
        drop(Gdbm::open(&path, OpenMode::WriterCreate).unwrap());
        let first = Gdbm::open(&path, OpenMode::Reader).unwrap();
        let _second = Gdbm::open(&path, OpenMode::Reader).unwrap();
        let err = Gdbm::open(&path, OpenMode::WriterCreate).err().unwrap();
        assert!(err.is_lock_conflict(), "{err}");
        drop(first);
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Gdbm::open(&dir.path().join("none.gdbm"), OpenMode::Reader)
            .err()
            .unwrap();
        assert!(!err.is_lock_conflict());
        assert!(err.to_string().contains("none.gdbm"), "{err}");
    }
}
