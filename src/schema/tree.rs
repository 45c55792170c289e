//! A file's extent tree: which extent holds each byte of the file. Leaves
//! hold entries `(offset, length, extent id, offset in the extent)`,
//! sorted and never overlapping; a range no entry covers is a hole and
//! reads as zeros. Internal nodes hold `(first offset, node id)`: child
//! `i` covers the offsets from its own first offset to the next child's
//! (the first child from where its parent's range starts), so every
//! offset has one place. The root lives in the inode record; the other
//! nodes are records of their own (`n` keys), written once and never
//! changed: a change writes new nodes up the path it touched, so a version
//! of the file (an inode record) keeps reading what it read.

use std::sync::Arc;

use super::codec::{In, Out, corrupt};
use crate::backend::Result;

/// Most entries a leaf record holds (4 KiB of entries).
pub const LEAF_MAX: usize = 128;
/// Most children an internal node record holds.
pub const INNER_MAX: usize = 256;
/// Most entries or children the root holds in the inode record.
pub const ROOT_MAX: usize = 8;

/// The file's bytes `[off, off + len)` are the extent's `[at, at + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Extent {
    pub off: u64,
    pub len: u64,
    pub id: u64,
    pub at: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.off + self.len
    }

    /// Where the extent's first byte would be in the file: the same for
    /// every entry that reaches this extent from this file, unless it was
    /// copied elsewhere (`cp --reflink`).
    pub fn origin(&self) -> u64 {
        self.off.wrapping_sub(self.at)
    }

    /// The part of this entry within `[a, b)`, if any.
    pub fn clip(&self, a: u64, b: u64) -> Option<Extent> {
        let (start, end) = (self.off.max(a), self.end().min(b));
        (start < end).then(|| Extent {
            off: start,
            len: end - start,
            id: self.id,
            at: self.at + (start - self.off),
        })
    }

    /// Whether `next` continues this entry in the file and in the extent.
    fn joins(&self, next: &Extent) -> bool {
        self.end() == next.off && self.id == next.id && self.at + self.len == next.at
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Child {
    pub off: u64,
    pub id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Leaf(Vec<Extent>),
    Inner(Vec<Child>),
}

impl Node {
    fn len(&self) -> usize {
        match self {
            Node::Leaf(e) => e.len(),
            Node::Inner(c) => c.len(),
        }
    }

    fn encode_into(&self, o: &mut Out) {
        match self {
            Node::Leaf(entries) => {
                o.var(entries.len() as u64);
                for e in entries {
                    o.u64(e.off).u64(e.len).u64(e.id).u64(e.at);
                }
            }
            Node::Inner(children) => {
                o.var(children.len() as u64);
                for c in children {
                    o.u64(c.off).u64(c.id);
                }
            }
        }
    }

    fn decode_from(i: &mut In, level: u8) -> Result<Node> {
        let n = i.var()?;
        // No more entries than the bytes left could hold.
        if n > 1 << 20 {
            return Err(corrupt("extent tree"));
        }
        Ok(match level {
            0 => {
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let (off, len, id, at) = (i.u64()?, i.u64()?, i.u64()?, i.u64()?);
                    v.push(Extent { off, len, id, at });
                }
                Node::Leaf(v)
            }
            _ => {
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let (off, id) = (i.u64()?, i.u64()?);
                    v.push(Child { off, id });
                }
                Node::Inner(v)
            }
        })
    }

    /// The record of a node other than the root: its owner (the inode
    /// whose tree it is, for telling garbage), its level, its entries.
    pub fn encode(&self, owner: u64, level: u8) -> Vec<u8> {
        let mut o = Out::default();
        o.u64(owner).u8(level);
        self.encode_into(&mut o);
        o.0
    }

    /// A node record: owner, level and node.
    pub fn decode(b: &[u8]) -> Result<(u64, u8, Node)> {
        let mut i = In::new(b, "extent tree node");
        let (owner, level) = (i.u64()?, i.u8()?);
        let node = Node::decode_from(&mut i, level)?;
        i.end()?;
        Ok((owner, level, node))
    }
}

/// The root of a tree, kept in the inode record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    /// 0: the root is the only leaf.
    pub level: u8,
    pub node: Node,
}

impl Default for Root {
    fn default() -> Self {
        Root {
            level: 0,
            node: Node::Leaf(Vec::new()),
        }
    }
}

impl Root {
    /// A tree of these entries, which fit in the root.
    pub fn of(entries: Vec<Extent>) -> Root {
        Root {
            level: 0,
            node: Node::Leaf(entries),
        }
    }

    pub fn encode_into(&self, o: &mut Out) {
        o.u8(self.level);
        self.node.encode_into(o);
    }

    pub fn decode_from(i: &mut In) -> Result<Root> {
        let level = i.u8()?;
        let node = Node::decode_from(i, level)?;
        Ok(Root { level, node })
    }
}

/// Where the nodes of trees are read from (a cache over the backend).
pub trait Nodes {
    fn node(&self, id: u64) -> Result<Arc<Node>>;
}

/// What a change of a tree wrote and left behind.
#[derive(Debug, Default)]
pub struct Change {
    /// New node records: id and record, to write before the inode.
    pub writes: Vec<(u64, Vec<u8>)>,
    /// The same nodes, decoded, so that the new tree can be read before
    /// they are stored (`Change::over`).
    pub nodes: Vec<(u64, Arc<Node>)>,
    /// Nodes of the old tree the new one no longer has.
    pub freed: Vec<u64>,
    /// The parts of entries the change removed: their extents may be
    /// reachable no more.
    pub removed: Vec<Extent>,
}

/// The entries covering `[a, b)`, clipped to it, in order.
pub fn read(nodes: &dyn Nodes, root: &Root, a: u64, b: u64) -> Result<Vec<Extent>> {
    let mut out = Vec::new();
    read_node(nodes, &root.node, a, b, &mut out)?;
    Ok(out)
}

fn read_node(nodes: &dyn Nodes, node: &Node, a: u64, b: u64, out: &mut Vec<Extent>) -> Result<()> {
    match node {
        Node::Leaf(entries) => {
            let first = entries.partition_point(|e| e.end() <= a);
            for e in &entries[first..] {
                if e.off >= b {
                    break;
                }
                out.extend(e.clip(a, b));
            }
        }
        Node::Inner(children) => {
            for i in overlapping(children, a, b) {
                read_node(nodes, &*nodes.node(children[i].id)?, a, b, out)?;
            }
        }
    }
    Ok(())
}

/// The children whose ranges meet `[a, b)` (child 0 reaches down to the
/// parent's first offset).
fn overlapping(children: &[Child], a: u64, b: u64) -> std::ops::Range<usize> {
    if children.is_empty() || a >= b {
        return 0..0;
    }
    let first = children.partition_point(|c| c.off <= a).max(1) - 1;
    let last = children.partition_point(|c| c.off < b).max(1);
    first..last
}

/// Everything the tree reaches: its nodes (not the root) and entries.
pub fn walk(
    nodes: &dyn Nodes,
    root: &Root,
    node_ids: &mut Vec<u64>,
    entries: &mut Vec<Extent>,
) -> Result<()> {
    walk_node(nodes, &root.node, node_ids, entries)
}

fn walk_node(
    nodes: &dyn Nodes,
    node: &Node,
    ids: &mut Vec<u64>,
    entries: &mut Vec<Extent>,
) -> Result<()> {
    match node {
        Node::Leaf(e) => entries.extend_from_slice(e),
        Node::Inner(children) => {
            for c in children {
                ids.push(c.id);
                walk_node(nodes, &*nodes.node(c.id)?, ids, entries)?;
            }
        }
    }
    Ok(())
}

/// What a change of one tree needs besides the tree.
struct Ctx<'a> {
    nodes: &'a dyn Nodes,
    owner: u64,
    alloc: &'a mut dyn FnMut() -> u64,
    change: Change,
}

impl Ctx<'_> {
    /// Writes `node` (at `level`) as a record of its own; its id.
    fn store(&mut self, node: Node, level: u8) -> u64 {
        let id = (self.alloc)();
        self.change
            .writes
            .push((id, node.encode(self.owner, level)));
        self.change.nodes.push((id, Arc::new(node)));
        id
    }

    fn node(&self, id: u64) -> Result<Arc<Node>> {
        self.change.over(self.nodes).node(id)
    }
}

/// The nodes of a tree that a change made, before they are stored: the
/// change's own, then the store's.
pub struct Over<'a> {
    change: &'a Change,
    nodes: &'a dyn Nodes,
}

impl Nodes for Over<'_> {
    fn node(&self, id: u64) -> Result<Arc<Node>> {
        match self.change.nodes.iter().find(|(w, _)| *w == id) {
            Some((_, n)) => Ok(n.clone()),
            None => self.nodes.node(id),
        }
    }
}

impl Change {
    pub fn over<'a>(&'a self, nodes: &'a dyn Nodes) -> Over<'a> {
        Over {
            change: self,
            nodes,
        }
    }
}

/// A range of the file and what it holds after a change: `new`'s entries
/// (within it, sorted, apart) and holes between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub a: u64,
    pub b: u64,
    pub new: Vec<Extent>,
}

impl Span {
    /// This span within `[lo, hi)`, if it reaches in.
    fn clip(&self, lo: u64, hi: u64) -> Option<Span> {
        let (a, b) = (self.a.max(lo), self.b.min(hi));
        (a < b).then(|| Span {
            a,
            b,
            new: self.new.iter().filter_map(|e| e.clip(a, b)).collect(),
        })
    }
}

/// The tree with each span's range holding what the span says and the
/// rest as it was. Spans are sorted and apart; a span without entries
/// punches a hole, one reaching `u64::MAX` truncates. New node ids come
/// from `alloc`.
pub fn replace(
    nodes: &dyn Nodes,
    owner: u64,
    root: &Root,
    spans: &[Span],
    alloc: &mut dyn FnMut() -> u64,
) -> Result<(Root, Change)> {
    let mut cx = Ctx {
        nodes,
        owner,
        alloc,
        change: Change::default(),
    };
    let parts = replace_in(&mut cx, &root.node, root.level, 0, spans)?;
    let root = rooted(&mut cx, root.level, parts)?;
    Ok((root, cx.change))
}

/// `replace` within `node` (at `level`, covering offsets from `lo` on,
/// which every span lies within): the nodes that take its place, each
/// with its first offset.
fn replace_in(
    cx: &mut Ctx,
    node: &Node,
    level: u8,
    lo: u64,
    spans: &[Span],
) -> Result<Vec<(u64, Node)>> {
    match node {
        Node::Leaf(entries) => {
            let mut kept = Vec::with_capacity(entries.len() + 2);
            for e in entries {
                let mut rest = Some(*e);
                for s in spans {
                    let Some(r) = rest else { break };
                    let Some(gone) = r.clip(s.a, s.b) else {
                        continue;
                    };
                    cx.change.removed.push(gone);
                    kept.extend(r.clip(r.off, s.a));
                    rest = r.clip(s.b, u64::MAX);
                }
                kept.extend(rest);
            }
            kept.extend(spans.iter().flat_map(|s| s.new.iter().copied()));
            kept.sort_unstable_by_key(|e| e.off);
            Ok(split(join(kept), LEAF_MAX, lo, |e| e.off)
                .into_iter()
                .map(|(off, v)| (off, Node::Leaf(v)))
                .collect())
        }
        Node::Inner(children) => {
            let mut out = Vec::with_capacity(children.len() + 2);
            for (i, c) in children.iter().enumerate() {
                let c_lo = if i == 0 { lo } else { c.off };
                let c_hi = children.get(i + 1).map_or(u64::MAX, |n| n.off);
                let mine: Vec<Span> = spans.iter().filter_map(|s| s.clip(c_lo, c_hi)).collect();
                if mine.is_empty() {
                    out.push(*c);
                    continue;
                }
                let child = cx.nodes.node(c.id)?;
                let parts = replace_in(cx, &child, level - 1, c_lo, &mine)?;
                cx.change.freed.push(c.id);
                for (off, n) in parts {
                    let id = cx.store(n, level - 1);
                    out.push(Child { off, id });
                }
            }
            if let Some(first) = out.first_mut() {
                first.off = lo;
            }
            Ok(split(out, INNER_MAX, lo, |c| c.off)
                .into_iter()
                .map(|(off, v)| (off, Node::Inner(v)))
                .collect())
        }
    }
}

/// Entries with neighbours that continue each other made one.
fn join(entries: Vec<Extent>) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::with_capacity(entries.len());
    for e in entries {
        match out.last_mut() {
            Some(last) if last.joins(&e) => last.len += e.len,
            _ => out.push(e),
        }
    }
    out
}

/// `items` in nodes of at most `max`, as even as can be; the first node
/// starts at `lo`, the others at their first item.
fn split<T: Copy>(
    items: Vec<T>,
    max: usize,
    lo: u64,
    off: impl Fn(&T) -> u64,
) -> Vec<(u64, Vec<T>)> {
    if items.is_empty() {
        return Vec::new();
    }
    let parts = items.len().div_ceil(max);
    let per = items.len().div_ceil(parts);
    items
        .chunks(per)
        .enumerate()
        .map(|(i, c)| (if i == 0 { lo } else { off(&c[0]) }, c.to_vec()))
        .collect()
}

/// The root over `parts`, the nodes that took the old root's place at
/// `level`: grown by a level while they do not fit in an inode, shrunk
/// while it holds one child that would.
fn rooted(cx: &mut Ctx, mut level: u8, mut parts: Vec<(u64, Node)>) -> Result<Root> {
    loop {
        match parts.len() {
            0 => return Ok(Root::default()),
            1 if parts[0].1.len() <= ROOT_MAX => break,
            _ => {}
        }
        let children: Vec<Child> = parts
            .into_iter()
            .map(|(off, n)| Child {
                off,
                id: cx.store(n, level),
            })
            .collect();
        level += 1;
        parts = split(children, INNER_MAX, 0, |c| c.off)
            .into_iter()
            .map(|(off, v)| (off, Node::Inner(v)))
            .collect();
    }
    let mut root = Root {
        level,
        node: parts.swap_remove(0).1,
    };
    while let Node::Inner(children) = &root.node {
        let [only] = children.as_slice() else { break };
        let child = cx.node(only.id)?;
        if child.len() > ROOT_MAX {
            break;
        }
        // A node written by this change is not written after all.
        match cx.change.writes.iter().position(|(id, _)| *id == only.id) {
            Some(i) => {
                cx.change.writes.remove(i);
                cx.change.nodes.retain(|(id, _)| *id != only.id);
            }
            None => cx.change.freed.push(only.id),
        }
        root = Root {
            level: root.level - 1,
            node: (*child).clone(),
        };
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use super::*;

    /// Nodes kept in a map, as the backend would keep their records.
    #[derive(Default)]
    struct Store {
        nodes: HashMap<u64, (u8, Arc<Node>)>,
        next: u64,
    }

    impl Nodes for Store {
        fn node(&self, id: u64) -> Result<Arc<Node>> {
            Ok(self.nodes[&id].1.clone())
        }
    }

    impl Store {
        fn apply(&mut self, owner: u64, c: &Change) {
            for (id, rec) in &c.writes {
                let (o, level, n) = Node::decode(rec).unwrap();
                assert_eq!(o, owner);
                assert!(self.nodes.insert(*id, (level, Arc::new(n))).is_none());
            }
            for id in &c.freed {
                assert!(self.nodes.remove(id).is_some(), "node {id} freed twice");
            }
        }

        fn change(&mut self, root: &Root, a: u64, b: u64, new: &[Extent]) -> (Root, Change) {
            let span = Span {
                a,
                b,
                new: new.to_vec(),
            };
            self.change_spans(root, &[span])
        }

        fn change_spans(&mut self, root: &Root, spans: &[Span]) -> (Root, Change) {
            let mut next = self.next;
            let r = replace(self, 7, root, spans, &mut || {
                next += 1;
                next
            })
            .unwrap();
            self.next = next;
            self.apply(7, &r.1);
            r
        }

        /// Every node the tree reaches is stored and no other is; leaves
        /// are sorted and within their ranges; sizes within bounds.
        fn check(&self, root: &Root) {
            assert!(root.node.len() <= ROOT_MAX, "root of {}", root.node.len());
            let mut seen = HashSet::new();
            self.check_node(&root.node, root.level, 0, u64::MAX, &mut seen);
            let stored: HashSet<u64> = self.nodes.keys().copied().collect();
            assert_eq!(seen, stored, "reachable nodes are the stored ones");
        }

        fn check_node(&self, node: &Node, level: u8, lo: u64, hi: u64, seen: &mut HashSet<u64>) {
            match node {
                Node::Leaf(entries) => {
                    assert_eq!(level, 0);
                    assert!(entries.len() <= LEAF_MAX);
                    for w in entries.windows(2) {
                        assert!(w[0].end() <= w[1].off, "sorted, apart: {w:?}");
                        assert!(!w[0].joins(&w[1]), "joined: {w:?}");
                    }
                    for e in entries {
                        assert!(
                            e.len > 0 && e.off >= lo && e.end() <= hi,
                            "{e:?} in {lo}..{hi}"
                        );
                    }
                }
                Node::Inner(children) => {
                    assert!(level > 0 && !children.is_empty() && children.len() <= INNER_MAX);
                    assert_eq!(children[0].off, lo);
                    for (i, c) in children.iter().enumerate() {
                        let c_hi = children.get(i + 1).map_or(hi, |n| n.off);
                        assert!(c.off < c_hi);
                        assert!(seen.insert(c.id));
                        let (l, n) = &self.nodes[&c.id];
                        assert_eq!(*l, level - 1);
                        self.check_node(n, level - 1, c.off, c_hi, seen);
                    }
                }
            }
        }
    }

    /// xorshift64*: enough randomness for tests, the same every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
        }
    }

    /// Writes, holes and truncations at random against a byte-by-byte
    /// model of which extent byte each file byte is.
    #[test]
    fn random_changes_match_a_model_and_keep_the_tree_sound() {
        for seed in 1..=6u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut store = Store::default();
            let mut root = Root::default();
            let mut model: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
            let span = [2_000, 20_000, 100_000][seed as usize % 3];
            for step in 0..1_500u64 {
                let a = rng.below(span);
                let most = if rng.below(4) == 0 { 3_000 } else { 40 };
                let len = 1 + rng.below(most);
                let b = a + len;
                match rng.below(10) {
                    0 => {
                        let (r, c) = store.change(&root, a, u64::MAX, &[]);
                        root = r;
                        let gone: Vec<u64> = model.range(a..).map(|(k, _)| *k).collect();
                        assert_eq!(
                            c.removed.iter().map(|e| e.len).sum::<u64>(),
                            gone.len() as u64
                        );
                        for k in gone {
                            model.remove(&k);
                        }
                    }
                    1 => {
                        root = store.change(&root, a, b, &[]).0;
                        for k in a..b {
                            model.remove(&k);
                        }
                    }
                    2 => {
                        // Several ranges in one change, as a commit of
                        // scattered writes makes: some filled, some holes.
                        let mut spans = Vec::new();
                        let mut at = a;
                        for i in 0..1 + rng.below(6) {
                            let start = at + rng.below(300);
                            let end = start + 1 + rng.below(200);
                            let id = 2_000_000 + step * 10 + i;
                            let new = match rng.below(3) {
                                0 => Vec::new(),
                                _ => vec![Extent {
                                    off: start,
                                    len: end - start,
                                    id,
                                    at: 0,
                                }],
                            };
                            for k in start..end {
                                model.remove(&k);
                            }
                            for e in &new {
                                for k in 0..e.len {
                                    model.insert(e.off + k, (e.id, e.at + k));
                                }
                            }
                            spans.push(Span {
                                a: start,
                                b: end,
                                new,
                            });
                            at = end;
                        }
                        root = store.change_spans(&root, &spans).0;
                    }
                    _ => {
                        let id = 1_000_000 + step;
                        let at = rng.below(50);
                        // Sometimes two entries of one extent with a gap.
                        let mut new = vec![Extent {
                            off: a,
                            len,
                            id,
                            at,
                        }];
                        if len > 4 && rng.below(3) == 0 {
                            new = vec![
                                Extent {
                                    off: a,
                                    len: len / 2 - 1,
                                    id,
                                    at,
                                },
                                Extent {
                                    off: a + len / 2,
                                    len: len - len / 2,
                                    id,
                                    at: at + len / 2,
                                },
                            ];
                            model.remove(&(a + len / 2 - 1));
                        }
                        root = store.change(&root, a, b, &new).0;
                        for e in &new {
                            for k in 0..e.len {
                                model.insert(e.off + k, (e.id, e.at + k));
                            }
                        }
                    }
                }
                store.check(&root);
                if step % 50 == 0 || step == 1_499 {
                    let mut got = BTreeMap::new();
                    for e in read(&store, &root, 0, u64::MAX).unwrap() {
                        for k in 0..e.len {
                            got.insert(e.off + k, (e.id, e.at + k));
                        }
                    }
                    assert_eq!(got, model, "seed {seed} step {step}");
                    let (x, y) = (rng.below(span), rng.below(span));
                    let (x, y) = (x.min(y), x.max(y) + 1);
                    let part = read(&store, &root, x, y).unwrap();
                    let covered: u64 = part.iter().map(|e| e.len).sum();
                    assert_eq!(covered, model.range(x..y).count() as u64);
                }
            }
            assert!(
                root.level >= 1 || seed % 3 == 0,
                "seed {seed}: the tree grew"
            );
        }
    }

    #[test]
    fn appends_fill_leaves_and_a_truncation_frees_them() {
        let mut store = Store::default();
        let mut root = Root::default();
        for i in 0..2_000u64 {
            let e = Extent {
                off: i * 10,
                len: 10,
                id: i + 100,
                at: 0,
            };
            root = store.change(&root, e.off, e.end(), &[e]).0;
        }
        store.check(&root);
        assert_eq!(root.level, 2, "2,000 entries need leaves under inner nodes");
        let before = store.nodes.len();
        let (r, c) = store.change(&root, 0, u64::MAX, &[]);
        assert_eq!(r, Root::default());
        assert_eq!(c.freed.len(), before, "every node freed");
        assert_eq!(c.removed.len(), 2_000);
        assert!(store.nodes.is_empty());
    }

    #[test]
    fn entries_that_continue_each_other_join() {
        let mut store = Store::default();
        let e = |off, len, at| Extent {
            off,
            len,
            id: 5,
            at,
        };
        let (root, _) = store.change(&Root::default(), 0, 10, &[e(0, 10, 0)]);
        let (root, _) = store.change(&root, 10, 30, &[e(10, 20, 10)]);
        assert_eq!(root, Root::of(vec![e(0, 30, 0)]));
        let (root, c) = store.change(&root, 5, 7, &[]);
        assert_eq!(root, Root::of(vec![e(0, 5, 0), e(7, 23, 7)]));
        assert_eq!(c.removed, vec![e(5, 2, 5)]);
        assert_eq!(e(7, 23, 7).origin(), 0);
    }

    #[test]
    fn nodes_round_trip() {
        let leaf = Node::Leaf(vec![Extent {
            off: 1,
            len: 2,
            id: 3,
            at: 4,
        }]);
        assert_eq!(Node::decode(&leaf.encode(9, 0)).unwrap(), (9, 0, leaf));
        let inner = Node::Inner(vec![Child { off: 0, id: 3 }, Child { off: 50, id: 4 }]);
        assert_eq!(Node::decode(&inner.encode(9, 2)).unwrap(), (9, 2, inner));
        assert!(Node::decode(&[1, 2, 3]).is_err());
    }
}
