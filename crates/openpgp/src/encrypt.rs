//! Encrypting a message to a checked key: the confirmation request of
//! keyreg's `policy = "confirm"` travels encrypted to the key submitted,
//! so that only the holder of its secret key can read the nonce in it.
//!
//! The message goes to the key's encryption subkeys: those whose newest
//! binding signature (the only one a checked key keeps) has an encryption
//! key flag and that carry no revocation, each as a recipient (as GnuPG
//! does for a key with several). A key with none is refused: there is no
//! way to prove it is held, so it can't be confirmed. The result is an
//! armored SEIPD (v1, AES-256) message, uncompressed, which every OpenPGP
//! implementation in use reads.

use pgp::composed::{ArmorOptions, MessageBuilder};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::SignatureType;
use ripem_core::exit::{self, ExitStatus};

use crate::key::CheckedKey;

/// Why a message could not be encrypted to a key.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    /// The key has no usable encryption subkey.
    #[error("the key has no encryption subkey, so a confirmation can't be sent encrypted to it")]
    NoEncryptionKey,
    /// rPGP refused (an algorithm it can't encrypt to, say).
    #[error("encrypting to the key failed: {0}")]
    Pgp(String),
}

impl ExitStatus for EncryptError {
    fn exit_code(&self) -> u8 {
        exit::DATAERR
    }
}

/// `plaintext` encrypted to every encryption subkey of `key`, armored.
pub fn encrypt_to_key(key: &CheckedKey, plaintext: &[u8]) -> Result<String, EncryptError> {
    let subkeys: Vec<_> = key
        .signed_public_key()
        .public_subkeys
        .iter()
        .filter(|subkey| {
            let revoked = subkey
                .signatures
                .iter()
                .any(|sig| sig.typ() == Some(SignatureType::SubkeyRevocation));
            let encrypts = subkey.signatures.iter().any(|sig| {
                sig.typ() == Some(SignatureType::SubkeyBinding)
                    && (sig.key_flags().encrypt_comms() || sig.key_flags().encrypt_storage())
            });
            encrypts && !revoked
        })
        .collect();
    if subkeys.is_empty() {
        return Err(EncryptError::NoEncryptionKey);
    }
    let mut rng = rand::thread_rng();
    let mut builder =
        MessageBuilder::from_bytes("", plaintext.to_vec()).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
    for subkey in subkeys {
        builder
            .encrypt_to_key(&mut rng, &subkey.key)
            .map_err(|err| EncryptError::Pgp(err.to_string()))?;
    }
    builder
        .to_armored_string(&mut rng, ArmorOptions::default())
        .map_err(|err| EncryptError::Pgp(err.to_string()))
}
