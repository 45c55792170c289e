//! The filesystem: the store presented as a tree of folders, files and
//! symlinks, a key `a/b/c` being the file `c` in folder `a/b`.
//!
//! - `fs`: what each operation on a file means, returning `Result` (no
//!   FUSE types)
//! - `namespace`: creating, removing and renaming names
//! - `listing`: listing a folder
//! - `inode`: key ↔ inode numbers, stable while mounted
//! - `handle`: open files, and which draft each reads and writes through
//! - `draft`: what one process's descriptors of a key see before commit
//!   (the write buffer, spilling to disk) or the value a reader pinned
//! - `process`: which process a request comes from
//! - `attr`: the attributes and cache lifetimes reported
//! - `errno`: the layer's error type and its one errno mapping
//! - `storage`: the one interface to what holds the keys
//! - `bitcask`: that interface on the embedded Bitcask log

mod attr;
mod bitcask;
#[cfg(test)]
mod close_order;
mod draft;
mod errno;
#[allow(
    clippy::module_inception,
    reason = "fs/fs.rs holds the filesystem semantics, apart from fs/fuse.rs"
)]
mod fs;
mod handle;
mod inode;
mod listing;
mod namespace;
mod page_cache;
mod process;
mod storage;

pub use attr::{Attr, BLOCK_SIZE, Kind, Owner};
pub use bitcask::Bitcask;
pub use draft::SPILL_THRESHOLD;
pub use errno::{Error, Result, errno, log_and_errno};
pub use fs::{Caller, CaskFs, DirEntry, FsOptions, KernelCache, Opened, SetAttr, StatFs};
pub use page_cache::ReadMode;
pub use storage::{Listing, Pinned, RemoteChange, Storage, Value};
