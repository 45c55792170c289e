//! The namespace's records held in memory: loaded at mount, kept current
//! by this mount's own commits at once and by a watch for everyone
//! else's. Stat, lookup and listings read it, so they cost no round trip;
//! opens read values from the cluster itself.

use std::collections::HashMap;

use crate::engine::{EntryKind, Tree};

use super::record::Record;

#[derive(Default)]
pub struct Mirror {
    records: HashMap<Vec<u8>, (Record, i64)>,
    /// Keys this mount deleted, at which revision, until the watch has
    /// passed it: an older put it still reports must not bring one back.
    deleted: HashMap<Vec<u8>, i64>,
    tree: Tree,
    /// The revision the watch has delivered everything up to.
    seen: i64,
    /// Keys this mount is changing now (how many changes of each): the
    /// watch may bring such a change before the mount has put it here,
    /// and it is no other host's.
    own: HashMap<Vec<u8>, u32>,
}

impl Mirror {
    pub fn get(&self, key: &[u8]) -> Option<Record> {
        self.records.get(key).map(|(r, _)| *r)
    }

    /// The revision of `key`'s record, 0 if none.
    pub fn revision(&self, key: &[u8]) -> i64 {
        self.records.get(key).map_or(0, |(_, rev)| *rev)
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    pub fn records(&self) -> impl Iterator<Item = (&Vec<u8>, &Record)> {
        self.records.iter().map(|(k, (r, _))| (k, r))
    }

    /// `key` holds `record` since revision `rev`, unless the mirror
    /// already knows of it or of something newer; whether it did not.
    pub fn put(&mut self, key: &[u8], record: Record, rev: i64) -> bool {
        if self.revision(key) >= rev || self.deleted.get(key).is_some_and(|&d| d >= rev) {
            return false;
        }
        self.deleted.remove(key);
        let old = self.records.insert(key.to_vec(), (record, rev));
        let kind = EntryKind::of_mode(record.meta.mode);
        if let Some((o, _)) = old
            && EntryKind::of_mode(o.meta.mode) != kind
        {
            self.tree.remove(key);
        }
        self.tree.insert(key, kind);
        true
    }

    /// `key` was deleted at revision `rev`; whether the mirror held it.
    pub fn delete(&mut self, key: &[u8], rev: i64) -> bool {
        if self.revision(key) > rev {
            return false;
        }
        let held = self.records.remove(key).is_some();
        if held {
            self.tree.remove(key);
        }
        if rev > self.seen {
            self.deleted.insert(key.to_vec(), rev);
        }
        held
    }

    /// The watch has delivered every change up to `rev`.
    pub fn seen(&mut self, rev: i64) {
        self.seen = self.seen.max(rev);
        let seen = self.seen;
        self.deleted.retain(|_, d| *d > seen);
    }

    pub fn seen_revision(&self) -> i64 {
        self.seen
    }

    /// Takes the records of a fresh load, keeping the changes under way.
    pub fn replace(&mut self, mut fresh: Mirror) {
        fresh.own = std::mem::take(&mut self.own);
        *self = fresh;
    }

    pub fn begin_own(&mut self, key: &[u8]) {
        *self.own.entry(key.to_vec()).or_default() += 1;
    }

    pub fn end_own(&mut self, key: &[u8]) {
        if let Some(n) = self.own.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.own.remove(key);
            }
        }
    }

    pub fn is_own(&self, key: &[u8]) -> bool {
        self.own.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Meta;
    use crate::etcd::record::Body;

    fn file(len: u64) -> Record {
        Record {
            meta: Meta::file(1),
            len,
            body: Body::Inline,
        }
    }

    #[test]
    fn older_news_never_undoes_newer() {
        let mut m = Mirror::default();
        m.put(b"a/k", file(1), 5);
        m.put(b"a/k", file(2), 4);
        assert_eq!(m.get(b"a/k").map(|r| r.len), Some(1));
        m.delete(b"a/k", 7);
        // The watch reports the put at 6 after this mount's delete at 7.
        m.put(b"a/k", file(3), 6);
        assert!(m.get(b"a/k").is_none());
        assert_eq!(m.tree().kind(b"a"), None);
        m.seen(7);
        m.put(b"a/k", file(4), 8);
        assert_eq!(m.tree().list(b"a").map(|l| l.len()), Some(1));
    }
}
