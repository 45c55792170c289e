//! The store: the public API over segments, indexes and the writer.
//!
//! Reads take a snapshot of the segment list (a `Version`) and never hold a
//! lock during I/O except the active index's read lock for a lookup. Writes
//! go through the one `Writer`; a roll or a merge installs a new `Version`.

use std::borrow::Cow;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};
use parking_lot::{Mutex, RwLock};

use super::background::Background;
use super::error::{Error, Result, show_key};
use super::format::{self, SEGMENT_HEADER_LEN};
use super::hint;
use super::index::{Entry, Index, hash_key};
use super::key::validate_key;
use super::lock::DirLock;
use super::manifest::Manifest;
use super::merge;
use super::merge_install::{self, MergeReport};
use super::merge_policy::{self, MergeOutlook};
use super::meta::Meta;
use super::options::{Options, SyncPolicy};
use super::record::{CRC_FIELD, HEADER_LEN, Header, Layout};
use super::recovery;
use super::segment::Segment;
use super::staged::Staged;
use super::stats::{self, Stats};
use super::tree::{EntryKind, Tree};
use super::version::Version;
use super::writer::{self, Change, Op, Source, Writer};

/// What `stat` needs of a live key: its value's length and its record's
/// metadata (see `Meta`).
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

    /// A regular file of `len` bytes with the default mode and owner,
    /// changed at `mtime`: what a plain `put` then would record.
    pub fn file(len: u64, mtime: SystemTime) -> Metadata {
        Metadata::new(len, &Meta::file(to_ns(mtime)))
    }

    /// The metadata part, as `put_with` and `set_meta` take it.
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

/// One change of a batch.
pub enum BatchOp<'a> {
    /// A put with the metadata of `Store::put`.
    Put(&'a [u8], &'a [u8]),
    PutWith(&'a [u8], &'a [u8], Meta),
    Delete(&'a [u8]),
}

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub opts: Options,
    pub version: RwLock<Arc<Version>>,
    pub writer: Mutex<Writer>,
    /// The MANIFEST as last written; held while it is rewritten.
    pub manifest: Mutex<Manifest>,
    /// (segment id, length) known to be on disk; group commit checks it.
    synced: Mutex<(u64, u64)>,
    /// One merge at a time.
    pub merge_lock: Mutex<()>,
    /// The folders and their entries, so that listing one folder does not
    /// visit the store; changed with the active index, under the writer.
    /// Built at the first question about folders: building it reads every
    /// live record's header (seconds for a million keys), and keeping it
    /// costs each new key a tree insert, which a store never listed by
    /// folder need not pay.
    pub tree: RwLock<Option<Tree>>,
    pub last_merge: Mutex<Option<MergeReport>>,
    /// Merges done since the store was opened.
    pub merges_done: AtomicU64,
    pub background: Background,
    _lock: DirLock,
}

pub struct Store {
    pub(super) inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn to_system_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// Nanoseconds since the epoch; times before it count as the epoch, times
/// past 2554 as the last one that fits.
/// Nanoseconds since the Unix epoch, as records store times.
pub fn to_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Store {
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Store> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        if dir.exists() && !dir.is_dir() {
            return Err(Error::NotADataDir {
                dir,
                detail: "not a directory".into(),
            });
        }
        if opts.create_if_missing && !opts.read_only {
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating data directory {}", dir.display()), e))?;
        }
        fs::metadata(&dir)
            .map_err(|e| Error::io(format!("data directory {}", dir.display()), e))?;
        let lock = DirLock::acquire(&dir)?;
        let rec = recovery::recover(&dir, &opts)?;
        let mut segments = rec.segments;
        let active = segments.pop().ok_or_else(|| Error::NotADataDir {
            dir: dir.clone(),
            detail: "MANIFEST lists no segments".into(),
        })?;
        segments.reverse();
        if opts.read_only {
            active.freeze();
        } else {
            active.map_for_append(opts.max_segment_size);
        }
        let writer = Writer::new(active.clone(), rec.active_len, rec.next_seq);
        let synced = (active.id, rec.active_len);
        info!(
            "opened {}: {} segments, next sequence {}",
            dir.display(),
            segments.len() + 1,
            rec.next_seq
        );
        let version = Version {
            active,
            closed: segments,
        };
        let inner = Arc::new(Inner {
            dir,
            opts,
            version: RwLock::new(Arc::new(version)),
            writer: Mutex::new(writer),
            manifest: Mutex::new(rec.manifest),
            synced: Mutex::new(synced),
            merge_lock: Mutex::new(()),
            tree: RwLock::new(None),
            last_merge: Mutex::new(None),
            merges_done: AtomicU64::new(0),
            background: Background::default(),
            _lock: lock,
        });
        if !inner.opts.read_only {
            let mut w = inner.writer.lock();
            if w.seg.layout != Layout::V2 {
                // Records are appended in the current layout only, so the
                // active segment of an older build's store takes no more.
                inner.roll(&mut w)?;
            }
        }
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
    /// the key has no live value).
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

    /// Stores `value` as a regular file with the default mode and owner
    /// (`Meta::file`), modified and changed now.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.put_with(key, value, &Meta::file(now_ns()))
    }

    pub fn put_with(&self, key: &[u8], value: &[u8], meta: &Meta) -> Result<()> {
        self.put_source(key, Source::Bytes(value), meta)
    }

    /// Stores exactly `len` bytes read from `reader` as the value of `key`,
    /// without holding the whole value in memory; metadata as `put`'s.
    pub fn put_from(&self, key: &[u8], len: u64, reader: &mut dyn Read) -> Result<()> {
        self.put_from_with(key, len, reader, &Meta::file(now_ns()))
    }

    pub fn put_from_with(
        &self,
        key: &[u8],
        len: u64,
        reader: &mut dyn Read,
        meta: &Meta,
    ) -> Result<()> {
        self.put_source(key, Source::Reader(reader, len), meta)
    }

    /// A file for a value too large to buffer in memory, to be stored as
    /// the value of a key of `key_len` bytes with `put_staged`.
    pub fn stage(&self, key_len: usize) -> Result<Staged> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let id = self.inner.reserve_id();
        let from_len = self.inner.opts.max_segment_size / 2;
        Staged::for_segment(self.dir(), id, key_len, from_len).map_err(|e| {
            Error::io(
                format!("creating a staged file in {}", self.dir().display()),
                e,
            )
        })
    }

    /// Stores the value in `staged` as the value of `key`. A value of half
    /// a segment or more, staged for a key of this length, becomes a
    /// segment of its own without being copied; a smaller one is copied
    /// into the active segment, and `staged` comes back for more writes.
    pub fn put_staged(&self, key: &[u8], staged: Staged, meta: &Meta) -> Result<Option<Staged>> {
        validate_key(key)?;
        check_meta(key, meta)?;
        self.check_value_len(key, staged.len())?;
        if let Some(a) = staged.adoptable_for(key.len()) {
            self.inner.adopt(key, staged, a.id, meta)?;
            return Ok(None);
        }
        self.put_from_with(key, staged.len(), &mut staged.reader(), meta)?;
        Ok(Some(staged))
    }

    fn put_source<'a>(&self, key: &'a [u8], value: Source<'a>, meta: &Meta) -> Result<()> {
        validate_key(key)?;
        check_meta(key, meta)?;
        self.check_value_len(key, value.len())?;
        let mut ops = [Op {
            key,
            change: Change::Put { value, meta: *meta },
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

    /// Sets the metadata of `key` (all of it, as given) by rewriting its
    /// record; `NotFound` when the key has no live value.
    pub fn set_meta(&self, key: &[u8], meta: &Meta) -> Result<()> {
        validate_key(key)?;
        check_meta(key, meta)?;
        self.copy_value(key, key, Some(*meta))
    }

    /// Appends a tombstone; `NotFound` when the key has no live value.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        validate_key(key)?;
        let mut ops = [Op {
            key,
            change: Change::Delete,
        }];
        self.inner
            .commit(&mut ops, |i| live(&i.version(), key).map(|_| true))
            .map(|_| ())
    }

    /// Moves the value of `from` to `to` (replacing it) in one batch record:
    /// after a crash either both halves happened or neither did. The value
    /// keeps its metadata, but for its ctime: now.
    pub fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        validate_key(from)?;
        validate_key(to)?;
        if from == to {
            return live(&self.inner.version(), from).map(|_| ());
        }
        self.copy_value(from, to, None)
    }

    /// Writes the live value of `from` as the value of `to` (deleting `from`
    /// when the names differ), copying it record to record, with `meta`, or
    /// by default the source's metadata changed now. If `from` changes
    /// between the look-up and the write lock, it starts again.
    fn copy_value(&self, from: &[u8], to: &[u8], meta: Option<Meta>) -> Result<()> {
        loop {
            let version = self.inner.version();
            let (seg, e) = live(&version, from)?;
            let meta = match meta {
                Some(m) => m,
                None => Meta {
                    ctime: now_ns(),
                    ..seg.meta(from, &e)?
                },
            };
            let put = Op {
                key: to,
                change: Change::Put {
                    value: Source::Stored(seg.clone(), e, from),
                    meta,
                },
            };
            let mut ops = Vec::with_capacity(2);
            if from != to {
                ops.push(Op {
                    key: from,
                    change: Change::Delete,
                });
            }
            ops.push(put);
            let unchanged = |i: &Inner| {
                live(&i.version(), from).map(|(s, now)| Arc::ptr_eq(s, seg) && now == e)
            };
            if self.inner.commit(&mut ops, unchanged)? {
                return Ok(());
            }
        }
    }

    /// Applies several puts and deletes as one atomic record. Deletes of
    /// absent keys are allowed here. The record's value is the changes'
    /// records, so those together (values, keys and headers) are held to
    /// the value size limit.
    pub fn write_batch(&self, batch: &[BatchOp]) -> Result<()> {
        let now = Meta::file(now_ns());
        let mut ops = Vec::with_capacity(batch.len());
        for b in batch {
            let (key, put) = match *b {
                BatchOp::Put(key, value) => (key, Some((value, now))),
                BatchOp::PutWith(key, value, meta) => (key, Some((value, meta))),
                BatchOp::Delete(key) => (key, None),
            };
            validate_key(key)?;
            let change = match put {
                Some((value, meta)) => {
                    check_meta(key, &meta)?;
                    self.check_value_len(key, value.len() as u64)?;
                    Change::Put {
                        value: Source::Bytes(value),
                        meta,
                    }
                }
                None => Change::Delete,
            };
            ops.push(Op { key, change });
        }
        if ops.is_empty() {
            return Ok(());
        }
        if ops.len() > 1 {
            // One record whose value is the changes' records.
            let inner = writer::encoded_len(&ops) - HEADER_LEN as u64;
            if inner > self.inner.opts.max_value_size {
                return Err(Error::BatchTooLarge {
                    changes: ops.len(),
                    len: inner,
                    max: self.inner.opts.max_value_size,
                });
            }
        }
        self.inner.commit(&mut ops, |_| Ok(true)).map(|_| ())
    }

    /// The entries of folder `dir` (`b""` is the top), in name order;
    /// `None` when `dir` is not a folder. Costs the folder's entries, not
    /// the store's.
    pub fn list(&self, dir: &[u8]) -> Option<Vec<(Vec<u8>, EntryKind)>> {
        self.with_tree(|t| t.list(dir))
    }

    /// What `key` is in the tree of folders, if anything: folders implied
    /// by the keys below them included.
    pub fn kind(&self, key: &[u8]) -> Option<EntryKind> {
        self.with_tree(|t| t.kind(key))
    }

    /// How many entries folder `dir` holds, and how many are folders.
    pub fn folder_counts(&self, dir: &[u8]) -> (usize, u32) {
        self.with_tree(|t| t.counts(dir))
    }

    /// Every key below folder `dir`, parents before their entries; `None`
    /// if there are more than `limit`.
    pub fn below(&self, dir: &[u8], limit: usize) -> Option<Vec<(Vec<u8>, EntryKind)>> {
        self.with_tree(|t| t.below(dir, limit))
    }

    /// Runs `f` on the tree of folders, building it first if no one asked
    /// before (under the writer, so that no commit is missed meanwhile).
    pub(super) fn with_tree<R>(&self, f: impl FnOnce(&Tree) -> R) -> R {
        if let Some(tree) = self.inner.tree.read().as_ref() {
            return f(tree);
        }
        let _writer = self.inner.writer.lock();
        let mut slot = self.inner.tree.write();
        let tree = slot.get_or_insert_with(|| build_tree(&self.inner.version()));
        f(tree)
    }

    /// A consistent, sorted snapshot of the live keys.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let version = self.inner.version();
        // Holding the active index read lock keeps writes out while we look.
        let active = version.active.index();
        let mut seen = hashbrown::HashSet::new();
        let mut live = Vec::new();
        let mut visit = |key: &[u8], e: Entry| {
            if seen.insert(key.to_vec()) && !e.tombstone {
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

pub(super) fn check_meta(key: &[u8], meta: &Meta) -> Result<()> {
    match meta.invalid() {
        Some(reason) => Err(Error::InvalidMeta {
            key: show_key(key),
            mode: meta.mode,
            reason,
        }),
        None => Ok(()),
    }
}

/// The live record of `key` in `v`, or `NotFound`.
pub(super) fn live<'v>(v: &'v Version, key: &[u8]) -> Result<(&'v Arc<Segment>, Entry)> {
    match v.lookup(hash_key(key), key) {
        Some((seg, e)) if !e.tombstone => Ok((seg, e)),
        _ => Err(not_found(key)),
    }
}

impl Inner {
    pub fn version(&self) -> Arc<Version> {
        self.version.read().clone()
    }

    /// Appends `ops` under the write lock if `precheck` (run under the lock,
    /// so nothing changes in between) returns true for the current state;
    /// then indexes them, and syncs when the policy says so. Returns whether
    /// anything was written.
    pub(super) fn commit(
        &self,
        ops: &mut [Op],
        precheck: impl FnOnce(&Inner) -> Result<bool>,
    ) -> Result<bool> {
        if self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let (seg_id, end) = {
            let mut w = self.writer.lock();
            if !precheck(self)? {
                return Ok(false);
            }
            if !w.is_empty() && w.len + writer::encoded_len(ops) > self.opts.max_segment_size {
                self.roll(&mut w)?;
            }
            let entries = w.append(ops, now_ns())?;
            let mut index = w.seg.index_mut();
            for (op, e) in ops.iter().zip(entries) {
                index.insert(hash_key(op.key), op.key, e);
            }
            drop(index);
            if let Some(tree) = self.tree.write().as_mut() {
                for op in ops.iter() {
                    match &op.change {
                        Change::Put { meta, .. } => {
                            tree.insert(op.key, EntryKind::of_mode(meta.mode))
                        }
                        Change::Delete => tree.remove(op.key),
                    }
                }
            }
            (w.seg.id, w.len)
        };
        if self.opts.sync == SyncPolicy::Always {
            self.sync_upto(seg_id, end)?;
        }
        Ok(true)
    }

    /// Group commit: whoever gets the sync lock first syncs everything
    /// appended so far, and the ones queued behind find their data covered.
    /// Lock order is `synced` then `writer`; a roll (under `writer`) never
    /// takes `synced`: it syncs the segment it closes itself.
    fn sync_upto(&self, seg_id: u64, end: u64) -> Result<()> {
        let mut synced = self.synced.lock();
        if *synced >= (seg_id, end) {
            return Ok(());
        }
        let (seg, len) = {
            let w = self.writer.lock();
            (w.seg.clone(), w.len)
        };
        seg.file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", seg.path.display()), e))?;
        *synced = (seg.id, len);
        Ok(())
    }

    pub fn sync_all(&self) -> Result<()> {
        let (id, len) = {
            let w = self.writer.lock();
            (w.seg.id, w.len)
        };
        self.sync_upto(id, len)
    }

    /// Writes the hints of segments closed by a roll since the last call.
    /// A segment whose hint cannot be written is scanned at the next open.
    pub fn write_pending_hints(&self) {
        // A merge must not delete a segment while its hint is being written.
        let _no_merge = self.merge_lock.lock();
        for seg in &self.version().closed {
            if seg.needs_hint.swap(false, Ordering::AcqRel) {
                let index = seg.index();
                if let Err(e) =
                    hint::write(&self.dir, seg.id, seg.file_len(), seg.max_seq(), &index)
                {
                    warn!("{e}; the segment will be scanned at the next open");
                }
            }
        }
    }

    /// Closes the active segment (synced and mapped) and starts a new one,
    /// recorded in the MANIFEST before any record goes into it.
    pub fn roll(&self, w: &mut Writer) -> Result<()> {
        let seg = Segment::create(&self.dir, self.reserve_id())?;
        let next_seq = w.next_seq;
        self.install_active(w, seg, SEGMENT_HEADER_LEN as u64, next_seq)
    }

    /// A segment id of its own for a file not yet in the MANIFEST; its
    /// order among the segments is the MANIFEST's, not the id's.
    pub fn reserve_id(&self) -> u64 {
        let mut m = self.manifest.lock();
        m.next_id += 1;
        m.next_id - 1
    }

    /// Closes the active segment (synced and mapped) and makes `seg`, whose
    /// records end at `len`, the active one, recorded in the MANIFEST
    /// before any record is appended. On failure `seg`'s file is removed.
    fn install_active(&self, w: &mut Writer, seg: Segment, len: u64, next_seq: u64) -> Result<()> {
        let old = w.seg.clone();
        let seg = Arc::new(seg);
        let installed = old
            .truncate(w.len)
            .and_then(|_| old.file.sync_data())
            .map_err(|e| Error::io(format!("closing {}", old.path.display()), e))
            .and_then(|_| {
                let mut manifest = self.manifest.lock();
                let mut next = manifest.clone();
                next.segments.push(seg.id);
                next.store(&self.dir)?;
                *manifest = next;
                Ok(())
            });
        if let Err(e) = installed {
            let _ = fs::remove_file(&seg.path);
            return Err(e);
        }
        seg.map_for_append(self.opts.max_segment_size);
        old.freeze();
        // Its hint is written by the background thread, off the write path.
        old.needs_hint.store(true, Ordering::Release);
        *w = Writer::new(seg.clone(), len, next_seq);
        let mut version = self.version.write();
        let mut closed = Vec::with_capacity(version.closed.len() + 1);
        closed.push(old);
        closed.extend(version.closed.iter().cloned());
        *version = Arc::new(Version {
            active: seg,
            closed,
        });
        drop(version);
        self.background.note_roll();
        Ok(())
    }

    /// Merges every closed segment. `Ok(None)` when there is nothing to merge.
    pub fn compact_all(&self) -> Result<Option<MergeReport>> {
        let _one_at_a_time = self.merge_lock.lock();
        let ids = merge_policy::all_closed(&self.version());
        if ids.is_empty() {
            return Ok(None);
        }
        self.merge_locked(&ids).map(Some)
    }

    /// Merges the closed segments `ids` (oldest first), which must be next
    /// to each other in the segment order.
    pub fn merge(&self, ids: &[u64]) -> Result<MergeReport> {
        let _one_at_a_time = self.merge_lock.lock();
        self.merge_locked(ids)
    }

    fn merge_locked(&self, ids: &[u64]) -> Result<MergeReport> {
        let started = Instant::now();
        let version = self.version();
        let merged = merge::merge(&self.dir, &self.opts, &version, ids, || self.reserve_id())?;
        let report = merge_install::install(
            &self.dir,
            self.opts.crash_point,
            &self.manifest,
            &self.version,
            merged,
            started,
        )?;
        *self.last_merge.lock() = Some(report.clone());
        self.merges_done.fetch_add(1, Ordering::Relaxed);
        Ok(report)
    }

    /// What a merge of every closed segment would do now (see
    /// `merge_policy::outlook`).
    pub fn merge_outlook(&self) -> MergeOutlook {
        merge_policy::outlook(&self.version(), &self.opts)
    }

    /// Stores `staged` as the value of `key` by making its file the active
    /// segment (see `Staged`). The value's CRC is read before the writer's
    /// lock is taken, so other writers wait only for the rename and the
    /// MANIFEST.
    fn adopt(&self, key: &[u8], staged: Staged, id: u64, meta: &Meta) -> Result<()> {
        let io_err = |e| Error::io(format!("storing the value of \"{}\"", show_key(key)), e);
        let value_crc = staged.value_crc().map_err(io_err)?;
        let len = staged.len();
        let (seg_id, end) = {
            let mut w = self.writer.lock();
            let seq = w.next_seq;
            let h = Header::put(seq, false, key.len() as u16, len as u32, *meta);
            let mut head = h.encode().to_vec();
            head.extend_from_slice(key);
            let mut crc = crc32fast::Hasher::new();
            crc.update(&head[CRC_FIELD.end..]);
            crc.combine(&value_crc);
            head[CRC_FIELD].copy_from_slice(&crc.finalize().to_le_bytes());
            let path = format::segment_path(&self.dir, id);
            let file = staged.into_segment_file(&head, &path).map_err(io_err)?;
            let seg = Segment::with_file(id, path, file, Index::default(), Layout::V2)?;
            let at = SEGMENT_HEADER_LEN as u64;
            seg.index_mut()
                .insert(hash_key(key), key, writer::entry_for(&h, at));
            seg.set_max_seq(seq);
            let end = at + head.len() as u64 + len;
            self.install_active(&mut w, seg, end, seq + 1)?;
            debug!(
                "stored {len} bytes of \"{}\" as segment {id}, without a copy",
                show_key(key)
            );
            if let Some(tree) = self.tree.write().as_mut() {
                tree.insert(key, EntryKind::of_mode(meta.mode));
            }
            (id, end)
        };
        if self.opts.sync == SyncPolicy::Always {
            self.sync_upto(seg_id, end)?;
        }
        Ok(())
    }
}

/// The tree of folders of the live keys in `version`. A record whose
/// header cannot be read counts as a file (reading it reports the damage).
/// The tree of the live records, newest segment first: a key already in
/// the tree, or whose newer record is a tombstone, is an older record.
/// Only the deleted keys are remembered apart, so a store of live keys
/// costs no allocation per key beyond the tree's own.
fn build_tree(version: &Version) -> Tree {
    let mut tree = Tree::default();
    let mut deleted = hashbrown::HashSet::new();
    for seg in version.newest_first() {
        for (key, e) in seg.index().iter() {
            if tree.has_record(key) {
                continue;
            }
            if e.tombstone {
                deleted.insert(key.to_vec());
                continue;
            }
            if !deleted.is_empty() && deleted.contains(key) {
                continue;
            }
            let kind = seg
                .meta(key, &e)
                .map_or(EntryKind::File, |m| EntryKind::of_mode(m.mode));
            tree.insert(key, kind);
        }
    }
    tree
}
