//! The summary of a store's update ids: a 16-ary prefix tree on the ids' hex
//! digits whose every node keeps the count of ids below it and their XOR.
//!
//! Rules: XOR is order-independent, so an insert touches only the nodes on
//! its path (O(depth), depth ≈ log16(n / 32)) and two trees holding the same
//! ids hold the same numbers whatever order the ids came in. Ids are only
//! ever added (the store is append-only). Leaves hold up to [`LEAF_MAX`] ids
//! sorted; a fuller leaf splits one digit deeper, repeatedly if the ids
//! share a longer prefix, down to the 64th digit, where a leaf holds one id,
//! so no input grows a leaf without bound. Every walk is a loop, never
//! recursion. The summary is not persisted: keysync builds it from the
//! store's ids at start and inserts each update as it stores it, so it can
//! never drift from the store across a crash.

use crate::id::{Id, Prefix, ID_BYTES, NIBBLES};

/// Ids a leaf holds before it splits.
pub const LEAF_MAX: usize = 32;

/// Bytes of a node's digest sent on the wire: 128 bits of the XOR.
pub const WIRE_DIGEST: usize = 16;

/// The count and digest of the ids under one prefix.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct NodeStats {
    /// How many ids lie under the prefix.
    pub count: u64,
    /// The first [`WIRE_DIGEST`] bytes of their XOR.
    pub digest: [u8; WIRE_DIGEST],
}

impl NodeStats {
    fn of(count: u64, xor: &[u8; ID_BYTES]) -> NodeStats {
        let mut digest = [0u8; WIRE_DIGEST];
        digest.copy_from_slice(&xor[..WIRE_DIGEST]);
        NodeStats { count, digest }
    }
}

/// The set of update ids a server holds, summarised for reconciliation.
#[derive(Clone, Debug)]
pub struct Summary {
    nodes: Vec<Node>,
}

#[derive(Clone, Debug)]
struct Node {
    count: u64,
    xor: [u8; ID_BYTES],
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    /// Ids in ascending order.
    Leaf(Vec<Id>),
    /// Index of each child in `nodes`; 0 (the root, never a child) for none.
    Inner(Box<[u32; 16]>),
}

/// Where a prefix lands in the tree.
enum Place<'a> {
    /// An inner node standing exactly at the prefix.
    Inner(&'a Node),
    /// A leaf at or above the prefix: the ids under the prefix are those
    /// of its ids the prefix contains.
    Leaf(&'a [Id]),
    /// No id lies under the prefix.
    Empty,
}

fn xor_into(acc: &mut [u8; ID_BYTES], id: &Id) {
    for (a, b) in acc.iter_mut().zip(id.0.iter()) {
        *a ^= b;
    }
}

fn leaf_stats<'a>(ids: impl Iterator<Item = &'a Id>) -> (u64, [u8; ID_BYTES]) {
    let mut xor = [0u8; ID_BYTES];
    let mut count = 0;
    for id in ids {
        xor_into(&mut xor, id);
        count += 1;
    }
    (count, xor)
}

impl Default for Summary {
    fn default() -> Self {
        Summary::new()
    }
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Summary {
        Summary {
            nodes: vec![Node {
                count: 0,
                xor: [0; ID_BYTES],
                kind: Kind::Leaf(Vec::new()),
            }],
        }
    }

    /// The summary of `ids` (duplicates count once), as built at start from
    /// the store: sorted once, then laid out top-down, each node's range of
    /// the sorted ids split by its next digit (a work list, not recursion).
    /// The same tree as inserting them one by one, built faster.
    pub fn from_ids(ids: impl IntoIterator<Item = Id>) -> Summary {
        let mut ids: Vec<Id> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut summary = Summary::new();
        let (count, xor) = leaf_stats(ids.iter());
        summary.nodes[0].count = count;
        summary.nodes[0].xor = xor;
        let mut work = vec![(0usize, 0usize, 0usize, ids.len())];
        while let Some((index, depth, start, end)) = work.pop() {
            if end - start <= LEAF_MAX || depth >= NIBBLES {
                summary.nodes[index].kind = Kind::Leaf(ids[start..end].to_vec());
                continue;
            }
            summary.nodes[index].kind = Kind::Inner(Box::new([0; 16]));
            let mut from = start;
            while from < end {
                let nibble = ids[from].nibble(depth);
                let to = from + ids[from..end].partition_point(|id| id.nibble(depth) == nibble);
                let child = summary.add_leaf(index, nibble);
                let (count, xor) = leaf_stats(ids[from..to].iter());
                summary.nodes[child].count = count;
                summary.nodes[child].xor = xor;
                work.push((child, depth + 1, from, to));
                from = to;
            }
        }
        summary
    }

    /// How many ids the summary holds.
    pub fn len(&self) -> u64 {
        self.nodes[0].count
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The XOR of every id held: with [`Summary::len`], equal on two
    /// servers that hold the same ids.
    pub fn root_digest(&self) -> [u8; ID_BYTES] {
        self.nodes[0].xor
    }

    /// Whether `id` is held.
    pub fn contains(&self, id: &Id) -> bool {
        let mut index = 0;
        let mut depth = 0;
        loop {
            match &self.nodes[index].kind {
                Kind::Leaf(ids) => return ids.binary_search(id).is_ok(),
                Kind::Inner(children) => {
                    let child = children[usize::from(id.nibble(depth))];
                    if child == 0 {
                        return false;
                    }
                    index = child as usize;
                    depth += 1;
                }
            }
        }
    }

    /// Adds `id`; `false` if it was already held (nothing changes then).
    pub fn insert(&mut self, id: Id) -> bool {
        let mut path = [0u32; NIBBLES + 1];
        let mut depth = 0;
        let mut index = 0;
        let leaf = loop {
            path[depth] = index as u32;
            let child = match &self.nodes[index].kind {
                Kind::Leaf(_) => break index,
                Kind::Inner(children) => children[usize::from(id.nibble(depth))],
            };
            index = if child == 0 {
                self.add_leaf(index, id.nibble(depth))
            } else {
                child as usize
            };
            depth += 1;
        };
        let Kind::Leaf(ids) = &mut self.nodes[leaf].kind else {
            unreachable!("the walk ends at a leaf");
        };
        let Err(at) = ids.binary_search(&id) else {
            return false;
        };
        ids.insert(at, id);
        let full = ids.len() > LEAF_MAX;
        for &node in &path[..=depth] {
            let node = &mut self.nodes[node as usize];
            node.count += 1;
            xor_into(&mut node.xor, &id);
        }
        if full {
            self.split(leaf, depth);
        }
        true
    }

    /// Makes an empty leaf the `nibble` child of inner node `parent`.
    fn add_leaf(&mut self, parent: usize, nibble: u8) -> usize {
        let index = self.nodes.len();
        self.nodes.push(Node {
            count: 0,
            xor: [0; ID_BYTES],
            kind: Kind::Leaf(Vec::new()),
        });
        if let Kind::Inner(children) = &mut self.nodes[parent].kind {
            children[usize::from(nibble)] = index as u32;
        }
        index
    }

    /// Splits the over-full leaf `index` at `depth`, and any child that is
    /// still over-full, one digit at a time (a work list, not recursion).
    fn split(&mut self, index: usize, depth: usize) {
        let mut work = vec![(index, depth)];
        while let Some((index, depth)) = work.pop() {
            let ids = match &mut self.nodes[index].kind {
                Kind::Leaf(ids) if ids.len() > LEAF_MAX && depth < NIBBLES => std::mem::take(ids),
                _ => continue,
            };
            self.nodes[index].kind = Kind::Inner(Box::new([0; 16]));
            let mut start = 0;
            while start < ids.len() {
                let nibble = ids[start].nibble(depth);
                let end = start + ids[start..].iter().take_while(|id| id.nibble(depth) == nibble).count();
                let child = self.add_leaf(index, nibble);
                let (count, xor) = leaf_stats(ids[start..end].iter());
                self.nodes[child] = Node {
                    count,
                    xor,
                    kind: Kind::Leaf(ids[start..end].to_vec()),
                };
                if end - start > LEAF_MAX {
                    work.push((child, depth + 1));
                }
                start = end;
            }
        }
    }

    fn place(&self, prefix: &Prefix) -> Place<'_> {
        let mut index = 0;
        for depth in 0..=prefix.digits() {
            let node = &self.nodes[index];
            match &node.kind {
                Kind::Leaf(ids) => return Place::Leaf(ids),
                Kind::Inner(_) if depth == prefix.digits() => return Place::Inner(node),
                Kind::Inner(children) => {
                    let child = children[usize::from(prefix.nibble(depth))];
                    if child == 0 {
                        return Place::Empty;
                    }
                    index = child as usize;
                }
            }
        }
        Place::Empty
    }

    /// The count and digest of the ids under `prefix`.
    pub fn stats(&self, prefix: &Prefix) -> NodeStats {
        match self.place(prefix) {
            Place::Inner(node) => NodeStats::of(node.count, &node.xor),
            Place::Leaf(ids) => {
                let (count, xor) = leaf_stats(ids.iter().filter(|id| prefix.contains(id)));
                NodeStats::of(count, &xor)
            }
            Place::Empty => NodeStats::default(),
        }
    }

    /// The stats of the 16 prefixes one digit longer than `prefix`
    /// (which must be shorter than 64 digits; all empty otherwise).
    pub fn children(&self, prefix: &Prefix) -> [NodeStats; 16] {
        let mut out = [NodeStats::default(); 16];
        if prefix.digits() >= NIBBLES {
            return out;
        }
        match self.place(prefix) {
            Place::Inner(node) => {
                if let Kind::Inner(children) = &node.kind {
                    for (slot, &child) in out.iter_mut().zip(children.iter()) {
                        if child != 0 {
                            let child = &self.nodes[child as usize];
                            *slot = NodeStats::of(child.count, &child.xor);
                        }
                    }
                }
            }
            Place::Leaf(ids) => {
                let mut xors = [[0u8; ID_BYTES]; 16];
                let mut counts = [0u64; 16];
                for id in ids.iter().filter(|id| prefix.contains(id)) {
                    let nibble = usize::from(id.nibble(prefix.digits()));
                    counts[nibble] += 1;
                    xor_into(&mut xors[nibble], id);
                }
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = NodeStats::of(counts[i], &xors[i]);
                }
            }
            Place::Empty => {}
        }
        out
    }

    /// Appends to `out`, ascending, up to `limit` ids under `prefix` that
    /// are greater than `after` (all of them when `after` is `None`).
    pub fn ids_after(&self, prefix: &Prefix, after: Option<&Id>, limit: usize, out: &mut Vec<Id>) {
        let wanted = |id: &Id| prefix.contains(id) && after.is_none_or(|after| id > after);
        let start = out.len();
        // Each frame: a node, its depth, the next child digit to visit, and
        // whether the walk is still on the path of `after` (then no digit
        // below `after`'s need be visited).
        let mut stack: Vec<(usize, usize, usize, bool)> = vec![(0, 0, 0, after.is_some())];
        while let Some(frame) = stack.last_mut() {
            if out.len() - start >= limit {
                return;
            }
            let (index, depth, next, on_after) = *frame;
            match &self.nodes[index].kind {
                Kind::Leaf(ids) => {
                    let room = limit - (out.len() - start);
                    out.extend(ids.iter().filter(|id| wanted(id)).take(room));
                    stack.pop();
                }
                Kind::Inner(children) => {
                    let (mut low, high) = match depth < prefix.digits() {
                        true => (usize::from(prefix.nibble(depth)), usize::from(prefix.nibble(depth))),
                        false => (0, 15),
                    };
                    let after_digit = after.map_or(0, |after| usize::from(after.nibble(depth)));
                    if on_after {
                        low = low.max(after_digit);
                    }
                    let digit = next.max(low);
                    if digit > high {
                        stack.pop();
                        continue;
                    }
                    frame.2 = digit + 1;
                    let child = children[digit];
                    if child != 0 {
                        stack.push((child as usize, depth + 1, 0, on_after && digit == after_digit));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u32) -> Id {
        use sha2::Digest;
        Id(sha2::Sha256::digest(seed.to_be_bytes()).into())
    }

    #[test]
    fn counts_and_digests_do_not_depend_on_order() {
        let ids: Vec<Id> = (0..5000).map(id).collect();
        let forward = Summary::from_ids(ids.iter().copied());
        let mut backward = Summary::new();
        for id in ids.iter().rev() {
            backward.insert(*id);
        }
        assert_eq!(forward.len(), 5000);
        assert_eq!(forward.root_digest(), backward.root_digest());
        let prefix = Prefix::parse("/7").unwrap();
        assert_eq!(forward.children(&prefix), backward.children(&prefix));
        let under = ids.iter().filter(|id| prefix.contains(id)).count() as u64;
        assert_eq!(forward.stats(&prefix).count, under);
        assert!(ids.iter().all(|id| forward.contains(id)));
        assert!(!forward.contains(&id(5000)));
    }

    #[test]
    fn ids_after_walks_in_order_from_any_point() {
        let mut ids: Vec<Id> = (0..3000).map(id).collect();
        let summary = Summary::from_ids(ids.iter().copied());
        ids.sort();
        let prefix = Prefix::parse("/a").unwrap();
        let under: Vec<Id> = ids.iter().copied().filter(|id| prefix.contains(id)).collect();
        let mut all = Vec::new();
        summary.ids_after(&prefix, None, usize::MAX, &mut all);
        assert_eq!(all, under);
        let mut paged = Vec::new();
        loop {
            let before = paged.len();
            summary.ids_after(&prefix, paged.last().copied().as_ref(), 7, &mut paged);
            if paged.len() == before {
                break;
            }
        }
        assert_eq!(paged, under);
    }

    #[test]
    fn ids_sharing_a_long_prefix_split_down_to_single_ids() {
        let mut summary = Summary::new();
        for last in 0..=255u8 {
            let mut bytes = [0u8; ID_BYTES];
            bytes[31] = last;
            assert!(summary.insert(Id(bytes)));
            assert!(!summary.insert(Id(bytes)));
        }
        assert_eq!(summary.len(), 256);
        assert_eq!(
            summary
                .stats(&Prefix::parse(&format!("/{}", "0".repeat(62))).unwrap())
                .count,
            256
        );
        assert_eq!(
            summary
                .stats(&Prefix::parse(&format!("/{}", "0".repeat(63))).unwrap())
                .count,
            16
        );
        assert_eq!(
            summary.children(&Prefix::parse(&format!("/{}", "0".repeat(63))).unwrap())[5].count,
            1
        );
        let mut all = Vec::new();
        summary.ids_after(&Prefix::ROOT, None, usize::MAX, &mut all);
        assert_eq!(all.len(), 256);
        assert!(all.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
