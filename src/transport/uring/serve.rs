//! Requests that arrive through the ring: decode a request's arguments,
//! call the request layer (`request.rs`), encode its answer in the
//! kernel's structures.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::abi::{self, op};
use crate::fs::{Caller, DirEntry, SetAttr};
use crate::transport::request::{
    Answer, AttrOut, EntryOut, KernelAttr, OpenOut, Refused, Requests, XattrOut,
};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// A request as the ring hands it over.
pub struct Request<'a> {
    pub header: &'a abi::InHeader,
    /// The opcode's fixed-size argument.
    pub op_in: &'a [u8],
    /// The rest of its arguments (names, written bytes): `buf[..len]`.
    pub len: usize,
}

/// Serves `req`, whose variable arguments are at the start of `buf`, and
/// writes the reply's arguments there: an errno, or how many bytes of
/// `buf` the reply takes.
pub fn serve(r: &Requests, req: &Request, buf: &mut [u8]) -> Answer<usize> {
    let h = req.header;
    let ino = h.nodeid;
    let payload = &buf[..req.len.min(buf.len())];
    let caller = Caller {
        tid: h.pid,
        uid: h.uid,
        gid: h.gid,
    };
    match h.opcode {
        op::LOOKUP => {
            let e = r.lookup(ino, name(payload)?, h.pid)?;
            put(buf, &entry(&e))
        }
        op::GETATTR => {
            let a: abi::GetattrIn = arg(req.op_in)?;
            let fh = (a.getattr_flags & abi::GETATTR_FH != 0).then_some(a.fh);
            put(buf, &attr(&r.getattr(ino, fh, h.pid)?))
        }
        op::SETATTR => {
            let a: abi::SetattrIn = arg(req.op_in)?;
            put(buf, &attr(&r.setattr(ino, set_attr(&a), h.pid)?))
        }
        op::READLINK => put_bytes(buf, &r.readlink(ino)?),
        op::SYMLINK => {
            let (link, target) = two_names(payload)?;
            put(buf, &entry(&r.symlink(ino, link, target, &caller)?))
        }
        op::MKNOD => {
            let a: abi::MknodIn = arg(req.op_in)?;
            let e = r.mknod(ino, name(payload)?, a.mode, a.umask, a.rdev, &caller)?;
            put(buf, &entry(&e))
        }
        op::MKDIR => {
            let a: abi::MkdirIn = arg(req.op_in)?;
            let e = r.mkdir(ino, name(payload)?, a.mode, a.umask, &caller)?;
            put(buf, &entry(&e))
        }
        op::UNLINK => r.unlink(ino, name(payload)?).map(|()| 0),
        op::RMDIR => r.rmdir(ino, name(payload)?).map(|()| 0),
        op::RENAME | op::RENAME2 => {
            let (newdir, flags) = match h.opcode {
                op::RENAME => (arg::<abi::RenameIn>(req.op_in)?.newdir, 0),
                _ => {
                    let a: abi::Rename2In = arg(req.op_in)?;
                    (a.newdir, a.flags)
                }
            };
            let (from, to) = two_names(payload)?;
            r.rename(ino, from, newdir, to, flags).map(|()| 0)
        }
        op::LINK => {
            let a: abi::LinkIn = arg(req.op_in)?;
            put(buf, &entry(&r.link(a.oldnodeid, ino, name(payload)?)?))
        }
        op::OPEN => {
            let a: abi::OpenIn = arg(req.op_in)?;
            put(buf, &opened(&r.open(ino, a.flags as i32, h.pid)?))
        }
        op::READ => {
            let a: abi::IoIn = arg(req.op_in)?;
            let size = (a.size as usize).min(buf.len());
            r.read(a.fh, a.offset, size, |data| {
                let n = data.len().min(size);
                buf[..n].copy_from_slice(&data[..n]);
                n
            })
        }
        op::WRITE => {
            let a: abi::IoIn = arg(req.op_in)?;
            let data = payload.get(..a.size as usize).ok_or(libc::EINVAL)?;
            let from_cache = a.io_flags & abi::WRITE_CACHE != 0;
            let owner = (a.io_flags & abi::WRITE_LOCKOWNER != 0).then_some(a.lock_owner);
            let size = r.write(a.fh, a.offset, data, from_cache, owner)?;
            put(buf, &abi::WriteOut { size, padding: 0 })
        }
        op::STATFS => {
            let s = r.statfs()?;
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
            let a: abi::ReleaseIn = arg(req.op_in)?;
            let flock_owner =
                (a.release_flags & abi::RELEASE_FLOCK_UNLOCK != 0).then_some(a.lock_owner);
            r.release(ino, a.fh, flock_owner).map(|()| 0)
        }
        op::FSYNC => {
            let a: abi::FsyncIn = arg(req.op_in)?;
            r.fsync(a.fh).map(|()| 0)
        }
        op::FLUSH => {
            let a: abi::FlushIn = arg(req.op_in)?;
            r.flush(ino, a.fh, a.lock_owner, h.pid).map(|()| 0)
        }
        op::OPENDIR => put(buf, &opened(&r.opendir(ino)?)),
        op::READDIR => {
            let a: abi::IoIn = arg(req.op_in)?;
            let (entries, start) = r.readdir(ino, a.fh, a.offset)?;
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
            let a: abi::ReleaseIn = arg(req.op_in)?;
            r.releasedir(a.fh);
            Ok(0)
        }
        op::FSYNCDIR => r.fsyncdir().map(|()| 0),
        op::ACCESS => {
            let a: abi::AccessIn = arg(req.op_in)?;
            r.access(ino, a.mask as i32).map(|()| 0)
        }
        op::CREATE => {
            let a: abi::CreateIn = arg(req.op_in)?;
            let (e, o) = r.create(
                ino,
                name(payload)?,
                a.mode,
                a.umask,
                a.flags as i32,
                &caller,
            )?;
            let out = abi::CreateOut {
                entry: entry(&e),
                open: opened(&o),
            };
            put(buf, &out)
        }
        op::SETXATTR => {
            let a: abi::SetxattrIn = arg(req.op_in)?;
            let key = name(payload)?;
            let value = payload
                .get(key.len() + 1..key.len() + 1 + a.size as usize)
                .ok_or(libc::EINVAL)?;
            r.setxattr(ino, key, value, a.flags as i32).map(|()| 0)
        }
        op::GETXATTR => {
            let a: abi::GetxattrIn = arg(req.op_in)?;
            xattr(buf, r.getxattr(ino, name(payload)?, a.size)?)
        }
        op::LISTXATTR => {
            let a: abi::GetxattrIn = arg(req.op_in)?;
            xattr(buf, r.listxattr(ino, a.size)?)
        }
        op::REMOVEXATTR => r.removexattr(ino, name(payload)?).map(|()| 0),
        op::IOCTL => Err(r.refuse(Refused::Ioctl)),
        op::FALLOCATE => {
            let a: abi::FallocateIn = arg(req.op_in)?;
            r.fallocate(a.fh, a.offset, a.length, a.mode as i32, h.pid)
                .map(|()| 0)
        }
        op::GETLK => {
            let a: abi::LkIn = arg(req.op_in)?;
            let l = r.getlk(ino, a.owner, a.lk.start, a.lk.end, a.lk.typ as i32)?;
            let lk = abi::FileLock {
                start: l.start,
                end: l.end,
                typ: l.typ as u32,
                pid: l.pid,
            };
            put(buf, &abi::LkOut { lk })
        }
        op::SETLK | op::SETLKW => {
            let a: abi::LkIn = arg(req.op_in)?;
            let sleep = h.opcode == op::SETLKW;
            let (lk, owner) = (a.lk, a.owner);
            r.setlk(
                ino,
                owner,
                lk.start,
                lk.end,
                lk.typ as i32,
                lk.pid,
                sleep,
                h.pid,
            )
            .map(|()| 0)
        }
        op::BMAP => Err(r.refuse(Refused::Bmap)),
        op::POLL => Err(r.refuse(Refused::Poll)),
        op::READDIRPLUS => Err(r.refuse(Refused::Readdirplus)),
        op::LSEEK => {
            let a: abi::LseekIn = arg(req.op_in)?;
            let offset = r.lseek(a.fh, a.offset, a.whence as i32)?;
            put(buf, &abi::LseekOut { offset })
        }
        op::COPY_FILE_RANGE => {
            let a: abi::CopyFileRangeIn = arg(req.op_in)?;
            let size =
                r.copy_file_range((a.fh_in, a.off_in), (a.fh_out, a.off_out), a.len, h.pid)?;
            put(buf, &abi::WriteOut { size, padding: 0 })
        }
        _ => Err(r.refuse(Refused::Unknown)),
    }
}

fn xattr(buf: &mut [u8], out: XattrOut) -> Answer<usize> {
    match out {
        XattrOut::Size(size) => put(buf, &abi::GetxattrOut { size, padding: 0 }),
        XattrOut::Data(bytes) => put_bytes(buf, &bytes),
    }
}

fn entry(e: &EntryOut) -> abi::EntryOut {
    abi::EntryOut {
        nodeid: e.attr.ino,
        generation: 0,
        entry_valid: e.entry_ttl.as_secs(),
        attr_valid: e.attr_ttl.as_secs(),
        entry_valid_nsec: e.entry_ttl.subsec_nanos(),
        attr_valid_nsec: e.attr_ttl.subsec_nanos(),
        attr: fuse_attr(&e.attr),
    }
}

fn attr(a: &AttrOut) -> abi::AttrOut {
    abi::AttrOut {
        attr_valid: a.ttl.as_secs(),
        attr_valid_nsec: a.ttl.subsec_nanos(),
        dummy: 0,
        attr: fuse_attr(&a.attr),
    }
}

/// A request's fixed-size argument; EINVAL if the kernel sent too few
/// bytes.
fn arg<T: FromBytes>(op_in: &[u8]) -> Result<T, i32> {
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

fn put<T: IntoBytes + Immutable>(buf: &mut [u8], v: &T) -> Answer<usize> {
    put_bytes(buf, abi::bytes(v))
}

fn put_bytes(buf: &mut [u8], b: &[u8]) -> Answer<usize> {
    buf.get_mut(..b.len()).ok_or(libc::EIO)?.copy_from_slice(b);
    Ok(b.len())
}

/// Writes one directory entry at the start of `buf`; None if it does not
/// fit.
fn put_dirent(buf: &mut [u8], e: &DirEntry) -> Option<usize> {
    let d = abi::Dirent {
        ino: e.ino,
        off: e.offset,
        namelen: e.name.len() as u32,
        typ: u32::from(e.kind.dirent_type()),
    };
    let fixed = size_of::<abi::Dirent>();
    let size = (fixed + e.name.len()).next_multiple_of(8);
    let out = buf.get_mut(..size)?;
    out[..fixed].copy_from_slice(abi::bytes(&d));
    out[fixed..fixed + e.name.len()].copy_from_slice(&e.name);
    out[fixed + e.name.len()..].fill(0);
    Some(size)
}

fn opened(o: &OpenOut) -> abi::OpenOut {
    abi::OpenOut {
        fh: o.fh,
        open_flags: o.flags,
        backing_id: 0,
    }
}

fn fuse_attr(a: &KernelAttr) -> abi::FuseAttr {
    let (atime, atimensec) = since_epoch(a.atime);
    let (mtime, mtimensec) = since_epoch(a.mtime);
    let (ctime, ctimensec) = since_epoch(a.ctime);
    abi::FuseAttr {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks,
        atime,
        mtime,
        ctime,
        atimensec,
        mtimensec,
        ctimensec,
        mode: a.mode,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
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
    let time = |now: u32, set: u32, secs: u64, nanos: u32| {
        if has(now) {
            Some(SystemTime::now())
        } else if has(set) {
            let secs = secs as i64;
            let whole = Duration::from_secs(secs.unsigned_abs());
            let at = match secs >= 0 {
                true => UNIX_EPOCH.checked_add(whole),
                false => UNIX_EPOCH.checked_sub(whole),
            };
            let nanos = Duration::from_nanos(nanos.into());
            Some(at.and_then(|t| t.checked_add(nanos)).unwrap_or(UNIX_EPOCH))
        } else {
            None
        }
    };
    SetAttr {
        mode: has(abi::FATTR_MODE).then_some(a.mode),
        uid: has(abi::FATTR_UID).then_some(a.uid),
        gid: has(abi::FATTR_GID).then_some(a.gid),
        size: has(abi::FATTR_SIZE).then_some(a.size),
        atime: time(abi::FATTR_ATIME_NOW, abi::FATTR_ATIME, a.atime, a.atimensec),
        mtime: time(abi::FATTR_MTIME_NOW, abi::FATTR_MTIME, a.mtime, a.mtimensec),
        fh: has(abi::FATTR_FH).then_some(a.fh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::FileType;

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
        let e = DirEntry {
            ino: 7,
            offset: 1,
            kind: FileType::Regular,
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
