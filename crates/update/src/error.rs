//! Why an update is refused.
//!
//! Every refusal names what is wrong in plain words, for the log of the
//! server that refuses it and for the `ERROR` it answers a peer with. An
//! update is data from outside (a peer sent it), so all of these are
//! data errors.

use ripem_core::exit::{self, ExitStatus};

/// An update that can't be read or does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Larger than [`MAX_UPDATE_BYTES`](crate::MAX_UPDATE_BYTES).
    #[error("the update is {0} bytes, over the limit of 1 MiB")]
    TooLarge(usize),
    /// Not an update's text.
    #[error("malformed update: {0}")]
    Malformed(String),
    /// Readable, but not in the one canonical form (so its id would not
    /// name it on every server alike).
    #[error("the update is not in canonical form")]
    NotCanonical,
    /// A key it carries fails the checks a mailed key must pass.
    #[error("the update's key is refused: {0}")]
    BadKey(String),
    /// Its signed request does not verify against the key it names.
    #[error("the update's signed request is refused: {0}")]
    BadRequest(String),
}

impl ExitStatus for UpdateError {
    fn exit_code(&self) -> u8 {
        exit::DATAERR
    }
}
