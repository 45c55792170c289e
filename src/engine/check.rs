//! `check`: reads every record of every segment and every hint, changing
//! nothing, and says what is damaged.

use std::fmt;
use std::fs;
use std::path::Path;

use super::error::{Error, Result};
use super::format::{self, FileKind};
use super::hint;
use super::lock::DirLock;
use super::manifest::Manifest;
use super::progress::Task;
use super::recovery::scan_segment;
use super::segment::Segment;
use super::store::Store;

#[derive(Debug, Default)]
pub struct CheckReport {
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    pub hints_ok: u64,
    /// Damage: the store does not hold everything it once did.
    pub problems: Vec<String>,
    /// Worth knowing, repaired by the next open: a torn tail on the active
    /// segment, a missing hint, files left by an interrupted write.
    pub notes: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} segments, {} records, {} bytes, {} hints valid",
            self.segments, self.records, self.bytes, self.hints_ok
        )?;
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        for p in &self.problems {
            writeln!(f, "DAMAGE: {p}")?;
        }
        if self.is_clean() {
            write!(f, "ok: no damage found")
        } else {
            write!(f, "{} problems found", self.problems.len())
        }
    }
}

pub fn check(dir: &Path) -> Result<CheckReport> {
    let _lock = DirLock::acquire(dir)?;
    let manifest = Manifest::load(dir)?.ok_or_else(|| Error::NotADataDir {
        dir: dir.to_path_buf(),
        detail: "no MANIFEST".into(),
    })?;
    let mut report = CheckReport::default();
    note_strays(dir, &manifest, &mut report)?;
    let last = manifest.segments.len() - 1;
    let total = manifest.segment_bytes(dir);
    let progress = Task::begin("checking", total);
    for (i, &id) in manifest.segments.iter().enumerate() {
        match Segment::open(dir, id, false) {
            Ok(seg) => {
                check_segment(dir, &seg, i == last, &mut report)?;
                progress.advance(seg.file_len());
            }
            Err(e) => {
                report.segments += 1;
                report.problems.push(e.to_string());
            }
        }
    }
    Ok(report)
}

/// Checks one segment's records and, for a closed one, its hint; the
/// active segment (`last`) may end in a torn tail.
fn check_segment(dir: &Path, seg: &Segment, last: bool, report: &mut CheckReport) -> Result<()> {
    report.segments += 1;
    let len = seg.file_len();
    report.bytes += len;
    let scan = scan_segment(seg, last)?;
    report.records += scan.records;
    let name = seg.path.display();
    for d in &scan.damage {
        report.problems.push(format!(
            "{name}: bytes {}..{} damaged ({})",
            d.start, d.end, d.detail
        ));
    }
    if let Some(t) = &scan.bad_tail {
        let msg = format!(
            "{name}: {} bytes at offset {} are not a whole record ({})",
            t.end - t.start,
            t.start,
            t.detail
        );
        if last {
            report
                .notes
                .push(format!("{msg}; a torn tail, cut at the next open"));
        } else {
            report.problems.push(msg);
        }
    }
    if last {
        return Ok(());
    }
    match hint::load(dir, seg.id) {
        Ok(Some(h)) if h.segment_len != len => report.problems.push(format!(
            "{name} is {len} bytes, its hint describes {}",
            h.segment_len
        )),
        Ok(Some(h)) if h.index.same_as(&seg.index()) => report.hints_ok += 1,
        Ok(Some(_)) => report
            .problems
            .push(format!("hint for {name} does not match the segment")),
        Ok(None) => report.notes.push(format!(
            "{name} has no hint; it is rebuilt at the next open"
        )),
        Err(why) => report
            .problems
            .push(format!("hint for {name} is unusable: {why}")),
    }
    Ok(())
}

impl Store {
    /// `check` of this open store, changing nothing, while it serves:
    /// every closed segment and its hint (no merge runs meanwhile), and the
    /// records of the active one written so far.
    pub fn check_live(&self) -> Result<CheckReport> {
        let _merge = self.inner.merge_lock.lock();
        let version = self.inner.version();
        let mut report = CheckReport::default();
        let mut closed: Vec<&Segment> = version.closed.iter().map(|s| &**s).collect();
        closed.sort_by_key(|s| s.id);
        for seg in closed {
            check_segment(self.dir(), seg, false, &mut report)?;
        }
        check_segment(self.dir(), &version.active, true, &mut report)?;
        Ok(report)
    }
}

fn note_strays(dir: &Path, manifest: &Manifest, report: &mut CheckReport) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        match format::parse_file_name(&name) {
            FileKind::Temp => report
                .notes
                .push(format!("{name}: temporary file, removed at the next open")),
            FileKind::Segment(id) | FileKind::Hint(id) if !manifest.segments.contains(&id) => {
                report.notes.push(format!(
                    "{name}: not in the MANIFEST, removed at the next open"
                ))
            }
            FileKind::Other => report
                .notes
                .push(format!("{name}: not a caskfs file, left alone")),
            _ => {}
        }
    }
    Ok(())
}
