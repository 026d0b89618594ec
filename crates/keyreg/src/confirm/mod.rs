//! Verified addresses: `[keyreg] policy = "confirm"`, in the Web Key
//! Service protocol that `gpg-wks-client` speaks.
//!
//! Under `confirm` a registration (by mail, or an HKP/VKS upload that hkpd
//! spooled) publishes only the addresses already registered to the key
//! (updates merge as before); each new address is *pending*: kept in the
//! [`store`] under `STATE_DIR/pending/`, outside the database, so nothing
//! serves it, and mailed a confirmation request encrypted to the key
//! ([`mail`]). A response from that address carrying the nonce publishes
//! it through the ordinary add path ([`publish`], which is
//! `request::apply_key` with the key cut to its registered addresses and
//! the confirmed one). A wrong nonce, a response from another address,
//! a replay (the entry is gone once used) or a response past the 3 days
//! changes nothing, and the sender is told so in the one reply the
//! request gets (under keyreg's loop rules). At most one confirmation
//! mail per address per [`store::MAIL_INTERVAL`]: a submission within
//! the hour is told a mail is on its way. `--import`, change and removal
//! requests (signed by the key) are not affected.
//!
//! The work is split as the registrar's is: [`classify`] runs outside the
//! write window (reading a response and its entry), [`apply_candidate`]
//! and [`publish`] inside it (only the database), and [`request_all`]
//! and [`finish`] at commit, before the request is logged and its spool
//! file deleted: an entry is written and its mail queued under a name
//! derived from the request's, so a crash at any point either redoes
//! both or finds them done, and nothing pending is lost.

pub mod mail;
pub mod server_key;
pub mod store;

use chrono::{DateTime, Utc};
use ripem_core::config::Config;
use ripem_core::mail::RequestMail;
use ripem_core::reply::Mailer;
use ripem_core::spool::Spool;
use ripem_core::types::{Email, Fingerprint, Query};
use ripem_keydb::KeyDb;
use ripem_openpgp::{self as openpgp, CheckedKey, KeyPolicy, ServerKey};

use crate::error::RegistrarError;
use crate::request::{self, AddRequest, Candidate, KeyOutcome, Tally};
use mail::Response;
use store::{Entry, PendingStore, EXPIRY_SECONDS, MAIL_INTERVAL};

/// The pending store, the server's key pair and the address
/// confirmations go out from.
pub struct Confirmer {
    store: PendingStore,
    register: String,
    server_key: ServerKey,
}

/// A new address of a submitted key, to be mailed a confirmation request.
#[derive(Debug, Clone)]
pub struct ToConfirm {
    /// The address.
    pub email: Email,
    /// The key, as submitted and checked.
    pub key: CheckedKey,
}

/// A registration mail read under `confirm` ([`Confirmer::prepare`]).
#[derive(Debug)]
pub enum Read {
    /// A confirmation response, checked against its pending entry.
    Response(Confirmation),
    /// A registration, its keys found and checked as under `fcfs`.
    Registration(AddRequest),
}

/// What a confirmation response comes to, decided outside the window.
#[derive(Debug)]
pub enum Confirmation {
    /// It checks out: publish this entry's address.
    Publish(Box<Entry>),
    /// It changes nothing, for this reason.
    Refused(String),
}

impl Confirmer {
    /// The confirmer of this configuration, or `None` under `fcfs`. The
    /// server's key pair is read, or made on first use.
    pub fn configured(config: &Config) -> Result<Option<Confirmer>, RegistrarError> {
        if config.keyreg.policy != ripem_core::config::Policy::Confirm {
            return Ok(None);
        }
        let register = config.addresses.register.clone();
        Ok(Some(Confirmer {
            store: PendingStore::new(&config.paths.state_dir, config.keyreg.max_pending),
            server_key: server_key::load_or_make(&config.paths.state_dir, &register)?,
            register,
        }))
    }

    /// `raw` with its `multipart/encrypted` part replaced by what it
    /// decrypts to with the server's key (a `gpg-wks-client --create`
    /// submission, an encrypted confirmation response), if it has one
    /// that decrypts.
    pub fn open_encrypted(&self, raw: &[u8]) -> Option<Vec<u8>> {
        mail::open_encrypted(raw, |message| self.server_key.decrypt(message).ok())
    }

    /// Reads a mail to the register address outside the write window: a
    /// confirmation response, or a registration (an encrypted one, made by
    /// `gpg-wks-client --create`, opened with the server's key). The
    /// decoded bodies of `mail` are dropped once read.
    pub fn prepare(
        &self,
        raw: &[u8],
        mail: &mut RequestMail,
        policy: &KeyPolicy,
        max_keys: usize,
    ) -> Result<Read, RegistrarError> {
        let opened = self.open_encrypted(raw);
        let raw = opened.as_deref().unwrap_or(raw);
        if let Some(inner) = opened.as_deref().and_then(|opened| RequestMail::parse(opened).ok()) {
            mail.texts = inner.texts;
            mail.binary_keys = inner.binary_keys;
        }
        let carries_keys = !mail.texts.is_empty() || !mail.binary_keys.is_empty();
        let now = Utc::now();
        let read = match self.classify(raw, carries_keys, now)? {
            Some(confirmation) => Read::Response(confirmation),
            None => Read::Registration(request::prepare_add(
                &mail.texts,
                &mail.binary_keys,
                policy,
                now,
                max_keys,
            )),
        };
        mail.texts = Vec::new();
        mail.binary_keys = Vec::new();
        Ok(read)
    }

    /// Whether `raw` is a confirmation response, and if so what it comes
    /// to at `now`. `carries_keys`: the mail holds key blocks.
    pub fn classify(
        &self,
        raw: &[u8],
        carries_keys: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Confirmation>, RegistrarError> {
        let Some(response) = mail::read_response(raw, carries_keys) else {
            return Ok(None);
        };
        let entry = self.store.get(&response.address)?;
        // A plain reply counts as a response only if its sender has a
        // confirmation pending; else it is an ordinary request mail.
        if !response.wks && entry.is_none() {
            return Ok(None);
        }
        Ok(Some(decide(&response, entry, now.timestamp())))
    }

    /// Writes a pending entry and queues a confirmation request for each
    /// new address, at most one mail per address per hour; returns the
    /// reply's lines. `request` is the spool file name.
    pub fn request_all(
        &self,
        mailer: &Mailer,
        spool: &Spool,
        request: &str,
        to_confirm: &[ToConfirm],
    ) -> Result<Vec<String>, RegistrarError> {
        let now = Utc::now();
        let seconds = now.timestamp();
        let mut lines = Vec::new();
        for (index, item) in to_confirm.iter().enumerate() {
            if index == 0 || to_confirm[index - 1].key.fingerprint() != item.key.fingerprint() {
                lines.push(format!("key {}:", item.key.fingerprint()));
            }
            let existing = self.store.get(&item.email)?;
            let recent = existing
                .as_ref()
                .filter(|entry| seconds - entry.created < MAIL_INTERVAL && entry.created <= seconds);
            let entry = match recent {
                // The same request again (after a crash): the same entry,
                // its mail queued again under the same name (kept if there).
                Some(entry) if entry.request == request => entry.clone(),
                Some(_) => {
                    lines.push(format!(
                        "  {}: pending: a confirmation request was mailed to it within the hour; answer that one (no second mail is sent)",
                        item.email
                    ));
                    continue;
                }
                None => Entry {
                    email: item.email.clone(),
                    fingerprint: item.key.fingerprint().clone(),
                    nonce: store::new_nonce(),
                    created: seconds,
                    request: request.to_string(),
                    key_armor: item.key.to_armored().trim_end().to_string(),
                },
            };
            let payload = mail::request_payload(&self.register, &entry.email, &entry.fingerprint, &entry.nonce);
            let encrypted = match openpgp::encrypt_to_key(&item.key, payload.as_bytes()) {
                Ok(encrypted) => encrypted,
                Err(err) => {
                    lines.push(format!("  {}: not registered: {err}", item.email));
                    continue;
                }
            };
            self.store.put(&entry, seconds)?;
            let message = mail::request_message(&self.register, &entry.email, &entry.fingerprint, &encrypted, now);
            mailer.queue_formatted(spool, &format!("{request}.confirm{index}"), &entry.email, &message)?;
            lines.push(format!(
                "  {}: pending: a confirmation request encrypted to this key was mailed to {}; the address is published once its owner answers it (within 3 days)",
                item.email, item.email
            ));
        }
        Ok(lines)
    }

    /// After a confirmation was applied: its entry is used up, so a replay
    /// of the same response finds nothing.
    pub fn finish(&self, confirmation: &Confirmation) -> Result<(), RegistrarError> {
        match confirmation {
            Confirmation::Publish(entry) => self.store.remove(&entry.email),
            Confirmation::Refused(_) => Ok(()),
        }
    }
}

/// Checks a response against its pending entry.
fn decide(response: &Response, entry: Option<Entry>, now: i64) -> Confirmation {
    let refused =
        |why: String| Confirmation::Refused(format!("confirmation for {}: {why}; nothing changed", response.address));
    if response.from != response.address {
        return refused(format!(
            "it came from {}, not from the address it confirms",
            response.from
        ));
    }
    let Some(entry) = entry else {
        return refused("no confirmation is pending for this address (already used, expired, or never asked)".into());
    };
    if entry.expired(now) {
        return refused(format!(
            "the request expired ({} days after it was sent); submit the key again",
            EXPIRY_SECONDS / 86_400
        ));
    }
    if entry.nonce != response.nonce {
        return refused("the nonce does not match the one mailed to this address".into());
    }
    Confirmation::Publish(Box::new(entry))
}

/// Applies one candidate of a registration under `confirm`: only the
/// addresses already registered to the key are applied (merged); the
/// other addresses of a valid key are added to `to_confirm`, those held
/// by another (unrevoked) key are refused as under `fcfs`. `None`: the
/// key has nothing to apply yet (all its addresses wait). Without
/// `to_confirm` (`policy = "fcfs"`) this is [`request::apply_candidate`].
pub fn apply_candidate<D: KeyDb>(
    store: &mut D,
    candidate: &Candidate,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
    to_confirm: Option<&mut Vec<ToConfirm>>,
) -> Result<Option<(KeyOutcome, Option<CheckedKey>)>, D::Error> {
    let Some(to_confirm) = to_confirm else {
        return request::apply_candidate(store, candidate, policy, now).map(|outcome| Some((outcome, None)));
    };
    let (outcome, new) = split_candidate(store, candidate, policy, now)?;
    to_confirm.extend(new);
    Ok(outcome)
}

/// The log's line for a registration: its tally, and how many new
/// addresses wait for confirmation.
pub fn summary(tally: &Tally, to_confirm: &[ToConfirm]) -> String {
    match to_confirm.len() {
        0 => tally.to_string(),
        waiting => format!("{tally}; {waiting} to confirm"),
    }
}

/// The outcome of applying a key, and the key applied when it is the
/// offered one cut down to the addresses that need no confirmation.
type SplitOutcome = Option<(KeyOutcome, Option<CheckedKey>)>;

/// [`apply_candidate`]'s work: the outcome and the addresses to confirm.
fn split_candidate<D: KeyDb>(
    store: &mut D,
    candidate: &Candidate,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<(SplitOutcome, Vec<ToConfirm>), D::Error> {
    let key = match candidate {
        Candidate::Key(key) => (**key).clone(),
        Candidate::Expired { fingerprint, key } => {
            let registered = store.record(&Query::Fingerprint(fingerprint.clone()))?.is_some();
            match openpgp::check_key((**key).clone(), policy) {
                Ok(checked) if registered => checked,
                _ => {
                    return request::apply_candidate(store, candidate, policy, now)
                        .map(|o| (Some((o, None)), Vec::new()))
                }
            }
        }
        Candidate::Revocation(_) | Candidate::Refused { .. } => {
            return request::apply_candidate(store, candidate, policy, now).map(|o| (Some((o, None)), Vec::new()))
        }
    };
    let registered: Vec<Email> = store
        .record(&Query::Fingerprint(key.fingerprint().clone()))?
        .map(|record| record.users)
        .unwrap_or_default();
    let mut to_confirm = Vec::new();
    if !key.is_revoked() && !key.is_expired(now) {
        for email in key.emails().iter().filter(|email| !registered.contains(email)) {
            if !held_by_other(store, email, key.fingerprint(), policy)? {
                to_confirm.push(ToConfirm {
                    email: email.clone(),
                    key: key.keeping_user_ids(|kept| kept == email).into_owned(),
                });
            }
        }
    }
    let known = key
        .keeping_user_ids(|email| registered.contains(email) || !to_confirm.iter().any(|item| item.email == *email))
        .into_owned();
    if registered.is_empty() && known.emails().is_empty() && !to_confirm.is_empty() {
        return Ok((None, to_confirm));
    }
    let outcome = request::apply_key(store, &known, policy, now)?;
    Ok((Some((outcome, Some(known))), to_confirm))
}

/// Whether another key, not revoked, holds `email`.
fn held_by_other<D: KeyDb>(store: &D, email: &Email, own: &Fingerprint, policy: &KeyPolicy) -> Result<bool, D::Error> {
    let Some(holder) = store.fingerprint_of(email)? else {
        return Ok(false);
    };
    if holder == *own {
        return Ok(false);
    }
    let record = store.record(&Query::Fingerprint(holder))?;
    Ok(record
        .is_some_and(|record| !openpgp::read_stored_key(&record.key_armor, policy).is_ok_and(|key| key.is_revoked())))
}

/// A published confirmation's outcome and the key it applied.
pub type Published = (KeyOutcome, CheckedKey);

/// Publishes a confirmed address: the pending key, cut to the addresses
/// already registered to it and the confirmed one, through the ordinary
/// add path (first come, first served still holds at this moment).
/// Returns the reply's lines and, if the key was applied, its outcome.
pub fn publish<D: KeyDb>(
    store: &mut D,
    confirmation: &Confirmation,
    policy: &KeyPolicy,
    now: DateTime<Utc>,
) -> Result<(Vec<String>, Option<Published>), D::Error> {
    let entry = match confirmation {
        Confirmation::Refused(reason) => return Ok((vec![reason.clone()], None)),
        Confirmation::Publish(entry) => entry,
    };
    let key = match openpgp::read_stored_key(&entry.key_armor, policy) {
        Ok(key) => key,
        Err(err) => {
            let line = format!(
                "confirmation for {}: the pending key no longer reads: {err}",
                entry.email
            );
            return Ok((vec![line], None));
        }
    };
    let registered: Vec<Email> = store
        .record(&Query::Fingerprint(key.fingerprint().clone()))?
        .map(|record| record.users)
        .unwrap_or_default();
    let kept = key
        .keeping_user_ids(|email| *email == entry.email || registered.contains(email))
        .into_owned();
    let outcome = request::apply_key(store, &kept, policy, now)?;
    let mut lines = vec![format!("confirmation for {}: the nonce matches", entry.email)];
    lines.extend(outcome.lines());
    Ok((lines, Some((outcome, kept))))
}
