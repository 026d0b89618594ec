//! `ripem-bench recon`: the cost of a repair by reconciliation between two
//! real keysync daemons, against listing everything.
//!
//! Two servers share n updates and differ in k (k/2 held only by each).
//! The updates are made fast: one real key (made by `ripem-keygen`), one
//! register update per distinct `Time:`, so each passes every check; the
//! store files are written directly in keysync's record format, marked
//! local (nothing to hand to keyreg). Neither side has any bookkeeping of
//! the other, so the repair is the recovery path: one session on connect,
//! then `GETID`s. Server a dials b through a counting TCP relay, so the
//! bytes are counted at the socket, both ways, TLS included; b cannot
//! reach a, so no second connection carries anything. The baseline is what
//! the same repair costs by `LIST 1-` on both sides (KX bytes of the
//! `IHAVE` lines, computed from the stores, plus the same updates fetched):
//! what a peer with no bookkeeping paid before reconciliation.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Longest a repair may take before the run is abandoned.
const REPAIR_LIMIT: Duration = Duration::from_secs(600);

/// One benchmark run's figures.
pub struct Row {
    n: u64,
    k: u64,
    socket_bytes: u64,
    kx_bytes: u64,
    seconds: f64,
    list_bytes: u64,
}

/// The table's header.
pub const HEADER: &str = "| n | k | bytes at the socket | KX bytes (status) | seconds (session and fetch) | LIST 1- KX bytes | ratio |\n|---:|---:|---:|---:|---:|---:|---:|";

impl Row {
    /// The row in the README's table form.
    pub fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.2} | {} | {:.1}× |",
            self.n,
            self.k,
            self.socket_bytes,
            self.kx_bytes,
            self.seconds,
            self.list_bytes,
            self.list_bytes as f64 / self.socket_bytes.max(1) as f64
        )
    }
}

fn updates(bin_dir: &Path, dir: &Path, origin: &str, count: u64, first: u64) -> Result<Vec<Vec<u8>>> {
    let public = dir.join(format!("{origin}.asc"));
    if !public.exists() {
        let made = Command::new(bin_dir.join("ripem-keygen"))
            .args(["--uid", "Bench <bench@example.org>", "--public"])
            .arg(&public)
            .output()
            .context("running ripem-keygen")?;
        if !made.status.success() {
            bail!("ripem-keygen: {}", String::from_utf8_lossy(&made.stderr));
        }
    }
    let armored = std::fs::read_to_string(&public).with_context(|| format!("reading {}", public.display()))?;
    let keys = ripem_openpgp::parse_armored_keys(&armored)?;
    let fingerprint = keys.first().context("no key")?.fingerprint()?;
    let block = armored.replace("\r\n", "\n").trim_end().to_string();
    (first..first + count)
        .map(|n| {
            let mut fields = ripem_update::Fields::new(
                ripem_update::Kind::Register,
                origin,
                1_700_000_000_000 + n,
                fingerprint.clone(),
            );
            fields.key = Some(block.clone());
            Ok(ripem_update::Update::new(fields)?.to_bytes().to_vec())
        })
        .collect()
}

/// Writes `sync/updates.log` in keysync's format (see its `store` module),
/// every record marked local.
fn write_store(path: &Path, updates: &[&Vec<u8>]) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (index, bytes) in updates.iter().enumerate() {
        let seq = index as u64 + 1;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq.to_be_bytes());
        hasher.update(&[1]);
        hasher.update(bytes);
        out.write_all(&(bytes.len() as u32).to_be_bytes())?;
        out.write_all(&hasher.finalize().to_be_bytes())?;
        out.write_all(&seq.to_be_bytes())?;
        out.write_all(&[1])?;
        out.write_all(bytes)?;
    }
    out.flush()?;
    Ok(())
}

/// KX bytes of answering `LIST 1-` over a store of `count` updates.
fn list_bytes(count: u64) -> u64 {
    let lines: u64 = (1..=count)
        .map(|seq| seq.to_string().len() as u64 + 1 + 40 + 1 + 64 + 2)
        .sum();
    // Per IHAVE of 1000 lines: tag, command, the LIST's tag, the end.
    lines + (count / 1000 + 1) * 22 + 20
}

/// A relay to `target` counting the bytes both ways.
fn relay(target: u16, count: Arc<AtomicU64>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone(), server.try_clone()),
                (server.try_clone(), client.try_clone()),
            ]
            .into_iter()
            .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
            {
                let count = Arc::clone(&count);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 1 << 16];
                    while let Ok(read) = from.read(&mut buffer) {
                        if read == 0 || to.write_all(&buffer[..read]).is_err() {
                            break;
                        }
                        count.fetch_add(read as u64, Ordering::Relaxed);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    Ok(port)
}

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Makes a server's directory, configuration and identity; its pin.
fn server(bin_dir: &Path, dir: &Path, name: &str, port: u16) -> Result<(PathBuf, String)> {
    std::fs::create_dir_all(dir.join("sync"))?;
    let config = dir.join("keyserver.toml");
    let text = format!(
        "state_dir = \"{}\"\n[sync]\nserver_id = \"{name}\"\nlisten = [\"127.0.0.1:{port}\"]\n",
        dir.display()
    );
    std::fs::write(&config, text)?;
    let init = Command::new(bin_dir.join("keysync"))
        .arg("--config")
        .arg(&config)
        .arg("--init")
        .output()?;
    if !init.status.success() {
        bail!("keysync --init: {}", String::from_utf8_lossy(&init.stderr));
    }
    let pin = String::from_utf8_lossy(&init.stdout)
        .trim()
        .trim_start_matches("pin: ")
        .to_string();
    Ok((config, pin))
}

fn add_peer(config: &Path, name: &str, address: &str, pin: &str) -> Result<()> {
    let mut text = std::fs::read_to_string(config)?;
    text.push_str(&format!(
        "[[sync.peer]]\nname = \"{name}\"\naddress = \"{address}\"\npin = \"{pin}\"\npriority = 1\n"
    ));
    std::fs::write(config, text)?;
    Ok(())
}

fn start(bin_dir: &Path, config: &Path, dir: &Path) -> Result<Daemon> {
    let log = std::fs::File::create(dir.join("keysync.log"))?;
    let child = Command::new(bin_dir.join("keysync"))
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    Ok(Daemon { child })
}

/// The peer line of a status file once it shows `ours` and a
/// reconciliation: the reconciliation's KX bytes and milliseconds.
fn repaired(status: &Path, ours: u64) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(status).ok()?;
    let words: Vec<&str> = text.lines().nth(1)?.split(' ').collect();
    let head: Vec<&str> = text.lines().next()?.split(' ').collect();
    (head.get(3)? == &ours.to_string().as_str() && words.len() == 10)
        .then(|| Some((words[8].parse().ok()?, words[9].parse().ok()?)))
        .flatten()
}

/// One run: n shared updates, k differing.
pub fn run(bin_dir: &Path, work: &Path, n: u64, k: u64) -> Result<Row> {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work)?;
    let shared = updates(bin_dir, work, "bench-shared", n, 0)?;
    let only_a = updates(bin_dir, work, "bench-a", k / 2, n)?;
    let only_b = updates(bin_dir, work, "bench-b", k - k / 2, n)?;
    let (dir_a, dir_b) = (work.join("a"), work.join("b"));
    let (port_a, port_b) = (free_port()?, free_port()?);
    let (config_a, pin_a) = server(bin_dir, &dir_a, "a", port_a)?;
    let (config_b, pin_b) = server(bin_dir, &dir_b, "b", port_b)?;
    write_store(
        &dir_a.join("sync/updates.log"),
        &shared.iter().chain(&only_a).collect::<Vec<_>>(),
    )?;
    write_store(
        &dir_b.join("sync/updates.log"),
        &shared.iter().chain(&only_b).collect::<Vec<_>>(),
    )?;
    let counted = Arc::new(AtomicU64::new(0));
    let relay_port = relay(port_b, Arc::clone(&counted))?;
    add_peer(&config_a, "b", &format!("127.0.0.1:{relay_port}"), &pin_b)?;
    // b cannot reach a: the only connection is a's, through the relay.
    add_peer(&config_b, "a", &format!("127.0.0.1:{}", free_port()?), &pin_a)?;
    let _b = start(bin_dir, &config_b, &dir_b)?;
    let started = Instant::now();
    let _a = start(bin_dir, &config_a, &dir_a)?;
    let total = n + k;
    loop {
        if let (Some((kx, millis)), Some(_)) = (
            repaired(&dir_a.join("sync/status"), total),
            repaired(&dir_b.join("sync/status"), total),
        ) {
            let seconds = millis as f64 / 1000.0;
            let update_bytes: u64 = only_a.iter().chain(&only_b).map(|u| u.len() as u64 + 150).sum();
            return Ok(Row {
                n,
                k,
                socket_bytes: counted.load(Ordering::Relaxed),
                kx_bytes: kx,
                seconds,
                list_bytes: list_bytes(n + k / 2) + list_bytes(n + k - k / 2) + update_bytes,
            });
        }
        if started.elapsed() > REPAIR_LIMIT {
            bail!("no repair within {REPAIR_LIMIT:?}; see {}", work.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
