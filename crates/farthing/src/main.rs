//! The `farthing` binary: a thin command-line layer over the libraries.
//!
//! Commands parse their arguments, call into `farthing-core` / `farthing-store`, and print.
//! No ledger rule lives here.

mod bench;
mod demo;
mod internal;
mod server_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use farthing_store::{audit, DatabaseUrl};

/// farthing: a self-hosted micropayment server.
#[derive(Parser)]
#[command(name = "farthing", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: the Merchant API, the checkout page, webhooks.
    Serve(server_cli::ServeArgs),
    /// Run a ready-to-try shop in test mode and print how to use it.
    Demo(server_cli::ServeArgs),
    /// Manage merchants.
    #[command(subcommand)]
    Merchant(MerchantCommand),
    /// Check the ledger invariants (SPEC L5) of a database; exits 1 when any is broken.
    Audit {
        /// Database URL or path, e.g. sqlite:///var/lib/farthing/farthing.db.
        #[arg(long, env = "FARTHING_DATABASE", default_value = "data/farthing.db")]
        database: String,
    },
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Helpers for farthing's own tests; not a stable interface.
    #[command(subcommand, hide = true)]
    Internal(internal::InternalCommand),
}

#[derive(Subcommand)]
enum MerchantCommand {
    /// Create a merchant and print its id and its live and test secret keys (shown once).
    Create(server_cli::MerchantCreateArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Drive the ledger through the real store in a fresh database on disk and report durable
    /// transfers per second and commit latency.
    Ledger(bench::LedgerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => server_cli::serve(&args),
        Command::Demo(args) => server_cli::demo(&args),
        Command::Merchant(MerchantCommand::Create(args)) => server_cli::merchant_create(&args),
        Command::Audit { database } => run_audit(&database),
        Command::Bench(BenchCommand::Ledger(args)) => bench::run_ledger(&args),
        Command::Internal(command) => internal::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn database_path(url: &str) -> anyhow::Result<PathBuf> {
    match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite(path) => Ok(path),
    }
}

fn run_audit(database: &str) -> anyhow::Result<ExitCode> {
    let path = database_path(database)?;
    let report = audit::audit_path(&path)?;
    println!("audit of {}", path.display());
    println!("{report}");
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
