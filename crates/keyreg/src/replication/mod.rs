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
//! it stands; otherwise its part of the database is replayed: the records
//! of every key and address linked to it through updates that share names
//! are emptied, and those updates applied again in order. Updates outside
//! that part share no name with it, so the result is what a replay of the
//! whole database from its stored updates ([`Replication::replay`], which
//! `keyreg --replay` runs) would give, and every server that holds the
//! same updates holds the same database. When a replay takes an address
//! from a registration accepted here, its sender is told once.
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
    /// Whether part of the database was replayed, and how many updates.
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
        Fields::new(kind, &self.server_id, time_ms, fingerprint)
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
        let mut late = Vec::new();
        for update in &updates {
            if log::has_update(db, update.id())? {
                received.duplicates += 1;
                continue;
            }
            clock.observe(update.time_ms());
            let names = Names::of(update, policy);
            // One applied now that shares names with a late one is in
            // that one's part and applied again after it.
            if log::commutes(db, update, &names)? {
                apply_update(db, update, &names, policy, &self.reject, self.max_request_age)?;
            } else {
                late.push(names.clone());
            }
            log::record(db, update, &names)?;
            received.applied += 1;
        }
        log::save_clock(db, clock)?;
        if !late.is_empty() {
            let (count, conflicts) = match log::touch_lists_whole(db)? {
                true => self.replay_part(db, &late, policy)?,
                false => self.replay(db, policy)?,
            };
            received.replayed = Some(count);
            received.conflicts = conflicts;
        }
        Ok(received)
    }

    /// Replays the part of the database linked to `seeds`: every update
    /// reached from their names through updates sharing names, after the
    /// records of all those names are emptied. How many, and the notices.
    fn replay_part<D: KeyDb>(
        &self,
        db: &mut D,
        seeds: &[Names],
        policy: &KeyPolicy,
    ) -> Result<(usize, Vec<Conflict>), D::Error> {
        let mut names: std::collections::BTreeSet<String> = seeds.iter().flat_map(Names::keys).collect();
        let mut queue: Vec<String> = names.iter().cloned().collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut part = Vec::new();
        while let Some(name) = queue.pop() {
            for id in log::updates_naming(db, &name)? {
                if !seen.insert(id.clone()) {
                    continue;
                }
                let Some(update) = log::stored_update(db, &id)? else {
                    continue;
                };
                let linked = Names::of(&update, policy);
                queue.extend(linked.keys().filter(|key| names.insert(key.clone())));
                part.push((update, linked));
            }
        }
        let keys: std::collections::BTreeSet<&Fingerprint> =
            part.iter().flat_map(|(_, linked)| &linked.fingerprints).collect();
        let mut records = Vec::new();
        for (_, linked) in &part {
            let queries = linked.fingerprints.iter().map(|f| Query::Fingerprint(f.clone()));
            let queries = queries.chain(linked.emails.iter().map(|e| Query::Email(e.clone())));
            for query in queries {
                match db.record(&query)? {
                    // Held by a key no update of the part names: the
                    // lists do not tell the whole story, so trust none.
                    Some(record) if !keys.contains(&record.fingerprint) => return self.replay(db, policy),
                    Some(record) => records.push(record),
                    None => {}
                }
            }
        }
        for record in records {
            if db.record(&Query::Fingerprint(record.fingerprint.clone()))?.is_some() {
                crate::request::delete_key(db, &record, policy)?;
            }
        }
        part.sort_by(|(a, _), (b, _)| a.order().cmp(&b.order()));
        let conflicts = self.apply_in_order(db, &part, policy, false)?;
        Ok((part.len(), conflicts))
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
        let updates: Vec<(Update, Names)> = updates
            .into_iter()
            .map(|update| {
                let names = Names::of(&update, policy);
                (update, names)
            })
            .collect();
        let conflicts = self.apply_in_order(db, &updates, policy, true)?;
        Ok((updates.len(), conflicts))
    }

    /// Applies `updates` (in the one order, with their names) again, and
    /// rebuilds their touch lists if `touch`; the local registrations
    /// that lost an address on the way and whose senders were not told.
    fn apply_in_order<D: KeyDb>(
        &self,
        db: &mut D,
        updates: &[(Update, Names)],
        policy: &KeyPolicy,
        touch: bool,
    ) -> Result<Vec<Conflict>, D::Error> {
        let mut conflicts = Vec::new();
        for (index, (update, names)) in updates.iter().enumerate() {
            let outcome = apply_update(db, update, names, policy, &self.reject, self.max_request_age)?;
            if touch {
                log::touch(db, update, names)?;
            }
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
                    .find(|(earlier, _)| earlier.fingerprint() == holder && earlier.fields().claims.contains(address))
                    .map_or_else(
                        || "another server".to_string(),
                        |(earlier, _)| earlier.origin().to_string(),
                    );
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
        Ok(conflicts)
    }

    /// Whether an update dated `time_ms` must wait (it is further ahead of
    /// `now` than the clocks may drift).
    pub fn too_early(&self, time_ms: u64, now: DateTime<Utc>) -> bool {
        ripem_update::time_of(time_ms) > now + self.max_clock_skew
    }
}

#[cfg(test)]
mod tests;
