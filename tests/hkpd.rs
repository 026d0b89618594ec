//! hkpd end to end: the real binary on a loopback port, the real gpg and
//! dirmngr as clients (HKP), gpg-wks-client's WKD URLs, VKS, and hostile
//! clients (huge bodies, malformed queries, path tricks, a slowloris,
//! more connections than allowed). Every network target is 127.0.0.1 and
//! every loop is bounded.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A free TCP port on 127.0.0.1.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server whose configuration has an `[hkpd]` section on a free port,
/// not rate limited unless `extra` says otherwise, serving the WKD of
/// example.org.
fn server_with(extra: &str) -> (Server, u16) {
    let server = Server::new();
    let port = free_tcp_port();
    let unlimited = if extra.contains("rate_limit") {
        ""
    } else {
        "rate_limit = 0\n"
    };
    let wkd = if extra.contains("wkd_domains") {
        ""
    } else {
        "wkd_domains = [\"example.org\"]\n"
    };
    let mut text = std::fs::read_to_string(&server.config).unwrap();
    text.push_str(&format!(
        "\n[hkpd]\nlisten = [\"127.0.0.1:{port}\"]\n{unlimited}{wkd}{extra}\n"
    ));
    std::fs::write(&server.config, text).unwrap();
    (server, port)
}

/// A running hkpd, stopped with SIGTERM on drop.
struct Hkpd {
    child: Child,
    port: u16,
}

impl Hkpd {
    fn start(server: &Server, port: u16) -> Hkpd {
        let child = server
            .command("hkpd")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid_file = server.path("hkpd.pid");
        let started = Instant::now();
        while std::fs::read_to_string(&pid_file).map_or(true, |t| t.trim().is_empty()) {
            assert!(started.elapsed() < Duration::from_secs(10), "hkpd did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Hkpd { child, port }
    }

    fn get(&self, target: &str) -> Answer {
        http(
            self.port,
            &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").into_bytes(),
        )
    }

    fn post(&self, target: &str, content_type: &str, body: &[u8]) -> Answer {
        let mut request = format!(
            "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        http(self.port, &request)
    }

    /// Stops hkpd with SIGTERM; its exit code and log.
    fn stop(mut self) -> (i32, String) {
        send_signal(&self.child.id().to_string(), "TERM");
        let status = self.child.wait().unwrap();
        let mut log = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut log);
        }
        (status.code().unwrap_or(-1), log)
    }
}

impl Drop for Hkpd {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = Command::new("kill").arg(self.child.id().to_string()).status();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP answer.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw request bytes and reads the answer to the end (the requests
/// say `Connection: close`); status 0 if the server closed without one.
fn http(port: u16, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (413) and close before it has read it all.
    let _ = stream.write_all(request);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let Some(split) = split else {
        return Answer {
            status: 0,
            head: String::from_utf8_lossy(raw).into_owned(),
            body: Vec::new(),
        };
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

/// Registers `key` by mail from `from`, through keyreg.
fn register(server: &Server, from: &str, key: &str) {
    server.mail("add", &plain_mail(from, key));
    server.keyreg_once();
}

/// A gpg whose dirmngr asks hkpd on `port`; dirmngr is killed on drop.
struct Client {
    gpg: Gpg,
}

impl Client {
    fn new(port: u16) -> Client {
        let gpg = Gpg::new();
        std::fs::write(
            gpg.home.path().join("dirmngr.conf"),
            format!("keyserver hkp://127.0.0.1:{port}\n"),
        )
        .unwrap();
        Client { gpg }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.gpg.run(args, b"")
    }

    fn has_key(&self, fpr: &str) -> bool {
        self.run(&["--with-colons", "--list-keys", fpr]).code == 0
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for component in ["dirmngr", "gpg-agent"] {
            let _ = Command::new("gpgconf")
                .arg("--homedir")
                .arg(self.gpg.home.path())
                .args(["--kill", component])
                .status();
        }
    }
}

#[test]
fn gpg_receives_searches_sends_and_refreshes_keys() {
    let (server, port) = server_with("");
    let owner = Gpg::new();
    let alice_key = owner.key("Alice <alice@example.org>", "ed25519");
    let alice = owner.fingerprint("alice@example.org");
    register(&server, "alice@example.org", &alice_key);
    let keys = tempfile::tempdir().unwrap();
    let rsa_key = rpgp_key(
        keys.path(),
        "r",
        &["--uid", "Rita <rita@example.net>", "--algo", "rsa2048"],
    );
    register(&server, "rita@example.net", &rsa_key);
    let hkpd = Hkpd::start(&server, port);

    let client = Client::new(port);
    let received = client.run(&["--recv-keys", &alice]);
    assert_eq!(received.code, 0, "{}", received.stderr);
    assert!(client.has_key(&alice));
    // By the 16-digit key ID.
    let deleted = client.run(&["--yes", "--delete-keys", &alice]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let received = client.run(&["--recv-keys", &format!("0x{}", &alice[24..])]);
    assert_eq!(received.code, 0, "{}", received.stderr);
    assert!(client.has_key(&alice));
    // The rPGP RSA key by address search, then by fingerprint.
    let searched = client.run(&["--search-keys", "rita@example.net"]);
    assert!(
        searched.stdout.contains("Rita <rita@example.net>"),
        "{}{}",
        searched.stdout,
        searched.stderr
    );
    assert!(searched.stdout.contains("2048 bit RSA key"), "{}", searched.stdout);
    let index = hkpd.get("/pks/lookup?op=index&options=mr&search=rita@example.net");
    assert_eq!(index.status, 200);
    let rita = index
        .text()
        .lines()
        .find_map(|line| line.strip_prefix("pub:"))
        .and_then(|rest| rest.split(':').next())
        .unwrap()
        .to_string();
    let received = client.run(&["--recv-keys", &rita]);
    assert_eq!(received.code, 0, "{}", received.stderr);
    assert!(client.has_key(&rita));
    let missing = client.run(&["--search-keys", "nobody@example.org"]);
    assert!(!missing.stdout.contains("nobody@example.org>"), "{}", missing.stdout);

    let refreshed = client.run(&["--refresh-keys"]);
    assert_eq!(refreshed.code, 0, "{}", refreshed.stderr);
    assert!(refreshed.stderr.contains("unchanged: 2"), "{}", refreshed.stderr);

    // --send-keys spools a request; keyreg registers it without a reply.
    let bob_key = client.gpg.key("Bob <bob@example.org>", "ed25519");
    assert!(!bob_key.is_empty());
    let bob = client.gpg.fingerprint("bob@example.org");
    let sent = client.run(&["--send-keys", &bob]);
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    assert_eq!(server.pending("add"), 1);
    let log = server.keyreg_once();
    assert!(log.contains("1 addresses added"), "{log}");
    assert!(log.contains("no reply"), "{log}");
    assert!(server
        .outbox()
        .iter()
        .all(|mail| mail.to != "bob@example.org" || !mail.body.contains("already")));
    let index = hkpd.get("/pks/lookup?op=index&options=mr&search=bob@example.org");
    assert_eq!(index.status, 200, "{}", index.text());
    assert!(index.text().contains(&format!("pub:{bob}:22:255:")), "{}", index.text());
    // The answers are what dirmngr asks for.
    let got = hkpd.get(&format!("/pks/lookup?op=get&options=mr&search=0x{bob}"));
    assert_eq!(got.status, 200);
    assert!(got
        .head
        .to_ascii_lowercase()
        .contains("content-type: application/pgp-keys"));
    assert!(got.text().starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let (code, log) = hkpd.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn html_index_and_several_keys_by_key_id() {
    let (server, port) = server_with("");
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(keys.path(), "h", &["--uid", "H <h@example.org>"]);
    register(&server, "h@example.org", &key);
    let hkpd = Hkpd::start(&server, port);
    let page = hkpd.get("/pks/lookup?op=index&search=h@example.org");
    assert_eq!(page.status, 200);
    assert!(page.head.contains("text/html"));
    assert!(page.text().contains("H &lt;h@example.org&gt;"), "{}", page.text());
    let vindex = hkpd.get("/pks/lookup?op=vindex&options=mr&exact=on&search=H%40Example.org");
    assert_eq!(vindex.status, 200);
    assert!(vindex.text().starts_with("info:1:1\npub:"), "{}", vindex.text());
    assert_eq!(
        hkpd.get("/pks/lookup?op=index&options=mr&search=x@example.org").status,
        404
    );
    assert_eq!(hkpd.get("/pks/lookup?op=get&search=x@example.org").status, 404);
    let front = hkpd.get("/");
    assert_eq!(front.status, 200);
}

/// The path and query of the WKD URL gpg-wks-client prints for `address`
/// (advanced method), or `None` when the tool is not installed.
fn wkd_url_path(address: &str) -> Option<String> {
    let tool = Path::new("/usr/lib/gnupg/gpg-wks-client");
    if !tool.exists() {
        eprintln!(
            "skipping the gpg-wks-client URL: {} is not installed (Debian package gpg-wks-client)",
            tool.display()
        );
        return None;
    }
    let output = Command::new(tool).args(["--print-wkd-url", address]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let url = String::from_utf8(output.stdout).unwrap();
    let url = url.trim();
    let after_scheme = url.split_once("://").unwrap().1;
    Some(after_scheme[after_scheme.find('/').unwrap()..].to_string())
}

#[test]
fn wkd_serves_the_binary_key_of_the_domain() {
    let (server, port) = server_with("");
    let owner = Gpg::new();
    owner.key("Wanda <wanda@example.org>", "ed25519");
    let fpr = owner.fingerprint("wanda@example.org");
    let added = owner.run(&["--quick-add-uid", &fpr, "Wanda <wanda@elsewhere.net>"], b"");
    assert_eq!(added.code, 0, "{}", added.stderr);
    let key = owner.run(&["--armor", "--export", &fpr], b"").stdout;
    register(&server, "wanda@example.org", &key);
    let hkpd = Hkpd::start(&server, port);

    let path = wkd_url_path("Wanda@example.org").unwrap_or_else(|| {
        format!(
            "/.well-known/openpgpkey/example.org/hu/{}?l=Wanda",
            "kei1q4tipxxu1yj79k9kfukdhfy631xe"
        )
    });
    assert!(path.starts_with("/.well-known/openpgpkey/example.org/hu/"), "{path}");
    let answer = hkpd.get(&path);
    assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    assert!(answer.head.contains("application/octet-stream"));
    assert_ne!(answer.body.first(), Some(&b'-'), "binary, not armored");
    let fetched = tempfile::tempdir().unwrap();
    let file = fetched.path().join("wanda.gpg");
    std::fs::write(&file, &answer.body).unwrap();
    let client = Gpg::new();
    let imported = client.run(&["--import", file.to_str().unwrap()], b"");
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    let (uids, listing) = client.count_listed(&fpr, "uid");
    assert_eq!(uids, 1, "only the example.org user ID: {listing}");
    assert!(
        listing.contains("wanda@example.org") && !listing.contains("elsewhere.net"),
        "{listing}"
    );

    // The direct method, and without ?l= (the hash table).
    let hash = path
        .split("/hu/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(hkpd.get(&format!("/.well-known/openpgpkey/hu/{hash}")).status, 200);
    assert_eq!(
        hkpd.get(&format!("/.well-known/openpgpkey/example.org/hu/{hash}"))
            .status,
        200
    );
    // A domain not served, a local part not matching the hash, nobody.
    assert_eq!(
        hkpd.get(&format!("/.well-known/openpgpkey/elsewhere.net/hu/{hash}?l=wanda"))
            .status,
        404
    );
    assert_eq!(
        hkpd.get(&format!("/.well-known/openpgpkey/example.org/hu/{hash}?l=other"))
            .status,
        404
    );
    let nobody = hkpd.get("/.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe");
    assert_eq!(nobody.status, 404);
    let policy = hkpd.get("/.well-known/openpgpkey/example.org/policy");
    assert_eq!(policy.status, 200);
    let submission = hkpd.get("/.well-known/openpgpkey/example.org/submission-address");
    assert_eq!(submission.status, 200);
    assert!(
        submission.text().contains("ripem-register-keys@"),
        "{}",
        submission.text()
    );
    assert_eq!(hkpd.get("/.well-known/openpgpkey/elsewhere.net/policy").status, 404);
}

#[test]
fn vks_lookups_and_uploads() {
    let (server, port) = server_with("");
    let keys = tempfile::tempdir().unwrap();
    let vera_key = rpgp_key(keys.path(), "v", &["--uid", "Vera <vera@example.org>"]);
    register(&server, "vera@example.org", &vera_key);
    let hkpd = Hkpd::start(&server, port);
    let index = hkpd
        .get("/pks/lookup?op=index&options=mr&search=vera@example.org")
        .text();
    let vera = index.lines().find_map(|l| l.strip_prefix("pub:")).unwrap()[..40].to_string();

    for path in [
        format!("/vks/v1/by-fingerprint/{vera}"),
        format!("/vks/v1/by-fingerprint/{}", vera.to_ascii_lowercase()),
        format!("/vks/v1/by-keyid/{}", &vera[24..]),
        "/vks/v1/by-email/vera%40example.org".to_string(),
        "/vks/v1/by-email/Vera@Example.org".to_string(),
    ] {
        let answer = hkpd.get(&path);
        assert_eq!(answer.status, 200, "{path}");
        assert!(
            answer.text().starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
            "{path}"
        );
    }
    assert_eq!(hkpd.get("/vks/v1/by-email/nobody%40example.org").status, 404);
    assert_eq!(
        hkpd.get(&format!("/vks/v1/by-fingerprint/{}", "0".repeat(40))).status,
        404
    );
    assert_eq!(hkpd.get(&format!("/vks/v1/by-keyid/{}", &vera[32..])).status, 400);
    assert_eq!(hkpd.get("/vks/v1/by-fingerprint/XYZ").status, 400);
    assert_eq!(hkpd.get("/vks/v1/by-email/not-an-address").status, 400);

    let upload = |key: &str| {
        let body = format!("{{\"keytext\": {}}}", json_string(key));
        hkpd.post("/vks/v1/upload", "application/json", body.as_bytes())
    };
    // Already registered: published; new: pending; taken by another: unpublished.
    let answer = upload(&vera_key);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.text().contains(&format!("\"key_fpr\":\"{vera}\"")),
        "{}",
        answer.text()
    );
    assert!(
        answer.text().contains("\"vera@example.org\":\"published\""),
        "{}",
        answer.text()
    );
    let new_key = rpgp_key(keys.path(), "n", &["--uid", "Nina <nina@example.org>"]);
    let answer = upload(&new_key);
    assert!(
        answer.text().contains("\"nina@example.org\":\"pending\""),
        "{}",
        answer.text()
    );
    let rival = rpgp_key(keys.path(), "x", &["--uid", "Not Vera <vera@example.org>"]);
    let answer = upload(&rival);
    assert!(
        answer.text().contains("\"vera@example.org\":\"unpublished\""),
        "{}",
        answer.text()
    );
    assert_eq!(server.pending("add"), 3);
    server.keyreg_once();
    let nina = hkpd.get("/vks/v1/by-email/nina%40example.org");
    assert_eq!(nina.status, 200);
    assert_eq!(
        hkpd.get("/vks/v1/by-email/vera%40example.org").text(),
        hkpd.get(&format!("/vks/v1/by-fingerprint/{vera}")).text(),
        "the first key keeps the address"
    );
    // Only the mailed registration was answered: a web upload has no one to reply to.
    let replies: Vec<String> = server
        .outbox()
        .into_iter()
        .filter(|mail| mail.in_reply_to.is_some())
        .map(|mail| mail.to)
        .collect();
    assert_eq!(replies, ["vera@example.org"]);
    assert_eq!(
        hkpd.post("/vks/v1/upload", "application/json", b"{\"keytext\": 3}")
            .status,
        400
    );
    assert_eq!(hkpd.post("/vks/v1/upload", "application/json", b"not json").status, 400);
    assert_eq!(
        hkpd.post("/vks/v1/upload", "application/json", b"{\"keytext\": \"junk\"}")
            .status,
        400
    );
}

/// `text` as a JSON string.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn bad_input_is_refused_and_the_server_stays_up() {
    let (server, port) = server_with("max_request_bytes = 65536\n");
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(keys.path(), "b", &["--uid", "B <b@example.org>"]);
    register(&server, "b@example.org", &key);
    let hkpd = Hkpd::start(&server, port);

    // Bodies over the limit, declared or streamed.
    let huge = vec![b'a'; 200_000];
    let answer = hkpd.post("/pks/add", "application/x-www-form-urlencoded", &huge);
    assert_eq!(answer.status, 413, "{}", answer.head);
    let mut chunked =
        b"POST /pks/add HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..10 {
        chunked.extend_from_slice(b"4000\r\n");
        chunked.extend_from_slice(&[b'k'; 0x4000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(http(port, &chunked).status, 413);
    let answer = hkpd.post("/vks/v1/upload", "application/json", &huge);
    assert_eq!(answer.status, 413);
    // Headers too large.
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: {}\r\nConnection: close\r\n\r\n",
        "j".repeat(1_000_000)
    );
    let answer = http(port, long_header.as_bytes());
    assert!(
        answer.status == 431 || answer.status == 400 || answer.status == 0,
        "{}",
        answer.status
    );

    // Malformed queries, short key IDs, unknown operations.
    for (target, status) in [
        ("/pks/lookup", 400),
        ("/pks/lookup?op=get", 400),
        ("/pks/lookup?op=get&search=", 400),
        ("/pks/lookup?op=get&search=0xDEADBEEF", 400),
        ("/pks/lookup?op=index&options=mr&search=0xDEADBEEF", 400),
        ("/pks/lookup?op=get&search=0x12345", 400),
        ("/pks/lookup?op=get&search=0xZZZZZZZZZZZZZZZZ", 400),
        ("/pks/lookup?op=get&search=just%20words", 400),
        ("/pks/lookup?op=get&search=%ff%fe%00", 400),
        ("/pks/lookup?op=stats", 501),
        ("/pks/lookup?op=hget&search=b@example.org", 501),
        ("/pks/hashquery", 404),
        ("/nothing/here", 404),
        // Path tricks.
        ("/.well-known/openpgpkey/../../etc/passwd", 400),
        ("/.well-known/openpgpkey/example.org%2Fhu%2Fx", 400),
        ("/vks/v1/by-email/b%40example.org%00.evil", 400),
        ("/vks/v1/by-email/..%2f..%2fkeys.gdbm", 400),
        ("/pks/./lookup?op=get&search=b@example.org", 400),
    ] {
        let answer = hkpd.get(target);
        assert_eq!(answer.status, status, "{target}: {}", answer.text());
    }
    // A raw NUL or space in the request line is not HTTP.
    let answer = http(
        port,
        b"GET /pks/lookup?op=get&search=b\0@example.org HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(answer.status, 400, "{}", answer.head);
    let answer = http(port, b"\x16\x03\x01\x02\x00junk that is not http\r\n\r\n");
    assert_eq!(answer.status, 400);
    // Wrong methods, a form without keytext, junk keys.
    assert_eq!(hkpd.post("/pks/lookup", "text/plain", b"x").status, 405);
    assert_eq!(hkpd.get("/pks/add").status, 405);
    assert_eq!(
        hkpd.post("/pks/add", "application/x-www-form-urlencoded", b"other=1")
            .status,
        400
    );
    let junk = hkpd.post("/pks/add", "application/x-www-form-urlencoded", b"keytext=junk");
    assert_eq!(junk.status, 400);
    assert_eq!(server.pending("add"), 0, "nothing spooled for junk");

    // Still up and answering.
    assert_eq!(hkpd.get("/pks/lookup?op=get&search=b@example.org").status, 200);
    let (code, log) = hkpd.stop();
    assert_eq!(code, 0, "{log}");
    // No client addresses in the log (log_requests is off).
    assert!(
        log.lines()
            .all(|line| line.contains("started") || line.contains("stopped")),
        "{log}"
    );
}

#[test]
fn slow_clients_are_cut_off_and_connections_are_bounded() {
    let (server, port) = server_with("timeout_seconds = 2\nmax_connections = 8\n");
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(keys.path(), "s", &["--uid", "S <s@example.org>"]);
    register(&server, "s@example.org", &key);
    let hkpd = Hkpd::start(&server, port);

    // A slowloris: a byte of the request head now and then, never done.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    slow.write_all(b"GET /pks/lookup?op=get&search=s@example.org HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let started = Instant::now();
    let mut closed_after = None;
    while started.elapsed() < Duration::from_secs(15) {
        // Meanwhile others are answered.
        assert_eq!(hkpd.get("/pks/lookup?op=get&search=s@example.org").status, 200);
        let _ = slow.write_all(b"X");
        let mut buffer = [0u8; 512];
        match slow.read(&mut buffer) {
            Ok(0) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(_) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock || err.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed_after = Some(started.elapsed());
                break;
            }
        }
    }
    let closed_after = closed_after.expect("the slow client was never cut off");
    assert!(closed_after < Duration::from_secs(8), "{closed_after:?}");

    // More connections than allowed: the extra ones are told to come back.
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = 0;
    for _ in 0..20 {
        let answer = hkpd.get("/pks/lookup?op=get&search=s@example.org");
        if answer.status == 503 {
            refused += 1;
        }
    }
    assert!(refused > 0, "no connection was refused over the limit");
    // Once the idle ones time out, everyone is served again.
    let started = Instant::now();
    loop {
        let answer = hkpd.get("/pks/lookup?op=get&search=s@example.org");
        if answer.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still refused: {}",
            answer.status
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(idle);
    let (code, log) = hkpd.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn requests_are_rate_limited_per_network() {
    let (server, port) = server_with("rate_limit = 2\nrate_burst = 3\n");
    let hkpd = Hkpd::start(&server, port);
    let statuses: Vec<u16> = (0..10)
        .map(|_| hkpd.get("/pks/lookup?op=get&search=r@example.org").status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(statuses[0], 404);
}

#[test]
fn sighup_reloads_sigterm_stops_and_a_second_hkpd_is_refused() {
    let (server, port) = server_with("wkd_domains = []\nlog_requests = true\n");
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(keys.path(), "g", &["--uid", "G <g@example.org>"]);
    register(&server, "g@example.org", &key);
    let hkpd = Hkpd::start(&server, port);
    let wkd = format!("/.well-known/openpgpkey/example.org/hu/{}?l=g", local_hash("g"));
    assert_eq!(hkpd.get(&wkd).status, 404);

    let second = server.run("hkpd", &[], b"");
    assert_ne!(second.code, 0);
    assert!(second.stderr.contains("hkpd"), "{}", second.stderr);

    let text = std::fs::read_to_string(&server.config)
        .unwrap()
        .replace("wkd_domains = []", "wkd_domains = [\"example.org\"]");
    std::fs::write(&server.config, text).unwrap();
    send_signal(&hkpd.child.id().to_string(), "HUP");
    let started = Instant::now();
    while hkpd.get(&wkd).status != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "not reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, log) = hkpd.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("configuration reloaded"), "{log}");
    // log_requests = true: the client is named.
    assert!(
        log.contains("127.0.0.1:") && log.contains("GET /.well-known/openpgpkey/"),
        "{log}"
    );
    assert!(
        !server.path("hkpd.pid").exists()
            || std::fs::read_to_string(server.path("hkpd.pid"))
                .unwrap()
                .trim()
                .is_empty()
    );
}

/// The WKD hash of a local part, as gpg-wks-client computes it.
fn local_hash(local: &str) -> String {
    let tool = Path::new("/usr/lib/gnupg/gpg-wks-client");
    if tool.exists() {
        let output = Command::new(tool)
            .args(["--print-wkd-hash", &format!("{local}@example.org")])
            .output()
            .unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        return text.split_whitespace().next().unwrap().to_string();
    }
    match local {
        "g" => "ku6tqrjyu6ahy6yo1e5wncsgp3h6rjy5".to_string(),
        other => panic!("no hash known for {other}"),
    }
}

#[test]
fn https_with_the_configured_certificate() {
    if Command::new("openssl").arg("version").output().is_err()
        || Command::new("curl").arg("--version").output().is_err()
    {
        eprintln!("skipping: openssl or curl is not installed");
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let cert = certs.path().join("cert.pem");
    let key_file = certs.path().join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key_file)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (server, port) = server_with(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key_file.display()
    ));
    let keys = tempfile::tempdir().unwrap();
    let key = rpgp_key(keys.path(), "t", &["--uid", "T <t@example.org>"]);
    register(&server, "t@example.org", &key);
    let _hkpd = Hkpd::start(&server, port);
    let fetched = Command::new("curl")
        .args(["--silent", "--show-error", "--cacert"])
        .arg(&cert)
        .arg(format!(
            "https://127.0.0.1:{port}/pks/lookup?op=get&search=t@example.org"
        ))
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    assert!(String::from_utf8_lossy(&fetched.stdout).starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    // Plain HTTP on the TLS port gets nothing.
    let plain = http(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert_ne!(plain.status, 200);
}

#[test]
fn a_bad_configuration_is_refused_at_start() {
    let (server, _port) = server_with("tls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n");
    let run = server.run("hkpd", &[], b"");
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("hkpd: TLS: /nonexistent/cert.pem"),
        "{}",
        run.stderr
    );
    let (server, port) = server_with("");
    let _holder = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let run = server.run("hkpd", &[], b"");
    assert_eq!(run.code, 69, "{}", run.stderr);
    assert!(run.stderr.contains("cannot listen on"), "{}", run.stderr);
}

#[test]
fn web_uploads_notify_each_newly_registered_address_at_most_hourly() {
    let (server, port) = server_with("");
    let keys = tempfile::tempdir().unwrap();
    let taken = rpgp_key(keys.path(), "t", &["--uid", "Tom <tom@example.org>"]);
    register(&server, "tom@example.org", &taken);
    let hkpd = Hkpd::start(&server, port);
    // pat was told within the hour (the record keyreg keeps).
    std::fs::write(
        server.path("web-notices"),
        format!("{} pat@example.org\n", now_secs() - 60),
    )
    .unwrap();
    let key = rpgp_key(
        keys.path(),
        "u",
        &[
            "--uid",
            "Una <una@example.org>",
            "--uid",
            "Una <una@example.net>",
            "--uid",
            "Pat <pat@example.org>",
            "--uid",
            "Not Tom <tom@example.org>",
        ],
    );
    let form = format!("keytext={}", form_encode(&key));
    let added = hkpd.post("/pks/add", "application/x-www-form-urlencoded", form.as_bytes());
    assert_eq!(added.status, 200, "{}", added.text());
    assert!(added.text().contains("una@example.org (pending)"), "{}", added.text());
    assert!(
        added.text().contains("tom@example.org (unpublished)"),
        "{}",
        added.text()
    );
    let before = server.outbox().len();
    server.keyreg_once();
    let notices: Vec<SentMail> = server
        .outbox()
        .into_iter()
        .filter(|m| m.subject.contains("web upload"))
        .collect();
    let mut told: Vec<String> = notices.iter().map(|m| m.to.clone()).collect();
    told.sort();
    assert_eq!(
        told,
        ["una@example.net", "una@example.org"],
        "pat was told lately, tom's address is not this key's"
    );
    assert_eq!(server.outbox().len(), before + 2, "no reply to the upload itself");
    let notice = &notices[0];
    assert!(
        notice.body.contains("from a web upload") && notice.body.contains("If it was not you"),
        "{}",
        notice.body
    );
    assert!(notice.auto_submitted.is_some());
    let record = std::fs::read_to_string(server.path("web-notices")).unwrap();
    assert!(
        record.contains("una@example.org") && record.contains("pat@example.org"),
        "{record}"
    );

    // The same key again registers nothing new: nobody is told again.
    let again = hkpd.post("/pks/add", "application/x-www-form-urlencoded", form.as_bytes());
    assert_eq!(again.status, 200);
    assert!(again.text().contains("una@example.org (published)"), "{}", again.text());
    server.keyreg_once();
    assert_eq!(server.outbox().len(), before + 2);
}

/// `text` %-encoded for an `application/x-www-form-urlencoded` body.
fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
