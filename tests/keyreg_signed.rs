//! keyreg's signed requests end to end, made by the system gpg: changes in
//! the three encodings, removals, signing subkeys, revocation certificates,
//! and forged, tampered, stale, replayed and wrong-text requests refused
//! with the database unchanged.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

/// A server with alice's gpg key registered; returns the server, the gpg
/// home holding alice's secret key, and alice's fingerprint.
fn with_alice(algo: &str) -> (Server, Gpg, String) {
    let server = Server::new();
    let gpg = Gpg::new();
    let key = gpg.key("Alice <alice@example.org>", algo);
    server.mail("add", &plain_mail("alice@example.org", &key));
    server.keyreg_once();
    let fpr = gpg.fingerprint("alice@example.org");
    (server, gpg, fpr)
}

fn fingerprint_of(server: &Server, keyserv: &Keyserv, who: &str) -> Option<String> {
    let _ = server;
    record_fingerprint(&keyserv.lookup(who))
}

#[test]
fn change_by_cleartext_inline_and_pgp_mime() {
    for encoding in ["cleartext", "inline", "pgp/mime"] {
        let (server, gpg, old_fpr) = with_alice("ed25519");
        let (new_fpr, new_armored) = alice_successor(&gpg);
        next_second();
        let text = format!("ChangeKey\nPlease switch to my new key.\n\n{new_armored}");
        let message = match encoding {
            "cleartext" => mail_to("change", "alice@example.org", &clearsign(&gpg, &old_fpr, &text)),
            "inline" => {
                let run = gpg.run(&["--sign", "--armor", "--local-user", &old_fpr], text.as_bytes());
                assert_eq!(run.code, 0, "{}", run.stderr);
                mail_to("change", "alice@example.org", &run.stdout)
            }
            _ => {
                let part = format!(
                    "Content-Type: text/plain; charset=us-ascii\r\n\r\n{}",
                    text.replace('\n', "\r\n")
                );
                let signature = gpg.run(&["--detach-sign", "--armor", "--local-user", &old_fpr], part.as_bytes());
                assert_eq!(signature.code, 0, "{}", signature.stderr);
                format!(
                    "From: alice@example.org\r\nSubject: new key\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; micalg=pgp-sha256; protocol=\"application/pgp-signature\"; boundary=\"sig\"\r\n\r\n--sig\r\n{part}\r\n--sig\r\nContent-Type: application/pgp-signature; name=\"signature.asc\"\r\n\r\n{}\r\n--sig--\r\n",
                    signature.stdout.replace('\n', "\r\n")
                )
                .into_bytes()
            }
        };
        server.mail("change", &message);
        server.keyreg_once();
        let keyserv = server.start_keyserv();
        let reply = replies_to(&server, "alice@example.org");
        assert_eq!(
            fingerprint_of(&server, &keyserv, "alice@example.org").as_deref(),
            Some(new_fpr.as_str()),
            "{encoding}: {reply}"
        );
        assert_eq!(
            fingerprint_of(&server, &keyserv, "alice@new.example.org").as_deref(),
            Some(new_fpr.as_str()),
            "{encoding}"
        );
        assert!(
            keyserv.lookup(&format!("0x{old_fpr}")).starts_with("NOTFOUND"),
            "{encoding}: old key gone"
        );
        assert!(
            reply.contains("alice@example.org: moved to the new key"),
            "{encoding}: {reply}"
        );
    }
}

#[test]
fn change_drops_addresses_the_new_key_lacks() {
    let server = Server::new();
    let gpg = Gpg::new();
    let old = gpg.key("Bob <bob@example.org>", "ed25519");
    let old_fpr = gpg.fingerprint("bob@example.org");
    let added = gpg.run(&["--quick-add-uid", &old_fpr, "Bob <bob@old.example.org>"], b"");
    assert_eq!(added.code, 0);
    let old = if added.code == 0 {
        gpg.run(&["--armor", "--export", &old_fpr], b"").stdout
    } else {
        old
    };
    server.mail("add", &plain_mail("bob@example.org", &old));
    server.keyreg_once();
    let other = Gpg::new();
    let new = other.key("Bob <bob@example.org>", "ed25519");
    let new_fpr = other.fingerprint("bob@example.org");
    next_second();
    server.mail(
        "change",
        &mail_to("change", "bob@example.org", &clearsign(&gpg, &old_fpr, &new)),
    );
    server.keyreg_once();
    let keyserv = server.start_keyserv();
    assert_eq!(
        fingerprint_of(&server, &keyserv, "bob@example.org").as_deref(),
        Some(new_fpr.as_str())
    );
    // (A lookup of bob@old.example.org falls back a domain level to
    // bob@example.org, RIPEM-style, so look at the record's addresses.)
    assert!(!keyserv.lookup("bob@example.org").contains("User: bob@old.example.org"));
    assert!(
        replies_to(&server, "bob@example.org").contains("bob@old.example.org: removed (the new key does not carry it)")
    );
}

/// A key whose primary key can only certify, with a signing subkey: gpg
/// then signs with the subkey. Returns its fingerprint and armor.
fn subkey_signer(gpg: &Gpg, user_id: &str) -> (String, String) {
    let made = gpg.run(&["--quick-gen-key", user_id, "ed25519", "cert", "never"], b"");
    assert_eq!(made.code, 0, "{}", made.stderr);
    let email = user_id.rsplit_once('<').map(|(_, e)| e.trim_end_matches('>')).unwrap();
    let fpr = gpg.fingerprint(email);
    let sub = gpg.run(&["--quick-add-key", &fpr, "ed25519", "sign", "never"], b"");
    assert_eq!(sub.code, 0, "{}", sub.stderr);
    (fpr.clone(), gpg.run(&["--armor", "--export", &fpr], b"").stdout)
}

#[test]
fn change_and_remove_signed_by_a_signing_subkey() {
    let server = Server::new();
    let gpg = Gpg::new();
    let (old_fpr, old_armored) = subkey_signer(&gpg, "Sue <sue@example.org>");
    server.mail("add", &plain_mail("sue@example.org", &old_armored));
    server.keyreg_once();
    let other = Gpg::new();
    let (new_fpr, new_armored) = subkey_signer(&other, "Sue <sue@example.org>");
    next_second();
    server.mail(
        "change",
        &mail_to("change", "sue@example.org", &clearsign(&gpg, &old_fpr, &new_armored)),
    );
    server.keyreg_once();
    let reply = replies_to(&server, "sue@example.org");
    assert!(reply.contains("sue@example.org: moved to the new key"), "{reply}");
    {
        let keyserv = server.start_keyserv();
        assert_eq!(
            fingerprint_of(&server, &keyserv, "sue@example.org").as_deref(),
            Some(new_fpr.as_str())
        );
    }
    next_second();
    server.mail(
        "remove",
        &mail_to(
            "remove",
            "sue@example.org",
            &clearsign(&other, &new_fpr, "RemoveKey\nplease\n"),
        ),
    );
    server.keyreg_once();
    let reply = replies_to(&server, "sue@example.org");
    assert!(reply.contains("sue@example.org: removed"), "{reply}");
    let keyserv = server.start_keyserv();
    assert!(keyserv.lookup("sue@example.org").starts_with("NOTFOUND"));
}

#[test]
fn forged_tampered_stale_and_wrong_text_are_refused() {
    // Alice's key is made 30 days ago, so it can sign at earlier times.
    let server = Server::new();
    let gpg = Gpg::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let at = |secs: u64| format!("{secs}!");
    let made = gpg.run(
        &[
            "--faked-system-time",
            &at(now - 30 * 86_400),
            "--quick-gen-key",
            "Alice <alice@example.org>",
            "ed25519",
            "sign",
            "never",
        ],
        b"",
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let fpr = gpg.fingerprint("alice@example.org");
    server.mail(
        "add",
        &plain_mail(
            "alice@example.org",
            &gpg.run(&["--armor", "--export", &fpr], b"").stdout,
        ),
    );
    server.keyreg_once();
    let signed_at = |secs: u64, text: &str| {
        let run = gpg.run(
            &["--faked-system-time", &at(secs), "--clearsign", "--local-user", &fpr],
            text.as_bytes(),
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout
    };
    let stranger = Gpg::new();
    stranger.key("Mallory <mallory@example.org>", "ed25519");
    let stranger_fpr = stranger.fingerprint("mallory@example.org");
    next_second();
    let flat_before = || {
        assert_eq!(server.run("db2flat", &[], b"").code, 0);
        let text = std::fs::read_to_string(server.path("pub/pubkeys.txt")).unwrap();
        text.lines().skip(1).collect::<Vec<_>>().join("\n")
    };
    let before = flat_before();

    let cases: Vec<(&str, String, &str)> = vec![
        ("remove", "RemoveKey\n".to_string(), "is not signed"),
        (
            "remove",
            clearsign(&stranger, &stranger_fpr, "RemoveKey\n"),
            "not registered here",
        ),
        (
            "remove",
            clearsign(&gpg, &fpr, "RemoveKey\n").replace("RemoveKey", "RemoveKey now"),
            "does not verify",
        ),
        (
            "remove",
            clearsign(&gpg, &fpr, "Please remove my key\n"),
            "does not start with RemoveKey",
        ),
        (
            "change",
            clearsign(&gpg, &fpr, "ChangeKey\nno key here\n"),
            "exactly one public key",
        ),
        (
            "change",
            clearsign(&gpg, &fpr, "no ChangeKey line, no key\n"),
            "does not start with a ChangeKey line",
        ),
        (
            "remove",
            signed_at(now - 9 * 86_400, "RemoveKey\n"),
            "older than 7 days",
        ),
        ("remove", signed_at(now + 3600, "RemoveKey\n"), "in the future"),
        // Signed an hour ago, before the key was registered: stale.
        ("remove", signed_at(now - 3600, "RemoveKey\n"), "stale or replayed"),
    ];
    for (index, (queue, body, _)) in cases.iter().enumerate() {
        let from = format!("case{index}@example.org");
        server.mail(queue, &mail_to(queue, &from, body));
    }
    server.keyreg_once();
    for (index, (_, _, expected)) in cases.iter().enumerate() {
        let reply = replies_to(&server, &format!("case{index}@example.org"));
        assert!(
            reply.contains("refused") && reply.contains(expected),
            "case {index} wanted {expected:?}: {reply}"
        );
    }
    assert_eq!(flat_before(), before, "database unchanged");
}

#[test]
fn replayed_remove_after_reregistration_is_refused() {
    let (server, gpg, fpr) = with_alice("ed25519");
    next_second();
    let remove = mail_to("remove", "alice@example.org", &clearsign(&gpg, &fpr, "RemoveKey\n"));
    server.mail("remove", &remove);
    server.keyreg_once();
    next_second();
    let key = gpg.run(&["--armor", "--export", &fpr], b"").stdout;
    server.mail("add", &plain_mail("alice@example.org", &key));
    server.keyreg_once();
    server.mail("remove", &remove);
    server.keyreg_once();
    let keyserv = server.start_keyserv();
    assert_eq!(
        fingerprint_of(&server, &keyserv, "alice@example.org").as_deref(),
        Some(fpr.as_str()),
        "still registered"
    );
    let replies = replies_to(&server, "alice@example.org");
    assert!(replies.contains("stale or replayed"), "{replies}");
    assert_eq!(server.outbox().len(), 4, "one reply per request");
}

#[test]
fn revocation_certificate_is_published() {
    let (server, gpg, fpr) = with_alice("ed25519");
    // gpg keeps a revocation certificate for every key it makes.
    let block = revocation_certificate(&gpg, &fpr);
    server.mail(
        "add",
        &mail_to("add", "alice@example.org", &format!("My key was stolen.\n\n{block}")),
    );
    server.keyreg_once();
    assert!(replies_to(&server, "alice@example.org").contains("revoked"));
    let keyserv = server.start_keyserv();
    let looked_up = server.keylookup(&["alice@example.org"]);
    assert_eq!(looked_up.code, 0, "{}", looked_up.stderr);
    drop(keyserv);
    let client = Gpg::new();
    client.run(&["--import"], looked_up.stdout.as_bytes());
    let listing = client.run(&["--with-colons", "--list-keys", &fpr], b"").stdout;
    assert!(
        listing.lines().any(|l| l.starts_with("pub:r:")),
        "revoked in the lookup: {listing}"
    );
    let (revoked, listing) = flat_keyring_in_gpg(&server).count_listed(&fpr, "pub:r");
    assert_eq!(revoked, 1, "revoked in the flat file: {listing}");
}

#[test]
fn a_signed_note_quoting_a_key_changes_nothing_when_forwarded() {
    // Row 6 of issue #10: erin clearsigns a note to a list quoting a
    // colleague's key; anyone forwards it to the change address.
    let (server, gpg, erin_fpr) = with_alice("ed25519");
    let colleague = Gpg::new();
    let carl = colleague.key("Carl <carl@example.org>", "ed25519");
    next_second();
    let note = clearsign(
        &gpg,
        &erin_fpr,
        &format!("Hi list, Carl's new key:\n\n{carl}\nCheers\n"),
    );
    server.mail("change", &mail_to("change", "forwarder@example.net", &note));
    // A bare signed key that carries none of the registered addresses.
    let bare = clearsign(&gpg, &erin_fpr, &carl);
    server.mail("change", &mail_to("change", "forwarder2@example.net", &bare));
    server.keyreg_once();
    for forwarder in ["forwarder@example.net", "forwarder2@example.net"] {
        let reply = replies_to(&server, forwarder);
        assert!(reply.contains("does not start with a ChangeKey line"), "{reply}");
    }
    let keyserv = server.start_keyserv();
    assert_eq!(
        fingerprint_of(&server, &keyserv, "alice@example.org").as_deref(),
        Some(erin_fpr.as_str())
    );
    assert!(keyserv.lookup("carl@example.org").starts_with("NOTFOUND"));
}

#[test]
fn a_revoked_key_stays_published_until_a_successor_takes_its_address() {
    let (server, gpg, old_fpr) = with_alice("ed25519");
    let block = revocation_certificate(&gpg, &old_fpr);
    server.mail("add", &mail_to("add", "alice@example.org", &block));
    server.keyreg_once();
    let reply = replies_to(&server, "alice@example.org");
    assert!(reply.contains("until a successor key is registered"), "{reply}");
    let keyserv = server.start_keyserv();
    assert_eq!(
        fingerprint_of(&server, &keyserv, "alice@example.org").as_deref(),
        Some(old_fpr.as_str()),
        "the revoked key is what a lookup of its address finds, until a successor comes"
    );
    drop(keyserv);
    // The successor registers by plain mail and takes the address over.
    let fresh = Gpg::new();
    let successor = fresh.key("Alice <alice@example.org>", "ed25519");
    let new_fpr = fresh.fingerprint("alice@example.org");
    server.mail("add", &plain_mail("alice@example.org", &successor));
    server.keyreg_once();
    let replies = replies_to(&server, "alice@example.org");
    assert!(
        replies.contains(&format!("was registered to key {old_fpr}, which is revoked")),
        "{replies}"
    );
    let keyserv = server.start_keyserv();
    assert_eq!(
        fingerprint_of(&server, &keyserv, "alice@example.org").as_deref(),
        Some(new_fpr.as_str())
    );
    let by_fingerprint = keyserv.lookup(&format!("0x{old_fpr}"));
    assert!(
        by_fingerprint.starts_with("USERINFO"),
        "the revoked record stays: {by_fingerprint}"
    );
    drop(keyserv);
    let flat = flat_keyring_in_gpg(&server);
    let (revoked, listing) = flat.count_listed(&old_fpr, "pub:r");
    assert_eq!(revoked, 1, "revoked in the flat file: {listing}");
    assert_eq!(flat.count_listed(&new_fpr, "pub").0, 1, "the successor too");
}

#[test]
fn the_addresses_a_change_or_removal_takes_are_told() {
    let (server, gpg, fpr) = with_alice("ed25519");
    next_second();
    // Sent by someone else than alice: she must hear of it all the same.
    let remove = clearsign(&gpg, &fpr, "RemoveKey\n");
    server.mail("remove", &mail_to("remove", "someone@example.net", &remove));
    server.keyreg_once();
    let notices: Vec<SentMail> = server
        .outbox()
        .into_iter()
        .filter(|mail| mail.to == "alice@example.org" && mail.body.contains("key removal"))
        .collect();
    assert_eq!(notices.len(), 1, "one notice to the address removed");
    assert!(notices[0].body.contains(&fpr) && notices[0].body.contains("someone@example.net"));
    assert!(replies_to(&server, "someone@example.net").contains("removed"));
    // Processing the same request again (a crash before its spool file
    // went) queues no second notice.
    server.keyreg_once();
    let again = server
        .outbox()
        .into_iter()
        .filter(|mail| mail.to == "alice@example.org")
        .count();
    assert_eq!(again, notices.len() + 1, "the registration reply and one notice");
}
