//! What each filesystem operation means for caskfs, as plain methods that
//! return `Result`. The FUSE adapter (`fuse.rs`) calls these and replies;
//! nothing here knows the FUSE protocol.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, warn};
use parking_lot::{Mutex, MutexGuard, RwLock};

use super::attr::{Attr, DIR_PERM, Kind, Owner, ROOT_INO, SHARED_TTL, TTL};
use super::draft::{Closer, Draft};
use super::errno::{Error, Result};
use super::handle::{Handle, HandleTable, OpenMode};
use super::inode::InodeTable;
use super::page_cache::{CacheState, ReadMode};
use super::process::Opener;
use super::storage::{EntryKind, Meta, Metadata, Storage};
use crate::engine::{
    MAX_NAME_LEN, OWNER_UNSET, PERM_BITS, S_IFDIR, S_IFMT, S_IFREG, to_ns, tree, validate_key,
};
pub use crate::vocab::StatFs;

/// An open file: its handle number, whether it may write, and how it
/// reads (a writer: always `Direct`).
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    pub fh: u64,
    pub write: bool,
    pub read: ReadMode,
}

/// How the filesystem presents the store.
#[derive(Clone, Copy, Debug)]
pub struct FsOptions {
    /// Who owns what records no owner (see `Owner`).
    pub owner: Owner,
    pub read_only: bool,
    /// Readers may read through the kernel's page cache (`page_cache.rs`).
    pub cache_reads: bool,
    /// Other hosts change the keys too: the storage tells of their changes
    /// (`follow_remote_changes`), and the kernel keeps names and
    /// attributes for `SHARED_TTL` at most and lists folders afresh, in
    /// case it tells late.
    pub shared: bool,
}

/// Who asks: the thread, and the user and group a new entry belongs to.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The attribute changes one `setattr` asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
    pub fh: Option<u64>,
}

impl SetAttr {
    fn changes_meta(&self) -> bool {
        self.mode.is_some() || self.uid.is_some() || self.gid.is_some() || self.mtime.is_some()
    }

    /// Applies the mode, owner and mtime asked for to `m`.
    fn apply(&self, m: &mut Meta) {
        if let Some(mode) = self.mode {
            m.mode = (m.mode & S_IFMT) | (mode & PERM_BITS);
        }
        if let Some(uid) = self.uid {
            m.uid = uid;
        }
        if let Some(gid) = self.gid {
            m.gid = gid;
        }
        if let Some(t) = self.mtime {
            m.mtime = to_ns(t);
        }
    }
}

/// One directory entry; `offset` is where the next read continues.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub ino: u64,
    pub offset: u64,
    pub kind: Kind,
    pub name: Vec<u8>,
}

/// Stripes of `CaskFs::key_locks`.
const KEY_LOCKS: usize = 16;

/// What the kernel caches that the daemon must correct when it changes
/// without a request the kernel saw: the adapter tells the kernel.
pub trait KernelCache: Send + Sync {
    /// The size or mtime of `ino` changed: a commit stored a new value, or
    /// a process's draft began to differ from the store.
    fn attrs_changed(&self, ino: u64);
    /// The listing of folder `dir` changed: a created key whose first
    /// value was never stored.
    fn listing_changed(&self, dir: u64);
    /// `name` in folder `parent` leads to nothing now: a created key
    /// whose first value was never stored. Returns once the kernel has
    /// forgotten the name (or after a bound, should it be busy).
    fn entry_gone(&self, parent: u64, name: &[u8]);
    /// Another host changed what `name` in folder `parent` leads to: the
    /// kernel forgets the name. Called outside requests, so it may wait
    /// for the folder's lock.
    fn name_changed(&self, parent: u64, name: &[u8]);
    /// The page cache of `ino`, which nobody has open, is to hold `value`
    /// and nothing else; returns whether the kernel took it.
    fn fill(&self, ino: u64, value: &[u8]) -> bool;
}

thread_local! {
    /// Names whose kernel entries a request made stale, told to the kernel
    /// at the end of the request (`CaskFs::announce`), when it holds no
    /// lock: the kernel takes the folder's lock to drop a name, which an
    /// operation in that folder may hold while it waits on one of ours.
    static STALE_NAMES: RefCell<Vec<(u64, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
}

pub struct CaskFs {
    pub(super) store: Arc<dyn Storage>,
    pub(super) opts: FsOptions,
    pub(super) inodes: InodeTable,
    pub(super) handles: HandleTable,
    /// Open directory streams: a snapshot of the names, taken at the
    /// first readdir (a listing the kernel serves from its cache never
    /// asks, so opendir itself must stay cheap).
    pub(super) dirs: Mutex<HashMap<u64, Option<Arc<Vec<DirEntry>>>>>,
    pub(super) kernel: OnceLock<Box<dyn KernelCache>>,
    pub(super) next_dir: AtomicU64,
    /// Changes of names against a folder rename: a folder rename takes it
    /// to write, so that no key is created, committed or moved below the
    /// folder between its reading the folder and moving it; everything
    /// else that names a key takes it to read.
    pub(super) names: RwLock<()>,
    /// A commit names its key and stores it under its inode's lock, and
    /// an unlink or rename of the key takes the same lock: so a commit
    /// never stores a key that was removed or renamed away meanwhile (the
    /// release of a file being created races the `rm` that follows it).
    key_locks: [Mutex<()>; KEY_LOCKS],
    /// Which inode a key has: an rm, mv or `retire` changes the store and
    /// the inode table under it to write, and attributes are read under it
    /// to read. Without it a lookup or getattr could answer one inode with
    /// the size of the value another has since (the key moved meanwhile),
    /// and the kernel would keep that size for the first one, cutting its
    /// page-cache readers' value short.
    pub(super) links: RwLock<()>,
    /// The root has no record (a key cannot be empty): its mode, owner and
    /// times live here, for as long as the mount.
    root: Mutex<Meta>,
    /// The times folders with no record show.
    mounted_at: SystemTime,
    /// Threads whose open was just answered ESTALE, and when (`vanished`);
    /// `any_stale` spares every other open the lock.
    stale_opens: Mutex<HashMap<u32, Instant>>,
    any_stale: AtomicBool,
}

/// How long after an ESTALE an open by the same thread counts as the
/// kernel's retry of it, which comes at once.
const RETRY_WINDOW: Duration = Duration::from_secs(1);

impl CaskFs {
    pub fn new(store: Arc<dyn Storage>, opts: FsOptions) -> CaskFs {
        let mounted_at = SystemTime::now();
        let now = to_ns(mounted_at);
        CaskFs {
            store,
            opts,
            inodes: InodeTable::default(),
            handles: HandleTable::default(),
            dirs: Mutex::new(HashMap::new()),
            kernel: OnceLock::new(),
            next_dir: AtomicU64::new(0),
            names: RwLock::new(()),
            key_locks: Default::default(),
            links: RwLock::new(()),
            root: Mutex::new(Meta {
                mode: S_IFDIR | u32::from(DIR_PERM),
                uid: OWNER_UNSET,
                gid: OWNER_UNSET,
                mtime: now,
                ctime: now,
            }),
            mounted_at,
            stale_opens: Mutex::new(HashMap::new()),
            any_stale: AtomicBool::new(false),
        }
    }

    /// Has the kernel forget what it holds of each key another host
    /// changes (a shared backend).
    pub fn follow_remote_changes(self: &Arc<Self>) {
        let fs = Arc::downgrade(self);
        self.store.on_remote_change(Box::new(move |key| {
            if let Some(fs) = fs.upgrade() {
                fs.changed_elsewhere(key);
            }
        }));
    }

    fn changed_elsewhere(&self, key: &[u8]) {
        let Some(k) = self.kernel.get() else {
            return;
        };
        if let Some(ino) = self.inodes.lookup(key) {
            k.attrs_changed(ino);
        }
        let (dir, name) = tree::split(key);
        let parent = match dir.is_empty() {
            true => Some(ROOT_INO),
            false => self.inodes.lookup(dir),
        };
        if let Some(parent) = parent {
            k.name_changed(parent, name);
        }
    }

    /// Whether other hosts change the keys too.
    pub fn shared(&self) -> bool {
        self.opts.shared
    }

    /// How long the kernel may keep a name or attributes that nothing on
    /// this host has changed since.
    pub fn cache_lifetime(&self) -> Duration {
        if self.opts.shared { SHARED_TTL } else { TTL }
    }

    /// How read-only opens read, as the log and `caskfs stats` say it.
    pub fn read_mode(&self) -> &'static str {
        match self.opts.cache_reads {
            true => "page cache",
            false => "direct",
        }
    }

    /// Files open through the mount now.
    pub fn open_handles(&self) -> usize {
        self.handles.len()
    }

    /// Refuses an operation caskfs does not support, with a log line.
    pub fn refuse(&self, what: &'static str) -> Error {
        debug!("refusing {what}");
        Error::NotSupported(what)
    }

    pub(super) fn writable(&self) -> Result<()> {
        if self.opts.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// What `key` is: `Some` with its record's metadata, `None` with none
    /// (a folder implied by the keys below it, or nothing).
    pub(super) fn kind(&self, key: &[u8]) -> Result<Option<(Kind, Option<Metadata>)>> {
        if key.is_empty() {
            return Ok(Some((Kind::Directory, None)));
        }
        if let Some(m) = self.store.metadata(key)? {
            return Ok(Some((Kind::from(EntryKind::of_mode(m.mode)), Some(m))));
        }
        Ok(match self.store.kind(key)? {
            Some(EntryKind::Folder) => Some((Kind::Directory, None)),
            _ => None,
        })
    }

    /// The key of folder inode `dir`.
    pub(super) fn folder(&self, dir: u64) -> Result<Vec<u8>> {
        let key = self.inodes.key_of(dir).ok_or(Error::NotFound)?;
        match self.kind(&key)? {
            Some((Kind::Directory, _)) => Ok(key),
            Some(_) => Err(Error::NotADirectory),
            None => Err(Error::NotFound),
        }
    }

    /// The key a name in folder `parent` stands for.
    pub(super) fn key(&self, parent: u64, name: &[u8]) -> Result<Vec<u8>> {
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong);
        }
        // A name is one component: `a/b` is `b` in folder `a`.
        if name.contains(&b'/') {
            return Err(Error::InvalidName);
        }
        let key = tree::join(&self.folder(parent)?, name);
        validate_key(&key)?;
        Ok(key)
    }

    /// The locks of the inodes `inos` (see `key_locks`), taken in one
    /// order.
    pub(super) fn key_locks(&self, inos: &[u64]) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = inos.iter().map(|&i| (i as usize) % KEY_LOCKS).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes
            .into_iter()
            .map(|s| self.key_locks[s].lock())
            .collect()
    }

    /// The mode, owner and times of the root, as a record would hold them.
    pub(super) fn root_meta(&self) -> Meta {
        *self.root.lock()
    }

    /// The attributes of `key` (inode `ino`) as thread `tid` sees them;
    /// `own` is the draft of the descriptor asked through, if any.
    pub(super) fn attr(&self, ino: u64, key: &[u8], tid: u32, own: Option<&Draft>) -> Result<Attr> {
        match self.attr_once(ino, key, tid, own) {
            // A creation's commit stores the value, then ends the pending
            // state: a look at the store before the first and at the
            // pending state after the second finds neither. A second look
            // finds the value.
            Err(Error::NotFound) => self.attr_once(ino, key, tid, own),
            r => r,
        }
    }

    fn attr_once(&self, ino: u64, key: &[u8], tid: u32, own: Option<&Draft>) -> Result<Attr> {
        let base = if key.is_empty() {
            Some(Metadata::new(0, &self.root_meta()))
        } else {
            self.store.metadata(key)?
        };
        match base {
            Some(m) if EntryKind::of_mode(m.mode) == EntryKind::File => {
                self.file_attr(ino, Some(m), tid, own)
            }
            Some(m) => self.with_links(Attr::of(ino, &m, self.opts.owner), key),
            None if self.inodes.is_pending(ino) => self.file_attr(ino, None, tid, own),
            None if self.store.kind(key)? == Some(EntryKind::Folder) => {
                let a = Attr::implied_folder(ino, self.mounted_at, self.opts.owner);
                self.with_links(a, key)
            }
            None => self.file_attr(ino, None, tid, own),
        }
    }

    /// A folder links to itself, its parent's entry, and each subfolder's
    /// `..` (`find` counts on it).
    fn with_links(&self, mut a: Attr, key: &[u8]) -> Result<Attr> {
        if a.kind == Kind::Directory {
            a.nlink = 2 + self.store.folder_counts(key)?.1;
        }
        Ok(a)
    }

    /// A file's attributes as thread `tid` sees them: as its process's
    /// draft has them, or as the store does (`committed`), or as a pending
    /// creation (empty) if only an open handle holds it.
    fn file_attr(
        &self,
        ino: u64,
        committed: Option<Metadata>,
        tid: u32,
        own: Option<&Draft>,
    ) -> Result<Attr> {
        let drafts = self.handles.drafts_of(ino);
        let changed: Vec<_> = drafts
            .iter()
            .filter_map(|d| d.local().map(|m| (d, m)))
            .collect();
        let mine = match own {
            Some(d) => d.local(),
            None => changed
                .iter()
                .find(|(d, _)| d.opener.is(tid))
                .map(|(_, m)| *m),
        };
        let pending = match committed {
            Some(_) => None,
            None => self.inodes.pending_meta(ino),
        };
        let mut m = match (committed, pending, mine) {
            (Some(m), _, _) => m,
            (None, Some(meta), _) => Metadata::new(0, &meta),
            (None, None, Some(m)) => m,
            (None, None, None) => return Err(Error::NotFound),
        };
        if let Some(mine) = mine {
            m.len = mine.len;
            m.mtime = mine.mtime;
        }
        let mut attr = Attr::of(ino, &m, self.opts.owner);
        // The kernel keeps one set of attributes for all processes: none
        // while they differ between processes. A creation nothing was
        // written to yet is empty to all; should its commit fail, the
        // kernel is told (`creation_abandoned`).
        let unwritten = pending.is_some() && changed.iter().all(|(_, m)| m.len == 0);
        attr.cacheable = changed.is_empty() || unwritten;
        Ok(attr)
    }

    /// Whether `key` exists: in the store, as an implied folder, or as a
    /// pending creation.
    pub(super) fn exists(&self, key: &[u8]) -> Result<bool> {
        // Pending first: a creation's commit stores, then ends pending.
        let pending = self
            .inodes
            .lookup(key)
            .is_some_and(|ino| self.inodes.is_pending(ino));
        Ok(pending || self.kind(key)?.is_some())
    }

    pub fn lookup(&self, parent: u64, name: &[u8], tid: u32) -> Result<Attr> {
        let key = self.key(parent, name)?;
        let _links = self.links.read();
        let ino = match self.inodes.lookup(&key) {
            Some(ino) => ino,
            None if self.kind(&key)?.is_some() => self.inodes.ino_for(&key),
            None => return Err(Error::NotFound),
        };
        self.attr(ino, &key, tid, None)
    }

    /// Attributes as thread `tid` sees them, through descriptor `fh` if
    /// the kernel names one (it does for `SEEK_END`, not for `fstat`).
    pub fn getattr(&self, ino: u64, fh: Option<u64>, tid: u32) -> Result<Attr> {
        match self.attr_of(ino, fh, tid) {
            // As for an open (`vanished`): the kernel retries once.
            Err(Error::Stale) => Err(self.vanished(tid)),
            r => r,
        }
    }

    fn attr_of(&self, ino: u64, fh: Option<u64>, tid: u32) -> Result<Attr> {
        let handle = fh
            .and_then(|fh| self.handles.get(fh).ok())
            .filter(|h| h.ino == ino);
        let _links = self.links.read();
        let Some(key) = self.inodes.key_of(ino) else {
            return self.detached_attr(ino, handle);
        };
        let own = handle.as_ref().filter(|h| h.mode.write).map(|h| &*h.draft);
        match self.attr(ino, &key, tid, own) {
            // A creation that ended without a value: its name leads
            // nowhere now (see `detached_attr`).
            Err(Error::NotFound) => Err(Error::Stale),
            r => r,
        }
    }

    /// chmod, chown, utimens and truncate. The kernel has checked the
    /// caller may (`default_permissions`); mode, owner and mtime go into
    /// the key's record (ctime now), or into a pending creation's.
    pub fn setattr(&self, ino: u64, req: SetAttr, tid: u32) -> Result<Attr> {
        let r = self.setattr_locked(ino, req, tid);
        self.announce();
        r
    }

    fn setattr_locked(&self, ino: u64, req: SetAttr, tid: u32) -> Result<Attr> {
        self.writable()?;
        let key = self.inodes.key_of(ino).ok_or(Error::NotFound)?;
        if let Some(size) = req.size {
            if self.kind(&key)?.is_some_and(|(k, _)| k == Kind::Directory) {
                return Err(Error::IsADirectory);
            }
            self.truncate(ino, &key, size, req.fh, tid)?;
        }
        if req.changes_meta() {
            // Under the key lock: a commit keeps the mode and owner it
            // read, so a chmod must not fall between its read and store.
            let _names = self.names.read();
            let _key = self.key_locks(&[ino]);
            self.set_meta(ino, &key, &req, tid)?;
        }
        if req.changes_meta()
            && let Some(k) = self.kernel.get()
        {
            k.attrs_changed(ino);
        }
        self.getattr(ino, req.fh, tid)
    }

    fn set_meta(&self, ino: u64, key: &[u8], req: &SetAttr, tid: u32) -> Result<()> {
        if let Some(t) = req.mtime {
            // A writer's draft commits its own mtime, which this sets.
            let draft = self.drafts_for(ino, req.fh, tid);
            let only_mtime = req.mode.is_none() && req.uid.is_none() && req.gid.is_none();
            if draft.is_some_and(|d| d.set_mtime(t)) && only_mtime {
                return Ok(());
            }
        }
        let change = |m: &mut Meta| {
            req.apply(m);
            m.ctime = to_ns(SystemTime::now());
        };
        if key.is_empty() {
            change(&mut self.root.lock());
            return Ok(());
        }
        if self.inodes.set_pending_meta(ino, change) {
            return Ok(());
        }
        match self.kind(key)? {
            Some((_, Some(m))) => {
                let mut meta = m.meta();
                change(&mut meta);
                Ok(self.store.set_meta(key, &meta)?)
            }
            // An implied folder gets a record of its own.
            Some((_, None)) => {
                let mut meta = self.implied_folder_meta();
                change(&mut meta);
                Ok(self.store.put(key, b"", &meta)?)
            }
            None => Err(Error::NotFound),
        }
    }

    /// The draft `fh` writes through, or else the one of `tid`'s process.
    fn drafts_for(&self, ino: u64, fh: Option<u64>, tid: u32) -> Option<Arc<Draft>> {
        match fh.and_then(|fh| self.handles.get(fh).ok()) {
            Some(h) if h.mode.write && h.ino == ino => Some(h.draft.clone()),
            _ => self
                .handles
                .drafts_of(ino)
                .into_iter()
                .find(|d| d.opener.is(tid)),
        }
    }

    /// Metadata for a new entry of `mode` made by `caller` (by the mount
    /// itself if `None`), now.
    pub(super) fn new_meta(&self, mode: u32, caller: Option<&Caller>) -> Meta {
        let now = to_ns(SystemTime::now());
        Meta {
            mode,
            uid: caller.map_or(OWNER_UNSET, |c| c.uid),
            gid: caller.map_or(OWNER_UNSET, |c| c.gid),
            mtime: now,
            ctime: now,
        }
    }

    /// The record a folder implied by its entries gets when it needs one:
    /// what it showed (mode 0755, the mounting user), changed now.
    pub(super) fn implied_folder_meta(&self) -> Meta {
        self.new_meta(S_IFDIR | u32::from(DIR_PERM), None)
    }

    /// ftruncate changes the descriptor's draft; truncate(2) by path the
    /// caller's draft if its process is writing the key, else the store
    /// at once.
    fn truncate(&self, ino: u64, key: &[u8], size: u64, fh: Option<u64>, tid: u32) -> Result<()> {
        if let Some(d) = self.drafts_for(ino, fh, tid) {
            let r = d.truncate(&*self.store, key, size, tid);
            return self.change(ino, r.map(|b| ((), b)));
        }
        match self.store.metadata(key)? {
            Some(m) if m.len == size => return Ok(()),
            Some(_) => {}
            None if !self.inodes.is_pending(ino) => return Err(Error::NotFound),
            // Being created by another process: stored too, and the last
            // commit wins, as always.
            None => {}
        }
        let _names = self.names.read();
        let _key = self.key_locks(&[ino]);
        self.make_way_for_writer(ino, key, tid)?;
        let d = Draft::on_committed(Opener::new(0));
        d.truncate(&*self.store, key, size, tid)?;
        d.commit(&*self.store, Some(key), None, || self.base_meta(ino, key))?;
        self.stored(ino, None);
        Ok(())
    }

    /// The mode and owner a commit of `key` keeps: the stored record's, or
    /// the pending creation's.
    pub(super) fn base_meta(&self, ino: u64, key: &[u8]) -> Result<Meta> {
        if let Some(m) = self.store.metadata(key)? {
            return Ok(m.meta());
        }
        Ok(self
            .inodes
            .pending_meta(ino)
            .unwrap_or_else(|| self.new_meta(S_IFREG | 0o644, None)))
    }

    /// After a change to a draft: when the draft began to differ from the
    /// store, the kernel's cached size is no longer everyone's.
    fn change<T>(&self, ino: u64, r: Result<(T, bool)>) -> Result<T> {
        let (out, newly_local) = r?;
        if newly_local && let Some(k) = self.kernel.get() {
            k.attrs_changed(ino);
        }
        Ok(out)
    }

    pub fn open(&self, ino: u64, flags: i32, tid: u32) -> Result<Opened> {
        let opened = self.open_inode(ino, flags, tid);
        if let Err(Error::Stale) = opened {
            let e = self.vanished(tid);
            let mode = OpenMode::of(flags);
            // The retry lost its key to an rm or mv again: a writer opens
            // as if just before that, and its writes go with the key, as
            // with any file removed while open. ENOENT would fail `echo v >
            // k`, which creates the key ("Directory nonexistent").
            if matches!(e, Error::NotFound) && mode.write && self.writer_may_open_removed(ino, tid)
            {
                self.writable()?;
                return Ok(self.open_writer(ino, mode, tid, Draft::empty));
            }
            return Err(e);
        }
        if opened.is_ok() {
            self.forget_stale(tid);
        }
        opened
    }

    /// `tid`'s open succeeded: a later ESTALE is not a retry of an earlier.
    pub(super) fn forget_stale(&self, tid: u32) {
        if self.any_stale.load(Ordering::Relaxed) {
            let mut stale = self.stale_opens.lock();
            stale.remove(&tid);
            self.any_stale.store(!stale.is_empty(), Ordering::Relaxed);
        }
    }

    /// Whether `tid`'s open is the kernel's retry of one answered ESTALE.
    fn retrying(&self, tid: u32) -> bool {
        self.any_stale.load(Ordering::Relaxed)
            && self
                .stale_opens
                .lock()
                .get(&tid)
                .is_some_and(|at| at.elapsed() < RETRY_WINDOW)
    }

    /// What an open (or a getattr) answers whose inode no longer fits its
    /// name: the key went away after the kernel looked it up (an rm or mv
    /// raced it), or moved to a new inode for this writer (page-cache
    /// readers hold the old one). First ESTALE: the kernel looks the name up again
    /// and retries once, opening what the name leads to now, or creating
    /// it afresh for `echo v > k`. Should the retry meet such a race again
    /// (under heavy churn), ENOENT: as if after an rm, rather than the
    /// ESTALE no local filesystem gives.
    fn vanished(&self, tid: u32) -> Error {
        let now = Instant::now();
        let mut stale = self.stale_opens.lock();
        let retry = stale
            .remove(&tid)
            .is_some_and(|at| now.duration_since(at) < RETRY_WINDOW);
        if !retry {
            stale.retain(|_, at| now.duration_since(*at) < RETRY_WINDOW);
            stale.insert(tid, now);
        }
        self.any_stale.store(!stale.is_empty(), Ordering::Relaxed);
        match retry {
            true => Error::NotFound,
            false => Error::Stale,
        }
    }

    pub(super) fn open_inode(&self, ino: u64, flags: i32, tid: u32) -> Result<Opened> {
        let key = {
            // Not between an mv's or rm's change of the store and of the
            // inode table, where the key would seem gone.
            let _links = self.links.read();
            let key = self.inodes.key_of(ino).ok_or(Error::Stale)?;
            // Pending first: a creation's commit stores, then ends pending.
            let pending = self.inodes.is_pending(ino);
            match self.kind(&key)? {
                Some((Kind::Directory, _)) => return Err(Error::IsADirectory),
                Some(_) => {}
                None if pending => {}
                None => return Err(Error::Stale),
            }
            key
        };
        let mode = OpenMode::of(flags);
        if !mode.write {
            return self.open_reader(ino, &key, mode);
        }
        self.writable()?;
        if self.retrying(tid) {
            self.wait_for_cached_readers(ino, tid);
        }
        // No reader may start reading through the cache between the check
        // and the writer's arrival.
        let _key = self.cache_lock(ino);
        // Should the store not answer, the draft loads the value when
        // first used, and reports the error then.
        let stored =
            self.while_key_of(ino, &key, || Ok(self.store.contains(&key).unwrap_or(true)))?;
        self.make_way_for_writer(ino, &key, tid)?;
        self.cache_event(ino, |c| c.writer_opened(tid));
        Ok(self.open_writer(ino, mode, tid, |opener| match stored {
            true => Draft::on_committed(opener),
            // Being created by another process: empty until that commits.
            false => Draft::empty(opener),
        }))
    }

    /// `f`, while `key` is still the key of `ino`: an mv may have taken
    /// it elsewhere since it was looked up (then ESTALE), and the name may
    /// have another inode and value already.
    pub(super) fn while_key_of<R>(
        &self,
        ino: u64,
        key: &[u8],
        f: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let _links = self.links.read();
        if self.inodes.key_of(ino).as_deref() != Some(key) {
            return Err(Error::Stale);
        }
        f()
    }

    fn open_writer(
        &self,
        ino: u64,
        mode: OpenMode,
        tid: u32,
        draft: impl FnOnce(Opener) -> Draft,
    ) -> Opened {
        let (fh, h) = self.handles.insert_writer(ino, mode, tid, draft);
        if mode.truncate {
            h.draft.start_empty();
        }
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
        if h.cached
            && let Some(v) = self.retired_value(h.ino, offset.saturating_add(size as u64))
        {
            return Ok(give(&v.bytes(offset, size)?));
        }
        let key = self.key_read_by(h.ino).unwrap_or_default();
        h.draft.read(&*self.store, &key, offset, size, give)
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
        let key = self.inodes.key_of(h.ino).unwrap_or_default();
        let room = |len| self.store.room(len);
        let append = h.mode.append && !from_cache;
        let r = h
            .draft
            .write(&*self.store, &key, offset, data, append, owner, &room);
        self.change(h.ino, r)
    }

    /// Commits `h`'s draft (see `Draft::commit` for `closer`). A created
    /// key stops being pending once its first commit is attempted: it is
    /// then in the store, or the commit failed and it never will be.
    pub(super) fn commit(&self, h: &Handle, closer: Option<Closer>) -> Result<()> {
        let _names = self.names.read();
        let _key = self.key_locks(&[h.ino]);
        self.commit_locked(h, closer)
    }

    /// `commit`, with `names` and the inode's key lock held.
    pub(super) fn commit_locked(&self, h: &Handle, closer: Option<Closer>) -> Result<()> {
        let key = self.inodes.key_of(h.ino);
        let base = || self.base_meta(h.ino, key.as_deref().unwrap_or_default());
        let result = h.draft.commit(&*self.store, key.as_deref(), closer, base);
        if !matches!(result, Ok(false)) && h.draft.end_pending() {
            match result {
                Ok(_) => self.inodes.drop_pending(h.ino),
                Err(_) => self.creation_abandoned(h.ino),
            }
        }
        if result? && key.is_some() {
            self.stored(h.ino, Some(&h.draft));
        }
        Ok(())
    }

    /// A new value of `ino` was stored (from draft `by`): the kernel's
    /// cached size and mtime are out of date, so is what its page cache
    /// holds, and truncations other drafts left for their release (their
    /// close returned before this) are now older.
    fn stored(&self, ino: u64, by: Option<&Draft>) {
        self.cache_event(ino, CacheState::value_stored);
        if let Some(k) = self.kernel.get() {
            k.attrs_changed(ino);
            // Readers left on older inodes of the key may follow its growth.
            if self.opts.cache_reads {
                for old in self.inodes.predecessors(ino) {
                    k.attrs_changed(old);
                }
            }
        }
        for other in self.handles.drafts_of(ino) {
            if !by.is_some_and(|by| std::ptr::eq(by, &*other)) {
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
    ///
    /// The handle leaves the table and its draft is committed under the
    /// inode's key lock, so an `rm` or `mv` of the key (which the kernel
    /// may send before this, as soon as close returned) sees either the
    /// handle or what it committed.
    pub fn release(&self, fh: u64) -> Result<()> {
        let r = self.release_locked(fh);
        self.announce();
        r
    }

    fn release_locked(&self, fh: u64) -> Result<()> {
        let ino = self.handles.get(fh)?.ino;
        let _names = self.names.read();
        let _key = self.key_locks(&[ino]);
        let (h, last) = self.handles.remove(fh)?;
        match (h.cached, h.mode.write) {
            (true, _) => self.cache_event(h.ino, CacheState::close_reader),
            (false, false) => self.cache_event(h.ino, CacheState::close_direct_reader),
            (false, true) => {}
        }
        if self.opts.cache_reads
            && self.inodes.is_retired(h.ino)
            && !self.handles.any_on(h.ino, |_| true)
        {
            self.inodes.forget_retired(h.ino);
        }
        if !last {
            return Ok(());
        }
        let result = self.commit_locked(&h, None);
        if h.draft.end_pending() {
            self.creation_abandoned(h.ino);
        }
        // A file written afresh; not an append, whose every close (each
        // line of a log) would copy the whole value to the kernel again.
        if h.mode.truncate && result.is_ok() {
            self.fill_cache(h.ino);
        }
        result
    }

    /// Commits the draft and forces everything to disk.
    pub fn fsync(&self, fh: u64) -> Result<()> {
        let h = self.handles.get(fh)?;
        let r = self.commit(&h, None);
        self.announce();
        r?;
        self.store.sync()
    }

    /// access(2): the kernel checks the modes itself
    /// (`default_permissions`) and asks only whether the inode is there.
    pub fn access(&self, ino: u64, mask: i32) -> Result<()> {
        self.inodes.key_of(ino).ok_or(Error::Stale)?;
        if mask & libc::W_OK != 0 {
            self.writable()?;
        }
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        self.store.sync()
    }

    /// Who to tell when what the kernel caches changes behind its back.
    pub fn set_kernel_cache(&self, k: Box<dyn KernelCache>) {
        let _ = self.kernel.set(k);
    }

    /// A created key ends without a stored value: it leaves its folder's
    /// listing.
    pub(super) fn creation_abandoned(&self, ino: u64) {
        self.inodes.drop_pending(ino);
        let Some(key) = self.inodes.key_of(ino) else {
            return;
        };
        let (dir, name) = tree::split(&key);
        let Some(dir) = self.inodes.lookup(dir) else {
            return;
        };
        STALE_NAMES.with(|s| s.borrow_mut().push((dir, name.to_vec())));
        if let Some(k) = self.kernel.get() {
            k.listing_changed(dir);
        }
    }

    /// Tells the kernel the names this request made stale; called with no
    /// lock held, before the reply (a close must not return before).
    fn announce(&self) {
        let names = STALE_NAMES.with(|s| std::mem::take(&mut *s.borrow_mut()));
        if let Some(k) = self.kernel.get() {
            for (parent, name) in names {
                k.entry_gone(parent, &name);
            }
        }
    }

    pub fn statfs(&self) -> Result<StatFs> {
        Ok(StatFs {
            namelen: MAX_NAME_LEN as u32,
            ..self.store.space()?
        })
    }

    /// At unmount: commits whatever open handles still hold.
    pub fn shutdown(&self) {
        for h in self.handles.drain() {
            if let Err(e) = self.commit(&h, None) {
                warn!("committing inode {} at unmount: {e}", h.ino);
            }
        }
    }
}

pub(super) fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).escape_debug().to_string()
}
