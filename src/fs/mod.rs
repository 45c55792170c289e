//! The filesystem: the store presented as one directory of regular files.
//!
//! - `fs`: what each operation means, returning `Result` (no FUSE types)
//! - `fuse`: the one adapter to the kernel protocol (fuser)
//! - `inode`: key ↔ inode numbers, stable while mounted
//! - `handle`: open files and their write buffers (spilling to disk)
//! - `attr`: the attributes and cache lifetimes reported
//! - `errno`: the layer's error type and its one errno mapping

mod attr;
mod errno;
#[allow(
    clippy::module_inception,
    reason = "fs/fs.rs holds the filesystem semantics, apart from fs/fuse.rs"
)]
mod fs;
mod fuse;
mod handle;
mod inode;

pub use attr::{Attr, Kind, Owner};
pub use errno::{Error, Result, errno};
pub use fs::{CaskFs, DirEntry, FsOptions, Opened, SetAttr, StatFs};
pub use fuse::CaskFuse;
pub use handle::SPILL_THRESHOLD;
