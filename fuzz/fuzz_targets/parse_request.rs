//! Any bytes decode to a request without panicking, and a decoded lookup
//! encodes back to a request that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ripem_core::protocol::{encode_request, parse_request, Request};

fuzz_target!(|datagram: &[u8]| {
    if let Request::LookUser(query) = parse_request(datagram) {
        assert_eq!(parse_request(&encode_request(&query)), Request::LookUser(query));
    }
});
