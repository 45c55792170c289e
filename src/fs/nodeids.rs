//! The node ids the kernel knows files by. A file's node id is its inode
//! number, until a writer opens it while readers read it through the
//! kernel's page cache: then its names lead to a new node id (an alias of
//! the same inode: `stat` still shows its inode number), and the readers
//! keep the old one, with its pages and size (see `page_cache.rs`). Only
//! those aliases are kept, for as long as the mount.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::live::Pin;

/// Aliases are numbered from here, far above any inode number.
const FIRST_ALIAS: u64 = 1 << 60;

#[derive(Default)]
struct Table {
    /// The node id each file's names lead to now, where it is not the
    /// inode number.
    current: HashMap<u64, u64>,
    /// Aliases, and the inode each stands for.
    aliases: HashMap<u64, u64>,
    /// Node ids names no longer lead to, the inode each stood for, and
    /// the version their page-cache readers share (they share its pages,
    /// so they read one version and follow its growth together).
    retired: HashMap<u64, (u64, Option<Pin>)>,
    next: u64,
}

#[derive(Default)]
pub struct NodeIds {
    table: Mutex<Table>,
}

impl NodeIds {
    /// The node id names of `ino` lead to.
    pub fn node_of(&self, ino: u64) -> u64 {
        self.table.lock().current.get(&ino).copied().unwrap_or(ino)
    }

    /// The inode `node` stands for.
    pub fn ino_of(&self, node: u64) -> u64 {
        match node >= FIRST_ALIAS {
            true => self.table.lock().aliases.get(&node).copied().unwrap_or(0),
            false => node,
        }
    }

    /// Whether names lead elsewhere than `node` now.
    pub fn is_retired(&self, node: u64) -> bool {
        self.table.lock().retired.contains_key(&node)
    }

    /// Gives `ino`'s names a new node id, leaving `node` to the readers
    /// that read `value` through its page cache; returns the new one.
    pub fn retire(&self, ino: u64, node: u64, value: Option<Pin>) -> u64 {
        let mut t = self.table.lock();
        t.next = t.next.max(FIRST_ALIAS);
        let new = t.next;
        t.next += 1;
        t.aliases.insert(new, ino);
        t.current.insert(ino, new);
        t.retired.insert(node, (ino, value));
        new
    }

    /// The node ids of `ino` that names no longer lead to.
    pub fn retired_of(&self, ino: u64) -> Vec<u64> {
        let t = self.table.lock();
        t.retired
            .iter()
            .filter(|(_, (i, _))| *i == ino)
            .map(|(n, _)| *n)
            .collect()
    }

    /// The version the page-cache readers of retired `node` share.
    pub fn retired_value(&self, node: u64) -> Option<Pin> {
        self.table.lock().retired.get(&node)?.1.clone()
    }

    /// They moved on to `value` together (the file grew).
    pub fn set_retired_value(&self, node: u64, value: Pin) {
        if let Some((_, v)) = self.table.lock().retired.get_mut(&node) {
            *v = Some(value);
        }
    }

    /// The last reader of retired `node` closed.
    pub fn forget_retired(&self, node: u64) {
        if let Some((_, v)) = self.table.lock().retired.get_mut(&node) {
            *v = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_stands_for_its_inode() {
        let n = NodeIds::default();
        assert_eq!(n.node_of(5), 5);
        let a = n.retire(5, 5, None);
        assert!(a >= FIRST_ALIAS);
        assert_eq!((n.node_of(5), n.ino_of(a), n.ino_of(5)), (a, 5, 5));
        assert!(n.is_retired(5) && !n.is_retired(a));
        let b = n.retire(5, a, None);
        assert_eq!((n.node_of(5), n.ino_of(b)), (b, 5));
        assert!(n.is_retired(a));
        let mut old = n.retired_of(5);
        old.sort_unstable();
        assert_eq!(old, vec![5, a]);
        assert_eq!(n.ino_of(FIRST_ALIAS + 99), 0, "no such alias");
    }
}
