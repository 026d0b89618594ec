//! What can go wrong in a session, as types: a message that does not parse
//! ([`Malformed`]), one that parses but breaks the protocol or its bounds,
//! and a peer that stops making progress. A peer's message can cause any of
//! these and nothing else: no panic, no unbounded growth.

use ripem_core::exit::{self, ExitStatus};

/// Why a line of a message does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// An id is not 64 lower-case hex digits.
    #[error("an id is not 64 lower-case hex digits")]
    Id,
    /// A prefix is not `/` and up to 64 lower-case hex digits.
    #[error("a prefix is not / and up to 64 lower-case hex digits")]
    Prefix,
    /// A child summary is not `-` or `<count>:<32 hex digits>`.
    #[error("a child summary is not - or <count>:<digest>")]
    Child,
    /// A line starts with a tag this version does not know.
    #[error("unknown entry")]
    Tag,
    /// A line has too many or too few fields.
    #[error("wrong number of fields")]
    Fields,
    /// The message does not end with its `ack`/`end` line, or has text after it.
    #[error("the message does not end with one ack or end line")]
    Trailer,
    /// The message is not text lines each ending in a newline.
    #[error("not newline-terminated UTF-8 lines")]
    Lines,
}

/// An error of a reconciliation session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The message is over the byte limit.
    #[error("a reconciliation message of {size} bytes is over the limit of {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The message carries more ids than one message may.
    #[error("a reconciliation message carries {count} ids, over the limit of {limit}")]
    TooManyIds {
        /// How many it carries.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A line does not parse.
    #[error("reconciliation message line {line}: {what}")]
    Malformed {
        /// 1-based line number in the message.
        line: usize,
        /// What is wrong with it.
        what: Malformed,
    },
    /// A line parses but is not allowed where it stands.
    #[error("reconciliation message line {line}: {what}")]
    Protocol {
        /// 1-based line number in the message (0: the message as a whole).
        line: usize,
        /// Which rule it breaks.
        what: &'static str,
    },
    /// The two sides differ in more ids than the session may hold.
    #[error("more than {limit} differing ids in one reconciliation")]
    TooManyDifferences {
        /// The limit.
        limit: usize,
    },
    /// The peer answered without answering anything.
    #[error("the peer stopped making progress in the reconciliation")]
    Stalled,
    /// A message was asked of a session that is over.
    #[error("the reconciliation is already over")]
    Finished,
}

impl ExitStatus for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Error::Stalled => exit::TEMPFAIL,
            Error::Finished => exit::SOFTWARE,
            _ => exit::DATAERR,
        }
    }
}

/// An error of [`crate::reconcile`]: the session's, or the transport's.
#[derive(Debug, thiserror::Error)]
pub enum DriveError<E: std::error::Error + 'static> {
    /// The session failed (a bad message, a stalled peer).
    #[error(transparent)]
    Session(#[from] Error),
    /// The transport failed to carry a message or its answer.
    #[error("reconciliation transport: {0}")]
    Transport(#[source] E),
}

impl<E: ExitStatus> ExitStatus for DriveError<E> {
    fn exit_code(&self) -> u8 {
        match self {
            DriveError::Session(err) => err.exit_code(),
            DriveError::Transport(err) => err.exit_code(),
        }
    }
}
