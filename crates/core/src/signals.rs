//! Signals for the daemons, as flags.
//!
//! Handlers only set atomic flags (the one thing safe in a handler); the
//! daemons' loops look at them. Handlers are installed without
//! `SA_RESTART`, so a blocking call returns `EINTR` and the loop looks at
//! once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static TERMINATE: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
static RELEASES: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(signal: nix::libc::c_int) {
    let flag = match Signal::try_from(signal) {
        Ok(Signal::SIGTERM | Signal::SIGINT) => &TERMINATE,
        Ok(Signal::SIGHUP) => &RELOAD,
        Ok(Signal::SIGUSR1) => {
            RELEASES.fetch_add(1, Ordering::SeqCst);
            return;
        }
        _ => return,
    };
    flag.store(true, Ordering::SeqCst);
}

/// Installs the handlers for SIGTERM, SIGINT, SIGHUP and SIGUSR1.
pub fn install() -> nix::Result<()> {
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1] {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// SIGTERM or SIGINT arrived: finish up and exit.
pub fn terminate_requested() -> bool {
    TERMINATE.load(Ordering::SeqCst)
}

/// SIGHUP arrived since the last call: reload.
pub fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}

/// How many SIGUSR1s (keyreg is about to write) have arrived: a worker
/// that sees the count change steps aside for the writer.
pub fn release_requests() -> u64 {
    RELEASES.load(Ordering::SeqCst)
}
