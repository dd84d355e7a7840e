//! Topic settings follow their owner cluster (docs/topic-configs.md): copied at
//! creation, copied again within the refresh interval when the owner changes one, a
//! value changed on another cluster settles back to the owner's and stays there, and
//! excluded keys are left alone. Tansu serves DescribeConfigs and
//! IncrementalAlterConfigs; librdkafka's mock cluster answers neither, so there the
//! test checks that the topic is still replicated, discovery is not held back, and the
//! failure is counted.

mod harness;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use duplex_sync::acls::{Acl, Operation, Permission};
use duplex_sync::admin_ffi::{AdminError, alter_topic, create_topic_acls, describe_topic_acls};
use duplex_sync::topic_configs::{Change, describe};
use harness::{Expected, Feature, Provider, TestCluster};
use regex::Regex;

const WAIT: Duration = Duration::from_secs(30);

/// The value of each key `c` lists for `topic` (Tansu lists the topic's own keys).
async fn settings(c: &TestCluster, topic: &str) -> BTreeMap<String, String> {
    let got = describe(&c.admin(), &[topic.to_string()], Duration::from_secs(10))
        .await
        .expect("DescribeConfigs");
    match got.get(topic) {
        Some(Ok(s)) => s
            .values
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

async fn change(c: &TestCluster, topic: &str, changes: &[Change]) {
    let (client, topic, changes) = (c.admin(), topic.to_string(), changes.to_vec());
    tokio::task::spawn_blocking(move || {
        alter_topic(client.inner(), &topic, &changes, Duration::from_secs(10))
    })
    .await
    .unwrap()
    .expect("IncrementalAlterConfigs");
}

fn set(k: &str, v: &str) -> Change {
    Change::Set(k.into(), v.into())
}

async fn wait_for(c: &TestCluster, topic: &str, key: &str, value: Option<&str>) {
    let what = format!("{key} = {value:?} on {}", c.id);
    harness::wait_until_async(&what, WAIT, || async {
        settings(c, topic).await.get(key).map(String::as_str) == value
    })
    .await;
}

/// A chain a–b–c. The topic is created on `created_on` with settings; `owner` (`None`:
/// the first cluster, a) owns them; the far end of the chain from the owner changes a
/// key, which settles back, while a change on the owner reaches both others.
async fn settings_follow_the_owner(owner: Option<&str>) {
    let provider = Provider::Tansu;
    if !harness::needs(provider, Feature::Admin, "settings_follow_the_owner") {
        return;
    }
    let Some(clusters) = harness::start(provider, &["a", "b", "c"]) else {
        return;
    };
    let [a, b, c] = [&clusters[0], &clusters[1], &clusters[2]];
    let (own, far) = if owner == Some("c") { (c, a) } else { (a, c) };
    let topic = harness::unique("conf");
    a.create_topic_with(
        &topic,
        3,
        &[
            ("cleanup.policy", "compact"),
            ("retention.ms", "3600000"),
            ("segment.ms", "600000"),
            ("min.insync.replicas", "1"),
        ],
    )
    .await;
    let recs = harness::records("a", 60, 3);
    let ids = harness::produce(a, &topic, &recs).await;
    let mut spec = harness::spec(&[a, b, c], &[[0, 1], [1, 2]], "conf\\..*");
    spec.topic_configs.owner = owner.map(String::from);
    spec.topic_configs.exclude = vec![Regex::new(r"segment\.ms").unwrap()];
    let running = harness::run_engine(spec);
    harness::wait_for_count(&[b, c], &topic, 60, WAIT).await;

    // At creation every copied key arrives, across two hops; excluded keys do not.
    for x in [b, c] {
        wait_for(x, &topic, "retention.ms", Some("3600000")).await;
        let s = settings(x, &topic).await;
        assert_eq!(s.get("cleanup.policy").map(String::as_str), Some("compact"));
        assert_eq!(
            s.get("segment.ms"),
            None,
            "excluded segment.ms copied: {s:?}"
        );
        assert_eq!(
            s.get("min.insync.replicas"),
            None,
            "built-in exclude copied: {s:?}"
        );
    }

    // The owner changes a key and sets a new one: both reach every cluster.
    change(
        own,
        &topic,
        &[
            set("retention.ms", "7200000"),
            set("max.message.bytes", "2000000"),
        ],
    )
    .await;
    for x in [a, b, c] {
        wait_for(x, &topic, "retention.ms", Some("7200000")).await;
        wait_for(x, &topic, "max.message.bytes", Some("2000000")).await;
    }

    // The far end changes the same key, sets one the owner does not, and sets excluded
    // keys: the first two settle to the owner's (the extra key is removed), the excluded
    // ones stay, and nothing of it reaches the owner.
    change(
        far,
        &topic,
        &[
            set("retention.ms", "1000"),
            set("delete.retention.ms", "5000"),
            set("segment.ms", "1000"),
            set("min.insync.replicas", "2"),
        ],
    )
    .await;
    wait_for(far, &topic, "retention.ms", Some("7200000")).await;
    wait_for(far, &topic, "delete.retention.ms", None).await;
    // Several refreshes later it still holds, everywhere, and nothing more was sent (no
    // value goes back and forth, no change is sent again and again).
    let rounds = |n: u64| {
        let (running, from) = (&running, running.total(|m| m.refreshes.load(Relaxed)));
        harness::wait_until("more refreshes", WAIT, move || {
            running.total(|m| m.refreshes.load(Relaxed)) >= from + n
        })
    };
    // A round in flight when the far end settled has counted its change by now.
    rounds(8).await;
    let sent = running.total(|m| m.topic_config_changes.load(Relaxed));
    // Six more rounds of each of the four flows (config sync runs at the same interval).
    rounds(24).await;
    assert_eq!(
        running.total(|m| m.topic_config_changes.load(Relaxed)),
        sent,
        "changes sent after the settings settled"
    );
    for x in [a, b, c] {
        let s = settings(x, &topic).await;
        assert_eq!(
            s.get("retention.ms").map(String::as_str),
            Some("7200000"),
            "on {}: {s:?}",
            x.id
        );
        assert_eq!(s.get("delete.retention.ms"), None, "on {}: {s:?}", x.id);
    }
    let f = settings(far, &topic).await;
    assert_eq!(
        f.get("segment.ms").map(String::as_str),
        Some("1000"),
        "excluded key changed: {f:?}"
    );
    assert_eq!(
        f.get("min.insync.replicas").map(String::as_str),
        Some("2"),
        "built-in exclude changed: {f:?}"
    );
    let o = settings(own, &topic).await;
    assert_ne!(
        o.get("segment.ms").map(String::as_str),
        Some("1000"),
        "reached the owner: {o:?}"
    );

    // Only the flows away from the owner changed anything.
    let (toward, away) = if own.id == "a" {
        (["b->a", "c->b"], ["a->b", "b->c"])
    } else {
        (["a->b", "b->c"], ["c->b", "b->a"])
    };
    for f in toward {
        let n = running.flow(f).await.topic_config_changes.load(Relaxed);
        assert_eq!(n, 0, "flow {f} toward the owner changed settings");
    }
    for f in away {
        let n = running.flow(f).await.topic_config_changes.load(Relaxed);
        assert!(n >= 1, "flow {f} changed nothing");
    }
    assert_eq!(running.total(|m| m.topic_config_errors.load(Relaxed)), 0);
    running.stop().await;
    let mut expected = Expected::new();
    harness::expect(&mut expected, ids, &recs);
    harness::assert_holds_exactly(c, &topic, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_follow_the_first_cluster_on_tansu() {
    settings_follow_the_owner(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_follow_the_configured_owner_on_tansu() {
    settings_follow_the_owner(Some("c")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mock_settings_are_not_copied_and_the_rest_goes_on() {
    let provider = Provider::Mock;
    let clusters = harness::start(provider, &["a", "b"]).unwrap();
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("conf");
    a.create_topic(&topic, 2).await;
    b.create_topic(&topic, 2).await;
    let recs = harness::records("a", 40, 2);
    let ids = harness::produce(a, &topic, &recs).await;
    let mut spec = harness::spec(&[a, b], &[[0, 1]], "conf\\..*");
    spec.limits.request_timeout = Duration::from_secs(2);
    let running = harness::run_engine(spec);
    harness::wait_for_count(&[b], &topic, 40, WAIT).await;
    let m = running.flow("a->b").await;
    // The mock never answers DescribeConfigs: the round times out and is counted ...
    harness::wait_until("a failed round of config sync", WAIT, || {
        m.topic_config_errors.load(Relaxed) >= 1
    })
    .await;
    // ... while discovery goes on at its own pace (a refresh every 500 ms), not held
    // behind it.
    let rounds = m.refreshes.load(Relaxed);
    assert!(
        rounds >= 4,
        "{rounds} refreshes while config sync waited 2 s"
    );
    assert_eq!(m.topic_config_changes.load(Relaxed), 0);
    assert_eq!(m.restarts.load(Relaxed), 0, "{:?}", m.last_error());
    running.stop().await;
    let mut expected = Expected::new();
    harness::expect(&mut expected, ids, &recs);
    harness::assert_holds_exactly(b, &topic, &expected);
}

fn acl(topic: &str, principal: &str, operation: Operation) -> Acl {
    Acl {
        topic: topic.into(),
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission: Permission::Allow,
    }
}

async fn acls_of(c: &TestCluster, topic: &str) -> Vec<Acl> {
    let client = c.admin();
    let mut got = tokio::task::spawn_blocking(move || {
        describe_topic_acls(client.inner(), Duration::from_secs(10))
    })
    .await
    .unwrap()
    .expect("DescribeAcls");
    got.retain(|a| a.topic == topic);
    got.sort();
    got
}

async fn create_acls(c: &TestCluster, acls: Vec<Acl>) -> Vec<Result<(), AdminError>> {
    let client = c.admin();
    tokio::task::spawn_blocking(move || {
        create_topic_acls(client.inner(), &acls, Duration::from_secs(10))
    })
    .await
    .unwrap()
    .expect("CreateAcls")
}

/// With ACL sync on, a READ and a DESCRIBE ACL of a topic on the owner reach the other
/// cluster; a WRITE ACL does not. Needs clusters with an authorizer (external).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_and_describe_acls_follow_the_owner_on_external() {
    let provider = Provider::External;
    if !harness::needs(
        provider,
        Feature::Acls,
        "read_and_describe_acls_follow_the_owner",
    ) {
        return;
    }
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("conf");
    a.create_topic(&topic, 1).await;
    let reader = format!("User:{}", harness::unique("reader"));
    let created = create_acls(
        a,
        vec![
            acl(&topic, &reader, Operation::Read),
            acl(&topic, &reader, Operation::Describe),
        ],
    )
    .await;
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let mut spec = harness::spec(&[a, b], &[[0, 1]], "conf\\..*");
    spec.topic_configs.acls = true;
    let running = harness::run_engine(spec);
    let want = vec![
        acl(&topic, &reader, Operation::Read),
        acl(&topic, &reader, Operation::Describe),
    ];
    harness::wait_until_async("the ACLs on b", WAIT, || async {
        acls_of(b, &topic).await == want
    })
    .await;
    running.stop().await;
}

/// Tansu 0.6 stubs the ACL requests: DescribeAcls lists none (and its CreateAcls
/// answer makes librdkafka abort, so it is not sent here). With ACL sync on, the ACL
/// reads run every round without an error, there is nothing to copy, and replication
/// and settings are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_sync_on_tansu_reads_none_and_leaves_the_rest_alone() {
    let provider = Provider::Tansu;
    if !harness::needs(provider, Feature::Admin, "acl_sync_on_tansu") {
        return;
    }
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("conf");
    a.create_topic_with(&topic, 2, &[("retention.ms", "3600000")])
        .await;
    assert_eq!(acls_of(a, &topic).await, vec![]);
    let recs = harness::records("a", 20, 2);
    harness::produce(a, &topic, &recs).await;
    let mut spec = harness::spec(&[a, b], &[[0, 1]], "conf\\..*");
    spec.topic_configs.acls = true;
    let running = harness::run_engine(spec);
    harness::wait_for_count(&[b], &topic, 20, WAIT).await;
    wait_for(b, &topic, "retention.ms", Some("3600000")).await;
    let m = running.flow("a->b").await;
    let rounds = m.refreshes.load(Relaxed);
    harness::wait_until("three more refreshes", WAIT, || {
        m.refreshes.load(Relaxed) >= rounds + 3
    })
    .await;
    assert_eq!(running.total(|m| m.acl_errors.load(Relaxed)), 0);
    assert_eq!(running.total(|m| m.acls_created.load(Relaxed)), 0);
    running.stop().await;
}
