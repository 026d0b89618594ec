//! hkpd's server: listeners, connections and their limits, signals.
//!
//! Each listening socket has an accept task on a tokio runtime with one
//! worker per core; each connection is served by hyper's HTTP/1.1, behind
//! TLS when `tls_cert`/`tls_key` are set. Limits: at most
//! `max_connections` connections at once (one more is answered 503 and
//! closed at once), request headers within `timeout` (a slowloris client
//! is cut off), bodies within `timeout` and `max_request_bytes`, request heads
//! within 32 KiB, a connection's whole life within 30 timeouts, and
//! requests per source network (`rate_limit`, [`ripem_core::ratelimit`]).
//! SIGHUP reloads the configuration (limits, WKD domains, logging, the
//! TLS certificate) and reopens the database; the listening addresses
//! stay until a restart. SIGTERM/SIGINT stop it and remove the pid file.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ripem_core::config::Config;
use ripem_core::pidfile::PidFile;
use ripem_core::signals;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::HkpdError;
use crate::routes;
use crate::service::Service;

/// Largest request head (request line and headers) read.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A connection's longest life, in timeouts.
const LIFETIME_TIMEOUTS: u32 = 30;

/// The service in force, swapped on SIGHUP.
struct Shared {
    service: RwLock<Arc<Service>>,
}

impl Shared {
    fn current(&self) -> Option<Arc<Service>> {
        self.service.read().ok().map(|service| Arc::clone(&service))
    }
}

fn bind(addr: SocketAddr) -> Result<StdListener, HkpdError> {
    let bind_err = |source| HkpdError::Bind { addr, source };
    let listener = StdListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok(listener)
}

/// Runs hkpd until SIGTERM/SIGINT; `reload` reads the configuration
/// again on SIGHUP.
pub fn serve(config: &Config, reload: &dyn Fn() -> Option<Config>) -> Result<(), HkpdError> {
    let listen = &config.hkpd.listen;
    if listen.is_empty() {
        return Err(HkpdError::NoListen);
    }
    let service = Service::new(config)?;
    service.spool.create_dirs()?;
    let listeners = listen.iter().map(|addr| bind(*addr)).collect::<Result<Vec<_>, _>>()?;
    signals::install().map_err(HkpdError::Signals)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .map_err(HkpdError::Runtime)?;
    let shared = Arc::new(Shared {
        service: RwLock::new(Arc::new(service)),
    });
    let _pid_file = PidFile::acquire(&config.hkpd.pid_file)?;
    let addresses: Vec<String> = listeners
        .iter()
        .filter_map(|listener| listener.local_addr().ok())
        .map(|addr| addr.to_string())
        .collect();
    let scheme = if config.hkpd.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    crate::log(&format!(
        "started, pid {}, answering {scheme} on {}, database {}",
        std::process::id(),
        addresses.join(" "),
        config.paths.database.display()
    ));
    runtime.block_on(async {
        for listener in listeners {
            match TcpListener::from_std(listener) {
                Ok(listener) => {
                    tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
                }
                Err(err) => crate::log(&format!("cannot use a listening socket: {err}")),
            }
        }
        ripem_core::sdnotify::ready();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        while !signals::terminate_requested() {
            tick.tick().await;
            if signals::take_reload() {
                reload_service(&shared, reload);
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    crate::log("stopped");
    Ok(())
}

fn reload_service(shared: &Shared, reload: &dyn Fn() -> Option<Config>) {
    let Some(config) = reload() else {
        crate::log("configuration not reloaded; keeping the old one");
        return;
    };
    match Service::new(&config) {
        Ok(service) => {
            if let Ok(mut current) = shared.service.write() {
                *current = Arc::new(service);
            }
            crate::log("configuration reloaded; database reopened (listening addresses change on restart)");
        }
        Err(err) => crate::log(&format!("configuration not reloaded ({err}); keeping the old one")),
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, or the peer gave up: wait a moment.
                crate::log(&format!("accept: {err}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(service) = shared.current() else {
            return;
        };
        let Ok(permit) = Arc::clone(&service.connections).try_acquire_owned() else {
            tokio::spawn(refuse_busy(stream, service.tls.is_some()));
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let timeout = service.settings.timeout;
            match &service.tls {
                None => connection(stream, peer, shared, timeout).await,
                Some(acceptor) => {
                    if let Ok(Ok(tls)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        connection(tls, peer, shared, timeout).await;
                    }
                }
            }
        });
    }
}

/// Tells a client over the connection limit to come back, and closes.
async fn refuse_busy(mut stream: TcpStream, tls: bool) {
    if !tls {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 30\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections; retry.\r\n";
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer)).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    }
}

async fn connection<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>, timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let current = shared.current();
        async move {
            Ok::<_, Infallible>(match current {
                Some(service) => routes::handle(service, peer, request).await,
                None => hyper::Response::new(routes::Body::default()),
            })
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES / 2)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(timeout * LIFETIME_TIMEOUTS, served).await;
}
