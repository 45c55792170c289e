//! The command line: its definition (clap), which also gives the manual
//! pages and completion scripts, and what each subcommand does.
//!
//! - `mount`: `caskfs mount`'s options
//! - `offline`: the subcommands on an unmounted data directory
//! - `live`: those that ask a mounted store's daemon, or work offline
//! - `docs`: completion scripts and manual pages
//! - `fstab`: the calling convention of mount(8) helpers
//! - `progress`: progress bars for long work

mod docs;
mod etcd;
mod fstab;
mod live;
mod mount;
mod offline;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use caskfs::exit::{Code, EXIT_CODES, Failure};
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

#[derive(Parser)]
#[command(
    name = "caskfs",
    version,
    about = "A log-structured key-value store mounted as a directory",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing buys nothing"
)]
pub enum Command {
    /// Mount DATA_DIR (or, with --backend, a prefix of an etcd cluster) on
    /// MOUNTPOINT and serve it until unmounted.
    Mount(mount::MountArgs),
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
    /// Show segments with their live and dead keys and bytes; of a mounted
    /// store (a mountpoint, or its data directory) also what the daemon
    /// served. Of an etcd mount's mountpoint: what the daemon served, its
    /// watch (state, revision seen, lag) and the cluster (members, leader,
    /// revision, database size and quota); of an etcd URL, the prefix's
    /// keys and bytes.
    Stats {
        /// A data directory, an etcd URL, or the mountpoint of either.
        path: PathBuf,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Verify every record and hint; exit 1 on damage. A mounted store is
    /// checked by its daemon, read-only, while it serves.
    Check {
        /// A data directory, or the mountpoint of one.
        path: PathBuf,
        /// Rewrite damaged hints and move damaged bytes aside into
        /// DATA_DIR/lost+found, so the rest is served again; prints the keys
        /// that lost their latest value.
        #[arg(long)]
        repair: bool,
    },
    /// Merge all closed segments now, printing sizes before and after (a
    /// mounted store's daemon does it while it serves).
    Compact {
        /// A data directory, or the mountpoint of one.
        path: PathBuf,
    },
    /// Copy the store as it is now into DEST, a data directory of its own,
    /// while writers go on; into an earlier backup, only what it lacks.
    Backup {
        /// A data directory (mounted or not), or the mountpoint of one.
        source: PathBuf,
        dest: PathBuf,
    },
    /// Print a completion script for SHELL (e.g. `caskfs completions bash
    /// > /etc/bash_completion.d/caskfs`).
    Completions { shell: Shell },
    /// Write the manual pages (caskfs.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// The command line, also when mount(8) or `mount.fuse3` calls caskfs as
/// a mount helper (see `fstab`).
pub fn parse() -> Result<Cli, Failure> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cmd = Cli::command();
    let mut names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
    names.push("help");
    let args = match fstab::translate(&args, &names) {
        None => args,
        Some(translated) => translated?,
    };
    Cli::try_parse_from(args).map_err(|e| {
        use clap::error::ErrorKind;
        if matches!(
            e.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            // Help and version are answers, not failures: clap prints them.
            e.exit();
        }
        // One line, as every failure: clap's message before its usage
        // and tips, and where to look.
        let text = e.to_string();
        let words: Vec<&str> = text
            .lines()
            .take_while(|l| !l.starts_with("Usage:") && !l.trim_start().starts_with("tip:"))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let msg = words.join(" ");
        Failure::new(
            Code::Usage,
            format!("{} (see caskfs --help)", msg.trim_start_matches("error: ")),
        )
    })
}

/// Runs one subcommand; a failure carries its exit code.
pub fn run(command: Command) -> Result<ExitCode, Failure> {
    progress::install();
    match command {
        Command::Mount(args) => caskfs::mount::run(args.options()?)?,
        Command::Put {
            data_dir,
            key,
            value,
        } => offline::put(&data_dir, &key, value)?,
        Command::Get { data_dir, key } => offline::get(&data_dir, &key)?,
        Command::Rm { data_dir, key } => offline::rm(&data_dir, &key)?,
        Command::Ls {
            data_dir,
            folder,
            recursive,
        } => offline::ls(&data_dir, folder.as_deref(), recursive)?,
        Command::Stats { path, json } => {
            if let Some(r) = live::etcd_stats(&path, json) {
                return r;
            }
            match etcd::url(&etcd::prefix_of(&path)).transpose()? {
                Some(url) => etcd::stats(&url, json)?,
                None => return live::stats(&path, json),
            }
        }
        Command::Compact { path } => {
            etcd::not_for_a_prefix(&path, "compact: etcd compacts its own history")?;
            return live::compact(&path);
        }
        Command::Check { path, repair } => {
            etcd::not_for_a_prefix(&path, "check: etcd checks its own data")?;
            return live::check(&path, repair);
        }
        Command::Backup { source, dest } => {
            let source = etcd::prefix_of(&source);
            if etcd::url(&source).is_some() || etcd::url(&dest).is_some() {
                etcd::backup(&source, &dest)?;
            } else {
                return live::backup(&source, &dest);
            }
        }
        Command::Completions { shell } => docs::completions(shell)?,
        Command::Man { dir } => docs::man_pages(&dir)?,
    }
    Ok(ExitCode::SUCCESS)
}
