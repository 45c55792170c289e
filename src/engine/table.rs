//! The hash table behind a segment's index: open addressing over buckets
//! of one cache line each, tags and slots together, so that a probe costs
//! one memory access, and one that can be started (prefetched) ahead of
//! the probe.
//!
//! Entries are never removed (an index only gains keys or updates them),
//! which keeps probing simple: a value sits in its home bucket or, when
//! that was full as it came in, in one of the buckets after it, and every
//! bucket it passed is marked as overflowed. A search stops at the bucket
//! holding what it looks for, or at the first one nothing ever passed, so
//! a search for a key the table lacks nearly always ends at its home
//! bucket, even in a full table.

use allocator_api2::vec::Vec;

use super::huge_pages::HugePages;

/// Slots per bucket: four index slots of 12 bytes and their tags fill a
/// 64-byte line.
const SLOTS: usize = 4;
/// Set in the tag of every occupied slot, so that a tag of 0 means empty;
/// the other 7 bits come from the hash.
const FULL: u8 = 0x80;
/// A table grows before more than 7/8 of its slots are taken…
const MAX_FILL: (usize, usize) = (7, 8);
/// …and is sized for 5/6 when its size is known (a hint's entries, a
/// closed segment's keys): 19 bytes a key. At 7/8 a million lookups ran
/// about 8% slower than at 4/5; at 5/6 no slower than the noise showed.
const FIT_FILL: (usize, usize) = (5, 6);
const MIN_BUCKETS: usize = 4;

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct Bucket<T> {
    tags: [u8; SLOTS],
    /// Whether something was placed past this bucket because it was full.
    overflowed: bool,
    slots: [T; SLOTS],
}

pub struct Table<T> {
    buckets: Vec<Bucket<T>, HugePages>,
    len: usize,
}

impl<T: Copy + Default> Default for Table<T> {
    fn default() -> Self {
        Table {
            buckets: Vec::new_in(HugePages),
            len: 0,
        }
    }
}

/// Buckets for `n` entries at the fill of `FIT_FILL`.
fn buckets_for(n: usize) -> usize {
    (n * FIT_FILL.1).div_ceil(SLOTS * FIT_FILL.0)
}

fn tag(hash: u64) -> u8 {
    hash as u8 | FULL
}

impl<T: Copy + Default> Table<T> {
    pub fn with_capacity(n: usize) -> Self {
        Table {
            buckets: empty(buckets_for(n)),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The bucket a search for `hash` starts at: the hash's high bits
    /// scaled to the bucket count, which need not be a power of two (so
    /// that a table can be sized to its entries). The tag takes the low bits.
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// Starts loading the home bucket of `hash` into the cache, so that a
    /// search for it a little later does not wait on memory.
    pub fn prefetch(&self, hash: u64) {
        if let Some(bucket) = self.buckets.get(self.home(hash)) {
            prefetch(bucket);
        }
    }

    /// Where the value for `hash` that `eq` accepts sits: (bucket, slot).
    fn position(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<(usize, usize)> {
        if self.buckets.is_empty() {
            return None;
        }
        let tag = tag(hash);
        let mut b = self.home(hash);
        // Bounded for safety's sake; `overflowed` ends the search long before.
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            for (i, slot) in bucket.slots.iter().enumerate() {
                if bucket.tags[i] == tag && eq(slot) {
                    return Some((b, i));
                }
            }
            if !bucket.overflowed {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    pub fn find(&self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&T> {
        let (b, i) = self.position(hash, eq)?;
        Some(&self.buckets[b].slots[i])
    }

    pub fn find_mut(&mut self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&mut T> {
        let (b, i) = self.position(hash, eq)?;
        Some(&mut self.buckets[b].slots[i])
    }

    /// Adds `value`, which the table must not hold yet. `rehash` gives the
    /// hash of a value already in, for moving it when the table grows.
    pub fn insert_unique(&mut self, hash: u64, value: T, rehash: impl Fn(&T) -> u64) {
        let slots = self.buckets.len() * SLOTS;
        if (self.len + 1) * MAX_FILL.1 > slots * MAX_FILL.0 {
            self.resize((self.buckets.len() * 2).max(MIN_BUCKETS), rehash);
        }
        self.place(hash, value);
        self.len += 1;
    }

    /// Puts `value` in the first free slot from its home bucket on. The
    /// caller keeps a free slot somewhere (the fill stays below 1).
    fn place(&mut self, hash: u64, value: T) {
        let mut b = self.home(hash);
        loop {
            let bucket = &mut self.buckets[b];
            if let Some(i) = bucket.tags.iter().position(|&t| t == 0) {
                bucket.tags[i] = tag(hash);
                bucket.slots[i] = value;
                return;
            }
            bucket.overflowed = true;
            b = self.next(b);
        }
    }

    /// Moves every value into a table of `buckets` buckets.
    fn resize(&mut self, buckets: usize, rehash: impl Fn(&T) -> u64) {
        let old = std::mem::replace(&mut self.buckets, empty(buckets));
        for value in iter(&old) {
            self.place(rehash(value), *value);
        }
    }

    /// Gives back the room kept for growth, once no more values will be
    /// added: the table is sized to its values at `FIT_FILL`.
    pub fn shrink_to_fit(&mut self, rehash: impl Fn(&T) -> u64) {
        let fit = buckets_for(self.len);
        if fit < self.buckets.len() {
            self.resize(fit, rehash);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        iter(&self.buckets)
    }
}

/// `n` empty buckets, allocated whole (and so advised for huge pages)
/// before they are first written.
fn empty<T: Copy + Default>(n: usize) -> Vec<Bucket<T>, HugePages> {
    let mut buckets = Vec::with_capacity_in(n, HugePages);
    buckets.resize(n, Bucket::default());
    buckets
}

fn iter<T>(buckets: &[Bucket<T>]) -> impl Iterator<Item = &T> {
    buckets.iter().flat_map(|b| {
        b.tags
            .iter()
            .zip(&b.slots)
            .filter(|(tag, _)| **tag != 0)
            .map(|(_, slot)| slot)
    })
}

/// A hint to the CPU to load `at`'s cache line; never faults.
#[inline]
fn prefetch<T>(at: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch reads nothing the program sees and cannot
        // fault; `at` is a live reference anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((at as *const T).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn grows_finds_and_shrinks() {
        let mut t: Table<u64> = Table::default();
        let n = 100_000u64;
        for i in 0..n {
            t.insert_unique(mix(i), i, |&v| mix(v));
        }
        let check = |t: &Table<u64>| {
            assert_eq!(t.len(), n as usize);
            for i in 0..n {
                assert_eq!(t.find(mix(i), |&v| v == i), Some(&i));
            }
            for i in n..2 * n {
                assert_eq!(t.find(mix(i), |&v| v == i), None);
            }
            let mut all: std::vec::Vec<u64> = t.iter().copied().collect();
            all.sort_unstable();
            assert!(all.iter().copied().eq(0..n));
        };
        check(&t);
        t.shrink_to_fit(|&v| mix(v));
        assert_eq!(t.buckets.len(), buckets_for(n as usize));
        check(&t);
        *t.find_mut(mix(7), |&v| v == 7).expect("7 is in") = 7;
        check(&t);
    }

    #[test]
    fn collisions_and_wrap_around() {
        // Every value hashes to the last bucket: they spill over the end
        // of the table and on from its start.
        let mut t: Table<u64> = Table::with_capacity(20);
        for i in 0..20 {
            t.insert_unique(u64::MAX - i, i, |&v| u64::MAX - v);
        }
        for i in 0..20 {
            assert_eq!(t.find(u64::MAX - i, |&v| v == i), Some(&i));
        }
        assert_eq!(t.find(u64::MAX - 20, |&v| v == 20), None);
        let empty: Table<u64> = Table::default();
        assert_eq!(empty.find(1, |_| true), None);
        empty.prefetch(1);
    }
}
