//! The whole benchmark: builds a database from the corpus and prints the
//! figures `scripts/bench` reports.
//!
//! 1. `keyreg --import` of the corpus: keys per second, peak RSS, database
//!    size; then of fresh Ed25519 keys alone (at most 20,000) into a scratch
//!    database, the figure with the least signature-checking cost per key;
//!    then of the Debian keyring (real keys, heavily certified); the SKS
//!    phase (`sks`) sets it against SKS's build in the same run.
//! 2. Lookups of addresses at random over the whole corpus, against
//!    keyserv with server cookies on (each load socket makes the cookie
//!    round trip once, then sends its cookie with every request) and the
//!    no-op responder answering with keyserv's mean answer size,
//!    alternating after a warm-up pass over every address at each; then
//!    keyserv with cookies off: throughput, p50/p99, keyserv's throughput
//!    as a share of the no-op's, and keyserv's anonymous memory.
//! 3. The same lookups while the keyreg daemon registers a new key sent
//!    through copymail every 200 ms: lost requests, wrong NOTFOUND answers
//!    (every address asked for is registered), p99.
//! 4. db2flat: time and peak RSS; keyserv's RSS.
//!
//! Everything runs in a fresh work directory on 127.0.0.1; every child is
//! stopped (SIGTERM, then SIGKILL after a few seconds) before returning.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ripem_core::protocol::{self, Answer};

use crate::corpus::{self, Corpus, Mix};
use crate::load::{self, LoadReport, LoadSpec, Order};

/// A real-world, heavily certified keyring: the Debian developers' keys.
pub const REAL_WORLD_KEYRING: &str = "/usr/share/keyrings/debian-keyring.gpg";
/// The configuration of keyserv with cookies off, in the work directory.
const NO_COOKIES_CONFIG: &str = "keyserver-no-cookies.toml";
/// One turn of keyserv or of the no-op when the load alternates between
/// them. Short, so that many pairs of turns meet the same spells of a
/// shared machine: single turns of 4 s at a million keys ranged from 0.49
/// to 1.08 of the no-op on one machine within two minutes.
const TURN: Duration = Duration::from_secs(2);

/// keyserv's and the no-op's load over alternating turns, and each pair
/// of turns' throughput ratio.
#[derive(Default)]
struct Alternation {
    served: LoadReport,
    baseline: LoadReport,
    shares: Vec<f64>,
}

/// `served`'s throughput as a share of `baseline`'s.
fn share_of(served: &LoadReport, baseline: &LoadReport) -> f64 {
    served.throughput() / baseline.throughput().max(1e-9)
}

impl Alternation {
    /// keyserv's throughput over all its turns as a share of the no-op's.
    fn share(&self) -> f64 {
        share_of(&self.served, &self.baseline)
    }

    /// The median and range of the pairs' ratios.
    fn spread(&self) -> String {
        let mut shares = self.shares.clone();
        shares.sort_by(f64::total_cmp);
        match (shares.first(), shares.last()) {
            (Some(low), Some(high)) => format!(
                "pairs of turns: median {:.2}, {low:.2}–{high:.2}",
                shares[shares.len() / 2]
            ),
            _ => "no turns".to_string(),
        }
    }
}

/// How many keys an import's summary line (`641 keys added, 0 merged, 264
/// refused; ...`) says the file held.
fn keys_offered(summary: &str) -> Option<usize> {
    let line = summary.lines().find(|line| line.contains(" keys added, "))?;
    let counts: Vec<usize> = line
        .split(';')
        .next()?
        .split(", ")
        .map(|part| part.split_whitespace().next()?.parse().ok())
        .collect::<Option<_>>()?;
    Some(counts.iter().sum())
}

/// How long to ask for every address once before measuring lookups (in
/// turn), so that the database file is in the page cache and mapped: a
/// pass at 100,000 lookups per second or more, plus a second.
fn warm_up(keys: usize) -> Duration {
    Duration::from_secs(keys as u64 / 100_000 + 1)
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Keys in the corpus.
    pub keys: usize,
    /// The corpus' algorithm mix.
    pub mix: Mix,
    /// How long each load phase lasts.
    pub duration: Duration,
    /// Where the workspace's programs are (`target/release`).
    pub bin_dir: PathBuf,
    /// Where corpora are cached.
    pub corpus_root: PathBuf,
    /// The scratch directory (emptied first).
    pub work_dir: PathBuf,
    /// Load generator sockets.
    pub sockets: usize,
    /// Requests in flight per socket.
    pub in_flight: usize,
    /// How often the merge phase registers a key.
    pub merge_every: Duration,
}

/// A program the benchmark started; stopped when dropped.
struct Running {
    child: Child,
    name: &'static str,
}

impl Running {
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: {} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident memory, its anonymous part (not the mapped database file)
    /// and the peak, from /proc, in KiB.
    fn memory(&self) -> Memory {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse().ok())
                .unwrap_or(0)
        };
        Memory {
            resident: field("VmRSS:"),
            anonymous: field("RssAnon:"),
            peak: field("VmHWM:"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A process's memory, in KiB.
#[derive(Debug, Clone, Copy)]
struct Memory {
    resident: u64,
    anonymous: u64,
    peak: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {} MB, of which {} MB anonymous (the rest is the mapped database file); peak {} MB",
            self.resident / 1024,
            self.anonymous / 1024,
            self.peak / 1024
        )
    }
}

/// The time and peak memory of one program run (`ripem-bench measure`).
struct Measured {
    seconds: f64,
    max_rss_kb: u64,
    output: String,
}

struct Bench {
    spec: RunSpec,
    corpus: Corpus,
    config: PathBuf,
    state: PathBuf,
    port: u16,
    addresses: Arc<Vec<String>>,
}

fn free_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs every phase and prints the figures.
pub fn run(spec: RunSpec) -> Result<()> {
    let corpus = corpus::ensure(&spec.corpus_root, spec.keys, spec.mix)?;
    let addresses: Vec<String> = fs::read_to_string(corpus.addresses())?
        .lines()
        .map(str::to_string)
        .collect();
    if spec.work_dir.exists() {
        fs::remove_dir_all(&spec.work_dir).with_context(|| format!("emptying {}", spec.work_dir.display()))?;
    }
    let state = spec.work_dir.join("state");
    fs::create_dir_all(&state)?;
    let port = free_port()?;
    let config = spec.work_dir.join("keyserver.toml");
    fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[keyserv]\nlisten = [\"127.0.0.1:{port}\"]\nrate_limit = 0\nrate_bytes = 0\n[mail]\ntransport = \"file\"\nfrom = \"keyserver@bench.example.org\"\n",
            state.display(),
        ),
    )?;
    // The same server with cookies off, to show what checking them costs.
    fs::write(
        spec.work_dir.join(NO_COOKIES_CONFIG),
        fs::read_to_string(&config)?.replace("[keyserv]\n", "[keyserv]\ncookies = false\n"),
    )?;
    let bench = Bench {
        spec,
        corpus,
        config,
        state,
        port,
        addresses: Arc::new(addresses),
    };
    println!(
        "ripem-keyserver benchmark: {} keys ({}% RSA), {} s per load phase, {} sockets x {} in flight, {} cores",
        bench.spec.keys,
        bench.spec.mix.rsa_percent,
        bench.spec.duration.as_secs(),
        bench.spec.sockets,
        bench.spec.in_flight,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    bench.import()?;
    let serving = bench.lookups()?;
    let merging = bench.merges()?;
    bench.dump(serving, merging)
}

impl Bench {
    fn bin(&self, name: &str) -> PathBuf {
        self.spec.bin_dir.join(name)
    }

    fn measure(&self, program: &str, config: &Path, args: &[&str]) -> Result<Measured> {
        let output = Command::new(std::env::current_exe()?)
            .arg("measure")
            .arg("--")
            .arg(self.bin(program))
            .arg("--config")
            .arg(config)
            .args(args)
            .stderr(Stdio::inherit())
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let Some((before, last)) = text.trim_end().rsplit_once('\n').or(Some(("", text.trim_end()))) else {
            bail!("no measurement from {program}");
        };
        let mut seconds = None;
        let mut max_rss_kb = None;
        let mut status = None;
        for field in last.split_whitespace() {
            match field.split_once('=') {
                Some(("seconds", v)) => seconds = v.parse().ok(),
                Some(("max_rss_kb", v)) => max_rss_kb = v.parse().ok(),
                Some(("status", v)) => status = v.parse::<i32>().ok(),
                _ => {}
            }
        }
        match (seconds, max_rss_kb, status) {
            (Some(seconds), Some(max_rss_kb), Some(0)) => Ok(Measured {
                seconds,
                max_rss_kb,
                output: before.to_string(),
            }),
            _ => bail!("{program} failed: {text}"),
        }
    }

    fn start(&self, name: &'static str, program: PathBuf, args: &[&str]) -> Result<Running> {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Running { child, name })
    }

    fn start_keyserv_with(&self, config: &Path) -> Result<Running> {
        let pid_file = self.state.join("keyserv.pid");
        let _ = fs::remove_file(&pid_file);
        let config = config.display().to_string();
        let keyserv = self.start("keyserv", self.bin("keyserv"), &["--config", &config])?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read_to_string(&pid_file).map_or(true, |t| t.trim().is_empty()) {
            if Instant::now() > deadline {
                bail!("keyserv did not start");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(keyserv)
    }

    fn load_spec(&self, target: SocketAddr) -> Result<LoadSpec> {
        Ok(LoadSpec {
            target,
            source: "127.0.0.1".parse()?,
            sockets: self.spec.sockets,
            in_flight: self.spec.in_flight,
            duration: self.spec.duration,
            timeout: Duration::from_secs(1),
            order: Order::Random,
        })
    }

    fn load(&self, target: SocketAddr) -> Result<LoadReport> {
        self.load_for(target, self.spec.duration)
    }

    fn load_for(&self, target: SocketAddr, duration: Duration) -> Result<LoadReport> {
        let spec = LoadSpec {
            duration,
            ..self.load_spec(target)?
        };
        load::run(&spec, Arc::clone(&self.addresses))
    }

    /// One pass over every address, in turn, at `target`.
    fn warm_up(&self, target: SocketAddr) -> Result<LoadReport> {
        let spec = LoadSpec {
            duration: warm_up(self.spec.keys),
            order: Order::InTurn,
            ..self.load_spec(target)?
        };
        load::run(&spec, Arc::clone(&self.addresses))
    }

    fn target(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn import(&self) -> Result<()> {
        let keyring = self.corpus.keyring().display().to_string();
        let measured = self.measure("keyreg", &self.config, &["--import", &keyring])?;
        let database = fs::metadata(self.state.join("keys.gdbm"))?.len();
        println!("\n1. keyreg --import");
        println!("   {}", measured.output.trim());
        println!(
            "   {} keys in {:.2} s = {:.0} keys/s; peak RSS {} MB; database {} MB ({} bytes per key)",
            self.spec.keys,
            measured.seconds,
            self.spec.keys as f64 / measured.seconds,
            measured.max_rss_kb / 1024,
            database >> 20,
            database / self.spec.keys.max(1) as u64
        );
        let fresh = corpus::ensure(
            &self.spec.corpus_root,
            self.spec.keys.min(20_000),
            Mix {
                rsa_percent: 0,
                certified: false,
            },
        )?;
        let config = self.scratch_config("ed25519")?;
        let keyring = fresh.keyring().display().to_string();
        let measured = self.measure("keyreg", &config, &["--import", &keyring])?;
        println!(
            "   fresh Ed25519 keys only: {} keys in {:.2} s = {:.0} keys/s",
            fresh.keys,
            measured.seconds,
            fresh.keys as f64 / measured.seconds
        );
        self.import_real_world()
    }

    /// A configuration for a fresh state directory `name` in the work
    /// directory, for an import of its own.
    fn scratch_config(&self, name: &str) -> Result<PathBuf> {
        let scratch = self.spec.work_dir.join(name);
        fs::create_dir_all(&scratch)?;
        let config = scratch.join("keyserver.toml");
        fs::write(
            &config,
            format!("state_dir = \"{}\"\n[mail]\ntransport = \"file\"\n", scratch.display()),
        )?;
        Ok(config)
    }

    /// The Debian keyring: real keys, heavily certified. Imported into a
    /// fresh database five times; the median run counts.
    fn import_real_world(&self) -> Result<()> {
        let keyring = Path::new(REAL_WORLD_KEYRING);
        let Ok(metadata) = fs::metadata(keyring) else {
            println!("   real-world keyring: {REAL_WORLD_KEYRING} is missing (Debian package debian-keyring); skipped");
            return Ok(());
        };
        let mut runs = Vec::new();
        let mut keys = 0;
        for run in 0..5 {
            let config = self.scratch_config(&format!("real-world-{run}"))?;
            let measured = self.measure("keyreg", &config, &["--import", REAL_WORLD_KEYRING])?;
            keys = keys_offered(&measured.output).context("keyreg's import summary")?;
            runs.push(measured.seconds);
        }
        runs.sort_by(f64::total_cmp);
        let median = runs[runs.len() / 2];
        let rate = keys as f64 / median;
        println!(
            "   real-world keyring {REAL_WORLD_KEYRING} ({keys} keys, {} KB each on average): median of 5 runs {median:.2} s = {rate:.0} keys/s (against SKS in the same run: the SKS phase)",
            metadata.len() / keys.max(1) as u64 / 1024,
        );
        Ok(())
    }

    /// keyserv, started and asked for every address once; and what that
    /// pass saw.
    fn start_warm_keyserv(&self) -> Result<(Running, LoadReport)> {
        self.start_warm_keyserv_with(&self.config)
    }

    fn start_warm_keyserv_with(&self, config: &Path) -> Result<(Running, LoadReport)> {
        let keyserv = self.start_keyserv_with(config)?;
        let pass = self.warm_up(self.target())?;
        Ok((keyserv, pass))
    }

    /// Phase 2; returns keyserv's memory at its end. keyserv (cookies on)
    /// and the no-op responder run side by side; after a warm-up pass over
    /// every address at each, the random load alternates between them in
    /// short turns, so both see the same spells of a shared machine. Then
    /// keyserv with cookies off, alternating with the same no-op.
    fn lookups(&self) -> Result<Memory> {
        let (mut keyserv, pass) = self.start_warm_keyserv()?;
        let noop_port = free_port()?;
        let noop_target = SocketAddr::from(([127, 0, 0, 1], noop_port));
        let reply_size = pass.mean_answer().to_string();
        let lifetime = 3 * warm_up(self.spec.keys) + 4 * self.spec.duration + Duration::from_secs(30);
        let seconds = lifetime.as_secs().to_string();
        let listen = noop_target.to_string();
        let mut noop = self.start(
            "no-op responder",
            std::env::current_exe()?,
            &[
                "noop",
                "--listen",
                &listen,
                "--reply-size",
                &reply_size,
                "--seconds",
                &seconds,
            ],
        )?;
        wait_for_answer(noop_target)?;
        self.warm_up(noop_target)?;
        let cookies = self.alternate(self.target(), noop_target)?;
        let memory = keyserv.memory();
        keyserv.stop();
        let (mut open, _) = self.start_warm_keyserv_with(&self.spec.work_dir.join(NO_COOKIES_CONFIG))?;
        let uncookied = self.alternate(self.target(), noop_target)?;
        open.stop();
        noop.stop();
        println!(
            "\n2. UDP lookups on loopback (closed loop, addresses at random over all {}; every one is registered)",
            self.addresses.len()
        );
        println!("   keyserv, cookies on:  {}", cookies.served.summary());
        println!("   no-op responder:      {}", cookies.baseline.summary());
        println!("   keyserv, cookies off: {}", uncookied.served.summary());
        println!("   no-op responder:      {}", uncookied.baseline.summary());
        println!(
            "   (each keyserv alternating with the no-op in {} turns of {} s each, after a warm-up pass at each)",
            cookies.shares.len(),
            TURN.as_secs_f64()
        );
        println!(
            "   keyserv / no-op throughput: {:.2} with cookies on ({}), {:.2} with cookies off ({})",
            cookies.share(),
            cookies.spread(),
            uncookied.share(),
            uncookied.spread()
        );
        println!(
            "   keyserv's anonymous memory (RssAnon) after the lookups: {} MB; resident {} MB (the rest maps the database file)",
            memory.anonymous / 1024,
            memory.resident / 1024
        );
        Ok(memory)
    }

    /// The random load at `server` and at `noop` in turn, for the phase's
    /// duration at each.
    fn alternate(&self, server: SocketAddr, noop: SocketAddr) -> Result<Alternation> {
        let turns = self.spec.duration.as_millis().div_ceil(TURN.as_millis()).max(2);
        let mut alternation = Alternation::default();
        for _ in 0..turns {
            let served = self.load_for(server, TURN)?;
            let baseline = self.load_for(noop, TURN)?;
            alternation.shares.push(share_of(&served, &baseline));
            alternation.served.then(served);
            alternation.baseline.then(baseline);
        }
        Ok(alternation)
    }

    /// Phase 3; returns keyserv's memory at its end.
    fn merges(&self) -> Result<Memory> {
        let feed = fs::read_to_string(self.corpus.feed())?;
        let blocks: Vec<String> = ripem_openpgp::find_armored_keys(&feed)
            .into_iter()
            .map(str::to_string)
            .collect();
        let (mut keyserv, _) = self.start_warm_keyserv()?;
        let config = self.config.display().to_string();
        let mut keyreg = self.start("keyreg", self.bin("keyreg"), &["--config", &config])?;
        let stop = AtomicBool::new(false);
        let fed = AtomicUsize::new(0);
        let report = std::thread::scope(|scope| {
            let feeder = scope.spawn(|| self.feed(&blocks, &stop, &fed));
            let report = self.load(self.target());
            stop.store(true, Ordering::SeqCst);
            let fed = feeder.join();
            (report, fed)
        });
        let (report, feeder) = report;
        let report = report?;
        match feeder {
            Ok(result) => result?,
            Err(_) => bail!("the feeder panicked"),
        }
        let fed = fed.load(Ordering::SeqCst);
        let new_dir = self.state.join("spool/add/new");
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read_dir(&new_dir).map_or(0, |d| d.count()) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let memory = keyserv.memory();
        let registered = (0..fed)
            .filter(|n| {
                ask(self.target(), &format!("LOOKUSER\nUser: feed{n}@feed.example.org\n"))
                    .is_some_and(|a| a.starts_with(b"USERINFO"))
            })
            .count();
        keyreg.stop();
        keyserv.stop();
        println!(
            "\n3. The same lookups while keyreg registers a key every {} ms",
            self.spec.merge_every.as_millis()
        );
        println!("   {fed} registrations mailed through copymail, {registered} found by keyserv afterwards");
        println!("   keyserv:            {}", report.summary());
        println!(
            "   lost requests: {}; wrong NOTFOUND answers: {}; other wrong answers: {}; p99 {:.2} ms",
            report.lost,
            report.not_found,
            report.other,
            report.percentile_ms(0.99)
        );
        Ok(memory)
    }

    /// Mails one feed key through copymail every `merge_every` until `stop`.
    fn feed(&self, blocks: &[String], stop: &AtomicBool, fed: &AtomicUsize) -> Result<()> {
        let config = self.config.display().to_string();
        for (n, block) in blocks.iter().enumerate() {
            let next = Instant::now() + self.spec.merge_every;
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let mail = format!(
                "From: feed{n}@feed.example.org\nTo: ripem-register-keys@bench.example.org\nSubject: register\nMessage-ID: <feed{n}@bench>\n\n{block}\n"
            );
            let mut copymail = Command::new(self.bin("copymail"))
                .args(["--config", &config, "--queue", "add"])
                .stdin(Stdio::piped())
                .spawn()?;
            if let Some(mut input) = copymail.stdin.take() {
                input.write_all(mail.as_bytes())?;
            }
            if !copymail.wait()?.success() {
                bail!("copymail failed");
            }
            fed.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        Ok(())
    }

    fn dump(&self, serving: Memory, merging: Memory) -> Result<()> {
        let measured = self.measure("db2flat", &self.config, &[])?;
        let text = fs::metadata(self.state.join("pub/pubkeys.txt"))?.len();
        println!("\n4. db2flat and memory");
        println!(
            "   db2flat: {:.2} s, peak RSS {} MB, pubkeys.txt {} MB",
            measured.seconds,
            measured.max_rss_kb / 1024,
            text >> 20
        );
        println!("   keyserv after the lookups: {serving}");
        println!("   keyserv after the merges:  {merging}");
        Ok(())
    }
}

/// One request, one answer (or None after a second), as a client asks:
/// a `COOKIE` answer makes it send the request again with the cookie.
fn ask(target: SocketAddr, request: &str) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let exchange = |request: &[u8]| -> Option<Vec<u8>> {
        socket.send_to(request, target).ok()?;
        let mut buffer = vec![0u8; 65_536];
        let (length, _) = socket.recv_from(&mut buffer).ok()?;
        buffer.truncate(length);
        Some(buffer)
    };
    let answer = exchange(request.as_bytes())?;
    match protocol::parse_answer(&answer) {
        Some(Answer::Cookie(cookie)) => exchange(&ripem_core::cookie::with_cookie(request.as_bytes(), &cookie)),
        _ => Some(answer),
    }
}

fn wait_for_answer(target: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ask(target, "LOOKUSER\nUser: probe@example.org\n").is_some() {
            return Ok(());
        }
    }
    bail!("nothing answers on {target}")
}

/// Runs `program` with `args`, then prints its wall time, peak RSS and
/// exit status as the last line of stdout (for [`run`]).
pub fn measure(program: &Path, args: &[String]) -> Result<()> {
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {}", program.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    println!(
        "seconds={seconds:.3} max_rss_kb={} status={}",
        usage.max_rss(),
        status.code().unwrap_or(-1)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::keys_offered;

    #[test]
    fn an_import_summary_counts_every_key_offered() {
        let output = "641 keys added, 3 merged, 264 refused; 1997 addresses added, 0 refused\n";
        assert_eq!(keys_offered(output), Some(908));
        assert_eq!(keys_offered("imported nothing"), None);
    }
}
