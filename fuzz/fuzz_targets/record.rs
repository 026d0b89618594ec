//! The record parser: never panics, and what it accepts prints back to
//! text that parses to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ripem_core::record::Record;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(record) = Record::parse(&text) {
        let again = Record::parse(&record.to_text()).expect("a printed record parses");
        assert_eq!(again, record);
    }
    for chunk in Record::split_many(&text).take(64) {
        let _ = Record::parse(&chunk);
    }
});
