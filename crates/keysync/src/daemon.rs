//! The daemon: listeners, dialers, the local queue, the status file and
//! the signals.
//!
//! Everything runs on one tokio runtime, one task per connection (so a
//! hung peer holds up only its own tasks). The listener takes any
//! configured peer, known by its certificate's pin; each configured peer
//! also has a dialer, which connects when no connection with that peer
//! is up and otherwise waits, retrying with capped, jittered exponential
//! backoff. A TCP connection that fails the TLS handshake (plain TCP, an
//! unknown certificate, none at all) or takes longer than
//! [`HANDSHAKE_TIMEOUT`] is dropped with one log line naming the address;
//! nothing from it is read as KX. SIGHUP reloads the peer list (removed
//! peers are disconnected, new ones dialled); SIGTERM closes every
//! connection with `CLOSE` and exits.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ripem_core::config::{Config, SyncPeer};
use ripem_core::signals;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::SyncError;
use crate::hub::Hub;
use crate::tls::{self, Identity};

/// Longest a TCP connect plus TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once on the listener; more are closed at once,
/// so a flood of idle connections costs a bounded number of tasks.
const MAX_HANDSHAKES: usize = 64;
/// First and longest wait between dials of a peer.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(30));

/// What the tasks share besides the hub.
struct Daemon {
    hub: Arc<Hub>,
    identity: Identity,
    server: RwLock<Arc<ServerConfig>>,
    shutdown: watch::Receiver<bool>,
    handshakes: Arc<tokio::sync::Semaphore>,
}

/// Turns on TCP keepalive (probes after 30 s idle, every 10 s, 3 lost
/// mean dead): a connection whose peer vanished is noticed even when
/// nothing is sent, so the peer's reconnection is not refused for long by
/// a dead connection that still wins the tie. Best effort.
fn keep_alive(tcp: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(tcp, sockopt::KeepAlive, &true);
    let _ = setsockopt(tcp, sockopt::TcpKeepIdle, &30);
    let _ = setsockopt(tcp, sockopt::TcpKeepInterval, &10);
    let _ = setsockopt(tcp, sockopt::TcpKeepCount, &3);
}

fn pins(config: &ripem_core::config::SyncConfig) -> HashMap<ripem_core::config::CertPin, String> {
    config.peers.iter().map(|peer| (peer.pin, peer.name.clone())).collect()
}

impl Daemon {
    fn peer(&self, name: &str) -> Option<SyncPeer> {
        self.hub.config().peers.iter().find(|peer| peer.name == name).cloned()
    }

    /// Runs one authenticated connection to its end, logging both ends.
    async fn converse<S>(self: &Arc<Daemon>, peer: &SyncPeer, stream: S, addr: SocketAddr, dialled: bool)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let how = if dialled { "dialled" } else { "accepted" };
        let Some(registration) = self.hub.register(&peer.name, peer.pin, dialled) else {
            crate::log(&format!(
                "{} ({addr}, {how}): already connected, closing this one",
                peer.name
            ));
            return;
        };
        crate::log(&format!("connected to {} ({addr}, {how})", peer.name));
        let shutdown = self.shutdown.clone();
        match crate::session::run(Arc::clone(&self.hub), registration, stream, dialled, shutdown).await {
            Ok(()) => crate::log(&format!("disconnected from {} ({addr})", peer.name)),
            Err(err) => crate::log(&format!("disconnected from {} ({addr}): {err}", peer.name)),
        }
    }

    async fn accept_loop(self: Arc<Daemon>, listener: TcpListener) {
        loop {
            let Ok((tcp, addr)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            keep_alive(&tcp);
            let daemon = Arc::clone(&self);
            tokio::spawn(async move { daemon.accept_one(tcp, addr).await });
        }
    }

    async fn accept_one(self: Arc<Daemon>, tcp: TcpStream, addr: SocketAddr) {
        let Ok(permit) = Arc::clone(&self.handshakes).try_acquire_owned() else {
            return crate::log(&format!(
                "refused connection from {addr}: {MAX_HANDSHAKES} handshakes under way"
            ));
        };
        let acceptor = TlsAcceptor::from(
            self.server
                .read()
                .map(|c| Arc::clone(&c))
                .unwrap_or_else(|e| Arc::clone(&e.into_inner())),
        );
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return crate::log(&format!("refused connection from {addr}: TLS: {err}")),
            Err(_) => return crate::log(&format!("refused connection from {addr}: no TLS handshake in time")),
        };
        drop(permit);
        let pin = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| tls::pin_of(cert));
        let peer = pin.and_then(|pin| self.hub.config().peers.iter().find(|peer| peer.pin == pin).cloned());
        match peer {
            Some(peer) => self.converse(&peer, stream, addr, false).await,
            None => crate::log(&format!(
                "refused connection from {addr}: certificate of no configured peer"
            )),
        }
    }

    /// Dials one peer; `Err` is the reason, for the log.
    async fn dial(self: &Arc<Daemon>, peer: &SyncPeer) -> Result<(), String> {
        let connector = TlsConnector::from(tls::client_config(&self.identity, peer.pin).map_err(|e| e.to_string())?);
        let connect = async {
            let tcp = TcpStream::connect(&peer.address).await.map_err(|e| e.to_string())?;
            keep_alive(&tcp);
            let addr = tcp.peer_addr().map_err(|e| e.to_string())?;
            let name = ServerName::try_from("keysync.invalid").map_err(|e| e.to_string())?;
            let stream = connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
            Ok::<_, String>((stream, addr))
        };
        let (stream, addr) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
            .await
            .map_err(|_| "no connection or TLS handshake in time".to_string())??;
        self.converse(peer, stream, addr, true).await;
        Ok(())
    }

    /// Keeps a connection with `name` up while it is configured.
    async fn dial_loop(self: Arc<Daemon>, name: String) {
        let mut wait = BACKOFF.0;
        loop {
            let Some(peer) = self.peer(&name) else { return };
            if *self.shutdown.borrow() {
                return;
            }
            if self.hub.connected(&name) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let started = std::time::Instant::now();
            match self.dial(&peer).await {
                Err(reason) => {
                    crate::log(&format!("cannot connect to {} ({}): {reason}", peer.name, peer.address));
                }
                // A connection that lasted starts the backoff afresh.
                Ok(()) if started.elapsed() > BACKOFF.1 => wait = BACKOFF.0,
                Ok(()) => {}
            }
            let jitter = rand::random::<f64>() * 0.5 + 0.75;
            tokio::time::sleep(wait.mul_f64(jitter)).await;
            wait = (wait * 2).min(BACKOFF.1);
        }
    }
}

/// Where keysync keeps its files.
pub fn sync_dir(config: &Config) -> PathBuf {
    config.paths.state_dir.join("sync")
}

fn bind(addr: SocketAddr) -> Result<StdListener, SyncError> {
    let bind_err = |source| SyncError::Bind { addr, source };
    let listener = StdListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok(listener)
}

/// Runs keysync until SIGTERM/SIGINT; `reload` reads the configuration
/// again on SIGHUP.
pub fn serve(config: &Config, reload: &dyn Fn() -> Option<Config>) -> Result<(), SyncError> {
    let dir = sync_dir(config);
    let identity = Identity::load(&dir)?;
    let store = crate::store::Store::open(&dir.join("updates.log"))?;
    let book = crate::peers::PeerBook::load(&dir.join("peers.state"))?;
    let spool = ripem_core::spool::Spool::new(&config.paths.spool_dir);
    spool.create_queue_dirs(ripem_core::spool::QueueName::Sync)?;
    let queue = crate::queue::Queue::create(&dir)?;
    let hub = Hub::new(store, book, spool, config)?;
    let listeners = config
        .sync
        .listen
        .iter()
        .map(|addr| bind(*addr))
        .collect::<Result<Vec<_>, _>>()?;
    signals::install().map_err(|err| SyncError::Start(format!("signal handlers: {err}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| SyncError::Start(format!("tokio runtime: {err}")))?;
    let server = tls::server_config(&identity, pins(&config.sync))?;
    let (stop, shutdown) = watch::channel(false);
    let daemon = Arc::new(Daemon {
        hub: Arc::clone(&hub),
        identity,
        server: RwLock::new(server),
        shutdown,
        handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES)),
    });
    runtime.block_on(async {
        for listener in listeners {
            let addr = listener.local_addr().ok();
            let listener = TcpListener::from_std(listener).map_err(|source| SyncError::Bind {
                addr: addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                source,
            })?;
            crate::log(&format!(
                "listening on {}",
                addr.map_or_else(String::new, |a| a.to_string())
            ));
            tokio::spawn(Arc::clone(&daemon).accept_loop(listener));
        }
        let queue_task = tokio::spawn(crate::queue::watch(queue, Arc::clone(&hub)));
        ripem_core::sdnotify::ready();
        let result = supervise(&daemon, &dir, reload).await;
        stop.send_replace(true);
        queue_task.abort();
        // The sessions send CLOSE; give them a moment to leave.
        tokio::time::sleep(Duration::from_millis(300)).await;
        hub.save_book()?;
        let (peers, ours) = hub.status();
        let _ = crate::status::write(&dir.join("status"), &peers, ours, false);
        result
    })
}

/// Starts the dialers, writes the status every second, and handles the
/// signals; returns on SIGTERM/SIGINT.
async fn supervise(
    daemon: &Arc<Daemon>,
    dir: &std::path::Path,
    reload: &dyn Fn() -> Option<Config>,
) -> Result<(), SyncError> {
    let mut dialling = HashSet::new();
    let status_path = dir.join("status");
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_status = std::time::Instant::now();
    loop {
        for peer in &daemon.hub.config().peers {
            if dialling.insert(peer.name.clone()) {
                tokio::spawn(Arc::clone(daemon).dial_loop(peer.name.clone()));
            }
        }
        tick.tick().await;
        if signals::terminate_requested() {
            crate::log("stopping (signal)");
            return Ok(());
        }
        if signals::take_reload() {
            if let Some(config) = reload() {
                let server = tls::server_config(&daemon.identity, pins(&config.sync))?;
                *daemon.server.write().unwrap_or_else(std::sync::PoisonError::into_inner) = server;
                let names: HashSet<String> = config.sync.peers.iter().map(|p| p.name.clone()).collect();
                dialling.retain(|name| names.contains(name));
                daemon.hub.set_config(config.sync);
                crate::log(&format!("reloaded the configuration: {} peers", names.len()));
            }
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            last_status = std::time::Instant::now();
            if let Err(err) = daemon.hub.save_book() {
                crate::log(&err.to_string());
            }
            let (peers, ours) = daemon.hub.status();
            if let Err(err) = crate::status::write(&status_path, &peers, ours, true) {
                crate::log(&err.to_string());
            }
        }
    }
}
