//! The filesystem by path (`a/b/c`), for the commands that work on a store
//! without mounting it (`caskfs put|get|rm|ls`) and for carrying stores
//! over: what a mount would do, through the same operations.

use std::io::{self, Read};

use super::errno::{Error, Result};
use super::fs::{Caller, CaskFs};
use crate::schema::{OWNER_UNSET, keys};
use crate::vocab::{FileType, MAX_PATH_LEN};

/// Who the commands are: no process (so no draft is shared with one), and
/// no owner (what they make shows as whoever mounts the store).
pub const TOOL: Caller = Caller {
    tid: 0,
    uid: OWNER_UNSET,
    gid: OWNER_UNSET,
};

/// Bytes a command reads and writes at once.
const PIECE: usize = 1 << 20;

/// The names of `path`, empty for the root.
fn names(path: &[u8]) -> Result<Vec<&[u8]>> {
    if path.len() > MAX_PATH_LEN {
        return Err(Error::NameTooLong);
    }
    let path = path.strip_suffix(b"/").unwrap_or(path);
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    for n in &names {
        CaskFs::check_name(n)?;
    }
    Ok(names)
}

impl CaskFs {
    /// The inode `path` names, and what it is.
    pub fn resolve(&self, path: &[u8]) -> Result<(u64, FileType)> {
        let mut at = (keys::ROOT, FileType::Directory);
        for name in names(path)? {
            if at.1 != FileType::Directory {
                return Err(Error::NotADirectory);
            }
            let a = self.lookup(at.0, name, TOOL.tid)?;
            at = (a.ino, a.kind);
        }
        Ok(at)
    }

    /// The folder `path` is in, made (with the folders above it) if
    /// `make`, and its last name.
    pub(super) fn parent<'p>(&self, path: &'p [u8], make: bool) -> Result<(u64, &'p [u8])> {
        let mut names = names(path)?;
        let last = names.pop().ok_or(Error::InvalidName)?;
        let mut dir = keys::ROOT;
        for name in names {
            dir = match self.lookup(dir, name, TOOL.tid) {
                Ok(a) if a.kind == FileType::Directory => a.ino,
                Ok(_) => return Err(Error::NotADirectory),
                Err(Error::NotFound) if make => self.mkdir(dir, name, 0o755, 0, &TOOL)?.ino,
                Err(e) => return Err(e),
            };
        }
        Ok((dir, last))
    }

    /// Hands the bytes of the file at `path` (a symlink's target) to
    /// `each`, in pieces.
    pub fn read_path(
        &self,
        path: &[u8],
        each: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<()> {
        let (ino, kind) = self.resolve(path)?;
        match kind {
            FileType::Regular => {}
            FileType::Symlink => return Ok(each(&self.readlink(ino)?)?),
            FileType::Directory => return Err(Error::IsADirectory),
            _ => return Err(Error::InvalidArgument("a special file has no bytes")),
        }
        let fh = self.open(ino, libc::O_RDONLY, TOOL.tid)?.fh;
        let mut at = 0;
        let r = loop {
            let piece = self.read(fh, at, PIECE, <[u8]>::to_vec);
            match piece {
                Ok(p) if p.is_empty() => break Ok(()),
                Ok(p) => {
                    at += p.len() as u64;
                    if let Err(e) = each(&p) {
                        break Err(e.into());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.release(fh)?;
        r
    }

    /// Stores what `data` holds as the file at `path`, making the folders
    /// above it that are missing (as `mkdir -p`). The file is replaced
    /// whole, at once, when `data` has been read to its end.
    pub fn write_path(&self, path: &[u8], data: &mut dyn Read) -> Result<()> {
        let mut w = self.writer(path)?;
        let mut buf = vec![0; PIECE];
        loop {
            match data.read(&mut buf) {
                Ok(0) => return w.finish(),
                Ok(n) => w.write(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A writer of the file at `path` (made, with the folders above it, if
    /// missing), emptied: what is written shows when it is finished.
    pub fn writer(&self, path: &[u8]) -> Result<Writer<'_>> {
        let (dir, name) = self.parent(path, true)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
        let (_, opened) = self.create(dir, name, 0o644, 0, flags, &TOOL)?;
        Ok(Writer {
            fs: self,
            fh: Some(opened.fh),
            at: 0,
        })
    }

    /// Removes the file, symlink or empty folder at `path`.
    pub fn remove_path(&self, path: &[u8]) -> Result<()> {
        let (dir, name) = self.parent(path, false)?;
        match self.lookup(dir, name, TOOL.tid)?.kind {
            FileType::Directory => self.rmdir(dir, name),
            _ => self.unlink(dir, name),
        }
    }

    /// The names in the folder at `path` and what each is, in order; with
    /// `recursive`, every path below it instead.
    pub fn list_path(&self, path: &[u8], recursive: bool) -> Result<Vec<(Vec<u8>, FileType)>> {
        let (ino, kind) = self.resolve(path)?;
        if kind != FileType::Directory {
            return Err(Error::NotADirectory);
        }
        let mut out = Vec::new();
        let mut todo = vec![(ino, Vec::new())];
        while let Some((dir, at)) = todo.pop() {
            for (name, e) in self.dirs.read().list(dir) {
                let path = match at.is_empty() {
                    true => name,
                    false => [&at[..], b"/", &name].concat(),
                };
                if recursive && e.kind == FileType::Directory {
                    todo.push((e.ino, path.clone()));
                }
                out.push((path, e.kind));
            }
            if !recursive {
                break;
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// A file being written from its start (`CaskFs::writer`).
pub struct Writer<'a> {
    fs: &'a CaskFs,
    fh: Option<u64>,
    at: u64,
}

impl Writer<'_> {
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let fh = self.fh.ok_or(Error::BadHandle)?;
        self.fs.write(fh, self.at, data, false, None)?;
        self.at += data.len() as u64;
        Ok(())
    }

    /// Commits what was written.
    pub fn finish(mut self) -> Result<()> {
        match self.fh.take() {
            Some(fh) => self.fs.release(fh),
            None => Ok(()),
        }
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if let Some(fh) = self.fh.take() {
            let _ = self.fs.release(fh);
        }
    }
}
