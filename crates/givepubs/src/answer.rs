//! givepubs' one job: answer a request mail with the flat keyring.
//!
//! The mail comes from anyone, so the answer is bounded: a message over
//! `max_message_bytes` or one the loop rules say not to answer gets
//! nothing, and one address gets the keyring at most once a day
//! ([`DailyRecord`], held from the check until the keyring is sent and
//! recorded). What went wrong on this side (the record can't be locked,
//! `pubkeys.asc` is missing, mail can't be sent) is an error worth
//! retrying: the MTA keeps the message and tries again.

use std::path::PathBuf;

use ripem_core::config::Config;
use ripem_core::exit::{self, ExitStatus};
use ripem_core::mail::{RequestMail, ReturnAddress};
use ripem_core::reply::{Mailer, Reply, ReplyAttachment, ReplyError};
use ripem_core::types::Email;

use crate::daily_record::{DailyRecord, DailyRecordError, Verdict};

/// What became of a request that was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// The keyring was mailed to this address.
    Sent(Email),
    /// Nothing is sent, for this reason (not mail, the loop rules, too large).
    NoReply(String),
    /// The address had the keyring today already.
    AlreadySent(Email),
    /// Today's record is full: no more keyrings go out before tomorrow.
    DayFull(Email),
}

impl std::fmt::Display for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answered::Sent(to) => write!(f, "keyring mailed to {to}"),
            Answered::NoReply(reason) => write!(f, "no reply: {reason}"),
            Answered::AlreadySent(to) => {
                write!(
                    f,
                    "keyring already mailed to {to} today; not again before tomorrow (UTC)"
                )
            }
            Answered::DayFull(to) => {
                write!(
                    f,
                    "keyring already mailed to as many addresses as a day allows; none to {to}"
                )
            }
        }
    }
}

/// Why the keyring could not be sent now; the MTA should retry.
#[derive(Debug, thiserror::Error)]
pub enum GivepubsError {
    /// The message is larger than the configured limit.
    #[error("message larger than {limit} bytes")]
    TooLarge {
        /// `max_message_bytes`.
        limit: u64,
    },
    /// Today's record could not be opened or locked.
    #[error("{0}; try again later")]
    Record(DailyRecordError),
    /// The flat keyring is not there yet.
    #[error("{path}: {source}; try again after db2flat has run")]
    NoKeyring {
        /// `pubkeys.asc`.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
    /// The reply could not be sent.
    #[error("mailing the keyring to {to}: {source}")]
    Send {
        /// The address.
        to: Email,
        /// The mail transport's error.
        source: ReplyError,
    },
}

impl ExitStatus for GivepubsError {
    fn exit_code(&self) -> u8 {
        match self {
            GivepubsError::TooLarge { .. } => exit::DATAERR,
            GivepubsError::Record(_) | GivepubsError::NoKeyring { .. } => exit::TEMPFAIL,
            GivepubsError::Send { source, .. } => source.exit_code(),
        }
    }
}

/// Answers the request mail `raw`; `warn` hears what is worth a log line
/// but changes nothing (a keyring sent but not recorded).
pub fn answer(config: &Config, raw: &[u8], warn: &dyn Fn(&str)) -> Result<Answered, GivepubsError> {
    let limit = config.keyreg.max_message_bytes;
    if raw.len() as u64 > limit {
        return Err(GivepubsError::TooLarge { limit });
    }
    let mail = match RequestMail::parse(raw) {
        Ok(mail) => mail,
        Err(err) => return Ok(Answered::NoReply(err.to_string())),
    };
    let to = match mail.return_address {
        ReturnAddress::Reply(to) => to,
        ReturnAddress::NoReply(reason) => return Ok(Answered::NoReply(reason)),
    };
    let mut record =
        DailyRecord::open_today(&config.paths.state_dir.join("givepubs.sent")).map_err(GivepubsError::Record)?;
    match record.verdict(&to) {
        Verdict::Send => {}
        Verdict::AlreadySent => return Ok(Answered::AlreadySent(to)),
        Verdict::Full => return Ok(Answered::DayFull(to)),
    }
    let path = config.paths.flat_armored();
    let keyring = std::fs::read(&path).map_err(|source| GivepubsError::NoKeyring { path, source })?;
    let reply = Reply {
        to: to.clone(),
        subject: config.mail.givepubs_subject.clone(),
        in_reply_to: mail.message_id,
        body: format!(
            "This is the RIPEM key server at {}.\n\nAttached is the keyring of every key registered here, as one armored\nOpenPGP keyring. Import it with:\n\n    gpg --import pubkeys.asc\n\nTo register your own key, mail it to {}.\n",
            config.mail.from, config.addresses.register
        ),
        attachment: Some(ReplyAttachment {
            filename: "pubkeys.asc".into(),
            content_type: "application/pgp-keys".into(),
            bytes: keyring,
        }),
    };
    let send_error = |source| GivepubsError::Send { to: to.clone(), source };
    Mailer::from_config(&config.mail, &config.paths)
        .map_err(send_error)?
        .send(&reply)
        .map_err(send_error)?;
    // Sent but not recorded would only allow one more keyring today.
    if let Err(err) = record.record(&to) {
        warn(&err.to_string());
    }
    Ok(Answered::Sent(to))
}
