//! What the daemon has served, for `caskfs stats` on a live mount:
//! requests by kind, and the bytes read and written through the mount.

use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of request counted.
#[derive(Clone, Copy, Debug)]
pub enum Req {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Readlink,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Fsyncdir,
    Statfs,
    Setxattr,
    Getxattr,
    Listxattr,
    Removexattr,
    Access,
    Create,
    Getlk,
    Setlk,
    Bmap,
    Ioctl,
    Poll,
    CopyFileRange,
    Fallocate,
    Lseek,
    Other,
}

/// Their names, as the FUSE protocol has them, in `Req`'s order.
const KINDS: [&str; 39] = [
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "fsyncdir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "getlk",
    "setlk",
    "bmap",
    "ioctl",
    "poll",
    "copy_file_range",
    "fallocate",
    "lseek",
    "other",
];

pub struct Counters {
    requests: [AtomicU64; KINDS.len()],
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        }
    }
}

impl Counters {
    pub fn request(&self, kind: Req) {
        self.requests[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self, bytes: usize) {
        self.bytes_read.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn written(&self, bytes: usize) {
        self.bytes_written
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The request kinds served at least once, with their counts.
    pub fn requests(&self) -> Vec<(&'static str, u64)> {
        KINDS
            .iter()
            .zip(&self.requests)
            .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_kinds() {
        assert_eq!(KINDS.len(), Req::Other as usize + 1);
        let c = Counters::default();
        c.request(Req::Create);
        c.request(Req::Create);
        c.request(Req::Readdirplus);
        assert_eq!(c.requests(), vec![("readdirplus", 1), ("create", 2)]);
    }
}
