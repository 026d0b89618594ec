//! A session as two state machines: the [`Initiator`] writes, the
//! [`Responder`] answers each message with one of its own, until the
//! initiator has nothing more to send.
//!
//! Rules. Each call takes the side's [`Summary`] afresh, so keysync may
//! insert ids (updates it fetched meanwhile) between calls. The session is
//! over when the responder has said `end` and the initiator has nothing left
//! to answer; an exchange in which neither side says anything new is a
//! stalled peer ([`Error::Stalled`]), so a peer cannot keep a session alive
//! without moving it forward, and it cannot move it forward for ever (see
//! the `side` module). Each side learns both differences: the ids it lacks
//! (to fetch by id) and the ids the peer lacks (to offer).

use crate::error::Error;
use crate::id::Id;
use crate::message::{Limits, Message};
use crate::side::{Role, Side};
use crate::summary::Summary;

/// The side that opens a session and decides when it is over.
pub struct Initiator {
    side: Side,
    /// Whether our last message said anything new.
    last_news: bool,
    over: bool,
}

impl Initiator {
    /// A session within `limits`.
    pub fn new(limits: Limits) -> Initiator {
        Initiator {
            side: Side::new(Role::Initiator, limits),
            last_news: true,
            over: false,
        }
    }

    /// The next message to send; `None` once the session is over.
    pub fn next_message(&mut self, local: &Summary) -> Result<Option<Message>, Error> {
        if self.over {
            return Ok(None);
        }
        self.over = true;
        let (message, news) = self.side.write(local)?;
        self.over = false;
        self.last_news = news;
        Ok(Some(message))
    }

    /// Reads the responder's answer to the last message. After an error
    /// the session is over.
    pub fn receive(&mut self, local: &Summary, reply: &Message) -> Result<(), Error> {
        if self.over {
            return Err(Error::Finished);
        }
        // After an error the session is over: its state is not to be trusted.
        self.over = true;
        let news = self.side.receive(local, reply)?;
        if !news && !self.last_news {
            return Err(Error::Stalled);
        }
        self.over = self.side.peer_ended && self.side.idle();
        Ok(())
    }

    /// Whether the session is over.
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// Ids the responder holds and we do not (so far).
    pub fn lacks(&self) -> &[Id] {
        self.side.lacks()
    }

    /// Ids we hold and the responder does not (so far).
    pub fn other_lacks(&self) -> &[Id] {
        self.side.other_lacks()
    }

    /// `(lacks, other_lacks)`.
    pub fn into_differences(self) -> (Vec<Id>, Vec<Id>) {
        self.side.into_differences()
    }
}

/// The side that answers.
pub struct Responder {
    side: Side,
    over: bool,
}

impl Responder {
    /// A session within `limits` (the same as the initiator's).
    pub fn new(limits: Limits) -> Responder {
        Responder {
            side: Side::new(Role::Responder, limits),
            over: false,
        }
    }

    /// Reads one message of the initiator's and writes the answer. After
    /// an error the session is over.
    pub fn answer(&mut self, local: &Summary, message: &Message) -> Result<Message, Error> {
        if self.over {
            return Err(Error::Finished);
        }
        // After an error the session is over: its state is not to be trusted.
        self.over = true;
        self.side.receive(local, message)?;
        let (reply, _) = self.side.write(local)?;
        self.over = self.side.idle();
        Ok(reply)
    }

    /// Whether our last answer said `end`: the initiator then has nothing
    /// left to send.
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// Ids the initiator holds and we do not (so far).
    pub fn lacks(&self) -> &[Id] {
        self.side.lacks()
    }

    /// Ids we hold and the initiator does not (so far).
    pub fn other_lacks(&self) -> &[Id] {
        self.side.other_lacks()
    }

    /// `(lacks, other_lacks)`.
    pub fn into_differences(self) -> (Vec<Id>, Vec<Id>) {
        self.side.into_differences()
    }
}
