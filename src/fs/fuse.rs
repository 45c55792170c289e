//! The one adapter between the kernel's FUSE protocol (fuser) and `fs.rs`:
//! decode arguments, call the operation, reply, map errors. Every method
//! of `fuser::Filesystem` is written out, so nothing answers by default.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner,
    Notifier, OpenFlags, PollEvents, PollFlags, PollNotifier, RenameFlags, ReplyAttr, ReplyBmap,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyLock, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};
use log::{debug, warn};

use super::attr::{Attr, BLOCK_SIZE, Kind, Owner};
use super::counters::{Counters, Req};
use super::errno::{Error, log_and_errno};
use super::fs::{Caller, CaskFs, KernelCache, Opened, SetAttr};
use super::page_cache::ReadMode;
use super::uring::{MAX_REQUEST, Server as UringServer};

pub struct CaskFuse {
    fs: Arc<CaskFs>,
    /// How long the kernel may keep names and attributes.
    ttl: Duration,
    counters: Arc<Counters>,
    /// Set once the session exists (`mount.rs`), before any request.
    notifier: Arc<OnceLock<Notifier>>,
    /// Whether to ask INIT for FUSE over io_uring, and whether the kernel
    /// agreed (`uring`).
    uring: Option<Arc<AtomicBool>>,
}

impl CaskFuse {
    pub fn new(fs: Arc<CaskFs>) -> CaskFuse {
        let notifier: Arc<OnceLock<Notifier>> = Arc::new(OnceLock::new());
        fs.set_kernel_cache(Box::new(Invalidator(notifier.clone())));
        CaskFuse {
            ttl: fs.cache_lifetime(),
            fs,
            counters: Arc::default(),
            notifier,
            uring: None,
        }
    }

    /// Has INIT ask for FUSE over io_uring; the flag returned tells,
    /// once the session is made, whether the kernel agreed.
    pub fn ask_for_uring(&mut self) -> Arc<AtomicBool> {
        self.uring.get_or_insert_with(Arc::default).clone()
    }

    /// What serves requests that come through io_uring rings: the same
    /// filesystem, counters and cache lifetime as this adapter.
    pub fn uring_server(&self) -> UringServer {
        UringServer {
            fs: self.fs.clone(),
            counters: self.counters.clone(),
            ttl: self.ttl,
        }
    }

    /// What it has served, counted as it goes.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    fn reply_entry(&self, reply: ReplyEntry, op: &str, r: Result<Attr, Error>) {
        match r {
            Ok(a) => {
                let ttl = a.ttl(self.ttl);
                reply.entry_with_ttls(&ttl, &ttl, &to_file_attr(&a), Generation(0))
            }
            Err(e) => reply.error(err(op, &e)),
        }
    }

    /// Where the session's notifier goes once the session is made.
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }
}

/// How long a close waits for the kernel to drop a name (see
/// `entry_gone`).
const NAME_WAIT: Duration = Duration::from_millis(100);

/// Tells the kernel what changed behind its back. All are called from
/// inside request handlers, before the reply that lets the caller go on
/// (a close, a write), so every later stat or listing asks again; an
/// attribute reply already on its way is discarded by the kernel, whose
/// attribute version this bumps. Only `fill` drops data pages, of an
/// inode nobody has open, so none waits on a read in flight: the cache of
/// a value that changed is dropped by the next open (`page_cache.rs`), or
/// by the kernel itself when it sees the size change.
struct Invalidator(Arc<OnceLock<Notifier>>);

impl KernelCache for Invalidator {
    /// First drops every page and the attributes (pages past the value's
    /// end may hold an older, longer value's bytes), then stores the value.
    /// Nobody has the inode open, so no read in flight holds its pages.
    fn fill(&self, ino: u64, value: &[u8]) -> bool {
        let Some(n) = self.0.get() else {
            return false;
        };
        let filled = n
            .inval_inode(INodeNo(ino), 0, 0)
            .and_then(|()| n.store(INodeNo(ino), 0, value));
        // ENOENT: the kernel has forgotten the inode.
        if let Err(e) = &filled {
            debug!("filling the page cache of inode {ino}: {e}");
        }
        filled.is_ok()
    }

    fn attrs_changed(&self, ino: u64) {
        if let Some(n) = self.0.get()
            && let Err(e) = n.inval_inode(INodeNo(ino), -1, 0)
        {
            warn!("invalidating the attributes of inode {ino}: {e}");
        }
    }

    /// Listings are cached by the kernel (`opendir`), which drops them
    /// itself on every create, unlink and rename it sends; only a key that
    /// vanishes without one needs telling.
    fn listing_changed(&self, dir: u64) {
        if let Some(n) = self.0.get()
            && let Err(e) = n.inval_inode(INodeNo(dir), 0, 0)
        {
            warn!("invalidating the cached listing: {e}");
        }
    }

    /// Dropping a name takes its folder's lock in the kernel, which an
    /// operation in that folder may hold while it waits on this daemon:
    /// so a thread of its own does it, which the caller waits for up to a
    /// bound.
    fn entry_gone(&self, parent: u64, name: &[u8]) {
        let Some(n) = self.0.get().cloned() else {
            return;
        };
        let name = OsStr::from_bytes(name).to_os_string();
        let (done, finished) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("inval-entry".into())
            .spawn(move || {
                drop_name(&n, parent, &name);
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => {
                let _ = finished.recv_timeout(NAME_WAIT);
            }
            Err(e) => warn!("starting a thread to invalidate a name: {e}"),
        }
    }

    fn name_changed(&self, parent: u64, name: &[u8]) {
        if let Some(n) = self.0.get() {
            drop_name(n, parent, OsStr::from_bytes(name));
        }
    }
}

/// Has the kernel forget `name` in folder `parent`.
fn drop_name(n: &Notifier, parent: u64, name: &OsStr) {
    // ENOENT: the kernel had no such name; nothing to drop.
    if let Err(e) = n.inval_entry(INodeNo(parent), name)
        && e.raw_os_error() != Some(libc::ENOENT)
    {
        warn!("invalidating the name {name:?}: {e}");
    }
}

/// How the kernel is to treat an open file. A writer's is direct I/O:
/// reads and writes go to its handle, which holds the writer's own view.
/// A reader's goes through the page cache when `page_cache.rs` allows,
/// else straight to the value it pinned. Read-only opens need no flush.
pub(super) fn open_flags(o: &Opened) -> FopenFlags {
    match (o.write, o.read) {
        (true, _) => FopenFlags::FOPEN_DIRECT_IO,
        (false, ReadMode::Direct) => FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NOFLUSH,
        (false, ReadMode::Cached { keep: true }) => {
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH
        }
        (false, ReadMode::Cached { keep: false }) => FopenFlags::FOPEN_NOFLUSH,
    }
}

/// The kernel keeps a listing in its page cache across opens, unless
/// other hosts change it unseen.
pub(super) fn dir_open_flags(fs: &CaskFs) -> FopenFlags {
    match fs.shared() {
        false => FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
        true => FopenFlags::empty(),
    }
}

fn err(op: &str, e: &Error) -> Errno {
    Errno::from_i32(log_and_errno(op, e))
}

fn to_file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks(),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: to_file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.owner.uid,
        gid: a.owner.gid,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

fn to_file_type(k: Kind) -> FileType {
    match k {
        Kind::Directory => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

/// Who sends a request.
fn caller(req: &Request) -> Caller {
    Caller {
        tid: req.pid(),
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn reply_empty(reply: ReplyEmpty, op: &str, r: Result<(), Error>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(op, &e)),
    }
}

impl Filesystem for CaskFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // O_TRUNC arrives with open instead of as a separate setattr, so a
        // truncating open starts an empty buffer instead of storing "".
        // Lookups and listings of the one directory may run in parallel.
        let wanted = [
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
            InitFlags::FUSE_PARALLEL_DIROPS,
        ];
        for flag in wanted {
            if config.capabilities().contains(flag) {
                let _ = config.add_capabilities(flag);
            }
        }
        if let Some(agreed) = &self.uring
            && config
                .capabilities()
                .contains(InitFlags::FUSE_OVER_IO_URING)
        {
            // No request may outgrow a slot's payload buffer.
            let _ = config.set_max_write(MAX_REQUEST);
            if let Err(most) = config.set_max_readahead(MAX_REQUEST) {
                let _ = config.set_max_readahead(most);
            }
            let asked = config.add_capabilities(InitFlags::FUSE_OVER_IO_URING);
            agreed.store(asked.is_ok(), Ordering::Release);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.fs.shutdown();
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.counters.request(Req::Lookup);
        match self.fs.lookup(parent.0, name.as_bytes(), req.pid()) {
            // A missing name stays missing until a create or rename that
            // the kernel itself sends: it may remember the answer (an
            // entry with inode 0).
            Err(Error::NotFound) => {
                let none = Attr::implied_folder(0, SystemTime::UNIX_EPOCH, Owner::current());
                let none = FileAttr {
                    kind: FileType::RegularFile,
                    ..to_file_attr(&none)
                };
                reply.entry_with_ttls(&Duration::ZERO, &self.ttl, &none, Generation(0));
            }
            r => self.reply_entry(reply, "lookup", r),
        }
    }

    /// Inode numbers live as long as the mount; nothing to forget.
    fn forget(&self, _req: &Request, _ino: INodeNo, _nlookup: u64) {}

    // batch_forget keeps fuser's default, which calls `forget` above: its
    // argument type is not exported by fuser 0.18.

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.counters.request(Req::Getattr);
        match self.fs.getattr(ino.0, fh.map(|f| f.0), req.pid()) {
            Ok(a) => reply.attr(&a.ttl(self.ttl), &to_file_attr(&a)),
            Err(e) => reply.error(err("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.counters.request(Req::Setattr);
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            mtime: mtime.map(time),
            fh: fh.map(|f| f.0),
        };
        match self.fs.setattr(ino.0, change, req.pid()) {
            Ok(a) => reply.attr(&a.ttl(self.ttl), &to_file_attr(&a)),
            Err(e) => reply.error(err("setattr", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.counters.request(Req::Readlink);
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(err("readlink", &e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        self.counters.request(Req::Mknod);
        let r = self
            .fs
            .mknod(parent.0, name.as_bytes(), mode, umask, &caller(req));
        self.reply_entry(reply, "mknod", r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.counters.request(Req::Mkdir);
        let r = self
            .fs
            .mkdir(parent.0, name.as_bytes(), mode, umask, &caller(req));
        self.reply_entry(reply, "mkdir", r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.counters.request(Req::Unlink);
        reply_empty(reply, "unlink", self.fs.unlink(parent.0, name.as_bytes()));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.counters.request(Req::Rmdir);
        reply_empty(reply, "rmdir", self.fs.rmdir(parent.0, name.as_bytes()));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.counters.request(Req::Symlink);
        let target = target.as_os_str().as_bytes();
        let r = self
            .fs
            .symlink(parent.0, link_name.as_bytes(), target, &caller(req));
        self.reply_entry(reply, "symlink", r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.counters.request(Req::Rename);
        let r = self.fs.rename(
            parent.0,
            name.as_bytes(),
            newparent.0,
            newname.as_bytes(),
            flags.bits(),
        );
        reply_empty(reply, "rename", r);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.counters.request(Req::Link);
        debug!("link {newname:?}");
        reply.error(err("link", &self.fs.refuse("hard links")));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.counters.request(Req::Open);
        match self.fs.open(ino.0, flags.0, req.pid()) {
            Ok(o) => reply.opened(FileHandle(o.fh), open_flags(&o)),
            Err(e) => reply.error(err("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.counters.request(Req::Read);
        // The reply is sent from inside: straight from the segment's
        // mapping, with no copy of a large value in between.
        let mut reply = Some(reply);
        let r = self.fs.read(fh.0, offset, size as usize, |data| {
            self.counters.read(data.len());
            if let Some(reply) = reply.take() {
                reply.data(data);
            }
        });
        if let (Err(e), Some(reply)) = (r, reply) {
            reply.error(err("read", &e));
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.counters.request(Req::Write);
        let from_cache = write_flags.contains(WriteFlags::FUSE_WRITE_CACHE);
        let owner = lock_owner.map(|o| o.0);
        match self.fs.write(fh.0, offset, data, from_cache, owner) {
            Ok(n) => {
                self.counters.written(n);
                reply.written(n as u32)
            }
            Err(e) => reply.error(err("write", &e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.counters.request(Req::Flush);
        let r = self.fs.flush(fh.0, lock_owner.0, req.pid());
        reply_empty(reply, "flush", r);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.counters.request(Req::Release);
        reply_empty(reply, "release", self.fs.release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.counters.request(Req::Fsync);
        reply_empty(reply, "fsync", self.fs.fsync(fh.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.counters.request(Req::Opendir);
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), dir_open_flags(&self.fs)),
            Err(e) => reply.error(err("opendir", &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.counters.request(Req::Readdir);
        match self.fs.readdir(ino.0, fh.0, offset) {
            Ok((entries, start)) => {
                for e in &entries[start..] {
                    let name = OsStr::from_bytes(&e.name);
                    if reply.add(INodeNo(e.ino), e.offset, to_file_type(e.kind), name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(err("readdir", &e)),
        }
    }

    /// Not requested at init (FUSE_DO_READDIRPLUS is off), so never sent.
    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        self.counters.request(Req::Readdirplus);
        reply.error(Errno::ENOSYS);
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.counters.request(Req::Releasedir);
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    /// The directory is the key set; syncing it syncs the store.
    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.counters.request(Req::Fsyncdir);
        reply_empty(reply, "fsyncdir", self.fs.sync());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.counters.request(Req::Statfs);
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(err("statfs", &e)),
        }
    }

    /// Extended attributes are not stored. ENOSYS tells the kernel so
    /// once: it answers EOPNOTSUPP itself from then on, sparing the
    /// `security.capability` lookup it otherwise sends before writes.
    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.counters.request(Req::Setxattr);
        reply.error(Errno::ENOSYS);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        self.counters.request(Req::Getxattr);
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        self.counters.request(Req::Listxattr);
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        self.counters.request(Req::Removexattr);
        reply.error(Errno::ENOSYS);
    }

    /// Not sent: the kernel checks permissions itself
    /// (`default_permissions`).
    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.counters.request(Req::Access);
        reply_empty(reply, "access", self.fs.access(ino.0, mask.bits()));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.counters.request(Req::Create);
        let name = name.as_bytes();
        match self
            .fs
            .create(parent.0, name, mode, umask, flags, &caller(req))
        {
            Ok((a, o)) => reply.created(
                &a.ttl(self.ttl),
                &to_file_attr(&a),
                Generation(0),
                FileHandle(o.fh),
                open_flags(&o),
            ),
            Err(e) => reply.error(err("create", &e)),
        }
    }

    /// POSIX locks are not requested at init, so the kernel keeps them
    /// locally and never sends these.
    fn getlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        self.counters.request(Req::Getlk);
        reply.error(Errno::ENOSYS);
    }

    fn setlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        _sleep: bool,
        reply: ReplyEmpty,
    ) {
        self.counters.request(Req::Setlk);
        reply.error(Errno::ENOSYS);
    }

    /// Only for block-device filesystems.
    fn bmap(&self, _req: &Request, _ino: INodeNo, _blocksize: u32, _idx: u64, reply: ReplyBmap) {
        self.counters.request(Req::Bmap);
        reply.error(Errno::ENOSYS);
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        self.counters.request(Req::Ioctl);
        reply.error(Errno::ENOTTY);
    }

    /// ENOSYS makes the kernel treat files as always ready, as for disks.
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        self.counters.request(Req::Poll);
        reply.error(Errno::ENOSYS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        self.counters.request(Req::Other);
        reply.error(Errno::EOPNOTSUPP);
    }

    /// ENOSYS lets the kernel answer lseek itself (no holes to report).
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        self.counters.request(Req::Other);
        reply.error(Errno::ENOSYS);
    }

    /// ENOSYS makes the kernel fall back to reading and writing.
    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        self.counters.request(Req::Other);
        reply.error(Errno::ENOSYS);
    }
}
