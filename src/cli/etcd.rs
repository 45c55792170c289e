//! The subcommands on a prefix of an etcd cluster (`etcd://HOST:PORT/PREFIX`
//! in place of a data directory): put, get, rm, ls, stats, and backup in
//! both directions between a prefix and a local data directory, which is
//! how a namespace moves from one backend to the other. They go through
//! the same storage interface as a mount.

use std::io::{Read, Write};
use std::path::Path;
use std::time::SystemTime;

use caskfs::engine::{self, EntryKind, Meta, Options, S_IFDIR, Store};
use caskfs::etcd::{Etcd, EtcdUrl};
use caskfs::exit::{Code, Failure};
use caskfs::fs::{Bitcask, Error, Storage, Value};

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

fn open(url: &EtcdUrl) -> Result<Etcd, Failure> {
    Etcd::open(url, Options::default().max_value_size).map_err(|e| fail(url, e))
}

fn fail(url: &EtcdUrl, e: Error) -> Failure {
    let code = match e {
        Error::NotFound => Code::NotFound,
        _ => Code::Failed,
    };
    Failure::new(code, format!("{url}: {e}"))
}

fn now() -> u64 {
    engine::to_ns(SystemTime::now())
}

/// Stores `value` at `key`, making the missing folders above it first.
pub fn put(url: &EtcdUrl, key: &str, value: Vec<u8>) -> Result<(), Failure> {
    let etcd = open(url)?;
    let key = key.as_bytes();
    let folder = Meta {
        mode: S_IFDIR | 0o755,
        ..Meta::file(now())
    };
    for (i, _) in key.iter().enumerate().filter(|(_, b)| **b == b'/') {
        let parent = &key[..i];
        match etcd.kind(parent).map_err(|e| fail(url, e))? {
            Some(EntryKind::Folder) => {}
            Some(_) => {
                let shown = String::from_utf8_lossy(parent);
                return Err(format!("{url}: \"{shown}\" is not a folder").into());
            }
            None => etcd.put(parent, b"", &folder).map_err(|e| fail(url, e))?,
        }
    }
    etcd.put(key, &value, &Meta::file(now()))
        .map_err(|e| fail(url, e))
}

pub fn get(url: &EtcdUrl, key: &str) -> Result<(), Failure> {
    let etcd = open(url)?;
    let value = etcd.value(key.as_bytes()).map_err(|e| fail(url, e))?;
    let value = value
        .ok_or_else(|| Failure::new(Code::NotFound, format!("{url}: key \"{key}\" not found")))?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut Reader::new(&value), &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| Failure::from(format!("writing stdout: {e}")))
}

pub fn rm(url: &EtcdUrl, key: &str) -> Result<(), Failure> {
    let etcd = open(url)?;
    etcd.delete(key.as_bytes()).map_err(|e| match e {
        Error::NotFound => Failure::new(Code::NotFound, format!("{url}: key \"{key}\" not found")),
        e => fail(url, e),
    })
}

/// The entries of `folder`, folders ending in '/'; with `recursive`,
/// every key below it as a full path.
pub fn ls(url: &EtcdUrl, folder: Option<&str>, recursive: bool) -> Result<(), Failure> {
    let etcd = open(url)?;
    let folder = folder.unwrap_or_default().trim_end_matches('/').as_bytes();
    if etcd.kind(folder).map_err(|e| fail(url, e))? != Some(EntryKind::Folder) {
        let shown = String::from_utf8_lossy(folder);
        return Err(Failure::new(
            Code::NotFound,
            format!("{url}: \"{shown}\" is not a folder"),
        ));
    }
    let mut out = std::io::stdout().lock();
    let mut emit = |name: &[u8], kind: EntryKind| -> Result<(), Error> {
        let slash: &[u8] = if kind == EntryKind::Folder { b"/" } else { b"" };
        out.write_all(name)?;
        out.write_all(slash)?;
        Ok(out.write_all(b"\n")?)
    };
    let mut entries = Vec::new();
    if recursive {
        walk(&etcd, folder, &mut |key, kind| {
            entries.push((key.to_vec(), kind));
            Ok(())
        })
    } else {
        etcd.list(folder).map(|l| entries = l.unwrap_or_default())
    }
    .map_err(|e| fail(url, e))?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
        .into_iter()
        .try_for_each(|(name, kind)| emit(&name, kind))
        .map_err(|e| fail(url, e))
}

/// How many keys, folders and bytes the prefix holds.
pub fn stats(url: &EtcdUrl, json: bool) -> Result<(), Failure> {
    let etcd = open(url)?;
    let (mut files, mut folders, mut bytes) = (0u64, 0u64, 0u64);
    walk(&etcd, b"", &mut |key, kind| {
        match kind {
            EntryKind::Folder => folders += 1,
            _ => files += 1,
        }
        bytes += etcd.metadata(key)?.map_or(0, |m| m.len);
        Ok(())
    })
    .map_err(|e| fail(url, e))?;
    if json {
        println!(
            "{{\"backend\":\"etcd\",\"url\":\"{}\",\"keys\":{files},\"folders\":{folders},\"bytes\":{bytes}}}",
            url.to_string().escape_default()
        );
    } else {
        println!("{url}: keys {files}, folders {folders}, bytes of values {bytes}");
    }
    Ok(())
}

/// Copies every key, folder and symlink of `from` into `to`,
/// with its mode, owner and times, parents first.
fn copy(from: &dyn Storage, to: &dyn Storage) -> Result<u64, Error> {
    let mut copied = 0;
    walk(from, b"", &mut |key, _| {
        // None: a folder implied by the keys below it, or gone meanwhile.
        if let Some(value) = from.value(key)? {
            let m = value.metadata();
            to.put_from(key, m.len, &mut Reader::new(&value), &m.meta())?;
            copied += 1;
        }
        Ok(())
    })?;
    Ok(copied)
}

/// `caskfs backup etcd://.../PREFIX DEST_DIR` and `caskfs backup DATA_DIR
/// etcd://.../PREFIX`: the first into a local data directory (created if
/// missing), the second into a prefix that must be empty.
pub fn backup(source: &Path, dest: &Path) -> Result<(), Failure> {
    match (url(source).transpose()?, url(dest).transpose()?) {
        (Some(from), None) => {
            let etcd = open(&from)?;
            let store = Store::open(dest, Options::default()).map_err(|e| Failure::engine(&e))?;
            let store = std::sync::Arc::new(store);
            let n = copy(&etcd, &Bitcask::new(store.clone())).map_err(|e| fail(&from, e))?;
            println!("copied {n} records from {from} into {}", dest.display());
            match std::sync::Arc::try_unwrap(store) {
                Ok(s) => s.close().map_err(|e| Failure::engine(&e)),
                Err(_) => Ok(()),
            }
        }
        (None, Some(to)) => {
            let opts = Options {
                create_if_missing: false,
                read_only: true,
                ..Options::default()
            };
            let store = Store::open(source, opts).map_err(|e| Failure::engine(&e))?;
            let etcd = open(&to)?;
            if !etcd
                .list(b"")
                .map_err(|e| fail(&to, e))?
                .unwrap_or_default()
                .is_empty()
            {
                return Err(format!("{to}: not empty; back up into an empty prefix").into());
            }
            let n =
                copy(&Bitcask::new(std::sync::Arc::new(store)), &etcd).map_err(|e| fail(&to, e))?;
            println!("copied {n} records from {} into {to}", source.display());
            Ok(())
        }
        (Some(_), Some(_)) => Err(
            "from one etcd prefix to another: back up into a data directory, then from it"
                .to_string()
                .into(),
        ),
        (None, None) => Err("not an etcd backup".to_string().into()),
    }
}

/// Calls `f` on every entry below `dir` (not `dir` itself), parents
/// before their entries.
fn walk(
    s: &dyn Storage,
    dir: &[u8],
    f: &mut impl FnMut(&[u8], EntryKind) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut todo = vec![dir.to_vec()];
    while let Some(d) = todo.pop() {
        for (name, kind) in s.list(&d)?.unwrap_or_default() {
            let key = engine::tree::join(&d, &name);
            f(&key, kind)?;
            if kind == EntryKind::Folder {
                todo.push(key);
            }
        }
    }
    Ok(())
}

/// Reads a pinned value from the start.
struct Reader<'a> {
    value: &'a Value,
    at: u64,
}

impl<'a> Reader<'a> {
    fn new(value: &'a Value) -> Reader<'a> {
        Reader { value, at: 0 }
    }
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let got = self
            .value
            .bytes(self.at, buf.len())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        buf[..got.len()].copy_from_slice(&got);
        self.at += got.len() as u64;
        Ok(got.len())
    }
}
