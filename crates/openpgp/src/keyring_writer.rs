//! Writing armored keyrings as a stream ([`ArmoredKeyringWriter`]), for
//! the flat file `pubkeys.asc` and for [`CheckedKey::to_armored`](crate::CheckedKey::to_armored):
//! deterministic output (no `Version:` or `Comment:` headers), 64-character
//! base64 lines, a CRC-24 checksum line, `\n` line ends, and memory
//! bounded whatever the number of keys.

use std::io::{self, Write};

use crate::armor::{BEGIN_PUBLIC_KEY, END_PUBLIC_KEY};

const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const ARMOR_LINE_CHARS: usize = 64;
const CRC24_INIT: u32 = 0x00B7_04CE;
const CRC24_POLY: u32 = 0x0186_4CFB;

/// Streams one armored keyring holding many keys, for the flat file
/// `pubkeys.asc` that `gpg --import` must read: the BEGIN line, a blank
/// line, the base64 of the concatenated binary keys in 64-character lines,
/// a CRC24 checksum line and the END line, all `"\n"`-terminated. Memory
/// stays bounded whatever the number of keys: only a partial base64 group
/// (at most two bytes) is held between calls.
pub struct ArmoredKeyringWriter<W: Write> {
    inner: Option<W>,
    pending: [u8; 3],
    pending_len: usize,
    column: usize,
    crc: u32,
}

impl<W: Write> ArmoredKeyringWriter<W> {
    /// Starts a keyring on `w`, writing the BEGIN line and the blank line.
    pub fn new(mut w: W) -> io::Result<Self> {
        w.write_all(BEGIN_PUBLIC_KEY.as_bytes())?;
        w.write_all(b"\n\n")?;
        Ok(ArmoredKeyringWriter {
            inner: Some(w),
            pending: [0; 3],
            pending_len: 0,
            column: 0,
            crc: CRC24_INIT,
        })
    }

    fn writer(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("keyring writer already finished"))
    }

    /// Appends one key's binary packets (e.g. [`CheckedKey::to_bytes`](crate::CheckedKey::to_bytes) or
    /// [`dearmor`](crate::dearmor) of a stored record).
    pub fn write_key(&mut self, binary_key: &[u8]) -> io::Result<()> {
        for &byte in binary_key {
            self.crc = crc24_update(self.crc, byte);
        }
        let mut out: Vec<u8> = Vec::with_capacity(8192 + 80);
        for &byte in binary_key {
            self.pending[self.pending_len] = byte;
            self.pending_len += 1;
            if self.pending_len == 3 {
                let group = encode_group(&self.pending, 3);
                self.push_chars(&mut out, &group);
                self.pending_len = 0;
                if out.len() >= 8192 {
                    self.writer()?.write_all(&out)?;
                    out.clear();
                }
            }
        }
        if !out.is_empty() {
            self.writer()?.write_all(&out)?;
        }
        Ok(())
    }

    fn push_chars(&mut self, out: &mut Vec<u8>, chars: &[u8]) {
        for &c in chars {
            out.push(c);
            self.column += 1;
            if self.column == ARMOR_LINE_CHARS {
                out.push(b'\n');
                self.column = 0;
            }
        }
    }

    fn finish_inner(&mut self) -> io::Result<()> {
        let mut out = Vec::with_capacity(128);
        if self.pending_len > 0 {
            let group = encode_group(&self.pending, self.pending_len);
            self.push_chars(&mut out, &group);
            self.pending_len = 0;
        }
        if self.column != 0 {
            out.push(b'\n');
            self.column = 0;
        }
        let crc = self.crc & 0x00FF_FFFF;
        let crc_bytes = [(crc >> 16) as u8, (crc >> 8) as u8, crc as u8];
        out.push(b'=');
        out.extend_from_slice(&encode_group(&crc_bytes, 3));
        out.push(b'\n');
        out.extend_from_slice(END_PUBLIC_KEY.as_bytes());
        out.push(b'\n');
        let w = self.writer()?;
        w.write_all(&out)?;
        w.flush()
    }

    /// Writes the rest of the base64, the checksum and the END line, flushes,
    /// and gives the underlying writer back.
    pub fn finish(mut self) -> io::Result<W> {
        self.finish_inner()?;
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("keyring writer already finished"))
    }
}

/// CRC-24 (RFC 9580, 6.1) a byte at a time.
const CRC24_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = (index as u32) << 16;
        let mut bit = 0;
        while bit < 8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= CRC24_POLY;
            }
            bit += 1;
        }
        table[index] = crc & 0x00FF_FFFF;
        index += 1;
    }
    table
};

fn crc24_update(crc: u32, byte: u8) -> u32 {
    ((crc << 8) ^ CRC24_TABLE[((crc >> 16) as u8 ^ byte) as usize]) & 0x00FF_FFFF
}

/// Base64 of one group of `len` (1 to 3) bytes, padded with `=`.
fn encode_group(bytes: &[u8; 3], len: usize) -> [u8; 4] {
    let b0 = bytes[0];
    let b1 = if len > 1 { bytes[1] } else { 0 };
    let b2 = if len > 2 { bytes[2] } else { 0 };
    let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
    let c = |shift: u32| BASE64_ALPHABET[((n >> shift) & 0x3F) as usize];
    [
        c(18),
        c(12),
        if len > 1 { c(6) } else { b'=' },
        if len > 2 { c(0) } else { b'=' },
    ]
}
