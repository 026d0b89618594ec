//! Key generation, for tests, demos and benchmarks (the `keygen`
//! feature): keys of any size (small RSA too, to test refusals), with an
//! expiry if asked ([`generate_key`], or [`generate_material`] and
//! [`key_from_material`] to make many keys from a few slow RSA pairs),
//! third-party certifications ([`certify_user_ids`]), key and user-ID
//! revocations, and armor for public and secret keys. Nothing here reads
//! hostile input except [`read_secret_key`], which runs in the panic guard.

use chrono::{DateTime, Utc};
use pgp::composed::{
    ArmorOptions, Deserializable, KeyType, SignedKeyDetails, SignedPublicKey, SignedSecretKey, SignedSecretSubKey,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{
    Features, KeyFlags, PubKeyInner, PublicKey, PublicSubkey, SecretKey, SecretSubkey, SignatureConfig, SignatureType,
    Subpacket, SubpacketData, UserId,
};
use pgp::types::{
    CompressionAlgorithm, Duration as PgpDuration, KeyDetails as _, KeyVersion, Password, PublicParams, Tag, Timestamp,
};
use rand::{CryptoRng, Rng};

use crate::error::{guarded, unreadable, KeyError};
use crate::parse::Revocation;

/// Primary key algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenAlgorithm {
    /// Ed25519 in the legacy EdDSA form (algorithm 22) that gpg 2.2 reads,
    /// with a Curve25519 ECDH encryption subkey.
    Ed25519,
    /// RSA of the given size (sizes below 2048 are allowed here, to test
    /// refusals), with an RSA encryption subkey of the same size if asked.
    Rsa(u32),
}

/// What [`generate_key`] makes.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// User IDs, the first one primary (e.g. `"Alice <alice@example.org>"`).
    pub user_ids: Vec<String>,
    /// Primary key algorithm.
    pub algorithm: GenAlgorithm,
    /// Creation time of the key and of its self-signatures.
    pub created: DateTime<Utc>,
    /// Key lifetime after creation written into the self-signatures, if any.
    pub expires_after: Option<std::time::Duration>,
    /// Whether to add an encryption subkey.
    pub encryption_subkey: bool,
}

impl KeySpec {
    /// An Ed25519 key with an encryption subkey, created now, never expiring.
    pub fn ed25519(user_ids: &[&str]) -> KeySpec {
        KeySpec {
            user_ids: user_ids.iter().map(|s| s.to_string()).collect(),
            algorithm: GenAlgorithm::Ed25519,
            created: Utc::now(),
            expires_after: None,
            encryption_subkey: true,
        }
    }
}

fn gen_err(err: impl std::fmt::Display) -> KeyError {
    KeyError::Generation(err.to_string())
}

pub(crate) fn timestamp_of(time: DateTime<Utc>) -> Result<Timestamp, KeyError> {
    let secs = u32::try_from(time.timestamp()).map_err(|_| gen_err("time out of range"))?;
    Ok(Timestamp::from_secs(secs))
}

/// A v4 SHA-256 signature configuration of type `typ` by `signer`, with
/// the creation time and issuer subpackets set.
pub(crate) fn self_config(
    typ: SignatureType,
    signer: &SecretKey,
    created: Timestamp,
) -> Result<SignatureConfig, KeyError> {
    let mut config = SignatureConfig::v4(typ, signer.algorithm(), HashAlgorithm::Sha256);
    config
        .hashed_subpackets
        .push(Subpacket::regular(SubpacketData::SignatureCreationTime(created)).map_err(gen_err)?);
    config
        .hashed_subpackets
        .push(Subpacket::regular(SubpacketData::IssuerFingerprint(signer.fingerprint())).map_err(gen_err)?);
    config
        .unhashed_subpackets
        .push(Subpacket::regular(SubpacketData::IssuerKeyId(signer.legacy_key_id())).map_err(gen_err)?);
    Ok(config)
}

fn key_type_of(algorithm: GenAlgorithm) -> (KeyType, PublicKeyAlgorithm) {
    match algorithm {
        GenAlgorithm::Ed25519 => (KeyType::Ed25519Legacy, PublicKeyAlgorithm::EdDSALegacy),
        GenAlgorithm::Rsa(bits) => (KeyType::Rsa(bits), PublicKeyAlgorithm::RSA),
    }
}

/// Generates a secret key as `spec` says (version 4, unprotected, SHA-256
/// self-signatures). Unlike rPGP's builder it allows small RSA keys and a
/// key expiration time, so tests can make weak and expired keys. Use
/// `SignedSecretKey::to_public_key` for the public half.
pub fn generate_key<R: Rng + CryptoRng>(rng: R, spec: &KeySpec) -> Result<SignedSecretKey, KeyError> {
    key_from_material(&generate_material(rng, spec.algorithm, spec.encryption_subkey)?, spec)
}

/// The key pairs of a key (primary, and encryption subkey if any) without
/// creation time, user IDs or signatures. Generating RSA pairs is slow, so
/// a benchmark makes a few and builds many keys from them with
/// [`key_from_material`], each with its own creation time (which a v4
/// fingerprint covers).
#[derive(Clone)]
pub struct KeyMaterial {
    algorithm: GenAlgorithm,
    primary: (PublicParams, pgp::types::SecretParams),
    subkey: Option<(PublicParams, pgp::types::SecretParams)>,
}

/// Generates the key pairs for a key of `algorithm`.
pub fn generate_material<R: Rng + CryptoRng>(
    mut rng: R,
    algorithm: GenAlgorithm,
    encryption_subkey: bool,
) -> Result<KeyMaterial, KeyError> {
    let primary = key_type_of(algorithm).0.generate(&mut rng).map_err(gen_err)?;
    let subkey = match (encryption_subkey, algorithm) {
        (false, _) => None,
        (true, GenAlgorithm::Ed25519) => Some(KeyType::ECDH(ECCCurve::Curve25519Legacy).generate(&mut rng)),
        (true, GenAlgorithm::Rsa(bits)) => Some(KeyType::Rsa(bits).generate(&mut rng)),
    };
    Ok(KeyMaterial {
        algorithm,
        primary,
        subkey: subkey.transpose().map_err(gen_err)?,
    })
}

/// Builds and self-signs a key from `material` as `spec` says (its
/// algorithm and encryption subkey come from the material).
pub fn key_from_material(material: &KeyMaterial, spec: &KeySpec) -> Result<SignedSecretKey, KeyError> {
    if spec.user_ids.is_empty() {
        return Err(gen_err("at least one user ID is needed"));
    }
    let created = timestamp_of(spec.created)?;
    let expiry = match spec.expires_after {
        Some(d) => Some(PgpDuration::try_from(d).map_err(gen_err)?),
        None => None,
    };
    let (_, alg) = key_type_of(material.algorithm);
    let (public_params, secret_params) = material.primary.clone();
    let inner = PubKeyInner::new(KeyVersion::V4, alg, created, None, public_params).map_err(gen_err)?;
    let public = PublicKey::from_inner(inner).map_err(gen_err)?;
    let secret = SecretKey::new(public.clone(), secret_params).map_err(gen_err)?;
    let users = self_signed_user_ids(&secret, &public, &spec.user_ids, created, expiry)?;
    let secret_subkeys = bound_subkey(material, &secret, &public, created, expiry)?;

    Ok(SignedSecretKey::new(
        secret,
        SignedKeyDetails::new(Vec::new(), Vec::new(), users, Vec::new()),
        Vec::new(),
        secret_subkeys,
    ))
}

/// The user-ID step of [`key_from_material`]: each user ID with a positive
/// self-certification (the first one primary).
fn self_signed_user_ids(
    secret: &SecretKey,
    public: &PublicKey,
    user_ids: &[String],
    created: Timestamp,
    expiry: Option<PgpDuration>,
) -> Result<Vec<pgp::types::SignedUser>, KeyError> {
    let pw = Password::empty();
    let mut users = Vec::new();
    for (index, uid) in user_ids.iter().enumerate() {
        let id = UserId::from_str(Default::default(), uid).map_err(gen_err)?;
        let mut config = self_config(SignatureType::CertPositive, secret, created)?;
        let mut flags = KeyFlags::default();
        flags.set_certify(true);
        flags.set_sign(true);
        let mut features = Features::new();
        features.set_seipd_v1(true);
        let mut hashed = vec![
            SubpacketData::KeyFlags(flags),
            SubpacketData::Features(features),
            SubpacketData::PreferredSymmetricAlgorithms(
                vec![SymmetricKeyAlgorithm::AES256, SymmetricKeyAlgorithm::AES128].into(),
            ),
            SubpacketData::PreferredHashAlgorithms(vec![HashAlgorithm::Sha512, HashAlgorithm::Sha256].into()),
            SubpacketData::PreferredCompressionAlgorithms(
                vec![CompressionAlgorithm::ZLIB, CompressionAlgorithm::ZIP].into(),
            ),
        ];
        if let Some(expiry) = expiry {
            hashed.push(SubpacketData::KeyExpirationTime(expiry));
        }
        if index == 0 {
            hashed.push(SubpacketData::IsPrimary(true));
        }
        for data in hashed {
            config
                .hashed_subpackets
                .push(Subpacket::regular(data).map_err(gen_err)?);
        }
        let sig = config
            .sign_certification(secret, public, &pw, Tag::UserId, &id)
            .map_err(gen_err)?;
        users.push(id.into_signed(sig));
    }
    Ok(users)
}

/// The subkey step of [`key_from_material`]: the encryption subkey, if the
/// material has one, with its binding signature.
fn bound_subkey(
    material: &KeyMaterial,
    secret: &SecretKey,
    public: &PublicKey,
    created: Timestamp,
    expiry: Option<PgpDuration>,
) -> Result<Vec<SignedSecretSubKey>, KeyError> {
    let pw = Password::empty();
    let mut secret_subkeys = Vec::new();
    if let Some((sub_public_params, sub_secret_params)) = material.subkey.clone() {
        let sub_alg = match material.algorithm {
            GenAlgorithm::Ed25519 => PublicKeyAlgorithm::ECDH,
            GenAlgorithm::Rsa(_) => PublicKeyAlgorithm::RSA,
        };
        let sub_inner = PubKeyInner::new(KeyVersion::V4, sub_alg, created, None, sub_public_params).map_err(gen_err)?;
        let sub_public = PublicSubkey::from_inner(sub_inner).map_err(gen_err)?;
        let sub_secret = SecretSubkey::new(sub_public.clone(), sub_secret_params).map_err(gen_err)?;
        let mut config = self_config(SignatureType::SubkeyBinding, secret, created)?;
        let mut flags = KeyFlags::default();
        flags.set_encrypt_comms(true);
        flags.set_encrypt_storage(true);
        config
            .hashed_subpackets
            .push(Subpacket::regular(SubpacketData::KeyFlags(flags)).map_err(gen_err)?);
        if let Some(expiry) = expiry {
            config
                .hashed_subpackets
                .push(Subpacket::regular(SubpacketData::KeyExpirationTime(expiry)).map_err(gen_err)?);
        }
        let binding = config
            .sign_subkey_binding(secret, public, &pw, &sub_public)
            .map_err(gen_err)?;
        secret_subkeys.push(SignedSecretSubKey::new(sub_secret, vec![binding]));
    }

    Ok(secret_subkeys)
}

/// Adds a third-party certification (type 0x10) by `signer` to every user
/// ID of `key`: for testing that such certifications are stripped.
pub fn certify_user_ids(signer: &SignedSecretKey, key: &SignedPublicKey) -> Result<SignedPublicKey, KeyError> {
    let mut out = key.clone();
    let now = timestamp_of(Utc::now())?;
    for user in &mut out.details.users {
        let config = self_config(SignatureType::CertGeneric, &signer.primary_key, now)?;
        let sig = config
            .sign_certification_third_party(
                &signer.primary_key,
                &Password::empty(),
                &key.primary_key,
                Tag::UserId,
                &user.id,
            )
            .map_err(gen_err)?;
        user.signatures.push(sig);
    }
    Ok(out)
}

/// Adds a key revocation signature (type 0x20, "key is no longer used")
/// made by `secret` to its public key `key`.
pub fn revoke_key(secret: &SignedSecretKey, key: &SignedPublicKey) -> Result<SignedPublicKey, KeyError> {
    let mut out = key.clone();
    let now = timestamp_of(Utc::now())?;
    let mut config = self_config(SignatureType::KeyRevocation, &secret.primary_key, now)?;
    config.hashed_subpackets.push(
        Subpacket::regular(SubpacketData::RevocationReason(
            pgp::packet::RevocationCode::KeyRetired,
            "key retired".as_bytes().to_vec().into(),
        ))
        .map_err(gen_err)?,
    );
    let sig = config
        .sign_key(&secret.primary_key, &Password::empty(), &key.primary_key)
        .map_err(gen_err)?;
    out.details.revocation_signatures.push(sig);
    Ok(out)
}

/// The key revocation certificate of a key revoked by [`revoke_key`], as
/// `gpg --gen-revoke` would hand it over; `None` if the key carries none.
pub fn revocation_of(key: &SignedPublicKey) -> Option<Revocation> {
    key.details.revocation_signatures.first().cloned().map(Revocation)
}

/// `text` cleartext-signed (`gpg --clearsign`) by the primary key of
/// `secret`, armored.
pub fn clearsign(secret: &SignedSecretKey, text: &str) -> Result<String, KeyError> {
    let message =
        pgp::composed::CleartextSignedMessage::sign(rand::thread_rng(), text, &secret.primary_key, &Password::empty())
            .map_err(gen_err)?;
    message.to_armored_string(ArmorOptions::default()).map_err(gen_err)
}

/// Adds a certification revocation (type 0x30) made by `secret` to the user
/// ID of `key` whose text is `user_id`, one second after `after` so it is
/// newer than self-signatures made at `after`.
pub fn revoke_user_id(
    secret: &SignedSecretKey,
    key: &SignedPublicKey,
    user_id: &str,
    after: DateTime<Utc>,
) -> Result<SignedPublicKey, KeyError> {
    let mut out = key.clone();
    let when = timestamp_of(after + chrono::Duration::seconds(1))?;
    let Some(user) = out.details.users.iter_mut().find(|u| u.id.id() == user_id.as_bytes()) else {
        return Err(gen_err(format!("no user ID {user_id:?}")));
    };
    let config = self_config(SignatureType::CertRevocation, &secret.primary_key, when)?;
    let sig = config
        .sign_certification(
            &secret.primary_key,
            &key.primary_key,
            &Password::empty(),
            Tag::UserId,
            &user.id,
        )
        .map_err(gen_err)?;
    user.signatures.push(sig);
    Ok(out)
}

/// ASCII armor of any public key (not stripped), e.g. to write out a
/// generated or certified key. Deterministic like [`CheckedKey::to_armored`].
pub fn armor_public_key(key: &SignedPublicKey) -> Result<String, KeyError> {
    key.to_armored_string(ArmorOptions {
        headers: None,
        include_checksum: true,
    })
    .map_err(|e| KeyError::Encoding(e.to_string()))
}

/// ASCII armor of a secret key (for the key generation tool).
pub fn armor_secret_key(key: &SignedSecretKey) -> Result<String, KeyError> {
    key.to_armored_string(ArmorOptions {
        headers: None,
        include_checksum: true,
    })
    .map_err(|e| KeyError::Encoding(e.to_string()))
}

/// Reads one armored secret key (for the key generation tool).
pub fn read_secret_key(armored: &str) -> Result<SignedSecretKey, KeyError> {
    guarded(|| {
        let (key, _headers) = SignedSecretKey::from_string(armored).map_err(unreadable)?;
        Ok(key)
    })
}
