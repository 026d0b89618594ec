//! The one apply path: an update applied to the database.
//!
//! An update carries the request's own input — the offered key, the
//! revoked key, the user's signed change or removal — and its time, so
//! applying it is running the request rules of [`crate::request`] again
//! with "now" set to the update's time. Given the same database it gives
//! the same result on every server, record times included (they come
//! from the update's time, never from the clock at apply time), which is
//! what makes the database a function of the set of updates. A local
//! request is applied this way once, as it is accepted; a received update
//! or a replay applies it the same way.
//!
//! An update that names a rejected fingerprint or address is not applied
//! here (it is still stored, so the order and the history stay whole).

use chrono::Duration;
use ripem_core::config::Rejected;
use ripem_core::types::{Email, Fingerprint};
use ripem_keydb::KeyDb;
use ripem_openpgp::{self as openpgp, CheckedKey, KeyPolicy};
use ripem_update::{time_of, Kind, Update};

use crate::request::{self, AddressOutcome, Candidate, KeyOutcome};

/// What this server refuses to apply or serve, from `[sync] reject`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectList {
    /// Keys never applied here.
    pub fingerprints: Vec<Fingerprint>,
    /// Addresses never registered here.
    pub addresses: Vec<Email>,
}

impl RejectList {
    /// The list `[sync] reject` gives.
    pub fn from_config(entries: &[Rejected]) -> RejectList {
        let mut list = RejectList::default();
        for entry in entries {
            match entry {
                Rejected::Fingerprint(fingerprint) => list.fingerprints.push(fingerprint.clone()),
                Rejected::Address(email) => list.addresses.push(email.clone()),
            }
        }
        list
    }

    fn refuses(&self, names: &Names) -> bool {
        names.fingerprints.iter().any(|f| self.fingerprints.contains(f))
            || names.emails.iter().any(|e| self.addresses.contains(e))
    }
}

/// Everything an update may touch: the keys it is about and every
/// address it moves or whose user ID its keys carry. Two updates that
/// share no name commute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Fingerprints.
    pub fingerprints: Vec<Fingerprint>,
    /// Addresses.
    pub emails: Vec<Email>,
}

impl Names {
    /// The names of `update`, reading the keys it carries.
    pub fn of(update: &Update, policy: &KeyPolicy) -> Names {
        let fields = update.fields();
        let keys: Vec<CheckedKey> = [&fields.key, &fields.old_key]
            .into_iter()
            .flatten()
            .filter_map(|block| checked_key(block, policy))
            .collect();
        Names::with_keys(update, &keys.iter().collect::<Vec<_>>())
    }

    /// The names of `update`, whose keys, checked, are `keys` (a local
    /// update: its key was checked when the request was).
    pub fn with_keys(update: &Update, keys: &[&CheckedKey]) -> Names {
        let fields = update.fields();
        let mut names = Names::default();
        names.fingerprints.push(fields.fingerprint.clone());
        names.fingerprints.extend(fields.old_fingerprint.iter().cloned());
        for list in [&fields.claims, &fields.transfers, &fields.releases] {
            names.emails.extend(list.iter().cloned());
        }
        for key in keys {
            names.emails.extend(key.emails().iter().cloned());
        }
        names.fingerprints.sort();
        names.fingerprints.dedup();
        names.emails.sort();
        names.emails.dedup();
        names
    }

    /// Each name as the touch index keys it.
    pub fn keys(&self) -> impl Iterator<Item = String> + '_ {
        let fingerprints = self.fingerprints.iter().map(|f| format!("0x{f}"));
        fingerprints.chain(self.emails.iter().map(|e| e.to_string()))
    }
}

fn checked_key(block: &str, policy: &KeyPolicy) -> Option<CheckedKey> {
    let key = openpgp::parse_armored_keys(block).ok()?.into_iter().next()?;
    openpgp::check_key(key, policy).ok()
}

/// What applying one update did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// The outcome lines, as a reply would say them.
    pub lines: Vec<String>,
    /// Addresses the update's key carries that another key held, and which.
    pub taken: Vec<(Email, Fingerprint)>,
}

impl From<Vec<String>> for UpdateOutcome {
    fn from(lines: Vec<String>) -> UpdateOutcome {
        UpdateOutcome {
            lines,
            taken: Vec::new(),
        }
    }
}

/// Applies `update` (see the [module](self) docs).
pub fn apply_update<D: KeyDb>(
    db: &mut D,
    update: &Update,
    names: &Names,
    policy: &KeyPolicy,
    reject: &RejectList,
    max_age: Duration,
) -> Result<UpdateOutcome, D::Error> {
    if reject.refuses(names) {
        return Ok(vec!["not applied: it names a key or address this server rejects".to_string()].into());
    }
    let fields = update.fields();
    let now = time_of(update.time_ms());
    match fields.kind {
        Kind::Register | Kind::Merge => {
            let Some(block) = &fields.key else {
                return Ok(UpdateOutcome::default());
            };
            let key = match openpgp::parse_armored_keys(block).map(|keys| keys.into_iter().next()) {
                Ok(Some(key)) => key,
                Ok(None) => return Ok(vec!["not applied: no key".to_string()].into()),
                Err(err) => return Ok(vec![format!("not applied: {err}")].into()),
            };
            let candidate = request::candidate(key, policy, now);
            if fields.kind == Kind::Merge && !registered(db, &fields.fingerprint)? {
                let line = format!("key {}: not registered here; nothing to merge", fields.fingerprint);
                return Ok(vec![line].into());
            }
            if let Candidate::Refused { key, reason } = &candidate {
                return Ok(vec![format!("{key}: refused: {reason}")].into());
            }
            let outcome = request::apply_candidate(db, &candidate, policy, now)?;
            let taken = match &outcome {
                KeyOutcome::Applied { addresses, .. } => addresses
                    .iter()
                    .filter_map(|(email, happened)| match happened {
                        AddressOutcome::Taken(owner) => Some((email.clone(), owner.clone())),
                        _ => None,
                    })
                    .collect(),
                KeyOutcome::Refused { .. } => Vec::new(),
            };
            Ok(UpdateOutcome {
                lines: outcome.lines(),
                taken,
            })
        }
        Kind::Change | Kind::Remove => {
            let Some(part) = &fields.request else {
                return Ok(UpdateOutcome::default());
            };
            let parts = std::slice::from_ref(part);
            let outcome = match fields.kind {
                Kind::Change => request::apply_change(db, parts, policy, now, max_age)?,
                _ => request::apply_remove(db, parts, policy, now, max_age)?,
            };
            Ok(outcome.lines.into())
        }
    }
}

fn registered<D: KeyDb>(db: &D, fingerprint: &Fingerprint) -> Result<bool, D::Error> {
    Ok(db
        .record_text(&ripem_core::types::Query::Fingerprint(fingerprint.clone()))?
        .is_some())
}
