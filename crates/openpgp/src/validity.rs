//! Whether a key registered here may have made a signature at a given time:
//! the one rule every signed request (change, remove, and updates from
//! peer servers) is held to before what it asks for counts.
//!
//! A signature that verifies cryptographically proves only that someone
//! held the secret key, not that the key still speaks for its owner. The
//! question is put to the *registered* copy, with everything known about it
//! now (a revocation merged last week counts against a signature dated
//! before it), never to the copy the request carries: a copy whose expiry
//! was extended only on the sender's machine, or an old copy from before a
//! revocation, proves nothing. The rules, for a signature made at time T
//! by the primary key or by a subkey:
//!
//! * No key signs before it was created.
//! * A revoked key signs nothing, and a subkey of a revoked primary key
//!   signs nothing: a revocation stops every signature, earlier ones too
//!   (the secret key may have leaked long before anyone noticed), except a
//!   *soft* one, whose reason says the key was superseded or retired and so
//!   was not compromised: that stops only the signatures made at or after
//!   the revocation's own creation time. No reason, "compromised" and any
//!   other reason are hard.
//! * An expired key signs nothing after its expiry: the primary key's
//!   expiry by its newest self-signature ([`CheckedKey::expires_at`]), a
//!   subkey's by its binding, and a subkey's signatures also stop when its
//!   primary key expires.
//! * A subkey signs only under a binding signature made at or before T that
//!   carries the signing flag ([`check_key`](super::check_key) has already
//!   kept only bindings that verify, with a back signature for signing
//!   subkeys, and only the newest of them). The primary key needs no
//!   signing flag: it is the registered key itself, not a delegate.
//!
//! Each refusal is an [`InvalidSigner`] whose `Display` text names the key
//! and the date, for the reply mail.
//! [`SignedPart::verify`](super::SignedPart::verify) puts every signature
//! of a request that verifies to [`check_signer`] (through `Judge`): the
//! first that passes counts.

use chrono::{DateTime, Utc};
use pgp::composed::SignedPublicSubKey;
use pgp::packet::{Signature, SignatureType};
use pgp::types::KeyDetails as _;

use crate::error::{InvalidSigner, RevocationReason, SignatureError, SignerKey};
use crate::key::CheckedKey;
use crate::sigs::{expiry_set_by, sig_time, to_utc, utc_of, Verifier};
use ripem_core::types::Fingerprint;

/// Whether `signer` (the fingerprint of `key`'s primary key or of one of
/// its subkeys) may have made a signature at `signed_at`, judged by the
/// registered copy `key` and everything it says now (see the module's
/// rules). Call it after the signature has verified cryptographically with
/// that key, with the signature's own creation time.
pub fn check_signer(key: &CheckedKey, signer: &Fingerprint, signed_at: DateTime<Utc>) -> Result<(), InvalidSigner> {
    let primary = key.fingerprint();
    if signer == primary {
        return check_primary(key, signed_at);
    }
    let Some(subkey) = key
        .signed_public_key()
        .public_subkeys
        .iter()
        .find(|sub| Fingerprint::from_bytes(sub.key.fingerprint().as_bytes()).is_ok_and(|fpr| fpr == *signer))
    else {
        return Err(InvalidSigner::NotPartOfKey(signer.clone()));
    };
    check_primary(key, signed_at).map_err(|err| match err {
        InvalidSigner::Revoked { on, reason, .. } => InvalidSigner::PrimaryRevoked {
            subkey: signer.clone(),
            primary: primary.clone(),
            on,
            reason,
        },
        InvalidSigner::Expired { on, .. } => InvalidSigner::PrimaryExpired {
            subkey: signer.clone(),
            primary: primary.clone(),
            on,
        },
        other => other,
    })?;
    check_subkey(subkey, signer, signed_at)
}

/// The rules for the primary key, named as the signer.
fn check_primary(key: &CheckedKey, signed_at: DateTime<Utc>) -> Result<(), InvalidSigner> {
    let signer = || SignerKey::Primary(key.fingerprint().clone());
    if signed_at < key.created_at() {
        return Err(InvalidSigner::BeforeCreation {
            signer: signer(),
            signed_at,
            created: key.created_at(),
        });
    }
    if let Some((on, reason)) = revoked_for(&key.signed_public_key().details.revocation_signatures, signed_at) {
        return Err(InvalidSigner::Revoked {
            signer: signer(),
            on,
            reason,
        });
    }
    match key.expires_at() {
        Some(on) if on <= signed_at => Err(InvalidSigner::Expired { signer: signer(), on }),
        _ => Ok(()),
    }
}

/// The rules for a subkey of a key that may sign at `signed_at`.
fn check_subkey(
    subkey: &SignedPublicSubKey,
    fingerprint: &Fingerprint,
    signed_at: DateTime<Utc>,
) -> Result<(), InvalidSigner> {
    let signer = || SignerKey::Subkey(fingerprint.clone());
    let created_secs = subkey.key.created_at().as_secs();
    let created = to_utc(created_secs);
    if signed_at < created {
        return Err(InvalidSigner::BeforeCreation {
            signer: signer(),
            signed_at,
            created,
        });
    }
    let revocations = subkey
        .signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::SubkeyRevocation));
    if let Some((on, reason)) = revoked_for(revocations, signed_at) {
        return Err(InvalidSigner::Revoked {
            signer: signer(),
            on,
            reason,
        });
    }
    let Some(binding) = subkey
        .signatures
        .iter()
        .find(|sig| sig.typ() == Some(SignatureType::SubkeyBinding))
    else {
        return Err(InvalidSigner::NotSigningSubkey(fingerprint.clone()));
    };
    let bound = to_utc(sig_time(binding));
    if bound > signed_at {
        return Err(InvalidSigner::NotYetBound {
            subkey: fingerprint.clone(),
            signed_at,
            bound,
        });
    }
    if !binding.key_flags().sign() {
        return Err(InvalidSigner::NotSigningSubkey(fingerprint.clone()));
    }
    match expiry_set_by(binding, created_secs) {
        Some(on) if on <= signed_at => Err(InvalidSigner::Expired { signer: signer(), on }),
        _ => Ok(()),
    }
}

/// Weighs the signatures of a signed part that verify: the first whose
/// signer [`check_signer`] accepts counts; else the refusal names the
/// first that did not.
pub(super) struct Judge<'a> {
    key: &'a CheckedKey,
    refusal: Option<InvalidSigner>,
}

impl<'a> Judge<'a> {
    pub(super) fn new(key: &'a CheckedKey) -> Judge<'a> {
        Judge { key, refusal: None }
    }

    /// When `sig`, verified with `verifier`, was made, if its signer may
    /// have signed then.
    pub(super) fn accepts(
        &mut self,
        sig: &Signature,
        verifier: &Verifier<'_>,
    ) -> Result<Option<DateTime<Utc>>, SignatureError> {
        let signed_at = utc_of(sig)?;
        let Some(fingerprint) = verifier.fingerprint() else {
            return Ok(None);
        };
        match check_signer(self.key, &fingerprint, signed_at) {
            Ok(()) => Ok(Some(signed_at)),
            Err(refusal) => {
                self.refusal.get_or_insert(refusal);
                Ok(None)
            }
        }
    }

    /// Why no signature counted.
    pub(super) fn refusal(self) -> SignatureError {
        self.refusal
            .map_or(SignatureError::DoesNotVerify, SignatureError::InvalidSigner)
    }
}

/// The first of `revocations` (all verified by [`check_key`](super::check_key))
/// that stops a signature made at `signed_at`, with its date and reason.
fn revoked_for<'s>(
    revocations: impl IntoIterator<Item = &'s Signature>,
    signed_at: DateTime<Utc>,
) -> Option<(DateTime<Utc>, RevocationReason)> {
    revocations.into_iter().find_map(|sig| {
        let on = to_utc(sig_time(sig));
        let reason = RevocationReason::of(sig);
        (!reason.is_soft() || signed_at >= on).then_some((on, reason))
    })
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use pgp::composed::{KeyType, SignedPublicKey, SignedSecretKey};
    use pgp::crypto::hash::HashAlgorithm;
    use pgp::crypto::public_key::PublicKeyAlgorithm;
    use pgp::packet::{
        KeyFlags, PubKeyInner, PublicSubkey, RevocationCode, SecretSubkey, SignatureConfig, Subpacket, SubpacketData,
    };
    use pgp::types::{Duration as PgpDuration, KeyVersion, Password};

    use super::*;
    use crate::keygen::{self_config, timestamp_of};
    use crate::{check_key, generate_key, KeyPolicy, KeySpec};

    fn base() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("time")
    }

    fn day(n: i64) -> DateTime<Utc> {
        base() + Duration::days(n)
    }

    fn fingerprint_of(bytes: &[u8]) -> Fingerprint {
        Fingerprint::from_bytes(bytes).expect("fingerprint")
    }

    /// A key made on day 0, never expiring unless `expires_after_days`,
    /// with an encryption subkey.
    fn secret(expires_after_days: Option<u64>) -> SignedSecretKey {
        let mut spec = KeySpec::ed25519(&["Val <val@example.org>"]);
        spec.created = base();
        spec.expires_after = expires_after_days.map(|d| std::time::Duration::from_secs(d * 86_400));
        generate_key(rand::thread_rng(), &spec).expect("key")
    }

    /// A signing subkey created on day `created`, bound on day `bound`
    /// with `flags` (and a back signature), expiring `expires_after_days`
    /// after its creation if given.
    fn add_subkey(
        secret: &SignedSecretKey,
        key: &mut SignedPublicKey,
        created: i64,
        bound: i64,
        flags: KeyFlags,
        expires_after_days: Option<u64>,
    ) -> PublicSubkey {
        let (public_params, secret_params) = KeyType::Ed25519Legacy.generate(rand::thread_rng()).expect("pair");
        let inner = PubKeyInner::new(
            KeyVersion::V4,
            PublicKeyAlgorithm::EdDSALegacy,
            timestamp_of(day(created)).expect("time"),
            None,
            public_params,
        )
        .expect("inner");
        let sub_public = PublicSubkey::from_inner(inner).expect("subkey");
        let sub_secret = SecretSubkey::new(sub_public.clone(), secret_params).expect("secret subkey");
        let when = timestamp_of(day(bound)).expect("time");
        let mut back = SignatureConfig::v4(SignatureType::KeyBinding, sub_public.algorithm(), HashAlgorithm::Sha256);
        back.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(when)).expect("subpacket"),
            Subpacket::regular(SubpacketData::IssuerFingerprint(sub_public.fingerprint())).expect("subpacket"),
        ];
        let backsig = back
            .sign_primary_key_binding(&sub_secret, &sub_public, &Password::empty(), &key.primary_key)
            .expect("back signature");
        let mut config = self_config(SignatureType::SubkeyBinding, &secret.primary_key, when).expect("config");
        let mut hashed = vec![
            SubpacketData::KeyFlags(flags),
            SubpacketData::EmbeddedSignature(Box::new(backsig)),
        ];
        if let Some(days) = expires_after_days {
            let lifetime = std::time::Duration::from_secs(days * 86_400);
            hashed.push(SubpacketData::KeyExpirationTime(
                PgpDuration::try_from(lifetime).expect("lifetime"),
            ));
        }
        for data in hashed {
            config
                .hashed_subpackets
                .push(Subpacket::regular(data).expect("subpacket"));
        }
        let binding = config
            .sign_subkey_binding(&secret.primary_key, &key.primary_key, &Password::empty(), &sub_public)
            .expect("binding");
        key.public_subkeys.push(SignedPublicSubKey {
            key: sub_public.clone(),
            signatures: vec![binding],
        });
        sub_public
    }

    fn signing() -> KeyFlags {
        let mut flags = KeyFlags::default();
        flags.set_sign(true);
        flags
    }

    fn reason(code: Option<RevocationCode>, config: &mut SignatureConfig) {
        if let Some(code) = code {
            let data = SubpacketData::RevocationReason(code, b"".to_vec().into());
            config
                .hashed_subpackets
                .push(Subpacket::regular(data).expect("subpacket"));
        }
    }

    /// Revokes the last subkey of `key` on day `on` for `code`.
    fn revoke_subkey(secret: &SignedSecretKey, key: &mut SignedPublicKey, on: i64, code: Option<RevocationCode>) {
        let when = timestamp_of(day(on)).expect("time");
        let mut config = self_config(SignatureType::SubkeyRevocation, &secret.primary_key, when).expect("config");
        reason(code, &mut config);
        let primary = key.primary_key.clone();
        let sub = key.public_subkeys.last_mut().expect("a subkey");
        let sig = config
            .sign_subkey_binding(&secret.primary_key, &primary, &Password::empty(), &sub.key)
            .expect("revocation");
        sub.signatures.push(sig);
    }

    /// Revokes `key` itself on day `on` for `code`.
    fn revoke_primary(secret: &SignedSecretKey, key: &mut SignedPublicKey, on: i64, code: Option<RevocationCode>) {
        let when = timestamp_of(day(on)).expect("time");
        let mut config = self_config(SignatureType::KeyRevocation, &secret.primary_key, when).expect("config");
        reason(code, &mut config);
        let sig = config
            .sign_key(&secret.primary_key, &Password::empty(), &key.primary_key)
            .expect("revocation");
        key.details.revocation_signatures.push(sig);
    }

    fn checked(key: SignedPublicKey) -> CheckedKey {
        check_key(key, &KeyPolicy::default()).expect("checked")
    }

    #[test]
    fn a_valid_key_and_its_signing_subkey_sign() {
        let secret = secret(None);
        let mut key = secret.to_public_key();
        let sub = add_subkey(&secret, &mut key, 1, 2, signing(), None);
        let key = checked(key);
        let sub_fpr = fingerprint_of(sub.fingerprint().as_bytes());
        assert_eq!(check_signer(&key, key.fingerprint(), day(0)), Ok(()));
        assert_eq!(check_signer(&key, &sub_fpr, day(2)), Ok(()));
        assert_eq!(check_signer(&key, &sub_fpr, day(900)), Ok(()));
    }

    #[test]
    fn a_subkey_signs_only_when_bound_for_signing() {
        let secret = secret(None);
        let mut key = secret.to_public_key();
        let sub = add_subkey(&secret, &mut key, 1, 5, signing(), None);
        let mut certify = KeyFlags::default();
        certify.set_certify(true);
        let other = add_subkey(&secret, &mut key, 1, 1, certify, None);
        let encryption = key.public_subkeys[0].key.fingerprint();
        let key = checked(key);
        let sub_fpr = fingerprint_of(sub.fingerprint().as_bytes());
        assert!(matches!(
            check_signer(&key, &sub_fpr, day(0)),
            Err(InvalidSigner::BeforeCreation {
                signer: SignerKey::Subkey(_),
                ..
            })
        ));
        let early = check_signer(&key, &sub_fpr, day(3)).unwrap_err();
        assert!(matches!(early, InvalidSigner::NotYetBound { .. }), "{early:?}");
        assert_eq!(
            early.to_string(),
            format!("signed by subkey {sub_fpr} on 2026-01-04 00:00:00 UTC, before the registered key bound it for signing on 2026-01-06 00:00:00 UTC")
        );
        for not_signing in [other.fingerprint(), encryption] {
            let fpr = fingerprint_of(not_signing.as_bytes());
            assert_eq!(
                check_signer(&key, &fpr, day(9)),
                Err(InvalidSigner::NotSigningSubkey(fpr))
            );
        }
        let stranger = fingerprint_of(&[7; 20]);
        assert_eq!(
            check_signer(&key, &stranger, day(9)),
            Err(InvalidSigner::NotPartOfKey(stranger))
        );
    }

    #[test]
    fn a_hard_subkey_revocation_stops_every_signature_a_soft_one_the_later_ones() {
        for (code, soft) in [
            (None, false),
            (Some(RevocationCode::NoReason), false),
            (Some(RevocationCode::KeyCompromised), false),
            (Some(RevocationCode::Other(77)), false),
            (Some(RevocationCode::KeySuperseded), true),
            (Some(RevocationCode::KeyRetired), true),
        ] {
            let secret = secret(None);
            let mut key = secret.to_public_key();
            let sub = add_subkey(&secret, &mut key, 1, 1, signing(), None);
            revoke_subkey(&secret, &mut key, 10, code);
            let key = checked(key);
            let sub_fpr = fingerprint_of(sub.fingerprint().as_bytes());
            let before = check_signer(&key, &sub_fpr, day(5));
            assert_eq!(before.is_ok(), soft, "{code:?}: {before:?}");
            for after in [day(10), day(11)] {
                let err = check_signer(&key, &sub_fpr, after).unwrap_err();
                assert!(matches!(err, InvalidSigner::Revoked { .. }), "{code:?}: {err:?}");
            }
            // The primary key still signs.
            assert_eq!(check_signer(&key, key.fingerprint(), day(11)), Ok(()));
        }
    }

    #[test]
    fn a_revoked_primary_key_stops_itself_and_its_subkeys() {
        for (code, soft) in [
            (None, false),
            (Some(RevocationCode::KeyCompromised), false),
            (Some(RevocationCode::KeySuperseded), true),
        ] {
            let secret = secret(None);
            let mut key = secret.to_public_key();
            let sub = add_subkey(&secret, &mut key, 1, 1, signing(), None);
            revoke_primary(&secret, &mut key, 10, code);
            let key = checked(key);
            let sub_fpr = fingerprint_of(sub.fingerprint().as_bytes());
            assert_eq!(check_signer(&key, key.fingerprint(), day(5)).is_ok(), soft, "{code:?}");
            assert_eq!(check_signer(&key, &sub_fpr, day(5)).is_ok(), soft, "{code:?}");
            let err = check_signer(&key, key.fingerprint(), day(12)).unwrap_err();
            assert!(matches!(
                err,
                InvalidSigner::Revoked {
                    signer: SignerKey::Primary(_),
                    ..
                }
            ));
            let err = check_signer(&key, &sub_fpr, day(12)).unwrap_err();
            assert!(matches!(err, InvalidSigner::PrimaryRevoked { .. }), "{err:?}");
        }
        let secret = secret(None);
        let mut key = secret.to_public_key();
        revoke_primary(&secret, &mut key, 10, Some(RevocationCode::KeyRetired));
        let key = checked(key);
        assert_eq!(
            check_signer(&key, key.fingerprint(), day(10)).unwrap_err().to_string(),
            format!(
                "signed by key {}, which was revoked on 2026-01-11 00:00:00 UTC (no longer used)",
                key.fingerprint()
            )
        );
    }

    #[test]
    fn expired_keys_and_subkeys_stop_signing() {
        let secret = secret(Some(30));
        let mut key = secret.to_public_key();
        let lasting = add_subkey(&secret, &mut key, 1, 1, signing(), None);
        let short = add_subkey(&secret, &mut key, 1, 1, signing(), Some(5));
        let key = checked(key);
        let lasting = fingerprint_of(lasting.fingerprint().as_bytes());
        let short = fingerprint_of(short.fingerprint().as_bytes());
        assert_eq!(check_signer(&key, key.fingerprint(), day(29)), Ok(()));
        assert_eq!(check_signer(&key, &short, day(5)), Ok(()));
        let err = check_signer(&key, &short, day(6)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("signed by subkey {short} after it expired on 2026-01-07 00:00:00 UTC")
        );
        let err = check_signer(&key, key.fingerprint(), day(30)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "signed by key {} after it expired on 2026-01-31 00:00:00 UTC",
                key.fingerprint()
            )
        );
        let err = check_signer(&key, &lasting, day(31)).unwrap_err();
        assert!(matches!(err, InvalidSigner::PrimaryExpired { .. }), "{err:?}");
    }
}
