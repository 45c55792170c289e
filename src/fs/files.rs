//! Open files: opening, reading and writing through drafts, and the
//! commits at close (flush), fsync and the last close (release).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use log::debug;

use super::commit;
use super::draft::{Closer, Draft};
use super::errno::{Error, Result};
use super::fs::{CaskFs, Opened};
use super::handle::{Handle, OpenMode};
use super::live::{Live, Pin};
use super::page_cache::{CacheState, ReadMode};
use super::process::Opener;
use crate::backend::Batch;
use crate::schema::tree::{self, Extent};
use crate::schema::{Data, Inode, keys};
use crate::vocab::{FileType, to_ns};

impl CaskFs {
    pub fn open(&self, node: u64, flags: i32, tid: u32) -> Result<Opened> {
        let opened = self.open_inode(node, flags, tid);
        if let Err(Error::Stale) = opened {
            let e = self.vanished(tid);
            let mode = OpenMode::of(flags);
            // The retry lost its file to an rm again: a writer opens as if
            // just before that, and its writes go with the file, as with
            // any file removed while open. ENOENT would fail `echo v > k`,
            // which creates it ("Directory nonexistent").
            let ino = self.nodeids.ino_of(node);
            if matches!(e, Error::NotFound) && mode.write && self.writer_may_open_removed(node, tid)
            {
                self.writable()?;
                return Ok(self.open_writer(node, ino, mode, tid));
            }
            return Err(e);
        }
        if opened.is_ok() {
            self.forget_stale(tid);
        }
        opened
    }

    pub(super) fn open_inode(&self, node: u64, flags: i32, tid: u32) -> Result<Opened> {
        if self.nodeids.is_retired(node) {
            return Err(Error::Stale);
        }
        let ino = self.nodeids.ino_of(node);
        let inode = self.inode(ino)?.ok_or(Error::Stale)?;
        match inode.kind {
            FileType::Directory => return Err(Error::IsADirectory),
            FileType::Regular => {}
            // The kernel follows symlinks, and opens devices, FIFOs and
            // sockets itself.
            _ => return Err(Error::InvalidArgument("open of a file that is not regular")),
        }
        let mode = OpenMode::of(flags);
        if !mode.write {
            return self.open_reader(node, ino, mode);
        }
        self.writable()?;
        if self.retrying(tid) {
            self.wait_for_cached_readers(node, tid);
        }
        let live = self.lives.get(ino);
        // No reader may start reading through the cache between the check
        // and the writer's arrival.
        let _cache = self.cache_lock(&live);
        if self.nodeids.node_of(ino) != node {
            return Err(Error::Stale);
        }
        self.make_way_for_writer(node, &live, tid)?;
        self.cache_event(node, &live, |c| c.writer_opened(tid));
        Ok(self.open_writer(node, ino, mode, tid))
    }

    pub(super) fn open_writer(&self, node: u64, ino: u64, mode: OpenMode, tid: u32) -> Opened {
        let (fh, h) = self
            .handles
            .insert_writer(node, ino, mode, tid, |o| Draft::writer(ino, o));
        if mode.truncate {
            h.draft.start_empty(self.frees.clone());
        }
        self.lives.get(ino).open_handle();
        Opened {
            fh,
            write: true,
            read: ReadMode::Direct,
        }
    }

    /// Reads through handle `fh`, handing the bytes to `give`.
    pub fn read<R>(
        &self,
        fh: u64,
        offset: u64,
        size: usize,
        give: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let h = self.handles.get(fh)?;
        let end = offset.saturating_add(size as u64);
        if h.cached
            && let Some(v) = self.retired_value(h.node, end)
        {
            return self.store.read(v.inode(), offset, size, give);
        }
        if !h.mode.write
            && let Some(pin) = h.draft.pinned()
            && end > pin.inode().size
            && let Some(newer) = self.grown(&pin)?
        {
            h.draft.follow(newer);
        }
        let live = self.lives.get(h.ino);
        h.draft
            .read(&self.store, offset, size, || self.pin_current(&live), give)
    }

    /// The committed version of `pin`'s file, if it is longer than `pin`
    /// and begins with all of its bytes (the file grew by appends): a
    /// reader reading past its end moves on to it, so `tail -f` follows.
    pub(super) fn grown(&self, pin: &Pin) -> Result<Option<Pin>> {
        let live = self.lives.get(pin.version().ino);
        let Some(now) = self.pin_current(&live)? else {
            return Ok(None);
        };
        let (old, new) = (pin.inode(), now.inode());
        if now.version().vno == pin.version().vno || new.size <= old.size {
            return Ok(None);
        }
        Ok(self.same_start(old, new)?.then_some(now))
    }

    /// Whether `new` begins with every byte of `old`: the ranges where
    /// both reach the same extents are; the rest (rewritten with what
    /// may be the same bytes, as a mapping's page written back is) are
    /// compared.
    fn same_start(&self, old: &Inode, new: &Inode) -> Result<bool> {
        let shared: Vec<Extent> = match (&old.data, &new.data) {
            (Data::Tree(a), Data::Tree(b)) => {
                let b: HashSet<Extent> = joined(tree::read(&self.store, b, 0, old.size)?)
                    .into_iter()
                    .collect();
                joined(tree::read(&self.store, a, 0, old.size)?)
                    .into_iter()
                    .filter(|e| b.contains(e))
                    .collect()
            }
            _ => Vec::new(),
        };
        let mut at = 0;
        for (a, b) in shared
            .iter()
            .map(|e| (e.off, e.end()))
            .chain([(old.size, old.size)])
        {
            while at < a {
                let n = (a - at).min(COMPARED) as usize;
                let old_bytes = self.store.read(old, at, n, <[u8]>::to_vec)?;
                if !self.store.read(new, at, n, |b| b == old_bytes)? {
                    return Ok(false);
                }
                at += n as u64;
            }
            at = at.max(b);
        }
        Ok(true)
    }

    /// Writes through handle `fh` for file table `owner` (the lock owner,
    /// when the kernel names one). `from_cache` marks the kernel writing
    /// back pages of a shared mapping: at their own offsets even through
    /// an `O_APPEND` descriptor.
    pub fn write(
        &self,
        fh: u64,
        offset: u64,
        data: &[u8],
        from_cache: bool,
        owner: Option<u64>,
    ) -> Result<usize> {
        self.writable()?;
        let h = self.handles.get(fh)?;
        if !h.mode.write {
            return Err(Error::BadHandle);
        }
        let live = self.lives.get(h.ino);
        let append = h.mode.append && !from_cache;
        let r = h.draft.write(
            &self.store,
            offset,
            data,
            append,
            owner,
            self.opts.max_file_size,
            || self.pin_current(&live),
            &self.frees,
        );
        self.change(h.node, r)
    }

    /// After a change to a draft: when the draft began to differ from the
    /// store, the kernel's cached size is no longer everyone's.
    pub(super) fn change<T>(&self, node: u64, r: Result<(T, bool)>) -> Result<T> {
        let (out, newly_local) = r?;
        if newly_local && let Some(k) = self.kernel.get() {
            k.attrs_changed(node);
        }
        Ok(out)
    }

    /// ftruncate changes the descriptor's draft; truncate(2) by path the
    /// caller's draft if its process is writing the file, else the store
    /// at once.
    pub(super) fn truncate(
        &self,
        node: u64,
        ino: u64,
        size: u64,
        fh: Option<u64>,
        tid: u32,
    ) -> Result<()> {
        let live = self.lives.get(ino);
        let max = self.opts.max_file_size;
        if let Some(d) = self.drafts_for(ino, fh, tid) {
            let r = d.truncate(size, tid, max, || self.pin_current(&live), &self.frees);
            return self.change(node, r.map(|b| ((), b)));
        }
        if self.inode(ino)?.is_some_and(|i| i.size == size) {
            return Ok(());
        }
        {
            let _cache = self.cache_lock(&live);
            self.make_way_for_writer(node, &live, tid)?;
        }
        let d = Draft::writer(ino, Opener::new(0));
        d.truncate(size, tid, max, || self.pin_current(&live), &self.frees)?;
        self.commit_draft(&d, ino, node, None)?;
        Ok(())
    }

    /// Commits `h`'s draft (see `Draft::take_changes` for `closer`).
    pub(super) fn commit(&self, h: &Handle, closer: Option<Closer>) -> Result<()> {
        self.commit_draft(&h.draft, h.ino, h.node, closer)
            .map(|_| ())
    }

    /// Commits draft `d` of file `ino` (opened as `node`); says whether a
    /// new version was stored. The first commit of a created file stores
    /// its name too; should it fail, the file never was.
    pub(super) fn commit_draft(
        &self,
        d: &Draft,
        ino: u64,
        node: u64,
        closer: Option<Closer>,
    ) -> Result<bool> {
        let committing = d.committing();
        let taken = d.take_changes(closer);
        let pending = self.pending.lock().contains_key(&ino);
        let result = match taken {
            Ok(Some((o, mtime, ctime))) => self.store_version(ino, o, (mtime, ctime), pending),
            Ok(None) => return Ok(false),
            Err(e) => Err(e),
        };
        drop(committing);
        if pending && let Err(e) = &result {
            debug!("inode {ino} not created: {e}");
            self.creation_abandoned(ino);
        }
        if result.as_ref().is_ok_and(|stored| *stored) {
            self.stored(ino, node, d);
        }
        result
    }

    fn store_version(
        &self,
        ino: u64,
        o: super::draft::Overlay,
        (mtime, ctime): (SystemTime, SystemTime),
        pending: bool,
    ) -> Result<bool> {
        // A created file's first commit names it: the directory map first.
        let mut dirs = pending.then(|| self.dirs.write());
        let created = match &dirs {
            Some(_) => self.pending.lock().remove(&ino),
            None => None,
        };
        let live = self.lives.get(ino);
        let lock = live.lock();
        let current = match &created {
            Some(p) if p.name.is_empty() => {
                // Removed before its first commit: its writes go with it.
                return Ok(false);
            }
            Some(p) => p.inode.clone(),
            None => match self.inode(ino)? {
                Some(i) if i.nlink > 0 => i,
                // Removed while open: its writes go with it.
                _ => return Ok(false),
            },
        };
        // The ctime is the draft's last change's, or a later change of the
        // inode's own (a chmod meanwhile): not the commit's, which for a
        // file created and closed unwritten comes after close returned.
        let ctime = to_ns(ctime).max(current.ctime);
        let made = commit::make(&self.store, ino, &current, o, to_ns(mtime), ctime)?;
        let mut b = Batch::default();
        for (k, v) in made.nodes {
            b.put(k, v);
        }
        // Before the draft's base is let go (with `made.draft`, at the end).
        live.keep(&made.keeps);
        match (&mut dirs, created) {
            (Some(dirs), Some(p)) => {
                drop(lock);
                // A first version: it replaces nothing, so frees nothing.
                let r = self.store_created(dirs, ino, &p, made.inode.clone(), b);
                if let Err(e) = r {
                    self.pending.lock().insert(ino, p);
                    return Err(e);
                }
            }
            _ => {
                b.put(keys::inode(ino).to_vec(), made.inode.encode());
                let revision = self.store.kv.write(b)?;
                self.set_current_and_free(&live, made.inode.clone(), revision, made.frees);
                drop(lock);
            }
        }
        drop(made.draft);
        if matches!(made.inode.data, crate::schema::Data::Tree(_)) {
            self.note_changed(ino);
        }
        Ok(true)
    }

    /// A new version of `ino` was stored (from draft `by`): the kernel's
    /// cached size and mtime are out of date, so is what its page cache
    /// holds, and truncations other drafts left for their release (their
    /// close returned before this) are now older.
    fn stored(&self, ino: u64, node: u64, by: &Draft) {
        let live = self.lives.get(ino);
        self.cache_event(node, &live, CacheState::value_stored);
        if let Some(k) = self.kernel.get() {
            k.attrs_changed(self.nodeids.node_of(ino));
            // Readers left on older nodes may follow its growth.
            if self.opts.cache_reads {
                for old in self.nodeids.retired_of(ino) {
                    k.attrs_changed(old);
                }
            }
        }
        for other in self.handles.drafts_of(ino) {
            if !std::ptr::eq(by, &*other) {
                other.supersede();
            }
        }
    }

    /// close(2) of one descriptor by thread `tid` of file table `owner`
    /// (its lock owner): commits its draft's changes, and its error is what
    /// close returns.
    pub fn flush(&self, fh: u64, owner: u64, tid: u32) -> Result<()> {
        let h = self.handles.get(fh)?;
        let r = self.commit(&h, Some(Closer { owner, tid }));
        self.announce();
        r
    }

    /// The last close of an open file; the draft's last handle commits
    /// what flushes left (an empty start), the others leave it to that one.
    pub fn release(&self, fh: u64) -> Result<()> {
        let r = self.release_handle(fh);
        self.announce();
        r
    }

    fn release_handle(&self, fh: u64) -> Result<()> {
        let (h, last) = self.handles.remove(fh)?;
        let live = self.lives.get(h.ino);
        live.close_handle();
        match (h.cached, h.mode.write) {
            (true, _) => self.cache_event(h.node, &live, CacheState::close_reader),
            (false, false) => self.cache_event(h.node, &live, CacheState::close_direct_reader),
            (false, true) => {}
        }
        if h.cached && self.nodeids.is_retired(h.node) && !self.handles.any_on(h.node, |_| true) {
            self.nodeids.forget_retired(h.node);
        }
        // The draft's last descriptor commits it while stats still find
        // it (`attr` waits for the commit): in between they would find
        // neither the draft nor the new version, and the kernel would keep
        // the old attributes.
        let result = match last {
            true => {
                let r = self.commit(&h, None);
                self.handles.forget_draft(&h);
                r
            }
            false => Ok(()),
        };
        // A file written afresh; not an append, whose every close (each
        // line of a log) would copy the whole file to the kernel again.
        if last && h.mode.truncate && result.is_ok() {
            self.fill_cache(h.node, &live);
        }
        drop(h);
        self.free_if_orphan(&live)?;
        result
    }

    /// A file removed while open is freed at its last close.
    fn free_if_orphan(&self, live: &Arc<Live>) -> Result<()> {
        let ino = live.ino;
        if self.handles.any_of(ino) || self.opts.read_only {
            return Ok(());
        }
        let _lock = live.lock();
        let Some(inode) = self.inode(ino)? else {
            return Ok(());
        };
        if inode.nlink > 0 || self.pending.lock().contains_key(&ino) {
            return Ok(());
        }
        let frees = commit::unreached(&self.store, &inode.data, &Data::None, &self.store)?;
        let mut b = Batch::default();
        b.delete(keys::inode(ino).to_vec())
            .delete(keys::orphan(ino).to_vec());
        self.store.kv.write(b)?;
        live.forget_current();
        self.free(live, self.lives.next_vno(), frees);
        debug!("freed inode {ino}, removed while open, at its last close");
        Ok(())
    }

    /// Commits the draft and forces everything to disk.
    pub fn fsync(&self, fh: u64) -> Result<()> {
        let h = self.handles.get(fh)?;
        let r = self.commit(&h, None);
        self.announce();
        r?;
        self.sync()
    }

    /// A created file ends without being stored: it leaves its folder.
    pub(super) fn creation_abandoned(&self, ino: u64) {
        let Some(p) = self.pending.lock().remove(&ino) else {
            return;
        };
        if p.name.is_empty() {
            return;
        }
        self.dirs.write().remove(p.parent, &p.name);
        self.stale_name(p.parent, &p.name);
        if let Some(k) = self.kernel.get() {
            k.listing_changed(self.nodeids.node_of(p.parent));
        }
    }
}

/// Entries that continue each other made one (trees may split them
/// differently).
/// Bytes compared at a time when following growth.
const COMPARED: u64 = 1 << 20;

fn joined(entries: Vec<Extent>) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::with_capacity(entries.len());
    for e in entries {
        match out.last_mut() {
            Some(l) if l.end() == e.off && l.id == e.id && l.at + l.len == e.at => l.len += e.len,
            _ => out.push(e),
        }
    }
    out
}
