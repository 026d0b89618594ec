//! Several real servers on loopback — keyreg and keysync each, linked in a
//! mesh, a chain or a ring — taking mail at random members while members
//! crash, hang and come back; in the end every server's flat keyring is
//! the same, line for line (but for its `# Created on` line), and holds
//! the effect of every accepted request.

mod common;
#[path = "common/federation.rs"]
mod federation;
#[path = "common/sync.rs"]
mod sync;

use std::time::{Duration, Instant};

use common::*;
use federation::{converge, link, register, Member};

fn owner_in(flat: &str, address: &str) -> Option<String> {
    flat.split("\n\n")
        .find(|record| record.lines().any(|l| l == format!("User: {address}")))
        .and_then(record_fingerprint)
}

/// A PGP/MIME change request from `old_fpr` to the key `new_armored`.
fn pgp_mime_change(gpg: &Gpg, old_fpr: &str, new_armored: &str) -> Vec<u8> {
    let text = format!("ChangeKey\r\n\r\n{}", new_armored.replace('\n', "\r\n"));
    let part = format!("Content-Type: text/plain; charset=us-ascii\r\n\r\n{text}");
    let signature = gpg.run(&["--detach-sign", "--armor", "--local-user", old_fpr], part.as_bytes());
    assert_eq!(signature.code, 0, "{}", signature.stderr);
    format!(
        "From: alice@example.org\r\nSubject: new key\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; micalg=pgp-sha256; protocol=\"application/pgp-signature\"; boundary=\"sig\"\r\n\r\n--sig\r\n{part}\r\n--sig\r\nContent-Type: application/pgp-signature; name=\"signature.asc\"\r\n\r\n{}\r\n--sig--\r\n",
        signature.stdout.replace('\n', "\r\n")
    )
    .into_bytes()
}

#[test]
fn a_mesh_converges_through_crashes_hangs_changes_and_removals() {
    let mut members: Vec<Member> = ["keys-a", "keys-b", "keys-c"].iter().map(|n| Member::new(n)).collect();
    link(&mut members, &[(0, 1), (1, 2), (0, 2)], &[]);
    members.iter_mut().for_each(Member::start);
    let gpg = Gpg::new();

    let alice = register(&members[0], &gpg, "alice@example.org", "Alice <alice@example.org>");
    let carol = register(&members[1], &gpg, "carol@example.org", "Carol <carol@example.org>");
    converge(&members, &[&alice, &carol], &[], Duration::from_secs(30));

    // keysync of b killed and c's hung while a and c take mail.
    members[1].node.crash();
    members[2].node.signal("STOP");
    let dave = register(&members[0], &gpg, "dave@example.org", "Dave <dave@example.org>");
    let erin = register(&members[2], &gpg, "erin@example.org", "Erin <erin@example.org>");
    std::thread::sleep(Duration::from_secs(2));
    members[1].node.start();
    members[2].node.signal("CONT");
    // keyreg of a killed and restarted.
    members[0].crash_keyreg();
    let frank = register(&members[0], &gpg, "frank@example.org", "Frank <frank@example.org>");
    members[0].start_keyreg();
    converge(
        &members,
        &[&alice, &carol, &dave, &erin, &frank],
        &[],
        Duration::from_secs(40),
    );

    // Alice changes her key at c (PGP/MIME), Carol removes hers at a.
    next_second();
    let (successor, armored) = alice_successor(&gpg);
    members[2].mail("change", &pgp_mime_change(&gpg, &alice, &armored));
    let removal = clearsign(&gpg, &carol, "RemoveKey\n");
    members[0].mail("remove", &mail_to("remove", "carol@example.org", &removal));
    let flat = converge(
        &members,
        &[&successor, &dave],
        &[&alice, &carol],
        Duration::from_secs(40),
    );
    assert_eq!(
        owner_in(&flat, "alice@example.org").as_deref(),
        Some(successor.as_str())
    );
    assert_eq!(owner_in(&flat, "carol@example.org"), None);

    // Every database replayed from its updates is the live one.
    for member in &members {
        let before = member.flat();
        let run = member.server().run("keyreg", &["--replay"], b"");
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(member.flat(), before, "{} after --replay", member.node.name);
    }
}

#[test]
fn the_same_address_claimed_at_two_servers_of_a_chain_ends_alike_and_the_loser_is_told() {
    let mut members: Vec<Member> = ["keys-a", "keys-b", "keys-c"].iter().map(|n| Member::new(n)).collect();
    link(&mut members, &[(0, 1), (1, 2)], &["", "", "replica = true"]);
    members.iter_mut().for_each(Member::start);
    let (first, second) = (Gpg::new(), Gpg::new());
    // Both end servers of the chain take a claim of the same address at
    // once; the one with the earlier update time wins everywhere.
    let key_a = first.key("Bob <bob@example.org>", "ed25519");
    let key_b = second.key("Robert <bob@example.org>", "ed25519");
    members[0].mail("add", &plain_mail("bob@example.org", &key_a));
    members[1].mail("add", &plain_mail("robert@example.net", &key_b));
    let (fpr_a, fpr_b) = (
        first.fingerprint("bob@example.org"),
        second.fingerprint("bob@example.org"),
    );
    let flat = converge(&members, &["bob@example.org"], &[], Duration::from_secs(40));
    let holder = owner_in(&flat, "bob@example.org").expect("held");
    assert!(holder == fpr_a || holder == fpr_b);
    // The sender of the other claim heard, by the reply or by a notice.
    let (loser, at) = if holder == fpr_a {
        ("robert@example.net", 1)
    } else {
        ("bob@example.org", 0)
    };
    let started = Instant::now();
    loop {
        let told = members[at].server().outbox().iter().any(|m| {
            m.to == loser && (m.body.contains("already registered") || m.body.contains("earlier registration"))
        });
        if told {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{loser} was not told:\n{}",
            members[at].logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The replica refuses mail but holds everything.
    let gpg = Gpg::new();
    let zoe = register(&members[2], &gpg, "zoe@example.org", "Zoe <zoe@example.org>");
    let started = Instant::now();
    while !members[2].server().outbox().iter().any(|m| m.to == "zoe@example.org") {
        assert!(started.elapsed() < Duration::from_secs(20), "no reply from the replica");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(replies_to(members[2].server(), "zoe@example.org").contains("lookup-only replica"));
    let yann = register(&members[0], &gpg, "yann@example.org", "Yann <yann@example.org>");
    converge(&members, &[&yann, "bob@example.org"], &[&zoe], Duration::from_secs(30));
}

#[test]
fn a_ring_of_four_with_a_partition_heals() {
    let mut members: Vec<Member> = ["keys-a", "keys-b", "keys-c", "keys-d"]
        .iter()
        .map(|n| Member::new(n))
        .collect();
    link(&mut members, &[(0, 1), (1, 2), (2, 3), (3, 0)], &[]);
    members.iter_mut().for_each(Member::start);
    let gpg = Gpg::new();
    // Partition {a, b} from {c, d}: b's and d's keysync are stopped, so
    // a and c are cut off from each other's side.
    members[1].node.crash();
    members[3].node.crash();
    let mut expected = Vec::new();
    for (i, at) in [0, 2, 0, 2, 1, 3].into_iter().enumerate() {
        let email = format!("user{i}@example.org");
        expected.push(register(&members[at], &gpg, &email, &format!("User {i} <{email}>")));
    }
    std::thread::sleep(Duration::from_secs(2));
    members[1].node.start();
    members[3].node.start();
    let present: Vec<&str> = expected.iter().map(String::as_str).collect();
    converge(&members, &present, &[], Duration::from_secs(40));

    // keyreg --import at one server makes updates like mail does.
    let other = Gpg::new();
    let imported: Vec<String> = (0..3)
        .map(|i| {
            let email = format!("imported{i}@example.org");
            other.key(&format!("Imported {i} <{email}>"), "ed25519");
            other.fingerprint(&email)
        })
        .collect();
    let ring = members[1].server().path("import.asc");
    std::fs::write(&ring, other.run(&["--armor", "--export"], b"").stdout).unwrap();
    let run = members[1]
        .server()
        .run("keyreg", &["--import", ring.to_str().unwrap()], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let present: Vec<&str> = expected.iter().chain(&imported).map(String::as_str).collect();
    converge(&members, &present, &[], Duration::from_secs(40));
}
