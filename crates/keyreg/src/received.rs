//! Updates from other servers: taken from `spool/sync/`, checked, applied
//! in the one order, and the senders of registrations they overruled told.
//!
//! keysync has checked each update before delivering it, but keyreg is the
//! database's only writer and checks again (a file in the spool is only as
//! trustworthy as the spool): a file that is not an update, or whose name
//! is not its id, or that fails [`ripem_update::check`], is moved to
//! `spool/failed/` with its reason. One dated further ahead than the
//! clocks may drift stays spooled until its time comes. The rest are
//! applied in write windows of at most [`MAX_RECEIVED`], and each file is
//! deleted only once its window is switched in: killed at any point,
//! keyreg finds the same files again and applies each once (a stored id is
//! skipped).

use std::path::Path;

use chrono::Utc;
use ripem_core::reply::Reply;
use ripem_core::spool::QueueName;
use ripem_core::types::Email;
use ripem_update::Update;

use crate::error::RegistrarError;
use crate::registrar::Registrar;
use crate::replication::handoff::{self, Inbound};
use crate::replication::{log, Conflict, ReceivedSummary};

/// At most this many received updates share one write window.
pub const MAX_RECEIVED: usize = 2000;

/// An error reading or removing received updates, naming where.
fn inbound_error(path: &Path) -> impl FnOnce(std::io::Error) -> RegistrarError + '_ {
    move |source| RegistrarError::Inbound {
        path: path.to_path_buf(),
        source,
    }
}

impl Registrar {
    /// Applies every update waiting in `spool/sync/` (see the
    /// [module](self) docs).
    pub fn process_received(&self) -> Result<ReceivedSummary, RegistrarError> {
        let mut summary = ReceivedSummary::default();
        loop {
            let dir = self.spool.new_dir(QueueName::Sync);
            let files = handoff::inbound_dir(&dir, MAX_RECEIVED).map_err(inbound_error(&dir))?;
            let listed = files.len();
            let (ready, taken) = self.sort_received(files, &mut summary)?;
            if !ready.is_empty() {
                self.apply_received(ready, &mut summary)?;
            }
            if taken == 0 || listed < MAX_RECEIVED {
                return Ok(summary);
            }
        }
    }

    /// Parses and checks received files outside the window: the updates to
    /// apply with their files, and how many files were dealt with.
    fn sort_received(
        &self,
        files: Vec<Inbound>,
        summary: &mut ReceivedSummary,
    ) -> Result<(Vec<(Update, Inbound)>, usize), RegistrarError> {
        let now = Utc::now();
        let mut ready = Vec::new();
        let mut taken = 0;
        for file in files {
            let name = file
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let checked = Update::parse(&file.bytes)
                .map_err(|err| err.to_string())
                .and_then(|update| match update.id() == name {
                    true => Ok(update),
                    false => Err(format!("the file name is not the update's id {}", update.id())),
                })
                .and_then(|update| {
                    ripem_update::check(&update, &self.policy)
                        .map(|()| update)
                        .map_err(|err| err.to_string())
                });
            match checked {
                Ok(update) if self.replication.too_early(update.time_ms(), now) => summary.deferred += 1,
                Ok(update) => {
                    ready.push((update, file));
                    taken += 1;
                }
                Err(reason) => {
                    self.spool.quarantine_outgoing(&file.path, &reason)?;
                    summary.refused.push(format!("{}: {reason}", file.path.display()));
                    taken += 1;
                }
            }
        }
        Ok((ready, taken))
    }

    fn apply_received(
        &self,
        ready: Vec<(Update, Inbound)>,
        summary: &mut ReceivedSummary,
    ) -> Result<(), RegistrarError> {
        let (updates, files): (Vec<Update>, Vec<Inbound>) = ready.into_iter().unzip();
        let mut store = self.open_for_writing()?;
        let mut clock = log::clock(&store)?;
        let received = self
            .replication
            .receive(&mut store, &mut clock, updates, &self.policy)?;
        self.end_window_and_hand_off(&mut store, &clock)?;
        drop(store);
        for conflict in &received.conflicts {
            self.queue_conflict_notice(conflict)?;
        }
        for file in files {
            match std::fs::remove_file(&file.path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(inbound_error(&file.path)(err));
                }
                _ => {}
            }
        }
        summary.applied += received.applied;
        summary.duplicates += received.duplicates;
        summary.replays.extend(received.replayed);
        summary.conflicts += received.conflicts.len();
        Ok(())
    }

    /// Rebuilds the database from the updates it holds, and from those in
    /// `from` (a directory of update files, such as `keysync --dump`
    /// writes: each checked like a received one), replayed in the one
    /// order in one write window. How many updates the database holds now.
    pub fn replay(&self, from: Option<&Path>) -> Result<usize, RegistrarError> {
        let mut extra = Vec::new();
        if let Some(dir) = from {
            let files = handoff::inbound_dir(dir, usize::MAX).map_err(inbound_error(dir))?;
            for file in files {
                let update = Update::parse(&file.bytes)
                    .and_then(|update| ripem_update::check(&update, &self.policy).map(|()| update))
                    .map_err(|err| RegistrarError::BadUpdate {
                        path: file.path.clone(),
                        reason: err.to_string(),
                    })?;
                extra.push(update);
            }
        }
        let mut store = self.open_for_writing()?;
        let mut clock = log::clock(&store)?;
        for update in &extra {
            clock.observe(update.time_ms());
            if !log::has_update(&store, update.id())? {
                log::store(&mut store, update)?;
            }
        }
        let (count, conflicts) = self.replication.replay(&mut store, &self.policy)?;
        self.end_window_and_hand_off(&mut store, &clock)?;
        drop(store);
        for conflict in &conflicts {
            self.queue_conflict_notice(conflict)?;
        }
        Ok(count)
    }

    /// Tells the sender of a registration accepted here that a late,
    /// earlier one from another server holds the address now.
    fn queue_conflict_notice(&self, conflict: &Conflict) -> Result<(), RegistrarError> {
        let Ok(to) = Email::parse(&conflict.sender) else {
            return Ok(());
        };
        let body = format!(
            "This is the RIPEM key server at {from}.\n\nYou registered {address} here, but an earlier registration of\n{address} at {origin} holds it: key {holder}.\n\nThe servers of this network keep one registry, first come, first\nserved by the time each server accepted a request, and that server\naccepted its request before this one accepted yours. If the address is\nyours and that key is not, write to the operators; if it is your own\nkey, there is nothing to do.\n",
            from = self.mailer.from_address(),
            address = conflict.address,
            origin = conflict.holder_origin,
            holder = conflict.holder,
        );
        let notice = Reply {
            to,
            subject: format!("Your registration of {} was overruled", conflict.address),
            in_reply_to: None,
            body,
            attachment: None,
        };
        let name = format!("conflict.{}.{}", conflict.update_id, conflict.address);
        self.mailer.queue(&self.spool, &name, &notice)?;
        Ok(())
    }
}
