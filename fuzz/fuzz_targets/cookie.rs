//! keyserv's cookie datagram parser and check, and the client's side of
//! it, on any bytes: nothing panics, the request left is a prefix of the
//! datagram, only the jar's own cookie for the address passes, and a
//! request with a cookie added splits back into the two.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use ripem_core::cookie::{split, with_cookie, CookieJar, SLOT_SECONDS};
use ripem_core::protocol::parse_answer;

const NOW: u64 = 1_800_000_000;

fuzz_target!(|datagram: &[u8]| {
    let (request, cookie) = split(datagram);
    assert!(datagram.starts_with(request));
    let jar = CookieJar::new(&[42; 32]);
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    if let Some(cookie) = cookie {
        if jar.check(ip, cookie, NOW) {
            let cookie = cookie.to_ascii_lowercase();
            assert!(cookie == jar.issue(ip, NOW) || cookie == jar.issue(ip, NOW - SLOT_SECONDS));
        }
    }
    let again = with_cookie(datagram, "00ff");
    let (same, added) = split(&again);
    assert_eq!(added, Some(&b"00ff"[..]));
    assert!(same == request || same == [request, b"\n"].concat());
    let _ = parse_answer(datagram);
});
