//! The history kept in the database: stored updates, the order reached,
//! the clock and the touch index.
//!
//! Every update applied here is kept as the note `update:<id>`, written
//! in the same write window as the records it produced, so the database
//! always holds the history that made it and can be replayed from it. The
//! note `order` is the largest [`order_key`] applied; `clock` the last
//! time issued or seen; `touch:<name>` the order keys of every update
//! naming that key or address ([`Names`]), oldest first. An update that
//! arrives after later ones were applied can be applied as it stands only
//! if none of them touched its names (they commute); otherwise the updates
//! linked to it through shared names are replayed, found through those
//! lists. `touch-lists` marks lists that are whole (made since the first
//! update, or rebuilt by a full replay); a database without it (made
//! before the lists) is replayed whole once. `sender:<id>` keeps the return address of a local
//! registration, for the notice if a late update takes its address;
//! `told:<id>` marks that notice as sent.

use ripem_keydb::KeyDb;
use ripem_update::{Clock, Update};

use super::apply::Names;

const ORDER: &str = "order";
const CLOCK: &str = "clock";
/// The prefix of stored updates' notes.
pub const UPDATE_PREFIX: &str = "update:";
const TOUCH_PREFIX: &str = "touch:";
const TOUCH_LISTS: &str = "touch-lists";
const SENDER_PREFIX: &str = "sender:";
const TOLD_PREFIX: &str = "told:";

/// An update's place in the one order, as text that sorts the same way:
/// the time zero-padded, then origin and id (an origin has no spaces).
pub fn order_key(update: &Update) -> String {
    let (time, origin, id) = update.order();
    format!("{time:020} {origin} {id}")
}

fn note_text<D: KeyDb>(db: &D, name: &str) -> Result<Option<String>, D::Error> {
    Ok(db.note(name)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// The clock as the database left it.
pub fn clock<D: KeyDb>(db: &D) -> Result<Clock, D::Error> {
    let last = note_text(db, CLOCK)?.and_then(|t| t.parse().ok()).unwrap_or(0);
    Ok(Clock::starting_at(last))
}

/// Persists the clock.
pub fn save_clock<D: KeyDb>(db: &mut D, clock: &Clock) -> Result<(), D::Error> {
    db.set_note(CLOCK, clock.last().to_string().as_bytes())
}

/// Whether `update` is stored already.
pub fn has_update<D: KeyDb>(db: &D, id: &str) -> Result<bool, D::Error> {
    Ok(db.note(&format!("{UPDATE_PREFIX}{id}"))?.is_some())
}

/// Whether `update` can be applied as it stands: it comes after every
/// update applied so far, or no later one touched any of its names.
pub fn commutes<D: KeyDb>(db: &D, update: &Update, names: &Names) -> Result<bool, D::Error> {
    let key = order_key(update);
    if note_text(db, ORDER)?.is_none_or(|reached| reached < key) {
        return Ok(true);
    }
    for name in names.keys() {
        if touched(db, &name)?.last().is_some_and(|newest| *newest > key) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The order keys of the updates naming `name`, oldest first.
fn touched<D: KeyDb>(db: &D, name: &str) -> Result<Vec<String>, D::Error> {
    let text = note_text(db, &format!("{TOUCH_PREFIX}{name}"))?.unwrap_or_default();
    Ok(text.lines().map(str::to_string).collect())
}

/// The ids of the stored updates naming `name`.
pub fn updates_naming<D: KeyDb>(db: &D, name: &str) -> Result<Vec<String>, D::Error> {
    let keys = touched(db, name)?;
    Ok(keys
        .iter()
        .filter_map(|key| key.rsplit(' ').next().map(str::to_string))
        .collect())
}

/// Whether every update is in the touch lists of its names.
pub fn touch_lists_whole<D: KeyDb>(db: &D) -> Result<bool, D::Error> {
    Ok(db.note(TOUCH_LISTS)?.is_some())
}

/// The stored update `id`, if it reads.
pub fn stored_update<D: KeyDb>(db: &D, id: &str) -> Result<Option<Update>, D::Error> {
    Ok(db
        .note(&format!("{UPDATE_PREFIX}{id}"))?
        .and_then(|bytes| Update::parse(&bytes).ok()))
}

/// Records `update` as applied: stores it, moves the order reached and
/// the touch index of its names forward.
pub fn record<D: KeyDb>(db: &mut D, update: &Update, names: &Names) -> Result<(), D::Error> {
    store(db, update)?;
    touch(db, update, names)
}

/// Stores `update` without applying it (a replay follows).
pub fn store<D: KeyDb>(db: &mut D, update: &Update) -> Result<(), D::Error> {
    db.set_note(&format!("{UPDATE_PREFIX}{}", update.id()), update.to_bytes())
}

/// Moves the order reached and the touch index forward for `update`.
pub fn touch<D: KeyDb>(db: &mut D, update: &Update, names: &Names) -> Result<(), D::Error> {
    let key = order_key(update);
    let reached = note_text(db, ORDER)?;
    if reached.is_none() {
        // The first update (ever, or of a full replay): from here on every
        // update is in the lists.
        db.set_note(TOUCH_LISTS, b"1")?;
    }
    if reached.is_none_or(|reached| reached < key) {
        db.set_note(ORDER, key.as_bytes())?;
    }
    for name in names.keys() {
        let mut list = touched(db, &name)?;
        if let Err(at) = list.binary_search(&key) {
            list.insert(at, key.clone());
            db.set_note(&format!("{TOUCH_PREFIX}{name}"), list.join("\n").as_bytes())?;
        }
    }
    Ok(())
}

/// Forgets the touch index and the order reached (a replay rebuilds them).
pub fn clear_touches<D: KeyDb>(db: &mut D) -> Result<(), D::Error> {
    for name in db.note_names(TOUCH_PREFIX)? {
        db.delete_note(&name)?;
    }
    db.delete_note(TOUCH_LISTS)?;
    db.delete_note(ORDER)?;
    Ok(())
}

/// Every stored update that still reads, and how many did not.
pub fn stored_updates<D: KeyDb>(db: &D) -> Result<(Vec<Update>, usize), D::Error> {
    let mut updates = Vec::new();
    let mut unreadable = 0;
    for name in db.note_names(UPDATE_PREFIX)? {
        match db.note(&name)?.map(|bytes| Update::parse(&bytes)) {
            Some(Ok(update)) => updates.push(update),
            _ => unreadable += 1,
        }
    }
    Ok((updates, unreadable))
}

/// Keeps the return address of a local registration.
pub fn set_sender<D: KeyDb>(db: &mut D, id: &str, sender: &str) -> Result<(), D::Error> {
    db.set_note(&format!("{SENDER_PREFIX}{id}"), sender.as_bytes())
}

/// The return address of a local registration, unless its notice was sent.
pub fn untold_sender<D: KeyDb>(db: &D, id: &str) -> Result<Option<String>, D::Error> {
    if db.note(&format!("{TOLD_PREFIX}{id}"))?.is_some() {
        return Ok(None);
    }
    note_text(db, &format!("{SENDER_PREFIX}{id}"))
}

/// Marks a local registration's conflict notice as sent.
pub fn set_told<D: KeyDb>(db: &mut D, id: &str) -> Result<(), D::Error> {
    db.set_note(&format!("{TOLD_PREFIX}{id}"), b"1")
}
