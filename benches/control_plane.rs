//! The control plane, each figure beside a baseline measured in the same run:
//!
//! - rebuilding the state from a log of 100,000 events (`Store::open`: read and fold)
//!   against only reading the same events back;
//! - a pause/resume round trip through the gRPC API (PauseFlow, then ResumeFlow, each
//!   answered once the flow took it) against a GetTopology round trip, p50 and p99;
//! - events per second a WatchEvents stream delivers from sequence 1 against ListEvents
//!   pages of the same events.
//!
//! Run with `cargo bench --bench control_plane`; `DUPLEX_BENCH_EVENTS` sets the log size
//! and `DUPLEX_BENCH_ROUND_TRIPS` the number of pause/resume round trips. It measures and
//! prints; it asserts nothing about time. It fails only when the API answers wrongly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use duplex::config::Config;
use duplex::state::log::Log;
use duplex::state::{Payload, Store};
use duplex_proto::v1 as pb;
use duplex_proto::v1::event_service_client::EventServiceClient;
use duplex_proto::v1::topology_service_client::TopologyServiceClient;
use duplex_sync::metrics::Registry;
use futures::StreamExt;
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a service records of its flows, in a realistic mix.
fn payload(i: usize) -> Payload {
    let flow = if i % 2 == 0 { "a->b" } else { "b->a" };
    match i % 4 {
        0 => Payload::FlowPaused {
            flow: flow.into(),
            link: "a-b".into(),
        },
        1 => Payload::FlowResumed {
            flow: flow.into(),
            link: "a-b".into(),
        },
        _ => Payload::FlowStateChanged {
            flow: flow.into(),
            state: "running".into(),
            error: None,
        },
    }
}

fn fill(store: &Store, n: usize) -> anyhow::Result<()> {
    let mut i = 0;
    while i < n {
        let batch = (n - i).min(1000);
        store.record((i..i + batch).map(payload).collect())?;
        i += batch;
    }
    Ok(())
}

fn rebuild(events: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let store = Store::open(Log::open(dir.path())?)?;
        fill(&store, events)?;
    }
    // Baseline: read every event back (RocksDB and JSON), no fold.
    let t = Instant::now();
    let log = Log::open(dir.path())?;
    let mut from = 1;
    let mut read = 0;
    loop {
        let page = log.read(from, 1000)?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        read += page.len();
    }
    let read_time = t.elapsed();
    drop(log);
    ensure!(read == events, "read {read} of {events} events");
    let t = Instant::now();
    let store = Store::open(Log::open(dir.path())?)?;
    let fold_time = t.elapsed();
    ensure!(
        store.revision() == events as u64,
        "folded to {}",
        store.revision()
    );
    println!(
        "rebuild from {events} events: {:.0} ms ({:.0} events/s); reading them only: {:.0} ms; ratio rebuild/read {:.2}",
        fold_time.as_secs_f64() * 1e3,
        events as f64 / fold_time.as_secs_f64(),
        read_time.as_secs_f64() * 1e3,
        fold_time.as_secs_f64() / read_time.as_secs_f64(),
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn show(name: &str, mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
    println!(
        "{name}: p50 {:.2} ms, p99 {:.2} ms over {}",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        v.len()
    );
    (p50, p99)
}

async fn api(events: usize, round_trips: usize) -> anyhow::Result<()> {
    let a = MockCluster::new(1).context("mock cluster a")?;
    let b = MockCluster::new(1).context("mock cluster b")?;
    let toml = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\n\n\
         [[clusters]]\nid = \"a\"\nbootstrap_servers = \"{}\"\n\
         [[clusters]]\nid = \"b\"\nbootstrap_servers = \"{}\"\n\
         [[links]]\nclusters = [\"a\", \"b\"]\n[links.topics]\ninclude = [\"bench\\\\..*\"]\n",
        a.bootstrap_servers(),
        b.bootstrap_servers()
    );
    let config = Config::parse(&toml)?;
    let dir = tempfile::tempdir()?;
    let cancel = CancellationToken::new();
    let service = duplex::service::start(
        &config,
        dir.path(),
        "control-plane bench",
        Arc::new(Registry::default()),
        cancel.clone(),
    )
    .await?;
    let channel = Channel::from_shared(format!("http://{}", service.api_addr))?
        .connect()
        .await?;
    let mut topology = TopologyServiceClient::new(channel.clone());
    let mut watch_client = EventServiceClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !service
        .engine
        .flows()
        .iter()
        .all(|f| f.status.state.name() == "running")
    {
        ensure!(Instant::now() < deadline, "flows did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut reads = Vec::with_capacity(round_trips * 4);
    for _ in 0..round_trips * 4 {
        let t = Instant::now();
        topology
            .get_topology(pb::GetTopologyRequest::default())
            .await?;
        reads.push(t.elapsed());
    }
    let (read_p50, read_p99) = show("GetTopology round trip (baseline)", reads);
    let mut changes = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let req = || pb::FlowChangeRequest {
            flow: "a->b".into(),
            ..Default::default()
        };
        let t = Instant::now();
        let p = topology.pause_flow(req()).await?.into_inner();
        let r = topology.resume_flow(req()).await?.into_inner();
        changes.push(t.elapsed());
        ensure!(p.events.len() == 1 && r.events.len() == 1, "{p:?} {r:?}");
    }
    let (p50, p99) = show("pause/resume round trip", changes);
    println!(
        "ratio pause/resume to GetTopology: p50 {:.1}, p99 {:.1}",
        p50.as_secs_f64() / read_p50.as_secs_f64(),
        p99.as_secs_f64() / read_p99.as_secs_f64()
    );

    // The log now holds the service's own events and the round trips; add the rest.
    let store = service.store.clone();
    tokio::task::spawn_blocking(move || fill(&store, events)).await??;
    let total = service.store.revision();
    let t = Instant::now();
    let mut from = 1;
    let mut listed = 0u64;
    while listed < total {
        let page = watch_client
            .list_events(pb::ListEventsRequest {
                from_sequence: from,
                page_size: 1000,
                ..Default::default()
            })
            .await?
            .into_inner();
        ensure!(!page.events.is_empty(), "ListEvents ended at {from}");
        listed += page.events.len() as u64;
        from = page.next_sequence;
    }
    let list_time = t.elapsed();
    let t = Instant::now();
    let mut stream = watch_client
        .watch_events(pb::WatchEventsRequest {
            from_sequence: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut watched = 0u64;
    while watched < total {
        let e = stream.next().await.context("the watch ended")??;
        watched += 1;
        ensure!(
            e.sequence == watched,
            "watch gave {} as #{watched}",
            e.sequence
        );
    }
    let watch_time = t.elapsed();
    drop(stream);
    println!(
        "WatchEvents from 1: {total} events in {:.0} ms ({:.0} events/s); ListEvents pages of 1000 (baseline): {:.0} events/s; ratio watch/list {:.2}",
        watch_time.as_secs_f64() * 1e3,
        total as f64 / watch_time.as_secs_f64(),
        total as f64 / list_time.as_secs_f64(),
        list_time.as_secs_f64() / watch_time.as_secs_f64(),
    );
    cancel.cancel();
    service.run.await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let events = env_or("DUPLEX_BENCH_EVENTS", 100_000);
    let round_trips = env_or("DUPLEX_BENCH_ROUND_TRIPS", 50);
    rebuild(events)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(api(events, round_trips))
}
