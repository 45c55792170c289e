//! When a read-only open may read through the kernel's page cache (the
//! default; `--no-cache-reads` sends every read to the daemon), what that
//! means for the inode it reads, and when a writer's close fills it.
//!
//! The kernel keeps one page cache and one size per inode, shared by every
//! descriptor open on it, while caskfs gives each reader the value it
//! opened. Both agree as long as the cache of an inode only ever holds one
//! value (or the growth of one, which begins with the same bytes):
//!
//! - A reader may read through the cache unless a writer or a direct
//!   reader has the inode open (a writer's mapped pages would be in that
//!   cache, and its writes grow the size the kernel keeps; a direct
//!   reader's mapped pages hold the value it opened, maybe an older one).
//!   When a direct reader closes, what the cache holds is not trusted.
//! - The first cached open after the value changed drops what the cache
//!   held (`keep` false); later opens keep it, so reading an unchanged
//!   value again asks the daemon for nothing but the open.
//! - A writer never opens an inode that cached readers have open: the
//!   kernel would grow that inode's size as the writer writes, and show
//!   the readers the zeros past the end of their value's last page. The
//!   key moves to a new inode instead (`make_way_for_writer`), which the
//!   writer's open finds when the kernel looks the name up again; the
//!   readers keep the old inode, its pages and its size, as after `mv new
//!   k` on any filesystem. They share those pages, so they read one value
//!   together (`retired_value`), and follow the key's growth together
//!   (`tail -f`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;

use super::attr::Attr;
use super::draft::{Draft, grown};
use super::errno::{Error, Result};
use super::fs::{CaskFs, Opened, show};
use super::handle::{Handle, OpenMode};
use super::process::Opener;
use super::storage::Value;

/// Larger values are read direct: 1 MiB requests answered from the
/// segment's mapping outrun the kernel's readahead through the cache, in
/// 128 KiB requests (1.4 to 1.7 against 1.1 GB/s on a 2-vCPU VM).
const CACHED_UP_TO: u64 = 1 << 20;

/// Values up to this size go into the page cache when their writer
/// closes (`fill_cache`).
const FILLED_UP_TO: u64 = 128 << 10;

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

impl CaskFs {
    /// The key lock of `ino` when opens must be counted against each other
    /// (`--cache-reads`); without it, nothing.
    pub(super) fn cache_lock(&self, ino: u64) -> Vec<parking_lot::MutexGuard<'_, ()>> {
        if self.opts.cache_reads {
            self.key_locks(&[ino])
        } else {
            Vec::new()
        }
    }

    /// Tells what the daemon knows of `ino`'s page cache what happened;
    /// nothing to keep without `--cache-reads`.
    pub(super) fn cache_event(&self, ino: u64, event: impl FnOnce(&mut CacheState)) {
        if self.opts.cache_reads {
            self.inodes.with_cache(ino, event);
        }
    }

    /// fstat of a file removed or replaced by `mv` while open: what the
    /// descriptor still reads, with no link left. Or of a file a writer
    /// moved to a new inode (`make_way_for_writer`): the same, but with
    /// the key's link and inode number, and grown as the key grew (so
    /// `tail -f` and `tail -F` see the writer's appends, and the same
    /// file). The kernel may not say which descriptor; they all read one
    /// value or the growth of one: the longest.
    pub(super) fn detached_attr(&self, ino: u64, handle: Option<Arc<Handle>>) -> Result<Attr> {
        let handles = match handle {
            Some(h) => vec![h],
            None => self.handles.for_ino(ino),
        };
        let next = self.inodes.successor(ino);
        let key = next.and_then(|n| self.inodes.key_of(n));
        // The page cache's readers decide the size the kernel keeps.
        let cached = handles.iter().any(|h| h.cached);
        let group = cached
            .then(|| self.retired_value(ino, u64::MAX))
            .flatten()
            .map(|v| v.metadata());
        let m = group
            .or_else(|| {
                handles
                    .iter()
                    .filter_map(|h| match &key {
                        Some(key) => h.draft.follow(&*self.store, key),
                        None => h.draft.local().or_else(|| h.draft.pinned()),
                    })
                    .max_by_key(|m| m.len)
            })
            // Nothing open on it: the kernel asks through a name it looked
            // up before an rm or mv (a stat, an open's permission check),
            // which may have come just before that: what the key held
            // then. Else (a number retired, a creation that failed) ESTALE
            // has the kernel look the name up again.
            .or_else(|| self.inodes.removed(ino))
            .ok_or(Error::Stale)?;
        let mut attr = Attr::of(ino, &m, self.opts.owner);
        attr.cacheable = false;
        match next.filter(|_| key.is_some()) {
            Some(next) => attr.ino = next,
            None => attr.nlink = 0,
        }
        Ok(attr)
    }

    /// A writer may not share an inode with readers reading through the
    /// page cache (`page_cache.rs`): the key moves to a new inode, and
    /// ESTALE makes the kernel look the name up again and open that one.
    pub(super) fn make_way_for_writer(&self, ino: u64, key: &[u8], tid: u32) -> Result<()> {
        if !self.opts.cache_reads
            || self.inodes.with_cache(ino, |c| c.writer_may_open()) != Some(false)
        {
            return Ok(());
        }
        // Its cached readers all read the committed value: no writer can
        // have changed it while they were open.
        let value = self.store.value(key)?.map(Arc::new);
        let new = {
            let _links = self.links.write();
            self.inodes.retire(key, value).ok_or(Error::Stale)?
        };
        self.inodes.with_cache(new, |c| c.expect_writer(tid));
        debug!("{} is inode {new} now; readers keep {ino}", show(key));
        Err(Error::Stale)
    }

    /// Before a writer's retried open (`CaskFs::open`): should it find
    /// page-cache readers on its inode, a second move to a new inode, or
    /// refusing a removed one, would cost it ENOENT, so it waits for them
    /// to close instead (a `cat` takes microseconds), while new readers
    /// read direct. Without locks, which the readers' closes take. Readers
    /// that stay open longer than `READERS_WAIT` (`tail -f`) still cost
    /// the writer its open.
    pub(super) fn wait_for_cached_readers(&self, ino: u64, tid: u32) {
        if !self.opts.cache_reads {
            return;
        }
        let deadline = Instant::now() + READERS_WAIT;
        let busy = || {
            let live = self.inodes.with_cache(ino, |c| {
                let busy = !c.writer_may_open();
                if busy {
                    c.expect_writer(tid);
                }
                busy
            });
            // A removed inode's readers are only in the handle table.
            live.unwrap_or_else(|| self.handles.any_on(ino, |h| h.cached))
        };
        while busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// A fresh writer's last close, when nobody else has `ino` open (so no
    /// mapping can hold other bytes): the kernel's page cache gets the
    /// committed value, as a local filesystem's cache holds what was just
    /// written, and the next readers read it without asking the daemon.
    /// Under the key lock, so no open comes between.
    pub(super) fn fill_cache(&self, ino: u64) {
        if !self.opts.cache_reads || self.handles.any_on(ino, |_| true) {
            return;
        }
        let (Some(kernel), Some(key)) = (self.kernel.get(), self.inodes.key_of(ino)) else {
            return;
        };
        let Ok(Some(value)) = self.store.value(&key) else {
            return;
        };
        let len = value.metadata().len;
        if len == 0 || len > FILLED_UP_TO {
            return;
        }
        // Unreadable: the first reader reports it.
        let Ok(bytes) = value.bytes(0, len as usize) else {
            return;
        };
        if kernel.fill(ino, &bytes) {
            self.cache_event(ino, CacheState::filled);
        }
    }

    /// Whether a writer may open `ino` after its key went away (`open`):
    /// not if it was retired, or readers read it through the page cache,
    /// whose size the kernel would grow with the writer's writes (those it
    /// waits for).
    pub(super) fn writer_may_open_removed(&self, ino: u64, tid: u32) -> bool {
        if self.inodes.key_of(ino).is_some() || self.inodes.is_retired(ino) {
            return false;
        }
        self.wait_for_cached_readers(ino, tid);
        !self.handles.any_on(ino, |h| h.cached)
    }

    /// A reader keeps the value it opened (or its growth); of a key being
    /// created, the first value committed. It reads through the kernel's
    /// page cache when `page_cache.rs` allows. Under the key lock (with
    /// `--cache-reads`), so that no writer arrives between the choice and
    /// the count of readers.
    pub(super) fn open_reader(&self, ino: u64, key: &[u8], mode: OpenMode) -> Result<Opened> {
        let _key = self.cache_lock(ino);
        // Another inode's value would not fit the size the kernel keeps
        // for this one.
        let value = self.while_key_of(ino, key, || self.store.value(key))?;
        let pending = value.is_none();
        if pending && !self.inodes.is_pending(ino) {
            // Removed since `open_inode` looked: as an open that the rm
            // beat. (Read as empty, a page-cache reader would see zeros
            // as long as the size the kernel still had.)
            return Err(Error::Stale);
        }
        let draft = Arc::new(match value {
            Some(v) => Draft::reader(v),
            None => Draft::on_committed(Opener::new(0)),
        });
        let large = draft.pinned().is_some_and(|m| m.len > CACHED_UP_TO);
        // A key being created reads direct: its creator's writes grow the
        // size the kernel keeps for the inode before anything is stored.
        let direct = large || pending || !self.handles.drafts_of(ino).is_empty();
        // An inode whose key went away since the open began reads direct
        // what it found, as any reader of a removed key does.
        let read = match self.opts.cache_reads {
            true => self.inodes.with_cache(ino, |c| c.open_reader(direct)),
            false => None,
        }
        .unwrap_or(ReadMode::Direct);
        let handle = Handle {
            ino,
            mode,
            draft,
            cached: read != ReadMode::Direct,
        };
        let (fh, _) = self.handles.insert(handle);
        Ok(Opened {
            fh,
            write: false,
            read,
        })
    }

    /// The key whose growth readers of `ino` follow: its key, or the one
    /// it was retired from (`make_way_for_writer`).
    pub(super) fn key_read_by(&self, ino: u64) -> Option<Vec<u8>> {
        self.inodes.key_of(ino).or_else(|| {
            let next = self.inodes.successor(ino)?;
            self.inodes.key_of(next)
        })
    }

    /// What the page-cache readers of retired `ino` read, moved on (for
    /// all of them, as they share its pages) to the key's committed value
    /// if a read reaches up to `end` past it and that one grew from it.
    pub(super) fn retired_value(&self, ino: u64, end: u64) -> Option<Arc<Value>> {
        let value = self.inodes.retired_value(ino)?;
        if end <= value.metadata().len {
            return Some(value);
        }
        let key = self.key_read_by(ino)?;
        match grown(&*self.store, &key, &value) {
            Some(longer) => {
                let longer = Arc::new(longer);
                self.inodes.set_retired_value(ino, longer.clone());
                Some(longer)
            }
            None => Some(value),
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
