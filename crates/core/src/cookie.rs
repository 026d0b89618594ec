//! Server cookies: an answer much larger than its request goes only to a
//! source that has shown it receives what is sent to it.
//!
//! A UDP source address can be forged, so without this a 20-byte lookup
//! of a big record would make keyserv send a thousand times as many bytes
//! to whoever the forger names. As DNS cookies do (RFC 7873), keyserv
//! answers such a request from a source that has not proved itself with
//! `COOKIE\nCookie: <hex>\n` (and the NUL every answer ends with), no larger
//! than three times the request; the client sends the same request again
//! with that `Cookie: <hex>` line as its last line and gets the full answer.
//! A forger never sees the cookie, so it cannot make the second request.
//!
//! Nothing is remembered per client. A cookie is the coarse time slot it
//! was issued in and an HMAC-SHA-256 of that slot and the source's IP
//! address under a secret drawn at random when keyserv starts:
//! [`COOKIE_HEX`] hex digits. It is accepted in its own slot and the next
//! one (so one issued just before a slot boundary still works), from that
//! address only. Checking it is one HMAC over two blocks, from a key
//! schedule computed once, and only for the answers that need it: the
//! [`CookieGate`] first compares sizes. Parsing ([`split`]) never panics on
//! any bytes and allocates nothing; `fuzz/` and the property tests throw
//! arbitrary datagrams at it.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Seconds in one cookie time slot; a cookie is good for one to two slots.
pub const SLOT_SECONDS: u64 = 120;
/// Bytes of the HMAC kept in a cookie (96 bits: a forger who cannot see
/// the cookie has to guess it).
const MAC_BYTES: usize = 12;
/// Bytes of the slot number at the front of a cookie.
const SLOT_BYTES: usize = 4;
/// Hex digits in a cookie.
pub const COOKIE_HEX: usize = 2 * (SLOT_BYTES + MAC_BYTES);
/// The prefix of a cookie answer, before the hex.
const ANSWER_PREFIX: &[u8] = b"COOKIE\nCookie: ";
/// Bytes of a whole cookie answer: prefix, hex, newline and NUL.
pub const COOKIE_ANSWER_LEN: usize = ANSWER_PREFIX.len() + COOKIE_HEX + 2;
/// An answer may be this many times as long as its request without a cookie.
pub const AMPLIFICATION: usize = 3;

/// Splits a request datagram into the request proper and the value of its
/// `Cookie:` line, if its last line is one. A trailing NUL is dropped in
/// both cases, so a request asks the same with or without it (and is one
/// entry in the answer cache). The line's name is matched without regard
/// to case; its value is trimmed, but not checked: see [`CookieJar::check`].
pub fn split(datagram: &[u8]) -> (&[u8], Option<&[u8]>) {
    let body = datagram.strip_suffix(b"\0").unwrap_or(datagram);
    let lines = body.strip_suffix(b"\n").unwrap_or(body);
    // The first line is the command, never a cookie.
    let Some(newline) = lines.iter().rposition(|&b| b == b'\n') else {
        return (body, None);
    };
    let last = &lines[newline + 1..];
    match last.get(..7) {
        Some(name) if name.eq_ignore_ascii_case(b"Cookie:") => (&body[..newline + 1], Some(last[7..].trim_ascii())),
        _ => (body, None),
    }
}

/// The request `request` (as first sent, with or without its NUL) with a
/// `Cookie:` line added last, and the NUL: what a client sends back after
/// a `COOKIE` answer.
pub fn with_cookie(request: &[u8], cookie: &str) -> Vec<u8> {
    let (request, _) = split(request);
    let mut out = Vec::with_capacity(request.len() + cookie.len() + 10);
    out.extend_from_slice(request);
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(b"Cookie: ");
    out.extend_from_slice(cookie.as_bytes());
    out.extend_from_slice(b"\n\0");
    out
}

/// Whether an answer of `answer_len` bytes to a datagram of
/// `datagram_len` bytes may only go to a source with a valid cookie: it is
/// more than [`AMPLIFICATION`] times the request, and larger than the
/// cookie answer that would replace it.
pub fn needs_cookie(datagram_len: usize, answer_len: usize) -> bool {
    answer_len > COOKIE_ANSWER_LEN && answer_len > datagram_len.saturating_mul(AMPLIFICATION)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Issues and checks cookies under one secret.
#[derive(Clone)]
pub struct CookieJar {
    /// The HMAC keyed with the secret, cloned for each cookie so the key
    /// schedule is computed only once.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieJar { .. }")
    }
}

impl CookieJar {
    /// A jar with this secret.
    pub fn new(secret: &[u8; 32]) -> CookieJar {
        CookieJar {
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length"),
        }
    }

    /// A jar with a secret drawn at random (one per keyserv start).
    pub fn random() -> CookieJar {
        CookieJar::new(&rand::random())
    }

    /// The MAC of `slot` for `ip`.
    fn mac(&self, slot: u32, ip: IpAddr) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(&slot.to_be_bytes());
        match canonical(ip) {
            IpAddr::V4(v4) => {
                mac.update(&[4]);
                mac.update(&v4.octets());
            }
            IpAddr::V6(v6) => {
                mac.update(&[6]);
                mac.update(&v6.octets());
            }
        }
        mac
    }

    /// The cookie for `ip` at `now` (Unix seconds), as hex digits.
    pub fn issue(&self, ip: IpAddr, now: u64) -> [u8; COOKIE_HEX] {
        let slot = slot_of(now);
        let tag = self.mac(slot, ip).finalize().into_bytes();
        let mut raw = [0u8; SLOT_BYTES + MAC_BYTES];
        raw[..SLOT_BYTES].copy_from_slice(&slot.to_be_bytes());
        raw[SLOT_BYTES..].copy_from_slice(&tag[..MAC_BYTES]);
        let mut hex = [0u8; COOKIE_HEX];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(raw) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0xF)];
        }
        hex
    }

    /// Whether `cookie` was issued by this jar to `ip`, in the slot of
    /// `now` or the one before. Anything else (another address's cookie,
    /// an old one, junk of any length) is false.
    pub fn check(&self, ip: IpAddr, cookie: &[u8], now: u64) -> bool {
        let Some(raw) = decode_hex(cookie) else {
            return false;
        };
        let mut slot_bytes = [0u8; SLOT_BYTES];
        slot_bytes.copy_from_slice(&raw[..SLOT_BYTES]);
        let slot = u32::from_be_bytes(slot_bytes);
        let current = slot_of(now);
        if slot != current && slot.wrapping_add(1) != current {
            return false;
        }
        // Compared in constant time, so timing tells a forger nothing.
        self.mac(slot, ip).verify_truncated_left(&raw[SLOT_BYTES..]).is_ok()
    }

    /// Appends the answer `COOKIE\nCookie: <hex>\n\0` for `ip` at `now`.
    pub fn append_answer(&self, ip: IpAddr, now: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(ANSWER_PREFIX);
        out.extend_from_slice(&self.issue(ip, now));
        out.extend_from_slice(b"\n\0");
    }
}

/// What keyserv decides, per answer, with the clock read once per batch.
#[derive(Debug, Clone, Copy)]
pub struct CookieGate<'a> {
    /// The jar; `None` when cookies are off (`[keyserv] cookies = false`).
    pub jar: Option<&'a CookieJar>,
    /// Unix seconds.
    pub now: u64,
}

impl CookieGate<'_> {
    /// Whether an answer of `answer_len` bytes may go to `ip`, which sent
    /// a datagram of `datagram_len` bytes ending in `cookie`. The cookie
    /// is checked only when the sizes say it must be.
    pub fn allows(&self, datagram_len: usize, answer_len: usize, cookie: Option<&[u8]>, ip: IpAddr) -> bool {
        match self.jar {
            None => true,
            Some(jar) => {
                !needs_cookie(datagram_len, answer_len) || cookie.is_some_and(|cookie| jar.check(ip, cookie, self.now))
            }
        }
    }

    /// Appends the cookie answer for `ip`, which replaces a refused answer.
    pub fn refuse(&self, ip: IpAddr, out: &mut Vec<u8>) {
        if let Some(jar) = self.jar {
            jar.append_answer(ip, self.now, out);
        }
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn slot_of(now: u64) -> u32 {
    // The slot number wraps after 16,000 years; the check is modular.
    (now / SLOT_SECONDS) as u32
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address, so a dual-stack
/// socket issues and checks the same cookie.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Exactly [`COOKIE_HEX`] hex digits (either case) as bytes.
fn decode_hex(text: &[u8]) -> Option<[u8; SLOT_BYTES + MAC_BYTES]> {
    if text.len() != COOKIE_HEX {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut raw = [0u8; SLOT_BYTES + MAC_BYTES];
    for (byte, pair) in raw.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_cookie_is_good_for_its_address_in_its_slot_and_the_next() {
        let jar = CookieJar::new(&[7; 32]);
        let cookie = jar.issue(ip("127.0.0.1"), NOW);
        assert!(cookie.iter().all(u8::is_ascii_hexdigit));
        assert!(jar.check(ip("127.0.0.1"), &cookie, NOW));
        assert!(jar.check(ip("::ffff:127.0.0.1"), &cookie, NOW), "the mapped form");
        assert!(jar.check(ip("127.0.0.1"), &cookie.to_ascii_uppercase(), NOW));
        assert!(!jar.check(ip("127.0.0.2"), &cookie, NOW), "another address");
        assert!(
            !CookieJar::new(&[8; 32]).check(ip("127.0.0.1"), &cookie, NOW),
            "another secret"
        );

        // Issued in the last second of a slot: still good one slot later.
        let edge = (NOW / SLOT_SECONDS + 1) * SLOT_SECONDS - 1;
        let late = jar.issue(ip("127.0.0.1"), edge);
        assert!(jar.check(ip("127.0.0.1"), &late, edge + 1));
        assert!(jar.check(ip("127.0.0.1"), &late, edge + SLOT_SECONDS));
        assert!(
            !jar.check(ip("127.0.0.1"), &late, edge + SLOT_SECONDS + 1),
            "two slots on"
        );
        assert!(
            !jar.check(ip("127.0.0.1"), &late, edge - SLOT_SECONDS),
            "from the future"
        );
    }

    #[test]
    fn junk_cookies_are_refused() {
        let jar = CookieJar::new(&[7; 32]);
        let good = jar.issue(ip("10.0.0.1"), NOW);
        let mut flipped = good;
        flipped[COOKIE_HEX - 1] = if flipped[COOKIE_HEX - 1] == b'0' { b'1' } else { b'0' };
        for junk in [
            &b""[..],
            b"zz",
            &good[..COOKIE_HEX - 1],
            &[b'g'; COOKIE_HEX],
            &flipped,
            &[0xff; 64],
        ] {
            assert!(!jar.check(ip("10.0.0.1"), junk, NOW), "{junk:?}");
        }
    }

    #[test]
    fn the_cookie_line_is_the_last_line() {
        assert_eq!(
            split(b"LOOKUSER\nUser: a@x.org\nCookie: ab12\n\0"),
            (&b"LOOKUSER\nUser: a@x.org\n"[..], Some(&b"ab12"[..]))
        );
        assert_eq!(
            split(b"LOOKUSER\r\nUser: a@x.org\r\ncookie:ab12\r"),
            (&b"LOOKUSER\r\nUser: a@x.org\r\n"[..], Some(&b"ab12"[..]))
        );
        assert_eq!(
            split(b"LOOKUSER\nUser: a@x.org\n\0"),
            (&b"LOOKUSER\nUser: a@x.org\n"[..], None)
        );
        assert_eq!(split(b"Cookie: ab\n"), (&b"Cookie: ab\n"[..], None), "a command line");
        assert_eq!(
            split(b"LOOKUSER\nCookie: ab\nUser: a@x.org\n"),
            (&b"LOOKUSER\nCookie: ab\nUser: a@x.org\n"[..], None)
        );
        for junk in [&b""[..], b"\0", b"\n", b"\n\n", b"x\nCookie:", b"\nCookie:\n\0"] {
            let (request, _) = split(junk);
            assert!(junk.starts_with(request));
        }
        let again = with_cookie(b"LOOKUSER\nUser: a@x.org\n\0", "ab12");
        assert_eq!(again, b"LOOKUSER\nUser: a@x.org\nCookie: ab12\n\0");
        assert_eq!(
            with_cookie(&again, "cd34"),
            b"LOOKUSER\nUser: a@x.org\nCookie: cd34\n\0"
        );
    }

    #[test]
    fn only_large_answers_need_a_cookie() {
        let jar = CookieJar::new(&[1; 32]);
        let mut answer = Vec::new();
        jar.append_answer(ip("127.0.0.1"), NOW, &mut answer);
        assert_eq!(answer.len(), COOKIE_ANSWER_LEN);
        // The shortest request that can draw a record: an address of five
        // characters. Its cookie answer is within the bound.
        assert!(COOKIE_ANSWER_LEN <= AMPLIFICATION * "LOOKUSER\nUser:a@b.c".len());
        assert!(!needs_cookie(20, 60));
        assert!(needs_cookie(20, 61));
        assert!(
            !needs_cookie(0, COOKIE_ANSWER_LEN),
            "never replaced by something larger"
        );
        let gate = CookieGate {
            jar: Some(&jar),
            now: NOW,
        };
        let cookie = jar.issue(ip("127.0.0.1"), NOW);
        assert!(gate.allows(20, 60, None, ip("127.0.0.1")));
        assert!(!gate.allows(20, 5000, None, ip("127.0.0.1")));
        assert!(gate.allows(20, 5000, Some(&cookie), ip("127.0.0.1")));
        assert!(!gate.allows(20, 5000, Some(&cookie), ip("127.0.0.3")));
        let open = CookieGate { jar: None, now: NOW };
        assert!(open.allows(20, 5000, None, ip("127.0.0.1")));
    }
}
