//! keyreg end to end: registrations through copymail in many mail shapes,
//! keys from gpg and rPGP, first come first served, merges, refusals,
//! loop rules, quarantine, crash safety and import.

mod common;

use common::*;

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
        if out.len() % 77 == 76 {
            out.push('\n');
        }
    }
    out
}

fn quoted_printable(text: &str) -> String {
    // Encode '=' and break long lines the way mailers do.
    text.lines()
        .map(|line| {
            let escaped = line.replace('=', "=3D");
            let mut out = String::new();
            let mut rest = escaped.as_str();
            while rest.len() > 70 {
                let (head, tail) = rest.split_at(70);
                out.push_str(head);
                out.push_str("=\n");
                rest = tail;
            }
            out.push_str(rest);
            out
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn registrations_in_many_mail_shapes() {
    let server = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let gpg = Gpg::new();
    let gpg_ed = gpg.key("Gina <gina@example.org>", "ed25519");
    let gpg_rsa = gpg.key("Rita <rita@example.org>", "rsa3072");
    let plain = rpgp_key(keys.path(), "p", &["--uid", "Paul <paul@example.org>"]);
    let attach = rpgp_key(keys.path(), "a", &["--uid", "Ann <ann@example.org>"]);
    let qp = rpgp_key(keys.path(), "q", &["--uid", "Quinn <quinn@example.org>"]);
    let crlf = rpgp_key(keys.path(), "c", &["--uid", "Cris <cris@example.org>"]);
    let mbox = rpgp_key(keys.path(), "m", &["--uid", "Mo <mo@example.org>"]);

    server.mail("add", &plain_mail("Gina <gina@example.org>", &gpg_ed));
    server.mail("add", &plain_mail("rita@example.org", &gpg_rsa));
    server.mail("add", &plain_mail("paul@example.org", &plain));
    server.mail(
        "add",
        format!("From: ann@example.org\nSubject: key\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"zz\"\n\n--zz\nContent-Type: text/plain\n\nattached\n--zz\nContent-Type: application/pgp-keys\nContent-Transfer-Encoding: base64\n\n{}\n--zz--\n", base64(attach.as_bytes())).as_bytes(),
    );
    server.mail(
        "add",
        format!("From: quinn@example.org\nSubject: key\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nMy key =E2=80=94 enjoy:\n{}\n", quoted_printable(&qp)).as_bytes(),
    );
    server.mail(
        "add",
        plain_mail("cris@example.org", &crlf)
            .iter()
            .flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] })
            .collect::<Vec<u8>>()
            .as_slice(),
    );
    server.mail("add", format!("From mo-envelope@example.org Sat Nov 21 10:00:00 2026\nFrom: Mo <mo@example.org>\nReply-To: Mo at home <mo.home@example.net>\nSubject: key\n\n{mbox}").as_bytes());

    let log = server.keyreg_once();
    assert_eq!(server.pending("add"), 0, "{log}");

    let keyserv = server.start_keyserv();
    for who in ["gina", "rita", "paul", "ann", "quinn", "cris", "mo"] {
        let answer = keyserv.lookup(&format!("{who}@example.org"));
        assert!(answer.starts_with("USERINFO\n"), "{who}: {answer}\n{log}");
    }
    assert_eq!(
        record_fingerprint(&keyserv.lookup("gina@example.org")).unwrap(),
        gpg.fingerprint("gina@example.org")
    );
    assert_eq!(
        record_fingerprint(&keyserv.lookup("rita@example.org")).unwrap(),
        gpg.fingerprint("rita@example.org")
    );

    let mut recipients: Vec<String> = server.outbox().iter().map(|m| m.to.clone()).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        [
            "ann@example.org",
            "cris@example.org",
            "gina@example.org",
            "mo.home@example.net",
            "paul@example.org",
            "quinn@example.org",
            "rita@example.org"
        ]
    );
    for mail in server.outbox() {
        assert_eq!(mail.auto_submitted.as_deref(), Some("auto-replied"));
        assert!(mail.body.contains(": registered"), "{}", mail.body);
    }
    let gina = server
        .outbox()
        .into_iter()
        .find(|m| m.to == "gina@example.org")
        .unwrap();
    assert!(gina.in_reply_to.is_some());
}

#[test]
fn several_keys_first_come_first_served_merge_and_refusals() {
    let server = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let alice = rpgp_key(
        keys.path(),
        "alice",
        &[
            "--uid",
            "Alice <alice@example.org>",
            "--uid",
            "Alice <alice@example.com>",
        ],
    );
    let bob = rpgp_key(keys.path(), "bob", &["--uid", "Bob <bob@example.org>"]);
    let thief = rpgp_key(
        keys.path(),
        "thief",
        &["--uid", "Eve <alice@example.org>", "--uid", "Eve <eve@example.org>"],
    );
    let expired = rpgp_key(keys.path(), "old", &["--uid", "Old <old@example.org>", "--expired"]);
    let weak = rpgp_key(
        keys.path(),
        "weak",
        &["--uid", "Weak <weak@example.org>", "--algo", "rsa1024"],
    );
    let no_email = rpgp_key(keys.path(), "anon", &["--uid", "Anonymous"]);

    // Two keys in one mail.
    server.mail(
        "add",
        &plain_mail("alice@example.org", &format!("{alice}\nand my friend's:\n{bob}")),
    );
    server.mail("add", &plain_mail("eve@example.org", &thief));
    server.mail("add", &plain_mail("old@example.org", &expired));
    server.mail("add", &plain_mail("weak@example.org", &weak));
    server.mail("add", &plain_mail("anon@example.org", &no_email));
    server.mail("add", &plain_mail("alice@example.org", &alice));
    server.mail("add", b"From: talker@example.org\nSubject: hi\n\nno key here\n");
    server.keyreg_once();

    let keyserv = server.start_keyserv();
    let alice_fpr = record_fingerprint(&keyserv.lookup("alice@example.org")).unwrap();
    assert_eq!(
        record_fingerprint(&keyserv.lookup("alice@example.com")).unwrap(),
        alice_fpr
    );
    assert!(keyserv.lookup("bob@example.org").starts_with("USERINFO"));
    let eve = keyserv.lookup("eve@example.org");
    assert_ne!(record_fingerprint(&eve).unwrap(), alice_fpr);
    assert!(!eve.contains("User: alice@example.org"), "{eve}");
    for refused in ["old@example.org", "weak@example.org", "anon@example.org"] {
        assert!(keyserv.lookup(refused).starts_with("NOTFOUND"), "{refused}");
    }
    drop(keyserv);

    let replies = server.outbox();
    assert_eq!(replies.len(), 7, "one reply per request");
    let body_to = |to: &str| -> Vec<String> { replies.iter().filter(|m| m.to == to).map(|m| m.body.clone()).collect() };
    let eve_body = &body_to("eve@example.org")[0];
    assert!(
        eve_body.contains(&format!(
            "alice@example.org: refused: already registered to key {alice_fpr}"
        )),
        "{eve_body}"
    );
    assert!(eve_body.contains("eve@example.org: registered"));
    assert!(body_to("old@example.org")[0].contains("expired"));
    assert!(body_to("weak@example.org")[0].contains("at least 2048 bits"));
    assert!(body_to("anon@example.org")[0].contains("refused"));
    assert!(
        body_to("talker@example.org")[0].contains("No public key")
            || body_to("talker@example.org")[0].contains("no public key")
    );
    let alice_bodies = body_to("alice@example.org");
    assert_eq!(alice_bodies.len(), 2);
    assert!(
        alice_bodies.iter().any(|b| b.contains("nothing new, no change")),
        "{alice_bodies:?}"
    );
}

#[test]
fn loop_rules_and_unprocessable_mail() {
    let server = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(keys.path(), "k", &["--uid", "Kim <kim@example.org>"]);
    server.mail(
        "add",
        format!("Return-Path: <>\nFrom: MAILER-DAEMON@example.org\nSubject: failure\n\n{key}").as_bytes(),
    );
    server.mail(
        "add",
        format!("From: robot@example.org\nAuto-Submitted: auto-generated\n\n{key}").as_bytes(),
    );
    server.mail(
        "add",
        format!("From: list@example.org\nPrecedence: bulk\n\n{key}").as_bytes(),
    );
    server.mail("add", b"\x00\x01\x02 binary junk, not a mail\n");
    let log = server.keyreg_once();
    assert!(server.outbox().is_empty(), "no reply to robots");
    assert_eq!(server.pending("add"), 0);
    let failed: Vec<_> = std::fs::read_dir(server.path("spool/failed"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(failed.len(), 2, "the junk and its .reason: {failed:?}\n{log}");
    let text = std::fs::read_to_string(server.path("transactions.log")).unwrap();
    assert_eq!(text.matches("Request-Bytes: ").count(), 4, "every request logged");
}

#[test]
fn killed_mid_batch_loses_nothing_and_answers_once() {
    let server = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let count = 40;
    for i in 0..count {
        let key = rpgp_key(
            keys.path(),
            &format!("k{i}"),
            &["--uid", &format!("U{i} <u{i}@example.org>")],
        );
        server.mail("add", &plain_mail(&format!("u{i}@example.org"), &key));
    }
    // Kill keyreg at several points in its work, then let it finish.
    for delay_ms in [5u64, 20, 60] {
        let mut child = std::process::Command::new(bin("keyreg"))
            .args(["--config", server.config.to_str().unwrap(), "--once"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    server.keyreg_once();
    assert_eq!(server.pending("add"), 0);
    let mut recipients: Vec<String> = server.outbox().into_iter().map(|m| m.to).collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), count);
    assert_eq!(server.outbox().len(), count, "exactly one reply per request");
    let keyserv = server.start_keyserv();
    for i in 0..count {
        assert!(
            keyserv.lookup(&format!("u{i}@example.org")).starts_with("USERINFO"),
            "u{i}"
        );
    }
}

#[test]
fn import_of_keyrings_and_flat_files() {
    let first = Server::new();
    let keys = tempfile::tempdir().unwrap();
    let gpg = Gpg::new();
    let mut ring = gpg.key("Gus <gus@example.org>", "ed25519");
    for name in ["ida", "jon"] {
        ring.push_str(&rpgp_key(
            keys.path(),
            name,
            &["--uid", &format!("{name} <{name}@example.org>")],
        ));
    }
    let ring_path = keys.path().join("ring.asc");
    std::fs::write(&ring_path, &ring).unwrap();
    let run = first.run("keyreg", &["--import", ring_path.to_str().unwrap()], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("3 keys added"), "{}", run.stdout);
    assert!(first.outbox().is_empty(), "no replies on import");
    let again = first.run("keyreg", &["--import", ring_path.to_str().unwrap()], b"");
    assert!(again.stdout.contains("0 keys added, 3 merged"), "{}", again.stdout);

    assert_eq!(first.run("db2flat", &[], b"").code, 0);
    let second = Server::new();
    let flat = first.path("pub/pubkeys.txt");
    let run = second.run("keyreg", &["--import", flat.to_str().unwrap()], b"");
    assert!(run.stdout.contains("3 keys added"), "{} {}", run.stdout, run.stderr);
    assert_eq!(second.run("db2flat", &[], b"").code, 0);
    let strip_date = |t: String| {
        t.lines()
            .skip(1)
            .filter(|l| !l.starts_with("Registered") && !l.starts_with("Updated"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip_date(std::fs::read_to_string(flat).unwrap()),
        strip_date(std::fs::read_to_string(second.path("pub/pubkeys.txt")).unwrap())
    );
}

/// The raw files in the outbox, once there are `count` of them (the
/// daemon works on its own time); panics after 60 s.
fn wait_for_outbox(server: &Server, count: usize) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        let mut mails: Vec<String> = std::fs::read_dir(server.path("outbox"))
            .map(|dir| {
                dir.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        if mails.len() >= count && mails.iter().all(|m| !m.is_empty()) {
            mails.sort_by_key(|m| m.contains("hup@example.org"));
            return mails;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{} of {count} replies",
            mails.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A keyreg daemon, killed if the test fails before it stops it.
struct Daemon(Option<std::process::Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_daemon_reloads_its_configuration_on_sighup() {
    let server = Server::new();
    let original = std::fs::read_to_string(&server.config).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let mut daemon = Daemon(Some(
        server
            .command("keyreg")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let pid = daemon.0.as_ref().unwrap().id().to_string();
    let key = rpgp_key(keys.path(), "first", &["--uid", "First <first@example.org>"]);
    server.mail("add", &plain_mail("first@example.org", &key));
    let before = wait_for_outbox(&server, 1);
    assert!(before[0].contains("From: keyserver@keys.example.org"), "{}", before[0]);

    // A FIFO in a queue no longer stalls the daemon: the request after it
    // is still answered.
    let fifo = server.path("spool/add/new/key.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());

    // A broken file is not taken: the daemon says so and goes on as it was.
    std::fs::write(&server.config, format!("{original}\n[keyreg\n")).unwrap();
    send_signal(&pid, "HUP");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let changed = original
        .replace(
            "from = \"keyserver@keys.example.org\"",
            "from = \"reloaded@keys.example.org\"",
        )
        .replace("[mail]", "[keyreg]\nmax_keys_per_request = 1\n[mail]");
    std::fs::write(&server.config, changed).unwrap();
    send_signal(&pid, "HUP");
    std::thread::sleep(std::time::Duration::from_millis(500));

    let two = [("a", "hup@example.org"), ("b", "hup2@example.org")]
        .map(|(name, email)| rpgp_key(keys.path(), name, &["--uid", &format!("H <{email}>")]))
        .concat();
    server.mail("add", &plain_mail("hup@example.org", &two));
    let after = wait_for_outbox(&server, 2);
    assert!(after[1].contains("From: reloaded@keys.example.org"), "{}", after[1]);
    assert!(
        after[1].contains("1 further keys not considered: at most 1 keys per request"),
        "{}",
        after[1]
    );

    send_signal(&pid, "TERM");
    let output = daemon.0.take().unwrap().wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let not_reloaded: Vec<&str> = log.lines().filter(|l| l.contains("not reloaded")).collect();
    assert_eq!(not_reloaded.len(), 1, "one line for the broken file: {log}");
    assert!(not_reloaded[0].contains("keeping the old one"), "{log}");
    assert_eq!(log.matches("configuration reloaded from").count(), 1, "{log}");
    assert!(server.path("spool/failed/add.key.fifo").exists(), "{log}");
}

#[test]
fn import_of_revocation_certificates_revokes_the_registered_keys() {
    let server = Server::new();
    let gpg = Gpg::new();
    let files = tempfile::tempdir().unwrap();
    let mut ring = gpg.key("Kim <kim@example.org>", "ed25519");
    ring.push_str(&gpg.key("Lee <lee@example.org>", "ed25519"));
    let ring_path = files.path().join("ring.asc");
    std::fs::write(&ring_path, &ring).unwrap();
    let run = server.run("keyreg", &["--import", ring_path.to_str().unwrap()], b"");
    assert!(run.stdout.contains("2 keys added"), "{} {}", run.stdout, run.stderr);
    let (kim, lee) = (gpg.fingerprint("kim@example.org"), gpg.fingerprint("lee@example.org"));

    // Kim's certificate alone, as `gpg --gen-revoke` writes it; Lee's as
    // gpg keeps it, with prose before the block.
    let kim_path = files.path().join("kim.rev");
    std::fs::write(&kim_path, revocation_certificate(&gpg, &kim)).unwrap();
    let kept = std::fs::read_to_string(gpg.home.path().join(format!("openpgp-revocs.d/{lee}.rev"))).unwrap();
    let lee_path = files.path().join("lee.rev");
    std::fs::write(&lee_path, kept.replace(":-----BEGIN", "-----BEGIN")).unwrap();
    for path in [&kim_path, &lee_path] {
        let run = server.run("keyreg", &["--import", path.to_str().unwrap()], b"");
        assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    }

    let client = flat_keyring_in_gpg(&server);
    for fpr in [&kim, &lee] {
        let (revoked, listing) = client.count_listed(fpr, "pub:r");
        assert_eq!(revoked, 1, "revoked in the flat file: {listing}");
    }
}
