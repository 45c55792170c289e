//! `caskfs check --repair`: makes a damaged data directory serve again.
//!
//! - A hint that is missing, unusable or does not match its segment is
//!   rewritten from a scan of the segment.
//! - A segment with damaged byte ranges is rewritten without them: the
//!   damaged bytes are copied, unchanged, into `lost+found/` in the data
//!   directory (never deleted by caskfs: the engine leaves that name alone),
//!   the good records are copied verbatim into a new file under a temporary
//!   name, which is synced and renamed over the segment, and its hint is
//!   rewritten. A key whose latest record was in a damaged range gets a
//!   tombstone in its place, so that it reads as absent instead of coming
//!   back with an older value (or coming back to life if the damaged record
//!   was its deletion); each such key is reported by name.
//!
//! A crash during a repair leaves the old segment or the new one: the
//! damaged bytes are saved first, the old hint is removed before the
//! segment is replaced, and a `.tmp` file is removed at the next open.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::{Error, Result, show_key};
use super::format::{self, SEGMENT_HEADER_LEN};
use super::hint;
use super::index::{Entry, Index, hash_key};
use super::lock::DirLock;
use super::manifest::{Manifest, sync_dir};
use super::meta::now_ns;
use super::progress::Task;
use super::record::{self, Header, Layout};
use super::scan::{self, Damage};

/// The directory, inside the data directory, where damaged bytes are kept.
pub const LOST_AND_FOUND: &str = "lost+found";

/// What a repair did.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Hints rewritten, with why.
    pub hints_rewritten: Vec<String>,
    /// Damaged ranges moved aside: (segment file, start, end, saved as).
    pub moved: Vec<(String, u64, u64, PathBuf)>,
    /// Keys whose latest value was in a damaged range: they now read as
    /// absent.
    pub lost_values: Vec<Vec<u8>>,
    /// Keys whose latest record (a deletion) was damaged: kept deleted.
    pub kept_deleted: Vec<Vec<u8>>,
    /// Damaged ranges in which no key could be named (no usable hint and
    /// no readable record header).
    pub unnamed: Vec<String>,
    /// What could not be repaired.
    pub unrepaired: Vec<String>,
}

impl RepairReport {
    pub fn changed_anything(&self) -> bool {
        !self.hints_rewritten.is_empty() || !self.moved.is_empty()
    }
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for h in &self.hints_rewritten {
            writeln!(f, "repaired: {h}")?;
        }
        for (seg, start, end, to) in &self.moved {
            writeln!(
                f,
                "moved aside: {seg} bytes {start}..{end} ({} bytes) -> {}",
                end - start,
                to.display()
            )?;
        }
        for k in self.lost_values.iter().map(|k| show_key(k)) {
            writeln!(
                f,
                "LOST: key \"{k}\": its latest value was in the damaged bytes; it now reads as absent"
            )?;
        }
        for k in self.kept_deleted.iter().map(|k| show_key(k)) {
            writeln!(
                f,
                "key \"{k}\": its deletion was in the damaged bytes; it stays deleted"
            )?;
        }
        for u in &self.unnamed {
            writeln!(f, "LOST: {u}")?;
        }
        for u in &self.unrepaired {
            writeln!(f, "NOT REPAIRED: {u}")?;
        }
        write!(
            f,
            "repair: {} hints rewritten, {} damaged ranges moved aside, {} keys lost their latest value",
            self.hints_rewritten.len(),
            self.moved.len(),
            self.lost_values.len()
        )
    }
}

/// One segment's bytes, as found.
struct Loaded {
    id: u64,
    path: PathBuf,
    map: Option<Mmap>,
}

impl Loaded {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

fn load(dir: &Path, id: u64) -> Result<Loaded> {
    let path = format::segment_path(dir, id);
    let file = File::open(&path)
        .map_err(|e| Error::io(format!("opening segment {}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len();
    let map = if len == 0 {
        None
    } else {
        // SAFETY: the directory lock keeps every caskfs writer out, and a
        // repair never writes this file (it writes a new one and renames).
        Some(
            unsafe { Mmap::map(&file) }
                .map_err(|e| Error::io(format!("mapping {}", path.display()), e))?,
        )
    };
    Ok(Loaded { id, path, map })
}

/// Scans a segment's bytes into an index of each key's latest record.
fn scan_index(data: &[u8], layout: Layout, last: bool) -> (Index, scan::ScanReport) {
    let mut index = Index::default();
    let report = scan::scan(data, layout, last, |s| {
        index.insert(hash_key(s.key), s.key, s.entry())
    });
    (index, report)
}

/// Repairs the data directory `dir`, which must not be in use.
pub fn repair(dir: &Path) -> Result<RepairReport> {
    let _lock = DirLock::acquire(dir)?;
    let manifest = Manifest::load(dir)?.ok_or_else(|| Error::NotADataDir {
        dir: dir.to_path_buf(),
        detail: "no MANIFEST".into(),
    })?;
    let mut report = RepairReport::default();
    let last = manifest.segments.len() - 1;
    let total = manifest.segment_bytes(dir);
    let progress = Task::begin("repairing", total);
    // Newest first, so that "a newer segment has this key" is known.
    let mut newer: Vec<Index> = Vec::new();
    for (i, &id) in manifest.segments.iter().enumerate().rev() {
        let is_last = i == last;
        progress.advance(fs::metadata(format::segment_path(dir, id)).map_or(0, |m| m.len()));
        let seg = match load(dir, id) {
            Ok(s) => s,
            Err(e) => {
                report.unrepaired.push(e.to_string());
                continue;
            }
        };
        let data = seg.bytes();
        let name = format::segment_file_name(id);
        let layout = match format::check_segment_header(data, id) {
            Ok(layout) => layout,
            Err(why) => {
                report.unrepaired.push(format!(
                    "{name}: {why}; left as it is (it may belong to another program or version)"
                ));
                continue;
            }
        };
        let (scanned, scan) = scan_index(data, layout, is_last);
        let mut damage: Vec<Damage> = scan.damage.clone();
        let hint = if is_last {
            None
        } else {
            hint::load(dir, id).ok().flatten()
        };
        if let Some(t) = &scan.bad_tail {
            // A closed segment cut short: its hint may say how long it was.
            let end = hint
                .as_ref()
                .map_or(t.end, |h| h.segment_len.max(t.end))
                .max(t.start);
            damage.push(Damage {
                start: t.start,
                end,
                detail: t.detail.clone(),
            });
        } else if let Some(h) = hint.as_ref().filter(|h| h.segment_len > data.len() as u64) {
            damage.push(Damage {
                start: data.len() as u64,
                end: h.segment_len,
                detail: "the file is shorter than its hint says".into(),
            });
        }
        if damage.is_empty() {
            if !is_last {
                fix_hint(dir, id, data, &scanned, scan.max_seq, &mut report)?;
            }
            newer.push(scanned);
            continue;
        }
        let rebuilt = rewrite(
            dir,
            &seg,
            layout,
            &damage,
            hint.as_ref().map(|h| &h.index),
            &scanned,
            &newer,
            is_last,
            scan.bad_tail.as_ref().map(|t| t.start),
            &mut report,
        )?;
        newer.push(rebuilt);
    }
    Ok(report)
}

/// Rewrites the hint of a clean closed segment if it is missing, unusable
/// or does not match.
fn fix_hint(
    dir: &Path,
    id: u64,
    data: &[u8],
    scanned: &Index,
    max_seq: u64,
    report: &mut RepairReport,
) -> Result<()> {
    let name = format::hint_file_name(id);
    let why = match hint::load(dir, id) {
        Ok(Some(h)) if h.segment_len != data.len() as u64 => format!(
            "{name} described {} bytes, the segment has {}",
            h.segment_len,
            data.len()
        ),
        Ok(Some(h)) if h.index.same_as(scanned) => return Ok(()),
        Ok(Some(_)) => format!("{name} did not match its segment"),
        Ok(None) => format!("{name} was missing"),
        Err(why) => format!("{name} was unusable ({why})"),
    };
    hint::write(dir, id, data.len() as u64, max_seq, scanned)?;
    report.hints_rewritten.push(format!("{why}; rewritten"));
    Ok(())
}

/// Rewrites segment `seg` without its damaged ranges, in its own layout
/// (a repair copies records, it does not upgrade them); returns the new
/// segment's index.
#[allow(clippy::too_many_arguments)]
fn rewrite(
    dir: &Path,
    seg: &Loaded,
    layout: Layout,
    damage: &[Damage],
    hint: Option<&Index>,
    scanned: &Index,
    newer: &[Index],
    is_last: bool,
    torn_tail_at: Option<u64>,
    report: &mut RepairReport,
) -> Result<Index> {
    let data = seg.bytes();
    let name = format::segment_file_name(seg.id);
    // Each key's latest record in this segment: the hint knows the keys of
    // records whose headers are unreadable now; the scan knows the rest.
    let mut latest: Vec<(Vec<u8>, Entry)> = Vec::new();
    let mut named = vec![false; damage.len()];
    let authority = hint.unwrap_or(scanned);
    for (k, e) in authority.iter() {
        latest.push((k.to_vec(), e));
    }
    if hint.is_some() {
        // Keys written after the hint? A closed segment never changes, so
        // the scan adds nothing; but a key the hint lacks is still latest.
        for (k, e) in scanned.iter() {
            if authority.get(hash_key(k), k).is_none() {
                latest.push((k.to_vec(), e));
            }
        }
    }
    // Tombstones to write in place of each damaged range.
    let mut tombstones: Vec<Vec<Vec<u8>>> = vec![Vec::new(); damage.len()];
    latest.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, e) in &latest {
        let Some(d) = damage.iter().position(|d| {
            let o = u64::from(e.offset);
            d.start <= o && o < d.end
        }) else {
            continue;
        };
        named[d] = true;
        let shadowed = newer.iter().any(|ix| ix.get(hash_key(key), key).is_some());
        if shadowed {
            continue;
        }
        tombstones[d].push(key.clone());
        if e.tombstone {
            report.kept_deleted.push(key.to_vec());
        } else {
            report.lost_values.push(key.to_vec());
        }
    }

    // 1. Save the damaged bytes, durably, before anything is replaced.
    let lf = dir.join(LOST_AND_FOUND);
    fs::create_dir_all(&lf).map_err(|e| Error::io(format!("creating {}", lf.display()), e))?;
    for (i, d) in damage.iter().enumerate() {
        let to = lf.join(format!("{name}.{}-{}.{}", d.start, d.end, now_ns()));
        let start = (d.start as usize).min(data.len());
        let end = (d.end as usize).min(data.len());
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&to)
            .map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
        f.write_all(&data[start..end])
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", to.display()), e))?;
        report.moved.push((name.clone(), d.start, d.end, to));
        let torn_tail = is_last && torn_tail_at == Some(d.start);
        // With a usable hint every key's latest record is known; without
        // one, a range that starts with a readable header is that one
        // record, whose key the scan has seen.
        let header_readable = data
            .get(start..)
            .is_some_and(|b| Header::parse(b, layout).is_ok_and(|h| !h.in_batch));
        if !named[i] && !torn_tail && hint.is_none() && !header_readable {
            report.unnamed.push(format!(
                "{name} bytes {}..{}: no readable record header and no usable hint, so the keys there are unknown ({})",
                d.start, d.end, d.detail
            ));
        }
    }
    sync_dir(&lf).map_err(|e| Error::io(format!("syncing {}", lf.display()), e))?;

    // 2. The good records, verbatim, with tombstones where damage was.
    let mut out = format::encode_segment_header(seg.id, layout).to_vec();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut order: Vec<usize> = (0..damage.len()).collect();
    order.sort_by_key(|&i| damage[i].start);
    let mut last_seq = 0u64;
    let copy_good = |out: &mut Vec<u8>, from: usize, to: usize, last_seq: &mut u64| {
        let to = to.min(data.len());
        let mut at = from;
        while at < to {
            match scan::validate(data, at, *last_seq, layout) {
                Ok(h) => {
                    let end = at + h.record_len() as usize;
                    out.extend_from_slice(&data[at..end]);
                    *last_seq = h.seq;
                    at = end;
                }
                // Zeros allocated ahead at the end of the active file.
                Err(_) => break,
            }
        }
    };
    for &i in &order {
        let d = &damage[i];
        copy_good(&mut out, pos, d.start as usize, &mut last_seq);
        for key in &tombstones[i] {
            // A key of this segment: its length fits the layout's field.
            let h = Header {
                layout,
                ..Header::tombstone(last_seq, now_ns(), false, key.len() as u16)
            };
            record::encode(&mut out, h, key, b"");
        }
        pos = (d.end as usize).max(pos);
    }
    copy_good(&mut out, pos, data.len(), &mut last_seq);

    // 3. Install: old hint out of the way first (a stale hint must never
    // describe the new file), then the new file renamed over the old.
    let hint_path = format::hint_path(dir, seg.id);
    match fs::remove_file(&hint_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", hint_path.display()), e)),
    }
    sync_dir(dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    let tmp = format::temp_path(&seg.path);
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        fs::rename(&tmp, &seg.path)?;
        sync_dir(dir)
    };
    write().map_err(|e| Error::io(format!("writing {}", seg.path.display()), e))?;

    let (index, check) = scan_index(&out, layout, is_last);
    if !check.damage.is_empty() || check.bad_tail.is_some() {
        report
            .unrepaired
            .push(format!("{name}: still damaged after the rewrite"));
    }
    if !is_last {
        hint::write(dir, seg.id, out.len() as u64, check.max_seq, &index)?;
        report.hints_rewritten.push(format!(
            "{} rewritten for the repaired segment",
            format::hint_file_name(seg.id)
        ));
    }
    Ok(index)
}
