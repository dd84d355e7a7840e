//! A cluster removed from the config file while its records are still on their way: a
//! ring a–b–c with d linked to a and c. d's records reach a and c, and wait there for b
//! (a->b and c->b paused; in d's tree b's parent is a). The file then drops d and its
//! links, the service restarts and both flows resume: routing still knows d, so b gets
//! each of d's records once, from a, instead of once from a and once from c, each taking
//! it for its own (docs/topology-changes.md, "Adding a cluster or a link").

mod harness;

use std::time::Duration;

use duplex_proto::v1 as pb;
use harness::service::{clients, holds_exactly, links_config, write_all};
use harness::{Provider, TestCluster};

const PATTERN: &str = "rmcl\\..*";

fn pause(flow: &str) -> pb::FlowChangeRequest {
    pb::FlowChangeRequest {
        flow: flow.into(),
        request_id: String::new(),
        expected_revision: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_clusters_records_in_flight_arrive_once() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b", "c", "d"]) else {
        return;
    };
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let topic = harness::unique("rmcl");
    for c in &refs {
        c.create_topic(&topic, 3).await;
    }
    let ring = [["a", "b"], ["b", "c"], ["a", "c"]];
    let with_d = links_config(
        &refs,
        PATTERN,
        &[ring[0], ring[1], ring[2], ["a", "d"], ["c", "d"]],
    );
    let dir = tempfile::tempdir().unwrap();
    let s = harness::service::start(&with_d, dir.path()).await;
    let (mut t, _) = clients(&s).await;
    s.wait_running().await;
    for flow in ["a->b", "c->b"] {
        t.pause_flow(pause(flow)).await.expect("pause");
    }
    // d's records reach a and c; b's copy waits on a.
    let expected = write_all(&refs[3..], &topic, 60, 0).await;
    harness::wait_for_count(&[refs[0], refs[2]], &topic, 60, Duration::from_secs(60)).await;
    s.stop().await;

    // The file drops d; the paused flows run again.
    let without_d = links_config(&refs[..3], PATTERN, &ring);
    let s = harness::service::start(&without_d, dir.path()).await;
    let (mut t, _) = clients(&s).await;
    for flow in ["a->b", "c->b"] {
        t.resume_flow(pause(flow)).await.expect("resume");
    }
    s.wait_running().await;
    holds_exactly(&refs[..3], &topic, &expected).await;
    s.stop().await;
}
