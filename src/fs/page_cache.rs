//! When a read-only open may read through the kernel's page cache (the
//! default; `--no-cache-reads` sends every read to the daemon), and what
//! that means for the inode it reads.
//!
//! The kernel keeps one page cache and one size per inode, shared by every
//! descriptor open on it, while caskfs gives each reader the version it
//! opened. Both agree as long as the cache of an inode only ever holds one
//! version (or the growth of one, which begins with the same bytes):
//!
//! - A reader may read through the cache unless a writer or a direct
//!   reader has the inode open (a writer's mapped pages would be in that
//!   cache, and its writes grow the size the kernel keeps; a direct
//!   reader's mapped pages hold the version it opened, maybe an older
//!   one). When a direct reader closes, what the cache holds is not
//!   trusted.
//! - The first cached open after the file changed drops what the cache
//!   held (`keep` false); later opens keep it, so reading an unchanged
//!   file again asks the daemon for nothing but the open.
//! - A writer never opens a kernel inode that cached readers have open:
//!   the kernel would grow that inode's size as the writer writes, and
//!   show the readers the zeros past the end of their version's last
//!   page. The file's names move to a new kernel node instead (the file
//!   keeps its inode number: only the node id the kernel knows it by
//!   changes), which the writer's open finds when the kernel looks the
//!   name up again; the readers keep the old node, its pages and its size,
//!   as after `mv new k` on any filesystem.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use parking_lot::{ArcMutexGuard, RawMutex};

use super::attr::Attr;
use super::draft::Draft;
use super::errno::{Error, Result};
use super::fs::{CaskFs, Opened};
use super::handle::{Handle, OpenMode};
use super::live::{Live, Pin};

/// What the daemon knows of one inode's page cache.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheState {
    /// Read-only descriptors reading through the cache, open now.
    readers: u32,
    /// Read-only descriptors reading direct, open now: a mapping of theirs
    /// fills the cache with the value they opened, maybe an older one
    /// (page faults read through the inode's cache even in direct I/O
    /// mode), so no reader reads through the cache beside them.
    direct_readers: u32,
    /// The cache may hold bytes that are not the committed value's: those
    /// of a value since replaced, or a writer's mapped pages.
    stale: bool,
    /// Until when a writer is expected to open the inode (it was given
    /// to the key for one, whose open the kernel retries): readers read
    /// direct until then, so that the retry finds no cached reader either,
    /// even if another writer came and went first.
    writer_expected: Option<(Instant, u32)>,
}

/// How long a writer's retried open is waited for (`writer_expected`).
const WRITER_RETRY: Duration = Duration::from_secs(1);

/// How long a writer's retried open waits for the page-cache readers of
/// its inode to close (`wait_for_cached_readers`).
const READERS_WAIT: Duration = Duration::from_millis(100);

/// How a read-only open reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Every read goes to the daemon.
    Direct,
    /// Reads go through the page cache, which the open keeps or drops.
    Cached { keep: bool },
}

impl CacheState {
    /// A read-only open; `direct` says it may not use the cache (a writer
    /// has the key open, say).
    pub fn open_reader(&mut self, direct: bool) -> ReadMode {
        let expecting = self
            .writer_expected
            .is_some_and(|(t, _)| Instant::now() < t);
        if direct || expecting || self.direct_readers > 0 {
            self.direct_readers += 1;
            return ReadMode::Direct;
        }
        self.writer_expected = None;
        let keep = !self.stale;
        self.stale = false;
        self.readers += 1;
        ReadMode::Cached { keep }
    }

    pub fn close_reader(&mut self) {
        self.readers = self.readers.saturating_sub(1);
    }

    /// A direct reader closed: what it mapped may still be in the cache.
    pub fn close_direct_reader(&mut self) {
        self.direct_readers = self.direct_readers.saturating_sub(1);
        self.stale = true;
    }

    /// Whether a writer may open the inode: not while cached readers are.
    pub fn writer_may_open(&self) -> bool {
        self.readers == 0
    }

    /// The inode is new, for the writer of thread `tid`, whose open will
    /// follow.
    pub fn expect_writer(&mut self, tid: u32) {
        self.writer_expected = Some((Instant::now() + WRITER_RETRY, tid));
    }

    /// Thread `tid`'s writer opened the key: a mapping of its may put its
    /// bytes in the cache. If it was the writer expected, readers need not
    /// wait for it any more (another writer coming first does not end the
    /// wait: the expected one is still on its way).
    pub fn writer_opened(&mut self, tid: u32) {
        self.stale = true;
        if self.writer_expected.is_some_and(|(_, t)| t == tid) {
            self.writer_expected = None;
        }
    }

    /// A new value was stored: what the cache holds is the old one's.
    pub fn value_stored(&mut self) {
        self.stale = true;
    }

    /// The cache was given the committed value (`fill_cache`).
    pub fn filled(&mut self) {
        self.stale = false;
    }
}

impl CacheState {
    /// What nothing is known of (the inode was not open since the mount,
    /// or its state was forgotten): the cache may hold anything.
    pub fn unknown() -> CacheState {
        CacheState {
            stale: true,
            ..CacheState::default()
        }
    }
}

/// Larger files are read direct: 1 MiB requests answered from where the
/// bytes lie outrun the kernel's readahead through the cache, in 128 KiB
/// requests (1.4 to 1.7 against 1.1 GB/s on a 2-vCPU VM).
const CACHED_UP_TO: u64 = 1 << 20;

/// Files up to this size go into the page cache when their writer closes
/// (`fill_cache`).
const FILLED_UP_TO: u64 = 128 << 10;

impl CaskFs {
    /// The inode's lock when opens must be counted against each other
    /// (`--cache-reads`); without it, nothing.
    pub(super) fn cache_lock(&self, live: &Live) -> Option<ArcMutexGuard<RawMutex, ()>> {
        self.opts.cache_reads.then(|| live.lock())
    }

    /// Tells what the daemon knows of `node`'s page cache what happened:
    /// nothing to keep without `--cache-reads`, nor for a node the file's
    /// names no longer lead to (its readers share what they read).
    pub(super) fn cache_event(&self, node: u64, live: &Live, event: impl FnOnce(&mut CacheState)) {
        if self.opts.cache_reads && self.nodeids.node_of(live.ino) == node {
            live.with_cache(event);
        }
    }

    /// fstat through a node the file's names no longer lead to (a writer
    /// opened it while these readers read it through the page cache): the
    /// file as they read it, grown as it grew (so `tail -f` and `tail -F`
    /// see the writer's appends).
    pub(super) fn detached_attr(&self, node: u64, handle: Option<Arc<Handle>>) -> Result<Attr> {
        let handles = match handle {
            Some(h) => vec![h],
            None => self.handles.on_node(node),
        };
        let ino = self.nodeids.ino_of(node);
        let cached = handles.iter().any(|h| h.cached);
        let pinned = match cached {
            true => self.retired_value(node, u64::MAX),
            false => handles
                .iter()
                .filter_map(|h| h.draft.pinned())
                .max_by_key(|p| p.inode().size),
        };
        let inode = match pinned {
            Some(p) => p.inode().clone(),
            None => self.inode(ino)?.ok_or(Error::Stale)?,
        };
        // The number its names lead to now, so that `tail -F` sees the
        // same file.
        let mut attr = self.attr_of(ino, &inode);
        attr.cacheable = false;
        if let Some(now) = self.inode(ino)? {
            attr.nlink = now.nlink;
        }
        Ok(attr)
    }

    /// A writer may not share a kernel node with readers reading through
    /// the page cache: the file's names move to a new node, and ESTALE
    /// makes the kernel look the name up again and open that one.
    pub(super) fn make_way_for_writer(&self, node: u64, live: &Arc<Live>, tid: u32) -> Result<()> {
        if !self.opts.cache_reads || live.with_cache(|c| c.writer_may_open()) {
            return Ok(());
        }
        // Its cached readers all read the committed version: no writer can
        // have changed it while they were open.
        let value = self.pin_current(live)?;
        let new = self.nodeids.retire(live.ino, node, value);
        live.with_cache(|c| {
            *c = CacheState::unknown();
            c.expect_writer(tid);
        });
        debug!("inode {} is node {new} now; readers keep {node}", live.ino);
        Err(Error::Stale)
    }

    /// Before a writer's retried open (`CaskFs::open`): should it find
    /// page-cache readers on its node again, a second move to a new node,
    /// or refusing a removed file, would cost it ENOENT, so it waits for
    /// them to close instead (a `cat` takes microseconds), while new
    /// readers read direct. Without locks, which the readers' closes take.
    /// Readers that stay open longer than `READERS_WAIT` (`tail -f`) still
    /// cost the writer its open.
    pub(super) fn wait_for_cached_readers(&self, node: u64, tid: u32) {
        if !self.opts.cache_reads {
            return;
        }
        let live = self.lives.get(self.nodeids.ino_of(node));
        let deadline = Instant::now() + READERS_WAIT;
        let busy = || match self.nodeids.node_of(live.ino) == node {
            true => live.with_cache(|c| {
                let busy = !c.writer_may_open();
                if busy {
                    c.expect_writer(tid);
                }
                busy
            }),
            // A retired node's readers are only in the handle table.
            false => self.handles.any_on(node, |h| h.cached),
        };
        while busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// A fresh writer's last close, when nobody else has the file open (so
    /// no mapping can hold other bytes): the kernel's page cache gets the
    /// committed file, as a local filesystem's cache holds what was just
    /// written, and the next readers read it without asking the daemon.
    /// Under the inode's lock, so no open comes between.
    pub(super) fn fill_cache(&self, node: u64, live: &Arc<Live>) {
        if !self.opts.cache_reads || self.handles.any_of(live.ino) {
            return;
        }
        let Some(kernel) = self.kernel.get() else {
            return;
        };
        let _lock = live.lock();
        // Again under the lock, which every open takes: a reader that
        // opened since the look above may be reading ahead into the pages
        // that filling drops, and its reads wait on this daemon.
        if self.nodeids.node_of(live.ino) != node || self.handles.any_of(live.ino) {
            return;
        }
        let Ok(Some(pin)) = self.pin_current(live) else {
            return;
        };
        let len = pin.inode().size;
        if len == 0 || len > FILLED_UP_TO {
            return;
        }
        // Unreadable: the first reader reports it.
        let Ok(bytes) = self
            .store
            .read(pin.inode(), 0, len as usize, <[u8]>::to_vec)
        else {
            return;
        };
        if kernel.fill(node, &bytes) {
            live.with_cache(CacheState::filled);
        }
    }

    /// Whether a writer may open `node` after its file went away (`open`):
    /// not if its names lead elsewhere, or readers read it through the page
    /// cache, whose size the kernel would grow with the writer's writes
    /// (those it waits for).
    pub(super) fn writer_may_open_removed(&self, node: u64, tid: u32) -> bool {
        if self.nodeids.is_retired(node) {
            return false;
        }
        self.wait_for_cached_readers(node, tid);
        !self.handles.any_on(node, |h| h.cached)
    }

    /// A reader keeps the version it opened (or its growth); of a file
    /// being created, the first version committed. It reads through the
    /// kernel's page cache when allowed. Under the inode's lock (with
    /// `--cache-reads`), so that no writer arrives between the choice and
    /// the count of readers.
    pub(super) fn open_reader(&self, node: u64, ino: u64, mode: OpenMode) -> Result<Opened> {
        let live = self.lives.get(ino);
        let _cache = self.cache_lock(&live);
        if self.nodeids.node_of(ino) != node {
            return Err(Error::Stale);
        }
        let pin = self.pin_current(&live)?;
        let pending = pin.is_none();
        if pending && !self.pending.lock().contains_key(&ino) {
            // Removed since the look: as an open that the rm beat.
            return Err(Error::Stale);
        }
        let large = pin.as_ref().is_some_and(|p| p.inode().size > CACHED_UP_TO);
        // A file being created reads direct: its creator's writes grow the
        // size the kernel keeps for the node before anything is stored.
        let direct = large || pending || !self.handles.drafts_of(ino).is_empty();
        let read = match self.opts.cache_reads {
            true => live.with_cache(|c| c.open_reader(direct)),
            false => ReadMode::Direct,
        };
        let handle = Handle {
            node,
            ino,
            mode,
            draft: Arc::new(Draft::reader(ino, pin)),
            cached: read != ReadMode::Direct,
        };
        let (fh, _) = self.handles.insert(handle);
        live.open_handle();
        Ok(Opened {
            fh,
            write: false,
            read,
        })
    }

    /// What the page-cache readers of retired `node` read, moved on (for
    /// all of them, as they share its pages) to the committed version if a
    /// read reaches up to `end` past it and the file grew from it.
    pub(super) fn retired_value(&self, node: u64, end: u64) -> Option<Pin> {
        let value = self.nodeids.retired_value(node)?;
        if end <= value.inode().size {
            return Some(value);
        }
        match self.grown(&value) {
            Ok(Some(longer)) => {
                self.nodeids.set_retired_value(node, longer.clone());
                Some(longer)
            }
            _ => Some(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_kept_until_the_value_changes() {
        let mut c = CacheState::default();
        assert_eq!(c.open_reader(false), ReadMode::Cached { keep: true });
        c.close_reader();
        assert_eq!(c.open_reader(false), ReadMode::Cached { keep: true });
        assert!(!c.writer_may_open(), "a cached reader is open");
        c.close_reader();
        assert!(c.writer_may_open());
        c.value_stored();
        assert_eq!(c.open_reader(false), ReadMode::Cached { keep: false });
        c.close_reader();
        assert_eq!(c.open_reader(false), ReadMode::Cached { keep: true });
    }

    #[test]
    fn readers_go_direct_while_a_writer_is_open_or_expected() {
        let mut c = CacheState::default();
        c.expect_writer(7);
        assert_eq!(c.open_reader(false), ReadMode::Direct);
        c.writer_opened(8);
        assert_eq!(c.open_reader(false), ReadMode::Direct, "still expected");
        assert_eq!(c.open_reader(true), ReadMode::Direct);
        assert!(c.writer_may_open(), "no reader reads through the cache");
        c.writer_opened(7);
        assert!(c.writer_expected.is_none(), "the expected writer came");
        c.writer_expected = Some((Instant::now(), 7));
        assert_eq!(
            c.open_reader(false),
            ReadMode::Direct,
            "direct readers open"
        );
        for _ in 0..4 {
            c.close_direct_reader();
        }
        assert_eq!(c.open_reader(false), ReadMode::Cached { keep: false });
    }

    #[test]
    fn the_cache_is_dropped_after_a_direct_reader() {
        let mut c = CacheState::default();
        assert_eq!(c.open_reader(true), ReadMode::Direct);
        c.close_direct_reader();
        assert_eq!(c.open_reader(false), ReadMode::Cached { keep: false });
        assert_eq!(c.open_reader(false), ReadMode::Cached { keep: true });
    }
}
