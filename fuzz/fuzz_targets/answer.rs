//! keyserv's whole answer path on any bytes (decoded, warmed, answered), against a real database with
//! one record and a redirect: it never panics, and every answer is one of
//! the protocol's, ended by one NUL.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use keyserv::lookup::{answer, Handled};
use libfuzzer_sys::fuzz_target;
use ripem_core::protocol::{parse_request, Request};
use ripem_core::record::Record;
use ripem_core::types::{Email, Fingerprint};
use ripem_keydb::KeyStore;

struct Fixture {
    _dir: tempfile::TempDir,
    store: KeyStore,
    redirects: BTreeMap<String, String>,
}

/// The database handle is not shared between threads: the fuzzer calls
/// from one thread, the mutex only satisfies the static's bounds.
fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("keys.gdbm");
        let lock = dir.path().join("keys.gdbm.lock");
        let timeout = Duration::from_secs(5);
        let mut writer = KeyStore::open_write(&db, &lock, timeout).expect("writer");
        writer.begin_window().expect("window");
        writer
            .put(&Record {
                users: vec![Email::parse("alice@cs.example.edu").expect("address")],
                fingerprint: Fingerprint::parse("AAAA000011112222333344445555666677778888").expect("fingerprint"),
                registered: chrono::Utc::now(),
                updated: chrono::Utc::now(),
                key_armor: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----".into(),
            })
            .expect("put");
        writer.end_window().expect("switched in");
        drop(writer);
        Mutex::new(Fixture {
            store: KeyStore::open_read(&db, &lock, timeout).expect("reader"),
            redirects: BTreeMap::from([("example.net".to_string(), "keys.example.net".to_string())]),
            _dir: dir,
        })
    })
}

fuzz_target!(|datagram: &[u8]| {
    let fixture = fixture().lock().expect("fixture");
    let mut out = Vec::new();
    // As keyserv does: decoded once, warmed, then answered.
    let request = parse_request(datagram);
    if let Request::LookUser(query) = &request {
        fixture.store.prefetch_records([query]);
    }
    match answer(request, Some(&fixture.store), &fixture.redirects, false, &mut out) {
        Ok(handled @ (Handled::Answered | Handled::Found)) => {
            assert!(handled == Handled::Answered || out.starts_with(b"USERINFO\n"));
            assert_eq!(out.last(), Some(&0));
            assert_eq!(out.iter().filter(|&&b| b == 0).count(), 1);
            assert!(["USERINFO\n", "NOTFOUND\n", "BADFMT\n", "CMDUNREG\n", "REDIRECT\n"]
                .iter()
                .any(|kind| out.starts_with(kind.as_bytes())));
        }
        Ok(Handled::Quit) => panic!("QUIT is not allowed here"),
        Err(err) => panic!("database error: {err}"),
    }
});
