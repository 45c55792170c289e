//! A draft's changes made a new version of its file: the new inode record,
//! the records to write before it (new tree nodes; the draft's bytes go to
//! extents first), and the keys the version it replaces reaches and the
//! new one does not. The caller writes them in that order: everything new
//! first, reaching nothing, then the inode, which makes it all visible at
//! once; then it frees.

use std::collections::{HashMap, HashSet};

use super::draft::Overlay;
use super::errno::Result;
use super::store::Store;
use crate::backend::{Batch, Kv};
use crate::schema::tree::{self, Extent, Nodes, Root, Span};
use crate::schema::{Data, INLINE_MAX, Inode, extent, keys};
use crate::vocab::FileType;

/// What a commit writes and frees.
pub struct Made {
    pub inode: Inode,
    /// Node records, to write before the inode.
    pub nodes: Vec<(Vec<u8>, Vec<u8>)>,
    /// Keys the replaced version reaches and the new one does not.
    pub frees: Vec<Vec<u8>>,
    /// Keys of the draft's base that the new version reaches again,
    /// though a commit since (the one it replaces) may have set them to
    /// be freed once the base is let go: the caller takes them back from
    /// what waits (`Live::keep`) before it drops `draft`.
    pub keeps: Vec<Vec<u8>>,
    /// The draft, whose base stays pinned until it is dropped.
    pub draft: Overlay,
}

/// The version `o` makes of file `ino`, whose committed version is
/// `current` (its attributes are kept: a chmod meanwhile stays), with
/// `mtime` and ctime `now`.
pub fn make(
    store: &Store,
    ino: u64,
    current: &Inode,
    mut o: Overlay,
    mtime: i64,
    now: i64,
) -> Result<Made> {
    let mut inode = Inode {
        size: o.size,
        mtime,
        ctime: now,
        allocated: None,
        data: Data::None,
        ..current.clone()
    };
    let base_data = o.base.as_ref().map(|b| b.inode().data.clone());
    // Whether the draft's base is the version it replaces (no other
    // process committed meanwhile): then the change itself says what the
    // new version no longer reaches, without walking either tree.
    let on_current = base_data.as_ref() == Some(&current.data);
    let mut nodes = Vec::new();
    let mut frees = None;
    let mut keeps = Vec::new();
    if o.size <= INLINE_MAX || current.kind != FileType::Regular {
        let bytes = o.read(store, 0, o.size as usize)?;
        if !bytes.is_empty() {
            inode.data = Data::Inline(bytes);
        }
    } else {
        o.write_behind(store, true)?;
        // What the base's extents hold, for the new count.
        let base_allocated = match (&base_data, &o.base) {
            (Some(Data::Tree(_)), Some(b)) => {
                let i = b.inode();
                i.allocated.unwrap_or(i.size)
            }
            _ => 0,
        };
        let root = match &base_data {
            Some(Data::Tree(root)) => root.clone(),
            _ => {
                lay_base_under(store, ino, &mut o)?;
                Root::default()
            }
        };
        let spans = spans(&o);
        let mut alloc_err = None;
        let mut alloc = || match store.new_block() {
            Ok(id) => id,
            Err(e) => {
                alloc_err = Some(e);
                0
            }
        };
        let (root, change) = tree::replace(store, ino, &root, &spans, &mut alloc)?;
        if let Some(e) = alloc_err {
            return Err(e);
        }
        let removed: u64 = change.removed.iter().map(|e| e.len).sum();
        let added: u64 = spans.iter().flat_map(|s| &s.new).map(|e| e.len).sum();
        let allocated = (base_allocated.saturating_sub(removed) + added).min(o.size);
        inode.allocated = (allocated < o.size).then_some(allocated);
        let over = change.over(store);
        if !on_current {
            let (mut ids, mut entries) = (Vec::new(), Vec::new());
            tree::walk(&over, &root, &mut ids, &mut entries)?;
            keeps.extend(ids.into_iter().map(|id| keys::node(id).to_vec()));
            keeps.extend(entries.into_iter().map(|e| keys::extent(e.id).to_vec()));
        }
        let f = if on_current {
            let mut f: Vec<Vec<u8>> = change
                .freed
                .iter()
                .map(|id| keys::node(*id).to_vec())
                .collect();
            for id in dead_extents(store, &over, Some(&root), &change.removed)? {
                f.push(keys::extent(id).to_vec());
            }
            f
        } else {
            unreached(store, &current.data, &Data::Tree(root.clone()), &over)?
        };
        frees = Some(f);
        nodes = change
            .writes
            .iter()
            .map(|(id, rec)| (keys::node(*id).to_vec(), rec.clone()))
            .collect();
        // The draft's extents the new version reaches are no longer its
        // to free; the others go when it is dropped.
        let reached: HashSet<u64> = o.behind.iter().map(|e| e.id).collect();
        o.written.retain(|id| !reached.contains(id));
        inode.data = Data::Tree(root);
    }
    let frees = match frees {
        Some(f) => f,
        None => unreached(store, &current.data, &inode.data, store)?,
    };
    Ok(Made {
        inode,
        nodes,
        frees,
        keeps,
        draft: o,
    })
}

/// A base of inline bytes (or none) under a file that becomes large: its
/// bytes are written as an extent beneath what the draft wrote.
fn lay_base_under(store: &Store, ino: u64, o: &mut Overlay) -> Result<()> {
    let end = o.base_end;
    o.base_end = 0;
    let Some(base) = o.base.as_ref() else {
        return Ok(());
    };
    if end == 0 {
        return Ok(());
    }
    let mut bytes = store.read(base.inode(), 0, end as usize, <[u8]>::to_vec)?;
    for (a, b) in o.zeroed.drain(..) {
        let b = b.min(bytes.len() as u64);
        if a < b {
            bytes[a as usize..b as usize].fill(0);
        }
    }
    let id = store.new_block()?;
    let mut value = extent::header(ino, 0).to_vec();
    value.extend_from_slice(&bytes);
    let mut b = Batch::default();
    b.put(keys::extent(id).to_vec(), value);
    store.kv.write(b)?;
    o.written.push(id);
    let under = Extent {
        off: 0,
        len: bytes.len() as u64,
        id,
        at: 0,
    };
    // What the draft wrote stays on top.
    let mut all = Vec::with_capacity(o.behind.len() + 2);
    let mut rest = Some(under);
    for e in &o.behind {
        if let Some(r) = rest {
            all.extend(r.clip(0, e.off));
            rest = r.clip(e.end(), u64::MAX);
        }
    }
    all.extend(rest);
    all.extend(o.behind.iter().copied());
    all.sort_unstable_by_key(|e| e.off);
    o.behind = all;
    Ok(())
}

/// The ranges a commit changes over the base: where the base's bytes no
/// longer show below its end (written over, or zeroed: holes), each with
/// what was written there, and everything from there on.
fn spans(o: &Overlay) -> Vec<Span> {
    let mut hidden: Vec<(u64, u64)> = o
        .behind
        .iter()
        .filter_map(|e| e.clip(0, o.base_end))
        .map(|e| (e.off, e.end()))
        .chain(o.zeroed.iter().map(|&(a, b)| (a, b.min(o.base_end))))
        .filter(|(a, b)| a < b)
        .collect();
    hidden.sort_unstable();
    let mut spans: Vec<Span> = Vec::new();
    for (a, b) in hidden {
        match spans.last_mut() {
            Some(s) if s.b >= a => s.b = s.b.max(b),
            _ => spans.push(Span {
                a,
                b,
                new: Vec::new(),
            }),
        }
    }
    for s in &mut spans {
        s.new = o.behind.iter().filter_map(|e| e.clip(s.a, s.b)).collect();
    }
    spans.push(Span {
        a: o.base_end,
        b: u64::MAX,
        new: o
            .behind
            .iter()
            .filter_map(|e| e.clip(o.base_end, u64::MAX))
            .collect(),
    });
    spans
}

/// The keys `old` reaches and `new` does not: tree nodes, and extents no
/// entry of `new` reaches any more.
pub fn unreached(
    store: &Store,
    old: &Data,
    new: &Data,
    new_nodes: &dyn Nodes,
) -> Result<Vec<Vec<u8>>> {
    let Data::Tree(old) = old else {
        return Ok(Vec::new());
    };
    let (mut old_nodes, mut old_entries) = (Vec::new(), Vec::new());
    tree::walk(store, old, &mut old_nodes, &mut old_entries)?;
    let (mut new_nodes_ids, mut new_entries) = (Vec::new(), Vec::new());
    if let Data::Tree(new) = new {
        tree::walk(new_nodes, new, &mut new_nodes_ids, &mut new_entries)?;
    }
    let kept_nodes: HashSet<u64> = new_nodes_ids.into_iter().collect();
    let mut frees: Vec<Vec<u8>> = old_nodes
        .into_iter()
        .filter(|id| !kept_nodes.contains(id))
        .map(|id| keys::node(id).to_vec())
        .collect();
    let kept: HashSet<u64> = new_entries.iter().map(|e| e.id).collect();
    let gone: HashSet<u64> = old_entries
        .iter()
        .map(|e| e.id)
        .filter(|id| !kept.contains(id))
        .collect();
    frees.extend(gone.into_iter().map(|id| keys::extent(id).to_vec()));
    Ok(frees)
}

/// The extents among `removed` that no entry of `root` reaches: an entry
/// reaches an extent only within the range the extent was written to
/// (its origin and length), so only that range is looked at.
pub fn dead_extents(
    store: &Store,
    nodes: &dyn Nodes,
    root: Option<&Root>,
    removed: &[Extent],
) -> Result<Vec<u64>> {
    let mut origins: HashMap<u64, u64> = HashMap::new();
    for e in removed {
        origins.entry(e.id).or_insert(e.origin());
    }
    let mut dead = Vec::new();
    for (id, origin) in origins {
        let alive = match root {
            None => false,
            Some(root) => {
                let len = match store.kv.get(&keys::extent(id))? {
                    Some(v) => v.len().saturating_sub(extent::HEADER_LEN),
                    None => continue,
                };
                let end = origin.saturating_add(len);
                tree::read(nodes, root, origin, end)?
                    .iter()
                    .any(|e| e.id == id)
            }
        };
        if !alive {
            dead.push(id);
        }
    }
    Ok(dead)
}

/// Deletes `keys` (what nothing reaches any more), in batches the backend
/// takes.
pub fn delete(kv: &dyn Kv, keys: Vec<Vec<u8>>) -> Result<()> {
    let per = kv.max_batch_ops().clamp(1, 1024);
    for chunk in keys.chunks(per) {
        let mut b = Batch::default();
        for k in chunk {
            b.delete(k.clone());
        }
        kv.write(b)?;
    }
    Ok(())
}
