//! Per-segment accounting of live and dead keys and bytes, for
//! `caskfs stats` and for judging when a merge is worth it.

use std::sync::Arc;

use super::format::SEGMENT_HEADER_LEN;
use super::index::hash_key;
use super::segment::Segment;
use super::version::Version;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentStats {
    pub id: u64,
    pub active: bool,
    pub file_bytes: u64,
    pub live_keys: u64,
    pub dead_keys: u64,
    pub live_bytes: u64,
    pub dead_bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Newest first.
    pub segments: Vec<SegmentStats>,
    pub live_keys: u64,
    pub live_value_bytes: u64,
    /// A line about the last merge in this data directory, if any.
    pub last_merge: Option<String>,
    /// Merges done since the store was opened, and whether one runs now.
    pub merges_done: u64,
    pub merge_running: bool,
}

/// The live and dead keys and bytes of each segment of `version`, whose
/// active segment's records end at `active_len`; the merge fields are left
/// for the caller.
pub fn of_segments(version: &Version, active_len: u64) -> Stats {
    let segments: Vec<&Arc<Segment>> = version.newest_first().collect();
    let mut stats = Stats::default();
    for (i, seg) in segments.iter().enumerate() {
        let mut s = SegmentStats {
            id: seg.id,
            active: i == 0,
            // The active file may be allocated ahead of its records.
            file_bytes: if i == 0 { active_len } else { seg.file_len() },
            ..Default::default()
        };
        let index = seg.index();
        for (key, e) in index.iter() {
            // Live here only if no newer segment has a record for the key.
            let hash = hash_key(key);
            let shadowed = segments[..i].iter().any(|n| n.has_key(hash, key));
            if shadowed || e.tombstone {
                s.dead_keys += 1;
            } else {
                s.live_keys += 1;
                s.live_bytes +=
                    (seg.layout.header_len() + key.len()) as u64 + u64::from(e.value_len);
                stats.live_value_bytes += u64::from(e.value_len);
            }
        }
        s.dead_bytes = s
            .file_bytes
            .saturating_sub(SEGMENT_HEADER_LEN as u64 + s.live_bytes);
        stats.live_keys += s.live_keys;
        stats.segments.push(s);
    }
    stats
}
