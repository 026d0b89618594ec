//! Replication: every state change keyreg makes is an update, and the
//! database is a function of the set of updates it holds.
//!
//! A request accepted here is applied at a time from this server's
//! [`Clock`] and recorded as an [`Update`] ([`Replication::key_update`],
//! [`Replication::signed_update`]); keysync takes it from `sync/queue/`
//! ([`handoff`]) and spreads it. Updates from peers arrive in `spool/sync/`
//! and are applied in the one order of all updates, by (time, origin, id)
//! ([`Replication::receive`]): one that comes after everything applied so
//! far, or that shares no key or address with a later one, is applied as
//! it stands; otherwise the whole database is replayed from its stored
//! updates in order ([`Replication::replay`]), so every server that holds
//! the same updates holds the same database. When a replay takes an
//! address from a registration accepted here, its sender is told once.
//!
//! Files: `apply` (the one apply path), `log` (the history kept in the
//! database), `handoff` (the queues to and from keysync).

pub mod apply;
pub mod handoff;
pub mod log;

use chrono::{DateTime, Duration, Utc};
use ripem_core::config::Config;
use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint, Query};
use ripem_keydb::KeyDb;
use ripem_openpgp::{CheckedKey, KeyPolicy};
use ripem_update::{Clock, Fields, Kind, Update};

use crate::request::{AddressOutcome, KeyOutcome, SignedOutcome};
use apply::{apply_update, Names, RejectList};

/// This server's part in the network of servers.
#[derive(Debug, Clone)]
pub struct Replication {
    /// `Origin:` of the updates made here.
    pub server_id: String,
    /// A lookup-only replica: applies what peers send, accepts no request.
    pub replica: bool,
    /// Keys and addresses never applied here.
    pub reject: RejectList,
    /// An update dated further ahead than this waits until its time.
    pub max_clock_skew: Duration,
    /// `[keyreg] max_request_age`: how old a signed request may be.
    pub max_request_age: Duration,
}

/// A registration here that a late update overruled: who to tell what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The id of the registration's update.
    pub update_id: String,
    /// The sender of the registration.
    pub sender: String,
    /// The address it lost.
    pub address: Email,
    /// The key that holds it now.
    pub holder: Fingerprint,
    /// The server that accepted the holder's registration.
    pub holder_origin: String,
}

/// What taking the received updates did, for the operator's log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReceivedSummary {
    /// Updates applied.
    pub applied: usize,
    /// Updates that were stored already.
    pub duplicates: usize,
    /// Updates waiting for their time.
    pub deferred: usize,
    /// Replays of the whole database, each with its number of updates.
    pub replays: Vec<usize>,
    /// Refused files, one line each.
    pub refused: Vec<String>,
    /// Conflict notices queued.
    pub conflicts: usize,
}

/// What applying a batch of received updates did.
#[derive(Debug, Default)]
pub struct Received {
    /// Updates applied (stored) now.
    pub applied: usize,
    /// Updates already stored, skipped.
    pub duplicates: usize,
    /// Whether the database was replayed, and from how many updates.
    pub replayed: Option<usize>,
    /// Registrations accepted here that lost an address.
    pub conflicts: Vec<Conflict>,
}

impl Replication {
    /// This server's replication settings, from the configuration.
    pub fn from_config(config: &Config) -> Replication {
        let sync = &config.sync;
        let duration = |d: std::time::Duration| Duration::from_std(d).unwrap_or(Duration::MAX);
        Replication {
            server_id: sync.server_id.clone(),
            replica: sync.replica,
            reject: RejectList::from_config(&sync.reject),
            max_clock_skew: duration(sync.max_clock_skew),
            max_request_age: duration(config.keyreg.max_request_age),
        }
    }

    /// Records a local registration's or merge's update, if `outcome`
    /// changed anything. `time` is the clock's time the key was applied
    /// at; `offered` the key applied as it was checked (none for a
    /// revocation certificate: the update carries the revoked key).
    pub fn key_update<D: KeyDb>(
        &self,
        db: &mut D,
        offered: Option<&CheckedKey>,
        outcome: &KeyOutcome,
        time: u64,
        policy: &KeyPolicy,
    ) -> Result<Option<Update>, D::Error> {
        let KeyOutcome::Applied {
            fingerprint, addresses, ..
        } = outcome
        else {
            return Ok(None);
        };
        if !outcome.changed() {
            return Ok(None);
        }
        let claims: Vec<Email> = addresses
            .iter()
            .filter(|(_, o)| matches!(o, AddressOutcome::Registered | AddressOutcome::TakenOver(_)))
            .map(|(email, _)| email.clone())
            .collect();
        // The offered key as it was checked; a revocation certificate is
        // carried as the key it revoked, with the revocation.
        let key = match offered {
            Some(key) => key.to_armored().trim_end().to_string(),
            None => match db.record(&Query::Fingerprint(fingerprint.clone()))? {
                Some(Record { key_armor, .. }) => key_armor,
                None => return Ok(None),
            },
        };
        let kind = match claims.is_empty() {
            true => Kind::Merge,
            false => Kind::Register,
        };
        let fields = Fields {
            kind,
            claims,
            key: Some(key),
            ..self.fields(Kind::Register, fingerprint.clone(), time)
        };
        self.record_local(db, fields, offered, policy)
    }

    /// Records a local change's or removal's update, if it was applied.
    pub fn signed_update<D: KeyDb>(
        &self,
        db: &mut D,
        outcome: &SignedOutcome,
        time: u64,
        policy: &KeyPolicy,
    ) -> Result<Option<Update>, D::Error> {
        if let Some(key) = &outcome.merged {
            let fields = Fields {
                kind: Kind::Merge,
                key: Some(key.to_armored().trim_end().to_string()),
                ..self.fields(Kind::Merge, key.fingerprint().clone(), time)
            };
            return self.record_local(db, fields, Some(key), policy);
        }
        let Some(effect) = &outcome.effect else {
            return Ok(None);
        };
        let (kind, fingerprint, key, old_fingerprint) = match &effect.new_key {
            Some((new, armor)) => (
                Kind::Change,
                new.clone(),
                Some(armor.clone()),
                Some(effect.old_fingerprint.clone()),
            ),
            None => (Kind::Remove, effect.old_fingerprint.clone(), None, None),
        };
        let fields = Fields {
            kind,
            old_fingerprint,
            claims: effect.claims.clone(),
            transfers: effect.transfers.clone(),
            releases: effect.releases.clone(),
            key,
            old_key: Some(effect.old_key.clone()),
            request: Some(effect.part.clone()),
            ..self.fields(kind, fingerprint, time)
        };
        self.record_local(db, fields, None, policy)
    }

    fn fields(&self, kind: Kind, fingerprint: Fingerprint, time_ms: u64) -> Fields {
        Fields {
            kind,
            origin: self.server_id.clone(),
            time_ms,
            fingerprint,
            old_fingerprint: None,
            claims: Vec::new(),
            transfers: Vec::new(),
            releases: Vec::new(),
            key: None,
            old_key: None,
            request: None,
        }
    }

    /// Records a local update; `checked` is its key when the request's
    /// own check already read it (else the update's keys are read again).
    fn record_local<D: KeyDb>(
        &self,
        db: &mut D,
        fields: Fields,
        checked: Option<&CheckedKey>,
        policy: &KeyPolicy,
    ) -> Result<Option<Update>, D::Error> {
        // A request too large for an update (over 1 MiB) was applied here
        // but can't be spread; it is still recorded in the log.
        let Ok(update) = Update::new(fields) else {
            return Ok(None);
        };
        let names = match checked {
            Some(key) => Names::with_keys(&update, &[key]),
            None => Names::of(&update, policy),
        };
        log::record(db, &update, &names)?;
        Ok(Some(update))
    }

    /// Applies received updates (checked, not stored yet) in the one
    /// order; see the [module](self) docs.
    pub fn receive<D: KeyDb>(
        &self,
        db: &mut D,
        clock: &mut Clock,
        mut updates: Vec<Update>,
        policy: &KeyPolicy,
    ) -> Result<Received, D::Error> {
        updates.sort_by(|a, b| a.order().cmp(&b.order()));
        let mut received = Received::default();
        let mut replay = false;
        for update in &updates {
            if log::has_update(db, update.id())? {
                received.duplicates += 1;
                continue;
            }
            clock.observe(update.time_ms());
            let names = Names::of(update, policy);
            if !replay && log::commutes(db, update, &names)? {
                apply_update(db, update, &names, policy, &self.reject, self.max_request_age)?;
            } else {
                replay = true;
            }
            log::record(db, update, &names)?;
            received.applied += 1;
        }
        log::save_clock(db, clock)?;
        if replay {
            let (count, conflicts) = self.replay(db, policy)?;
            received.replayed = Some(count);
            received.conflicts = conflicts;
        }
        Ok(received)
    }

    /// Empties the database of keys and applies every stored update again
    /// in the one order; how many, and the local registrations that lost
    /// an address on the way and whose senders were not told yet.
    pub fn replay<D: KeyDb>(&self, db: &mut D, policy: &KeyPolicy) -> Result<(usize, Vec<Conflict>), D::Error> {
        let (mut updates, _unreadable) = log::stored_updates(db)?;
        updates.sort_by(|a, b| a.order().cmp(&b.order()));
        for fingerprint in db.all_fingerprints()? {
            if let Some(record) = db.record(&Query::Fingerprint(fingerprint))? {
                crate::request::delete_key(db, &record, policy)?;
            }
        }
        log::clear_touches(db)?;
        let mut conflicts = Vec::new();
        for (index, update) in updates.iter().enumerate() {
            let names = Names::of(update, policy);
            let outcome = apply_update(db, update, &names, policy, &self.reject, self.max_request_age)?;
            log::touch(db, update, &names)?;
            if update.origin() != self.server_id || outcome.taken.is_empty() {
                continue;
            }
            let lost: Vec<&(Email, Fingerprint)> = outcome
                .taken
                .iter()
                .filter(|(email, _)| update.fields().claims.contains(email))
                .collect();
            if lost.is_empty() {
                continue;
            }
            let Some(sender) = log::untold_sender(db, update.id())? else {
                continue;
            };
            for (address, holder) in lost {
                let holder_origin = updates[..index]
                    .iter()
                    .rev()
                    .find(|earlier| earlier.fingerprint() == holder && earlier.fields().claims.contains(address))
                    .map_or_else(|| "another server".to_string(), |earlier| earlier.origin().to_string());
                conflicts.push(Conflict {
                    update_id: update.id().to_string(),
                    sender: sender.clone(),
                    address: address.clone(),
                    holder: holder.clone(),
                    holder_origin,
                });
            }
            log::set_told(db, update.id())?;
        }
        Ok((updates.len(), conflicts))
    }

    /// Whether an update dated `time_ms` must wait (it is further ahead of
    /// `now` than the clocks may drift).
    pub fn too_early(&self, time_ms: u64, now: DateTime<Utc>) -> bool {
        ripem_update::time_of(time_ms) > now + self.max_clock_skew
    }
}

#[cfg(test)]
mod tests;
