//! Exit codes: the `sysexits.h` numbers, and how an error finds its own.
//!
//! Each error type says its code ([`ExitStatus`], implemented beside the
//! type, as uutils does); wrappers ask the error they wrap. A program's
//! `main` ends with `cli::finish`, which walks the error's chain of causes
//! and asks [`Probe`]s, one per error type the program can meet, for the
//! first code. This module depends on no error type, so every module may
//! implement [`ExitStatus`] without a cycle.

use std::error::Error;

/// The command was used incorrectly.
pub const USAGE: u8 = 64;
/// The input data was incorrect.
pub const DATAERR: u8 = 65;
/// A service is unavailable.
pub const UNAVAILABLE: u8 = 69;
/// An internal software error.
pub const SOFTWARE: u8 = 70;
/// A system file or resource could not be used.
pub const OSERR: u8 = 71;
/// A file could not be created.
pub const CANTCREAT: u8 = 73;
/// An I/O error.
pub const IOERR: u8 = 74;
/// A temporary failure; try again later.
pub const TEMPFAIL: u8 = 75;
/// Permission denied.
pub const NOPERM: u8 = 77;
/// Something is wrong in the configuration.
pub const CONFIG: u8 = 78;

/// An error that knows the sysexits code a program ending on it returns.
/// Each error enum implements it next to its definition; wrappers ask
/// the error they wrap.
pub trait ExitStatus: Error + 'static {
    /// The code, from the constants here.
    fn exit_code(&self) -> u8;
}

/// Reads the exit code off one error of a chain when it has one known type;
/// see [`probe`].
pub type Probe = fn(&(dyn Error + 'static)) -> Option<u8>;

/// The [`Probe`] for errors of type `E`.
pub fn probe<E: ExitStatus>(err: &(dyn Error + 'static)) -> Option<u8> {
    err.downcast_ref::<E>().map(E::exit_code)
}

/// The exit code that suits an error: the first error in its chain of
/// causes whose type one of `probes` knows decides; `EX_SOFTWARE` when
/// none does.
pub fn exit_code(err: &(dyn Error + 'static), probes: &[&[Probe]]) -> u8 {
    let mut current: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(err) = current {
        if let Some(code) = probes.iter().copied().flatten().find_map(|probe| probe(err)) {
            return code;
        }
        current = err.source();
    }
    SOFTWARE
}

impl ExitStatus for std::io::Error {
    fn exit_code(&self) -> u8 {
        io_exit_code(self, IOERR)
    }
}

/// `EX_NOPERM` for a permission problem (not worth retrying: an operator
/// must fix the ownership or mode), else `otherwise`.
pub fn io_exit_code(err: &std::io::Error, otherwise: u8) -> u8 {
    match err.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => NOPERM,
        _ => otherwise,
    }
}
