//! A directory entry record (`d` key: the folder and the name): the type
//! of what it names (as `d_type`), then the inode number (varint).

use super::codec::{In, Out, corrupt};
use crate::backend::Result;
use crate::vocab::FileType;

pub fn encode(kind: FileType, ino: u64) -> Vec<u8> {
    let mut o = Out::default();
    o.u8(kind.dirent_type()).var(ino);
    o.0
}

pub fn decode(b: &[u8]) -> Result<(FileType, u64)> {
    let mut i = In::new(b, "directory entry");
    let kind = FileType::of_dirent_type(i.u8()?).ok_or_else(|| corrupt("directory entry"))?;
    let ino = i.var()?;
    i.end()?;
    if ino >= super::keys::ID_LIMIT {
        return Err(corrupt("directory entry"));
    }
    Ok((kind, ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        for (k, ino) in [(FileType::Regular, 2), (FileType::Socket, 1 << 40)] {
            assert_eq!(decode(&encode(k, ino)).unwrap(), (k, ino));
        }
        assert!(decode(&[0, 1]).is_err(), "no such type");
        assert!(decode(&[8]).is_err(), "no inode");
        assert!(
            decode(&encode(FileType::Regular, 1 << 56)).is_err(),
            "an inode number no id can be"
        );
    }
}
