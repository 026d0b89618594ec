//! Property tests over the parsers that take hostile input: the same entry
//! points as the cargo-fuzz targets in `fuzz/`, run on every `scripts/test`.
//! None may panic; what the record parser accepts must print back to itself;
//! the cookie parser leaves a prefix and passes only the cookie it issued.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv6Addr};

use keyreg::request;
use ripem_core::cookie::{self, CookieJar};
use ripem_core::mail::RequestMail;
use ripem_core::protocol;
use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint};
use ripem_openpgp::{self as openpgp, KeyPolicy, KeySpec};

fn sample_key() -> (String, Vec<u8>) {
    let spec = KeySpec::ed25519(&["Prop <prop@example.org>"]);
    let secret = openpgp::generate_key(rand::thread_rng(), &spec).unwrap();
    let armored = openpgp::armor_public_key(&secret.to_public_key()).unwrap();
    let binary = openpgp::dearmor(&armored).unwrap();
    (armored, binary)
}

fn mail_with(key: &str, body_junk: &str) -> Vec<u8> {
    format!("From: a@example.org\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\n{body_junk}\n{key}\n--b--\n").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mail_reader_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(mut mail) = RequestMail::parse(&bytes) {
            let _ = request::prepare_add(&mail.texts, &mail.binary_keys, &KeyPolicy::default(), Utc::now(), 100);
            for part in &request::signed_parts(&mut mail) {
                let _ = part.issuer_key_ids();
            }
        }
    }

    #[test]
    fn mutated_mail_with_a_key_never_panics(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)) {
        let (armored, _) = sample_key();
        let mut bytes = mail_with(&armored, "hello");
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if let Ok(mail) = RequestMail::parse(&bytes) {
            let _ = request::prepare_add(&mail.texts, &mail.binary_keys, &KeyPolicy::default(), Utc::now(), 100);
        }
    }

    #[test]
    fn key_checks_survive_corrupt_packets(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8), cut in any::<prop::sample::Index>()) {
        let (_, mut binary) = sample_key();
        for (index, value) in flips {
            let at = index.index(binary.len());
            binary[at] = value;
        }
        binary.truncate(cut.index(binary.len() + 1));
        if let Ok(keys) = openpgp::parse_binary_keys(&binary) {
            for key in keys {
                let _ = openpgp::has_expired(&key, Utc::now());
                let _ = openpgp::check_key(key, &KeyPolicy::default());
            }
        }
    }

    #[test]
    fn record_parser_takes_any_text(text in ".{0,2000}") {
        let _ = Record::parse(&text);
        for chunk in Record::split_many(&text).take(32) {
            let _ = Record::parse(&chunk);
        }
    }

    #[test]
    fn records_round_trip(
        locals in proptest::collection::vec("[a-z0-9._+-]{1,20}", 1..5),
        hex in "[0-9A-F]{40}",
        seconds in 0i64..4_000_000_000,
        armor in proptest::collection::vec("[A-Za-z0-9+/=]{0,64}", 1..20),
    ) {
        let time = Utc.timestamp_opt(seconds, 0).unwrap();
        let record = Record {
            users: locals.iter().map(|l| Email::parse(&format!("{l}@example.org")).unwrap()).collect(),
            fingerprint: Fingerprint::parse(&hex).unwrap(),
            registered: time,
            updated: time,
            key_armor: armor.join("\n"),
        };
        let text = record.to_text();
        let parsed = Record::parse(&text);
        // An armor of only empty lines has no key text: refused, not misread.
        if record.key_armor.trim().is_empty() {
            prop_assert!(parsed.is_err() || parsed.unwrap().key_armor.trim().is_empty());
        } else {
            prop_assert_eq!(parsed.unwrap(), record);
        }
    }

    #[test]
    fn cookie_datagrams_of_any_bytes(
        datagram in proptest::collection::vec(any::<u8>(), 0..600),
        tail in proptest::collection::vec(any::<u8>(), 0..80),
        seconds in 0u64..8_000_000_000,
        v6 in any::<[u8; 16]>(),
    ) {
        let jar = CookieJar::new(&[9; 32]);
        let ip = IpAddr::V6(Ipv6Addr::from(v6));
        // Junk after a Cookie: line, and the datagram as it is.
        let with_junk = [&datagram[..], b"\nCookie: ", &tail].concat();
        for bytes in [&datagram[..], &with_junk[..]] {
            let (request, cookie) = cookie::split(bytes);
            prop_assert!(bytes.starts_with(request));
            if let Some(cookie) = cookie {
                prop_assert!(!jar.check(ip, cookie, seconds) || cookie.len() == cookie::COOKIE_HEX);
            }
            let _ = protocol::parse_answer(bytes);
        }
        // A cookie issued to the address is good now, and no other is.
        let good = jar.issue(ip, seconds);
        let asked = cookie::with_cookie(&datagram, std::str::from_utf8(&good).unwrap());
        let (_, cookie) = cookie::split(&asked);
        prop_assert_eq!(cookie, Some(&good[..]));
        prop_assert!(jar.check(ip, &good, seconds));
        let mut other = v6;
        other[15] ^= 1;
        prop_assert!(!jar.check(IpAddr::V6(Ipv6Addr::from(other)), &good, seconds));
    }
}
