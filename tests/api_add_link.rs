//! `TopologyService.AddLink` on a running service over mock clusters written all the
//! time: a chain a–b–c becomes a full mesh, every cluster holds every record exactly
//! once; the change is one `TopologyChanged` event with its cut; a retried key takes
//! effect once; every refusal has its code; and a restart runs the mesh again from the
//! log (the config file unchanged), still exactly once.

mod harness;

use std::path::Path;
use std::time::Duration;

use duplex::config::Config;
use duplex_proto::v1 as pb;
use harness::{Provider, TestCluster};
use tonic::Code;

const TOPIC_PATTERN: &str = "addlink\\..*";

use harness::service::{clients as client, holds_exactly, write_all};

fn chain_config(clusters: &[&TestCluster]) -> Config {
    harness::service::links_config(clusters, TOPIC_PATTERN, &[["a", "b"], ["b", "c"]])
}

fn add(name: &str, clusters: [&str; 2], include: &str, key: &str) -> pb::AddLinkRequest {
    pb::AddLinkRequest {
        name: name.into(),
        clusters: clusters.iter().map(|c| c.to_string()).collect(),
        topics: Some(pb::TopicSelection {
            include: vec![include.into()],
            exclude: Vec::new(),
        }),
        request_id: key.into(),
        expected_revision: None,
    }
}

async fn start(config: &Config, dir: &Path) -> harness::service::Started {
    harness::service::start(config, dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_becomes_a_mesh_while_written_and_stays_one_after_a_restart() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b", "c"]) else {
        return;
    };
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let topic = harness::unique("addlink");
    for c in &refs {
        c.create_topic(&topic, 3).await;
    }
    let config = chain_config(&refs);
    let dir = tempfile::tempdir().unwrap();
    let s = start(&config, dir.path()).await;
    let (mut t, mut e) = client(&s).await;
    s.wait_running().await;

    // The change in the middle of the writes.
    let change = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        t.add_link(add("a-c", ["a", "c"], TOPIC_PATTERN, "add-a-c"))
            .await
            .expect("AddLink")
            .into_inner()
    };
    let (mut expected, added) = tokio::join!(write_all(&refs, &topic, 300, 0), change);
    assert_eq!(added.events.len(), 1, "one event: {added:?}");
    assert!(!added.replayed);
    holds_exactly(&refs, &topic, &expected).await;
    let direct = s.forwarded("a->c");
    assert!(direct > 0, "a's records past the cut go to c directly");
    // The CLI's retry with the same key answers the first result and waits until the
    // change settled (TopologySettled, naming the change).
    let api = s.service.api_addr.to_string();
    let out = harness::service::cli(&[
        "links",
        "add",
        "a-c",
        "--between",
        "a,c",
        "--include",
        TOPIC_PATTERN,
        "--request-id",
        "add-a-c",
        "--wait",
        "--api",
        &api,
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("the change (event {}) settled", added.events[0])),
        "{stdout}"
    );

    // The retry answers the first result and changes nothing.
    let again = t
        .add_link(add("a-c", ["a", "c"], TOPIC_PATTERN, "add-a-c"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed && again.events == added.events, "{again:?}");
    // The same link again without a key: already as asked, nothing recorded.
    let same = t
        .add_link(add("a-c", ["a", "c"], TOPIC_PATTERN, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(same.events.is_empty() && !same.replayed, "{same:?}");
    // Refusals, each with its code and naming what is wrong.
    let refused =
        |r: Result<tonic::Response<pb::ChangeResponse>, tonic::Status>| r.expect_err("refused");
    let st = refused(t.add_link(add("a-c", ["a", "c"], "other", "add-a-c")).await);
    assert_eq!(st.code(), Code::AlreadyExists, "{st:?}");
    let st = refused(t.add_link(add("a-c", ["b", "c"], TOPIC_PATTERN, "")).await);
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    assert!(st.message().contains("exists already"), "{st:?}");
    let st = refused(t.add_link(add("b-a", ["b", "a"], TOPIC_PATTERN, "")).await);
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    assert!(st.message().contains("linked already"), "{st:?}");
    let st = refused(t.add_link(add("a-x", ["a", "x"], TOPIC_PATTERN, "")).await);
    assert_eq!(st.code(), Code::NotFound, "{st:?}");
    assert!(st.message().contains("\"x\""), "{st:?}");
    let st = refused(t.add_link(add("a-c2", ["a", "c"], "(", "")).await);
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().starts_with("topics.include[0]"), "{st:?}");
    let st = refused(t.add_link(add("", ["a", "c"], TOPIC_PATTERN, "")).await);
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");

    // The CLI says the same, exit 2.
    let out = harness::service::cli(&[
        "links",
        "add",
        "b-a",
        "--between",
        "b,a",
        "--include",
        TOPIC_PATTERN,
        "--api",
        &api,
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("linked already"), "{stderr}");

    // The log holds one TopologyChanged, its cut naming every partition of every cluster.
    let log = harness::service::all_events(&mut e, 50).await;
    let changes: Vec<&pb::TopologyChanged> = log
        .iter()
        .filter_map(|ev| match &ev.payload {
            Some(pb::event::Payload::TopologyChanged(c)) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 1, "one change recorded");
    assert_eq!(changes[0].links.len(), 3);
    let cut: Vec<(&str, &str, usize)> = changes[0]
        .cut
        .iter()
        .filter(|c| c.topic == topic)
        .map(|c| (c.topic.as_str(), c.cluster.as_str(), c.ends.len()))
        .collect();
    assert_eq!(
        cut,
        [("a", 3), ("b", 3), ("c", 3)].map(|(c, n)| (topic.as_str(), c, n)),
        "the cut names every partition of the topic on every cluster"
    );
    s.stop().await;

    // A restart with the file unchanged runs the mesh of the log, routing by the cut.
    let s = start(&config, dir.path()).await;
    let (mut t, _) = client(&s).await;
    let links = t
        .get_topology(pb::GetTopologyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .links;
    assert_eq!(
        links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["a-b", "b-c", "a-c"]
    );
    assert!(
        s.service.engine.flow("c->a").is_some(),
        "the added link runs again"
    );
    expected.extend(write_all(&refs, &topic, 150, 300).await);
    holds_exactly(&refs, &topic, &expected).await;
    s.stop().await;
}
