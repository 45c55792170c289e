//! caskfs: a Bitcask-style log-structured key-value store (`engine`) and the
//! filesystem that presents it as a directory (`fs`), whose requests come
//! from the kernel through a FUSE `transport`. `mount` mounts and serves
//! it, answering `caskfs stats` and friends on a socket (`control`,
//! `report`); `exit` says how a command ends.

// Nothing from disk, the kernel or a user may panic the daemon.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod backend;
pub mod control;
pub mod engine;
pub mod etcd;
pub mod exit;
pub mod fs;
pub mod mount;
pub mod mountinfo;
pub mod report;
pub mod schema;
pub mod transport;
pub mod vfs;
pub mod vocab;
