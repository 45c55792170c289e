//! A draft: what the descriptors of one key see before they commit. All
//! the descriptors one process has open for writing on a key share one
//! draft, so within that process the key behaves as a file does on any
//! filesystem (every descriptor, `fstat` and `SEEK_END` see the same
//! bytes and length); other processes see only committed values. A
//! read-only descriptor has a draft of its own that never changes: the
//! value it pinned at open.
//!
//! A draft holds its changes until they are committed as one record (at
//! flush, fsync or release), so readers see the old value or the new one,
//! never a mix. The committed value a draft starts from is loaded only
//! when a write or truncate needs it. Past `SPILL_THRESHOLD` bytes a
//! buffer moves from memory to a file the storage gives (`Storage::stage`),
//! which the storage may take over whole when the draft is committed.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

use super::errno::{Error, Result};
use super::process::Opener;
use super::storage::{Meta, Metadata, Staged, Storage, Value};
use crate::engine::to_ns;

/// A buffer larger than this lives in a staged file instead of memory, so
/// that many open writers cannot fill the daemon's memory.
pub const SPILL_THRESHOLD: u64 = 1 << 20;
/// Values are copied and compared in pieces of this size.
const COPY_CHUNK: usize = 1 << 20;

pub struct Draft {
    /// Who shares it: the process that opened it for writing.
    pub opener: Opener,
    /// Made by `create` and not yet committed (or failed): the key exists
    /// only as a pending creation in the inode table.
    pending: AtomicBool,
    state: Mutex<State>,
}

struct State {
    body: Body,
    /// When the buffer last changed (its mtime while uncommitted).
    changed_at: SystemTime,
    /// Holds changes not yet committed.
    dirty: bool,
    /// Some of those changes are writes or truncates, not only the empty
    /// start of O_TRUNC or a create.
    written: bool,
    /// Who made those changes: the file tables (lock owners) that wrote,
    /// the threads that truncated (the kernel names no file table then),
    /// and whether a page written back from a mapping (which names
    /// neither) was among them.
    writers: Vec<u64>,
    truncaters: Vec<u32>,
    anonymous: bool,
    /// The file tables whose flushes found only the empty start.
    empty_flushers: Vec<u64>,
    /// Another process stored a value of the key after such a flush: that
    /// value is newer than this draft's close, so the release does not
    /// replace it with the empty start.
    superseded: bool,
    /// A write failed (EFBIG, ENOSPC): the buffer is incomplete and must
    /// never be committed; flush reports this errno.
    poisoned: Option<i32>,
}

enum Body {
    /// The committed value, pinned where it lies: at open for a reader, at
    /// the first read for a writer that has not written yet.
    Committed(Option<Arc<Value>>),
    Mem(Vec<u8>),
    Spill(Staged),
}

fn slice(bytes: &[u8], offset: u64, size: usize) -> &[u8] {
    let start = (offset.min(bytes.len() as u64)) as usize;
    let end = start.saturating_add(size).min(bytes.len());
    &bytes[start..end]
}

impl Draft {
    fn with(opener: Opener, body: Body, dirty: bool) -> Draft {
        Draft {
            opener,
            pending: AtomicBool::new(false),
            state: Mutex::new(State {
                body,
                changed_at: SystemTime::now(),
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

    /// A reader's draft: `value`, for as long as it is open, whatever
    /// happens to the key meanwhile (except growth, see `read`).
    pub fn reader(value: Value) -> Draft {
        Draft::with(
            Opener::new(0),
            Body::Committed(Some(Arc::new(value))),
            false,
        )
    }

    /// A writer's draft on the key's committed value, loaded when needed.
    pub fn on_committed(opener: Opener) -> Draft {
        Draft::with(opener, Body::Committed(None), false)
    }

    /// A draft of a key the store does not hold (yet): empty, and with
    /// nothing to commit until something is written.
    pub fn empty(opener: Opener) -> Draft {
        Draft::with(opener, Body::Mem(Vec::new()), false)
    }

    /// O_TRUNC or a create: start from an empty value, to be committed even
    /// if nothing is written.
    pub fn start_empty(&self) {
        let mut st = self.state.lock();
        st.body = Body::Mem(Vec::new());
        st.changed_at = SystemTime::now();
        st.dirty = true;
        st.empty_flushers.clear();
        st.superseded = false;
        st.poisoned = None;
    }

    /// The draft holds a key `create` made, not yet committed.
    pub fn mark_created(&self) {
        self.pending.store(true, Ordering::Release);
    }

    /// True the first time it is called after the first commit attempt of
    /// a draft that created its key: the key stops being pending (it is now
    /// in the store, or the commit failed and it never was).
    pub fn end_pending(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// The length and mtime this draft shows, when they differ from the
    /// store's.
    pub fn local(&self) -> Option<Metadata> {
        let st = self.state.lock();
        let len = match &st.body {
            Body::Committed(_) => return None,
            Body::Mem(v) => v.len() as u64,
            Body::Spill(s) => s.len(),
        };
        Some(Metadata::file(len, st.changed_at))
    }

    /// The value a draft that does not write reads, if pinned.
    pub fn pinned(&self) -> Option<Metadata> {
        match &self.state.lock().body {
            Body::Committed(Some(v)) => Some(v.metadata()),
            _ => None,
        }
    }

    /// A reader's pinned value, moved on to the committed value of `key`
    /// if that one grew from it (as `read` does at the end).
    pub fn follow(&self, store: &dyn Storage, key: &[u8]) -> Option<Metadata> {
        let mut st = self.state.lock();
        let Body::Committed(Some(pin)) = &mut st.body else {
            return None;
        };
        if let Some(longer) = grown(store, key, pin) {
            *pin = Arc::new(longer);
        }
        Some(pin.metadata())
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
        true
    }

    /// Hands up to `size` bytes at `offset` to `give`: a pinned value's
    /// straight from its segment's mapping, a buffer's copied. The lock is
    /// not held meanwhile, so the reader's next request (sent as soon as
    /// `give` replies) does not wait for it.
    ///
    /// A read that reaches the end of a pinned value moves on to the
    /// committed value if that one begins with every byte of the pinned
    /// one (the key grew by appends): what the reader has read is the same
    /// in both, so it still sees one value, and `tail -f` follows the key.
    pub fn read<R>(
        &self,
        store: &dyn Storage,
        key: &[u8],
        offset: u64,
        size: usize,
        give: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let mut st = self.state.lock();
        let own = match &mut st.body {
            Body::Mem(v) => slice(v, offset, size).to_vec(),
            Body::Spill(s) => s.read_at(offset, size)?,
            Body::Committed(pin) => {
                let mut value = match pin {
                    Some(v) => v.clone(),
                    None => match store.value(key)? {
                        Some(v) => pin.insert(Arc::new(v)).clone(),
                        // Not committed yet (a key being created): empty.
                        None => return Ok(give(&[])),
                    },
                };
                let end = offset.saturating_add(size as u64);
                if end > value.metadata().len
                    && let Some(longer) = grown(store, key, &value)
                {
                    value = pin.insert(Arc::new(longer)).clone();
                }
                drop(st);
                return Ok(give(&value.bytes(offset, size)?));
            }
        };
        drop(st);
        Ok(give(&own))
    }

    /// Writes `data` at `offset` (at the end with `append`) for file table
    /// `owner`; returns the number of bytes taken, and whether the draft
    /// differs from the store from now on where it did not before.
    /// `room(len)` says whether a value of `len` bytes can be stored.
    #[allow(clippy::too_many_arguments, reason = "one write request's fields")]
    pub fn write(
        &self,
        store: &dyn Storage,
        key: &[u8],
        offset: u64,
        data: &[u8],
        append: bool,
        owner: Option<u64>,
        room: &dyn Fn(u64) -> Result<()>,
    ) -> Result<(usize, bool)> {
        let mut st = self.state.lock();
        if let Some(code) = st.poisoned {
            return Err(Error::Io(io::Error::from_raw_os_error(code)));
        }
        let was_local = !matches!(st.body, Body::Committed(_));
        let result = write_locked(&mut st, store, key, offset, data, append, room);
        match (&result, owner) {
            (Err(e), _) => {
                // Whatever was lost here, the buffer no longer holds what
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
    /// the draft newly differs from the store.
    pub fn truncate(&self, store: &dyn Storage, key: &[u8], len: u64, tid: u32) -> Result<bool> {
        if len > store.max_value_size() {
            return Err(Error::TooBig);
        }
        let mut st = self.state.lock();
        let was_local = !matches!(st.body, Body::Committed(_));
        if len == 0 {
            st.body = Body::Mem(Vec::new());
        } else {
            materialize(&mut st, store, key)?;
            if len > SPILL_THRESHOLD {
                spill(&mut st, store, key)?;
            }
            match &mut st.body {
                Body::Mem(v) => v.resize(len as usize, 0),
                Body::Spill(s) => s.set_len(len)?,
                Body::Committed(_) => unreachable_body(),
            }
        }
        st.changed_at = SystemTime::now();
        st.dirty = true;
        st.written = true;
        if !st.truncaters.contains(&tid) {
            st.truncaters.push(tid);
        }
        Ok(!was_local)
    }

    /// Another draft of this key stored a value. If this draft's close
    /// already returned with only its empty start left to commit (a
    /// skipped flush), that close is the older one.
    pub fn supersede(&self) {
        let mut st = self.state.lock();
        if st.dirty && !st.written && !st.empty_flushers.is_empty() {
            st.superseded = true;
        }
    }

    /// Stores the buffer as the value of `key` if it holds changes, and
    /// says whether it did; with `base`'s mode and owner (asked only then),
    /// the time of the draft's last change as mtime, and ctime now. A failed commit is reported once and the
    /// changes are dropped, so a later flush or release does not store what
    /// close reported as lost.
    ///
    /// `closer` is who closes a descriptor; `None` for a release, an fsync
    /// or a rename, which always commit. A close commits
    /// only changes it may have made: one by a process that never wrote
    /// through the draft (a child closing an inherited descriptor as it
    /// calls exec, or exits) leaves another process's writes alone.
    ///
    /// And a close does not commit an empty start with nothing written yet
    /// the first time its file table flushes it: a shell redirect (`echo v
    /// > k`) opens, dup2()s and closes the descriptor before anything is
    /// written, and committing there would show readers an empty value that
    /// is neither the old one nor the new one. The same table's second such
    /// flush (`: > k`) or the release commits it; the release not if
    /// another draft stored a value of the key after the skipped flush
    /// (`superseded`).
    pub fn commit(
        &self,
        store: &dyn Storage,
        key: Option<&[u8]>,
        closer: Option<Closer>,
        base: impl FnOnce() -> Result<Meta>,
    ) -> Result<bool> {
        let mut st = self.state.lock();
        if let Some(code) = st.poisoned.take() {
            return Err(Error::Io(io::Error::from_raw_os_error(code)));
        }
        if !st.dirty {
            return Ok(false);
        }
        if let Some(c) = closer {
            if st.written && !c.changed(&st) {
                return Ok(false);
            }
            if !st.written && !st.empty_flushers.contains(&c.owner) {
                st.empty_flushers.push(c.owner);
                return Ok(false);
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
        if dropped {
            return Ok(false);
        }
        let Some(key) = key else {
            // The key was removed while open: its data goes with it.
            log::debug!("dropping writes to a removed key");
            return Ok(true);
        };
        if matches!(st.body, Body::Committed(_)) {
            return Ok(true);
        }
        let meta = Meta {
            mtime: to_ns(st.changed_at),
            ctime: to_ns(SystemTime::now()),
            ..base()?
        };
        match std::mem::replace(&mut st.body, Body::Committed(None)) {
            Body::Mem(v) => {
                let put = store.put(key, &v, &meta);
                st.body = Body::Mem(v);
                put?
            }
            // Taken over by the store, the file is no longer the draft's:
            // a later write starts from the committed value again.
            Body::Spill(s) => {
                if let Some(s) = store.put_staged(key, s, &meta)? {
                    st.body = Body::Spill(s);
                }
            }
            committed @ Body::Committed(_) => st.body = committed,
        }
        Ok(true)
    }
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

fn write_locked(
    st: &mut State,
    store: &dyn Storage,
    key: &[u8],
    offset: u64,
    data: &[u8],
    append: bool,
    room: &dyn Fn(u64) -> Result<()>,
) -> Result<usize> {
    materialize(st, store, key)?;
    let offset = if append { body_len(&st.body) } else { offset };
    let end = offset.saturating_add(data.len() as u64);
    if end > store.max_value_size() {
        return Err(Error::TooBig);
    }
    // A value copied at commit needs room for all of it; one stored in
    // place, only for what this write adds to its file.
    match &st.body {
        Body::Spill(s) if s.stored_in_place(end) => room(end.saturating_sub(s.len()))?,
        _ => room(end)?,
    }
    if end > SPILL_THRESHOLD {
        spill(st, store, key)?;
    }
    match &mut st.body {
        Body::Mem(v) => {
            let start = offset as usize;
            if v.len() < start + data.len() {
                v.resize(start + data.len(), 0);
            }
            v[start..start + data.len()].copy_from_slice(data);
        }
        Body::Spill(s) => s.write_at(offset, data)?,
        Body::Committed(_) => unreachable_body(),
    }
    st.changed_at = SystemTime::now();
    st.dirty = true;
    st.written = true;
    Ok(data.len())
}

/// The key's committed value, if it is longer than `pinned` and begins
/// with all of its bytes.
pub(super) fn grown(store: &dyn Storage, key: &[u8], pinned: &Value) -> Option<Value> {
    let old = pinned.metadata().len;
    if store.metadata(key).ok()??.len <= old {
        return None;
    }
    let new = store.value(key).ok()??;
    let mut offset = 0;
    while offset < old {
        let want = COPY_CHUNK.min((old - offset) as usize);
        let (a, b) = (
            pinned.bytes(offset, want).ok()?,
            new.bytes(offset, want).ok()?,
        );
        if a.len() != want || a != b {
            return None;
        }
        offset += want as u64;
    }
    Some(new)
}

/// The body variants past `materialize` are Mem or Spill; this is called
/// where the type system cannot see that. Never panics: it logs.
fn unreachable_body() {
    log::error!("bug: write to an unloaded draft ignored");
}

fn body_len(body: &Body) -> u64 {
    match body {
        Body::Committed(_) => 0,
        Body::Mem(v) => v.len() as u64,
        Body::Spill(s) => s.len(),
    }
}

/// Replaces an unloaded body with the committed value (the pinned one, or
/// the current one), in memory or in a staged file by size.
fn materialize(st: &mut State, store: &dyn Storage, key: &[u8]) -> Result<()> {
    let Body::Committed(pin) = &mut st.body else {
        return Ok(());
    };
    let value = match pin.take() {
        Some(v) => Some(v),
        None => store.value(key)?.map(Arc::new),
    };
    let Some(value) = value else {
        st.body = Body::Mem(Vec::new());
        return Ok(());
    };
    let len = value.metadata().len;
    if len <= SPILL_THRESHOLD {
        st.body = Body::Mem(value.read(0, len as usize)?);
        return Ok(());
    }
    let mut s = store.stage(key.len())?;
    let mut offset = 0;
    while offset < len {
        let chunk = value.read(offset, COPY_CHUNK)?;
        if chunk.is_empty() {
            return Err(Error::Stale);
        }
        s.write_at(offset, &chunk)?;
        offset += chunk.len() as u64;
    }
    st.body = Body::Spill(s);
    Ok(())
}

/// Moves an in-memory buffer to a staged file.
fn spill(st: &mut State, store: &dyn Storage, key: &[u8]) -> Result<()> {
    if let Body::Mem(v) = &st.body {
        let mut s = store.stage(key.len())?;
        s.write_at(0, v)?;
        st.body = Body::Spill(s);
    }
    Ok(())
}
