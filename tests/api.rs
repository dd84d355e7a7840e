//! The gRPC API through a tonic client, against a service running over mock clusters:
//! pause and resume (the records stop and then arrive, exactly once), idempotency keys,
//! expected revisions, every refusal's code, and the event log across a restart.

mod harness;

use std::path::Path;
use std::time::Duration;

use duplex::config::Config;
use duplex_proto::v1 as pb;
use duplex_proto::v1::event_service_client::EventServiceClient;
use duplex_proto::v1::topology_service_client::TopologyServiceClient;
use futures::StreamExt;
use harness::service::Started;
use harness::{Expected, Provider, TestCluster};
use tonic::Code;
use tonic::transport::Channel;

fn config(clusters: &[&TestCluster]) -> Config {
    harness::service::link_config(clusters, "api\\..*", "")
}

struct Running {
    service: Started,
    topology: TopologyServiceClient<Channel>,
    events: EventServiceClient<Channel>,
}

/// Starts the service (a restart in the same process needs nothing more: a stopped
/// service has let go of its log).
async fn start(config: &Config, dir: &Path) -> Running {
    let service = harness::service::start(config, dir).await;
    let url = format!("http://{}", service.service.api_addr);
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    Running {
        topology: TopologyServiceClient::new(channel.clone()),
        events: EventServiceClient::new(channel),
        service,
    }
}

async fn stop(r: Running) {
    r.service.stop().await;
}

fn flow_req(flow: &str, key: &str) -> pb::FlowChangeRequest {
    pb::FlowChangeRequest {
        flow: flow.into(),
        request_id: key.into(),
        expected_revision: None,
    }
}

fn link_req(link: &str, key: &str) -> pb::LinkChangeRequest {
    pb::LinkChangeRequest {
        link: link.into(),
        request_id: key.into(),
        expected_revision: None,
    }
}

async fn flow_of(r: &mut Running, name: &str) -> pb::Flow {
    let t = r
        .topology
        .get_topology(pb::GetTopologyRequest::default())
        .await
        .unwrap()
        .into_inner();
    t.links
        .iter()
        .flat_map(|l| l.flows.clone())
        .find(|f| f.name == name)
        .expect("flow listed")
}

/// Pages of 7: several pages even for a short log.
async fn all_events(r: &mut Running) -> Vec<pb::Event> {
    harness::service::all_events(&mut r.events, 7).await
}

fn count(c: &TestCluster, topic: &str) -> i64 {
    harness::service::count(c, topic, 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_idempotency_and_refusals_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("api");
    a.create_topic(&topic, 4).await;
    b.create_topic(&topic, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(&config(&[a, b]), dir.path()).await;

    let mut expected = Expected::new();
    let recs = harness::records("a", 100, 4);
    harness::expect(
        &mut expected,
        harness::produce(a, &topic, &recs).await,
        &recs,
    );
    harness::wait_for_count(&[b], &topic, 100, Duration::from_secs(30)).await;
    r.service.wait_running().await;

    // Pause: answered once the flow has stopped; what is written now stays on a.
    let before = r
        .topology
        .get_topology(pb::GetTopologyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .revision;
    let paused = r
        .topology
        .pause_flow(flow_req("a->b", "pause-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.events.len(), 1, "{paused:?}");
    assert!(!paused.replayed);
    let f = flow_of(&mut r, "a->b").await;
    assert_eq!(f.state, pb::FlowState::Paused as i32, "{f:?}");
    assert!(f.paused);
    let recs = harness::records("a", 60, 4);
    harness::expect(
        &mut expected,
        harness::produce(a, &topic, &recs).await,
        &recs,
    );
    // A witness: records written on b afterwards travel b->a, which runs. Once they are
    // on a, a running a->b would have had the same time to carry the 60.
    let witness = harness::records("b", 8, 4);
    harness::expect(
        &mut expected,
        harness::produce(b, &topic, &witness).await,
        &witness,
    );
    harness::wait_for_count(&[a], &topic, 168, Duration::from_secs(30)).await;
    assert_eq!(count(b, &topic), 108, "a paused flow wrote to its target");
    assert_eq!(r.service.forwarded("a->b"), 100, "a paused flow forwarded");

    // The same key and request: the first answer, nothing recorded twice.
    let again = r
        .topology
        .pause_flow(flow_req("a->b", "pause-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.events, paused.events);
    // The same key for another request: refused, naming the key.
    let e = r
        .topology
        .resume_flow(flow_req("a->b", "pause-1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("pause-1"), "{e:?}");
    // A client that saw the state before the pause may not resume over it.
    let mut stale = flow_req("a->b", "");
    stale.expected_revision = Some(before);
    let e = r.topology.resume_flow(stale).await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    // A revision from the future is a bad argument.
    let mut future = flow_req("a->b", "");
    future.expected_revision = Some(before + 1000);
    let e = r.topology.resume_flow(future).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("expected_revision"), "{e:?}");
    // Pausing a paused flow records nothing.
    let noop = r
        .topology
        .pause_flow(flow_req("a->b", ""))
        .await
        .unwrap()
        .into_inner();
    assert!(noop.events.is_empty(), "{noop:?}");

    // Refusals name what is wrong.
    let e = r.topology.pause_flow(flow_req("", "")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("flow:"), "{e:?}");
    let e = r
        .topology
        .pause_flow(flow_req("x->y", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("x->y"), "{e:?}");
    let e = r
        .topology
        .pause_link(link_req("nope", ""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = r
        .topology
        .pause_flow(flow_req("a->b", &"k".repeat(200)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("request_id:"), "{e:?}");

    // Resume: the records written meanwhile arrive, each once.
    let resumed = r
        .topology
        .resume_flow(flow_req("a->b", "resume-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.events.len(), 1);
    harness::wait_for_count(&[b], &topic, 168, Duration::from_secs(30)).await;
    // Every record the flow sent is acknowledged: nothing more is on its way to b.
    r.service.wait_forwarded("a->b", 160).await;
    harness::assert_holds_exactly(b, &topic, &expected);
    assert!(!flow_of(&mut r, "a->b").await.paused);

    // The log says what happened, in order, with the keys.
    let events = all_events(&mut r).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "sequence numbers without gaps"
    );
    let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(&types[..2], ["ServiceStarted", "ConfigApplied"]);
    let commands: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| !e.request_id.is_empty())
        .map(|e| (e.r#type.as_str(), e.request_id.as_str()))
        .collect();
    assert_eq!(
        commands,
        [("FlowPaused", "pause-1"), ("FlowResumed", "resume-1")]
    );
    let pause_seq = paused.events[0];
    let observed: Vec<String> = events
        .iter()
        .filter(|e| e.sequence > pause_seq)
        .filter_map(|e| match &e.payload {
            Some(pb::event::Payload::FlowStateChanged(s)) if s.flow == "a->b" => Some(
                pb::FlowState::try_from(s.state)
                    .unwrap()
                    .as_str_name()
                    .to_string(),
            ),
            _ => None,
        })
        .collect();
    assert!(
        observed.starts_with(&[
            "FLOW_STATE_PAUSING".to_string(),
            "FLOW_STATE_PAUSED".to_string()
        ]),
        "{observed:?}"
    );

    // A pause overtaken by a resume answers too: it does not wait for a state nobody
    // asks for any more.
    let mut other = r.topology.clone();
    let pause = tokio::spawn(async move { other.pause_flow(flow_req("a->b", "")).await });
    let store = r.service.service.store.clone();
    harness::wait_until("the pause recorded", Duration::from_secs(10), || {
        store.with_state(|s| s.paused.contains("a->b"))
    })
    .await;
    r.topology
        .resume_flow(flow_req("a->b", ""))
        .await
        .expect("the resume");
    tokio::time::timeout(Duration::from_secs(30), pause)
        .await
        .expect("the overtaken pause answers")
        .unwrap()
        .expect("the overtaken pause succeeds");
    r.service.wait_running().await;
    stop(r).await;
}

/// ListEvents and WatchEvents with `types`: only events of those types, in log order,
/// pages that stop where they stopped looking, a watch that skips the rest, and an
/// unknown type refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_some_types_only_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(&config(&[a, b]), dir.path()).await;
    let types = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // A watch of resumes only, from the start, before anything is resumed.
    let mut resumes = r
        .events
        .watch_events(pb::WatchEventsRequest {
            from_sequence: 1,
            types: types(&["FlowResumed"]),
        })
        .await
        .unwrap()
        .into_inner();
    let mut paused = Vec::new();
    let mut resumed = Vec::new();
    for _ in 0..2 {
        let p = r.topology.pause_link(link_req("a-b", "")).await.unwrap();
        paused.extend(p.into_inner().events);
        let q = r.topology.resume_link(link_req("a-b", "")).await.unwrap();
        resumed.extend(q.into_inner().events);
    }
    assert_eq!((paused.len(), resumed.len()), (4, 4));

    // Pages of one pause each: each page ends just past its event.
    let mut from = 1;
    let mut listed = Vec::new();
    loop {
        let page = r
            .events
            .list_events(pb::ListEventsRequest {
                from_sequence: from,
                page_size: 1,
                types: types(&["FlowPaused"]),
            })
            .await
            .unwrap()
            .into_inner();
        match page.events.as_slice() {
            [e] => {
                assert_eq!(e.r#type, "FlowPaused");
                assert_eq!(page.next_sequence, e.sequence + 1, "{page:?}");
                listed.push(e.sequence);
            }
            [] => {
                assert!(page.next_sequence > page.revision, "the end: {page:?}");
                break;
            }
            more => panic!("page of 1 with {} events", more.len()),
        }
        from = page.next_sequence;
    }
    assert_eq!(listed, paused);

    // Two types: the whole log's events of those types, in order.
    let all = all_events(&mut r).await;
    let page = r
        .events
        .list_events(pb::ListEventsRequest {
            from_sequence: 1,
            page_size: 1000,
            types: types(&["FlowPaused", "FlowResumed"]),
        })
        .await
        .unwrap()
        .into_inner();
    let want: Vec<u64> = all
        .iter()
        .filter(|e| e.r#type == "FlowPaused" || e.r#type == "FlowResumed")
        .map(|e| e.sequence)
        .collect();
    let got: Vec<u64> = page.events.iter().map(|e| e.sequence).collect();
    assert_eq!(got, want);
    assert_eq!(want.len(), 8);

    // The watch got the resumes, and nothing else, in order.
    let mut watched = Vec::new();
    while watched.len() < resumed.len() {
        let e = resumes.next().await.unwrap().unwrap();
        assert_eq!(e.r#type, "FlowResumed", "{e:?}");
        watched.push(e.sequence);
    }
    assert_eq!(watched, resumed);

    // A type that does not exist: refused, naming it and the ones that do.
    for call in ["list", "watch"] {
        let err = if call == "list" {
            r.events
                .list_events(pb::ListEventsRequest {
                    types: types(&["FlowPaused", "FlowPause"]),
                    ..Default::default()
                })
                .await
                .unwrap_err()
        } else {
            r.events
                .watch_events(pb::WatchEventsRequest {
                    types: types(&["FlowPause"]),
                    ..Default::default()
                })
                .await
                .unwrap_err()
        };
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{call}: {err:?}");
        assert!(
            err.message().contains("\"FlowPause\"")
                && err.message().contains("VerificationFinished"),
            "{call}: {}",
            err.message()
        );
    }
    drop(resumes);
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_state_the_log_and_the_keys_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("api");
    a.create_topic(&topic, 4).await;
    b.create_topic(&topic, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&[a, b]);
    let mut r = start(&config, dir.path()).await;
    let paused = r
        .topology
        .pause_link(link_req("a-b", "drill-7"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.events.len(), 2, "one event per flow: {paused:?}");
    // A watcher from the start sees what is recorded, live.
    let mut watch = r
        .events
        .watch_events(pb::WatchEventsRequest {
            from_sequence: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.sequence, 1);
    let before = all_events(&mut r).await;
    drop(watch);
    stop(r).await;

    let recs = harness::records("a", 40, 4);
    harness::produce(a, &topic, &recs).await;
    let mut r = start(&config, dir.path()).await;
    // Paused before the restart, paused after it: nothing reaches b.
    for f in ["a->b", "b->a"] {
        let f = flow_of(&mut r, f).await;
        assert!(f.paused, "{f:?}");
        assert_eq!(f.state, pb::FlowState::Paused as i32, "{f:?}");
    }
    // Both flows of the only link are paused, so no running flow can witness time
    // passing: a bounded window is the one way to observe an absence here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(b, &topic), 0);
    // The log is the same, then goes on: the start, no config change.
    let after = all_events(&mut r).await;
    assert_eq!(&after[..before.len()], &before[..]);
    let rest: Vec<&str> = after[before.len()..]
        .iter()
        .map(|e| e.r#type.as_str())
        .collect();
    assert!(
        rest.contains(&"ServiceStarted") && !rest.contains(&"ConfigApplied"),
        "{rest:?}"
    );
    // A key retried after the restart answers as the first call did.
    let again = r
        .topology
        .pause_link(link_req("a-b", "drill-7"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.events, paused.events);
    // A watch from N receives exactly the rest, then what comes.
    let n = before.len() as u64 + 1;
    let mut watch = r
        .events
        .watch_events(pb::WatchEventsRequest {
            from_sequence: n,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    for _ in 0..(after.len() as u64 + 1 - n) {
        got.push(watch.next().await.unwrap().unwrap());
    }
    assert_eq!(&got[..], &after[before.len()..]);
    let resumed = r
        .topology
        .resume_link(link_req("a-b", ""))
        .await
        .unwrap()
        .into_inner();
    let live: Vec<u64> = {
        let mut v = Vec::new();
        while v.len() < resumed.events.len() {
            let e = watch.next().await.unwrap().unwrap();
            if e.r#type == "FlowResumed" {
                v.push(e.sequence);
            }
        }
        v
    };
    assert_eq!(live, resumed.events);
    harness::wait_for_count(&[b], &topic, 40, Duration::from_secs(30)).await;
    stop(r).await;
}

/// GetTopology's counters carry what /metrics shows of topic shapes and settings: a
/// target topic wider than its source, and rounds of config sync that failed (the mock
/// answers no DescribeConfigs; with a 1 s request timeout a round fails in a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_counters_show_wider_targets_and_failed_config_rounds_on_mock() {
    let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("api.shape");
    a.create_topic(&topic, 2).await;
    b.create_topic(&topic, 3).await;
    let mut config = config(&[a, b]);
    config.limits.request_timeout = duplex::config::HumanDuration(Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(&config, dir.path()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let counters = loop {
        let c = flow_of(&mut r, "a->b").await.counters.unwrap();
        if c.target_topics_wider == 1 && c.topic_config_errors >= 1 {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "counters: {c:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (
            counters.source_topics_deleted,
            counters.topic_config_changes,
            counters.acls_created,
            counters.acl_errors
        ),
        (0, 0, 0, 0),
        "{counters:?}"
    );
    let back = flow_of(&mut r, "b->a").await.counters.unwrap();
    assert_eq!(
        back.target_topics_wider, 0,
        "a has fewer partitions: {back:?}"
    );
    stop(r).await;
}
