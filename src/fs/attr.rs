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

/// How long the kernel may trust a name → inode answer and an inode's
/// size and mtime. Every change goes through the daemon, which keeps the
/// kernel's caches true: a commit at close invalidates the inode's
/// attributes before close returns (`fuse.rs`), renames and removals are
/// seen by the kernel itself, and what may still vanish or change under
/// the kernel's feet (a key being created, whose commit may fail with
/// EFBIG or ENOSPC; the length a writer sees through its own handle) is
/// reported with `Attr::cacheable` false and a zero lifetime.
pub const TTL: Duration = Duration::from_secs(60);

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
    /// Whether the kernel may keep these attributes (and the name that led
    /// to them) for `TTL`: false while the key is only a pending
    /// creation or the size is a writer's uncommitted view.
    pub cacheable: bool,
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
            cacheable: true,
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
            cacheable: true,
        }
    }

    /// The lifetime to give the kernel for these attributes and the name.
    pub fn ttl(&self) -> Duration {
        if self.cacheable { TTL } else { Duration::ZERO }
    }

    /// 512-byte blocks, as `stat` counts them.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(512)
    }
}
