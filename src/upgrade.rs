//! Carrying a data directory over from the layout before the schema (its
//! keys paths, its records holding mode, owner and times) into the schema
//! (docs/SCHEMA.md), when it is first opened by this build.
//!
//! The superblock says how far it got: `Upgrading` while the old keys are
//! copied (a second try wipes what the first wrote and starts over),
//! `Clearing` once everything is copied and the old keys go, `Ready` at
//! the end. A crash at any point leaves every file readable afterwards:
//! in the old keys until `Clearing`, in the schema from then on.

use std::sync::Arc;

use log::info;

use crate::backend::{Batch, Kv, Log};
use crate::engine::Store;
use crate::fs::{CaskFs, Error, FsOptions, Imported, Owner, Result, StoreState};
use crate::schema::keys;
use crate::vocab::{FileType, MAX_NAME_LEN, MAX_PATH_LEN, S_IFMT};

/// Old keys deleted per batch.
const CLEAR_BATCH: usize = 1000;

/// Whether `store` needs carrying over: keys of the old layout, and no
/// finished superblock.
pub fn needed(store: &Store) -> bool {
    let sb = store.get(keys::SUPERBLOCK).ok().flatten();
    match sb {
        Some(v) => crate::schema::superblock::decode(&v).is_ok_and(|s| s != StoreState::Ready),
        None => store.keys().iter().any(|k| !keys::is_schema_key(k)),
    }
}

/// Carries `store` over into the schema, whatever state an earlier try
/// left it in. The old records' bytes are copied once.
pub fn carry_over(store: &Arc<Store>) -> Result<()> {
    let kv: Arc<dyn Kv> = Arc::new(Log::new(store.clone()));
    let opts = FsOptions {
        owner: Owner::current(),
        read_only: false,
        cache_reads: false,
        shared: false,
        max_file_size: u64::MAX,
    };
    let fs = CaskFs::load_upgrading(kv.clone(), opts)?;
    let old: Vec<Vec<u8>> = store
        .keys()
        .into_iter()
        .filter(|k| !keys::is_schema_key(k) && is_old_path(k))
        .collect();
    let state = store
        .get(keys::SUPERBLOCK)
        .ok()
        .flatten()
        .and_then(|v| crate::schema::superblock::decode(&v).ok());
    if state == Some(StoreState::Upgrading) {
        info!(
            "carrying {} over from the old layout: {} keys",
            store.dir().display(),
            old.len()
        );
        copy(store, &fs, &old)?;
        fs.set_state(StoreState::Clearing)?;
    }
    for chunk in old.chunks(CLEAR_BATCH) {
        let mut b = Batch::default();
        for k in chunk {
            b.delete(k.clone());
        }
        kv.write(b)?;
    }
    fs.set_state(StoreState::Ready)?;
    info!("{} is carried over", store.dir().display());
    Ok(())
}

/// Every old key into `fs`, with its mode, owner and times; folders get
/// theirs again after everything below them is in (entries change them).
fn copy(store: &Store, fs: &CaskFs, old: &[Vec<u8>]) -> Result<()> {
    let mut folders = Vec::new();
    for key in old {
        let Some(m) = store.metadata(key).map_err(engine)?.map(|m| m.meta()) else {
            continue;
        };
        let what = Imported {
            kind: FileType::of_mode(m.mode).unwrap_or(FileType::Regular),
            perm: m.mode & !S_IFMT,
            uid: m.uid,
            gid: m.gid,
            mtime: ns(m.mtime),
            ctime: ns(m.ctime),
            rdev: 0,
        };
        let mut bytes = Pieces {
            value: store.value(key).map_err(engine)?,
            at: 0,
        };
        let ino = fs.import(key, &what, &mut bytes)?;
        if what.kind == FileType::Directory {
            folders.push((ino, what));
        }
    }
    for (ino, w) in folders {
        fs.restore(ino, w.perm, w.uid, w.gid, w.mtime, w.ctime)?;
    }
    Ok(())
}

/// Whether `key` is a path as the old layout's keys were: components
/// separated by `/`, each 1 to `MAX_NAME_LEN` bytes without NUL and not
/// `.` or `..`, `MAX_PATH_LEN` bytes at most in all (what the old engine
/// let in, so that every key could be a file in the mount).
fn is_old_path(key: &[u8]) -> bool {
    !key.is_empty()
        && key.len() <= MAX_PATH_LEN
        && key.split(|&b| b == b'/').all(|part| {
            !part.is_empty()
                && part.len() <= MAX_NAME_LEN
                && part != b"."
                && part != b".."
                && !part.contains(&0)
        })
}

fn ns(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn engine(e: crate::engine::Error) -> Error {
    Error::Backend(crate::backend::Error::Other {
        errno: libc::EIO,
        why: e.to_string(),
    })
}

/// An old value, read in pieces.
struct Pieces {
    value: Option<crate::engine::Value>,
    at: u64,
}

impl std::io::Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(v) = &self.value else {
            return Ok(0);
        };
        let bytes = v.bytes(self.at, buf.len()).map_err(std::io::Error::other)?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.at += bytes.len() as u64;
        Ok(bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_paths() {
        let name = [b'x'; MAX_NAME_LEN];
        let longest = vec![&name[..]; 16].join(&b'/');
        assert_eq!(longest.len(), MAX_PATH_LEN);
        for good in [
            &b"a"[..],
            b"a/b/c",
            b"a/.hidden/..dots/...",
            b"\xff",
            &longest,
        ] {
            assert!(is_old_path(good), "{} bytes", good.len());
        }
        let too_long_name = [b'x'; MAX_NAME_LEN + 1];
        let too_long = [&longest[..], b"y"].concat();
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"/a",
            b"a/",
            b"a//b",
            b"a/../b",
            b"a\0b",
            &too_long_name,
            &too_long,
        ] {
            assert!(!is_old_path(bad), "{bad:?}");
        }
    }
}
