//! The Web Key Service mails: the confirmation request keyreg sends, and
//! reading the confirmation responses that come back.
//!
//! The request is what `gpg-wks-server` sends (draft-koch-openpgp-webkey-
//! service, GnuPG's `tools/gpg-wks-server.c`): a `multipart/encrypted;
//! protocol="application/pgp-encrypted"` part whose encrypted payload is a
//! MIME entity `Content-Type: application/vnd.gnupg.wks` holding `type:
//! confirmation-request`, `sender:`, `address:`, `fingerprint:` and
//! `nonce:` lines. keyreg puts it in a `multipart/mixed` beside a plain
//! text explanation for people whose mail program is not WKS-aware
//! (`gpg-wks-client` takes text parts inside a `multipart/mixed`).
//!
//! A response is read from the raw mail: a `application/vnd.gnupg.wks`
//! part with `type: confirmation-response` (what `gpg-wks-client
//! --receive` sends when it finds no key for the submission address:
//! unencrypted; the nonce in it is the proof, since only the holder of
//! the key could read it), or, in a mail that carries no key, a plain
//! text part quoting a nonce (what a mail program that decrypts and
//! quotes the request sends). Who it is from is the `From:` address, the
//! mailbox the request went to. Everything is bounded: the parts looked
//! at, the lines read.

use chrono::{DateTime, Utc};
use mailparse::{MailHeaderMap, ParsedMail};
use ripem_core::mail::MAX_PARTS;
use ripem_core::types::{Email, Fingerprint};

use super::store::is_nonce;

/// The draft of the protocol keyreg speaks (`Wks-Draft-Version:`).
const WKS_DRAFT_VERSION: u32 = 3;
/// Lines of a WKS part that are looked at.
const MAX_WKS_LINES: usize = 50;

/// A confirmation, as read from a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The `From:` address.
    pub from: Email,
    /// The address it confirms: the WKS `address:` line, or for a plain
    /// reply the sender.
    pub address: Email,
    /// The nonce it carries back.
    pub nonce: String,
    /// A WKS `confirmation-response` (else a plain reply).
    pub wks: bool,
}

/// What a confirmation request says; encrypted as a whole to the key.
pub fn request_payload(sender: &str, address: &Email, fingerprint: &Fingerprint, nonce: &str) -> String {
    format!(
        "Content-Type: application/vnd.gnupg.wks\nContent-Transfer-Encoding: 8bit\n\ntype: confirmation-request\nsender: {sender}\naddress: {address}\nfingerprint: {fingerprint}\nnonce: {nonce}\n"
    )
}

/// The human part beside the encrypted request.
fn explanation(register: &str, address: &Email, fingerprint: &Fingerprint) -> String {
    format!(
        "This is the RIPEM key server at {register}.\n\nSomeone asked to publish the OpenPGP key\n\n  {fingerprint}\n\nfor your address {address}. It is published only once you confirm.\n\nIf your mail program speaks the Web Key Service protocol (GnuPG's\ngpg-wks-client, Thunderbird, KMail, Enigmail), it will offer to confirm.\nOtherwise decrypt the encrypted part of this mail with that key and reply\nto {register} with the decrypted text (it holds a line \"nonce: ...\"): a\nreply from {address} carrying that nonce confirms too.\n\nIf you did not ask for this, ignore this mail: nothing is published, and\nthe request expires in 3 days.\n"
    )
}

/// The whole confirmation request mail, CRLF line ends, ready to queue.
pub fn request_message(
    register: &str,
    address: &Email,
    fingerprint: &Fingerprint,
    encrypted: &str,
    now: DateTime<Utc>,
) -> Vec<u8> {
    // The nonce must appear only inside the ciphertext: the boundaries
    // and the Message-ID get a token of their own, shorter than a nonce
    // so that a reply quoting them is never read as carrying one.
    let token = &super::store::new_nonce()[..24];
    let outer = format!("=-ripem-mixed-{token}");
    let inner = format!("=-ripem-encrypted-{token}");
    let domain = register.rsplit_once('@').map_or("localhost", |(_, domain)| domain);
    let text = format!(
        "From: {register}\nTo: {address}\nSubject: Confirm your key publication\nDate: {date}\nMessage-ID: <confirm.{token}@{domain}>\nAuto-Submitted: auto-replied\nWks-Draft-Version: {WKS_DRAFT_VERSION}\nWKS-Phase: confirm\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{outer}\"\n\n--{outer}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{explanation}\n--{outer}\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"{inner}\"\n\n--{inner}\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n--{inner}\nContent-Type: application/octet-stream\n\n{encrypted}\n--{inner}--\n\n--{outer}--\n",
        date = now.to_rfc2822(),
        explanation = explanation(register, address, fingerprint),
        encrypted = encrypted.trim_end(),
    );
    text.replace('\n', "\r\n").into_bytes()
}

/// Header fields of an encrypted mail kept around its decrypted content:
/// who it is from and the loop rules' fields.
const KEPT_HEADERS: [&str; 8] = [
    "From",
    "To",
    "Subject",
    "Message-ID",
    "Date",
    "Return-Path",
    "Auto-Submitted",
    "Precedence",
];

/// `raw` with its first `multipart/encrypted` part opened by `decrypt`:
/// the outer header fields (those of [`KEPT_HEADERS`]) followed by the
/// decrypted MIME entity, or `None` if it has no such part or it does
/// not decrypt.
pub fn open_encrypted(raw: &[u8], decrypt: impl Fn(&[u8]) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    let mail = mailparse::parse_mail(raw).ok()?;
    let encrypted = mail
        .parts()
        .take(MAX_PARTS)
        .find(|part| part.ctype.mimetype == "multipart/encrypted" && part.subparts.len() >= 2)?;
    let ciphertext = encrypted.subparts[1].get_body_raw().ok()?;
    let plaintext = decrypt(&ciphertext)?;
    let headers = mail.get_headers();
    let mut out = Vec::new();
    for name in KEPT_HEADERS {
        if let Some(value) = headers.get_first_value(name) {
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
        }
    }
    let plaintext = String::from_utf8_lossy(&plaintext).replace("\r\n", "\n");
    // A bare payload (no MIME header of its own) is a text body.
    if !plaintext
        .get(..8)
        .is_some_and(|start| start.eq_ignore_ascii_case("content-"))
    {
        out.push(b'\n');
    }
    out.extend_from_slice(plaintext.as_bytes());
    Some(out)
}

/// The `name: value` lines of a WKS part.
fn wks_fields(body: &str) -> Vec<(String, String)> {
    body.lines()
        .take(MAX_WKS_LINES)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect()
}

/// The nonce a text quotes: the first nonce-shaped word (32 hex digits
/// standing alone) of a line that says `nonce:`, else of the text.
fn find_nonce(text: &str) -> Option<String> {
    let first = |text: &str| {
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .map(str::to_ascii_lowercase)
            .find(|word| is_nonce(word))
    };
    text.lines()
        .filter(|line| line.to_ascii_lowercase().contains("nonce:"))
        .find_map(first)
        .or_else(|| first(text))
}

fn from_address(mail: &ParsedMail<'_>) -> Option<Email> {
    let value = mail.get_headers().get_first_value("From")?;
    let list = mailparse::addrparse(&value).ok()?;
    let first = list.iter().find_map(|addr| match addr {
        mailparse::MailAddr::Single(info) => Some(info.addr.clone()),
        mailparse::MailAddr::Group(_) => None,
    })?;
    Email::parse(&first).ok()
}

/// The confirmation `raw` carries, if it is one. `carries_keys` says the
/// mail holds key blocks: then it is a submission, and a nonce-shaped
/// word in it is not read as a plain confirmation.
pub fn read_response(raw: &[u8], carries_keys: bool) -> Option<Response> {
    let mail = mailparse::parse_mail(raw).ok()?;
    let from = from_address(&mail)?;
    let mut plain = None;
    for part in mail.parts().filter(|part| part.subparts.is_empty()).take(MAX_PARTS) {
        let Ok(body) = part.get_body() else {
            continue;
        };
        match part.ctype.mimetype.as_str() {
            "application/vnd.gnupg.wks" => {
                let fields = wks_fields(&body);
                let field = |name: &str| {
                    fields
                        .iter()
                        .find(|(key, _)| key == name)
                        .map(|(_, value)| value.as_str())
                };
                if field("type") != Some("confirmation-response") {
                    continue;
                }
                let address = Email::parse(field("address")?).ok()?;
                let nonce = field("nonce")?.to_ascii_lowercase();
                return Some(Response {
                    from,
                    address,
                    nonce,
                    wks: true,
                });
            }
            "text/plain" if !carries_keys && plain.is_none() => plain = find_nonce(&body),
            _ => {}
        }
    }
    plain.map(|nonce| Response {
        address: from.clone(),
        from,
        nonce,
        wks: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_from_wks_parts_and_plain_replies() {
        let wks = b"From: A <a@example.org>\nTo: keys@example.org\nContent-Type: application/vnd.gnupg.wks\n\ntype: confirmation-response\nsender: keys@example.org\naddress: a@example.org\nnonce: 0123456789ABCDEF0123456789abcdef\n";
        let response = read_response(wks, false).unwrap();
        assert!(response.wks);
        assert_eq!(response.address.as_str(), "a@example.org");
        assert_eq!(response.nonce, "0123456789abcdef0123456789abcdef");

        let plain = b"From: a@example.org\n\n> nonce: 0123456789abcdef0123456789abcdef\nthanks\n";
        assert_eq!(
            read_response(plain, false).unwrap().nonce,
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(read_response(plain, true), None);
        let quoting = b"From: a@example.org\n\n> id 11111111111111111111111111111111\n> nonce: 0123456789abcdef0123456789abcdef\n";
        assert_eq!(
            read_response(quoting, false).unwrap().nonce,
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            read_response(b"From: a@example.org\n\nno nonce 0123456789abcdef here\n", false),
            None
        );
        let request = b"From: a@example.org\nContent-Type: application/vnd.gnupg.wks\n\ntype: confirmation-request\nnonce: 0123456789abcdef0123456789abcdef\n";
        assert_eq!(read_response(request, false), None);
        assert_eq!(read_response(b"\xff\xfe junk", false), None);
    }
}
