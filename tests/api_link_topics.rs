//! `TopologyService.SetLinkTopics` on a running service over mock clusters written all
//! the time: a triangle a–b–c whose links select two topics; a–c stops selecting the
//! second while every cluster writes both. The change is one `TopologyChanged` with its
//! cut and one `TopologySettled` naming it; every cluster holds every record of both
//! topics exactly once; a–c's flows read the first topic only once settled; a retried key
//! takes effect once; each refusal has its code (a narrowing that would leave a cluster
//! without the topic names both). A restart keeps the selection of the log; the CLI
//! (`duplex links topics … --wait`) gives the topic back, again exactly once.

mod harness;

use std::time::Duration;

use duplex_proto::v1 as pb;
use harness::service::{clients, holds_exactly, links_config, write_all};
use harness::{Expected, Provider, TestCluster};
use tonic::Code;
use tonic::transport::Channel;

const BOTH: &str = "(ltev|ltau)\\..*";
const EVENTS_ONLY: &str = "ltev\\..*";

type TopologyClient = pb::topology_service_client::TopologyServiceClient<Channel>;

fn set(name: &str, include: &[&str], key: &str) -> pb::SetLinkTopicsRequest {
    pb::SetLinkTopicsRequest {
        name: name.into(),
        topics: Some(pb::TopicSelection {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: Vec::new(),
        }),
        request_id: key.into(),
        expected_revision: None,
    }
}

/// `(sequence, change settled)` of each `TopologySettled`, and the sequence numbers of
/// each `TopologyChanged`, in `log`.
fn changes(log: &[pb::Event]) -> (Vec<(u64, u64)>, Vec<u64>) {
    let mut settled = Vec::new();
    let mut changed = Vec::new();
    for e in log {
        match &e.payload {
            Some(pb::event::Payload::TopologySettled(s)) => settled.push((e.sequence, s.change)),
            Some(pb::event::Payload::TopologyChanged(_)) => changed.push(e.sequence),
            _ => {}
        }
    }
    (settled, changed)
}

/// Link `name` as GetTopology shows it.
async fn link(t: &mut TopologyClient, name: &str) -> pb::Link {
    let topology = t
        .get_topology(pb::GetTopologyRequest::default())
        .await
        .expect("GetTopology")
        .into_inner();
    topology
        .links
        .into_iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no link {name}"))
}

/// Waits until both flows of link `name` read `n` partitions.
async fn reading(t: &TopologyClient, name: &str, n: i64) {
    harness::wait_until_async(
        &format!("the flows of {name} reading {n} partitions"),
        Duration::from_secs(60),
        || {
            let mut t = t.clone();
            async move {
                let l = link(&mut t, name).await;
                l.flows.len() == 2
                    && l.flows
                        .iter()
                        .all(|f| f.counters.as_ref().is_some_and(|c| c.partitions == n))
            }
        },
    )
    .await;
}

/// Writes both topics on every cluster at once; what each must hold of them.
async fn write_both(
    refs: &[&TestCluster],
    topics: &[String; 2],
    n: usize,
    from: usize,
) -> [Expected; 2] {
    let (a, b) = tokio::join!(
        write_all(refs, &topics[0], n, from),
        write_all(refs, &topics[1], n, from)
    );
    [a, b]
}

async fn holds_both(refs: &[&TestCluster], topics: &[String; 2], expected: &[Expected; 2]) {
    for (topic, e) in topics.iter().zip(expected) {
        holds_exactly(refs, topic, e).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_stops_selecting_a_topic_while_written_and_keeps_it_so_after_a_restart() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b", "c"]) else {
        return;
    };
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let topics = [harness::unique("ltev"), harness::unique("ltau")];
    for c in &refs {
        for topic in &topics {
            c.create_topic(topic, 3).await;
        }
    }
    let config = links_config(&refs, BOTH, &[["a", "b"], ["b", "c"], ["a", "c"]]);
    let dir = tempfile::tempdir().unwrap();
    let s = harness::service::start(&config, dir.path()).await;
    let (mut t, mut e) = clients(&s).await;
    s.wait_running().await;
    reading(&t, "a-c", 6).await;

    // a-c narrowed to the events topic in the middle of the writes.
    let change = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = t
            .set_link_topics(set("a-c", &[EVENTS_ONLY], "narrow-a-c"))
            .await
            .expect("SetLinkTopics")
            .into_inner();
        harness::wait_until_async("TopologySettled recorded", Duration::from_secs(90), || {
            let mut e = e.clone();
            async move {
                !changes(&harness::service::all_events(&mut e, 100).await)
                    .0
                    .is_empty()
            }
        })
        .await;
        r
    };
    let (mut expected, narrowed) = tokio::join!(write_both(&refs, &topics, 300, 0), change);
    assert_eq!(narrowed.events.len(), 1, "one event: {narrowed:?}");
    holds_both(&refs, &topics, &expected).await;
    reading(&t, "a-c", 3).await;
    let shown = link(&mut t, "a-c").await.topics.expect("topics");
    assert_eq!(shown.include, [EVENTS_ONLY]);

    // The retry answers the first result; the same selection again records nothing.
    let again = t
        .set_link_topics(set("a-c", &[EVENTS_ONLY], "narrow-a-c"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        again.replayed && again.events == narrowed.events,
        "{again:?}"
    );
    let same = t
        .set_link_topics(set("a-c", &[EVENTS_ONLY], ""))
        .await
        .unwrap()
        .into_inner();
    assert!(same.events.is_empty() && !same.replayed, "{same:?}");

    // Refusals, each with its code and naming what is wrong.
    let refused =
        |r: Result<tonic::Response<pb::ChangeResponse>, tonic::Status>| r.expect_err("refused");
    let st = refused(t.set_link_topics(set("a-c", &[BOTH], "narrow-a-c")).await);
    assert_eq!(st.code(), Code::AlreadyExists, "{st:?}");
    assert!(st.message().contains("narrow-a-c"), "{st:?}");
    let st = refused(t.set_link_topics(set("nope", &[BOTH], "")).await);
    assert_eq!(st.code(), Code::NotFound, "{st:?}");
    assert!(st.message().contains("no link \"nope\""), "{st:?}");
    let st = refused(t.set_link_topics(set("a-c", &[], "")).await);
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().starts_with("topics.include"), "{st:?}");
    let st = refused(t.set_link_topics(set("a-c", &["("], "")).await);
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().starts_with("topics.include[0]"), "{st:?}");
    // a-b narrowed too would leave no link that selects the audit topic joining a and b.
    let st = refused(t.set_link_topics(set("a-b", &[EVENTS_ONLY], "")).await);
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    let m = st.message();
    assert!(
        m.contains("would cut cluster") && m.contains("\"a\"") && m.contains(&topics[1]),
        "{st:?}"
    );

    let log = harness::service::all_events(&mut e, 100).await;
    let (settled, changed) = changes(&log);
    assert_eq!(changed, narrowed.events, "one change recorded");
    assert_eq!(
        settled.len(),
        1,
        "TopologySettled once, naming it: {settled:?}"
    );
    assert_eq!(settled[0].1, narrowed.events[0]);
    s.stop().await;

    // A restart with the file unchanged keeps the log's selection.
    let s = harness::service::start(&config, dir.path()).await;
    let (mut t, e) = clients(&s).await;
    s.wait_running().await;
    let shown = link(&mut t, "a-c").await.topics.expect("topics");
    assert_eq!(shown.include, [EVENTS_ONLY], "the log's selection");
    reading(&t, "a-c", 3).await;
    let more = write_both(&refs, &topics, 100, 300).await;
    for (e, m) in expected.iter_mut().zip(more) {
        e.extend(m);
    }
    holds_both(&refs, &topics, &expected).await;

    // The CLI gives the audit topic back while written, and waits until settled.
    let api = s.service.api_addr.to_string();
    let cli = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        harness::service::cli(&[
            "links",
            "topics",
            "a-c",
            "--include",
            BOTH,
            "--request-id",
            "widen-a-c",
            "--wait",
            "--api",
            &api,
        ])
        .await
    };
    let (more, out) = tokio::join!(write_both(&refs, &topics, 200, 400), cli);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("settled"), "{stdout}");
    for (e, m) in expected.iter_mut().zip(more) {
        e.extend(m);
    }
    holds_both(&refs, &topics, &expected).await;
    reading(&t, "a-c", 6).await;
    let (settled, changed) = changes(&harness::service::all_events(&mut e.clone(), 100).await);
    assert_eq!(changed.len(), 2, "two changes recorded: {changed:?}");
    assert_eq!(
        settled.iter().map(|s| s.1).collect::<Vec<_>>(),
        changed,
        "each settled once"
    );
    s.stop().await;
}
