//! What keysync reads of an update, and the checks a received one passes.
//!
//! The update's form and checks are `ripem-update`'s: [`inspect`] reads
//! an update (refusing any text that is not its one canonical form, so
//! the id names it on every server alike) and [`verify`] adds the checks
//! a received update passes before it is stored or forwarded: its keys
//! as if mailed, under this server's key policy, and the owner's
//! signature on a change or removal. keysync keeps only what it needs to
//! store and announce an update ([`UpdateMeta`]).

use ripem_core::types::Fingerprint;
use ripem_openpgp::KeyPolicy;
use ripem_update::Update;

pub use ripem_update::{id_of, UpdateError};

/// The fields keysync uses, and the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateMeta {
    /// Lower-case hex SHA-256 of the bytes.
    pub id: String,
    /// The accepting server (`Origin:`).
    pub origin: String,
    /// The key the update is about.
    pub fingerprint: Fingerprint,
}

fn meta(update: &Update) -> UpdateMeta {
    UpdateMeta {
        id: update.id().to_string(),
        origin: update.origin().to_string(),
        fingerprint: update.fingerprint().clone(),
    }
}

/// True for a well-formed id: 64 lower-case hex digits.
pub fn is_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads an update in its canonical form (one keyreg made, or one
/// stored already).
pub fn inspect(bytes: &[u8]) -> Result<UpdateMeta, UpdateError> {
    Update::parse(bytes).map(|update| meta(&update))
}

/// Reads and checks an update received from a peer.
pub fn verify(bytes: &[u8], policy: &KeyPolicy) -> Result<UpdateMeta, UpdateError> {
    let update = Update::parse(bytes)?;
    ripem_update::check(&update, policy)?;
    Ok(meta(&update))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A register update in canonical form whose key block is not a real
    /// key: it reads, it does not check.
    pub(crate) fn sample(n: u32) -> Vec<u8> {
        format!(
            "Update: register\nOrigin: a.example.org\nTime: {}\nFingerprint: {}\nKey:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n \n mQINBGV{n}=\n -----END PGP PUBLIC KEY BLOCK-----\n",
            1_700_000_000_000u64 + u64::from(n),
            "AB".repeat(20)
        )
        .into_bytes()
    }

    #[test]
    fn reads_the_fields_and_checks_the_key() {
        let bytes = sample(1);
        let meta = inspect(&bytes).unwrap();
        assert_eq!(meta.origin, "a.example.org");
        assert_eq!(meta.fingerprint.as_str(), "AB".repeat(20));
        assert!(is_id(&meta.id));
        assert_eq!(meta.id, id_of(&bytes));
        assert!(
            verify(&bytes, &KeyPolicy::default()).is_err(),
            "a fake key passes no check"
        );
    }

    #[test]
    fn refuses_what_is_not_canonical() {
        let text = String::from_utf8(sample(1)).unwrap();
        let cases = [
            text.trim_end().to_string(),
            text.replace('\n', "\r\n"),
            text.replace("Update: register", "Update: steal"),
            text.replace("Origin: a.example.org\n", ""),
            format!("{text}\n"),
            format!(" x\n{text}"),
        ];
        for case in cases {
            assert!(inspect(case.as_bytes()).is_err(), "{case:?}");
        }
        assert!(inspect(&[0xff, b'\n']).is_err());
    }
}
