//! What every layer says the same way: file types and mode bits, the
//! limits of names and paths, times as stored, and the disk figures `df`
//! shows. Nothing here belongs to one layer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest name in a folder, in bytes (NAME_MAX).
pub const MAX_NAME_LEN: usize = 255;
/// The longest path, in bytes (PATH_MAX less its terminating NUL).
pub const MAX_PATH_LEN: usize = 4095;

/// File type bits of `st_mode`, as Linux defines them. They are stored,
/// so they are fixed here instead of taken from the platform.
pub const S_IFMT: u32 = 0o170_000;
pub const S_IFSOCK: u32 = 0o140_000;
pub const S_IFLNK: u32 = 0o120_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFBLK: u32 = 0o060_000;
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFCHR: u32 = 0o020_000;
pub const S_IFIFO: u32 = 0o010_000;
/// Permission bits: rwx for owner, group and others, and setuid, setgid
/// and sticky.
pub const PERM_BITS: u32 = 0o7777;
pub const S_ISUID: u32 = 0o4000;
pub const S_ISGID: u32 = 0o2000;

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileType {
    const ALL: [FileType; 7] = [
        FileType::Regular,
        FileType::Directory,
        FileType::Symlink,
        FileType::Fifo,
        FileType::Socket,
        FileType::CharDevice,
        FileType::BlockDevice,
    ];

    /// A number below 8 that names it, where bits are few.
    pub const fn code(self) -> u8 {
        self as u8
    }

    pub fn of_code(code: u8) -> Option<FileType> {
        FileType::ALL.get(usize::from(code)).copied()
    }

    /// Its bits in `st_mode`.
    pub const fn mode_bits(self) -> u32 {
        match self {
            FileType::Regular => S_IFREG,
            FileType::Directory => S_IFDIR,
            FileType::Symlink => S_IFLNK,
            FileType::Fifo => S_IFIFO,
            FileType::Socket => S_IFSOCK,
            FileType::CharDevice => S_IFCHR,
            FileType::BlockDevice => S_IFBLK,
        }
    }

    /// The type `mode`'s type bits name, if any.
    pub fn of_mode(mode: u32) -> Option<FileType> {
        FileType::ALL
            .into_iter()
            .find(|t| t.mode_bits() == mode & S_IFMT)
    }

    /// `d_type` of a directory entry, which is also how a stored entry
    /// names the type: the type bits shifted down.
    pub const fn dirent_type(self) -> u8 {
        (self.mode_bits() >> 12) as u8
    }

    pub fn of_dirent_type(t: u8) -> Option<FileType> {
        FileType::of_mode(u32::from(t) << 12)
    }

    /// Whether the kernel keeps the bytes of such a file in the store
    /// (regular files and symlinks do; devices, FIFOs and sockets have
    /// none, folders have entries).
    pub const fn has_bytes(self) -> bool {
        matches!(self, FileType::Regular | FileType::Symlink)
    }
}

/// Disk figures for `df`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Nanoseconds since the Unix epoch, as times are stored; negative before
/// it (`touch -d 1960-01-01` works), saturating far outside.
pub fn to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

pub fn from_ns(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    match ns >= 0 {
        true => UNIX_EPOCH.checked_add(d),
        false => UNIX_EPOCH.checked_sub(d),
    }
    .unwrap_or(UNIX_EPOCH)
}

pub fn now_ns() -> i64 {
    to_ns(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_through_mode_and_dirent_type() {
        for t in FileType::ALL {
            assert_eq!(FileType::of_mode(t.mode_bits() | 0o644), Some(t));
            assert_eq!(FileType::of_dirent_type(t.dirent_type()), Some(t));
        }
        assert_eq!(FileType::of_mode(0o644), None);
        assert_eq!(FileType::Directory.dirent_type(), libc::DT_DIR);
        assert_eq!(FileType::Fifo.dirent_type(), libc::DT_FIFO);
    }

    #[test]
    fn times_before_1970_are_negative() {
        let t = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(to_ns(t), -1_500_000_000);
        assert_eq!(from_ns(-1_500_000_000), t);
        let later = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(from_ns(to_ns(later)), later);
    }
}
