//! keyserv: answering lookups over UDP from the key database.
//!
//! Each listening socket is served by one worker thread per core, all
//! reading the same socket (so one busy client spreads over every core).
//! A worker takes up to [`BATCH`] datagrams with one `recvmmsg`, answers
//! them into buffers it reuses, and sends the answers with one `sendmmsg`:
//! nothing is allocated per request on the lookup path but the address.
//! The requests the answer cache can't answer are decoded once and their
//! lookups warmed together before any is answered, so that the batch's
//! misses in the mapped file overlap rather than queue.
//! Each worker keeps its own database handle, a [`LiveReader`] (the
//! workers share its mappings of the files): opened
//! without GDBM's lock, and guarded by the database's lock file, held
//! shared only while a batch is answered. keyreg takes that lock
//! exclusively for its short write window and bumps a generation number in
//! it; the next batch sees the new number and reopens the handle, so it
//! reads the new data. SIGUSR1 (keyreg is about to write) makes workers
//! step aside so the writer gets the lock at once; lookups arriving during
//! the window wait for it, and are never dropped nor answered NOTFOUND for
//! a key that exists. The workers share the answers they sent
//! ([`AnswerCache`], bounded by bytes, evicting by CLOCK, and taking an
//! answer only when its request was seen recently), so a repeated lookup
//! skips parsing and the database; a write makes them forget only the
//! answers about the keys it changed (the change journal). Answers and their bytes are rate limited
//! per source network ([`RateLimiter`], shared with hkpd), and an answer more than three
//! times as large as its request goes only to a source that sent a valid
//! cookie ([`ripem_core::cookie`]); the others get the cookie. The cookie is
//! checked only for such answers, a cached one before it is copied.
//! SIGHUP reloads the configuration (redirects,
//! logging, rate limits) and reopens the database; SIGTERM/SIGINT stop
//! the workers and remove the pid file. Requesters are not logged unless
//! `log_requests` is set; `log_answers` (`keyserv -v`) logs each answer's
//! type alone.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::answer_cache::{AnswerCache, Doorkeeper};
use crate::lookup::{self, Handled};
use crate::udp::{self, Batch};
use ripem_core::config::Config;
use ripem_core::cookie::{self, CookieGate, CookieJar};
use ripem_core::exit::{self, ExitStatus};
use ripem_core::pidfile::{PidFile, PidFileError};
use ripem_core::protocol::{parse_request, Request};
use ripem_core::ratelimit::{source_network, Limits, RateLimiter};
use ripem_core::signals;
use ripem_keydb::journal;
use ripem_keydb::{LiveReader, Mappings};

/// Datagrams taken and answered per system call (at most 64: a bit mask
/// marks the cache misses of a batch).
pub const BATCH: usize = 32;
/// The longest request read; a longer one is answered BADFMT.
pub const MAX_REQUEST: usize = 4096;
/// How long a worker blocks in one receive before looking at the flags.
const RECEIVE_TIMEOUT: Duration = Duration::from_millis(50);
/// How long a lookup waits for keyreg's write window to end.
const READER_WAIT: Duration = Duration::from_secs(10);
/// Socket receive buffer asked for, so bursts queue rather than drop.
const RECEIVE_BUFFER: usize = 4 << 20;
/// Why keyserv could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The system error (e.g. address in use).
        source: io::Error,
    },
    /// The pid file is held by another keyserv, or can't be written.
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(nix::Error),
    /// No listening address was given.
    #[error("no address to listen on")]
    NoListen,
}

impl ExitStatus for ServerError {
    fn exit_code(&self) -> u8 {
        match self {
            ServerError::PidFile(inner) => inner.exit_code(),
            ServerError::Bind { .. } => exit::UNAVAILABLE,
            ServerError::Signals(_) => exit::OSERR,
            ServerError::NoListen => exit::CONFIG,
        }
    }
}

/// What the workers read of the configuration; swapped on SIGHUP.
struct Settings {
    database: PathBuf,
    lock: PathBuf,
    redirects: BTreeMap<String, String>,
    log_requests: bool,
    log_answers: bool,
    allow_quit: bool,
    limiter: Option<RateLimiter>,
    cookies: bool,
    /// Which answers are worth keeping in the cache (it goes with it).
    doorkeeper: Doorkeeper,
}

impl Settings {
    fn from_config(config: &Config) -> Settings {
        Settings {
            database: config.paths.database.clone(),
            lock: config.paths.database_lock(),
            redirects: config.keyserv.redirect.clone(),
            log_requests: config.keyserv.log_requests,
            log_answers: config.keyserv.log_answers,
            allow_quit: config.keyserv.allow_quit,
            limiter: RateLimiter::new(Limits {
                rate: config.keyserv.rate_limit,
                burst: config.keyserv.rate_burst,
                byte_rate: config.keyserv.rate_bytes,
                byte_burst: config.keyserv.rate_burst_bytes,
            }),
            cookies: config.keyserv.cookies,
            doorkeeper: Doorkeeper::for_cache(config.keyserv.answer_cache_bytes),
        }
    }
}

/// State shared by the main thread and the workers.
struct Shared {
    settings: RwLock<Settings>,
    cache: RwLock<AnswerCache>,
    /// The cookie secret, drawn at start and kept across SIGHUP so the
    /// cookies clients hold stay good.
    cookies: CookieJar,
    /// The database's mappings, which every worker's reader shares.
    maps: Mappings,
    /// Bumped on SIGHUP: workers reopen the database from the new settings.
    generation: AtomicU64,
    stop: AtomicBool,
}

/// Logs one line on stderr, prefixed with the program name.
fn log(line: &str) {
    eprintln!("keyserv: {line}");
}

fn new_cache(config: &Config) -> AnswerCache {
    AnswerCache::new(
        &journal::path_for(&config.paths.database_lock()),
        config.keyserv.answer_cache_bytes,
    )
}

fn bind(addr: SocketAddr) -> Result<UdpSocket, ServerError> {
    let bind_err = |source| ServerError::Bind { addr, source };
    let socket = UdpSocket::bind(addr).map_err(bind_err)?;
    socket.set_read_timeout(Some(RECEIVE_TIMEOUT)).map_err(bind_err)?;
    // The kernel may grant less (net.core.rmem_max); that only means a
    // smaller queue for bursts.
    let _ = udp::set_receive_buffer(&socket, RECEIVE_BUFFER);
    Ok(socket)
}

/// Runs keyserv until SIGTERM/SIGINT (or an allowed QUIT). `reload` is
/// called on SIGHUP to read the configuration again.
pub fn serve(config: &Config, listen: &[SocketAddr], reload: &dyn Fn() -> Option<Config>) -> Result<(), ServerError> {
    if listen.is_empty() {
        return Err(ServerError::NoListen);
    }
    let sockets = listen
        .iter()
        .map(|addr| bind(*addr).map(Arc::new))
        .collect::<Result<Vec<_>, ServerError>>()?;
    signals::install().map_err(ServerError::Signals)?;
    let shared = Arc::new(Shared {
        settings: RwLock::new(Settings::from_config(config)),
        cache: RwLock::new(new_cache(config)),
        cookies: CookieJar::random(),
        maps: Mappings::default(),
        generation: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let _pid_file = PidFile::acquire(&config.paths.pid_file)?;
    let addresses: Vec<String> = sockets
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let per_socket = thread::available_parallelism().map_or(2, |n| n.get()).min(16);
    log(&format!(
        "started, pid {}, answering on {} ({per_socket} threads each), database {}",
        std::process::id(),
        addresses.join(" "),
        config.paths.database.display()
    ));
    ripem_core::sdnotify::ready();

    let workers: Vec<_> = sockets
        .iter()
        .flat_map(|socket| (0..per_socket).map(move |_| Arc::clone(socket)))
        .map(|socket| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || worker(&socket, &shared))
        })
        .collect();

    while !shared.stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(5));
        if signals::terminate_requested() {
            shared.stop.store(true, Ordering::SeqCst);
        }
        if signals::take_reload() {
            match reload() {
                Some(new_config) => {
                    // Workers hold the settings for a whole batch, so none
                    // is under way while they are replaced; the cache goes
                    // with them.
                    if let Ok(mut settings) = shared.settings.write() {
                        *settings = Settings::from_config(&new_config);
                        if let Ok(mut cache) = shared.cache.write() {
                            *cache = new_cache(&new_config);
                        }
                    }
                    log("configuration reloaded");
                }
                None => log("configuration not reloaded; keeping the old one"),
            }
            // Either way SIGHUP means "reopen": each worker opens the
            // database afresh before its next batch.
            shared.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
    log("stopped");
    Ok(())
}

/// A request and its answer, to remember.
type RequestAndAnswer = (Box<[u8]>, Box<[u8]>);

/// What a worker's database pass keeps from batch to batch, so that it
/// allocates nothing of its own per batch.
#[derive(Default)]
struct Scratch {
    /// The batch's requests left for the database, decoded once (`None`
    /// for the others), by index in the batch.
    requests: Vec<Option<Request>>,
    /// Answers read from GDBM that carry the record asked for.
    found: Vec<RequestAndAnswer>,
}

/// One thread's receive–answer loop on a socket it shares.
fn worker(socket: &UdpSocket, shared: &Shared) {
    let mut batch = Batch::new(BATCH, MAX_REQUEST);
    let mut reader: Option<LiveReader> = None;
    let mut seen_generation = u64::MAX;
    let mut seen_writer = signals::release_requests();
    let mut scratch = Scratch::default();
    while !shared.stop.load(Ordering::SeqCst) {
        match batch.receive(socket, true) {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(err) => {
                log(&format!("receive error: {err}"));
                thread::sleep(RECEIVE_TIMEOUT);
                continue;
            }
        }
        let Ok(settings) = shared.settings.read() else {
            return;
        };
        let generation = shared.generation.load(Ordering::SeqCst);
        let reader = match &mut reader {
            Some(reader) if generation == seen_generation => reader,
            _ => {
                seen_generation = generation;
                reader.insert(LiveReader::new(&settings.database, &settings.lock, &shared.maps))
            }
        };
        let writer = signals::release_requests();
        if writer != seen_writer {
            seen_writer = writer;
            reader.yield_to_writer();
        }
        let turn = Turn {
            settings: &settings,
            gate: CookieGate {
                jar: settings.cookies.then_some(&shared.cookies),
                now: cookie::unix_seconds(),
            },
            now: Instant::now(),
        };
        let Some(misses) = turn.answer_from_cache(&mut batch, shared, reader) else {
            return;
        };
        if misses != 0 {
            turn.answer_from_database(&mut batch, shared, reader, misses, &mut scratch);
        }
        send(&mut batch, socket);
    }
}

/// What one batch is answered with: the settings, the cookie check and
/// the clock, read once.
struct Turn<'a> {
    settings: &'a Settings,
    gate: CookieGate<'a>,
    now: Instant,
}

/// A received datagram as the answer path sees it: a datagram cut short
/// is answered as an empty (malformed) one, and a last `Cookie:` line is
/// taken off the request (see [`cookie::split`]).
fn request_of(datagram: &[u8], truncated: bool) -> (&[u8], Option<&[u8]>) {
    cookie::split(if truncated { b"" } else { datagram })
}

impl Turn<'_> {
    /// Whether the rate limit lets `peer` have one more answer.
    fn admits(&self, peer: &SocketAddr) -> bool {
        self.settings
            .limiter
            .as_ref()
            .is_none_or(|limiter| limiter.allow(source_network(peer), self.now))
    }

    /// Whether `peer`'s network has spent its bytes since the first pass
    /// admitted its request (on answers earlier in the same batch).
    fn overdrawn(&self, peer: &SocketAddr) -> bool {
        self.settings
            .limiter
            .as_ref()
            .is_some_and(|limiter| limiter.overdrawn(source_network(peer), self.now))
    }

    /// Counts the bytes of `answer` against `peer`'s network and logs it.
    fn account(&self, peer: &SocketAddr, answer: &[u8]) {
        if let Some(limiter) = &self.settings.limiter {
            limiter.spend(source_network(peer), answer.len(), self.now);
        }
        log_answer(self.settings, peer, answer);
    }

    /// First pass, without the database lock: the rate limit, and the
    /// answers the cache has for the generation the lock file names (a
    /// large one checked against its cookie before it is copied). Returns
    /// the bit mask of the datagrams left for the database; `None` if the
    /// cache's lock is poisoned.
    fn answer_from_cache(&self, batch: &mut Batch, shared: &Shared, reader: &mut LiveReader) -> Option<u64> {
        let database_generation = reader.current_generation().ok();
        let cache = shared.cache.read().ok()?;
        let mut misses = 0u64;
        batch.answer_all(|index, datagram, truncated, peer, out| {
            if !self.admits(&peer) {
                return;
            }
            let (request, cookie) = request_of(datagram, truncated);
            match database_generation.and_then(|generation| cache.get(generation, request)) {
                Some(answer) => {
                    let begin = out.len();
                    if self.gate.allows(datagram.len(), answer.len(), cookie, peer.ip()) {
                        out.extend_from_slice(answer);
                    } else {
                        self.gate.refuse(peer.ip(), out);
                    }
                    self.account(&peer, &out[begin..]);
                }
                None => misses |= 1 << index,
            }
        });
        Some(misses)
    }

    /// Second pass, under the database lock: the datagrams in `misses`,
    /// decoded first and their lookups warmed together (see
    /// [`ripem_keydb::KeyStore::prefetch_records`]). Answers that carry the
    /// record asked for are remembered in the cache whole, before the
    /// cookie check, so the request repeated with its cookie is a cache hit.
    fn answer_from_database(
        &self,
        batch: &mut Batch,
        shared: &Shared,
        reader: &mut LiveReader,
        misses: u64,
        scratch: &mut Scratch,
    ) {
        let session = match reader.begin(READER_WAIT) {
            Ok(session) => session,
            Err(err) => {
                log(&format!("cannot read the database, requests dropped: {err}"));
                return;
            }
        };
        let generation = session.generation();
        // The lock file is held shared: the journal is complete.
        if shared
            .cache
            .read()
            .map_or(true, |cache| cache.generation() != Some(generation))
        {
            if let Ok(mut cache) = shared.cache.write() {
                cache.follow(generation);
            }
        }
        let settings = self.settings;
        let Scratch { requests, found } = scratch;
        requests.clear();
        requests.extend((0..batch.len()).map(|index| {
            let (datagram, truncated, _) = batch.datagram(index);
            (misses & (1 << index) != 0).then(|| parse_request(request_of(datagram, truncated).0))
        }));
        if let Some(store) = session.store() {
            store.prefetch_records(requests.iter().filter_map(|request| match request {
                Some(Request::LookUser(query)) => Some(query),
                _ => None,
            }));
        }
        let mut failed = None;
        batch.answer_all(|index, datagram, truncated, peer, out| {
            let Some(decoded) = requests[index].take() else {
                return;
            };
            if self.overdrawn(&peer) {
                return;
            }
            let begin = out.len();
            let (request, cookie) = request_of(datagram, truncated);
            match lookup::answer(decoded, session.store(), &settings.redirects, settings.allow_quit, out) {
                Ok(Handled::Found) if settings.doorkeeper.seen_before(request) => {
                    found.push((request.into(), out[begin..].into()))
                }
                Ok(Handled::Found | Handled::Answered) => {}
                Ok(Handled::Quit) => {
                    log("QUIT received; stopping");
                    shared.stop.store(true, Ordering::SeqCst);
                }
                Err(err) => failed = Some(err),
            }
            if out.len() == begin {
                return;
            }
            if !self.gate.allows(datagram.len(), out.len() - begin, cookie, peer.ip()) {
                out.truncate(begin);
                self.gate.refuse(peer.ip(), out);
            }
            self.account(&peer, &out[begin..]);
        });
        drop(session);
        if !found.is_empty() {
            if let Ok(mut cache) = shared.cache.write() {
                for (request, answer) in found.drain(..) {
                    cache.insert(generation, &request, &answer);
                }
            }
            found.clear();
        }
        if let Some(err) = failed {
            log(&format!("lookup failed, reopening the database: {err}"));
            reader.release();
        }
    }
}

fn send(batch: &mut Batch, socket: &UdpSocket) {
    if let Err(err) = batch.send_replies(socket) {
        log(&format!("sending answers: {err}"));
    }
}

/// Logs an answer's first line when asked to: with who asked only under
/// `log_requests` (privacy), alone under `log_answers` (`keyserv -v`).
fn log_answer(settings: &Settings, peer: &SocketAddr, answer: &[u8]) {
    if !settings.log_requests && !settings.log_answers {
        return;
    }
    if let Some(kind) = answer.split(|&b| b == b'\n').next().filter(|kind| !kind.is_empty()) {
        let kind = String::from_utf8_lossy(kind);
        match settings.log_requests {
            true => log(&format!("{peer}: answered {kind}")),
            false => log(&format!("answered {kind}")),
        }
    }
}
