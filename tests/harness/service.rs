//! The Duplex service (API, event log, engine) over test clusters, in this process.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use duplex::config::Config;
use duplex::service::Service;
use duplex_sync::metrics::Registry;
use tokio_util::sync::CancellationToken;

use duplex_proto::v1::event_service_client::EventServiceClient;
use duplex_proto::v1::topology_service_client::TopologyServiceClient;
use tonic::transport::Channel;

use super::{Expected, TestCluster};

/// A config for one link a–b selecting topics that match `include`, fast intervals, the
/// API on a free loopback port, and `api` (extra `[api]` keys and tables) if given.
pub fn link_config(clusters: &[&TestCluster], include: &str, api: &str) -> Config {
    let mut toml = format!(
        "[limits]\nrefresh_interval = \"500ms\"\ncommit_interval = \"200ms\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n{api}\n"
    );
    toml += &super::clusters_toml(clusters, |_| {});
    toml += &format!(
        "[[links]]\nclusters = [\"{}\", \"{}\"]\n[links.topics]\ninclude = [{include:?}]\n",
        clusters[0].id, clusters[1].id
    );
    Config::parse(&toml).expect("test config")
}

/// A config linking `pairs` of `clusters` by their ids (links named `a-b`), each
/// selecting topics that match `include`, fast intervals, the API on a free loopback port.
pub fn links_config(clusters: &[&TestCluster], include: &str, pairs: &[[&str; 2]]) -> Config {
    Config::parse(&links_toml(clusters, include, pairs)).expect("test config")
}

/// The text of [`links_config`], for a `duplex run` process.
pub fn links_toml(clusters: &[&TestCluster], include: &str, pairs: &[[&str; 2]]) -> String {
    let mut toml = "[limits]\nrefresh_interval = \"500ms\"\ncommit_interval = \"200ms\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n".to_string();
    toml += &super::clusters_toml(clusters, |_| {});
    for pair in pairs {
        toml += &format!(
            "[[links]]\nclusters = [\"{}\", \"{}\"]\n[links.topics]\ninclude = [{include:?}]\n\n",
            pair[0], pair[1]
        );
    }
    toml
}

/// Writes batches of 20 records on `c`, over `partitions`, until `stop`, and returns
/// what it wrote: with one producer, a batch every 40 ms on the mock and every second
/// on Tansu. Tansu's sqlite storage on two cores falls behind three clusters written
/// much faster and replicating to each other (at a batch every 120 ms its brokers
/// stopped answering metadata requests for minutes); a producer a batch, as this
/// once was, paced it by accident (a producer id from sqlite each time, about 2 s).
pub async fn keep_writing(
    c: &TestCluster,
    topic: &str,
    partitions: &[i32],
    stop: tokio_util::sync::CancellationToken,
) -> Expected {
    let mut expected = Expected::new();
    let mut next = 0;
    let producer = super::producer(c);
    let pause = match c.backend {
        super::Backend::Tansu(_) => Duration::from_millis(1000),
        _ => Duration::from_millis(40),
    };
    while !stop.is_cancelled() {
        let recs: Vec<_> = super::records_on(&c.id, next + 20, partitions).split_off(next);
        next += 20;
        let written = super::produce_with(&producer, c, topic, &recs).await;
        super::expect(&mut expected, written, &recs);
        tokio::time::sleep(pause).await;
    }
    expected
}

/// Topology and event clients of a started service.
pub async fn clients(s: &Started) -> (TopologyServiceClient<Channel>, EventServiceClient<Channel>) {
    let url = format!("http://{}", s.service.api_addr);
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    (
        TopologyServiceClient::new(channel.clone()),
        EventServiceClient::new(channel),
    )
}

/// Writes `n` records on each cluster in batches (over 3 partitions), `from` records
/// into each one's sequence, and returns what every cluster must hold of them.
pub async fn write_all(clusters: &[&TestCluster], topic: &str, n: usize, from: usize) -> Expected {
    let writers = clusters.iter().map(|c| {
        let recs: Vec<_> = super::records(&c.id, from + n, 3).split_off(from);
        async move {
            let mut ids = Vec::new();
            for batch in recs.chunks(25) {
                ids.extend(super::produce(c, topic, batch).await);
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            (ids, recs)
        }
    });
    let mut expected = Expected::new();
    for (ids, recs) in futures::future::join_all(writers).await {
        super::expect(&mut expected, ids, &recs);
    }
    expected
}

/// Waits until every cluster holds as many records as expected, gives what would arrive
/// twice the time to, and asserts each holds exactly the expected records.
pub async fn holds_exactly(clusters: &[&TestCluster], topic: &str, expected: &Expected) {
    super::wait_for_count(
        clusters,
        topic,
        expected.len() as i64,
        Duration::from_secs(90),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for c in clusters {
        super::assert_holds_exactly(c, topic, expected);
    }
}

/// A started service and what stops it.
pub struct Started {
    /// The service.
    pub service: Service,
    /// Stops it.
    pub cancel: CancellationToken,
}

impl Started {
    /// Stops the service and waits until it has let go of its log.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.service.run)
            .await
            .expect("the service stops within 60 s")
            .expect("engine stops cleanly");
    }

    /// Records `flow` has written and had acknowledged since the service started.
    pub fn forwarded(&self, flow: &str) -> u64 {
        self.service
            .engine
            .flow(flow)
            .expect("flow runs")
            .metrics
            .forwarded
            .load(Relaxed)
    }

    /// Waits until `flow` has had `n` records acknowledged: nothing it sent is still on
    /// its way to the target.
    pub async fn wait_forwarded(&self, flow: &str, n: u64) {
        super::wait_until(
            &format!("{flow} acknowledged {n}"),
            Duration::from_secs(30),
            || self.forwarded(flow) >= n,
        )
        .await;
    }

    /// Waits until every flow runs.
    pub async fn wait_running(&self) {
        super::wait_until("every flow running", Duration::from_secs(30), || {
            self.service
                .engine
                .flows()
                .iter()
                .all(|f| f.status.state.name() == "running")
        })
        .await;
    }
}

/// Starts the service for `config` with its log in `dir`.
pub async fn start(config: &Config, dir: &Path) -> Started {
    let cancel = CancellationToken::new();
    let service = duplex::service::start(
        config,
        dir,
        "test",
        Arc::new(Registry::default()),
        cancel.clone(),
    )
    .await
    .expect("service start");
    Started { service, cancel }
}

/// Records `topic` holds on `c` over `partitions` partitions.
pub fn count(c: &TestCluster, topic: &str, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| {
            let (lo, hi) = super::watermarks(c, topic, p);
            hi - lo
        })
        .sum()
}

/// Runs the `duplex` binary with `args` (no API address or token from the environment,
/// logs off) off the tokio workers, and returns what it printed and its exit status.
pub async fn cli(args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_duplex"));
    cmd.args(args)
        .env_remove("DUPLEX_API")
        .env_remove("DUPLEX_TOKEN")
        .env("RUST_LOG", "off");
    tokio::task::spawn_blocking(move || cmd.output().expect("run duplex"))
        .await
        .unwrap()
}

/// The whole event log through ListEvents, in pages of `page_size`.
pub async fn all_events(
    events: &mut duplex_proto::v1::event_service_client::EventServiceClient<
        tonic::transport::Channel,
    >,
    page_size: u32,
) -> Vec<duplex_proto::v1::Event> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let page = events
            .list_events(duplex_proto::v1::ListEventsRequest {
                from_sequence: from,
                page_size,
                ..Default::default()
            })
            .await
            .expect("ListEvents")
            .into_inner();
        if page.events.is_empty() {
            return out;
        }
        from = page.next_sequence;
        out.extend(page.events);
    }
}
