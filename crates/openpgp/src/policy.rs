//! Which primary keys pass: [`KeyPolicy`] (sizes and counts, from the
//! configuration) and the algorithm rule: RSA (sign or sign-and-encrypt) of
//! at least `min_rsa_bits`, or an elliptic-curve signing key (ECDSA on a
//! supported curve, Ed25519 in either form, Ed448). DSA, Elgamal and
//! encryption-only algorithms are refused.

use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::PublicKey;
use pgp::ser::Serialize;
use pgp::types::{KeyDetails as _, PublicParams};

use ripem_core::config::KeyregConfig;

use crate::error::KeyError;

/// Limits that make a key eligible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Smallest RSA primary key accepted, in bits (2048).
    pub min_rsa_bits: usize,
    /// Most user IDs a key may carry (counted before stripping).
    pub max_user_ids: usize,
    /// Most subkeys a key may carry (counted before stripping).
    pub max_subkeys: usize,
    /// Most signatures that will be cryptographically checked for one key.
    /// Signatures whose issuer is plainly another key are dropped without
    /// checking and do not count.
    pub max_signature_checks: usize,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            min_rsa_bits: 2048,
            max_user_ids: 100,
            max_subkeys: 100,
            max_signature_checks: 2000,
        }
    }
}

impl KeyPolicy {
    /// The policy `keyserver.toml` sets (`[keyreg] min_rsa_bits`), the
    /// defaults for the rest: the one every program that checks a key for
    /// the database uses (keyreg, hkpd), at registration and at every
    /// re-check.
    pub fn configured(keyreg: &KeyregConfig) -> KeyPolicy {
        KeyPolicy {
            min_rsa_bits: keyreg.min_rsa_bits,
            ..KeyPolicy::default()
        }
    }
}

pub(crate) fn describe_algorithm(key: &PublicKey) -> String {
    match key.public_params() {
        PublicParams::RSA(_) => match rsa_bits(key) {
            Some(bits) => format!("RSA {bits}"),
            None => "RSA".to_string(),
        },
        PublicParams::DSA(_) => "DSA".to_string(),
        PublicParams::Elgamal(_) => "Elgamal".to_string(),
        PublicParams::ECDSA(p) => format!("ECDSA {}", p.curve().name()),
        PublicParams::ECDH(p) => format!("ECDH {}", p.curve().name()),
        PublicParams::EdDSALegacy(_) => "EdDSA".to_string(),
        PublicParams::Ed25519(_) => "Ed25519".to_string(),
        PublicParams::Ed448(_) => "Ed448".to_string(),
        PublicParams::X25519(_) => "X25519".to_string(),
        PublicParams::X448(_) => "X448".to_string(),
        #[allow(unreachable_patterns)]
        _ => format!("{:?}", key.algorithm()),
    }
}

/// Bit length of an RSA key's modulus, read from the MPI bit count that
/// starts its serialised public parameters.
/// The key's OpenPGP algorithm number and its size in bits (RSA modulus,
/// curve size), as HKP's machine-readable index gives them.
pub(crate) fn algorithm_number_and_bits(key: &PublicKey) -> (u8, u32) {
    let bits = match key.public_params() {
        PublicParams::RSA(_) => rsa_bits(key).and_then(|bits| u32::try_from(bits).ok()).unwrap_or(0),
        PublicParams::ECDSA(p) => u32::from(p.curve().nbits()),
        PublicParams::ECDH(p) => u32::from(p.curve().nbits()),
        PublicParams::EdDSALegacy(_) | PublicParams::Ed25519(_) | PublicParams::X25519(_) => 255,
        PublicParams::Ed448(_) | PublicParams::X448(_) => 448,
        _ => 0,
    };
    (u8::from(key.algorithm()), bits)
}

fn rsa_bits(key: &PublicKey) -> Option<usize> {
    match key.public_params() {
        PublicParams::RSA(params) => {
            let bytes = params.to_bytes().ok()?;
            let hi = *bytes.first()?;
            let lo = *bytes.get(1)?;
            Some(usize::from(u16::from_be_bytes([hi, lo])))
        }
        _ => None,
    }
}

pub(crate) fn check_algorithm(key: &PublicKey, policy: &KeyPolicy) -> Result<(), KeyError> {
    let ok = match key.public_params() {
        PublicParams::RSA(_) => {
            if !matches!(key.algorithm(), PublicKeyAlgorithm::RSA | PublicKeyAlgorithm::RSASign) {
                false
            } else {
                let bits = rsa_bits(key).unwrap_or(0);
                if bits < policy.min_rsa_bits {
                    return Err(KeyError::WeakRsa {
                        bits,
                        min: policy.min_rsa_bits,
                    });
                }
                true
            }
        }
        PublicParams::ECDSA(p) => p.is_supported(),
        PublicParams::EdDSALegacy(p) => {
            matches!(p, pgp::types::EddsaLegacyPublicParams::Ed25519 { .. })
        }
        PublicParams::Ed25519(_) | PublicParams::Ed448(_) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(KeyError::UnsupportedAlgorithm(describe_algorithm(key)))
    }
}
