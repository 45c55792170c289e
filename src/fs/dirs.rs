//! The directory map: every folder's names, in memory, loaded once at
//! open from the entry records (`d` keys) and changed with them. Lookups
//! and listings read it; the backend is asked only for inodes.

use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

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
    dirs: HashMap<u64, Names>,
}

/// One folder's names: their bytes back to back in one arena, each behind
/// its length, and a table of where each starts and what it leads to. A
/// name costs its bytes and about 20 more; a map of boxed names cost 70,
/// which for a million files is the difference between 30 and 80 MB.
#[derive(Default)]
struct Names {
    arena: Vec<u8>,
    table: HashTable<Slot>,
    /// Arena bytes of removed names, squeezed out once they are half.
    dead: usize,
}

/// An `Entry` and where its name starts in the arena (its 2-byte length
/// first), in 16 bytes.
#[derive(Clone, Copy)]
struct Slot {
    ino: u64,
    at: u32,
    kind: FileType,
    pending: bool,
}

impl Slot {
    fn new(at: u32, e: Entry) -> Slot {
        Slot {
            ino: e.ino,
            at,
            kind: e.kind,
            pending: e.pending,
        }
    }

    fn entry(&self) -> Entry {
        Entry {
            ino: self.ino,
            kind: self.kind,
            pending: self.pending,
        }
    }
}

const _: () = assert!(size_of::<Slot>() == 16);

fn name_at(arena: &[u8], at: u32) -> &[u8] {
    let at = at as usize;
    let len = usize::from(u16::from_le_bytes([arena[at], arena[at + 1]]));
    &arena[at + 2..at + 2 + len]
}

fn hash(name: &[u8]) -> u64 {
    static HASHER: std::sync::LazyLock<DefaultHashBuilder> =
        std::sync::LazyLock::new(DefaultHashBuilder::default);
    HASHER.hash_one(name)
}

impl Names {
    fn get(&self, name: &[u8]) -> Option<Entry> {
        self.table
            .find(hash(name), |s| name_at(&self.arena, s.at) == name)
            .map(Slot::entry)
    }

    fn insert(&mut self, name: &[u8], entry: Entry) {
        let h = hash(name);
        let Names { arena, table, .. } = self;
        if let Some(s) = table.find_mut(h, |s| name_at(arena, s.at) == name) {
            *s = Slot::new(s.at, entry);
            return;
        }
        // Names are at most 255 bytes (4095 for a damaged store's keys).
        let len = name.len().min(usize::from(u16::MAX));
        let at = arena.len() as u32;
        arena.extend_from_slice(&(len as u16).to_le_bytes());
        arena.extend_from_slice(&name[..len]);
        table.insert_unique(h, Slot::new(at, entry), |s| hash(name_at(arena, s.at)));
    }

    fn remove(&mut self, name: &[u8]) -> Option<Entry> {
        let Names { arena, table, dead } = self;
        let found = table.find_entry(hash(name), |s| name_at(arena, s.at) == name);
        let (slot, _) = found.ok()?.remove();
        *dead += 2 + name.len();
        if *dead > 4096 && *dead * 2 > arena.len() {
            self.squeeze();
        }
        Some(slot.entry())
    }

    /// Copies the live names into a new arena.
    fn squeeze(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.dead);
        for s in self.table.iter_mut() {
            let name = name_at(&self.arena, s.at);
            s.at = arena.len() as u32;
            arena.extend_from_slice(&(name.len() as u16).to_le_bytes());
            arena.extend_from_slice(name);
        }
        self.arena = arena;
        self.dead = 0;
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], Entry)> {
        self.table
            .iter()
            .map(|s| (name_at(&self.arena, s.at), s.entry()))
    }
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
        for names in map.dirs.values_mut() {
            names.arena.shrink_to_fit();
            names
                .table
                .shrink_to_fit(|s| hash(name_at(&names.arena, s.at)));
        }
        match damaged {
            Some(e) => Err(e.into()),
            None => Ok(map),
        }
    }

    pub fn get(&self, parent: u64, name: &[u8]) -> Option<Entry> {
        self.dirs.get(&parent)?.get(name)
    }

    pub fn insert(&mut self, parent: u64, name: &[u8], e: Entry) {
        self.dirs.entry(parent).or_default().insert(name, e);
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
        if dir.table.is_empty() {
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
            .map(|d| d.iter().map(|(n, e)| (n.to_vec(), e)).collect())
            .unwrap_or_default();
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every folder's entries, for checks: (folder, name, entry).
    pub fn all(&self) -> impl Iterator<Item = (u64, &[u8], Entry)> {
        self.dirs
            .iter()
            .flat_map(|(d, names)| names.iter().map(move |(n, e)| (*d, n, e)))
    }

    /// How many names there are in all.
    pub fn len(&self) -> usize {
        self.dirs.values().map(|n| n.table.len()).sum()
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

    #[test]
    fn names_come_and_go_and_the_arena_is_squeezed() {
        let mut map = DirMap::default();
        let name = |i: u32| format!("name-{i}").into_bytes();
        for i in 0..5000 {
            map.insert(
                7,
                &name(i),
                Entry::named(u64::from(i) + 10, FileType::Regular),
            );
        }
        // Replacing keeps one name.
        map.insert(7, &name(3), Entry::named(99, FileType::Fifo));
        assert_eq!(map.get(7, &name(3)), Some(Entry::named(99, FileType::Fifo)));
        for i in (0..5000).filter(|i| i % 4 != 0) {
            assert_eq!(map.remove(7, &name(i)).map(|e| e.ino != 0), Some(true));
        }
        assert_eq!(map.remove(7, b"never"), None);
        let names = &map.dirs[&7];
        assert!(names.dead < names.arena.len(), "squeezed");
        assert_eq!(map.len(), 1250);
        for i in 0..5000 {
            let want = (i % 4 == 0).then(|| Entry::named(u64::from(i) + 10, FileType::Regular));
            assert_eq!(map.get(7, &name(i)), want, "name {i}");
        }
        let listed = map.list(7);
        assert_eq!(listed.len(), 1250);
        assert!(listed.windows(2).all(|w| w[0].0 < w[1].0));
        for i in (0..5000).filter(|i| i % 4 == 0) {
            map.remove(7, &name(i));
        }
        assert!(!map.has_entries(7));
    }
}
