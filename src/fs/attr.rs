//! File attributes as caskfs reports them: a root directory and regular
//! files with a fixed mode and owner. No FUSE types here; the adapter
//! converts.

use std::time::{Duration, SystemTime};

/// The root directory's inode number (FUSE's `FUSE_ROOT_ID`).
pub const ROOT_INO: u64 = 1;
/// Every key is a regular file with this mode.
pub const FILE_PERM: u16 = 0o644;
pub const DIR_PERM: u16 = 0o755;
/// Reported by `stat` as the preferred I/O size.
pub const BLOCK_SIZE: u32 = 128 * 1024;

/// How long the kernel may trust a name → inode answer. Renames and
/// removals go through the kernel, but a key whose creation fails at close
/// (EFBIG, ENOSPC) vanishes without the kernel knowing, so names are
/// looked up again every time (a hash lookup in the daemon).
pub const ENTRY_TTL: Duration = Duration::ZERO;
/// How long the kernel may trust size and mtime. A value changes when a
/// handle commits at close, which the kernel does not see as an attribute
/// change, so attributes are always asked for again.
pub const ATTR_TTL: Duration = Duration::ZERO;

/// Who owns every file: the mounting user unless mount options say other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn current() -> Owner {
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        unsafe {
            Owner {
                uid: libc::getuid(),
                gid: libc::getgid(),
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub nlink: u32,
    pub owner: Owner,
}

impl Attr {
    pub fn file(ino: u64, size: u64, mtime: SystemTime, owner: Owner) -> Attr {
        Attr {
            ino,
            kind: Kind::File,
            size,
            mtime,
            perm: FILE_PERM,
            nlink: 1,
            owner,
        }
    }

    pub fn root(mtime: SystemTime, owner: Owner) -> Attr {
        Attr {
            ino: ROOT_INO,
            kind: Kind::Directory,
            size: 0,
            mtime,
            perm: DIR_PERM,
            nlink: 2,
            owner,
        }
    }

    /// 512-byte blocks, as `stat` counts them.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(512)
    }
}
