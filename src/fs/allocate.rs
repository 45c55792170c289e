//! fallocate and lseek's SEEK_DATA and SEEK_HOLE: holes, which a file's
//! extent tree has wherever no entry covers a range (they read as zeros
//! and take no space).
//!
//! A log cannot set space aside ahead of the writes that will use it:
//! allocating checks that the disk has the room now (ENOSPC if not) and
//! makes the file that long, nothing more.

use super::errno::{Error, Result};
use super::fs::CaskFs;

const KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE;
const ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;

impl CaskFs {
    /// fallocate through descriptor `fh` by thread `tid`: allocate (mode
    /// 0), PUNCH_HOLE, ZERO_RANGE, each with or without KEEP_SIZE (the
    /// kernel sends PUNCH_HOLE only with it). The change is the draft's,
    /// committed at close as a write would be.
    pub fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32, tid: u32) -> Result<()> {
        self.writable()?;
        let h = self.handles.get(fh)?;
        if !h.mode.write {
            return Err(Error::BadHandle);
        }
        let end = offset.checked_add(len).ok_or(Error::TooBig)?;
        let keep = mode & KEEP_SIZE != 0;
        let live = self.lives.get(h.ino);
        let reshape = |change: &dyn Fn(&mut super::draft::Overlay)| {
            let r = h.draft.reshape(
                end,
                tid,
                self.opts.max_file_size,
                || self.pin_current(&live),
                &self.frees,
                change,
            );
            self.change(h.node, r.map(|b| ((), b)))
        };
        match mode & !KEEP_SIZE {
            0 => {
                self.store.kv.room(len)?;
                if keep {
                    return Ok(());
                }
                reshape(&|o| o.grow(end))
            }
            PUNCH_HOLE | ZERO_RANGE => reshape(&|o| o.zero(offset, end, keep)),
            _ => Err(Error::NotSupported(
                "that fallocate mode (COLLAPSE_RANGE, INSERT_RANGE, UNSHARE_RANGE)",
            )),
        }
    }

    /// lseek's SEEK_DATA and SEEK_HOLE from `offset`, through `fh` (as
    /// the descriptor sees the file: its own writes and holes too). Past
    /// the end: ENXIO; the end counts as a hole.
    pub fn seek_data_or_hole(&self, fh: u64, offset: u64, whence: i32) -> Result<u64> {
        let h = self.handles.get(fh)?;
        let live = self.lives.get(h.ino);
        let (size, data) = h
            .draft
            .data_ranges(&self.store, || self.pin_current(&live))?;
        if offset >= size {
            return Err(Error::NoSuchOffset);
        }
        match whence {
            libc::SEEK_DATA => data
                .iter()
                .find(|r| r.1 > offset)
                .map(|r| r.0.max(offset))
                .ok_or(Error::NoSuchOffset),
            libc::SEEK_HOLE => Ok(data
                .iter()
                .find(|r| r.0 <= offset && offset < r.1)
                .map_or(offset, |r| r.1)
                .min(size)),
            _ => Err(Error::InvalidArgument("lseek whence")),
        }
    }
}
