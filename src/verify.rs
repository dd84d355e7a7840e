//! `duplex verify`: the parity proof between clusters of a config, as a command.
//!
//! Exit codes: 0 parity, 1 discrepancies, 2 errors (bad arguments, unreachable cluster,
//! store of another run).

// VerifyError carries the client's error; it is returned once per run, never per record.
#![allow(clippy::result_large_err)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use duplex_sync::flow::group_id;
use duplex_verifier::report::text;
use duplex_verifier::run::{self, ProgressLine};
use duplex_verifier::store::Store;
use duplex_verifier::{
    OffsetRule, OffsetRules, ReplicationFlow, Report, Verdict, VerifyError, VerifySpec,
};
use regex::Regex;

use crate::config::Config;

/// The command line of `duplex verify`, already parsed.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The TOML config file: its clusters, and the checkpoints of its links' flows (where
    /// replication began; links are not required).
    #[arg(long)]
    pub config: PathBuf,
    /// Cluster ids to compare, the source first: `--between onprem,msk`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub between: Vec<String>,
    /// Regular expression selecting topics (whole name); internal `__*` topics never are.
    #[arg(long, default_value = ".*")]
    pub topics: String,
    /// Regular expression of topics to leave out.
    #[arg(long)]
    pub exclude: Option<String>,
    /// Topics copied by other tools (no Duplex provenance): compared by position.
    #[arg(long, value_name = "REGEX")]
    pub positional: Option<String>,
    /// Compacted topics: the latest value per key is compared, not the history.
    #[arg(long, value_name = "REGEX")]
    pub compacted: Option<String>,
    /// Header left out of fingerprints (repeatable), e.g. `--ignore-header __mskmr`.
    #[arg(long = "ignore-header", value_name = "NAME")]
    pub ignore_headers: Vec<String>,
    /// Where comparison starts, `CLUSTER[:TOPIC[:PARTITION]]=OFFSET` (repeatable).
    /// Identity mode: origin offsets below it are out of scope (replication began
    /// there). Positional mode: that side's sequence starts there.
    #[arg(long, value_name = "RULE")]
    pub from: Vec<OffsetRule>,
    /// Watermark instead of the end offsets at the start of the run,
    /// `CLUSTER[:TOPIC[:PARTITION]]=OFFSET` (repeatable).
    #[arg(long, value_name = "RULE")]
    pub watermark: Vec<OffsetRule>,
    /// Directory for parity.json and parity.html.
    #[arg(long, default_value = "duplex-report")]
    pub report: PathBuf,
    /// RocksDB store; a rerun resumes from it. Default: .duplex/verify-<clusters>.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Discrepancy samples kept per partition.
    #[arg(long, default_value_t = 20)]
    pub max_samples: usize,
    /// Read at most this many records per second per side.
    #[arg(long)]
    pub max_rate: Option<u64>,
    /// Keep verifying as records arrive, writing the report after every pass, until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Pause between passes with --follow.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Records looked ahead on each side to realign positional sequences.
    #[arg(long, default_value_t = 1000)]
    pub align_window: usize,
    /// Fail when a side makes no progress this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,
}

fn regex(flag: &str, text: &str) -> Result<Regex, VerifyError> {
    Regex::new(&format!("^(?:{text})$"))
        .map_err(|e| VerifyError::Invalid(format!("{flag}: invalid regular expression: {e}")))
}

/// Builds the verification from the arguments and the config's clusters.
pub fn spec(args: &VerifyArgs, config: &Config) -> Result<VerifySpec, VerifyError> {
    let engine = config.engine_spec();
    if args.between.len() < 2 {
        return Err(VerifyError::Invalid(
            "--between: name at least two cluster ids, the source first".into(),
        ));
    }
    let mut sides = Vec::new();
    for id in &args.between {
        if sides
            .iter()
            .any(|c: &duplex_sync::spec::ClusterSpec| &c.id == id)
        {
            return Err(VerifyError::Invalid(format!(
                "--between: cluster {id:?} is named twice"
            )));
        }
        let known: Vec<&str> = engine.clusters.iter().map(|c| c.id.as_str()).collect();
        let c = engine
            .clusters
            .iter()
            .find(|c| &c.id == id)
            .ok_or_else(|| {
                VerifyError::Invalid(format!(
                    "--between: unknown cluster {id:?} (the config has {})",
                    known.join(", ")
                ))
            })?;
        sides.push(c.clone());
    }
    for (flag, rules) in [("--from", &args.from), ("--watermark", &args.watermark)] {
        if let Some(r) = rules.iter().find(|r| {
            !args.between.contains(&r.cluster) && !engine.clusters.iter().any(|c| c.id == r.cluster)
        }) {
            return Err(VerifyError::Invalid(format!(
                "{flag}: unknown cluster {:?}",
                r.cluster
            )));
        }
    }
    let store_dir = args
        .store
        .clone()
        .unwrap_or_else(|| Path::new(".duplex").join(format!("verify-{}", args.between.join("-"))));
    let mut spec = VerifySpec::new(sides, regex("--topics", &args.topics)?, store_dir);
    spec.exclude = args
        .exclude
        .as_deref()
        .map(|r| regex("--exclude", r))
        .transpose()?;
    spec.positional = args
        .positional
        .as_deref()
        .map(|r| regex("--positional", r))
        .transpose()?;
    spec.compacted = args
        .compacted
        .as_deref()
        .map(|r| regex("--compacted", r))
        .transpose()?;
    // The config's other clusters: an origin among them is asked where it ends, so a
    // tail of its records that reached neither side is reported.
    spec.origins = engine
        .clusters
        .iter()
        .filter(|c| !args.between.contains(&c.id))
        .cloned()
        .collect();
    spec.ignored_headers = args.ignore_headers.clone();
    spec.from = OffsetRules(args.from.clone());
    spec.watermarks = OffsetRules(args.watermark.clone());
    // Duplex's flows between the sides: their checkpoints say where replication began.
    for link in &engine.links {
        let [a, b] = link.clusters.map(|i| engine.clusters[i].id.as_str());
        if args.between.iter().any(|x| x == a) && args.between.iter().any(|x| x == b) {
            for (source, target) in [(a, b), (b, a)] {
                spec.flows.push(ReplicationFlow {
                    source: source.to_string(),
                    target: target.to_string(),
                    group: group_id(&link.name, source, target),
                });
            }
        }
    }
    spec.max_samples = args.max_samples;
    spec.max_rate = args.max_rate;
    spec.align_window = args.align_window.max(2);
    spec.stall_timeout = args.stall_timeout;
    Ok(spec)
}

/// Runs `duplex verify`.
pub fn run_cli(args: &VerifyArgs) -> ExitCode {
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
    let config = Config::load(&args.config).map_err(|e| VerifyError::Invalid(e.to_string()))?;
    let spec = spec(args, &config)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let first = AtomicBool::new(true);
        ctrlc_handler(move || {
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

fn publish(report: &Report, dir: &Path) -> Result<(), VerifyError> {
    let (json, html) = run::write_report(report, dir)?;
    print!("{}", text::summary(report));
    println!("report: {} and {}", json.display(), html.display());
    Ok(())
}

/// Calls `f` on SIGINT and SIGTERM, from a small thread with its own runtime.
fn ctrlc_handler(f: impl Fn() + Send + 'static) {
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
