//! Update ids and prefixes of the id space, and their hex forms on the wire.
//!
//! An [`Id`] is the SHA-256 of an update's canonical bytes. A [`Prefix`] is
//! its first 0 to 64 hex digits (nibbles): the name of a node of the
//! summary's 16-ary tree. Both are parsed strictly (lower-case hex, exact
//! lengths, no digits past a prefix's length), so every value has exactly
//! one spelling and two sides that hold the same sets write the same bytes.

use std::fmt;

use crate::error::Malformed;

/// Bytes in an update id.
pub const ID_BYTES: usize = 32;
/// Hex digits in an update id: the deepest a prefix goes.
pub const NIBBLES: usize = 2 * ID_BYTES;

/// An update id: SHA-256 over the update's canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub [u8; ID_BYTES]);

impl Id {
    /// Hex digit `i` (0 = the high half of the first byte).
    pub fn nibble(&self, i: usize) -> u8 {
        nibble_of(&self.0, i)
    }

    /// The id spelled as 64 lower-case hex digits.
    pub fn parse_hex(text: &str) -> Result<Id, Malformed> {
        let digits = text.as_bytes();
        if digits.len() != NIBBLES {
            return Err(Malformed::Id);
        }
        let mut bytes = [0u8; ID_BYTES];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            bytes[i] = (hex_value(pair[0]).ok_or(Malformed::Id)? << 4) | hex_value(pair[1]).ok_or(Malformed::Id)?;
        }
        Ok(Id(bytes))
    }

    /// Appends the 64 hex digits to `out`.
    pub fn write_hex(&self, out: &mut String) {
        write_hex(&self.0, out);
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(NIBBLES);
        self.write_hex(&mut text);
        f.write_str(&text)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The first `len` hex digits of an id: one node of the summary's tree.
/// Digits past `len` are kept zero, so equal prefixes compare equal.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    len: u8,
    bytes: [u8; ID_BYTES],
}

impl Prefix {
    /// The empty prefix: the whole id space.
    pub const ROOT: Prefix = Prefix {
        len: 0,
        bytes: [0; ID_BYTES],
    };

    /// How many hex digits the prefix has (0..=64).
    pub fn digits(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether this is the root (no digits).
    pub fn is_root(&self) -> bool {
        self.len == 0
    }

    /// Hex digit `i`, for `i < len`.
    pub fn nibble(&self, i: usize) -> u8 {
        nibble_of(&self.bytes, i)
    }

    /// The prefix one digit longer; `None` at full depth.
    pub fn child(&self, nibble: u8) -> Option<Prefix> {
        let len = self.digits();
        if len >= NIBBLES || nibble > 15 {
            return None;
        }
        let mut bytes = self.bytes;
        bytes[len / 2] |= if len & 1 == 0 { nibble << 4 } else { nibble };
        Some(Prefix {
            len: self.len + 1,
            bytes,
        })
    }

    /// The prefix one digit shorter and the digit dropped; `None` at the root.
    pub fn parent(&self) -> Option<(Prefix, u8)> {
        let len = self.digits().checked_sub(1)?;
        let nibble = self.nibble(len);
        let mut bytes = self.bytes;
        bytes[len / 2] &= if len & 1 == 0 { 0x0f } else { 0xf0 };
        Some((Prefix { len: len as u8, bytes }, nibble))
    }

    /// Whether `id` starts with this prefix.
    pub fn contains(&self, id: &Id) -> bool {
        let len = self.digits();
        let whole = len / 2;
        self.bytes[..whole] == id.0[..whole] && (len & 1 == 0 || self.bytes[whole] == id.0[whole] & 0xf0)
    }

    /// Parses `/` followed by up to 64 lower-case hex digits.
    pub fn parse(text: &str) -> Result<Prefix, Malformed> {
        let digits = text.strip_prefix('/').ok_or(Malformed::Prefix)?.as_bytes();
        if digits.len() > NIBBLES {
            return Err(Malformed::Prefix);
        }
        let mut prefix = Prefix::ROOT;
        for &digit in digits {
            let value = hex_value(digit).ok_or(Malformed::Prefix)?;
            prefix = prefix.child(value).ok_or(Malformed::Prefix)?;
        }
        Ok(prefix)
    }

    /// Appends `/` and the digits to `out`.
    pub fn write(&self, out: &mut String) {
        out.push('/');
        for i in 0..self.digits() {
            out.push(char::from(HEX[usize::from(self.nibble(i))]));
        }
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        self.write(&mut text);
        f.write_str(&text)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble_of(bytes: &[u8; ID_BYTES], i: usize) -> u8 {
    let byte = bytes[i / 2];
    if i & 1 == 0 {
        byte >> 4
    } else {
        byte & 0x0f
    }
}

/// The value of one lower-case hex digit.
pub(crate) fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// Appends `bytes` as lower-case hex.
pub(crate) fn write_hex(bytes: &[u8], out: &mut String) {
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_round_trip_and_nest() {
        let id = Id::parse_hex(&"3a".repeat(32)).unwrap();
        let mut prefix = Prefix::ROOT;
        for i in 0..NIBBLES {
            assert!(prefix.contains(&id));
            let child = prefix.child(id.nibble(i)).unwrap();
            assert_eq!(child.parent(), Some((prefix, id.nibble(i))));
            let mut text = String::new();
            child.write(&mut text);
            assert_eq!(Prefix::parse(&text), Ok(child));
            prefix = child;
        }
        assert_eq!(prefix.child(0), None);
        assert!(!Prefix::parse("/4").unwrap().contains(&id));
    }

    #[test]
    fn odd_spellings_are_refused() {
        for text in ["", "3a", "/3A", "/g", &format!("/{}", "0".repeat(65))] {
            assert_eq!(Prefix::parse(text), Err(Malformed::Prefix), "{text:?}");
        }
        for text in ["", &"A".repeat(64), &"0".repeat(63), &"0".repeat(65)] {
            assert_eq!(Id::parse_hex(text), Err(Malformed::Id), "{text:?}");
        }
    }
}
