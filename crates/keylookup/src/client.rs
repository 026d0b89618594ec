//! keylookup's side of the protocol: ask servers in turn, RIPEM-style,
//! and believe none of them.
//!
//! Each server gets a few tries with a short timeout (UDP may drop a
//! datagram); an answer from any other address is ignored. A `COOKIE`
//! answer is followed at once: the same request goes again with the
//! cookie as its last line (see [`ripem_core::cookie`]), a few times at most.
//! `REDIRECT` sends the question on to the named server, a few hops at
//! most. A `USERINFO` answer counts only if it carries the key asked for
//! ([`check_answer`]); a wrong one is reported and the next server asked.
//! The first right `USERINFO`, or a `NOTFOUND`, ends the search.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use crate::answer_check::{check_answer, WrongAnswer};
use ripem_core::cookie;
use ripem_core::protocol::{self, Answer, DEFAULT_PORT, MAX_DATAGRAM};
use ripem_core::record::Record;
use ripem_core::types::Query;

/// Redirects followed at most, so two misconfigured servers can't loop.
const MAX_REDIRECTS: usize = 4;
/// `COOKIE` answers followed at most per server (a late answer to an
/// earlier try may be a cookie too), so a server can't keep the client
/// asking.
const MAX_COOKIE_ROUNDS: u32 = 3;

/// How patient the client is.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// Tries per server.
    pub tries: u32,
    /// Wait per try.
    pub timeout: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            tries: 3,
            timeout: Duration::from_millis(1500),
        }
    }
}

/// The outcome of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAnswer {
    /// A server had it: the record, checked, and the server that answered.
    Found {
        /// The record.
        record: Record,
        /// The record as the server sent it.
        text: String,
        /// Who answered.
        server: String,
    },
    /// A server answered that nothing is registered.
    NotFound {
        /// Who answered.
        server: String,
    },
    /// No server gave a usable answer; one line per server tried.
    NoServer(Vec<String>),
}

/// Resolves `host[:port]` (IPv6 as `[addr]:port`), defaulting the port.
pub fn resolve(server: &str) -> Result<Vec<SocketAddr>, String> {
    let with_port = if server.parse::<SocketAddr>().is_ok()
        || server
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.contains(':') && port.parse::<u16>().is_ok())
    {
        server.to_string()
    } else if server.contains(':') && !server.starts_with('[') {
        format!("[{server}]:{DEFAULT_PORT}")
    } else {
        format!("{server}:{DEFAULT_PORT}")
    };
    with_port
        .to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|err| format!("{server}: {err}"))
}

/// Waits up to `timeout` for an answer on `socket`; `None` if none came.
fn wait(socket: &UdpSocket, buffer: &mut [u8], addr: SocketAddr, timeout: Duration) -> Result<Option<Answer>, String> {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        let _ = socket.set_read_timeout(Some(left));
        match socket.recv(buffer) {
            Ok(length) => match protocol::parse_answer(&buffer[..length]) {
                Some(answer) => return Ok(Some(answer)),
                None => continue,
            },
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(format!("{addr}: no key server listening"))
            }
            Err(_) => break,
        }
    }
    Ok(None)
}

/// Asks one address, up to `patience.tries` times; a `COOKIE` answer makes
/// it send the request again at once with the cookie, without counting a
/// try.
fn ask(addr: SocketAddr, request: &[u8], patience: Patience) -> Result<Answer, String> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(|err| format!("{addr}: {err}"))?;
    socket.connect(addr).map_err(|err| format!("{addr}: {err}"))?;
    let mut buffer = vec![0u8; MAX_DATAGRAM + 1];
    let mut request = request.to_vec();
    let mut tries_left = patience.tries.max(1);
    let mut cookies_left = MAX_COOKIE_ROUNDS;
    while tries_left > 0 {
        tries_left -= 1;
        if let Err(err) = socket.send(&request) {
            return Err(format!("{addr}: {err}"));
        }
        match wait(&socket, &mut buffer, addr, patience.timeout)? {
            None => {}
            Some(Answer::Cookie(_)) if cookies_left == 0 => {
                return Err(format!("{addr}: keeps answering COOKIE to a request with its cookie"))
            }
            Some(Answer::Cookie(cookie)) => {
                cookies_left -= 1;
                tries_left += 1;
                request = cookie::with_cookie(&request, &cookie);
            }
            Some(answer) => return Ok(answer),
        }
    }
    Err(format!("{addr}: no answer after {} tries", patience.tries.max(1)))
}

/// Asks each server in turn for `query`. A record that is not the key
/// asked for is handed to `wrong` with the server that sent it, and the
/// next server is asked.
pub fn lookup(
    servers: &[String],
    query: &Query,
    patience: Patience,
    wrong: &mut dyn FnMut(&str, &WrongAnswer),
) -> ClientAnswer {
    let request = protocol::encode_request(query);
    let mut queue: Vec<String> = servers.iter().rev().cloned().collect();
    let mut redirects = 0;
    let mut failures = Vec::new();
    while let Some(server) = queue.pop() {
        let addrs = match resolve(&server) {
            Ok(addrs) => addrs,
            Err(err) => {
                failures.push(err);
                continue;
            }
        };
        for addr in addrs {
            match ask(addr, &request, patience) {
                Ok(Answer::UserInfo(text)) => match check_answer(query, &text) {
                    Ok(record) => return ClientAnswer::Found { record, text, server },
                    Err(err) => {
                        wrong(&server, &err);
                        failures.push(format!("{server}: sent a wrong answer"));
                    }
                },
                Ok(Answer::NotFound) => return ClientAnswer::NotFound { server },
                Ok(Answer::Redirect(next)) if redirects < MAX_REDIRECTS => {
                    redirects += 1;
                    queue.push(next);
                }
                Ok(Answer::Redirect(next)) => failures.push(format!("{server}: too many redirects (last to {next})")),
                Ok(Answer::BadFormat) => failures.push(format!("{server}: refused the request as malformed")),
                Ok(Answer::CommandUnrecognised) => failures.push(format!("{server}: does not know LOOKUSER")),
                Ok(Answer::Cookie(_)) => failures.push(format!("{server}: sent a cookie out of turn")),
                Err(err) => {
                    failures.push(err);
                    continue;
                }
            }
            break;
        }
    }
    ClientAnswer::NoServer(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_defaults_the_port() {
        assert_eq!(
            resolve("127.0.0.1").unwrap(),
            vec!["127.0.0.1:1611".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve("127.0.0.1:99").unwrap(),
            vec!["127.0.0.1:99".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve("::1").unwrap(),
            vec!["[::1]:1611".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve("[::1]:7").unwrap(),
            vec!["[::1]:7".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn silent_server_means_no_server() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = silent.local_addr().unwrap().to_string();
        let patience = Patience {
            tries: 2,
            timeout: Duration::from_millis(30),
        };
        let query = Query::parse("a@example.com").unwrap();
        let mut wrong = |_: &str, err: &WrongAnswer| panic!("{err}");
        assert!(matches!(
            lookup(&[server], &query, patience, &mut wrong),
            ClientAnswer::NoServer(_)
        ));
    }
}
