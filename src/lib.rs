//! caskfs: a Bitcask-style log-structured key-value store (`engine`) and the
//! FUSE filesystem that presents it as a directory (`fs`), mounted by
//! `mount`.

pub mod engine;
pub mod fs;
pub mod mount;
