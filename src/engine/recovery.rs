//! Opening a data directory: read the MANIFEST, drop what no manifest names
//! (temporary files, orphans of an interrupted roll or merge), load each
//! closed segment from its hint or by scanning it, and scan the active
//! segment, cutting a torn tail. Only the last segment's tail may be cut;
//! damage anywhere else is logged and left for `caskfs check`.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use log::{error, info, warn};
use memmap2::Mmap;

use super::error::{Error, Result};
use super::format::{self, FileKind, SEGMENT_HEADER_LEN};
use super::hint;
use super::manifest::{Manifest, sync_dir};
use super::options::Options;
use super::progress::Task;
use super::scan::{self, ScanReport};
use super::segment::Segment;

pub struct Recovered {
    pub manifest: Manifest,
    /// Oldest first; the last is the active segment.
    pub segments: Vec<Arc<Segment>>,
    pub active_len: u64,
    pub next_seq: u64,
}

pub fn recover(dir: &Path, opts: &Options) -> Result<Recovered> {
    let manifest = match Manifest::load(dir)? {
        Some(m) => m,
        None => return init(dir, opts),
    };
    if !opts.read_only {
        remove_strays(dir, &manifest)?;
    }
    let mut segments = Vec::with_capacity(manifest.segments.len());
    let mut max_seq = 0;
    let mut active_len = 0;
    let last = manifest.segments.len() - 1;
    let total = manifest.segment_bytes(dir);
    let progress = Task::begin("opening", total);
    for (i, &id) in manifest.segments.iter().enumerate() {
        let seg = Segment::open(dir, id, !opts.read_only && i == last)?;
        progress.advance(seg.file_len());
        if i == last {
            active_len = load_active(dir, &seg, opts)?;
        } else {
            load_closed(dir, &seg, opts)?;
            seg.freeze();
        }
        max_seq = max_seq.max(seg.max_seq());
        segments.push(Arc::new(seg));
    }
    let next_seq = max_seq.checked_add(1).ok_or_else(|| Error::NotADataDir {
        dir: dir.to_path_buf(),
        detail: "a record holds the largest sequence number; no later record could follow it"
            .into(),
    })?;
    Ok(Recovered {
        manifest,
        segments,
        active_len,
        next_seq,
    })
}

/// A directory with no MANIFEST: a new store if it holds nothing of
/// anyone's, otherwise a refusal, since it is not ours to write in.
fn init(dir: &Path, opts: &Options) -> Result<Recovered> {
    let foreign: Vec<String> = fs::read_dir(dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| format::parse_file_name(name) != FileKind::Lock)
        .collect();
    if !foreign.is_empty() {
        let mut shown = foreign[..foreign.len().min(3)].join(", ");
        if foreign.len() > 3 {
            shown.push_str(", …");
        }
        return Err(Error::NotADataDir {
            dir: dir.to_path_buf(),
            detail: format!("no MANIFEST, and it holds other files ({shown})"),
        });
    }
    if opts.read_only {
        return Err(Error::NotADataDir {
            dir: dir.to_path_buf(),
            detail: "empty, and a read-only open cannot create a store".into(),
        });
    }
    let seg = Segment::create(dir, 1)?;
    let manifest = Manifest {
        segments: vec![1],
        next_id: 2,
    };
    manifest.store(dir)?;
    info!("created a new store in {}", dir.display());
    Ok(Recovered {
        manifest,
        segments: vec![Arc::new(seg)],
        active_len: SEGMENT_HEADER_LEN as u64,
        next_seq: 1,
    })
}

fn remove_strays(dir: &Path, manifest: &Manifest) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut removed = false;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stray = match format::parse_file_name(&name) {
            FileKind::Temp => true,
            FileKind::Segment(id) | FileKind::Hint(id) => !manifest.segments.contains(&id),
            _ => false,
        };
        if stray {
            info!("removing {name}: left behind by an interrupted write, not in the MANIFEST");
            fs::remove_file(entry.path()).map_err(|e| Error::io(format!("removing {name}"), e))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    }
    Ok(())
}

fn map(seg: &Segment) -> Result<Mmap> {
    // SAFETY: nothing writes the file while it is mapped: recovery runs
    // before any append, under the directory lock.
    unsafe { Mmap::map(&seg.file) }
        .map_err(|e| Error::io(format!("mapping {}", seg.path.display()), e))
}

/// Builds a segment's index by reading all of its records.
pub fn scan_into(seg: &Segment, data: &[u8], last: bool) -> ScanReport {
    let mut index = seg.index_mut();
    let mut bulk = index.bulk_insert();
    let report = scan::scan(data, seg.layout, last, |s| bulk.insert(s.key, s.entry()));
    drop(bulk);
    // Grown by doubling as the scan went: sized to what it holds now (the
    // active segment's index keeps taking writes, and grows again if so).
    index.shrink_to_fit();
    seg.set_max_seq(report.max_seq);
    for d in &report.damage {
        error!(
            "{}: bytes {}..{} are damaged ({}); records there are lost until `caskfs check --repair`",
            seg.path.display(),
            d.start,
            d.end,
            d.detail
        );
    }
    report
}

fn load_closed(dir: &Path, seg: &Segment, opts: &Options) -> Result<()> {
    let len = seg.file_len();
    match hint::load(dir, seg.id) {
        // A closed segment cut short keeps its hint: reads of the records
        // that are gone then fail, instead of finding older values.
        Ok(Some(h)) if h.segment_len >= len => {
            if h.segment_len > len {
                error!(
                    "{} is {len} bytes, its hint says {}: the records past byte {len} are lost",
                    seg.path.display(),
                    h.segment_len
                );
            }
            *seg.index_mut() = h.index;
            seg.set_max_seq(h.max_seq);
            return Ok(());
        }
        Ok(Some(h)) => warn!(
            "hint for {} describes {} bytes of its {len}; scanning the segment",
            seg.path.display(),
            h.segment_len
        ),
        Ok(None) => info!("{}: no hint, scanning", seg.path.display()),
        Err(why) => warn!(
            "hint for {} is unusable ({why}); scanning the segment",
            seg.path.display()
        ),
    }
    let report = scan_into(seg, &map(seg)?, false);
    if let Some(tail) = &report.bad_tail {
        error!(
            "{}: bytes {}..{} of this closed segment are damaged ({}); records there are lost",
            seg.path.display(),
            tail.start,
            tail.end,
            tail.detail
        );
    }
    let clean = report.damage.is_empty() && report.bad_tail.is_none();
    if clean && !opts.read_only {
        let index = seg.index();
        if let Err(e) = hint::write(dir, seg.id, len, report.max_seq, &index) {
            warn!("{e}");
        }
    }
    Ok(())
}

/// Scans the active segment; returns the length of its whole records, after
/// cutting off a torn tail.
fn load_active(dir: &Path, seg: &Segment, opts: &Options) -> Result<u64> {
    let stale_hint = format::hint_path(dir, seg.id);
    if !opts.read_only && stale_hint.exists() {
        let _ = fs::remove_file(&stale_hint);
    }
    let report = scan_into(seg, &map(seg)?, true);
    if let Some(tail) = &report.bad_tail {
        let dropped = tail.end - tail.start;
        if opts.read_only {
            warn!(
                "{}: ignoring {dropped} bytes of torn tail at offset {} ({}); read-only, so not cut",
                seg.path.display(),
                tail.start,
                tail.detail
            );
        } else {
            warn!(
                "{}: cutting {dropped} bytes of torn tail at offset {} ({})",
                seg.path.display(),
                tail.start,
                tail.detail
            );
            seg.truncate(report.end)
                .and_then(|_| seg.file.sync_all())
                .map_err(|e| Error::io(format!("cutting the tail of {}", seg.path.display()), e))?;
        }
    }
    Ok(report.end)
}

/// Loads an index for `seg` from a fresh scan, without touching anything:
/// used by `check` to compare with the hint.
pub fn scan_segment(seg: &Segment, last: bool) -> Result<ScanReport> {
    Ok(scan_into(seg, &map(seg)?, last))
}
