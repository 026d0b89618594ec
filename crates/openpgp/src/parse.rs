//! Reading keys: one armored block ([`parse_armored_keys`]), binary packets
//! ([`parse_binary_keys`]) and a revocation certificate
//! ([`parse_revocation_certificate`]); a keyring of any size is read key
//! by key by `split` ([`read_keyring`](crate::read_keyring)).
//!
//! A key as read is a [`ParsedKey`], opaque outside the crate: nothing is
//! checked yet ([`check_key`](crate::check_key) does that). Every read runs
//! inside the panic guard.

use std::io::{self, BufRead};

use pgp::armor::DearmorOptions;
use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::KeyDetails as _;

use ripem_core::types::Fingerprint;

use crate::armor::{dearmor_payload, ARMOR_HEADER_LIMIT, MAX_SIGNED_CONTENT};
use crate::error::{guarded, unreadable, KeyError};
use crate::key_id::issuer_key_ids_of;

/// A public key as parsed from the input, not checked: what
/// [`check_key`](crate::check_key) and [`has_expired`](crate::has_expired)
/// take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey(pub(crate) SignedPublicKey);

impl ParsedKey {
    /// The primary key's fingerprint.
    pub fn fingerprint(&self) -> Result<Fingerprint, KeyError> {
        guarded(|| {
            Fingerprint::from_bytes(self.0.fingerprint().as_bytes()).map_err(|e| KeyError::Unreadable(e.to_string()))
        })
    }
}

impl From<SignedPublicKey> for ParsedKey {
    fn from(key: SignedPublicKey) -> Self {
        ParsedKey(key)
    }
}

impl From<ParsedKey> for SignedPublicKey {
    fn from(key: ParsedKey) -> Self {
        key.0
    }
}

/// Keys as read one by one, each or why it could not be read.
pub(crate) type Keys<'a> = Box<dyn Iterator<Item = Result<ParsedKey, KeyError>> + 'a>;

/// Parses one armored public key block into all the keys it holds (a block
/// may hold several keys). Pass one block at a time (see
/// [`find_armored_keys`](crate::find_armored_keys)): rPGP reads only the
/// first block of a text. Any unreadable key in the block makes the whole
/// block an error; use [`read_keyring`] to get keys one by one instead.
pub fn parse_armored_keys(block: &str) -> Result<Vec<ParsedKey>, KeyError> {
    let keys = guarded(|| armored_iter(io::BufReader::new(block.as_bytes()))?.collect::<Result<Vec<_>, _>>())?;
    if keys.is_empty() {
        return Err(KeyError::NoKey);
    }
    Ok(keys)
}

/// Parses binary (non-armored) OpenPGP data, such as a binary
/// `application/pgp-keys` attachment, into all the public keys it holds.
/// Any unreadable key makes the whole input an error.
pub fn parse_binary_keys(bytes: &[u8]) -> Result<Vec<ParsedKey>, KeyError> {
    let keys = guarded(|| binary_iter(bytes)?.collect::<Result<Vec<_>, _>>())?;
    if keys.is_empty() {
        return Err(KeyError::NoKey);
    }
    Ok(keys)
}

fn binary_iter<'a, R: BufRead + 'a>(input: R) -> Result<Keys<'a>, KeyError> {
    let iter = SignedPublicKey::from_bytes_many(input).map_err(unreadable)?;
    Ok(Box::new(iter.map(|r| r.map(ParsedKey).map_err(unreadable))))
}

fn armored_iter<'a, R: BufRead + 'a>(input: R) -> Result<Keys<'a>, KeyError> {
    let options = DearmorOptions::new().set_limit(ARMOR_HEADER_LIMIT);
    let (iter, _headers) = SignedPublicKey::from_armor_many_buf_with_options(input, options).map_err(unreadable)?;
    Ok(Box::new(iter.map(|r| r.map(ParsedKey).map_err(unreadable))))
}

/// A revocation certificate (`gpg --gen-revoke`): an armored public key
/// block holding only a key revocation signature. Returns the revocation,
/// or `None` if `block` is anything else. Mail and `keyreg --import` both
/// read revocation certificates with this.
pub fn parse_revocation_certificate(block: &str) -> Option<Revocation> {
    guarded(|| {
        let (_, bytes) = dearmor_payload(block, MAX_SIGNED_CONTENT as u64)?;
        let mut packets = pgp::packet::PacketParser::new(io::BufReader::new(&bytes[..]));
        let first = packets.next().ok_or(KeyError::NoKey)?.map_err(unreadable)?;
        if packets.next().is_some() {
            return Err(KeyError::NoKey);
        }
        match first {
            pgp::packet::Packet::Signature(sig) if sig.typ() == Some(SignatureType::KeyRevocation) => {
                Ok(Revocation(sig))
            }
            _ => Err(KeyError::NoKey),
        }
    })
    .ok()
}

/// A key revocation signature on its own, as a revocation certificate
/// holds it ([`parse_revocation_certificate`](crate::parse_revocation_certificate)),
/// to be added to the key it revokes ([`CheckedKey::with_revocation`](crate::CheckedKey::with_revocation)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation(pub(crate) Signature);

impl Revocation {
    /// The key IDs the revocation names as its issuer (16 upper-case hex
    /// digits each).
    pub fn issuer_key_ids(&self) -> Vec<String> {
        issuer_key_ids_of(&self.0)
    }
}
