//! keysync end to end: real daemons on 127.0.0.1 exchanging updates over
//! KX in mutually authenticated TLS 1.3, in a chain and a mesh, through
//! crashes and a hung peer, and against connections that must get nothing
//! in (plain TCP, an unknown certificate) or nothing past the checks (a
//! malformed or oversized message, an update whose bytes are not its id).

mod common;
#[path = "common/sync.rs"]
mod sync;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sync::{fake_update, fingerprint_of, updates, wait_for, Node};

// Generous: each received update is checked (keys, signatures), which
// takes seconds in a debug build on a loaded machine; an unloaded run of
// the whole file takes 10 to 16 s.
const LIMIT: Duration = Duration::from_secs(90);

fn has_all(node: &Node, ids: &[String]) -> bool {
    let delivered = node.delivered();
    ids.iter().all(|id| delivered.contains(id))
}

#[test]
fn init_keeps_its_key_and_status_tells_no_daemon() {
    let node = Node::new("a.example.org");
    let again = node.server.run("keysync", &["--init"], b"");
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout.trim(), format!("pin: {}", node.pin));
    assert!(node.pin.starts_with("sha256:") && node.pin.len() == 71, "{}", node.pin);
    let status = node.status();
    assert!(status.contains("keysync has not run here"), "{status}");
    let other = Node::new("b.example.org");
    assert_ne!(other.pin, node.pin);
}

#[test]
fn a_chain_then_a_mesh_deliver_every_update_once() {
    let (mut a, mut b, mut c) = (Node::new("a"), Node::new("b"), Node::new("c"));
    a.set_peers(&[&b], "");
    b.set_peers(&[&a, &c], "");
    c.set_peers(&[&b], "");
    let keys = tempfile::tempdir().unwrap();
    let mut ids: Vec<String> = updates(keys.path(), "a", 0..3).iter().map(|u| a.queue(u)).collect();
    for node in [&mut a, &mut b, &mut c] {
        node.start();
    }
    assert!(
        wait_for(LIMIT, || has_all(&c, &ids)),
        "chain: c has {:?}\n{}",
        c.delivered(),
        b.log()
    );
    ids.sort();
    assert_eq!(b.delivered(), ids);
    assert!(a.delivered().is_empty(), "a's own updates are not handed back to it");

    // Close the ring by SIGHUP; updates from c reach a both ways, once.
    a.set_peers(&[&b, &c], "");
    c.set_peers(&[&b, &a], "");
    a.signal("HUP");
    c.signal("HUP");
    assert!(wait_for(LIMIT, || a.log().contains("connected to c")), "{}", a.log());
    let from_c: Vec<String> = updates(keys.path(), "c", 10..14).iter().map(|u| c.queue(u)).collect();
    assert!(wait_for(LIMIT, || has_all(&a, &from_c) && has_all(&b, &from_c)));
    for node in [&a, &b, &c] {
        assert!(
            wait_for(LIMIT, || node.stored().len() == 7),
            "{} has {:?}",
            node.name,
            node.stored()
        );
        for id in ids.iter().chain(&from_c) {
            assert_eq!(node.times_stored(id), 1, "{} stored {id}:\n{}", node.name, node.log());
        }
    }
    // The daemon rewrites its status every second.
    assert!(
        wait_for(LIMIT, || a.status().contains("b connected ours 7")),
        "{}",
        a.status()
    );
    assert!(a.status().contains("keysync is running"), "{}", a.status());
    assert_eq!(a.stop(), Some(0));
    let after = a.status();
    assert!(
        after.contains("b disconnected") && after.contains("not running"),
        "{after}"
    );
}

#[test]
fn a_crash_or_a_hang_loses_nothing_and_duplicates_nothing() {
    let (mut a, mut b, mut c) = (Node::new("a"), Node::new("b"), Node::new("c"));
    a.set_peers(&[&b, &c], "");
    b.set_peers(&[&a, &c], "");
    c.set_peers(&[&a, &b], "");
    for node in [&mut a, &mut b, &mut c] {
        node.start();
    }
    assert!(wait_for(LIMIT, || a.status().matches(" connected").count() == 2));

    let keys = tempfile::tempdir().unwrap();
    // Few: each received update is checked (keys, signatures), slow in a
    // debug build on a loaded machine.
    let stream = updates(keys.path(), "a", 0..20);

    // b hangs: a and c go on; b catches up once it runs again.
    b.signal("STOP");
    let during: Vec<String> = stream[..5].iter().map(|u| a.queue(u)).collect();
    assert!(
        wait_for(LIMIT, || has_all(&c, &during)),
        "c stalled behind a hung b:\n{}\n--- a:\n{}",
        c.log(),
        a.log()
    );
    b.signal("CONT");
    assert!(
        wait_for(LIMIT, || has_all(&b, &during)),
        "b did not catch up:\n{}",
        b.log()
    );

    // c is killed in the middle of a stream and restarted.
    let mut all = during.clone();
    for (n, update) in stream[5..].iter().enumerate() {
        all.push(a.queue(update));
        if n == 5 {
            c.crash();
        }
    }
    c.start();
    let missing = || {
        let delivered = c.delivered();
        all.iter()
            .filter(|id| !delivered.contains(id))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        wait_for(LIMIT, || missing().is_empty()),
        "c lost {:?} (stored {}):\n{}",
        missing(),
        c.stored().len(),
        c.log()
    );
    all.sort();
    assert_eq!(c.delivered(), all);
    assert!(wait_for(LIMIT, || c.stored().len() == all.len()));
    assert!(wait_for(LIMIT, || b.stored() == all));
}

/// `openssl s_client` as a peer with `node`'s identity, talking to `port`.
struct Client {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Client {
    fn connect(identity: &Node, port: u16) -> Client {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-tls1_3", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(identity.server.path("sync/cert.pem"))
            .arg("-key")
            .arg(identity.server.path("sync/key.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line.trim_end_matches('\r').to_string()).is_err() {
                    return;
                }
            }
        });
        Client { child, lines }
    }

    fn send(&mut self, bytes: &[u8]) {
        let _ = self.child.stdin.as_mut().unwrap().write_all(bytes);
        let _ = self.child.stdin.as_mut().unwrap().flush();
    }

    /// Lines until one equals `wanted` (and it), or None after the limit.
    fn until(&self, wanted: &str) -> Option<Vec<String>> {
        let mut seen = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(LIMIT) {
            let done = line == wanted;
            seen.push(line);
            if done {
                return Some(seen);
            }
        }
        None
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kx(tag: &str, command: &str, lines: &[&str]) -> Vec<u8> {
    let mut out = format!("{tag}\r\n{command}\r\n");
    for line in lines {
        let stuffed = if line.starts_with('.') { "." } else { "" };
        out.push_str(&format!("{stuffed}{line}\r\n"));
    }
    out.push_str(".\r\n");
    out.into_bytes()
}

#[test]
fn a_batch_from_keyreg_is_taken_in_whole_and_a_damaged_one_up_to_its_damage() {
    let mut a = Node::new("a");
    a.set_peers(&[], "");
    let keys = tempfile::tempdir().unwrap();
    let made = updates(keys.path(), "a", 0..6);
    let ids: Vec<String> = made.iter().map(|u| sync::id_of(u)).collect();
    let batch = |entries: &[Vec<u8>]| {
        let mut writer = ripem_update::BatchWriter::new(Vec::new()).unwrap();
        for entry in entries {
            writer.push(entry).unwrap();
        }
        writer.into_inner()
    };
    // Three in one batch, as one write window hands them over.
    a.queue_file(&ids[0], &batch(&made[0..3]));
    // Two, cut short inside the second: the first is kept.
    let cut = batch(&made[3..5]);
    a.queue_file(&ids[3], &cut[..cut.len() - 10]);
    // A whole batch named by another id, and a bare update: refused.
    a.queue_file(&ids[0].replace(&ids[0][..4], "ffff"), &batch(&made[5..6]));
    a.queue_file(&ids[5], &made[5]);
    a.start();
    let failed = || std::fs::read_dir(a.server.path("sync/queue/failed")).map_or(0, |d| d.count());
    assert!(wait_for(LIMIT, || failed() == 3), "{}", a.log());
    let mut expected = ids[0..4].to_vec();
    expected.sort();
    assert!(
        wait_for(LIMIT, || a.stored() == expected),
        "{:?}\n{}",
        a.stored(),
        a.log()
    );
    let log = a.log();
    assert!(log.contains("entry 2: the file ends inside it"), "{log}");
    assert!(log.contains("but its first update's id is"), "{log}");
    assert!(log.contains("not a batch of updates"), "{log}");
    let left = std::fs::read_dir(a.server.path("sync/queue/new")).unwrap().count();
    assert_eq!(left, 0, "every file is taken in or set aside");
}

#[test]
fn connections_without_a_pinned_certificate_get_nothing_in() {
    let mut a = Node::new("a");
    let stranger = Node::new("stranger");
    a.set_peers(&[], "");
    a.start();

    let mut plain = std::net::TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    plain.set_read_timeout(Some(LIMIT)).unwrap();
    let _ = plain.write_all(&kx("x001", "HELO", &["1.0"]));
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("HELO"));

    let mut client = Client::connect(&stranger, a.port);
    client.send(&kx("x001", "HELO", &["1.0"]));
    assert!(client.until("HELO").is_none(), "an unknown certificate was answered");
    assert!(
        wait_for(LIMIT, || a.log().matches("refused connection from 127.0.0.1").count()
            >= 2),
        "{}",
        a.log()
    );
    assert!(a.stored().is_empty() && a.delivered().is_empty());
}

#[test]
fn a_peer_s_bad_messages_get_error_and_nothing_is_stored() {
    let mut a = Node::new("a");
    let evil = Node::new("evil");
    a.set_peers(&[&evil], "max_message_bytes = 32768");
    a.start();
    let hello = kx("e001", "HELO", &["1.0"]);

    // An update whose bytes are not the id announced, then one whose key
    // fails the checks.
    let keys = tempfile::tempdir().unwrap();
    let real = updates(keys.path(), "evil", 0..2);
    let fake = fake_update("evil");
    let mut client = Client::connect(&evil, a.port);
    client.send(&hello);
    assert!(client.until("HELO").is_some(), "no HELO from a:\n{}", a.log());
    for (seq, announced, sent, why) in [
        (1, &real[0], &real[1], "not the id announced"),
        (2, &fake, &fake, "key is refused"),
    ] {
        let entry = format!("{seq} {} {}", fingerprint_of(announced), sync::id_of(announced));
        client.send(&kx("e002", "IHAVE", &["NOTIFY", &entry]));
        let asked = client.until("GETUPDATE").expect("a asks for the update");
        let tag = asked[asked.len() - 2].clone();
        assert_eq!(client.until(".").unwrap(), [seq.to_string().as_str(), "."]);
        let text = String::from_utf8(sent.clone()).unwrap();
        let mut lines = vec![tag.as_str(), entry.as_str()];
        lines.extend(text.trim_end().split('\n'));
        client.send(&kx("e003", "UPDATE", &lines));
        let error = client.until("ERROR").map(|_| client.until(".").unwrap_or_default());
        assert!(format!("{error:?}").contains(why), "{error:?}");
        assert!(
            wait_for(LIMIT, || a.log().contains(&format!("refused update {seq}"))),
            "{}",
            a.log()
        );
    }

    // A flood of announcements of an id a holds costs a lookup each: no
    // GETUPDATE, and a still answers.
    let held = a.queue(&real[0]);
    assert!(wait_for(LIMIT, || a.stored() == [held.clone()]));
    for chunk in 0..100u64 {
        let mut lines = vec!["NOTIFY".to_string()];
        lines.extend((0..30).map(|i| format!("{} {} {held}", 3 + chunk * 30 + i, fingerprint_of(&real[0]))));
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        client.send(&kx("e009", "IHAVE", &lines));
    }
    client.send(&kx("e010", "LIST", &["1-"]));
    let answered = client.until("e010").expect("a answers the LIST after the flood");
    assert!(!answered.iter().any(|line| line == "GETUPDATE"), "{answered:?}");
    assert_eq!(a.stored(), [held]);
    drop(client);

    // A malformed message, one over max_message_bytes, a junk
    // reconciliation message and a GETID of what is not an id.
    for (bad, why) in [
        (kx("e004", "STEAL", &[]), "501"),
        (kx("e005", "IHAVE", &["NOTIFY", &"x".repeat(40000)]), "501"),
        (
            kx("e006", "RECON", &["BEGIN", "c / junk", "end 0"]),
            "501 reconciliation: reconciliation message line 1",
        ),
        (kx("e007", "GETID", &["not-an-id"]), "501 bad id"),
    ] {
        let mut client = Client::connect(&evil, a.port);
        client.send(&hello);
        assert!(client.until("HELO").is_some());
        client.send(&bad);
        let error = client.until("ERROR").map(|_| client.until(".").unwrap_or_default());
        let error = error.unwrap_or_default().join(" ");
        assert!(error.contains(why), "{error:?}");
    }
    assert!(
        wait_for(LIMIT, || a.log().matches("disconnected from evil").count() >= 5),
        "{}",
        a.log()
    );
    assert!(a.delivered().is_empty(), "{}", a.log());
    assert_eq!(a.stored().len(), 1, "only a's own update:\n{}", a.log());
}
