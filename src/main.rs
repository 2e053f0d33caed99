//! The `corelane` command: `run`, `check`, `import-twemproxy`, `--version`.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::SocketAddr;
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
    /// Print a control file equivalent to a twemproxy (nutcracker) YAML file.
    #[command(name = "import-twemproxy")]
    ImportTwemproxy {
        /// The twemproxy configuration, like nutcracker.yml.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Also write an `[admin]` section listening on this IP:port.
        #[arg(long, value_name = "ADDR")]
        admin: Option<SocketAddr>,
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
        Cmd::ImportTwemproxy { file, admin } => match corelane::import::import_file(&file, admin) {
            Ok(text) => match std::io::stdout().lock().write_all(text.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("corelane: cannot write the output: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("corelane: {}: {e}", file.display());
                ExitCode::from(2)
            }
        },
    }
}
