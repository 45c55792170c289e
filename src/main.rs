//! The `caskfs` command: mount a data directory, or work on one offline.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use caskfs::engine::{BatchOp, EntryKind, Meta, Options, S_IFDIR, Store, check, repair};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "caskfs",
    version,
    about = "A log-structured key-value store mounted as a directory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount DATA_DIR on MOUNTPOINT and serve it until unmounted.
    Mount(caskfs::mount::MountArgs),
    /// Store a value (read from stdin when VALUE is omitted). A KEY such
    /// as a/b/c is a path: missing folders above it (a, a/b) are created
    /// with it, as mkdir -p would.
    Put {
        data_dir: PathBuf,
        key: String,
        value: Option<String>,
    },
    /// Print a value's raw bytes to stdout.
    Get { data_dir: PathBuf, key: String },
    /// Delete a key.
    Rm { data_dir: PathBuf, key: String },
    /// List the entries of a folder (the top one by default), one per
    /// line, folders ending in '/'.
    Ls {
        data_dir: PathBuf,
        /// A folder: a key path such as shop/products.
        folder: Option<String>,
        /// Every key below the folder, as full paths.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Show segments with their live and dead keys and bytes.
    Stats { data_dir: PathBuf },
    /// Verify every record and hint; exit non-zero on damage.
    Check {
        data_dir: PathBuf,
        /// Rewrite damaged hints and move damaged bytes aside into
        /// DATA_DIR/lost+found, so the rest is served again; prints the keys
        /// that lost their latest value.
        #[arg(long)]
        repair: bool,
    },
    /// Merge all closed segments now, printing sizes before and after.
    Compact { data_dir: PathBuf },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,fuser::session=error"),
    )
    .init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("caskfs: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn open_existing(dir: &PathBuf, read_only: bool) -> Result<Store, String> {
    let opts = Options {
        create_if_missing: false,
        read_only,
        ..Options::default()
    };
    Store::open(dir, opts).map_err(|e| e.to_string())
}

/// Stores `value` at `key`, creating the folders above it that are missing,
/// all in one atomic batch.
fn put_with_parents(store: &Store, key: &[u8], value: &[u8]) -> Result<(), String> {
    let mut parents = Vec::new();
    for (i, _) in key.iter().enumerate().filter(|(_, b)| **b == b'/') {
        let dir = &key[..i];
        match store.kind(dir) {
            Some(EntryKind::Folder) => {}
            Some(_) => {
                return Err(format!(
                    "\"{}\" is not a folder",
                    String::from_utf8_lossy(dir)
                ));
            }
            None => parents.push(dir),
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let folder = Meta {
        mode: S_IFDIR | 0o755,
        ..Meta::file(now)
    };
    let mut batch: Vec<BatchOp> = parents
        .into_iter()
        .map(|dir| BatchOp::PutWith(dir, b"", folder))
        .collect();
    batch.push(BatchOp::Put(key, value));
    store.write_batch(&batch).map_err(|e| e.to_string())
}

fn run(command: Command) -> Result<ExitCode, String> {
    let err = |e: caskfs::engine::Error| e.to_string();
    match command {
        Command::Mount(args) => caskfs::mount::run(args)?,
        Command::Put {
            data_dir,
            key,
            value,
        } => {
            let store = Store::open(&data_dir, Options::default()).map_err(err)?;
            let value = match value {
                Some(v) => v.into_bytes(),
                None => {
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut buf)
                        .map_err(|e| format!("reading stdin: {e}"))?;
                    buf
                }
            };
            put_with_parents(&store, key.as_bytes(), &value)?;
            store.close().map_err(err)?;
        }
        Command::Get { data_dir, key } => {
            let store = open_existing(&data_dir, true)?;
            let value = store
                .get(key.as_bytes())
                .map_err(err)?
                .ok_or_else(|| format!("key \"{key}\" not found"))?;
            std::io::stdout()
                .write_all(&value)
                .map_err(|e| format!("writing stdout: {e}"))?;
        }
        Command::Rm { data_dir, key } => {
            let store = open_existing(&data_dir, false)?;
            store.delete(key.as_bytes()).map_err(err)?;
            store.close().map_err(err)?;
        }
        Command::Ls {
            data_dir,
            folder,
            recursive,
        } => {
            let store = open_existing(&data_dir, true)?;
            let dir = folder.unwrap_or_default();
            let dir = dir.trim_end_matches('/').as_bytes();
            let no_folder = || format!("\"{}\" is not a folder", String::from_utf8_lossy(dir));
            if store.kind(dir) != Some(EntryKind::Folder) {
                return Err(no_folder());
            }
            let mut entries = if recursive {
                store.below(dir, usize::MAX)
            } else {
                store.list(dir)
            }
            .ok_or_else(no_folder)?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = std::io::stdout().lock();
            for (name, kind) in entries {
                let slash: &[u8] = if kind == EntryKind::Folder { b"/" } else { b"" };
                out.write_all(&name)
                    .and_then(|_| out.write_all(slash))
                    .and_then(|_| out.write_all(b"\n"))
                    .map_err(|e| format!("writing stdout: {e}"))?;
            }
        }
        Command::Stats { data_dir } => {
            let store = open_existing(&data_dir, true)?;
            let stats = store.stats().map_err(err)?;
            println!(
                "{:>16} {:>6} {:>12} {:>10} {:>10} {:>12} {:>12}",
                "segment",
                "state",
                "file bytes",
                "live keys",
                "dead keys",
                "live bytes",
                "dead bytes"
            );
            for s in &stats.segments {
                println!(
                    "{:>16} {:>6} {:>12} {:>10} {:>10} {:>12} {:>12}",
                    s.id,
                    if s.active { "active" } else { "closed" },
                    s.file_bytes,
                    s.live_keys,
                    s.dead_keys,
                    s.live_bytes,
                    s.dead_bytes
                );
            }
            println!(
                "{} live keys, {} bytes of live values",
                stats.live_keys, stats.live_value_bytes
            );
            match &stats.last_merge {
                Some(line) => println!("last merge {line}"),
                None => println!("no merge yet"),
            }
        }
        Command::Compact { data_dir } => {
            let opts = Options {
                create_if_missing: false,
                compaction: false,
                ..Options::default()
            };
            let store = Store::open(&data_dir, opts).map_err(err)?;
            // The active segment is closed first so that everything is merged.
            store.roll().map_err(err)?;
            match store.compact().map_err(err)? {
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
            store.close().map_err(err)?;
        }
        Command::Check {
            data_dir,
            repair: false,
        } => {
            let report = check(&data_dir).map_err(err)?;
            println!("{report}");
            if !report.is_clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Check {
            data_dir,
            repair: true,
        } => {
            let before = check(&data_dir).map_err(err)?;
            println!("{before}");
            if before.is_clean() && before.notes.iter().all(|n| !n.contains("no hint")) {
                println!("nothing to repair");
                return Ok(ExitCode::SUCCESS);
            }
            let done = repair(&data_dir).map_err(err)?;
            println!("{done}");
            let after = check(&data_dir).map_err(err)?;
            println!("after the repair: {after}");
            if !after.is_clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
