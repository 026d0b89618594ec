//! The key record: RIPEM's `Name: value` text format.
//!
//! A record is what the database stores per key, what keyserv sends in a
//! `USERINFO` answer and what the flat file lists. One field per line;
//! a value continues on following lines that start with one space (an
//! empty continuation line is a lone space). Unknown fields are ignored
//! when reading, so older readers survive newer writers. This is the only
//! parser and printer of records in the project.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::types::{Email, Fingerprint, IdentError};

/// The largest record accepted when reading, far above one datagram.
pub const MAX_RECORD_LEN: usize = 1 << 20;

/// Why text is not a valid record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A required field is absent.
    #[error("record has no {0} field")]
    Missing(&'static str),
    /// A field's value does not parse.
    #[error("record field {field}: {reason}")]
    BadField {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A line is neither `Name: value` nor a continuation.
    #[error("record line {0} is not a field")]
    BadLine(usize),
    /// Larger than [`MAX_RECORD_LEN`].
    #[error("record larger than {MAX_RECORD_LEN} bytes")]
    TooLarge,
}

impl From<IdentError> for RecordError {
    fn from(err: IdentError) -> Self {
        RecordError::BadField {
            field: "User/Fingerprint",
            reason: err.to_string(),
        }
    }
}

/// One registered key and the addresses it is registered under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Every address registered to this key, in registration order; none
    /// for a revoked key whose addresses all passed to successor keys (its
    /// record stays published, so clients learn of the revocation).
    pub users: Vec<Email>,
    /// The key's primary fingerprint.
    pub fingerprint: Fingerprint,
    /// When the key was first registered.
    pub registered: DateTime<Utc>,
    /// When the record last changed (signed requests older than this are stale).
    pub updated: DateTime<Utc>,
    /// The stripped public key, ASCII-armored, lines without trailing newline.
    pub key_armor: String,
}

fn timestamp(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(field: &'static str, value: &str) -> Result<DateTime<Utc>, RecordError> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|time| time.with_timezone(&Utc))
        .map_err(|err| RecordError::BadField {
            field,
            reason: err.to_string(),
        })
}

impl Record {
    /// The record as text, each line ended by `\n`.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.key_armor.len() + 256);
        for user in &self.users {
            out.push_str("User: ");
            out.push_str(user.as_str());
            out.push('\n');
        }
        out.push_str("Fingerprint: ");
        out.push_str(self.fingerprint.as_str());
        out.push('\n');
        out.push_str("Registered: ");
        out.push_str(&timestamp(&self.registered));
        out.push('\n');
        out.push_str("Updated: ");
        out.push_str(&timestamp(&self.updated));
        out.push('\n');
        out.push_str("PublicKeyInfo:\n");
        // split, not lines: every line of the armor prints, a last empty one too.
        for line in self.key_armor.split('\n') {
            out.push(' ');
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Parses a record; `\r\n` line ends are accepted.
    pub fn parse(text: &str) -> Result<Record, RecordError> {
        if text.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLarge);
        }
        let mut users = Vec::new();
        let mut fingerprint = None;
        let mut registered = None;
        let mut updated = None;
        let mut key_lines: Option<Vec<&str>> = None;
        let mut in_key = false;
        for (index, raw_line) in text.lines().enumerate() {
            let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
            if let Some(continuation) = line.strip_prefix(' ') {
                if in_key {
                    if let Some(lines) = key_lines.as_mut() {
                        // Trailing blanks mean nothing in armor, and the
                        // printer drops them: drop them here too.
                        lines.push(continuation.trim_end());
                    }
                }
                continue;
            }
            if line.is_empty() {
                in_key = false;
                continue;
            }
            let (name, value) = line.split_once(':').ok_or(RecordError::BadLine(index + 1))?;
            let value = value.trim();
            in_key = false;
            match name {
                "User" => users.push(Email::parse(value)?),
                "Fingerprint" => fingerprint = Some(Fingerprint::parse(value)?),
                "Registered" => registered = Some(parse_time("Registered", value)?),
                "Updated" => updated = Some(parse_time("Updated", value)?),
                "PublicKeyInfo" => {
                    in_key = true;
                    key_lines = Some(Vec::new());
                }
                _ => {}
            }
        }
        let key_armor = key_lines
            .filter(|lines| !lines.is_empty())
            .ok_or(RecordError::Missing("PublicKeyInfo"))?
            .join("\n");
        Ok(Record {
            users,
            fingerprint: fingerprint.ok_or(RecordError::Missing("Fingerprint"))?,
            registered: registered.ok_or(RecordError::Missing("Registered"))?,
            updated: updated.ok_or(RecordError::Missing("Updated"))?,
            key_armor,
        })
    }

    /// The first `User:` address in a record's text, read without parsing
    /// the rest (the dump sorts a million records by it), trimmed as
    /// [`Record::parse`] trims it. `None` when the record has no address (a
    /// revoked key whose addresses passed on) or the text is no record.
    pub fn first_user(text: &[u8]) -> Option<&[u8]> {
        text.split(|&b| b == b'\n')
            .find_map(|line| line.strip_prefix(b"User:"))
            .map(<[u8]>::trim_ascii)
    }

    /// Whether stored bytes begin like a record printed by
    /// [`Record::to_text`] with at least one address: the shape check for
    /// values written before they carried checksums.
    pub fn starts_like_record(text: &[u8]) -> bool {
        text.starts_with(b"User: ")
    }

    /// Splits text holding several records separated by blank lines (as in
    /// the flat file), skipping `#` comment lines; yields each record's text.
    pub fn split_many(text: &str) -> impl Iterator<Item = String> + '_ {
        Record::split_lines(text.lines())
    }

    /// [`Record::split_many`] over lines as they are read (a flat file of
    /// any size, for `keyreg --import`).
    pub fn split_lines<'a, S: AsRef<str> + 'a>(
        lines: impl Iterator<Item = S> + 'a,
    ) -> impl Iterator<Item = String> + 'a {
        let mut lines = lines.filter(|line| !line.as_ref().starts_with('#')).peekable();
        std::iter::from_fn(move || {
            while lines.peek().is_some_and(|line| line.as_ref().trim().is_empty()) {
                lines.next();
            }
            lines.peek()?;
            let mut chunk = String::new();
            while let Some(line) =
                lines.next_if(|line| !line.as_ref().trim().is_empty() || line.as_ref().starts_with(' '))
            {
                chunk.push_str(line.as_ref());
                chunk.push('\n');
            }
            Some(chunk)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let time = DateTime::parse_from_rfc3339("2026-11-22T01:21:30Z")
            .unwrap()
            .with_timezone(&Utc);
        Record {
            users: vec![
                Email::parse("alice@example.com").unwrap(),
                Email::parse("alice@lists.example.org").unwrap(),
            ],
            fingerprint: Fingerprint::parse("3A0F000011112222333344445555666677778888").unwrap(),
            registered: time,
            updated: time,
            key_armor: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZabc\n=AbCd\n-----END PGP PUBLIC KEY BLOCK-----"
                .into(),
        }
    }

    #[test]
    fn first_user_reads_as_parse_does() {
        assert_eq!(
            Record::first_user(b"User:  a@example.org \r\nUser: b@example.org\n"),
            Some(&b"a@example.org"[..])
        );
        assert_eq!(Record::first_user(b"Fingerprint: AB\nPublicKeyInfo:\n x\n"), None);
        assert_eq!(Record::first_user(b""), None);
        assert!(Record::starts_like_record(b"User: a@example.org\n"));
        assert!(!Record::starts_like_record(b"\x01junk"));
    }

    #[test]
    fn round_trip() {
        let record = sample();
        let text = record.to_text();
        assert!(text.starts_with("User: alice@example.com\nUser: alice@lists.example.org\nFingerprint: 3A0F"));
        assert!(text.contains("PublicKeyInfo:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n \n mDMEZabc\n"));
        assert_eq!(Record::parse(&text).unwrap(), record);
        assert_eq!(Record::parse(&text.replace('\n', "\r\n")).unwrap(), record);
    }

    /// Found by the property test `records_round_trip`: a last empty armor
    /// line was dropped when printing, so the record did not read back equal.
    #[test]
    fn trailing_empty_armor_line_round_trips() {
        let record = Record {
            key_armor: "a\n".into(),
            ..sample()
        };
        assert_eq!(Record::parse(&record.to_text()).unwrap(), record);
    }

    /// Found by the cargo-fuzz target `record`: a key line with a trailing
    /// blank parsed with the blank but printed without it.
    #[test]
    fn trailing_blank_on_a_key_line_round_trips() {
        let text = sample().to_text().replace(" mDMEZabc\n", " mDMEZabc \n");
        let record = Record::parse(&text).unwrap();
        assert_eq!(record, sample());
        assert_eq!(Record::parse(&record.to_text()).unwrap(), record);
    }

    #[test]
    fn missing_and_bad_fields_are_errors() {
        let text = sample().to_text();
        let no_fpr: String = text
            .lines()
            .filter(|l| !l.starts_with("Fingerprint"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(matches!(
            Record::parse(&no_fpr),
            Err(RecordError::Missing("Fingerprint"))
        ));
        assert!(Record::parse(&text.replace("2026-11-22T01:21:30Z", "yesterday")).is_err());
        assert!(Record::parse("garbage line\n").is_err());
        assert!(Record::parse("").is_err());
    }

    #[test]
    fn split_many_separates_on_blank_lines() {
        let one = sample().to_text();
        let text = format!("# Created on today\n\n{one}\n{one}\n");
        let parts: Vec<String> = Record::split_many(&text).collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(Record::parse(&parts[1]).unwrap(), sample());
    }
}
