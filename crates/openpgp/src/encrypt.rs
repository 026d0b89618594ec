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
//!
//! The other way round, a Web Key Service server has a key pair of its
//! own ([`ServerKey`]: Ed25519 with a Curve25519 encryption subkey, user
//! ID the submission address), to which `gpg-wks-client` encrypts its
//! submissions and confirmation responses. Decrypting reads at most
//! [`MAX_DECRYPTED`] bytes: a compressed message can't inflate past it.

use std::io::Read;

use pgp::composed::{
    ArmorOptions, Deserializable, EncryptionCaps, KeyType, Message, MessageBuilder, SecretKeyParamsBuilder,
    SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::SignatureType;
use pgp::types::Password;
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
    /// The server's key pair could not be made or read.
    #[error("the server's key pair: {0}")]
    ServerKey(String),
    /// A message to the server could not be decrypted.
    #[error("could not decrypt the message: {0}")]
    Decrypt(String),
}

/// The most plaintext [`ServerKey::decrypt`] reads from one message.
pub const MAX_DECRYPTED: u64 = 1 << 20;

/// A Web Key Service server's own key pair (unprotected: the daemon uses
/// it unattended; its file is the operator's to guard).
pub struct ServerKey {
    secret: SignedSecretKey,
}

impl ServerKey {
    /// A new key pair for `user_id` (the submission address).
    pub fn generate(user_id: &str) -> Result<ServerKey, EncryptError> {
        let failed = |err: &dyn std::fmt::Display| EncryptError::ServerKey(err.to_string());
        let subkey = SubkeyParamsBuilder::default()
            .key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
            .can_encrypt(EncryptionCaps::All)
            .build()
            .map_err(|err| failed(&err))?;
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(user_id.to_string())
            .preferred_symmetric_algorithms(vec![SymmetricKeyAlgorithm::AES256, SymmetricKeyAlgorithm::AES128].into())
            .subkey(subkey);
        let secret = params
            .build()
            .map_err(|err| failed(&err))?
            .generate(rand::thread_rng())
            .map_err(|err| failed(&err))?;
        Ok(ServerKey { secret })
    }

    /// The key pair as [`ServerKey::to_armored_secret`] wrote it.
    pub fn from_armored_secret(text: &str) -> Result<ServerKey, EncryptError> {
        let (secret, _) = SignedSecretKey::from_string(text).map_err(|err| EncryptError::ServerKey(err.to_string()))?;
        Ok(ServerKey { secret })
    }

    /// The secret key, armored, for the server's state directory.
    pub fn to_armored_secret(&self) -> Result<String, EncryptError> {
        self.secret
            .to_armored_string(ArmorOptions::default())
            .map_err(|err| EncryptError::ServerKey(err.to_string()))
    }

    /// The public key, armored: what the submission address publishes.
    pub fn to_armored_public(&self) -> Result<String, EncryptError> {
        self.secret
            .to_public_key()
            .to_armored_string(ArmorOptions::default())
            .map_err(|err| EncryptError::ServerKey(err.to_string()))
    }

    /// The plaintext of an OpenPGP message (armored or binary) encrypted
    /// to this key, decompressed, at most [`MAX_DECRYPTED`] bytes.
    pub fn decrypt(&self, message: &[u8]) -> Result<Vec<u8>, EncryptError> {
        // rPGP reads hostile input here; a panic in it is a refusal.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.decrypt_unguarded(message)))
            .unwrap_or_else(|_| Err(EncryptError::Decrypt("the message is malformed".into())))
    }

    fn decrypt_unguarded(&self, message: &[u8]) -> Result<Vec<u8>, EncryptError> {
        let failed = |err: &dyn std::fmt::Display| EncryptError::Decrypt(err.to_string());
        let text = String::from_utf8_lossy(message);
        let parsed = match text.find("-----BEGIN PGP MESSAGE-----") {
            Some(start) => {
                Message::from_armor(std::io::Cursor::new(text[start..].as_bytes().to_vec())).map(|(message, _)| message)
            }
            None => Message::from_bytes(std::io::Cursor::new(message.to_vec())),
        }
        .map_err(|err| failed(&err))?;
        let mut plain = parsed
            .decrypt(&Password::empty(), &self.secret)
            .map_err(|err| failed(&err))?;
        if plain.is_compressed() {
            plain = plain.decompress().map_err(|err| failed(&err))?;
        }
        let mut out = Vec::new();
        plain
            .by_ref()
            .take(MAX_DECRYPTED + 1)
            .read_to_end(&mut out)
            .map_err(|err| failed(&err))?;
        if out.len() as u64 > MAX_DECRYPTED {
            return Err(EncryptError::Decrypt(format!(
                "more than {MAX_DECRYPTED} bytes of plaintext"
            )));
        }
        Ok(out)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::KeyPolicy;

    #[test]
    fn a_message_to_a_checked_key_decrypts_and_junk_does_not() {
        let server = ServerKey::generate("Test server <wks@example.org>").unwrap();
        let public = server.to_armored_public().unwrap();
        let mut keys = crate::parse::parse_armored_keys(&public).unwrap();
        let checked = crate::check::check_key(keys.remove(0), &KeyPolicy::default()).unwrap();
        let sealed = encrypt_to_key(&checked, b"nonce: 0123").unwrap();
        assert!(sealed.starts_with("-----BEGIN PGP MESSAGE-----"));
        assert_eq!(server.decrypt(sealed.as_bytes()).unwrap(), b"nonce: 0123");
        let again = ServerKey::from_armored_secret(&server.to_armored_secret().unwrap()).unwrap();
        assert_eq!(again.decrypt(sealed.as_bytes()).unwrap(), b"nonce: 0123");

        let other = ServerKey::generate("Other <other@example.org>").unwrap();
        assert!(other.decrypt(sealed.as_bytes()).is_err());
        assert!(server
            .decrypt(b"-----BEGIN PGP MESSAGE-----\n\nAAAA\n-----END PGP MESSAGE-----\n")
            .is_err());
        assert!(server.decrypt(&[0xc1, 0xff, 0x00, 0x13]).is_err());

        let mut bare = checked.clone();
        bare.key.public_subkeys.clear();
        bare.derived = Default::default();
        assert!(matches!(
            encrypt_to_key(&bare, b"x"),
            Err(EncryptError::NoEncryptionKey)
        ));
    }
}
