//! The one request layer: what each FUSE operation answers, whichever
//! transport carried it. Each method counts the request, calls the
//! filesystem (`crate::fs`), and returns the reply's contents in the
//! kernel's terms (attributes with their lifetimes, open flags) or the
//! errno, logged once here. The transports (`classic.rs`, `uring/`) only
//! decode requests into these calls and encode what they return.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::counters::{Counters, Req};
use super::killed;
use crate::backend::{LockKind, Locks};
use crate::fs::{
    Attr, BLOCK_SIZE, Caller, CaskFs, DirEntry, Error, Opened, ReadMode, SetAttr, log_and_errno,
};
use crate::vocab::{FileType, StatFs};

/// What a request that fails answers: an errno.
pub type Errno = i32;
pub type Answer<T> = Result<T, Errno>;

/// How long a blocking lock (SETLKW) waits at most between two looks at
/// the locks in its way.
const LOCK_POLL_MAX: Duration = Duration::from_millis(100);

/// How long a lock granted waits for this host to have taken in every
/// change made before it (the watch's lag).
const LOCK_CATCH_UP: Duration = Duration::from_secs(5);

/// `FOPEN_*` flags of an open's reply, as the kernel defines them.
pub const FOPEN_DIRECT_IO: u32 = 1 << 0;
pub const FOPEN_KEEP_CACHE: u32 = 1 << 1;
pub const FOPEN_CACHE_DIR: u32 = 1 << 3;
pub const FOPEN_NOFLUSH: u32 = 1 << 5;

/// An inode's attributes as the kernel takes them.
#[derive(Clone, Copy, Debug)]
pub struct KernelAttr {
    /// The node id, which is also what `stat` shows as the inode number:
    /// the stored one, but for a file a writer moved to a new node while
    /// page-cache readers held the old (fuser's replies cannot tell the
    /// two apart, so neither transport does).
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    /// The mount is `noatime`: atime shows the mtime.
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    pub kind: FileType,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
}

impl KernelAttr {
    fn of(a: &Attr) -> KernelAttr {
        KernelAttr {
            ino: a.node,
            size: a.size,
            blocks: a.blocks(),
            atime: a.atime,
            mtime: a.mtime,
            ctime: a.ctime,
            mode: a.kind.mode_bits() | u32::from(a.perm),
            kind: a.kind,
            nlink: a.nlink,
            uid: a.owner.uid,
            gid: a.owner.gid,
            rdev: a.rdev,
            blksize: BLOCK_SIZE,
        }
    }
}

/// The reply to getattr and setattr.
#[derive(Clone, Copy, Debug)]
pub struct AttrOut {
    pub attr: KernelAttr,
    pub ttl: Duration,
}

/// The reply to lookup and to what creates a name: the name's node (the
/// attributes' `ino`) and how long the kernel may keep the name and the
/// attributes.
#[derive(Clone, Copy, Debug)]
pub struct EntryOut {
    pub attr: KernelAttr,
    pub entry_ttl: Duration,
    pub attr_ttl: Duration,
}

/// The reply to GETLK: the lock in the way, or `F_UNLCK` if none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockOut {
    pub start: u64,
    pub end: u64,
    /// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub typ: i32,
    pub pid: u32,
}

/// The reply to open and opendir.
#[derive(Clone, Copy, Debug)]
pub struct OpenOut {
    pub fh: u64,
    /// `FOPEN_*` bits.
    pub flags: u32,
}

/// Requests caskfs answers with an errno of its choosing, never by
/// accident: each transport names the one it got.
#[derive(Clone, Copy, Debug)]
pub enum Refused {
    Readdirplus,
    Getlk,
    Setlk,
    Bmap,
    Ioctl,
    Poll,
    /// An opcode the transport does not know.
    Unknown,
}

pub struct Requests {
    fs: Arc<CaskFs>,
    /// File locks every host sees, on a shared backend; without them the
    /// kernel keeps locks itself (INIT does not ask for them).
    locks: Option<Arc<dyn Locks>>,
    counters: Arc<Counters>,
    /// How long the kernel may keep names and attributes.
    ttl: Duration,
}

fn err(op: &str, e: &Error) -> Errno {
    log_and_errno(op, e)
}

fn done(op: &str, r: crate::fs::Result<()>) -> Answer<()> {
    r.map_err(|e| err(op, &e))
}

/// What getxattr and listxattr answer: asked with a size of 0, the size
/// the caller needs; else the bytes, or ERANGE if they do not fit.
#[derive(Debug, PartialEq, Eq)]
pub enum XattrOut {
    Size(u32),
    Data(Vec<u8>),
}

fn xattr_out(op: &str, r: crate::fs::Result<Vec<u8>>, size: u32) -> Answer<XattrOut> {
    // Probes for names a file lacks (the kernel's own for
    // `security.capability`, tools' for other namespaces) are routine.
    let bytes = r.map_err(|e| match e {
        Error::NoAttribute | Error::NotSupported(_) => crate::fs::errno(&e),
        e => err(op, &e),
    })?;
    match (size, u32::try_from(bytes.len())) {
        (0, Ok(n)) => Ok(XattrOut::Size(n)),
        (_, Ok(n)) if n <= size => Ok(XattrOut::Data(bytes)),
        _ => Err(libc::ERANGE),
    }
}

/// How the kernel is to treat an open file. A writer's is direct I/O:
/// reads and writes go to its handle, which holds the writer's own view.
/// A reader's goes through the page cache when the filesystem allows,
/// else straight to the value it pinned. Read-only opens need no flush,
/// unless the daemon keeps the locks: a close releases its process's
/// `fcntl` locks by a flush.
fn open_flags(o: &Opened, locks: bool) -> u32 {
    let flags = match (o.write, o.read) {
        (true, _) => FOPEN_DIRECT_IO,
        (false, ReadMode::Direct) => FOPEN_DIRECT_IO | FOPEN_NOFLUSH,
        (false, ReadMode::Cached { keep: true }) => FOPEN_KEEP_CACHE | FOPEN_NOFLUSH,
        (false, ReadMode::Cached { keep: false }) => FOPEN_NOFLUSH,
    };
    match locks {
        true => flags & !FOPEN_NOFLUSH,
        false => flags,
    }
}

/// A lock request's type (`F_RDLCK`, `F_WRLCK`, `F_UNLCK`) as the lock
/// to take, `None` to release.
fn lock_kind(typ: i32) -> Answer<Option<LockKind>> {
    match typ {
        libc::F_RDLCK => Ok(Some(LockKind::Read)),
        libc::F_WRLCK => Ok(Some(LockKind::Write)),
        libc::F_UNLCK => Ok(None),
        _ => Err(libc::EINVAL),
    }
}

impl Requests {
    pub fn new(fs: Arc<CaskFs>, locks: Option<Arc<dyn Locks>>) -> Requests {
        Requests {
            ttl: fs.cache_lifetime(),
            fs,
            locks,
            counters: Arc::default(),
        }
    }

    /// Whether the daemon keeps file locks (INIT asks the kernel to send
    /// them) rather than the kernel.
    pub fn serves_locks(&self) -> bool {
        self.locks.is_some()
    }

    pub fn fs(&self) -> &Arc<CaskFs> {
        &self.fs
    }

    /// What has been served, counted as it goes.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    fn count(&self, r: Req) {
        self.counters.request(r);
    }

    fn entry(&self, a: &Attr) -> EntryOut {
        let ttl = a.ttl(self.ttl);
        EntryOut {
            attr: KernelAttr::of(a),
            entry_ttl: ttl,
            attr_ttl: ttl,
        }
    }

    fn attr(&self, a: &Attr) -> AttrOut {
        AttrOut {
            attr: KernelAttr::of(a),
            ttl: a.ttl(self.ttl),
        }
    }

    fn made(&self, op: &str, r: crate::fs::Result<Attr>) -> Answer<EntryOut> {
        r.map(|a| self.entry(&a)).map_err(|e| err(op, &e))
    }

    pub fn lookup(&self, parent: u64, name: &[u8], pid: u32) -> Answer<EntryOut> {
        self.count(Req::Lookup);
        match self.fs.lookup(parent, name, pid) {
            // A missing name stays missing until a create or rename that
            // the kernel itself sends: it may remember the answer (an
            // entry with node id 0).
            Err(Error::NotFound) => Ok(EntryOut {
                attr: KernelAttr {
                    ino: 0,
                    size: 0,
                    blocks: 0,
                    atime: SystemTime::UNIX_EPOCH,
                    mtime: SystemTime::UNIX_EPOCH,
                    ctime: SystemTime::UNIX_EPOCH,
                    mode: libc::S_IFREG,
                    kind: FileType::Regular,
                    nlink: 0,
                    uid: 0,
                    gid: 0,
                    rdev: 0,
                    blksize: BLOCK_SIZE,
                },
                entry_ttl: self.ttl,
                attr_ttl: Duration::ZERO,
            }),
            r => self.made("lookup", r),
        }
    }

    pub fn getattr(&self, ino: u64, fh: Option<u64>, pid: u32) -> Answer<AttrOut> {
        self.count(Req::Getattr);
        let a = self
            .fs
            .getattr(ino, fh, pid)
            .map_err(|e| err("getattr", &e))?;
        Ok(self.attr(&a))
    }

    pub fn setattr(&self, ino: u64, change: SetAttr, pid: u32) -> Answer<AttrOut> {
        self.count(Req::Setattr);
        let a = self
            .fs
            .setattr(ino, change, pid)
            .map_err(|e| err("setattr", &e))?;
        Ok(self.attr(&a))
    }

    pub fn readlink(&self, ino: u64) -> Answer<Vec<u8>> {
        self.count(Req::Readlink);
        self.fs.readlink(ino).map_err(|e| err("readlink", &e))
    }

    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
        caller: &Caller,
    ) -> Answer<EntryOut> {
        self.count(Req::Mknod);
        let r = self.fs.mknod(parent, name, mode, umask, rdev, caller);
        self.made("mknod", r)
    }

    /// A hard link: a second name for the file of `node`.
    pub fn link(&self, node: u64, newparent: u64, newname: &[u8]) -> Answer<EntryOut> {
        self.count(Req::Link);
        let r = self.fs.link(node, newparent, newname);
        self.made("link", r)
    }

    pub fn mkdir(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        caller: &Caller,
    ) -> Answer<EntryOut> {
        self.count(Req::Mkdir);
        let r = self.fs.mkdir(parent, name, mode, umask, caller);
        self.made("mkdir", r)
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: &Caller,
    ) -> Answer<EntryOut> {
        self.count(Req::Symlink);
        let r = self.fs.symlink(parent, name, target, caller);
        self.made("symlink", r)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> Answer<()> {
        self.count(Req::Unlink);
        done("unlink", self.fs.unlink(parent, name))
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Answer<()> {
        self.count(Req::Rmdir);
        done("rmdir", self.fs.rmdir(parent, name))
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> Answer<()> {
        self.count(Req::Rename);
        let r = self.fs.rename(parent, name, newparent, newname, flags);
        done("rename", r)
    }

    pub fn open(&self, ino: u64, flags: i32, pid: u32) -> Answer<OpenOut> {
        self.count(Req::Open);
        let o = self.fs.open(ino, flags, pid).map_err(|e| err("open", &e))?;
        Ok(OpenOut {
            fh: o.fh,
            flags: open_flags(&o, self.serves_locks()),
        })
    }

    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
        caller: &Caller,
    ) -> Answer<(EntryOut, OpenOut)> {
        self.count(Req::Create);
        let (a, o) = self
            .fs
            .create(parent, name, mode, umask, flags, caller)
            .map_err(|e| err("create", &e))?;
        let open = OpenOut {
            fh: o.fh,
            flags: open_flags(&o, self.serves_locks()),
        };
        Ok((self.entry(&a), open))
    }

    /// Hands up to `size` bytes at `offset` to `give`, which replies with
    /// them: straight from where the value lies, where it can.
    pub fn read<R>(
        &self,
        fh: u64,
        offset: u64,
        size: usize,
        give: impl FnOnce(&[u8]) -> R,
    ) -> Answer<R> {
        self.count(Req::Read);
        self.fs
            .read(fh, offset, size, |data| {
                self.counters.read(data.len());
                give(data)
            })
            .map_err(|e| err("read", &e))
    }

    /// `from_cache`: the kernel writes back pages of a shared mapping;
    /// `owner`: the lock owner, when the kernel names one.
    pub fn write(
        &self,
        fh: u64,
        offset: u64,
        data: &[u8],
        from_cache: bool,
        owner: Option<u64>,
    ) -> Answer<u32> {
        self.count(Req::Write);
        let n = self
            .fs
            .write(fh, offset, data, from_cache, owner)
            .map_err(|e| err("write", &e))?;
        self.counters.written(n);
        Ok(n as u32)
    }

    /// copy_file_range: shared, not copied, where it can be
    /// (`fs/sharing.rs`). The reply holds a 32-bit count, so one request
    /// copies at most 1 GiB; the caller asks again for the rest.
    pub fn copy_file_range(
        &self,
        from: (u64, u64),
        to: (u64, u64),
        len: u64,
        tid: u32,
    ) -> Answer<u32> {
        self.count(Req::CopyFileRange);
        let n = self
            .fs
            .copy_range(from, to, len.min(1 << 30), tid)
            .map_err(|e| err("copy_file_range", &e))?;
        self.counters.written(n as usize);
        Ok(n as u32)
    }

    pub fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32, pid: u32) -> Answer<()> {
        self.count(Req::Fallocate);
        done("fallocate", self.fs.fallocate(fh, offset, len, mode, pid))
    }

    /// Only SEEK_DATA and SEEK_HOLE come here: the kernel answers the
    /// others itself.
    pub fn lseek(&self, fh: u64, offset: u64, whence: i32) -> Answer<u64> {
        self.count(Req::Lseek);
        self.fs
            .seek_data_or_hole(fh, offset, whence)
            .map_err(|e| err("lseek", &e))
    }

    /// A close: also releases the closing process's `fcntl` locks on the
    /// file, as POSIX says (the kernel leaves that to the flush when the
    /// daemon keeps the locks).
    pub fn flush(&self, ino: u64, fh: u64, lock_owner: u64, pid: u32) -> Answer<()> {
        self.count(Req::Flush);
        self.release_locks(ino, lock_owner);
        done("flush", self.fs.flush(fh, lock_owner, pid))
    }

    /// The last close of an open file: `flock_owner` is the owner of the
    /// `flock` locks taken through it, which go now.
    pub fn release(&self, ino: u64, fh: u64, flock_owner: Option<u64>) -> Answer<()> {
        self.count(Req::Release);
        if let Some(owner) = flock_owner {
            self.release_locks(ino, owner);
        }
        done("release", self.fs.release(fh))
    }

    /// A close cannot fail for a lock: what could not be released is
    /// logged, and goes with the daemon's lease at the latest.
    fn release_locks(&self, ino: u64, owner: u64) {
        if let Some(locks) = &self.locks
            && let Err(e) = locks.release(ino, owner)
        {
            log::warn!("releasing the locks of owner {owner:x} on inode {ino}: {e}");
        }
    }

    /// F_GETLK: the first lock of another owner in the way of `typ` over
    /// `start..=end`.
    pub fn getlk(&self, ino: u64, owner: u64, start: u64, end: u64, typ: i32) -> Answer<LockOut> {
        let Some(locks) = &self.locks else {
            return Err(self.refuse(Refused::Getlk));
        };
        self.count(Req::Getlk);
        let none = LockOut {
            start: 0,
            end: 0,
            typ: libc::F_UNLCK,
            pid: 0,
        };
        let Some(kind) = lock_kind(typ)? else {
            return Ok(none);
        };
        let found = locks
            .conflicting(ino, owner, kind, start, end)
            .map_err(|e| err("getlk", &e.into()))?;
        Ok(found.map_or(none, |h| LockOut {
            start: h.start,
            end: h.end,
            typ: match h.kind {
                LockKind::Read => libc::F_RDLCK,
                LockKind::Write => libc::F_WRLCK,
            },
            pid: h.pid,
        }))
    }

    /// F_SETLK, F_SETLKW and flock: takes or releases `owner`'s lock over
    /// `start..=end`. With `sleep` it waits for the locks in the way to
    /// go, looking again with a backoff up to `LOCK_POLL_MAX`; the wait
    /// holds this serving thread. fuser answers FUSE_INTERRUPT itself
    /// (ENOSYS, after which the kernel sends none), and the kernel then
    /// lets only a fatal signal end the caller's wait, which it cannot
    /// finish before the reply: so the wait also ends (EINTR) when the
    /// calling thread has a SIGKILL pending. Deadlocks are not detected.
    #[allow(clippy::too_many_arguments)]
    pub fn setlk(
        &self,
        ino: u64,
        owner: u64,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        caller: u32,
    ) -> Answer<()> {
        let Some(locks) = &self.locks else {
            return Err(self.refuse(Refused::Setlk));
        };
        self.count(Req::Setlk);
        let kind = lock_kind(typ)?;
        let mut pause = Duration::from_millis(2);
        loop {
            let taken = locks
                .set(ino, owner, kind, start, end, pid)
                .map_err(|e| err("setlk", &e.into()))?;
            if let Some(revision) = taken {
                // What the previous holder wrote before it unlocked is what
                // the lock guards: the caller must read it, not this host's
                // older copy.
                if kind.is_some() && !self.fs.catch_up(revision, LOCK_CATCH_UP) {
                    log::warn!(
                        "setlk: changes up to revision {revision} not seen after \
                         {LOCK_CATCH_UP:?}; granting the lock anyway"
                    );
                }
                if kind.is_some() {
                    self.fs.lock_granted(ino);
                }
                return Ok(());
            }
            if !sleep {
                return Err(libc::EAGAIN);
            }
            if killed::fatal_signal_pending(caller) {
                return Err(libc::EINTR);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(LOCK_POLL_MAX);
        }
    }

    pub fn fsync(&self, fh: u64) -> Answer<()> {
        self.count(Req::Fsync);
        done("fsync", self.fs.fsync(fh))
    }

    /// The kernel keeps a listing in its page cache across opens, unless
    /// other hosts change it unseen.
    pub fn opendir(&self, ino: u64) -> Answer<OpenOut> {
        self.count(Req::Opendir);
        let fh = self.fs.opendir(ino).map_err(|e| err("opendir", &e))?;
        let flags = match self.fs.shared() {
            false => FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE,
            true => 0,
        };
        Ok(OpenOut { fh, flags })
    }

    /// The listing of `fh` and where in it `offset` continues; the
    /// transport sends as many entries from there as its reply holds.
    pub fn readdir(&self, ino: u64, fh: u64, offset: u64) -> Answer<(Arc<Vec<DirEntry>>, usize)> {
        self.count(Req::Readdir);
        self.fs
            .readdir(ino, fh, offset)
            .map_err(|e| err("readdir", &e))
    }

    pub fn releasedir(&self, fh: u64) {
        self.count(Req::Releasedir);
        self.fs.releasedir(fh);
    }

    /// A folder's entries are the store's; syncing one syncs the store.
    pub fn fsyncdir(&self) -> Answer<()> {
        self.count(Req::Fsyncdir);
        done("fsyncdir", self.fs.sync())
    }

    pub fn statfs(&self) -> Answer<StatFs> {
        self.count(Req::Statfs);
        self.fs.statfs().map_err(|e| err("statfs", &e))
    }

    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> Answer<()> {
        self.count(Req::Setxattr);
        done("setxattr", self.fs.setxattr(ino, name, value, flags))
    }

    pub fn getxattr(&self, ino: u64, name: &[u8], size: u32) -> Answer<XattrOut> {
        self.count(Req::Getxattr);
        xattr_out("getxattr", self.fs.getxattr(ino, name), size)
    }

    pub fn listxattr(&self, ino: u64, size: u32) -> Answer<XattrOut> {
        self.count(Req::Listxattr);
        xattr_out("listxattr", self.fs.listxattr(ino), size)
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> Answer<()> {
        self.count(Req::Removexattr);
        let r = self.fs.removexattr(ino, name);
        xattr_out("removexattr", r.map(|()| Vec::new()), 0).map(|_| ())
    }

    /// Not sent: the kernel checks permissions itself
    /// (`default_permissions`).
    pub fn access(&self, ino: u64, mask: i32) -> Answer<()> {
        self.count(Req::Access);
        done("access", self.fs.access(ino, mask))
    }

    /// The errno of a request caskfs does not serve, and why each:
    /// - readdirplus: never sent (not asked for at INIT);
    /// - POSIX locks: not asked for at INIT unless the backend is shared,
    ///   so the kernel keeps them itself (they work between processes of
    ///   this machine);
    /// - bmap: for block-device filesystems only;
    /// - ioctl: ENOTTY, as for a file that has none;
    /// - poll: ENOSYS makes the kernel treat files as always ready, as
    ///   for disks;
    pub fn refuse(&self, what: Refused) -> Errno {
        let (req, errno) = match what {
            Refused::Readdirplus => (Req::Readdirplus, libc::ENOSYS),
            Refused::Getlk => (Req::Getlk, libc::ENOSYS),
            Refused::Setlk => (Req::Setlk, libc::ENOSYS),
            Refused::Bmap => (Req::Bmap, libc::ENOSYS),
            Refused::Ioctl => (Req::Ioctl, libc::ENOTTY),
            Refused::Poll => (Req::Poll, libc::ENOSYS),
            Refused::Unknown => (Req::Other, libc::ENOSYS),
        };
        self.count(req);
        errno
    }

    /// At unmount: commits whatever open handles still hold.
    pub fn destroy(&self) {
        self.fs.shutdown();
    }
}
