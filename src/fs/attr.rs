//! File attributes as caskfs reports them, from what each record stores
//! (mode, owner, mtime, ctime). No FUSE types here; the adapter converts.

use std::time::{Duration, SystemTime};

use crate::engine::{self, EntryKind, Metadata, OWNER_UNSET, PERM_BITS};

/// The root directory's inode number (FUSE's `FUSE_ROOT_ID`).
pub const ROOT_INO: u64 = 1;
/// The permissions of the root, and of a folder that has no record of its
/// own (implied by the keys below it).
pub const DIR_PERM: u16 = 0o755;
/// Reported by `stat` as the preferred I/O size.
pub const BLOCK_SIZE: u32 = 128 * 1024;

/// How long the kernel may trust a name → inode answer and an inode's
/// attributes. Every change goes through the daemon, which keeps the
/// kernel's caches true: a commit at close invalidates the inode's
/// attributes before close returns (`fuse.rs`), renames and removals are
/// seen by the kernel itself, a key being created whose first commit
/// fails (EFBIG, ENOSPC) is taken back from the kernel's names, and what
/// differs between processes (the length a writer sees through its own
/// handle) is reported with `Attr::cacheable` false and a zero lifetime.
pub const TTL: Duration = Duration::from_secs(60);

/// The same on a namespace that other hosts change too (the etcd
/// backend): their changes reach the daemon by a watch, which has the
/// kernel forget what they change at once; should the watch lag, a
/// change is still seen within this.
pub const SHARED_TTL: Duration = Duration::from_secs(1);

/// Who owns what records no owner (stores written before owners were
/// kept, and folders with no record): the mounting user unless mount
/// options say other.
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
    Symlink,
}

impl From<EntryKind> for Kind {
    fn from(k: EntryKind) -> Kind {
        match k {
            EntryKind::File => Kind::File,
            EntryKind::Folder => Kind::Directory,
            EntryKind::Symlink => Kind::Symlink,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// The 12 permission bits.
    pub perm: u16,
    pub nlink: u32,
    pub owner: Owner,
    /// Whether the kernel may keep these attributes (and the name that led
    /// to them) for `TTL`: false while the size is a writer's uncommitted
    /// view.
    pub cacheable: bool,
}

impl Attr {
    /// A key's attributes from its record; `owner` stands in for an owner
    /// the record does not name.
    pub fn of(ino: u64, m: &Metadata, owner: Owner) -> Attr {
        let pick = |id: u32, default: u32| if id == OWNER_UNSET { default } else { id };
        let kind = Kind::from(EntryKind::of_mode(m.mode));
        Attr {
            ino,
            kind,
            size: m.len,
            mtime: m.mtime,
            ctime: m.ctime,
            perm: (m.mode & PERM_BITS) as u16,
            nlink: if kind == Kind::Directory { 2 } else { 1 },
            owner: Owner {
                uid: pick(m.uid, owner.uid),
                gid: pick(m.gid, owner.gid),
            },
            cacheable: true,
        }
    }

    /// A folder with no record of its own (the root, or one implied by
    /// the keys below it).
    pub fn implied_folder(ino: u64, mtime: SystemTime, owner: Owner) -> Attr {
        let m = Metadata {
            mode: engine::S_IFDIR | u32::from(DIR_PERM),
            ..Metadata::file(0, mtime)
        };
        Attr::of(ino, &m, owner)
    }

    /// The lifetime to give the kernel for these attributes and the name,
    /// `most` if they may be cached at all.
    pub fn ttl(&self, most: Duration) -> Duration {
        if self.cacheable { most } else { Duration::ZERO }
    }

    /// 512-byte blocks, as `stat` counts them.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(512)
    }
}
