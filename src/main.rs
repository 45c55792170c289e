//! The `caskfs` command: mount a data directory, or work on one offline.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,fuser::session=error"),
    )
    .init();
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(f) => {
            eprintln!("caskfs: {f}");
            return ExitCode::from(f.code as u8);
        }
    };
    match cli::run(cli.command) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("caskfs: {f}");
            ExitCode::from(f.code as u8)
        }
    }
}
