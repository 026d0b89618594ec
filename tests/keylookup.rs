//! keylookup end to end: the client against a real keyserv, gpg as consumer.

mod common;

use common::*;

#[test]
fn finds_prints_and_follows_redirects() {
    let home = Server::new();
    let keys = tempfile::tempdir().unwrap();
    home.mail(
        "add",
        &plain_mail(
            "lee@example.net",
            &rpgp_key(keys.path(), "l", &["--uid", "Lee <lee@example.net>"]),
        ),
    );
    home.keyreg_once();
    let home_keyserv = home.start_keyserv();

    // A second server that sends example.net lookups to the first.
    let front = Server::with_extra(&format!(
        "[keyserv.redirect]\n\"example.net\" = \"127.0.0.1:{}\"\n",
        home.port
    ));
    let _front_keyserv = front.start_keyserv();
    let run = front.keylookup(&["lee@example.net"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{}",
        run.stdout
    );
    let gpg = Gpg::new();
    let imported = gpg.run(&["--import"], run.stdout.as_bytes());
    assert!(imported.stderr.contains("imported: 1"), "{}", imported.stderr);

    let record = home.keylookup(&["--record", "LEE@example.net"]);
    assert!(
        record.stdout.starts_with("User: lee@example.net\nFingerprint: "),
        "{}",
        record.stdout
    );

    let missing = home.keylookup(&["nobody@example.net"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("not registered"));

    drop(home_keyserv);
    let dead = home.keylookup(&["--tries", "2", "--timeout-ms", "100", "lee@example.net"]);
    assert_eq!(dead.code, 69, "{}", dead.stderr);
    let bad = home.keylookup(&["not an address"]);
    assert_ne!(bad.code, 0);
    assert_eq!(bad.stderr.lines().count(), 1, "{}", bad.stderr);
}
