//! keyserv: answering lookups over UDP from the key database.
//!
//! One worker thread per listening socket; each holds its own read-only
//! database handle, opened when first needed. The main thread watches the
//! signal flags: SIGUSR1 (keyreg wants to write) makes every worker close
//! its handle within one receive timeout; the next lookup then waits on
//! the database lock until keyreg's write window ends, so it is delayed,
//! never dropped and never answered NOTFOUND for a key that exists.
//! SIGHUP reloads the configuration (redirects, logging) and reopens the
//! database; SIGTERM/SIGINT stop the workers and remove the pid file.
//! Requesters are not logged unless `log_requests` is set; `log_answers`
//! (`keyserv -v`) logs each answer's type alone.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::Duration;

use crate::config::Config;
use crate::pidfile::{PidFile, PidFileError};
use crate::protocol::{self, Lookup, Request, Response, MAX_DATAGRAM};
use crate::signals;
use crate::store::KeyStore;

/// How long a worker blocks in one receive before looking at the flags.
const RECEIVE_TIMEOUT: Duration = Duration::from_millis(20);
/// How long a lookup waits for keyreg's write window to end.
const READER_WAIT: Duration = Duration::from_secs(10);

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

/// What the workers read of the configuration; swapped on SIGHUP.
struct Settings {
    database: PathBuf,
    lock: PathBuf,
    redirects: BTreeMap<String, String>,
    log_requests: bool,
    log_answers: bool,
    allow_quit: bool,
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
        }
    }
}

/// State shared by the main thread and the workers.
struct Shared {
    settings: RwLock<Settings>,
    /// Bumped to make every worker close its database handle.
    generation: AtomicU64,
    stop: AtomicBool,
}

/// Logs one line on stderr, prefixed with the program name.
fn log(line: &str) {
    eprintln!("keyserv: {line}");
}

/// Runs keyserv until SIGTERM/SIGINT (or an allowed QUIT). `reload` is
/// called on SIGHUP to read the configuration again.
pub fn serve(config: &Config, listen: &[SocketAddr], reload: &dyn Fn() -> Option<Config>) -> Result<(), ServerError> {
    if listen.is_empty() {
        return Err(ServerError::NoListen);
    }
    let sockets = listen
        .iter()
        .map(|addr| {
            let socket = UdpSocket::bind(addr).map_err(|source| ServerError::Bind { addr: *addr, source })?;
            socket
                .set_read_timeout(Some(RECEIVE_TIMEOUT))
                .map_err(|source| ServerError::Bind { addr: *addr, source })?;
            Ok(socket)
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    signals::install().map_err(ServerError::Signals)?;
    let shared = Arc::new(Shared {
        settings: RwLock::new(Settings::from_config(config)),
        generation: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let _pid_file = PidFile::acquire(&config.paths.pid_file)?;
    let addresses: Vec<String> = sockets
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    log(&format!(
        "started, pid {}, answering on {}, database {}",
        std::process::id(),
        addresses.join(" "),
        config.paths.database.display()
    ));
    crate::sdnotify::ready();

    let workers: Vec<_> = sockets
        .into_iter()
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
        if signals::take_release() {
            shared.generation.fetch_add(1, Ordering::SeqCst);
        }
        if signals::take_reload() {
            match reload() {
                Some(new_config) => {
                    if let Ok(mut settings) = shared.settings.write() {
                        *settings = Settings::from_config(&new_config);
                    }
                    log("configuration reloaded");
                }
                None => log("configuration not reloaded; keeping the old one"),
            }
            shared.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
    log("stopped");
    Ok(())
}

/// One socket's receive–answer loop.
fn worker(socket: &UdpSocket, shared: &Shared) {
    let mut request = vec![0u8; MAX_DATAGRAM + 1];
    let mut answer = Vec::with_capacity(MAX_DATAGRAM);
    let mut database: Option<KeyStore> = None;
    let mut seen_generation = shared.generation.load(Ordering::SeqCst);
    while !shared.stop.load(Ordering::SeqCst) {
        let generation = shared.generation.load(Ordering::SeqCst);
        if generation != seen_generation {
            database = None;
            seen_generation = generation;
        }
        let (length, peer) = match socket.recv_from(&mut request) {
            Ok(received) => received,
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
                continue;
            }
        };
        let Ok(settings) = shared.settings.read() else {
            return;
        };
        if answer_request(&request[..length], &settings, &mut database, &mut answer, shared) {
            if settings.log_requests || settings.log_answers {
                let kind = String::from_utf8_lossy(answer.split(|&b| b == b'\n').next().unwrap_or_default());
                match settings.log_requests {
                    true => log(&format!("{peer}: answered {kind}")),
                    false => log(&format!("answered {kind}")),
                }
            }
            if let Err(err) = socket.send_to(&answer, peer) {
                log(&format!("sending to {peer}: {err}"));
            }
        }
    }
}

/// Fills `answer` for one request datagram; false if nothing should be sent.
fn answer_request(
    datagram: &[u8],
    settings: &Settings,
    database: &mut Option<KeyStore>,
    answer: &mut Vec<u8>,
    shared: &Shared,
) -> bool {
    let query = match protocol::parse_request(datagram) {
        Request::LookUser(query) => query,
        Request::Malformed => {
            protocol::encode_response(&Response::BadFormat, answer);
            return true;
        }
        Request::Quit if settings.allow_quit => {
            log("QUIT received; stopping");
            shared.stop.store(true, Ordering::SeqCst);
            return false;
        }
        Request::Quit | Request::Unknown => {
            protocol::encode_response(&Response::CommandUnrecognised, answer);
            return true;
        }
    };
    if database.is_none() {
        match KeyStore::open_read(&settings.database, &settings.lock, READER_WAIT) {
            Ok(store) => *database = Some(store),
            // Nothing has ever been registered: answer from the redirects alone.
            Err(err) if err.is_missing() => {}
            Err(err) => {
                log(&format!("cannot open the database, request dropped: {err}"));
                return false;
            }
        }
    }
    match protocol::lookup(database.as_ref(), &settings.redirects, &query) {
        Ok(Lookup::Found(record)) => protocol::encode_response(&Response::UserInfo(&record), answer),
        Ok(Lookup::Redirect(server)) => protocol::encode_response(&Response::Redirect(&server), answer),
        Ok(Lookup::NotFound) => protocol::encode_response(&Response::NotFound(&query.to_string()), answer),
        Err(err) => {
            log(&format!("lookup failed, request dropped: {err}"));
            *database = None;
            return false;
        }
    }
    true
}
