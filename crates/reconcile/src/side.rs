//! One side of a session: what it has asked and not yet had answered, what
//! the peer has asked and it has not yet answered, and what it has learnt.
//!
//! Rules. Each `c`/`l` entry a side sends (except the initiator's first,
//! for the root) answers one child of a `c` entry of the peer's, so prefixes
//! grow one digit per message and each prefix is sent at most once, by one
//! side: the session is finite whatever either set does meanwhile. A side
//! answers the peer's entries in the order they came, each `c` whole within
//! one message and each `l` as a stream that may span messages, so the
//! peer can check every answer against the one entry of its own it is
//! about, in order, with no lookup table, and count them off by the
//! cumulative `ack`. Anything that answers nothing asked, repeats, comes
//! out of order, or lists an id the other side never offered is a protocol
//! error. Both sets are read afresh at every step (never cached), so ids
//! inserted mid-session are simply seen or not: what is missed is found by
//! the next session.

use std::cmp::Ordering;
use std::collections::VecDeque;

use crate::error::Error;
use crate::id::{Id, Prefix, NIBBLES};
use crate::message::{parse, Entry, Limits, Message, Writer, LIST_MAX, MAX_LINE, TRAILER};
use crate::summary::{NodeStats, Summary};

/// Bytes of an `h` or `w` line.
const ID_LINE: usize = 2 + NIBBLES + 1;
/// Ids fetched from the summary at a time while answering a list.
const CHUNK: usize = 512;

/// Which side of a session this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Initiator,
    Responder,
}

/// One of our own `c`/`l` entries, awaiting the peer's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Children(Prefix),
    List(Prefix),
}

/// Where the peer's answers stand within the entry they are about: the
/// last child digit (for a `c`) or id (for an `l`) answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Last {
    Digit(u8),
    Id(Id),
}

/// One of the peer's entries, awaiting our answer.
enum Work {
    Children {
        prefix: Prefix,
        theirs: Box<[NodeStats; 16]>,
    },
    List {
        prefix: Prefix,
        theirs: Vec<Id>,
        next: usize,
        after: Option<Id>,
    },
}

/// The state of one side.
pub(crate) struct Side {
    role: Role,
    limits: Limits,
    sent_any: bool,
    received_any: bool,
    /// The peer's entries not yet answered in full, oldest first.
    inbox: VecDeque<Work>,
    /// How many of the peer's entries we have answered in full.
    answered: u64,
    /// `answered` as our last message told it.
    answered_told: u64,
    /// Whether we have said `end` (said again, it is no news).
    end_told: bool,
    /// Our entries the peer has not yet acknowledged, oldest first; the
    /// front one is our entry number `acked`.
    outstanding: VecDeque<Sent>,
    acked: u64,
    sent: u64,
    /// The number of our entry the peer's answers are now about.
    cursor: u64,
    cursor_last: Option<Last>,
    lacks: Vec<Id>,
    other_lacks: Vec<Id>,
    pub peer_ended: bool,
}

impl Side {
    pub fn new(role: Role, limits: Limits) -> Side {
        let limits = limits.raised();
        Side {
            role,
            limits,
            sent_any: false,
            received_any: false,
            inbox: VecDeque::new(),
            answered: 0,
            answered_told: 0,
            end_told: false,
            outstanding: VecDeque::new(),
            acked: 0,
            sent: 0,
            cursor: 0,
            cursor_last: None,
            lacks: Vec::new(),
            other_lacks: Vec::new(),
            peer_ended: false,
        }
    }

    /// Whether our side has nothing left to say or hear.
    pub fn idle(&self) -> bool {
        self.inbox.is_empty() && self.outstanding.is_empty()
    }

    /// Ids the peer holds and we do not.
    pub fn lacks(&self) -> &[Id] {
        &self.lacks
    }

    /// Ids we hold and the peer does not.
    pub fn other_lacks(&self) -> &[Id] {
        &self.other_lacks
    }

    pub fn into_differences(self) -> (Vec<Id>, Vec<Id>) {
        (self.lacks, self.other_lacks)
    }

    /// Our next message, and whether it says anything new (an entry or a
    /// further `ack`).
    pub fn write(&mut self, local: &Summary) -> Result<(Message, bool), Error> {
        let mut writer = Writer::new();
        if self.role == Role::Initiator && !self.sent_any {
            self.emit(&mut writer, local, Prefix::ROOT, local.len());
        }
        self.sent_any = true;
        while let Some(work) = self.inbox.front_mut() {
            let room = self.limits.max_message_bytes.saturating_sub(TRAILER + writer.bytes());
            let id_room = self.limits.max_ids_per_message.saturating_sub(writer.ids());
            let finished = match work {
                Work::Children { prefix, theirs } => {
                    if room < 16 * MAX_LINE || id_room < 16 * LIST_MAX {
                        break;
                    }
                    let (prefix, theirs) = (*prefix, **theirs);
                    self.answer_children(&mut writer, local, prefix, &theirs);
                    true
                }
                Work::List { .. } => self.answer_list(&mut writer, local)?,
            };
            if !finished {
                break;
            }
            self.inbox.pop_front();
            self.answered += 1;
        }
        let first_end = self.idle() && !self.end_told;
        let news = writer.bytes() > 0 || self.answered > self.answered_told || first_end;
        self.answered_told = self.answered;
        self.end_told |= self.idle();
        Ok((writer.finish(self.answered, self.idle()), news))
    }

    /// Sends `prefix` (holding `count` of our ids): its ids if few, else
    /// its 16 children.
    fn emit(&mut self, writer: &mut Writer, local: &Summary, prefix: Prefix, count: u64) {
        if count <= LIST_MAX as u64 || prefix.digits() >= NIBBLES {
            let mut ids = Vec::with_capacity(LIST_MAX);
            local.ids_after(&prefix, None, LIST_MAX, &mut ids);
            writer.list(&prefix, &ids);
            self.outstanding.push_back(Sent::List(prefix));
        } else {
            writer.children(&prefix, &local.children(&prefix));
            self.outstanding.push_back(Sent::Children(prefix));
        }
        self.sent += 1;
    }

    /// Answers the peer's children of `prefix`: every child whose count or
    /// digest differs from ours is sent on.
    fn answer_children(&mut self, writer: &mut Writer, local: &Summary, prefix: Prefix, theirs: &[NodeStats; 16]) {
        let ours = local.children(&prefix);
        for digit in 0..16u8 {
            let (mine, other) = (ours[usize::from(digit)], theirs[usize::from(digit)]);
            if mine == other {
                continue;
            }
            if let Some(child) = prefix.child(digit) {
                self.emit(writer, local, child, mine.count);
            }
        }
    }

    /// Carries on answering the peer's list at the front of the inbox:
    /// merges it with our ids under its prefix, `h` for ours it lacks, `w`
    /// for its we lack. `true` once the answer is complete.
    fn answer_list(&mut self, writer: &mut Writer, local: &Summary) -> Result<bool, Error> {
        let Some(Work::List {
            prefix,
            theirs,
            next,
            after,
        }) = self.inbox.front_mut()
        else {
            return Ok(true);
        };
        let mut mine = Vec::with_capacity(CHUNK);
        let mut at = 0;
        let mut mine_done = false;
        loop {
            if at == mine.len() && !mine_done {
                mine.clear();
                at = 0;
                local.ids_after(prefix, after.as_ref(), CHUNK, &mut mine);
                mine_done = mine.len() < CHUNK;
            }
            let (m, t) = (mine.get(at).copied(), theirs.get(*next).copied());
            let full = writer.bytes() + ID_LINE + TRAILER > self.limits.max_message_bytes
                || writer.ids() >= self.limits.max_ids_per_message;
            // The smaller of the two heads goes next: ours → `h`, theirs → `w`.
            let ours_first = match (m, t) {
                (None, None) => return Ok(true),
                (Some(m), Some(t)) => m.cmp(&t),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
            };
            match (ours_first, m, t) {
                (Ordering::Equal, Some(m), _) => (at, *next, *after) = (at + 1, *next + 1, Some(m)),
                (Ordering::Less, Some(m), _) => {
                    if full {
                        return Ok(false);
                    }
                    writer.have(&m);
                    self.other_lacks.push(m);
                    (at, *after) = (at + 1, Some(m));
                }
                (_, _, Some(t)) => {
                    // An id of theirs stored here since the merge passed its
                    // place is no longer missing.
                    if !local.contains(&t) {
                        if full {
                            return Ok(false);
                        }
                        writer.want(&t);
                        self.lacks.push(t);
                    }
                    *next += 1;
                }
                (_, _, None) => return Ok(true),
            }
            if self.lacks.len() + self.other_lacks.len() > self.limits.max_differences {
                return Err(Error::TooManyDifferences {
                    limit: self.limits.max_differences,
                });
            }
        }
    }

    /// Reads the peer's message; `true` if it says anything new.
    pub fn receive(&mut self, local: &Summary, message: &Message) -> Result<bool, Error> {
        let parsed = parse(message, &self.limits)?;
        let first_message = !self.received_any;
        self.received_any = true;
        let trailer_line = parsed.entries.len() + 1;
        let news = !parsed.entries.is_empty() || parsed.ack > self.acked || parsed.end;
        for (index, (line, entry)) in parsed.entries.into_iter().enumerate() {
            let root_allowed = self.role == Role::Responder && first_message && index == 0;
            match entry {
                Entry::Children { prefix, kids } => {
                    self.check_node(line, &prefix, root_allowed, parsed.end)?;
                    self.inbox.push_back(Work::Children { prefix, theirs: kids });
                }
                Entry::List { prefix, ids } => {
                    self.check_node(line, &prefix, root_allowed, parsed.end)?;
                    self.inbox.push_back(Work::List {
                        prefix,
                        theirs: ids,
                        next: 0,
                        after: None,
                    });
                }
                Entry::Have(id) => {
                    self.answers(
                        line,
                        |sent| matches!(sent, Sent::List(p) if p.contains(&id)),
                        Last::Id(id),
                    )?;
                    if !local.contains(&id) {
                        self.lacks.push(id);
                    }
                }
                Entry::Want(id) => {
                    self.answers(
                        line,
                        |sent| matches!(sent, Sent::List(p) if p.contains(&id)),
                        Last::Id(id),
                    )?;
                    if !local.contains(&id) {
                        return Err(Error::Protocol {
                            line,
                            what: "a w entry for an id this side never listed",
                        });
                    }
                    self.other_lacks.push(id);
                }
            }
            if self.lacks.len() + self.other_lacks.len() > self.limits.max_differences {
                return Err(Error::TooManyDifferences {
                    limit: self.limits.max_differences,
                });
            }
        }
        self.take_ack(trailer_line, parsed.ack, parsed.end)?;
        Ok(news)
    }

    /// Checks that a `c`/`l` entry of the peer's for `prefix` answers one
    /// of our `c` entries (or is the initiator's root, where allowed).
    fn check_node(&mut self, line: usize, prefix: &Prefix, root_allowed: bool, end: bool) -> Result<(), Error> {
        if end {
            return Err(Error::Protocol {
                line,
                what: "an end message asking something",
            });
        }
        match prefix.parent() {
            None if root_allowed => Ok(()),
            None => Err(Error::Protocol {
                line,
                what: "an entry for the root where none was asked",
            }),
            Some((parent, digit)) => self.answers(line, |sent| *sent == Sent::Children(parent), Last::Digit(digit)),
        }
    }

    /// Moves the cursor to the first of our outstanding entries, from where
    /// it stands, that `about` accepts, checking that `last` comes after
    /// the answers already seen for it.
    fn answers(&mut self, line: usize, about: impl Fn(&Sent) -> bool, last: Last) -> Result<(), Error> {
        let mut number = self.cursor;
        loop {
            let Some(sent) = self.outstanding.get((number - self.acked) as usize) else {
                return Err(Error::Protocol {
                    line,
                    what: "an entry that answers nothing this side asked",
                });
            };
            if about(sent) {
                if number == self.cursor && self.cursor_last.is_some_and(|seen| seen >= last) {
                    return Err(Error::Protocol {
                        line,
                        what: "an answer repeated or out of order",
                    });
                }
                self.cursor = number;
                self.cursor_last = Some(last);
                return Ok(());
            }
            number += 1;
        }
    }

    fn take_ack(&mut self, line: usize, ack: u64, end: bool) -> Result<(), Error> {
        if ack < self.acked || ack > self.sent {
            return Err(Error::Protocol {
                line,
                what: "an ack of entries never sent or already acknowledged",
            });
        }
        if end && ack != self.sent {
            return Err(Error::Protocol {
                line,
                what: "an end message leaving entries unanswered",
            });
        }
        for _ in self.acked..ack {
            self.outstanding.pop_front();
        }
        self.acked = ack;
        if self.cursor < ack {
            self.cursor = ack;
            self.cursor_last = None;
        }
        self.peer_ended = end;
        Ok(())
    }
}
