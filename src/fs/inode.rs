//! The inode table: a stable number for every key (file, folder or
//! symlink) seen while mounted, the root being the empty key, and the keys
//! created through an open handle that are not yet committed.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

use super::attr::ROOT_INO;
use crate::engine::{Meta, tree};

#[derive(Default)]
struct Tables {
    /// Ordered, so that a folder's keys are one range (a folder rename).
    by_key: BTreeMap<Vec<u8>, u64>,
    by_ino: HashMap<u64, Vec<u8>>,
    /// Inodes created by `create` whose first value is still in a handle:
    /// the number of such handles, and the metadata the first commit gets.
    pending: HashMap<u64, (u32, Meta)>,
    next: u64,
}

impl Tables {
    fn ino_for(&mut self, key: &[u8]) -> u64 {
        if let Some(&ino) = self.by_key.get(key) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_key.insert(key.to_vec(), ino);
        self.by_ino.insert(ino, key.to_vec());
        ino
    }
}

/// Key ↔ inode number. A number, once given to a key, stays with it (and
/// follows it through a rename) until the key is removed; numbers are
/// never reused while mounted.
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
        t.by_ino.insert(ROOT_INO, Vec::new());
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
        self.inner.lock().by_ino.get(&ino).cloned()
    }

    pub fn lookup(&self, key: &[u8]) -> Option<u64> {
        self.inner.lock().by_key.get(key).copied()
    }

    /// Forgets `key`; its inode number now names nothing.
    pub fn remove(&self, key: &[u8]) -> Option<u64> {
        let mut t = self.inner.lock();
        let ino = t.by_key.remove(key)?;
        t.by_ino.remove(&ino);
        t.pending.remove(&ino);
        Some(ino)
    }

    /// After `from` was renamed to `to`: `to` takes `from`'s inode, and
    /// every key below `from` (a folder) moves with it, so open handles
    /// follow their files; `to`'s old inode names nothing.
    pub fn rename(&self, from: &[u8], to: &[u8]) {
        let mut t = self.inner.lock();
        if let Some(old) = t.by_key.remove(to) {
            t.by_ino.remove(&old);
            t.pending.remove(&old);
        }
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
                t.by_ino.insert(ino, new);
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
            .filter_map(|key| {
                let (d, name) = tree::split(key);
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
        t.rename(b"a", b"b");
        assert_eq!(t.lookup(b"b"), Some(a));
        assert_eq!(t.key_of(b), None);
        assert_eq!(t.key_of(a), Some(b"b".to_vec()));
        assert_eq!(t.remove(b"b"), Some(a));
        assert_ne!(t.ino_for(b"b"), a);
    }

    #[test]
    fn a_folder_rename_moves_the_keys_below() {
        let t = InodeTable::default();
        let d = t.ino_for(b"d");
        let f = t.ino_for(b"d/e/f");
        let other = t.ino_for(b"d2/x");
        t.rename(b"d", b"n");
        assert_eq!(t.key_of(d), Some(b"n".to_vec()));
        assert_eq!(t.key_of(f), Some(b"n/e/f".to_vec()));
        assert_eq!(t.key_of(other), Some(b"d2/x".to_vec()));
        assert_eq!(t.lookup(b"d/e/f"), None);
        assert_eq!(t.key_of(ROOT_INO), Some(Vec::new()));
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
