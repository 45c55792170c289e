//! The inode table: a stable number for every key seen while mounted, and
//! the keys created through an open handle that are not yet committed.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::attr::ROOT_INO;

#[derive(Default)]
struct Tables {
    by_key: HashMap<Vec<u8>, u64>,
    by_ino: HashMap<u64, Vec<u8>>,
    /// Inodes created by `create` whose first value is still in a handle,
    /// with the number of such handles.
    pending: HashMap<u64, u32>,
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
        InodeTable {
            inner: Mutex::new(Tables {
                next: ROOT_INO + 1,
                ..Tables::default()
            }),
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

    /// After `from` was renamed to `to`: `to` takes `from`'s inode (so open
    /// handles follow the file), and `to`'s old inode names nothing.
    pub fn rename(&self, from: &[u8], to: &[u8]) {
        let mut t = self.inner.lock();
        if let Some(old) = t.by_key.remove(to) {
            t.by_ino.remove(&old);
            t.pending.remove(&old);
        }
        if let Some(ino) = t.by_key.remove(from) {
            t.by_key.insert(to.to_vec(), ino);
            t.by_ino.insert(ino, to.to_vec());
        }
    }

    pub fn add_pending(&self, ino: u64) {
        *self.inner.lock().pending.entry(ino).or_insert(0) += 1;
    }

    pub fn drop_pending(&self, ino: u64) {
        let mut t = self.inner.lock();
        if let Some(n) = t.pending.get_mut(&ino) {
            *n -= 1;
            if *n == 0 {
                t.pending.remove(&ino);
            }
        }
    }

    pub fn is_pending(&self, ino: u64) -> bool {
        self.inner.lock().pending.contains_key(&ino)
    }

    /// Keys that exist only as pending creations.
    pub fn pending_keys(&self) -> Vec<Vec<u8>> {
        let t = self.inner.lock();
        t.pending
            .keys()
            .filter_map(|ino| t.by_ino.get(ino).cloned())
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
    fn pending_counts() {
        let t = InodeTable::default();
        let a = t.ino_for(b"a");
        t.add_pending(a);
        t.add_pending(a);
        t.drop_pending(a);
        assert!(t.is_pending(a));
        assert_eq!(t.pending_keys(), vec![b"a".to_vec()]);
        t.drop_pending(a);
        assert!(!t.is_pending(a));
    }
}
