//! The Web Key Directory's names (draft-koch-openpgp-webkey-service):
//! the z-base-32 SHA-1 hash of a lower-cased local part, which names a
//! key's file under `hu/`. hkpd serves WKD from the database and db2flat
//! writes a static tree; both name files here.

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
}
