//! Reconciliation between real servers on loopback (keyreg and keysync
//! each): stores that differ every way — updates only on one side, on
//! both, a server restored from an old copy of its state directory, a
//! fresh server joining — end with byte-identical flat keyrings, and a
//! reconciliation cut short by killing the peer converges after restart.

mod common;
#[path = "common/federation.rs"]
mod federation;
#[path = "common/sync.rs"]
mod sync;

use std::path::Path;
use std::time::Duration;

use common::*;
use federation::{converge, link, register, Member};
use sync::{updates, wait_for, Node};

// Generous: the machine may be loaded; a passing run takes far less.
const LIMIT: Duration = Duration::from_secs(40);

/// Waits until `member`'s keysync has stored `count` updates.
fn stored(member: &Member, count: usize) {
    assert!(
        wait_for(LIMIT, || member.node.stored().len() == count),
        "{} did not store {count} updates:\n{}",
        member.node.name,
        member.logs()
    );
}

/// Links `edges` and makes every member's keysync reload its peers.
fn relink(members: &mut [Member], edges: &[(usize, usize)]) {
    link(members, edges, &[]);
    for member in members.iter() {
        member.node.signal("HUP");
    }
}

/// Copies the state directory `from` (all but the configuration and the
/// logs) into `to`, which is emptied of the same first.
fn copy_state(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let keep = |name: &str| name == "keyserver.toml" || name.ends_with(".log");
    for entry in std::fs::read_dir(to).unwrap() {
        let entry = entry.unwrap();
        if !keep(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_dir_all(entry.path());
            let _ = std::fs::remove_file(entry.path());
        }
    }
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if !keep(&entry.file_name().to_string_lossy()) {
            let copied = std::process::Command::new("cp")
                .arg("-a")
                .arg(entry.path())
                .arg(to)
                .status()
                .unwrap();
            assert!(copied.success());
        }
    }
}

fn reconciled(member: &Member) -> usize {
    member.node.log().matches("reconciled with").count()
}

#[test]
fn two_servers_with_updates_on_both_sides_and_one_restored_from_an_old_copy_converge() {
    let mut members: Vec<Member> = ["keys-a", "keys-b"].iter().map(|n| Member::new(n)).collect();
    link(&mut members, &[], &[]);
    members.iter_mut().for_each(Member::start);
    let gpg = Gpg::new();
    // Apart: one key only at a, then one at each.
    let alice = register(&members[0], &gpg, "alice@example.org", "Alice <alice@example.org>");
    stored(&members[0], 1);
    relink(&mut members, &[(0, 1)]);
    converge(&members, &[&alice], &[], LIMIT);
    let bob = register(&members[1], &gpg, "bob@example.org", "Bob <bob@example.org>");
    converge(&members, &[&alice, &bob], &[], LIMIT);
    for member in &members {
        // The status file is rewritten every second: wait for it.
        let started = std::time::Instant::now();
        let status = loop {
            let status = member.node.status();
            let done = reconciled(member) >= 1 && status.contains("missing here");
            if done || started.elapsed() > LIMIT {
                break status;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        assert!(reconciled(member) >= 1, "{}", member.logs());
        assert!(
            status.contains("reconciled") && status.contains("missing here"),
            "{status}"
        );
    }
    assert!(
        members[1].node.log().contains("1 missing here"),
        "{}",
        members[1].logs()
    );

    // a is copied while stopped, takes more mail, and is restored from
    // the copy: its store, database and peer book go back in time.
    let backup = tempfile::tempdir().unwrap();
    members[0].stop();
    copy_state(members[0].server().dir.path(), backup.path());
    members[0].start();
    let carol = register(&members[0], &gpg, "carol@example.org", "Carol <carol@example.org>");
    let dave = register(&members[1], &gpg, "dave@example.org", "Dave <dave@example.org>");
    converge(&members, &[&alice, &bob, &carol, &dave], &[], LIMIT);
    members[0].stop();
    copy_state(backup.path(), members[0].server().dir.path());
    members[0].start();
    // A new local update takes a sequence number b has counted already.
    let erin = register(&members[0], &gpg, "erin@example.org", "Erin <erin@example.org>");
    let flat = converge(&members, &[&alice, &bob, &carol, &dave, &erin], &[], LIMIT);
    assert!(flat.contains("User: erin@example.org"));
    stored(&members[0], 5);
    stored(&members[1], 5);
}

#[test]
fn without_reconciliation_a_server_restored_from_an_old_copy_is_followed_by_id() {
    // Under about 20 KiB a message cannot carry a summary's answer, so
    // reconciliation is off and sequence numbers are all there is.
    let small = "max_message_bytes = 8192";
    let mut members: Vec<Member> = ["keys-a", "keys-b"].iter().map(|n| Member::new(n)).collect();
    link(&mut members, &[(0, 1)], &[small, small]);
    members.iter_mut().for_each(Member::start);
    let gpg = Gpg::new();
    let alice = register(&members[0], &gpg, "alice@example.org", "Alice <alice@example.org>");
    let bob = register(&members[1], &gpg, "bob@example.org", "Bob <bob@example.org>");
    converge(&members, &[&alice, &bob], &[], LIMIT);

    let backup = tempfile::tempdir().unwrap();
    members[0].stop();
    copy_state(members[0].server().dir.path(), backup.path());
    members[0].start();
    let carol = register(&members[0], &gpg, "carol@example.org", "Carol <carol@example.org>");
    converge(&members, &[&alice, &bob, &carol], &[], LIMIT);
    members[0].stop();
    copy_state(backup.path(), members[0].server().dir.path());
    // Erin's update is numbered 3 at a, as carol's was: b has counted 3
    // and must fetch it by its id.
    members[0].start_keyreg();
    let erin = register(&members[0], &gpg, "erin@example.org", "Erin <erin@example.org>");
    let queue = members[0].server().path("sync/queue/new");
    let handed = || std::fs::read_dir(&queue).map(|d| d.count() == 1).unwrap_or(false);
    assert!(wait_for(LIMIT, handed), "{}", members[0].logs());
    members[0].node.start();
    converge(&members, &[&alice, &bob, &carol, &erin], &[], LIMIT);
    assert_eq!(reconciled(&members[0]) + reconciled(&members[1]), 0);
    stored(&members[0], 4);
    stored(&members[1], 4);
}

#[test]
fn three_servers_apart_then_a_fresh_one_joining_converge() {
    let mut members: Vec<Member> = ["keys-a", "keys-b", "keys-c"].iter().map(|n| Member::new(n)).collect();
    link(&mut members, &[(0, 1)], &[]);
    members.iter_mut().for_each(Member::start);
    let gpg = Gpg::new();
    let shared = register(&members[0], &gpg, "sam@example.org", "Sam <sam@example.org>");
    converge(&members[..2], &[&shared], &[], LIMIT);
    let mut keys = Vec::new();
    for (i, at) in [0, 1, 2, 2].into_iter().enumerate() {
        let email = format!("user{i}@example.org");
        keys.push(register(&members[at], &gpg, &email, &format!("User {i} <{email}>")));
    }
    stored(&members[2], 2);
    relink(&mut members, &[(0, 1), (1, 2), (0, 2)]);
    let mut present: Vec<&str> = keys.iter().map(String::as_str).collect();
    present.push(&shared);
    converge(&members, &present, &[], LIMIT);

    // A fresh server joins through c alone.
    members.push(Member::new("keys-d"));
    link(&mut members, &[(0, 1), (1, 2), (0, 2), (2, 3)], &[]);
    members[2].node.signal("HUP");
    members[3].start();
    converge(&members, &present, &[], LIMIT);
    stored(&members[3], 5);
    assert!(reconciled(&members[3]) >= 1, "{}", members[3].logs());
}

#[test]
fn a_reconciliation_cut_short_by_killing_the_peer_converges_after_restart() {
    let mut a = Node::new("a");
    let mut b = Node::new("b");
    a.set_peers(&[&b], "");
    b.set_peers(&[&a], "");
    let keys = tempfile::tempdir().unwrap();
    let theirs = updates(keys.path(), "a", 0..150);
    let ours = updates(keys.path(), "b", 0..3);
    a.start();
    for update in &theirs {
        a.queue(update);
    }
    assert!(wait_for(LIMIT, || a.status().contains("ours 150")), "{}", a.status());
    for update in &ours {
        b.queue(update);
    }
    b.start();
    // Cut while b fetches what it lacks by id.
    assert!(wait_for(LIMIT, || b.log().contains("(reconciliation)")), "{}", b.log());
    a.crash();
    let partial = b.stored().len();
    assert!(partial < 153, "the repair was not cut short ({partial})");
    a.start();
    let mut all: Vec<String> = theirs.iter().chain(&ours).map(|u| sync::id_of(u)).collect();
    all.sort();
    for node in [&a, &b] {
        assert!(wait_for(LIMIT, || node.status().contains("ours 153")), "{}", node.log());
        assert_eq!(node.stored(), all);
    }
    for id in all.iter().step_by(97) {
        assert!(b.times_stored(id) <= 1 && a.times_stored(id) <= 1, "{id} stored twice");
    }
}
