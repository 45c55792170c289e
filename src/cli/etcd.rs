//! What the subcommands do with a prefix of an etcd cluster
//! (`etcd://HOST:PORT/PREFIX` in place of a data directory): `stats`, and
//! `backup` in both directions between a prefix and a local data
//! directory, which is how a namespace moves from one backend to the
//! other (also a prefix in the layout before the schema, which is read
//! and carried over). `put`, `get`, `rm` and `ls` take either (`offline`).

use std::path::Path;

use caskfs::backend::etcd::legacy::{self, Layout};
use caskfs::backend::etcd::{Etcd, EtcdUrl};
use caskfs::exit::{Code, Failure};
use caskfs::fs::{self, Error, Imported};
use caskfs::vocab::{FileType, S_IFMT};

use super::offline::Target;

/// The etcd URL `arg` is, if it is one.
pub fn url(arg: &Path) -> Option<Result<EtcdUrl, Failure>> {
    let s = arg.to_str()?;
    s.starts_with("etcd://")
        .then(|| s.parse().map_err(|e: String| Failure::new(Code::Usage, e)))
}

/// The etcd prefix mounted on `path` if it is the mountpoint of one (so
/// `caskfs stats MOUNTPOINT` and `backup` work on such a mount), else
/// `path` itself.
pub fn prefix_of(path: &Path) -> std::path::PathBuf {
    super::live::etcd_mounted_on(path).map_or_else(|| path.to_path_buf(), Into::into)
}

/// Refuses a command that has no meaning for an etcd prefix.
pub fn not_for_a_prefix(path: &Path, why: &str) -> Result<(), Failure> {
    match url(&prefix_of(path)) {
        Some(_) => Err(Failure::new(
            Code::Usage,
            format!("{}: not on an etcd prefix ({why})", path.display()),
        )),
        None => Ok(()),
    }
}

/// How many files, folders and bytes of files the prefix holds.
pub fn stats(url: &EtcdUrl, json: bool) -> Result<(), Failure> {
    let t = Target::open(Path::new(&url.to_string()), false)?;
    let (mut files, mut folders, mut bytes) = (0u64, 0u64, 0u64);
    let fail = |e: Error| Failure::from(format!("{url}: {e}"));
    for (path, kind) in t.fs.list_path(b"", true).map_err(fail)? {
        match kind {
            FileType::Directory => folders += 1,
            _ => {
                files += 1;
                let (ino, _) = t.fs.resolve(&path).map_err(fail)?;
                bytes += t.fs.getattr(ino, None, 0).map_err(fail)?.size;
            }
        }
    }
    if json {
        println!(
            "{{\"backend\":\"etcd\",\"url\":\"{}\",\"keys\":{files},\"folders\":{folders},\"bytes\":{bytes}}}",
            url.to_string().escape_default()
        );
    } else {
        println!("{url}: keys {files}, folders {folders}, bytes of values {bytes}");
    }
    t.close()
}

/// `caskfs backup etcd://.../PREFIX DEST_DIR` and `caskfs backup DATA_DIR
/// etcd://.../PREFIX`: the first into a local data directory (created if
/// missing), the second into a prefix that must be empty.
pub fn backup(source: &Path, dest: &Path) -> Result<(), Failure> {
    let (from, to) = match (url(source).transpose()?, url(dest).transpose()?) {
        (Some(_), Some(_)) => {
            let why =
                "from one etcd prefix to another: back up into a data directory, then from it";
            return Err(why.to_string().into());
        }
        (None, None) => return Err("not an etcd backup".to_string().into()),
        (from, to) => (from, to),
    };
    if let Some(u) = &from {
        let e = Etcd::open(u).map_err(|e| Failure::from(format!("{u}: {e}")))?;
        if is_legacy(&e, u)? {
            return backup_legacy(&e, u, dest);
        }
    }
    let src = Target::open(source, false)?;
    let dst = Target::open(dest, true)?;
    if to.is_some()
        && !dst
            .fs
            .list_path(b"", false)
            .map_err(|e| dst.fail("", e))?
            .is_empty()
    {
        return Err(format!("{}: not empty; back up into an empty prefix", dst.shown).into());
    }
    let n = fs::copy_tree(&src.fs, &dst.fs)
        .map_err(|e| Failure::from(format!("{}: {e}", dst.shown)))?;
    println!("copied {n} records from {} into {}", src.shown, dst.shown);
    src.close()?;
    dst.close()
}

/// Whether the prefix holds a namespace in the layout before the schema.
fn is_legacy(e: &Etcd, url: &EtcdUrl) -> Result<bool, Failure> {
    let layout = Layout::new(&url.prefix);
    let records =
        legacy::records(e.client(), &layout).map_err(|e| Failure::from(format!("{url}: {e}")))?;
    Ok(!records.is_empty()
        && caskfs::backend::Kv::get(e, caskfs::schema::keys::SUPERBLOCK)
            .ok()
            .flatten()
            .is_none())
}

/// A prefix in the old layout into a local data directory, carried over.
fn backup_legacy(e: &Etcd, url: &EtcdUrl, dest: &Path) -> Result<(), Failure> {
    let layout = Layout::new(&url.prefix);
    let fail = |x: String| Failure::from(format!("{url}: {x}"));
    let mut records = legacy::records(e.client(), &layout).map_err(|x| fail(x.to_string()))?;
    records.sort_by(|a, b| a.0.cmp(&b.0));
    let dst = Target::open(dest, true)?;
    let mut folders = Vec::new();
    for (key, r) in &records {
        let m = r.meta;
        let what = Imported {
            kind: FileType::of_mode(m.mode).unwrap_or(FileType::Regular),
            perm: m.mode & !S_IFMT,
            uid: m.uid,
            gid: m.gid,
            mtime: i64::try_from(m.mtime).unwrap_or(i64::MAX),
            ctime: i64::try_from(m.ctime).unwrap_or(i64::MAX),
            rdev: 0,
        };
        let to_fail = |x: Error| {
            Failure::from(format!(
                "{}: {}: {x}",
                dst.shown,
                String::from_utf8_lossy(key)
            ))
        };
        let ino = match what.kind {
            FileType::Regular => {
                let mut w = dst.fs.writer(key).map_err(to_fail)?;
                let mut written = Ok(());
                legacy::read(e.client(), &layout, key, r, &mut |b| {
                    written = w.write(b);
                    Ok(())
                })
                .map_err(|x| fail(x.to_string()))?;
                written.map_err(to_fail)?;
                w.finish().map_err(to_fail)?;
                let (ino, _) = dst.fs.resolve(key).map_err(to_fail)?;
                dst.fs
                    .restore(ino, what.perm, what.uid, what.gid, what.mtime, what.ctime)
                    .map_err(to_fail)?;
                ino
            }
            _ => {
                let mut bytes = Vec::new();
                legacy::read(e.client(), &layout, key, r, &mut |b| {
                    bytes.extend_from_slice(b);
                    Ok(())
                })
                .map_err(|x| fail(x.to_string()))?;
                dst.fs
                    .import(key, &what, &mut bytes.as_slice())
                    .map_err(to_fail)?
            }
        };
        if what.kind == FileType::Directory {
            folders.push((ino, what));
        }
    }
    for (ino, w) in folders {
        dst.fs
            .restore(ino, w.perm, w.uid, w.gid, w.mtime, w.ctime)
            .map_err(|x| Failure::from(format!("{}: {x}", dst.shown)))?;
    }
    println!(
        "copied {} records from {url} (the layout before files were inodes) into {}",
        records.len(),
        dst.shown
    );
    dst.close()
}
