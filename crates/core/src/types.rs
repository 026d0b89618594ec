//! Identifier types, normalised once where data enters.
//!
//! An [`Email`] is always lower-case and syntactically plausible; a
//! [`Fingerprint`] is always upper-case hex of a v4 (40 digits) or v6 (64
//! digits) fingerprint. Code past the edges of the system never handles a
//! bare `String` for either, so comparisons and database keys are exact.

use crate::exit::{self, ExitStatus};
use std::fmt;
use std::str::FromStr;

/// Longest address accepted (RFC 5321 limits a path to 256 octets).
const MAX_EMAIL_LEN: usize = 254;

/// Why a string is not an [`Email`] or a [`Fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// Not of the form `local@domain.tld`, or holds characters an address can't.
    #[error("not an email address: {0:?}")]
    BadEmail(String),
    /// Not 40 or 64 hex digits.
    #[error("not an OpenPGP fingerprint: {0:?}")]
    BadFingerprint(String),
}

impl ExitStatus for IdentError {
    fn exit_code(&self) -> u8 {
        exit::DATAERR
    }
}

/// A lower-cased email address: the database key of a registration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

impl Email {
    /// Parses and lower-cases an address. Accepts `local@domain` where the
    /// domain has at least two labels; refuses spaces, control characters,
    /// angle brackets and anything over 254 bytes.
    pub fn parse(raw: &str) -> Result<Email, IdentError> {
        let trimmed = raw.trim();
        let bad = || IdentError::BadEmail(raw.chars().take(80).collect());
        if trimmed.is_empty() || trimmed.len() > MAX_EMAIL_LEN {
            return Err(bad());
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(bad)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .chars()
                .all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:@\"".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(bad());
        }
        Ok(Email(trimmed.to_ascii_lowercase()))
    }

    /// The address as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain part (after the `@`).
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, domain)| domain)
    }

    /// The same mailbox one domain level up, as RIPEM's lookup fallback
    /// does: `a@mail.cs.example.edu` → `a@cs.example.edu`. `None` once
    /// the domain has only two labels left.
    pub fn up_one_level(&self) -> Option<Email> {
        let (local, domain) = self.0.rsplit_once('@')?;
        if domain.matches('.').count() < 2 {
            return None;
        }
        let (_, rest) = domain.split_once('.')?;
        Some(Email(format!("{local}@{rest}")))
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Email {
    type Err = IdentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Email::parse(s)
    }
}

/// An OpenPGP primary-key fingerprint, upper-case hex without spaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Parses hex with optional `0x` prefix and optional spaces; accepts
    /// v4 (20 bytes) and v6 (32 bytes) fingerprints.
    pub fn parse(raw: &str) -> Result<Fingerprint, IdentError> {
        let trimmed = raw.trim();
        let hex = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        let compact: String = hex.chars().filter(|c| *c != ' ').collect();
        if !(compact.len() == 40 || compact.len() == 64) || !compact.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(IdentError::BadFingerprint(raw.chars().take(80).collect()));
        }
        Ok(Fingerprint(compact.to_ascii_uppercase()))
    }

    /// Builds a fingerprint from its raw bytes (20 or 32 of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<Fingerprint, IdentError> {
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        Fingerprint::parse(&hex)
    }

    /// The fingerprint as upper-case hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = IdentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fingerprint::parse(s)
    }
}

/// What a lookup asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A registered address.
    Email(Email),
    /// A key by its fingerprint (`0x…` in the protocol).
    Fingerprint(Fingerprint),
}

impl Query {
    /// Reads `0x<hex>` as a fingerprint and anything else as an address.
    pub fn parse(raw: &str) -> Result<Query, IdentError> {
        let trimmed = raw.trim();
        if trimmed.starts_with("0x") || trimmed.starts_with("0X") {
            if let Ok(fingerprint) = Fingerprint::parse(trimmed) {
                return Ok(Query::Fingerprint(fingerprint));
            }
        }
        Email::parse(trimmed).map(Query::Email)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::Email(email) => write!(f, "{email}"),
            Query::Fingerprint(fingerprint) => write!(f, "0x{fingerprint}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_lower_cased_and_checked() {
        assert_eq!(
            Email::parse(" Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@localhost",
            "a b@example.com",
            "<a@example.com>",
            "a@exa_mple.com",
            "a@-x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn up_one_level_stops_at_two_labels() {
        let email = Email::parse("a@mail.cs.example.edu").unwrap();
        let up = email.up_one_level().unwrap();
        assert_eq!(up.as_str(), "a@cs.example.edu");
        let up = up.up_one_level().unwrap();
        assert_eq!(up.as_str(), "a@example.edu");
        assert_eq!(up.up_one_level(), None);
    }

    #[test]
    fn fingerprint_forms() {
        let fpr = Fingerprint::parse("0x3a0f 0000 1111 2222 3333 4444 5555 6666 7777 8888").unwrap();
        assert_eq!(fpr.as_str(), "3A0F000011112222333344445555666677778888");
        assert!(Fingerprint::parse("0x1234").is_err());
        assert!(Fingerprint::parse(&"G".repeat(40)).is_err());
    }

    #[test]
    fn query_distinguishes_fingerprint_from_address() {
        let hex = "3A0F000011112222333344445555666677778888";
        assert!(matches!(Query::parse(&format!("0x{hex}")), Ok(Query::Fingerprint(_))));
        assert!(matches!(Query::parse("0xabc@example.com"), Ok(Query::Email(_))));
    }
}
