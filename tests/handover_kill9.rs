//! `kill -9` of a `duplex run` process in the middle of a topology change, with every
//! cluster written all the time: a chain a–b–c gets the link a–c through `AddLink`, and a
//! triangle a–b–c loses a–b through `RemoveLink`. The process is killed at a random
//! moment after the call is sent (while the flows are held, while the cut is read, after
//! the change is recorded, while a removed link drains, or once it runs), then
//! restarted and the call retried with the same key until it answers; then killed again.
//! Every cluster ends holding every record exactly once, and the log holds the change
//! once (and a removal's `LinkRemoved` once).

mod harness;

use std::time::Duration;

use duplex_proto::v1 as pb;
use duplex_proto::v1::event_service_client::EventServiceClient;
use duplex_proto::v1::topology_service_client::TopologyServiceClient;
use harness::process::{connect, spawn};
use harness::service::{keep_writing, links_toml};
use harness::{Expected, Provider, TestCluster};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const PATTERN: &str = "k9hand\\..*";

/// The change a test makes, and the key it retries it with.
#[derive(Clone, Copy)]
enum Change {
    AddAc,
    RemoveAb,
}

impl Change {
    fn key(self) -> &'static str {
        match self {
            Change::AddAc => "handover-add-a-c",
            Change::RemoveAb => "handover-remove-a-b",
        }
    }

    async fn call(
        self,
        t: &mut TopologyServiceClient<Channel>,
    ) -> Result<tonic::Response<pb::ChangeResponse>, tonic::Status> {
        match self {
            Change::AddAc => {
                t.add_link(pb::AddLinkRequest {
                    name: "a-c".into(),
                    clusters: vec!["a".into(), "c".into()],
                    topics: Some(pb::TopicSelection {
                        include: vec![PATTERN.into()],
                        exclude: Vec::new(),
                    }),
                    request_id: self.key().into(),
                    expected_revision: None,
                })
                .await
            }
            Change::RemoveAb => {
                t.remove_link(pb::RemoveLinkRequest {
                    name: "a-b".into(),
                    request_id: self.key().into(),
                    expected_revision: None,
                })
                .await
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_in_the_middle_of_adding_a_link_loses_and_duplicates_nothing_on_mock() {
    kill_during(Change::AddAc, &[["a", "b"], ["b", "c"]], 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_in_the_middle_of_removing_a_link_loses_and_duplicates_nothing_on_mock() {
    kill_during(Change::RemoveAb, &[["a", "b"], ["b", "c"], ["a", "c"]], 2).await;
}

/// Runs `change` on the links `pairs` of a, b, c under kills; `links_after` run at the end.
async fn kill_during(change: Change, pairs: &[[&str; 2]], links_after: usize) {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b", "c"]) else {
        return;
    };
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let topic = harness::unique("k9hand");
    for c in &refs {
        c.create_topic(&topic, 3).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("duplex.toml");
    std::fs::write(&config, links_toml(&refs, PATTERN, pairs)).unwrap();

    let stop = CancellationToken::new();
    let writers = futures::future::join_all(
        refs.iter()
            .map(|c| keep_writing(c, &topic, &[0, 1, 2], stop.clone())),
    );
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
                    Duration::from_millis(rng.random_range(0..2500))
                } else {
                    Duration::from_secs(60)
                };
                let sent = std::time::Instant::now();
                tokio::select! {
                    r = change.call(&mut t) => {
                        answered = Some(r.expect("the change").into_inner());
                        eprintln!("round {round}: the change answered after {:?}", sent.elapsed());
                    }
                    _ = tokio::time::sleep(kill_after) => {
                        eprintln!("round {round}: killed {kill_after:?} after the change was sent, before its answer");
                    }
                }
            } else {
                // The change runs (a removed link may still drain); killed after a
                // random while of it.
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
            }
            // Where the kill lands, for the log: with a removed link still draining?
            let draining = tokio::time::timeout(
                Duration::from_millis(300),
                t.get_topology(pb::GetTopologyRequest::default()),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(|r| r.into_inner().links.iter().any(|l| l.draining));
            eprintln!("round {round}: killed; a link draining: {draining:?}");
            child.0.kill().unwrap();
            child.0.wait().unwrap();
        }
        let answered = answered.expect("the change answered in one of the rounds");
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
        // Each origin partition in order too, across kills while records were deferred
        // or read again.
        harness::verify::assert_pass(&refs, &topic, expected.len() as u64).await;
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
    assert_eq!(changes[0].request_id, change.key());
    let mut events = EventServiceClient::new(channel.clone());
    harness::wait_until_async("TopologySettled recorded", Duration::from_secs(60), || {
        let mut events = events.clone();
        async move {
            harness::service::all_events(&mut events, 1000)
                .await
                .iter()
                .any(|e| matches!(e.payload, Some(pb::event::Payload::TopologySettled(_))))
        }
    })
    .await;
    let log = harness::service::all_events(&mut events, 1000).await;
    let count = |f: fn(&pb::event::Payload) -> bool| {
        log.iter()
            .filter(|e| e.payload.as_ref().is_some_and(f))
            .count()
    };
    assert_eq!(
        count(|p| matches!(p, pb::event::Payload::TopologySettled(s) if s.change > 0)),
        1,
        "TopologySettled once"
    );
    if let Change::RemoveAb = change {
        assert_eq!(
            count(|p| matches!(p, pb::event::Payload::LinkRemoved(_))),
            1,
            "LinkRemoved once"
        );
    }
    let links = TopologyServiceClient::new(channel)
        .get_topology(pb::GetTopologyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .links;
    assert_eq!(
        links.len(),
        links_after,
        "the links of the change run after the restarts"
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
}
