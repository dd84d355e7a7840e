//! `duplex verify`: the parity proof between clusters of a config, as a command.
//!
//! Exit codes: 0 parity, 1 discrepancies, 2 errors (bad arguments, unreachable cluster,
//! store of another run).
//!
//! - [`selection`]: what a run compares, from flags or from the API, as a `VerifySpec`.
//! - [`runs`]: runs inside the service (StartVerification), recorded in its event log.
//! - [`remote`]: `duplex verify --remote`, a run in the service followed from the CLI.

// VerifyError carries the client's error; it is returned once per run, never per record.
#![allow(clippy::result_large_err)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use duplex_verifier::report::text;
use duplex_verifier::run::{self, ProgressLine};
use duplex_verifier::store::Store;
use duplex_verifier::{Report, Verdict, VerifyError, VerifySpec};

use crate::config::Config;

pub mod remote;
pub mod runs;
pub mod selection;

pub use selection::Selection;

/// The command line of `duplex verify`, already parsed.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The TOML config file: its clusters, and the checkpoints of its links' flows (where
    /// replication began; links are not required). Not with --remote, where the
    /// service's own config says it.
    #[arg(long, required_unless_present = "remote", conflicts_with = "remote")]
    pub config: Option<PathBuf>,
    /// What to compare.
    #[command(flatten)]
    pub selection: Selection,
    /// Run the verification in the Duplex service at --api (its clusters, its machine)
    /// and follow it with a progress bar; the report is fetched and written to --report.
    #[arg(long)]
    pub remote: bool,
    /// The service's API, with --remote.
    #[command(flatten)]
    pub api: crate::client::ApiArgs,
    /// Directory for parity.json and parity.html.
    #[arg(long, default_value = "duplex-report")]
    pub report: PathBuf,
    /// RocksDB store; a rerun resumes from it. Default: .duplex/verify-<clusters>.
    /// Not with --remote: the service keeps its stores in its state directory.
    #[arg(long, conflicts_with = "remote")]
    pub store: Option<PathBuf>,
    /// Keep verifying as records arrive, writing the report after every pass, until Ctrl-C.
    #[arg(long, conflicts_with = "remote")]
    pub follow: bool,
    /// Pause between passes with --follow.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

/// Builds the verification from the arguments and the config's clusters.
pub fn spec(args: &VerifyArgs, config: &Config) -> Result<VerifySpec, VerifyError> {
    let store_dir = args.store.clone().unwrap_or_else(|| {
        Path::new(".duplex").join(format!("verify-{}", args.selection.between.join("-")))
    });
    selection::spec(&args.selection, &config.engine_spec(), store_dir)
        .map_err(|e| VerifyError::Invalid(format!("--{e}")))
}

/// Runs `duplex verify`.
pub fn run_cli(args: &VerifyArgs) -> ExitCode {
    if args.remote {
        return crate::client::run(remote::verify(args));
    }
    match verify(args) {
        Ok(Verdict::Pass) => ExitCode::SUCCESS,
        Ok(Verdict::Fail) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn verify(args: &VerifyArgs) -> Result<Verdict, VerifyError> {
    let file = args
        .config
        .as_deref()
        .ok_or_else(|| VerifyError::Invalid("--config: required without --remote".into()))?;
    let config = Config::load(file).map_err(|e| VerifyError::Invalid(e.to_string()))?;
    let spec = spec(args, &config)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let first = AtomicBool::new(true);
        on_signal(move || {
            if !first.swap(false, Ordering::SeqCst) {
                std::process::exit(2);
            }
            stop.store(true, Ordering::SeqCst);
        });
    }
    if let Some(parent) = spec
        .store_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            VerifyError::Invalid(format!("--store {}: {e}", spec.store_dir.display()))
        })?;
    }
    let store = Store::open(&spec.store_dir, &spec.signature())?;
    let terminal = std::io::stderr().is_terminal();
    let progress = move |p: &ProgressLine| {
        if terminal {
            eprint!("\r{p}   ");
        } else {
            eprintln!("{p}");
        }
    };
    let mut last: Option<Verdict> = None;
    loop {
        let report = match run::pass(&store, &spec, &stop, &progress) {
            Ok(r) => r,
            Err(VerifyError::Stopped) if last.is_some() => break,
            Err(e) => return Err(e),
        };
        if terminal {
            eprintln!();
        }
        publish(&report, &args.report)?;
        last = Some(report.verdict);
        if !args.follow {
            break;
        }
        let until = std::time::Instant::now() + args.interval;
        while std::time::Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return Ok(report.verdict);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(last.unwrap_or(Verdict::Fail))
}

/// Writes the report into `dir` and prints its summary and where it lies.
pub fn publish(report: &Report, dir: &Path) -> Result<(), VerifyError> {
    let (json, html) = run::write_report(report, dir)?;
    print!("{}", text::summary(report));
    println!("report: {} and {}", json.display(), html.display());
    Ok(())
}

/// Calls `f` on SIGINT and SIGTERM, from a small thread with its own runtime.
pub fn on_signal(f: impl Fn() + Send + 'static) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => f(),
                    _ = term.recv() => f(),
                }
            }
        });
    });
}
