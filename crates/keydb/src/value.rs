//! Stored values carry a checksum, so damage is found when it is read.
//!
//! A value is written as one marker byte (`0x01`), the CRC-32 of the
//! payload (4 bytes, little-endian) and the payload. Every read checks the
//! CRC: a block of junk in a record, an address entry or the key-ID index
//! is reported as damage instead of being served or trusted. Values written
//! before checksums existed are recognised by their shape (a record starts
//! with `User: `, index entries are hex) and still read, unchecked;
//! `keyreg --rebuild` rewrites them with checksums.

use ripem_core::record::Record;

/// The marker byte of a checksummed value.
const MARKER: u8 = 0x01;
/// Marker and CRC.
pub(super) const HEADER_LEN: usize = 5;

/// `payload` as it is stored.
pub(super) fn seal(payload: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(payload.len() + HEADER_LEN);
    value.push(MARKER);
    value.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    value.extend_from_slice(payload);
    value
}

/// The payload of a stored value, or `None` if its checksum does not match
/// (or it is neither checksummed nor a legacy printable value).
pub(super) fn open(value: &[u8]) -> Option<&[u8]> {
    match value.first() {
        Some(&MARKER) => {
            let crc = u32::from_le_bytes(value.get(1..HEADER_LEN)?.try_into().ok()?);
            let payload = &value[HEADER_LEN..];
            (crc32fast::hash(payload) == crc).then_some(payload)
        }
        // A legacy value, written before checksums: a record, or hex
        // (an address entry, a key-ID list). A damaged marker byte reads
        // as neither.
        _ if Record::starts_like_record(value) => Some(value),
        _ if !value.is_empty() && value.iter().all(|b| b.is_ascii_hexdigit() || *b == b' ') => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_and_damage_is_found() {
        let sealed = seal(b"User: a@example.org\n");
        assert_eq!(open(&sealed), Some(&b"User: a@example.org\n"[..]));
        for index in 0..sealed.len() {
            let mut damaged = sealed.clone();
            damaged[index] ^= 0x20;
            assert_eq!(open(&damaged), None, "byte {index}");
        }
        assert_eq!(open(&sealed[..3]), None, "truncated");
        assert_eq!(open(b""), None);
        assert_eq!(open(b"\0\0junk"), None);
        assert_eq!(open(b"ABCDEF0123"), Some(&b"ABCDEF0123"[..]), "legacy");
        assert_eq!(open(&seal(b"")), Some(&b""[..]));
    }
}
