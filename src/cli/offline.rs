//! The subcommands that work on an unmounted data directory. Each failure
//! is one line naming the data directory or the key, with its exit code.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use caskfs::engine::{
    self, BatchOp, EntryKind, Meta, Options, S_IFDIR, Store, check as check_store, repair,
};
use caskfs::exit::{Code, Failure};
use caskfs::report;

fn engine_err(e: engine::Error) -> Failure {
    Failure::engine(&e)
}

/// An engine error about a key, with the data directory it was asked of.
fn key_err(dir: &Path) -> impl Fn(engine::Error) -> Failure + '_ {
    move |e| {
        let f = Failure::engine(&e);
        Failure::new(f.code, format!("{}: {}", dir.display(), f.msg))
    }
}

fn open_existing(dir: &Path, read_only: bool) -> Result<Store, Failure> {
    let opts = Options {
        create_if_missing: false,
        read_only,
        ..Options::default()
    };
    Store::open(dir, opts).map_err(engine_err)
}

fn stdout_err(e: std::io::Error) -> Failure {
    Failure::from(format!("writing stdout: {e}"))
}

/// Stores `value` (stdin when `None`) at `key`, creating the folders above
/// it that are missing, all in one atomic batch.
pub fn put(dir: &Path, key: &str, value: Option<String>) -> Result<(), Failure> {
    let store = Store::open(dir, Options::default()).map_err(engine_err)?;
    let value = value_or_stdin(value)?;
    let key = key.as_bytes();
    let mut parents = Vec::new();
    for (i, _) in key.iter().enumerate().filter(|(_, b)| **b == b'/') {
        let parent = &key[..i];
        match store.kind(parent) {
            Some(EntryKind::Folder) => {}
            Some(_) => {
                let shown = String::from_utf8_lossy(parent);
                return Err(format!("{}: \"{shown}\" is not a folder", dir.display()).into());
            }
            None => parents.push(parent),
        }
    }
    let now = engine::to_ns(std::time::SystemTime::now());
    let folder = Meta {
        mode: S_IFDIR | 0o755,
        ..Meta::file(now)
    };
    let mut batch: Vec<BatchOp> = parents
        .into_iter()
        .map(|p| BatchOp::PutWith(p, b"", folder))
        .collect();
    batch.push(BatchOp::Put(key, &value));
    store.write_batch(&batch).map_err(key_err(dir))?;
    store.close().map_err(engine_err)
}

/// `value`, or else what stdin holds.
pub fn value_or_stdin(value: Option<String>) -> Result<Vec<u8>, Failure> {
    match value {
        Some(v) => Ok(v.into_bytes()),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("reading stdin: {e}"))?;
            Ok(buf)
        }
    }
}

pub fn get(dir: &Path, key: &str) -> Result<(), Failure> {
    let store = open_existing(dir, true)?;
    let value = store
        .get(key.as_bytes())
        .map_err(key_err(dir))?
        .ok_or_else(|| {
            Failure::new(
                Code::NotFound,
                format!("{}: key \"{key}\" not found", dir.display()),
            )
        })?;
    std::io::stdout().write_all(&value).map_err(stdout_err)
}

pub fn rm(dir: &Path, key: &str) -> Result<(), Failure> {
    let store = open_existing(dir, false)?;
    store.delete(key.as_bytes()).map_err(key_err(dir))?;
    store.close().map_err(engine_err)
}

/// The entries of `folder` (the top one by default), one per line, folders
/// ending in '/'; with `recursive`, every key below it.
pub fn ls(dir: &Path, folder: Option<&str>, recursive: bool) -> Result<(), Failure> {
    let store = open_existing(dir, true)?;
    let folder = folder.unwrap_or_default().trim_end_matches('/').as_bytes();
    let not_a_folder = |code| {
        let shown = String::from_utf8_lossy(folder);
        Failure::new(
            code,
            format!("{}: \"{shown}\" is not a folder", dir.display()),
        )
    };
    match store.kind(folder) {
        Some(EntryKind::Folder) => {}
        Some(_) => return Err(not_a_folder(Code::Failed)),
        None => return Err(not_a_folder(Code::NotFound)),
    }
    let mut entries = if recursive {
        store.below(folder, usize::MAX)
    } else {
        store.list(folder)
    }
    .ok_or_else(|| not_a_folder(Code::NotFound))?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = std::io::stdout().lock();
    for (name, kind) in entries {
        let slash: &[u8] = if kind == EntryKind::Folder { b"/" } else { b"" };
        out.write_all(&name)
            .and_then(|_| out.write_all(slash))
            .and_then(|_| out.write_all(b"\n"))
            .map_err(stdout_err)?;
    }
    Ok(())
}

/// Segments with their live and dead keys and bytes.
pub fn stats(dir: &Path, json: bool) -> Result<(), Failure> {
    let store = open_existing(dir, true)?;
    let stats = store.stats().map_err(engine_err)?;
    if json {
        println!("{}", report::json(&stats, None));
    } else {
        print!("{}", report::table(&stats, None));
    }
    Ok(())
}

/// Copies the store into `dest` (see `Store::backup`).
pub fn backup(dir: &Path, dest: &Path) -> Result<(), Failure> {
    let opts = Options {
        create_if_missing: false,
        compaction: false,
        ..Options::default()
    };
    let store = Store::open(dir, opts).map_err(engine_err)?;
    let done = store.backup(dest).map_err(engine_err)?;
    println!("{done}");
    store.close().map_err(engine_err)
}

/// Merges every closed segment, the active one closed first.
pub fn compact(dir: &Path) -> Result<(), Failure> {
    let opts = Options {
        create_if_missing: false,
        compaction: false,
        ..Options::default()
    };
    let store = Store::open(dir, opts).map_err(engine_err)?;
    store.roll().map_err(engine_err)?;
    match store.compact().map_err(engine_err)? {
        Some(r) => println!(
            "merged {} segments into {}: {} bytes before, {} after, {} records kept, {} superseded or deleted keys dropped, in {:.3} s",
            r.inputs.len(),
            r.outputs.len(),
            r.bytes_before,
            r.bytes_after,
            r.records_kept,
            r.records_dropped,
            r.duration.as_secs_f64()
        ),
        None => println!("nothing to merge"),
    }
    store.close().map_err(engine_err)
}

/// Checks (and with `repair`, repairs); exit code 1 when damage is found,
/// or remains after the repair.
pub fn check(dir: &Path, repair_it: bool) -> Result<ExitCode, Failure> {
    let damage = ExitCode::from(Code::Damage as u8);
    let before = check_store(dir).map_err(engine_err)?;
    println!("{before}");
    if !repair_it {
        return Ok(if before.is_clean() {
            ExitCode::SUCCESS
        } else {
            damage
        });
    }
    if before.is_clean() && before.notes.iter().all(|n| !n.contains("no hint")) {
        println!("nothing to repair");
        return Ok(ExitCode::SUCCESS);
    }
    let done = repair(dir).map_err(engine_err)?;
    println!("{done}");
    let after = check_store(dir).map_err(engine_err)?;
    println!("after the repair: {after}");
    Ok(if after.is_clean() {
        ExitCode::SUCCESS
    } else {
        damage
    })
}
