//! The no-op responder: keyserv's I/O without the lookup.
//!
//! It answers every datagram with the request echoed and padded to
//! `reply_size` bytes (the mean size of keyserv's answers in the same
//! run), using the same batched receive and send as keyserv and one thread
//! per core on one socket. The load generator's throughput against it is
//! the ceiling keyserv is compared with. It stops after its duration.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use keyserv::udp::Batch;

/// Answers on `listen` for `duration`, then returns how many it answered.
pub fn serve(listen: SocketAddr, reply_size: usize, duration: Duration) -> Result<u64> {
    if !listen.ip().is_loopback() {
        bail!("the no-op responder only listens on loopback addresses");
    }
    let socket = Arc::new(UdpSocket::bind(listen)?);
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    keyserv::udp::set_receive_buffer(&socket, 4 << 20)?;
    let deadline = Instant::now() + duration;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let socket = Arc::clone(&socket);
            std::thread::spawn(move || -> std::io::Result<u64> {
                let mut batch = Batch::new(64, 4096);
                let mut answered = 0;
                while Instant::now() < deadline {
                    if batch.receive(&socket, true).is_err() {
                        continue;
                    }
                    batch.answer_all(|_, request, _, _, out| {
                        let start = out.len();
                        out.extend_from_slice(request);
                        out.resize(start + reply_size.max(request.len()), b' ');
                    });
                    answered += batch.send_replies(&socket)? as u64;
                }
                Ok(answered)
            })
        })
        .collect();
    let mut answered = 0;
    for worker in workers {
        match worker.join() {
            Ok(count) => answered += count?,
            Err(_) => bail!("a responder thread panicked"),
        }
    }
    Ok(answered)
}
