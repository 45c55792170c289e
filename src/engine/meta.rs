//! What a record of version 1 or 2 says about its key besides the value,
//! from when keys were paths and records files: the file type and
//! permission bits, the owner, and two times. A version-1 record carries
//! only an mtime; it reads as `Meta::v1(mtime)`. Version 3 stores none
//! (its puts read as `Meta::file(0)`); this is kept so that an old store
//! can be carried over into the schema with its files' metadata
//! (src/upgrade.rs) and merged meanwhile without losing it.

use std::time::{SystemTime, UNIX_EPOCH};

/// File type bits of `st_mode`, as Linux defines them. They are written to
/// disk, so they are fixed here instead of taken from the platform.
pub const S_IFMT: u32 = 0o170_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFLNK: u32 = 0o120_000;
/// Permission bits: rwx for owner, group and others, plus setuid, setgid
/// and sticky.
pub const PERM_BITS: u32 = 0o7777;

/// The mode every version-1 record has, and a version-3 one reads as.
pub const DEFAULT_MODE: u32 = S_IFREG | 0o644;
/// A uid or gid meaning "whoever mounts the store": what every file of a
/// version-1 store showed, since such a store recorded no owner.
pub const OWNER_UNSET: u32 = u32::MAX;

/// Now, in nanoseconds since the Unix epoch, as `Meta` holds times.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// `st_mode`: file type bits and all 12 permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Nanoseconds since the Unix epoch.
    pub mtime: u64,
    /// Nanoseconds since the Unix epoch.
    pub ctime: u64,
}

impl Meta {
    /// A regular file with the default mode and owner, changed at `at`.
    pub const fn file(at: u64) -> Meta {
        Meta {
            mode: DEFAULT_MODE,
            uid: OWNER_UNSET,
            gid: OWNER_UNSET,
            mtime: at,
            ctime: at,
        }
    }

    /// What a version-1 record with this mtime reads as.
    pub const fn v1(mtime: u64) -> Meta {
        Meta::file(mtime)
    }

    /// Why no record could hold this metadata, if none could (a header
    /// that does is damage): a file type other than a regular file, a
    /// directory or a symlink, or bits outside the type and permission
    /// bits.
    pub fn invalid(&self) -> Option<&'static str> {
        if self.mode & !(S_IFMT | PERM_BITS) != 0 {
            return Some("mode has bits outside the file type and permissions");
        }
        match self.mode & S_IFMT {
            S_IFREG | S_IFDIR | S_IFLNK => None,
            _ => Some("file type is not a regular file, directory or symlink"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validity() {
        let m = Meta::file(7);
        assert_eq!(
            (m.mode, m.uid, m.gid, m.mtime, m.ctime),
            (0o100_644, u32::MAX, u32::MAX, 7, 7)
        );
        assert_eq!(Meta::v1(7), m);
        assert_eq!(m.invalid(), None);
        for mode in [S_IFDIR | 0o755, S_IFLNK | 0o777, S_IFREG | 0o7777] {
            assert_eq!(Meta { mode, ..m }.invalid(), None, "{mode:o}");
        }
        for mode in [
            0o644,
            0o010_644,
            0o060_644,
            0o140_644,
            S_IFREG | 0o1_000_000,
        ] {
            assert!(Meta { mode, ..m }.invalid().is_some(), "{mode:o}");
        }
    }
}
