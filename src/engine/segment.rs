//! One segment file with its index. Segments are memory-mapped: the writer
//! copies records into the active segment's mapping and readers read them
//! back without a system call. A record past the mapping (one larger than
//! the segment size) is written and read with `pwrite`/`pread`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use log::{debug, warn};
use memmap2::{MmapOptions, MmapRaw};
use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::error::{Error, Result};
use super::format::{self, SEGMENT_HEADER_LEN};
use super::index::{Entry, Index};
use super::meta::Meta;
use super::record::{self, Header, Layout};

/// Records up to this size are checked whole on every read; bigger ones are
/// checked once, remembered, and then served range by range.
const WHOLE_CHECK_LIMIT: u64 = 256 * 1024;
/// Chunk for streaming through large records.
pub const CHUNK: usize = 1 << 20;
/// The active file grows by this much at a time, with `fallocate`, so that
/// copying into the mapping can never meet a full disk (which would be a
/// SIGBUS instead of an error). Small, because what is allocated ahead
/// counts as used space (a 20,000-key store of 100-byte values is 3 MiB);
/// one call per 256 KiB of records costs nothing measurable.
const GROW_BY: u64 = 256 << 10;
/// Records at least this large are written with `pwrite`, not copied into
/// the mapping.
pub const PWRITE_FROM: usize = 64 << 10;

pub struct Segment {
    pub id: u64,
    /// How its records are laid out: its header's format version.
    pub layout: Layout,
    pub path: PathBuf,
    pub file: File,
    map: OnceLock<MmapRaw>,
    /// Read-only mappings reaching past `map`, for records too large for
    /// it, each twice as long as the last; kept until the segment goes,
    /// since the bytes handed out borrow them.
    wide: Mutex<Vec<MmapRaw>>,
    /// The file's length as this process made it: only bytes below it are
    /// read through the mapping.
    file_len: AtomicU64,
    /// The index while the segment takes appends…
    index: RwLock<Index>,
    /// …and once it is closed: immutable, so looked up without a lock.
    frozen: OnceLock<Index>,
    /// Highest sequence number written to this segment.
    pub max_seq: AtomicU64,
    /// Offsets of large records whose CRC has been checked.
    verified: Mutex<HashSet<u32>>,
    /// Closed by a roll and not yet given its hint file.
    pub needs_hint: AtomicBool,
}

impl Segment {
    /// Creates a new, empty segment file holding only its header, durably.
    pub fn create(dir: &Path, id: u64) -> Result<Segment> {
        let path = format::segment_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| Error::io(format!("creating segment {}", path.display()), e))?;
        file.write_all_at(&format::encode_segment_header(id, Layout::CURRENT), 0)
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io(format!("writing header of {}", path.display()), e))?;
        Self::with_file(id, path, file, Index::default(), Layout::CURRENT)
    }

    /// Opens an existing segment file and checks its header.
    pub fn open(dir: &Path, id: u64, writable: bool) -> Result<Segment> {
        let path = format::segment_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(|e| Error::io(format!("opening segment {}", path.display()), e))?;
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        let n = read_up_to(&file, &mut header, 0)
            .map_err(|e| Error::io(format!("reading header of {}", path.display()), e))?;
        let layout = format::check_segment_header(&header[..n], id)
            .map_err(|detail| Error::corrupt(&path, 0, detail))?;
        Self::with_file(id, path, file, Index::default(), layout)
    }

    pub fn with_file(
        id: u64,
        path: PathBuf,
        file: File,
        index: Index,
        layout: Layout,
    ) -> Result<Segment> {
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        Ok(Segment {
            id,
            layout,
            path,
            file,
            map: OnceLock::new(),
            wide: Mutex::new(Vec::new()),
            file_len: AtomicU64::new(len),
            index: RwLock::new(index),
            frozen: OnceLock::new(),
            max_seq: AtomicU64::new(0),
            verified: Mutex::new(HashSet::new()),
            needs_hint: AtomicBool::new(false),
        })
    }

    /// The file's length (for the active segment: including space
    /// allocated ahead of the writer).
    pub fn file_len(&self) -> u64 {
        self.file_len.load(Ordering::Acquire)
    }

    /// Maps `len` bytes of the file for appending. Without a mapping (mmap
    /// refused) appends and reads fall back to `pwrite` and `pread`.
    pub fn map_for_append(&self, len: u64) {
        // This process alone writes the file (it holds the data directory's
        // lock); bytes are read through the mapping only below `file_len`,
        // and only once the writer has published them.
        match MmapOptions::new().len(len as usize).map_raw(&self.file) {
            Ok(m) => {
                let _ = self.map.set(m);
            }
            Err(e) => warn!("cannot map {}: {e}; using pwrite", self.path.display()),
        }
    }

    /// Marks the segment closed: no more appends. Its mapping stays (or is
    /// made, read-only) for reads.
    pub fn freeze(&self) {
        if self.map.get().is_none() {
            // A closed segment is never written or cut again.
            match MmapOptions::new().map_raw_read_only(&self.file) {
                Ok(m) => {
                    let _ = self.map.set(m);
                }
                Err(e) => warn!(
                    "cannot map {}: {e}; reading it with pread",
                    self.path.display()
                ),
            }
        }
        // Moved while holding the write lock: a reader that finds the
        // locked index empty finds `frozen` set once it gets the lock.
        let mut live = self.index.write();
        if self.frozen.get().is_none() {
            let mut index = std::mem::take(&mut *live);
            index.shrink_to_fit();
            let _ = self.frozen.set(index);
        }
    }

    /// The bytes `[offset, offset + len)` through the mapping, when it and
    /// the file cover them.
    fn mapped(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let map = self.map.get()?;
        let end = offset.checked_add(len as u64)?;
        if end > self.file_len() {
            return None;
        }
        let base = if end <= map.len() as u64 {
            map.as_ptr()
        } else {
            self.wide_map(end, map.len() as u64)?
        };
        // SAFETY: in bounds of the mapping and of the file (so no SIGBUS);
        // callers ask only for whole records, which the writer finished
        // copying before publishing them and which never change afterwards.
        // Mappings live as long as the segment.
        Some(unsafe { std::slice::from_raw_parts(base.add(offset as usize), len) })
    }

    /// The start of a read-only mapping at least `end` bytes long.
    fn wide_map(&self, end: u64, mapped: u64) -> Option<*const u8> {
        let mut wide = self.wide.lock();
        if let Some(m) = wide.iter().find(|m| m.len() as u64 >= end) {
            return Some(m.as_ptr());
        }
        let len = end.next_power_of_two().max(mapped.saturating_mul(2));
        match MmapOptions::new()
            .len(usize::try_from(len).ok()?)
            .map_raw_read_only(&self.file)
        {
            Ok(m) => {
                let at = m.as_ptr();
                wide.push(m);
                Some(at)
            }
            Err(e) => {
                debug!("cannot map {} bytes of {}: {e}", len, self.path.display());
                None
            }
        }
    }

    /// Writes `bytes` at `at`: copied into the mapping when it covers them
    /// (growing the file first if needed), else with `pwrite`. Only the
    /// single writer calls this.
    pub fn write_at(&self, bytes: &[u8], at: u64) -> std::io::Result<()> {
        let end = at + bytes.len() as u64;
        if let Some(map) = self.map.get()
            && end <= map.len() as u64
            && map.len() > 0
        {
            match self.grow(end, map.len() as u64) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Err(e),
                // No fallocate here: write it the plain way.
                Err(_) => return self.pwrite(bytes, at),
            }
            // A large record copied into fresh pages of the mapping costs a
            // page fault per page; `pwrite` fills the same page cache in
            // large steps.
            if bytes.len() >= PWRITE_FROM {
                return self.file.write_all_at(bytes, at);
            }
            // SAFETY: in bounds of the mapping and of the file's allocated
            // blocks; no reader looks at these bytes until they are published.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    map.as_mut_ptr().add(at as usize),
                    bytes.len(),
                );
            }
            return Ok(());
        }
        self.pwrite(bytes, at)
    }

    fn pwrite(&self, bytes: &[u8], at: u64) -> std::io::Result<()> {
        self.file.write_all_at(bytes, at)?;
        self.file_len
            .fetch_max(at + bytes.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    /// Starts the disk's writeback of `[from, to)` without waiting for it.
    pub fn start_writeback(&self, from: u64, to: u64) {
        // SAFETY: sync_file_range on a descriptor we own; it reads no memory.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                from as i64,
                (to - from) as i64,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc != 0 {
            debug!(
                "starting writeback of {}: {}",
                self.path.display(),
                std::io::Error::last_os_error()
            );
        }
    }

    /// Allocates the file up to at least `end`, a step ahead when there is room.
    fn grow(&self, end: u64, limit: u64) -> std::io::Result<()> {
        let from = self.file_len();
        if end <= from {
            return Ok(());
        }
        let ahead = (from + GROW_BY).min(limit).max(end);
        for target in [ahead, end] {
            // SAFETY: fallocate on a descriptor we own.
            let rc = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    0,
                    from as i64,
                    (target - from) as i64,
                )
            };
            if rc == 0 {
                self.file_len.store(target, Ordering::Release);
                return Ok(());
            }
        }
        Err(std::io::Error::last_os_error())
    }

    /// Cuts the file to `len` bytes.
    pub fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)?;
        self.file_len.store(len, Ordering::Release);
        Ok(())
    }

    /// The index, for reading.
    pub fn index(&self) -> IndexRef<'_> {
        if let Some(index) = self.frozen.get() {
            return IndexRef::Frozen(index);
        }
        let live = self.index.read();
        match self.frozen.get() {
            Some(index) => IndexRef::Frozen(index),
            None => IndexRef::Live(live),
        }
    }

    /// The index of a segment still taking records (or being loaded).
    pub fn index_mut(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write()
    }

    /// Starts loading where `lookup` of `hash` will look first. Only a
    /// closed segment's index is reached without its lock; the active
    /// segment is searched first, so it has no time to gain by this.
    pub fn prefetch(&self, hash: u64) {
        if let Some(index) = self.frozen.get() {
            index.prefetch(hash);
        }
    }

    /// This segment's latest record for `key`, if any.
    pub fn lookup(&self, hash: u64, key: &[u8]) -> Option<Entry> {
        let index = self.index();
        if self.map.get().is_none() {
            return index.get(hash, key);
        }
        let head_len = self.layout.header_len() + key.len();
        index.get_via_record(hash, key, |offset| {
            self.mapped(u64::from(offset), head_len)
                .and_then(|b| record::key_at(b, self.layout))
                == Some(key)
        })
    }

    /// Whether this segment has a record for `key`. Unlike `lookup` it
    /// never touches the record, for callers that will not read it.
    pub fn has_key(&self, hash: u64, key: &[u8]) -> bool {
        self.index().get(hash, key).is_some()
    }

    /// Reads `len` bytes at `offset`.
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.bytes(offset, len).map(Cow::into_owned)
    }

    /// `len` bytes at `offset`: borrowed from the mapping when it covers
    /// them, else read.
    pub fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        if let Some(bytes) = self.mapped(offset, len) {
            return Ok(Cow::Borrowed(bytes));
        }
        if offset.saturating_add(len as u64) > self.file_len() {
            return Err(Error::corrupt(
                &self.path,
                offset,
                "record runs past the end of the file",
            ));
        }
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| {
            Error::io(
                format!("reading {} at offset {offset}", self.path.display()),
                e,
            )
        })?;
        Ok(Cow::Owned(buf))
    }

    /// Reads and checks the header of the record at `entry`, confirming it
    /// belongs to `key`.
    fn header(&self, key: &[u8], entry: &Entry) -> Result<Header> {
        let offset = u64::from(entry.offset);
        let head_len = self.layout.header_len();
        let bytes = self.bytes(offset, head_len + key.len())?;
        let h = Header::parse(&bytes, self.layout)
            .map_err(|d| Error::corrupt(&self.path, offset, d))?;
        if bytes[head_len..] != *key
            || usize::from(h.key_len) != key.len()
            || h.value_len != entry.value_len
            || h.kind == record::Kind::Batch
            || (h.kind == record::Kind::Tombstone) != entry.tombstone
        {
            return Err(Error::corrupt(
                &self.path,
                offset,
                "record does not match the index",
            ));
        }
        Ok(h)
    }

    /// The metadata of the record at `entry`, from its header. Version 3
    /// keeps none, so its headers are not read.
    ///
    /// Unlike a value, the header is not CRC-checked here (that would
    /// read the whole record for a `stat`); it is parsed, and a mode that
    /// cannot be is refused. Reads of the value check the whole record.
    pub fn meta(&self, key: &[u8], entry: &Entry) -> Result<Meta> {
        match self.layout {
            Layout::V1 | Layout::V2 => Ok(self.header(key, entry)?.meta),
            Layout::V3 => Ok(Meta::file(0)),
        }
    }

    /// The whole value of the record at `entry`, CRC-checked.
    pub fn read_value(&self, key: &[u8], entry: &Entry) -> Result<Vec<u8>> {
        self.read_range(key, entry, 0, entry.value_len as usize)
    }

    /// `len` bytes of the value at `entry` from `start` (clipped to the value's end).
    /// Only that range is read from disk once the record has been checked.
    pub fn read_range(&self, key: &[u8], entry: &Entry, start: u64, len: usize) -> Result<Vec<u8>> {
        self.range(key, entry, start, len).map(Cow::into_owned)
    }

    /// `read_range` without a copy where the mapping holds the bytes.
    pub fn range(
        &self,
        key: &[u8],
        entry: &Entry,
        start: u64,
        len: usize,
    ) -> Result<Cow<'_, [u8]>> {
        let value_len = u64::from(entry.value_len);
        let start = start.min(value_len);
        let len = (len as u64).min(value_len - start) as usize;
        let offset = u64::from(entry.offset);
        let value_at = (self.layout.header_len() + key.len()) as u64;
        let record_len = value_at + value_len;
        if record_len <= WHOLE_CHECK_LIMIT {
            let from = (value_at + start) as usize;
            if let Some(rec) = self.mapped(offset, record_len as usize) {
                self.check_small(key, entry, rec)?;
                return Ok(Cow::Borrowed(&rec[from..from + len]));
            }
            let mut rec = self.read_at(offset, record_len as usize)?;
            self.check_small(key, entry, &rec)?;
            rec.copy_within(from..from + len, 0);
            rec.truncate(len);
            return Ok(Cow::Owned(rec));
        }
        self.check_large(key, entry)?;
        self.bytes(offset + value_at + start, len)
    }

    fn check_small(&self, key: &[u8], entry: &Entry, rec: &[u8]) -> Result<()> {
        let offset = u64::from(entry.offset);
        let h =
            Header::parse(rec, self.layout).map_err(|d| Error::corrupt(&self.path, offset, d))?;
        let head_len = self.layout.header_len();
        let key_ok = usize::from(h.key_len) == key.len()
            && rec.get(head_len..head_len + key.len()) == Some(key);
        if !key_ok || h.value_len != entry.value_len || !record::crc_ok(rec) {
            return Err(Error::corrupt(&self.path, offset, "checksum mismatch"));
        }
        Ok(())
    }

    fn check_large(&self, key: &[u8], entry: &Entry) -> Result<()> {
        if self.verified.lock().contains(&entry.offset) {
            return Ok(());
        }
        let h = self.header(key, entry)?;
        let offset = u64::from(entry.offset);
        let crc = self.crc_hasher(
            offset + record::CRC_FIELD.end as u64,
            offset + h.record_len(),
        )?;
        if crc.finalize() != h.crc {
            return Err(Error::corrupt(&self.path, offset, "checksum mismatch"));
        }
        self.verified.lock().insert(entry.offset);
        Ok(())
    }

    /// CRC32 state over the bytes in `[from, to)`, read in chunks.
    pub fn crc_hasher(&self, from: u64, to: u64) -> Result<crc32fast::Hasher> {
        let mut hasher = crc32fast::Hasher::new();
        let mut pos = from;
        while pos < to {
            let n = ((to - pos) as usize).min(CHUNK);
            hasher.update(&self.bytes(pos, n)?);
            pos += n as u64;
        }
        Ok(hasher)
    }

    pub fn set_max_seq(&self, seq: u64) {
        self.max_seq.fetch_max(seq, Ordering::Relaxed);
    }

    pub fn max_seq(&self) -> u64 {
        self.max_seq.load(Ordering::Relaxed)
    }
}

/// Read access to a segment's index: without a lock once it is frozen.
pub enum IndexRef<'a> {
    Frozen(&'a Index),
    Live(RwLockReadGuard<'a, Index>),
}

impl std::ops::Deref for IndexRef<'_> {
    type Target = Index;

    fn deref(&self) -> &Index {
        match self {
            IndexRef::Frozen(index) => index,
            IndexRef::Live(guard) => guard,
        }
    }
}

/// Like `read_exact_at`, but a short file is not an error: returns how many
/// bytes were read.
fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
