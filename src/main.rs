//! The `duplex` binary: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc for every allocation of the process, librdkafka's and RocksDB's included
/// (the crate's `override` feature): with glibc's malloc, allocation and page faults
/// took about a fifth of a flow's CPU (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// After the proof, keep the clusters and flows running and serve the API on
        /// this loopback address until Ctrl-C (e.g. `127.0.0.1:9465`; no tokens, so
        /// loopback only).
        #[arg(long, value_name = "ADDR")]
        serve: Option<std::net::SocketAddr>,
    },
    /// Ask a running service for its clusters, links and flows.
    Status {
        #[command(flatten)]
        api: duplex::client::ApiArgs,
        /// Also print the routes of this topic (repeatable).
        #[arg(long = "topic", value_name = "NAME")]
        topics: Vec<String>,
    },
    /// Pause or resume a flow of a running service.
    Flows {
        #[command(subcommand)]
        action: Target,
    },
    /// Add a link to a running service, or pause or resume both flows of a link.
    Links {
        #[command(subcommand)]
        action: LinkAction,
    },
    /// Add a cluster to a running service, joined by new links, while every cluster is
    /// written: it receives what the others write from the change on, and they what it
    /// writes (docs/topology-changes.md).
    Clusters {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Translate a consumer group's offsets exactly from one cluster to another, or
    /// commit them there (docs/offsets.md).
    Offsets {
        #[command(subcommand)]
        action: OffsetsAction,
    },
    /// Print a running service's event log.
    Events {
        #[command(flatten)]
        api: duplex::client::ApiArgs,
        /// The first sequence number to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Keep printing new events as they are recorded, until interrupted.
        #[arg(long)]
        follow: bool,
        /// Only events of these types (e.g. `VerificationFinished,FlowStateChanged`);
        /// repeat the flag or separate with commas.
        #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
        types: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum Target {
    /// Stop it (after draining what is in flight); it stays stopped until resumed.
    Pause {
        /// The flow (`source->target`) or link name.
        name: String,
        #[command(flatten)]
        api: duplex::client::ApiArgs,
        #[command(flatten)]
        change: duplex::client::change::ChangeArgs,
    },
    /// Start it again from what its target holds.
    Resume {
        /// The flow (`source->target`) or link name.
        name: String,
        #[command(flatten)]
        api: duplex::client::ApiArgs,
        #[command(flatten)]
        change: duplex::client::change::ChangeArgs,
    },
}

#[derive(Debug, Subcommand)]
enum OffsetsAction {
    /// Print, per partition, the group's committed offset on --from, its translation on
    /// --to and how many records it will read again there, or why it is refused.
    Translate(Box<duplex::offsets::TranslateArgs>),
    /// Commit the translated offsets on --to, once or every --interval: only for groups
    /// with no active members there, never moving a group back without --allow-rewind.
    Sync(Box<duplex::offsets::SyncArgs>),
}

#[derive(Debug, Subcommand)]
enum ClusterAction {
    /// Add a cluster, linked to one or more clusters of the mesh.
    Add(Box<duplex::client::clusters::AddClusterArgs>),
}

#[derive(Debug, Subcommand)]
enum LinkAction {
    #[command(flatten)]
    Change(Target),
    /// Add a link between two clusters of the running service's config, while every
    /// cluster is written: nothing is lost or delivered twice (docs/topology-changes.md).
    Add {
        /// The new link's name.
        name: String,
        /// Its two clusters, `A,B`.
        #[arg(long, value_delimiter = ',', required = true)]
        between: Vec<String>,
        /// A pattern of the topics it replicates (anchored regex; repeatable).
        #[arg(long, required = true)]
        include: Vec<String>,
        /// A pattern of topics it never replicates (repeatable).
        #[arg(long)]
        exclude: Vec<String>,
        /// Wait until the change has settled (`TopologySettled`): records written before
        /// it have arrived by the routes before it, and each origin's order is restored.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        api: duplex::client::ApiArgs,
        #[command(flatten)]
        change: duplex::client::change::ChangeArgs,
    },
    /// Remove a link while every cluster is written: its flows carry what was written
    /// before the removal, then retire; nothing is lost or delivered twice. Refused when
    /// the links left would not connect every cluster.
    Remove {
        /// The link's name.
        name: String,
        /// Wait until the link has drained and is removed (`LinkRemoved`) and the change
        /// has settled (`TopologySettled`).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        api: duplex::client::ApiArgs,
        #[command(flatten)]
        change: duplex::client::change::ChangeArgs,
    },
    /// Change the topics a link replicates while every cluster is written: a topic it
    /// stops selecting is carried until what was written before the change arrived, one
    /// it starts to select from the change on; nothing is lost or delivered twice.
    Topics {
        /// The link's name.
        name: String,
        /// A pattern of the topics it replicates from now on (anchored regex; repeatable).
        #[arg(long, required = true)]
        include: Vec<String>,
        /// A pattern of topics it never replicates (repeatable).
        #[arg(long)]
        exclude: Vec<String>,
        /// Wait until the change has settled (`TopologySettled`).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        api: duplex::client::ApiArgs,
        #[command(flatten)]
        change: duplex::client::change::ChangeArgs,
    },
}

impl Target {
    fn parts(
        &self,
    ) -> (
        duplex::client::change::Change,
        &str,
        &duplex::client::ApiArgs,
        &duplex::client::change::ChangeArgs,
    ) {
        use duplex::client::change::Change;
        match self {
            Target::Pause { name, api, change } => (Change::Pause, name, api, change),
            Target::Resume { name, api, change } => (Change::Resume, name, api, change),
        }
    }
}

fn main() -> ExitCode {
    duplex_sync::alloc::tune();
    let cli = Cli::parse();
    match cli.command {
        // The demo's output is its table; engine logs would drown it.
        Command::Demo { .. } => duplex::telemetry::init_with("warn,librdkafka=error"),
        // A client's output is the answer; its own logs stay quiet.
        Command::Status { .. }
        | Command::Flows { .. }
        | Command::Links { .. }
        | Command::Clusters { .. }
        | Command::Events { .. }
        | Command::Offsets { .. } => duplex::telemetry::init_with("warn"),
        _ => duplex::telemetry::init(),
    }
    match cli.command {
        Command::CheckConfig { file, topics } => duplex::check::check_config(&file, &topics),
        Command::Run { config } => duplex::run::run_file(&config),
        Command::Demo { records, serve } => duplex::demo::run(records, serve),
        Command::Verify(args) => duplex::verify::run_cli(&args),
        Command::Status { api, topics } => {
            duplex::client::run(duplex::client::status::status(&api, &topics))
        }
        Command::Flows { action } => {
            let (change, name, api, args) = action.parts();
            duplex::client::run(duplex::client::change::flow(api, change, name, args))
        }
        Command::Links {
            action: LinkAction::Change(action),
        } => {
            let (change, name, api, args) = action.parts();
            duplex::client::run(duplex::client::change::link(api, change, name, args))
        }
        Command::Links {
            action:
                LinkAction::Add {
                    name,
                    between,
                    include,
                    exclude,
                    wait,
                    api,
                    change,
                },
        } => duplex::client::run(duplex::client::change::add_link(
            &api,
            &name,
            between,
            (include, exclude),
            wait,
            &change,
        )),
        Command::Links {
            action:
                LinkAction::Remove {
                    name,
                    wait,
                    api,
                    change,
                },
        } => duplex::client::run(duplex::client::change::remove_link(
            &api, &name, wait, &change,
        )),
        Command::Links {
            action:
                LinkAction::Topics {
                    name,
                    include,
                    exclude,
                    wait,
                    api,
                    change,
                },
        } => duplex::client::run(duplex::client::change::set_link_topics(
            &api,
            &name,
            (include, exclude),
            wait,
            &change,
        )),
        Command::Clusters {
            action: ClusterAction::Add(args),
        } => duplex::client::run(duplex::client::clusters::add(&args)),
        Command::Offsets {
            action: OffsetsAction::Translate(args),
        } => duplex::offsets::translate_cli(&args),
        Command::Offsets {
            action: OffsetsAction::Sync(args),
        } => duplex::offsets::sync_cli(&args),
        Command::Events {
            api,
            from,
            follow,
            types,
        } => duplex::client::run(duplex::client::events::events(&api, from, follow, &types)),
    }
}
