//! stat, chmod, chown, touch, truncate and readlink: an inode's attributes
//! as a process sees them (its own draft's length and time while it
//! writes), and their changes.

use std::sync::Arc;
use std::time::SystemTime;

use super::attr::Attr;
use super::draft::Draft;
use super::errno::{Error, Result};
use super::fs::{CaskFs, SetAttr};
use crate::schema::{Data, Inode};
use crate::vocab::{FileType, PERM_BITS, to_ns};

impl CaskFs {
    /// The attributes of `ino` as thread `tid` sees them; `own` is the
    /// draft of the descriptor asked through, if any.
    pub(super) fn attr(&self, ino: u64, tid: u32, own: Option<&Draft>) -> Result<Attr> {
        // The drafts first: a commit under way ends before `local` says
        // none differs, and the record read after it is the new one.
        let drafts = self.handles.drafts_of(ino);
        let changed: Vec<_> = drafts
            .iter()
            .filter_map(|d| d.local().map(|m| (d, m)))
            .collect();
        let inode = self.inode(ino)?.ok_or(Error::NotFound)?;
        let mut a = self.attr_of(ino, &inode);
        if inode.kind != FileType::Regular {
            return Ok(a);
        }
        let mine = match own {
            Some(d) => d.local(),
            None => changed
                .iter()
                .find(|(d, _)| d.opener.is(tid))
                .map(|(_, m)| *m),
        };
        if let Some((len, mtime, ctime)) = mine {
            a.size = len;
            a.allocated = None;
            a.mtime = mtime;
            a.ctime = ctime;
            // The mount is noatime: an atime never set apart shows the mtime.
            if inode.atime.is_none() {
                a.atime = mtime;
            }
        }
        // The kernel keeps one set of attributes for all processes: none
        // while they differ between processes. A creation nothing was
        // written to yet is empty to all; should its commit fail, the
        // kernel is told (`creation_abandoned`).
        let pending = self.pending.lock().contains_key(&ino);
        let unwritten = pending && changed.iter().all(|(_, (len, _, _))| *len == 0);
        a.cacheable = changed.is_empty() || unwritten;
        Ok(a)
    }

    /// Attributes as thread `tid` sees them, through descriptor `fh` if
    /// the kernel names one (it does for `SEEK_END`, not for `fstat`).
    pub fn getattr(&self, node: u64, fh: Option<u64>, tid: u32) -> Result<Attr> {
        match self.getattr_once(node, fh, tid) {
            // As for an open (`vanished`): the kernel retries once.
            Err(Error::Stale) => Err(self.vanished(tid)),
            r => r,
        }
    }

    fn getattr_once(&self, node: u64, fh: Option<u64>, tid: u32) -> Result<Attr> {
        let handle = fh
            .and_then(|fh| self.handles.get(fh).ok())
            .filter(|h| h.node == node);
        if self.nodeids.is_retired(node) {
            return self.detached_attr(node, handle);
        }
        let ino = self.nodeids.ino_of(node);
        let own = handle.as_ref().filter(|h| h.mode.write).map(|h| &*h.draft);
        match self.attr(ino, tid, own) {
            Ok(mut a) => {
                // An inode removed while open: what it still reads.
                if a.nlink == 0 {
                    a.cacheable = false;
                }
                Ok(a)
            }
            // Removed after the kernel looked it up: what it was, if
            // known (as on a local filesystem), else ESTALE has the
            // kernel look the name up again.
            Err(Error::NotFound) => self
                .removed(ino)
                .or_else(|| self.held_attr(node, handle))
                .ok_or(Error::Stale),
            Err(e) => Err(e),
        }
    }

    /// What descriptors still open on a removed file show: its length as
    /// the one that wrote most has it, no link.
    fn held_attr(&self, node: u64, handle: Option<Arc<super::handle::Handle>>) -> Option<Attr> {
        let handles = match handle {
            Some(h) => vec![h],
            None => self.handles.on_node(node),
        };
        let h = handles.first()?;
        let mut inode = crate::schema::Inode::new(FileType::Regular, 0o644, 0, 0, 0);
        let pinned = handles
            .iter()
            .filter_map(|h| h.draft.pinned())
            .max_by_key(|p| p.inode().size);
        if let Some(p) = pinned {
            inode = p.inode().clone();
        }
        let mut a = self.attr_of(h.ino, &inode);
        if let Some((len, mtime, ctime)) = handles
            .iter()
            .filter_map(|h| h.draft.local())
            .max_by_key(|l| l.0)
        {
            a.size = len;
            a.mtime = mtime;
            a.ctime = ctime;
        }
        a.node = node;
        a.nlink = 0;
        a.cacheable = false;
        Some(a)
    }

    /// chmod, chown, utimens and truncate. The kernel has checked the
    /// caller may (`default_permissions`).
    pub fn setattr(&self, node: u64, req: SetAttr, tid: u32) -> Result<Attr> {
        let r = self.setattr_locked(node, req, tid);
        self.announce();
        r
    }

    fn setattr_locked(&self, node: u64, req: SetAttr, tid: u32) -> Result<Attr> {
        self.writable()?;
        let ino = self.nodeids.ino_of(node);
        if let Some(size) = req.size {
            let inode = self.inode(ino)?.ok_or(Error::Stale)?;
            match inode.kind {
                FileType::Directory => return Err(Error::IsADirectory),
                FileType::Regular => self.truncate(node, ino, size, req.fh, tid)?,
                _ => return Err(Error::InvalidArgument("truncate of a special file")),
            }
        }
        let changes_meta = req.mode.is_some()
            || req.uid.is_some()
            || req.gid.is_some()
            || req.mtime.is_some()
            || req.atime.is_some();
        if changes_meta {
            self.set_meta(ino, &req, tid)?;
            if let Some(k) = self.kernel.get() {
                k.attrs_changed(node);
            }
        }
        self.getattr(node, req.fh, tid)
    }

    fn set_meta(&self, ino: u64, req: &SetAttr, tid: u32) -> Result<()> {
        if let Some(t) = req.mtime {
            // A writer's draft commits its own mtime, which this sets.
            let only_mtime =
                req.mode.is_none() && req.uid.is_none() && req.gid.is_none() && req.atime.is_none();
            let draft = self.drafts_for(ino, req.fh, tid);
            if draft.is_some_and(|d| d.set_mtime(t)) && only_mtime {
                return Ok(());
            }
        }
        let change = |i: &mut Inode| {
            if let Some(mode) = req.mode {
                i.perm = mode & PERM_BITS;
            }
            if let Some(uid) = req.uid {
                i.uid = uid;
            }
            if let Some(gid) = req.gid {
                i.gid = gid;
            }
            if let Some(t) = req.mtime {
                i.mtime = to_ns(t);
            }
            if let Some(t) = req.atime {
                i.atime = Some(to_ns(t));
            }
            i.ctime = to_ns(SystemTime::now());
        };
        if let Some(p) = self.pending.lock().get_mut(&ino) {
            change(&mut p.inode);
            return Ok(());
        }
        let live = self.lives.get(ino);
        let _lock = live.lock();
        let mut inode = self.inode(ino)?.ok_or(Error::Stale)?;
        change(&mut inode);
        self.put_inode(&live, inode)
    }

    /// Writes `inode` as `live`'s record (its lock held) and makes it the
    /// current version.
    pub(super) fn put_inode(&self, live: &Arc<super::live::Live>, inode: Inode) -> Result<()> {
        let mut b = crate::backend::Batch::default();
        b.put(
            crate::schema::keys::inode(live.ino).to_vec(),
            inode.encode(),
        );
        let revision = self.store.kv.write(b)?;
        live.set_current(self.lives.version(live.ino, inode, revision));
        Ok(())
    }

    /// The draft `fh` writes through, or else the one of `tid`'s process.
    pub(super) fn drafts_for(&self, ino: u64, fh: Option<u64>, tid: u32) -> Option<Arc<Draft>> {
        match fh.and_then(|fh| self.handles.get(fh).ok()) {
            Some(h) if h.mode.write && h.ino == ino => Some(h.draft.clone()),
            _ => self
                .handles
                .drafts_of(ino)
                .into_iter()
                .find(|d| d.opener.is(tid) && !d.closing()),
        }
    }

    pub fn readlink(&self, node: u64) -> Result<Vec<u8>> {
        let ino = self.nodeids.ino_of(node);
        let inode = self.inode(ino)?.ok_or(Error::Stale)?;
        match (inode.kind, inode.data) {
            (FileType::Symlink, Data::Inline(target)) => Ok(target),
            (FileType::Symlink, _) => Err(Error::Backend(crate::backend::Error::Corrupt(format!(
                "symlink {ino} has no target"
            )))),
            _ => Err(Error::InvalidArgument("not a symlink")),
        }
    }
}
