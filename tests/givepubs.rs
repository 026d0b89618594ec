//! givepubs end to end: the keyring mailed back, loop rules, missing file.

mod common;

use common::*;

#[test]
fn mails_the_keyring_to_the_sender() {
    let server = Server::new();
    let keys = tempfile::tempdir().unwrap();
    server.mail(
        "add",
        &plain_mail(
            "kay@example.org",
            &rpgp_key(keys.path(), "k", &["--uid", "Kay <kay@example.org>"]),
        ),
    );
    server.keyreg_once();
    std::fs::remove_dir_all(server.path("outbox")).unwrap();

    let missing = server.run("givepubs", &[], b"From: x@example.org\n\nkeys please\n");
    assert_eq!(missing.code, 75, "{}", missing.stderr);
    assert!(missing.stderr.contains("pubkeys.asc"));

    assert_eq!(server.run("db2flat", &[], b"").code, 0);
    let run = server.run("givepubs", &[], b"From: Someone <someone@example.net>\nReply-To: inbox@example.net\nMessage-ID: <req1@example.net>\nSubject: keys\n\nplease\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sent = server.outbox();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "inbox@example.net");
    assert_eq!(sent[0].in_reply_to.as_deref(), Some("<req1@example.net>"));
    assert_eq!(sent[0].auto_submitted.as_deref(), Some("auto-replied"));
    let (name, keyring) = &sent[0].attachments[0];
    assert_eq!(name, "pubkeys.asc");
    assert_eq!(keyring, &std::fs::read(server.path("pub/pubkeys.asc")).unwrap());

    for bounce in [
        &b"Return-Path: <>\nFrom: MAILER-DAEMON@example.net\n\nfailed\n"[..],
        b"From: a@example.net\nPrecedence: junk\n\nx\n",
    ] {
        let run = server.run("givepubs", &[], bounce);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert_eq!(server.outbox().len(), 1, "no reply to robots");
}

#[test]
fn the_keyring_goes_to_one_address_at_most_once_a_day() {
    let server = Server::new();
    std::fs::create_dir_all(server.path("pub")).unwrap();
    assert_eq!(server.run("db2flat", &[], b"").code, 0);
    let request = |from: &str| format!("From: {from}\nSubject: keys\n\nplease\n").into_bytes();

    let first = server.run("givepubs", &[], &request("asker@example.net"));
    assert_eq!(first.code, 0, "{}", first.stderr);
    let again = server.run("givepubs", &[], &request("Asker <ASKER@example.net>"));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("already mailed to asker@example.net today"),
        "logged: {}",
        again.stderr
    );
    let other = server.run("givepubs", &[], &request("other@example.net"));
    assert_eq!(other.code, 0, "{}", other.stderr);

    let mut to: Vec<String> = server.outbox().into_iter().map(|m| m.to).collect();
    to.sort();
    assert_eq!(to, ["asker@example.net", "other@example.net"], "one keyring each");
    let record = std::fs::read_to_string(server.path("givepubs.sent")).unwrap();
    assert_eq!(record.lines().count(), 2, "{record}");
}
