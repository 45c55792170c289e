//! Operations on names: creating files, folders and symlinks, removing
//! them, and renaming, with the errors of POSIX.

use log::debug;

use super::attr::{Attr, Kind};
use super::draft::Draft;
use super::errno::{Error, Result};
use super::fs::{Caller, CaskFs, Opened, show};
use super::handle::OpenMode;
use super::page_cache::ReadMode;
use crate::engine::{self, PERM_BITS, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, tree};

/// RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT from renameat2(2).
const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;
const RENAME_WHITEOUT: u32 = 4;
/// The set-group-ID bit: on a folder, new entries take the folder's group.
const S_ISGID: u32 = 0o2000;

impl CaskFs {
    /// The metadata of a new entry of type `kind` in `dir`, as `caller`
    /// makes it with `mode` under `umask`: in a set-group-ID folder it
    /// takes the folder's group (and a folder keeps the bit).
    fn made_by(
        &self,
        kind: u32,
        mode: u32,
        umask: u32,
        dir: &[u8],
        caller: &Caller,
    ) -> engine::Meta {
        let mut meta = self.new_meta(kind | (mode & !umask & PERM_BITS), Some(caller));
        let parent = match dir.is_empty() {
            true => Some(self.root_meta()),
            false => self.store.metadata(dir).ok().flatten().map(|m| m.meta()),
        };
        if let Some(p) = parent.filter(|p| p.mode & S_ISGID != 0) {
            meta.gid = p.gid;
            if kind == S_IFDIR {
                meta.mode |= S_ISGID;
            }
        }
        meta
    }

    /// Creates `name` and opens it. The key exists from now on, but its
    /// value is committed only when the handle is flushed or released.
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
        if kind != 0 && kind != S_IFREG {
            return Err(self.refuse("files other than regular files"));
        }
        let mut tries = 0;
        loop {
            let _names = self.names.read();
            let key = self.key(parent, name)?;
            let exists = self.exists(&key)?;
            if exists && flags & libc::O_EXCL != 0 {
                return Err(Error::Exists);
            }
            let ino = self.inodes.ino_for(&key);
            let created = if exists {
                drop(_names);
                // Removed or moved since `exists` looked (an rm or mv raced
                // this create): look again, and create it if it is gone.
                let opened = match tries {
                    0..3 => match self.open_inode(ino, flags, caller.tid) {
                        Err(Error::Stale) => {
                            tries += 1;
                            continue;
                        }
                        opened => opened?,
                    },
                    _ => self.open(ino, flags, caller.tid)?,
                };
                (self.getattr(ino, Some(opened.fh), caller.tid)?, opened)
            } else {
                self.create_new(ino, &key, mode, umask, flags, caller)?
            };
            // Maybe the kernel's retry of an open an rm or mv beat: a later
            // ESTALE of this thread's is not a second one.
            self.forget_stale(caller.tid);
            return Ok(created);
        }
    }

    /// `create` of a key that does not exist, as inode `ino`.
    fn create_new(
        &self,
        ino: u64,
        key: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
        caller: &Caller,
    ) -> Result<(Attr, Opened)> {
        let open = OpenMode {
            write: true,
            append: flags & libc::O_APPEND != 0,
            truncate: true,
        };
        let dir = tree::split(key).0;
        self.inodes
            .add_pending(ino, self.made_by(S_IFREG, mode, umask, dir, caller));
        let (fh, h) = self
            .handles
            .insert_writer(ino, open, caller.tid, Draft::empty);
        h.draft.start_empty();
        h.draft.mark_created();
        debug!("created {} as inode {ino}", show(key));
        let opened = Opened {
            fh,
            write: true,
            read: ReadMode::Direct,
        };
        Ok((self.attr(ino, key, caller.tid, Some(&h.draft))?, opened))
    }

    /// mknod: regular files only, stored empty at once.
    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        caller: &Caller,
    ) -> Result<Attr> {
        if mode & S_IFMT != S_IFREG {
            return Err(self.refuse("device nodes, FIFOs and sockets"));
        }
        self.make(parent, name, caller, b"", |dir| {
            self.made_by(S_IFREG, mode, umask, dir, caller)
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
        self.make(parent, name, caller, b"", |dir| {
            self.made_by(S_IFDIR, mode, umask, dir, caller)
        })
    }

    /// A symlink: its target is the value.
    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: &Caller,
    ) -> Result<Attr> {
        self.make(parent, name, caller, target, |dir| {
            self.made_by(S_IFLNK, 0o777, 0, dir, caller)
        })
    }

    /// Stores a new entry `name` in `parent` at once, with `value` and
    /// the metadata `meta` gives for its folder.
    fn make(
        &self,
        parent: u64,
        name: &[u8],
        caller: &Caller,
        value: &[u8],
        meta: impl FnOnce(&[u8]) -> engine::Meta,
    ) -> Result<Attr> {
        self.writable()?;
        let _names = self.names.read();
        let key = self.key(parent, name)?;
        if self.exists(&key)? {
            return Err(Error::Exists);
        }
        self.store.put(&key, value, &meta(tree::split(&key).0))?;
        let ino = self.inodes.ino_for(&key);
        self.attr(ino, &key, caller.tid, None)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let key = self.inodes.key_of(ino).ok_or(Error::NotFound)?;
        match self.kind(&key)? {
            Some((Kind::Symlink, _)) => {}
            Some(_) => return Err(Error::InvalidArgument("not a symlink")),
            None => return Err(Error::NotFound),
        }
        let value = self.store.value(&key)?.ok_or(Error::NotFound)?;
        value.read(0, value.metadata().len as usize)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.writable()?;
        let _names = self.names.read();
        let key = self.key(parent, name)?;
        let ino = self.inodes.lookup(&key);
        let _key = self.key_locks(ino.as_slice());
        let stored = match self.kind(&key)? {
            Some((Kind::Directory, _)) => return Err(Error::IsADirectory),
            Some((_, last)) => last,
            // Only a pending creation: gone once it has no name.
            None if self.exists(&key)? => None,
            None => return Err(Error::NotFound),
        };
        if stored.is_some() {
            self.keep_folder(tree::split(&key).0)?;
        }
        let _links = self.links.write();
        if stored.is_some() {
            self.store.delete(&key)?;
        }
        let last = stored.or_else(|| self.pending_last(ino));
        self.inodes.remove(&key, last);
        Ok(())
    }

    /// What a file being created as `ino` shows: empty.
    fn pending_last(&self, ino: Option<u64>) -> Option<engine::Metadata> {
        let meta = self.inodes.pending_meta(ino?)?;
        Some(engine::Metadata::new(0, &meta))
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.writable()?;
        let _names = self.names.read();
        let key = self.key(parent, name)?;
        match self.kind(&key)? {
            Some((Kind::Directory, _)) => {}
            Some(_) => return Err(Error::NotADirectory),
            None if self.exists(&key)? => return Err(Error::NotADirectory),
            None => return Err(Error::NotFound),
        }
        if self.store.folder_counts(&key)?.0 > 0 || !self.inodes.pending_in(&key).is_empty() {
            return Err(Error::NotEmpty);
        }
        self.keep_folder(tree::split(&key).0)?;
        let _links = self.links.write();
        self.store.delete(&key)?;
        self.inodes.remove(&key, None);
        Ok(())
    }

    /// Gives folder `dir` a record of its own if it has none, before its
    /// last entry goes: a folder only implied by its entries (stored by
    /// `caskfs put` or an older version) would vanish with them, which no
    /// filesystem does.
    fn keep_folder(&self, dir: &[u8]) -> Result<()> {
        if dir.is_empty() || self.store.metadata(dir)?.is_some() {
            return Ok(());
        }
        let meta = self.implied_folder_meta();
        self.store.put(dir, b"", &meta)
    }

    /// rename(2) and renameat2(2) without RENAME_EXCHANGE: a file or
    /// symlink is one engine rename, a folder one batch with everything
    /// below it (up to the bounds of `Store::rename_folder`, EXDEV beyond,
    /// so `mv` copies instead). Both are atomic.
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
        let is_folder = matches!(self.kind(&from)?, Some((Kind::Directory, _)));
        // A folder rename keeps everything below it still while it moves.
        let _read;
        let _write;
        if is_folder {
            _write = self.names.write();
        } else {
            _read = self.names.read();
        }
        let inos: Vec<u64> = [&from, &to]
            .iter()
            .filter_map(|k| self.inodes.lookup(k))
            .collect();
        let _keys = self.key_locks(&inos);
        // A file still being created has no record yet: its name moves,
        // and its first value is stored under the new one at close.
        let pending = !is_folder
            && self
                .inodes
                .lookup(&from)
                .is_some_and(|ino| self.inodes.is_pending(ino));
        let (source, stored) = match self.kind(&from)? {
            Some((kind, _)) => (kind, true),
            None if pending => (Kind::File, false),
            None => return Err(Error::NotFound),
        };
        if (source == Kind::Directory) != is_folder {
            return Err(Error::Stale);
        }
        let (target, replaced) = match self.kind(&to)? {
            Some((kind, last)) => (Some(kind), last),
            None => (None, self.pending_last(self.inodes.lookup(&to))),
        };
        if flags & RENAME_NOREPLACE != 0 && self.exists(&to)? {
            return Err(Error::Exists);
        }
        if from == to {
            return Ok(());
        }
        match (is_folder, target) {
            (true, _) if to.starts_with(&from) && to.get(from.len()) == Some(&b'/') => {
                return Err(Error::InvalidArgument("a folder into itself"));
            }
            (true, Some(Kind::Directory)) if self.store.folder_counts(&to)?.0 > 0 => {
                return Err(Error::NotEmpty);
            }
            (true, Some(Kind::File | Kind::Symlink)) => return Err(Error::NotADirectory),
            (false, Some(Kind::Directory)) => return Err(Error::IsADirectory),
            _ => {}
        }
        self.keep_folder(tree::split(&from).0)?;
        let _links = self.links.write();
        if is_folder {
            let meta = self.implied_folder_meta();
            let moved = self.store.rename_folder(&from, &to, &meta)?;
            debug!("renamed folder {} with {moved} keys below", show(&from));
        } else if !stored {
            if target.is_some() {
                self.keep_folder(tree::split(&to).0)?;
                self.store.delete(&to)?;
            }
        } else {
            // What is committed moves; drafts open on the file follow its
            // inode and commit under the new name at close, so neither
            // name ever shows a half-written value.
            self.store.rename(&from, &to)?;
        }
        self.inodes.rename(&from, &to, replaced);
        Ok(())
    }
}
