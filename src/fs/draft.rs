//! A draft: what the descriptors of one file see before they commit. All
//! the descriptors one process has open for writing on a file share one
//! draft, so within that process the file behaves as on any filesystem
//! (every descriptor, `fstat` and `SEEK_END` see the same bytes and
//! length); other processes see only committed versions. A read-only
//! descriptor has a draft of its own that never changes: the version it
//! pinned at open.
//!
//! A writer's draft is the version it started from (its base, loaded when
//! a write or truncate first needs it) and its changes over it: a new
//! length, and the bytes written. Those gather in memory up to
//! `WRITE_BEHIND`; past that they go to the store as extents at once,
//! which nothing reaches until the commit, so memory stays bounded and a
//! large file is written once. The commit (`commit.rs`) makes the changes
//! a new version, whole: readers see the old version or the new one.

use std::collections::BTreeMap;
use std::io;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::errno::{Error, Result};
use super::live::{Frees, Pin};
use super::process::Opener;
use super::store::{Store, merge_ranges};
use crate::backend::Batch;
use crate::schema::tree::Extent;
use crate::schema::{extent, keys};

/// Bytes a draft holds in memory before it writes them to the store.
pub const WRITE_BEHIND: usize = 1 << 20;

pub struct Draft {
    /// The file.
    pub ino: u64,
    /// Who shares it: the process that opened it for writing.
    pub opener: Opener,
    /// Held by a commit from taking the changes until the new version is
    /// current, and by every use of the draft that may load the committed
    /// version: one that came in between would load the version before
    /// the commit, and a write on top of it would lose the commit's.
    commit: Mutex<()>,
    /// Its last handle was released: no new handle may share it.
    closing: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
}

struct State {
    body: Body,
    /// When the draft last changed (its mtime while uncommitted).
    changed_at: SystemTime,
    /// When it was last changed in any way, a time set with `set_mtime`
    /// too: its ctime.
    touched_at: SystemTime,
    /// Holds changes not yet committed.
    dirty: bool,
    /// Some of those changes are writes or truncates, not only the empty
    /// start of O_TRUNC or a create.
    written: bool,
    /// Who made those changes: the file tables (lock owners) that wrote,
    /// the threads that truncated or copied into it (the kernel names no
    /// file table then),
    /// and whether a page written back from a mapping (which names
    /// neither) was among them.
    writers: Vec<u64>,
    truncaters: Vec<u32>,
    anonymous: bool,
    /// The file tables whose flushes found only the empty start.
    empty_flushers: Vec<u64>,
    /// Another process committed the file after such a flush: that commit
    /// is newer than this draft's close, so the release does not replace
    /// it with the empty start.
    superseded: bool,
    /// A write failed (EFBIG, ENOSPC): the draft is incomplete and must
    /// never be committed; flush reports this errno.
    poisoned: Option<i32>,
}

enum Body {
    /// No change: the version read (a reader's pin; a writer's base once
    /// loaded, `None` before).
    Committed(Option<Pin>),
    Changed(Overlay),
}

/// Changes over a base version.
pub struct Overlay {
    /// The file, which its extents name as their owner.
    ino: u64,
    /// What the draft started from: `None` for an empty start (O_TRUNC, a
    /// create).
    pub base: Option<Pin>,
    /// The base's bytes show only below this (a truncation cut them).
    pub base_end: u64,
    /// Ranges below `base_end` where the base shows zeros instead (holes
    /// punched, or copied from a source's holes): sorted and apart.
    pub zeroed: Vec<(u64, u64)>,
    pub size: u64,
    /// Bytes written to the store already: entries sorted and apart,
    /// newer than the base.
    pub behind: Vec<Extent>,
    /// Bytes in memory: runs by offset, apart, newer than everything.
    pub mem: BTreeMap<u64, Vec<u8>>,
    mem_bytes: usize,
    /// Extents this draft wrote: deleted unless a commit makes them
    /// reachable.
    pub written: Vec<u64>,
    /// Extents of other files this draft reaches through `share`: never
    /// its to delete.
    pub shared: Vec<u64>,
    frees: Frees,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if !self.written.is_empty() {
            let keys = self.written.drain(..).map(|id| keys::extent(id).to_vec());
            self.frees.lock().extend(keys);
        }
    }
}

impl Draft {
    /// The extents written behind and not committed yet, and those of
    /// other files it reaches.
    pub fn written(&self) -> Vec<u64> {
        match &self.state.lock().body {
            Body::Changed(o) => o.written.iter().chain(&o.shared).copied().collect(),
            Body::Committed(_) => Vec::new(),
        }
    }
}

impl Overlay {
    pub fn new(ino: u64, base: Option<Pin>, frees: Frees) -> Overlay {
        let size = base.as_ref().map_or(0, |b| b.inode().size);
        Overlay {
            ino,
            base,
            base_end: size,
            zeroed: Vec::new(),
            size,
            behind: Vec::new(),
            mem: BTreeMap::new(),
            mem_bytes: 0,
            written: Vec::new(),
            shared: Vec::new(),
            frees,
        }
    }

    /// The bytes `[off, off + len)` as the draft has them, clipped to its
    /// length.
    pub fn read(&self, store: &Store, off: u64, len: usize) -> Result<Vec<u8>> {
        let end = self.size.min(off.saturating_add(len as u64));
        if off >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0; (end - off) as usize];
        if let Some(base) = &self.base
            && off < self.base_end
        {
            let upto = end.min(self.base_end);
            store.read(base.inode(), off, (upto - off) as usize, |b| {
                buf[..b.len()].copy_from_slice(b);
            })?;
            for &(a, b) in &self.zeroed {
                let (a, b) = (a.max(off), b.min(upto));
                if a < b {
                    buf[(a - off) as usize..(b - off) as usize].fill(0);
                }
            }
        }
        for e in self.behind.iter().filter_map(|e| e.clip(off, end)) {
            let v = store.kv.get(&keys::extent(e.id))?.ok_or_else(|| {
                crate::backend::Error::Corrupt(format!("a draft's extent {} is missing", e.id))
            })?;
            let bytes = v.bytes(extent::HEADER_LEN + e.at, e.len as usize)?;
            let at = (e.off - off) as usize;
            buf[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        for (&start, run) in self.mem.range(..end) {
            let run_end = start + run.len() as u64;
            if run_end <= off {
                continue;
            }
            let (a, b) = (start.max(off), run_end.min(end));
            buf[(a - off) as usize..(b - off) as usize]
                .copy_from_slice(&run[(a - start) as usize..(b - start) as usize]);
        }
        Ok(buf)
    }

    pub fn write(&mut self, store: &Store, off: u64, data: &[u8]) -> Result<()> {
        let end = off + data.len() as u64;
        self.cut_mem(off, end);
        self.cut_behind(off, end);
        self.mem_bytes += data.len();
        // A sequential writer's pieces grow one run, copied once.
        match self.mem.range_mut(..off).next_back() {
            Some((start, run)) if *start + run.len() as u64 == off => run.extend_from_slice(data),
            _ => {
                self.mem.insert(off, data.to_vec());
            }
        }
        self.size = self.size.max(end);
        if self.mem_bytes > WRITE_BEHIND {
            self.write_behind(store, false)?;
        }
        Ok(())
    }

    /// Makes `[off, off + len)` the bytes `pieces` reach (extents of
    /// another file, at offsets within that range), zeros between them.
    pub fn share(&mut self, off: u64, len: u64, pieces: Vec<Extent>) {
        let end = off + len;
        self.cut_mem(off, end);
        self.cut_behind(off, end);
        // The source's holes are holes here too, over the base.
        self.hide_base(off, end);
        self.shared.extend(pieces.iter().map(|p| p.id));
        self.behind.extend(pieces);
        self.behind.sort_unstable_by_key(|e| e.off);
        self.size = self.size.max(end);
    }

    /// Makes `[a, b)` a hole: zeros that take no space (fallocate's
    /// PUNCH_HOLE and ZERO_RANGE). The length grows to `b` unless `keep`,
    /// which also leaves what lies past the end alone.
    pub fn zero(&mut self, a: u64, b: u64, keep: bool) {
        let b = if keep { b.min(self.size) } else { b };
        if a < b {
            self.cut_mem(a, b);
            self.cut_behind(a, b);
            self.hide_base(a, b);
        }
        if !keep {
            self.size = self.size.max(b);
        }
    }

    /// Zeros instead of the base's bytes over `[a, b)`.
    fn hide_base(&mut self, a: u64, b: u64) {
        let b = b.min(self.base_end);
        if a >= b {
            return;
        }
        self.zeroed.push((a, b));
        self.zeroed = merge_ranges(std::mem::take(&mut self.zeroed));
    }

    /// Where the draft holds bytes (the rest are holes): the base's below
    /// its end and outside what was zeroed, and everything written.
    pub fn data_ranges(&self, store: &Store) -> Result<Vec<(u64, u64)>> {
        let mut ranges = Vec::new();
        if let Some(base) = &self.base {
            for (a, b) in store.data_ranges(base.inode(), 0, self.base_end)? {
                // Minus the zeroed ranges, which are sorted and apart.
                let mut at = a;
                for &(za, zb) in &self.zeroed {
                    if zb <= at || za >= b {
                        continue;
                    }
                    if za > at {
                        ranges.push((at, za));
                    }
                    at = at.max(zb);
                }
                if at < b {
                    ranges.push((at, b));
                }
            }
        }
        ranges.extend(self.behind.iter().map(|e| (e.off, e.end())));
        ranges.extend(self.mem.iter().map(|(&a, r)| (a, a + r.len() as u64)));
        ranges.retain_mut(|r| {
            r.1 = r.1.min(self.size);
            r.0 < r.1
        });
        Ok(merge_ranges(ranges))
    }

    /// The file grows to `len` (fallocate without KEEP_SIZE): zeros.
    pub fn grow(&mut self, len: u64) {
        self.size = self.size.max(len);
    }

    pub fn truncate(&mut self, len: u64) {
        self.cut_mem(len, u64::MAX);
        self.cut_behind(len, u64::MAX);
        self.base_end = self.base_end.min(len);
        self.zeroed.retain_mut(|r| {
            r.1 = r.1.min(len);
            r.0 < r.1
        });
        self.size = len;
    }

    /// Removes `[a, b)` from the runs in memory.
    fn cut_mem(&mut self, a: u64, b: u64) {
        let hit: Vec<u64> = self
            .mem
            .range(..b)
            .filter(|(s, r)| **s + r.len() as u64 > a)
            .map(|(s, _)| *s)
            .collect();
        for start in hit {
            let Some(run) = self.mem.remove(&start) else {
                continue;
            };
            self.mem_bytes -= run.len();
            let run_end = start + run.len() as u64;
            if start < a {
                let head = run[..(a - start) as usize].to_vec();
                self.mem_bytes += head.len();
                self.mem.insert(start, head);
            }
            if run_end > b {
                let tail = run[(b - start) as usize..].to_vec();
                self.mem_bytes += tail.len();
                self.mem.insert(b, tail);
            }
        }
    }

    /// Removes `[a, b)` from the entries written behind.
    fn cut_behind(&mut self, a: u64, b: u64) {
        if self.behind.iter().all(|e| e.clip(a, b).is_none()) {
            return;
        }
        let old = std::mem::take(&mut self.behind);
        for e in old {
            match e.clip(a, b) {
                None => self.behind.push(e),
                Some(_) => {
                    self.behind.extend(e.clip(0, a));
                    self.behind.extend(e.clip(b, u64::MAX));
                }
            }
        }
    }

    /// Writes the runs in memory to the store as extents: `all` of them
    /// (a commit), or else the whole extents that runs next to each other
    /// make (a sequential writer's pieces), keeping the rest in memory
    /// unless it is much.
    pub fn write_behind(&mut self, store: &Store, all: bool) -> Result<()> {
        let room = store.kv.max_value_len().saturating_sub(extent::HEADER_LEN);
        let most = WRITE_BEHIND.min(room as usize).max(1);
        let runs = std::mem::take(&mut self.mem);
        let rest: usize = runs.values().map(|r| r.len() % most).sum();
        let all = all || rest > WRITE_BEHIND / 2;
        let mut new = Vec::new();
        let mut failed = None;
        for (start, run) in runs {
            let whole = match all {
                true => run.len(),
                false => run.len() / most * most,
            };
            let mut done = 0;
            while done < whole && failed.is_none() {
                let piece = &run[done..whole.min(done + most)];
                match self.store_extent(store, start + done as u64, piece) {
                    Ok(e) => new.push(e),
                    Err(e) => failed = Some(e),
                }
                if failed.is_none() {
                    done += piece.len();
                }
            }
            // What was not written stays, also after a failure (a commit
            // that found no room may be retried).
            if done < run.len() {
                self.mem.insert(start + done as u64, run[done..].to_vec());
            }
        }
        self.mem_bytes = self.mem.values().map(Vec::len).sum();
        // The runs were apart from every entry behind: merge in order.
        self.behind.extend(new);
        self.behind.sort_unstable_by_key(|e| e.off);
        failed.map_or(Ok(()), Err)
    }

    /// `bytes` at `off` of the file as an extent record of its own, as
    /// large as a value may be.
    fn store_extent(&mut self, store: &Store, off: u64, bytes: &[u8]) -> Result<Extent> {
        let mut value = Vec::with_capacity(extent::HEADER_LEN as usize + bytes.len());
        value.extend_from_slice(&extent::header(self.ino, off));
        value.extend_from_slice(bytes);
        store.kv.room(value.len() as u64)?;
        let id = store.new_block()?;
        let mut b = Batch::default();
        b.put(keys::extent(id).to_vec(), value);
        store.kv.write(b)?;
        self.written.push(id);
        Ok(Extent {
            off,
            len: bytes.len() as u64,
            id,
            at: 0,
        })
    }
}

impl Draft {
    fn with(ino: u64, opener: Opener, body: Body, dirty: bool) -> Draft {
        Draft {
            ino,
            opener,
            commit: Mutex::new(()),
            closing: Default::default(),
            state: Mutex::new(State {
                body,
                changed_at: SystemTime::now(),
                touched_at: SystemTime::now(),
                dirty,
                written: false,
                writers: Vec::new(),
                truncaters: Vec::new(),
                anonymous: false,
                empty_flushers: Vec::new(),
                superseded: false,
                poisoned: None,
            }),
        }
    }

    /// A reader's draft: `pin`, for as long as it is open (but for growth,
    /// see `read`).
    pub fn reader(ino: u64, pin: Option<Pin>) -> Draft {
        Draft::with(ino, Opener::new(0), Body::Committed(pin), false)
    }

    /// A writer's draft on the committed version, loaded when needed.
    pub fn writer(ino: u64, opener: Opener) -> Draft {
        Draft::with(ino, opener, Body::Committed(None), false)
    }

    /// The length, mtime and ctime this draft shows, when they differ
    /// from the committed version's.
    /// A commit under way ends first: until its version is current, the
    /// committed one is older than what this draft showed.
    pub fn local(&self) -> Option<(u64, SystemTime, SystemTime)> {
        let _commit = self.commit.lock();
        let st = self.state.lock();
        match &st.body {
            Body::Committed(_) => None,
            Body::Changed(o) => Some((o.size, st.changed_at, st.touched_at)),
        }
    }

    /// The version a draft that does not write reads, if pinned.
    pub fn pinned(&self) -> Option<Pin> {
        match &self.state.lock().body {
            Body::Committed(Some(p)) => Some(p.clone()),
            _ => None,
        }
    }

    /// Lets a writer's draft without changes read the committed version
    /// again, loaded at its next use: another host may have committed
    /// since it was loaded (a lock was just granted, and guards what the
    /// last holder wrote).
    pub fn reload_if_unchanged(&self) {
        let _commit = self.commit.lock();
        let mut st = self.state.lock();
        if !st.dirty && matches!(st.body, Body::Committed(Some(_))) {
            st.body = Body::Committed(None);
        }
    }

    /// Moves a reader's pin on to `newer` (the file grew from it).
    pub fn follow(&self, newer: Pin) {
        if let Body::Committed(pin) = &mut self.state.lock().body {
            *pin = Some(newer);
        }
    }

    /// Sets the time the draft shows and commits as its mtime (`touch`,
    /// `futimens`, `cp -p` before close), if it has changes still to
    /// commit; says whether it did. A draft its close already committed
    /// commits nothing more, even while its RELEASE is on the way, so a
    /// time set then (rsync's `utime` after close) goes to the record.
    pub fn set_mtime(&self, mtime: SystemTime) -> bool {
        let mut st = self.state.lock();
        if matches!(st.body, Body::Committed(_)) || !st.dirty {
            return false;
        }
        st.changed_at = mtime;
        st.touched_at = SystemTime::now();
        true
    }

    /// O_TRUNC or a create: start from an empty file, to be committed even
    /// if nothing is written.
    pub fn start_empty(&self, frees: Frees) {
        let mut st = self.state.lock();
        st.body = Body::Changed(Overlay::new(self.ino, None, frees));
        st.changed_at = SystemTime::now();
        st.touched_at = st.changed_at;
        st.dirty = true;
        st.empty_flushers.clear();
        st.superseded = false;
        st.poisoned = None;
    }

    /// The bytes at `offset` as this draft has them, handed to `give`:
    /// a pinned version's straight from where they lie. `load` gives the
    /// committed version when the draft has none yet.
    pub fn read<R>(
        &self,
        store: &Store,
        offset: u64,
        size: usize,
        load: impl FnOnce() -> Result<Option<Pin>>,
        give: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let _commit = self.commit.lock();
        let mut st = self.state.lock();
        match &mut st.body {
            Body::Changed(o) => {
                let bytes = o.read(store, offset, size)?;
                drop(st);
                Ok(give(&bytes))
            }
            Body::Committed(pin) => {
                if pin.is_none() {
                    *pin = load()?;
                }
                let Some(pin) = pin.clone() else {
                    // Not committed yet (a file being created): empty.
                    return Ok(give(&[]));
                };
                drop(st);
                store.read(pin.inode(), offset, size, give)
            }
        }
    }

    /// The length this draft shows, and where it holds bytes (the rest are
    /// holes); `load` as for `read`.
    pub fn data_ranges(
        &self,
        store: &Store,
        load: impl FnOnce() -> Result<Option<Pin>>,
    ) -> Result<(u64, Vec<(u64, u64)>)> {
        let _commit = self.commit.lock();
        let mut st = self.state.lock();
        match &mut st.body {
            Body::Changed(o) => Ok((o.size, o.data_ranges(store)?)),
            Body::Committed(pin) => {
                if pin.is_none() {
                    *pin = load()?;
                }
                let Some(pin) = pin.clone() else {
                    return Ok((0, Vec::new()));
                };
                drop(st);
                let inode = pin.inode();
                Ok((inode.size, store.data_ranges(inode, 0, inode.size)?))
            }
        }
    }

    /// Writes `data` at `offset` (at the end with `append`) for file table
    /// `owner`; returns the number of bytes taken, and whether the draft
    /// differs from the committed version from now on where it did not
    /// before. `load` gives the committed version to start from, `max` is
    /// the largest file, `room(len)` says whether `len` more bytes fit.
    #[allow(clippy::too_many_arguments, reason = "one write request's fields")]
    pub fn write(
        &self,
        store: &Store,
        offset: u64,
        data: &[u8],
        append: bool,
        owner: Option<u64>,
        max: u64,
        load: impl FnOnce() -> Result<Option<Pin>>,
        frees: &Frees,
    ) -> Result<(usize, bool)> {
        let _commit = self.commit.lock();
        let mut st = self.state.lock();
        if let Some(code) = st.poisoned {
            return Err(Error::from(io::Error::from_raw_os_error(code)));
        }
        let was_local = matches!(st.body, Body::Changed(_));
        let result = (|| {
            let o = changed(self.ino, &mut st, load, frees)?;
            let offset = if append { o.size } else { offset };
            let end = offset.saturating_add(data.len() as u64);
            if end > max {
                return Err(Error::TooBig);
            }
            store.kv.room(data.len() as u64)?;
            o.write(store, offset, data)?;
            st.changed_at = SystemTime::now();
            st.touched_at = st.changed_at;
            st.dirty = true;
            st.written = true;
            Ok(data.len())
        })();
        match (&result, owner) {
            (Err(e), _) => {
                // Whatever was lost here, the draft no longer holds what
                // the writer meant: refuse to commit it.
                st.poisoned = Some(super::errno::errno(e));
                st.dirty = false;
            }
            (Ok(_), Some(o)) if !st.writers.contains(&o) => st.writers.push(o),
            (Ok(_), Some(_)) => {}
            (Ok(_), None) => st.anonymous = true,
        }
        result.map(|n| (n, !was_local))
    }

    /// Sets the length for thread `tid`; says, as `write` does, whether
    /// the draft newly differs from the committed version.
    pub fn truncate(
        &self,
        len: u64,
        tid: u32,
        max: u64,
        load: impl FnOnce() -> Result<Option<Pin>>,
        frees: &Frees,
    ) -> Result<bool> {
        if len > max {
            return Err(Error::TooBig);
        }
        let _commit = self.commit.lock();
        let mut st = self.state.lock();
        let was_local = matches!(st.body, Body::Changed(_));
        changed(self.ino, &mut st, load, frees)?.truncate(len);
        changed_by_thread(&mut st, tid);
        Ok(!was_local)
    }

    /// Applies `change` to the draft for thread `tid` (a copy that shares
    /// extents, fallocate's modes), for a close by its process to commit
    /// as it would a truncate; says, as `write` does, whether the draft
    /// newly differs from the committed version. `end` is the furthest
    /// byte it may touch, within `max`.
    pub fn reshape(
        &self,
        end: u64,
        tid: u32,
        max: u64,
        load: impl FnOnce() -> Result<Option<Pin>>,
        frees: &Frees,
        change: impl FnOnce(&mut Overlay),
    ) -> Result<bool> {
        if end > max {
            return Err(Error::TooBig);
        }
        let _commit = self.commit.lock();
        let mut st = self.state.lock();
        if let Some(code) = st.poisoned {
            return Err(Error::from(io::Error::from_raw_os_error(code)));
        }
        let was_local = matches!(st.body, Body::Changed(_));
        change(changed(self.ino, &mut st, load, frees)?);
        changed_by_thread(&mut st, tid);
        Ok(!was_local)
    }

    /// Its last handle was released (see `HandleTable::remove`).
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Held while a commit of this draft is under way (see `commit`).
    pub fn committing(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.commit.lock()
    }

    /// Another draft of this file committed. If this draft's close already
    /// returned with only its empty start left to commit (a skipped
    /// flush), that close is the older one.
    pub fn supersede(&self) {
        let mut st = self.state.lock();
        if st.dirty && !st.written && !st.empty_flushers.is_empty() {
            st.superseded = true;
        }
    }

    /// Decides whether a commit is due now and takes the changes out if
    /// so: `None` when there is nothing to commit (or a close may not
    /// commit what another process wrote). A failed write's errno comes
    /// back once, and the changes are dropped. See `commit.rs`.
    ///
    /// `closer` is who closes a descriptor; `None` for a release, an fsync
    /// or a rename, which always commit. A close commits only changes it
    /// may have made: one by a process that never wrote through the draft
    /// (a child closing an inherited descriptor as it calls exec, or
    /// exits) leaves another process's writes alone.
    ///
    /// And a close does not commit an empty start with nothing written yet
    /// the first time its file table flushes it: a shell redirect (`echo v
    /// > k`) opens, dup2()s and closes the descriptor before anything is
    /// written, and committing there would show readers an empty file that
    /// is neither the old one nor the new one. The same table's second such
    /// flush (`: > k`) or the release commits it; the release not if
    /// another draft committed the file after the skipped flush
    /// (`superseded`).
    /// What it returns: the changes, their mtime and their ctime. The
    /// caller holds `committing()` until the new version is current.
    #[allow(clippy::type_complexity, reason = "three parts of one commit")]
    pub fn take_changes(
        &self,
        closer: Option<Closer>,
    ) -> Result<Option<(Overlay, SystemTime, SystemTime)>> {
        let mut st = self.state.lock();
        if let Some(code) = st.poisoned.take() {
            st.body = Body::Committed(None);
            return Err(Error::from(io::Error::from_raw_os_error(code)));
        }
        if !st.dirty {
            return Ok(None);
        }
        if let Some(c) = closer {
            if st.written && !c.changed(&st) {
                return Ok(None);
            }
            if !st.written && !st.empty_flushers.contains(&c.owner) {
                st.empty_flushers.push(c.owner);
                return Ok(None);
            }
        }
        let dropped = closer.is_none() && !st.written && st.superseded;
        st.dirty = false;
        st.written = false;
        st.writers.clear();
        st.truncaters.clear();
        st.anonymous = false;
        st.empty_flushers.clear();
        st.superseded = false;
        let body = std::mem::replace(&mut st.body, Body::Committed(None));
        match body {
            Body::Changed(o) if !dropped => Ok(Some((o, st.changed_at, st.touched_at))),
            // Dropped: its extents are freed with it.
            Body::Changed(_) => Ok(None),
            committed => {
                st.body = committed;
                Ok(None)
            }
        }
    }
}

/// The draft was changed by thread `tid` (a truncate or a copy, which the
/// kernel sends with no file table), for a close by its process to commit.
fn changed_by_thread(st: &mut State, tid: u32) {
    st.changed_at = SystemTime::now();
    st.touched_at = st.changed_at;
    st.dirty = true;
    st.written = true;
    if !st.truncaters.contains(&tid) {
        st.truncaters.push(tid);
    }
}

/// The draft's changes, made from its base (loaded now) if it has none.
fn changed<'s>(
    ino: u64,
    st: &'s mut State,
    load: impl FnOnce() -> Result<Option<Pin>>,
    frees: &Frees,
) -> Result<&'s mut Overlay> {
    if let Body::Committed(pin) = &mut st.body {
        let base = match pin.take() {
            Some(p) => Some(p),
            None => load()?,
        };
        st.body = Body::Changed(Overlay::new(ino, base, frees.clone()));
    }
    match &mut st.body {
        Body::Changed(o) => Ok(o),
        Body::Committed(_) => unreachable_body(),
    }
}

/// `changed` never leaves a draft unchanged; this is where the type system
/// cannot see that. Never panics: it fails the request.
fn unreachable_body() -> Result<&'static mut Overlay> {
    log::error!("bug: a draft without changes after making them");
    Err(Error::InvalidArgument("a draft without changes"))
}

/// Who closes a descriptor: the file table (lock owner) and the thread.
#[derive(Clone, Copy, Debug)]
pub struct Closer {
    pub owner: u64,
    pub tid: u32,
}

impl Closer {
    /// Whether the closer may have made some of the draft's changes.
    fn changed(&self, st: &State) -> bool {
        st.anonymous
            || st.writers.contains(&self.owner)
            || st
                .truncaters
                .iter()
                .any(|&t| t == self.tid || Opener::new(t).is(self.tid))
    }
}
