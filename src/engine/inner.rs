//! The store's shared state, owned by `Store` and its background threads:
//! the segment list, the one `Writer`, the MANIFEST, and the write path
//! over them (commit and group commit, rolls), and the entry points of
//! merges. Everything that changes the segment list
//! goes through here; the pieces it calls (`merge`, `merge_install`,
//! `stats`, `background`) are handed what they need.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use log::{info, warn};
use parking_lot::{Mutex, RwLock};

use super::background::Background;
use super::error::{Error, Result};
use super::format::SEGMENT_HEADER_LEN;
use super::hint;
use super::index::hash_key;
use super::lock::DirLock;
use super::manifest::Manifest;
use super::merge;
use super::merge_install::{self, MergeReport};
use super::merge_policy::{self, MergeOutlook};
use super::options::{Options, SyncPolicy};
use super::record::Layout;
use super::recovery;
use super::segment::Segment;
use super::version::Version;
use super::writer::{self, Op, Writer};

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
    pub last_merge: Mutex<Option<MergeReport>>,
    /// Merges done since the store was opened.
    pub merges_done: AtomicU64,
    /// Some segments are of an older layout whose records may hold a
    /// file's mode, owner and times, which merges must then keep (they
    /// write version 2) until those files are carried over
    /// (`Store::metadata_carried_over`).
    pub legacy_meta: AtomicBool,
    pub background: Background,
    _lock: DirLock,
}

impl Inner {
    /// Opens the store in `dir`: recovery, then a roll if the active
    /// segment is laid out as an older build wrote it.
    pub fn open(dir: &Path, opts: Options) -> Result<Inner> {
        opts.validate()?;
        let dir = dir.to_path_buf();
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
        let legacy_meta = std::iter::once(&active)
            .chain(&segments)
            .any(|s| s.layout != Layout::CURRENT);
        let version = Version {
            active,
            closed: segments,
        };
        let inner = Inner {
            dir,
            opts,
            version: RwLock::new(Arc::new(version)),
            writer: Mutex::new(writer),
            manifest: Mutex::new(rec.manifest),
            synced: Mutex::new(synced),
            merge_lock: Mutex::new(()),
            last_merge: Mutex::new(None),
            merges_done: AtomicU64::new(0),
            legacy_meta: AtomicBool::new(legacy_meta),
            background: Background::default(),
            _lock: lock,
        };
        if !inner.opts.read_only {
            let mut w = inner.writer.lock();
            if w.seg.layout != Layout::CURRENT {
                // Records are appended in the current layout only, so the
                // active segment of an older build's store takes no more.
                inner.roll(&mut w)?;
            }
        }
        Ok(inner)
    }

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
        self.commit_as(ops, true, precheck)
    }

    /// `commit`, of several ops as records of their own unless `atomic`.
    pub(super) fn commit_as(
        &self,
        ops: &mut [Op],
        atomic: bool,
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
            let len = writer::encoded_len(ops, atomic);
            if !w.is_empty() && w.len + len > self.opts.max_segment_size {
                self.roll(&mut w)?;
            }
            let entries = w.append(ops, atomic)?;
            let mut index = w.seg.index_mut();
            for (op, e) in ops.iter().zip(entries) {
                index.insert(hash_key(op.key), op.key, e);
            }
            drop(index);
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
    /// recorded in the MANIFEST before any record goes into it. On failure
    /// the new segment's file is removed.
    pub fn roll(&self, w: &mut Writer) -> Result<()> {
        let seg = Arc::new(Segment::create(&self.dir, self.reserve_id())?);
        let old = w.seg.clone();
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
        *w = Writer::new(seg.clone(), SEGMENT_HEADER_LEN as u64, w.next_seq);
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

    /// A segment id of its own for a file not yet in the MANIFEST; its
    /// order among the segments is the MANIFEST's, not the id's.
    fn reserve_id(&self) -> u64 {
        let mut m = self.manifest.lock();
        m.next_id += 1;
        m.next_id - 1
    }

    fn merge_locked(&self, ids: &[u64]) -> Result<MergeReport> {
        let started = Instant::now();
        let version = self.version();
        let layout = match self.legacy_meta.load(Ordering::Acquire) {
            true => Layout::V2,
            false => Layout::CURRENT,
        };
        let merged = merge::merge(&self.dir, &self.opts, &version, ids, layout, || {
            self.reserve_id()
        })?;
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
}
