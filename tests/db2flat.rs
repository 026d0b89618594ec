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

#[test]
fn a_dump_removes_what_a_killed_dump_left_and_spares_a_running_one() {
    let server = Server::new();
    assert_eq!(server.run("db2flat", &[], b"").code, 0);
    // What a dump killed half-way leaves: its temp files, named by its pid.
    let mut killed = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let running = killed.id();
    let pub_dir = server.path("pub");
    let temp = |name: &str, pid: u32| pub_dir.join(format!(".{name}.{pid}.0badc0de.tmp"));
    for name in ["pubkeys.txt", "pubkeys.asc"] {
        std::fs::write(temp(name, running), "half a dump").unwrap();
    }
    let run = server.run("db2flat", &[], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stderr.contains("removed"),
        "a running writer's files stay: {}",
        run.stderr
    );
    assert!(temp("pubkeys.txt", running).exists() && temp("pubkeys.asc", running).exists());

    killed.kill().unwrap();
    killed.wait().unwrap();
    let run = server.run("db2flat", &[], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("removed 2 temp files of killed dumps"),
        "{}",
        run.stderr
    );
    let left: Vec<_> = std::fs::read_dir(&pub_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn wkd_tree_for_the_configured_domains() {
    let server = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(
        keys.path(),
        "w",
        &["--uid", "Wim <Wim@example.org>", "--uid", "Wim <wim@elsewhere.net>"],
    );
    server.mail("add", &plain_mail("wim@example.org", &key));
    let other = rpgp_key(keys.path(), "o", &["--uid", "Olga <olga@elsewhere.net>"]);
    server.mail("add", &plain_mail("olga@elsewhere.net", &other));
    server.keyreg_once();
    let tree = tempfile::tempdir().unwrap();
    let wkd = tree.path().to_str().unwrap();

    // Without domains to write, --wkd is a configuration error.
    let run = server.run("db2flat", &["--wkd", wkd], b"");
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(run.stderr.contains("wkd_domains"), "{}", run.stderr);

    let mut config = std::fs::read_to_string(&server.config).unwrap();
    config.push_str("\n[hkpd]\nwkd_domains = [\"example.org\"]\n");
    std::fs::write(&server.config, config).unwrap();
    let dir = tree.path().join(".well-known/openpgpkey/example.org");
    std::fs::create_dir_all(dir.join("hu")).unwrap();
    // A stale key file (an address no longer registered) goes.
    let stale = dir.join("hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q");
    std::fs::write(&stale, b"old").unwrap();
    let run = server.run("db2flat", &["--wkd", wkd], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("1 keys, 1 stale files removed"), "{}", run.stderr);
    assert!(!stale.exists());
    assert_eq!(std::fs::read(dir.join("policy")).unwrap(), b"");
    let submission = std::fs::read_to_string(dir.join("submission-address")).unwrap();
    assert!(submission.starts_with("ripem-register-keys@"), "{submission}");
    assert!(!tree.path().join(".well-known/openpgpkey/elsewhere.net").exists());

    // The file gpg-wks-client would ask for (its --print-wkd-hash of wim@example.org).
    let names: Vec<String> = std::fs::read_dir(dir.join("hu"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["m719pgn7h8i9nzq6yuopatuerrcgtqz4"], "{names:?}");
    let client = Gpg::new();
    let file = dir.join("hu").join(&names[0]);
    let imported = client.run(&["--import", file.to_str().unwrap()], b"");
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    let (uids, listing) = client.count_listed("wim@example.org", "uid");
    assert_eq!(uids, 1, "{listing}");
    assert!(!listing.contains("elsewhere.net"), "{listing}");
}
