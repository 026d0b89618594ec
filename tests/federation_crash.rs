//! A mesh of three real servers whose keyreg and keysync daemons are
//! killed (SIGKILL) and hung (SIGSTOP) at random moments, again and
//! again, while registrations arrive by mail at random members. In the
//! end nothing is lost and nothing is doubled: every flat keyring is the
//! same and holds every registered key, every keysync store holds every
//! update exactly once, and every database replays to itself.
//!
//! `RIPEM_SYNC_FAULTS` sets the number of faults (default 40, which
//! `./scripts/test` runs; `scripts/crash-soak --sync` runs hundreds);
//! `RIPEM_CRASH_SEED` replays a run.

mod common;
#[path = "common/federation.rs"]
mod federation;
#[path = "common/sync.rs"]
mod sync;

use std::time::{Duration, Instant};

use common::*;
use federation::{converge, link, Member};

fn faults() -> usize {
    std::env::var("RIPEM_SYNC_FAULTS")
        .ok()
        .and_then(|faults| faults.parse().ok())
        .unwrap_or(40)
}

/// One fault at `member`: which daemon, and what happens to it.
fn fault(member: &mut Member, random: &mut Random) -> &'static str {
    let pause = Duration::from_millis(random.below(400));
    match random.below(5) {
        0 => {
            member.crash_keyreg();
            std::thread::sleep(pause);
            member.start_keyreg();
            "keyreg killed"
        }
        1 => {
            member.node.crash();
            std::thread::sleep(pause);
            member.node.start();
            "keysync killed"
        }
        2 => {
            member.crash_keyreg();
            member.node.crash();
            std::thread::sleep(pause);
            member.node.start();
            member.start_keyreg();
            "both killed"
        }
        3 => {
            member.signal_keyreg("STOP");
            std::thread::sleep(pause * 3);
            member.signal_keyreg("CONT");
            "keyreg hung"
        }
        _ => {
            member.node.signal("STOP");
            std::thread::sleep(pause * 3);
            member.node.signal("CONT");
            "keysync hung"
        }
    }
}

#[test]
fn a_mesh_whose_daemons_are_killed_and_hung_at_random_loses_and_doubles_nothing() {
    let keys = tempfile::tempdir().unwrap();
    let mut members: Vec<Member> = ["keys-a", "keys-b", "keys-c"].iter().map(|n| Member::new(n)).collect();
    link(&mut members, &[(0, 1), (1, 2), (0, 2)], &[]);
    members.iter_mut().for_each(Member::start);
    let mut random = Random::new();

    let mut users = Vec::new();
    let mut counts = std::collections::BTreeMap::new();
    // Bounded however many faults are asked for: about 2 s each.
    let deadline = Instant::now() + Duration::from_secs(60 + 5 * faults() as u64);
    let mut done = 0;
    while done < faults() && Instant::now() < deadline {
        for _ in 0..random.below(3) {
            let n = users.len();
            let email = format!("u{n}@soak.example");
            let key = rpgp_key(
                keys.path(),
                &format!("k{n}"),
                &["--uid", &format!("User {n} <{email}>")],
            );
            let at = random.below(3) as usize;
            members[at].mail("add", &plain_mail(&email, &key));
            // Now and then the same key again at another member: it
            // merges and changes nothing.
            if random.below(4) == 0 {
                members[(at + 1) % 3].mail("add", &plain_mail(&email, &key));
            }
            users.push(format!("User: {email}\n"));
        }
        std::thread::sleep(Duration::from_millis(random.below(300)));
        let at = random.below(3) as usize;
        *counts.entry(fault(&mut members[at], &mut random)).or_insert(0) += 1;
        done += 1;
    }
    eprintln!("{done} faults: {counts:?}; {} registrations", users.len());

    let wanted: Vec<&str> = users.iter().map(String::as_str).collect();
    converge(&members, &wanted, &[], Duration::from_secs(120));
    // A key mailed again elsewhere before its registration got there is
    // registered there too: two updates, one record.
    let same = || {
        let stores: Vec<Vec<String>> = members.iter().map(|m| m.node.stored()).collect();
        stores.iter().all(|ids| *ids == stores[0])
    };
    assert!(sync::wait_for(Duration::from_secs(60), same), "the stores differ");
    assert!(members[0].node.stored().len() >= users.len());
    for member in &members {
        let ids = member.node.stored();
        // The dump counts what the store holds, each id once; the log
        // shows an id stored twice if it was (a kill between storing and
        // logging leaves no line, which is no harm).
        for id in &ids {
            assert!(
                member.node.times_stored(id) <= 1,
                "{id} stored twice\n{}",
                member.logs()
            );
        }
        assert_eq!(member.server().pending("add"), 0, "{}", member.logs());
        let failed = std::fs::read_dir(member.server().path("spool/failed")).map_or(0, |dir| dir.count());
        assert_eq!(failed, 0, "requests moved to spool/failed/\n{}", member.logs());
    }
    for member in &mut members {
        member.stop();
        let before = member.flat();
        let run = member.server().run("keyreg", &["--replay"], b"");
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(member.flat(), before, "{} after --replay", member.node.name);
    }
}
