//! The user-ID step of [`check_key`](super::check_key): which user IDs carry
//! a valid self-signature, which of those are clean enough to publish, and
//! the addresses they give.
//!
//! The rule is that a published user ID says one thing plainly. A user ID
//! is published only if it is UTF-8 text without control characters (no
//! line breaks, tabs, escape sequences or bidirectional overrides: a reply,
//! a log line or a client's listing would show a forged second line or
//! reordered text) and holds at most one email address, counted in or
//! outside `<…>`, which must be the address it gives ([`email_of_user_id`]).
//! Clients such as `gpg --list-keys victim@example.org` match any user ID
//! that *contains* the address, so `Evil <evil@example.net>
//! victim@example.org`, or `Evil <victim@example.org\u{200b}>` (an address
//! this server would not accept), in the flat keyring would pass for
//! victim's key. A self-signed user ID that breaks the rule is stripped
//! from the key, with the reason kept in a [`StrippedUserId`] for the
//! reply; the key is still registered under its other user IDs, and
//! refused ([`KeyError::NoCleanEmail`]) only when no clean one gives an
//! address. A user ID without a valid self-signature is dropped silently,
//! as before: it was never the key owner's word.

use pgp::packet::{PublicKey, Signature, SignatureType, UserId};
use pgp::types::{SignedUser, Tag};

use super::rsa_verify::Checked;
use crate::error::{KeyError, StrippedUserId, UncleanUserId};
use crate::key_id::KeyIds;
use crate::sigs::{newest_first, newest_verified, sig_time, verified, Budget};
use ripem_core::types::Email;

/// Most characters of a stripped user ID quoted back in a reply.
const QUOTED_CHARS: usize = 100;

/// The address in a user ID: the `<...>` part if there is one, else the
/// whole user ID if it is a bare address.
pub fn email_of_user_id(user_id: &str) -> Option<Email> {
    if let Some(open) = user_id.rfind('<') {
        let rest = user_id.get(open + 1..)?;
        let close = rest.find('>')?;
        return Email::parse(rest.get(..close)?).ok();
    }
    Email::parse(user_id).ok()
}

/// Whether a user ID may be published (see the module's rules); `bytes` is
/// the user ID packet's content.
pub fn check_user_id(bytes: &[u8]) -> Result<(), UncleanUserId> {
    let text = std::str::from_utf8(bytes).map_err(|_| UncleanUserId::NotUtf8)?;
    let control = |c: char| {
        c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if text.chars().any(control) {
        return Err(UncleanUserId::ControlCharacter);
    }
    match address_count(text) {
        0 => Ok(()),
        1 if email_of_user_id(text).is_some() => Ok(()),
        1 => Err(UncleanUserId::UnusableAddress),
        count => Err(UncleanUserId::SeveralAddresses(count)),
    }
}

/// How many email addresses `text` holds: every `@` with a character on
/// both sides that an address could hold next to its `@` (not a space, not
/// one of `<>()[],;:"`). So `a@b.org`, `<a@b.org>` and `x@y@z` count (one,
/// one, two), `(@handle)` and `a @ b` do not. Only a lookup's own syntax
/// matters here, and a lookup for `local@domain` needs a character on each
/// side of its `@`.
fn address_count(text: &str) -> usize {
    let separator = |c: char| c.is_whitespace() || "<>()[],;:\"".contains(c);
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(3)
        .filter(|w| w[1] == '@' && !separator(w[0]) && !separator(w[2]))
        .count()
}

/// `bytes` quoted for a reply: see [`StrippedUserId::user_id`].
fn quoted(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(QUOTED_CHARS).flat_map(char::escape_debug).collect();
    if text.chars().nth(QUOTED_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// What the user-ID step keeps of a key.
pub(super) struct UserIds {
    /// The published user IDs, each with its newest self-signature and the
    /// certification revocations not older than it.
    pub users: Vec<SignedUser>,
    /// Addresses of the published, unrevoked user IDs, deduplicated, in
    /// the key's order.
    pub emails: Vec<Email>,
    /// Self-signed user IDs that were not published.
    pub stripped: Vec<StrippedUserId>,
    /// The newest self-signature among `direct` and the published user
    /// IDs' certifications: the one that says when the key expires.
    pub newest_self_sig: Option<Signature>,
}

/// Verifies, cleans and collects a key's user IDs (see the module's
/// rules). `direct` is the key's newest direct-key self-signature, if any.
/// Refuses a key left without a published user ID, or without an address.
pub(super) fn check_user_ids(
    offered: Vec<SignedUser>,
    direct: Option<&Signature>,
    signer: &Checked<'_, PublicKey>,
    ids: &KeyIds,
    budget: &mut Budget,
) -> Result<UserIds, KeyError> {
    // A user ID repeated in the key counts once.
    let mut distinct: Vec<SignedUser> = Vec::new();
    for user in offered {
        match distinct.iter_mut().find(|u| u.id.id() == user.id.id()) {
            Some(first) => first.signatures.extend(user.signatures),
            None => distinct.push(user),
        }
    }
    let mut kept = UserIds {
        users: Vec::new(),
        emails: Vec::new(),
        stripped: Vec::new(),
        newest_self_sig: direct.cloned(),
    };
    for user in distinct {
        let (id, certification, revocations) = user_self_sigs(user, signer, ids, budget)?;
        let Some(certification) = certification else {
            continue;
        };
        if let Err(reason) = check_user_id(id.id()) {
            kept.stripped.push(StrippedUserId {
                user_id: quoted(id.id()),
                reason,
            });
            continue;
        }
        if kept
            .newest_self_sig
            .as_ref()
            .is_none_or(|newest| sig_time(&certification) >= sig_time(newest))
        {
            kept.newest_self_sig = Some(certification.clone());
        }
        if revocations.is_empty() {
            if let Some(email) = id.as_str().and_then(email_of_user_id) {
                if !kept.emails.contains(&email) {
                    kept.emails.push(email);
                }
            }
        }
        let mut signatures = vec![certification];
        signatures.extend(revocations);
        kept.users.push(SignedUser { id, signatures });
    }
    if kept.emails.is_empty() && !kept.stripped.is_empty() {
        return Err(KeyError::NoCleanEmail(kept.stripped));
    }
    if kept.users.is_empty() {
        return Err(KeyError::BadSelfSignatures);
    }
    if kept.emails.is_empty() {
        return Err(KeyError::NoEmail);
    }
    Ok(kept)
}

/// A user ID's newest certification by `primary` that verifies, and the
/// certification revocations by `primary` that verify and are not older
/// than it (a revocation older than the newest certification is undone by
/// it). No certification: the user ID is not self-signed.
fn user_self_sigs(
    user: SignedUser,
    signer: &Checked<'_, PublicKey>,
    ids: &KeyIds,
    budget: &mut Budget,
) -> Result<(UserId, Option<Signature>, Vec<Signature>), KeyError> {
    let (revocations, certifications): (Vec<Signature>, Vec<Signature>) = newest_first(user.signatures, ids)
        .into_iter()
        .filter(Signature::is_certification)
        .partition(|sig| sig.typ() == Some(SignatureType::CertRevocation));
    let id = user.id;
    let verify = |sig: &Signature| sig.verify_certification(signer, Tag::UserId, &id);
    let Some(certification) = newest_verified(certifications, budget, verify)?.pop() else {
        return Ok((id, None, Vec::new()));
    };
    let since = sig_time(&certification);
    let revocations = verified(
        revocations.into_iter().filter(|sig| sig_time(sig) >= since).collect(),
        budget,
        verify,
    )?;
    Ok((id, Some(certification), revocations))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use pgp::packet::{Subpacket, SubpacketData};
    use pgp::types::{Duration as PgpDuration, Password};

    use super::*;
    use crate::keygen::{self_config, timestamp_of};
    use crate::{check_key, generate_key, has_expired, KeyPolicy, KeySpec};

    #[test]
    fn clean_user_ids_pass() {
        for clean in [
            "Alice <alice@example.org>",
            "alice@example.org",
            "Just A Name",
            "Bob (at @home, or bob @ work) <bob@example.org>",
            "Zoë Ünicode <zoe@example.org>",
            "Someone <not an address>",
        ] {
            assert_eq!(check_user_id(clean.as_bytes()), Ok(()), "{clean:?}");
        }
    }

    #[test]
    fn unclean_user_ids_are_named() {
        let several = UncleanUserId::SeveralAddresses(2);
        let unusable = UncleanUserId::UnusableAddress;
        let cases: [(&[u8], UncleanUserId); 15] = [
            (b"Evil <evil@example.net> victim@example.org", several.clone()),
            (b"victim@example.org <evil@example.net>", several.clone()),
            (b"Evil (victim@example.org) <evil@example.net>", several.clone()),
            (b"x <evil@victim@example.org>", several),
            (
                b"Evil <evil@example.net>\nvictim@example.org",
                UncleanUserId::ControlCharacter,
            ),
            (b"Evil\r <evil@example.net>", UncleanUserId::ControlCharacter),
            (b"Evil\t<evil@example.net>", UncleanUserId::ControlCharacter),
            (
                "Evil\u{2028}<evil@example.net>".as_bytes(),
                UncleanUserId::ControlCharacter,
            ),
            (
                "Evil \u{202e}<gro.elpmaxe@mitciv>".as_bytes(),
                UncleanUserId::ControlCharacter,
            ),
            (b"Evil \xff <evil@example.net>", UncleanUserId::NotUtf8),
            ("Victim <victim@example.org\u{200b}>".as_bytes(), unusable.clone()),
            ("Victim <victim@b\u{fc}cher.example>".as_bytes(), unusable.clone()),
            (b"victim@example.org <not an address>", unusable.clone()),
            (b"victim@example.org (work)", unusable.clone()),
            (b"Bob <bob@localhost>", unusable),
        ];
        for (user_id, reason) in cases {
            assert_eq!(check_user_id(user_id), Err(reason), "{user_id:?}");
        }
        assert_eq!(
            check_user_id(b"\x7f <a@example.org>"),
            Err(UncleanUserId::ControlCharacter)
        );
    }

    #[test]
    fn quoted_user_ids_stay_on_one_line() {
        assert_eq!(quoted(b"Evil\n<e@x.org>\t\"q\""), "Evil\\n<e@x.org>\\t\\\"q\\\"");
        let long = quoted("é".repeat(150).as_bytes());
        assert_eq!(long.chars().count(), QUOTED_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn unclean_user_ids_are_stripped_with_their_reason() {
        let spec = KeySpec::ed25519(&[
            "Eve <eve@example.org>",
            "Eve <eve@example.net> victim@example.org",
            "Eve <eve2@example.net>\nvictim@example.org",
        ]);
        let key = generate_key(rand::thread_rng(), &spec).expect("key").to_public_key();
        let checked = check_key(key, &KeyPolicy::default()).expect("accepted");
        let emails: Vec<&str> = checked.emails().iter().map(Email::as_str).collect();
        assert_eq!(emails, ["eve@example.org"]);
        assert_eq!(checked.signed_public_key().details.users.len(), 1);
        let stripped: Vec<String> = checked.stripped_user_ids().iter().map(ToString::to_string).collect();
        assert_eq!(
            stripped,
            [
                "user ID \"Eve <eve@example.net> victim@example.org\" is not published: it holds 2 email addresses; a user ID may hold only one",
                "user ID \"Eve <eve2@example.net>\\nvictim@example.org\" is not published: it holds a control character (a line break, a tab or the like)",
            ]
        );
    }

    #[test]
    fn a_key_without_a_clean_address_is_refused_with_the_reasons() {
        let spec = KeySpec::ed25519(&["Eve <eve@example.net> victim@example.org", "Just A Name"]);
        let key = generate_key(rand::thread_rng(), &spec).expect("key").to_public_key();
        let err = check_key(key, &KeyPolicy::default()).unwrap_err();
        assert!(
            matches!(&err, KeyError::NoCleanEmail(stripped) if stripped.len() == 1),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "no user ID with an email address can be published: user ID \"Eve <eve@example.net> victim@example.org\" is not published: it holds 2 email addresses; a user ID may hold only one"
        );
    }

    #[test]
    fn an_unclean_user_id_says_nothing_about_expiry() {
        let now = Utc::now();
        let mut spec = KeySpec::ed25519(&["Eve <eve@example.org>", "Eve <eve@example.net> victim@example.org"]);
        spec.created = now - Duration::days(10);
        let secret = generate_key(rand::thread_rng(), &spec).expect("key");
        let mut key = secret.to_public_key();
        // The newest self-signature, on the unclean user ID, says the key
        // expired a day after it was made.
        let when = timestamp_of(spec.created + Duration::days(1)).expect("time");
        let mut config = self_config(SignatureType::CertPositive, &secret.primary_key, when).expect("config");
        let lifetime = PgpDuration::try_from(std::time::Duration::from_secs(86_400)).expect("lifetime");
        config
            .hashed_subpackets
            .push(Subpacket::regular(SubpacketData::KeyExpirationTime(lifetime)).expect("subpacket"));
        let unclean = &mut key.details.users[1];
        let sig = config
            .sign_certification(
                &secret.primary_key,
                &secret.primary_key.public_key(),
                &Password::empty(),
                Tag::UserId,
                &unclean.id,
            )
            .expect("certification");
        unclean.signatures.push(sig);
        assert!(
            !has_expired(&key.clone().into(), now),
            "the probe agrees with the check"
        );
        let checked = check_key(key, &KeyPolicy::default()).expect("accepted");
        assert_eq!(checked.expires_at(), None);
        assert_eq!(checked.stripped_user_ids().len(), 1);
    }
}
