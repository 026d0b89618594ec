//! keyserv end to end: the UDP protocol on a real socket, junk datagrams,
//! the pid file lock, redirects, and lookups that keep being answered
//! correctly while keyreg writes.

mod common;

use std::time::Duration;

use common::*;

fn registered_server(extra: &str) -> (Server, String) {
    let server = Server::with_extra(extra);
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(
        keys.path(),
        "a",
        &[
            "--uid",
            "Alice <alice@mail.cs.example.edu>",
            "--uid",
            "Alice <alice@example.org>",
        ],
    );
    server.mail("add", &plain_mail("alice@example.org", &key));
    server.keyreg_once();
    let fpr = record_fingerprint(
        &std::fs::read_to_string(server.path("transactions.log"))
            .unwrap()
            .replace("Outcome: key ", "Fingerprint: ")
            .replace(":\n", "\n"),
    )
    .unwrap();
    (server, fpr)
}

#[test]
fn protocol_answers() {
    let (server, fpr) = registered_server("[keyserv.redirect]\n\"example.net\" = \"keys.example.net:1611\"\n");
    let keyserv = server.start_keyserv();
    let found = keyserv.lookup("alice@example.org");
    assert!(
        found.starts_with("USERINFO\nUser: alice@mail.cs.example.edu\nUser: alice@example.org\n"),
        "{found}"
    );
    assert!(found.ends_with("-----END PGP PUBLIC KEY BLOCK-----\n\0"), "{found:?}");
    assert_eq!(keyserv.lookup("ALICE@Example.ORG"), found, "case-insensitive");
    assert_eq!(
        keyserv.lookup("alice@x.y.mail.cs.example.edu"),
        found,
        "up-a-level fallback"
    );
    assert_eq!(
        keyserv.lookup(&format!("0x{}", fpr.to_lowercase())),
        found,
        "by fingerprint"
    );
    assert_eq!(
        keyserv.lookup("nobody@example.org"),
        "NOTFOUND\nUser: nobody@example.org\n\0"
    );
    assert_eq!(
        keyserv.lookup("bob@mail.example.net"),
        "REDIRECT\nServer: keys.example.net:1611\n\0"
    );
    let ask = |bytes: &[u8]| String::from_utf8(keyserv.ask(bytes).expect("an answer")).unwrap();
    assert_eq!(ask(b"LOOKUSER\n"), "BADFMT\n\0");
    assert_eq!(ask(b"LOOKUSER\nUser: not an address\n"), "BADFMT\n\0");
    assert_eq!(ask(b"GETALL\n"), "CMDUNREG\n\0");
    assert_eq!(ask(b"QUIT\n"), "CMDUNREG\n\0", "QUIT is refused unless allowed");
    assert_eq!(
        ask(b"LOOKUSER\nUser: alice@example.org\n\0"),
        found,
        "trailing NUL accepted"
    );
}

/// Datagrams queued together are answered in one batch, decoded and
/// warmed together before any is answered: each sender still gets the
/// answer to its own request, whatever the others asked, in every round
/// (the later ones partly from the answer cache).
#[test]
fn a_burst_of_mixed_requests_gets_each_its_own_answer() {
    let (server, fpr) = registered_server("rate_limit = 0\nrate_bytes = 0\ncookies = false\n");
    let keyserv = server.start_keyserv();
    let found = keyserv.lookup("alice@example.org");
    assert!(found.starts_with("USERINFO\n"), "{found}");
    let request = |n: usize| match n % 5 {
        0 => "LOOKUSER\nUser: alice@example.org\n".to_string(),
        1 => format!("LOOKUSER\nUser: nobody{n}@example.org\n"),
        2 => format!("LOOKUSER\nUser: 0x{fpr}\n"),
        3 => "LOOKUSER\nUser: not an address\n".to_string(),
        _ => format!("LOOKUSER\nUser: alice@host{n}.mail.cs.example.edu\n"),
    };
    let expected = |n: usize| match n % 5 {
        1 => format!("NOTFOUND\nUser: nobody{n}@example.org\n\0"),
        3 => "BADFMT\n\0".to_string(),
        _ => found.clone(),
    };
    let sockets: Vec<_> = (0..40)
        .map(|_| {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            socket
        })
        .collect();
    let mut buffer = vec![0u8; 65_536];
    let pid = keyserv.child.id().to_string();
    for round in 0..5 {
        // Stopped, keyserv finds them all queued and takes them in batches.
        send_signal(&pid, "STOP");
        for (n, socket) in sockets.iter().enumerate() {
            socket
                .send_to(request(n).as_bytes(), ("127.0.0.1", keyserv.port))
                .unwrap();
        }
        send_signal(&pid, "CONT");
        for (n, socket) in sockets.iter().enumerate() {
            let (length, _) = socket.recv_from(&mut buffer).expect("every request is answered");
            assert_eq!(
                String::from_utf8_lossy(&buffer[..length]),
                expected(n),
                "round {round}, request {n}: {}",
                request(n)
            );
        }
    }
}

#[test]
fn junk_datagrams_never_break_it() {
    let (server, _) = registered_server("");
    let keyserv = server.start_keyserv();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut buffer = vec![0u8; 70_000];
    for round in 0..2000 {
        let length = match round % 4 {
            0 => (next() % 16) as usize,
            1 => (next() % 600) as usize,
            2 => (next() % 9000) as usize,
            _ => 60_000 + (next() % 5000) as usize,
        };
        let mut datagram: Vec<u8> = (0..length).map(|_| next() as u8).collect();
        if round % 3 == 0 && datagram.len() > 9 {
            datagram[..9].copy_from_slice(b"LOOKUSER\n");
        }
        socket.send_to(&datagram, ("127.0.0.1", keyserv.port)).unwrap();
        let (length, _) = socket.recv_from(&mut buffer).expect("every datagram is answered");
        let answer = &buffer[..length];
        assert!(
            answer == b"BADFMT\n\0" || answer == b"CMDUNREG\n\0" || answer.starts_with(b"NOTFOUND\n"),
            "round {round}: {:?}",
            String::from_utf8_lossy(answer)
        );
    }
    assert!(
        keyserv.lookup("alice@example.org").starts_with("USERINFO"),
        "still answers correctly"
    );
}

#[test]
fn one_keyserv_per_pid_file_and_clean_exit() {
    let (server, _) = registered_server("");
    let keyserv = server.start_keyserv();
    let second = server.run("keyserv", &["--listen", &format!("127.0.0.1:{}", free_port())], b"");
    assert_eq!(second.code, 75, "{}", second.stderr);
    assert!(second.stderr.contains("already running"), "{}", second.stderr);
    let port_taken = Server::new();
    let clash = port_taken.run("keyserv", &["--listen", &format!("127.0.0.1:{}", keyserv.port)], b"");
    assert_ne!(clash.code, 0);
    assert!(clash.stderr.contains("cannot listen on"), "{}", clash.stderr);
    let log = keyserv.stop();
    assert!(log.contains("started") && log.contains("stopped"), "{log}");
    assert!(!server.path("keyserv.pid").exists(), "pid file removed on exit");
}

#[test]
fn lookups_stay_correct_while_keyreg_writes() {
    let (server, _) = registered_server("");
    let keyserv = server.start_keyserv();
    let keys = tempfile::tempdir().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = keyserv.port;
    let prober = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let request = with_cookie_for(&socket, port, b"LOOKUSER\nUser: alice@example.org\n");
            let mut buffer = vec![0u8; 70_000];
            let (mut answered, mut wrong, mut lost) = (0, 0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                socket.send_to(&request, ("127.0.0.1", port)).unwrap();
                match socket.recv_from(&mut buffer) {
                    Ok((n, _)) if buffer[..n].starts_with(b"USERINFO") => answered += 1,
                    Ok(_) => wrong += 1,
                    Err(_) => lost += 1,
                }
            }
            (answered, wrong, lost)
        })
    };
    for round in 0..8 {
        let key = rpgp_key(
            keys.path(),
            &format!("n{round}"),
            &["--uid", &format!("N <n{round}@example.org>")],
        );
        server.mail("add", &plain_mail(&format!("n{round}@example.org"), &key));
        server.keyreg_once();
        assert!(
            keyserv.lookup(&format!("n{round}@example.org")).starts_with("USERINFO"),
            "new key visible at once"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (answered, wrong, lost) = prober.join().unwrap();
    assert!(answered > 0);
    assert_eq!((wrong, lost), (0, 0), "{answered} answered");
}

#[test]
fn logs_answers_but_not_requesters_unless_asked() {
    let (server, _) = registered_server("");
    let keyserv = server.start_keyserv_with(&["-v"]);
    keyserv.lookup("alice@example.org");
    keyserv.lookup("nobody@example.org");
    let log = keyserv.stop();
    assert!(log.contains("keyserv: answered USERINFO\n"), "{log}");
    assert!(log.contains("keyserv: answered NOTFOUND\n"), "{log}");
    let answers = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|line| line.contains("answered"))
            .map(str::to_string)
            .collect()
    };
    assert!(answers(&log).iter().all(|line| !line.contains("127.0.0.1")), "{log}");
    let quiet = server.start_keyserv();
    quiet.lookup("alice@example.org");
    let log = quiet.stop();
    assert!(!log.contains("answered"), "no answer lines without -v: {log}");

    let (server, _) = registered_server("log_requests = true\n");
    let keyserv = server.start_keyserv();
    keyserv.lookup("alice@example.org");
    let log = keyserv.stop();
    assert!(
        answers(&log)
            .iter()
            .any(|line| line.starts_with("keyserv: 127.0.0.1:") && line.ends_with(": answered USERINFO")),
        "{log}"
    );
}

/// Sends `count` lookups from `source` at once, then collects answers for
/// `wait`; returns how many came back, all of which must be USERINFO.
fn flood(source: &str, port: u16, count: usize, wait: Duration) -> usize {
    let socket = std::net::UdpSocket::bind((source, 0)).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    for _ in 0..count {
        socket
            .send_to(b"LOOKUSER\nUser: alice@example.org\n", ("127.0.0.1", port))
            .unwrap();
    }
    let mut buffer = vec![0u8; 70_000];
    let mut answered = 0;
    let until = std::time::Instant::now() + wait;
    // Every answer in, or the time is up (a busy machine may take a while
    // to answer even what the limit allows).
    while answered < count && std::time::Instant::now() < until {
        if let Ok((length, _)) = socket.recv_from(&mut buffer) {
            assert!(buffer[..length].starts_with(b"USERINFO"));
            answered += 1;
        }
    }
    answered
}

#[test]
fn rate_limit_caps_a_flooding_network_and_serves_the_others() {
    let (server, _) = registered_server("rate_limit = 4\nrate_burst = 5\ncookies = false\n");
    let keyserv = server.start_keyserv();
    let started = std::time::Instant::now();
    let flooder = flood("127.0.1.2", keyserv.port, 200, Duration::from_millis(500));
    // The burst, plus at most the rate over the time the flood lasted.
    let allowed = 5 + (4.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!((5..=allowed).contains(&flooder), "{flooder} answers, {allowed} allowed");
    // The same /24 shares the flooder's spent budget (a fresh one would get
    // the whole burst of 5) …
    let neighbour = flood("127.0.1.9", keyserv.port, 20, Duration::from_millis(200));
    assert!(neighbour <= 2, "{neighbour}");
    // … while other networks are served at once.
    for source in ["127.0.2.2", "127.0.3.2", "127.0.0.2"] {
        assert_eq!(flood(source, keyserv.port, 3, Duration::from_secs(3)), 3, "{source}");
    }
}

#[test]
fn rate_limit_zero_turns_it_off() {
    let (server, _) = registered_server("rate_limit = 0\ncookies = false\n");
    let keyserv = server.start_keyserv();
    // One at a time, each waiting for its answer (a burst could lose
    // datagrams on a busy machine). The default limit (20/s after a burst
    // of 40) would need three seconds for these 100; they take milliseconds.
    let socket = std::net::UdpSocket::bind(("127.0.4.2", 0)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buffer = vec![0u8; 70_000];
    for asked in 0..100 {
        socket
            .send_to(b"LOOKUSER\nUser: alice@example.org\n", ("127.0.0.1", keyserv.port))
            .unwrap();
        let (length, _) = socket
            .recv_from(&mut buffer)
            .unwrap_or_else(|_| panic!("answer {asked} missing"));
        assert!(buffer[..length].starts_with(b"USERINFO"));
    }
}

#[test]
fn remembered_answers_follow_writes() {
    let server = Server::new();
    let gpg = Gpg::new();
    let dana = gpg.key("Dana <dana@example.org>", "ed25519");
    let keys = tempfile::tempdir().unwrap();
    let carol = rpgp_key(keys.path(), "carol", &["--uid", "Carol <carol@example.com>"]);
    server.mail("add", &plain_mail("dana@example.org", &dana));
    server.mail("add", &plain_mail("carol@example.com", &carol));
    server.keyreg_once();
    let keyserv = server.start_keyserv();

    let before = keyserv.lookup("dana@example.org");
    assert!(before.starts_with("USERINFO\nUser: dana@example.org\n"), "{before}");
    assert_eq!(keyserv.lookup("dana@example.org"), before, "now from the answer cache");
    let carol_fpr = record_fingerprint(&keyserv.lookup("carol@example.com"));
    let fallback = keyserv.lookup("carol@mail.example.com");
    assert_eq!(record_fingerprint(&fallback), carol_fpr, "one level up");

    // Dana adds a user ID and sends her key again: the remembered answer
    // about her key is forgotten, the one about Carol's is kept.
    let fpr = gpg.fingerprint("dana@example.org");
    let added = gpg.run(&["--quick-add-uid", &fpr, "Dana <dana@example.net>"], b"");
    assert_eq!(added.code, 0, "{}", added.stderr);
    let dana = gpg.run(&["--armor", "--export", &fpr], b"").stdout;
    server.mail("add", &plain_mail("dana@example.org", &dana));
    // Someone registers the address that was answered one level up.
    let mallory = rpgp_key(keys.path(), "mallory", &["--uid", "Mallory <carol@mail.example.com>"]);
    server.mail("add", &plain_mail("carol@mail.example.com", &mallory));
    server.keyreg_once();

    // The first lookup after a write brings the cache up to date; what it
    // still holds must be true.
    assert_eq!(record_fingerprint(&keyserv.lookup("carol@example.com")), carol_fpr);
    let after = keyserv.lookup("dana@example.org");
    assert!(after.contains("User: dana@example.net\n"), "{after}");
    assert_eq!(keyserv.lookup("dana@example.net"), after);
    let moved = keyserv.lookup("carol@mail.example.com");
    assert!(moved.starts_with("USERINFO\nUser: carol@mail.example.com\n"), "{moved}");
    assert_ne!(record_fingerprint(&moved), carol_fpr);

    // Without a journal keyserv can't tell what changed, and forgets all.
    std::fs::remove_file(server.path("keys.gdbm.journal")).unwrap();
    let extra = gpg.run(&["--quick-add-uid", &fpr, "Dana <dana@example.com>"], b"");
    assert_eq!(extra.code, 0, "{}", extra.stderr);
    let dana = gpg.run(&["--armor", "--export", &fpr], b"").stdout;
    server.mail("add", &plain_mail("dana@example.org", &dana));
    server.keyreg_once();
    assert_eq!(record_fingerprint(&keyserv.lookup("carol@example.com")), carol_fpr);
    assert!(keyserv.lookup("dana@example.org").contains("User: dana@example.com\n"));
}

/// A server with one key made big by 100 long user IDs, all for `a@x.y`
/// (so that `LOOKUSER\nUser: a@x.y` is a 20-byte request for it).
fn big_record_server(extra: &str) -> Server {
    let server = Server::with_extra(extra);
    let keys = tempfile::tempdir().unwrap();
    let long = "x".repeat(260);
    let user_ids: Vec<String> = (0..100).map(|n| format!("A {long} {n} <a@x.y>")).collect();
    let mut args = Vec::new();
    for user_id in &user_ids {
        args.extend(["--uid", user_id.as_str()]);
    }
    let key = rpgp_key(keys.path(), "big", &args);
    server.mail("add", &plain_mail("a@x.y", &key));
    server.keyreg_once();
    server
}

/// An answer's first line and length, for assertion messages.
fn summary(answer: &[u8]) -> String {
    let first = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    format!("{:?}… ({} bytes)", String::from_utf8_lossy(first), answer.len())
}

/// The 20-byte lookup of the big record, as a forger would send it.
const SMALL_REQUEST: &[u8] = b"LOOKUSER\nUser: a@x.y";

#[test]
fn a_big_answer_goes_only_to_a_source_that_shows_its_cookie() {
    assert_eq!(SMALL_REQUEST.len(), 20);
    // Before: without cookies, the answer is thousands of times the request.
    let open = big_record_server("cookies = false\n");
    let open_keyserv = open.start_keyserv();
    let full = exchange(&socket_on("127.0.0.1"), open_keyserv.port, SMALL_REQUEST).expect("an answer");
    assert!(
        full.starts_with(b"USERINFO\n") && full.len() > 50_000,
        "{}",
        summary(&full)
    );
    let before = full.len() as f64 / SMALL_REQUEST.len() as f64;
    drop(open_keyserv);

    let server = big_record_server("");
    let keyserv = server.start_keyserv();
    let port = keyserv.port;
    let client = socket_on("127.0.0.1");
    let first = exchange(&client, port, SMALL_REQUEST).expect("an answer");
    let after = first.len() as f64 / SMALL_REQUEST.len() as f64;
    println!(
        "amplification of a 20-byte lookup of a {}-byte record: {before:.0}x without cookies, {after:.2}x with",
        full.len()
    );
    assert!(after <= 3.0, "{after}");
    let cookie = cookie_in(&first).unwrap_or_else(|| panic!("{}", summary(&first)));
    assert!(first.starts_with(b"COOKIE\nCookie: ") && first.ends_with(b"\n\0"));

    // The same request with the cookie as its last line: the record.
    let with = ripem_core::cookie::with_cookie(SMALL_REQUEST, &cookie);
    let record = exchange(&client, port, &with).expect("an answer");
    assert!(
        record.starts_with(b"USERINFO\nUser: a@x.y\n") && record.len() > 50_000,
        "{}",
        summary(&record)
    );
    let is_record = |answer: Option<Vec<u8>>| answer.is_some_and(|answer| answer == record);
    assert!(is_record(exchange(&client, port, &with)), "from the cache");
    // Another source port of the same address may use it too.
    assert!(is_record(exchange(&socket_on("127.0.0.1"), port, &with)));

    // Another address's cookie is refused with a fresh cookie for the asker.
    let other = socket_on("127.0.0.2");
    let refused = exchange(&other, port, &with).expect("an answer");
    let fresh = cookie_in(&refused).expect("a cookie answer");
    assert_ne!(fresh, cookie);
    let own = ripem_core::cookie::with_cookie(SMALL_REQUEST, &fresh);
    assert!(is_record(exchange(&other, port, &own)));
    assert!(cookie_in(&exchange(&client, port, &own).unwrap()).is_some(), "and back");

    // Junk cookies get a cookie, never the record and never a crash.
    for junk in [
        "",
        "zz",
        "0",
        &"f".repeat(32),
        &"0".repeat(200),
        &cookie[..31],
        "\u{1}\u{2}",
    ] {
        let request = [SMALL_REQUEST, b"\nCookie: ", junk.as_bytes(), b"\n"].concat();
        let answer = exchange(&client, port, &request).expect("an answer");
        assert!(cookie_in(&answer).is_some(), "{junk:?}: {}", summary(&answer));
    }
    // Small answers need no cookie.
    let small = |request: &[u8]| String::from_utf8(exchange(&client, port, request).unwrap()).unwrap();
    assert_eq!(small(b"LOOKUSER\nUser: b@x.y"), "NOTFOUND\nUser: b@x.y\n\0");
    assert_eq!(small(b"LOOKUSER\n"), "BADFMT\n\0");
    assert_eq!(small(b"LOOKUSER\nCookie: 00\n"), "BADFMT\n\0");
    assert_eq!(small(b""), "BADFMT\n\0");
    assert!(keyserv.lookup("a@x.y").starts_with("USERINFO\n"), "still answers");
}

#[test]
fn bytes_are_rate_limited_as_well_as_answers() {
    // Answers are all but unlimited; bytes are 100 kB/s with bursts of
    // 100 kB, less than two answers of the big record.
    let server = big_record_server(
        "rate_limit = 1000\nrate_burst = 1000\nrate_bytes = 100000\nrate_burst_bytes = 100000\ncookies = false\n",
    );
    let keyserv = server.start_keyserv();
    // One request at a time, each waiting for its answer a while: a
    // burst of answers this big would overflow the socket's buffer.
    let socket = socket_on("127.0.5.2");
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buffer = vec![0u8; 70_000];
    let (mut answered, mut bytes) = (0, 0);
    let started = std::time::Instant::now();
    for _ in 0..20 {
        socket.send_to(SMALL_REQUEST, ("127.0.0.1", keyserv.port)).unwrap();
        if let Ok((length, _)) = socket.recv_from(&mut buffer) {
            assert!(buffer[..length].starts_with(b"USERINFO\n"));
            answered += 1;
            bytes += length;
        }
    }
    // The burst, overdrawn by one answer, plus the rate over the time taken.
    let allowed = 100_000 + 60_000 + (100_000.0 * started.elapsed().as_secs_f64()) as usize;
    assert!(
        answered >= 2 && bytes <= allowed,
        "{answered} answers, {bytes} bytes, {allowed} allowed"
    );
    assert!(
        answered < 10,
        "{answered} answers: the answer count alone would allow 20"
    );
    // Another network is served at once.
    let neighbour = exchange(&socket_on("127.0.6.2"), keyserv.port, SMALL_REQUEST).unwrap();
    assert!(neighbour.starts_with(b"USERINFO\n"));
}
