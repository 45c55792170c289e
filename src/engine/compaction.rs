//! Merging closed segments: keep each key's latest record, drop superseded
//! puts and the tombstones nothing older needs, write the survivors into
//! new segments, and swap them in for their inputs in one MANIFEST rename.
//!
//! Inputs are a contiguous run of closed segments, so the outputs take their
//! place in the newest-to-oldest search order and sequence order is kept.
//! Only the merge thread (or a caller of `compact`) merges, one at a time;
//! reads and writes carry on: the writer never waits for a merge, readers
//! only for the swap of the segment list.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{info, warn};

use super::crash_points::{self, CrashPoint};
use super::error::{Error, Result};
use super::format::{self, SEGMENT_HEADER_LEN};
use super::index::hash_key;
use super::manifest::sync_dir;
use super::merge_output::{Output, Survivor};
use super::options::Options;
use super::progress::Task;
use super::record::HEADER_LEN;
use super::segment::Segment;
use super::store::Inner;
use super::version::Version;

/// What one merge did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeReport {
    pub inputs: Vec<u64>,
    pub outputs: Vec<u64>,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_kept: u64,
    pub records_dropped: u64,
    pub duration: Duration,
}

impl Inner {
    /// Merges every closed segment. `Ok(None)` when there is nothing to merge.
    pub fn compact_all(&self) -> Result<Option<MergeReport>> {
        let _one_at_a_time = self.merge_lock.lock();
        let ids: Vec<u64> = self.version().closed.iter().rev().map(|s| s.id).collect();
        if ids.is_empty() {
            return Ok(None);
        }
        self.merge_locked(&ids).map(Some)
    }

    /// Merges the closed segments `ids` (oldest first), which must be next
    /// to each other in the segment order.
    pub fn merge(&self, ids: &[u64]) -> Result<MergeReport> {
        let _one_at_a_time = self.merge_lock.lock();
        self.merge_locked(ids)
    }

    fn merge_locked(&self, ids: &[u64]) -> Result<MergeReport> {
        let started = Instant::now();
        let version = self.version();
        let (newer, inputs, older) = split(&version, ids)?;

        let mut bytes_before = 0;
        let mut dropped = 0;
        let mut survivors = Vec::with_capacity(inputs.len());
        for (i, seg) in inputs.iter().enumerate() {
            bytes_before += seg.file_len();
            let index = seg.index();
            let mut keep = Vec::new();
            for (key, e) in index.iter() {
                let hash = hash_key(key);
                let in_any = |segs: &[Arc<Segment>]| segs.iter().any(|s| s.has_key(hash, key));
                let superseded = in_any(&newer) || in_any(&inputs[i + 1..]);
                // A tombstone must stay while an older segment outside this
                // merge may still hold a value it hides.
                let needed = !superseded && (!e.tombstone || in_any(&older));
                if needed {
                    keep.push(Survivor {
                        offset: e.offset,
                        key_len: key.len() as u16,
                        hash,
                        entry: e,
                    });
                } else {
                    dropped += 1;
                }
            }
            keep.sort_unstable_by_key(|s| s.offset);
            survivors.push(keep);
        }

        let outputs = match self.write_outputs(&inputs, &survivors) {
            Ok(o) => o,
            Err(e) => {
                warn!("merge of segments {ids:?} abandoned: {e}");
                return Err(e);
            }
        };
        crash_points::stop_at(self.opts.crash_point, CrashPoint::BeforeInstall)?;
        let bytes_after = outputs.iter().map(|s| s.file_len()).sum();
        let output_ids: Vec<u64> = outputs.iter().map(|s| s.id).collect();
        self.install(ids, outputs)?;
        crash_points::stop_at(self.opts.crash_point, CrashPoint::BeforeDelete)?;
        for seg in &inputs {
            // Readers still holding the segment keep its open file.
            let _ = fs::remove_file(&seg.path);
            let _ = fs::remove_file(format::hint_path(&self.dir, seg.id));
        }
        if let Err(e) = sync_dir(&self.dir) {
            warn!("syncing {} after a merge: {e}", self.dir.display());
        }
        let report = MergeReport {
            inputs: ids.to_vec(),
            outputs: output_ids,
            bytes_before,
            bytes_after,
            records_kept: survivors.iter().map(|s| s.len() as u64).sum(),
            records_dropped: dropped,
            duration: started.elapsed(),
        };
        info!("merged {report}");
        write_last_merge(&self.dir, &report);
        *self.last_merge.lock() = Some(report.clone());
        self.merges_done.fetch_add(1, Ordering::Relaxed);
        Ok(report)
    }

    /// Copies the survivors into new segment files, synced and renamed into
    /// place with their hints. On error the temporary files are removed.
    fn write_outputs(
        &self,
        inputs: &[Arc<Segment>],
        survivors: &[Vec<Survivor>],
    ) -> Result<Vec<Arc<Segment>>> {
        let mut done: Vec<Output> = Vec::new();
        let mut current: Option<Output> = None;
        // Sizes each output's index up front, from the average survivor.
        let (count, bytes) = survivors
            .iter()
            .flatten()
            .fold((0u64, 0u64), |(n, b), s| (n + 1, b + s.record_len()));
        let per_output = count.min(count * self.opts.max_segment_size / bytes.max(1) + 1) as usize;
        let progress = Task::begin("merging", bytes);
        let result = (|| -> Result<()> {
            for (seg, keep) in inputs.iter().zip(survivors) {
                for s in keep {
                    let len = s.record_len();
                    progress.advance(len);
                    let full = current
                        .as_ref()
                        .is_some_and(|o| output_full(o.len, len, self.opts.max_segment_size));
                    if full {
                        done.extend(current.take());
                    }
                    if current.is_none() {
                        current = Some(self.new_output(per_output)?);
                    }
                    if let Some(out) = current.as_mut() {
                        out.copy(seg, s)?;
                        if crash_points::reached(
                            self.opts.crash_point,
                            CrashPoint::OutputHalfWritten,
                        ) {
                            out.out.flush().map_err(|e| out.io_err(e))?;
                            return Err(crash_points::crash());
                        }
                    }
                }
            }
            done.extend(current.take());
            for o in &mut done {
                o.finish()?;
            }
            sync_dir(&self.dir).map_err(|e| Error::io(format!("syncing {}", self.dir.display()), e))
        })();
        if let Err(e) = result {
            if !crash_points::armed(self.opts.crash_point) {
                for o in done.iter().chain(current.iter()) {
                    let _ = fs::remove_file(&o.tmp);
                    let _ = fs::remove_file(&o.path);
                    let _ = fs::remove_file(format::hint_path(&self.dir, o.id));
                }
            }
            return Err(e);
        }
        done.into_iter().map(Output::into_segment).collect()
    }

    fn new_output(&self, entries: usize) -> Result<Output> {
        let id = {
            let mut m = self.manifest.lock();
            m.next_id += 1;
            m.next_id - 1
        };
        Output::create(&self.dir, id, entries)
    }

    /// The one commit point: the MANIFEST names the outputs instead of the
    /// inputs; then readers are switched over.
    fn install(&self, input_ids: &[u64], outputs: Vec<Arc<Segment>>) -> Result<()> {
        let mut manifest = self.manifest.lock();
        let mut next = manifest.clone();
        let at = next
            .segments
            .iter()
            .position(|id| *id == input_ids[0])
            .ok_or_else(|| {
                Error::InvalidOption(format!("segment {} is no longer live", input_ids[0]))
            })?;
        next.segments
            .splice(at..at + input_ids.len(), outputs.iter().map(|s| s.id));
        next.store(&self.dir)?;
        *manifest = next;
        let mut version = self.version.write();
        let mut closed: Vec<Arc<Segment>> = Vec::with_capacity(version.closed.len());
        for seg in &version.closed {
            if seg.id == input_ids[input_ids.len() - 1] {
                closed.extend(outputs.iter().rev().cloned());
            }
            if !input_ids.contains(&seg.id) {
                closed.push(seg.clone());
            }
        }
        *version = Arc::new(Version {
            active: version.active.clone(),
            closed,
        });
        Ok(())
    }
}

/// Splits the segments of `v` into those newer than the inputs, the inputs
/// (oldest first) and those older, checking the inputs are a closed run.
type Split = (Vec<Arc<Segment>>, Vec<Arc<Segment>>, Vec<Arc<Segment>>);

fn split(v: &Version, ids: &[u64]) -> Result<Split> {
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

impl std::fmt::Display for MergeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "segments {:?} -> {:?}: {} -> {} bytes, {} records kept, {} dropped, {:.3} s",
            self.inputs,
            self.outputs,
            self.bytes_before,
            self.bytes_after,
            self.records_kept,
            self.records_dropped,
            self.duration.as_secs_f64()
        )
    }
}

/// Records the merge for `caskfs stats`; losing this line loses nothing else,
/// so it is not synced.
fn write_last_merge(dir: &Path, report: &MergeReport) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = dir.join(format::LAST_MERGE_FILE);
    let tmp = format::temp_path(&path);
    let line = format!("at unix time {secs}: {report}\n");
    if let Err(e) = fs::write(&tmp, line).and_then(|_| fs::rename(&tmp, &path)) {
        warn!("recording the last merge in {}: {e}", path.display());
    }
}

pub fn read_last_merge(dir: &Path) -> Option<String> {
    let line = fs::read_to_string(dir.join(format::LAST_MERGE_FILE)).ok()?;
    Some(line.trim().to_string())
}

/// Whether a record of `len` bytes starts a new output rather than going
/// into the one that holds `out_len` bytes: outputs are cut at the segment
/// size, but each takes at least one record.
fn output_full(out_len: u64, len: u64, max_segment_size: u64) -> bool {
    out_len > SEGMENT_HEADER_LEN as u64 && out_len + len > max_segment_size
}

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

impl Inner {
    /// What a merge of every closed segment would do now. A record is live
    /// (the merge keeps it) when it is not a tombstone and no newer segment,
    /// the active one included, has a record for its key: the rule of
    /// `merge_locked` when nothing older is left out of the merge.
    pub fn merge_outlook(&self) -> MergeOutlook {
        let version = self.version();
        let segments: Vec<&Arc<Segment>> = version.newest_first().collect();
        let closed = segments.len().saturating_sub(1);
        let count_outputs = closed > self.opts.compact_max_segments;
        let mut outlook = MergeOutlook {
            segments: closed as u64,
            ..MergeOutlook::default()
        };
        let mut packer = Packer {
            max_segment_size: self.opts.max_segment_size,
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
}

/// Whether a background merge of the closed segments is worth it now, by
/// the options' thresholds (see `MergeOutlook::worth_merging`).
pub fn worth_merging(inner: &Inner) -> bool {
    inner.merge_outlook().worth_merging(&inner.opts)
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
