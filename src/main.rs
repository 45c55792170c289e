//! The `caskfs` command: mount a data directory, or work on one offline.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,fuser::session=error"),
    )
    .init();
    let cli = cli::Cli::parse();
    match cli::run(cli.command) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("caskfs: {f}");
            ExitCode::from(f.code as u8)
        }
    }
}
