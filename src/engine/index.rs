//! A segment's in-memory hash index: key → where the key's latest record in
//! that segment lives. Keys are kept once, in an arena, each behind a length
//! of one byte (two for keys of 128 bytes and more), and each slot is 20
//! bytes, three to a cache line in the table (see `table.rs`), so a million
//! keys cost little beyond their own bytes. A record's other metadata
//! (mode, owner, ctime) stays in its header on disk.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::LazyLock;

use super::huge_pages;
use super::table::{Bucket, Table};

/// One hash function for every segment, so a lookup hashes its key once and
/// probes each segment's table with the same hash.
static HASHER: LazyLock<foldhash::fast::RandomState> = LazyLock::new(Default::default);

pub fn hash_key(key: &[u8]) -> u64 {
    HASHER.hash_one(key)
}

/// What a lookup finds: the record's offset in its segment file and the
/// value length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub offset: u32,
    pub value_len: u32,
    pub tombstone: bool,
}

/// A tombstone is stored as this value length; no value can be this long
/// because record offsets and lengths must fit in a segment's u32 offsets.
const TOMBSTONE_LEN: u32 = u32::MAX;

#[derive(Clone, Copy, Default)]
#[repr(C, packed(4))]
struct Slot {
    /// Where the key sits in the arena: its length (see `push_key`), then
    /// the key bytes.
    key_pos: u32,
    offset: u32,
    value_len: u32,
}

impl Slot {
    fn entry(&self) -> Entry {
        let value_len = self.value_len;
        Entry {
            offset: self.offset,
            value_len: if value_len == TOMBSTONE_LEN {
                0
            } else {
                value_len
            },
            tombstone: value_len == TOMBSTONE_LEN,
        }
    }

    fn set(&mut self, e: Entry) {
        self.offset = e.offset;
        self.value_len = if e.tombstone {
            TOMBSTONE_LEN
        } else {
            e.value_len
        };
    }
}

#[derive(Default)]
pub struct Index {
    table: Table<Slot>,
    arena: Vec<u8>,
}

// Four slots and their tags fill one cache line.
const _: () = assert!(size_of::<Bucket<Slot>>() == 64);

/// Marks a two-byte key length in the arena.
const LONG_LEN: u8 = 0x80;

/// Appends `key` to the arena behind its length: one byte below 128, else
/// two (big-endian, high bit set), since keys are at most 4095 bytes and
/// nearly all are short.
fn push_key(arena: &mut Vec<u8>, key: &[u8]) {
    let len = key.len();
    if len < usize::from(LONG_LEN) {
        arena.push(len as u8);
    } else {
        arena.push(LONG_LEN | (len >> 8) as u8);
        arena.push(len as u8);
    }
    arena.extend_from_slice(key);
}

fn arena_key(arena: &[u8], pos: u32) -> &[u8] {
    let pos = pos as usize;
    let first = arena[pos];
    let (len, at) = if first & LONG_LEN == 0 {
        (usize::from(first), pos + 1)
    } else {
        (
            usize::from(first & !LONG_LEN) << 8 | usize::from(arena[pos + 1]),
            pos + 2,
        )
    };
    &arena[at..at + len]
}

impl Index {
    pub fn with_capacity(entries: usize, key_bytes: usize) -> Self {
        let arena = Vec::with_capacity(key_bytes + entries);
        huge_pages::advise(arena.as_ptr(), arena.capacity());
        Index {
            table: Table::with_capacity(entries),
            arena,
        }
    }

    pub fn get(&self, hash: u64, key: &[u8]) -> Option<Entry> {
        self.table
            .find(hash, |s| arena_key(&self.arena, s.key_pos) == key)
            .map(Slot::entry)
    }

    /// Like `get`, but first asks `record_has_key(offset)` whether the
    /// record a candidate slot points at holds the key: a hit then costs no
    /// visit to the arena, and the record it loads into the cache is the
    /// one the caller reads next. The arena still decides when the record
    /// disagrees, so a damaged record is found (and fails its CRC) rather
    /// than missed.
    pub fn get_via_record(
        &self,
        hash: u64,
        key: &[u8],
        record_has_key: impl Fn(u32) -> bool,
    ) -> Option<Entry> {
        self.table
            .find(hash, |s| {
                record_has_key(s.offset) || arena_key(&self.arena, s.key_pos) == key
            })
            .map(Slot::entry)
    }

    /// Records `entry` as the key's latest record in this segment. Keys are
    /// 1..=4095 bytes (checked by the caller).
    pub fn insert(&mut self, hash: u64, key: &[u8], entry: Entry) {
        let Index { table, arena } = self;
        if let Some(slot) = table.find_mut(hash, |s| arena_key(arena, s.key_pos) == key) {
            slot.set(entry);
            return;
        }
        self.insert_new(hash, key, entry);
    }

    /// `insert` for a key this index does not hold yet (a merge output gets
    /// each key once): one probe instead of two.
    pub fn insert_new(&mut self, hash: u64, key: &[u8], entry: Entry) {
        let Index { table, arena } = self;
        let key_pos = arena.len() as u32;
        push_key(arena, key);
        let mut slot = Slot {
            key_pos,
            offset: 0,
            value_len: 0,
        };
        slot.set(entry);
        table.insert_unique(hash, slot, |s| hash_key(arena_key(arena, s.key_pos)));
    }

    /// A way to insert many entries fast: see `BulkInsert`.
    pub fn bulk_insert<'k>(&mut self) -> BulkInsert<'_, 'k> {
        BulkInsert {
            index: self,
            pending: VecDeque::with_capacity(BULK_AHEAD),
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Starts loading where a lookup of `hash` will look first.
    pub fn prefetch(&self, hash: u64) {
        self.table.prefetch(hash);
    }

    /// Total bytes of all keys: what a hint file needs to size its arena.
    pub fn key_bytes(&self) -> usize {
        self.iter().map(|(k, _)| k.len()).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Entry)> {
        self.table
            .iter()
            .map(|s| (arena_key(&self.arena, s.key_pos), s.entry()))
    }

    /// Whether both indexes hold the same keys with the same entries.
    pub fn same_as(&self, other: &Index) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .all(|(k, e)| other.get(hash_key(k), k) == Some(e))
    }

    /// Gives back the slack left by growth, once no more keys will be added.
    pub fn shrink_to_fit(&mut self) {
        let Index { table, arena } = self;
        arena.shrink_to_fit();
        huge_pages::advise(arena.as_ptr(), arena.capacity());
        table.shrink_to_fit(|s| hash_key(arena_key(arena, s.key_pos)));
    }
}

/// How many entries a `BulkInsert` keeps between the prefetch of an
/// entry's bucket and its insert: enough for the memory to answer.
const BULK_AHEAD: usize = 16;

/// Inserts entries a few behind the caller (in the same order), starting
/// the load of each one's bucket as it comes in. Loading an index (a hint,
/// a scan) inserts keys in no order the table knows, so each insert would
/// otherwise wait on memory for its bucket, one after the other.
pub struct BulkInsert<'i, 'k> {
    index: &'i mut Index,
    pending: VecDeque<(u64, &'k [u8], Entry)>,
}

impl<'k> BulkInsert<'_, 'k> {
    /// `Index::insert`, done a few calls later.
    pub fn insert(&mut self, key: &'k [u8], entry: Entry) {
        let hash = hash_key(key);
        self.index.prefetch(hash);
        if self.pending.len() == BULK_AHEAD {
            self.flush_one();
        }
        self.pending.push_back((hash, key, entry));
    }

    fn flush_one(&mut self) {
        if let Some((hash, key, entry)) = self.pending.pop_front() {
            self.index.insert(hash, key, entry);
        }
    }
}

impl Drop for BulkInsert<'_, '_> {
    /// Inserts what is still pending.
    fn drop(&mut self) {
        while !self.pending.is_empty() {
            self.flush_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(offset: u32, len: u32) -> Entry {
        Entry {
            offset,
            value_len: len,
            tombstone: false,
        }
    }

    #[test]
    fn insert_get_overwrite() {
        let mut ix = Index::default();
        assert_eq!(std::mem::size_of::<Slot>(), 12);
        for i in 0..1000u32 {
            let k = format!("key{i}");
            ix.insert(hash_key(k.as_bytes()), k.as_bytes(), put(i, i));
        }
        let gone = Entry {
            offset: 7,
            value_len: 0,
            tombstone: true,
        };
        ix.insert(hash_key(b"key3"), b"key3", gone);
        assert_eq!(ix.len(), 1000);
        assert_eq!(ix.get(hash_key(b"key3"), b"key3"), Some(gone));
        assert_eq!(ix.get(hash_key(b"key999"), b"key999"), Some(put(999, 999)));
        assert_eq!(ix.get(hash_key(b"nope"), b"nope"), None);
        ix.shrink_to_fit();
        assert_eq!(ix.iter().count(), 1000);
        assert_eq!(
            ix.key_bytes(),
            (0..1000).map(|i| format!("key{i}").len()).sum::<usize>()
        );
    }

    #[test]
    fn bulk_insert_keeps_the_order() {
        let mut ix = Index::default();
        let keys: Vec<String> = (0..100).map(|i| format!("key{}", i % 40)).collect();
        {
            let mut bulk = ix.bulk_insert();
            for (i, k) in keys.iter().enumerate() {
                bulk.insert(k.as_bytes(), put(i as u32, 1));
            }
        }
        assert_eq!(ix.len(), 40);
        // The last of each key's three entries wins.
        for i in 60..100u32 {
            let k = &keys[i as usize];
            assert_eq!(
                ix.get(hash_key(k.as_bytes()), k.as_bytes()),
                Some(put(i, 1))
            );
        }
    }

    #[test]
    fn keys_of_every_length_round_trip() {
        let mut ix = Index::default();
        let lens = [1, 2, 126, 127, 128, 129, 255, 256, 1000, 4094, 4095];
        let keys: Vec<Vec<u8>> = lens
            .iter()
            .map(|&n| vec![b'a' + (n % 26) as u8; n])
            .collect();
        for (i, k) in keys.iter().enumerate() {
            ix.insert(hash_key(k), k, put(i as u32, 1));
        }
        ix.shrink_to_fit();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                ix.get(hash_key(k), k),
                Some(put(i as u32, 1)),
                "{} bytes",
                k.len()
            );
        }
        assert_eq!(ix.key_bytes(), lens.iter().sum::<usize>());
        // One length byte for short keys, two from 128 bytes on.
        assert_eq!(ix.arena.len(), ix.key_bytes() + lens.len() + 7);
    }
}
