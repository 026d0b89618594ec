//! Taking in the updates keyreg makes: the maildir `sync/queue/`.
//!
//! keyreg writes the updates of a write window as a batch
//! ([`ripem_update::BatchReader`]'s form) to `tmp/` and renames it into
//! `new/`, named by its first update's id. keysync reads each file entry
//! by entry (never following a symlink, never blocking on a FIFO, no
//! entry over `max_message_bytes`), checks that each is a canonical
//! update and that the first one's id is the file's name, stores each
//! (fsynced) and only then deletes the file, so a crash at any point
//! leaves it to be read again at start; a second copy of an id is stored
//! once. A file that is not a batch of updates is moved to
//! `sync/queue/failed/` with a log line naming the entry, so it is not
//! retried forever (the updates before that entry are kept). The
//! directory is watched (notify) and rescanned every few seconds in case
//! an event was missed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use ripem_core::spool::open_regular;
use ripem_update::BatchReader;
use tokio::sync::mpsc;

use crate::error::SyncError;
use crate::hub::Hub;
use crate::update;

/// How often the queue is rescanned without an event.
const RESCAN: Duration = Duration::from_secs(2);

/// The queue's directories under `sync/`.
pub struct Queue {
    /// `queue/new`, where finished updates appear.
    pub new: PathBuf,
    failed: PathBuf,
}

impl Queue {
    /// The queue under `sync_dir`, its directories created.
    pub fn create(sync_dir: &Path) -> Result<Queue, SyncError> {
        let root = sync_dir.join("queue");
        for name in ["tmp", "new", "failed"] {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).map_err(SyncError::io(&dir))?;
        }
        Ok(Queue {
            new: root.join("new"),
            failed: root.join("failed"),
        })
    }

    /// Files waiting in `new/`, by name.
    pub fn waiting(&self) -> Result<Vec<PathBuf>, SyncError> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.new).map_err(SyncError::io(&self.new))? {
            let entry = entry.map_err(SyncError::io(&self.new))?;
            if !entry.file_name().to_string_lossy().starts_with('.') {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    /// Takes in every waiting batch; returns how many updates were new.
    pub fn drain(&self, hub: &Hub, max_bytes: u64) -> Result<usize, SyncError> {
        let mut stored = 0;
        for path in self.waiting()? {
            match take_batch(hub, &path, max_bytes, &mut stored) {
                Ok(()) => {
                    std::fs::remove_file(&path).map_err(SyncError::io(&path))?;
                    ripem_core::atomic::sync_dir(&self.new).map_err(SyncError::io(&self.new))?;
                }
                Err(Refused::Store(err)) => return Err(err),
                Err(Refused::Content(reason)) => self.set_aside(&path, &reason)?,
            }
        }
        Ok(stored)
    }

    fn set_aside(&self, path: &Path, reason: &str) -> Result<(), SyncError> {
        let name = ripem_core::spool::escape_name(path.file_name().unwrap_or_default());
        let target = self.failed.join(format!("{name}.{:08x}", rand::random::<u32>()));
        crate::log(&format!(
            "refused {}: {reason}; moved to {}",
            path.display(),
            target.display()
        ));
        std::fs::rename(path, &target).map_err(SyncError::io(path))?;
        ripem_core::atomic::sync_dir(&self.new).map_err(SyncError::io(&self.new))
    }
}

/// Why a queue file was not taken in whole.
enum Refused {
    /// The file is not a batch of canonical updates named by its first.
    Content(String),
    /// The store failed; the file stays to be read again.
    Store(SyncError),
}

/// Reads one queue file and stores its updates, counting the new ones.
fn take_batch(hub: &Hub, path: &Path, max_bytes: u64, stored: &mut usize) -> Result<(), Refused> {
    let file = open_regular(path).map_err(|err| Refused::Content(err.to_string()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let entries = BatchReader::new(std::io::BufReader::new(file), max_bytes);
    for (index, entry) in entries.enumerate() {
        let bytes = entry.map_err(|err| Refused::Content(err.to_string()))?;
        let meta = update::inspect(&bytes).map_err(|err| Refused::Content(format!("entry {}: {err}", index + 1)))?;
        if index == 0 && meta.id != name {
            return Err(Refused::Content(format!(
                "named {name} but its first update's id is {}",
                meta.id
            )));
        }
        let id = meta.id.clone();
        if let Some(seq) = hub.accept(&bytes, meta, None).map_err(Refused::Store)? {
            crate::log(&format!("stored local update {id} as {seq}"));
            *stored += 1;
        }
    }
    Ok(())
}

/// Watches the queue and takes in updates until the task is dropped.
pub async fn watch(queue: Queue, hub: Arc<Hub>) -> Result<(), SyncError> {
    let (events, mut wake) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        let _ = events.send(());
    })
    .map_err(|err| SyncError::Start(format!("{}: {err}", queue.new.display())))?;
    watcher
        .watch(&queue.new, notify::RecursiveMode::NonRecursive)
        .map_err(|err| SyncError::Start(format!("{}: {err}", queue.new.display())))?;
    loop {
        let max_bytes = hub.config().max_message_bytes;
        if let Err(err) = queue.drain(&hub, max_bytes) {
            // A full disk or the like: keep the files, try again later.
            crate::log(&format!("local queue: {err}"));
        }
        let _ = tokio::time::timeout(RESCAN, wake.recv()).await;
        while wake.try_recv().is_ok() {}
    }
}
