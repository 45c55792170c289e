//! Files brought in from elsewhere by path, with their attributes: a
//! store carried over from the old layout, an etcd prefix in that layout,
//! or another filesystem copied (`caskfs backup` between backends).

use std::collections::HashMap;
use std::io::{self, Read};

use super::errno::{Error, Result};
use super::fs::CaskFs;
use super::paths::TOOL;
use crate::vocab::{FileType, to_ns};

/// What a file was where it comes from.
#[derive(Clone, Copy, Debug)]
pub struct Imported {
    pub kind: FileType,
    /// The 12 permission bits.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub ctime: i64,
    pub rdev: u32,
}

impl CaskFs {
    /// Makes `path` what it was elsewhere (`bytes`: a file's, or a
    /// symlink's target), making the folders above it as needed, and
    /// returns its inode. A folder keeps what is in it; its times are set
    /// here, so a caller that then brings in what is below sets them again
    /// (`restore`) once it has.
    pub fn import(&self, path: &[u8], what: &Imported, bytes: &mut dyn Read) -> Result<u64> {
        let (dir, name) = self.parent(path, true)?;
        let ino = match what.kind {
            FileType::Directory => match self.lookup(dir, name, TOOL.tid) {
                Ok(a) if a.kind == FileType::Directory => a.ino,
                Ok(_) => return Err(Error::Exists),
                Err(Error::NotFound) => self.mkdir(dir, name, 0o755, 0, &TOOL)?.ino,
                Err(e) => return Err(e),
            },
            FileType::Symlink => {
                let mut target = Vec::new();
                bytes.read_to_end(&mut target)?;
                self.symlink(dir, name, &target, &TOOL)?.ino
            }
            FileType::Regular => {
                self.write_path(path, bytes)?;
                self.lookup(dir, name, TOOL.tid)?.ino
            }
            kind => {
                let mode = kind.mode_bits() | 0o600;
                self.mknod(dir, name, mode, 0, what.rdev, &TOOL)?.ino
            }
        };
        self.restore(ino, what.perm, what.uid, what.gid, what.mtime, what.ctime)?;
        Ok(ino)
    }
}

/// Copies every file, folder, symlink and special file of `from` into
/// `to` (hard links as hard links), with their attributes and extended
/// attributes; returns how
/// many names it copied.
pub fn copy_tree(from: &CaskFs, to: &CaskFs) -> Result<u64> {
    let mut folders = Vec::new();
    let mut linked: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut copied = 0;
    for (path, _) in from.list_path(b"", true)? {
        let (ino, _) = from.resolve(&path)?;
        let a = from.getattr(ino, None, TOOL.tid)?;
        if a.kind != FileType::Directory && a.nlink > 1 {
            if let Some(first) = linked.get(&ino) {
                let (target, _) = to.resolve(first)?;
                let (dir, name) = to.parent(&path, true)?;
                to.link(target, dir, name)?;
                copied += 1;
                continue;
            }
            linked.insert(ino, path.clone());
        }
        let what = Imported {
            kind: a.kind,
            perm: u32::from(a.perm),
            uid: a.owner.uid,
            gid: a.owner.gid,
            mtime: to_ns(a.mtime),
            ctime: to_ns(a.ctime),
            rdev: a.rdev,
        };
        let mut bytes: Box<dyn Read> = match a.kind {
            FileType::Regular => Box::new(Reader::open(from, ino)?),
            FileType::Symlink => Box::new(io::Cursor::new(from.readlink(ino)?)),
            _ => Box::new(io::empty()),
        };
        let new = to.import(&path, &what, &mut bytes)?;
        let xattrs = from.inode_of_node(ino)?.xattrs;
        for (name, value) in &xattrs {
            to.setxattr(new, name, value, 0)?;
        }
        if a.kind == FileType::Directory {
            folders.push((new, what));
        } else if !xattrs.is_empty() {
            // Setting them made a new ctime.
            to.restore(new, what.perm, what.uid, what.gid, what.mtime, what.ctime)?;
        }
        copied += 1;
    }
    for (ino, w) in folders {
        to.restore(ino, w.perm, w.uid, w.gid, w.mtime, w.ctime)?;
    }
    Ok(copied)
}

/// A file of a filesystem read front to back, as `Read`.
struct Reader<'a> {
    fs: &'a CaskFs,
    fh: u64,
    at: u64,
}

impl<'a> Reader<'a> {
    fn open(fs: &'a CaskFs, ino: u64) -> Result<Reader<'a>> {
        let fh = fs.open(ino, libc::O_RDONLY, TOOL.tid)?.fh;
        Ok(Reader { fs, fh, at: 0 })
    }
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .fs
            .read(self.fh, self.at, buf.len(), |b| {
                buf[..b.len()].copy_from_slice(b);
                b.len()
            })
            .map_err(|e| io::Error::from_raw_os_error(super::errno::errno(&e)))?;
        self.at += n as u64;
        Ok(n)
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        let _ = self.fs.release(self.fh);
    }
}
