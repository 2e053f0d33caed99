//! The `corelane` command: `run`, `check`, `--version`.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "corelane",
    version,
    about = "Thread-per-core L4/L7 data-plane proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy with a control file.
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a control file (and that its addresses can be bound), then exit.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Run { config } => match corelane::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("corelane: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Check { config } => match corelane::check(&config) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("corelane: {}: {e}", config.display());
                ExitCode::FAILURE
            }
        },
    }
}
