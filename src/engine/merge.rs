//! Merging closed segments: keep each key's latest record, drop superseded
//! puts and the tombstones nothing older needs, and write the survivors into
//! new segments, which `merge_install` swaps in for their inputs in one
//! MANIFEST rename.
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

use log::warn;

use super::crash_points::{self, CrashPoint};
use super::error::{Error, Result};
use super::format;
use super::index::hash_key;
use super::manifest::sync_dir;
use super::merge_output::{Output, Survivor, output_full};
use super::merge_policy::split;
use super::options::Options;
use super::progress::Task;
use super::record::Layout;
use super::segment::Segment;
use super::version::Version;

/// A merge written but not yet installed: its outputs are complete, synced
/// and renamed into place with their hints, and no MANIFEST names them.
pub struct Merged {
    /// Oldest first.
    pub inputs: Vec<Arc<Segment>>,
    /// In the order they take the inputs' place, oldest first.
    pub outputs: Vec<Arc<Segment>>,
    pub bytes_before: u64,
    pub records_kept: u64,
    pub records_dropped: u64,
}

/// Merges the closed segments `ids` of `version` (oldest first, next to
/// each other in the segment order) into new segment files of `layout` in
/// `dir`, whose ids come from `reserve_id`.
pub fn merge(
    dir: &Path,
    opts: &Options,
    version: &Version,
    ids: &[u64],
    layout: Layout,
    reserve_id: impl Fn() -> u64,
) -> Result<Merged> {
    let (newer, inputs, older) = split(version, ids)?;

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

    let outputs = match write_outputs(dir, opts, &inputs, &survivors, layout, reserve_id) {
        Ok(o) => o,
        Err(e) => {
            warn!("merge of segments {ids:?} abandoned: {e}");
            return Err(e);
        }
    };
    Ok(Merged {
        inputs,
        outputs,
        bytes_before,
        records_kept: survivors.iter().map(|s| s.len() as u64).sum(),
        records_dropped: dropped,
    })
}

/// Copies the survivors into new segment files, synced and renamed into
/// place with their hints. On error the temporary files are removed.
fn write_outputs(
    dir: &Path,
    opts: &Options,
    inputs: &[Arc<Segment>],
    survivors: &[Vec<Survivor>],
    layout: Layout,
    reserve_id: impl Fn() -> u64,
) -> Result<Vec<Arc<Segment>>> {
    let mut done: Vec<Output> = Vec::new();
    let mut current: Option<Output> = None;
    // Sizes each output's index up front, from the average survivor.
    let (count, bytes) = survivors
        .iter()
        .flatten()
        .fold((0u64, 0u64), |(n, b), s| (n + 1, b + s.record_len()));
    let per_output = count.min(count * opts.max_segment_size / bytes.max(1) + 1) as usize;
    let progress = Task::begin("merging", bytes);
    let result = (|| -> Result<()> {
        for (seg, keep) in inputs.iter().zip(survivors) {
            for s in keep {
                let len = s.record_len();
                progress.advance(len);
                let full = current
                    .as_ref()
                    .is_some_and(|o| output_full(o.len, len, opts.max_segment_size));
                if full {
                    done.extend(current.take());
                }
                if current.is_none() {
                    current = Some(Output::create(dir, reserve_id(), layout, per_output)?);
                }
                if let Some(out) = current.as_mut() {
                    out.copy(seg, s)?;
                    if crash_points::reached(opts.crash_point, CrashPoint::OutputHalfWritten) {
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
        sync_dir(dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
    })();
    if let Err(e) = result {
        if !crash_points::armed(opts.crash_point) {
            for o in done.iter().chain(current.iter()) {
                let _ = fs::remove_file(&o.tmp);
                let _ = fs::remove_file(&o.path);
                let _ = fs::remove_file(format::hint_path(dir, o.id));
            }
        }
        return Err(e);
    }
    done.into_iter().map(Output::into_segment).collect()
}
