//! Servers in memory: requests accepted at several servers, their updates
//! delivered to the others in every order, and every database alike.

use chrono::{DateTime, Duration, Utc};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use ripem_core::config::Rejected;
use ripem_core::types::{Email, Fingerprint, Query};
use ripem_keydb::{KeyDb, MemoryDb};
use ripem_openpgp::{check_key, clearsign, generate_key, CheckedKey, KeyPolicy, KeySpec, SignedPart, SignedSecretKey};
use ripem_update::{Clock, Update};

use super::apply::RejectList;
use super::{log, Received, Replication};
use crate::request::{self, Candidate};

struct Holder {
    secret: SignedSecretKey,
    key: CheckedKey,
}

impl Holder {
    fn new(user_ids: &[&str]) -> Holder {
        let secret = generate_key(rand::thread_rng(), &KeySpec::ed25519(user_ids)).expect("key");
        let key = check_key(secret.to_public_key(), &KeyPolicy::default()).expect("checked");
        Holder { secret, key }
    }

    fn fingerprint(&self) -> Fingerprint {
        self.key.fingerprint().clone()
    }

    fn sign(&self, text: &str) -> SignedPart {
        SignedPart::Cleartext(clearsign(&self.secret, text).expect("signed"))
    }

    fn change_to(&self, successor: &Holder) -> SignedPart {
        self.sign(&format!("ChangeKey\n{}\n", successor.key.to_armored()))
    }
}

struct Server {
    db: MemoryDb,
    clock: Clock,
    replication: Replication,
    policy: KeyPolicy,
}

impl Server {
    fn new(name: &str) -> Server {
        Server {
            db: MemoryDb::new(),
            clock: Clock::default(),
            replication: Replication {
                server_id: name.into(),
                replica: false,
                reject: RejectList::default(),
                max_clock_skew: Duration::minutes(5),
                max_request_age: Duration::days(7),
            },
            policy: KeyPolicy::default(),
        }
    }

    fn register(&mut self, holder: &Holder, now: DateTime<Utc>, sender: &str) -> Option<Update> {
        let candidate = Candidate::Key(Box::new(holder.key.clone()));
        let time = self.clock.tick(now);
        let outcome = request::apply_candidate(&mut self.db, &candidate, &self.policy, ripem_update::time_of(time))
            .expect("apply");
        let update = self
            .replication
            .key_update(&mut self.db, Some(&holder.key), &outcome, time, &self.policy)
            .expect("record")?;
        log::set_sender(&mut self.db, update.id(), sender).expect("sender");
        Some(update)
    }

    fn signed(&mut self, part: SignedPart, change: bool) -> Option<Update> {
        let time = self.clock.tick(Utc::now());
        let at = ripem_update::time_of(time);
        let parts = [part];
        let outcome = match change {
            true => request::apply_change(&mut self.db, &parts, &self.policy, at, Duration::days(7)),
            false => request::apply_remove(&mut self.db, &parts, &self.policy, at, Duration::days(7)),
        }
        .expect("apply");
        self.replication
            .signed_update(&mut self.db, &outcome, time, &self.policy)
            .expect("record")
    }

    fn receive(&mut self, updates: &[Update]) -> Received {
        self.replication
            .receive(&mut self.db, &mut self.clock, updates.to_vec(), &self.policy)
            .expect("receive")
    }

    fn owner(&self, address: &str) -> Option<Fingerprint> {
        self.db
            .fingerprint_of(&Email::parse(address).expect("email"))
            .expect("read")
    }

    /// Every record's text, by fingerprint: what db2flat would dump.
    fn state(&self) -> Vec<String> {
        let mut fingerprints = self.db.all_fingerprints().expect("list");
        fingerprints.sort();
        fingerprints
            .into_iter()
            .map(|f| {
                let record = self.db.record(&Query::Fingerprint(f)).expect("read").expect("record");
                record.to_text()
            })
            .collect()
    }
}

fn hour_ago() -> DateTime<Utc> {
    Utc::now() - Duration::hours(1)
}

#[test]
fn the_same_address_claimed_at_two_servers_ends_with_the_earlier_claim_everywhere() {
    let alice = Holder::new(&["Alice <shared@example.org>"]);
    let mallory = Holder::new(&["Mallory <shared@example.org>", "Mallory <m@example.org>"]);
    let (mut a, mut b) = (Server::new("keys-a.example.org"), Server::new("keys-b.example.org"));
    let early = a.register(&alice, hour_ago(), "alice@example.org").expect("update");
    let late = b
        .register(&mallory, hour_ago() + Duration::seconds(2), "mallory@example.org")
        .expect("update");
    assert_eq!(
        b.owner("shared@example.org"),
        Some(mallory.fingerprint()),
        "b took it first, as b saw it"
    );

    let at_a = a.receive(std::slice::from_ref(&late));
    assert_eq!(
        at_a.replayed, None,
        "a later claim of a held address is applied as it stands"
    );
    let at_b = b.receive(std::slice::from_ref(&early));
    assert!(at_b.replayed.is_some(), "an earlier claim arriving late replays");
    assert_eq!(a.state(), b.state());
    assert_eq!(b.owner("shared@example.org"), Some(alice.fingerprint()));
    assert_eq!(
        b.owner("m@example.org"),
        Some(mallory.fingerprint()),
        "its other address stays"
    );
    assert_eq!(at_b.conflicts.len(), 1, "{:?}", at_b.conflicts);
    let conflict = &at_b.conflicts[0];
    assert_eq!(conflict.sender, "mallory@example.org");
    assert_eq!(conflict.holder_origin, "keys-a.example.org");
    assert_eq!(conflict.holder, alice.fingerprint());
    let again = b.receive(&[early, late]);
    assert_eq!((again.applied, again.duplicates), (0, 2), "each update is applied once");
}

#[test]
fn changes_and_removals_at_other_servers_converge_in_any_order() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1611);
    let holders: Vec<Holder> = (0..6)
        .map(|i| {
            Holder::new(&[
                &format!("User {i} <u{i}@example.org>"),
                &format!("Shared <s{}@example.org>", i % 3),
            ])
        })
        .collect();
    let successor = Holder::new(&["User 0 <u0@example.org>", "New <new0@example.org>"]);
    let mut servers: Vec<Server> = ["keys-a", "keys-b", "keys-c"].iter().map(|n| Server::new(n)).collect();
    let mut updates = Vec::new();
    for (i, holder) in holders.iter().enumerate() {
        let at = hour_ago() + Duration::milliseconds(rng.gen_range(0..5_000));
        let server = rng.gen_range(0..servers.len());
        updates.extend(servers[server].register(holder, at, &format!("u{i}@example.org")));
    }
    // Everyone hears of the registrations, then user 0 changes key at one
    // server and user 1 removes theirs at another.
    for server in &mut servers {
        server.receive(&updates);
    }
    let first = servers[0].state();
    assert!(servers.iter().all(|s| s.state() == first), "registrations converge");
    let change = servers[1]
        .signed(holders[0].change_to(&successor), true)
        .expect("change");
    let removal = servers[2]
        .signed(holders[1].sign("RemoveKey\n"), false)
        .expect("removal");
    updates.extend([change, removal]);
    let mut fresh = Server::new("keys-d");
    for round in 0..4 {
        let mut shuffled = updates.clone();
        shuffled.shuffle(&mut rng);
        let cut = rng.gen_range(0..=shuffled.len());
        let target = if round == 0 {
            &mut fresh
        } else {
            &mut servers[round - 1]
        };
        target.receive(&shuffled[..cut]);
        target.receive(&shuffled[cut..]);
    }
    let expected = servers[0].state();
    for server in servers.iter().chain([&fresh]) {
        assert_eq!(server.state(), expected, "{} differs", server.replication.server_id);
    }
    assert_eq!(fresh.owner("u0@example.org"), Some(successor.fingerprint()));
    assert_eq!(fresh.owner("u1@example.org"), None, "removed");

    // A database replayed from its updates is the live one.
    let before = fresh.state();
    let policy = KeyPolicy::default();
    let (count, _) = fresh.replication.replay(&mut fresh.db, &policy).expect("replay");
    assert_eq!(count, updates.len());
    assert_eq!(fresh.state(), before);
}

#[test]
fn a_replayed_signed_request_is_refused_everywhere() {
    let alice = Holder::new(&["Alice <alice@example.org>"]);
    let successor = Holder::new(&["Alice <alice@example.org>"]);
    let (mut a, mut b) = (Server::new("keys-a"), Server::new("keys-b"));
    let registration = a.register(&alice, hour_ago(), "alice@example.org").expect("update");
    b.receive(std::slice::from_ref(&registration));
    let request = alice.change_to(&successor);
    let change = a.signed(request.clone(), true).expect("change");
    b.receive(std::slice::from_ref(&change));
    assert!(
        b.signed(request, true).is_none(),
        "the same signed change again changes nothing"
    );
    assert_eq!(a.state(), b.state());
    assert_eq!(b.owner("alice@example.org"), Some(successor.fingerprint()));
}

#[test]
fn rejected_keys_are_stored_but_not_applied() {
    let spam = Holder::new(&["Spam <spam@example.net>"]);
    let mut a = Server::new("keys-a");
    let mut b = Server::new("keys-b");
    b.replication.reject =
        RejectList::from_config(&[Rejected::Address(Email::parse("spam@example.net").expect("email"))]);
    let update = a.register(&spam, hour_ago(), "spam@example.net").expect("update");
    let received = b.receive(std::slice::from_ref(&update));
    assert_eq!(received.applied, 1);
    assert_eq!(b.owner("spam@example.net"), None);
    assert!(
        log::has_update(&b.db, update.id()).expect("read"),
        "kept for the history"
    );
    let mut c = Server::new("keys-c");
    c.replication.reject = RejectList::from_config(&[Rejected::Fingerprint(spam.fingerprint())]);
    c.receive(std::slice::from_ref(&update));
    assert_eq!(c.owner("spam@example.net"), None);
}

#[test]
fn a_late_update_replays_only_the_keys_it_is_linked_to() {
    let alice = Holder::new(&["Alice <shared@example.org>"]);
    let mallory = Holder::new(&["Mallory <shared@example.org>", "Mallory <m@example.org>"]);
    let others: Vec<Holder> = (0..6)
        .map(|i| Holder::new(&[&format!("Other {i} <o{i}@example.org>")]))
        .collect();
    let (mut a, mut b) = (Server::new("keys-a"), Server::new("keys-b"));
    let mut at_b = Vec::new();
    for (i, holder) in others.iter().enumerate() {
        let at = hour_ago() + Duration::seconds(10 + i as i64);
        at_b.extend(b.register(holder, at, &format!("o{i}@example.org")));
    }
    let early = a.register(&alice, hour_ago(), "alice@example.org").expect("update");
    at_b.extend(b.register(&mallory, hour_ago() + Duration::seconds(2), "m@example.org"));

    // Alice's claim and Mallory's share an address; the other six keys,
    // all registered after Alice's, share nothing with either.
    let received = b.receive(std::slice::from_ref(&early));
    assert_eq!(received.replayed, Some(2), "{received:?}");
    assert_eq!(b.owner("shared@example.org"), Some(alice.fingerprint()));
    assert_eq!(b.owner("m@example.org"), Some(mallory.fingerprint()));
    a.receive(&at_b);
    assert_eq!(a.state(), b.state());
    let before = b.state();
    let policy = KeyPolicy::default();
    let (count, _) = b.replication.replay(&mut b.db, &policy).expect("replay");
    assert_eq!(count, 8);
    assert_eq!(b.state(), before, "the part's replay is what a whole replay gives");
}

#[test]
fn a_database_without_whole_touch_lists_is_replayed_whole() {
    let alice = Holder::new(&["Alice <shared@example.org>"]);
    let mallory = Holder::new(&["Mallory <shared@example.org>"]);
    let other = Holder::new(&["Other <o@example.org>"]);
    let (mut a, mut b) = (Server::new("keys-a"), Server::new("keys-b"));
    let early = a.register(&alice, hour_ago(), "alice@example.org").expect("update");
    b.register(&mallory, hour_ago() + Duration::seconds(2), "m@example.org");
    b.register(&other, hour_ago() + Duration::seconds(3), "o@example.org");
    // As a database made before the lists were kept.
    b.db.delete_note("touch-lists").expect("delete");
    let received = b.receive(std::slice::from_ref(&early));
    assert_eq!(received.replayed, Some(3), "{received:?}");
    assert_eq!(b.owner("shared@example.org"), Some(alice.fingerprint()));
    // The full replay made the lists whole: an earlier claim still is
    // replayed with the two it is linked to, not with the other key.
    let again = Holder::new(&["Again <shared@example.org>"]);
    let mut c = Server::new("keys-c");
    let earlier = c
        .register(&again, hour_ago() - Duration::seconds(5), "again@example.org")
        .expect("update");
    let received = b.receive(std::slice::from_ref(&earlier));
    assert_eq!(received.replayed, Some(3), "{received:?}");
    assert_eq!(b.owner("shared@example.org"), Some(again.fingerprint()));
}
