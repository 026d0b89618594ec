//! keyreg killed with SIGKILL at random moments, as a bad day would go:
//! the daemon while requests arrive one by one, and `keyreg --import`
//! in the middle of a keyring. Afterwards the flat keyring must equal a
//! clean run's (record times aside), every request must have exactly one
//! reply, nothing may be left in the spool or in `spool/failed/`, and
//! keyserv must answer. `RIPEM_CRASH_KILLS` sets how many kills a run
//! makes (a short run here; `scripts/crash-soak` makes thousands), and
//! `RIPEM_CRASH_SEED` replays a run.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{plain_mail, rpgp_key, Gpg, Random, Server};

fn kills() -> usize {
    std::env::var("RIPEM_CRASH_KILLS")
        .ok()
        .and_then(|kills| kills.parse().ok())
        .unwrap_or(40)
}

/// Registration mails: rPGP keys (some sharing an address, so the order
/// of first come, first served matters), keys made by gpg, and re-sent
/// keys that merge into their registration.
fn requests(dir: &std::path::Path) -> (Vec<Vec<u8>>, String) {
    let mut keys = Vec::new();
    for n in 0..24 {
        let mut args = vec![format!("User {n} <u{n}@crash.example>")];
        if n % 4 == 0 {
            args.push(format!("Shared <shared{}@crash.example>", n / 8));
        }
        let mut argv = Vec::new();
        for uid in &args {
            argv.push("--uid");
            argv.push(uid.as_str());
        }
        keys.push(rpgp_key(dir, &format!("k{n}"), &argv));
    }
    let gpg = Gpg::new();
    for n in 0..3 {
        keys.push(gpg.key(&format!("Gee {n} <g{n}@crash.example>"), "ed25519"));
    }
    let mut mails: Vec<Vec<u8>> = keys
        .iter()
        .enumerate()
        .map(|(n, key)| plain_mail(&format!("sender{n}@crash.example"), key))
        .collect();
    for n in (0..keys.len()).step_by(5) {
        mails.push(plain_mail(&format!("again{n}@crash.example"), &keys[n]));
    }
    (mails, keys.concat())
}

/// The flat keyring without what differs from run to run: the date it
/// was made and the record times.
fn flat_without_times(server: &Server) -> String {
    let dump = server.run("db2flat", &[], b"");
    assert_eq!(dump.code, 0, "db2flat: {}", dump.stderr);
    std::fs::read_to_string(server.path("pub/pubkeys.txt"))
        .unwrap()
        .lines()
        .filter(|line| {
            !line.starts_with("# Created") && !line.starts_with("Registered:") && !line.starts_with("Updated:")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn start_daemon(server: &Server) -> Child {
    server
        .command("keyreg")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn spool_is_empty(server: &Server) -> bool {
    ["add", "change", "remove"]
        .iter()
        .all(|queue| server.pending(queue) == 0)
}

fn assert_whole(server: &Server, requests: usize, clean: &str) {
    assert!(spool_is_empty(server), "requests left in the spool");
    let failed = std::fs::read_dir(server.path("spool/failed")).map_or(0, |dir| dir.count());
    assert_eq!(failed, 0, "requests moved to spool/failed/");
    let replies = server.outbox();
    assert_eq!(replies.len(), requests, "one reply per request");
    assert_eq!(
        flat_without_times(server),
        clean,
        "the flat keyring equals a clean run's"
    );
    let keyserv = server.start_keyserv();
    assert!(keyserv.lookup("u1@crash.example").starts_with("USERINFO"));
    keyserv.stop();
}

#[test]
fn the_daemon_killed_at_random_moments_loses_nothing() {
    let keys = tempfile::tempdir().unwrap();
    let (mails, _) = requests(keys.path());
    let clean_server = Server::new();
    for mail in &mails {
        clean_server.mail("add", mail);
    }
    clean_server.keyreg_once();
    let clean = flat_without_times(&clean_server);

    let server = Server::new();
    let mut random = Random::new();
    let mut daemon = start_daemon(&server);
    // Once every mail is in, they come again (re-sent keys merge and
    // change nothing), so every kill lands among requests.
    let mut delivered = 0;
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(900);
    while killed < kills() && Instant::now() < deadline {
        if random.below(3) > 0 {
            server.mail("add", &mails[delivered % mails.len()]);
            delivered += 1;
        }
        std::thread::sleep(Duration::from_micros(random.below(60_000)));
        kill(&mut daemon);
        killed += 1;
        daemon = start_daemon(&server);
    }
    for mail in mails.iter().skip(delivered) {
        server.mail("add", mail);
        delivered += 1;
    }
    let settled = Instant::now() + Duration::from_secs(60);
    while !spool_is_empty(&server) && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(&mut daemon);
    server.keyreg_once();
    eprintln!("{killed} kills, {delivered} requests");
    assert_whole(&server, delivered, &clean);
}

#[test]
fn an_import_killed_at_random_moments_ends_with_the_right_keyring() {
    let keys = tempfile::tempdir().unwrap();
    let (_, keyring) = requests(keys.path());
    let file = keys.path().join("keyring.asc");
    std::fs::write(&file, &keyring).unwrap();
    let file = file.to_str().unwrap();
    let clean_server = Server::new();
    assert_eq!(clean_server.run("keyreg", &["--import", file], b"").code, 0);
    let clean = flat_without_times(&clean_server);

    let server = Server::new();
    let mut random = Random::new();
    let imports = (kills() / 4).max(5);
    for _ in 0..imports {
        let mut import: Child = Command::new(common::bin("keyreg"))
            .arg("--config")
            .arg(&server.config)
            .args(["--import", file])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(random.below(400_000)));
        kill(&mut import);
    }
    let last = server.run("keyreg", &["--import", file], b"");
    assert_eq!(last.code, 0, "{}", last.stderr);
    eprintln!("{imports} imports killed");
    assert_eq!(flat_without_times(&server), clean);
}
