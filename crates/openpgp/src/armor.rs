//! Armored blocks: finding them in text, and reading their payload.
//!
//! One rule finds every kind of block (public keys, cleartext-signed and
//! inline-signed messages), in a mail body, a signed text or a file read
//! line by line ([`public_key_blocks`]): a block runs from a line starting
//! with its BEGIN armor line to the next line starting with its END armor
//! line, both armor lines included, and ends with the END marker (anything
//! after it on that line, such as a `\r`, is not part of the block).
//! Quoted blocks (`> -----BEGIN ...`) are not recognised. A BEGIN with no
//! END before the next BEGIN is dropped: the later BEGIN opens the block.
//! A BEGIN with no END after it gives no block. Blocks come in order.
//!
//! One dearmorer reads a block's payload ([`dearmor`] for a public key
//! block, `dearmor_payload` for any block), with a bound on the armor
//! headers it buffers, inside the panic guard.

use std::io::{self, Read};

use pgp::armor::{BlockType, Dearmor, DearmorOptions};

use crate::error::{guarded, unreadable, KeyError};

/// The largest signed content read from a request (a key or `RemoveKey`).
pub const MAX_SIGNED_CONTENT: usize = 4 << 20;

/// The armor line that opens a public key block.
pub const BEGIN_PUBLIC_KEY: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
/// The armor line that closes a public key block.
pub const END_PUBLIC_KEY: &str = "-----END PGP PUBLIC KEY BLOCK-----";

/// Most bytes of armor header lines the dearmorer will buffer.
pub(crate) const ARMOR_HEADER_LIMIT: usize = 1024 * 1024;

/// Where a line stands in the block rule of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// It opens a block (dropping any block open without its END).
    Begins,
    /// It is inside an open block.
    Inside,
    /// It closes the open block.
    Ends,
    /// It is outside any block.
    Outside,
}

/// The block rule, fed one line at a time.
struct Scanner<'m> {
    begin: &'m str,
    end: &'m str,
    open: bool,
}

impl<'m> Scanner<'m> {
    fn new(begin: &'m str, end: &'m str) -> Self {
        Scanner {
            begin,
            end,
            open: false,
        }
    }

    fn line(&mut self, line: &str) -> Line {
        if line.starts_with(self.begin) {
            self.open = true;
            Line::Begins
        } else if !self.open {
            Line::Outside
        } else if line.starts_with(self.end) {
            self.open = false;
            Line::Ends
        } else {
            Line::Inside
        }
    }
}

/// The blocks of `text` from a line starting with `begin` to the next line
/// starting with `end` (the rule of this module), LF or CRLF line endings.
pub(crate) fn armored_blocks<'a>(text: &'a str, begin: &str, end: &str) -> Vec<&'a str> {
    let mut scanner = Scanner::new(begin, end);
    let mut blocks = Vec::new();
    let mut offset = 0;
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        match scanner.line(line) {
            Line::Begins => start = offset,
            Line::Ends => blocks.push(&text[start..offset + end.len()]),
            Line::Inside | Line::Outside => {}
        }
        offset += line.len();
    }
    blocks
}

/// Finds every ASCII-armored public key block in `text` (a mail body: prose
/// around it, LF or CRLF line endings), by the rule of this module: the
/// returned slices run from `-----BEGIN PGP PUBLIC KEY BLOCK-----` to the
/// end of `-----END PGP PUBLIC KEY BLOCK-----`.
pub fn find_armored_keys(text: &str) -> Vec<&str> {
    armored_blocks(text, BEGIN_PUBLIC_KEY, END_PUBLIC_KEY)
}

/// The public key blocks among `lines` (a file read line by line, line
/// ends removed), by the rule of this module, each with `\n` line ends:
/// for files too large to hold, such as those of `keyreg --import`.
pub fn public_key_blocks<I: IntoIterator<Item = String>>(lines: I) -> PublicKeyBlocks<I::IntoIter> {
    PublicKeyBlocks {
        lines: lines.into_iter(),
        scanner: Scanner::new(BEGIN_PUBLIC_KEY, END_PUBLIC_KEY),
        block: String::new(),
    }
}

/// The iterator of [`public_key_blocks`].
pub struct PublicKeyBlocks<I> {
    lines: I,
    scanner: Scanner<'static>,
    block: String,
}

impl<I: Iterator<Item = String>> Iterator for PublicKeyBlocks<I> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        for line in self.lines.by_ref() {
            match self.scanner.line(&line) {
                Line::Begins => {
                    self.block.clear();
                    self.block.push_str(&line);
                    self.block.push('\n');
                }
                Line::Inside => {
                    self.block.push_str(&line);
                    self.block.push('\n');
                }
                Line::Ends => {
                    self.block.push_str(&line[..END_PUBLIC_KEY.len()]);
                    return Some(std::mem::take(&mut self.block));
                }
                Line::Outside => {}
            }
        }
        None
    }
}

/// The payload of any armored block, at most `limit` bytes of it, and the
/// block's type.
pub(crate) fn dearmor_payload(armored: &str, limit: u64) -> Result<(Option<BlockType>, Vec<u8>), KeyError> {
    guarded(|| {
        let options = DearmorOptions::new().set_limit(ARMOR_HEADER_LIMIT);
        let mut reader = Dearmor::with_options(io::BufReader::new(armored.as_bytes()), options);
        reader.read_header().map_err(unreadable)?;
        let typ = reader.typ;
        let mut bytes = Vec::new();
        (&mut reader).take(limit).read_to_end(&mut bytes).map_err(unreadable)?;
        Ok((typ, bytes))
    })
}

/// Binary packets of an armored public key block (the inverse of
/// [`CheckedKey::to_armored`](crate::CheckedKey::to_armored)); the packets
/// are not parsed, only the first packet header is checked to be a public
/// key's. E.g. to feed [`ArmoredKeyringWriter`](crate::ArmoredKeyringWriter)
/// from stored records without parsing the keys.
pub fn dearmor(armored: &str) -> Result<Vec<u8>, KeyError> {
    let (typ, bytes) = dearmor_payload(armored, u64::MAX)?;
    if typ != Some(BlockType::PublicKey) {
        return Err(KeyError::Unreadable("not a PGP PUBLIC KEY BLOCK".to_string()));
    }
    if !starts_with_public_key_packet(&bytes) {
        return Err(KeyError::NoKey);
    }
    Ok(bytes)
}

/// Whether `bytes` begin with the header of a public key packet (tag 6, old
/// or new packet format).
fn starts_with_public_key_packet(bytes: &[u8]) -> bool {
    match bytes.first() {
        Some(&b) if b & 0x80 != 0 => {
            let tag = if b & 0x40 != 0 { b & 0x3f } else { (b >> 2) & 0x0f };
            tag == 6
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A text with a BEGIN left open (the later BEGIN opens the block), a
    /// whole block, prose, and a BEGIN never closed.
    const TEXT: &str = "prose\r\n-----BEGIN PGP PUBLIC KEY BLOCK-----\r\nlost\r\n-----BEGIN PGP PUBLIC KEY BLOCK-----\r\n\r\nAAAA\r\n-----END PGP PUBLIC KEY BLOCK----- \r\n> -----BEGIN PGP PUBLIC KEY BLOCK-----\r\nmore prose\r\n-----BEGIN PGP PUBLIC KEY BLOCK-----\r\nBBBB\r\n";

    #[test]
    fn one_rule_for_text_and_lines() {
        let in_text = find_armored_keys(TEXT);
        assert_eq!(
            in_text,
            ["-----BEGIN PGP PUBLIC KEY BLOCK-----\r\n\r\nAAAA\r\n-----END PGP PUBLIC KEY BLOCK-----"]
        );
        let lines = TEXT.lines().map(str::to_string);
        let in_lines: Vec<String> = public_key_blocks(lines).collect();
        assert_eq!(in_lines.len(), 1);
        assert_eq!(in_lines[0].replace('\r', ""), in_text[0].replace('\r', ""));
    }
}
