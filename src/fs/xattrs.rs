//! Extended attributes. They live in the inode record (docs/SCHEMA.md), so
//! a change is one write of the inode with its new ctime: atomic with it,
//! on every backend, gone with the inode's last link, and read with the
//! attributes a `stat` reads anyway.
//!
//! The kernel checks what it can before asking: names of at most 255
//! bytes, values of at most 64 KiB (E2BIG), `trusted.` for
//! CAP_SYS_ADMIN only, `user.` only on files and folders and with the
//! file's permissions, and it answers for `system.posix_acl_*` itself
//! (EOPNOTSUPP: ACLs are not asked for at INIT).

use std::time::SystemTime;

use super::errno::{Error, Result};
use super::fs::CaskFs;
use crate::schema::Inode;
use crate::vocab::to_ns;

/// The bytes of names and values one inode may hold. Every change of the
/// inode (a chmod, a commit) writes them again, so they stay small beside
/// a file; ext4 keeps them in one 4 KiB block unless `ea_inode` is on.
pub const ROOM: usize = 256 << 10;

/// `setxattr` flags.
const CREATE: i32 = libc::XATTR_CREATE;
const REPLACE: i32 = libc::XATTR_REPLACE;

/// Only these namespaces are kept; others (`system.`, `os2.`, names with
/// no namespace) are not supported, as on ext4.
fn check_namespace(name: &[u8]) -> Result<()> {
    let kept = [&b"user."[..], b"trusted.", b"security."]
        .iter()
        .any(|ns| name.len() > ns.len() && name.starts_with(ns));
    match kept {
        true => Ok(()),
        false => Err(Error::NotSupported("that extended attribute namespace")),
    }
}

impl CaskFs {
    pub fn getxattr(&self, node: u64, name: &[u8]) -> Result<Vec<u8>> {
        check_namespace(name)?;
        let inode = self.inode_of_node(node)?;
        inode
            .xattrs
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or(Error::NoAttribute)
    }

    /// The names, each ended by a NUL, as `listxattr` returns them.
    pub fn listxattr(&self, node: u64) -> Result<Vec<u8>> {
        let inode = self.inode_of_node(node)?;
        let mut out = Vec::new();
        for (name, _) in &inode.xattrs {
            out.extend_from_slice(name);
            out.push(0);
        }
        Ok(out)
    }

    pub fn setxattr(&self, node: u64, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        check_namespace(name)?;
        if flags & !(CREATE | REPLACE) != 0 {
            return Err(Error::InvalidArgument("setxattr flags"));
        }
        self.change_xattrs(node, |x| {
            match x.iter().position(|(n, _)| n == name) {
                None if flags & REPLACE != 0 => return Err(Error::NoAttribute),
                Some(_) if flags & CREATE != 0 => return Err(Error::Exists),
                Some(i) => x[i].1 = value.to_vec(),
                None => x.push((name.to_vec(), value.to_vec())),
            }
            let used: usize = x.iter().map(|(n, v)| n.len() + v.len()).sum();
            match used > ROOM {
                true => Err(Error::NoRoomForAttributes),
                false => Ok(()),
            }
        })
    }

    pub fn removexattr(&self, node: u64, name: &[u8]) -> Result<()> {
        check_namespace(name)?;
        self.change_xattrs(node, |x| {
            let at = x.iter().position(|(n, _)| n == name);
            x.remove(at.ok_or(Error::NoAttribute)?);
            Ok(())
        })
    }

    pub(super) fn inode_of_node(&self, node: u64) -> Result<Inode> {
        self.inode(self.nodeids.ino_of(node))?.ok_or(Error::Stale)
    }

    /// Applies `change` to the inode's attributes and writes the inode
    /// with a new ctime, under its lock; nothing if `change` fails.
    fn change_xattrs(
        &self,
        node: u64,
        change: impl FnOnce(&mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<()>,
    ) -> Result<()> {
        self.writable()?;
        let ino = self.nodeids.ino_of(node);
        let now = to_ns(SystemTime::now());
        if let Some(p) = self.pending.lock().get_mut(&ino) {
            let mut x = p.inode.xattrs.clone();
            change(&mut x)?;
            p.inode.xattrs = x;
            p.inode.ctime = now;
            return Ok(());
        }
        let live = self.lives.get(ino);
        let lock = live.lock();
        let mut inode = self.inode(ino)?.ok_or(Error::Stale)?;
        change(&mut inode.xattrs)?;
        inode.ctime = now;
        let r = self.put_inode(&live, inode);
        drop(lock);
        self.announce();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kept_namespaces_pass() {
        for ok in [&b"user.a"[..], b"trusted.x", b"security.selinux"] {
            assert!(check_namespace(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &b"user."[..],
            b"system.posix_acl_access",
            b"plain",
            b"os2.x",
        ] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
    }
}
