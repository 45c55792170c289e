//! The filesystem's keys and records over the key-value interface: see
//! docs/SCHEMA.md.
//!
//! - `keys`: every key, built and taken apart
//! - `superblock`: that a store is laid out so, and its version
//! - `inode`: attributes and a file's bytes or their tree
//! - `entry`: a name in a folder
//! - `tree`: a file's extent tree and its node records
//! - `extent`: the bytes a commit wrote
//! - `codec`: numbers into bytes

mod codec;
pub mod entry;
pub mod extent;
pub mod holders;
pub mod inode;
pub mod keys;
pub mod superblock;
pub mod tree;

pub use inode::{Data, INLINE_MAX, Inode, OWNER_UNSET};
pub use tree::{Extent, Root};
