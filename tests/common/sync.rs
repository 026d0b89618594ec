//! The keysync part of the harness: a server with a `[sync]` section and
//! its own TLS identity, its daemon started and stopped, updates dropped
//! into its local queue and read back from its spool.
#![allow(dead_code)] // each test uses its own part

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, Server};

/// A free TCP port on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Register updates of one real key (made by ripem-keygen in `dir`),
/// from `origin`, one per time in `times`: each passes every check.
pub fn updates(dir: &std::path::Path, origin: &str, times: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    let armored = crate::common::rpgp_key(dir, origin, &["--uid", "Sync Test <sync@example.org>"]);
    let parsed = ripem_openpgp::parse_armored_keys(&armored).unwrap();
    let fingerprint = parsed[0].fingerprint().unwrap();
    let block = armored.replace("\r\n", "\n").trim_end().to_string();
    times
        .map(|n| {
            let mut fields = ripem_update::Fields::new(
                ripem_update::Kind::Register,
                origin,
                1_700_000_000_000 + n,
                fingerprint.clone(),
            );
            fields.key = Some(block.clone());
            ripem_update::Update::new(fields).unwrap().to_bytes().to_vec()
        })
        .collect()
}

/// An update in canonical form whose key is not a key: it reads, and
/// fails the checks.
pub fn fake_update(origin: &str) -> Vec<u8> {
    format!(
        "Update: register\nOrigin: {origin}\nTime: 1700000000000\nFingerprint: {}\nKey:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n \n mQINBGV=\n -----END PGP PUBLIC KEY BLOCK-----\n",
        "AB".repeat(20)
    )
    .into_bytes()
}

/// The `Fingerprint:` of an update.
pub fn fingerprint_of(update: &[u8]) -> String {
    let text = String::from_utf8_lossy(update);
    let line = text.lines().find(|line| line.starts_with("Fingerprint: ")).unwrap();
    line["Fingerprint: ".len()..].to_string()
}

/// Lower-case hex SHA-256, computed by the system's sha256sum.
pub fn id_of(bytes: &[u8]) -> String {
    let run = crate::common::run_with(
        {
            let mut command = Command::new("sha256sum");
            command.arg("-");
            command
        },
        bytes,
    );
    run.stdout.split(' ').next().unwrap().to_string()
}

/// One keysync server.
pub struct Node {
    pub server: Server,
    pub name: String,
    pub port: u16,
    pub pin: String,
    base: String,
    child: Option<Child>,
}

impl Node {
    /// A server named `name` with a fresh identity and no peers yet.
    pub fn new(name: &str) -> Node {
        let port = free_tcp_port();
        let server = Server::new();
        let base = std::fs::read_to_string(&server.config).unwrap();
        let base = format!("{base}\n[sync]\nserver_id = \"{name}\"\nlisten = [\"127.0.0.1:{port}\"]\n");
        std::fs::write(&server.config, &base).unwrap();
        let run = server.run("keysync", &["--init"], b"");
        assert_eq!(run.code, 0, "keysync --init: {}", run.stderr);
        let pin = run.stdout.trim().strip_prefix("pin: ").unwrap().to_string();
        Node {
            server,
            name: name.to_string(),
            port,
            pin,
            base,
            child: None,
        }
    }

    /// Rewrites the configuration with these peers (and `extra` in [sync]).
    pub fn set_peers(&mut self, peers: &[&Node], extra: &str) {
        let mut text = format!("{}{extra}\n", self.base);
        for (priority, peer) in peers.iter().enumerate() {
            text.push_str(&format!(
                "[[sync.peer]]\nname = \"{}\"\naddress = \"127.0.0.1:{}\"\npin = \"{}\"\npriority = {}\n",
                peer.name, peer.port, peer.pin, priority
            ));
        }
        std::fs::write(&self.server.config, text).unwrap();
    }

    pub fn log_path(&self) -> PathBuf {
        self.server.path("keysync.log")
    }

    /// Everything the daemon logged so far (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the daemon, logging to `keysync.log`, and waits until it listens.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(bin("keysync"))
            .arg("--config")
            .arg(&self.server.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "keysync did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status();
        assert!(status.unwrap().success());
    }

    /// Kills the daemon with SIGKILL.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        child.wait().ok().and_then(|status| status.code())
    }

    /// Puts an update into the local queue as keyreg does: a batch (of
    /// one) written to tmp/, then renamed into new/.
    pub fn queue(&self, bytes: &[u8]) -> String {
        let id = id_of(bytes);
        let mut batch = ripem_update::BatchWriter::new(Vec::new()).unwrap();
        batch.push(bytes).unwrap();
        self.queue_file(&id, &batch.into_inner());
        id
    }

    /// Puts `contents` into the local queue as the file `name`.
    pub fn queue_file(&self, name: &str, contents: &[u8]) {
        let tmp = self.server.path("sync/queue/tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(self.server.path("sync/queue/new")).unwrap();
        std::fs::write(tmp.join(name), contents).unwrap();
        std::fs::rename(tmp.join(name), self.server.path("sync/queue/new").join(name)).unwrap();
    }

    /// Ids delivered to keyreg (`spool/sync/new`).
    pub fn delivered(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.server.path("spool/sync/new"))
            .map(|dir| {
                dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// `keysync --status`.
    pub fn status(&self) -> String {
        let run = self.server.run("keysync", &["--status"], b"");
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout
    }

    /// The ids in the store, through `keysync --dump`, each checked
    /// against its file's bytes; fails if the store holds an id twice.
    pub fn stored(&self) -> Vec<String> {
        let dir = self.server.path("dump");
        let _ = std::fs::remove_dir_all(&dir);
        let run = self.server.run("keysync", &["--dump", dir.to_str().unwrap()], b"");
        assert_eq!(run.code, 0, "{}", run.stderr);
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert_eq!(id_of(&std::fs::read(entry.path()).unwrap()), name);
            ids.push(name);
        }
        ids.sort();
        let records = format!("wrote {} updates", ids.len());
        assert!(run.stderr.contains(&records), "{} for {} ids", run.stderr, ids.len());
        ids
    }

    /// How many times the log says the update `id` was stored.
    pub fn times_stored(&self, id: &str) -> usize {
        self.log()
            .lines()
            .filter(|line| line.contains("stored") && line.contains(id))
            .count()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").arg("-CONT").arg(child.id().to_string()).status();
        }
        self.crash();
    }
}

/// Waits up to `limit` for `condition`, then says whether it held.
pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}
