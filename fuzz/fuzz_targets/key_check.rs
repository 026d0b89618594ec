//! Key parsing and checks on arbitrary binary and armored input; a key
//! that passes survives its own armor round trip, and the expiry probe
//! agrees with the full check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ripem_openpgp::{self as openpgp, KeyPolicy};

fuzz_target!(|data: &[u8]| {
    let policy = KeyPolicy::default();
    if let Ok(keys) = openpgp::parse_binary_keys(data) {
        let now = chrono::Utc::now();
        for key in keys {
            let probed_expired = openpgp::has_expired(&key, now);
            if let Ok(checked) = openpgp::check_key(key, &policy) {
                assert!(
                    !probed_expired || checked.is_expired(now),
                    "the probe found an expiry the check did not"
                );
                let back = openpgp::read_stored_key(&checked.to_armored(), &policy).expect("a checked key reads back");
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
