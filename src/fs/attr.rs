//! File attributes as caskfs reports them, from an inode record. No FUSE
//! types here; the transports convert.

use std::time::{Duration, SystemTime};

use crate::schema::{Inode, OWNER_UNSET};
use crate::vocab::{FileType, from_ns};

/// Reported by `stat` as the preferred I/O size.
pub const BLOCK_SIZE: u32 = 128 * 1024;

/// How long the kernel may trust a name → inode answer and an inode's
/// attributes. Every change goes through the daemon, which keeps the
/// kernel's caches true: a commit at close invalidates the inode's
/// attributes before close returns, renames and removals are seen by the
/// kernel itself, a file being created whose first commit fails (EFBIG,
/// ENOSPC) is taken back from the kernel's names, and what differs
/// between processes (the length a writer sees through its own handle) is
/// reported with `Attr::cacheable` false and a zero lifetime.
pub const TTL: Duration = Duration::from_secs(60);

/// The same on a namespace that other hosts change too (the etcd
/// backend): their changes reach the daemon by a watch, which has the
/// kernel forget what they change at once; should the watch lag, a
/// change is still seen within this.
pub const SHARED_TTL: Duration = Duration::from_secs(1);

/// Who owns what records no owner (stores carried over from before owners
/// were kept): the mounting user unless mount options say other.
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
pub struct Attr {
    /// The node id the kernel knows the file by (see `nodeids.rs`).
    pub node: u64,
    /// The inode number `stat` shows.
    pub ino: u64,
    pub kind: FileType,
    pub size: u64,
    /// The bytes its extents hold, where holes make that less than its
    /// length (`None`: as long as it is).
    pub allocated: Option<u64>,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// The 12 permission bits.
    pub perm: u16,
    pub nlink: u32,
    pub owner: Owner,
    pub rdev: u32,
    /// Whether the kernel may keep these attributes (and the name that led
    /// to them) for `TTL`: false while the size is a writer's uncommitted
    /// view.
    pub cacheable: bool,
}

impl Attr {
    /// An inode's attributes; `owner` stands in for an owner the record
    /// does not name.
    pub fn of(node: u64, ino: u64, i: &Inode, owner: Owner) -> Attr {
        let pick = |id: u32, default: u32| if id == OWNER_UNSET { default } else { id };
        Attr {
            node,
            ino,
            kind: i.kind,
            size: i.size,
            allocated: i.allocated,
            atime: from_ns(i.atime()),
            mtime: from_ns(i.mtime),
            ctime: from_ns(i.ctime),
            perm: i.perm as u16,
            nlink: i.nlink,
            owner: Owner {
                uid: pick(i.uid, owner.uid),
                gid: pick(i.gid, owner.gid),
            },
            rdev: i.rdev,
            cacheable: true,
        }
    }

    /// The lifetime to give the kernel for these attributes and the name,
    /// `most` if they may be cached at all.
    pub fn ttl(&self, most: Duration) -> Duration {
        if self.cacheable { most } else { Duration::ZERO }
    }

    /// 512-byte blocks, as `stat` counts them: holes take none.
    pub fn blocks(&self) -> u64 {
        self.allocated
            .unwrap_or(self.size)
            .min(self.size)
            .div_ceil(512)
    }
}
