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
use super::draft::{Closer, Draft};
use super::errno::{Error, Result};
use super::handle::{Handle, HandleTable, OpenMode};
use super::inode::InodeTable;
use super::process::Opener;
use crate::engine::{self, MAX_KEY_LEN, MAX_NAME_LEN, RECORD_HEADER_LEN, Store, validate_key};

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

/// Bytes a record adds to its value at most: header and the longest key.
const RECORD_OVERHEAD: u64 = (RECORD_HEADER_LEN + MAX_KEY_LEN) as u64;

/// RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT from renameat2(2).
const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;
const RENAME_WHITEOUT: u32 = 4;

/// What the kernel caches that the daemon must correct when it changes
/// without a request the kernel saw: the adapter tells the kernel.
pub trait KernelCache: Send + Sync {
    /// The size or mtime of `ino` changed: a commit stored a new value, or
    /// a process's draft began to differ from the store.
    fn attrs_changed(&self, ino: u64);
    /// The root's listing changed: a created key whose first value was
    /// never stored.
    fn listing_changed(&self);
}

pub struct CaskFs {
    store: Arc<Store>,
    opts: FsOptions,
    inodes: InodeTable,
    handles: HandleTable,
    /// Open directory streams: a snapshot of the names, taken at the
    /// first readdir (a listing the kernel serves from its cache never
    /// asks, so opendir itself must stay cheap).
    dirs: Mutex<HashMap<u64, Option<Arc<Vec<DirEntry>>>>>,
    kernel: OnceLock<Box<dyn KernelCache>>,
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
            kernel: OnceLock::new(),
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
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong);
        }
        // One name in the root, until the mount shows keys' folders.
        if name.contains(&b'/') {
            return Err(Error::InvalidName);
        }
        validate_key(name).map_err(|_| Error::InvalidName)?;
        Ok(name)
    }

    fn root_attr(&self) -> Attr {
        Attr::root(self.mounted_at, self.opts.owner)
    }

    /// The attributes of `key` as thread `tid` sees them: as its process's
    /// draft has them, or as the store does, or as a pending creation
    /// (empty) if only an open handle holds it. `own` is the draft of the
    /// descriptor asked through, if any.
    fn key_attr(&self, ino: u64, key: &[u8], tid: u32, own: Option<&Draft>) -> Result<Attr> {
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
        let committed = self.store.metadata(key)?;
        let pending = committed.is_none() && self.inodes.is_pending(ino);
        let m = match (mine, committed) {
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) if pending => engine::Metadata::file(0, SystemTime::now()),
            (None, None) => return Err(Error::NotFound),
        };
        let mut attr = Attr::file(ino, m.len, m.mtime, self.opts.owner);
        // The kernel keeps one set of attributes for all processes: none
        // while they differ between processes, or while a creation's
        // commit may still fail.
        attr.cacheable = changed.is_empty() && !pending;
        Ok(attr)
    }

    fn exists(&self, key: &[u8]) -> bool {
        self.store.contains(key)
            || self
                .inodes
                .lookup(key)
                .is_some_and(|ino| self.inodes.is_pending(ino))
    }

    pub fn lookup(&self, parent: u64, name: &[u8], tid: u32) -> Result<Attr> {
        let key = self.key(parent, name)?;
        if self.store.contains(key) {
            let ino = self.inodes.ino_for(key);
            return self.key_attr(ino, key, tid, None);
        }
        match self.inodes.lookup(key) {
            Some(ino) => self.key_attr(ino, key, tid, None),
            None => Err(Error::NotFound),
        }
    }

    /// Attributes as thread `tid` sees them, through descriptor `fh` if
    /// the kernel names one (it does for `SEEK_END`, not for `fstat`).
    pub fn getattr(&self, ino: u64, fh: Option<u64>, tid: u32) -> Result<Attr> {
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
            let m = h
                .draft
                .local()
                .or_else(|| h.draft.pinned())
                .ok_or(Error::NotFound)?;
            let mut attr = Attr::file(ino, m.len, m.mtime, self.opts.owner);
            attr.nlink = 0;
            attr.cacheable = false;
            return Ok(attr);
        };
        let own = handle.as_ref().filter(|h| h.mode.write).map(|h| &*h.draft);
        self.key_attr(ino, &key, tid, own)
    }

    pub fn setattr(&self, ino: u64, req: SetAttr, tid: u32) -> Result<Attr> {
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
            self.truncate(ino, &key, size, req.fh, tid)?;
        }
        if let Some(mtime) = req.mtime {
            match self.set_mtime(&key, mtime) {
                Ok(()) => {}
                // A pending creation gets its mtime when it commits.
                Err(engine::Error::NotFound { .. }) if self.inodes.is_pending(ino) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.getattr(ino, req.fh, tid)
    }

    /// Sets the mtime of `key`, keeping the rest of its metadata.
    fn set_mtime(&self, key: &[u8], mtime: SystemTime) -> engine::Result<()> {
        let m = self
            .store
            .metadata(key)?
            .ok_or_else(|| engine::Error::NotFound {
                key: String::from_utf8_lossy(key).into_owned(),
            })?;
        let meta = engine::Metadata {
            mtime,
            ctime: SystemTime::now(),
            ..m
        }
        .meta();
        self.store.set_meta(key, &meta)
    }

    /// ftruncate changes the descriptor's draft; truncate(2) by path the
    /// caller's draft if its process is writing the key, else the store
    /// at once.
    fn truncate(&self, ino: u64, key: &[u8], size: u64, fh: Option<u64>, tid: u32) -> Result<()> {
        let draft = match fh.and_then(|fh| self.handles.get(fh).ok()) {
            Some(h) if h.mode.write && h.ino == ino => Some(h.draft.clone()),
            _ => self
                .handles
                .drafts_of(ino)
                .into_iter()
                .find(|d| d.opener.is(tid)),
        };
        if let Some(d) = draft {
            let r = d.truncate(&self.store, key, size, tid);
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
        let d = Draft::on_committed(Opener::new(0));
        d.truncate(&self.store, key, size, tid)?;
        d.commit(&self.store, Some(key), None)?;
        self.stored(ino, None);
        Ok(())
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

    /// Creates `name` and opens it. The key exists from now on, but its
    /// value is committed only when the handle is flushed or released.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
        tid: u32,
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
            let opened = self.open(ino, flags, tid)?;
            return Ok((self.getattr(ino, Some(opened.fh), tid)?, opened));
        }
        let open = OpenMode {
            write: true,
            append: flags & libc::O_APPEND != 0,
            truncate: true,
        };
        self.inodes.add_pending(ino);
        let draft = self.handles.draft_for(ino, tid, Draft::empty);
        draft.start_empty();
        draft.mark_created();
        let (fh, h) = self.handles.insert(Handle {
            ino,
            mode: open,
            draft,
        });
        debug!("created {} as inode {ino}", show(key));
        let opened = Opened { fh, write: true };
        Ok((self.key_attr(ino, key, tid, Some(&h.draft))?, opened))
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
        self.key_attr(ino, key, 0, None)
    }

    pub fn open(&self, ino: u64, flags: i32, tid: u32) -> Result<Opened> {
        if ino == ROOT_INO {
            return Err(Error::IsADirectory);
        }
        // An inode whose key went away after the kernel looked it up (an
        // rm or mv raced this open): ESTALE makes the kernel look the name
        // up again, which creates it afresh for `echo v > k`.
        let key = self.inodes.key_of(ino).ok_or(Error::Stale)?;
        if !self.exists(&key) {
            return Err(Error::Stale);
        }
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if write {
            self.writable()?;
        }
        let mode = OpenMode {
            write,
            append: write && flags & libc::O_APPEND != 0,
            truncate: write && flags & libc::O_TRUNC != 0,
        };
        let draft = if write {
            let d = self.handles.draft_for(ino, tid, |opener| {
                if self.store.contains(&key) {
                    Draft::on_committed(opener)
                } else {
                    // Being created by another process: empty until that
                    // commits.
                    Draft::empty(opener)
                }
            });
            if mode.truncate {
                d.start_empty();
            }
            d
        } else {
            // A reader keeps the value it opened (or its growth); of a key
            // being created, the first value committed.
            Arc::new(match self.store.value(&key)? {
                Some(v) => Draft::reader(v),
                None => Draft::on_committed(Opener::new(0)),
            })
        };
        let (fh, _) = self.handles.insert(Handle { ino, mode, draft });
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
        h.draft.read(&self.store, &key, offset, size, give)
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
        let room = |len| self.check_space(len);
        let append = h.mode.append && !from_cache;
        let r = h
            .draft
            .write(&self.store, &key, offset, data, append, owner, &room);
        self.change(h.ino, r)
    }

    /// Commits `h`'s draft (see `Draft::commit` for `closer`). A created
    /// key stops being pending once its first commit is attempted: it is
    /// then in the store, or the commit failed and it never will be.
    fn commit(&self, h: &Handle, closer: Option<Closer>) -> Result<()> {
        let key = self.inodes.key_of(h.ino);
        let result = h.draft.commit(&self.store, key.as_deref(), closer);
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
    /// cached size and mtime are out of date, and truncations other drafts
    /// left for their release (their close returned before this) are now
    /// older.
    fn stored(&self, ino: u64, by: Option<&Draft>) {
        if let Some(k) = self.kernel.get() {
            k.attrs_changed(ino);
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
        self.commit(&h, Some(Closer { owner, tid }))
    }

    /// The last close of an open file; the draft's last handle commits
    /// what flushes left (an empty start), the others leave it to that one.
    pub fn release(&self, fh: u64) -> Result<()> {
        let h = self.handles.remove(fh)?;
        if self.handles.shares(&h.draft) {
            return Ok(());
        }
        let result = self.commit(&h, None);
        if h.draft.end_pending() {
            self.creation_abandoned(h.ino);
        }
        result
    }

    /// Commits the draft and forces everything to disk.
    pub fn fsync(&self, fh: u64) -> Result<()> {
        let h = self.handles.get(fh)?;
        self.commit(&h, None)?;
        Ok(self.store.sync()?)
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
                if h.draft.is_dirty() {
                    self.commit(&h, None)?;
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
        // A key with a '/' (stored by the engine or the CLI) is in a folder,
        // which the mount does not show yet: a name in a listing cannot
        // hold a '/'.
        names.retain(|k| !k.contains(&b'/'));
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

    /// Who to tell when what the kernel caches changes behind its back.
    pub fn set_kernel_cache(&self, k: Box<dyn KernelCache>) {
        let _ = self.kernel.set(k);
    }

    /// A created key ends without a stored value: it leaves the listing.
    fn creation_abandoned(&self, ino: u64) {
        self.inodes.drop_pending(ino);
        if let Some(k) = self.kernel.get() {
            k.listing_changed();
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
            namelen: MAX_NAME_LEN as u32,
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
            if let Err(e) = self.commit(&h, None) {
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
        let ino = fs.lookup(ROOT_INO, b"k", 0).unwrap().ino;
        // Two processes: the writer, and the one truncating.
        let writer = fs.open(ino, libc::O_WRONLY, 1).unwrap().fh;
        fs.write(writer, 0, b"newer", false, Some(1)).unwrap();
        let trunc = fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, 2).unwrap().fh;
        fs.flush(trunc, 2, 2).unwrap();
        (writer, trunc)
    }

    #[test]
    fn a_late_release_does_not_undo_a_later_close() {
        let (_dir, fs) = mounted();
        let (writer, trunc) = writer_and_truncation(&fs);
        fs.flush(writer, 1, 1).unwrap();
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
        fs.flush(writer, 1, 1).unwrap();
        fs.release(writer).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"newer");
    }

    /// A shell's `: > k` closes a dup first: its second flush is the close
    /// the user sees, and here it is the latest.
    #[test]
    fn a_second_flush_commits_the_truncation_after_another_close() {
        let (_dir, fs) = mounted();
        let (writer, trunc) = writer_and_truncation(&fs);
        fs.flush(writer, 1, 1).unwrap();
        fs.release(writer).unwrap();
        fs.flush(trunc, 2, 2).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"");
        fs.release(trunc).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"");
    }

    /// A child that inherited the writer's descriptor closes it (at exec
    /// or exit) without having written: the writer's changes stay its own.
    #[test]
    fn a_close_by_a_process_that_never_wrote_does_not_commit() {
        let (_dir, fs) = mounted();
        fs.store().put(b"k", b"old").unwrap();
        let ino = fs.lookup(ROOT_INO, b"k", 0).unwrap().ino;
        let fh = fs.open(ino, libc::O_WRONLY, 1).unwrap().fh;
        fs.write(fh, 0, b"new", false, Some(10)).unwrap();
        fs.flush(fh, 20, 20).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"old");
        fs.flush(fh, 10, 1).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"new");
        // An empty start flushed once by each of two tables stays
        // uncommitted; the second flush of one table commits it.
        let t = fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, 1).unwrap().fh;
        fs.flush(t, 20, 20).unwrap();
        fs.flush(t, 30, 30).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"new");
        fs.flush(t, 20, 20).unwrap();
        assert_eq!(fs.store().get(b"k").unwrap().unwrap(), b"");
        fs.release(t).unwrap();
        fs.release(fh).unwrap();
    }
}
