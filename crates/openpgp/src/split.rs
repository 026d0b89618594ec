//! Splitting a keyring into its keys, as packets, before rPGP parses them
//! ([`split_keyring`]): the reading half of [`read_keyring`](crate::read_keyring)
//! and `keyreg --import`.
//!
//! Most of a real keyring's bytes are third-party certifications, which
//! the check drops unread (only signatures the primary key may have
//! issued are ever looked at, [`KeyIds::may_have_issued`]). Parsing them
//! costs more than the rest of the key: rPGP makes each a `Signature`
//! with its subpackets and MPIs, allocation by allocation. So the splitter
//! frames packets by their headers (rPGP's own header reader), parses
//! each key's primary key packet with rPGP to learn how signatures name
//! it, and steps over every signature packet whose issuer subpackets
//! name only other keys, reading no more of it than its subpacket areas.
//! The rule is [`KeyIds::may_have_issued`]'s, read off the raw packet:
//! a signature is left out only when it is a v4 or v6 signature of a
//! definite length whose subpacket areas are well formed, that names at
//! least one issuer, and none of them this key; anything else (other
//! versions, odd lengths, a malformed area, no issuer named) is passed on
//! byte for byte, for rPGP and the check to judge as before. Every other
//! packet is passed on as read. A [`KeyPackets`] is one key's packets, from
//! its primary key packet to the next: parsing it gives what rPGP's
//! keyring reader gives for that stretch of the keyring, so the parse can
//! run on any thread (`keyreg --import` parses on every core).
//!
//! Memory stays bounded by one key's kept packets plus one packet: a
//! packet's body is read only as far as the input has it, whatever its
//! header claims.

use std::io::{self, BufRead, Read};

use pgp::armor::{BlockType, Dearmor, DearmorOptions};
use pgp::composed::{Deserializable, PacketBodyReader, SignedPublicKey};
use pgp::packet::{Packet, PacketHeader};
use pgp::types::{PacketLength, Tag};

use crate::armor::ARMOR_HEADER_LIMIT;
use crate::error::{guarded, unreadable, KeyError};
use crate::key_id::KeyIds;
use crate::parse::{Keys, ParsedKey};

/// One key's packets as the keyring holds them, third-party
/// certifications left out; [`KeyPackets::parse`] makes the key of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPackets(Vec<u8>);

impl KeyPackets {
    /// Parses the packets with rPGP: normally one key; a key rPGP cannot
    /// read gives its error (after the part before the bad packet, as
    /// rPGP's keyring reader gives it).
    pub fn parse(&self) -> Vec<Result<ParsedKey, KeyError>> {
        let parsed = guarded(|| {
            let keys = SignedPublicKey::from_bytes_many(&self.0[..]).map_err(unreadable)?;
            Ok(keys
                .map(|key| key.map(ParsedKey).map_err(unreadable))
                .collect::<Vec<_>>())
        });
        parsed.unwrap_or_else(|err| vec![Err(err)])
    }

    /// The packets' bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Reads a keyring (armored or binary, told by its first byte; armored
/// input must start with its armor line) key by key, as [`KeyPackets`],
/// with bounded memory whatever its size. An item is an error only when
/// the packets can no longer be framed (the keyring ends there), or the
/// input can't be read.
pub fn split_keyring<'a, R: BufRead + 'a>(mut input: R) -> Result<KeySplitter<'a>, KeyError> {
    let first = input.fill_buf().map_err(unreadable)?.first().copied();
    let Some(first) = first else {
        return Err(KeyError::NoKey);
    };
    let source: Box<dyn BufRead + 'a> = if first & 0x80 != 0 {
        Box::new(input)
    } else {
        let mut dearmor = Dearmor::with_options(input, DearmorOptions::new().set_limit(ARMOR_HEADER_LIMIT));
        guarded(|| dearmor.read_header().map_err(unreadable))?;
        match dearmor.typ {
            Some(BlockType::PublicKey) => {}
            other => {
                let name = other.map_or_else(|| "none".to_string(), |typ| typ.to_string());
                return Err(KeyError::Unreadable(format!("unexpected block type: {name}")));
            }
        }
        Box::new(io::BufReader::with_capacity(1 << 16, dearmor))
    };
    Ok(KeySplitter {
        input: Recorder {
            inner: source,
            log: Vec::new(),
        },
        issuer: None,
        has_key: false,
        done: false,
    })
}

/// Reads a keyring (armored or binary, detected from the first byte) key by
/// key, with bounded memory whatever its size: for `keyreg --import` of
/// large flat files. Each item is one key or the reason it could not be
/// read; reading goes on after a bad key. Armored input must start with the
/// armor line (leading prose is not skipped). The keys are what rPGP's
/// keyring reader makes of the input, less the third-party certifications
/// [`split_keyring`] leaves out.
pub fn read_keyring<'a, R: BufRead + 'a>(input: R) -> Result<Keys<'a>, KeyError> {
    let keys = split_keyring(input)?.flat_map(|packets| match packets {
        Ok(packets) => packets.parse(),
        Err(err) => vec![Err(err)],
    });
    Ok(Box::new(keys))
}

/// Reads through to its inner reader, keeping every byte consumed: the
/// packets of the key being read, as they were.
struct Recorder<R> {
    inner: R,
    log: Vec<u8>,
}

impl<R: BufRead> Read for Recorder<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.log.extend_from_slice(&buffer[..read]);
        Ok(read)
    }
}

impl<R: BufRead> BufRead for Recorder<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        // The bytes are still buffered: fill_buf returned them and
        // nothing was read since.
        if let Ok(buffered) = self.inner.fill_buf() {
            self.log.extend_from_slice(&buffered[..amount.min(buffered.len())]);
        }
        self.inner.consume(amount);
    }
}

/// The keys of a keyring, as [`split_keyring`] reads them.
pub struct KeySplitter<'a> {
    input: Recorder<Box<dyn BufRead + 'a>>,
    /// How signatures name the current key's primary key; `None` when its
    /// packet could not be parsed (then nothing is left out).
    issuer: Option<KeyIds>,
    /// Whether the recorded packets hold a primary key packet yet.
    has_key: bool,
    done: bool,
}

/// What reading one packet gave.
enum Step {
    /// A packet, recorded from this offset of the log.
    Packet { tag: Tag, start: usize },
    /// The input ended cleanly.
    End,
}

impl KeySplitter<'_> {
    /// Reads one packet into the log, stepping over (and so leaving out)
    /// a third-party certification.
    fn step(&mut self) -> Result<Step, KeyError> {
        guarded(|| self.step_unguarded().map_err(unreadable))
    }

    fn step_unguarded(&mut self) -> io::Result<Step> {
        let start = self.input.log.len();
        let header = match PacketHeader::try_from_reader(&mut self.input) {
            Ok(header) => header,
            // As rPGP's reader: input that ends inside a header ends the keyring.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                self.input.log.truncate(start);
                return Ok(Step::End);
            }
            Err(err) => return Err(err),
        };
        let body_start = self.input.log.len();
        let tag = header.tag();
        let definite = match header.packet_length() {
            PacketLength::Fixed(length) => {
                io::copy(&mut (&mut self.input).take(u64::from(length)), &mut io::sink())?;
                (self.input.log.len() - body_start == length as usize).then_some(body_start)
            }
            PacketLength::Indeterminate | PacketLength::Partial(_) => {
                io::copy(&mut PacketBodyReader::new(header, &mut self.input)?, &mut io::sink())?;
                None
            }
        };
        match (tag, definite) {
            (Tag::PublicKey, _) => {
                let body = &self.input.log[body_start..];
                self.issuer = match Packet::from_reader(header, body) {
                    Ok(Packet::PublicKey(key)) => Some(KeyIds::of(&key)),
                    _ => None,
                };
            }
            (Tag::Signature, Some(body_start)) => {
                let body = &self.input.log[body_start..];
                if self.issuer.as_ref().is_some_and(|ids| names_only_others(body, ids)) {
                    self.input.log.truncate(start);
                }
            }
            _ => {}
        }
        Ok(Step::Packet { tag, start })
    }
}

impl Iterator for KeySplitter<'_> {
    type Item = Result<KeyPackets, KeyError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.step() {
                Ok(Step::Packet { tag, start }) => {
                    if tag != Tag::PublicKey {
                        continue;
                    }
                    if !std::mem::replace(&mut self.has_key, true) {
                        continue;
                    }
                    // A new key: what came before it is the last one.
                    let next = self.input.log.split_off(start);
                    let key = std::mem::replace(&mut self.input.log, next);
                    return Some(Ok(KeyPackets(key)));
                }
                Ok(Step::End) => self.done = true,
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            }
        }
        let last = std::mem::take(&mut self.input.log);
        (!last.is_empty()).then_some(Ok(KeyPackets(last)))
    }
}

/// Whether the signature packet `body` is a v4 or v6 signature whose
/// well-formed subpacket areas name an issuer, and only other keys than
/// `ids`: [`KeyIds::may_have_issued`]'s rule, read off the packet. `false`
/// whenever in doubt.
fn names_only_others(body: &[u8], ids: &KeyIds) -> bool {
    let (length_size, areas) = match body.first() {
        Some(4) => (2, body.get(4..)),
        Some(6) => (4, body.get(4..)),
        _ => return false,
    };
    let Some(mut rest) = areas else {
        return false;
    };
    let mut named = false;
    for _ in 0..2 {
        let Some((area, after)) = take_area(rest, length_size) else {
            return false;
        };
        match issuers_in(area, ids) {
            Some(Issuers::Mine) | None => return false,
            Some(Issuers::Others) => named = true,
            Some(Issuers::Unnamed) => {}
        }
        rest = after;
    }
    named
}

/// A subpacket area (its length in `length_size` bytes, big-endian, then
/// the area) and what follows it.
fn take_area(bytes: &[u8], length_size: usize) -> Option<(&[u8], &[u8])> {
    let (length, rest) = bytes.split_at_checked(length_size)?;
    let length = length.iter().fold(0usize, |sum, b| (sum << 8) | usize::from(*b));
    rest.split_at_checked(length)
}

/// What a subpacket area says of the issuer.
enum Issuers {
    /// It names this key.
    Mine,
    /// It names issuers, none of them this key.
    Others,
    /// It names none.
    Unnamed,
}

/// Subpacket types naming the issuer (RFC 9580, 5.2.3.12 and 5.2.3.35).
const ISSUER_KEY_ID: u8 = 16;
const ISSUER_FINGERPRINT: u8 = 33;

/// The issuers an area names; `None` if it is not well formed, or an
/// issuer subpacket has the wrong size for its kind.
fn issuers_in(mut area: &[u8], ids: &KeyIds) -> Option<Issuers> {
    let mut found = Issuers::Unnamed;
    while !area.is_empty() {
        let (length, rest) = subpacket_length(area)?;
        let (subpacket, after) = rest.split_at_checked(length)?;
        let (kind, data) = subpacket.split_first()?;
        let mine = match kind & 0x7f {
            ISSUER_KEY_ID => {
                let key_id: [u8; 8] = data.try_into().ok()?;
                ids.has_key_id(key_id)
            }
            ISSUER_FINGERPRINT => {
                let (version, fingerprint) = data.split_first()?;
                match (version, fingerprint.len()) {
                    (4, 20) | (6, 32) => ids.has_fingerprint(fingerprint),
                    _ => return None,
                }
            }
            _ => {
                area = after;
                continue;
            }
        };
        if mine {
            return Some(Issuers::Mine);
        }
        found = Issuers::Others;
        area = after;
    }
    Some(found)
}

/// A subpacket's length (RFC 9580, 5.2.3.1) and the bytes after it.
fn subpacket_length(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    match first {
        0..192 => Some((usize::from(first), rest)),
        192..255 => {
            let (&second, rest) = rest.split_first()?;
            Some((((usize::from(first) - 192) << 8) + usize::from(second) + 192, rest))
        }
        255 => {
            let (length, rest) = rest.split_at_checked(4)?;
            let length = u32::from_be_bytes(length.try_into().ok()?);
            Some((usize::try_from(length).ok()?, rest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygen::{certify_user_ids, generate_key, KeySpec};
    use crate::keyring_writer::ArmoredKeyringWriter;
    use crate::{check_key, CheckedKey};
    use pgp::composed::SignedSecretKey;
    use pgp::ser::Serialize;
    use pgp::types::KeyDetails as _;

    fn secret(uid: &str) -> SignedSecretKey {
        generate_key(
            rand::thread_rng(),
            &KeySpec::ed25519(&[uid, "Second <second@example.org>"]),
        )
        .expect("key")
    }

    /// A key certified by two others, as binary packets.
    fn certified() -> (SignedPublicKey, Vec<u8>) {
        let key = secret("Owner <owner@example.org>").to_public_key();
        let once = certify_user_ids(&secret("Carol <carol@example.net>"), &key).expect("certify");
        let twice = certify_user_ids(&secret("Dave <dave@example.net>"), &once).expect("certify");
        let bytes = twice.to_bytes().expect("bytes");
        (twice, bytes)
    }

    /// What rPGP's own keyring reader makes of `bytes`.
    fn by_rpgp(bytes: &[u8]) -> Vec<Result<SignedPublicKey, String>> {
        SignedPublicKey::from_bytes_many(bytes)
            .map(|keys| keys.map(|key| key.map_err(|err| err.to_string())).collect())
            .unwrap_or_default()
    }

    fn split(bytes: &[u8]) -> Vec<Result<KeyPackets, KeyError>> {
        split_keyring(bytes).expect("split").collect()
    }

    fn checked(key: impl Into<ParsedKey>) -> CheckedKey {
        check_key(key, &crate::KeyPolicy::default()).expect("check")
    }

    #[test]
    fn third_party_certifications_are_left_out_and_the_check_is_unchanged() {
        let (key, bytes) = certified();
        assert_eq!(key.details.users[0].signatures.len(), 3);
        let parts = split(&bytes);
        assert_eq!(parts.len(), 1);
        let packets = parts[0].as_ref().expect("packets");
        assert!(packets.as_bytes().len() < bytes.len());
        let parsed = packets.parse();
        let [Ok(parsed)] = &parsed[..] else {
            panic!("one key expected: {parsed:?}");
        };
        for user in &parsed.0.details.users {
            assert_eq!(user.signatures.len(), 1, "only the self-signature is left");
        }
        assert_eq!(parsed.0.public_subkeys, key.public_subkeys);
        assert_eq!(checked(parsed.clone()), checked(key));
    }

    #[test]
    fn keys_are_split_one_by_one_binary_and_armored() {
        let (first, mut bytes) = certified();
        let second = secret("Other <other@example.org>").to_public_key();
        bytes.extend(second.to_bytes().expect("bytes"));
        let from_binary: Vec<CheckedKey> = read_keyring(&bytes[..])
            .expect("read")
            .map(|key| checked(key.expect("key")))
            .collect();
        assert_eq!(from_binary, vec![checked(first.clone()), checked(second.clone())]);

        let mut writer = ArmoredKeyringWriter::new(Vec::new()).expect("writer");
        writer.write_key(&first.to_bytes().expect("bytes")).expect("write");
        writer.write_key(&second.to_bytes().expect("bytes")).expect("write");
        let armored = writer.finish().expect("finish");
        let from_armor: Vec<CheckedKey> = read_keyring(&armored[..])
            .expect("read")
            .map(|key| checked(key.expect("key")))
            .collect();
        assert_eq!(from_armor, from_binary);
    }

    #[test]
    fn a_cut_keyring_reads_as_rpgp_reads_it() {
        let key = secret("Cut <cut@example.org>").to_public_key();
        let bytes = key.to_bytes().expect("bytes");
        for cut in (1..bytes.len()).step_by(7) {
            let ours: Vec<Result<SignedPublicKey, bool>> = match split_keyring(&bytes[..cut]) {
                Ok(parts) => parts
                    .flat_map(|part| part.map(|p| p.parse()).unwrap_or_else(|err| vec![Err(err)]))
                    .map(|key| key.map(SignedPublicKey::from).map_err(|_| false))
                    .collect(),
                Err(_) => Vec::new(),
            };
            let theirs: Vec<Result<SignedPublicKey, bool>> = by_rpgp(&bytes[..cut])
                .into_iter()
                .map(|key| key.map_err(|_| false))
                .collect();
            assert_eq!(ours, theirs, "cut at {cut} of {}", bytes.len());
        }
    }

    #[test]
    fn other_armor_and_empty_input_are_refused() {
        assert!(matches!(split_keyring(&b""[..]), Err(KeyError::NoKey)));
        let message = "-----BEGIN PGP MESSAGE-----\n\nyDgBO22WxBHv7O8X7O/jygAEzol56iUKiXmV+XmpCtmpqQUKiQrFqclFqUDBovzS\n-----END PGP MESSAGE-----\n";
        assert!(split_keyring(message.as_bytes()).is_err());
    }

    /// A v4 signature body (type, algorithms, areas) with `hashed` and
    /// `unhashed` subpacket areas.
    fn v4_signature(hashed: &[u8], unhashed: &[u8]) -> Vec<u8> {
        let mut body = vec![4, 0x10, 22, 8];
        for area in [hashed, unhashed] {
            body.extend((area.len() as u16).to_be_bytes());
            body.extend(area);
        }
        body.extend([0xab, 0xcd]);
        body
    }

    fn subpacket(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![data.len() as u8 + 1, kind];
        out.extend(data);
        out
    }

    #[test]
    fn only_a_well_formed_signature_naming_other_issuers_is_left_out() {
        let key = secret("Ids <ids@example.org>").to_public_key();
        let ids = KeyIds::of(&key.primary_key);
        let mine: [u8; 8] = crate::key_id::key_id_bytes_of(&key.primary_key.fingerprint()).expect("id");
        let mut fingerprint = vec![4];
        fingerprint.extend(key.primary_key.fingerprint().as_bytes());
        let other = [7u8; 8];
        let creation = subpacket(2, &[0, 0, 0, 1]);
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (v4_signature(&creation, &subpacket(ISSUER_KEY_ID, &other)), true),
            (v4_signature(&subpacket(ISSUER_KEY_ID | 0x80, &other), &[]), true),
            (v4_signature(&subpacket(ISSUER_KEY_ID, &mine), &[]), false),
            (
                v4_signature(
                    &subpacket(ISSUER_KEY_ID, &other),
                    &subpacket(ISSUER_FINGERPRINT, &fingerprint),
                ),
                false,
            ),
            (v4_signature(&creation, &[]), false),
            (v4_signature(&subpacket(ISSUER_KEY_ID, &other[..7]), &[]), false),
            (v4_signature(&subpacket(ISSUER_FINGERPRINT, &[4, 1, 2]), &[]), false),
            (v4_signature(&[9, ISSUER_KEY_ID, 1], &[]), false),
            (v4_signature(&[0], &subpacket(ISSUER_KEY_ID, &other)), false),
            (vec![3, 5, 0x10], false),
            (vec![4, 0x10, 22], false),
        ];
        for (n, (body, left_out)) in cases.iter().enumerate() {
            assert_eq!(names_only_others(body, &ids), *left_out, "case {n}");
        }
        let mut long = vec![255];
        long.extend(3u32.to_be_bytes());
        long.extend([ISSUER_KEY_ID, 1, 2]);
        assert_eq!(subpacket_length(&long), Some((3, &long[5..])));
        assert_eq!(subpacket_length(&[192, 0]), Some((192, &[][..])));
        assert_eq!(subpacket_length(&[200]), None);
    }
}
