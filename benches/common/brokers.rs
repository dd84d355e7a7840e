//! librdkafka mock clusters hosted by a child process, so that the CPU time a bench reads
//! from `/proc/self/stat` is its own (the engine's, or the raw client's) and not the
//! brokers'. The child is the bench binary itself, started again with
//! `DUPLEX_BENCH_BROKERS=<clusters>`: [`serve_if_child`] must be the first thing `main`
//! does.
//!
//! The protocol on the child's stdin/stdout is one line each way: the child prints
//! `bootstrap <servers>` per cluster once started, then answers each
//! `topic <name> <partitions>` (created on every cluster) with `ok` or `error <text>`. It
//! exits when its stdin closes, so it never outlives the bench.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, bail};
use rdkafka::mocking::MockCluster;

const ENV: &str = "DUPLEX_BENCH_BROKERS";

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

/// Mock clusters in a child process.
pub struct Brokers {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Bootstrap servers, one per cluster.
    pub bootstrap: Vec<String>,
}

impl Brokers {
    /// Starts `clusters` one-broker mock clusters in a child process.
    pub fn spawn(clusters: usize) -> anyhow::Result<Self> {
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
            child,
            stdin,
            stdout,
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
        let stdin = self.stdin.as_mut().context("broker stdin closed")?;
        writeln!(stdin, "topic {topic} {partitions}")?;
        stdin.flush()?;
        match self.line()?.as_str() {
            "ok" => Ok(()),
            other => bail!("creating {topic} on the broker process: {other}"),
        }
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the broker process exited");
        }
        Ok(line.trim_end().to_string())
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        // Closing stdin ends the child; wait so that no broker outlives the bench.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
