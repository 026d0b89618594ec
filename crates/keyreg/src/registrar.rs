//! keyreg's work: taking requests from the spool and applying them.
//!
//! One cycle takes up to [`MAX_BATCH`] files, oldest first, and:
//! 1. reads and checks each request without touching the database;
//! 2. takes the write lock, asks keyserv to release the database, opens it
//!    as writer, applies the whole batch, syncs and closes it (one short
//!    write window per batch, not per file);
//! 3. for each request, appends it with its outcome to the transaction log,
//!    queues its reply (and the notices: to the addresses a change or
//!    removal took, to the addresses a web submission registered), and
//!    only then deletes the spool file;
//! 4. sends the queued replies.
//!
//! A crash anywhere loses nothing: the file is processed again, applying
//! it again changes nothing, and a reply already queued is not replaced.
//! A file that is not a mail message, is over the size limit, is not a
//! regular file at all (a symlink, a FIFO, a directory: never followed or
//! opened), or makes the code fail moves to `spool/failed/` with its
//! reason logged; it never blocks the requests behind it.
//!
//! Every request costs a bounded amount: at most `max_keys_per_request`
//! keys of a registration are parsed and checked, and a reply is at most
//! [`ripem_core::reply::MAX_REPLY_BYTES`]. The daemon re-reads its
//! configuration on SIGHUP, keeping the old one if the new one is broken.

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use ripem_core::config::{Config, ConfigError};
use ripem_core::exit::{self, ExitStatus};
use ripem_core::mail::{RequestMail, ReturnAddress};
use ripem_core::pidfile;
use ripem_core::reply::{Mailer, Reply};
use ripem_core::spool::{self, QueueName, Spool, SpoolError, SpoolFile};
use ripem_core::txlog::{LogEntry, TransactionLog};
use ripem_core::types::{Email, Fingerprint};
use ripem_keydb::{KeyStore, RepairReport};
use ripem_openpgp::{KeyPolicy, SignedPart};
use ripem_update::{time_of, Clock, Update};

use crate::confirm::{self, Confirmation, Confirmer, ToConfirm};
use crate::error::RegistrarError;
use crate::import::{ImportProgress, Importer};
use crate::replication::handoff::{Outbound, SettleError};
use crate::replication::{self, ReceivedSummary, Replication};
use crate::request::{self, AddRequest, AddressOutcome, Candidate, KeyOutcome, SignedOutcome, Tally};
use crate::web_notice;

/// At most this many requests share one write window.
pub const MAX_BATCH: usize = 500;
/// A batch stops taking files once they add up to this many bytes (it
/// always takes one), so memory stays bounded whatever the mail.
pub const MAX_BATCH_BYTES: u64 = 64 << 20;

/// One request's result, as logged and reported.
#[derive(Debug, Clone)]
pub struct RequestReport {
    /// The queue.
    pub queue: QueueName,
    /// The spool file name.
    pub file: String,
    /// Where the reply went, or why none did.
    pub reply: ReturnAddress,
    /// Outcome lines.
    pub outcome: Vec<String>,
    /// One line for the operator's log.
    pub summary: String,
}

/// What one cycle did.
#[derive(Debug, Default)]
pub struct CycleSummary {
    /// Per request.
    pub requests: Vec<RequestReport>,
    /// Keys and addresses.
    pub tally: Tally,
    /// Replies sent.
    pub replies_sent: usize,
    /// Replies that could not be sent (they stay queued).
    pub reply_errors: Vec<String>,
    /// Repairs of a damaged database, one line each.
    pub repairs: Vec<String>,
    /// Entries of `spool/outgoing/` that were not queued replies, moved
    /// to `spool/failed/`: one line each.
    pub outgoing_moved_aside: Vec<String>,
    /// Updates from other servers.
    pub received: ReceivedSummary,
}

/// One line on a repair, for the operator's log.
pub fn describe_repair(report: &RepairReport) -> String {
    format!(
        "database rebuilt from {} in {:.1} s: {} keys, {} addresses; the old file is kept as {}",
        report.source,
        report.elapsed.as_secs_f64(),
        report.summary.keys,
        report.summary.addresses,
        report.kept.display()
    )
}

enum Prepared {
    /// A registration: its keys, checked.
    Add { mail: RequestMail, add: AddRequest },
    /// A change or remove request and its signed parts, authenticated
    /// inside the write window.
    Signed { mail: RequestMail, parts: Vec<SignedPart> },
    /// A confirmation response (`policy = "confirm"`), checked against
    /// its pending entry.
    Confirm {
        mail: RequestMail,
        confirmation: Confirmation,
    },
    /// Not a mail message, or one that could not be processed at all.
    Unprocessable(String),
}

/// A spool file, the bytes the log records for it, and what it asks.
type ReadRequest<'a> = (&'a SpoolFile, Vec<u8>, Prepared);

/// What applying one request did.
#[derive(Default)]
struct Applied {
    lines: Vec<String>,
    tally: Tally,
    /// A change or removal: the addresses it took from the signing key.
    notices: SignedOutcome,
    /// A registration: the addresses it newly registered, and to which key
    /// (told by [`web_notice`] when the request came from the web).
    registered: Vec<(Email, Fingerprint)>,
    /// Under `policy = "confirm"`: the new addresses to be mailed a
    /// confirmation request ([`confirm`]).
    to_confirm: Vec<ToConfirm>,
}

/// keyreg: the spool, the database, the log and the mailer.
pub struct Registrar {
    pub(crate) config: Config,
    pub(crate) spool: Spool,
    log: TransactionLog,
    pub(crate) mailer: Mailer,
    pub(crate) policy: KeyPolicy,
    pub(crate) replication: Replication,
    pub(crate) outbound: Outbound,
    confirm: Option<Confirmer>,
}

impl Registrar {
    /// Sets up from the configuration, creating the spool directories.
    pub fn new(config: Config) -> Result<Registrar, RegistrarError> {
        let spool = Spool::new(&config.paths.spool_dir);
        spool.create_dirs()?;
        let mailer = Mailer::from_config(&config.mail, &config.paths)?;
        let policy = KeyPolicy::configured(&config.keyreg);
        let replication = Replication::from_config(&config);
        spool.create_queue_dirs(QueueName::Sync)?;
        let outbound = Outbound::new(&config.paths.state_dir).map_err(|source| RegistrarError::SyncQueue {
            path: config.paths.state_dir.join("sync/queue"),
            source,
        })?;
        let confirm = Confirmer::configured(&config)?;
        Ok(Registrar {
            confirm,
            log: TransactionLog::new(&config.paths.transaction_log),
            config,
            spool,
            mailer,
            policy,
            replication,
            outbound,
        })
    }

    /// The spool this registrar serves.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Opens the database as writer; lookups go on until a window begins.
    fn open_writer(&self) -> Result<KeyStore, RegistrarError> {
        let paths = &self.config.paths;
        Ok(KeyStore::open_write(
            &paths.database,
            &paths.database_lock(),
            self.config.keyreg.writer_timeout,
        )?)
    }

    /// Tells keyserv a window is about to be switched in (SIGUSR1), so its
    /// workers step aside for that instant. A keyserv that can't be told
    /// only makes the switch wait for its batch in hand.
    fn announce_window(&self) {
        let _ = pidfile::signal_running(&self.config.paths.pid_file, Signal::SIGUSR1);
    }

    /// Opens the database as writer with a write window begun, after
    /// settling the updates a crash left half handed to keysync.
    pub(crate) fn open_for_writing(&self) -> Result<KeyStore, RegistrarError> {
        let mut store = self.open_settled()?;
        store.begin_window()?;
        Ok(store)
    }

    /// Opens the database as writer, no window yet, and settles the
    /// outbound queue (see [`Outbound::settle`]).
    fn open_settled(&self) -> Result<KeyStore, RegistrarError> {
        let store = self.open_writer()?;
        self.outbound.settle(&store).map_err(|err| match err {
            SettleError::Store(err) => RegistrarError::Store(err),
            SettleError::Io(source) => self.outbound.error(source),
        })?;
        Ok(store)
    }

    /// Switches the window in and hands its updates to keysync
    /// ([`Outbound::switch_in`], telling keyserv first).
    pub(crate) fn end_window_and_hand_off(&self, store: &mut KeyStore, clock: &Clock) -> Result<(), RegistrarError> {
        self.outbound.switch_in(store, clock, &|| self.announce_window())
    }

    /// Rebuilds the database (see [`KeyStore::repair`]): `damaged` when
    /// damage was found, else a rebuild asked for by hand.
    pub fn repair(&self, damaged: bool) -> Result<RepairReport, RegistrarError> {
        let paths = &self.config.paths;
        Ok(KeyStore::repair(
            &paths.database,
            &paths.database_lock(),
            self.config.keyreg.writer_timeout,
            damaged,
        )?)
    }

    /// Opens the database as writer once, so that what a crash left is
    /// settled and damage is repaired now, not at the first request.
    pub fn check_database(&self) -> Result<Option<RepairReport>, RegistrarError> {
        match self.open_writer() {
            Ok(_) => Ok(None),
            Err(RegistrarError::Store(err)) if err.is_damage() => self.repair(true).map(Some),
            Err(err) => Err(err),
        }
    }

    /// Runs cycles until the spool is empty; returns what was done. With
    /// nothing spooled, the database is still opened once, so what a crash
    /// left is settled and damage repaired without waiting for a request.
    pub fn process_pending(&self) -> Result<CycleSummary, RegistrarError> {
        let mut total = CycleSummary {
            received: self.process_received()?,
            ..CycleSummary::default()
        };
        let mut idle = true;
        loop {
            let mut bytes = 0u64;
            let batch: Vec<SpoolFile> = self
                .spool
                .pending_all()?
                .into_iter()
                .take(MAX_BATCH)
                .take_while(|file| {
                    let first = bytes == 0;
                    bytes = bytes.saturating_add(file.size.max(1));
                    first || bytes <= MAX_BATCH_BYTES
                })
                .collect();
            if batch.is_empty() {
                if idle {
                    let repair = self.check_database()?;
                    total.repairs.extend(repair.iter().map(describe_repair));
                }
                break;
            }
            idle = false;
            let cycle = match self.process_batch(&batch) {
                // Damage found on the way: repair once, then the same batch
                // again (its files are all still spooled).
                Err(RegistrarError::Store(err)) if err.is_damage() && total.repairs.is_empty() => {
                    let report = self.repair(true)?;
                    total.repairs.push(format!("{err}; {}", describe_repair(&report)));
                    continue;
                }
                cycle => cycle?,
            };
            total.requests.extend(cycle.requests);
            total.tally += cycle.tally;
        }
        let flushed = self.mailer.flush(&self.spool);
        total.replies_sent = flushed.sent;
        total.reply_errors = flushed.errors.iter().map(ToString::to_string).collect();
        total.outgoing_moved_aside = flushed.moved_aside;
        Ok(total)
    }

    /// Reads and checks one request, outside the write window.
    fn prepare(&self, file: &SpoolFile, raw: &[u8]) -> Prepared {
        let work = || match RequestMail::parse(raw) {
            Err(err) => Prepared::Unprocessable(err.to_string()),
            Ok(mut mail) if file.queue == QueueName::Add && self.confirm.is_some() => {
                let max_keys = self.config.keyreg.max_keys_per_request;
                match self
                    .confirm
                    .as_ref()
                    .map(|c| c.prepare(raw, &mut mail, &self.policy, max_keys))
                {
                    Some(Ok(confirm::Read::Response(confirmation))) => Prepared::Confirm { mail, confirmation },
                    Some(Ok(confirm::Read::Registration(add))) => Prepared::Add { mail, add },
                    Some(Err(err)) => Prepared::Unprocessable(err.to_string()),
                    None => Prepared::Unprocessable("internal error: no confirmation policy".into()),
                }
            }
            Ok(mut mail) if file.queue == QueueName::Add => {
                let max_keys = self.config.keyreg.max_keys_per_request;
                let add = request::prepare_add(&mail.texts, &mail.binary_keys, &self.policy, Utc::now(), max_keys);
                // The keys are read: the decoded bodies (up to the whole
                // mail again) need not wait for the rest of the batch.
                mail.texts = Vec::new();
                mail.binary_keys = Vec::new();
                Prepared::Add { mail, add }
            }
            Ok(mut mail) => {
                let parts = request::signed_parts(&mut mail);
                mail.texts = Vec::new();
                mail.binary_keys = Vec::new();
                Prepared::Signed { mail, parts }
            }
        };
        catch_unwind(AssertUnwindSafe(work))
            .unwrap_or_else(|_| Prepared::Unprocessable("internal error while reading the request".into()))
    }

    /// Applies one prepared request inside the write window, each key or
    /// signed request at a new time of the clock, and records (and stages
    /// for keysync) the update of each change it made.
    fn apply(
        &self,
        queue: QueueName,
        item: &Prepared,
        store: &mut KeyStore,
        clock: &mut Clock,
        now: DateTime<Utc>,
    ) -> Result<Applied, RegistrarError> {
        if self.replication.replica && !matches!(item, Prepared::Unprocessable(_)) {
            return Ok(Applied {
                lines: vec![format!(
                    "refused: this server ({}) is a lookup-only replica and accepts no requests; send yours to a server that takes mail",
                    self.replication.server_id
                )],
                ..Applied::default()
            });
        }
        let time = clock.tick(now);
        match item {
            Prepared::Add { add, mail } => self.apply_add(add, mail, store, clock, time),
            Prepared::Signed { parts, .. } => {
                let max_age = self.replication.max_request_age;
                let mut notices = if queue == QueueName::Change {
                    request::apply_change(store, parts, &self.policy, time_of(time), max_age)?
                } else {
                    request::apply_remove(store, parts, &self.policy, time_of(time), max_age)?
                };
                let update = self.replication.signed_update(store, &notices, time, &self.policy)?;
                self.stage(update.as_slice())?;
                Ok(Applied {
                    lines: std::mem::take(&mut notices.lines),
                    notices,
                    ..Applied::default()
                })
            }
            Prepared::Confirm { confirmation, .. } => {
                let (lines, published) = confirm::publish(store, confirmation, &self.policy, time_of(time))?;
                let mut tally = Tally::default();
                if let Some((outcome, key)) = &published {
                    tally.count(outcome);
                    let update = self
                        .replication
                        .key_update(store, Some(key), outcome, time, &self.policy)?;
                    self.stage(update.as_slice())?;
                }
                Ok(Applied {
                    lines,
                    tally,
                    ..Applied::default()
                })
            }
            Prepared::Unprocessable(_) => Ok(Applied::default()),
        }
    }

    /// Applies a registration's keys, the first at `time`, each later one
    /// at the clock's next time.
    fn apply_add(
        &self,
        add: &AddRequest,
        mail: &RequestMail,
        store: &mut KeyStore,
        clock: &mut Clock,
        mut time: u64,
    ) -> Result<Applied, RegistrarError> {
        let mut applied = Applied::default();
        let mut updates = Vec::new();
        for (index, candidate) in add.candidates.iter().enumerate() {
            if index > 0 {
                time = clock.tick(time_of(time));
            }
            let confirming = self.confirm.is_some().then_some(&mut applied.to_confirm);
            let Some((outcome, cut)) =
                confirm::apply_candidate(store, candidate, &self.policy, time_of(time), confirming)?
            else {
                continue;
            };
            applied.tally.count(&outcome);
            let offered = cut.as_ref().or(match candidate {
                Candidate::Key(key) => Some(&**key),
                _ => None,
            });
            if let Some(update) = self
                .replication
                .key_update(store, offered, &outcome, time, &self.policy)?
            {
                if let (ReturnAddress::Reply(to), false) = (&mail.return_address, update.fields().claims.is_empty()) {
                    replication::log::set_sender(store, update.id(), to.as_str())?;
                }
                updates.push(update);
            }
            if let KeyOutcome::Applied {
                fingerprint, addresses, ..
            } = &outcome
            {
                applied.registered.extend(
                    addresses
                        .iter()
                        .filter(|(_, happened)| {
                            matches!(happened, AddressOutcome::Registered | AddressOutcome::TakenOver(_))
                        })
                        .map(|(email, _)| (email.clone(), fingerprint.clone())),
                );
            }
            applied.lines.extend(outcome.lines());
        }
        applied.lines.extend(add.not_considered_line());
        self.stage(&updates)?;
        Ok(applied)
    }

    /// Stages updates for keysync (see [`Outbound`]).
    fn stage(&self, updates: &[Update]) -> Result<(), RegistrarError> {
        for update in updates {
            self.outbound
                .stage(update)
                .map_err(|source| self.outbound.error(source))?;
        }
        Ok(())
    }

    /// Reads and prepares each file of a batch: step one of a cycle. A file
    /// that vanished since it was listed is left out; one that can't be
    /// read (not a regular file, over the limit, unreadable) is prepared as
    /// unprocessable, with what the log records in place of its bytes.
    fn read_batch<'a>(&self, batch: &'a [SpoolFile]) -> Result<Vec<ReadRequest<'a>>, RegistrarError> {
        let limit = self.config.keyreg.max_message_bytes;
        let mut prepared = Vec::with_capacity(batch.len());
        for file in batch {
            let (raw, item) = match spool::read_limited(&file.path, limit) {
                Ok(raw) => {
                    let item = self.prepare(file, &raw);
                    (raw, item)
                }
                Err(SpoolError::TooLarge { limit }) => (
                    format!("(request larger than {limit} bytes, not read)").into_bytes(),
                    Prepared::Unprocessable(format!("larger than the limit of {limit} bytes")),
                ),
                Err(SpoolError::NotRegular { kind, .. }) => (
                    format!("(not a regular file but {kind}; not opened)").into_bytes(),
                    Prepared::Unprocessable(format!("not a regular file but {kind}; not opened")),
                ),
                Err(SpoolError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
                Err(SpoolError::Io { source, .. }) if !is_transient(&source) => (
                    format!("(unreadable: {source})").into_bytes(),
                    Prepared::Unprocessable(format!("unreadable: {source}")),
                ),
                Err(err) => return Err(err.into()),
            };
            prepared.push((file, raw, item));
        }
        Ok(prepared)
    }

    fn process_batch(&self, batch: &[SpoolFile]) -> Result<CycleSummary, RegistrarError> {
        let mut prepared = self.read_batch(batch)?;
        let now = Utc::now();
        let needs_store = prepared.iter().any(|(_, _, item)| match item {
            Prepared::Add { add, .. } => add.candidates.iter().any(|c| !matches!(c, Candidate::Refused { .. })),
            Prepared::Signed { .. } | Prepared::Confirm { .. } => true,
            Prepared::Unprocessable(_) => false,
        });
        let mut store = if needs_store {
            Some(self.open_for_writing()?)
        } else {
            None
        };
        let mut clock = match &store {
            Some(store) => replication::log::clock(store)?,
            None => Clock::default(),
        };
        let mut results = Vec::with_capacity(prepared.len());
        for (file, _, item) in &mut prepared {
            let applied = match store.as_mut() {
                Some(store) => match catch_unwind(AssertUnwindSafe(|| {
                    self.apply(file.queue, item, store, &mut clock, now)
                })) {
                    Ok(applied) => applied?,
                    Err(_) => {
                        *item = Prepared::Unprocessable("internal error while applying the request".into());
                        Applied::default()
                    }
                },
                None => without_store(item),
            };
            results.push(applied);
        }
        if let Some(store) = store.as_mut() {
            self.end_window_and_hand_off(store, &clock)?;
        }
        drop(store);

        let mut summary = CycleSummary::default();
        for ((file, raw, item), applied) in prepared.into_iter().zip(results) {
            let report = self.commit(file, &raw, item, applied, &mut summary.tally)?;
            summary.requests.push(report);
        }
        Ok(summary)
    }

    /// Logs one applied request, queues its reply and deletes its spool
    /// file (or moves it to `failed/`): the last step of a cycle.
    fn commit(
        &self,
        file: &SpoolFile,
        raw: &[u8],
        item: Prepared,
        applied: Applied,
        tally: &mut Tally,
    ) -> Result<RequestReport, RegistrarError> {
        let (mail, queue, confirmation) = match item {
            Prepared::Unprocessable(reason) => {
                let report = RequestReport {
                    queue: file.queue,
                    file: file.name(),
                    reply: ReturnAddress::NoReply("not processed".into()),
                    outcome: vec![format!("moved to {}: {reason}", self.spool.failed_dir().display())],
                    summary: format!("{reason}; moved to {}", self.spool.failed_dir().display()),
                };
                self.log_request(&report, raw)?;
                self.spool.quarantine(file, &reason)?;
                return Ok(report);
            }
            Prepared::Add { mail, .. } | Prepared::Signed { mail, .. } => (mail, file.queue, None),
            Prepared::Confirm { mail, confirmation } => (mail, file.queue, Some(confirmation)),
        };
        *tally += applied.tally;
        let mut outcome = applied.lines;
        if let Some(confirmer) = &self.confirm {
            outcome.extend(confirmer.request_all(&self.mailer, &self.spool, &file.name(), &applied.to_confirm)?);
        }
        let no_keys = outcome.is_empty();
        if no_keys {
            outcome.push("no public key found in the message".into());
        }
        let report = RequestReport {
            queue,
            file: file.name(),
            reply: mail.return_address.clone(),
            summary: if queue == QueueName::Add && !no_keys {
                confirm::summary(&applied.tally, &applied.to_confirm)
            } else {
                outcome.join(" ").split_whitespace().collect::<Vec<_>>().join(" ")
            },
            outcome,
        };
        self.log_request(&report, raw)?;
        if let ReturnAddress::Reply(to) = &mail.return_address {
            let reply = Reply {
                to: to.clone(),
                subject: reply_subject(&mail.subject),
                in_reply_to: mail.message_id.clone(),
                body: self.reply_body(&report, no_keys),
                attachment: None,
            };
            self.mailer.queue(&self.spool, &file.name(), &reply)?;
        }
        self.queue_notices(file, &mail.return_address, &applied.notices)?;
        if let (Some(confirmer), Some(confirmation)) = (&self.confirm, &confirmation) {
            confirmer.finish(confirmation)?;
        }
        if let Some(via) = &mail.web_submission {
            let notices: Vec<web_notice::Notice<'_>> = applied
                .registered
                .iter()
                .filter(|(email, _)| !matches!(&mail.return_address, ReturnAddress::Reply(to) if to == email))
                .map(|(email, fingerprint)| web_notice::Notice { email, fingerprint })
                .collect();
            let paths = &self.config.paths;
            let register = &self.config.addresses.register;
            web_notice::queue_notices(
                &self.mailer,
                &self.spool,
                &paths.state_dir,
                register,
                file,
                via,
                &notices,
                Utc::now(),
            )?;
        }
        self.spool.remove(file)?;
        Ok(report)
    }

    /// Tells every address an applied change or removal took from its key
    /// (but the sender, who has the reply), each once: a forged or replayed
    /// request can't pass unnoticed. Queued under names derived from the
    /// request's, so a request processed again queues nothing twice.
    fn queue_notices(
        &self,
        file: &SpoolFile,
        sender: &ReturnAddress,
        outcome: &SignedOutcome,
    ) -> Result<(), RegistrarError> {
        let Some(signer) = &outcome.signer else {
            return Ok(());
        };
        let what = match file.queue {
            QueueName::Change => "key change",
            _ => "key removal",
        };
        let from = match sender {
            ReturnAddress::Reply(to) => to.to_string(),
            ReturnAddress::NoReply(_) => "a sender who asked for no reply".to_string(),
        };
        for (index, (email, happened)) in outcome.notify.iter().enumerate() {
            if matches!(sender, ReturnAddress::Reply(to) if to == email) {
                continue;
            }
            let body = format!(
                "This is the RIPEM key server at {}.\n\nA {what} request signed by key {signer} was applied, sent by {from}:\n\n  {email}: {happened}\n\nIf you asked for this, there is nothing to do. If you did not, the key\nthat signed it is in someone else's hands: register a new key for your\naddress at {} (revoke the old one if you still can).\n",
                self.mailer.from_address(),
                self.config.addresses.register
            );
            let notice = Reply {
                to: email.clone(),
                subject: format!("The key registered for {email} changed"),
                in_reply_to: None,
                body,
                attachment: None,
            };
            self.mailer
                .queue(&self.spool, &format!("{}.notice{index}", file.name()), &notice)?;
        }
        Ok(())
    }

    fn log_request(&self, report: &RequestReport, raw: &[u8]) -> Result<(), RegistrarError> {
        let reply_to = match &report.reply {
            ReturnAddress::Reply(email) => email.to_string(),
            ReturnAddress::NoReply(reason) => format!("(no reply: {reason})"),
        };
        self.log
            .append(&LogEntry {
                time: Utc::now(),
                queue: report.queue.as_str(),
                source: &report.file,
                reply_to: Some(&reply_to),
                outcome: &report.outcome,
                request: raw,
            })
            .map_err(|source| RegistrarError::Log {
                path: self.log.path().to_path_buf(),
                source,
            })
    }

    fn reply_body(&self, report: &RequestReport, no_keys: bool) -> String {
        let mut body = String::new();
        let _ = writeln!(
            body,
            "This is the RIPEM key server at {}.\n",
            self.mailer.from_address()
        );
        let what = match report.queue {
            QueueName::Add => "registration request",
            QueueName::Change => "key change request",
            QueueName::Remove => "key removal request",
            QueueName::Sync => "update from a peer",
        };
        let _ = writeln!(body, "Your {what} has been processed:\n");
        for line in &report.outcome {
            let _ = writeln!(body, "  {line}");
        }
        if no_keys && report.queue == QueueName::Add {
            let _ = writeln!(
                body,
                "\nTo register, send your public key as an ASCII-armored block, for\nexample the output of `gpg --armor --export you@example.org`, to\n{}.",
                self.config.addresses.register
            );
        }
        let _ = writeln!(
            body,
            "\nAnyone can now look a registered key up over UDP port 1611, for\nexample with `keylookup you@example.org | gpg --import`.\n\nTo replace your key, send the new key signed with the old one to\n{}.\nTo remove it, send a message starting with RemoveKey, signed with\nthe key, to {}.",
            self.config.addresses.change, self.config.addresses.remove
        );
        body
    }

    /// Loads armored keyrings, binary keyrings or flat files written by
    /// db2flat straight into the database, with the same checks and the
    /// same first-come-first-served rule, without replies; streaming, on
    /// every core, in short write windows (see [`crate::import`]).
    pub fn import(&self, files: &[PathBuf], progress: &dyn Fn(ImportProgress)) -> Result<Tally, RegistrarError> {
        if self.replication.replica {
            return Err(RegistrarError::Replica(self.replication.server_id.clone()));
        }
        Importer {
            policy: &self.policy,
            log: &self.log,
            open: &|| self.open_settled(),
            announce: &|| self.announce_window(),
            replication: &self.replication,
            outbound: &self.outbound,
        }
        .import(files, progress)
    }
}

/// Why the daemon stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The spool directories could not be watched.
    #[error("watching {path}: {source}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The watcher's error.
        source: notify::Error,
    },
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(nix::Error),
}

impl ExitStatus for DaemonError {
    fn exit_code(&self) -> u8 {
        exit::OSERR
    }
}

/// What the daemon tells its caller, for the operator's log.
#[derive(Debug)]
pub enum DaemonEvent {
    /// A cycle ran (or failed; its files stay spooled and are retried).
    Cycle(Result<CycleSummary, RegistrarError>),
    /// SIGHUP: the configuration was re-read and is now in use.
    Reloaded(Option<PathBuf>),
    /// SIGHUP, but the configuration could not be used; the old one stays.
    ReloadFailed(String),
}

impl Registrar {
    /// Runs until SIGTERM/SIGINT: a cycle at start (files already waiting
    /// are picked up), then one whenever a file is renamed into a queue,
    /// and one every `rescan_interval` anyway, so a missed event never
    /// strands a request. A failed cycle (say the database stayed busy) is
    /// reported and retried on the next rescan; its files stay spooled.
    /// On SIGHUP the configuration is read again with `reload` and the
    /// daemon goes on with it (watching the spool it names); if it does
    /// not load, or its mail settings are unusable, the old one is kept.
    pub fn run_daemon(
        &mut self,
        reload: &dyn Fn() -> Result<Config, ConfigError>,
        report: &dyn Fn(DaemonEvent),
    ) -> Result<(), DaemonError> {
        ripem_core::signals::install().map_err(DaemonError::Signals)?;
        while !ripem_core::signals::terminate_requested() {
            self.watch_until_reload(report)?;
            if ripem_core::signals::terminate_requested() {
                break;
            }
            let loaded = reload()
                .map_err(|err| err.to_string())
                .and_then(|config| Registrar::new(config).map_err(|err| err.to_string()));
            match loaded {
                Ok(registrar) => {
                    *self = registrar;
                    report(DaemonEvent::Reloaded(self.config.source.clone()));
                }
                Err(reason) => report(DaemonEvent::ReloadFailed(reason)),
            }
        }
        Ok(())
    }

    /// The daemon's loop with this configuration, until SIGTERM or SIGHUP.
    fn watch_until_reload(&self, report: &dyn Fn(DaemonEvent)) -> Result<(), DaemonError> {
        use notify::{RecursiveMode, Watcher};

        let (events, arrivals) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|event| !event.kind.is_access() && !event.kind.is_remove()) {
                let _ = events.send(());
            }
        })
        .map_err(|source| DaemonError::Watch {
            path: self.config.paths.spool_dir.clone(),
            source,
        })?;
        let received = self.config.paths.spool_dir.join("sync").join("new");
        for dir in QueueName::ALL
            .map(|queue| self.spool.new_dir(queue))
            .into_iter()
            .chain([received])
        {
            watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .map_err(|source| DaemonError::Watch { path: dir, source })?;
        }
        let tick = Duration::from_millis(200);
        let mut since_scan = Duration::MAX;
        while !ripem_core::signals::terminate_requested() {
            if ripem_core::signals::take_reload() {
                return Ok(());
            }
            let woken = arrivals.recv_timeout(tick).is_ok();
            since_scan = since_scan.saturating_add(tick);
            // A rescan with nothing spooled also repairs damage a reader
            // (keyserv, db2flat) found while no request came.
            if woken || since_scan >= self.config.keyreg.rescan_interval {
                while arrivals.try_recv().is_ok() {}
                since_scan = Duration::ZERO;
                report(DaemonEvent::Cycle(self.process_pending()));
            }
        }
        Ok(())
    }
}

/// What a request comes to when the batch needed no database: a
/// registration whose keys were all refused before the write window
/// still hears why, key by key.
fn without_store(item: &Prepared) -> Applied {
    let mut tally = Tally::default();
    let lines = match item {
        Prepared::Add { add, .. } => {
            let mut lines = Vec::new();
            for candidate in &add.candidates {
                if let Candidate::Refused { key, reason } = candidate {
                    let outcome = request::KeyOutcome::Refused {
                        key: key.clone(),
                        reason: reason.clone(),
                    };
                    tally.count(&outcome);
                    lines.extend(outcome.lines());
                }
            }
            lines.extend(add.not_considered_line());
            lines
        }
        Prepared::Signed { .. } | Prepared::Confirm { .. } => vec!["refused: the database is not open".into()],
        Prepared::Unprocessable(_) => Vec::new(),
    };
    Applied {
        lines,
        tally,
        ..Applied::default()
    }
}

/// An I/O error that may pass by itself (out of file descriptors or
/// memory, interrupted, the disk failing): the cycle is retried rather
/// than the file quarantined. Anything else about one file (say it is
/// not readable by keyreg) moves that file aside.
fn is_transient(err: &std::io::Error) -> bool {
    use nix::libc;
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EINTR | libc::EAGAIN | libc::EIO)
    )
}

fn reply_subject(subject: &str) -> String {
    let subject = subject.trim();
    if subject.is_empty() {
        "Re: your key server request".into()
    } else if subject.to_ascii_lowercase().starts_with("re:") {
        subject.chars().take(200).collect()
    } else {
        format!("Re: {}", subject.chars().take(200).collect::<String>())
    }
}
