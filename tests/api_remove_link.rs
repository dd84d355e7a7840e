//! `TopologyService.RemoveLink` on a running service over mock clusters written all the
//! time: a triangle a–b–c loses a–b (a chain b–c–a) while every cluster is written; the
//! change is one `TopologyChanged` with its cut, the link drains and `LinkRemoved` is
//! recorded; every cluster holds every record exactly once; a retried key takes effect
//! once; a removal that would cut a cluster off is refused naming it, an unknown link
//! is NOT_FOUND (also from the CLI, exit 2); a restart runs the chain of the log.

mod harness;

use std::time::Duration;

use duplex_proto::v1 as pb;
use harness::service::{clients, holds_exactly, links_config, write_all};
use harness::{Provider, TestCluster};
use tonic::Code;

const TOPIC_PATTERN: &str = "rmlink\\..*";

fn remove(name: &str, key: &str) -> pb::RemoveLinkRequest {
    pb::RemoveLinkRequest {
        name: name.into(),
        request_id: key.into(),
        expected_revision: None,
    }
}

/// The sequence numbers of the `TopologySettled` events in `log`, with the change each
/// settles.
fn settled_events(log: &[pb::Event]) -> Vec<(u64, u64)> {
    log.iter()
        .filter_map(|e| match &e.payload {
            Some(pb::event::Payload::TopologySettled(s)) => Some((e.sequence, s.change)),
            _ => None,
        })
        .collect()
}

fn removed_events(log: &[pb::Event], link: &str) -> Vec<u64> {
    log.iter()
        .filter(
            |e| matches!(&e.payload, Some(pb::event::Payload::LinkRemoved(l)) if l.link == link),
        )
        .map(|e| e.sequence)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triangle_loses_a_link_while_written_and_stays_a_chain_after_a_restart() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b", "c"]) else {
        return;
    };
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let topic = harness::unique("rmlink");
    for c in &refs {
        c.create_topic(&topic, 3).await;
    }
    let config = links_config(&refs, TOPIC_PATTERN, &[["a", "b"], ["b", "c"], ["a", "c"]]);
    let dir = tempfile::tempdir().unwrap();
    let s = harness::service::start(&config, dir.path()).await;
    let (mut t, mut e) = clients(&s).await;
    s.wait_running().await;

    let change = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let asked = std::time::Instant::now();
        let r = t
            .remove_link(remove("a-b", "rm-a-b"))
            .await
            .expect("RemoveLink")
            .into_inner();
        let answered = asked.elapsed();
        harness::wait_until_async("LinkRemoved recorded", Duration::from_secs(60), || {
            let mut e = e.clone();
            async move {
                !removed_events(&harness::service::all_events(&mut e, 100).await, "a-b").is_empty()
            }
        })
        .await;
        let drained = asked.elapsed();
        harness::wait_until_async("TopologySettled recorded", Duration::from_secs(60), || {
            let mut e = e.clone();
            async move { !settled_events(&harness::service::all_events(&mut e, 100).await).is_empty() }
        })
        .await;
        eprintln!(
            "RemoveLink answered in {answered:?}, LinkRemoved {drained:?} and TopologySettled {:?} after the call",
            asked.elapsed()
        );
        r
    };
    let (mut expected, removed) = tokio::join!(write_all(&refs, &topic, 300, 0), change);
    assert_eq!(removed.events.len(), 1, "one event: {removed:?}");
    assert!(
        s.service.engine.flow("a->b").is_none() && s.service.engine.flow("b->a").is_none(),
        "the removed link's flows are retired"
    );
    holds_exactly(&refs, &topic, &expected).await;

    // The retry answers the first result; removing it again records nothing.
    let again = t
        .remove_link(remove("a-b", "rm-a-b"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        again.replayed && again.events == removed.events,
        "{again:?}"
    );
    let gone = t.remove_link(remove("a-b", "")).await.expect_err("gone");
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    // b is joined by b-c only now: removing it would cut b off.
    let st = t.remove_link(remove("b-c", "")).await.expect_err("refused");
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    assert!(st.message().contains("cut cluster \"b\" off"), "{st:?}");
    let api = s.service.api_addr.to_string();
    let out = harness::service::cli(&["links", "remove", "nope", "--api", &api]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no link \"nope\""), "{stderr}");

    let log = harness::service::all_events(&mut e, 100).await;
    let changes: Vec<&pb::TopologyChanged> = log
        .iter()
        .filter_map(|ev| match &ev.payload {
            Some(pb::event::Payload::TopologyChanged(c)) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 1, "one change recorded");
    assert_eq!(
        changes[0]
            .links
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["b-c", "a-c"]
    );
    let link_removed = removed_events(&log, "a-b");
    assert_eq!(link_removed.len(), 1, "LinkRemoved once");
    let settled = settled_events(&log);
    assert_eq!(settled.len(), 1, "TopologySettled once: {settled:?}");
    assert_eq!(
        settled[0].1, removed.events[0],
        "it names the change it settles"
    );
    assert!(settled[0].0 > link_removed[0], "settled after the drain");
    s.stop().await;

    // A restart with the file unchanged runs the chain of the log.
    let s = harness::service::start(&config, dir.path()).await;
    let (mut t, _) = clients(&s).await;
    let topology = t
        .get_topology(pb::GetTopologyRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        topology
            .links
            .iter()
            .map(|l| (l.name.as_str(), l.draining))
            .collect::<Vec<_>>(),
        [("b-c", false), ("a-c", false)]
    );
    assert!(
        s.service.engine.flow("a->b").is_none(),
        "the removed link stays removed"
    );
    expected.extend(write_all(&refs, &topic, 150, 300).await);
    holds_exactly(&refs, &topic, &expected).await;
    s.stop().await;
}
