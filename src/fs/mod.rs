//! The filesystem over the schema (docs/SCHEMA.md): files are inodes,
//! named by directory entries, their bytes in extents.
//!
//! - `fs`: the filesystem, how it opens, and what every operation shares
//! - `namespace`: names: lookup, create, mkdir, mknod, symlink, link,
//!   unlink, rmdir, rename
//! - `attrs`: stat, chmod, chown, touch, truncate, readlink
//! - `xattrs`: extended attributes
//! - `files`: open, read, write, and the commits at close and fsync
//! - `allocate`: fallocate, and lseek's SEEK_DATA and SEEK_HOLE
//! - `listing`: listing a folder
//! - `draft`: what a writer's descriptors see before they commit
//! - `commit`: a draft made a new version: what it writes and frees
//! - `page_cache`: when readers read through the kernel's page cache
//! - `live`: inodes in use: versions, pins, what waits to be freed
//! - `dirs`: the directory map
//! - `nodeids`: the node ids the kernel knows files by
//! - `handle`: open files
//! - `store`: the backend as the filesystem reads it
//! - `ids`: new inode numbers and extent ids
//! - `process`: which process a request comes from
//! - `attr`: the attributes and cache lifetimes reported
//! - `check`: the tree's own check and repair, by path
//! - `reach`: every key the filesystem reaches (what is not garbage)
//! - `errno`: the layer's error type and its one errno mapping

mod allocate;
mod attr;
mod attrs;
mod check;
mod commit;
mod defrag;
mod dirs;
mod draft;
mod errno;
mod files;
mod folder_times;
#[allow(
    clippy::module_inception,
    reason = "fs/fs.rs holds the filesystem and what it shares"
)]
mod fs;
mod handle;
mod ids;
mod import;
mod listing;
mod live;
mod namespace;
mod nodeids;
mod page_cache;
mod paths;
mod process;
mod reach;
mod remote;
mod sharing;
mod store;
mod xattrs;

pub use attr::{Attr, BLOCK_SIZE, Owner};
pub use check::{Findings, LOST_AND_FOUND, Problem};
pub use errno::{Error, Result, errno, log_and_errno};
pub use fs::{
    Caller, CaskFs, DirEntry, FsOptions, KernelCache, MAX_FILE_SIZE, Opened, SetAttr, StoreState,
};
pub use import::{Imported, copy_tree};
pub use page_cache::ReadMode;
pub use paths::{TOOL, Writer};
