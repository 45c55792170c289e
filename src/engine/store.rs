//! The store: the public API over segments, indexes and the writer.
//!
//! Reads take a snapshot of the segment list (a `Version`) and never hold a
//! lock during I/O except the active index's read lock for a lookup. Writes
//! go through the one `Writer`; a roll or a merge installs a new `Version`.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::{Error, Result, show_key};
use super::index::{Entry, hash_key};
use super::inner::Inner;
use super::key::check_key;
use super::merge_install::{self, MergeReport};
use super::merge_policy::MergeOutlook;
use super::meta::Meta;
use super::options::{Options, SyncPolicy};
use super::record::HEADER_LEN;
use super::segment::Segment;
use super::stats::{self, Stats};
use super::version::Version;
use super::writer::{self, Change, Op, Source};

/// A live key's value length and its record's metadata (see `Meta`): a
/// file's mode, owner and times in a record of version 1 or 2, what
/// carrying an old store over into the schema reads (src/upgrade.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub len: u64,
    pub mtime: SystemTime,
    /// `st_mode`, file type bits included.
    pub mode: u32,
    /// `OWNER_UNSET` for "whoever mounts the store".
    pub uid: u32,
    pub gid: u32,
    pub ctime: SystemTime,
}

impl Metadata {
    /// A value of `len` bytes whose record has `meta`.
    pub fn new(len: u64, meta: &Meta) -> Metadata {
        Metadata {
            len,
            mtime: to_system_time(meta.mtime),
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            ctime: to_system_time(meta.ctime),
        }
    }

    /// The metadata part, as the record holds it.
    pub fn meta(&self) -> Meta {
        Meta {
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: to_ns(self.mtime),
            ctime: to_ns(self.ctime),
        }
    }
}

/// A committed value pinned where it lies (see `Store::value`). Its
/// segment file stays open while the `Value` lives.
pub struct Value {
    seg: Arc<Segment>,
    entry: Entry,
    key: Box<[u8]>,
    metadata: Metadata,
}

impl Value {
    /// The value's metadata, as read when it was pinned (a record's never
    /// changes).
    pub fn metadata(&self) -> Metadata {
        self.metadata
    }

    /// Up to `len` bytes from `offset` (fewer at the end), CRC-checked.
    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.bytes(offset, len).map(Cow::into_owned)
    }

    /// `read`, borrowed from the segment's mapping where it can be.
    pub fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        self.seg.range(&self.key, &self.entry, offset, len)
    }
}

/// What `Store::scan_prefix` hands each key to: its value, or `None` for
/// a tombstone.
pub type ScanVisit<'a> = dyn FnMut(&[u8], Option<&[u8]>) + 'a;

/// One change of a batch.
pub enum BatchOp<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
}

pub struct Store {
    pub(super) inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

fn to_system_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// Nanoseconds since the Unix epoch, as records store times; times before
/// it count as the epoch, times past 2554 as the last one that fits.
fn to_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Store {
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Store> {
        let inner = Arc::new(Inner::open(dir.as_ref(), opts)?);
        let mut threads = Vec::new();
        if !inner.opts.read_only {
            if let SyncPolicy::Interval(every) = inner.opts.sync {
                let inner = inner.clone();
                threads.push(std::thread::spawn(move || {
                    inner.background.flush_every(every, || inner.sync_all())
                }));
            }
            // Runs even with compaction off, to serve explicit requests.
            let inner = inner.clone();
            threads.push(std::thread::spawn(move || {
                inner.background.merge_when_worth_it(
                    &inner.opts,
                    || inner.write_pending_hints(),
                    || inner.merge_outlook().worth_merging(&inner.opts),
                    || inner.compact_all(),
                )
            }));
        }
        Ok(Store { inner, threads })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// The current value of `key`, or `None`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let version = self.inner.version();
        match version.lookup(hash_key(key), key) {
            Some((seg, e)) if !e.tombstone => seg.read_value(key, &e).map(Some),
            _ => Ok(None),
        }
    }

    /// Up to `len` bytes of the value of `key` from `offset`; fewer at the
    /// end of the value, none past it. Only that range is read from disk.
    pub fn read(&self, key: &[u8], offset: u64, len: usize) -> Result<Vec<u8>> {
        let version = self.inner.version();
        match version.lookup(hash_key(key), key) {
            Some((seg, e)) if !e.tombstone => seg.read_range(key, &e, offset, len),
            _ => Err(not_found(key)),
        }
    }

    /// The metadata of `key`, read from its record's header (`None` when
    /// the key has no live value). Only records of versions 1 and 2 hold
    /// any; a version-3 record reads as `Meta::file(0)`.
    pub fn metadata(&self, key: &[u8]) -> Result<Option<Metadata>> {
        let version = self.inner.version();
        match version.lookup(hash_key(key), key) {
            Some((seg, e)) if !e.tombstone => {
                let meta = seg.meta(key, &e)?;
                Ok(Some(Metadata::new(u64::from(e.value_len), &meta)))
            }
            _ => Ok(None),
        }
    }

    /// The live value of `key`, held where it lies: reads of it keep
    /// returning these bytes whatever happens to the key afterwards (an
    /// overwrite, a delete, a merge that removes its segment file).
    pub fn value(&self, key: &[u8]) -> Result<Option<Value>> {
        let version = self.inner.version();
        match version.lookup(hash_key(key), key) {
            Some((seg, e)) if !e.tombstone => {
                let meta = seg.meta(key, &e)?;
                Ok(Some(Value {
                    seg: seg.clone(),
                    entry: e,
                    key: key.into(),
                    metadata: Metadata::new(u64::from(e.value_len), &meta),
                }))
            }
            _ => Ok(None),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        let version = self.inner.version();
        version
            .lookup(hash_key(key), key)
            .is_some_and(|(_, e)| !e.tombstone)
    }

    /// Stores `value` as the value of `key`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_source(key, Source::Bytes(value))
    }

    /// Stores exactly `len` bytes read from `reader` as the value of `key`,
    /// without holding the whole value in memory.
    pub fn put_from(&self, key: &[u8], len: u64, reader: &mut dyn Read) -> Result<()> {
        self.put_source(key, Source::Reader(reader, len))
    }

    fn put_source<'a>(&self, key: &'a [u8], value: Source<'a>) -> Result<()> {
        check_key(key)?;
        self.check_value_len(key, value.len())?;
        let mut ops = [Op {
            key,
            change: Change::Put { value },
        }];
        self.inner.commit(&mut ops, |_| Ok(true)).map(|_| ())
    }

    fn check_value_len(&self, key: &[u8], len: u64) -> Result<()> {
        let max = self.inner.opts.max_value_size;
        if len > max {
            return Err(Error::ValueTooLarge {
                key: show_key(key),
                len,
                max,
            });
        }
        Ok(())
    }

    /// Appends a tombstone; `NotFound` when the key has no live value.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        check_key(key)?;
        let mut ops = [Op {
            key,
            change: Change::Delete,
        }];
        self.inner
            .commit(&mut ops, |i| live(&i.version(), key).map(|_| true))
            .map(|_| ())
    }

    /// Applies several puts and deletes as one atomic record. Deletes of
    /// absent keys are allowed here. The record's value is the changes'
    /// records, so those together (values, keys and headers) are held to
    /// the value size limit.
    pub fn write_batch(&self, batch: &[BatchOp]) -> Result<()> {
        self.apply_as(batch, true)
    }

    /// `write_batch` of changes that may be applied one after another:
    /// each is a record of its own (no batch record around them), in this
    /// order, so a crash may keep only the first ones.
    pub fn apply_in_order(&self, batch: &[BatchOp]) -> Result<()> {
        self.apply_as(batch, false)
    }

    fn apply_as(&self, batch: &[BatchOp], atomic: bool) -> Result<()> {
        let mut ops = Vec::with_capacity(batch.len());
        for b in batch {
            let (BatchOp::Put(key, _) | BatchOp::Delete(key)) = *b;
            check_key(key)?;
            let change = match *b {
                BatchOp::Put(_, value) => {
                    self.check_value_len(key, value.len() as u64)?;
                    let value = Source::Bytes(value);
                    Change::Put { value }
                }
                BatchOp::Delete(_) => Change::Delete,
            };
            ops.push(Op { key, change });
        }
        if ops.is_empty() {
            return Ok(());
        }
        if ops.len() > 1 && atomic {
            // One record whose value is the changes' records.
            let inner = writer::encoded_len(&ops, true) - HEADER_LEN as u64;
            if inner > self.inner.opts.max_value_size {
                return Err(Error::BatchTooLarge {
                    changes: ops.len(),
                    len: inner,
                    max: self.inner.opts.max_value_size,
                });
            }
        }
        self.inner
            .commit_as(&mut ops, atomic, |_| Ok(true))
            .map(|_| ())
    }

    /// A consistent, sorted snapshot of the live keys.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.keys_with_prefix(b"")
    }

    /// `keys` that start with `prefix`; only those are copied, so asking
    /// for a few among millions costs a look at each, not a copy.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        let version = self.inner.version();
        // Holding the active index read lock keeps writes out while we look.
        let active = version.active.index();
        let mut seen = hashbrown::HashSet::new();
        let mut live = Vec::new();
        let mut visit = |key: &[u8], e: Entry| {
            if key.starts_with(prefix) && seen.insert(key.to_vec()) && !e.tombstone {
                live.push(key.to_vec());
            }
        };
        for (k, e) in active.iter() {
            visit(k, e);
        }
        for seg in &version.closed {
            for (k, e) in seg.index().iter() {
                visit(k, e);
            }
        }
        drop(active);
        live.sort_unstable();
        live
    }

    /// Calls `each` with every key that starts with `prefix` and its value
    /// (`None` for a tombstone), segment by segment from the oldest, so
    /// that the last call for a key says what it holds now. Within a
    /// segment records are read in file order. For loading what a mount
    /// keeps in memory (the filesystem's directory entries).
    pub fn scan_prefix(&self, prefix: &[u8], each: &mut ScanVisit) -> Result<()> {
        let version = self.inner.version();
        let oldest_first: Vec<&Arc<Segment>> = version.newest_first().collect();
        for seg in oldest_first.into_iter().rev() {
            // Holding the index keeps writes to the active segment out.
            let index = seg.index();
            let mut found: Vec<(&[u8], Entry)> = index
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .collect();
            found.sort_unstable_by_key(|(_, e)| e.offset);
            for (key, e) in found {
                if e.tombstone {
                    each(key, None);
                } else {
                    each(key, Some(&seg.range(key, &e, 0, e.value_len as usize)?));
                }
            }
        }
        Ok(())
    }

    /// Says that no record of an older layout holds metadata that is still
    /// needed (the store is carried over into the filesystem's schema, or
    /// never needed it): merges write the current layout from now on.
    pub fn metadata_carried_over(&self) {
        self.inner
            .legacy_meta
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Forces everything appended so far to disk.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync_all()
    }

    pub fn stats(&self) -> Result<Stats> {
        let version = self.inner.version();
        let active_len = self.inner.writer.lock().len;
        let mut stats = stats::of_segments(&version, active_len);
        stats.last_merge = merge_install::read_last_merge(&self.inner.dir);
        stats.merges_done = self.inner.merges_done.load(Ordering::Relaxed);
        stats.merge_running = self.inner.merge_lock.is_locked();
        Ok(stats)
    }

    /// Merges done since the store was opened.
    pub fn merges_done(&self) -> u64 {
        self.inner.merges_done.load(Ordering::Relaxed)
    }

    /// Merges all closed segments now, in the calling thread.
    pub fn compact(&self) -> Result<Option<MergeReport>> {
        self.inner.compact_all()
    }

    /// What a merge of every closed segment would do now; its
    /// `worth_merging(store.options())` is what the merge thread decides by.
    pub fn merge_outlook(&self) -> MergeOutlook {
        self.inner.merge_outlook()
    }

    /// Merges the closed segments `ids` (oldest first, next to each other).
    pub fn compact_segments(&self, ids: &[u64]) -> Result<MergeReport> {
        self.inner.merge(ids)
    }

    /// Asks the merge thread to merge now, without waiting for it.
    pub fn request_compaction(&self) {
        self.inner.background.request_merge();
    }

    /// The last merge this process ran.
    pub fn last_merge(&self) -> Option<MergeReport> {
        self.inner.last_merge.lock().clone()
    }

    /// Flushes to disk and releases the directory.
    pub fn close(mut self) -> Result<()> {
        self.stop_threads();
        if self.inner.opts.read_only {
            return Ok(());
        }
        self.inner.write_pending_hints();
        {
            // Give back the space allocated ahead of the writer.
            let w = self.inner.writer.lock();
            w.seg.truncate(w.len).map_err(|e| {
                Error::io(
                    format!("cutting {} to its records", w.seg.path.display()),
                    e,
                )
            })?;
        }
        self.inner.sync_all()
    }

    fn stop_threads(&mut self) {
        self.inner.background.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Closes the active segment and starts a new one now.
    pub fn roll(&self) -> Result<()> {
        let mut w = self.inner.writer.lock();
        self.inner.roll(&mut w)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn not_found(key: &[u8]) -> Error {
    Error::NotFound { key: show_key(key) }
}

/// The live record of `key` in `v`, or `NotFound`.
fn live<'v>(v: &'v Version, key: &[u8]) -> Result<(&'v Arc<Segment>, Entry)> {
    match v.lookup(hash_key(key), key) {
        Some((seg, e)) if !e.tombstone => Ok((seg, e)),
        _ => Err(not_found(key)),
    }
}
