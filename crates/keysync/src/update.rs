//! What keysync reads of an update before it stores or forwards one.
//!
//! An update is text: `Name: value` lines ending in LF, continuation
//! lines starting with one space (armored blocks); its id is the
//! lower-case hex SHA-256 of its bytes exactly. keysync needs four fields
//! (`Update:` first, `Origin:`, `Time:`, `Fingerprint:`) and refuses
//! anything not in that canonical shape: a CR, a NUL or other control
//! character, an empty or nameless line, a missing final LF, a field
//! twice. The key checks and signatures of the update proper are keyreg's
//! rules and are applied there again; here a malformed update is never
//! stored, forwarded or delivered.

use std::fmt::Write as _;

use ripem_core::types::Fingerprint;
use sha2::{Digest, Sha256};

/// The kinds of update.
pub const KINDS: [&str; 4] = ["register", "merge", "change", "remove"];

/// Why bytes are not an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Not in the canonical text form.
    #[error("not canonical: {0}")]
    NotCanonical(String),
    /// A field keysync needs is missing or malformed.
    #[error("field {field}: {problem}")]
    Field {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// The fields keysync uses, and the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateMeta {
    /// Lower-case hex SHA-256 of the bytes.
    pub id: String,
    /// The kind (`Update:`).
    pub kind: String,
    /// The accepting server (`Origin:`).
    pub origin: String,
    /// The accepting server's time, milliseconds since the epoch.
    pub time_ms: u64,
    /// The key the update is about.
    pub fingerprint: Fingerprint,
}

/// The id of `bytes`: lower-case hex SHA-256.
pub fn id_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// True for a well-formed id: 64 lower-case hex digits.
pub fn is_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn not_canonical(problem: &str) -> UpdateError {
    UpdateError::NotCanonical(problem.to_string())
}

/// Checks the canonical shape and reads the four fields.
pub fn inspect(bytes: &[u8]) -> Result<UpdateMeta, UpdateError> {
    let text = std::str::from_utf8(bytes).map_err(|_| not_canonical("not UTF-8"))?;
    let body = text.strip_suffix('\n').ok_or_else(|| not_canonical("no final LF"))?;
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(not_canonical("a control character (CR, tab, NUL...)"));
    }
    let mut fields: Vec<(&str, &str)> = Vec::new();
    for (number, line) in body.split('\n').enumerate() {
        if line.starts_with(' ') && number > 0 {
            continue;
        }
        let (name, value) = line
            .split_once(": ")
            .filter(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .ok_or_else(|| UpdateError::NotCanonical(format!("line {} is not `Name: value`", number + 1)))?;
        if fields.iter().any(|(seen, _)| *seen == name) {
            return Err(UpdateError::NotCanonical(format!("field {name} twice")));
        }
        fields.push((name, value));
    }
    let field = |name: &'static str| {
        fields
            .iter()
            .find(|(seen, _)| *seen == name)
            .map(|(_, value)| *value)
            .ok_or(UpdateError::Field {
                field: name,
                problem: "missing".into(),
            })
    };
    let bad = |field: &'static str, problem: &str| UpdateError::Field {
        field,
        problem: problem.to_string(),
    };
    if fields.first().map(|(name, _)| *name) != Some("Update") {
        return Err(bad("Update", "must be the first line"));
    }
    let kind = field("Update")?;
    if !KINDS.contains(&kind) {
        return Err(bad("Update", "not register, merge, change or remove"));
    }
    let origin = field("Origin")?;
    if origin.is_empty() || origin.len() > 255 || !origin.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("Origin", "not a server id"));
    }
    let time = field("Time")?;
    let time_ms = time
        .parse::<u64>()
        .ok()
        .filter(|_| time.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| bad("Time", "not milliseconds since the epoch"))?;
    let fingerprint = Fingerprint::parse(field("Fingerprint")?).map_err(|err| bad("Fingerprint", &err.to_string()))?;
    Ok(UpdateMeta {
        id: id_of(bytes),
        kind: kind.to_string(),
        origin: origin.to_string(),
        time_ms,
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Update: register\nOrigin: a.example.org\nTime: 1700000000000\nFingerprint: 0123456789ABCDEF0123456789ABCDEF01234567\nKey: -----BEGIN PGP PUBLIC KEY BLOCK-----\n \n mQINBGV=\n -----END PGP PUBLIC KEY BLOCK-----\n";

    #[test]
    fn reads_the_fields() {
        let meta = inspect(SAMPLE.as_bytes()).unwrap();
        assert_eq!(meta.kind, "register");
        assert_eq!(meta.origin, "a.example.org");
        assert_eq!(meta.time_ms, 1_700_000_000_000);
        assert_eq!(meta.fingerprint.as_str(), "0123456789ABCDEF0123456789ABCDEF01234567");
        assert!(is_id(&meta.id));
        assert_eq!(meta.id, id_of(SAMPLE.as_bytes()));
    }

    #[test]
    fn refuses_what_is_not_canonical() {
        let cases = [
            SAMPLE.trim_end().to_string(),
            SAMPLE.replace('\n', "\r\n"),
            SAMPLE.replace("Update: register", "Update: steal"),
            SAMPLE.replace("Time: 1700000000000", "Time: +17"),
            SAMPLE.replace("Origin: a.example.org\n", ""),
            SAMPLE.replace("Fingerprint: 0123", "Fingerprint: zz23"),
            format!("Origin: b\n{SAMPLE}"),
            format!("{SAMPLE}Origin: b\n"),
            format!("{SAMPLE}\n"),
            SAMPLE.replace("Key:", "Key\u{0}:"),
            format!(" x\n{SAMPLE}"),
        ];
        for case in cases {
            assert!(inspect(case.as_bytes()).is_err(), "{case:?}");
        }
        assert!(inspect(&[0xff, b'\n']).is_err());
    }
}
