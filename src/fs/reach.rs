//! What the filesystem reaches, from its root and what is open: every key
//! that is not garbage. A check compares it with what the store holds.

use std::collections::HashSet;

use super::errno::Result;
use super::fs::CaskFs;
use crate::schema::{Data, keys, tree};

impl CaskFs {
    /// The keys the filesystem reaches: the superblock and counters, every
    /// named inode (the root, and those removed while open), the entries
    /// naming them, the nodes and extents their trees reach, and what
    /// pinned versions still read, and what open drafts wrote behind or
    /// share, and the holders records of shared extents reached.
    pub fn reachable_keys(&self) -> Result<HashSet<Vec<u8>>> {
        let mut reach: HashSet<Vec<u8>> = HashSet::new();
        reach.insert(keys::SUPERBLOCK.to_vec());
        reach.insert(keys::counter("ino"));
        reach.insert(keys::counter("blk"));
        reach.insert(keys::open_mark());
        let mut inos = vec![keys::ROOT];
        for (parent, name, e) in self.dirs.read().all() {
            if !e.pending {
                reach.insert(keys::entry(parent, name));
                inos.push(e.ino);
            }
        }
        for k in self.store.kv.keys(keys::orphan_prefix())? {
            if let Some(ino) = keys::orphan_of(&k) {
                inos.push(ino);
                reach.insert(k);
            }
        }
        inos.sort_unstable();
        inos.dedup();
        for ino in inos {
            let Some(inode) = self.store.inode(ino)? else {
                continue;
            };
            reach.insert(keys::inode(ino).to_vec());
            if let Data::Tree(root) = &inode.data {
                let (mut nodes, mut entries) = (Vec::new(), Vec::new());
                tree::walk(&self.store, root, &mut nodes, &mut entries)?;
                reach.extend(nodes.into_iter().map(|id| keys::node(id).to_vec()));
                reach.extend(entries.into_iter().map(|e| keys::extent(e.id).to_vec()));
            }
        }
        reach.extend(self.lives.waiting());
        let drafts = self.handles.drafts_written();
        reach.extend(drafts.into_iter().map(|id| keys::extent(id).to_vec()));
        // A shared extent's holders record, while the extent is reached.
        for k in self.store.kv.keys(keys::holders_prefix())? {
            if keys::holders_of(&k).is_some_and(|id| reach.contains(keys::extent(id).as_slice())) {
                reach.insert(k);
            }
        }
        Ok(reach)
    }
}
