//! db2flat end to end: both flat files, each key once, sorted, readable by gpg.

mod common;

use common::*;

#[test]
fn flat_files_hold_every_key_once_and_gpg_imports_them() {
    let server = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let gpg_maker = Gpg::new();
    server.mail(
        "add",
        &plain_mail("gail@example.org", &gpg_maker.key("Gail <gail@example.org>", "rsa3072")),
    );
    for name in ["zoe", "adam", "mia"] {
        let key = rpgp_key(
            keys.path(),
            name,
            &[
                "--uid",
                &format!("{name} <{name}@example.org>"),
                "--uid",
                &format!("{name} <{name}@example.net>"),
            ],
        );
        server.mail("add", &plain_mail(&format!("{name}@example.org"), &key));
    }
    server.keyreg_once();
    let run = server.run("db2flat", &[], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("wrote 4 keys"), "{}", run.stderr);

    let text = std::fs::read_to_string(server.path("pub/pubkeys.txt")).unwrap();
    assert!(text.starts_with("# Created on "));
    let firsts: Vec<&str> = text.split("\n\n").skip(1).map(|r| r.lines().next().unwrap()).collect();
    assert_eq!(
        firsts,
        [
            "User: adam@example.org",
            "User: gail@example.org",
            "User: mia@example.org",
            "User: zoe@example.org"
        ]
    );
    assert_eq!(text.matches("Fingerprint: ").count(), 4);

    let gpg = Gpg::new();
    let imported = gpg.run(&["--import", server.path("pub/pubkeys.asc").to_str().unwrap()], b"");
    assert!(
        imported.stderr.contains("Total number processed: 4"),
        "{}",
        imported.stderr
    );
    assert!(imported.stderr.contains("imported: 4"), "{}", imported.stderr);
    assert_eq!(
        gpg.fingerprint("gail@example.org"),
        gpg_maker.fingerprint("gail@example.org")
    );

    let other = server.path("elsewhere/keys.txt");
    let run = server.run("db2flat", &["--output", other.to_str().unwrap()], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(other.with_extension("asc").exists());
}

#[test]
fn empty_database_gives_empty_files() {
    let server = Server::new();
    let run = server.run("db2flat", &[], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(server.path("pub/pubkeys.txt")).unwrap();
    assert_eq!(text.lines().count(), 1);
    let gpg = Gpg::new();
    let run = gpg.run(&["--import", server.path("pub/pubkeys.asc").to_str().unwrap()], b"");
    assert!(!run.stderr.contains("imported:"), "{}", run.stderr);
}
