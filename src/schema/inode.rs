//! An inode record (`i` key): what `stat` shows, and the file's bytes, or
//! where they are.
//!
//! ```text
//! u8   record version (1)
//! u8   flags: bits 0-1 what the data is (0 none, 1 inline, 2 tree);
//!      bit 2 an atime follows; bit 3 an rdev; bit 4 a parent; bit 5 the
//!      ctime is a var of how much it is after the mtime; bit 6
//!      extended attributes follow; bit 7 how many bytes the extents
//!      hold, when holes make it less than the size
//! var  mode (st_mode: type and permission bits)
//! var  uid, gid (0xFFFF_FFFF: whoever mounts the store)
//! var  nlink
//! var  size
//! i64  mtime (ns since the epoch)
//! i64  ctime, or (bit 5) var ctime - mtime: a file's ctime is nearly
//!      always its mtime or a little after, so this takes 3 bytes, not 8
//! [i64 atime] [var rdev] [var parent] [var allocated]
//! [var count, then each: var name length, name, var value length, value]
//! then the bytes themselves (inline), or the extent tree's root
//! ```

use super::codec::{In, Out, corrupt};
use super::tree::Root;
use crate::backend::Result;
use crate::vocab::{FileType, PERM_BITS};

/// Files up to this size keep their bytes in the inode record: reading
/// one is one record, and rewriting one costs at most this much.
pub const INLINE_MAX: u64 = 4096;

/// An owner that records none: shown as whoever mounts the store (stores
/// carried over from before owners were kept).
pub const OWNER_UNSET: u32 = u32::MAX;

const VERSION: u8 = 1;
const DATA_NONE: u8 = 0;
const DATA_INLINE: u8 = 1;
const DATA_TREE: u8 = 2;
const HAS_ATIME: u8 = 1 << 2;
const HAS_RDEV: u8 = 1 << 3;
const HAS_PARENT: u8 = 1 << 4;
const CTIME_AFTER: u8 = 1 << 5;
const HAS_XATTRS: u8 = 1 << 6;
const HAS_ALLOCATED: u8 = 1 << 7;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// Folders, devices, FIFOs, sockets, and empty files.
    None,
    /// A small file's bytes, or a symlink's target.
    Inline(Vec<u8>),
    /// A larger file's extent tree.
    Tree(Root),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub kind: FileType,
    /// The 12 permission bits.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub mtime: i64,
    pub ctime: i64,
    /// Only once set apart from mtime (`touch -a`, `utimensat`): the mount
    /// is noatime, so reads never set it.
    pub atime: Option<i64>,
    /// A device node's device.
    pub rdev: u32,
    /// A folder's parent folder (the root's is itself); 0 for the rest,
    /// which may have several.
    pub parent: u64,
    /// A large file's bytes its extents hold, when holes make that less
    /// than its size (`None`: as many as its size; for the files from
    /// before this was kept, too).
    pub allocated: Option<u64>,
    /// Extended attributes: (name, value), in the order they were set.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub data: Data,
}

impl Inode {
    /// A new inode of `kind` with `perm`, owned by `uid`/`gid`, made at
    /// `now`: one link, empty.
    pub fn new(kind: FileType, perm: u32, uid: u32, gid: u32, now: i64) -> Inode {
        Inode {
            kind,
            perm: perm & PERM_BITS,
            uid,
            gid,
            nlink: 1,
            size: 0,
            mtime: now,
            ctime: now,
            atime: None,
            rdev: 0,
            parent: 0,
            allocated: None,
            xattrs: Vec::new(),
            data: Data::None,
        }
    }

    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | self.perm
    }

    pub fn atime(&self) -> i64 {
        self.atime.unwrap_or(self.mtime)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut flags = match self.data {
            Data::None => DATA_NONE,
            Data::Inline(_) => DATA_INLINE,
            Data::Tree(_) => DATA_TREE,
        };
        if self.atime.is_some() {
            flags |= HAS_ATIME;
        }
        if self.rdev != 0 {
            flags |= HAS_RDEV;
        }
        if self.parent != 0 {
            flags |= HAS_PARENT;
        }
        let after = self.ctime.checked_sub(self.mtime).filter(|d| *d >= 0);
        if after.is_some() {
            flags |= CTIME_AFTER;
        }
        if !self.xattrs.is_empty() {
            flags |= HAS_XATTRS;
        }
        let allocated = self.allocated.filter(|n| *n < self.size);
        if allocated.is_some() {
            flags |= HAS_ALLOCATED;
        }
        let mut o = Out::default();
        o.u8(VERSION)
            .u8(flags)
            .var(u64::from(self.mode()))
            .var(u64::from(self.uid))
            .var(u64::from(self.gid))
            .var(u64::from(self.nlink))
            .var(self.size)
            .i64(self.mtime);
        match after {
            Some(d) => o.var(d as u64),
            None => o.i64(self.ctime),
        };
        if let Some(t) = self.atime {
            o.i64(t);
        }
        if self.rdev != 0 {
            o.var(u64::from(self.rdev));
        }
        if self.parent != 0 {
            o.var(self.parent);
        }
        if let Some(n) = allocated {
            o.var(n);
        }
        if !self.xattrs.is_empty() {
            o.var(self.xattrs.len() as u64);
            for (name, value) in &self.xattrs {
                o.var(name.len() as u64).bytes(name);
                o.var(value.len() as u64).bytes(value);
            }
        }
        match &self.data {
            Data::None => {}
            Data::Inline(b) => {
                o.bytes(b);
            }
            Data::Tree(root) => root.encode_into(&mut o),
        }
        o.0
    }

    pub fn decode(b: &[u8]) -> Result<Inode> {
        let mut i = In::new(b, "inode");
        let (version, flags) = (i.u8()?, i.u8()?);
        if version != VERSION {
            return Err(corrupt("inode"));
        }
        let mode = i.var32()?;
        let kind = FileType::of_mode(mode).ok_or_else(|| corrupt("inode"))?;
        if mode & !(kind.mode_bits() | PERM_BITS) != 0 {
            return Err(corrupt("inode"));
        }
        let mut ino = Inode {
            kind,
            perm: mode & PERM_BITS,
            uid: i.var32()?,
            gid: i.var32()?,
            nlink: i.var32()?,
            size: i.var()?,
            mtime: i.i64()?,
            ctime: 0,
            atime: None,
            rdev: 0,
            parent: 0,
            allocated: None,
            xattrs: Vec::new(),
            data: Data::None,
        };
        ino.ctime = match flags & CTIME_AFTER {
            0 => i.i64()?,
            _ => i64::try_from(i.var()?)
                .ok()
                .and_then(|d| ino.mtime.checked_add(d))
                .ok_or_else(|| corrupt("inode"))?,
        };
        if flags & HAS_ATIME != 0 {
            ino.atime = Some(i.i64()?);
        }
        if flags & HAS_RDEV != 0 {
            ino.rdev = i.var32()?;
        }
        if flags & HAS_PARENT != 0 {
            ino.parent = i.var()?;
        }
        if flags & HAS_ALLOCATED != 0 {
            ino.allocated = Some(i.var()?);
        }
        if flags & HAS_XATTRS != 0 {
            let count = i.var()?;
            for _ in 0..count {
                let name = i.take_var()?.to_vec();
                let value = i.take_var()?.to_vec();
                ino.xattrs.push((name, value));
            }
        }
        ino.data = match flags & 0b11 {
            DATA_NONE => Data::None,
            DATA_INLINE => Data::Inline(i.rest().to_vec()),
            DATA_TREE => Data::Tree(Root::decode_from(&mut i)?),
            _ => return Err(corrupt("inode")),
        };
        i.end()?;
        Ok(ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tree::Extent;

    /// A user's file holding `bytes`.
    fn file(bytes: &[u8]) -> Inode {
        let mut f = Inode::new(FileType::Regular, 0o644, 1000, 1000, 1_700_000_000 << 30);
        f.size = bytes.len() as u64;
        f.data = Data::Inline(bytes.to_vec());
        f
    }

    #[test]
    fn every_kind_of_inode_round_trips() {
        let f = file(b"hello");
        let mut d = Inode::new(FileType::Directory, 0o2755, 0, 0, -5);
        d.parent = 1;
        d.nlink = 3;
        d.atime = Some(7);
        let mut dev = Inode::new(FileType::CharDevice, 0o600, OWNER_UNSET, OWNER_UNSET, 0);
        dev.rdev = (1 << 8) | 3;
        dev.xattrs = vec![
            (b"user.a".to_vec(), Vec::new()),
            (b"security.selinux".to_vec(), vec![0; 300]),
        ];
        let mut big = Inode::new(FileType::Regular, 0o600, 0, 0, 0);
        big.size = 10 << 20;
        big.allocated = Some(1 << 20);
        big.data = Data::Tree(Root::of(vec![Extent {
            off: 0,
            len: 10 << 20,
            id: 9,
            at: 0,
        }]));
        for i in [f, d, dev, big] {
            assert_eq!(Inode::decode(&i.encode()).unwrap(), i);
        }
    }

    #[test]
    fn a_small_files_inode_is_short() {
        let mut f = file(&[7; 100]);
        f.ctime = f.mtime + 40_000;
        assert!(f.encode().len() <= 100 + 22, "{}", f.encode().len());
        assert_eq!(Inode::decode(&f.encode()).unwrap(), f);
    }

    #[test]
    fn a_ctime_before_the_mtime_is_kept_whole() {
        // `touch -d` of a date to come: the mtime is after the ctime. So
        // were all ctimes of the builds before the delta: the same bytes.
        let mut f = file(b"x");
        f.mtime = f.ctime + 5;
        let bytes = f.encode();
        assert_eq!(bytes[1] & CTIME_AFTER, 0);
        assert_eq!(Inode::decode(&bytes).unwrap(), f);
        f.mtime = i64::MAX;
        f.ctime = i64::MIN;
        assert_eq!(Inode::decode(&f.encode()).unwrap(), f);
    }

    #[test]
    fn damaged_inodes_are_errors() {
        let f = Inode::new(FileType::Regular, 0o644, 1, 1, 0).encode();
        for cut in 0..f.len() {
            assert!(Inode::decode(&f[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = f.clone();
        bad[0] = 2;
        assert!(Inode::decode(&bad).is_err(), "a future version");
        let mut bad = f;
        bad[1] |= 0b11;
        assert!(Inode::decode(&bad).is_err(), "an unknown kind of data");
    }
}
