//! The `duplex` binary: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Duplex keeps N Kafka clusters in sync, active-active.
#[derive(Debug, Parser)]
#[command(name = "duplex", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file and print clusters, links, flows and the routing table.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
        /// Also print the routes of this topic (repeatable): which origins each flow
        /// carries for it, and whether its links connect every cluster that holds it.
        #[arg(long = "topic", value_name = "NAME")]
        topics: Vec<String>,
    },
    /// Run every flow of a config until SIGTERM or Ctrl-C.
    Run {
        /// The TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Prove, record by record, that clusters hold the same data; write a parity report.
    Verify(Box<duplex::verify::VerifyArgs>),
    /// Three in-process mock clusters in a full mesh: replicate and prove exactly-once.
    Demo {
        /// Records produced on each cluster.
        #[arg(long, default_value_t = 2000)]
        records: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // The demo's output is its table; engine logs would drown it.
        Command::Demo { .. } => duplex::telemetry::init_with("warn,librdkafka=error"),
        _ => duplex::telemetry::init(),
    }
    match cli.command {
        Command::CheckConfig { file, topics } => duplex::check::check_config(&file, &topics),
        Command::Run { config } => duplex::run::run_file(&config),
        Command::Demo { records } => duplex::demo::run(records),
        Command::Verify(args) => duplex::verify::run_cli(&args),
    }
}
