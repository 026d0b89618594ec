//! Key parsing and checks on arbitrary binary and armored input; a key
//! that passes survives its own armor round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ripem_core::openpgp::{self, KeyPolicy};

fuzz_target!(|data: &[u8]| {
    let policy = KeyPolicy::default();
    if let Ok(keys) = openpgp::parse_binary_keys(data) {
        for key in keys {
            if let Ok(checked) = openpgp::check_key(key, &policy) {
                let back = openpgp::read_stored_key(&checked.to_armored()).expect("a checked key reads back");
                assert_eq!(back.fingerprint(), checked.fingerprint());
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    for block in openpgp::find_armored_keys(&text) {
        let _ = openpgp::parse_armored_keys(block);
        let _ = openpgp::parse_revocation_certificate(block);
    }
});
