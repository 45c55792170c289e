//! An extent record (`x` key): the bytes one commit wrote at one place of
//! a file, behind who wrote them and where, so that garbage (an extent no
//! tree reaches) can be told without reading every tree.
//!
//! ```text
//! u64  owner: the inode whose tree it was written for
//! u64  origin: the file offset of its first byte
//! ...  the bytes
//! ```

use super::codec::{In, Out};
use crate::backend::Result;

pub const HEADER_LEN: u64 = 16;

pub fn header(owner: u64, origin: u64) -> [u8; HEADER_LEN as usize] {
    let mut o = Out::default();
    o.u64(owner).u64(origin);
    let mut h = [0; HEADER_LEN as usize];
    h.copy_from_slice(&o.0);
    h
}

/// Owner and origin.
pub fn decode_header(b: &[u8]) -> Result<(u64, u64)> {
    let mut i = In::new(b, "extent");
    Ok((i.u64()?, i.u64()?))
}
