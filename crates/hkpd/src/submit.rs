//! Keys submitted over HTTP (`POST /pks/add`, `POST /vks/v1/upload`):
//! checked here with keyreg's own rules so that junk is refused at once
//! with the reason, then written into the spool's `add` queue as a
//! request mail, the way copymail writes one (a temp file, fsynced,
//! renamed into `new/`). hkpd never writes the database: keyreg registers
//! the key in its next batch, first come first served, as if it had been
//! mailed. The request has no return address (nobody is answered by
//! mail) and carries [`WEB_SUBMISSION_HEADER`], so keyreg tells each
//! address it newly registers. What is spooled is the checked, stripped
//! key, re-armored here: nothing the client sent but key packets reaches
//! the mail.

use std::path::PathBuf;

use chrono::Utc;
use ripem_core::mail::WEB_SUBMISSION_HEADER;
use ripem_core::spool::{QueueName, Spool, SpoolError};
use ripem_openpgp::{check_key, find_armored_keys, parse_armored_keys, parse_binary_keys, CheckedKey, KeyPolicy};

/// The keys of one submission that pass the checks, and why the others
/// don't.
#[derive(Debug, Default)]
pub struct Submission {
    /// Keys to register.
    pub keys: Vec<CheckedKey>,
    /// One line per key or block refused.
    pub refused: Vec<String>,
}

/// Reads the keys of a submission (armored blocks, or binary packets),
/// checking each as keyreg will; at most `max_keys` are considered.
pub fn read_keys(keytext: &[u8], policy: &KeyPolicy, max_keys: usize) -> Submission {
    let mut submission = Submission::default();
    let text = String::from_utf8_lossy(keytext);
    let blocks = find_armored_keys(&text);
    let mut parsed = Vec::new();
    if blocks.is_empty() {
        match parse_binary_keys(keytext) {
            Ok(keys) => parsed.extend(keys),
            Err(err) => submission.refused.push(format!("no key: {err}")),
        }
    }
    for block in blocks {
        match parse_armored_keys(block) {
            Ok(keys) => parsed.extend(keys),
            Err(err) => submission.refused.push(err.to_string()),
        }
        if parsed.len() >= max_keys {
            break;
        }
    }
    if parsed.len() > max_keys {
        submission.refused.push(format!(
            "{} keys beyond the first {max_keys} were not looked at",
            parsed.len() - max_keys
        ));
        parsed.truncate(max_keys);
    }
    for key in parsed {
        match check_key(key, policy) {
            Ok(checked) => submission.keys.push(checked),
            Err(err) => submission.refused.push(err.to_string()),
        }
    }
    submission
}

/// The request mail for `keys`, submitted by `via` (`hkp`, `vks`).
pub fn request_mail(keys: &[CheckedKey], via: &str) -> Vec<u8> {
    let mut mail = format!(
        "Subject: key submitted over the web ({via})\nDate: {}\n{WEB_SUBMISSION_HEADER}: {via}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n",
        Utc::now().to_rfc2822()
    );
    for key in keys {
        mail.push_str(&key.to_armored());
        mail.push('\n');
    }
    mail.into_bytes()
}

/// Spools the request mail for `keys` into the `add` queue; returns its path.
pub fn spool(spool: &Spool, keys: &[CheckedKey], via: &str) -> Result<PathBuf, SpoolError> {
    let mail = request_mail(keys, via);
    spool.deliver(QueueName::Add, &mut mail.as_slice(), u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_is_refused_with_a_reason() {
        let submission = read_keys(b"not a key", &KeyPolicy::default(), 10);
        assert!(submission.keys.is_empty());
        assert_eq!(submission.refused.len(), 1);
        let submission = read_keys(
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
            &KeyPolicy::default(),
            10,
        );
        assert!(submission.keys.is_empty() && !submission.refused.is_empty());
    }

    #[test]
    fn the_mail_has_no_return_address() {
        let mail = request_mail(&[], "hkp");
        let parsed = ripem_core::mail::RequestMail::parse(&mail).unwrap();
        assert!(matches!(
            parsed.return_address,
            ripem_core::mail::ReturnAddress::NoReply(_)
        ));
        assert_eq!(parsed.web_submission.as_deref(), Some("hkp"));
    }
}
