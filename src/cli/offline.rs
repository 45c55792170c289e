//! The subcommands that work on an unmounted data directory (`put`, `get`,
//! `rm` and `ls` on an etcd prefix too). Each failure is one line naming
//! the data directory or the key, with its exit code.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use std::sync::Arc;

use caskfs::backend::Log;
use caskfs::backend::etcd::{Etcd, old_layout_advice};
use caskfs::engine::{self, Options, Store, check as check_store, repair};
use caskfs::exit::{Code, Failure};
use caskfs::fs::{CaskFs, Error, Findings, FsOptions, Owner};
use caskfs::report;
use caskfs::schema::keys;
use caskfs::upgrade;
use caskfs::vocab::FileType;

fn engine_err(e: engine::Error) -> Failure {
    Failure::engine(&e)
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

/// The filesystem of a data directory or an etcd prefix, as the commands
/// use it: the local store carried over first if it is in the old layout.
pub struct Target {
    pub fs: CaskFs,
    local: Option<Arc<Store>>,
    /// What to name in messages: the directory or the URL.
    pub shown: String,
}

impl Target {
    /// `create`: a missing data directory is made (`put`); else it is an
    /// error, and nothing is made.
    pub fn open(target: &Path, create: bool) -> Result<Target, Failure> {
        if let Some(url) = super::etcd::url(target).transpose()? {
            let etcd = Etcd::open(&url).map_err(|e| Failure::from(format!("{url}: {e}")))?;
            let fs = CaskFs::load(Arc::new(etcd), fs_options(true)).map_err(|e| match e {
                Error::OldLayout(_) => Failure::from(old_layout_advice(&url.to_string())),
                e => Failure::from(format!("{url}: {e}")),
            })?;
            return Ok(Target {
                fs,
                local: None,
                shown: url.to_string(),
            });
        }
        let opts = Options {
            create_if_missing: create,
            compaction: false,
            ..Options::default()
        };
        let store = Arc::new(Store::open(target, opts).map_err(engine_err)?);
        let shown = target.display().to_string();
        if upgrade::needed(&store) {
            upgrade::carry_over(&store).map_err(|e| Failure::from(format!("{shown}: {e}")))?;
        }
        store.metadata_carried_over();
        let fs = CaskFs::load(Arc::new(Log::new(store.clone())), fs_options(false))
            .map_err(|e| Failure::from(format!("{shown}: {e}")))?;
        Ok(Target {
            fs,
            local: Some(store),
            shown,
        })
    }

    /// A failure about `key`, with the exit code its error means.
    pub fn fail(&self, key: &str, e: Error) -> Failure {
        let code = match e {
            Error::NotFound => Code::NotFound,
            _ => Code::Failed,
        };
        let why = match e {
            Error::NotFound => "not found".to_string(),
            Error::InvalidName | Error::NameTooLong => format!("invalid key: {e}"),
            e => e.to_string(),
        };
        Failure::new(code, format!("{}: key \"{key}\": {why}", self.shown))
    }

    /// The failure of a put below a file: names the first file above `key`.
    fn file_above(&self, key: &str) -> Failure {
        let file = key
            .match_indices('/')
            .map(|(at, _)| &key[..at])
            .find(|above| matches!(self.fs.resolve(above.as_bytes()), Ok((_, kind)) if kind != FileType::Directory))
            .unwrap_or(key);
        Failure::new(
            Code::Failed,
            format!("{}: \"{file}\" is not a folder", self.shown),
        )
    }

    /// Commits what is open and closes the store.
    pub fn close(self) -> Result<(), Failure> {
        self.fs.shutdown();
        drop(self.fs);
        match self.local.map(Arc::try_unwrap) {
            Some(Ok(store)) => store.close().map_err(engine_err),
            _ => Ok(()),
        }
    }
}

fn fs_options(shared: bool) -> FsOptions {
    FsOptions {
        owner: Owner::current(),
        read_only: false,
        cache_reads: false,
        shared,
        max_file_size: caskfs::fs::MAX_FILE_SIZE,
    }
}

/// Stores `value` (stdin when `None`) at `key`, creating the folders above
/// it that are missing.
pub fn put(target: &Path, key: &str, value: Option<String>) -> Result<(), Failure> {
    let t = Target::open(target, true)?;
    let value = value_or_stdin(value)?;
    t.fs.write_path(key.as_bytes(), &mut value.as_slice())
        .map_err(|e| match e {
            Error::NotADirectory => t.file_above(key),
            e => t.fail(key, e),
        })?;
    t.close()
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

pub fn get(target: &Path, key: &str) -> Result<(), Failure> {
    let t = Target::open(target, false)?;
    let mut out = std::io::stdout().lock();
    t.fs.read_path(key.as_bytes(), &mut |b| out.write_all(b))
        .map_err(|e| t.fail(key, e))?;
    out.flush().map_err(stdout_err)?;
    t.close()
}

pub fn rm(target: &Path, key: &str) -> Result<(), Failure> {
    let t = Target::open(target, false)?;
    t.fs.remove_path(key.as_bytes())
        .map_err(|e| t.fail(key, e))?;
    t.close()
}

/// The entries of `folder` (the top one by default), one per line, folders
/// ending in '/'; with `recursive`, every path below it.
pub fn ls(target: &Path, folder: Option<&str>, recursive: bool) -> Result<(), Failure> {
    let t = Target::open(target, false)?;
    let folder = folder.unwrap_or_default().trim_end_matches('/');
    let not_a_folder =
        |code| Failure::new(code, format!("{}: \"{folder}\" is not a folder", t.shown));
    let entries =
        t.fs.list_path(folder.as_bytes(), recursive)
            .map_err(|e| match e {
                Error::NotADirectory => not_a_folder(Code::Failed),
                Error::NotFound => not_a_folder(Code::NotFound),
                e => t.fail(folder, e),
            })?;
    let mut out = std::io::stdout().lock();
    // Below a folder, every path in full.
    let under: Vec<u8> = match (recursive, folder.is_empty()) {
        (true, false) => [folder.as_bytes(), b"/"].concat(),
        _ => Vec::new(),
    };
    for (name, kind) in entries {
        let slash: &[u8] = if kind == FileType::Directory {
            b"/"
        } else {
            b""
        };
        out.write_all(&under)
            .and_then(|_| out.write_all(&name))
            .and_then(|_| out.write_all(slash))
            .and_then(|_| out.write_all(b"\n"))
            .map_err(stdout_err)?;
    }
    drop(out);
    t.close()
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

/// Checks the store and then the filesystem in it (and with `repair`,
/// repairs both); exit code 1 when damage is found, or remains after the
/// repair.
pub fn check(dir: &Path, repair_it: bool) -> Result<ExitCode, Failure> {
    let damage = ExitCode::from(Code::Damage as u8);
    let before = check_store(dir).map_err(engine_err)?;
    println!("{before}");
    let engine_clean = before.is_clean() && before.notes.iter().all(|n| !n.contains("no hint"));
    let mut lost_names = Vec::new();
    if repair_it && !engine_clean {
        let done = repair(dir).map_err(engine_err)?;
        println!("{done}");
        lost_names = done.lost_values;
        let after = check_store(dir).map_err(engine_err)?;
        println!("after the repair: {after}");
        if !after.is_clean() {
            return Ok(damage);
        }
    }
    let found = check_tree(dir, repair_it, &lost_names)?;
    let clean = match repair_it {
        true => found.is_none_or(|f| f.problems.is_empty()),
        false => before.is_clean() && found.is_none_or(|f| f.problems.is_empty()),
    };
    if repair_it && engine_clean && clean {
        println!("nothing to repair");
    }
    Ok(if clean { ExitCode::SUCCESS } else { damage })
}

/// The filesystem's check (`None` for a store in the old layout, which
/// is carried over when first opened); with `repair_it`, what it found
/// mended and checked again: what remains. `lost` are the keys the
/// engine's repair lost: the names among them are told by path.
fn check_tree(dir: &Path, repair_it: bool, lost: &[Vec<u8>]) -> Result<Option<Findings>, Failure> {
    let opts = Options {
        read_only: !repair_it,
        compaction: false,
        ..Options::default()
    };
    let store = Arc::new(Store::open(dir, opts).map_err(engine_err)?);
    let shown = dir.display().to_string();
    let fail = |e: Error| Failure::from(format!("{shown}: {e}"));
    if upgrade::needed(&store) {
        println!("filesystem: in the old layout, carried over when first opened");
        return Ok(None);
    }
    let load = || {
        let mut o = fs_options(false);
        o.read_only = !repair_it;
        CaskFs::load(Arc::new(Log::new(store.clone())), o).map_err(fail)
    };
    let fs = load()?;
    for (parent, name) in lost.iter().filter_map(|k| keys::entry_of(k)) {
        let mut path = fs
            .folder_path(parent)
            .unwrap_or_else(|| format!("<folder {parent}>").into_bytes());
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        let shown = String::from_utf8_lossy(&path).escape_debug().to_string();
        println!("LOST: \"{shown}\": its name was in the damaged bytes");
    }
    let mut found = fs.check().map_err(fail)?;
    println!("{found}");
    if repair_it && !found.problems.is_empty() {
        fs.repair(&found).map_err(fail)?;
        drop(fs);
        found = load()?.check().map_err(fail)?;
        println!("after the repair: {found}");
    } else {
        drop(fs);
    }
    match Arc::try_unwrap(store) {
        Ok(store) => store.close().map_err(engine_err)?,
        Err(_) => {
            return Err(Failure::from(format!(
                "{shown}: still in use after the check"
            )));
        }
    }
    Ok(Some(found))
}
