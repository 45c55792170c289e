//! What each filesystem operation means for caskfs, as plain methods that
//! return `Result`. The FUSE adapter (`fuse.rs`) calls these and replies;
//! nothing here knows the FUSE protocol.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, warn};
use parking_lot::Mutex;

use super::attr::{Attr, Kind, Owner, ROOT_INO};
use super::errno::{Error, Result};
use super::handle::{Handle, HandleTable, OpenMode};
use super::inode::InodeTable;
use crate::engine::{self, MAX_KEY_LEN, Store, validate_key};

/// An open file: its handle number, and whether it may write.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    pub fh: u64,
    pub write: bool,
}

/// How the filesystem presents the store.
#[derive(Clone, Copy, Debug)]
pub struct FsOptions {
    pub owner: Owner,
    pub read_only: bool,
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

/// One directory entry; `offset` is where the next read continues.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub ino: u64,
    pub offset: u64,
    pub kind: Kind,
    pub name: Vec<u8>,
}

/// Disk figures for `df`, from the data directory's filesystem.
#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT from renameat2(2).
/// Bytes a record adds to its value at most: header and the longest key.
const RECORD_OVERHEAD: u64 = 26 + MAX_KEY_LEN as u64;

const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;
const RENAME_WHITEOUT: u32 = 4;

pub struct CaskFs {
    store: Arc<Store>,
    opts: FsOptions,
    inodes: InodeTable,
    handles: HandleTable,
    /// Open directory streams: a snapshot of the names, taken at the
    /// first readdir (a listing the kernel serves from its cache never
    /// asks, so opendir itself must stay cheap).
    dirs: Mutex<HashMap<u64, Option<Arc<Vec<DirEntry>>>>>,
    /// Told when the key set changed without a directory operation the
    /// kernel saw: a created key whose first value was never stored.
    listing_changed: OnceLock<Box<dyn Fn() + Send + Sync>>,
    next_dir: AtomicU64,
    mounted_at: SystemTime,
    /// When the data disk's free bytes were last asked, and the answer.
    free_space: Mutex<(Instant, u64)>,
}

impl CaskFs {
    pub fn new(store: Arc<Store>, opts: FsOptions) -> CaskFs {
        CaskFs {
            store,
            opts,
            inodes: InodeTable::default(),
            handles: HandleTable::default(),
            dirs: Mutex::new(HashMap::new()),
            listing_changed: OnceLock::new(),
            next_dir: AtomicU64::new(0),
            mounted_at: SystemTime::now(),
            free_space: Mutex::new((Instant::now(), 0)),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Refuses an operation caskfs does not support, with a log line.
    pub fn refuse(&self, what: &'static str) -> Error {
        debug!("refusing {what}");
        Error::NotSupported(what)
    }

    fn writable(&self) -> Result<()> {
        if self.opts.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The key a name in `parent` stands for.
    fn key<'a>(&self, parent: u64, name: &'a [u8]) -> Result<&'a [u8]> {
        if parent != ROOT_INO {
            return Err(if self.inodes.key_of(parent).is_some() {
                Error::NotADirectory
            } else {
                Error::NotFound
            });
        }
        if name.len() > MAX_KEY_LEN {
            return Err(Error::NameTooLong);
        }
        validate_key(name).map_err(|_| Error::InvalidName)?;
        Ok(name)
    }

    fn root_attr(&self) -> Attr {
        Attr::root(self.mounted_at, self.opts.owner)
    }

    /// The attributes of `key` as the store has them, or as a pending
    /// creation if only an open handle holds it.
    fn key_attr(&self, ino: u64, key: &[u8]) -> Result<Attr> {
        if let Some(m) = self.store.metadata(key) {
            return Ok(Attr::file(ino, m.len, m.mtime, self.opts.owner));
        }
        if self.inodes.is_pending(ino) {
            let len = self
                .handles
                .for_ino(ino)
                .iter()
                .filter_map(|h| h.local_len())
                .max()
                .unwrap_or(0);
            // Its commit may still fail: the kernel must not keep it.
            let mut attr = Attr::file(ino, len, SystemTime::now(), self.opts.owner);
            attr.cacheable = false;
            return Ok(attr);
        }
        Err(Error::NotFound)
    }

    fn exists(&self, key: &[u8]) -> bool {
        self.store.contains(key)
            || self
                .inodes
                .lookup(key)
                .is_some_and(|ino| self.inodes.is_pending(ino))
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr> {
        let key = self.key(parent, name)?;
        if self.store.contains(key) {
            let ino = self.inodes.ino_for(key);
            return self.key_attr(ino, key);
        }
        match self.inodes.lookup(key) {
            Some(ino) => self.key_attr(ino, key),
            None => Err(Error::NotFound),
        }
    }

    pub fn getattr(&self, ino: u64, fh: Option<u64>) -> Result<Attr> {
        if ino == ROOT_INO {
            return Ok(self.root_attr());
        }
        let handle = fh
            .and_then(|fh| self.handles.get(fh).ok())
            .filter(|h| h.ino == ino);
        let Some(key) = self.inodes.key_of(ino) else {
            // fstat of a file removed (or replaced by mv) while open: what
            // the descriptor still reads, with no link left. The kernel
            // may not say which descriptor: any open one will do.
            let h = handle
                .or_else(|| self.handles.for_ino(ino).into_iter().next())
                .ok_or(Error::NotFound)?;
            let (size, mtime) = match (h.local_len(), h.pinned()) {
                (Some(len), _) => (len, SystemTime::now()),
                (None, Some(m)) => (m.len, m.mtime),
                (None, None) => return Err(Error::NotFound),
            };
            let mut attr = Attr::file(ino, size, mtime, self.opts.owner);
            attr.nlink = 0;
            attr.cacheable = false;
            return Ok(attr);
        };
        let mut attr = self.key_attr(ino, &key)?;
        // Through its own handle a writer sees its own length.
        if let Some(len) = handle.and_then(|h| h.local_len()) {
            attr.size = len;
            attr.cacheable = false;
        }
        Ok(attr)
    }

    pub fn setattr(&self, ino: u64, req: SetAttr) -> Result<Attr> {
        let perm = if ino == ROOT_INO {
            super::attr::DIR_PERM
        } else {
            super::attr::FILE_PERM
        };
        if req.mode.is_some_and(|m| m & 0o7777 != u32::from(perm)) {
            return Err(self.refuse("changing the mode (it is fixed)"));
        }
        if req.uid.is_some_and(|u| u != self.opts.owner.uid)
            || req.gid.is_some_and(|g| g != self.opts.owner.gid)
        {
            return Err(self.refuse("changing the owner (it is fixed)"));
        }
        if ino == ROOT_INO {
            if req.size.is_some() {
                return Err(Error::IsADirectory);
            }
            return Ok(self.root_attr());
        }
        if req.size.is_some() || req.mtime.is_some() {
            self.writable()?;
        }
        let key = self.inodes.key_of(ino).ok_or(Error::NotFound)?;
        if let Some(size) = req.size {
            self.truncate(ino, &key, size, req.fh)?;
        }
        if let Some(mtime) = req.mtime {
            match self.store.set_mtime(&key, mtime) {
                Ok(()) => {}
                // A pending creation gets its mtime when it commits.
                Err(engine::Error::NotFound { .. }) if self.inodes.is_pending(ino) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.getattr(ino, req.fh)
    }

    fn truncate(&self, ino: u64, key: &[u8], size: u64, fh: Option<u64>) -> Result<()> {
        if let Some(h) = fh
            .and_then(|fh| self.handles.get(fh).ok())
            .filter(|h| h.mode.write && h.ino == ino)
        {
            return h.truncate(&self.store, key, size);
        }
        // truncate(2) by path: applied and committed at once.
        match self.store.metadata(key) {
            Some(m) if m.len == size => Ok(()),
            Some(_) => {
                let h = Handle::new(ino, OpenMode::default(), false);
                h.truncate(&self.store, key, size)?;
                h.commit(&self.store, Some(key), true)?;
                self.supersede_others(ino, None);
                Ok(())
            }
            None if self.inodes.is_pending(ino) => {
                for h in self.handles.for_ino(ino) {
                    if h.mode.write {
                        h.truncate(&self.store, key, size)?;
                    }
                }
                Ok(())
            }
            None => Err(Error::NotFound),
        }
    }

    /// Creates `name` and opens it. The key exists from now on, but its
    /// value is committed only when the handle is flushed or released.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Opened)> {
        self.writable()?;
        let key = self.key(parent, name)?;
        let kind = mode & libc::S_IFMT;
        if kind != 0 && kind != libc::S_IFREG {
            return Err(self.refuse("files other than regular files"));
        }
        let exists = self.exists(key);
        if exists && flags & libc::O_EXCL != 0 {
            return Err(Error::Exists);
        }
        let ino = self.inodes.ino_for(key);
        if exists {
            let opened = self.open(ino, flags)?;
            return Ok((self.getattr(ino, Some(opened.fh))?, opened));
        }
        let open = OpenMode {
            write: true,
            append: flags & libc::O_APPEND != 0,
            truncate: true,
        };
        self.inodes.add_pending(ino);
        let (fh, _) = self.handles.insert(Handle::new(ino, open, true));
        debug!("created {} as inode {ino}", show(key));
        let opened = Opened { fh, write: true };
        Ok((self.key_attr(ino, key)?, opened))
    }

    /// mknod: regular files only, stored empty at once.
    pub fn mknod(&self, parent: u64, name: &[u8], mode: u32) -> Result<Attr> {
        self.writable()?;
        let key = self.key(parent, name)?;
        if mode & libc::S_IFMT != libc::S_IFREG {
            return Err(self.refuse("device nodes, FIFOs and sockets"));
        }
        if self.exists(key) {
            return Err(Error::Exists);
        }
        self.store.put(key, b"")?;
        let ino = self.inodes.ino_for(key);
        self.key_attr(ino, key)
    }

    pub fn open(&self, ino: u64, flags: i32) -> Result<Opened> {
        if ino == ROOT_INO {
            return Err(Error::IsADirectory);
        }
        // An inode whose key went away after the kernel looked it up (an
        // rm or mv raced this open): ESTALE makes the kernel look the name
        // up again, which creates it afresh for `echo v > k`.
        let key = self.inodes.key_of(ino).ok_or(Error::Stale)?;
        self.key_attr(ino, &key).map_err(|e| match e {
            Error::NotFound => Error::Stale,
            e => e,
        })?;
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if write {
            self.writable()?;
        }
        let mode = OpenMode {
            write,
            append: write && flags & libc::O_APPEND != 0,
            truncate: write && flags & libc::O_TRUNC != 0,
        };
        let h = match self.store.value(&key) {
            // A reader keeps the value it opened, whatever happens next.
            Some(v) if !write => Handle::new_reader(ino, mode, v),
            Some(_) => Handle::new(ino, mode, false),
            // Being created by another handle: empty until that commits.
            None => Handle::new_empty(ino, mode),
        };
        let (fh, _) = self.handles.insert(h);
        Ok(Opened { fh, write })
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
        let key = self.inodes.key_of(h.ino).unwrap_or_default();
        h.read(&self.store, &key, offset, size, give)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize> {
        self.writable()?;
        let h = self.handles.get(fh)?;
        if !h.mode.write {
            return Err(Error::BadHandle);
        }
        let key = self.inodes.key_of(h.ino).unwrap_or_default();
        h.write(&self.store, &key, offset, data, &|len| {
            self.check_space(len)
        })
    }

    /// Commits `h` (see `Handle::commit` for `last`). A created key stops
    /// being pending once its first commit is attempted: it is then in the
    /// store, or the commit failed and it never will be.
    /// Says whether a new value was stored: the kernel's cached attributes
    /// of the inode are then out of date.
    fn commit(&self, h: &Handle, last: bool) -> Result<bool> {
        let key = self.inodes.key_of(h.ino);
        let result = h.commit(&self.store, key.as_deref(), last);
        if !matches!(result, Ok(false)) && h.end_pending() {
            match result {
                Ok(_) => self.inodes.drop_pending(h.ino),
                Err(_) => self.creation_abandoned(h.ino),
            }
        }
        let stored = result? && key.is_some();
        if stored {
            self.supersede_others(h.ino, Some(h));
        }
        Ok(stored)
    }

    /// A new value of `ino` was stored: truncations other handles left for
    /// their release (their close returned before this) are now older.
    fn supersede_others(&self, ino: u64, by: Option<&Handle>) {
        for other in self.handles.for_ino(ino) {
            if !by.is_some_and(|by| std::ptr::eq(by, &*other)) {
                other.supersede();
            }
        }
    }

    /// close(2) of one descriptor: commits the handle's changes, and its
    /// error is what close returns. True when a new value was stored.
    pub fn flush(&self, fh: u64) -> Result<bool> {
        let h = self.handles.get(fh)?;
        self.commit(&h, false)
    }

    /// The last close of an open file. True when a new value was stored.
    pub fn release(&self, fh: u64) -> Result<bool> {
        let h = self.handles.remove(fh)?;
        let result = self.commit(&h, true);
        if h.end_pending() {
            self.creation_abandoned(h.ino);
        }
        result
    }

    /// Commits the handle and forces everything to disk. True when a new
    /// value was stored.
    pub fn fsync(&self, fh: u64) -> Result<bool> {
        let h = self.handles.get(fh)?;
        let stored = self.commit(&h, true)?;
        self.store.sync()?;
        Ok(stored)
    }

    /// access(2), asked only when the kernel does not check permissions
    /// itself: the fixed modes, for the owner (the only user let in).
    pub fn access(&self, ino: u64, mask: i32) -> Result<()> {
        if ino != ROOT_INO {
            self.inodes.key_of(ino).ok_or(Error::NotFound)?;
            if mask & libc::X_OK != 0 {
                return Err(Error::Io(std::io::Error::from_raw_os_error(libc::EACCES)));
            }
        }
        if mask & libc::W_OK != 0 {
            self.writable()?;
        }
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        Ok(self.store.sync()?)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.writable()?;
        let key = self.key(parent, name)?;
        match self.store.delete(key) {
            Ok(()) => {}
            Err(engine::Error::NotFound { .. }) if self.exists(key) => {}
            Err(e) => return Err(e.into()),
        }
        self.inodes.remove(key);
        Ok(())
    }

    /// rmdir: there are no directories below the root.
    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        let key = self.key(parent, name)?;
        if self.exists(key) {
            Err(Error::NotADirectory)
        } else {
            Err(Error::NotFound)
        }
    }

    /// One engine rename: atomic, replacing `newname`. Uncommitted writes
    /// to the file being moved are committed first, so they move with it.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> Result<()> {
        self.writable()?;
        if flags & (RENAME_EXCHANGE | RENAME_WHITEOUT) != 0 {
            return Err(Error::InvalidArgument(
                "RENAME_EXCHANGE and RENAME_WHITEOUT",
            ));
        }
        let from = self.key(parent, name)?;
        let to = self.key(newparent, newname)?;
        if flags & RENAME_NOREPLACE != 0 && self.exists(to) {
            return Err(Error::Exists);
        }
        if let Some(ino) = self.inodes.lookup(from) {
            for h in self.handles.for_ino(ino) {
                if h.is_dirty() {
                    self.commit(&h, true)?;
                }
            }
        }
        self.store.rename(from, to)?;
        self.inodes.rename(from, to);
        Ok(())
    }

    /// Opens the root for listing; the names are read at the first
    /// `readdir`.
    pub fn opendir(&self, ino: u64) -> Result<u64> {
        if ino != ROOT_INO {
            return Err(if self.inodes.key_of(ino).is_some() {
                Error::NotADirectory
            } else {
                Error::NotFound
            });
        }
        let fh = self.next_dir.fetch_add(1, Ordering::Relaxed) + 1;
        self.dirs.lock().insert(fh, None);
        Ok(fh)
    }

    /// The live keys and the keys being created, as they are now.
    fn listing(&self) -> Vec<DirEntry> {
        let mut names = self.store.keys();
        names.extend(self.inodes.pending_keys());
        names.sort_unstable();
        names.dedup();
        let inos = self.inodes.inos_for(&names);
        let dots = [&b"."[..], b".."].map(|name| (ROOT_INO, Kind::Directory, name.to_vec()));
        let files = inos
            .into_iter()
            .zip(names)
            .map(|(ino, name)| (ino, Kind::File, name));
        dots.into_iter()
            .chain(files)
            .enumerate()
            .map(|(i, (ino, kind, name))| DirEntry {
                ino,
                offset: i as u64 + 1,
                kind,
                name,
            })
            .collect()
    }

    /// An open listing, and where in it `offset` continues (no copy of
    /// the rest: a listing of N keys takes N/k requests of k entries).
    pub fn readdir(&self, fh: u64, offset: u64) -> Result<(Arc<Vec<DirEntry>>, usize)> {
        let taken = self.dirs.lock().get(&fh).cloned().ok_or(Error::BadHandle)?;
        let all = match taken {
            Some(all) => all,
            None => {
                let all = Arc::new(self.listing());
                if let Some(slot) = self.dirs.lock().get_mut(&fh) {
                    *slot = Some(all.clone());
                }
                all
            }
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        Ok((all, start))
    }

    /// Who to tell when the key set changes behind the kernel's back.
    pub fn on_listing_changed(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.listing_changed.set(f);
    }

    /// A created key ends without a stored value: it leaves the listing.
    fn creation_abandoned(&self, ino: u64) {
        self.inodes.drop_pending(ino);
        if let Some(tell) = self.listing_changed.get() {
            tell();
        }
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.lock().remove(&fh);
    }

    /// The data directory's disk, so `df` on the mount shows real space.
    pub fn statfs(&self) -> Result<StatFs> {
        let s = statvfs(self.store.dir())?;
        #[allow(clippy::useless_conversion)]
        Ok(StatFs {
            blocks: u64::from(s.f_blocks),
            bfree: u64::from(s.f_bfree),
            bavail: u64::from(s.f_bavail),
            files: u64::from(s.f_files),
            ffree: u64::from(s.f_ffree),
            bsize: s.f_bsize as u32,
            namelen: MAX_KEY_LEN as u32,
            frsize: s.f_frsize as u32,
        })
    }

    /// ENOSPC now, at write, when the data disk cannot take a value of
    /// `len` bytes: the commit at close would fail, and some writers (shell
    /// builtins restoring their descriptors) never look at close's result.
    /// The disk is asked only when the last answer is old or was close.
    fn check_space(&self, len: u64) -> Result<()> {
        let needed = len + RECORD_OVERHEAD;
        let mut known = self.free_space.lock();
        let plenty = known.1 > needed.saturating_mul(2) + (64 << 20);
        if !plenty || known.0.elapsed() > Duration::from_millis(500) {
            let s = statvfs(self.store.dir())?;
            #[allow(clippy::useless_conversion)]
            let free = u64::from(s.f_bavail).saturating_mul(u64::from(s.f_frsize));
            *known = (Instant::now(), free);
        }
        if known.1 < needed {
            return Err(Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC)));
        }
        Ok(())
    }

    /// At unmount: commits whatever open handles still hold.
    pub fn shutdown(&self) {
        for h in self.handles.drain() {
            if let Err(e) = self.commit(&h, true) {
                warn!("committing inode {} at unmount: {e}", h.ino);
            }
        }
    }
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).escape_debug().to_string()
}

/// statvfs(2) of `dir`'s filesystem.
fn statvfs(dir: &Path) -> Result<libc::statvfs> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument("data directory path contains NUL"))?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `s` a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut s) } != 0 {
        return Err(Error::Io(std::io::Error::last_os_error()));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    //! The order of closes, driven without a kernel: the kernel sends a
    //! release after close(2) has returned, so it may arrive after another
    //! handle's close.

    use super::*;

    fn mounted() -> (tempfile::TempDir, CaskFs) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), engine::Options::default()).unwrap();
        let opts = FsOptions {
            owner: Owner::current(),
            read_only: false,
        };
        (dir, CaskFs::new(Arc::new(store), opts))
    }

    /// `k` holding "old", a writer with "newer" not yet closed, and an
    /// `O_TRUNC` open that writes nothing, closed first.
    fn writer_and_truncation(fs: &CaskFs) -> (u64, u64) {
        fs.store().put(b"k", b"old").unwrap();
        let ino = fs.lookup(ROOT_INO, b"k").unwrap().ino;
        let writer = fs.open(ino, libc::O_WRONLY).unwrap().fh;
        fs.write(writer, 0, b"newer").unwrap();
        let trunc = fs.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap().fh;
        fs.flush(trunc).unwrap();
        (writer, trunc)
    }

    #[test]
    fn a_late_release_does_not_undo_a_later_close() {
        let (_dir, fs) = mounted();
        let (writer, trunc) = writer_and_truncation(&fs);
        fs.flush(writer).unwrap();
        fs.release(writer).unwrap();
        fs.release(trunc).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"newer");
    }

    #[test]
    fn a_release_before_the_other_close_truncates_first() {
        let (_dir, fs) = mounted();
        let (writer, trunc) = writer_and_truncation(&fs);
        fs.release(trunc).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"");
        fs.flush(writer).unwrap();
        fs.release(writer).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"newer");
    }

    /// A shell's `: > k` closes a dup first: its second flush is the close
    /// the user sees, and here it is the latest.
    #[test]
    fn a_second_flush_commits_the_truncation_after_another_close() {
        let (_dir, fs) = mounted();
        let (writer, trunc) = writer_and_truncation(&fs);
        fs.flush(writer).unwrap();
        fs.release(writer).unwrap();
        fs.flush(trunc).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"");
        fs.release(trunc).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"");
    }
}
