//! RSA and DSA signature checks through the system's OpenSSL.
//!
//! rPGP verifies RSA with the `rsa` crate, whose modular exponentiation
//! (num-bigint-dig) takes about 0.5 ms per RSA-4096 signature on this
//! machine's class of CPU, against 0.07 ms for OpenSSL (`openssl speed
//! rsa4096`). Checking self-signatures is nearly all of what
//! `keyreg --import` does with a real keyring (thousands of RSA checks for
//! the Debian keyring's 905 keys), so [`Checked`] hands RSA PKCS #1 v1.5
//! signatures over the digest rPGP computed to OpenSSL's RSA public-key
//! operation (`RSA_public_decrypt` with PKCS #1 v1.5 padding, which checks
//! the padding), and the recovered DigestInfo is compared with the one the
//! digest must have, byte for byte, as `EVP_PKEY_verify` compares it. The
//! low-level call skips what an `EVP_PKEY_CTX` costs per signature (a
//! provider lookup and a context), a fifth of an RSA-2048 check. DSA (the Debian keyring's old keys, whose expiry is
//! asked before their algorithm is refused) goes to OpenSSL's DSA too:
//! rPGP's `dsa` crate works through num-bigint-dig as well. OpenSSL
//! truncates the digest to the size of `q` as the `dsa` crate does, so
//! only a `q` of whole bytes (all of FIPS 186's) is handed over.
//! Everything else goes to rPGP unchanged: other algorithms, hashes not
//! listed here, and public exponents over 64 bits (which OpenSSL refuses
//! for moduli over 3,072 bits; rPGP's largest modulus is within OpenSSL's).

use std::cell::OnceCell;

use openssl::bn::BigNum;
use openssl::dsa::{Dsa, DsaSig};
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::errors::Error as PgpError;
use pgp::ser::Serialize;
use pgp::types::{
    DsaPublicParams, Fingerprint, KeyDetails, KeyId, KeyVersion, Mpi, PublicParams, SignatureBytes, Timestamp,
    VerifyingKey,
};
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;

/// Longest public exponent handed to OpenSSL, in bytes.
const MAX_EXPONENT_BYTES: usize = 8;

/// A key that verifies signatures like the key it wraps, faster: RSA and
/// DSA through OpenSSL (the key converted once, so OpenSSL's Montgomery
/// context is built once too), and the key's serialisation (which every
/// signature over it hashes) and fingerprint worked out once. Pass it
/// wherever rPGP wants a verifying key, one per key checked.
pub(super) struct Checked<'a, K> {
    key: &'a K,
    bytes: OnceCell<Vec<u8>>,
    fingerprint: OnceCell<Fingerprint>,
    openssl: OnceCell<Option<OpenSslKey>>,
}

/// A key in OpenSSL's form, made once per [`Checked`].
enum OpenSslKey {
    Rsa(Rsa<Public>),
    Dsa(PKey<Public>),
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
        let public = match self.key.public_params() {
            PublicParams::RSA(params) => self
                .openssl
                .get_or_init(|| openssl_key(&params.key).map(OpenSslKey::Rsa)),
            PublicParams::DSA(params) => self
                .openssl
                .get_or_init(|| openssl_dsa_key(params).map(OpenSslKey::Dsa)),
            _ => &None,
        };
        let verdict = match public {
            Some(OpenSslKey::Rsa(public)) => verify_pkcs1v15(public, hash, digest, signature),
            Some(OpenSslKey::Dsa(public)) => verify_dsa(public, digest, signature),
            None => None,
        };
        verdict.unwrap_or_else(|| self.key.verify(hash, digest, signature))
    }
}

/// The RSA public key as OpenSSL's; `None` when rPGP should check it.
fn openssl_key(key: &RsaPublicKey) -> Option<Rsa<Public>> {
    let e = key.e().to_bytes_be();
    if e.len() > MAX_EXPONENT_BYTES {
        return None;
    }
    let convert = || -> Result<Rsa<Public>, ErrorStack> {
        let n = BigNum::from_slice(&key.n().to_bytes_be())?;
        Rsa::from_public_components(n, BigNum::from_slice(&e)?)
    };
    convert().ok()
}

/// The DSA public key as OpenSSL's; `None` when rPGP should check it (a
/// `q` that is not whole bytes, which the two truncate digests for
/// differently).
fn openssl_dsa_key(params: &DsaPublicParams) -> Option<PKey<Public>> {
    let components = params.key.components();
    if !components.q().bits().is_multiple_of(8) {
        return None;
    }
    let number = |n: &rsa::BigUint| BigNum::from_slice(&n.to_bytes_be());
    let convert = || -> Result<PKey<Public>, ErrorStack> {
        let dsa = Dsa::from_public_components(
            number(components.p())?,
            number(components.q())?,
            number(components.g())?,
            number(params.key.y())?,
        )?;
        PKey::from_dsa(dsa)
    };
    convert().ok()
}

/// Verifies a DSA signature (the MPIs r and s) over `digest`, or `None`
/// when this path does not handle it.
fn verify_dsa(key: &PKey<Public>, digest: &[u8], signature: &SignatureBytes) -> Option<pgp::errors::Result<()>> {
    let mpis: &[Mpi] = signature.try_into().ok()?;
    let [r, s] = mpis else {
        return None;
    };
    let verified = (|| -> Result<bool, ErrorStack> {
        let der = DsaSig::from_private_components(BigNum::from_slice(r.as_ref())?, BigNum::from_slice(s.as_ref())?)?
            .to_der()?;
        let mut context = PkeyCtx::new(key)?;
        context.verify_init()?;
        context.verify(digest, &der)
    })();
    Some(match verified {
        Ok(true) => Ok(()),
        Ok(false) => Err(refused("DSA", "the digest does not match")),
        Err(err) => Err(refused("DSA", err)),
    })
}

fn refused(algorithm: &str, why: impl std::fmt::Display) -> PgpError {
    PgpError::Message {
        message: format!("invalid {algorithm} signature: {why}"),
        backtrace: None,
    }
}

/// The DER DigestInfo that precedes a digest of `hash` in a PKCS #1
/// v1.5 signature (RFC 8017, 9.2, note 1), for the hashes OpenPGP keys
/// sign with; its last byte is the digest's length.
fn digest_info(hash: HashAlgorithm) -> Option<&'static [u8]> {
    const SHA2: [u8; 13] = [
        0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x00,
    ];
    const fn sha2(outer: u8, number: u8, length: u8) -> [u8; 19] {
        let mut info = [0u8; 19];
        info[0] = 0x30;
        info[1] = outer;
        let mut i = 0;
        while i < SHA2.len() {
            info[2 + i] = SHA2[i];
            i += 1;
        }
        info[14] = number;
        info[15] = 0x05;
        info[17] = 0x04;
        info[18] = length;
        info
    }
    const SHA1: [u8; 15] = [
        0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
    ];
    const SHA224: [u8; 19] = sha2(0x2d, 0x04, 28);
    const SHA256: [u8; 19] = sha2(0x31, 0x01, 32);
    const SHA384: [u8; 19] = sha2(0x41, 0x02, 48);
    const SHA512: [u8; 19] = sha2(0x51, 0x03, 64);
    Some(match hash {
        HashAlgorithm::Sha1 => &SHA1,
        HashAlgorithm::Sha224 => &SHA224,
        HashAlgorithm::Sha256 => &SHA256,
        HashAlgorithm::Sha384 => &SHA384,
        HashAlgorithm::Sha512 => &SHA512,
        _ => return None,
    })
}

/// Verifies an RSA PKCS #1 v1.5 signature over `digest`, or `None` when
/// this path does not handle the case (rPGP then decides).
fn verify_pkcs1v15(
    key: &Rsa<Public>,
    hash: HashAlgorithm,
    digest: &[u8],
    signature: &SignatureBytes,
) -> Option<pgp::errors::Result<()>> {
    let info = digest_info(hash)?;
    let mpis: &[Mpi] = signature.try_into().ok()?;
    let [mpi] = mpis else {
        return None;
    };
    Some(check(key, info, digest, mpi.as_ref()))
}

fn check(key: &Rsa<Public>, info: &[u8], digest: &[u8], signature: &[u8]) -> pgp::errors::Result<()> {
    if info.last().map(|&length| usize::from(length)) != Some(digest.len()) {
        return Err(refused("RSA", "the digest's length does not match its algorithm"));
    }
    // OpenPGP drops the MPI's leading zero bytes; OpenSSL wants exactly
    // the modulus's length.
    let size = key.size() as usize;
    if signature.len() > size {
        return Err(refused("RSA", "longer than the modulus"));
    }
    let mut padded = vec![0u8; size];
    padded[size - signature.len()..].copy_from_slice(signature);
    let mut recovered = vec![0u8; size];
    match key.public_decrypt(&padded, &mut recovered, Padding::PKCS1) {
        Ok(length) => {
            let recovered = &recovered[..length.min(size)];
            let expected = info.len() + digest.len();
            if recovered.len() == expected && recovered.starts_with(info) && recovered.ends_with(digest) {
                Ok(())
            } else {
                Err(refused("RSA", "the digest does not match"))
            }
        }
        Err(err) => Err(refused("RSA", err)),
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
        check(
            &public,
            digest_info(HashAlgorithm::Sha256).expect("SHA-256"),
            digest,
            signature,
        )
        .is_ok()
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

    /// A DSA-2048 key made by gpg, as rPGP reads it.
    fn gpg_dsa_key() -> pgp::composed::SignedPublicKey {
        use pgp::composed::Deserializable;
        let home = tempfile::tempdir().expect("tempdir");
        let gpg = |args: &[&str]| {
            let out = std::process::Command::new("gpg")
                .args(["--batch", "--homedir"])
                .arg(home.path())
                .args(args)
                .output()
                .expect("gpg must be installed (package gnupg)");
            assert!(
                out.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let uid = "Dee <dee@example.org>";
        let quiet = ["--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key"];
        gpg(&[&quiet[..], &[uid, "dsa2048", "sign", "never"]].concat());
        let exported = gpg(&["--export", uid]);
        pgp::composed::SignedPublicKey::from_bytes(&exported[..]).expect("DSA key")
    }

    #[test]
    fn dsa_signatures_go_to_openssl_with_rpgps_verdicts() {
        use pgp::types::Tag;
        let key = gpg_dsa_key();
        let PublicParams::DSA(params) = key.primary_key.public_params() else {
            panic!("a DSA key expected");
        };
        assert!(openssl_dsa_key(params).is_some());
        let user = &key.details.users[0];
        let sig = &user.signatures[0];
        let checked = Checked::new(&key.primary_key);
        assert!(sig.verify_certification(&checked, Tag::UserId, &user.id).is_ok());
        assert!(sig
            .verify_certification(&key.primary_key, Tag::UserId, &user.id)
            .is_ok());
        // The same signature over other data: refused by both.
        assert!(sig.verify_key(&checked).is_err());
        assert!(sig.verify_key(&key.primary_key).is_err());
        let Some(SignatureBytes::Mpis(mpis)) = sig.signature() else {
            panic!("DSA MPIs expected");
        };
        let public = openssl_dsa_key(params).expect("OpenSSL key");
        let digest = [0u8; 32];
        let bogus = SignatureBytes::Mpis(vec![mpis[0].clone(), mpis[0].clone()]);
        assert!(verify_dsa(&public, &digest, &bogus).is_some_and(|verdict| verdict.is_err()));
        let short = SignatureBytes::Mpis(vec![mpis[0].clone()]);
        assert!(verify_dsa(&public, &digest, &short).is_none());
    }

    #[test]
    fn a_sha1_signature_is_not_taken_for_sha256() {
        let digest = Sha256::digest(b"self-signature data");
        let signature = signed(&digest);
        let sha1_sized = &digest[..20];
        let public = openssl_key(&key().to_public_key()).expect("OpenSSL key");
        assert!(check(
            &public,
            digest_info(HashAlgorithm::Sha1).expect("SHA-1"),
            sha1_sized,
            &signature
        )
        .is_err());
    }
}
