//! What a client asks for, read once where the request enters: an HKP
//! `search=` value or a VKS path segment becomes a [`Search`], or a
//! [`SearchError`] that is answered 400. Search by address is exact (the
//! registry maps an address to one key); key IDs are 16 hex digits, of a
//! primary key or a subkey; fingerprints 40 (v4) or 64 (v6). Short
//! (8-digit) key IDs are refused: they collide too easily to name a key.

use ripem_core::types::{Email, Fingerprint};

/// A key search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// The key registered to an address.
    Email(Email),
    /// The keys having a primary key or subkey with this key ID (16
    /// upper-case hex digits).
    KeyId(String),
    /// The key with this primary fingerprint.
    Fingerprint(Fingerprint),
}

/// Why a search can't be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// An 8-digit key ID.
    #[error("short key IDs are not accepted: use 16 hex digits or the fingerprint")]
    ShortKeyId,
    /// `0x` followed by something that is not a key ID or fingerprint.
    #[error("a key ID is 16 hex digits and a fingerprint 40 or 64")]
    BadHex,
    /// Neither an address nor a key ID nor a fingerprint.
    #[error("search by exact email address, 0x + 16-digit key ID or 0x + fingerprint")]
    Unsupported,
    /// No `search=` parameter, or an empty one.
    #[error("no search given")]
    Missing,
}

fn all_hex(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Search {
    /// Reads an HKP `search=` value (already percent-decoded): `0x` + hex,
    /// or an address, bare, in `<…>`, or as `Name <address>`.
    pub fn parse_hkp(raw: &str) -> Result<Search, SearchError> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(SearchError::Missing);
        }
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            return Search::from_hex(hex);
        }
        // A bare fingerprint (what some clients send without 0x).
        if all_hex(text) && (text.len() == 40 || text.len() == 64) {
            return Search::from_hex(text);
        }
        if let Ok(email) = Email::parse(text) {
            return Ok(Search::Email(email));
        }
        let inner = text
            .rsplit_once('<')
            .and_then(|(_, rest)| rest.strip_suffix('>'))
            .ok_or(SearchError::Unsupported)?;
        Email::parse(inner)
            .map(Search::Email)
            .map_err(|_| SearchError::Unsupported)
    }

    /// Reads hex digits (without `0x`) as a key ID or fingerprint.
    pub fn from_hex(hex: &str) -> Result<Search, SearchError> {
        if !all_hex(hex) {
            return Err(SearchError::BadHex);
        }
        match hex.len() {
            8 => Err(SearchError::ShortKeyId),
            16 => Ok(Search::KeyId(hex.to_ascii_uppercase())),
            40 | 64 => Fingerprint::parse(hex)
                .map(Search::Fingerprint)
                .map_err(|_| SearchError::BadHex),
            _ => Err(SearchError::BadHex),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkp_searches() {
        let fpr = "3A0F000011112222333344445555666677778888";
        assert!(matches!(
            Search::parse_hkp(&format!("0x{fpr}")),
            Ok(Search::Fingerprint(_))
        ));
        assert!(matches!(Search::parse_hkp(fpr), Ok(Search::Fingerprint(_))));
        assert_eq!(Search::parse_hkp("0x1111222233334444abcd"), Err(SearchError::BadHex));
        assert_eq!(
            Search::parse_hkp("0x55556666aaaabbbb"),
            Ok(Search::KeyId("55556666AAAABBBB".into()))
        );
        assert_eq!(Search::parse_hkp("0xAAAABBBB"), Err(SearchError::ShortKeyId));
        assert_eq!(Search::parse_hkp("0xnothex!"), Err(SearchError::BadHex));
        let alice = Ok(Search::Email(Email::parse("alice@example.org").unwrap()));
        assert_eq!(Search::parse_hkp("Alice@Example.org"), alice);
        assert_eq!(Search::parse_hkp("<alice@example.org>"), alice);
        assert_eq!(Search::parse_hkp("Alice Liddell <alice@example.org>"), alice);
        assert_eq!(Search::parse_hkp("Alice"), Err(SearchError::Unsupported));
        assert_eq!(Search::parse_hkp(" "), Err(SearchError::Missing));
    }
}
