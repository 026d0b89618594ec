//! Reconciliation inside a KX conversation (SPEC-sync §4): the two sides
//! compare the summaries of their stores' ids (`ripem_reconcile`, whose
//! module doc argues the design and its cost) in `RECON` messages, then
//! each fetches the ids it lacks with `GETID`.
//!
//! Who: the side that dialled opens a session once it has the peer's
//! greeting, and again every `reconcile_interval_s`; the other answers.
//! Both learn both differences, so one session repairs both stores.
//!
//! Wire: `RECON` data is `BEGIN` (a new session) or `NEXT`, then the
//! initiator's message; or the tag of the `RECON` it answers, then the
//! responder's message (the message's `\n` lines as data lines; none
//! starts with `.`). `GETID` carries 1 to [`GET_BATCH`] ids, each answered
//! with an `UPDATE` (the GETID's tag, `<seq> <fingerprint> <id>`, text)
//! that is checked like any other; one `GETID` is outstanding at a time.
//!
//! Bookkeeping: `LIST` waits until the connection's first session is over
//! and what it found missing is stored. Then the peer's position is set
//! to its newest sequence number as known when the session began (H):
//! every update it had numbered up to H was in its summary then, so it is
//! now in our store or was refused. That is how a server whose
//! `sync/peers.state` was lost, restored from an old copy or never made
//! recovers without listing everything, and how a peer whose numbers went
//! back (restored from a backup) is followed again. Nothing of a session
//! is saved: one cut short (connection lost, process killed) is run again
//! on the next connection, and an id fetched twice is stored once.
//!
//! Bounds: a reconciliation message that breaks the session's rules or
//! limits, a `RECON` out of turn, a second `BEGIN` while one runs, a
//! `GETID` of too many or malformed ids, an `UPDATE` of an id not asked
//! for: `ERROR` and the connection closes. What one session may find is
//! bounded by [`Limits::max_differences`]. A `max_message_bytes` under
//! about 20 KiB cannot carry a whole answer to a summary, so reconciliation
//! is off there (and sequence numbers alone are used).

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ripem_reconcile::{Initiator, Limits, Message as ReconMessage, Responder};

use super::{parse_entry, Session, SessionError, GET_BATCH, MAX_PENDING};
use crate::hub::ReconRecord;
use crate::update::is_id;
use crate::wire::{self, Command, Message};

enum Role {
    Initiator(Initiator),
    Responder(Responder),
}

/// A session under way.
struct Running {
    role: Role,
    /// Our `RECON` awaiting its answer (initiator only).
    tag: Option<String>,
    /// The peer's newest sequence number known when it began.
    high: u64,
    started: Instant,
    bytes: u64,
}

/// A session whose differences are known; what we lack is being fetched.
struct Repair {
    high: u64,
    started: Instant,
    bytes: u64,
    lacked: u64,
    they_lacked: u64,
}

/// The connection's reconciliation state.
pub(super) struct Recon {
    /// Off when `max_message_bytes` is below what one answer may need.
    enabled: bool,
    dialled: bool,
    limits: Limits,
    opened: bool,
    running: Option<Running>,
    repair: Option<Repair>,
    /// Ids to fetch with `GETID`: a session's findings, and unseen ids
    /// announced under numbers already counted.
    wanted: BTreeSet<String>,
    /// The outstanding `GETID`: its tag and the ids not yet answered.
    get: Option<(String, BTreeSet<String>)>,
    hold_list: bool,
}

impl Recon {
    /// `dialled`: we opened the connection, so we open the sessions.
    /// `max_message_bytes`: KX's bound, which a reconciliation message
    /// must fit in with its framing (a CR per line, the first data line).
    pub(super) fn new(dialled: bool, max_message_bytes: u64) -> Recon {
        let room = max_message_bytes - max_message_bytes / 16 - 256.min(max_message_bytes / 2);
        let limits = Limits {
            max_message_bytes: usize::try_from(room).unwrap_or(usize::MAX),
            ..Limits::default()
        };
        let enabled = limits.raised() == limits;
        Recon {
            enabled,
            dialled,
            limits,
            opened: false,
            running: None,
            repair: None,
            wanted: BTreeSet::new(),
            get: None,
            hold_list: enabled,
        }
    }

    /// Whether `LIST` must wait for the first session.
    pub(super) fn holds_list(&self) -> bool {
        self.hold_list
    }

    /// Asks for `id` with a coming `GETID`; false when too many wait.
    pub(super) fn want(&mut self, id: String) -> bool {
        if self.get.as_ref().is_some_and(|(_, ids)| ids.contains(&id)) {
            return true;
        }
        if self.wanted.len() >= MAX_PENDING {
            return false;
        }
        self.wanted.insert(id);
        true
    }

    /// Whether `tag` is one of our outstanding reconciliation requests.
    pub(super) fn asked(&self, tag: &str) -> bool {
        self.get.as_ref().is_some_and(|(ours, _)| ours == tag)
            || self.running.as_ref().and_then(|r| r.tag.as_deref()) == Some(tag)
    }

    fn count(&mut self, bytes: u64) {
        if let Some(running) = &mut self.running {
            running.bytes += bytes;
        } else if let Some(repair) = &mut self.repair {
            repair.bytes += bytes;
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A reconciliation message's lines as KX data lines, after `first`.
fn data_lines(first: &str, message: ReconMessage) -> Vec<String> {
    let mut lines = vec![first.to_string()];
    lines.extend(message.as_str().split_terminator('\n').map(str::to_string));
    lines
}

/// KX data lines back into a reconciliation message.
fn message_of(lines: &[String]) -> ReconMessage {
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    ReconMessage::from_text(text)
}

impl Session {
    /// Opens a session if we are the side that opens them and none runs.
    fn recon_open(&mut self) -> Result<(), SessionError> {
        if !self.recon.enabled || !self.recon.dialled || self.recon.running.is_some() || self.recon.repair.is_some() {
            return Ok(());
        }
        self.recon.opened = true;
        let mut initiator = Initiator::new(self.recon.limits);
        let first = self.hub.with_summary(|summary| initiator.next_message(summary));
        let first = match first {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(()),
            Err(err) => return Err(self.out.refuse("????", 500, format!("reconciliation: {err}"))),
        };
        let lines = data_lines("BEGIN", first);
        let bytes = wire::encoded_len("????", Command::Recon, &lines);
        let tag = self.out.send(Command::Recon, &lines)?;
        self.recon.running = Some(Running {
            role: Role::Initiator(initiator),
            tag: Some(tag),
            high: self.known_high,
            started: Instant::now(),
            bytes,
        });
        Ok(())
    }

    /// The periodic session (`reconcile_interval_s`).
    pub(super) fn recon_due(&mut self) -> Result<(), SessionError> {
        if self.recon.opened {
            self.recon_open()?;
        }
        Ok(())
    }

    pub(super) fn on_recon(&mut self, message: &Message) -> Result<(), SessionError> {
        let Some((first, lines)) = message.lines.split_first() else {
            return Err(self
                .out
                .refuse(&message.tag, 501, "RECON without BEGIN, NEXT or a tag".into()));
        };
        if !self.recon.enabled {
            return Err(self.out.refuse(
                &message.tag,
                500,
                "reconciliation is off here (max_message_bytes too small)".into(),
            ));
        }
        if first == "BEGIN" {
            if self.recon.running.is_some() || self.recon.repair.is_some() {
                return Err(self
                    .out
                    .refuse(&message.tag, 551, "RECON BEGIN while a reconciliation runs".into()));
            }
            self.recon.running = Some(Running {
                role: Role::Responder(Responder::new(self.recon.limits)),
                tag: None,
                high: self.known_high,
                started: Instant::now(),
                bytes: 0,
            });
        }
        self.recon.count(message.wire_len());
        let text = message_of(lines);
        if first == "BEGIN" || first == "NEXT" {
            self.recon_answer(&message.tag, &text)
        } else {
            self.recon_reply(&message.tag, first, &text)
        }
    }

    /// As the responder: answers one of the initiator's messages.
    fn recon_answer(&mut self, tag: &str, text: &ReconMessage) -> Result<(), SessionError> {
        let hub = &self.hub;
        let answer = match &mut self.recon.running {
            Some(Running {
                role: Role::Responder(responder),
                ..
            }) => hub
                .with_summary(|summary| responder.answer(summary, text))
                .map(|reply| (reply, responder.is_over())),
            _ => return Err(self.out.refuse(tag, 551, "RECON NEXT outside a reconciliation".into())),
        };
        let (reply, over) = answer.map_err(|err| self.out.refuse(tag, 501, format!("reconciliation: {err}")))?;
        let lines = data_lines(tag, reply);
        self.recon.count(wire::encoded_len(tag, Command::Recon, &lines));
        self.out.send(Command::Recon, &lines)?;
        if over {
            self.recon_found();
        }
        Ok(())
    }

    /// As the initiator: reads the answer to our last message, sends the next.
    fn recon_reply(&mut self, tag: &str, answers: &str, text: &ReconMessage) -> Result<(), SessionError> {
        let hub = &self.hub;
        let next = match &mut self.recon.running {
            Some(Running {
                role: Role::Initiator(initiator),
                tag: ours,
                ..
            }) if ours.as_deref() == Some(answers) => {
                *ours = None;
                hub.with_summary(|summary| {
                    initiator.receive(summary, text)?;
                    initiator.next_message(summary)
                })
            }
            _ => {
                return Err(self
                    .out
                    .refuse(tag, 551, format!("RECON answering no RECON of ours ({answers:?})")))
            }
        };
        let next = next.map_err(|err| self.out.refuse(tag, 501, format!("reconciliation: {err}")))?;
        let Some(message) = next else {
            self.recon_found();
            return Ok(());
        };
        let lines = data_lines("NEXT", message);
        self.recon.count(wire::encoded_len(tag, Command::Recon, &lines));
        let sent = self.out.send(Command::Recon, &lines)?;
        if let Some(running) = &mut self.recon.running {
            running.tag = Some(sent);
        }
        Ok(())
    }

    /// The session is over: what we lack is to be fetched.
    fn recon_found(&mut self) {
        let Some(running) = self.recon.running.take() else {
            return;
        };
        let (lacks, other_lacks) = match running.role {
            Role::Initiator(initiator) => initiator.into_differences(),
            Role::Responder(responder) => responder.into_differences(),
        };
        let lacked = lacks.iter().map(ToString::to_string).filter(|id| !self.hub.has(id));
        self.recon.wanted.extend(lacked);
        self.recon.repair = Some(Repair {
            high: running.high,
            started: running.started,
            bytes: running.bytes,
            lacked: lacks.len() as u64,
            they_lacked: other_lacks.len() as u64,
        });
    }

    /// After each message: opens the first session once the peer has
    /// greeted, asks for the next batch of ids, or ends the repair.
    pub(super) fn recon_request(&mut self, command: Command) -> Result<(), SessionError> {
        if command == Command::Ihave && !self.recon.opened {
            self.recon_open()?;
        }
        if self.recon.get.is_some() {
            return Ok(());
        }
        let mut batch = BTreeSet::new();
        while batch.len() < GET_BATCH {
            let Some(id) = self.recon.wanted.pop_first() else { break };
            if !self.hub.has(&id) {
                batch.insert(id);
            }
        }
        if !batch.is_empty() {
            let lines: Vec<&String> = batch.iter().collect();
            self.recon.count(wire::encoded_len("????", Command::GetId, &lines));
            let tag = self.out.send(Command::GetId, &lines)?;
            self.recon.get = Some((tag, batch));
        } else if let Some(repair) = self.recon.repair.take() {
            self.recon_complete(repair);
        }
        Ok(())
    }

    /// What we lacked is stored: the peer's position moves to H.
    fn recon_complete(&mut self, repair: Repair) {
        self.recon.hold_list = false;
        let high = repair.high;
        self.pending.retain(|seq, _| *seq > high);
        if self.fetched != high {
            self.fetched = high;
            self.hub.set_fetched(&self.peer, high);
        }
        self.known_high = self.pending.keys().next_back().copied().unwrap_or(0).max(high);
        self.listed_at = None;
        let record = ReconRecord {
            at: unix_now(),
            lacked: repair.lacked,
            they_lacked: repair.they_lacked,
            bytes: repair.bytes,
            millis: repair.started.elapsed().as_millis() as u64,
        };
        crate::log(&format!(
            "reconciled with {}: {} missing here, {} missing there, {} bytes, {:.3} s",
            self.peer,
            record.lacked,
            record.they_lacked,
            record.bytes,
            record.millis as f64 / 1000.0
        ));
        self.hub.record_recon(&self.peer, record);
    }

    /// The peer asks for updates by id.
    pub(super) fn on_getid(&mut self, message: &Message) -> Result<(), SessionError> {
        if message.lines.is_empty() || message.lines.len() > GET_BATCH {
            return Err(self
                .out
                .refuse(&message.tag, 501, format!("GETID of 1 to {GET_BATCH} ids")));
        }
        if let Some(bad) = message.lines.iter().find(|line| !is_id(line)) {
            return Err(self.out.refuse(&message.tag, 501, format!("bad id {bad:?}")));
        }
        self.recon.count(message.wire_len());
        for id in &message.lines {
            let found = self.hub.seq_of(id).and_then(|seq| {
                let (entry, _) = self.entry_line(seq)?;
                Some((entry, self.hub.read(seq).ok()?))
            });
            let Some((entry, bytes)) = found else {
                self.out.error(&message.tag, 500, &format!("no update {id}"))?;
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let mut lines = vec![message.tag.as_str(), entry.as_str()];
            lines.extend(text.strip_suffix('\n').unwrap_or(&text).split('\n'));
            self.recon
                .count(wire::encoded_len(&message.tag, Command::Update, &lines));
            self.out.send(Command::Update, &lines)?;
        }
        Ok(())
    }

    /// An `UPDATE` answering our `GETID`.
    pub(super) fn on_recon_update(
        &mut self,
        message: &Message,
        entry: &str,
        text: &[String],
    ) -> Result<(), SessionError> {
        let asked = |id: &String| self.recon.get.as_ref().is_some_and(|(_, ids)| ids.contains(id));
        let Some((seq, fingerprint, id)) = parse_entry(entry).filter(|(_, _, id)| asked(id)) else {
            return Err(self
                .out
                .refuse(&message.tag, 551, format!("UPDATE not asked for ({entry:?})")));
        };
        self.recon.count(message.wire_len());
        let mut bytes = text.join("\n").into_bytes();
        bytes.push(b'\n');
        match self.check(&bytes, &id, &fingerprint, None) {
            Ok(meta) => {
                if let Some(ours) = self.hub.accept(&bytes, meta, Some(&self.peer))? {
                    crate::log(&format!(
                        "stored update {id} from {} as {ours} (reconciliation)",
                        self.peer
                    ));
                }
            }
            Err(reason) => {
                crate::log(&format!("refused update {seq} ({id}) from {}: {reason}", self.peer));
                self.out.error(&message.tag, 500, &format!("refused: {reason}"))?;
            }
        }
        if let Some((_, ids)) = &mut self.recon.get {
            ids.remove(&id);
            if ids.is_empty() {
                self.recon.get = None;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_as_data_lines_and_small_limits_turn_it_off() {
        let text = "c / -\nack 0\n".to_string();
        let lines = data_lines("BEGIN", ReconMessage::from_text(text.clone()));
        assert_eq!(lines, ["BEGIN", "c / -", "ack 0"]);
        assert_eq!(message_of(&lines[1..]).as_str(), text);
        assert!(!Recon::new(true, 4096).enabled);
        assert!(
            !Recon::new(true, 4096).holds_list(),
            "LIST must not wait for what never runs"
        );
        assert!(Recon::new(true, 1 << 20).enabled);
    }
}
