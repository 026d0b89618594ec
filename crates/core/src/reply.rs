//! Outgoing mail: building replies and sending them (lettre underneath).
//!
//! Every reply carries `Auto-Submitted: auto-replied` (RFC 3834) and
//! `In-Reply-To:`/`References:` to the request. One [`Mailer`] type covers
//! the three transports: `sendmail` (a program), `smtp` (a relay, with
//! optional STARTTLS and login) and `file` (an `.eml` file per message in
//! the outbox directory, written atomically, for tests and the demo). keyreg does not send
//! directly: it writes each reply into `spool/outgoing/` before deleting
//! the request, then [`Mailer::flush`] sends and deletes them, so a mail
//! outage delays replies but never loses one.
//!
//! A reply without an attachment is at most [`MAX_REPLY_BYTES`] as sent:
//! a longer body is summarised (its first lines, then how many were left
//! out), so a mail that provokes thousands of outcome lines can't turn
//! the server into an amplifier towards a forged return address. Entries
//! of `outgoing/` are opened as spool files are ([`spool::open_regular`]):
//! anything that is not a regular file is moved to `failed/`, not sent.

use std::fs;
use std::path::{Path, PathBuf};

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, SendmailTransport, SmtpTransport, Transport as _};

use crate::atomic::write_atomically;
use crate::config::{MailConfig, Paths, Transport};
use crate::exit::{self, ExitStatus};
use crate::spool::{self, Spool, SpoolError};
use crate::types::Email;

/// Why a message could not be built, queued or sent.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// An address lettre will not take.
    #[error("bad address {address:?}: {reason}")]
    Address {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The message could not be built.
    #[error("building the message: {0}")]
    Build(String),
    /// The transport refused or failed.
    #[error("sending to {to} by {transport}: {reason}")]
    Send {
        /// The recipient.
        to: String,
        /// Which transport.
        transport: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The outgoing queue could not be written or read.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl ExitStatus for ReplyError {
    /// Mail that could not go out is worth retrying.
    fn exit_code(&self) -> u8 {
        exit::TEMPFAIL
    }
}

/// The largest reply, as sent, unless it carries an attachment (givepubs'
/// keyring is as large as the keyring).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A file in `outgoing/` larger than this is not one of keyreg's replies.
const MAX_QUEUED_BYTES: u64 = 16 << 20;

/// The `Auto-Submitted: auto-replied` header.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-replied".into())
    }
}

/// A file sent along with a reply.
#[derive(Debug, Clone)]
pub struct ReplyAttachment {
    /// The file name shown to the recipient.
    pub filename: String,
    /// Its MIME type, e.g. `application/pgp-keys`.
    pub content_type: String,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// An automatic reply to a request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The recipient.
    pub to: Email,
    /// The subject line.
    pub subject: String,
    /// The request's Message-ID.
    pub in_reply_to: Option<String>,
    /// Plain-text body.
    pub body: String,
    /// An optional attachment.
    pub attachment: Option<ReplyAttachment>,
}

fn parse_address(address: &str) -> Result<Address, ReplyError> {
    address.parse::<Address>().map_err(|err| ReplyError::Address {
        address: address.to_string(),
        reason: err.to_string(),
    })
}

/// `body` cut to its first lines that fit in `budget` bytes, then a line
/// saying how many lines were left out. A body within budget is returned
/// as it is.
pub fn summarise(body: &str, budget: usize) -> String {
    if body.len() <= budget {
        return body.to_string();
    }
    let room = budget.saturating_sub(120);
    let mut kept = String::new();
    let mut lines = body.lines();
    for line in lines.by_ref() {
        if kept.len() + line.len() + 1 > room {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    let kept_lines = kept.lines().count();
    let left_out = body.lines().count().saturating_sub(kept_lines);
    kept.push_str(&format!(
        "\n[{left_out} further lines left out: a reply is at most {} KiB]\n",
        MAX_REPLY_BYTES / 1024
    ));
    kept
}

impl Reply {
    /// The whole message, headers and body, as RFC 5322 bytes; at most
    /// [`MAX_REPLY_BYTES`] unless it has an attachment, the body being
    /// summarised ([`summarise`]) until it fits whatever its encoding.
    pub fn to_bytes(&self, from: &str) -> Result<Vec<u8>, ReplyError> {
        let mut bytes = self.format(from, &self.body)?;
        let mut budget = MAX_REPLY_BYTES;
        while self.attachment.is_none() && bytes.len() > MAX_REPLY_BYTES && budget > 0 {
            // Shrink by how far over it is (quoted-printable may triple a
            // byte), and by at least a tenth, so this ends in a few rounds.
            budget = (budget.saturating_mul(MAX_REPLY_BYTES) / bytes.len()).min(budget - budget / 10 - 1);
            bytes = self.format(from, &summarise(&self.body, budget))?;
        }
        Ok(bytes)
    }

    fn format(&self, from: &str, body: &str) -> Result<Vec<u8>, ReplyError> {
        let from: Mailbox = from
            .parse()
            .map_err(|err: lettre::address::AddressError| ReplyError::Address {
                address: from.to_string(),
                reason: err.to_string(),
            })?;
        let mut builder = lettre::Message::builder()
            .from(from)
            .to(Mailbox::new(None, parse_address(self.to.as_str())?))
            .subject(self.subject.clone())
            .header(AutoSubmitted);
        if let Some(id) = &self.in_reply_to {
            builder = builder.in_reply_to(id.clone()).references(id.clone());
        }
        let text = SinglePart::plain(body.to_string());
        let message = match &self.attachment {
            None => builder.singlepart(text),
            Some(file) => {
                let content_type =
                    ContentType::parse(&file.content_type).map_err(|err| ReplyError::Build(err.to_string()))?;
                let attachment = Attachment::new(file.filename.clone()).body(file.bytes.clone(), content_type);
                builder.multipart(MultiPart::mixed().singlepart(text).singlepart(attachment))
            }
        }
        .map_err(|err| ReplyError::Build(err.to_string()))?;
        Ok(message.formatted())
    }
}

enum Sender {
    Sendmail(SendmailTransport),
    Smtp(Box<SmtpTransport>),
    /// The outbox directory; each message is written there atomically.
    File(PathBuf),
}

/// Sends mail by the configured transport.
pub struct Mailer {
    sender: Sender,
    from: String,
}

impl Mailer {
    /// The mailer the configuration describes.
    pub fn from_config(mail: &MailConfig, paths: &Paths) -> Result<Mailer, ReplyError> {
        let sender = match mail.transport {
            Transport::Sendmail => Sender::Sendmail(SendmailTransport::new_with_command(&mail.sendmail)),
            Transport::Smtp => {
                let mut builder = if mail.smtp_starttls {
                    SmtpTransport::starttls_relay(&mail.smtp_host).map_err(|err| ReplyError::Send {
                        to: mail.smtp_host.clone(),
                        transport: "smtp",
                        reason: err.to_string(),
                    })?
                } else {
                    SmtpTransport::builder_dangerous(&mail.smtp_host)
                }
                .port(mail.smtp_port);
                if let (Some(user), Some(password)) = (&mail.smtp_user, &mail.smtp_password) {
                    builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
                }
                Sender::Smtp(Box::new(builder.build()))
            }
            Transport::File => {
                fs::create_dir_all(&paths.outbox).map_err(|source| SpoolError::Io {
                    path: paths.outbox.clone(),
                    source,
                })?;
                Sender::File(paths.outbox.clone())
            }
        };
        parse_address(&mail.from)?;
        Ok(Mailer {
            sender,
            from: mail.from.clone(),
        })
    }

    /// The server's own address.
    pub fn from_address(&self) -> &str {
        &self.from
    }

    fn transport_name(&self) -> &'static str {
        match self.sender {
            Sender::Sendmail(_) => "sendmail",
            Sender::Smtp(_) => "smtp",
            Sender::File(_) => "file",
        }
    }

    /// Sends already formatted message bytes to `to`. `name` names the
    /// message for the file transport, so sending it again after a crash
    /// replaces the file instead of adding a second one.
    pub fn send_bytes(&self, to: &Email, bytes: &[u8], name: &str) -> Result<(), ReplyError> {
        let envelope =
            lettre::address::Envelope::new(Some(parse_address(&self.from)?), vec![parse_address(to.as_str())?])
                .map_err(|err| ReplyError::Build(err.to_string()))?;
        let failed = |reason: String| ReplyError::Send {
            to: to.to_string(),
            transport: self.transport_name(),
            reason,
        };
        match &self.sender {
            Sender::Sendmail(transport) => transport.send_raw(&envelope, bytes).map_err(|e| failed(e.to_string())),
            Sender::Smtp(transport) => transport
                .send_raw(&envelope, bytes)
                .map(|_| ())
                .map_err(|e| failed(e.to_string())),
            Sender::File(dir) => {
                let path = dir.join(format!("{name}.eml"));
                write_atomically(&path, bytes).map_err(|e| failed(format!("{}: {e}", path.display())))
            }
        }
    }

    /// Builds and sends a reply at once (givepubs).
    pub fn send(&self, reply: &Reply) -> Result<(), ReplyError> {
        let bytes = reply.to_bytes(&self.from)?;
        let name = format!(
            "reply.{}.{:08x}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"),
            rand::random::<u32>()
        );
        self.send_bytes(&reply.to, &bytes, &name)
    }

    /// Queues a reply in `spool/outgoing/` under `name`. If a reply under
    /// that name is already queued (the request is being processed again
    /// after a crash), the first one is kept, so each request is answered
    /// once.
    pub fn queue(&self, spool: &Spool, name: &str, reply: &Reply) -> Result<(), ReplyError> {
        let path = spool.outgoing_dir().join(format!("{name}.eml"));
        if path.exists() {
            return Ok(());
        }
        let mut bytes = format!("X-Ripem-Recipient: {}\n", reply.to).into_bytes();
        bytes.extend(reply.to_bytes(&self.from)?);
        write_atomically(&path, &bytes).map_err(|source| SpoolError::Io { path, source })?;
        Ok(())
    }

    /// Queues a message already formatted by the caller (keyreg's
    /// confirmation requests are PGP/MIME, which [`Reply`] does not
    /// build) in `spool/outgoing/` under `name`, as [`Mailer::queue`]
    /// does: a message already queued under that name is kept.
    pub fn queue_formatted(&self, spool: &Spool, name: &str, to: &Email, message: &[u8]) -> Result<(), ReplyError> {
        let path = spool.outgoing_dir().join(format!("{name}.eml"));
        if path.exists() {
            return Ok(());
        }
        let mut bytes = format!("X-Ripem-Recipient: {to}\n").into_bytes();
        bytes.extend_from_slice(message);
        write_atomically(&path, &bytes).map_err(|source| SpoolError::Io { path, source })?;
        Ok(())
    }

    /// Sends every queued reply, deleting each once sent. Replies that
    /// could not be sent stay queued; entries that are not queued replies
    /// are moved to `failed/`.
    pub fn flush(&self, spool: &Spool) -> Flushed {
        let dir = spool.outgoing_dir();
        let mut flushed = Flushed::default();
        let mut names: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
                .collect(),
            Err(source) => {
                flushed.errors.push(SpoolError::Io { path: dir, source }.into());
                return flushed;
            }
        };
        names.sort();
        for path in names {
            match self.send_queued(&path) {
                Ok(()) => flushed.sent += 1,
                Err(ReplyError::Spool(err @ (SpoolError::NotRegular { .. } | SpoolError::TooLarge { .. }))) => {
                    let reason = format!("not a queued reply: {err}");
                    flushed
                        .moved_aside
                        .push(match spool.quarantine_outgoing(&path, &reason) {
                            Ok(moved) => format!("{reason}; moved to {}", moved.display()),
                            Err(move_err) => format!("{reason}; could not move it aside: {move_err}"),
                        });
                }
                Err(err) => flushed.errors.push(err),
            }
        }
        flushed
    }

    fn send_queued(&self, path: &Path) -> Result<(), ReplyError> {
        let queued = spool::read_limited(path, MAX_QUEUED_BYTES)?;
        let (first_line, message) = queued.split_at(queued.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1));
        let recipient = String::from_utf8_lossy(first_line);
        let recipient = recipient
            .strip_prefix("X-Ripem-Recipient: ")
            .and_then(|addr| Email::parse(addr).ok())
            .ok_or_else(|| ReplyError::Build(format!("{}: not a queued reply", path.display())))?;
        // Escaped, so two names that are not UTF-8 never share an outbox file.
        let name = spool::short_name(path.file_stem().unwrap_or_default());
        self.send_bytes(&recipient, message, &name)?;
        fs::remove_file(path).map_err(|source| SpoolError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(())
    }
}

/// What one [`Mailer::flush`] did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Replies sent.
    pub sent: usize,
    /// Replies not sent; they stay queued for the next flush.
    pub errors: Vec<ReplyError>,
    /// Entries of `outgoing/` that were not queued replies (a FIFO, a
    /// symlink, a directory...), one line each: moved to `failed/`.
    pub moved_aside: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: String) -> Reply {
        Reply {
            to: Email::parse("to@example.org").unwrap(),
            subject: "Re: test".into(),
            in_reply_to: Some("<id@example.org>".into()),
            body,
            attachment: None,
        }
    }

    #[test]
    fn a_long_reply_is_summarised_within_the_limit() {
        let short = reply("one line\n".into()).to_bytes("ks@example.org").unwrap();
        assert!(String::from_utf8_lossy(&short).contains("one line"));
        for line in [
            "plain ascii outcome line",
            "\u{e9}\u{e9}\u{e9} non-ASCII \u{e9}\u{e9}\u{e9}",
        ] {
            let body: String = (0..20_000).map(|i| format!("{line} {i}\n")).collect();
            let bytes = reply(body).to_bytes("ks@example.org").unwrap();
            assert!(bytes.len() <= MAX_REPLY_BYTES, "{} bytes", bytes.len());
        }
        let summary = summarise("a\nb\nc\n", 4);
        assert!(summary.contains("3 further lines left out"), "{summary}");
    }
}
