//! Open files. A handle keeps its writes to itself until it commits them
//! as one record (at flush, fsync or release), so other readers see the
//! old value or the new one, never a mix, and the writer reads its own
//! writes. The committed value a handle starts from is loaded only when a
//! write or truncate needs it. Past `SPILL_THRESHOLD` bytes a buffer moves
//! from memory to an unlinked temporary file in the data directory.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::errno::{Error, Result};
use crate::engine::{Metadata, Store, Value};

/// A buffer larger than this lives in a spill file instead of memory, so
/// that many open writers cannot fill the daemon's memory.
pub const SPILL_THRESHOLD: u64 = 1 << 20;
/// Values are copied in pieces of this size when loaded into a spill file.
const COPY_CHUNK: usize = 1 << 20;

static SPILL_SEQ: AtomicU64 = AtomicU64::new(0);

/// How a file was opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    pub write: bool,
    /// O_APPEND: every write goes to the end of this handle's value.
    pub append: bool,
    /// O_TRUNC or a fresh create: start from an empty value, to be
    /// committed even if nothing is written.
    pub truncate: bool,
}

pub struct Handle {
    pub ino: u64,
    pub mode: OpenMode,
    /// Made by `create` and not yet committed (or failed): the key exists
    /// only as a pending creation in the inode table.
    pending: AtomicBool,
    state: Mutex<State>,
}

struct State {
    body: Body,
    /// Holds changes not yet committed.
    dirty: bool,
    /// Some of those changes are writes or truncates, not only the empty
    /// start of O_TRUNC or a create.
    written: bool,
    /// Flushes seen while the only change was the empty start.
    empty_flushes: u32,
    /// Another handle stored a value of the key after such a flush: that
    /// value is newer than this handle's close, so the release does not
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
    Spill(Spill),
}

/// An unlinked temporary file holding a large buffer. The name ends in
/// `.tmp` so the engine removes it at open should the daemon die between
/// creating and unlinking it.
struct Spill {
    file: File,
    len: u64,
}

impl Spill {
    fn create(dir: &Path) -> io::Result<Spill> {
        let n = SPILL_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("spill-{}-{n}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        fs::remove_file(&path)?;
        Ok(Spill { file, len: 0 })
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)?;
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    fn read_at(&self, offset: u64, size: usize) -> io::Result<Vec<u8>> {
        let end = self.len.min(offset.saturating_add(size as u64));
        let n = end.saturating_sub(offset) as usize;
        let mut buf = vec![0; n];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

/// Reads a spill file from the start, for `Store::put_from`.
struct SpillReader<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for SpillReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn slice(bytes: &[u8], offset: u64, size: usize) -> &[u8] {
    let start = (offset.min(bytes.len() as u64)) as usize;
    let end = start.saturating_add(size).min(bytes.len());
    &bytes[start..end]
}

impl Handle {
    /// A reader of `value`: it reads those bytes for as long as it is open,
    /// whatever happens to the key meanwhile.
    pub fn new_reader(ino: u64, mode: OpenMode, value: Value) -> Handle {
        let h = Handle::new(ino, mode, false);
        h.state.lock().body = Body::Committed(Some(Arc::new(value)));
        h
    }

    /// A handle on a key the store does not hold (yet): it reads as empty.
    pub fn new_empty(ino: u64, mode: OpenMode) -> Handle {
        let h = Handle::new(ino, mode, false);
        h.state.lock().body = Body::Mem(Vec::new());
        h
    }

    pub fn new(ino: u64, mode: OpenMode, created: bool) -> Handle {
        let body = if mode.truncate {
            Body::Mem(Vec::new())
        } else {
            Body::Committed(None)
        };
        Handle {
            ino,
            mode,
            pending: AtomicBool::new(created),
            state: Mutex::new(State {
                body,
                dirty: mode.truncate,
                written: false,
                empty_flushes: 0,
                superseded: false,
                poisoned: None,
            }),
        }
    }

    /// True the first time it is called after the handle's first commit
    /// attempt, if the handle created its key: the key stops being pending
    /// (it is now in the store, or the commit failed and it never was).
    pub fn end_pending(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// The length this handle sees, when it differs from the store's.
    pub fn local_len(&self) -> Option<u64> {
        match &self.state.lock().body {
            Body::Committed(_) => None,
            Body::Mem(v) => Some(v.len() as u64),
            Body::Spill(s) => Some(s.len),
        }
    }

    /// The value a handle that does not write reads, if pinned.
    pub fn pinned(&self) -> Option<Metadata> {
        match &self.state.lock().body {
            Body::Committed(Some(v)) => Some(v.metadata()),
            _ => None,
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.state.lock().dirty
    }

    /// Hands up to `size` bytes at `offset` to `give`: a pinned value's
    /// straight from its segment's mapping, a writer's own buffer copied.
    /// The handle's lock is not held meanwhile, so the reader's next
    /// request (sent as soon as `give` replies) does not wait for it.
    pub fn read<R>(
        &self,
        store: &Store,
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
                let value = match pin {
                    Some(v) => v.clone(),
                    None => pin
                        .insert(Arc::new(store.value(key).ok_or(Error::Stale)?))
                        .clone(),
                };
                drop(st);
                return Ok(give(&value.bytes(offset, size)?));
            }
        };
        drop(st);
        Ok(give(&own))
    }

    /// Writes `data` at `offset` (at the end in append mode); returns the
    /// number of bytes taken.
    /// `room(len)` says whether a value of `len` bytes can be stored.
    pub fn write(
        &self,
        store: &Store,
        key: &[u8],
        offset: u64,
        data: &[u8],
        room: &dyn Fn(u64) -> Result<()>,
    ) -> Result<usize> {
        let mut st = self.state.lock();
        if let Some(code) = st.poisoned {
            return Err(Error::Io(io::Error::from_raw_os_error(code)));
        }
        let result = self.write_locked(&mut st, store, key, offset, data, room);
        if let Err(e) = &result {
            // Whatever was lost here, the buffer no longer holds what the
            // writer meant: refuse to commit it.
            st.poisoned = Some(super::errno::errno(e));
            st.dirty = false;
        }
        result
    }

    fn write_locked(
        &self,
        st: &mut State,
        store: &Store,
        key: &[u8],
        offset: u64,
        data: &[u8],
        room: &dyn Fn(u64) -> Result<()>,
    ) -> Result<usize> {
        materialize(st, store, key)?;
        let offset = if self.mode.append {
            body_len(&st.body)
        } else {
            offset
        };
        let end = offset.saturating_add(data.len() as u64);
        if end > store.options().max_value_size {
            return Err(Error::TooBig);
        }
        room(end)?;
        if end > SPILL_THRESHOLD {
            spill(st, store.dir())?;
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
        st.dirty = true;
        st.written = true;
        Ok(data.len())
    }

    pub fn truncate(&self, store: &Store, key: &[u8], len: u64) -> Result<()> {
        if len > store.options().max_value_size {
            return Err(Error::TooBig);
        }
        let mut st = self.state.lock();
        if len == 0 {
            st.body = Body::Mem(Vec::new());
        } else {
            materialize(&mut st, store, key)?;
            if len > SPILL_THRESHOLD {
                spill(&mut st, store.dir())?;
            }
            match &mut st.body {
                Body::Mem(v) => v.resize(len as usize, 0),
                Body::Spill(s) => s.set_len(len)?,
                Body::Committed(_) => unreachable_body(),
            }
        }
        st.dirty = true;
        st.written = true;
        Ok(())
    }

    /// Another handle of this key stored a value. If this handle's close
    /// already returned with only its empty start left to commit (a
    /// skipped flush), that close is the older one.
    pub fn supersede(&self) {
        let mut st = self.state.lock();
        if st.dirty && !st.written && st.empty_flushes > 0 {
            st.superseded = true;
        }
    }

    /// Stores the buffer as the value of `key` if it holds changes, and
    /// says whether it did. A failed commit is reported once and the
    /// changes are dropped, so a later flush or release does not store what
    /// close reported as lost.
    ///
    /// At a flush (`last` false) an empty start with nothing written yet is
    /// not committed the first time: a shell redirect (`echo v > k`) opens,
    /// dup2()s and closes the descriptor before anything is written, and
    /// committing there would show readers an empty value that is neither
    /// the old one nor the new one. The second such flush (`: > k`) or the
    /// release commits it; the release not if another handle stored a
    /// value of the key after the skipped flush (`superseded`).
    pub fn commit(&self, store: &Store, key: Option<&[u8]>, last: bool) -> Result<bool> {
        let mut st = self.state.lock();
        if let Some(code) = st.poisoned.take() {
            return Err(Error::Io(io::Error::from_raw_os_error(code)));
        }
        if !st.dirty {
            return Ok(false);
        }
        if !st.written && !last {
            st.empty_flushes += 1;
            if st.empty_flushes < 2 {
                return Ok(false);
            }
        }
        let dropped = last && !st.written && st.superseded;
        st.dirty = false;
        st.written = false;
        st.superseded = false;
        if dropped {
            return Ok(false);
        }
        let Some(key) = key else {
            // The key was removed while open: its data goes with it.
            log::debug!("dropping writes to removed inode {}", self.ino);
            return Ok(true);
        };
        match &st.body {
            Body::Mem(v) => store.put(key, v)?,
            Body::Spill(s) => {
                let mut reader = SpillReader {
                    file: &s.file,
                    pos: 0,
                };
                store.put_from(key, s.len, &mut reader)?
            }
            Body::Committed(_) => {}
        }
        Ok(true)
    }
}

/// The body variants past `materialize` are Mem or Spill; this is called
/// where the type system cannot see that. Never panics: it logs.
fn unreachable_body() {
    log::error!("bug: write to an unloaded handle body ignored");
}

fn body_len(body: &Body) -> u64 {
    match body {
        Body::Committed(_) => 0,
        Body::Mem(v) => v.len() as u64,
        Body::Spill(s) => s.len,
    }
}

/// Replaces an unloaded body with the committed value (the pinned one, or
/// the current one), in memory or in a spill file by size.
fn materialize(st: &mut State, store: &Store, key: &[u8]) -> Result<()> {
    let Body::Committed(pin) = &mut st.body else {
        return Ok(());
    };
    let Some(value) = pin.take().or_else(|| store.value(key).map(Arc::new)) else {
        st.body = Body::Mem(Vec::new());
        return Ok(());
    };
    let len = value.metadata().len;
    if len <= SPILL_THRESHOLD {
        st.body = Body::Mem(value.read(0, len as usize)?);
        return Ok(());
    }
    let mut s = Spill::create(store.dir())?;
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

/// Moves an in-memory buffer to a spill file.
fn spill(st: &mut State, dir: &Path) -> Result<()> {
    if let Body::Mem(v) = &st.body {
        let mut s = Spill::create(dir)?;
        s.write_at(0, v)?;
        st.body = Body::Spill(s);
    }
    Ok(())
}

/// Open handles by number.
#[derive(Default)]
pub struct HandleTable {
    map: Mutex<HashMap<u64, Arc<Handle>>>,
    next: AtomicU64,
}

impl HandleTable {
    pub fn insert(&self, h: Handle) -> (u64, Arc<Handle>) {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let h = Arc::new(h);
        self.map.lock().insert(fh, h.clone());
        (fh, h)
    }

    pub fn get(&self, fh: u64) -> Result<Arc<Handle>> {
        self.map.lock().get(&fh).cloned().ok_or(Error::BadHandle)
    }

    pub fn remove(&self, fh: u64) -> Result<Arc<Handle>> {
        self.map.lock().remove(&fh).ok_or(Error::BadHandle)
    }

    pub fn for_ino(&self, ino: u64) -> Vec<Arc<Handle>> {
        self.map
            .lock()
            .values()
            .filter(|h| h.ino == ino)
            .cloned()
            .collect()
    }

    pub fn drain(&self) -> Vec<Arc<Handle>> {
        self.map.lock().drain().map(|(_, h)| h).collect()
    }
}
