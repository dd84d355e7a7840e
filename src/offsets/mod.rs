//! `duplex offsets translate|sync`: a consumer group's offsets translated exactly from one
//! cluster of a config to another, and committed there (docs/offsets.md).
//!
//! Exit codes, as verify's: 0 every partition translated (and, for sync, committed or
//! already there), 1 some refused or left, 2 an error (bad arguments, unknown group or
//! cluster, a cluster that does not answer).
//!
//! - [`print`]: the table and the JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use duplex_proto::v1 as pb;
use duplex_sync::offsets::{self, OffsetsError, Request, SyncOptions};
use duplex_sync::spec::ClusterSpec;
use regex::Regex;

use crate::api::offsets::{sync_pb, sync_record, translation_pb};
use crate::config::Config;

pub mod print;
pub mod store;

/// Which group, between which clusters of which config.
#[derive(Debug, Clone, clap::Args)]
pub struct Between {
    /// The TOML config file (its clusters; links are not needed: the two clusters need
    /// not be neighbours). Not with --remote, where the service's clusters are used.
    #[arg(long, required_unless_present = "remote", conflicts_with = "remote")]
    pub config: Option<PathBuf>,
    /// Ask the Duplex service at --api (OffsetService): its clusters, runtime ones
    /// included, from its machine; a sync is recorded in its event log.
    #[arg(long)]
    pub remote: bool,
    /// The service's API, with --remote.
    #[command(flatten)]
    pub api: crate::client::ApiArgs,
    /// The cluster where the group committed its offsets.
    #[arg(long)]
    pub from: String,
    /// The cluster to translate them to.
    #[arg(long)]
    pub to: String,
    /// Only topics matching this pattern (anchored regex); default: every topic the
    /// group committed on --from.
    #[arg(long, value_name = "RE")]
    pub topics: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How long a cluster may take to answer (not with --remote: the service's 30 s).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `duplex offsets translate`.
#[derive(Debug, Clone, clap::Args)]
pub struct TranslateArgs {
    /// The consumer group.
    #[arg(long)]
    pub group: String,
    #[command(flatten)]
    pub between: Between,
}

/// `duplex offsets sync`.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// A consumer group (repeatable).
    #[arg(
        long = "group",
        value_name = "NAME",
        required_unless_present = "groups"
    )]
    pub group: Vec<String>,
    /// Every group on --from whose name matches this pattern (anchored regex; needs a
    /// broker that lists groups; not with --remote).
    #[arg(long, value_name = "RE", conflicts_with = "remote")]
    pub groups: Option<String>,
    #[command(flatten)]
    pub between: Between,
    /// Sync again every interval until Ctrl-C (once when not given).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// Commit a translated offset below the group's offset on --to (moving it back).
    #[arg(long)]
    pub allow_rewind: bool,
    /// Do not ask --to whether the group has members. Only for brokers that do not
    /// answer DescribeGroups (librdkafka's mock cluster): committing for a group whose
    /// consumers are running moves them under their feet.
    #[arg(long)]
    pub no_member_check: bool,
}

/// An error before or outside any partition: exit code 2.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Offsets(#[from] OffsetsError),
}

struct Resolved {
    from: ClusterSpec,
    to: ClusterSpec,
    topics: Option<Regex>,
    index: Option<duplex_sync::offsets::index::Index>,
}

fn resolve(b: &Between) -> Result<Resolved, CliError> {
    let file = b
        .config
        .as_deref()
        .ok_or_else(|| CliError::Invalid("--config: required without --remote".into()))?;
    let config = Config::load(file).map_err(|e| CliError::Invalid(e.to_string()))?;
    let spec = config.engine_spec();
    let cluster = |flag: &str, id: &str| {
        spec.cluster(id).cloned().map_err(|known| {
            CliError::Invalid(format!(
                "--{flag} {id}: no such cluster in {} (it has {known})",
                file.display()
            ))
        })
    };
    let from = cluster("from", &b.from)?;
    let to = cluster("to", &b.to)?;
    if from.id == to.id {
        return Err(CliError::Invalid(format!(
            "--from and --to are both {}",
            from.id
        )));
    }
    // The index is a cache: one that cannot be opened (a running service holds it)
    // costs a full read, said once.
    let index = config
        .offsets
        .index
        .then(|| store::open(&config.state_dir(file)))
        .and_then(|r| {
            r.map_err(|e| eprintln!("{e}; reading the partitions in full"))
                .ok()
        });
    Ok(Resolved {
        from,
        to,
        topics: b.topics.as_deref().map(anchored).transpose()?,
        index,
    })
}

fn anchored(re: &str) -> Result<Regex, CliError> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| CliError::Invalid(format!("--topics {re}: {e}")))
}

fn request<'a>(group: &'a str, r: &'a Resolved, b: &Between) -> Request<'a> {
    Request {
        group,
        from: &r.from,
        to: &r.to,
        topics: r.topics.as_ref(),
        timeout: b.timeout,
        index: r.index.as_ref(),
    }
}

fn exit(result: Result<bool, CliError>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs `duplex offsets translate`.
pub fn translate_cli(args: &TranslateArgs) -> ExitCode {
    let b = &args.between;
    if b.remote {
        return crate::client::run(async {
            let mut c = b.api.connect().await?;
            let t = c
                .offsets
                .translate_offsets(pb::TranslateOffsetsRequest {
                    group: args.group.clone(),
                    from: b.from.clone(),
                    to: b.to.clone(),
                    topics: b.topics.clone().unwrap_or_default(),
                })
                .await
                .map_err(|s| crate::client::status_error("TranslateOffsets", s))?
                .into_inner();
            print::translation(&t, b.json);
            Ok(ExitCode::from(if t.complete { 0 } else { 1 }))
        });
    }
    exit((|| {
        let r = resolve(b)?;
        let t = offsets::translate(&request(&args.group, &r, b))?;
        print::translation(&translation_pb(&t), b.json);
        Ok(t.complete())
    })())
}

/// Where a sync runs: here against the config's clusters, or in the service.
enum Syncer {
    Local(Resolved, SyncOptions),
    Remote(tokio::runtime::Runtime, crate::client::Clients),
}

impl Syncer {
    fn sync(&mut self, args: &SyncArgs, group: &str) -> Result<pb::GroupOffsetsSync, String> {
        match self {
            Syncer::Local(r, opts) => offsets::sync_group(&request(group, r, &args.between), *opts)
                .map(|s| sync_pb(&sync_record(&s), 0))
                .map_err(|e| e.to_string()),
            Syncer::Remote(rt, c) => {
                let b = &args.between;
                let req = pb::SyncGroupOffsetsRequest {
                    group: group.to_string(),
                    from: b.from.clone(),
                    to: b.to.clone(),
                    topics: b.topics.clone().unwrap_or_default(),
                    allow_rewind: args.allow_rewind,
                    skip_member_check: args.no_member_check,
                    request_id: String::new(),
                };
                rt.block_on(c.offsets.sync_group_offsets(req))
                    .map(tonic::Response::into_inner)
                    .map_err(|s| format!("SyncGroupOffsets: {:?}: {}", s.code(), s.message()))
            }
        }
    }
}

/// Runs `duplex offsets sync`. A group that fails (no offsets in --topics, a cluster
/// that does not answer) is reported and the others are synced; the exit code is 2 when
/// any failed, else 1 when any was refused or left, else 0. With --interval every round
/// runs whatever the last one met, and the code is the last round's.
pub fn sync_cli(args: &SyncArgs) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    if args.interval.is_some() {
        let stop = stop.clone();
        crate::verify::on_signal(move || stop.store(true, Ordering::SeqCst));
    }
    let mut syncer = if args.between.remote {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        match rt.block_on(args.between.api.connect()) {
            Ok(c) => Syncer::Remote(rt, c),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        }
    } else {
        match resolve(&args.between) {
            Ok(r) => {
                let opts = SyncOptions {
                    allow_rewind: args.allow_rewind,
                    check_members: !args.no_member_check,
                };
                Syncer::Local(r, opts)
            }
            Err(e) => return exit(Err(e)),
        }
    };
    loop {
        let code = sync_round(args, &mut syncer);
        let Some(every) = args.interval else {
            return ExitCode::from(code);
        };
        let until = std::time::Instant::now() + every;
        while std::time::Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return ExitCode::from(code);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One round of sync over every group: its exit code.
fn sync_round(args: &SyncArgs, syncer: &mut Syncer) -> u8 {
    let groups = match syncer {
        Syncer::Local(r, _) => groups(args, r),
        Syncer::Remote(..) => Ok(args.group.clone()),
    };
    let groups = match groups {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut code = 0;
    for g in &groups {
        match syncer.sync(args, g) {
            Ok(s) => {
                print::sync(&s, args.between.json);
                if !s.synced {
                    code = code.max(1);
                }
            }
            Err(e) => {
                eprintln!("error: group {g}: {e}");
                code = 2;
            }
        }
    }
    code
}

/// The groups to sync: those named, and those on --from matching --groups.
fn groups(args: &SyncArgs, r: &Resolved) -> Result<Vec<String>, CliError> {
    let mut out = args.group.clone();
    if let Some(re) = &args.groups {
        let re = Regex::new(&format!("^(?:{re})$"))
            .map_err(|e| CliError::Invalid(format!("--groups {re}: {e}")))?;
        let listed =
            offsets::group::list(&r.from, args.between.timeout).map_err(OffsetsError::from)?;
        out.extend(listed.into_iter().filter(|g| re.is_match(g)));
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(CliError::Invalid(format!(
            "--groups {}: no group on {} matches",
            args.groups.as_deref().unwrap_or_default(),
            r.from.id
        )));
    }
    Ok(out)
}
