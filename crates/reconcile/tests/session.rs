//! Sessions between two real summaries: the differences found are exactly
//! the sets' differences, on both sides, whatever the sets; sets that change
//! mid-session still end the session and converge on the next; the bytes on
//! the wire are a function of the sets alone.

use std::collections::BTreeSet;

use proptest::prelude::*;
use ripem_reconcile::{reconcile, reconcile_within, Error, Id, Initiator, Limits, Message, Responder, Summary};
use sha2::Digest;

fn id(seed: u64) -> Id {
    Id(sha2::Sha256::digest(seed.to_be_bytes()).into())
}

/// Enough exchanges for any session of these tests; a session that needs
/// more is a failure.
const MAX_EXCHANGES: usize = 10_000;

/// Both sides of a finished session, and every (message, answer).
type Driven = (Initiator, Responder, Vec<(Message, Message)>);

/// One session, with `between` run on both sets after every exchange;
/// returns both sides and every (message, answer).
fn drive(
    a: &mut Summary,
    b: &mut Summary,
    limits: Limits,
    mut between: impl FnMut(usize, &mut Summary, &mut Summary),
) -> Result<Driven, Error> {
    let mut initiator = Initiator::new(limits);
    let mut responder = Responder::new(limits);
    let mut transcript = Vec::new();
    for exchange in 0..MAX_EXCHANGES {
        let Some(message) = initiator.next_message(a)? else {
            assert!(
                responder.is_over(),
                "the initiator stopped before the responder said end"
            );
            return Ok((initiator, responder, transcript));
        };
        assert!(message.len() <= limits.raised().max_message_bytes);
        let reply = responder.answer(b, &message)?;
        assert!(reply.len() <= limits.raised().max_message_bytes);
        initiator.receive(a, &reply)?;
        transcript.push((message, reply));
        between(exchange, a, b);
    }
    panic!("no end after {MAX_EXCHANGES} exchanges");
}

fn sorted(ids: &[Id]) -> Vec<Id> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

/// Builds both sets, reconciles, and checks what each side learnt.
fn check(base: &[Id], only_a: &[Id], only_b: &[Id], limits: Limits) -> Vec<(Message, Message)> {
    let mut a = Summary::from_ids(base.iter().chain(only_a).copied());
    let mut b = Summary::from_ids(base.iter().chain(only_b).copied());
    let (initiator, responder, transcript) = drive(&mut a, &mut b, limits, |_, _, _| {}).unwrap();
    assert_eq!(sorted(initiator.lacks()), sorted(only_b));
    assert_eq!(sorted(initiator.other_lacks()), sorted(only_a));
    assert_eq!(sorted(responder.lacks()), sorted(only_a));
    assert_eq!(sorted(responder.other_lacks()), sorted(only_b));
    transcript
}

fn split(seeds: &BTreeSet<u64>, base: usize, only_a: usize) -> (Vec<Id>, Vec<Id>, Vec<Id>) {
    let ids: Vec<Id> = seeds.iter().map(|&seed| id(seed)).collect();
    let (base_ids, rest) = ids.split_at(base.min(ids.len()));
    let (a, b) = rest.split_at(only_a.min(rest.len()));
    (base_ids.to_vec(), a.to_vec(), b.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn differences_found_are_exactly_the_differences(
        seeds in prop::collection::btree_set(any::<u64>(), 0..4000),
        base_share in 0.0f64..=1.0,
        a_share in 0.0f64..=1.0,
    ) {
        let base = (seeds.len() as f64 * base_share) as usize;
        let only_a = ((seeds.len() - base) as f64 * a_share) as usize;
        let (base, only_a, only_b) = split(&seeds, base, only_a);
        check(&base, &only_a, &only_b, Limits::default());
    }

    #[test]
    fn small_messages_carry_the_same_answer_over_more_exchanges(
        seeds in prop::collection::btree_set(any::<u64>(), 0..3000),
        base_share in 0.0f64..=1.0,
    ) {
        let base = (seeds.len() as f64 * base_share) as usize;
        let only_a = (seeds.len() - base) / 3;
        let (base, only_a, only_b) = split(&seeds, base, only_a);
        let limits = Limits { max_message_bytes: 16_000, max_ids_per_message: 300, ..Limits::default() };
        check(&base, &only_a, &only_b, limits);
    }

    #[test]
    fn sets_changing_mid_session_end_it_and_converge_on_the_next(
        seeds in prop::collection::btree_set(any::<u64>(), 200..3000),
        inserts in prop::collection::vec((any::<u64>(), any::<bool>()), 0..40),
    ) {
        let (base, only_a, only_b) = split(&seeds, seeds.len() / 2, seeds.len() / 4);
        let mut a = Summary::from_ids(base.iter().chain(&only_a).copied());
        let mut b = Summary::from_ids(base.iter().chain(&only_b).copied());
        // After each exchange: a few brand-new ids, and a few the other side
        // held all along (as keysync would store what it fetched).
        let mut pending = inserts.into_iter();
        let limits = Limits { max_message_bytes: 16_000, max_ids_per_message: 300, ..Limits::default() };
        let (initiator, responder, _) = drive(&mut a, &mut b, limits, |exchange, a, b| {
            for (seed, to_a) in pending.by_ref().take(3) {
                let set = if to_a { &mut *a } else { &mut *b };
                set.insert(id(seed));
                let held = if to_a { &only_b } else { &only_a };
                if !held.is_empty() {
                    set.insert(held[(seed as usize + exchange) % held.len()]);
                }
            }
        }).unwrap();
        for lacking in initiator.lacks() {
            prop_assert!(b.contains(lacking));
        }
        for lacking in responder.lacks() {
            prop_assert!(a.contains(lacking));
        }
        for found in initiator.lacks().iter().chain(responder.other_lacks()) {
            a.insert(*found);
        }
        for found in responder.lacks().iter().chain(initiator.other_lacks()) {
            b.insert(*found);
        }
        let (second, _, _) = drive(&mut a, &mut b, Limits::default(), |_, _, _| {}).unwrap();
        for found in second.lacks() {
            a.insert(*found);
        }
        for found in second.other_lacks() {
            b.insert(*found);
        }
        prop_assert_eq!(a.len(), b.len());
        prop_assert_eq!(a.root_digest(), b.root_digest());
    }
}

#[test]
fn sixteen_full_lists_fit_the_smallest_message() {
    // 16 ids under each of /00 … /0f on one side, 17 under /0f on the
    // other: the answer to the other's c /0 is 16 l lines of 16 ids each,
    // the largest answer there is, in messages no larger than allowed.
    let crafted = |first: u8, seed: u64| {
        let Id(mut bytes) = id(seed);
        bytes[0] = first;
        Id(bytes)
    };
    let only_a: Vec<Id> = (0..256u64).map(|seed| crafted((seed / 16) as u8, seed)).collect();
    let only_b: Vec<Id> = (0..17u64).map(|seed| crafted(0x0f, 1000 + seed)).collect();
    let filler: Vec<Id> = (0..2000).map(id).filter(|id| id.0[0] >= 0x10).collect();
    let limits = Limits {
        max_message_bytes: 0,
        max_ids_per_message: 0,
        ..Limits::default()
    };
    let transcript = check(&filler, &only_a, &only_b, limits);
    let lists = |text: &str| {
        text.lines()
            .filter(|line| line.starts_with("l ") && line.len() > 1000)
            .count()
    };
    assert!(transcript.iter().any(|(message, _)| lists(message.as_str()) == 16));
}

#[test]
fn equal_sets_cost_one_round_trip() {
    let ids: Vec<Id> = (0..10_000).map(id).collect();
    let transcript = check(&ids, &[], &[], Limits::default());
    assert_eq!(transcript.len(), 1);
    assert_eq!(transcript[0].1.as_str(), "end 1\n");
}

#[test]
fn empty_sets_and_a_fresh_server() {
    check(&[], &[], &[], Limits::default());
    let ids: Vec<Id> = (0..30_000).map(id).collect();
    check(&[], &[], &ids, Limits::default());
    check(&[], &ids, &[], Limits::default());
}

#[test]
fn the_wire_is_a_function_of_the_sets() {
    let (base, only_a, only_b): (Vec<Id>, Vec<Id>, Vec<Id>) = (
        (0..20_000).map(id).collect(),
        (20_000..20_100).map(id).collect(),
        (30_000..30_050).map(id).collect(),
    );
    let first = check(&base, &only_a, &only_b, Limits::default());
    // The same sets grown id by id in another order (another tree shape:
    // leaves split as they fill) write the same bytes.
    let grow = |ids: Vec<&Id>| {
        let mut summary = Summary::new();
        for id in ids.into_iter().rev() {
            summary.insert(*id);
        }
        summary
    };
    let mut a = grow(base.iter().chain(&only_a).collect());
    let mut b = grow(base.iter().chain(&only_b).collect());
    let (_, _, second) = drive(&mut a, &mut b, Limits::default(), |_, _, _| {}).unwrap();
    assert_eq!(first, second);
}

#[test]
fn cost_follows_the_differences_not_the_size() {
    let run = |n: u64| {
        let a = Summary::from_ids((0..n).map(id));
        let b = Summary::from_ids((0..n).filter(|seed| seed % (n / 40) != 7).chain(n..n + 40).map(id));
        let mut responder = Responder::new(Limits::default());
        let outcome = reconcile(&a, &mut |message| responder.answer(&b, &message)).unwrap();
        assert_eq!(outcome.stats.differences, 80);
        outcome.stats
    };
    let (small, large) = (run(10_000), run(160_000));
    let bytes = |stats: &ripem_reconcile::Stats| stats.bytes_sent + stats.bytes_received;
    // Sixteen times the ids add one level of the tree: at most one c line
    // (under 700 bytes) per difference, and at most one round trip.
    assert!(bytes(&large) <= bytes(&small) + 80 * 700, "{small:?} → {large:?}");
    assert!(large.round_trips <= small.round_trips + 1, "{small:?} → {large:?}");
    assert!(bytes(&large) < 160_000 * 64 / 20, "{large:?}");
}

#[test]
fn the_driver_reports_the_transport_failing() {
    let a = Summary::from_ids((0..100).map(id));
    let result = reconcile_within(&a, Limits::default(), &mut |_| Err(std::io::Error::other("peer gone")));
    assert!(matches!(result, Err(ripem_reconcile::DriveError::Transport(_))));
}
