//! RSA signature checks through the system's OpenSSL.
//!
//! rPGP verifies RSA with the `rsa` crate, whose modular exponentiation
//! (num-bigint-dig) takes about 0.5 ms per RSA-4096 signature on this
//! machine's class of CPU, against 0.07 ms for OpenSSL (`openssl speed
//! rsa4096`). Checking self-signatures is nearly all of what
//! `keyreg --import` does with a real keyring (thousands of RSA checks for
//! the Debian keyring's 905 keys), so [`Checked`] hands RSA PKCS #1 v1.5
//! signatures over the digest rPGP computed to OpenSSL's
//! `EVP_PKEY_verify`, which checks the padding and the DigestInfo
//! encoding itself. Everything else goes to rPGP unchanged: other
//! algorithms, hashes not listed here, and public exponents over 64 bits
//! (which OpenSSL refuses for moduli over 3,072 bits; rPGP's largest
//! modulus is within OpenSSL's).

use std::cell::OnceCell;

use openssl::bn::BigNum;
use openssl::error::ErrorStack;
use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::errors::Error as PgpError;
use pgp::ser::Serialize;
use pgp::types::{
    Fingerprint, KeyDetails, KeyId, KeyVersion, Mpi, PublicParams, SignatureBytes, Timestamp, VerifyingKey,
};
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;

/// Longest public exponent handed to OpenSSL, in bytes.
const MAX_EXPONENT_BYTES: usize = 8;

/// A key that verifies signatures like the key it wraps, faster: RSA
/// through OpenSSL (the key converted once, so OpenSSL's Montgomery
/// context is built once too), and the key's serialisation (which every
/// signature over it hashes) and fingerprint worked out once. Pass it
/// wherever rPGP wants a verifying key, one per key checked.
pub(super) struct Checked<'a, K> {
    key: &'a K,
    bytes: OnceCell<Vec<u8>>,
    fingerprint: OnceCell<Fingerprint>,
    openssl: OnceCell<Option<PKey<Public>>>,
}

impl<'a, K> Checked<'a, K> {
    pub(super) fn new(key: &'a K) -> Checked<'a, K> {
        Checked {
            key,
            bytes: OnceCell::new(),
            fingerprint: OnceCell::new(),
            openssl: OnceCell::new(),
        }
    }
}

impl<K: std::fmt::Debug> std::fmt::Debug for Checked<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.key.fmt(f)
    }
}

impl<K: KeyDetails> KeyDetails for Checked<'_, K> {
    fn version(&self) -> KeyVersion {
        self.key.version()
    }

    fn legacy_key_id(&self) -> KeyId {
        match self.key.version() {
            KeyVersion::V4 | KeyVersion::V6 => match crate::key_id::key_id_bytes_of(&self.fingerprint()) {
                Some(raw) => KeyId::from(raw),
                None => self.key.legacy_key_id(),
            },
            _ => self.key.legacy_key_id(),
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        self.fingerprint.get_or_init(|| self.key.fingerprint()).clone()
    }

    fn algorithm(&self) -> PublicKeyAlgorithm {
        self.key.algorithm()
    }

    fn created_at(&self) -> Timestamp {
        self.key.created_at()
    }

    fn legacy_v3_expiration_days(&self) -> Option<u16> {
        self.key.legacy_v3_expiration_days()
    }

    fn public_params(&self) -> &PublicParams {
        self.key.public_params()
    }
}

impl<K: Serialize> Serialize for Checked<'_, K> {
    fn to_writer<W: std::io::Write>(&self, writer: &mut W) -> pgp::errors::Result<()> {
        let bytes = match self.bytes.get() {
            Some(bytes) => bytes,
            None => {
                let bytes = self.key.to_bytes()?;
                self.bytes.get_or_init(|| bytes)
            }
        };
        writer.write_all(bytes)?;
        Ok(())
    }

    fn write_len(&self) -> usize {
        self.bytes.get().map_or_else(|| self.key.write_len(), Vec::len)
    }
}

impl<K: VerifyingKey> VerifyingKey for Checked<'_, K> {
    fn verify(&self, hash: HashAlgorithm, digest: &[u8], signature: &SignatureBytes) -> pgp::errors::Result<()> {
        if let PublicParams::RSA(params) = self.key.public_params() {
            let public = self.openssl.get_or_init(|| openssl_key(&params.key));
            if let Some(verdict) = public
                .as_ref()
                .and_then(|public| verify_pkcs1v15(public, hash, digest, signature))
            {
                return verdict;
            }
        }
        self.key.verify(hash, digest, signature)
    }
}

/// The RSA public key as OpenSSL's; `None` when rPGP should check it.
fn openssl_key(key: &RsaPublicKey) -> Option<PKey<Public>> {
    let e = key.e().to_bytes_be();
    if e.len() > MAX_EXPONENT_BYTES {
        return None;
    }
    let convert = || -> Result<PKey<Public>, ErrorStack> {
        let n = BigNum::from_slice(&key.n().to_bytes_be())?;
        PKey::from_rsa(Rsa::from_public_components(n, BigNum::from_slice(&e)?)?)
    };
    convert().ok()
}

fn refused(why: impl std::fmt::Display) -> PgpError {
    PgpError::Message {
        message: format!("invalid RSA signature: {why}"),
        backtrace: None,
    }
}

/// OpenSSL's name for `hash`, for the hashes OpenPGP keys sign with.
fn digest_of(hash: HashAlgorithm) -> Option<&'static MdRef> {
    Some(match hash {
        HashAlgorithm::Sha1 => Md::sha1(),
        HashAlgorithm::Sha224 => Md::sha224(),
        HashAlgorithm::Sha256 => Md::sha256(),
        HashAlgorithm::Sha384 => Md::sha384(),
        HashAlgorithm::Sha512 => Md::sha512(),
        _ => return None,
    })
}

/// Verifies an RSA PKCS #1 v1.5 signature over `digest`, or `None` when
/// this path does not handle the case (rPGP then decides).
fn verify_pkcs1v15(
    key: &PKey<Public>,
    hash: HashAlgorithm,
    digest: &[u8],
    signature: &SignatureBytes,
) -> Option<pgp::errors::Result<()>> {
    let message_digest = digest_of(hash)?;
    let mpis: &[Mpi] = signature.try_into().ok()?;
    let [mpi] = mpis else {
        return None;
    };
    Some(check(key, message_digest, digest, mpi.as_ref()))
}

fn check(key: &PKey<Public>, hash: &MdRef, digest: &[u8], signature: &[u8]) -> pgp::errors::Result<()> {
    if digest.len() != hash.size() {
        return Err(refused("the digest's length does not match its algorithm"));
    }
    // OpenPGP drops the MPI's leading zero bytes; OpenSSL wants exactly
    // the modulus's length.
    let size = key.size();
    if signature.len() > size {
        return Err(refused("longer than the modulus"));
    }
    let mut padded = vec![0u8; size];
    padded[size - signature.len()..].copy_from_slice(signature);
    let verified = (|| -> Result<bool, ErrorStack> {
        let mut context = PkeyCtx::new(key)?;
        context.verify_init()?;
        context.set_rsa_padding(Padding::PKCS1)?;
        context.set_signature_md(hash)?;
        context.verify(digest, &padded)
    })();
    match verified {
        Ok(true) => Ok(()),
        Ok(false) => Err(refused("the digest does not match")),
        Err(err) => Err(refused(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::hazmat::PrehashSigner;
    use rsa::signature::SignatureEncoding;
    use rsa::RsaPrivateKey;
    use sha2::{Digest, Sha256};

    fn key() -> &'static RsaPrivateKey {
        static KEY: std::sync::OnceLock<RsaPrivateKey> = std::sync::OnceLock::new();
        KEY.get_or_init(|| RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key"))
    }

    /// A signature made by the `rsa` crate (what rPGP signs with).
    fn signed(digest: &[u8]) -> Vec<u8> {
        let signer = SigningKey::<Sha256>::new(key().clone());
        signer.sign_prehash(digest).expect("sign").to_vec()
    }

    fn verdict(digest: &[u8], signature: &[u8]) -> bool {
        let public = openssl_key(&key().to_public_key()).expect("OpenSSL key");
        check(&public, Md::sha256(), digest, signature).is_ok()
    }

    #[test]
    fn accepts_what_the_rsa_crate_signs() {
        let digest = Sha256::digest(b"self-signature data");
        let signature = signed(&digest);
        assert!(verdict(&digest, &signature));
        // OpenPGP drops the MPI's leading zero bytes.
        let trimmed: Vec<u8> = signature.iter().copied().skip_while(|&b| b == 0).collect();
        assert!(verdict(&digest, &trimmed));
    }

    #[test]
    fn refuses_wrong_digests_tampered_and_oversized_signatures() {
        let digest = Sha256::digest(b"self-signature data");
        let signature = signed(&digest);
        assert!(!verdict(&Sha256::digest(b"something else"), &signature));
        assert!(!verdict(&digest[..20], &signature));
        let mut tampered = signature.clone();
        tampered[100] ^= 1;
        assert!(!verdict(&digest, &tampered));
        let mut longer = vec![1u8];
        longer.extend_from_slice(&signature);
        assert!(!verdict(&digest, &longer));
        assert!(!verdict(&digest, &key().n().to_bytes_be()));
        assert!(!verdict(&digest, &[]));
    }

    #[test]
    fn a_sha1_signature_is_not_taken_for_sha256() {
        let digest = Sha256::digest(b"self-signature data");
        let signature = signed(&digest);
        let sha1_sized = &digest[..20];
        let public = openssl_key(&key().to_public_key()).expect("OpenSSL key");
        assert!(check(&public, Md::sha1(), sha1_sized, &signature).is_err());
    }
}
