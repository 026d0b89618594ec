//! keyreg under `policy = "confirm"`, end to end with GnuPG's own
//! `gpg-wks-client`: a mailed key is answered with a confirmation request
//! encrypted to it, `gpg-wks-client --receive` answers that, and the
//! answer publishes the address; until then nothing serves it. Forged
//! answers (another sender, a wrong nonce, a replay, one past the 3 days)
//! change nothing; a mailbox gets at most one request an hour; a plain
//! reply quoting the decrypted nonce confirms too; SIGKILLs of keyreg lose
//! no pending address and publish none unconfirmed. Tests that need
//! `gpg-wks-client` say so and pass without it (`apt-get install
//! gpg-wks-client`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const REGISTER: &str = "ripem-register-keys@keys.example.org";
const WKS_CLIENT: &str = "/usr/lib/gnupg/gpg-wks-client";

fn confirm_server() -> Server {
    Server::with_extra(&format!(
        "[keyreg]\npolicy = \"confirm\"\n[addresses]\nregister = \"{REGISTER}\"\n"
    ))
}

/// GnuPG's WKS client, or `None` (and a line saying the test is skipped).
fn wks_client(test: &str) -> Option<PathBuf> {
    let path = PathBuf::from(WKS_CLIENT);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("{test}: skipped: {WKS_CLIENT} is not installed (apt-get install gpg-wks-client)");
        None
    }
}

/// A gpg key with an encryption subkey (ed25519 + cv25519), armored.
fn wks_key(gpg: &Gpg, user_id: &str, email: &str) -> String {
    let made = gpg.run(&["--quick-gen-key", user_id, "future-default", "default", "never"], b"");
    assert_eq!(made.code, 0, "gpg --quick-gen-key: {}", made.stderr);
    gpg.run(&["--armor", "--export", email], b"").stdout
}

/// Whether the flat file db2flat writes lists `email`.
fn served(server: &Server, email: &str) -> bool {
    let dump = server.run("db2flat", &[], b"");
    assert_eq!(dump.code, 0, "db2flat: {}", dump.stderr);
    let flat = std::fs::read_to_string(server.path("pub/pubkeys.txt")).unwrap();
    flat.lines().any(|line| line == format!("User: {email}"))
}

/// The raw confirmation request mails in the outbox for `to`.
/// Not the stray dot-file a write killed before its rename leaves (files
/// are written whole under a temporary name, then renamed into place).
fn is_published(path: &std::path::Path) -> bool {
    !path.file_name().unwrap_or_default().to_string_lossy().starts_with('.')
}

/// The pending entries `keyreg` has written (stray dot-files skipped).
fn pending_entries(server: &Server) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(server.path("pending"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| is_published(path))
        .collect();
    entries.sort();
    entries
}

fn confirmation_requests(server: &Server, to: &str) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(server.path("outbox")) else {
        return Vec::new();
    };
    let header = format!("To: {to}\r\n");
    entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| is_published(path) && path.to_string_lossy().contains(".confirm"))
        .map(|path| std::fs::read(path).unwrap())
        .filter(|raw| String::from_utf8_lossy(raw).contains(&header))
        .collect()
}

/// `gpg-wks-client --receive` on `request` in `gpg`'s home: the response
/// mail it writes (no `--send`, so to stdout). Its exit status is not
/// looked at: 2.2.40 logs an error for every MIME request ("not decrypted
/// with target key": it checks the fingerprint only when it decrypts a
/// bare message itself) and exits 1 after writing the response.
fn receive(client: &Path, gpg: &Gpg, request: &[u8]) -> String {
    let mut command = Command::new(client);
    command.env("GNUPGHOME", gpg.home.path()).arg("--receive");
    let run = run_with(command, request);
    assert!(
        run.stdout.contains("Subject: Key publication confirmation"),
        "gpg-wks-client --receive made no response (exit {}): {}",
        run.code,
        run.stderr
    );
    run.stdout
}

/// The nonce line of a WKS message.
fn nonce_of(text: &str) -> String {
    text.lines()
        .find_map(|line| line.trim().strip_prefix("nonce: "))
        .unwrap()
        .trim()
        .to_string()
}

/// The last reply to `to` (by file time, not a confirmation request).
fn last_reply(server: &Server, to: &str) -> String {
    let all = replies_to(server, to);
    all.split("\n----\n")
        .filter(|body| !body.contains("Someone asked to publish"))
        .map(str::to_string)
        .collect::<Vec<_>>()
        .join("\n----\n")
}

#[test]
fn gpg_wks_client_confirms_and_forgeries_change_nothing() {
    let Some(client) = wks_client("gpg_wks_client_confirms_and_forgeries_change_nothing") else {
        return;
    };
    let server = confirm_server();
    let gpg = Gpg::new();
    let key = wks_key(&gpg, "Cora <cora@example.org>", "cora@example.org");
    server.mail("add", &plain_mail("cora@example.org", &key));
    server.keyreg_once();
    assert!(!served(&server, "cora@example.org"), "published before confirmation");
    let reply = replies_to(&server, "cora@example.org");
    assert!(
        reply.contains("cora@example.org: pending: a confirmation request"),
        "{reply}"
    );

    let requests = confirmation_requests(&server, "cora@example.org");
    assert_eq!(requests.len(), 1);
    let request = String::from_utf8_lossy(&requests[0]).into_owned();
    assert!(
        request.contains("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\""),
        "{request}"
    );
    assert!(request.contains("Wks-Draft-Version: 3"), "{request}");
    assert!(
        !request.contains("type: confirmation-request"),
        "the request travels in the clear: {request}"
    );
    assert!(
        request.contains("Someone asked to publish"),
        "no explanation: {request}"
    );

    let response = receive(&client, &gpg, &requests[0]);
    assert!(response.contains("type: confirmation-response"), "{response}");
    assert!(response.contains(&format!("To: {REGISTER}")), "{response}");
    assert!(response.contains("address: cora@example.org"), "{response}");
    let nonce = nonce_of(&response);
    assert!(
        !request.contains(&nonce),
        "the nonce shows outside the ciphertext: {request}"
    );

    // Forgeries first: each is answered and changes nothing.
    let other_sender = response.replace("From: cora@example.org", "From: mallory@example.net");
    let flipped = format!("{}{}", &nonce[..31], if nonce.ends_with('0') { '1' } else { '0' });
    let wrong_nonce = response.replace(&nonce, &flipped);
    for (forged, says, to) in [
        (&other_sender, "not from the address it confirms", "mallory@example.net"),
        (&wrong_nonce, "the nonce does not match", "cora@example.org"),
    ] {
        server.mail("add", forged.as_bytes());
        server.keyreg_once();
        assert!(!served(&server, "cora@example.org"), "a forged response published");
        let reply = last_reply(&server, to);
        assert!(reply.contains(says), "{reply}");
    }

    server.mail("add", response.as_bytes());
    server.keyreg_once();
    assert!(served(&server, "cora@example.org"), "the response did not publish");
    let keyserv = server.start_keyserv();
    let record = keyserv.lookup("cora@example.org");
    assert_eq!(
        record_fingerprint(&record),
        Some(gpg.fingerprint("cora@example.org")),
        "{record}"
    );
    drop(keyserv);

    // A replay of the used response is told so.
    server.mail("add", response.as_bytes());
    server.keyreg_once();
    let reply = last_reply(&server, "cora@example.org");
    assert!(reply.contains("no confirmation is pending"), "{reply}");
    assert!(served(&server, "cora@example.org"));
    assert_eq!(server.pending("add"), 0);
}

/// The whole WKS exchange as GnuPG makes it, without a WKD: the client
/// is given the submission address (`--fake-submission-addr`) and has
/// the server's public key, so both its submission and its response are
/// encrypted to the server's key, which keyreg made on first use.
#[test]
fn gpg_wks_client_create_submits_and_its_encrypted_response_confirms() {
    let Some(client) = wks_client("gpg_wks_client_create_submits_and_its_encrypted_response_confirms") else {
        return;
    };
    let server = confirm_server();
    server.keyreg_once();
    let secret = std::fs::metadata(server.path("wks-key.asc")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        secret.permissions().mode() & 0o077,
        0,
        "the server's secret key is readable by others"
    );
    let gpg = Gpg::new();
    wks_key(&gpg, "Wes <wes@example.org>", "wes@example.org");
    let imported = gpg.run(&["--import", server.path("wks-key.pub.asc").to_str().unwrap()], b"");
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    let fingerprint = gpg.fingerprint("wes@example.org");
    let mut create = Command::new(&client);
    create.env("GNUPGHOME", gpg.home.path()).args([
        "--create",
        "--fake-submission-addr",
        REGISTER,
        &fingerprint,
        "wes@example.org",
    ]);
    let submission = run_with(create, b"");
    assert_eq!(submission.code, 0, "gpg-wks-client --create: {}", submission.stderr);
    assert!(
        submission.stdout.contains("multipart/encrypted"),
        "{}",
        submission.stdout
    );
    assert!(
        !submission.stdout.contains("BEGIN PGP PUBLIC KEY"),
        "the key went in the clear"
    );
    server.mail("add", submission.stdout.as_bytes());
    server.keyreg_once();
    assert!(!served(&server, "wes@example.org"));
    let requests = confirmation_requests(&server, "wes@example.org");
    assert_eq!(requests.len(), 1, "no confirmation request for the WKS submission");
    let response = receive(&client, &gpg, &requests[0]);
    assert!(
        response.contains("multipart/encrypted"),
        "the response is not encrypted: {response}"
    );
    server.mail("add", response.as_bytes());
    server.keyreg_once();
    assert!(
        served(&server, "wes@example.org"),
        "the encrypted response did not publish"
    );
    // The same encrypted response again is a replay.
    server.mail("add", response.as_bytes());
    server.keyreg_once();
    let reply = last_reply(&server, "wes@example.org");
    assert!(reply.contains("no confirmation is pending"), "{reply}");
}

#[test]
fn a_plain_reply_with_the_decrypted_nonce_confirms_and_silence_publishes_nothing() {
    let server = confirm_server();
    let gpg = Gpg::new();
    let key = wks_key(&gpg, "Pat <pat@example.org>", "pat@example.org");
    let silent = wks_key(&gpg, "Sid <sid@example.org>", "sid@example.org");
    server.mail("add", &plain_mail("pat@example.org", &key));
    server.mail("add", &plain_mail("sid@example.org", &silent));
    server.keyreg_once();
    let request = String::from_utf8(confirmation_requests(&server, "pat@example.org").remove(0)).unwrap();
    let armor = &request[request.find("-----BEGIN PGP MESSAGE-----").unwrap()..];
    let armor = &armor[..armor.find("-----END PGP MESSAGE-----").unwrap() + 25];
    let decrypted = gpg.run(&["--decrypt"], armor.replace("\r\n", "\n").as_bytes());
    assert_eq!(decrypted.code, 0, "{}", decrypted.stderr);
    assert!(
        decrypted.stdout.contains("type: confirmation-request"),
        "{}",
        decrypted.stdout
    );
    assert!(decrypted.stdout.contains(&format!("sender: {REGISTER}")));
    assert!(decrypted
        .stdout
        .contains(&format!("fingerprint: {}", gpg.fingerprint("pat@example.org"))));
    let quoted: String = decrypted.stdout.lines().map(|line| format!("> {line}\n")).collect();

    // From another address the same text is an ordinary (keyless) mail.
    server.mail("add", &mail_to(REGISTER, "eve@example.net", &quoted));
    server.keyreg_once();
    assert!(!served(&server, "pat@example.org"));
    server.mail(
        "add",
        &mail_to(REGISTER, "pat@example.org", &format!("Yes, that is me.\n\n{quoted}")),
    );
    server.keyreg_once();
    assert!(served(&server, "pat@example.org"), "the plain reply did not confirm");
    for _ in 0..3 {
        server.keyreg_once();
    }
    assert!(!served(&server, "sid@example.org"), "an unanswered request published");
}

#[test]
fn one_request_an_hour_and_none_after_three_days() {
    let server = confirm_server();
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(keys.path(), "h", &["--uid", "Hal <hal@example.org>"]);
    let other = rpgp_key(keys.path(), "o", &["--uid", "Hal too <hal@example.org>"]);
    for (n, key) in [&key, &key, &other, &key].into_iter().enumerate() {
        server.mail("add", &plain_mail(&format!("sender{n}@example.net"), key));
        server.keyreg_once();
    }
    assert_eq!(
        confirmation_requests(&server, "hal@example.org").len(),
        1,
        "a mailbox was flooded"
    );
    let later = last_reply(&server, "sender3@example.net");
    assert!(later.contains("mailed to it within the hour"), "{later}");

    // Answer it, but as if three days had passed since it was made.
    let entries = pending_entries(&server);
    assert_eq!(entries.len(), 1);
    let text = std::fs::read_to_string(&entries[0]).unwrap();
    let nonce = nonce_of(&text);
    let created = text.lines().find_map(|l| l.strip_prefix("created: ")).unwrap();
    let old = now_secs() - 3 * 86_400 - 1;
    std::fs::write(
        &entries[0],
        text.replace(&format!("created: {created}"), &format!("created: {old}")),
    )
    .unwrap();
    let response = format!(
        "From: hal@example.org\nTo: {REGISTER}\nSubject: Key publication confirmation\nContent-Type: application/vnd.gnupg.wks\n\ntype: confirmation-response\nsender: {REGISTER}\naddress: hal@example.org\nnonce: {nonce}\n"
    );
    server.mail("add", response.as_bytes());
    server.keyreg_once();
    assert!(!served(&server, "hal@example.org"), "an expired request published");
    let reply = last_reply(&server, "hal@example.org");
    assert!(reply.contains("the request expired"), "{reply}");

    // After expiry a new submission gets a new request, which works.
    server.mail("add", &plain_mail("hal@example.org", &key));
    server.keyreg_once();
    let text = std::fs::read_to_string(&entries[0]).unwrap();
    let fresh = nonce_of(&text);
    assert_ne!(fresh, nonce);
    assert_eq!(confirmation_requests(&server, "hal@example.org").len(), 2);
    server.mail("add", response.replace(&nonce, &fresh).as_bytes());
    server.keyreg_once();
    assert!(served(&server, "hal@example.org"));
}

#[test]
fn confirmed_addresses_stay_and_rivals_are_refused() {
    let server = confirm_server();
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(keys.path(), "u", &["--uid", "Una <una@example.org>"]);
    server.mail("add", &plain_mail("una@example.org", &key));
    server.keyreg_once();
    let nonce = nonce_of(&std::fs::read_to_string(&pending_entries(&server)[0]).unwrap());
    server.mail("add", &mail_to(REGISTER, "una@example.org", &format!("nonce: {nonce}")));
    server.keyreg_once();
    assert!(served(&server, "una@example.org"));
    // The same key again, with a second address: the first stays, the
    // second waits; another key for the first is refused outright.
    let both = rpgp_key(
        keys.path(),
        "u2",
        &["--uid", "Una <una@example.org>", "--uid", "Una <una@work.example>"],
    );
    let rival = rpgp_key(keys.path(), "r", &["--uid", "Rival <una@example.org>"]);
    server.mail("add", &plain_mail("una@example.org", &key));
    server.mail("add", &plain_mail("rival@example.net", &rival));
    server.keyreg_once();
    assert!(served(&server, "una@example.org"));
    let reply = last_reply(&server, "rival@example.net");
    assert!(reply.contains("refused: already registered to key"), "{reply}");
    assert!(confirmation_requests(&server, "una@example.org").len() == 1);
    server.mail("add", &plain_mail("una@work.example", &both));
    server.keyreg_once();
    assert!(!served(&server, "una@work.example"));
}

/// keyreg --once killed at random moments while it answers submissions
/// and confirmations; then run to the end. Every address confirmed is
/// served, no unconfirmed one is, and each pending one still has its
/// entry and exactly one request mail.
#[test]
fn kills_lose_nothing_pending_and_publish_nothing_unconfirmed() {
    let server = confirm_server();
    let keys = tempfile::tempdir().unwrap();
    let count = 8;
    for n in 0..count {
        let key = rpgp_key(
            keys.path(),
            &format!("k{n}"),
            &["--uid", &format!("K{n} <k{n}@example.org>")],
        );
        server.mail("add", &plain_mail(&format!("k{n}@example.org"), &key));
    }
    let kill_after = |millis: u64| {
        let mut child = server
            .command("keyreg")
            .arg("--once")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(millis));
        let _ = child.kill();
        let _ = child.wait();
    };
    for millis in [5, 20, 40, 80] {
        kill_after(millis);
    }
    server.keyreg_once();
    let mut nonces = Vec::new();
    for n in 0..count {
        let email = format!("k{n}@example.org");
        assert_eq!(confirmation_requests(&server, &email).len(), 1, "{email}");
        assert!(!served(&server, &email), "{email} published unconfirmed");
        let entry = pending_entries(&server)
            .into_iter()
            .map(|path| std::fs::read_to_string(path).unwrap())
            .find(|text| text.starts_with(&format!("address: {email}\n")))
            .unwrap_or_else(|| panic!("no pending entry for {email}"));
        nonces.push(nonce_of(&entry));
    }
    // Confirm the even ones, killing keyreg again on the way.
    for n in (0..count).step_by(2) {
        let nonce = &nonces[n];
        server.mail(
            "add",
            &mail_to(REGISTER, &format!("k{n}@example.org"), &format!("nonce: {nonce}")),
        );
    }
    for millis in [5, 20, 40] {
        kill_after(millis);
    }
    server.keyreg_once();
    for n in 0..count {
        assert_eq!(served(&server, &format!("k{n}@example.org")), n % 2 == 0, "k{n}");
    }
    assert_eq!(server.pending("add"), 0);
    assert_eq!(pending_entries(&server).len(), count / 2);
}

/// A key uploaded over HKP (the request hkpd spools: no return address,
/// the web-submission header) only starts verification: the address gets
/// the confirmation request, not a "your key was registered" notice.
#[test]
fn a_web_upload_only_starts_verification() {
    let server = confirm_server();
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(keys.path(), "w", &["--uid", "Web <web@example.org>"]);
    let upload = format!(
        "Subject: key submitted over the web (hkp)\nX-Ripem-Web-Submission: hkp\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n{key}\n"
    );
    server.mail("add", upload.as_bytes());
    server.keyreg_once();
    assert!(!served(&server, "web@example.org"));
    let mails: Vec<SentMail> = server
        .outbox()
        .into_iter()
        .filter(|m| m.to == "web@example.org")
        .collect();
    assert_eq!(mails.len(), 1, "expected the confirmation request only");
    assert_eq!(mails[0].subject, "Confirm your key publication");
}

/// Hostile responses: junk where the ciphertext goes, a WKS response for
/// someone else's address, one without a nonce, a nonce quoted by a mail
/// that also carries a key. None publishes; keyreg answers each and
/// leaves nothing in the spool or in `spool/failed/`.
#[test]
fn hostile_responses_publish_nothing() {
    let server = confirm_server();
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(keys.path(), "v", &["--uid", "Vic <vic@example.org>"]);
    let other = rpgp_key(keys.path(), "x", &["--uid", "Xan <xan@example.org>"]);
    server.mail("add", &plain_mail("vic@example.org", &key));
    server.keyreg_once();
    let nonce = nonce_of(&std::fs::read_to_string(&pending_entries(&server)[0]).unwrap());
    let wks = |from: &str, address: &str, nonce_line: &str| {
        format!("From: {from}\nTo: {REGISTER}\nContent-Type: application/vnd.gnupg.wks\n\ntype: confirmation-response\nsender: {REGISTER}\naddress: {address}\n{nonce_line}\n")
    };
    let junk_encrypted = format!(
        "From: vic@example.org\nTo: {REGISTER}\nMIME-Version: 1.0\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\n\n--b\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n--b\nContent-Type: application/octet-stream\n\n-----BEGIN PGP MESSAGE-----\n\nAAAA{}\n-----END PGP MESSAGE-----\n--b--\n",
        "A".repeat(5000)
    );
    for hostile in [
        junk_encrypted,
        wks("xan@example.org", "vic@example.org", &format!("nonce: {nonce}")),
        wks("vic@example.org", "vic@example.org", ""),
        wks(
            "vic@example.org",
            "vic@example.org",
            &format!("nonce: {}", "0".repeat(32)),
        ),
        format!("From: vic@example.org\n\nnonce: {nonce}\n\n{other}\n"),
    ] {
        server.mail("add", hostile.as_bytes());
        server.keyreg_once();
        assert!(!served(&server, "vic@example.org"), "published by: {hostile}");
    }
    assert_eq!(server.pending("add"), 0);
    let failed = std::fs::read_dir(server.path("spool/failed")).map_or(0, |d| d.count());
    assert_eq!(failed, 0, "a hostile response was quarantined");
    // The real nonce still works afterwards.
    server.mail(
        "add",
        wks("vic@example.org", "vic@example.org", &format!("nonce: {nonce}")).as_bytes(),
    );
    server.keyreg_once();
    assert!(served(&server, "vic@example.org"));
}

/// A key that can't be encrypted to (gpg's sign-only key) can't prove
/// it is held: refused, with no pending entry and no mail to the address.
#[test]
fn a_key_without_an_encryption_subkey_is_refused() {
    let server = confirm_server();
    let gpg = Gpg::new();
    let key = gpg.key("Sig <sig@example.org>", "ed25519");
    server.mail("add", &plain_mail("someone@example.net", &key));
    let log = server.keyreg_once();
    assert!(log.contains("1 to confirm"), "{log}");
    let reply = replies_to(&server, "someone@example.net");
    assert!(
        reply.contains("sig@example.org: not registered: the key has no encryption subkey"),
        "{reply}"
    );
    assert!(confirmation_requests(&server, "sig@example.org").is_empty());
    assert_eq!(std::fs::read_dir(server.path("pending")).map_or(0, |d| d.count()), 0);
    assert!(!served(&server, "sig@example.org"));
}
