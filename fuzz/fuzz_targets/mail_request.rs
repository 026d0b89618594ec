//! Mail → request: the mail reader, key extraction and checks, and the
//! signed-part readers, on arbitrary bytes.
#![no_main]

use keyreg::request;
use libfuzzer_sys::fuzz_target;
use ripem_core::mail::RequestMail;
use ripem_openpgp::KeyPolicy;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut mail) = RequestMail::parse(data) {
        let _ = request::prepare_add(
            &mail.texts,
            &mail.binary_keys,
            &KeyPolicy::default(),
            chrono::Utc::now(),
            100,
        );
        for part in &request::signed_parts(&mut mail) {
            let _ = part.issuer_key_ids();
        }
    }
});
