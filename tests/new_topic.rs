//! A topic created on a source while Duplex runs is picked up within the refresh
//! interval and replicated; the engine creates it on the target with the source's
//! partition count and cleanup.policy, or says clearly why it cannot.

mod harness;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use harness::{Expected, Feature, Provider};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

async fn cleanup_policy(bootstrap: &str, topic: &str) -> String {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let r = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await
        .unwrap();
    let res = r.into_iter().next().unwrap().unwrap();
    res.get("cleanup.policy")
        .and_then(|e| e.value.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_created_while_running_is_replicated_on_tansu() {
    let provider = Provider::Tansu;
    if !harness::needs(provider, Feature::Admin, "topic_created_while_running") {
        return;
    }
    let Some(clusters) = harness::start(provider, &["src", "dst"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let running = harness::run_engine(harness::spec(&[a, b], &[[0, 1]], "late\\..*"));
    // The engine has looked at the source once and found nothing; now a topic appears.
    running.wait_discovered(2).await;
    let topic = harness::unique("late");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap)
        .create()
        .unwrap();
    let new = rdkafka::admin::NewTopic::new(&topic, 5, rdkafka::admin::TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact");
    admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let recs = harness::records("src", 200, 5);
    let ids = harness::produce(a, &topic, &recs).await;
    let mut expected = Expected::new();
    harness::expect(&mut expected, ids, &recs);
    harness::wait_for_count(&[b], &topic, 200, Duration::from_secs(60)).await;
    running.stop().await;
    assert_eq!(
        duplex::inspect::partitions(&b.bootstrap, &topic, Duration::from_secs(5)).unwrap(),
        5,
        "source's partition count"
    );
    assert_eq!(
        cleanup_policy(&b.bootstrap, &topic).await,
        "compact",
        "source's cleanup.policy"
    );
    harness::assert_holds_exactly(b, &topic, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_created_on_both_sides_while_running_is_replicated_on_mock() {
    // The mock cluster answers no admin request, so the test creates the topic on both
    // sides (DESIGN.md "Test brokers"); discovery is what is under test here.
    let Some(clusters) = harness::start(Provider::Mock, &["src", "dst"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let running = harness::run_engine(harness::spec(&[a, b], &[[0, 1]], "late\\..*"));
    running.wait_discovered(2).await;
    let topic = harness::unique("late");
    b.create_topic(&topic, 3).await;
    a.create_topic(&topic, 3).await;
    let recs = harness::records("src", 200, 3);
    let ids = harness::produce(a, &topic, &recs).await;
    let mut expected = Expected::new();
    harness::expect(&mut expected, ids, &recs);
    harness::wait_for_count(&[b], &topic, 200, Duration::from_secs(60)).await;
    running.stop().await;
    harness::assert_holds_exactly(b, &topic, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_target_topic_on_mock_is_an_error_not_an_auto_created_topic() {
    let Some(clusters) = harness::start(Provider::Mock, &["src", "dst"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("orphan");
    a.create_topic(&topic, 3).await;
    let mut spec = harness::spec(&[a, b], &[[0, 1]], "orphan\\..*");
    spec.limits.request_timeout = Duration::from_secs(1);
    let running = harness::run_engine(spec);
    let m = running.flow("src->dst").await;
    // The topic's partitions wait to be tried again (the operator may create it); the
    // flow itself is not restarted over one topic (issue 10).
    harness::wait_until(
        "the topic's partitions to wait after a failed creation",
        Duration::from_secs(30),
        || m.partitions_waiting.load(Relaxed) == 3 && m.assignment_errors.load(Relaxed) >= 1,
    )
    .await;
    let error = m.last_error().unwrap();
    let restarts = m.restarts.load(Relaxed);
    running.stop().await;
    assert_eq!(
        restarts, 0,
        "one topic that cannot be created restarted the flow: {error}"
    );
    assert!(
        error.contains(&format!("target topic {topic} on cluster dst")),
        "{error}"
    );
    assert!(
        error.contains("create it on the target with 3 partitions"),
        "{error}"
    );
    assert_eq!(
        duplex::inspect::partitions(&b.bootstrap, &topic, Duration::from_secs(5)).unwrap(),
        0,
        "the target topic must not be auto-created with the broker's default shape"
    );
}

/// A target topic with fewer partitions than the source's: the flow tries to add them
/// (CreatePartitions); the mock answers no admin request, so the topic's partitions wait
/// with an error that says what to do, and nothing is written to a partition number
/// that does not exist on the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_fewer_partitions_is_grown_or_named() {
    let Some(clusters) = harness::start(Provider::Mock, &["src", "dst"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("narrow");
    a.create_topic(&topic, 3).await;
    b.create_topic(&topic, 2).await;
    let mut spec = harness::spec(&[a, b], &[[0, 1]], "narrow\\..*");
    spec.limits.request_timeout = Duration::from_secs(1);
    let running = harness::run_engine(spec);
    let m = running.flow("src->dst").await;
    harness::wait_until(
        "the topic's partitions to wait after the target could not grow",
        Duration::from_secs(30),
        || m.partitions_waiting.load(Relaxed) == 3 && m.assignment_errors.load(Relaxed) >= 1,
    )
    .await;
    let error = m.last_error().unwrap();
    running.stop().await;
    assert!(
        error.contains(&format!("target topic {topic} on cluster dst"))
            && error.contains("it has 2 partitions and the source has 3")
            && error.contains("add partitions on the target (adding them failed"),
        "{error}"
    );
}

/// A target topic with more partitions than the source: replicated partition for
/// partition, the extra one left alone, and the flow's gauge counts the topic. With
/// growth turned off, a narrower target is named and nothing is tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wider_target_is_counted_and_growth_can_be_turned_off() {
    let Some(clusters) = harness::start(Provider::Mock, &["src", "dst"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let wide = harness::unique("shape.wide");
    let narrow = harness::unique("shape.narrow");
    a.create_topic(&wide, 2).await;
    b.create_topic(&wide, 3).await;
    a.create_topic(&narrow, 3).await;
    b.create_topic(&narrow, 2).await;
    let mut spec = harness::spec(&[a, b], &[[0, 1]], "shape\\..*");
    spec.limits.request_timeout = Duration::from_secs(1);
    spec.limits.grow_target_partitions = false;
    let running = harness::run_engine(spec);
    let m = running.flow("src->dst").await;
    let recs = harness::records("src", 100, 2);
    harness::produce(a, &wide, &recs).await;
    harness::wait_for_count(&[b], &wide, 100, Duration::from_secs(60)).await;
    harness::wait_until(
        "the narrow topic's partitions to wait",
        Duration::from_secs(30),
        || m.partitions_waiting.load(Relaxed) == 3 && m.assignment_errors.load(Relaxed) >= 1,
    )
    .await;
    let wider = m.wider_targets.lock().unwrap().clone();
    let error = m.last_error().unwrap();
    let text = running.registry.render();
    running.stop().await;
    assert_eq!(wider.into_iter().collect::<Vec<_>>(), [wide.clone()]);
    assert!(
        text.contains("duplex_flow_target_topics_wider{flow=\"src->dst\",link=\"src-dst\"} 1"),
        "{text}"
    );
    assert_eq!(
        harness::watermarks(b, &wide, 2),
        (0, 0),
        "the extra partition gets nothing"
    );
    assert!(
        error.contains(&format!("target topic {narrow} on cluster dst"))
            && error.contains("(limits.grow_target_partitions is false)")
            && !error.contains("adding them failed"),
        "{error}"
    );
}

/// A topic deleted on the source while its partitions replicate: the flow lets go of
/// them without a restart, the target keeps the topic and everything it received
/// (Duplex never deletes a topic), the gauge names it, and the other topics carry on.
/// External clusters only (harness `Feature::DeleteTopics`: on Tansu the deletion
/// crashes librdkafka).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_deleted_on_the_source_is_kept_on_the_target_on_external() {
    let provider = Provider::External;
    if !harness::needs(
        provider,
        Feature::DeleteTopics,
        "a_topic_deleted_on_the_source",
    ) {
        return;
    }
    let Some(clusters) = harness::start(provider, &["src", "dst"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let (gone, kept) = (harness::unique("del.gone"), harness::unique("del.kept"));
    a.create_topic(&gone, 2).await;
    a.create_topic(&kept, 2).await;
    let recs = harness::records("src", 50, 2);
    let gone_ids = harness::produce(a, &gone, &recs).await;
    let kept_ids = harness::produce(a, &kept, &recs).await;
    let running = harness::run_engine(harness::spec(&[a, b], &[[0, 1]], "del\\..*"));
    let m = running.flow("src->dst").await;
    harness::wait_for_count(&[b], &gone, 50, Duration::from_secs(60)).await;
    harness::wait_for_count(&[b], &kept, 50, Duration::from_secs(60)).await;
    a.admin()
        .delete_topics(&[&gone], &AdminOptions::new())
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    harness::wait_until(
        "the flow to let go of the deleted topic",
        Duration::from_secs(30),
        || m.deleted_sources.lock().unwrap().contains(&gone),
    )
    .await;
    assert_eq!(
        m.partitions.load(Relaxed),
        2,
        "the kept topic's partitions run"
    );
    let more = harness::records("src2", 30, 2);
    let more_ids = harness::produce(a, &kept, &more).await;
    harness::wait_for_count(&[b], &kept, 80, Duration::from_secs(60)).await;
    // Twelve refreshes later (6 s: past the stall timeout, 5 s), still no restart.
    let rounds = m.refreshes.load(Relaxed);
    harness::wait_until("twelve more refreshes", Duration::from_secs(30), || {
        m.refreshes.load(Relaxed) >= rounds + 12
    })
    .await;
    let text = running.registry.render();
    let (restarts, error) = (m.restarts.load(Relaxed), m.last_error());
    running.stop().await;
    assert_eq!(restarts, 0, "the deletion restarted the flow: {error:?}");
    assert!(
        text.contains("duplex_flow_source_topics_deleted{flow=\"src->dst\",link=\"src-dst\"} 1"),
        "{text}"
    );
    let mut expected = Expected::new();
    harness::expect(&mut expected, gone_ids, &recs);
    harness::assert_holds_exactly(b, &gone, &expected);
    let mut expected = Expected::new();
    harness::expect(&mut expected, kept_ids, &recs);
    harness::expect(&mut expected, more_ids, &more);
    harness::assert_holds_exactly(b, &kept, &expected);
}
