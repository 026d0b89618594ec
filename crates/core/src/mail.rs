//! Reading request mail: who to answer, and what the message carries.
//!
//! This is the one mail reader of the project (mailparse underneath). It
//! finds the return address (`Reply-To:`, else `From:`, else the envelope
//! sender from `Return-Path:` or the mbox `From ` line) and applies the
//! loop rules: no answer to bounces (empty envelope sender, MAILER-DAEMON),
//! to `Auto-Submitted:` other than `no`, or to `Precedence: bulk|list|junk`,
//! so two robots never talk to each other forever. It also collects the
//! decoded text of every MIME part and the bytes of binary key
//! attachments, within fixed limits: mail is hostile input. Header values
//! that go back into a reply are bounded here, where they enter: a
//! Message-ID longer than [`MAX_MESSAGE_ID`] (or not printable ASCII) is
//! dropped, the subject is cut to [`MAX_SUBJECT_CHARS`], so a reply's
//! header lines stay within RFC 5322's 998. A body is decoded once and
//! kept without a second copy.

use mailparse::{addrparse, MailAddr, MailHeaderMap, ParsedMail};

use crate::exit::{self, ExitStatus};
use crate::types::Email;

/// The header hkpd writes into the request it spools for a key
/// submitted over HTTP (`hkp` or `vks`); such a request has no return
/// address, and keyreg tells each address it newly registers instead.
/// Anyone may write the header into a mail: it only adds those notices.
pub const WEB_SUBMISSION_HEADER: &str = "X-Ripem-Web-Submission";

/// At most this many MIME parts are looked at in one message.
pub const MAX_PARTS: usize = 1000;
/// A longer Message-ID is dropped: `In-Reply-To: ` and `References: `
/// with it must fit a 998-character header line.
pub const MAX_MESSAGE_ID: usize = 985;
/// The subject is cut to this many characters.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// At most this many PGP/MIME signed parts are kept from one message
/// (each is verified against the registered key).
pub const MAX_SIGNED_PARTS: usize = 100;

/// Why bytes could not be read as a mail message at all.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Not a mail message, or one too broken to read (no header block,
    /// binary junk, MIME nested past the parser's limit).
    #[error("unreadable as mail: {0}")]
    NotMail(String),
}

impl ExitStatus for MailError {
    fn exit_code(&self) -> u8 {
        exit::DATAERR
    }
}

/// Whether and where a request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnAddress {
    /// Reply to this address.
    Reply(Email),
    /// Don't reply, for this reason (the loop rules, or no usable address).
    NoReply(String),
}

/// What keyreg and givepubs need from a request mail.
#[derive(Debug, Clone)]
pub struct RequestMail {
    /// The `Message-ID:` header, for `In-Reply-To:`.
    pub message_id: Option<String>,
    /// The `Subject:` header, decoded.
    pub subject: String,
    /// Whether and where to reply.
    pub return_address: ReturnAddress,
    /// The [`WEB_SUBMISSION_HEADER`]'s value (cut to 20 printable
    /// characters), when hkpd spooled this request.
    pub web_submission: Option<String>,
    /// The decoded text of each part that may hold armored data.
    pub texts: Vec<String>,
    /// Non-armored `application/pgp-keys` attachments.
    pub binary_keys: Vec<Vec<u8>>,
    /// The PGP/MIME `multipart/signed` parts. (Cleartext- and inline-signed
    /// armor is in [`RequestMail::texts`], for the OpenPGP crate to find.)
    pub detached_signed: Vec<DetachedSigned>,
}

/// One PGP/MIME `multipart/signed` part (RFC 3156).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachedSigned {
    /// The signed first part, headers and body, exactly as in the mail:
    /// the signature covers these bytes.
    pub content: Vec<u8>,
    /// That part's decoded body text (headers dropped, transfer encoding
    /// undone, line ends `\n`): what the request says once it verifies.
    pub text: String,
    /// The armored `application/pgp-signature` part.
    pub signature: String,
}

/// The decoded body of a signed MIME part (its headers dropped, its
/// transfer encoding undone).
fn mime_body_text(part: &[u8]) -> String {
    let lf_text = |bytes: &[u8]| String::from_utf8_lossy(bytes).replace("\r\n", "\n");
    match mailparse::parse_mail(part) {
        Ok(parsed) => {
            let mut text = String::new();
            for leaf in parsed.parts().filter(|p| p.subparts.is_empty()).take(MAX_PARTS) {
                if let Ok(body) = leaf.get_body_raw() {
                    text.push_str(&lf_text(&body));
                    text.push('\n');
                }
            }
            text
        }
        Err(_) => lf_text(part),
    }
}

/// Splits off an mbox `From sender date` line; returns the envelope sender.
fn strip_mbox_line(raw: &[u8]) -> (Option<String>, &[u8]) {
    if !raw.starts_with(b"From ") {
        return (None, raw);
    }
    let end = raw.iter().position(|&b| b == b'\n').map_or(raw.len(), |i| i + 1);
    let line = String::from_utf8_lossy(&raw[5..end]);
    let sender = line.split_whitespace().next().map(str::to_string);
    (sender, &raw[end..])
}

/// The bare address of the first mailbox in a header value.
fn first_mailbox(value: &str) -> Option<String> {
    let list = addrparse(value).ok()?;
    list.iter().find_map(|addr| match addr {
        MailAddr::Single(info) => Some(info.addr.clone()),
        MailAddr::Group(group) => group.addrs.first().map(|info| info.addr.clone()),
    })
}

fn is_daemon(address: &str) -> bool {
    let local = address.rsplit_once('@').map_or(address, |(local, _)| local);
    local.eq_ignore_ascii_case("mailer-daemon")
}

/// Decides whether and where to answer, by the loop rules.
fn return_address(mail: &ParsedMail<'_>, envelope: Option<String>) -> ReturnAddress {
    let headers = mail.get_headers();
    let envelope = headers.get_first_value("Return-Path").or(envelope).map(|value| {
        value
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim()
            .to_string()
    });
    if let Some(sender) = &envelope {
        if sender.is_empty() {
            return ReturnAddress::NoReply("a bounce (empty envelope sender)".into());
        }
        if is_daemon(sender) {
            return ReturnAddress::NoReply("a bounce (from MAILER-DAEMON)".into());
        }
    }
    if let Some(auto) = headers.get_first_value("Auto-Submitted") {
        let auto = auto.trim().to_ascii_lowercase();
        if !auto.is_empty() && !auto.starts_with("no") {
            return ReturnAddress::NoReply(format!("automatically submitted ({auto})"));
        }
    }
    if let Some(precedence) = headers.get_first_value("Precedence") {
        let precedence = precedence.trim().to_ascii_lowercase();
        if ["bulk", "list", "junk"].contains(&precedence.as_str()) {
            return ReturnAddress::NoReply(format!("Precedence: {precedence}"));
        }
    }
    let chosen = headers
        .get_first_value("Reply-To")
        .and_then(|v| first_mailbox(&v))
        .or_else(|| headers.get_first_value("From").and_then(|v| first_mailbox(&v)))
        .or(envelope);
    match chosen {
        None => ReturnAddress::NoReply("no return address".into()),
        Some(address) if is_daemon(&address) => ReturnAddress::NoReply("a bounce (from MAILER-DAEMON)".into()),
        Some(address) => match Email::parse(&address) {
            Ok(email) => ReturnAddress::Reply(email),
            Err(_) => ReturnAddress::NoReply(format!(
                "unusable return address {:?}",
                address.chars().take(80).collect::<String>()
            )),
        },
    }
}

const ARMOR_MARK: &[u8] = b"-----BEGIN PGP";

/// A Message-ID worth copying into a reply: non-empty, printable ASCII
/// (no line break can smuggle a header in) and short enough.
fn usable_message_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_MESSAGE_ID && id.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

impl RequestMail {
    /// Reads a request mail. Fails only when the bytes are not a mail message.
    pub fn parse(raw: &[u8]) -> Result<RequestMail, MailError> {
        let (envelope, message) = strip_mbox_line(raw);
        let mail = mailparse::parse_mail(message).map_err(|err| MailError::NotMail(err.to_string()))?;
        if mail.headers.is_empty() {
            return Err(MailError::NotMail("no header lines".into()));
        }
        // RFC 5322 field names are printable ASCII without spaces or colons;
        // mailparse is lenient, so binary junk would otherwise pass as a header.
        let valid_name = |name: &[u8]| !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b) && b != b':');
        if let Some(bad) = mail.headers.iter().find(|header| !valid_name(header.get_key_raw())) {
            let shown: String = String::from_utf8_lossy(bad.get_key_raw()).chars().take(40).collect();
            return Err(MailError::NotMail(format!("bad header line {shown:?}")));
        }
        let headers = mail.get_headers();
        let message_id = headers
            .get_first_value("Message-ID")
            .map(|id| id.trim().to_string())
            .filter(|id| usable_message_id(id));
        let subject = headers
            .get_first_value("Subject")
            .unwrap_or_default()
            .chars()
            .take(MAX_SUBJECT_CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let return_address = return_address(&mail, envelope);
        let web_submission = headers.get_first_value(WEB_SUBMISSION_HEADER).map(|value| {
            value
                .trim()
                .chars()
                .filter(char::is_ascii_graphic)
                .take(20)
                .collect::<String>()
        });

        let mut texts = Vec::new();
        let mut binary_keys = Vec::new();
        let mut detached_signed = Vec::new();
        for part in mail.parts().take(MAX_PARTS) {
            if part.ctype.mimetype == "multipart/signed" && part.subparts.len() >= 2 {
                if let Ok(signature) = part.subparts[1].get_body_raw() {
                    let content = part.subparts[0].raw_bytes;
                    detached_signed.push(DetachedSigned {
                        content: content.to_vec(),
                        text: mime_body_text(content),
                        signature: String::from_utf8_lossy(&signature).into_owned(),
                    });
                }
            }
            if detached_signed.len() == MAX_SIGNED_PARTS {
                break;
            }
        }
        for part in mail.parts().filter(|part| part.subparts.is_empty()).take(MAX_PARTS) {
            let Ok(body) = part.get_body_raw() else {
                continue;
            };
            let mimetype = part.ctype.mimetype.as_str();
            let armored = body.windows(ARMOR_MARK.len()).any(|window| window == ARMOR_MARK);
            if armored {
                // Valid UTF-8 is kept as it is: no second copy of a large body.
                texts.push(
                    String::from_utf8(body).unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned()),
                );
            } else if mimetype == "application/pgp-keys" && !body.is_empty() {
                binary_keys.push(body);
            }
        }
        Ok(RequestMail {
            message_id,
            subject,
            return_address,
            web_submission,
            texts,
            binary_keys,
            detached_signed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_of(raw: &str) -> ReturnAddress {
        RequestMail::parse(raw.as_bytes()).unwrap().return_address
    }

    fn email(s: &str) -> ReturnAddress {
        ReturnAddress::Reply(Email::parse(s).unwrap())
    }

    #[test]
    fn return_address_precedence() {
        assert_eq!(
            reply_of("From: A <a@example.com>\nReply-To: r@example.org\n\nhi"),
            email("r@example.org")
        );
        assert_eq!(reply_of("From: A <a@example.com>\n\nhi"), email("a@example.com"));
        assert_eq!(
            reply_of("Return-Path: <env@example.net>\nSubject: x\n\nhi"),
            email("env@example.net")
        );
        assert_eq!(
            reply_of("From env@example.net Sat Nov 21 10:00:00 2026\nSubject: x\n\nhi"),
            email("env@example.net")
        );
    }

    #[test]
    fn loop_rules_forbid_replies() {
        for raw in [
            "Return-Path: <>\nFrom: a@example.com\n\nbounce",
            "From: MAILER-DAEMON@example.com\n\nbounce",
            "From MAILER-DAEMON Sat Nov 21 10:00:00 2026\nFrom: a@example.com\n\nx",
            "From: a@example.com\nAuto-Submitted: auto-replied\n\nx",
            "From: a@example.com\nPrecedence: bulk\n\nx",
            "From: a@example.com\nPrecedence: LIST\n\nx",
            "Subject: nobody\n\nx",
            "From: not an address\n\nx",
        ] {
            assert!(matches!(reply_of(raw), ReturnAddress::NoReply(_)), "{raw:?}");
        }
        assert_eq!(
            reply_of("From: a@example.com\nAuto-Submitted: no\n\nx"),
            email("a@example.com")
        );
    }

    #[test]
    fn collects_armored_text_from_every_part() {
        let raw = "From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nhello\n--XX\nContent-Type: application/pgp-keys\nContent-Transfer-Encoding: base64\n\nLS0tLS1CRUdJTiBQR1AgUFVCTElDIEtFWSBCTE9DSy0tLS0t\n--XX\nContent-Type: application/pgp-keys\nContent-Transfer-Encoding: base64\n\nmDMEAAAA\n--XX--\n";
        let mail = RequestMail::parse(raw.as_bytes()).unwrap();
        assert_eq!(mail.texts, ["-----BEGIN PGP PUBLIC KEY BLOCK-----"]);
        assert_eq!(mail.binary_keys.len(), 1);
    }

    #[test]
    fn junk_is_not_mail() {
        assert!(RequestMail::parse(b"").is_err());
        assert!(RequestMail::parse(b"\n\njust a body").is_err());
        let _ = RequestMail::parse(&[0xff, 0x00, 0x13, b'\n', b':', 0x80]);
    }

    #[test]
    fn header_values_for_the_reply_are_bounded() {
        let id = |value: &str| {
            RequestMail::parse(
                format!(
                    "From: a@example.com\nMessage-ID: {value}\nSubject: {}\n\nx",
                    "s".repeat(5000)
                )
                .as_bytes(),
            )
            .unwrap()
        };
        assert_eq!(id("<ok@example.com>").message_id.as_deref(), Some("<ok@example.com>"));
        assert_eq!(
            id(&format!("<{}@example.com>", "i".repeat(MAX_MESSAGE_ID))).message_id,
            None
        );
        assert_eq!(id("<caf\u{e9}@example.com>").message_id, None);
        assert_eq!(id("<a@b>").subject.chars().count(), MAX_SUBJECT_CHARS);
    }
}
