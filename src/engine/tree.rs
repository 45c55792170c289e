//! The key tree: which entries each folder holds, beside the per-segment
//! hash indexes, which find one key but cannot say what lies under
//! `a/b`. A key `a/b/c` is the entry `c` of folder `a/b`. A folder exists
//! while it has a record of its own (made by `mkdir`: it stays when
//! empty) or holds any entry (a key stored with its parents implied, as
//! object stores show them: it goes with its last entry).
//!
//! Listing a folder costs its own entries, whatever the store holds.

use std::collections::{BTreeMap, HashMap};

use super::meta::{S_IFDIR, S_IFLNK, S_IFMT};

/// What an entry of a folder is, as a listing reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Folder,
    Symlink,
}

impl EntryKind {
    /// The kind a record's mode (`st_mode`) gives.
    pub fn of_mode(mode: u32) -> EntryKind {
        match mode & S_IFMT {
            S_IFDIR => EntryKind::Folder,
            S_IFLNK => EntryKind::Symlink,
            _ => EntryKind::File,
        }
    }
}

#[derive(Default)]
struct Folder {
    /// The folder has a record of its own.
    explicit: bool,
    /// How many entries are folders (a folder's link count is 2 + this).
    folders: u32,
    entries: BTreeMap<Box<[u8]>, EntryKind>,
}

impl Folder {
    fn set(&mut self, name: &[u8], kind: EntryKind) {
        // An overwrite (the common put) finds its entry without allocating.
        let old = match self.entries.get_mut(name) {
            Some(k) => Some(std::mem::replace(k, kind)),
            None => self.entries.insert(name.into(), kind),
        };
        self.count(old, -1);
        self.count(Some(kind), 1);
    }

    fn unset(&mut self, name: &[u8]) -> Option<EntryKind> {
        let old = self.entries.remove(name);
        self.count(old, -1);
        old
    }

    fn count(&mut self, kind: Option<EntryKind>, by: i32) {
        if kind == Some(EntryKind::Folder) {
            self.folders = self.folders.saturating_add_signed(by);
        }
    }
}

/// The folder holding `key` and its name there; the root is `b""`.
pub fn split(key: &[u8]) -> (&[u8], &[u8]) {
    match key.iter().rposition(|&b| b == b'/') {
        Some(i) => (&key[..i], &key[i + 1..]),
        None => (b"", key),
    }
}

/// `name` in folder `dir`, as a key.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        key.extend_from_slice(dir);
        key.push(b'/');
    }
    key.extend_from_slice(name);
    key
}

#[derive(Default)]
pub struct Tree {
    /// Folders by path; the root is the empty path and always there.
    folders: HashMap<Box<[u8]>, Folder>,
}

impl Tree {
    /// A live record of `key`: a folder's own record, or an entry.
    pub fn insert(&mut self, key: &[u8], kind: EntryKind) {
        if kind == EntryKind::Folder {
            self.folders.entry(key.into()).or_default().explicit = true;
        } else if self.folders.get(key).is_some_and(|f| f.explicit) {
            // A folder's record replaced by another kind: it stays only
            // as long as it has entries.
            self.unmark(key);
        }
        self.add_entry(key, kind);
    }

    /// `key` has no live record any more (a tombstone).
    pub fn remove(&mut self, key: &[u8]) {
        if self.folders.contains_key(key) {
            self.unmark(key);
            if self.folders.contains_key(key) {
                // Entries remain under it: an implied folder now.
                return;
            }
        }
        let (dir, name) = split(key);
        if let Some(f) = self.folders.get_mut(dir) {
            f.unset(name);
        }
        self.prune(dir);
    }

    /// Whether `key` is a folder (the root, `b""`, always is).
    pub fn is_folder(&self, key: &[u8]) -> bool {
        key.is_empty() || self.folders.contains_key(key)
    }

    /// What `key` is, if the tree holds it.
    pub fn kind(&self, key: &[u8]) -> Option<EntryKind> {
        if key.is_empty() {
            return Some(EntryKind::Folder);
        }
        let (dir, name) = split(key);
        self.folders.get(dir)?.entries.get(name).copied()
    }

    /// Whether a record of `key` is in the tree: a file or symlink entry,
    /// or a folder's own record.
    pub fn has_record(&self, key: &[u8]) -> bool {
        match self.kind(key) {
            Some(EntryKind::Folder) => self.folders.get(key).is_some_and(|f| f.explicit),
            Some(_) => true,
            None => false,
        }
    }

    /// The entries of folder `dir`, in name order; `None` if it is none.
    pub fn list(&self, dir: &[u8]) -> Option<Vec<(Vec<u8>, EntryKind)>> {
        if dir.is_empty() && !self.folders.contains_key(dir) {
            return Some(Vec::new());
        }
        let f = self.folders.get(dir)?;
        Some(f.entries.iter().map(|(n, k)| (n.to_vec(), *k)).collect())
    }

    /// How many entries folder `dir` holds, and how many of them are
    /// folders.
    pub fn counts(&self, dir: &[u8]) -> (usize, u32) {
        self.folders
            .get(dir)
            .map_or((0, 0), |f| (f.entries.len(), f.folders))
    }

    /// Every key below folder `dir` (not `dir` itself), parents before
    /// their entries; `None` if there are more than `limit`.
    pub fn below(&self, dir: &[u8], limit: usize) -> Option<Vec<(Vec<u8>, EntryKind)>> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_vec()];
        while let Some(d) = todo.pop() {
            let Some(f) = self.folders.get(d.as_slice()) else {
                continue;
            };
            for (name, kind) in &f.entries {
                if out.len() == limit {
                    return None;
                }
                let key = join(&d, name);
                if self.folders.contains_key(key.as_slice()) {
                    todo.push(key.clone());
                }
                out.push((key, *kind));
            }
        }
        Some(out)
    }

    /// The number of folders, the root included once it has entries.
    pub fn folder_count(&self) -> usize {
        self.folders.len()
    }

    /// Adds `key` to its folder, creating the implied folders above it.
    fn add_entry(&mut self, key: &[u8], kind: EntryKind) {
        let mut key = key;
        let mut kind = kind;
        loop {
            let (dir, name) = split(key);
            let existed = dir.is_empty() || self.folders.contains_key(dir);
            self.folders.entry(dir.into()).or_default().set(name, kind);
            if existed {
                return;
            }
            key = dir;
            kind = EntryKind::Folder;
        }
    }

    /// Drops the own record of folder `key`; the folder goes if empty.
    fn unmark(&mut self, key: &[u8]) {
        if let Some(f) = self.folders.get_mut(key) {
            f.explicit = false;
            if f.entries.is_empty() {
                self.folders.remove(key);
            }
        }
    }

    /// Removes implied folders that lost their last entry, upwards.
    fn prune(&mut self, dir: &[u8]) {
        let mut dir = dir;
        while !dir.is_empty() {
            match self.folders.get(dir) {
                Some(f) if !f.explicit && f.entries.is_empty() => {
                    self.folders.remove(dir);
                }
                _ => return,
            }
            let (parent, name) = split(dir);
            if let Some(f) = self.folders.get_mut(parent) {
                f.unset(name);
            }
            dir = parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntryKind::*;

    fn names(t: &Tree, dir: &[u8]) -> Vec<String> {
        t.list(dir)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, k)| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&n),
                    if k == Folder { "/" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn keys_imply_their_folders_until_the_last_entry_goes() {
        let mut t = Tree::default();
        t.insert(b"shop/products/42/stock", File);
        t.insert(b"shop/products/7", File);
        assert_eq!(names(&t, b""), ["shop/"]);
        assert_eq!(names(&t, b"shop/products"), ["42/", "7"]);
        assert_eq!(t.counts(b"shop/products"), (2, 1));
        assert!(t.is_folder(b"shop/products/42"));
        assert_eq!(t.kind(b"shop/products/42/stock"), Some(File));
        t.remove(b"shop/products/42/stock");
        assert!(!t.is_folder(b"shop/products/42"));
        assert_eq!(names(&t, b"shop/products"), ["7"]);
        t.remove(b"shop/products/7");
        assert_eq!(names(&t, b""), Vec::<String>::new());
        assert_eq!(t.folder_count(), 1, "only the root is left");
    }

    #[test]
    fn made_folders_stay_when_empty_and_go_with_their_record() {
        let mut t = Tree::default();
        t.insert(b"a", Folder);
        t.insert(b"a/b", Folder);
        t.insert(b"a/b/f", File);
        t.remove(b"a/b/f");
        assert_eq!(names(&t, b"a"), ["b/"]);
        assert_eq!(t.list(b"a/b"), Some(Vec::new()));
        // A folder record removed while entries remain: implied from then on.
        t.insert(b"a/b/g", Symlink);
        t.remove(b"a/b");
        assert!(t.is_folder(b"a/b"));
        t.remove(b"a/b/g");
        assert!(!t.is_folder(b"a/b"));
        assert_eq!(names(&t, b"a"), Vec::<String>::new());
        assert!(t.is_folder(b"a"), "a has its own record");
        t.remove(b"a");
        assert_eq!(t.kind(b"a"), None);
    }

    #[test]
    fn below_lists_a_subtree_within_a_limit() {
        let mut t = Tree::default();
        for k in [&b"d/x"[..], b"d/e/y", b"d/e/f/z", b"other"] {
            t.insert(k, File);
        }
        let mut all: Vec<_> = t
            .below(b"d", 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        all.sort();
        let want: Vec<&[u8]> = vec![b"d/e", b"d/e/f", b"d/e/f/z", b"d/e/y", b"d/x"];
        assert_eq!(all, want);
        assert!(t.below(b"d", 4).is_none());
        assert_eq!(t.below(b"nothing", 4), Some(Vec::new()));
    }

    #[test]
    fn split_and_join_are_inverse() {
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(join(b"a/b", b"c"), b"a/b/c");
        assert_eq!(join(b"", b"c"), b"c");
    }
}
