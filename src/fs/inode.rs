//! The inode table: a number for every key (file, folder or symlink) seen
//! while mounted, the root being the empty key, what the kernel's page
//! cache of each may hold, and the keys created through an open handle
//! that are not yet committed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use super::attr::ROOT_INO;
use super::page_cache::CacheState;
use super::storage::{Meta, Metadata, Value};
use crate::engine::tree;

struct Node {
    key: Vec<u8>,
    cache: CacheState,
}

impl Node {
    fn new(key: Vec<u8>) -> Node {
        Node {
            key,
            cache: CacheState::default(),
        }
    }
}

/// A number its key left to the readers that read it through the page
/// cache, which all read one value.
struct Retired {
    /// The number the key has since.
    next: u64,
    value: Option<Arc<Value>>,
}

#[derive(Default)]
struct Tables {
    /// Ordered, so that a folder's keys are one range (a folder rename).
    by_key: BTreeMap<Vec<u8>, u64>,
    by_ino: HashMap<u64, Node>,
    /// Numbers `retire` took from their keys, while open files hold them.
    retired: HashMap<u64, Retired>,
    /// Numbers whose key an rm or mv removed, with what the key held
    /// last, oldest first (at most `REMOVED_KEPT`): the kernel may still
    /// ask their attributes through a name it looked up before.
    removed: HashMap<u64, Metadata>,
    removed_order: VecDeque<u64>,
    /// Inodes created by `create` whose first value is still in a handle:
    /// the number of such handles, and the metadata the first commit gets.
    pending: HashMap<u64, (u32, Meta)>,
    next: u64,
}

/// How many removed numbers keep their last attributes (`removed`).
const REMOVED_KEPT: usize = 4096;

impl Tables {
    fn ino_for(&mut self, key: &[u8]) -> u64 {
        if let Some(&ino) = self.by_key.get(key) {
            return ino;
        }
        self.new_ino(key)
    }

    /// `key` names nothing now; its number remembers `last`, if known.
    fn drop_key(&mut self, key: &[u8], last: Option<Metadata>) -> Option<u64> {
        let ino = self.by_key.remove(key)?;
        self.by_ino.remove(&ino);
        self.pending.remove(&ino);
        if let Some(m) = last {
            self.remember(ino, m);
        }
        Some(ino)
    }

    /// Number `ino` names nothing now; the key it had held `last`.
    fn remember(&mut self, ino: u64, last: Metadata) {
        if self.removed_order.len() == REMOVED_KEPT
            && let Some(oldest) = self.removed_order.pop_front()
        {
            self.removed.remove(&oldest);
        }
        self.removed.insert(ino, last);
        self.removed_order.push_back(ino);
    }

    fn new_ino(&mut self, key: &[u8]) -> u64 {
        let ino = self.next;
        self.next += 1;
        self.by_key.insert(key.to_vec(), ino);
        self.by_ino.insert(ino, Node::new(key.to_vec()));
        ino
    }
}

/// Key ↔ inode number. A number, once given to a key, stays with it (and
/// follows it through a rename) until the key is removed, or a writer
/// opens it while readers hold its pages in the kernel's cache (`retire`);
/// numbers are never reused while mounted.
pub struct InodeTable {
    inner: Mutex<Tables>,
}

impl Default for InodeTable {
    fn default() -> Self {
        let mut t = Tables {
            next: ROOT_INO + 1,
            ..Tables::default()
        };
        t.by_key.insert(Vec::new(), ROOT_INO);
        t.by_ino.insert(ROOT_INO, Node::new(Vec::new()));
        InodeTable {
            inner: Mutex::new(t),
        }
    }
}

impl InodeTable {
    /// The inode of `key`, given a new number if it has none.
    pub fn ino_for(&self, key: &[u8]) -> u64 {
        self.inner.lock().ino_for(key)
    }

    /// `ino_for` of each key, under one lock.
    pub fn inos_for(&self, keys: &[Vec<u8>]) -> Vec<u64> {
        let mut t = self.inner.lock();
        keys.iter().map(|key| t.ino_for(key)).collect()
    }

    pub fn key_of(&self, ino: u64) -> Option<Vec<u8>> {
        self.inner.lock().by_ino.get(&ino).map(|n| n.key.clone())
    }

    /// Runs `f` on what the kernel's page cache of `ino` may hold; `None`
    /// if `ino` names no key any more.
    pub fn with_cache<R>(&self, ino: u64, f: impl FnOnce(&mut CacheState) -> R) -> Option<R> {
        self.inner
            .lock()
            .by_ino
            .get_mut(&ino)
            .map(|n| f(&mut n.cache))
    }

    /// Gives `key` a new inode number, leaving its old one to the open
    /// files that read it, whose page cache holds `value`; returns the new
    /// one.
    pub fn retire(&self, key: &[u8], value: Option<Arc<Value>>) -> Option<u64> {
        let mut t = self.inner.lock();
        let old = t.by_key.remove(key)?;
        t.by_ino.remove(&old);
        let pending = t.pending.remove(&old);
        let new = t.new_ino(key);
        if let Some(p) = pending {
            t.pending.insert(new, p);
        }
        for r in t.retired.values_mut().filter(|r| r.next == old) {
            r.next = new;
        }
        t.retired.insert(old, Retired { next: new, value });
        Some(new)
    }

    /// The number the key of retired number `ino` has now (under whatever
    /// name it has now), if it was not removed since.
    pub fn successor(&self, ino: u64) -> Option<u64> {
        let t = self.inner.lock();
        t.retired
            .get(&ino)
            .map(|r| r.next)
            .filter(|n| t.by_ino.contains_key(n))
    }

    /// The value the page cache of retired number `ino` holds.
    pub fn retired_value(&self, ino: u64) -> Option<Arc<Value>> {
        self.inner.lock().retired.get(&ino)?.value.clone()
    }

    /// The value of retired `ino` grew: its readers read on into `value`.
    pub fn set_retired_value(&self, ino: u64, value: Arc<Value>) {
        if let Some(r) = self.inner.lock().retired.get_mut(&ino) {
            r.value = Some(value);
        }
    }

    /// The retired numbers whose key has number `ino` now.
    pub fn predecessors(&self, ino: u64) -> Vec<u64> {
        let t = self.inner.lock();
        t.retired
            .iter()
            .filter(|(_, r)| r.next == ino)
            .map(|(old, _)| *old)
            .collect()
    }

    pub fn is_retired(&self, ino: u64) -> bool {
        self.inner.lock().retired.contains_key(&ino)
    }

    /// The last open file on a retired number closed: it shows what its
    /// readers read, like a removed number.
    pub fn forget_retired(&self, ino: u64) {
        let mut t = self.inner.lock();
        if let Some(Retired { value: Some(v), .. }) = t.retired.remove(&ino) {
            t.remember(ino, v.metadata());
        }
    }

    pub fn lookup(&self, key: &[u8]) -> Option<u64> {
        self.inner.lock().by_key.get(key).copied()
    }

    /// Forgets `key`, which held `last`; its inode number now names
    /// nothing.
    pub fn remove(&self, key: &[u8], last: Option<Metadata>) -> Option<u64> {
        self.inner.lock().drop_key(key, last)
    }

    /// What the key of removed number `ino` held last.
    pub fn removed(&self, ino: u64) -> Option<Metadata> {
        self.inner.lock().removed.get(&ino).copied()
    }

    /// After `from` was renamed to `to`: `to` takes `from`'s inode, and
    /// every key below `from` (a folder) moves with it, so open handles
    /// follow their files; `to`'s old inode names nothing, and remembers
    /// `replaced`, what `to` held.
    pub fn rename(&self, from: &[u8], to: &[u8], replaced: Option<Metadata>) {
        let mut t = self.inner.lock();
        t.drop_key(to, replaced);
        let mut prefix = from.to_vec();
        prefix.push(b'/');
        let below: Vec<Vec<u8>> = t
            .by_key
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        let moved = std::iter::once(from.to_vec()).chain(below);
        for key in moved.collect::<Vec<_>>() {
            if let Some(ino) = t.by_key.remove(&key) {
                let new = [to, &key[from.len()..]].concat();
                t.by_key.insert(new.clone(), ino);
                if let Some(n) = t.by_ino.get_mut(&ino) {
                    n.key = new;
                }
            }
        }
    }

    /// One more handle holds `ino` as a creation not yet committed, which
    /// will be stored with `meta` (the first creator's).
    pub fn add_pending(&self, ino: u64, meta: Meta) {
        self.inner.lock().pending.entry(ino).or_insert((0, meta)).0 += 1;
    }

    pub fn drop_pending(&self, ino: u64) {
        let mut t = self.inner.lock();
        if let Some((n, _)) = t.pending.get_mut(&ino) {
            *n -= 1;
            if *n == 0 {
                t.pending.remove(&ino);
            }
        }
    }

    pub fn is_pending(&self, ino: u64) -> bool {
        self.inner.lock().pending.contains_key(&ino)
    }

    /// The metadata a pending creation will be stored with.
    pub fn pending_meta(&self, ino: u64) -> Option<Meta> {
        self.inner.lock().pending.get(&ino).map(|(_, m)| *m)
    }

    /// Changes the metadata a pending creation will be stored with (a
    /// chmod, chown or utimens before its first commit); false if `ino` is
    /// not pending.
    pub fn set_pending_meta(&self, ino: u64, change: impl FnOnce(&mut Meta)) -> bool {
        match self.inner.lock().pending.get_mut(&ino) {
            Some((_, m)) => {
                change(m);
                true
            }
            None => false,
        }
    }

    /// The names in folder `dir` that exist only as pending creations.
    pub fn pending_in(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let t = self.inner.lock();
        t.pending
            .keys()
            .filter_map(|ino| t.by_ino.get(ino))
            .filter_map(|n| {
                let (d, name) = tree::split(&n.key);
                (d == dir).then(|| name.to_vec())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_follow_renames() {
        let t = InodeTable::default();
        let a = t.ino_for(b"a");
        let b = t.ino_for(b"b");
        assert_ne!(a, b);
        assert_eq!(t.ino_for(b"a"), a);
        t.rename(b"a", b"b", None);
        assert_eq!(t.lookup(b"b"), Some(a));
        assert_eq!(t.key_of(b), None);
        assert_eq!(t.key_of(a), Some(b"b".to_vec()));
        assert_eq!(
            t.remove(b"b", Some(Metadata::file(3, std::time::UNIX_EPOCH))),
            Some(a)
        );
        assert_eq!(t.removed(a).map(|m| m.len), Some(3));
        assert_ne!(t.ino_for(b"b"), a);
    }

    #[test]
    fn a_folder_rename_moves_the_keys_below() {
        let t = InodeTable::default();
        let d = t.ino_for(b"d");
        let f = t.ino_for(b"d/e/f");
        let other = t.ino_for(b"d2/x");
        t.rename(b"d", b"n", None);
        assert_eq!(t.key_of(d), Some(b"n".to_vec()));
        assert_eq!(t.key_of(f), Some(b"n/e/f".to_vec()));
        assert_eq!(t.key_of(other), Some(b"d2/x".to_vec()));
        assert_eq!(t.lookup(b"d/e/f"), None);
        assert_eq!(t.key_of(ROOT_INO), Some(Vec::new()));
    }

    #[test]
    fn a_retired_number_names_nothing() {
        let t = InodeTable::default();
        let a = t.ino_for(b"a");
        let b = t.retire(b"a", None).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.key_of(a), None);
        assert_eq!(t.successor(a), Some(b));
        assert_eq!(t.lookup(b"a"), Some(b));
        let c = t.retire(b"a", None).unwrap();
        assert_eq!((t.successor(a), t.successor(b)), (Some(c), Some(c)));
        t.remove(b"a", None);
        assert_eq!(t.successor(a), None, "the key went away");
        assert!(t.with_cache(a, |_| ()).is_none());
        assert_eq!(t.retire(b"nothing", None), None);
    }

    #[test]
    fn pending_counts() {
        let t = InodeTable::default();
        let a = t.ino_for(b"a");
        t.add_pending(a, Meta::file(1));
        t.add_pending(a, Meta::file(2));
        t.drop_pending(a);
        assert!(t.is_pending(a));
        assert_eq!(t.pending_meta(a), Some(Meta::file(1)));
        assert_eq!(t.pending_in(b""), vec![b"a".to_vec()]);
        t.drop_pending(a);
        assert!(!t.is_pending(a));
    }
}
