//! What an operator sees when the set-up is wrong: one clear line on
//! stderr naming the file, directory or address involved, and a sysexits
//! code (78 configuration, 77 permission, 65 bad data, 69 unavailable,
//! 75 temporary; copymail always 75 so that the MTA keeps the mail).
//! These cut across the programs, so they live together here.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;

use common::*;

/// Every program that keeps files in the state directory, with the
/// arguments that make it do its normal work and the exit code it gives
/// for a configuration error.
const PROGRAMS: [(&str, &[&str], i32); 6] = [
    ("copymail", &["--queue", "add"], 75),
    ("keyreg", &["--once"], 78),
    ("keyserv", &[], 78),
    ("hkpd", &[], 78),
    ("db2flat", &[], 78),
    ("givepubs", &[], 78),
];

const MAIL: &[u8] = b"From: someone@example.org\nSubject: hello\n\nhi\n";

/// Asserts one line on stderr that mentions every one of `needles`.
fn assert_one_line(run: &Run, program: &str, needles: &[&str]) {
    assert_eq!(run.stderr.lines().count(), 1, "{program}: {}", run.stderr);
    assert!(run.stderr.starts_with(&format!("{program}: ")), "{}", run.stderr);
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "{program}: no {needle:?} in {}",
            run.stderr
        );
    }
}

#[test]
fn missing_state_dir_is_named_and_never_created() {
    let server = Server::new();
    let missing = server.path("no/such/dir");
    for (program, args, code) in PROGRAMS {
        let mut all = vec!["--state-dir", missing.to_str().unwrap()];
        all.extend_from_slice(args);
        let run = server.run(program, &all, MAIL);
        assert_eq!(run.code, code, "{program}: {}", run.stderr);
        assert_one_line(&run, program, &["state directory", "no/such/dir", "does not exist"]);
    }
    assert!(!server.path("no").exists(), "nothing created");
}

#[test]
fn unwritable_state_dir_names_the_file_and_the_user() {
    let server = Server::new();
    let root = std::fs::metadata(server.dir.path()).unwrap().uid() == 0;
    // The configuration must stay readable for the unprivileged user.
    let mode = if root { 0o755 } else { 0o555 };
    std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    for (program, args, code) in [
        ("keyreg", &["--once"][..], 77),
        ("keyserv", &[][..], 77),
        ("hkpd", &[][..], 77),
        ("db2flat", &[][..], 77),
        ("copymail", &["--queue", "add"][..], 75),
    ] {
        let mut command = server.command(program);
        command.args(args);
        if root {
            // Root may write anywhere: run as nobody, as an MTA's pipe would.
            command.uid(65534).gid(65534);
        }
        let run = run_with(command, MAIL);
        assert_eq!(run.code, code, "{program}: {}", run.stderr);
        assert_one_line(
            &run,
            program,
            &[
                server.dir.path().to_str().unwrap(),
                "Permission denied",
                "running as user",
            ],
        );
    }
    std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn config_syntax_errors_give_the_line() {
    let server = Server::new();
    let mut text = std::fs::read_to_string(&server.config).unwrap();
    text.push_str("[keyreg]\nrescan_seconds = \"soon\"\n");
    std::fs::write(&server.config, &text).unwrap();
    let line = text.lines().count();
    for (program, args, code) in PROGRAMS {
        let run = server.run(program, args, MAIL);
        assert_eq!(run.code, code, "{program}: {}", run.stderr);
        assert_one_line(
            &run,
            program,
            &["keyserver.toml: ", &format!("line {line}, column 18: invalid type")],
        );
    }
    std::fs::write(&server.config, "state_dir = \"/srv\"\n[mail]\ntransprt = \"file\"\n").unwrap();
    let run = server.run("keyreg", &["--once"], b"");
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert_one_line(&run, "keyreg", &["line 3, column 1: unknown field `transprt`"]);
}

#[test]
fn port_in_use() {
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let server = Server::new();
    let run = server.run("keyserv", &["--listen", &format!("127.0.0.1:{port}")], b"");
    assert_eq!(run.code, 69, "{}", run.stderr);
    assert_one_line(
        &run,
        "keyserv",
        &[&format!("cannot listen on 127.0.0.1:{port}"), "in use"],
    );
}

#[test]
fn keyserv_already_running_even_on_the_same_port() {
    let server = Server::new();
    let keyserv = server.start_keyserv();
    // Same configuration, so the same port: the pid file is checked first.
    let run = server.run("keyserv", &[], b"");
    assert_eq!(run.code, 75, "{}", run.stderr);
    let pid = keyserv.child.id().to_string();
    assert_one_line(&run, "keyserv", &["keyserv.pid", "already running as pid", &pid]);
    assert!(
        keyserv.lookup("nobody@example.org").starts_with("NOTFOUND"),
        "the first one still answers"
    );
}

#[test]
fn unreadable_database() {
    let server = Server::new();
    std::fs::write(server.path("keys.gdbm"), vec![0x5a; 4096]).unwrap();
    // No apply log and no good copy: keyreg can't rebuild it, and says so.
    for (program, args) in [("keyreg", &["--once"][..]), ("db2flat", &[][..])] {
        let run = server.run(program, args, b"");
        assert_eq!(run.code, 65, "{program}: {}", run.stderr);
        assert_one_line(&run, program, &["keys.gdbm", "not a GDBM database"]);
    }
    // keyserv starts all the same, saying why, so that it serves again as
    // soon as keyreg has rebuilt the database.
    let log = server.start_keyserv().stop();
    assert!(
        log.contains("keys.gdbm") && log.contains("keyreg will rebuild it"),
        "{log}"
    );
}

#[test]
fn a_replay_from_a_directory_that_is_not_one_names_that_directory() {
    let server = Server::new();
    let file = server.path("updates");
    std::fs::write(&file, b"not a directory").unwrap();
    let run = server.run("keyreg", &["--replay", file.to_str().unwrap()], b"");
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_one_line(&run, "keyreg", &["updates", "Not a directory"]);
    assert!(
        !run.stderr.contains("sync/queue"),
        "not the outgoing queue: {}",
        run.stderr
    );
}
