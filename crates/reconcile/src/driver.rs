//! Runs a whole session from the initiator's side over any transport: a
//! function that carries one message to the responder and brings back its
//! answer. Counts what it costs.

use crate::error::DriveError;
use crate::id::Id;
use crate::message::{Limits, Message};
use crate::session::Initiator;
use crate::summary::Summary;

/// What one session cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes of the messages sent.
    pub bytes_sent: u64,
    /// Bytes of the answers received.
    pub bytes_received: u64,
    /// Messages sent (each answered: one round trip each).
    pub round_trips: u64,
    /// Differing ids found, both directions.
    pub differences: u64,
}

/// What one session found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Ids the peer holds and we do not: fetch them by id.
    pub lacks: Vec<Id>,
    /// Ids we hold and the peer does not: offer them.
    pub other_lacks: Vec<Id>,
    /// The cost.
    pub stats: Stats,
}

/// Reconciles `local` with a peer reached through `remote` (which hands a
/// message to the peer's [`crate::Responder`] and returns its answer),
/// within the default [`Limits`].
pub fn reconcile<E: std::error::Error + 'static>(
    local: &Summary,
    remote: &mut dyn FnMut(Message) -> Result<Message, E>,
) -> Result<Outcome, DriveError<E>> {
    reconcile_within(local, Limits::default(), remote)
}

/// [`reconcile`] within `limits`.
pub fn reconcile_within<E: std::error::Error + 'static>(
    local: &Summary,
    limits: Limits,
    remote: &mut dyn FnMut(Message) -> Result<Message, E>,
) -> Result<Outcome, DriveError<E>> {
    let mut session = Initiator::new(limits);
    let mut stats = Stats::default();
    while let Some(message) = session.next_message(local)? {
        stats.bytes_sent += message.len() as u64;
        stats.round_trips += 1;
        let reply = remote(message).map_err(DriveError::Transport)?;
        stats.bytes_received += reply.len() as u64;
        session.receive(local, &reply)?;
    }
    let (lacks, other_lacks) = session.into_differences();
    stats.differences = (lacks.len() + other_lacks.len()) as u64;
    Ok(Outcome {
        lacks,
        other_lacks,
        stats,
    })
}
