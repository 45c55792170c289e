//! New inode numbers and extent/node ids, from the schema's counters. A
//! counter's record says which ids are taken; this takes a block of them
//! at a time, so one small record serves many creates. Ids of a block a
//! crash cut short are never used: gaps, never repeats.

use parking_lot::Mutex;

use super::errno::{Error, Result};
use crate::backend::{Batch, Compare, Kv};
use crate::schema::keys;

/// How many ids one counter record takes.
const BLOCK: u64 = 4096;

/// One counter.
pub struct Ids {
    key: Vec<u8>,
    /// The next id to give, and the first not taken.
    range: Mutex<(u64, u64)>,
}

impl Ids {
    /// The counter `name`, whose ids start at `first` in a new store.
    pub fn new(name: &str, first: u64) -> Ids {
        Ids {
            key: keys::counter(name),
            range: Mutex::new((first, first)),
        }
    }

    /// A new id.
    pub fn next(&self, kv: &dyn Kv) -> Result<u64> {
        let mut r = self.range.lock();
        if r.0 == r.1 {
            *r = self.take_block(kv, r.0)?;
        }
        let id = r.0;
        r.0 += 1;
        Ok(id)
    }

    /// Takes the next block above what the counter's record says (another
    /// host may have taken some since), at least from `from`.
    fn take_block(&self, kv: &dyn Kv, from: u64) -> Result<(u64, u64)> {
        for _ in 0..16 {
            let stored = kv.get(&self.key)?;
            let (taken, compare) = match &stored {
                Some(v) => {
                    let b = v.to_vec()?;
                    let taken = <[u8; 8]>::try_from(b.as_slice())
                        .map(u64::from_le_bytes)
                        .map_err(|_| crate::backend::Error::Corrupt("a counter".into()))?;
                    (taken, Compare::Unchanged(self.key.clone(), v.revision()))
                }
                None => (0, Compare::Absent(self.key.clone())),
            };
            let start = taken.max(from);
            let end = start + BLOCK;
            if end > keys::ID_LIMIT {
                return Err(Error::NotSupported("more than 2^56 ids"));
            }
            let mut b = Batch::default();
            b.put(self.key.clone(), end.to_le_bytes().to_vec())
                .expect(compare);
            match kv.write(b) {
                Ok(_) => return Ok((start, end)),
                Err(crate::backend::Error::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(crate::backend::Error::Conflict.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Memory;

    #[test]
    fn ids_never_repeat_across_restarts_and_hosts() {
        let kv = Memory::default();
        let a = Ids::new("ino", 2);
        let b = Ids::new("ino", 2);
        let mut seen = std::collections::HashSet::new();
        for i in 0..3 * BLOCK {
            let ids = if i % 3 == 0 { &a } else { &b };
            assert!(seen.insert(ids.next(&kv).unwrap()));
        }
        assert!(seen.contains(&2), "starts at its first id");
        let restarted = Ids::new("ino", 2);
        let next = restarted.next(&kv.restart()).unwrap();
        assert!(!seen.contains(&next));
    }
}
