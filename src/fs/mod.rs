//! The filesystem: the store presented as one directory of regular files.
//!
//! - `fs`: what each operation means, returning `Result` (no FUSE types)
//! - `fuse`: the one adapter to the kernel protocol (fuser)
//! - `inode`: key ↔ inode numbers, stable while mounted
//! - `handle`: open files, and which draft each reads and writes through
//! - `draft`: what one process's descriptors of a key see before commit
//!   (the write buffer, spilling to disk) or the value a reader pinned
//! - `process`: which process a request comes from
//! - `attr`: the attributes and cache lifetimes reported
//! - `errno`: the layer's error type and its one errno mapping

mod attr;
mod draft;
mod errno;
#[allow(
    clippy::module_inception,
    reason = "fs/fs.rs holds the filesystem semantics, apart from fs/fuse.rs"
)]
mod fs;
mod fuse;
mod handle;
mod inode;
mod process;

pub use attr::{Attr, Kind, Owner};
pub use draft::SPILL_THRESHOLD;
pub use errno::{Error, Result, errno};
pub use fs::{CaskFs, DirEntry, FsOptions, KernelCache, Opened, SetAttr, StatFs};
pub use fuse::CaskFuse;
