//! Operations on names: looking them up, creating files, folders,
//! symlinks, special files and hard links, removing them, and renaming,
//! with the errors of POSIX. Each change is one batch: the entries, the
//! inodes it changes (nlink, ctime, a folder's parent) and the folders'
//! inodes (mtime, ctime, nlink).

use std::sync::Arc;

use parking_lot::{ArcMutexGuard, RawMutex};

use log::debug;

use super::attr::Attr;
use super::commit;
use super::dirs::{DirMap, Entry};
use super::draft::Draft;
use super::errno::{Error, Result};
use super::fs::{Caller, CaskFs, Opened, Pending};
use super::handle::OpenMode;
use super::live::Live;
use super::page_cache::ReadMode;
use crate::backend::{Batch, Compare, Op};
use crate::schema::{Data, Inode, entry, keys};
use crate::vocab::{FileType, S_IFMT, now_ns};

/// RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT from renameat2(2).
const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;
const RENAME_WHITEOUT: u32 = 4;

/// Inode records a change rewrites: read under their locks, changed, then
/// written in the change's batch and made current.
struct Records<'a> {
    fs: &'a CaskFs,
    /// The inodes, locked in the order of their numbers.
    held: Vec<(u64, Arc<Live>, ArcMutexGuard<RawMutex, ()>)>,
    changed: Vec<(u64, Option<Inode>)>,
    /// Folders whose times the change sets, to be stored later
    /// (`CaskFs::store_folder_times`) unless the batch writes them anyway.
    later: Vec<(u64, i64)>,
}

impl<'a> Records<'a> {
    /// Locks the inodes `inos` (any order, repeats allowed).
    fn lock(fs: &'a CaskFs, inos: &[u64]) -> Records<'a> {
        let mut inos = inos.to_vec();
        inos.sort_unstable();
        inos.dedup();
        let held = inos
            .iter()
            .map(|&i| {
                let live = fs.lives.get(i);
                let guard = live.lock();
                (i, live, guard)
            })
            .collect();
        Records {
            fs,
            held,
            changed: Vec::new(),
            later: Vec::new(),
        }
    }

    /// The current record of `ino` (one of those locked): as changed
    /// already by this change, else as committed.
    fn get(&self, ino: u64) -> Result<Inode> {
        if let Some((_, i)) = self.changed.iter().rev().find(|(i, _)| *i == ino) {
            return i.clone().ok_or(Error::NotFound);
        }
        self.fs.inode(ino)?.ok_or(Error::NotFound)
    }

    fn set(&mut self, ino: u64, inode: Inode) {
        self.changed.push((ino, Some(inode)));
    }

    fn delete(&mut self, ino: u64) {
        self.changed.push((ino, None));
    }

    /// Folder `dir` (locked) had an entry changed at `now`, and has
    /// `links` more subfolders. Only a change of nlink is stored with the
    /// change; new times alone are stored within a second (a create or an
    /// unlink then writes two records, not three), except on a shared
    /// backend, whose other hosts read the record.
    fn touch(&mut self, dir: u64, links: i32, now: i64) -> Result<()> {
        if links != 0 || self.fs.opts.shared {
            let inode = self.get(dir)?;
            self.set(dir, touched(inode, links, now));
        } else {
            self.later.push((dir, now));
        }
        Ok(())
    }

    /// Writes `b` with the changed records, and makes them current.
    fn write(&mut self, mut b: Batch) -> Result<()> {
        for (dir, now) in std::mem::take(&mut self.later) {
            if self.changed.iter().any(|(i, _)| *i == dir) {
                let inode = self.get(dir)?;
                self.set(dir, touched(inode, 0, now));
            } else {
                self.later.push((dir, now));
            }
        }
        let mut last: Vec<(u64, Option<Inode>)> = Vec::new();
        for (ino, i) in self.changed.drain(..).rev() {
            if !last.iter().any(|(x, _)| *x == ino) {
                last.push((ino, i));
            }
        }
        for (ino, i) in &last {
            match i {
                Some(i) => b.put(keys::inode(*ino).to_vec(), i.encode()),
                None => b.delete(keys::inode(*ino).to_vec()),
            };
        }
        if b.in_order {
            // Names go first and come last: a crash in between leaves an
            // inode no name reaches, which the next open removes.
            b.ops
                .sort_by_key(|op| match (op, keys::entry_of(op.key())) {
                    (Op::Delete { .. }, Some(_)) => 0,
                    (_, None) => 1,
                    (Op::Put { .. }, Some(_)) => 2,
                });
        }
        // Only the entries are needed for telling own changes apart.
        let own: Batch = Batch {
            ops: b
                .ops
                .iter()
                .filter(|o| keys::entry_of(o.key()).is_some())
                .cloned()
                .collect(),
            compares: Vec::new(),
            in_order: false,
        };
        let revision = self.fs.store.kv.write(b)?;
        self.fs.note_own(&own, revision);
        for (ino, i) in last {
            let live = self
                .held
                .iter()
                .find(|(x, _, _)| *x == ino)
                .map(|(_, l, _)| l);
            match (live, i) {
                (Some(l), Some(i)) => l.set_current(self.fs.lives.version(ino, i, revision)),
                (Some(l), None) => l.forget_current(),
                (None, _) => {}
            }
        }
        for (dir, now) in std::mem::take(&mut self.later) {
            let Some((_, live, _)) = self.held.iter().find(|(x, _, _)| *x == dir) else {
                continue;
            };
            let inode = touched(self.get(dir)?, 0, now);
            let revision = live.current().map_or(0, |v| v.revision);
            live.set_unstored(self.fs.lives.version(dir, inode, revision));
            self.fs.unstored.lock().insert(dir);
        }
        Ok(())
    }
}

impl CaskFs {
    /// Sets folder `dir`'s times to `now` for a change that writes no
    /// record yet (a file being created, or removed before its first
    /// commit), to be stored with the folders' other new times. On a
    /// shared backend the first commit stores them instead.
    fn touch_folder(&self, dir: u64, now: i64) -> Result<()> {
        if self.opts.shared {
            return Ok(());
        }
        let live = self.lives.get(dir);
        let _lock = live.lock();
        let inode = self.inode(dir)?.ok_or(Error::NotFound)?;
        let revision = live.current().map_or(0, |v| v.revision);
        live.set_unstored(self.lives.version(dir, touched(inode, 0, now), revision));
        self.unstored.lock().insert(dir);
        Ok(())
    }
}

/// A folder's inode after an entry in it changed; `links` more (or
/// fewer) subfolders.
fn touched(mut dir: Inode, links: i32, now: i64) -> Inode {
    dir.mtime = now;
    dir.ctime = now;
    dir.nlink = dir.nlink.saturating_add_signed(links);
    dir
}

impl CaskFs {
    /// The inode a name in folder node `parent` leads to.
    fn entry(&self, dirs: &DirMap, parent: u64, name: &[u8]) -> Result<(u64, Entry)> {
        Self::check_name(name)?;
        let parent = self.nodeids.ino_of(parent);
        let e = dirs.get(parent, name).ok_or(Error::NotFound)?;
        Ok((parent, e))
    }

    pub fn lookup(&self, parent: u64, name: &[u8], tid: u32) -> Result<Attr> {
        if name.len() > crate::vocab::MAX_NAME_LEN {
            return Err(Error::NameTooLong);
        }
        let parent = self.nodeids.ino_of(parent);
        let found = |dirs: &DirMap| dirs.get(parent, name).map(|e| e.ino);
        let ino = found(&self.dirs.read());
        match ino.map(|ino| self.attr(ino, tid, None)) {
            // On a shared backend, another host may have moved the name on
            // to another inode and removed this one before the watch tells
            // this mount: the backend's entry decides (the kernel looks up
            // again after an open found its inode gone).
            Some(Err(Error::NotFound)) if self.opts.shared => {
                self.refresh_entry(parent, name)?;
                let ino = found(&self.dirs.read()).ok_or(Error::NotFound)?;
                self.attr(ino, tid, None)
            }
            Some(r) => r,
            None => Err(Error::NotFound),
        }
    }

    /// Creates `name` and opens it. The file exists from now on (lookups
    /// and listings see it), but is stored only when its handle is
    /// flushed or released.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
        caller: &Caller,
    ) -> Result<(Attr, Opened)> {
        self.writable()?;
        let kind = mode & S_IFMT;
        if kind != 0 && kind != FileType::Regular.mode_bits() {
            return Err(Error::InvalidArgument(
                "create of a file that is not regular",
            ));
        }
        Self::check_name(name)?;
        let mut tries = 0;
        loop {
            let mut dirs = self.dirs.write();
            let dir = self.nodeids.ino_of(parent);
            let pinode = self.folder(dir)?;
            if let Some(e) = dirs.get(dir, name) {
                drop(dirs);
                if flags & libc::O_EXCL != 0 {
                    return Err(Error::Exists);
                }
                let node = self.nodeids.node_of(e.ino);
                // Removed since the look (an rm or mv raced this create):
                // look again, and create it if it is gone.
                let opened = match tries {
                    0..3 => match self.open_inode(node, flags, caller.tid) {
                        Err(Error::Stale) => {
                            tries += 1;
                            continue;
                        }
                        opened => opened?,
                    },
                    _ => self.open(node, flags, caller.tid)?,
                };
                let attr = self.getattr(node, Some(opened.fh), caller.tid)?;
                self.forget_stale(caller.tid);
                return Ok((attr, opened));
            }
            let ino = self.store.new_ino()?;
            let inode = self.new_inode(FileType::Regular, mode, umask, &pinode, caller);
            dirs.insert(
                dir,
                name,
                Entry {
                    ino,
                    kind: FileType::Regular,
                    pending: true,
                },
            );
            self.pending.lock().insert(
                ino,
                Pending {
                    parent: dir,
                    name: name.to_vec(),
                    inode: inode.clone(),
                },
            );
            drop(dirs);
            // The name shows from now on: so does the folder's change.
            self.touch_folder(dir, inode.ctime)?;
            let open = OpenMode {
                write: true,
                append: flags & libc::O_APPEND != 0,
                truncate: true,
            };
            let (fh, h) = self
                .handles
                .insert_writer(ino, ino, open, caller.tid, |o| Draft::writer(ino, o));
            h.draft.start_empty(self.frees.clone());
            self.lives.get(ino).open_handle();
            debug!("created {} as inode {ino}", show(name));
            // Maybe the kernel's retry of an open an rm or mv beat: a later
            // ESTALE of this thread's is not a second one.
            self.forget_stale(caller.tid);
            let opened = Opened {
                fh,
                write: true,
                read: ReadMode::Direct,
            };
            return Ok((self.attr(ino, caller.tid, Some(&h.draft))?, opened));
        }
    }

    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        rdev: u32,
        caller: &Caller,
    ) -> Result<Attr> {
        let kind = match mode & S_IFMT {
            0 => FileType::Regular,
            bits => FileType::of_mode(bits).ok_or(Error::InvalidArgument("no such file type"))?,
        };
        if kind == FileType::Directory || kind == FileType::Symlink {
            return Err(Error::InvalidArgument("mknod of a folder or symlink"));
        }
        self.make(parent, name, |p| {
            let mut i = self.new_inode(kind, mode, umask, p, caller);
            if matches!(kind, FileType::CharDevice | FileType::BlockDevice) {
                i.rdev = rdev;
            }
            i
        })
    }

    pub fn mkdir(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        caller: &Caller,
    ) -> Result<Attr> {
        self.make(parent, name, |p| {
            self.new_inode(FileType::Directory, mode, umask, p, caller)
        })
    }

    /// A symlink: its target is its bytes.
    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: &Caller,
    ) -> Result<Attr> {
        if target.is_empty() || target.len() > crate::vocab::MAX_PATH_LEN {
            return Err(match target.is_empty() {
                true => Error::NotFound,
                false => Error::NameTooLong,
            });
        }
        self.make(parent, name, |p| {
            let mut i = self.new_inode(FileType::Symlink, 0o777, 0, p, caller);
            i.size = target.len() as u64;
            i.data = Data::Inline(target.to_vec());
            i
        })
    }

    /// Stores a new inode as `name` in `parent` at once, as `build` makes
    /// it from the folder's inode.
    fn make(&self, parent: u64, name: &[u8], build: impl FnOnce(&Inode) -> Inode) -> Result<Attr> {
        self.writable()?;
        Self::check_name(name)?;
        let mut dirs = self.dirs.write();
        let dir = self.nodeids.ino_of(parent);
        self.folder(dir)?;
        if dirs.get(dir, name).is_some() {
            return Err(Error::Exists);
        }
        let ino = self.store.new_ino()?;
        let r = Records::lock(self, &[dir, ino]);
        let pinode = r.get(dir)?;
        let mut inode = build(&pinode);
        let subdir = inode.kind == FileType::Directory;
        if subdir {
            inode.nlink = 2;
            inode.parent = dir;
        }
        self.add_entry(&mut dirs, r, (dir, name), (ino, inode), i32::from(subdir))
    }

    /// Stores the name `name` in folder `dir` for inode `ino`, as one batch
    /// with `inode`, and the folder's times and `links` more subfolders
    /// (records `r` locks).
    fn add_entry(
        &self,
        dirs: &mut DirMap,
        mut r: Records,
        (dir, name): (u64, &[u8]),
        (ino, inode): (u64, Inode),
        links: i32,
    ) -> Result<Attr> {
        let key = keys::entry(dir, name);
        let mut b = Batch::default();
        b.put(key.clone(), entry::encode(inode.kind, ino))
            .expect(Compare::Absent(key));
        r.touch(dir, links, inode.ctime)?;
        r.set(ino, inode.clone());
        r.write(b)?;
        dirs.insert(dir, name, Entry::named(ino, inode.kind));
        Ok(self.attr_of(ino, &inode))
    }

    /// A second name for the file of node `node`.
    pub fn link(&self, node: u64, parent: u64, name: &[u8]) -> Result<Attr> {
        self.writable()?;
        Self::check_name(name)?;
        let ino = self.nodeids.ino_of(node);
        self.store_pending(ino)?;
        let mut dirs = self.dirs.write();
        let dir = self.nodeids.ino_of(parent);
        self.folder(dir)?;
        if dirs.get(dir, name).is_some() {
            return Err(Error::Exists);
        }
        let r = Records::lock(self, &[dir, ino]);
        let mut inode = r.get(ino).map_err(|_| Error::Stale)?;
        if inode.kind == FileType::Directory {
            return Err(Error::NotPermitted("a hard link to a folder"));
        }
        if inode.nlink == 0 {
            return Err(Error::NotFound);
        }
        let now = now_ns();
        inode.nlink += 1;
        inode.ctime = now;
        self.add_entry(&mut dirs, r, (dir, name), (ino, inode), 0)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.writable()?;
        let mut dirs = self.dirs.write();
        let (dir, e) = self.entry(&dirs, parent, name)?;
        if e.kind == FileType::Directory {
            return Err(Error::IsADirectory);
        }
        if e.pending {
            dirs.remove(dir, name);
            if let Some(p) = self.pending.lock().get_mut(&e.ino) {
                // Its writes go nowhere now: no name to store them under.
                p.name.clear();
                p.inode.nlink = 0;
                p.inode.ctime = now_ns();
            }
            drop(dirs);
            return self.touch_folder(dir, now_ns());
        }
        let mut r = Records::lock(self, &[dir, e.ino]);
        let now = now_ns();
        let mut b = Batch::default();
        b.delete(keys::entry(dir, name));
        r.touch(dir, 0, now)?;
        let frees = self.unlink_inode(&mut r, &mut b, e.ino, now)?;
        // The inode goes with its name (or waits as an orphan): the name
        // may go first.
        b.in_order = r.get(e.ino).map_or(true, |i| i.nlink == 0);
        r.write(b)?;
        dirs.remove(dir, name);
        drop(r);
        drop(dirs);
        self.free_removed(e.ino, frees);
        Ok(())
    }

    /// Frees what removed inode `ino` reached, once no version of it is
    /// pinned: a reader opening it at that moment may have pinned one
    /// before its handle counted.
    fn free_removed(&self, ino: u64, frees: Vec<Vec<u8>>) {
        if !frees.is_empty() {
            let live = self.lives.get(ino);
            self.free(&live, self.lives.next_vno(), frees);
        }
    }

    /// One link of `ino` goes (in batch `b` of records `r`): the inode
    /// loses a link, and with its last one goes too, unless it is open
    /// (then it stays, as an orphan, until its last close). Returns what
    /// to free once the batch is written.
    fn unlink_inode(
        &self,
        r: &mut Records,
        b: &mut Batch,
        ino: u64,
        now: i64,
    ) -> Result<Vec<Vec<u8>>> {
        let mut inode = r.get(ino)?;
        inode.nlink = match inode.kind {
            FileType::Directory => 0,
            _ => inode.nlink.saturating_sub(1),
        };
        inode.ctime = now;
        if inode.nlink > 0 {
            r.set(ino, inode);
            return Ok(Vec::new());
        }
        self.remember_removed(ino, self.attr_of(ino, &inode));
        if self.handles.any_of(ino) {
            b.put(keys::orphan(ino).to_vec(), Vec::new());
            r.set(ino, inode);
            return Ok(Vec::new());
        }
        r.delete(ino);
        commit::unreached(&self.store, &inode.data, &Data::None, &self.store)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.writable()?;
        let mut dirs = self.dirs.write();
        let (dir, e) = self.entry(&dirs, parent, name)?;
        if e.kind != FileType::Directory {
            return Err(Error::NotADirectory);
        }
        if dirs.has_entries(e.ino) {
            return Err(Error::NotEmpty);
        }
        let mut r = Records::lock(self, &[dir, e.ino]);
        let now = now_ns();
        let mut b = Batch::default();
        b.delete(keys::entry(dir, name));
        let pinode = r.get(dir)?;
        r.set(dir, touched(pinode, -1, now));
        self.unlink_inode(&mut r, &mut b, e.ino, now)?;
        r.write(b)?;
        dirs.remove(dir, name);
        Ok(())
    }

    /// rename(2) and renameat2(2) without RENAME_EXCHANGE: one batch,
    /// whatever is below a folder, atomic.
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
        Self::check_name(newname)?;
        let mut dirs = self.dirs.write();
        let (from_dir, src) = self.entry(&dirs, parent, name)?;
        let to_dir = self.nodeids.ino_of(newparent);
        self.folder(to_dir)?;
        let dst = dirs.get(to_dir, newname);
        if flags & RENAME_NOREPLACE != 0 && dst.is_some() {
            return Err(Error::Exists);
        }
        if (from_dir, name) == (to_dir, newname) || dst.is_some_and(|d| d.ino == src.ino) {
            return Ok(());
        }
        let is_dir = src.kind == FileType::Directory;
        if is_dir && (to_dir == src.ino || self.is_below(to_dir, src.ino)?) {
            return Err(Error::InvalidArgument("a folder into itself"));
        }
        match dst {
            Some(d) if is_dir && d.kind != FileType::Directory => return Err(Error::NotADirectory),
            Some(d) if !is_dir && d.kind == FileType::Directory => return Err(Error::IsADirectory),
            Some(d) if d.kind == FileType::Directory && dirs.has_entries(d.ino) => {
                return Err(Error::NotEmpty);
            }
            _ => {}
        }
        let mut inos = vec![from_dir, to_dir, src.ino];
        inos.extend(dst.map(|d| d.ino));
        let mut r = Records::lock(self, &inos);
        let now = now_ns();
        let mut b = Batch::default();
        let mut frees = (0, Vec::new());
        if let Some(d) = dst {
            if d.pending {
                if let Some(p) = self.pending.lock().get_mut(&d.ino) {
                    p.name.clear();
                    p.inode.nlink = 0;
                    p.inode.ctime = now;
                }
            } else {
                // Overwritten by the source's entry, or (a source still
                // being created has none yet) gone until its first commit.
                if src.pending {
                    b.delete(keys::entry(to_dir, newname));
                }
                frees = (d.ino, self.unlink_inode(&mut r, &mut b, d.ino, now)?);
                if d.kind == FileType::Directory {
                    let t = r.get(to_dir)?;
                    r.set(to_dir, touched(t, -1, now));
                }
            }
        }
        if src.pending {
            if let Some(p) = self.pending.lock().get_mut(&src.ino) {
                p.parent = to_dir;
                p.name = newname.to_vec();
            }
        } else {
            b.delete(keys::entry(from_dir, name));
            b.put(
                keys::entry(to_dir, newname),
                entry::encode(src.kind, src.ino),
            );
            let mut moved = r.get(src.ino)?;
            moved.ctime = now;
            if is_dir {
                moved.parent = to_dir;
            }
            r.set(src.ino, moved);
        }
        let moves_dir = i32::from(is_dir && from_dir != to_dir);
        let f = r.get(from_dir)?;
        r.set(from_dir, touched(f, -moves_dir, now));
        let t = r.get(to_dir)?;
        r.set(to_dir, touched(t, moves_dir, now));
        r.write(b)?;
        let e = dirs.remove(from_dir, name).unwrap_or(src);
        dirs.insert(to_dir, newname, e);
        drop(r);
        drop(dirs);
        self.free_removed(frees.0, frees.1);
        Ok(())
    }

    /// Whether folder `dir` is below folder `above` (by parents).
    fn is_below(&self, mut dir: u64, above: u64) -> Result<bool> {
        for _ in 0..4096 {
            if dir == above {
                return Ok(true);
            }
            if dir == keys::ROOT {
                return Ok(false);
            }
            dir = self.inode(dir)?.map_or(keys::ROOT, |i| i.parent);
        }
        Ok(false)
    }

    /// Stores a file still being created, empty, so that it has records
    /// (a hard link to it needs them); nothing if it has them already.
    pub(super) fn store_pending(&self, ino: u64) -> Result<()> {
        let mut dirs = self.dirs.write();
        let Some(p) = self.pending.lock().remove(&ino) else {
            return Ok(());
        };
        let r = self.store_created(&mut dirs, ino, &p, p.inode.clone(), Batch::default());
        if r.is_err() {
            self.pending.lock().insert(ino, p);
        }
        r
    }

    /// The first commit of a created file: its entry, its inode `inode`
    /// and its folder's, with `b` (what else the commit writes).
    pub(super) fn store_created(
        &self,
        dirs: &mut DirMap,
        ino: u64,
        p: &Pending,
        inode: Inode,
        mut b: Batch,
    ) -> Result<()> {
        let mut r = Records::lock(self, &[p.parent, ino]);
        let key = keys::entry(p.parent, &p.name);
        b.put(key.clone(), entry::encode(inode.kind, ino))
            .expect(Compare::Absent(key));
        // A new inode, named last.
        b.in_order = true;
        r.touch(p.parent, 0, inode.ctime)?;
        r.set(ino, inode);
        r.write(b)?;
        if let Some(e) = dirs.remove(p.parent, &p.name) {
            dirs.insert(
                p.parent,
                &p.name,
                Entry {
                    pending: false,
                    ..e
                },
            );
        }
        Ok(())
    }
}

pub(super) fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).escape_debug().to_string()
}
