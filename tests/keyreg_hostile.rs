//! keyreg against hostile mail: broken and deeply nested MIME, thousands of
//! parts, huge headers, binary junk, non-UTF-8, oversized messages, broken
//! armor and keys with thousands of user IDs. Each gets a clear outcome or
//! moves to spool/failed with its reason logged, nothing panics, and the
//! good request queued behind them is still served.

mod common;

use common::*;

fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn hostile_mail_never_blocks_the_queue() {
    let server = Server::with_extra("[keyreg]\nmax_message_bytes = 8000000\n");
    let keys = tempfile::tempdir().unwrap();
    let good = rpgp_key(keys.path(), "good", &["--uid", "Good <good@example.org>"]);
    let mut hostile: Vec<(&str, Vec<u8>)> = Vec::new();

    let mut nested = String::from("From: nest@example.org\nMIME-Version: 1.0\n");
    for level in 0..3000 {
        nested.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{level}\"\n\n--b{level}\n"
        ));
    }
    nested.push_str(&format!("Content-Type: text/plain\n\n{good}\n"));
    hostile.push(("deep nesting", nested.into_bytes()));

    let mut many =
        String::from("From: parts@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"p\"\n\n");
    for index in 0..20_000 {
        many.push_str(&format!("--p\nContent-Type: text/plain\n\npart {index}\n"));
    }
    many.push_str("--p--\n");
    hostile.push(("thousands of parts", many.into_bytes()));

    hostile.push((
        "huge header",
        format!("From: big@example.org\nSubject: {}\n\nbody\n", "x".repeat(2_000_000)).into_bytes(),
    ));
    let mut headers = String::new();
    for index in 0..100_000 {
        headers.push_str(&format!("X-Header-{index}: value\n"));
    }
    hostile.push((
        "100k header lines",
        format!("From: hdr@example.org\n{headers}\nbody\n").into_bytes(),
    ));
    hostile.push(("binary junk", random_bytes(1_000_000, 7)));
    hostile.push((
        "broken MIME",
        b"From: mime@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\n\n--\n--\nContent-Transfer-Encoding: base64\n\n!!!!\n".to_vec(),
    ));
    let mut latin1 =
        b"From: latin@example.org\nContent-Type: text/plain; charset=iso-8859-1\n\nCl\xe9 publique:\n".to_vec();
    latin1.extend_from_slice(good.as_bytes());
    hostile.push(("non-UTF-8 body", latin1));
    let half = &good[..good.len() / 2];
    hostile.push((
        "truncated armor",
        plain_mail(
            "trunc@example.org",
            &format!("{half}\n-----END PGP PUBLIC KEY BLOCK-----\n"),
        ),
    ));
    // A packet header that claims 2 GiB in a ten-byte body, armored.
    let liar = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxv9/////BARiYWQ=\n-----END PGP PUBLIC KEY BLOCK-----\n";
    hostile.push(("armor lying about its length", plain_mail("liar@example.org", liar)));
    let uids: Vec<String> = (0..2000).map(|i| format!("U{i} <u{i}@many.example.org>")).collect();
    let mut args: Vec<&str> = Vec::new();
    for uid in &uids {
        args.push("--uid");
        args.push(uid);
    }
    args.push("--no-subkey");
    let crowded = rpgp_key(keys.path(), "crowded", &args);
    hostile.push(("2000 user IDs", plain_mail("crowd@example.org", &crowded)));
    hostile.push(("signed junk", b"From: sj@example.org\n\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nRemoveKey\n-----BEGIN PGP SIGNATURE-----\n\n!!!\n-----END PGP SIGNATURE-----\n".to_vec()));

    for (name, message) in &hostile {
        let queue = if *name == "signed junk" { "remove" } else { "add" };
        let run = server.run("copymail", &["--queue", queue], message);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
    }
    let oversized = server.run("copymail", &["--queue", "add"], &random_bytes(9_000_000, 3));
    assert_eq!(oversized.code, 65, "over the limit is refused at the door");
    server.mail("add", &plain_mail("good@example.org", &good));

    let run = server.run("keyreg", &["--once"], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        server.pending("add") + server.pending("remove"),
        0,
        "nothing left behind"
    );

    let log = std::fs::read(server.path("transactions.log")).unwrap();
    let entries = log.windows(9).filter(|w| w == b"\n=== end\n").count();
    assert_eq!(entries, hostile.len() + 1, "every request logged: {}", run.stderr);
    let failed: Vec<String> = std::fs::read_dir(server.path("spool/failed"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        failed.iter().any(|name| name.ends_with(".reason")),
        "junk quarantined with a reason: {failed:?}"
    );

    let keyserv = server.start_keyserv();
    assert!(
        keyserv.lookup("good@example.org").starts_with("USERINFO"),
        "the good request behind was served"
    );
    assert!(keyserv.lookup("u1@many.example.org").starts_with("NOTFOUND"));
    let replies = server.outbox();
    let reply_to = |who: &str| {
        replies
            .iter()
            .find(|m| m.to == who)
            .map(|m| m.body.clone())
            .unwrap_or_default()
    };
    assert!(
        reply_to("crowd@example.org").contains("user IDs"),
        "{}",
        reply_to("crowd@example.org")
    );
    assert!(
        reply_to("trunc@example.org").contains("refused"),
        "{}",
        reply_to("trunc@example.org")
    );
    assert!(
        reply_to("liar@example.org").contains("refused"),
        "{}",
        reply_to("liar@example.org")
    );
    assert!(
        reply_to("sj@example.org").contains("refused"),
        "{}",
        reply_to("sj@example.org")
    );
    assert!(reply_to("latin@example.org").contains("registered") || reply_to("latin@example.org").contains("already"));
}

/// Runs `keyreg --once`, failing the test if it has not finished within
/// `limit` (it used to block forever on a FIFO); returns its stderr.
fn keyreg_once_within(server: &Server, limit: std::time::Duration) -> String {
    use std::io::Read;
    let mut child = server
        .command("keyreg")
        .arg("--once")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("keyreg --once still running after {limit:?}: it blocked");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "keyreg --once: {stderr}");
    stderr
}

fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

fn failed_names(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.path("spool/failed"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn spool_entries_that_are_not_files_are_moved_aside_unopened() {
    use std::os::unix::fs::symlink;
    let server = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let good = rpgp_key(keys.path(), "good", &["--uid", "Good <good@example.org>"]);
    let linked = rpgp_key(keys.path(), "linked", &["--uid", "Linked <linked@example.org>"]);
    server.mail("add", &plain_mail("good@example.org", &good));
    // Created by hand: an attacker (or a confused admin) with write access.
    let new = server.path("spool/add/new");
    mkfifo(&new.join("key.fifo"));
    let outside = keys.path().join("elsewhere.eml");
    std::fs::write(&outside, plain_mail("linked@example.org", &linked)).unwrap();
    symlink(&outside, new.join("key.link")).unwrap();
    std::fs::create_dir(new.join("key.dir")).unwrap();
    let outgoing = server.path("spool/outgoing");
    mkfifo(&outgoing.join("fifo.eml"));
    let secret = keys.path().join("secret");
    std::fs::write(
        &secret,
        "X-Ripem-Recipient: thief@example.net\nSubject: secret\n\nsecret\n",
    )
    .unwrap();
    symlink(&secret, outgoing.join("link.eml")).unwrap();

    let log = keyreg_once_within(&server, std::time::Duration::from_secs(60));
    assert_eq!(server.pending("add"), 0, "nothing left in new/: {log}");
    assert_eq!(
        failed_names(&server),
        [
            "add.key.dir",
            "add.key.dir.reason",
            "add.key.fifo",
            "add.key.fifo.reason",
            "add.key.link",
            "add.key.link.reason",
            "outgoing.fifo.eml",
            "outgoing.fifo.eml.reason",
            "outgoing.link.eml",
            "outgoing.link.eml.reason",
        ]
    );
    let reason = |name: &str| std::fs::read_to_string(server.path(&format!("spool/failed/{name}.reason"))).unwrap();
    assert!(reason("add.key.fifo").contains("a FIFO"), "{}", reason("add.key.fifo"));
    assert!(reason("add.key.link").contains("a symlink"));
    assert!(reason("add.key.dir").contains("a directory"));
    assert!(reason("outgoing.fifo.eml").contains("a FIFO"));
    assert!(reason("outgoing.link.eml").contains("a symlink"));
    let moved = server.path("spool/failed/add.key.link");
    assert!(
        moved.symlink_metadata().unwrap().file_type().is_symlink(),
        "the link moved, not its target"
    );
    assert!(outside.exists() && secret.exists(), "targets untouched");
    for line in ["key.fifo", "key.link", "key.dir", "fifo.eml", "link.eml"] {
        assert!(
            log.lines()
                .any(|l| l.contains(line) && l.contains("not a regular file")),
            "one line for {line}: {log}"
        );
    }
    let txlog = std::fs::read_to_string(server.path("transactions.log")).unwrap();
    assert_eq!(
        txlog.matches("=== end").count(),
        4,
        "the good one and the three strays: {txlog}"
    );
    assert!(txlog.contains("not a regular file but a FIFO"));

    let replies = server.outbox();
    assert_eq!(
        replies.len(),
        1,
        "only the good request is answered, the link is not mailed"
    );
    assert_eq!(replies[0].to, "good@example.org");
    let keyserv = server.start_keyserv();
    assert!(keyserv.lookup("good@example.org").starts_with("USERINFO"));
    assert!(
        keyserv.lookup("linked@example.org").starts_with("NOTFOUND"),
        "a symlink is not followed"
    );
}

#[test]
fn names_that_are_not_utf8_are_processed_and_answered_apart() {
    use std::os::unix::ffi::OsStrExt;
    let server = Server::new();
    let new = server.path("spool/add/new");
    std::fs::create_dir_all(&new).unwrap();
    // Both turn into "key.\u{FFFD}" when decoded lossily.
    for (name, from) in [(&b"key.\xff"[..], "one@example.org"), (b"key.\xfe", "two@example.org")] {
        let mail = format!("From: {from}\nSubject: hello\n\nno key here\n");
        std::fs::write(new.join(std::ffi::OsStr::from_bytes(name)), mail).unwrap();
    }
    let log = keyreg_once_within(&server, std::time::Duration::from_secs(60));
    assert_eq!(server.pending("add"), 0, "{log}");
    assert!(
        log.contains("key.%FF") && log.contains("key.%FE"),
        "escaped in the log: {log}"
    );
    let mut to: Vec<String> = server.outbox().into_iter().map(|m| m.to).collect();
    to.sort();
    assert_eq!(to, ["one@example.org", "two@example.org"], "two replies, none dropped");
}

#[test]
fn at_most_100_keys_are_considered_per_mail() {
    let server = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let mut body = String::new();
    for i in 0..150 {
        body.push_str(&rpgp_key(
            keys.path(),
            &format!("k{i}"),
            &["--uid", &format!("K{i} <k{i}@example.org>")],
        ));
    }
    server.mail("add", &plain_mail("many@example.org", &body));
    let log = keyreg_once_within(&server, std::time::Duration::from_secs(300));
    assert!(log.contains("100 keys added"), "{log}");
    let replies = server.outbox();
    let reply = &replies[0].body;
    let refusals: Vec<&str> = reply.lines().filter(|l| l.contains("not considered")).collect();
    assert_eq!(
        refusals,
        ["  50 further keys not considered: at most 100 keys per request"],
        "{reply}"
    );
    let keyserv = server.start_keyserv();
    assert!(keyserv.lookup("k99@example.org").starts_with("USERINFO"));
    assert!(keyserv.lookup("k100@example.org").starts_with("NOTFOUND"));
}

#[test]
fn a_huge_message_id_is_not_copied_into_the_reply() {
    let server = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(keys.path(), "id", &["--uid", "Id <id@example.org>"]);
    let id = format!("<{}@example.org>", "i".repeat(5_000_000));
    let mail = format!(
        "From: id@example.org\nSubject: {}\nMessage-ID: {id}\n\n{key}",
        "s".repeat(100_000)
    );
    server.mail("add", mail.as_bytes());
    keyreg_once_within(&server, std::time::Duration::from_secs(120));
    let replies = server.outbox();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].in_reply_to, None);
    assert!(replies[0].body.contains("registered"), "{}", replies[0].body);
    let raw = std::fs::read(
        std::fs::read_dir(server.path("outbox"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    assert!(raw.len() < 64 * 1024, "{} bytes", raw.len());
    let longest = raw.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap();
    assert!(longest <= 998 + 1, "a line of {longest} bytes");
}

#[test]
fn a_huge_reply_is_summarised_to_64_kib() {
    let server = Server::with_extra("[keyreg]\nmax_keys_per_request = 5000\n");
    let junk = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxv9/////BARiYWQ=\n-----END PGP PUBLIC KEY BLOCK-----\n";
    server.mail("add", &plain_mail("loud@example.org", &junk.repeat(4000)));
    keyreg_once_within(&server, std::time::Duration::from_secs(120));
    let path = std::fs::read_dir(server.path("outbox"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size <= 64 * 1024, "reply of {size} bytes");
    let reply = &server.outbox()[0].body;
    assert!(reply.contains("key block 1: refused"), "{reply}");
    assert!(!reply.contains("key block 4000:"), "the tail is left out");
    assert!(
        reply.contains("further lines left out: a reply is at most 64 KiB"),
        "{reply}"
    );
}
