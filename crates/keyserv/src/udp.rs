//! Batched datagram I/O: many datagrams per system call.
//!
//! keyserv, the benchmark's no-op responder and its load generator all
//! move small datagrams as fast as loopback allows, and on that path the
//! system calls cost more than the work. [`Batch`] receives up to its
//! number of slots with one `recvmmsg(2)` and sends the answers with one
//! `sendmmsg(2)`, into and out of buffers allocated once: nothing is
//! allocated per datagram. A datagram longer than a slot is cut short and
//! marked truncated (a lookup request is a few dozen bytes; keyserv
//! refuses a truncated one as malformed).
//!
//! The unsafe code is confined here: every `mmsghdr` points into buffers
//! owned by the [`Batch`] and is rebuilt right before each call, so no
//! pointer outlives the call it is made for.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::ops::Range;
use std::os::fd::AsRawFd;

/// Receive and send buffers for a batch of datagrams on one socket.
pub struct Batch {
    slot_size: usize,
    /// `slots × slot_size` bytes of receive buffer.
    incoming: Vec<u8>,
    /// Per received datagram: its length, whether it was cut short, its sender.
    received: Vec<Received>,
    /// The answers, back to back, and for each: its bytes in `outgoing`
    /// and the peer it goes to.
    outgoing: Vec<u8>,
    replies: Vec<(Range<usize>, SocketAddr)>,
    // Scratch arrays handed to the kernel; rebuilt before every call.
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
}

#[derive(Clone, Copy)]
struct Received {
    len: usize,
    truncated: bool,
    peer: SocketAddr,
}

// The raw pointers in the scratch arrays are only meaningful during a call
// made by the owning thread; between calls they are dead values.
unsafe impl Send for Batch {}

const UNSPECIFIED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

impl Batch {
    /// A batch of `slots` datagrams of at most `slot_size` bytes each.
    pub fn new(slots: usize, slot_size: usize) -> Batch {
        let slots = slots.max(1);
        // SAFETY: all-zero bytes are a valid value of these plain C structs.
        let (header, iovec, name) = unsafe { (zeroed::<libc::mmsghdr>(), zeroed::<libc::iovec>(), zeroed()) };
        Batch {
            slot_size,
            incoming: vec![0; slots * slot_size],
            received: Vec::with_capacity(slots),
            outgoing: Vec::with_capacity(slots * 512),
            replies: Vec::with_capacity(slots),
            headers: vec![header; slots],
            iovecs: vec![iovec; slots],
            names: vec![name; slots],
        }
    }

    /// How many datagrams one call can move.
    pub fn slots(&self) -> usize {
        self.headers.len()
    }

    /// Receives up to [`Batch::slots`] datagrams. With `wait`, blocks (up
    /// to the socket's read timeout) until at least one arrives, then takes
    /// whatever else is queued; without it, returns at once. Returns how
    /// many were received; `WouldBlock`/`TimedOut` when there were none.
    pub fn receive(&mut self, socket: &UdpSocket, wait: bool) -> io::Result<usize> {
        self.received.clear();
        let slots = self.slots();
        for index in 0..slots {
            self.iovecs[index] = libc::iovec {
                iov_base: self.incoming[index * self.slot_size..].as_mut_ptr().cast(),
                iov_len: self.slot_size,
            };
            let header = &mut self.headers[index].msg_hdr;
            header.msg_name = (&raw mut self.names[index]).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &raw mut self.iovecs[index];
            header.msg_iovlen = 1;
            header.msg_control = std::ptr::null_mut();
            header.msg_controllen = 0;
            header.msg_flags = 0;
            self.headers[index].msg_len = 0;
        }
        let flags = if wait { libc::MSG_WAITFORONE } else { libc::MSG_DONTWAIT };
        // SAFETY: `headers` holds `slots` initialised entries whose buffers
        // (`incoming`, `iovecs`, `names`) live in `self` for the whole call.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                slots as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            return Err(io::Error::last_os_error());
        }
        let count = count as usize;
        for index in 0..count {
            let header = &self.headers[index];
            self.received.push(Received {
                len: (header.msg_len as usize).min(self.slot_size),
                truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                peer: socket_addr(&self.names[index]).unwrap_or(UNSPECIFIED),
            });
        }
        Ok(count)
    }

    /// How many datagrams the last [`Batch::receive`] took.
    pub fn len(&self) -> usize {
        self.received.len()
    }

    /// True if the last receive took nothing.
    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// Received datagram `index`: its bytes (cut to the slot size), whether
    /// it was longer than that, and its sender.
    pub fn datagram(&self, index: usize) -> (&[u8], bool, SocketAddr) {
        let received = self.received[index];
        let start = index * self.slot_size;
        (
            &self.incoming[start..start + received.len],
            received.truncated,
            received.peer,
        )
    }

    /// Calls `answer` for every datagram the last receive took, with its
    /// index, its bytes, whether it was cut short, its sender and the
    /// buffer to write the answer into (reused from batch to batch); an
    /// answer left empty is not sent, so a second call can answer the
    /// datagrams the first left. Answers go out with [`Batch::send_replies`].
    pub fn answer_all(&mut self, mut answer: impl FnMut(usize, &[u8], bool, SocketAddr, &mut Vec<u8>)) {
        for (index, received) in self.received.iter().enumerate() {
            let start = index * self.slot_size;
            let begin = self.outgoing.len();
            answer(
                index,
                &self.incoming[start..start + received.len],
                received.truncated,
                received.peer,
                &mut self.outgoing,
            );
            if self.outgoing.len() > begin {
                self.replies.push((begin..self.outgoing.len(), received.peer));
            }
        }
    }

    /// Forgets the answers queued so far.
    pub fn clear_replies(&mut self) {
        self.outgoing.clear();
        self.replies.clear();
    }

    /// Queues an answer to `peer`, written by `fill` into a buffer that is
    /// reused from batch to batch. An answer `fill` leaves empty is not sent.
    pub fn reply_with(&mut self, peer: SocketAddr, fill: impl FnOnce(&mut Vec<u8>)) {
        let start = self.outgoing.len();
        fill(&mut self.outgoing);
        if self.outgoing.len() > start {
            self.replies.push((start..self.outgoing.len(), peer));
        }
    }

    /// Queues `bytes` for `peer`.
    pub fn reply(&mut self, peer: SocketAddr, bytes: &[u8]) {
        self.reply_with(peer, |out| out.extend_from_slice(bytes));
    }

    /// Sends every queued answer with as few `sendmmsg` calls as it takes,
    /// then forgets them. Returns how many were sent; a datagram the
    /// kernel refuses (say a peer address of the wrong family) is skipped.
    pub fn send_replies(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut sent = 0;
        let mut next = 0;
        while next < self.replies.len() {
            let count = (self.replies.len() - next).min(self.slots());
            for offset in 0..count {
                let (range, peer) = &self.replies[next + offset];
                let name_len = write_sockaddr(peer, &mut self.names[offset]);
                let bytes = &mut self.outgoing[range.clone()];
                self.iovecs[offset] = libc::iovec {
                    iov_base: bytes.as_mut_ptr().cast(),
                    iov_len: bytes.len(),
                };
                let header = &mut self.headers[offset].msg_hdr;
                header.msg_name = (&raw mut self.names[offset]).cast();
                header.msg_namelen = name_len;
                header.msg_iov = &raw mut self.iovecs[offset];
                header.msg_iovlen = 1;
                header.msg_control = std::ptr::null_mut();
                header.msg_controllen = 0;
                header.msg_flags = 0;
            }
            // SAFETY: the first `count` headers are initialised and point
            // into `outgoing`, `iovecs` and `names`, which outlive the call.
            let done =
                unsafe { libc::sendmmsg(socket.as_raw_fd(), self.headers.as_mut_ptr(), count as libc::c_uint, 0) };
            if done < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock => return Err(err),
                    // The first datagram was refused: skip it, go on.
                    _ => next += 1,
                }
                continue;
            }
            sent += done as usize;
            next += (done as usize).max(1);
        }
        self.clear_replies();
        Ok(sent)
    }
}

/// Converts a kernel socket address to a std one (IPv4 or IPv6 only).
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let addr = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                u16::from_be(addr.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let addr = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(addr.sin6_addr.s6_addr),
                u16::from_be(addr.sin6_port),
                addr.sin6_flowinfo,
                addr.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `storage`; returns its length for the kernel.
fn write_sockaddr(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            let raw = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe {
                (storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(raw)
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            let raw = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe {
                (storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(raw)
            };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Asks the kernel for a receive buffer of `bytes` (it may grant less;
/// see `net.core.rmem_max`), so a burst waits in the queue instead of
/// being dropped.
pub fn set_receive_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::RcvBuf, &bytes).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn batch_round_trip_and_truncation() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let target = server.local_addr().unwrap();
        for message in [&b"one"[..], b"two", &[b'x'; 100]] {
            client.send_to(message, target).unwrap();
        }
        let mut batch = Batch::new(8, 64);
        let mut seen = 0;
        while seen < 3 {
            seen += batch.receive(&server, true).unwrap();
            for index in 0..batch.len() {
                let (bytes, truncated, peer) = batch.datagram(index);
                assert_eq!(peer, client.local_addr().unwrap());
                assert_eq!(truncated, bytes.len() == 64, "{bytes:?}");
                let answer = [b"re:", bytes].concat();
                batch.reply(peer, &answer);
            }
            batch.send_replies(&server).unwrap();
        }
        let mut buffer = [0u8; 256];
        let mut answers = Vec::new();
        for _ in 0..3 {
            let (len, _) = client.recv_from(&mut buffer).unwrap();
            answers.push(buffer[..len].to_vec());
        }
        assert_eq!(answers[0], b"re:one");
        assert_eq!(answers[1], b"re:two");
        assert_eq!(answers[2].len(), 3 + 64);
        assert_eq!(
            batch.receive(&server, false).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
}
