//! The Web Key Directory's names (draft-koch-openpgp-webkey-service): the
//! z-base-32 SHA-1 hash of a lower-cased local part, and the two URL
//! layouts. A WKD answer is the binary key of one address, holding only
//! its user IDs in the address's domain.

use sha1::{Digest, Sha1};

/// z-base-32's alphabet (RFC 6189 §5.1.6, as WKD uses it).
const ZBASE32: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// Encodes bytes in z-base-32, five bits per character, most significant first.
pub fn zbase32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ZBASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ZBASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The WKD hash of a local part: z-base-32 of SHA-1 of it, ASCII lower-cased.
pub fn local_part_hash(local: &str) -> String {
    zbase32(&Sha1::digest(local.to_ascii_lowercase().as_bytes()))
}

/// Whether `text` looks like a WKD hash (32 z-base-32 characters).
pub fn is_hash(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| ZBASE32.contains(&b))
}

/// A request under `/.well-known/openpgpkey/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WkdPath {
    /// `hu/<hash>`, in `domain` (the advanced layout) or the host's (direct).
    Key {
        /// The domain named in the path (advanced layout), else `None`.
        domain: Option<String>,
        /// The hash of the local part.
        hash: String,
    },
    /// The `policy` file.
    Policy(Option<String>),
    /// The `submission-address` file.
    SubmissionAddress(Option<String>),
}

/// Reads the part of a path after `/.well-known/openpgpkey/`; `None` when
/// it names nothing WKD has.
pub fn parse_path(rest: &str) -> Option<WkdPath> {
    let parts: Vec<&str> = rest.split('/').collect();
    let (domain, tail) = match parts.as_slice() {
        ["hu", _] | ["policy"] | ["submission-address"] => (None, &parts[..]),
        [domain, tail @ ..] if !tail.is_empty() => (Some(domain.to_ascii_lowercase()), tail),
        _ => return None,
    };
    match tail {
        ["hu", hash] if is_hash(hash) => Some(WkdPath::Key {
            domain,
            hash: (*hash).to_string(),
        }),
        ["policy"] => Some(WkdPath::Policy(domain)),
        ["submission-address"] => Some(WkdPath::SubmissionAddress(domain)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_the_draft() {
        // The example of draft-koch-openpgp-webkey-service §3.1.
        assert_eq!(local_part_hash("Joe.Doe"), "iy9q119eutrkn8s1mk4r39qejnbu3n5q");
        assert!(is_hash("iy9q119eutrkn8s1mk4r39qejnbu3n5q"));
        assert!(!is_hash("iy9q119eutrkn8s1mk4r39qejnbu3n5l"));
        assert_eq!(zbase32(&[0]), "yy");
    }

    #[test]
    fn both_layouts() {
        let hash = "iy9q119eutrkn8s1mk4r39qejnbu3n5q";
        assert_eq!(
            parse_path(&format!("hu/{hash}")),
            Some(WkdPath::Key {
                domain: None,
                hash: hash.into()
            })
        );
        assert_eq!(
            parse_path(&format!("Example.org/hu/{hash}")),
            Some(WkdPath::Key {
                domain: Some("example.org".into()),
                hash: hash.into()
            })
        );
        assert_eq!(parse_path("policy"), Some(WkdPath::Policy(None)));
        assert_eq!(
            parse_path("example.org/submission-address"),
            Some(WkdPath::SubmissionAddress(Some("example.org".into())))
        );
        for bad in ["", "hu", "hu/short", "example.org/hu", "a/b/c/d", "example.org/other"] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }
}
