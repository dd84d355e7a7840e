//! `kill -9` of a `duplex run` process in the middle of a topology change, with every
//! cluster written all the time: a chain a–b–c gets the link a–c through `AddLink`, and
//! the process is killed at a random moment after the call is sent (while the flows are
//! held, while the cut is read, after the change is recorded, or once it runs), then
//! restarted and the call retried with the same key until it answers; then killed again
//! with the mesh running. Every cluster ends holding every record exactly once, and the
//! log holds the change once.

mod harness;

use std::time::Duration;

use duplex_proto::v1 as pb;
use duplex_proto::v1::event_service_client::EventServiceClient;
use duplex_proto::v1::topology_service_client::TopologyServiceClient;
use harness::process::{connect, spawn};
use harness::{Expected, Provider, TestCluster};
use rand::Rng;
use tokio_util::sync::CancellationToken;

const PATTERN: &str = "k9hand\\..*";

fn add_link() -> pb::AddLinkRequest {
    pb::AddLinkRequest {
        name: "a-c".into(),
        clusters: vec!["a".into(), "c".into()],
        topics: Some(pb::TopicSelection {
            include: vec![PATTERN.into()],
            exclude: Vec::new(),
        }),
        request_id: "handover-add-a-c".into(),
        expected_revision: None,
    }
}

/// Writes batches on `c` until `stop`, and returns what it wrote.
async fn keep_writing(c: &TestCluster, topic: &str, stop: CancellationToken) -> Expected {
    let mut expected = Expected::new();
    let mut next = 0;
    while !stop.is_cancelled() {
        let recs: Vec<_> = harness::records(&c.id, next + 20, 3).split_off(next);
        next += 20;
        harness::expect(
            &mut expected,
            harness::produce(c, topic, &recs).await,
            &recs,
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_in_the_middle_of_adding_a_link_loses_and_duplicates_nothing_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b", "c"]) else {
        return;
    };
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let topic = harness::unique("k9hand");
    for c in &refs {
        c.create_topic(&topic, 3).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut toml = "[limits]\nrefresh_interval = \"500ms\"\ncommit_interval = \"200ms\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n".to_string();
    toml += &harness::clusters_toml(&refs, |_| {});
    for pair in [["a", "b"], ["b", "c"]] {
        toml += &format!(
            "[[links]]\nclusters = [\"{}\", \"{}\"]\n[links.topics]\ninclude = [{PATTERN:?}]\n\n",
            pair[0], pair[1]
        );
    }
    let config = dir.path().join("duplex.toml");
    std::fs::write(&config, toml).unwrap();

    let stop = CancellationToken::new();
    let writers =
        futures::future::join_all(refs.iter().map(|c| keep_writing(c, &topic, stop.clone())));
    let rounds = async {
        let mut rng = rand::rng();
        let mut answered = None;
        for round in 0..4 {
            let log = dir.path().join(format!("duplex-{round}.log"));
            let mut child = spawn(&config, &log);
            let channel = connect(&mut child.0, &log).await;
            let mut t = TopologyServiceClient::new(channel.clone());
            if answered.is_none() {
                // The first round is killed at a random moment of the change; later
                // rounds retry the same key until an answer comes.
                let kill_after = if round == 0 {
                    Duration::from_millis(rng.random_range(0..1500))
                } else {
                    Duration::from_secs(60)
                };
                let sent = std::time::Instant::now();
                tokio::select! {
                    r = t.add_link(add_link()) => {
                        answered = Some(r.expect("AddLink").into_inner());
                        eprintln!("round {round}: AddLink answered after {:?}", sent.elapsed());
                    }
                    _ = tokio::time::sleep(kill_after) => {
                        eprintln!("round {round}: killed {kill_after:?} after AddLink was sent, before its answer");
                    }
                }
            } else {
                // The mesh runs; killed after a random while of it.
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
            }
            child.0.kill().unwrap();
            child.0.wait().unwrap();
        }
        let answered = answered.expect("AddLink answered in one of the rounds");
        // A last run, left to converge.
        let log = dir.path().join("duplex-last.log");
        let mut child = spawn(&config, &log);
        let channel = connect(&mut child.0, &log).await;
        (child, channel, answered)
    };
    let (mut child, channel, answered) = {
        let rounds = async {
            let r = rounds.await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop.cancel();
            r
        };
        let (written, r) = tokio::join!(writers, rounds);
        let mut expected = Expected::new();
        for w in written {
            expected.extend(w);
        }
        harness::wait_for_count(
            &refs,
            &topic,
            expected.len() as i64,
            Duration::from_secs(120),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        for c in &refs {
            harness::assert_holds_exactly(c, &topic, &expected);
        }
        r
    };
    // The change is in the log once, under the key the answer named.
    let log =
        harness::service::all_events(&mut EventServiceClient::new(channel.clone()), 1000).await;
    let changes: Vec<&pb::Event> = log
        .iter()
        .filter(|e| matches!(e.payload, Some(pb::event::Payload::TopologyChanged(_))))
        .collect();
    assert_eq!(changes.len(), 1, "one TopologyChanged");
    assert_eq!(answered.events, [changes[0].sequence]);
    assert_eq!(changes[0].request_id, "handover-add-a-c");
    let links = TopologyServiceClient::new(channel)
        .get_topology(pb::GetTopologyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .links;
    assert_eq!(links.len(), 3, "the mesh runs after the restarts");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
}
