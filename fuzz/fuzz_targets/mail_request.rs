//! Mail → request: the mail reader, key extraction and checks, and the
//! signed-part readers, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ripem_core::mail::RequestMail;
use ripem_core::openpgp::KeyPolicy;
use ripem_core::request;

fuzz_target!(|data: &[u8]| {
    if let Ok(mail) = RequestMail::parse(data) {
        let _ = request::prepare_add(&mail.texts, &mail.binary_keys, &KeyPolicy::default(), chrono::Utc::now(), 100);
        for part in &mail.signed_parts {
            let _ = part.issuer_key_ids();
        }
    }
});
