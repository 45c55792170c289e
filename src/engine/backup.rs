//! Online backup: a copy of the store as it was at one moment, made while
//! writers go on. The active segment is sealed (a roll: writers wait only
//! for that), and the closed segments of that moment are copied, with
//! their hints, into the destination, which gets a MANIFEST of its own.
//! Closed segments never change, so a later backup into the same
//! destination copies only the segments it does not have.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::error::{Error, Result};
use super::format::{self, FileKind};
use super::hint;
use super::lock::DirLock;
use super::manifest::{Manifest, sync_dir};
use super::progress::Task;
use super::segment::Segment;
use super::store::Store;

/// Bytes copied per read.
const CHUNK: usize = 1 << 20;

/// What a backup did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// Segments the backup holds, and their bytes.
    pub segments: usize,
    pub bytes: u64,
    /// Segment and hint files copied this time (the rest were there), and
    /// their bytes.
    pub files_copied: usize,
    pub bytes_copied: u64,
    /// Files of earlier backups that this one no longer needs.
    pub files_removed: usize,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} segments, {} bytes; copied {} files, {} bytes; removed {} files no longer needed",
            self.segments, self.bytes, self.files_copied, self.bytes_copied, self.files_removed
        )
    }
}

impl Store {
    /// Copies the store as it is now into `dest` (created if missing),
    /// which then opens as a data directory of its own.
    pub fn backup(&self, dest: &Path) -> Result<BackupReport> {
        let io_err = |what: String| move |e: io::Error| Error::io(what, e);
        fs::create_dir_all(dest).map_err(io_err(format!("creating {}", dest.display())))?;
        let _lock = DirLock::acquire(dest)?;
        // No merge may remove the segments being copied meanwhile.
        let _merge = self.inner.merge_lock.lock();
        {
            let mut w = self.inner.writer.lock();
            if !w.is_empty() {
                self.inner.roll(&mut w)?;
            }
        }
        let version = self.inner.version();
        // Oldest first, in the MANIFEST's order: not by id, since a merge's
        // outputs take newer ids than segments whose records are newer.
        let closed: Vec<&Segment> = version.closed.iter().rev().map(|s| &**s).collect();
        let next_id = self.inner.manifest.lock().next_id;
        let mut report = BackupReport {
            segments: closed.len(),
            bytes: closed.iter().map(|s| s.file_len()).sum(),
            ..BackupReport::default()
        };
        let progress = Task::begin("backing up", report.bytes);
        for seg in &closed {
            let name = format::segment_file_name(seg.id);
            if copy_segment(seg, &dest.join(&name))? {
                report.files_copied += 1;
                report.bytes_copied += seg.file_len();
            }
            let hint = format::hint_file_name(seg.id);
            if let Some(len) = copy_hint(seg, &self.dir().join(&hint), &dest.join(&hint))? {
                report.files_copied += 1;
                report.bytes_copied += len;
            }
            progress.advance(seg.file_len());
        }
        let manifest = Manifest {
            segments: closed.iter().map(|s| s.id).collect(),
            next_id,
        };
        sync_dir(dest).map_err(io_err(format!("syncing {}", dest.display())))?;
        manifest.store(dest)?;
        report.files_removed = remove_unneeded(dest, &manifest)?;
        Ok(report)
    }
}

/// Copies `seg` to `to` unless a file of its length is already there (a
/// closed segment never changes); says whether it copied. Written under a
/// temporary name, synced, then renamed.
fn copy_segment(seg: &Segment, to: &Path) -> Result<bool> {
    let len = seg.file_len();
    if fs::metadata(to).is_ok_and(|m| m.len() == len) {
        return Ok(false);
    }
    let tmp = format::temp_path(to);
    let copy = || -> io::Result<()> {
        let mut out = File::create(&tmp)?;
        let mut buf = vec![0; CHUNK];
        let mut at = 0;
        while at < len {
            let n = CHUNK.min((len - at) as usize);
            seg.file.read_exact_at(&mut buf[..n], at)?;
            out.write_all(&buf[..n])?;
            at += n as u64;
        }
        out.sync_all()?;
        fs::rename(&tmp, to)
    };
    copy().map_err(|e| {
        Error::io(
            format!("copying {} to {}", seg.path.display(), to.display()),
            e,
        )
    })?;
    Ok(true)
}

/// Gives the copy of `seg` its hint if it has none: a copy of the source's
/// hint `from`, or, where that is not written yet (hints are written after
/// a roll), one written from the segment's index. The bytes written, if
/// any.
fn copy_hint(seg: &Segment, from: &Path, to: &Path) -> Result<Option<u64>> {
    if to.exists() {
        return Ok(None);
    }
    let bytes = match fs::read(from) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = to.parent().unwrap_or(Path::new("."));
            hint::write(dir, seg.id, seg.file_len(), seg.max_seq(), &seg.index())?;
            let len = fs::metadata(to).map_or(0, |m| m.len());
            return Ok(Some(len));
        }
        Err(e) => return Err(Error::io(format!("reading {}", from.display()), e)),
    };
    let tmp = format::temp_path(to);
    let copy = || -> io::Result<()> {
        let mut out = File::create(&tmp)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        fs::rename(&tmp, to)
    };
    copy().map_err(|e| Error::io(format!("copying {} to {}", from.display(), to.display()), e))?;
    Ok(Some(bytes.len() as u64))
}

/// Removes the segments and hints of `dest` that `manifest` does not name
/// (merged away in the source since an earlier backup).
fn remove_unneeded(dest: &Path, manifest: &Manifest) -> Result<usize> {
    let entries =
        fs::read_dir(dest).map_err(|e| Error::io(format!("listing {}", dest.display()), e))?;
    let mut removed = 0;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let FileKind::Segment(id) | FileKind::Hint(id) = format::parse_file_name(&name)
            && !manifest.segments.contains(&id)
        {
            fs::remove_file(entry.path())
                .map_err(|e| Error::io(format!("removing {}", entry.path().display()), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}
