//! keyreg end to end, with keys and requests made by the system gpg: a
//! signature counts only from a key that could sign when it did, by the
//! registered copy (issue #10), and user IDs are published only if clean.
//! Each attack signs from an old or locally altered copy of the keyring:
//! a revoked signing subkey, a revoked primary key (by revocation
//! certificate and by a revoked copy of the key), an expired key extended
//! only at home; and user IDs that would make `gpg --list-keys` on the flat
//! keyring list an attacker's key for someone else's address.

mod common;

use common::*;

/// Registers `armored` for `email` and checks that the reply says so.
fn register(server: &Server, email: &str, armored: &str) {
    server.mail("add", &plain_mail(email, armored));
    server.keyreg_once();
    let reply = replies_to(server, email);
    assert!(reply.contains(&format!("{email}: registered")), "{reply}");
}

/// The fingerprint registered for `email`, asked of keyserv.
fn registered_to(server: &Server, email: &str) -> Option<String> {
    let keyserv = server.start_keyserv();
    record_fingerprint(&keyserv.lookup(email))
}

/// A copy of `gpg`'s secret keys as they are now, in a home of its own:
/// the "old copy of the keyring" an attacker (or a careless owner) signs
/// from after the key was revoked elsewhere.
fn old_copy(gpg: &Gpg, fpr: &str) -> Gpg {
    let secret = gpg.run(&["--armor", "--export-secret-keys", fpr], b"");
    assert_eq!(secret.code, 0, "{}", secret.stderr);
    let copy = Gpg::new();
    let imported = copy.run(&["--import"], secret.stdout.as_bytes());
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    copy
}

/// Drives `gpg --edit-key fpr` with `commands`, one per line.
fn edit_key(gpg: &Gpg, fpr: &str, commands: &str) {
    let run = gpg.run(&["--command-fd", "0", "--yes", "--edit-key", fpr], commands.as_bytes());
    assert_eq!(run.code, 0, "gpg --edit-key: {}", run.stderr);
}

/// A key for `user_id` whose primary key only certifies, with one signing
/// subkey; returns the primary and the subkey fingerprints.
fn with_signing_subkey(gpg: &Gpg, user_id: &str) -> (String, String) {
    let made = gpg.run(&["--quick-gen-key", user_id, "ed25519", "cert", "never"], b"");
    assert_eq!(made.code, 0, "{}", made.stderr);
    let email = user_id.rsplit_once('<').map(|(_, e)| e.trim_end_matches('>')).unwrap();
    let fpr = gpg.fingerprint(email);
    let sub = gpg.run(&["--quick-add-key", &fpr, "ed25519", "sign", "never"], b"");
    assert_eq!(sub.code, 0, "{}", sub.stderr);
    let listing = gpg.run(&["--with-colons", "--list-keys", &fpr], b"").stdout;
    let sub_fpr = listing
        .lines()
        .skip_while(|l| !l.starts_with("sub:"))
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .unwrap()
        .to_string();
    (fpr, sub_fpr)
}

/// A server where `user_id`'s key is registered with a signing subkey,
/// which was then revoked for `reason` (gpg's menu: 1 compromised, 3 no
/// longer used) and the revocation merged. Returns the server, a copy of
/// the keyring from before the revocation, and both fingerprints.
fn with_revoked_subkey(user_id: &str, email: &str, reason: &str) -> (Server, Gpg, String, String) {
    let server = Server::new();
    let gpg = Gpg::new();
    let (fpr, sub_fpr) = with_signing_subkey(&gpg, user_id);
    register(&server, email, &gpg.run(&["--armor", "--export", &fpr], b"").stdout);
    let old = old_copy(&gpg, &fpr);
    next_second();
    edit_key(&gpg, &fpr, &format!("key 1\nrevkey\ny\n{reason}\n\ny\nsave\n"));
    server.mail(
        "add",
        &plain_mail(email, &gpg.run(&["--armor", "--export", &fpr], b"").stdout),
    );
    server.keyreg_once();
    assert!(replies_to(&server, email).contains("the key was updated"));
    next_second();
    (server, old, fpr, sub_fpr)
}

/// A new key for `email` (another owner's), armored in a change request's
/// signed text; returns the text and the new key's fingerprint.
fn change_text(email: &str) -> (String, String) {
    let other = Gpg::new();
    let armored = other.key(&format!("Successor <{email}>"), "ed25519");
    (format!("ChangeKey\n\n{armored}"), other.fingerprint(email))
}

#[test]
fn a_change_signed_by_a_revoked_subkey_is_refused() {
    let (server, old, fpr, sub_fpr) = with_revoked_subkey("Alice <alice@example.org>", "alice@example.org", "3");
    let (text, new_fpr) = change_text("alice@example.org");
    server.mail(
        "change",
        &mail_to("change@x", "alice@example.org", &clearsign(&old, &fpr, &text)),
    );
    server.keyreg_once();
    let reply = replies_to(&server, "alice@example.org");
    assert!(
        reply.contains(&format!("refused: signed by subkey {sub_fpr}, which was revoked on "))
            && reply.contains("(no longer used)"),
        "{reply}"
    );
    let registered = registered_to(&server, "alice@example.org");
    assert_eq!(registered.as_deref(), Some(fpr.as_str()), "not {new_fpr}");
}

#[test]
fn a_remove_signed_by_a_revoked_subkey_is_refused() {
    let (server, old, fpr, sub_fpr) = with_revoked_subkey("Bob <bob@example.org>", "bob@example.org", "1");
    server.mail(
        "remove",
        &mail_to("remove@x", "bob@example.org", &clearsign(&old, &fpr, "RemoveKey\n")),
    );
    server.keyreg_once();
    let reply = replies_to(&server, "bob@example.org");
    assert!(
        reply.contains(&format!("refused: signed by subkey {sub_fpr}, which was revoked on "))
            && reply.contains("(the secret key was compromised)"),
        "{reply}"
    );
    assert_eq!(registered_to(&server, "bob@example.org").as_deref(), Some(fpr.as_str()));
}

#[test]
fn a_change_signed_by_a_key_revoked_by_certificate_is_refused() {
    let server = Server::new();
    let gpg = Gpg::new();
    let armored = gpg.key("Carol <carol@example.org>", "ed25519");
    let fpr = gpg.fingerprint("carol@example.org");
    register(&server, "carol@example.org", &armored);
    // The revocation certificate gpg keeps for every key it makes (no
    // reason given: a hard revocation); carol's own keyring never imports it.
    let block = revocation_certificate(&gpg, &fpr);
    next_second();
    server.mail("add", &mail_to("add@x", "carol@example.org", &block));
    server.keyreg_once();
    next_second();
    let (text, new_fpr) = change_text("carol@example.org");
    server.mail(
        "change",
        &mail_to("change@x", "carol@example.org", &clearsign(&gpg, &fpr, &text)),
    );
    server.keyreg_once();
    let reply = replies_to(&server, "carol@example.org");
    assert!(
        reply.contains(&format!("refused: signed by key {fpr}, which was revoked on "))
            && reply.contains("(no reason given)"),
        "{reply}"
    );
    assert!(!reply.contains("moved to the new key"), "{reply}");
    assert_ne!(registered_to(&server, "carol@example.org"), Some(new_fpr));
}

#[test]
fn a_remove_signed_by_a_revoked_key_is_refused() {
    let server = Server::new();
    let gpg = Gpg::new();
    let armored = gpg.key("Dan <dan@example.org>", "ed25519");
    let fpr = gpg.fingerprint("dan@example.org");
    register(&server, "dan@example.org", &armored);
    let old = old_copy(&gpg, &fpr);
    next_second();
    // Revoked as superseded: a soft revocation, which still stops every
    // signature made after it.
    edit_key(&gpg, &fpr, "revkey\ny\n2\n\ny\nsave\n");
    server.mail(
        "add",
        &plain_mail("dan@example.org", &gpg.run(&["--armor", "--export", &fpr], b"").stdout),
    );
    server.keyreg_once();
    assert!(replies_to(&server, "dan@example.org").contains("revoked"));
    next_second();
    server.mail(
        "remove",
        &mail_to("remove@x", "dan@example.org", &clearsign(&old, &fpr, "RemoveKey\n")),
    );
    server.keyreg_once();
    let reply = replies_to(&server, "dan@example.org");
    assert!(
        reply.contains(&format!("refused: signed by key {fpr}, which was revoked on "))
            && reply.contains("(superseded by another key)"),
        "{reply}"
    );
    assert!(!reply.contains(&format!("key {fpr} removed")), "{reply}");
}

#[test]
fn a_remove_signed_after_expiry_by_a_locally_extended_copy_is_refused() {
    // Dave's key was made a day ago to last a day and a minute: it is
    // registered while valid, then expires. At home he extends it without
    // telling the server, and signs two minutes from now (within the
    // server's five minutes of clock skew, so no waiting).
    let server = Server::new();
    let gpg = Gpg::new();
    let now = now_secs();
    let at = |secs: u64| format!("{secs}!");
    let lifetime = format!("seconds={}", 86_400 + 60);
    let made = gpg.run(
        &[
            "--faked-system-time",
            &at(now - 86_400),
            "--quick-gen-key",
            "Dave <dave@example.org>",
            "ed25519",
            "sign",
            &lifetime,
        ],
        b"",
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let fpr = gpg.fingerprint("dave@example.org");
    register(
        &server,
        "dave@example.org",
        &gpg.run(&["--armor", "--export", &fpr], b"").stdout,
    );
    let extended = gpg.run(
        &["--faked-system-time", &at(now + 90), "--quick-set-expire", &fpr, "1y"],
        b"",
    );
    assert_eq!(extended.code, 0, "{}", extended.stderr);
    let signed = clearsign_with(&gpg, &fpr, "RemoveKey\n", &["--faked-system-time", &at(now + 120)]);
    server.mail("remove", &mail_to("remove@x", "dave@example.org", &signed));
    server.keyreg_once();
    let reply = replies_to(&server, "dave@example.org");
    assert!(
        reply.contains(&format!("refused: signed by key {fpr} after it expired on ")),
        "{reply}"
    );
    assert_eq!(
        registered_to(&server, "dave@example.org").as_deref(),
        Some(fpr.as_str())
    );
}

#[test]
fn user_ids_with_a_second_address_or_a_line_break_are_not_published() {
    let server = Server::new();
    let victim = Gpg::new();
    register(
        &server,
        "victim@example.org",
        &victim.key("Victim <victim@example.org>", "ed25519"),
    );
    // Eve's key has a clean user ID, one naming the victim after her own
    // address and one with the victim's address and a zero-width space;
    // Mallory's only user ID hides the victim's address on a second line.
    let eve = Gpg::new();
    eve.key("Eve <eve@example.net>", "ed25519");
    let eve_fpr = eve.fingerprint("eve@example.net");
    for user_id in [
        "Eve <eve@example.net> victim@example.org",
        "Eve <victim@example.org\u{200b}>",
    ] {
        let added = eve.run(&["--quick-add-uid", &eve_fpr, user_id], b"");
        assert_eq!(added.code, 0, "{}", added.stderr);
    }
    let mallory = Gpg::new();
    let made = mallory.run(
        &[
            "--quick-gen-key",
            "Mallory <mallory@example.net>\nvictim@example.org",
            "ed25519",
            "sign",
            "never",
        ],
        b"",
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let mallory_fpr = mallory.fingerprint("mallory@example.net");
    for (email, gpg, fpr) in [
        ("eve@example.net", &eve, &eve_fpr),
        ("mallory@example.net", &mallory, &mallory_fpr),
    ] {
        server.mail(
            "add",
            &plain_mail(email, &gpg.run(&["--armor", "--export", fpr], b"").stdout),
        );
    }
    server.keyreg_once();

    let client = flat_keyring_in_gpg(&server);
    let (keys, listing) = client.count_listed("victim@example.org", "pub");
    assert_eq!(keys, 1, "{listing}");
    let (user_ids, listing) = client.count_listed(&eve_fpr, "uid");
    assert_eq!(user_ids, 1, "{listing}");

    let eve_reply = replies_to(&server, "eve@example.net");
    assert!(
        eve_reply.contains("eve@example.net: registered")
            && eve_reply.contains(
                "user ID \"Eve <eve@example.net> victim@example.org\" is not published: it holds 2 email addresses"
            )
            && eve_reply.contains(
                "user ID \"Eve <victim@example.org\\u{200b}>\" is not published: its email address is not one this server accepts"
            ),
        "{eve_reply}"
    );
    let mallory_reply = replies_to(&server, "mallory@example.net");
    assert!(
        mallory_reply.contains(&format!("key {mallory_fpr}: refused: no user ID with an email address can be published: user ID \"Mallory <mallory@example.net>\\nvictim@example.org\" is not published: it holds a control character")),
        "{mallory_reply}"
    );
}

#[test]
fn a_clean_user_id_for_an_address_another_key_holds_is_not_published() {
    // Trent adds a plain "Victim <victim@example.org>" user ID to his own
    // key: the address is refused (the victim holds it), and the user ID
    // must not ride along in Trent's published key either.
    let server = Server::new();
    let victim = Gpg::new();
    register(
        &server,
        "victim@example.org",
        &victim.key("Victim <victim@example.org>", "ed25519"),
    );
    let trent = Gpg::new();
    trent.key("Trent <trent@example.net>", "ed25519");
    let trent_fpr = trent.fingerprint("trent@example.net");
    let added = trent.run(&["--quick-add-uid", &trent_fpr, "Victim <victim@example.org>"], b"");
    assert_eq!(added.code, 0, "{}", added.stderr);
    let armored = trent.run(&["--armor", "--export", &trent_fpr], b"").stdout;
    server.mail("add", &plain_mail("trent@example.net", &armored));
    server.keyreg_once();
    let reply = replies_to(&server, "trent@example.net");
    assert!(
        reply.contains("trent@example.net: registered") && reply.contains("victim@example.org: refused"),
        "{reply}"
    );
    let client = flat_keyring_in_gpg(&server);
    let (keys, listing) = client.count_listed("victim@example.org", "pub");
    assert_eq!(keys, 1, "{listing}");
    let (user_ids, listing) = client.count_listed(&trent_fpr, "uid");
    assert_eq!(user_ids, 1, "{listing}");
}
