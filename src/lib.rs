//! caskfs: a Bitcask-style log-structured key-value store (`engine`) and the
//! filesystem that presents it as a directory (`fs`): files as inodes,
//! names and extents (`schema`), kept in any key-value `backend` (the log,
//! etcd, memory), its requests coming from the kernel through a FUSE
//! `transport`. `mount` mounts and serves it, answering `caskfs stats` and
//! friends on a socket (`control`, `report`); `upgrade` carries stores of
//! the old layout over; `vocab` is the words every layer shares; `exit`
//! says how a command ends.

// Nothing from disk, the kernel or a user may panic the daemon.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod backend;
pub mod control;
pub mod engine;
pub mod exit;
pub mod fs;
pub mod mount;
pub mod mountinfo;
pub mod report;
pub mod schema;
pub mod transport;
pub mod upgrade;
pub mod vocab;
