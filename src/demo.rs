//! `duplex demo`: three in-process librdkafka mock clusters in a full mesh, records
//! produced on all three at once, Duplex replicating, then a table per cluster proving
//! that every cluster holds every record exactly once, and the verifier's parity proof.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context;
use duplex_sync::metrics::Registry;
use duplex_sync::spec::{ClusterSpec, EngineSpec, TopicSelection};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::inspect;

const TOPIC: &str = "demo.events";
const IDS: [&str; 3] = ["east", "west", "north"];
const PARTITIONS: i32 = 4;

/// Runs the demo; exit 0 when every cluster holds every record exactly once.
pub fn run(records: usize, serve: Option<SocketAddr>) -> ExitCode {
    match demo(records, serve) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn demo(records: usize, serve: Option<SocketAddr>) -> anyhow::Result<bool> {
    if let Some(addr) = serve.filter(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "--serve {addr}: the demo's API has no tokens, so it serves on loopback only; use 127.0.0.1:{}",
            addr.port()
        );
    }
    // Mock clusters are not Send: they live on this thread for the whole demo.
    let mocks = IDS
        .iter()
        .map(|_| MockCluster::new(1))
        .collect::<Result<Vec<_>, _>>()
        .context("start mock cluster")?;
    for m in &mocks {
        m.create_topic(TOPIC, PARTITIONS, 1)
            .context("create demo topic")?;
        // The mock answers no CreateTopics: the start markers' topic is made here, as an
        // operator would where Duplex may not create topics (docs/delivery.md).
        m.create_topic(duplex_sync::starts::TOPIC, 1, 1)
            .context("create the start markers' topic")?;
    }
    let clusters: Vec<ClusterSpec> = IDS
        .iter()
        .zip(&mocks)
        .map(|(id, m)| ClusterSpec::new(*id, m.bootstrap_servers()))
        .collect();
    let spec = EngineSpec::linked(
        clusters.clone(),
        &[[0, 1], [1, 2], [0, 2]],
        TopicSelection::matching(TOPIC)?,
    );
    println!(
        "Three mock clusters ({}) in a full mesh; {records} records produced on each at once.",
        IDS.join(", ")
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (elapsed, loops) = rt.block_on(async {
        let registry = Arc::new(Registry::default());
        let cancel = CancellationToken::new();
        let engine = {
            let (spec, registry, cancel) = (spec.clone(), registry.clone(), cancel.clone());
            tokio::spawn(async move { crate::run::run(&spec, &registry, cancel).await })
        };
        let start = Instant::now();
        let producers = clusters.iter().map(|c| produce(c.clone(), records));
        for r in futures::future::join_all(producers).await {
            r?;
        }
        let want = (records * IDS.len()) as i64;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut done = true;
            for c in &clusters {
                done &=
                    inspect::count(&c.bootstrap_servers, TOPIC, Duration::from_secs(5))? >= want;
            }
            if done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let elapsed = start.elapsed();
        cancel.cancel();
        engine.await?.context("engine")?;
        let loops: u64 = registry
            .entries()
            .iter()
            .map(|e| e.metrics.loop_stopped.load(Relaxed))
            .sum();
        anyhow::Ok((elapsed, loops))
    })?;

    let mut ok = true;
    println!();
    println!(
        "{:<8} {:<8} {:>8} {:>10}",
        "cluster", "origin", "records", "duplicates"
    );
    for c in &clusters {
        let held =
            inspect::read_topic(&c.bootstrap_servers, &c.id, TOPIC, Duration::from_secs(30))?;
        let tally = inspect::tally(&held);
        for id in IDS {
            let t = tally.get(id).cloned().unwrap_or_default();
            ok &= t.records == records && t.duplicates == 0;
            println!(
                "{:<8} {:<8} {:>8} {:>10}",
                c.id, id, t.records, t.duplicates
            );
        }
    }
    println!();
    println!(
        "loops stopped by the hop-path guard: {loops} (routing sends each record along one tree per origin)"
    );
    println!("replicated in {:.2} s", elapsed.as_secs_f64());
    let total = records * IDS.len();
    if ok {
        println!(
            "PASS: every cluster holds every record exactly once ({} clusters x {total} records).",
            IDS.len()
        );
    } else {
        println!(
            "FAIL: some cluster is missing records or holds duplicates (see the table above)."
        );
    }
    let parity = prove_parity(&clusters)?;
    if let Some(addr) = serve {
        rt.block_on(serve_api(&clusters, addr))?;
    }
    drop(mocks);
    Ok(ok && parity)
}

/// Keeps the demo's clusters and flows running, with the API served on `addr`, until
/// Ctrl-C. The same service as `duplex run`, on a config naming the mock clusters, with
/// its event log in a temporary directory.
async fn serve_api(clusters: &[ClusterSpec], addr: SocketAddr) -> anyhow::Result<()> {
    let mut toml = format!("[api]\nlisten = \"{addr}\"\n");
    for c in clusters {
        toml += &format!(
            "[[clusters]]\nid = \"{}\"\nbootstrap_servers = \"{}\"\n",
            c.id, c.bootstrap_servers
        );
    }
    for [a, b] in [[0, 1], [1, 2], [0, 2]] {
        toml += &format!(
            "[[links]]\nclusters = [\"{}\", \"{}\"]\ntopics.include = [\"{TOPIC}\"]\n",
            IDS[a], IDS[b]
        );
    }
    let config = crate::config::Config::parse(&toml).context("demo config")?;
    let state = tempfile::tempdir().context("temporary directory for the event log")?;
    let cancel = CancellationToken::new();
    let service = crate::service::start(
        &config,
        state.path(),
        "demo (three in-process mock clusters)",
        Arc::new(Registry::default()),
        cancel.clone(),
    )
    .await?;
    println!();
    println!(
        "Serving the Duplex API on {} over the demo's clusters and flows; Ctrl-C to stop.",
        service.api_addr
    );
    println!("  try: duplex status --api {}", service.api_addr);
    println!(
        "       duplex flows pause east->west --api {}",
        service.api_addr
    );
    println!("       duplex events --follow --api {}", service.api_addr);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    cancel.cancel();
    service.run.await.context("engine")?;
    Ok(())
}

/// The verifier's proof on the same clusters: east against west and north, record by
/// record, with a report written to a temporary directory.
fn prove_parity(clusters: &[ClusterSpec]) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir().context("temporary directory for the verifier")?;
    let topics = regex::Regex::new(&format!("^{}$", regex::escape(TOPIC)))?;
    let spec =
        duplex_verifier::VerifySpec::new(clusters.to_vec(), topics, dir.path().join("store"));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let report = duplex_verifier::run::verify(&spec, &stop, &|_| {})?;
    println!();
    println!("duplex verify --between {}:", IDS.join(","));
    print!("{}", duplex_verifier::report::text::summary(&report));
    Ok(report.verdict == duplex_verifier::Verdict::Pass)
}

/// Produces `n` records on `c`: keys, two user headers, and every tenth value null.
async fn produce(c: ClusterSpec, n: usize) -> anyhow::Result<()> {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &c.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("{}-{i}", c.id);
        let value = format!("{{\"from\":\"{}\",\"seq\":{i}}}", c.id);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "demo-seq",
                value: Some(i.to_string().as_bytes()),
            })
            .insert(Header {
                key: "written-on",
                value: Some(c.id.as_bytes()),
            });
        let mut rec = FutureRecord::<str, str>::to(TOPIC)
            .key(&key)
            .partition((i % PARTITIONS as usize) as i32)
            .headers(headers);
        if i % 10 != 9 {
            rec = rec.payload(&value);
        }
        let queued = duplex_sync::clients::enqueue(&p, rec, Duration::from_secs(60));
        pending.push(queued.await.with_context(|| format!("write to {}", c.id))?);
    }
    for d in pending {
        d.await?.map_err(|(e, _)| e).context("demo produce")?;
    }
    Ok(())
}
