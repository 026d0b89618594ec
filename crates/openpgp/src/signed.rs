//! Signed requests: finding the signed parts of a mail
//! ([`find_signed_parts`]: cleartext-signed and inline-signed armored
//! messages, by the block rule of [`armor`](crate::armor); PGP/MIME parts
//! come from the mail reader), reading whom they name as signer, and
//! verifying them against a registered key.
//!
//! The rules: a signature is checked against the primary key and every
//! subkey whose key IDs it names ([`KeyIds::may_have_issued`]); one that
//! verifies counts only if the key that made it could sign then by the
//! registered copy ([`validity`](crate::validity)). At most
//! [`MAX_SIGNED_CONTENT`] bytes of signed content are read, and at most 16
//! detached signatures.

use std::io::Read;

use chrono::{DateTime, Utc};
use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::packet::Signature;

use crate::armor::{armored_blocks, MAX_SIGNED_CONTENT};
use crate::error::{guarded, SignatureError};
use crate::key::CheckedKey;
use crate::key_id::issuer_key_ids_of;
use crate::sigs::Verifier;
use crate::validity::Judge;

const SIGNED_BEGIN: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIGNATURE_END: &str = "-----END PGP SIGNATURE-----";
const MESSAGE_BEGIN: &str = "-----BEGIN PGP MESSAGE-----";
const MESSAGE_END: &str = "-----END PGP MESSAGE-----";

/// A part of a request mail that carries a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedPart {
    /// A cleartext-signed message (`gpg --clearsign`): the armored block
    /// from `-----BEGIN PGP SIGNED MESSAGE-----` to `-----END PGP SIGNATURE-----`.
    Cleartext(String),
    /// An inline-signed armored message (`gpg --sign --armor`), usually compressed.
    Inline(String),
    /// PGP/MIME `multipart/signed`: the signed MIME part's bytes, exactly as
    /// they stand in the mail, its decoded text, and the armored detached
    /// signature. The mail reader decodes the text; this crate knows no MIME.
    Detached {
        /// The first part of the `multipart/signed`, headers and body.
        content: Vec<u8>,
        /// That part's body text, headers dropped and transfer encoding undone.
        text: String,
        /// The armored `application/pgp-signature` part.
        signature: String,
    },
}

/// What a verified signed part says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed text (line ends normalised to `\n`).
    pub content: String,
    /// When it was signed, by the signature's own clock.
    pub signed_at: DateTime<Utc>,
}

/// Finds the cleartext-signed and inline-signed armored messages in `text`.
pub fn find_signed_parts(text: &str) -> Vec<SignedPart> {
    let mut parts: Vec<SignedPart> = armored_blocks(text, SIGNED_BEGIN, SIGNATURE_END)
        .into_iter()
        .map(|block| SignedPart::Cleartext(block.to_string()))
        .collect();
    parts.extend(
        armored_blocks(text, MESSAGE_BEGIN, MESSAGE_END)
            .into_iter()
            .map(|block| SignedPart::Inline(block.to_string())),
    );
    parts
}

fn signature_error(err: impl std::fmt::Display) -> SignatureError {
    SignatureError::Unreadable(err.to_string())
}

/// The keys a signature may be checked against: the primary key and every
/// subkey. Whether the one that verifies may have signed is
/// [`check_signer`]'s to say, so that the refusal can name the reason (a
/// revoked or expired subkey, one not bound for signing).
fn verifying_keys(key: &SignedPublicKey) -> Vec<Verifier<'_>> {
    let mut keys = vec![Verifier::Primary(&key.primary_key)];
    keys.extend(key.public_subkeys.iter().map(|sub| Verifier::Subkey(&sub.key)));
    keys
}

/// Normalises line ends to `\n`.
fn lf_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", "\n")
}

/// Converts bare `\n` line ends to `\r\n`, as PGP/MIME signs.
fn crlf_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut previous = 0u8;
    for &byte in bytes {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

/// Reads an inline-signed message: its literal data and its signatures,
/// with a verifier over them.
fn with_inline<T>(
    armored: &str,
    then: impl FnOnce(&pgp::composed::Message<'_>, Vec<u8>) -> Result<T, SignatureError>,
) -> Result<T, SignatureError> {
    let (message, _) = pgp::composed::Message::from_string(armored).map_err(signature_error)?;
    let mut message = message.decompress().map_err(signature_error)?;
    let mut data = Vec::new();
    (&mut message)
        .take(MAX_SIGNED_CONTENT as u64)
        .read_to_end(&mut data)
        .map_err(signature_error)?;
    then(&message, data)
}

fn inline_signatures(message: &pgp::composed::Message<'_>) -> Vec<Signature> {
    match message {
        pgp::composed::Message::Signed { reader, .. } => (0..reader.num_signatures())
            .filter_map(|i| reader.signature(i).cloned())
            .collect(),
        _ => Vec::new(),
    }
}

impl SignedPart {
    /// The key IDs the signatures name as their issuers (16 upper-case hex
    /// digits each); empty if there is no readable signature.
    pub fn issuer_key_ids(&self) -> Vec<String> {
        let signatures = guarded(|| match self {
            SignedPart::Cleartext(block) => pgp::composed::CleartextSignedMessage::from_string(block)
                .map(|(message, _)| message.signatures().to_vec())
                .map_err(signature_error),
            SignedPart::Inline(armored) => with_inline(armored, |message, _| Ok(inline_signatures(message))),
            SignedPart::Detached { signature, .. } => parse_detached(signature).map(|sigs| sigs.into_iter().collect()),
        })
        .unwrap_or_default();
        let mut ids: Vec<String> = signatures.iter().flat_map(issuer_key_ids_of).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Verifies the part with `key`'s primary key or any of its subkeys,
    /// and checks that the one that signed could sign then
    /// ([`check_signer`](crate::check_signer)); returns the signed text and when it was signed.
    pub fn verify(&self, key: &CheckedKey) -> Result<Verified, SignatureError> {
        guarded(|| {
            let candidates = verifying_keys(&key.key);
            let mut judge = Judge::new(key);
            match self {
                SignedPart::Cleartext(block) => {
                    let (message, _) =
                        pgp::composed::CleartextSignedMessage::from_string(block).map_err(signature_error)?;
                    let signed = message.signed_text();
                    for sig in message.signatures() {
                        for verifier in &candidates {
                            if !verifier.verifies(sig, signed.as_bytes()) {
                                continue;
                            }
                            if let Some(signed_at) = judge.accepts(sig, verifier)? {
                                return Ok(Verified {
                                    content: lf_text(signed.as_bytes()),
                                    signed_at,
                                });
                            }
                        }
                    }
                    Err(judge.refusal())
                }
                SignedPart::Inline(armored) => with_inline(armored, |message, data| {
                    let count = match message {
                        pgp::composed::Message::Signed { reader, .. } => reader.num_signatures(),
                        _ => 0,
                    };
                    for index in 0..count {
                        for verifier in &candidates {
                            let Ok(sig) = message.verify_nested_explicit(index, verifier.as_dyn()) else {
                                continue;
                            };
                            if let Some(signed_at) = judge.accepts(sig, verifier)? {
                                return Ok(Verified {
                                    content: lf_text(&data),
                                    signed_at,
                                });
                            }
                        }
                    }
                    Err(judge.refusal())
                }),
                SignedPart::Detached {
                    content,
                    text,
                    signature,
                } => {
                    // RFC 3156 signs the part with CRLF line ends; some mailers
                    // hand over the part with its final line end, some without.
                    let canonical = crlf_bytes(content);
                    let trimmed = canonical.strip_suffix(b"\r\n").unwrap_or(&canonical);
                    for sig in parse_detached(signature)? {
                        for verifier in &candidates {
                            if ![&canonical[..], trimmed]
                                .iter()
                                .any(|data| verifier.verifies(&sig, data))
                            {
                                continue;
                            }
                            if let Some(signed_at) = judge.accepts(&sig, verifier)? {
                                return Ok(Verified {
                                    content: text.clone(),
                                    signed_at,
                                });
                            }
                        }
                    }
                    Err(judge.refusal())
                }
            }
        })
    }
}

fn parse_detached(armored: &str) -> Result<Vec<Signature>, SignatureError> {
    let (signatures, _) = pgp::composed::DetachedSignature::from_string_many(armored).map_err(signature_error)?;
    let mut out = Vec::new();
    for signature in signatures.take(16) {
        out.push(signature.map_err(signature_error)?.signature);
    }
    Ok(out)
}
