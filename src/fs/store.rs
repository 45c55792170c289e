//! The backend as the filesystem reads it: inode records, extent tree
//! nodes (cached: a node never changes once written), a version's bytes,
//! and the counters new ids come from.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::errno::{Error, Result};
use super::ids::Ids;
use crate::backend::{self, Kv, Revision};
use crate::schema::tree::{self, Node, Nodes};
use crate::schema::{Data, Inode, extent, keys};

type NodeMap = HashMap<u64, Arc<Node>>;

/// How many decoded nodes each half of the cache keeps.
const NODE_CACHE: usize = 4096;

pub struct Store {
    pub kv: Arc<dyn Kv>,
    /// Recently read nodes, in two generations: a hit in the old one moves
    /// the node to the young one, and when the young one is full it
    /// becomes the old one (what neither holds was not read for a while).
    nodes: Mutex<(NodeMap, NodeMap)>,
    pub inos: Ids,
    /// Extent and node ids.
    pub blocks: Ids,
}

impl Store {
    pub fn new(kv: Arc<dyn Kv>) -> Store {
        Store {
            kv,
            nodes: Mutex::default(),
            inos: Ids::new("ino", keys::ROOT + 1),
            blocks: Ids::new("blk", 1),
        }
    }

    pub fn inode(&self, ino: u64) -> Result<Option<Inode>> {
        Ok(self.inode_at(ino)?.map(|(i, _)| i))
    }

    /// The inode record and the revision it was read at.
    pub fn inode_at(&self, ino: u64) -> Result<Option<(Inode, Revision)>> {
        match self.kv.get(&keys::inode(ino))? {
            Some(v) => {
                let inode = Inode::decode(&v.bytes(0, v.len() as usize)?)?;
                Ok(Some((inode, v.revision())))
            }
            None => Ok(None),
        }
    }

    pub fn new_ino(&self) -> Result<u64> {
        self.inos.next(&*self.kv)
    }

    pub fn new_block(&self) -> Result<u64> {
        self.blocks.next(&*self.kv)
    }

    /// Hands up to `len` bytes of `inode`'s from `off` (fewer at its end)
    /// to `give`: borrowed from where they lie when one extent holds them
    /// all, else gathered, holes as zeros.
    pub fn read<R>(
        &self,
        inode: &Inode,
        off: u64,
        len: usize,
        give: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let end = inode.size.min(off.saturating_add(len as u64));
        if off >= end {
            return Ok(give(&[]));
        }
        let n = (end - off) as usize;
        match &inode.data {
            Data::None => Ok(give(&vec![0; n])),
            Data::Inline(b) => {
                let start = off.min(b.len() as u64) as usize;
                let have = &b[start..(start + n).min(b.len())];
                if have.len() == n {
                    return Ok(give(have));
                }
                let mut v = have.to_vec();
                v.resize(n, 0);
                Ok(give(&v))
            }
            Data::Tree(root) => {
                let pieces = tree::read(self, root, off, end)?;
                if let [p] = pieces.as_slice()
                    && p.off == off
                    && p.end() == end
                {
                    let v = self.extent(p.id)?;
                    let bytes = v.bytes(extent::HEADER_LEN + p.at, n)?;
                    return Ok(give(&bytes));
                }
                let mut buf = vec![0; n];
                for p in pieces {
                    let v = self.extent(p.id)?;
                    let bytes = v.bytes(extent::HEADER_LEN + p.at, p.len as usize)?;
                    let at = (p.off - off) as usize;
                    let got = bytes.len().min(p.len as usize);
                    buf[at..at + got].copy_from_slice(&bytes[..got]);
                }
                Ok(give(&buf))
            }
        }
    }

    /// Where `inode` holds bytes within `[a, b)` (the rest are holes),
    /// sorted and apart: a small file's bytes are all data.
    pub fn data_ranges(&self, inode: &Inode, a: u64, b: u64) -> Result<Vec<(u64, u64)>> {
        let b = b.min(inode.size);
        let ranges = match &inode.data {
            _ if a >= b => Vec::new(),
            Data::None => Vec::new(),
            Data::Inline(bytes) => vec![(a, b.min(bytes.len() as u64))],
            Data::Tree(root) => tree::read(self, root, a, b)?
                .iter()
                .map(|e| (e.off, e.end()))
                .collect(),
        };
        Ok(merge_ranges(ranges))
    }

    /// The extent `id`, which a tree reaches: damage if it is missing.
    fn extent(&self, id: u64) -> Result<backend::Value> {
        self.kv.get(&keys::extent(id))?.ok_or_else(|| {
            Error::Backend(backend::Error::Corrupt(format!(
                "extent {id} is missing (a file's tree reaches it)"
            )))
        })
    }
}

impl Nodes for Store {
    fn node(&self, id: u64) -> backend::Result<Arc<Node>> {
        {
            let mut c = self.nodes.lock();
            if let Some(n) = c.0.get(&id).cloned() {
                return Ok(n);
            }
            if let Some(n) = c.1.remove(&id) {
                c.0.insert(id, n.clone());
                return Ok(n);
            }
        }
        let v = self
            .kv
            .get(&keys::node(id))?
            .ok_or_else(|| backend::Error::Corrupt(format!("extent tree node {id} is missing")))?;
        let (_, _, node) = Node::decode(&v.bytes(0, v.len() as usize)?)?;
        let node = Arc::new(node);
        let mut c = self.nodes.lock();
        if c.0.len() >= NODE_CACHE {
            c.1 = std::mem::take(&mut c.0);
        }
        c.0.insert(id, node.clone());
        Ok(node)
    }
}

/// `ranges` sorted, with those that overlap or touch made one; empty ones
/// dropped.
pub fn merge_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.retain(|(a, b)| a < b);
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if last.1 >= a => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}
