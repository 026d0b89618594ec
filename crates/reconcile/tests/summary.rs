//! The summary against a plain sorted set: counts, digests, children and
//! ordered walks agree for any ids and any prefix, however the summary was
//! built.

use std::collections::BTreeSet;

use proptest::prelude::*;
use ripem_reconcile::summary::{NodeStats, WIRE_DIGEST};
use ripem_reconcile::{Id, Prefix, Summary};

/// Ids that share long prefixes often (few distinct leading bytes), so
/// that leaves split deep.
fn ids() -> impl Strategy<Value = BTreeSet<Id>> {
    prop::collection::btree_set(
        (0u8..3, any::<[u8; 32]>()).prop_map(|(lead, mut bytes)| {
            bytes[..usize::from(lead) * 4].fill(0);
            Id(bytes)
        }),
        0..600,
    )
}

fn naive(ids: &BTreeSet<Id>, prefix: &Prefix) -> NodeStats {
    let mut digest = [0u8; WIRE_DIGEST];
    let mut count = 0;
    for id in ids.iter().filter(|id| prefix.contains(id)) {
        count += 1;
        for (d, b) in digest.iter_mut().zip(id.0.iter()) {
            *d ^= b;
        }
    }
    NodeStats { count, digest }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_summary_agrees_with_a_plain_set(ids in ids(), pick in any::<usize>(), depth in 0usize..=64) {
        let built = Summary::from_ids(ids.iter().copied());
        let mut grown = Summary::new();
        for id in ids.iter().rev() {
            prop_assert!(grown.insert(*id));
        }
        prop_assert_eq!(built.len(), ids.len() as u64);
        prop_assert_eq!(built.root_digest(), grown.root_digest());
        // A prefix of one of the ids (or of a made-up id when there are none).
        let sample = ids.iter().nth(pick % ids.len().max(1)).copied().unwrap_or(Id([0x5a; 32]));
        let mut prefix = Prefix::ROOT;
        for i in 0..depth {
            prefix = prefix.child(sample.nibble(i)).unwrap();
        }
        for summary in [&built, &grown] {
            prop_assert_eq!(summary.stats(&prefix), naive(&ids, &prefix));
            if depth < 64 {
                let kids = summary.children(&prefix);
                for (digit, kid) in kids.iter().enumerate() {
                    prop_assert_eq!(*kid, naive(&ids, &prefix.child(digit as u8).unwrap()));
                }
            }
            let mut walked = Vec::new();
            summary.ids_after(&prefix, Some(&sample), usize::MAX, &mut walked);
            let expected: Vec<Id> = ids.range(sample..).skip(1).filter(|id| prefix.contains(id)).copied().collect();
            prop_assert_eq!(walked, expected);
            prop_assert!(ids.iter().all(|id| summary.contains(id)));
        }
    }
}
