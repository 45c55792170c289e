//! What each filesystem operation means for caskfs, as plain methods that
//! return `Result`, over the schema (`crate::schema`) in a key-value
//! backend. The transports (`crate::transport`) call these and reply;
//! nothing here knows the FUSE protocol. Files are inodes, named by
//! directory entries; see docs/SCHEMA.md.
//!
//! Locks, always taken in this order: the directory map (`dirs`: written
//! by every change of names, which also rewrites the folders' inodes),
//! then the inodes' own locks (`Live::lock`, by inode number), held by
//! whatever rewrites an inode record.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use parking_lot::{Mutex, RwLock};

use super::attr::{Attr, Owner, SHARED_TTL, TTL};
use super::commit;
use super::dirs::DirMap;
use super::errno::{Error, Result};
use super::handle::HandleTable;
use super::live::{Frees, Live, Lives, Pin, Version};
use super::nodeids::NodeIds;
use super::store::Store;
use crate::backend::{Batch, Kv, Revision};
pub use crate::schema::superblock::State as StoreState;

/// The largest file unless a mount says other (`--max-value-size`): 16
/// TiB, as ext4's with 4 KiB blocks.
pub const MAX_FILE_SIZE: u64 = 16 << 40;
use crate::schema::superblock::{self, State};
use crate::schema::{Data, Inode, OWNER_UNSET, keys};
use crate::vocab::{FileType, MAX_NAME_LEN, StatFs, now_ns};

/// An open file: its handle number, whether it may write, and how it
/// reads (a writer: always `Direct`).
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    pub fh: u64,
    pub write: bool,
    pub read: super::page_cache::ReadMode,
}

/// How the filesystem presents the store.
#[derive(Clone, Copy, Debug)]
pub struct FsOptions {
    /// Who owns what records no owner (see `Owner`).
    pub owner: Owner,
    pub read_only: bool,
    /// Readers may read through the kernel's page cache (`page_cache.rs`).
    pub cache_reads: bool,
    /// Other hosts change the store too: the backend tells of their
    /// changes, and the kernel keeps names and attributes for
    /// `SHARED_TTL` at most and lists folders afresh, in case it tells
    /// late.
    pub shared: bool,
    /// The largest file (EFBIG past it).
    pub max_file_size: u64,
}

/// Who asks: the thread, and the user and group a new file belongs to.
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
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
    pub fh: Option<u64>,
}

/// One directory entry; `offset` is where the next read continues.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub ino: u64,
    pub offset: u64,
    pub kind: FileType,
    pub name: Vec<u8>,
}

/// What the kernel caches that the daemon must correct when it changes
/// without a request the kernel saw: the transport tells the kernel.
/// Every number here is a node id.
pub trait KernelCache: Send + Sync {
    /// The size or mtime of `node` changed: a commit stored a new version,
    /// or a process's draft began to differ from the store.
    fn attrs_changed(&self, node: u64);
    /// The listing of folder `dir` changed: a created file whose first
    /// commit failed.
    fn listing_changed(&self, dir: u64);
    /// `name` in folder `parent` leads to nothing now: a created file
    /// whose first commit failed. Returns once the kernel has forgotten
    /// the name (or after a bound, should it be busy).
    fn entry_gone(&self, parent: u64, name: &[u8]);
    /// Another host changed what `name` in folder `parent` leads to: the
    /// kernel forgets the name. Called outside requests, so it may wait
    /// for the folder's lock.
    fn name_changed(&self, parent: u64, name: &[u8]);
    /// The page cache of `node`, which nobody has open, is to hold `value`
    /// and nothing else; returns whether the kernel took it.
    fn fill(&self, node: u64, value: &[u8]) -> bool;
}

thread_local! {
    /// Names whose kernel entries a request made stale, told to the kernel
    /// at the end of the request (`CaskFs::announce`), when it holds no
    /// lock: the kernel takes the folder's lock to drop a name, which an
    /// operation in that folder may hold while it waits on one of ours.
    static STALE_NAMES: RefCell<Vec<(u64, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
}

/// A file `create` made whose first commit has not come yet: it is in
/// the directory map (so lookups and listings see it) but not stored.
pub(super) struct Pending {
    pub parent: u64,
    pub name: Vec<u8>,
    /// What it will be stored as, but for its size and bytes.
    pub inode: Inode,
}

/// How many removed inodes keep their last attributes (`CaskFs::removed`).
const REMOVED_KEPT: usize = 4096;

pub struct CaskFs {
    pub(super) store: Store,
    pub(super) opts: FsOptions,
    pub(super) dirs: RwLock<DirMap>,
    pub(super) lives: Lives,
    /// Keys nothing reaches any more, to delete at the end of a request.
    pub(super) frees: Frees,
    pub(super) handles: HandleTable,
    pub(super) nodeids: NodeIds,
    pub(super) pending: Mutex<HashMap<u64, Pending>>,
    /// Files with extent trees committed since the last rewrite of their
    /// pieces (`defrag.rs`).
    pub(super) changed: Mutex<HashSet<u64>>,
    /// Held while extents' holders records are read and written
    /// (`sharing.rs`).
    pub(super) sharing: Mutex<()>,
    /// Some extent has a holders record: only then does freeing one look
    /// for it.
    pub(super) any_shared: AtomicBool,
    /// Folders whose current times are not stored yet (`folder_times.rs`).
    pub(super) unstored: Mutex<HashSet<u64>>,
    /// Open directory streams: a snapshot of the names, taken at the
    /// first readdir (a listing the kernel serves from its cache never
    /// asks, so opendir itself must stay cheap).
    pub(super) listings: Mutex<HashMap<u64, Option<Arc<Vec<DirEntry>>>>>,
    pub(super) next_listing: AtomicU64,
    pub(super) kernel: OnceLock<Box<dyn KernelCache>>,
    /// Inodes an unlink removed, with their last attributes, newest last:
    /// the kernel may still ask through a name it looked up before.
    removed: Mutex<VecDeque<(u64, Attr)>>,
    /// Entry keys this mount wrote on a shared backend, at their revision
    /// (`note_own`).
    pub(super) own: Mutex<HashMap<Vec<u8>, crate::backend::Revision>>,
    /// Threads whose open was just answered ESTALE, and when (`vanished`);
    /// `any_stale` spares every other open the lock.
    stale_opens: Mutex<HashMap<u32, Instant>>,
    any_stale: AtomicBool,
    /// What the last garbage collection found unreached, and when.
    pub(super) unreached_seen: Mutex<Option<(Instant, HashSet<Vec<u8>>)>>,
}

/// How long after an ESTALE an open by the same thread counts as the
/// kernel's retry of it, which comes at once.
const RETRY_WINDOW: Duration = Duration::from_secs(1);

impl CaskFs {
    /// The filesystem in `kv`: a new one if `kv` holds nothing. Frees what
    /// files removed while open left when the store last closed.
    pub fn load(kv: Arc<dyn Kv>, opts: FsOptions) -> Result<CaskFs> {
        let store = Store::new(kv);
        match superblock(&store)? {
            Some(State::Ready) => {}
            Some(_) => return Err(Error::OldLayout("was left half carried over")),
            None if has_keys(&store)? => return Err(Error::OldLayout("is in the old layout")),
            None if opts.read_only => return Err(Error::ReadOnly),
            None => init(&store, State::Ready)?,
        }
        CaskFs::open_store(store, opts)
    }

    /// The filesystem of a store being carried over from the old layout
    /// (`crate::upgrade`): made anew (empty) unless it is copied already.
    pub fn load_upgrading(kv: Arc<dyn Kv>, opts: FsOptions) -> Result<CaskFs> {
        let store = Store::new(kv);
        match superblock(&store)? {
            Some(State::Clearing | State::Ready) => {}
            Some(State::Upgrading) | None => {
                // What an interrupted copy wrote goes: it starts over.
                let stale: Vec<Vec<u8>> = store
                    .kv
                    .keys(b"")?
                    .into_iter()
                    .filter(|k| keys::is_schema_key(k))
                    .collect();
                commit::delete(&*store.kv, stale)?;
                init(&store, State::Upgrading)?;
            }
        }
        CaskFs::open_store(store, opts)
    }

    fn open_store(store: Store, opts: FsOptions) -> Result<CaskFs> {
        let started = Instant::now();
        let dirs = DirMap::load(&*store.kv)?;
        info!(
            "loaded {} names in {:.3} s",
            dirs.len(),
            started.elapsed().as_secs_f64()
        );
        let frees = Frees::default();
        let fs = CaskFs {
            store,
            opts,
            dirs: RwLock::new(dirs),
            lives: Lives::new(frees.clone()),
            frees,
            handles: HandleTable::default(),
            nodeids: NodeIds::default(),
            pending: Mutex::default(),
            unstored: Mutex::default(),
            sharing: Mutex::default(),
            any_shared: AtomicBool::default(),
            changed: Mutex::default(),
            listings: Mutex::default(),
            next_listing: AtomicU64::new(0),
            kernel: OnceLock::new(),
            removed: Mutex::default(),
            own: Mutex::default(),
            stale_opens: Mutex::default(),
            any_stale: AtomicBool::new(false),
            unreached_seen: Mutex::default(),
        };
        let shared = !fs.store.kv.keys(keys::holders_prefix())?.is_empty();
        fs.any_shared.store(shared, Ordering::Relaxed);
        if !opts.read_only {
            fs.free_orphans()?;
            fs.mark_open()?;
        }
        Ok(fs)
    }

    /// The backend, for what works on it directly (stats, checks).
    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.store.kv
    }

    /// Whether other hosts change the store too.
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

    /// Who to tell when what the kernel caches changes behind its back.
    pub fn set_kernel_cache(&self, k: Box<dyn KernelCache>) {
        let _ = self.kernel.set(k);
    }

    /// A name in a folder, checked as POSIX checks it.
    pub(super) fn check_name(name: &[u8]) -> Result<()> {
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong);
        }
        if name.is_empty()
            || name == b"."
            || name == b".."
            || name.contains(&b'/')
            || name.contains(&0)
        {
            return Err(Error::InvalidName);
        }
        Ok(())
    }

    /// The committed inode record of `ino`: kept while in use, else read.
    pub(super) fn inode(&self, ino: u64) -> Result<Option<Inode>> {
        if let Some(v) = self.lives.find(ino).and_then(|l| l.current()) {
            return Ok(Some(v.inode.clone()));
        }
        if let Some(p) = self.pending.lock().get(&ino) {
            return Ok(Some(p.inode.clone()));
        }
        self.store.inode(ino)
    }

    /// The committed version of `ino`, pinned: `None` if it has none (not
    /// stored yet, or removed).
    pub(super) fn pin_current(&self, live: &Arc<Live>) -> Result<Option<Pin>> {
        // On a shared backend a version is read from it at every pin (an
        // open's first read): reads are linearizable, as the backend's are.
        if !self.opts.shared
            && let Some(pin) = live.pin_current()
        {
            return Ok(Some(pin));
        }
        // The number comes before the read: a commit racing with it
        // cannot free what the record read reaches.
        let vno = self.lives.next_vno();
        live.pin_ahead(vno);
        match self.store.inode_at(live.ino) {
            Ok(Some((inode, revision))) => Ok(Some(live.settle(Arc::new(Version {
                vno,
                ino: live.ino,
                inode,
                revision,
            })))),
            other => {
                live.unpin(vno);
                other.map(|_| None)
            }
        }
    }

    /// The folder inode `dir` names, or why not.
    pub(super) fn folder(&self, dir: u64) -> Result<Inode> {
        match self.inode(dir)? {
            Some(i) if i.kind == FileType::Directory && i.nlink > 0 => Ok(i),
            Some(i) if i.kind == FileType::Directory => Err(Error::NotFound),
            Some(_) => Err(Error::NotADirectory),
            None => Err(Error::NotFound),
        }
    }

    /// Metadata for a new inode of `kind` with `perm` under `umask`, made
    /// by `caller` in folder `parent` (whose set-group-ID bit gives new
    /// entries its group, and new folders the bit).
    pub(super) fn new_inode(
        &self,
        kind: FileType,
        perm: u32,
        umask: u32,
        parent: &Inode,
        caller: &Caller,
    ) -> Inode {
        let mut i = Inode::new(kind, perm & !umask, caller.uid, caller.gid, now_ns());
        if parent.perm & crate::vocab::S_ISGID != 0 {
            i.gid = parent.gid;
            if kind == FileType::Directory {
                i.perm |= crate::vocab::S_ISGID;
            }
        }
        i
    }

    pub(super) fn attr_of(&self, ino: u64, inode: &Inode) -> Attr {
        Attr::of(self.nodeids.node_of(ino), ino, inode, self.opts.owner)
    }

    /// The last attributes of an inode an unlink removed (for a stat that
    /// raced it), if kept.
    pub(super) fn removed(&self, ino: u64) -> Option<Attr> {
        let r = self.removed.lock();
        r.iter().rev().find(|(i, _)| *i == ino).map(|(_, a)| *a)
    }

    pub(super) fn remember_removed(&self, ino: u64, mut a: Attr) {
        a.nlink = 0;
        a.cacheable = false;
        let mut r = self.removed.lock();
        if r.len() == REMOVED_KEPT {
            r.pop_front();
        }
        r.push_back((ino, a));
    }

    /// Deletes what nothing reaches any more (gathered by every inode as
    /// its pins let go), with no lock held.
    pub(super) fn flush_frees(&self) {
        let keys = std::mem::take(&mut *self.frees.lock());
        if keys.is_empty() || self.opts.read_only {
            return;
        }
        if let Err(e) = self.delete_freed(keys) {
            // Left as garbage: nothing reaches it, a check finds it.
            warn!("freeing what no file reaches any more: {e}");
        }
    }

    /// Makes `inode` (stored at `revision`) the current version of `live`
    /// and frees what the version it replaced reaches and it does not.
    /// Under the inode's lock: a later commit on an older base (a draft
    /// begun before this version) may reach those keys again, and takes
    /// them back (`Live::keep`) only from what waits for that base's pin;
    /// freed after that commit, they would be deleted under it.
    pub(super) fn set_current_and_free(
        &self,
        live: &Live,
        inode: Inode,
        revision: Revision,
        frees: Vec<Vec<u8>>,
    ) {
        let version = self.lives.version(live.ino, inode, revision);
        let vno = version.vno;
        live.set_current(version);
        self.free(live, vno, frees);
    }

    /// Frees `keys` of inode `live` as of version `vno`: at once, or when
    /// the older versions pinned let go.
    pub(super) fn free(&self, live: &Live, vno: u64, keys: Vec<Vec<u8>>) {
        // Another host may read or commit on what this version replaced:
        // `collect_garbage` removes it once nothing has reached it for a
        // while.
        if self.opts.shared {
            return;
        }
        let now = live.free(vno, keys);
        self.frees.lock().extend(now);
    }

    /// Tells the kernel the names this request made stale, and deletes
    /// what it freed; called with no lock held, before the reply (a close
    /// must not return before).
    pub(super) fn announce(&self) {
        let names = STALE_NAMES.with(|s| std::mem::take(&mut *s.borrow_mut()));
        if let Some(k) = self.kernel.get() {
            for (parent, name) in names {
                k.entry_gone(parent, &name);
            }
        }
        self.flush_frees();
    }

    /// A name the kernel must forget at the end of the request.
    pub(super) fn stale_name(&self, parent: u64, name: &[u8]) {
        STALE_NAMES.with(|s| {
            s.borrow_mut()
                .push((self.nodeids.node_of(parent), name.to_vec()))
        });
    }

    pub fn statfs(&self) -> Result<StatFs> {
        Ok(StatFs {
            namelen: MAX_NAME_LEN as u32,
            ..self.store.kv.space()?
        })
    }

    pub fn sync(&self) -> Result<()> {
        self.store_folder_times()?;
        Ok(self.store.kv.sync()?)
    }

    /// access(2): the kernel checks the modes itself
    /// (`default_permissions`) and asks only whether the inode is there.
    pub fn access(&self, node: u64, mask: i32) -> Result<()> {
        let ino = self.nodeids.ino_of(node);
        self.inode(ino)?.ok_or(Error::Stale)?;
        if mask & libc::W_OK != 0 {
            self.writable()?;
        }
        Ok(())
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
    pub(super) fn retrying(&self, tid: u32) -> bool {
        self.any_stale.load(Ordering::Relaxed)
            && self
                .stale_opens
                .lock()
                .get(&tid)
                .is_some_and(|at| at.elapsed() < RETRY_WINDOW)
    }

    /// What an open (or a getattr) answers whose node no longer fits: the
    /// file was removed after the kernel looked it up (an rm raced it), or
    /// its names moved to a new node for a writer (page-cache readers hold
    /// the old one). First ESTALE: the kernel looks the name up again and
    /// retries once, opening what the name leads to now, or creating it
    /// afresh for `echo v > k`. Should the retry meet such a race again
    /// (under heavy churn), ENOENT: as if after an rm, rather than the
    /// ESTALE no local filesystem gives.
    pub(super) fn vanished(&self, tid: u32) -> Error {
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

    /// Frees the inodes a crash left with no name (removed while open):
    /// nothing can open them any more.
    fn free_orphans(&self) -> Result<()> {
        let orphans = self.store.kv.keys(keys::orphan_prefix())?;
        for ino in orphans.iter().filter_map(|k| keys::orphan_of(k)) {
            let data = self.store.inode(ino)?.map(|i| i.data);
            let mut frees = match &data {
                Some(d) => commit::unreached(&self.store, d, &Data::None, &self.store)?,
                None => Vec::new(),
            };
            frees.push(keys::inode(ino).to_vec());
            frees.push(keys::orphan(ino).to_vec());
            self.delete_freed(frees)?;
            info!("freed inode {ino}, removed while open when the store last closed");
        }
        Ok(())
    }

    /// At unmount: commits whatever open handles still hold.
    pub fn shutdown(&self) {
        for h in self.handles.drain() {
            if let Err(e) = self.commit(&h, None) {
                warn!("committing inode {} at unmount: {e}", h.ino);
            }
        }
        self.flush_frees();
        if let Err(e) = self.store_folder_times() {
            warn!("storing folders' times at unmount: {e}");
        }
        if !self.opts.read_only && !self.opts.shared {
            let mut b = Batch::default();
            b.delete(keys::open_mark());
            if let Err(e) = self.store.kv.write(b) {
                warn!("marking the store closed: {e}");
            }
        }
    }

    /// Runs `tick` every `period` in a thread named `name`, for as long as
    /// the filesystem lives (held only while ticking). If the thread
    /// cannot start, `without` says what goes without it.
    pub(super) fn every(
        self: &Arc<Self>,
        (name, period): (&str, Duration),
        without: &str,
        mut tick: impl FnMut(&CaskFs) + Send + 'static,
    ) {
        let fs = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                loop {
                    std::thread::sleep(period);
                    match fs.upgrade() {
                        Some(fs) => tick(&fs),
                        None => return,
                    }
                }
            });
        if let Err(e) = spawned {
            warn!("{without}: {e}");
        }
    }

    /// Marks the store open until `shutdown`; if the last open left the
    /// mark (it crashed), first deletes the extents, nodes and files'
    /// inodes nothing reaches: a draft's that never committed, frees that
    /// were waiting, a create or an unlink cut in two.
    /// Not on a shared backend: other hosts' drafts are there too
    /// (`collect_garbage` is its way).
    fn mark_open(&self) -> Result<()> {
        if self.opts.shared {
            return Ok(());
        }
        let mark = keys::open_mark();
        if self.store.kv.get(&mark)?.is_some() {
            let reach = self.reachable_keys()?;
            let mut dead = Vec::new();
            for prefix in [keys::extent_prefix(), keys::node_prefix()] {
                let found = self.store.kv.keys(prefix)?;
                dead.extend(found.into_iter().filter(|k| !reach.contains(k)));
            }
            // A file created or removed as the crash came, whose name was
            // not written yet or was already deleted (`Batch::in_order`).
            // Folders are always written with their names.
            for k in self.store.kv.keys(keys::inode_prefix())? {
                if reach.contains(&k) {
                    continue;
                }
                let Some(ino) = keys::inode_of(&k) else {
                    continue;
                };
                if self
                    .store
                    .inode(ino)?
                    .is_some_and(|i| i.kind != FileType::Directory)
                {
                    dead.push(k);
                }
            }
            // Holders of extents nothing reaches any more.
            for k in self.store.kv.keys(keys::holders_prefix())? {
                if !reach.contains(&k) {
                    dead.push(k);
                }
            }
            if !dead.is_empty() {
                info!(
                    "removing {} inodes, extents and nodes a crash left unreached",
                    dead.len()
                );
            }
            commit::delete(&*self.store.kv, dead)?;
        }
        let mut b = Batch::default();
        b.put(mark, Vec::new());
        self.store.kv.write(b)?;
        Ok(())
    }
}

/// The state the superblock says, if the store has one.
pub(super) fn superblock(store: &Store) -> Result<Option<State>> {
    match store.kv.get(keys::SUPERBLOCK)? {
        Some(v) => Ok(Some(superblock::decode(&v.to_vec()?)?)),
        None => Ok(None),
    }
}

/// Whether the store holds any key.
fn has_keys(store: &Store) -> Result<bool> {
    Ok(!store.kv.keys(b"")?.is_empty())
}

/// A new store, or one being carried over: the superblock in `state`, and
/// an empty root folder, owned by whoever mounts it.
fn init(store: &Store, state: State) -> Result<()> {
    let mut root = Inode::new(
        FileType::Directory,
        0o755,
        OWNER_UNSET,
        OWNER_UNSET,
        now_ns(),
    );
    root.nlink = 2;
    root.parent = keys::ROOT;
    let mut b = Batch::default();
    b.put(keys::inode(keys::ROOT).to_vec(), root.encode())
        .put(keys::SUPERBLOCK.to_vec(), superblock::encode(state));
    store.kv.write(b)?;
    Ok(())
}

impl CaskFs {
    /// Says what state a store carried over is in now.
    pub fn set_state(&self, state: State) -> Result<()> {
        let mut b = Batch::default();
        b.put(keys::SUPERBLOCK.to_vec(), superblock::encode(state));
        self.store.kv.write(b)?;
        Ok(())
    }

    /// Gives inode `ino` these attributes, as they were elsewhere (a store
    /// carried over, a backup): permission bits, owner, and times.
    pub fn restore(
        &self,
        ino: u64,
        perm: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
        ctime: i64,
    ) -> Result<()> {
        let live = self.lives.get(ino);
        let _lock = live.lock();
        let mut inode = self.inode(ino)?.ok_or(Error::NotFound)?;
        inode.perm = perm & crate::vocab::PERM_BITS;
        inode.uid = uid;
        inode.gid = gid;
        inode.mtime = mtime;
        inode.ctime = ctime;
        self.put_inode(&live, inode)
    }
}
