//! The load generator: closed-loop UDP lookups with several in flight.
//!
//! Each of `sockets` threads owns one UDP socket (its own source port) and
//! keeps `in_flight` requests outstanding: it sends that many, and sends a
//! new one for every answer (or loss), batching both ways with
//! `recvmmsg`/`sendmmsg`. An answer is matched to its request by the
//! address it names (`User:` lines of USERINFO and NOTFOUND; the no-op
//! responder echoes the request), so reordering is harmless. What it
//! measures, per answer: the time from sending the request to receiving
//! the answer (latency), and the kind of answer. A request unanswered
//! after `timeout` is lost. Throughput is answers per second over the run.
//! Like a real client, each socket first makes one lookup and, if keyserv
//! answers it with a cookie (see `ripem_core::cookie`), adds that cookie
//! to every request it sends; a cookie answer later in the run (the
//! cookie grew old) replaces it.
//! Which address comes next is the spec's [`Order`]: at random over the
//! whole list (a realistic load: no small hot set that a cache would hold),
//! or each in turn (a warm-up pass that asks for every address once).
//! Only loopback targets are accepted, and every loop is bounded by the
//! run's duration.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use keyserv::udp::Batch;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ripem_core::protocol::{self, Answer};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The server (a loopback address).
    pub target: SocketAddr,
    /// Where requests come from (a loopback address).
    pub source: IpAddr,
    /// Sockets, one thread each.
    pub sockets: usize,
    /// Requests outstanding per socket.
    pub in_flight: usize,
    /// How long to send for.
    pub duration: Duration,
    /// When an unanswered request counts as lost.
    pub timeout: Duration,
    /// Which address is asked for next.
    pub order: Order,
}

/// Which address the load asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Uniformly at random over every address (each socket its own stream).
    Random,
    /// Every address in turn, the sockets interleaved.
    InTurn,
}

/// What a run saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// USERINFO answers.
    pub found: u64,
    /// NOTFOUND answers (wrong when every address asked for is registered).
    pub not_found: u64,
    /// Any other answer (BADFMT, CMDUNREG, REDIRECT, or unreadable).
    pub other: u64,
    /// COOKIE answers, the first round trip of each socket included.
    pub cookies: u64,
    /// Requests never answered within the timeout.
    pub lost: u64,
    /// Bytes of all answers.
    pub answer_bytes: u64,
    /// Sending time.
    pub elapsed: Duration,
    /// Every latency, in microseconds, sorted.
    pub latencies: Vec<u32>,
}

impl LoadReport {
    /// Answers of any kind.
    pub fn answered(&self) -> u64 {
        self.found + self.not_found + self.other
    }

    /// Answers per second.
    pub fn throughput(&self) -> f64 {
        self.answered() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency below which `fraction` of answers came, in milliseconds.
    pub fn percentile_ms(&self, fraction: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() as f64 * fraction) as usize).min(self.latencies.len() - 1);
        f64::from(self.latencies[index]) / 1000.0
    }

    /// Mean answer size in bytes.
    pub fn mean_answer(&self) -> usize {
        (self.answer_bytes / self.answered().max(1)) as usize
    }

    /// Adds a run that followed this one (same load, later): counts and
    /// times add up.
    pub fn then(&mut self, later: LoadReport) {
        let elapsed = self.elapsed + later.elapsed;
        self.add(later);
        self.elapsed = elapsed;
        self.latencies.sort_unstable();
    }

    fn add(&mut self, other: LoadReport) {
        self.sent += other.sent;
        self.found += other.found;
        self.not_found += other.not_found;
        self.other += other.other;
        self.cookies += other.cookies;
        self.lost += other.lost;
        self.answer_bytes += other.answer_bytes;
        self.elapsed = self.elapsed.max(other.elapsed);
        self.latencies.extend(other.latencies);
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "{:.0} answers/s, p50 {:.2} ms, p99 {:.2} ms; {} sent, {} found, {} NOTFOUND, {} other, {} lost, {} cookie answers; mean answer {} bytes",
            self.throughput(),
            self.percentile_ms(0.5),
            self.percentile_ms(0.99),
            self.sent,
            self.found,
            self.not_found,
            self.other,
            self.lost,
            self.cookies,
            self.mean_answer()
        )
    }
}

/// Runs the load against `spec.target`, asking for `addresses` in turn.
pub fn run(spec: &LoadSpec, addresses: Arc<Vec<String>>) -> Result<LoadReport> {
    if !spec.target.ip().is_loopback() || !spec.source.is_loopback() {
        bail!("the load generator only targets and sends from loopback addresses");
    }
    if addresses.len() < spec.sockets * spec.in_flight * 2 {
        bail!("too few addresses for the requests in flight");
    }
    let threads: Vec<_> = (0..spec.sockets)
        .map(|index| {
            let spec = spec.clone();
            let addresses = Arc::clone(&addresses);
            std::thread::spawn(move || one_socket(&spec, &addresses, index))
        })
        .collect();
    let mut report = LoadReport::default();
    for thread in threads {
        match thread.join() {
            Ok(part) => report.add(part?),
            Err(_) => bail!("a load thread panicked"),
        }
    }
    report.latencies.sort_unstable();
    Ok(report)
}

/// The addresses named by an answer's (or an echoed request's) `User:`
/// lines, which follow its first line.
fn named_users(answer: &[u8]) -> impl Iterator<Item = &[u8]> {
    answer
        .split(|&b| b == b'\n')
        .skip(1)
        .map_while(|line| line.strip_prefix(b"User: "))
}

/// The cookie in a `COOKIE` answer.
fn cookie_in(answer: &[u8]) -> Option<Vec<u8>> {
    match protocol::parse_answer(answer)? {
        Answer::Cookie(cookie) => Some(cookie.into_bytes()),
        _ => None,
    }
}

/// A client's first exchange: one lookup of `address`, and the cookie if
/// the answer is one (`None` for any other answer).
fn first_exchange(socket: &UdpSocket, spec: &LoadSpec, address: &str) -> Result<Option<Vec<u8>>> {
    socket.send_to(format!("LOOKUSER\nUser: {address}\n\0").as_bytes(), spec.target)?;
    let mut buffer = vec![0u8; 65_536];
    let deadline = Instant::now() + spec.timeout;
    while Instant::now() < deadline {
        if let Ok((length, _)) = socket.recv_from(&mut buffer) {
            return Ok(cookie_in(&buffer[..length]));
        }
    }
    bail!("no answer from {} to the first lookup", spec.target)
}

fn one_socket(spec: &LoadSpec, addresses: &[String], index: usize) -> Result<LoadReport> {
    let socket = UdpSocket::bind(SocketAddr::new(spec.source, 0))?;
    socket.set_read_timeout(Some(Duration::from_millis(5)))?;
    keyserv::udp::set_receive_buffer(&socket, 4 << 20)?;
    let mut report = LoadReport::default();
    let mut cookie = first_exchange(&socket, spec, &addresses[index % addresses.len()])?;
    report.cookies += u64::from(cookie.is_some());
    let mut batch = Batch::new(64, 65_536);
    // In turn, this socket asks for addresses index, index + sockets, …
    let mut cursor = index;
    let mut random = StdRng::seed_from_u64(index as u64 ^ u64::from(std::process::id()) << 16);
    let mut pending: HashMap<&[u8], Instant> = HashMap::with_capacity(spec.in_flight * 2);
    let mut last_expiry = Instant::now();
    let started = Instant::now();
    let deadline = started + spec.duration;
    let hard_stop = deadline + spec.timeout;
    loop {
        let now = Instant::now();
        let sending = now < deadline;
        if now >= hard_stop || (!sending && pending.is_empty()) {
            break;
        }
        while sending && pending.len() < spec.in_flight {
            let next = match spec.order {
                Order::Random => random.gen_range(0..addresses.len()),
                Order::InTurn => cursor % addresses.len(),
            };
            let address = addresses[next].as_bytes();
            cursor += spec.sockets;
            if pending.contains_key(address) {
                continue;
            }
            pending.insert(address, Instant::now());
            batch.reply_with(spec.target, |out| {
                out.extend_from_slice(b"LOOKUSER\nUser: ");
                out.extend_from_slice(address);
                out.push(b'\n');
                if let Some(cookie) = &cookie {
                    out.extend_from_slice(b"Cookie: ");
                    out.extend_from_slice(cookie);
                    out.push(b'\n');
                }
                out.push(0);
            });
            report.sent += 1;
        }
        batch.send_replies(&socket)?;
        match batch.receive(&socket, true) {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
        let received = Instant::now();
        for slot in 0..batch.len() {
            let (answer, _, _) = batch.datagram(slot);
            if let Some(fresh) = cookie_in(answer) {
                // Its request stays pending and counts as lost.
                cookie = Some(fresh);
                report.cookies += 1;
                continue;
            }
            let Some(sent) = named_users(answer).find_map(|user| pending.remove(user)) else {
                continue; // an answer to a request already counted lost
            };
            let micros = received.duration_since(sent).as_micros();
            report.latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
            report.answer_bytes += answer.len() as u64;
            if answer.starts_with(b"USERINFO\n") || answer.starts_with(b"LOOKUSER\n") {
                report.found += 1;
            } else if answer.starts_with(b"NOTFOUND\n") {
                report.not_found += 1;
            } else {
                report.other += 1;
            }
        }
        if received.duration_since(last_expiry) >= Duration::from_millis(20) {
            last_expiry = received;
            let before = pending.len();
            pending.retain(|_, sent| received.duration_since(*sent) < spec.timeout);
            report.lost += (before - pending.len()) as u64;
        }
    }
    report.lost += pending.len() as u64;
    report.elapsed = spec.duration.min(started.elapsed());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_their_users() {
        let users: Vec<&[u8]> = named_users(b"USERINFO\nUser: a@x.org\nUser: b@x.org\nFingerprint: AB\n").collect();
        assert_eq!(users, [&b"a@x.org"[..], b"b@x.org"]);
        let users: Vec<&[u8]> = named_users(b"NOTFOUND\nUser: c@x.org\n\0").collect();
        assert_eq!(users, [&b"c@x.org"[..]]);
        assert_eq!(named_users(b"BADFMT\n\0").count(), 0);
        assert_eq!(cookie_in(b"COOKIE\nCookie: 00ab\n\0"), Some(b"00ab".to_vec()));
        assert_eq!(cookie_in(b"USERINFO\nUser: a@x.org\n"), None);
    }

    #[test]
    fn refuses_non_loopback_targets() {
        let spec = LoadSpec {
            target: "192.0.2.1:1611".parse().unwrap(),
            source: "127.0.0.1".parse().unwrap(),
            sockets: 1,
            in_flight: 1,
            duration: Duration::from_millis(10),
            timeout: Duration::from_millis(10),
            order: Order::Random,
        };
        assert!(run(&spec, Arc::new(vec!["a@x.org".into(); 4])).is_err());
    }
}
