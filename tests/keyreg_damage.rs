//! Blocks of junk written over `keys.gdbm`, as a bad disk or a stray `dd`
//! would: the next request finds the damage, keyreg rebuilds the database
//! by itself, and the flat keyring equals the undamaged one plus the new
//! request, record times included. db2flat meanwhile refuses to dump a
//! damaged file and leaves the last good flat files in place.

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::{plain_mail, rpgp_key, send_signal, Server};

/// The records of the flat keyring, without its `# Created` line.
fn records(server: &Server) -> Vec<String> {
    let dump = server.run("db2flat", &[], b"");
    assert_eq!(dump.code, 0, "db2flat: {}", dump.stderr);
    let text = std::fs::read_to_string(server.path("pub/pubkeys.txt")).unwrap();
    text.split("\n\n")
        .map(|record| {
            record
                .lines()
                .filter(|line| !line.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|record| !record.trim().is_empty())
        .collect()
}

/// A server with keys registered over several windows, and its records.
fn registered(keys: &std::path::Path) -> (Server, Vec<String>) {
    let server = Server::new();
    for batch in 0..4 {
        for n in 0..3 {
            let name = format!("b{batch}n{n}");
            let key = rpgp_key(keys, &name, &["--uid", &format!("Kay <{name}@damage.example>")]);
            server.mail("add", &plain_mail(&format!("{name}@damage.example"), &key));
        }
        server.keyreg_once();
    }
    let before = records(&server);
    assert_eq!(before.len(), 12);
    (server, before)
}

/// Overwrites `length` bytes at each of `offsets` (fractions of the file).
fn junk(server: &Server, offsets: &[f64], length: usize) {
    let path = server.path("keys.gdbm");
    let size = std::fs::metadata(&path).unwrap().len();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for (index, fraction) in offsets.iter().enumerate() {
        let at = ((size as f64 * fraction) as u64).min(size.saturating_sub(length as u64));
        file.seek(SeekFrom::Start(at)).unwrap();
        let bytes: Vec<u8> = (0..length).map(|n| (n * 31 + index * 7) as u8 ^ 0xa5).collect();
        file.write_all(&bytes).unwrap();
    }
}

fn repaired_with_a_new_request(offsets: &[f64], length: usize) {
    let keys = tempfile::tempdir().unwrap();
    let (server, before) = registered(keys.path());
    junk(&server, offsets, length);
    let newcomer = rpgp_key(keys.path(), "new", &["--uid", "New <new@damage.example>"]);
    server.mail("add", &plain_mail("new@damage.example", &newcomer));
    let log = server.keyreg_once();
    let after = records(&server);
    for record in &before {
        assert!(
            after.contains(record),
            "lost or changed:\n{record}\nkeyreg said:\n{log}"
        );
    }
    assert_eq!(after.len(), before.len() + 1, "{log}");
    assert!(after.iter().any(|record| record.contains("User: new@damage.example")));
    let kept = std::fs::read_dir(server.dir.path())
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".damaged-")
        })
        .count();
    assert!(
        kept >= 1 && log.contains("damaged"),
        "the damaged file is kept and the repair logged: {log}"
    );
}

#[test]
fn junk_over_the_header_is_repaired() {
    repaired_with_a_new_request(&[0.0], 512);
}

#[test]
fn junk_over_blocks_in_the_middle_is_repaired() {
    repaired_with_a_new_request(&[0.3, 0.55, 0.8], 4096);
}

#[test]
fn junk_over_the_whole_file_is_repaired() {
    repaired_with_a_new_request(&[0.0, 0.25, 0.5, 0.75, 0.99], 1 << 20);
}

#[test]
fn db2flat_refuses_a_damaged_file_and_keeps_the_last_dump() {
    let keys = tempfile::tempdir().unwrap();
    let (server, _) = registered(keys.path());
    let good = std::fs::read(server.path("pub/pubkeys.txt")).unwrap();
    junk(&server, &[0.0, 0.5], 4096);
    let dump = server.run("db2flat", &[], b"");
    assert_eq!(dump.code, 65, "damage is bad data: {}", dump.stderr);
    assert!(dump.stderr.contains("keys.gdbm"), "{}", dump.stderr);
    assert_eq!(std::fs::read(server.path("pub/pubkeys.txt")).unwrap(), good);
}

#[test]
fn a_running_daemon_repairs_junk_written_under_it() {
    let keys = tempfile::tempdir().unwrap();
    let (server, before) = registered(keys.path());
    let daemon = server
        .command("keyreg")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    junk(&server, &[0.3, 0.6], 4096);
    let newcomer = rpgp_key(keys.path(), "new", &["--uid", "New <new@damage.example>"]);
    server.mail("add", &plain_mail("new@damage.example", &newcomer));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.pending("add") > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    send_signal(&daemon.id().to_string(), "TERM");
    let output = daemon.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(server.pending("add"), 0, "{log}");
    let after = records(&server);
    for record in &before {
        assert!(after.contains(record), "lost or changed:\n{record}\n{log}");
    }
    assert_eq!(after.len(), before.len() + 1, "{log}");
    assert!(log.contains("damaged"), "the repair is logged: {log}");
}
