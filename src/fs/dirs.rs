//! The directory map: every folder's names, in memory, loaded once at
//! open from the entry records (`d` keys) and changed with them. Lookups
//! and listings read it; the backend is asked only for inodes.

use std::collections::HashMap;

use super::errno::Result;
use crate::backend::Kv;
use crate::schema::{entry, keys};
use crate::vocab::FileType;

/// What a name leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub ino: u64,
    pub kind: FileType,
    /// A file being created: no record yet, until its first commit.
    pub pending: bool,
}

impl Entry {
    /// A name whose inode has its records.
    pub fn named(ino: u64, kind: FileType) -> Entry {
        Entry {
            ino,
            kind,
            pending: false,
        }
    }
}

#[derive(Default)]
pub struct DirMap {
    dirs: HashMap<u64, HashMap<Box<[u8]>, Entry>>,
}

impl DirMap {
    /// Every entry the backend holds.
    pub fn load(kv: &dyn Kv) -> Result<DirMap> {
        let mut map = DirMap::default();
        let mut damaged = None;
        kv.scan(keys::entry_prefix(), &mut |k, v| {
            if let Some((parent, name)) = keys::entry_of(k)
                && let Err(e) = map.apply(parent, name, v)
            {
                damaged = Some(e);
            }
        })?;
        match damaged {
            Some(e) => Err(e.into()),
            None => Ok(map),
        }
    }

    pub fn get(&self, parent: u64, name: &[u8]) -> Option<Entry> {
        self.dirs.get(&parent)?.get(name).copied()
    }

    pub fn insert(&mut self, parent: u64, name: &[u8], e: Entry) {
        self.dirs.entry(parent).or_default().insert(name.into(), e);
    }

    /// Takes an entry record as stored (`None`: deleted).
    pub fn apply(
        &mut self,
        parent: u64,
        name: &[u8],
        record: Option<&[u8]>,
    ) -> crate::backend::Result<()> {
        match record.map(entry::decode).transpose()? {
            Some((kind, ino)) => self.insert(parent, name, Entry::named(ino, kind)),
            None => {
                self.remove(parent, name);
            }
        }
        Ok(())
    }

    pub fn remove(&mut self, parent: u64, name: &[u8]) -> Option<Entry> {
        let dir = self.dirs.get_mut(&parent)?;
        let e = dir.remove(name);
        if dir.is_empty() {
            self.dirs.remove(&parent);
        }
        e
    }

    /// Whether folder `dir` has any entry.
    pub fn has_entries(&self, dir: u64) -> bool {
        self.dirs.contains_key(&dir)
    }

    /// The entries of `dir`, sorted by name.
    pub fn list(&self, dir: u64) -> Vec<(Vec<u8>, Entry)> {
        let mut v: Vec<(Vec<u8>, Entry)> = self
            .dirs
            .get(&dir)
            .map(|d| d.iter().map(|(n, e)| (n.to_vec(), *e)).collect())
            .unwrap_or_default();
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every folder's entries, for checks: (folder, name, entry).
    pub fn all(&self) -> impl Iterator<Item = (u64, &[u8], &Entry)> {
        self.dirs
            .iter()
            .flat_map(|(d, names)| names.iter().map(move |(n, e)| (*d, &**n, e)))
    }

    /// How many names there are in all.
    pub fn len(&self) -> usize {
        self.dirs.values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Batch, Memory};

    #[test]
    fn loads_what_the_entries_say() {
        let kv = Memory::default();
        let mut b = Batch::default();
        b.put(keys::entry(1, b"a"), entry::encode(FileType::Regular, 2))
            .put(keys::entry(1, b"d"), entry::encode(FileType::Directory, 3))
            .put(keys::entry(3, b"x"), entry::encode(FileType::Symlink, 4));
        kv.write(b).unwrap();
        let map = DirMap::load(&kv).unwrap();
        assert_eq!(map.get(1, b"d").map(|e| e.ino), Some(3));
        assert_eq!(
            map.list(1)
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
            vec![b"a".to_vec(), b"d".to_vec()]
        );
        assert!(map.has_entries(3) && !map.has_entries(2));
        assert_eq!(map.len(), 3);
    }
}
