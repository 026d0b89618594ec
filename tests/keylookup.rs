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

#[test]
fn does_the_cookie_round_trip_by_itself() {
    let server = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let long = "c".repeat(200);
    let user_ids: Vec<String> = (0..30)
        .map(|n| format!("Carol {long} {n} <carol@example.org>"))
        .collect();
    let mut args = Vec::new();
    for user_id in &user_ids {
        args.extend(["--uid", user_id.as_str()]);
    }
    server.mail(
        "add",
        &plain_mail("carol@example.org", &rpgp_key(keys.path(), "c", &args)),
    );
    server.keyreg_once();
    let keyserv = server.start_keyserv_with(&["-v"]);
    let run = server.keylookup(&["carol@example.org"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let imported = Gpg::new().run(&["--import"], run.stdout.as_bytes());
    assert!(imported.stderr.contains("imported: 1"), "{}", imported.stderr);
    let log = keyserv.stop();
    let answers: Vec<&str> = log.lines().filter(|line| line.contains("answered")).collect();
    assert_eq!(
        answers,
        ["keyserv: answered COOKIE", "keyserv: answered USERINFO"],
        "{log}"
    );
}

/// A fake key server on loopback that answers every datagram with the
/// same bytes, until dropped.
struct Liar {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Liar {
    fn answering(answer: Vec<u8>) -> Liar {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(20)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok((_, peer)) = socket.recv_from(&mut buffer) {
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        Liar {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn refuses_a_server_that_answers_with_another_key() {
    let home = Server::new();
    let keys = tempfile::tempdir().unwrap();
    for name in ["alice", "bob"] {
        let key = rpgp_key(keys.path(), name, &["--uid", &format!("{name} <{name}@example.net>")]);
        home.mail("add", &plain_mail(&format!("{name}@example.net"), &key));
    }
    home.keyreg_once();
    let keyserv = home.start_keyserv();
    let alice = record_fingerprint(&keyserv.lookup("alice@example.net")).unwrap();
    // The liar answers every question with Bob's record, just as keyserv sent it.
    let liar = Liar::answering(keyserv.lookup("bob@example.net").into_bytes());
    let honest = format!("127.0.0.1:{}", keyserv.port);
    let wrong_line = format!("keylookup: {} sent a wrong answer for ", liar.address());

    for query in ["alice@example.net".to_string(), format!("0x{alice}")] {
        let run = home.run(
            "keylookup",
            &["--server", &liar.address(), "--server", &honest, "--record", &query],
            b"",
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            record_fingerprint(&run.stdout).as_deref(),
            Some(alice.as_str()),
            "{query}"
        );
        assert!(run.stderr.starts_with(&wrong_line), "{query}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }

    // With only the liar to ask there is no answer to print.
    let run = home.run(
        "keylookup",
        &["--server", &liar.address(), "--tries", "1", "alice@example.net"],
        b"",
    );
    assert_eq!(run.code, 69, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.starts_with(&wrong_line), "{}", run.stderr);
    assert!(run.stderr.contains("no key server answered"), "{}", run.stderr);

    // The servers to ask can come from the configuration.
    let config = home.path("client.toml");
    std::fs::write(
        &config,
        format!("[keylookup]\nservers = [\"{}\", \"{honest}\"]\n", liar.address()),
    )
    .unwrap();
    let mut command = std::process::Command::new(bin("keylookup"));
    command.arg("--config").arg(&config).arg("alice@example.net");
    let run = run_with(command, b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.starts_with(&wrong_line), "{}", run.stderr);
}
