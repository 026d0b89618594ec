//! The status file the daemon keeps and `keysync --status` reads.
//!
//! `sync/status` is rewritten atomically every second: a `keysync <pid>
//! <unix seconds> <our highest seq>` line, then `peer <name>
//! <connected|disconnected> <their highest seen> <fetched>` lines, each
//! followed by the last reconciliation with the peer, `<unix seconds>
//! <missing here> <missing there> <bytes> <milliseconds>`, or `-`. A file
//! whose pid is gone means no daemon runs, one older than a few seconds
//! a daemon that is hung or stopped; `--status` says so, shows every peer
//! as disconnected, and what the file last said otherwise.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::SyncError;
use crate::hub::PeerStatus;

/// A status older than this is stale.
pub const STALE: Duration = Duration::from_secs(5);

/// Writes the status file.
pub fn write(path: &Path, peers: &[(String, PeerStatus)], ours: u64, running: bool) -> Result<(), SyncError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let pid = if running { std::process::id() } else { 0 };
    let mut text = format!("keysync {pid} {now} {ours}\n");
    for (name, status) in peers {
        let state = if status.connected { "connected" } else { "disconnected" };
        let recon = status.recon.map_or_else(
            || "-".to_string(),
            |r| format!("{} {} {} {} {}", r.at, r.lacked, r.they_lacked, r.bytes, r.millis),
        );
        text.push_str(&format!(
            "peer {name} {state} {} {} {recon}\n",
            status.their_high, status.fetched
        ));
    }
    ripem_core::atomic::write_atomically(path, text.as_bytes()).map_err(SyncError::io(path))
}

/// The lines `keysync --status` prints: one per peer, then a summary
/// with what waits (`queue`: batches of updates from keyreg; `spool`:
/// updates for keyreg).
pub fn report(path: &Path, queue: usize, spool: usize) -> Result<Vec<String>, SyncError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(vec![format!(
                "keysync has not run here (no {}); waiting: {queue} batches from keyreg, {spool} updates for keyreg",
                path.display()
            )])
        }
        Err(source) => {
            return Err(SyncError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let damaged = || SyncError::Damaged {
        path: path.to_path_buf(),
        problem: "not a status file".into(),
    };
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().ok_or_else(damaged)?.split(' ').collect();
    let [_, pid, at, ours] = head.as_slice() else {
        return Err(damaged());
    };
    let at: u64 = at.parse().map_err(|_| damaged())?;
    let pid: i32 = pid.parse().map_err(|_| damaged())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let alive = pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    let stale = !alive || now.saturating_sub(at) > STALE.as_secs();
    let mut out = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split(' ').collect();
        let ["peer", name, state, theirs, fetched, recon @ ..] = words.as_slice() else {
            return Err(damaged());
        };
        let state = if stale { "disconnected" } else { state };
        let recon = match recon {
            ["-"] => "not reconciled yet".to_string(),
            [at, lacked, they_lacked, bytes, millis] => {
                let at: u64 = at.parse().map_err(|_| damaged())?;
                let millis: u64 = millis.parse().map_err(|_| damaged())?;
                format!(
                    "reconciled {}s ago: {lacked} missing here, {they_lacked} there, {bytes} bytes, {}.{:03} s",
                    now.saturating_sub(at),
                    millis / 1000,
                    millis % 1000
                )
            }
            _ => return Err(damaged()),
        };
        out.push(format!(
            "{name} {state} ours {ours} theirs {theirs} fetched {fetched}; {recon}"
        ));
    }
    let age = now.saturating_sub(at);
    let daemon = if !alive {
        format!("keysync is not running (status from {age}s ago)")
    } else if stale {
        format!("keysync (pid {pid}) has not written its status for {age}s: hung or stopped?")
    } else {
        format!("keysync is running (pid {pid})")
    };
    out.push(format!(
        "{daemon}; waiting: {queue} batches from keyreg, {spool} updates for keyreg"
    ));
    Ok(out)
}
