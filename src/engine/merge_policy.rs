//! Choosing what to merge: whether a background merge is worth it, judged
//! on what a merge of every closed segment would drop and write, and which
//! segments a merge takes (a run of closed ones, split from the rest).

use std::sync::Arc;

use super::error::{Error, Result};
use super::format::SEGMENT_HEADER_LEN;
use super::index::hash_key;
use super::merge_output::output_full;
use super::options::Options;
use super::record::HEADER_LEN;
use super::segment::Segment;
use super::version::Version;

/// What a merge of every closed segment would do, judged before running
/// it, to decide whether a background merge is worth it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeOutlook {
    /// Closed segments now.
    pub segments: u64,
    /// Their bytes on disk.
    pub bytes: u64,
    /// The bytes the merge would drop: superseded values, deleted keys,
    /// tombstones (a merge of every closed segment needs none), and
    /// anything else not a live record.
    pub dead_bytes: u64,
    /// The segments the merge would write, packed as `write_outputs` packs
    /// them; counted only when there are more than `compact_max_segments`
    /// closed segments (it needs the live records in file order).
    pub outputs: Option<u64>,
}

impl MergeOutlook {
    /// The background merge rule:
    ///
    /// - the dead bytes are at least `compact_dead_ratio` of the closed
    ///   segments' bytes, and at least `Options::min_dead_bytes` (by default
    ///   one segment's worth, at most 16 MiB), and not zero; or
    /// - the merge would leave more than `compact_max_segments` fewer closed
    ///   segments: there are that many more than the live data fills.
    ///
    /// Both are measured on what the merge would actually drop and write,
    /// so right after a merge neither holds (it left no dead bytes, and
    /// the segments it wrote are the ones a merge would write again): a
    /// store that is already compact, however large, is not merged again
    /// and again. Both scale with the store: the ratio makes the rewrite of
    /// the live data cost no more than the space it frees, the dead-bytes
    /// floor keeps a tiny store from merging for every few dead records,
    /// and the segment count grows with the live data instead of making a
    /// store whose live data fills more segments than the limit merge
    /// forever.
    pub fn worth_merging(&self, opts: &Options) -> bool {
        let dead = self.dead_bytes;
        let fragmented = dead > 0
            && dead as f64 >= opts.compact_dead_ratio * self.bytes as f64
            && dead >= opts.min_dead_bytes();
        let too_many = self.outputs.is_some_and(|outputs| {
            self.segments > outputs.saturating_add(opts.compact_max_segments as u64)
        });
        fragmented || too_many
    }
}

/// Counts the outputs a merge would write, as `write_outputs` cuts them.
struct Packer {
    max_segment_size: u64,
    outputs: u64,
    /// The length of the output being filled, if any.
    current: Option<u64>,
}

impl Packer {
    fn add(&mut self, len: u64) {
        self.current = match self.current {
            Some(out_len) if !output_full(out_len, len, self.max_segment_size) => {
                Some(out_len + len)
            }
            _ => {
                self.outputs += 1;
                Some(SEGMENT_HEADER_LEN as u64 + len)
            }
        };
    }
}

/// What a merge of every closed segment of `version` would do. A record is
/// live (the merge keeps it) when it is not a tombstone and no newer
/// segment, the active one included, has a record for its key: the rule of
/// `merge::merge` when nothing older is left out of the merge.
pub fn outlook(version: &Version, opts: &Options) -> MergeOutlook {
    let segments: Vec<&Arc<Segment>> = version.newest_first().collect();
    let closed = segments.len().saturating_sub(1);
    let count_outputs = closed > opts.compact_max_segments;
    let mut outlook = MergeOutlook {
        segments: closed as u64,
        ..MergeOutlook::default()
    };
    let mut packer = Packer {
        max_segment_size: opts.max_segment_size,
        outputs: 0,
        current: None,
    };
    let mut live: Vec<(u32, u64)> = Vec::new();
    // Oldest first, the order a merge copies in.
    for i in (1..segments.len()).rev() {
        let seg = segments[i];
        let file_bytes = seg.file_len();
        outlook.bytes += file_bytes;
        let mut live_bytes = 0;
        live.clear();
        let index = seg.index();
        for (key, e) in index.iter() {
            let hash = hash_key(key);
            if e.tombstone || segments[..i].iter().any(|s| s.has_key(hash, key)) {
                continue;
            }
            let value_len = u64::from(e.value_len);
            live_bytes += (seg.layout.header_len() + key.len()) as u64 + value_len;
            if count_outputs {
                // Outputs are written in the current layout, whatever
                // the input's.
                live.push((e.offset, (HEADER_LEN + key.len()) as u64 + value_len));
            }
        }
        drop(index);
        outlook.dead_bytes += file_bytes.saturating_sub(SEGMENT_HEADER_LEN as u64 + live_bytes);
        live.sort_unstable();
        for &(_, len) in &live {
            packer.add(len);
        }
    }
    if count_outputs {
        outlook.outputs = Some(packer.outputs);
    }
    outlook
}

/// The closed segments of `version`, oldest first: what a merge of every
/// closed segment takes.
pub fn all_closed(version: &Version) -> Vec<u64> {
    version.closed.iter().rev().map(|s| s.id).collect()
}

/// Splits the segments of `v` into those newer than the inputs, the inputs
/// (oldest first) and those older, checking the inputs are a closed run.
type Split = (Vec<Arc<Segment>>, Vec<Arc<Segment>>, Vec<Arc<Segment>>);

pub fn split(v: &Version, ids: &[u64]) -> Result<Split> {
    let oldest_first: Vec<&Arc<Segment>> = v.closed.iter().rev().collect();
    let start = oldest_first.iter().position(|s| Some(&s.id) == ids.first());
    let run_ok = start.is_some_and(|st| {
        ids.iter()
            .enumerate()
            .all(|(i, id)| oldest_first.get(st + i).is_some_and(|s| s.id == *id))
    });
    let (Some(st), true) = (start, run_ok) else {
        return Err(Error::InvalidOption(format!(
            "segments {ids:?} are not a run of closed segments, oldest first"
        )));
    };
    let older = oldest_first[..st].iter().map(|s| (*s).clone()).collect();
    let inputs = oldest_first[st..st + ids.len()]
        .iter()
        .map(|s| (*s).clone())
        .collect();
    let newer = v
        .newest_first()
        .take(v.closed.len() + 1 - st - ids.len())
        .cloned()
        .collect();
    Ok((newer, inputs, older))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn opts(max_segment_size: u64) -> Options {
        Options {
            max_segment_size,
            ..Options::default()
        }
    }

    #[test]
    fn a_small_store_with_more_dead_than_live_bytes_is_worth_merging() {
        // Four closed 1 MiB segments, 250 KB of them live.
        let small = MergeOutlook {
            segments: 4,
            bytes: 4 * MIB,
            dead_bytes: 4 * MIB - 250_000,
            outputs: None,
        };
        assert!(small.worth_merging(&opts(MIB)));
        // The same store with 64 MiB segments waits for 16 MiB of garbage.
        assert!(!small.worth_merging(&opts(64 * MIB)));
        // Less than a segment's worth of dead bytes: not yet.
        let little = MergeOutlook {
            dead_bytes: MIB - 1,
            ..small
        };
        assert!(!little.worth_merging(&opts(MIB)));
        // Dead bytes over the floor but fewer than half the bytes: not yet.
        let mostly_live = MergeOutlook {
            segments: 10,
            bytes: 10 * MIB,
            dead_bytes: 4 * MIB,
            outputs: None,
        };
        assert!(!mostly_live.worth_merging(&opts(MIB)));
        let explicit = Options {
            compact_dead_ratio: 0.3,
            compact_min_dead_bytes: Some(3 * MIB),
            ..opts(MIB)
        };
        assert!(mostly_live.worth_merging(&explicit));
    }

    #[test]
    fn a_compact_store_is_not_worth_merging_however_many_segments_it_has() {
        let eager = Options {
            compact_dead_ratio: 0.0,
            compact_min_dead_bytes: Some(0),
            compact_max_segments: 2,
            ..opts(MIB)
        };
        // Nothing dead, as right after a merge.
        let merged = MergeOutlook {
            segments: 40,
            bytes: 40 * MIB,
            dead_bytes: 0,
            outputs: Some(40),
        };
        assert!(!merged.worth_merging(&eager));
        assert!(!merged.worth_merging(&opts(MIB)));
        // More segments than the limit beyond those the live data fills.
        let rolled = MergeOutlook {
            segments: 43,
            ..merged
        };
        assert!(rolled.worth_merging(&eager));
        assert!(!rolled.worth_merging(&opts(MIB)));
        let many = MergeOutlook {
            segments: 57,
            ..merged
        };
        assert!(many.worth_merging(&opts(MIB)));
        // Few segments: not counted, not merged for their number.
        let few = MergeOutlook {
            segments: 2,
            bytes: 2 * MIB,
            dead_bytes: 0,
            outputs: None,
        };
        assert!(!few.worth_merging(&eager));
    }

    #[test]
    fn outputs_are_counted_as_they_are_cut() {
        let h = SEGMENT_HEADER_LEN as u64;
        let mut p = Packer {
            max_segment_size: 100 + h,
            outputs: 0,
            current: None,
        };
        for len in [60, 40, 1, 300, 50, 50] {
            p.add(len);
        }
        // [60 40] [1] [300] [50 50]
        assert_eq!(p.outputs, 4);
    }
}
