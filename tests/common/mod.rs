//! The harness shared by the end-to-end tests: a server's state in a temp
//! directory, the real binaries (built by `cargo build --workspace`), keys
//! made by rPGP (`ripem-keygen`) and by the system gpg, mail fed through
//! copymail, keyserv on a loopback port, replies read back from the outbox.
#![allow(dead_code)] // each test binary uses its own part of the harness

use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace's build of program `name`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// A finished program run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `command` to its end, feeding it `stdin`.
pub fn run_with(mut command: Command, stdin: &[u8]) -> Run {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A program may stop reading early (copymail over its limit).
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap().into()
}

/// A free UDP port on 127.0.0.1.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One key server's state directory and configuration.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub port: u16,
}

impl Server {
    pub fn new() -> Server {
        Server::with_extra("")
    }

    /// A server whose configuration has `extra` TOML appended.
    pub fn with_extra(extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("keyserver.toml");
        // Tests ask far more often than the default rate limit allows,
        // unless they are about the limit.
        let unlimited = if extra.contains("rate_limit") {
            ""
        } else {
            "rate_limit = 0\n"
        };
        let unlimited_bytes = if extra.contains("rate_bytes") {
            ""
        } else {
            "rate_bytes = 0\n"
        };
        let text = format!(
            "state_dir = \"{}\"\n[keyserv]\nlisten = [\"127.0.0.1:{port}\"]\n{unlimited}{unlimited_bytes}{extra}\n[mail]\ntransport = \"file\"\nfrom = \"keyserver@keys.example.org\"\n",
            dir.path().display()
        );
        std::fs::write(&config, text).unwrap();
        Server { dir, config, port }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// A command for a program with this server's configuration.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(bin(program));
        command.arg("--config").arg(&self.config);
        command
    }

    /// Runs a program with this server's configuration and `stdin`.
    pub fn run(&self, program: &str, args: &[&str], stdin: &[u8]) -> Run {
        let mut command = self.command(program);
        command.args(args);
        run_with(command, stdin)
    }

    /// Spools a request through copymail, which must accept it.
    pub fn mail(&self, queue: &str, message: &[u8]) {
        let run = self.run("copymail", &["--queue", queue], message);
        assert_eq!(run.code, 0, "copymail failed: {}", run.stderr);
    }

    /// Runs `keyreg --once`, which must succeed; returns its log.
    pub fn keyreg_once(&self) -> String {
        let run = self.run("keyreg", &["--once"], b"");
        assert_eq!(run.code, 0, "keyreg --once failed: {}", run.stderr);
        run.stderr
    }

    /// Files waiting in a queue's `new/`.
    pub fn pending(&self, queue: &str) -> usize {
        std::fs::read_dir(self.path(&format!("spool/{queue}/new"))).map_or(0, |d| d.count())
    }

    /// Every mail in the outbox, parsed.
    pub fn outbox(&self) -> Vec<SentMail> {
        let Ok(entries) = std::fs::read_dir(self.path("outbox")) else {
            return Vec::new();
        };
        // A dot-file is a reply being written (or one a kill interrupted):
        // not mail, and no mail reader takes it.
        entries
            .map(|entry| entry.unwrap().path())
            .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'))
            .map(|path| SentMail::parse(&std::fs::read(path).unwrap()))
            .collect()
    }

    /// Starts keyserv and waits until its pid file says it is ready.
    pub fn start_keyserv(&self) -> Keyserv {
        self.start_keyserv_with(&[])
    }

    /// Starts keyserv with extra arguments, as [`Server::start_keyserv`].
    pub fn start_keyserv_with(&self, args: &[&str]) -> Keyserv {
        let child = self
            .command("keyserv")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid_file = self.path("keyserv.pid");
        let started = Instant::now();
        while std::fs::read_to_string(&pid_file).map_or(true, |t| t.trim().is_empty()) {
            assert!(started.elapsed() < Duration::from_secs(10), "keyserv did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Keyserv { child, port: self.port }
    }

    /// `keylookup` against this server's keyserv.
    pub fn keylookup(&self, args: &[&str]) -> Run {
        let server = format!("127.0.0.1:{}", self.port);
        let mut all = vec!["--server", server.as_str()];
        all.extend_from_slice(args);
        self.run("keylookup", &all, b"")
    }
}

/// A running keyserv, stopped with SIGTERM on drop.
pub struct Keyserv {
    pub child: Child,
    pub port: u16,
}

/// A UDP socket on `source` (any 127/8 address) with a 2 s read timeout.
pub fn socket_on(source: &str) -> UdpSocket {
    let socket = UdpSocket::bind((source, 0)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    socket
}

/// Sends one datagram on `socket` to `port` and returns the answer (None
/// after the socket's timeout).
pub fn exchange(socket: &UdpSocket, port: u16, request: &[u8]) -> Option<Vec<u8>> {
    socket.send_to(request, ("127.0.0.1", port)).unwrap();
    let mut buffer = vec![0u8; 70_000];
    let (length, _) = socket.recv_from(&mut buffer).ok()?;
    buffer.truncate(length);
    Some(buffer)
}

/// The cookie in a `COOKIE` answer.
pub fn cookie_in(answer: &[u8]) -> Option<String> {
    match ripem_core::protocol::parse_answer(answer)? {
        ripem_core::protocol::Answer::Cookie(cookie) => Some(cookie),
        _ => None,
    }
}

/// `request` with a cookie keyserv on `port` issued to `socket`'s address,
/// if it asks for one for this request.
pub fn with_cookie_for(socket: &UdpSocket, port: u16, request: &[u8]) -> Vec<u8> {
    match exchange(socket, port, request).as_deref().and_then(cookie_in) {
        Some(cookie) => ripem_core::cookie::with_cookie(request, &cookie),
        None => request.to_vec(),
    }
}

impl Keyserv {
    /// Sends one datagram and returns the answer (None after 2 s), as a
    /// client does: after a `COOKIE` answer, the request again with it.
    pub fn ask(&self, request: &[u8]) -> Option<Vec<u8>> {
        let socket = socket_on("127.0.0.1");
        let answer = exchange(&socket, self.port, request)?;
        match cookie_in(&answer) {
            Some(cookie) => exchange(&socket, self.port, &ripem_core::cookie::with_cookie(request, &cookie)),
            None => Some(answer),
        }
    }

    /// The answer to a LOOKUSER for `user`, as text.
    pub fn lookup(&self, user: &str) -> String {
        let answer = self
            .ask(format!("LOOKUSER\nUser: {user}\n").as_bytes())
            .expect("keyserv answered");
        String::from_utf8(answer).unwrap()
    }

    pub fn stop(mut self) -> String {
        self.terminate();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            use std::io::Read;
            let _ = pipe.read_to_string(&mut stderr);
        }
        stderr
    }

    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return; // already stopped and reaped
        }
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Drop for Keyserv {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A mail the server sent.
pub struct SentMail {
    pub to: String,
    pub subject: String,
    pub in_reply_to: Option<String>,
    pub auto_submitted: Option<String>,
    pub body: String,
    pub attachments: Vec<(String, Vec<u8>)>,
}

impl SentMail {
    fn parse(raw: &[u8]) -> SentMail {
        use mailparse::MailHeaderMap;
        let mail = mailparse::parse_mail(raw).unwrap();
        let headers = mail.get_headers();
        let mut body = String::new();
        let mut attachments = Vec::new();
        for part in mail.parts().filter(|p| p.subparts.is_empty()) {
            let disposition = part.get_content_disposition();
            match disposition.params.get("filename") {
                Some(name) => attachments.push((name.clone(), part.get_body_raw().unwrap())),
                None => body.push_str(&part.get_body().unwrap()),
            }
        }
        SentMail {
            to: headers.get_first_value("To").unwrap_or_default(),
            subject: headers.get_first_value("Subject").unwrap_or_default(),
            in_reply_to: headers.get_first_value("In-Reply-To"),
            auto_submitted: headers.get_first_value("Auto-Submitted"),
            body,
            attachments,
        }
    }
}

/// A key made by `ripem-keygen` (rPGP); returns the armored public key.
pub fn rpgp_key(dir: &Path, name: &str, args: &[&str]) -> String {
    let public = dir.join(format!("{name}.asc"));
    let output = Command::new(bin("ripem-keygen"))
        .args(args)
        .arg("--public")
        .arg(&public)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ripem-keygen: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(public).unwrap()
}

/// A gpg home directory for keys made by the system gpg.
pub struct Gpg {
    pub home: tempfile::TempDir,
}

impl Gpg {
    pub fn new() -> Gpg {
        Gpg {
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut command = Command::new("gpg");
        command
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args);
        run_with(command, stdin)
    }

    /// Makes a key (`algo` as gpg's --quick-gen-key takes it) and returns it armored.
    pub fn key(&self, user_id: &str, algo: &str) -> String {
        let made = self.run(&["--quick-gen-key", user_id, algo, "sign", "never"], b"");
        assert_eq!(made.code, 0, "gpg --quick-gen-key: {}", made.stderr);
        let email = user_id
            .rsplit_once('<')
            .map_or(user_id, |(_, e)| e.trim_end_matches('>'));
        self.run(&["--armor", "--export", email], b"").stdout
    }

    /// The fingerprint of the key for `email`.
    pub fn fingerprint(&self, email: &str) -> String {
        let listing = self.run(&["--with-colons", "--list-keys", email], b"").stdout;
        listing
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string()
    }
}

/// A plain registration mail with the key in the body among prose.
pub fn plain_mail(from: &str, key: &str) -> Vec<u8> {
    format!("From: {from}\nTo: ripem-register-keys@keys.example.org\nSubject: register\nMessage-ID: <{}@test>\n\nHello,\nhere is my key:\n\n{key}\nRegards.\n", std::process::id()).into_bytes()
}

/// The fingerprint in a record text.
pub fn record_fingerprint(record: &str) -> Option<String> {
    record
        .lines()
        .find_map(|l| l.strip_prefix("Fingerprint: "))
        .map(str::to_string)
}

/// Sleeps into the next whole second: the server refuses a signature not
/// newer than the record's last update, and both have one-second resolution.
pub fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos())) + Duration::from_millis(20));
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A request mail from `from` to one of the server's addresses.
pub fn mail_to(queue_address: &str, from: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\nTo: {queue_address}\nSubject: request\nMessage-ID: <{from}.{}@test>\n\n{body}\n",
        now_secs()
    )
    .into_bytes()
}

/// Every mail sent to `to`, their bodies joined, shortest first.
pub fn replies_to(server: &Server, to: &str) -> String {
    let mut replies: Vec<SentMail> = server.outbox().into_iter().filter(|m| m.to == to).collect();
    assert!(!replies.is_empty(), "no reply to {to}");
    replies.sort_by_key(|m| m.body.len());
    replies.into_iter().map(|m| m.body).collect::<Vec<_>>().join("\n----\n")
}

/// `text` cleartext-signed by `signer`, with gpg's `extra` options first.
pub fn clearsign_with(gpg: &Gpg, signer: &str, text: &str, extra: &[&str]) -> String {
    let mut args = extra.to_vec();
    args.extend(["--clearsign", "--local-user", signer]);
    let run = gpg.run(&args, text.as_bytes());
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
}

/// `text` cleartext-signed by `signer`.
pub fn clearsign(gpg: &Gpg, signer: &str, text: &str) -> String {
    clearsign_with(gpg, signer, text, &[])
}

/// The revocation certificate gpg keeps for the key `fpr`, as a block
/// that can be mailed (gpg prefixes its BEGIN line with ':' against an
/// accidental import).
pub fn revocation_certificate(gpg: &Gpg, fpr: &str) -> String {
    let stored = std::fs::read_to_string(gpg.home.path().join(format!("openpgp-revocs.d/{fpr}.rev"))).unwrap();
    let certificate = stored.replace(":-----BEGIN", "-----BEGIN");
    certificate[certificate.find("-----BEGIN").unwrap()..].to_string()
}

/// The flat keyring as a gpg user sees it: db2flat run, `pubkeys.asc`
/// imported into a fresh gpg home.
pub fn flat_keyring_in_gpg(server: &Server) -> Gpg {
    let dump = server.run("db2flat", &[], b"");
    assert_eq!(dump.code, 0, "db2flat: {}", dump.stderr);
    let client = Gpg::new();
    let imported = client.run(&["--import", server.path("pub/pubkeys.asc").to_str().unwrap()], b"");
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    client
}

impl Gpg {
    /// How many `record` lines (`pub`, `uid`, …) `gpg --list-keys query`
    /// prints, and the listing.
    pub fn count_listed(&self, query: &str, record: &str) -> (usize, String) {
        let listing = self.run(&["--with-colons", "--list-keys", query], b"").stdout;
        let prefix = format!("{record}:");
        (listing.lines().filter(|l| l.starts_with(&prefix)).count(), listing)
    }
}

/// Sends `signal` (`HUP`, `TERM`, …) to process `pid`, which must take it.
pub fn send_signal(pid: &str, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Alice's new key: keeps alice@example.org, adds alice@new.example.org.
pub fn alice_successor(gpg: &Gpg) -> (String, String) {
    let made = gpg.run(
        &[
            "--quick-gen-key",
            "Alice <alice@new.example.org>",
            "ed25519",
            "sign",
            "never",
        ],
        b"",
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let fpr = gpg.fingerprint("alice@new.example.org");
    let added = gpg.run(&["--quick-add-uid", &fpr, "Alice <alice@example.org>"], b"");
    assert_eq!(added.code, 0, "{}", added.stderr);
    let armored = gpg.run(&["--armor", "--export", &fpr], b"").stdout;
    (fpr, armored)
}

/// A small xorshift generator: the fault tests need repeatable randomness
/// only; `RIPEM_CRASH_SEED` replays a run.
pub struct Random(u64);

impl Random {
    /// Seeded from `RIPEM_CRASH_SEED`, or from the clock (and printed).
    pub fn new() -> Random {
        let seed = std::env::var("RIPEM_CRASH_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or_else(|| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                now.as_nanos() as u64 ^ u64::from(std::process::id())
            });
        eprintln!("RIPEM_CRASH_SEED={seed}");
        Random(seed | 1)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}
