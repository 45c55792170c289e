//! The directory map: every folder's names, in memory, loaded once at
//! open from the entry records (`d` keys) and changed with them. Lookups
//! and listings read it; the backend is asked only for inodes.

use std::collections::HashMap;
use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

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
/// its length, and an open-addressing table (linear probing) of where each
/// starts and what it leads to, in 12 bytes a slot. The table is sized to
/// its names at load, not to a power of two, so a name costs its bytes
/// and about 15 more; a map of boxed names cost 70, which for a million
/// files is the difference between 20 and 80 MB.
#[derive(Default)]
struct Names {
    arena: Vec<u8>,
    slots: Vec<Slot>,
    len: usize,
    /// Arena bytes of removed names, squeezed out once they are half.
    dead: usize,
}

/// Where a name starts in the arena (`EMPTY`: a free slot), and in one
/// word: the inode number (below `keys::ID_LIMIT`, 56 bits), the type's
/// code (3 bits), whether it is pending, and 4 bits of the name's hash
/// that spare most probes a look at the arena.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Slot {
    at: u32,
    word: u64,
}

const _: () = assert!(size_of::<Slot>() == 12);
const EMPTY: u32 = u32::MAX;
const INO_BITS: u32 = 56;
const PENDING: u64 = 1 << 59;
/// A table grows before more than 7/8 of its slots are taken.
const MAX_FILL: (usize, usize) = (7, 8);
const MIN_SLOTS: usize = 8;

impl Slot {
    fn new(at: u32, e: Entry, hash: u64) -> Slot {
        debug_assert!(e.ino < keys::ID_LIMIT);
        let word = (e.ino & (keys::ID_LIMIT - 1))
            | u64::from(e.kind.code()) << INO_BITS
            | if e.pending { PENDING } else { 0 }
            | tag(hash);
        Slot { at, word }
    }

    fn is_empty(&self) -> bool {
        self.at == EMPTY
    }

    fn entry(&self) -> Entry {
        let word = self.word;
        Entry {
            ino: word & (keys::ID_LIMIT - 1),
            kind: FileType::of_code((word >> INO_BITS) as u8 & 7).unwrap_or(FileType::Regular),
            pending: word & PENDING != 0,
        }
    }
}

const FREE: Slot = Slot { at: EMPTY, word: 0 };

fn tag(hash: u64) -> u64 {
    hash << 60
}

/// Names shorter than 255 bytes (all of a sound store's) are kept behind
/// one byte of length; longer ones, which only a damaged store's keys can
/// give, behind 255 and two bytes.
fn push_name(arena: &mut Vec<u8>, name: &[u8]) -> u32 {
    let at = arena.len() as u32;
    let len = name.len().min(usize::from(u16::MAX));
    match u8::try_from(len) {
        Ok(l) if l < u8::MAX => arena.push(l),
        _ => {
            arena.push(u8::MAX);
            arena.extend_from_slice(&(len as u16).to_le_bytes());
        }
    }
    arena.extend_from_slice(&name[..len]);
    at
}

fn stored_len(name: &[u8]) -> usize {
    name.len() + if name.len() < 255 { 1 } else { 3 }
}

fn name_at(arena: &[u8], at: u32) -> &[u8] {
    let at = at as usize;
    let (len, from) = match arena[at] {
        u8::MAX => (
            usize::from(u16::from_le_bytes([arena[at + 1], arena[at + 2]])),
            at + 3,
        ),
        l => (usize::from(l), at + 1),
    };
    &arena[from..from + len]
}

fn hash(name: &[u8]) -> u64 {
    static HASHER: std::sync::LazyLock<DefaultHashBuilder> =
        std::sync::LazyLock::new(DefaultHashBuilder::default);
    HASHER.hash_one(name)
}

/// The slots `names` names fill as far as they may.
fn slots_for(names: usize) -> usize {
    (names * MAX_FILL.1).div_ceil(MAX_FILL.0).max(names + 1)
}

/// The slot a search for `hash` starts at: its high bits scaled to the
/// table's size, which need not be a power of two.
fn home(hash: u64, slots: usize) -> usize {
    ((u128::from(hash) * slots as u128) >> 64) as usize
}

impl Names {
    /// The slot holding `name`.
    fn find(&self, name: &[u8], h: u64) -> Option<usize> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let mut i = home(h, n);
        // Never full (MAX_FILL), so an empty slot ends every search.
        loop {
            let s = self.slots[i];
            if s.is_empty() {
                return None;
            }
            if s.word & tag(u64::MAX) == tag(h) && name_at(&self.arena, s.at) == name {
                return Some(i);
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    fn get(&self, name: &[u8]) -> Option<Entry> {
        self.find(name, hash(name)).map(|i| self.slots[i].entry())
    }

    fn insert(&mut self, name: &[u8], entry: Entry) {
        let h = hash(name);
        if let Some(i) = self.find(name, h) {
            self.slots[i] = Slot::new(self.slots[i].at, entry, h);
            return;
        }
        if (self.len + 1) * MAX_FILL.1 > self.slots.len() * MAX_FILL.0 {
            self.resize((self.slots.len() * 2).max(MIN_SLOTS));
        }
        let at = push_name(&mut self.arena, name);
        self.place(Slot::new(at, entry, h), h);
        self.len += 1;
    }

    fn place(&mut self, slot: Slot, h: u64) {
        let n = self.slots.len();
        let mut i = home(h, n);
        while !self.slots[i].is_empty() {
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        self.slots[i] = slot;
    }

    /// Lays the names out again in `slots` slots.
    fn resize(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![FREE; slots]);
        for s in old.into_iter().filter(|s| !s.is_empty()) {
            self.place(s, hash(name_at(&self.arena, s.at)));
        }
    }

    /// Room for `names` names of `bytes` bytes (as stored) in all.
    fn with_capacity((names, bytes): (usize, usize)) -> Names {
        Names {
            arena: Vec::with_capacity(bytes),
            slots: vec![FREE; slots_for(names)],
            ..Names::default()
        }
    }

    /// Sizes the table to its names, as full as it may be.
    fn fit(&mut self) {
        self.arena.shrink_to_fit();
        let want = slots_for(self.len);
        if want < self.slots.len() {
            self.resize(want);
            self.slots.shrink_to_fit();
        }
    }

    fn remove(&mut self, name: &[u8]) -> Option<Entry> {
        let i = self.find(name, hash(name))?;
        let removed = self.slots[i].entry();
        self.slots[i] = FREE;
        self.len -= 1;
        // Closes the gap: a later name of the run moves back into it
        // unless its home lies between the gap and where it sits.
        let n = self.slots.len();
        let (mut hole, mut j) = (i, i);
        loop {
            j = if j + 1 == n { 0 } else { j + 1 };
            let s = self.slots[j];
            if s.is_empty() {
                break;
            }
            let k = home(hash(name_at(&self.arena, s.at)), n);
            let stays = if hole <= j {
                hole < k && k <= j
            } else {
                hole < k || k <= j
            };
            if !stays {
                self.slots[hole] = s;
                self.slots[j] = FREE;
                hole = j;
            }
        }
        self.dead += stored_len(name);
        if self.dead > 4096 && self.dead * 2 > self.arena.len() {
            self.squeeze();
        }
        if self.slots.len() > MIN_SLOTS && self.len * 4 < self.slots.len() {
            self.resize((self.len * 2).max(MIN_SLOTS));
        }
        Some(removed)
    }

    /// Copies the live names into a new arena.
    fn squeeze(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.dead);
        for s in self.slots.iter_mut().filter(|s| !s.is_empty()) {
            s.at = push_name(&mut arena, name_at(&self.arena, s.at));
        }
        self.arena = arena;
        self.dead = 0;
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], Entry)> {
        self.slots
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| (name_at(&self.arena, s.at), s.entry()))
    }
}

impl DirMap {
    /// Every entry the backend holds. They are gathered first, so that
    /// each folder's arena and table are made once at their size: grown
    /// as they come, the blocks they outgrow would stay scattered through
    /// the heap, a few MB for a million files.
    pub fn load(kv: &dyn Kv) -> Result<DirMap> {
        let mut found: Vec<(u64, u32, Option<Entry>)> = Vec::new();
        let mut names = Vec::new();
        let mut damaged = None;
        kv.scan(keys::entry_prefix(), &mut |k, v| {
            let Some((parent, name)) = keys::entry_of(k) else {
                return;
            };
            match v.map(entry::decode).transpose() {
                Ok(e) => found.push((
                    parent,
                    push_name(&mut names, name),
                    e.map(|(kind, ino)| Entry::named(ino, kind)),
                )),
                Err(e) => damaged = Some(e),
            }
        })?;
        if let Some(e) = damaged {
            return Err(e.into());
        }
        let mut sizes: HashMap<u64, (usize, usize)> = HashMap::new();
        for &(parent, at, e) in &found {
            if e.is_some() {
                let size = sizes.entry(parent).or_default();
                size.0 += 1;
                size.1 += stored_len(name_at(&names, at));
            }
        }
        let mut map = DirMap::default();
        map.dirs.reserve(sizes.len());
        for (parent, at, e) in found {
            let name = name_at(&names, at);
            match e {
                Some(e) => map
                    .dirs
                    .entry(parent)
                    .or_insert_with(|| Names::with_capacity(sizes[&parent]))
                    .insert(name, e),
                None => {
                    map.remove(parent, name);
                }
            }
        }
        // Fewer than counted where later records removed names.
        for names in map.dirs.values_mut() {
            names.fit();
        }
        Ok(map)
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
        if dir.len == 0 {
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
        self.dirs.values().map(|n| n.len).sum()
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
    fn the_table_answers_as_a_map_does() {
        let mut map = DirMap::default();
        let mut model = HashMap::new();
        let mut z = 7u64;
        let kinds = [
            FileType::Regular,
            FileType::Directory,
            FileType::BlockDevice,
        ];
        for step in 0..40_000u64 {
            z = z
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = (z >> 33) % 3000;
            // A few names longer than any sound store holds.
            let name = if n.is_multiple_of(500) {
                format!("{n:0>300}").into_bytes()
            } else {
                format!("n{n}").into_bytes()
            };
            if (z >> 20).is_multiple_of(3) {
                assert_eq!(map.remove(9, &name), model.remove(&name), "step {step}");
            } else {
                let e = Entry {
                    ino: (keys::ID_LIMIT - 1) - step,
                    kind: kinds[(step % 3) as usize],
                    pending: step % 5 == 0,
                };
                map.insert(9, &name, e);
                model.insert(name.clone(), e);
            }
            if step % 997 == 0 {
                for (k, v) in &model {
                    assert_eq!(map.get(9, k), Some(*v), "step {step}");
                }
            }
        }
        let listed: HashMap<Vec<u8>, Entry> = map.list(9).into_iter().collect();
        assert_eq!(listed, model);
        assert_eq!(map.len(), model.len());
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
