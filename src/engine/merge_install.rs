//! Installing a written merge: the one commit point (the MANIFEST names the
//! outputs instead of the inputs, then readers are switched over), the
//! deletion of the inputs, and the LAST_MERGE line for `caskfs stats`.
//! A crash before the MANIFEST rename leaves the old segments; after it,
//! the new ones, and opening removes what the MANIFEST does not name.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{info, warn};
use parking_lot::{Mutex, RwLock};

use super::crash_points::{self, CrashPoint};
use super::error::{Error, Result};
use super::format;
use super::manifest::{Manifest, sync_dir};
use super::merge::Merged;
use super::segment::Segment;
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

/// Puts `merged`, a merge begun at `started`, in place of its inputs in the
/// MANIFEST of `dir` (`manifest`, as last written) and in the segments
/// readers search (`version`), then deletes the inputs.
pub fn install(
    dir: &Path,
    crash_point: Option<CrashPoint>,
    manifest: &Mutex<Manifest>,
    version: &RwLock<Arc<Version>>,
    merged: Merged,
    started: Instant,
) -> Result<MergeReport> {
    crash_points::stop_at(crash_point, CrashPoint::BeforeInstall)?;
    let Merged {
        inputs,
        outputs,
        bytes_before,
        records_kept,
        records_dropped,
    } = merged;
    let ids: Vec<u64> = inputs.iter().map(|s| s.id).collect();
    let bytes_after = outputs.iter().map(|s| s.file_len()).sum();
    let output_ids: Vec<u64> = outputs.iter().map(|s| s.id).collect();
    switch(dir, manifest, version, &ids, outputs)?;
    crash_points::stop_at(crash_point, CrashPoint::BeforeDelete)?;
    for seg in &inputs {
        // Readers still holding the segment keep its open file.
        let _ = fs::remove_file(&seg.path);
        let _ = fs::remove_file(format::hint_path(dir, seg.id));
    }
    if let Err(e) = sync_dir(dir) {
        warn!("syncing {} after a merge: {e}", dir.display());
    }
    let report = MergeReport {
        inputs: ids,
        outputs: output_ids,
        bytes_before,
        bytes_after,
        records_kept,
        records_dropped,
        duration: started.elapsed(),
    };
    info!("merged {report}");
    write_last_merge(dir, &report);
    Ok(report)
}

/// The one commit point: the MANIFEST names the outputs instead of the
/// inputs; then readers are switched over.
fn switch(
    dir: &Path,
    manifest: &Mutex<Manifest>,
    version: &RwLock<Arc<Version>>,
    input_ids: &[u64],
    outputs: Vec<Arc<Segment>>,
) -> Result<()> {
    let mut manifest = manifest.lock();
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
    next.store(dir)?;
    *manifest = next;
    let mut version = version.write();
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

/// The line the last merge in `dir` left, if any.
pub fn read_last_merge(dir: &Path) -> Option<String> {
    let line = fs::read_to_string(dir.join(format::LAST_MERGE_FILE)).ok()?;
    Some(line.trim().to_string())
}
