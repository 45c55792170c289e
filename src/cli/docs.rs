//! Completion scripts and manual pages, both made from the clap definition
//! so they never disagree with `--help`.

use std::io::Write;
use std::path::Path;

use caskfs::exit::Failure;
use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// Prints the completion script for `shell` on stdout. It is made in
/// memory first: clap_complete panics on a failed write (a closed pipe).
pub fn completions(shell: Shell) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "caskfs", &mut script);
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| Failure::from(format!("writing stdout: {e}")))
}

/// Writes `caskfs.1` and a page per subcommand (`caskfs-mount.1`, ...)
/// into `dir`, creating it.
pub fn man_pages(dir: &Path) -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure::from(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(failed)?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(failed)
}
