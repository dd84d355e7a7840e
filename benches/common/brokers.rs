//! The brokers a bench runs against, outside its own process, so that the CPU time it
//! reads from `/proc/self/stat` is its own (the engine's, or the raw client's) and not
//! the brokers'. `DUPLEX_BENCH_ON` picks them:
//!
//! - `mock` (the default): librdkafka mock clusters hosted by a child process, the bench
//!   binary itself started again with `DUPLEX_BENCH_BROKERS=<clusters>`
//!   ([`serve_if_child`] must be the first thing `main` does);
//! - `tansu`: one Tansu broker process per cluster over TCP (file-backed, sqlite), as the
//!   integration tests start them (`tests/harness/tansu.rs`): a broker that stores what
//!   it is sent, where the mock keeps only the last 5 MiB of a partition in memory.
//!
//! The protocol on the child's stdin/stdout is one line each way: the child prints
//! `bootstrap <servers>` per cluster once started, then answers each
//! `topic <name> <partitions>` (created on every cluster) with `ok` or `error <text>`. It
//! exits when its stdin closes, so it never outlives the bench.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;

#[allow(dead_code)] // the tests' harness module; the benches start and stop brokers only
#[path = "../../tests/harness/tansu.rs"]
mod tansu;

const ENV: &str = "DUPLEX_BENCH_BROKERS";
/// Which brokers: `mock` or `tansu`.
const ON: &str = "DUPLEX_BENCH_ON";

/// When this process is the broker child: hosts the clusters until stdin closes, then
/// exits the process. Otherwise returns at once.
pub fn serve_if_child() {
    let Ok(n) = std::env::var(ENV) else {
        return;
    };
    let code = match serve(&n) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench brokers: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn serve(n: &str) -> anyhow::Result<()> {
    let n: usize = n.parse().with_context(|| format!("{ENV}={n:?}"))?;
    let clusters = (0..n)
        .map(|_| MockCluster::new(1))
        .collect::<Result<Vec<_>, _>>()
        .context("start mock cluster")?;
    // The mock answers no CreateTopics: the start markers' topic is made here, as an
    // operator would where Duplex may not create topics (docs/delivery.md).
    for c in &clusters {
        c.create_topic(duplex_sync::starts::TOPIC, 1, 1)?;
    }
    let mut out = std::io::stdout().lock();
    for c in &clusters {
        writeln!(out, "bootstrap {}", c.bootstrap_servers())?;
    }
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let answer = match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["topic", name, partitions] => match partitions.parse::<i32>() {
                Ok(p) => clusters
                    .iter()
                    .try_for_each(|c| c.create_topic(name, p, 1))
                    .map_or_else(|e| format!("error {e}"), |()| "ok".to_string()),
                Err(e) => format!("error partitions {partitions:?}: {e}"),
            },
            _ => format!("error unknown command {line:?}"),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

/// The clusters of one bench run: mock clusters in a child process, or Tansu processes.
pub struct Brokers {
    inner: Inner,
    /// Bootstrap servers, one per cluster.
    pub bootstrap: Vec<String>,
}

enum Inner {
    Mock {
        child: Child,
        stdin: Option<ChildStdin>,
        stdout: BufReader<ChildStdout>,
    },
    /// Held so that the processes live as long as this; each is killed as it drops.
    Tansu { _processes: Vec<tansu::Broker> },
}

impl Brokers {
    /// Starts `clusters` one-broker clusters of the kind `DUPLEX_BENCH_ON` names. Tansu
    /// brokers that do not start panic with their log (the tests' harness asserts).
    pub fn spawn(clusters: usize) -> anyhow::Result<Self> {
        match std::env::var(ON).as_deref() {
            Err(_) | Ok("mock") => Self::mock(clusters),
            Ok("tansu") => {
                let brokers: Vec<tansu::Broker> = (0..clusters)
                    .map(|i| tansu::Broker::start(&format!("bench-{i}")))
                    .collect();
                Ok(Brokers {
                    bootstrap: brokers.iter().map(tansu::Broker::bootstrap).collect(),
                    inner: Inner::Tansu {
                        _processes: brokers,
                    },
                })
            }
            Ok(other) => bail!("{ON}={other:?}: expected mock or tansu"),
        }
    }

    /// What the clusters are, for a bench's header line.
    pub fn describe() -> &'static str {
        match std::env::var(ON).as_deref() {
            Ok("tansu") => "Tansu brokers (one process each, sqlite storage)",
            _ => "librdkafka mock clusters in a child process",
        }
    }

    fn mock(clusters: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("the bench's own executable")?;
        let mut child = Command::new(exe)
            .env(ENV, clusters.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start the broker process")?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("broker stdout")?);
        let mut b = Brokers {
            inner: Inner::Mock {
                child,
                stdin,
                stdout,
            },
            bootstrap: Vec::new(),
        };
        for _ in 0..clusters {
            let line = b.line()?;
            match line.strip_prefix("bootstrap ") {
                Some(servers) => b.bootstrap.push(servers.to_string()),
                None => bail!("the broker process said {line:?}, not its bootstrap servers"),
            }
        }
        Ok(b)
    }

    /// Creates `topic` with `partitions` on every cluster.
    pub fn create_topic(&mut self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        let Inner::Mock { stdin, .. } = &mut self.inner else {
            return self
                .bootstrap
                .iter()
                .try_for_each(|boot| create_with_admin(boot, topic, partitions));
        };
        let stdin = stdin.as_mut().context("broker stdin closed")?;
        writeln!(stdin, "topic {topic} {partitions}")?;
        stdin.flush()?;
        match self.line()?.as_str() {
            "ok" => Ok(()),
            other => bail!("creating {topic} on the broker process: {other}"),
        }
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let Inner::Mock { stdout, .. } = &mut self.inner else {
            bail!("no broker process");
        };
        let mut line = String::new();
        if stdout.read_line(&mut line)? == 0 {
            bail!("the broker process exited");
        }
        Ok(line.trim_end().to_string())
    }
}

/// Creates a topic through the Admin API (the mock answers no CreateTopics; Tansu does).
fn create_with_admin(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("admin client")?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics([&new], &options))
        .with_context(|| format!("create {topic} on {bootstrap}"))?;
    for r in results {
        r.map_err(|(t, e)| anyhow!("create {t} on {bootstrap}: {e}"))?;
    }
    Ok(())
}

impl Drop for Brokers {
    fn drop(&mut self) {
        // Closing stdin ends the child; wait so that no broker outlives the bench. Tansu
        // brokers are killed as they drop.
        if let Inner::Mock { child, stdin, .. } = &mut self.inner {
            drop(stdin.take());
            let _ = child.wait();
        }
    }
}
