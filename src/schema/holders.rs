//! A holders record (`r` key and an extent's id): the inodes that may
//! reach an extent `copy_file_range` shared, as varints in ascending
//! order. It may name more than reach it (a copy whose file was never
//! committed, a file rewritten since); freeing the extent looks at each
//! (`fs/sharing.rs`), never at a count, so a free done twice or a crash
//! between two writes can only keep an extent too long, not lose one.

use super::codec::{In, Out};
use crate::backend::Result;

pub fn encode(inos: &[u64]) -> Vec<u8> {
    let mut o = Out::default();
    for &ino in inos {
        o.var(ino);
    }
    o.0
}

pub fn decode(b: &[u8]) -> Result<Vec<u64>> {
    let mut i = In::new(b, "holders");
    let mut inos = Vec::new();
    while !i.is_empty() {
        inos.push(i.var()?);
    }
    Ok(inos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_round_trip() {
        for inos in [vec![], vec![2], vec![1, 300, 1 << 50]] {
            assert_eq!(decode(&encode(&inos)).unwrap(), inos);
        }
        assert!(decode(&[0x80]).is_err(), "a varint cut short");
    }
}
