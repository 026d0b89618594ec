//! copymail end to end: safe spooling, the size limit, temporary failures.

mod common;

use common::*;

#[test]
fn spools_whole_messages() {
    let server = Server::new();
    let message = b"From: a@example.org\nSubject: x\n\nbody\n";
    server.mail("add", message);
    server.mail("change", message);
    let dir = server.path("spool/add/new");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("key."));
    assert_eq!(std::fs::read(&files[0]).unwrap(), message);
    assert_eq!(server.pending("change"), 1);
    assert_eq!(std::fs::read_dir(server.path("spool/add/tmp")).unwrap().count(), 0);
}

#[test]
fn too_large_is_refused_with_65() {
    let server = Server::with_extra("[keyreg]\nmax_message_bytes = 1000\n");
    let run = server.run("copymail", &["--queue", "add"], &vec![b'x'; 5000]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert!(run.stderr.contains("larger than"));
    assert_eq!(server.pending("add"), 0);
    assert_eq!(std::fs::read_dir(server.path("spool/add/tmp")).unwrap().count(), 0);
}

#[test]
fn failures_are_temporary() {
    let server = Server::new();
    let bad_queue = server.run("copymail", &["--queue", "nonsense"], b"x");
    assert_eq!(bad_queue.code, 75, "{}", bad_queue.stderr);
    // A spool that can't be created: state dir is a file.
    let file = server.path("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let run = server.run(
        "copymail",
        &["--state-dir", file.to_str().unwrap(), "--queue", "add"],
        b"x",
    );
    assert_eq!(run.code, 75, "{}", run.stderr);
    let missing_config = server.run(
        "copymail",
        &["--config", "/nonexistent/keyserver.toml", "--queue", "add"],
        b"x",
    );
    assert_eq!(missing_config.code, 75, "{}", missing_config.stderr);
}
