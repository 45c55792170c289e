//! The segments readers search, as one snapshot: a roll or a merge
//! installs a new `Version` rather than changing the one readers hold.

use std::sync::Arc;

use super::index::Entry;
use super::segment::Segment;

/// How many closed segments' tables a lookup prefetches ahead of the one
/// it searches.
const PREFETCH_AHEAD: usize = 4;

/// The segments readers search: the active one first, then closed ones
/// newest to oldest.
pub struct Version {
    pub active: Arc<Segment>,
    pub closed: Vec<Arc<Segment>>,
}

impl Version {
    pub fn newest_first(&self) -> impl Iterator<Item = &Arc<Segment>> {
        std::iter::once(&self.active).chain(self.closed.iter())
    }

    /// The newest record for `key`, tombstones included.
    ///
    /// The probes of the segments' tables are independent memory accesses,
    /// most of them misses: started together they overlap instead of each
    /// waiting for the one before. Only a few segments ahead are started,
    /// since the first hit ends the search.
    pub fn lookup(&self, hash: u64, key: &[u8]) -> Option<(&Arc<Segment>, Entry)> {
        for seg in self.closed.iter().take(PREFETCH_AHEAD) {
            seg.prefetch(hash);
        }
        if let Some(e) = self.active.lookup(hash, key) {
            return Some((&self.active, e));
        }
        for (i, seg) in self.closed.iter().enumerate() {
            if let Some(ahead) = self.closed.get(i + PREFETCH_AHEAD) {
                ahead.prefetch(hash);
            }
            if let Some(e) = seg.lookup(hash, key) {
                return Some((seg, e));
            }
        }
        None
    }
}
