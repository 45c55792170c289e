//! The adapter between requests that arrive through the ring and `fs.rs`:
//! decode a request's arguments, call the operation, encode the reply.
//! It answers as `fuse.rs` answers through /dev/fuse.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::abi::{self, Plain, op};
use crate::fs::attr::{Attr, BLOCK_SIZE, Kind};
use crate::fs::counters::{Counters, Req};
use crate::fs::errno::{Error, log_and_errno};
use crate::fs::fs::{Caller, CaskFs, SetAttr};
use crate::fs::fuse::{dir_open_flags, open_flags};

/// What one request is answered with: an errno, or this many reply bytes
/// at the start of the payload buffer.
pub type Answer = Result<usize, i32>;

pub struct Server {
    pub fs: Arc<CaskFs>,
    pub counters: Arc<Counters>,
    /// How long the kernel may keep names and attributes.
    pub ttl: Duration,
}

/// A request as the ring hands it over.
pub struct Request<'a> {
    pub header: &'a abi::InHeader,
    /// The opcode's fixed-size argument.
    pub op_in: &'a [u8],
    /// The rest of its arguments (names, written bytes): `buf[..len]`.
    pub len: usize,
}

impl Server {
    /// Serves `req`, whose variable arguments are at the start of `buf`,
    /// and writes the reply's arguments there.
    pub fn serve(&self, req: &Request, buf: &mut [u8]) -> Answer {
        let h = req.header;
        let ino = h.nodeid;
        let payload = &buf[..req.len.min(buf.len())];
        let caller = Caller {
            tid: h.pid,
            uid: h.uid,
            gid: h.gid,
        };
        let fs = &*self.fs;
        match h.opcode {
            op::LOOKUP => {
                self.count(Req::Lookup);
                let name = name(payload)?;
                let entry = match fs.lookup(ino, name, h.pid) {
                    // As fuse.rs: the kernel may remember a missing name.
                    Err(Error::NotFound) => abi::EntryOut {
                        entry_valid: self.ttl.as_secs(),
                        entry_valid_nsec: self.ttl.subsec_nanos(),
                        ..Default::default()
                    },
                    r => self.entry(r.map_err(|e| err("lookup", &e))?),
                };
                put(buf, &entry)
            }
            op::GETATTR => {
                self.count(Req::Getattr);
                let a: abi::GetattrIn = arg(req.op_in)?;
                let fh = (a.getattr_flags & abi::GETATTR_FH != 0).then_some(a.fh);
                let attr = fs.getattr(ino, fh, h.pid).map_err(|e| err("getattr", &e))?;
                put(buf, &self.attr(&attr))
            }
            op::SETATTR => {
                self.count(Req::Setattr);
                let a: abi::SetattrIn = arg(req.op_in)?;
                let attr = fs
                    .setattr(ino, set_attr(&a), h.pid)
                    .map_err(|e| err("setattr", &e))?;
                put(buf, &self.attr(&attr))
            }
            op::READLINK => {
                self.count(Req::Readlink);
                let target = fs.readlink(ino).map_err(|e| err("readlink", &e))?;
                put_bytes(buf, &target)
            }
            op::SYMLINK => {
                self.count(Req::Symlink);
                let (link, target) = two_names(payload)?;
                let r = fs.symlink(ino, link, target, &caller);
                put(buf, &self.entry(r.map_err(|e| err("symlink", &e))?))
            }
            op::MKNOD => {
                self.count(Req::Mknod);
                let a: abi::MknodIn = arg(req.op_in)?;
                let r = fs.mknod(ino, name(payload)?, a.mode, a.umask, &caller);
                put(buf, &self.entry(r.map_err(|e| err("mknod", &e))?))
            }
            op::MKDIR => {
                self.count(Req::Mkdir);
                let a: abi::MkdirIn = arg(req.op_in)?;
                let r = fs.mkdir(ino, name(payload)?, a.mode, a.umask, &caller);
                put(buf, &self.entry(r.map_err(|e| err("mkdir", &e))?))
            }
            op::UNLINK => {
                self.count(Req::Unlink);
                done("unlink", fs.unlink(ino, name(payload)?))
            }
            op::RMDIR => {
                self.count(Req::Rmdir);
                done("rmdir", fs.rmdir(ino, name(payload)?))
            }
            op::RENAME | op::RENAME2 => {
                self.count(Req::Rename);
                let (newdir, flags) = match h.opcode {
                    op::RENAME => (arg::<abi::RenameIn>(req.op_in)?.newdir, 0),
                    _ => {
                        let a: abi::Rename2In = arg(req.op_in)?;
                        (a.newdir, a.flags)
                    }
                };
                let (from, to) = two_names(payload)?;
                done("rename", fs.rename(ino, from, newdir, to, flags))
            }
            op::LINK => {
                self.count(Req::Link);
                Err(err("link", &fs.refuse("hard links")))
            }
            op::OPEN => {
                self.count(Req::Open);
                let a: abi::OpenIn = arg(req.op_in)?;
                let o = fs
                    .open(ino, a.flags as i32, h.pid)
                    .map_err(|e| err("open", &e))?;
                put(buf, &opened(o.fh, open_flags(&o).bits()))
            }
            op::READ => {
                self.count(Req::Read);
                let a: abi::IoIn = arg(req.op_in)?;
                let size = (a.size as usize).min(buf.len());
                let n = fs
                    .read(a.fh, a.offset, size, |data| {
                        let n = data.len().min(size);
                        buf[..n].copy_from_slice(&data[..n]);
                        n
                    })
                    .map_err(|e| err("read", &e))?;
                self.counters.read(n);
                Ok(n)
            }
            op::WRITE => {
                self.count(Req::Write);
                let a: abi::IoIn = arg(req.op_in)?;
                let data = payload.get(..a.size as usize).ok_or(libc::EINVAL)?;
                let from_cache = a.io_flags & abi::WRITE_CACHE != 0;
                let owner = (a.io_flags & abi::WRITE_LOCKOWNER != 0).then_some(a.lock_owner);
                let n = fs
                    .write(a.fh, a.offset, data, from_cache, owner)
                    .map_err(|e| err("write", &e))?;
                self.counters.written(n);
                let out = abi::WriteOut {
                    size: n as u32,
                    padding: 0,
                };
                put(buf, &out)
            }
            op::STATFS => {
                self.count(Req::Statfs);
                let s = fs.statfs().map_err(|e| err("statfs", &e))?;
                let out = abi::StatfsOut {
                    blocks: s.blocks,
                    bfree: s.bfree,
                    bavail: s.bavail,
                    files: s.files,
                    ffree: s.ffree,
                    bsize: s.bsize,
                    namelen: s.namelen,
                    frsize: s.frsize,
                    ..Default::default()
                };
                put(buf, &out)
            }
            op::RELEASE => {
                self.count(Req::Release);
                let a: abi::ReleaseIn = arg(req.op_in)?;
                done("release", fs.release(a.fh))
            }
            op::FSYNC => {
                self.count(Req::Fsync);
                let a: abi::FsyncIn = arg(req.op_in)?;
                done("fsync", fs.fsync(a.fh))
            }
            op::FLUSH => {
                self.count(Req::Flush);
                let a: abi::FlushIn = arg(req.op_in)?;
                done("flush", fs.flush(a.fh, a.lock_owner, h.pid))
            }
            op::OPENDIR => {
                self.count(Req::Opendir);
                let fh = fs.opendir(ino).map_err(|e| err("opendir", &e))?;
                put(buf, &opened(fh, dir_open_flags(fs).bits()))
            }
            op::READDIR => {
                self.count(Req::Readdir);
                let a: abi::IoIn = arg(req.op_in)?;
                let (entries, start) = fs
                    .readdir(ino, a.fh, a.offset)
                    .map_err(|e| err("readdir", &e))?;
                let room = (a.size as usize).min(buf.len());
                let mut used = 0;
                for e in &entries[start..] {
                    let Some(n) = put_dirent(&mut buf[used..room], e) else {
                        break;
                    };
                    used += n;
                }
                Ok(used)
            }
            op::RELEASEDIR => {
                self.count(Req::Releasedir);
                let a: abi::ReleaseIn = arg(req.op_in)?;
                fs.releasedir(a.fh);
                Ok(0)
            }
            op::FSYNCDIR => {
                self.count(Req::Fsyncdir);
                done("fsyncdir", fs.sync())
            }
            op::ACCESS => {
                self.count(Req::Access);
                let a: abi::AccessIn = arg(req.op_in)?;
                done("access", fs.access(ino, a.mask as i32))
            }
            op::CREATE => {
                self.count(Req::Create);
                let a: abi::CreateIn = arg(req.op_in)?;
                let r = fs.create(
                    ino,
                    name(payload)?,
                    a.mode,
                    a.umask,
                    a.flags as i32,
                    &caller,
                );
                let (attr, o) = r.map_err(|e| err("create", &e))?;
                let out = abi::CreateOut {
                    entry: self.entry(attr),
                    open: opened(o.fh, open_flags(&o).bits()),
                };
                put(buf, &out)
            }
            // As fuse.rs answers them, and why: see there.
            op::SETXATTR => self.refuse(Req::Setxattr, libc::ENOSYS),
            op::GETXATTR => self.refuse(Req::Getxattr, libc::ENOSYS),
            op::LISTXATTR => self.refuse(Req::Listxattr, libc::ENOSYS),
            op::REMOVEXATTR => self.refuse(Req::Removexattr, libc::ENOSYS),
            op::IOCTL => self.refuse(Req::Ioctl, libc::ENOTTY),
            op::FALLOCATE => self.refuse(Req::Other, libc::EOPNOTSUPP),
            op::GETLK => self.refuse(Req::Getlk, libc::ENOSYS),
            op::SETLK | op::SETLKW => self.refuse(Req::Setlk, libc::ENOSYS),
            op::BMAP => self.refuse(Req::Bmap, libc::ENOSYS),
            op::POLL => self.refuse(Req::Poll, libc::ENOSYS),
            op::READDIRPLUS => self.refuse(Req::Readdirplus, libc::ENOSYS),
            _ => self.refuse(Req::Other, libc::ENOSYS),
        }
    }

    fn count(&self, r: Req) {
        self.counters.request(r);
    }

    fn refuse(&self, r: Req, errno: i32) -> Answer {
        self.count(r);
        Err(errno)
    }

    fn entry(&self, a: Attr) -> abi::EntryOut {
        let ttl = a.ttl(self.ttl);
        abi::EntryOut {
            nodeid: a.ino,
            generation: 0,
            entry_valid: ttl.as_secs(),
            attr_valid: ttl.as_secs(),
            entry_valid_nsec: ttl.subsec_nanos(),
            attr_valid_nsec: ttl.subsec_nanos(),
            attr: fuse_attr(&a),
        }
    }

    fn attr(&self, a: &Attr) -> abi::AttrOut {
        let ttl = a.ttl(self.ttl);
        abi::AttrOut {
            attr_valid: ttl.as_secs(),
            attr_valid_nsec: ttl.subsec_nanos(),
            dummy: 0,
            attr: fuse_attr(a),
        }
    }
}

fn err(op: &str, e: &Error) -> i32 {
    log_and_errno(op, e)
}

fn done(op: &str, r: Result<(), Error>) -> Answer {
    r.map(|()| 0).map_err(|e| err(op, &e))
}

/// A request's fixed-size argument; EINVAL if the kernel sent too few
/// bytes.
fn arg<T: Plain>(op_in: &[u8]) -> Result<T, i32> {
    abi::read(op_in).ok_or(libc::EINVAL)
}

/// The NUL-terminated name at the start of `payload`.
fn name(payload: &[u8]) -> Result<&[u8], i32> {
    let end = payload.iter().position(|&b| b == 0).ok_or(libc::EINVAL)?;
    Ok(&payload[..end])
}

/// Two NUL-terminated names, one after the other.
fn two_names(payload: &[u8]) -> Result<(&[u8], &[u8]), i32> {
    let first = name(payload)?;
    Ok((first, name(&payload[first.len() + 1..])?))
}

fn put<T: Plain>(buf: &mut [u8], v: &T) -> Answer {
    put_bytes(buf, abi::bytes(v))
}

fn put_bytes(buf: &mut [u8], b: &[u8]) -> Answer {
    buf.get_mut(..b.len()).ok_or(libc::EIO)?.copy_from_slice(b);
    Ok(b.len())
}

/// Writes one directory entry at the start of `buf`; None if it does not
/// fit.
fn put_dirent(buf: &mut [u8], e: &crate::fs::DirEntry) -> Option<usize> {
    let d = abi::Dirent {
        ino: e.ino,
        off: e.offset,
        namelen: e.name.len() as u32,
        typ: mode_bits(e.kind) >> 12,
    };
    let fixed = size_of::<abi::Dirent>();
    let size = (fixed + e.name.len()).next_multiple_of(8);
    let out = buf.get_mut(..size)?;
    out[..fixed].copy_from_slice(abi::bytes(&d));
    out[fixed..fixed + e.name.len()].copy_from_slice(&e.name);
    out[fixed + e.name.len()..].fill(0);
    Some(size)
}

fn opened(fh: u64, open_flags: u32) -> abi::OpenOut {
    abi::OpenOut {
        fh,
        open_flags,
        backing_id: 0,
    }
}

fn mode_bits(k: Kind) -> u32 {
    match k {
        Kind::Directory => libc::S_IFDIR,
        Kind::File => libc::S_IFREG,
        Kind::Symlink => libc::S_IFLNK,
    }
}

fn fuse_attr(a: &Attr) -> abi::FuseAttr {
    let (mtime, mtimensec) = since_epoch(a.mtime);
    let (ctime, ctimensec) = since_epoch(a.ctime);
    abi::FuseAttr {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks(),
        atime: mtime,
        mtime,
        ctime,
        atimensec: mtimensec,
        mtimensec,
        ctimensec,
        mode: mode_bits(a.kind) | u32::from(a.perm),
        nlink: a.nlink,
        uid: a.owner.uid,
        gid: a.owner.gid,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

/// Seconds (two's complement before 1970) and nanoseconds, as the kernel
/// takes times.
fn since_epoch(t: SystemTime) -> (u64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs(), d.subsec_nanos()),
        Err(e) => {
            let before = e.duration();
            let (mut secs, mut nanos) = (-(before.as_secs() as i64), before.subsec_nanos());
            if nanos > 0 {
                secs -= 1;
                nanos = 1_000_000_000 - nanos;
            }
            (secs as u64, nanos)
        }
    }
}

fn set_attr(a: &abi::SetattrIn) -> SetAttr {
    let has = |bit: u32| a.valid & bit != 0;
    let mtime = if has(abi::FATTR_MTIME_NOW) {
        Some(SystemTime::now())
    } else if has(abi::FATTR_MTIME) {
        let secs = a.mtime as i64;
        let whole = Duration::from_secs(secs.unsigned_abs());
        let at = match secs >= 0 {
            true => UNIX_EPOCH.checked_add(whole),
            false => UNIX_EPOCH.checked_sub(whole),
        };
        let nanos = Duration::from_nanos(a.mtimensec.into());
        Some(at.and_then(|t| t.checked_add(nanos)).unwrap_or(UNIX_EPOCH))
    } else {
        None
    };
    SetAttr {
        mode: has(abi::FATTR_MODE).then_some(a.mode),
        uid: has(abi::FATTR_UID).then_some(a.uid),
        gid: has(abi::FATTR_GID).then_some(a.gid),
        size: has(abi::FATTR_SIZE).then_some(a.size),
        mtime,
        fh: has(abi::FATTR_FH).then_some(a.fh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_1970_count_down() {
        let t = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(since_epoch(t), ((-2i64) as u64, 500_000_000));
        let back = set_attr(&abi::SetattrIn {
            valid: abi::FATTR_MTIME,
            mtime: (-2i64) as u64,
            mtimensec: 500_000_000,
            ..Default::default()
        });
        assert_eq!(back.mtime, Some(t));
    }

    #[test]
    fn dirents_are_padded_to_8_bytes_and_stop_when_full() {
        let e = crate::fs::DirEntry {
            ino: 7,
            offset: 1,
            kind: Kind::File,
            name: b"abc".to_vec(),
        };
        let mut buf = [0xffu8; 40];
        assert_eq!(put_dirent(&mut buf, &e), Some(32));
        assert_eq!(&buf[24..32], b"abc\0\0\0\0\0");
        assert_eq!(put_dirent(&mut buf[32..], &e), None);
    }

    #[test]
    fn names_end_at_nul() {
        assert_eq!(two_names(b"a\0bc\0"), Ok((&b"a"[..], &b"bc"[..])));
        assert_eq!(name(b"abc"), Err(libc::EINVAL));
    }
}
