//! The Web Key Directory's URL layouts (draft-koch-openpgp-webkey-service),
//! direct and advanced; the hashes are `ripem_core::wkd`'s. A WKD answer is the binary key of one address, holding only
//! its user IDs in the address's domain.

pub use ripem_core::wkd::{is_hash, local_part_hash};

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
