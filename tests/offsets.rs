//! Consumer groups moved exactly (docs/offsets.md): a group consumes a prefix of each
//! partition on a, `duplex offsets translate` and `sync` move it to another cluster,
//! and a consumer of the group there reads exactly what it had not consumed — none
//! skipped — plus the records the translation reported it would read again, no more.
//! One-way and active-active (the partitions interleave local and replicated records
//! differently on each side), over a chain (a to c through b), and the refusals.

mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use harness::groups::{self, named};
use harness::{Feature, Provider, TestCluster};
use serde_json::Value;

const PARTITIONS: i32 = 4;

/// The service's config: the clusters, linked by `pairs`.
fn config(dir: &Path, clusters: &[&TestCluster], pairs: &[[&str; 2]]) -> String {
    let file = dir.join("duplex.toml");
    let toml = harness::service::links_toml(clusters, "offsets\\..*", pairs);
    std::fs::write(&file, toml).unwrap();
    file.display().to_string()
}

async fn offsets(args: &[&str]) -> (i32, Value, String) {
    let out = harness::service::cli(&[&["offsets"], args].concat()).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = stdout
        .lines()
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}{stderr}"),
    )
}

/// `duplex offsets VERB --config FILE --group GROUP --from FROM --to TO EXTRA...`.
async fn run(
    verb: &str,
    file: &str,
    group: &str,
    from: &str,
    to: &str,
    extra: &[&str],
) -> (i32, Value, String) {
    let args = [
        verb, "--config", file, "--group", group, "--from", from, "--to", to,
    ];
    offsets(&[&args[..], extra].concat()).await
}

/// Writes `per_partition` named records of each cluster's own to every partition.
async fn write(clusters: &[&TestCluster], topic: &str, per_partition: usize) {
    let parts: Vec<i32> = (0..PARTITIONS).collect();
    for c in clusters {
        harness::produce(c, topic, &named(&c.id, per_partition, &parts)).await;
    }
}

/// Clusters `ids` with a topic `offsets.NAME-…` on each, `per_partition` records of their
/// own written on the clusters `writers` (indexes), replicated over `links` until every
/// cluster holds them all.
async fn replicated(
    provider: Provider,
    ids: &[&str],
    name: &str,
    writers: &[usize],
    per_partition: usize,
    links: &[[usize; 2]],
) -> Option<(Vec<TestCluster>, String)> {
    let clusters = harness::start(provider, ids)?;
    let refs: Vec<_> = clusters.iter().collect();
    let topic = harness::unique(&format!("offsets.{name}"));
    for c in &refs {
        c.create_topic(&topic, PARTITIONS).await;
    }
    let written: Vec<&TestCluster> = writers.iter().map(|i| refs[*i]).collect();
    write(&written, &topic, per_partition).await;
    let total = (writers.len() * per_partition) as i64 * i64::from(PARTITIONS);
    replicate(&refs, links, &topic, total).await;
    Some((clusters, topic))
}

/// Replicates until every cluster holds `total` records, then stops the engine.
async fn replicate(clusters: &[&TestCluster], links: &[[usize; 2]], topic: &str, total: i64) {
    let running = harness::run_engine(harness::spec(clusters, links, "offsets\\..*"));
    harness::wait_for_count(clusters, topic, total, Duration::from_secs(90)).await;
    running.stop().await;
}

/// Every value of `topic` on `c`, per partition, in offset order.
async fn all_values(c: &TestCluster, topic: &str) -> BTreeMap<i32, Vec<String>> {
    groups::read_on(c, &harness::unique("offsets.all"), topic, PARTITIONS).await
}

/// Moves `group` from `from` to `to` and checks what its consumer reads there: every
/// record of `to` it had not consumed on `from`, once each, plus exactly the records the
/// translation counted as read again. Returns the re-delivered total.
async fn move_and_check(
    file: &str,
    from: &TestCluster,
    to: &TestCluster,
    group: &str,
    topic: &str,
    consumed: &BTreeMap<i32, Vec<String>>,
    member_check: bool,
) -> u64 {
    let mut args = vec![
        "--config", file, "--group", group, "--from", &from.id, "--to", &to.id, "--json",
    ];
    let (code, t, out) = offsets(&[&["translate"], &args[..]].concat()).await;
    assert_eq!(code, 0, "translate: {out}");
    let parts = t["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), PARTITIONS as usize, "{t}");
    let mut redelivered = BTreeMap::new();
    for p in parts {
        assert_eq!(p["status"], "translated", "{p}");
        redelivered.insert(
            p["partition"].as_i64().unwrap() as i32,
            p["redelivered"].as_u64().unwrap(),
        );
    }
    if !member_check {
        args.push("--no-member-check");
    }
    let (code, s, out) = offsets(&[&["sync"], &args[..]].concat()).await;
    assert_eq!(code, 0, "sync: {out}");
    assert_eq!(s["synced"], true, "{s}");
    // Everything `to` holds, and what the group reads there from its new offsets.
    let held = all_values(to, topic).await;
    let read = groups::read_on(to, group, topic, PARTITIONS).await;
    for p in 0..PARTITIONS {
        let was_consumed = |v: &String| consumed[&p].contains(v);
        let new_to_it: Vec<&String> = held[&p].iter().filter(|v| !was_consumed(v)).collect();
        let read_new: Vec<&String> = read[&p].iter().filter(|v| !was_consumed(v)).collect();
        assert_eq!(
            read_new, new_to_it,
            "partition {p}: the group reads every record it had not consumed, once, none skipped"
        );
        let again = read[&p].iter().filter(|v| was_consumed(v)).count() as u64;
        assert_eq!(
            again, redelivered[&p],
            "partition {p}: the records read again are the ones the translation counted"
        );
    }
    // Synced again: nothing moves, nothing is refused.
    let (code, s, out) = offsets(&[&["sync"], &args[..]].concat()).await;
    assert_eq!(code, 0, "second sync: {out}");
    for p in s["partitions"].as_array().unwrap() {
        assert_eq!(p["action"], "unchanged", "{p}");
    }
    redelivered.values().sum()
}

/// Per partition, a different prefix: none, some, all.
fn prefixes(total: usize) -> Vec<usize> {
    vec![0, total / 3, total, total * 2 / 3 + 1]
}

async fn one_way(provider: Provider) {
    let Some((clusters, topic)) =
        replicated(provider, &["a", "b"], "one-way", &[0], 150, &[[0, 1]]).await
    else {
        return;
    };
    let refs: Vec<_> = clusters.iter().collect();
    let group = harness::unique("app");
    let consumed = groups::consume_prefix(refs[0], &group, &topic, &prefixes(150)).await;
    let dir = tempfile_dir("one-way");
    let file = config(&dir, &refs, &[["a", "b"]]);
    let again = move_and_check(
        &file,
        refs[0],
        refs[1],
        &group,
        &topic,
        &consumed,
        provider.supports(Feature::DescribeGroups),
    )
    .await;
    assert_eq!(again, 0, "one-way: the translation is the exact equivalent");
}

/// Both sides written before replication starts: a's partitions hold a's records, then
/// b's; b's hold b's, then a's. A group that read some of a's records on a reads b's
/// first on b, then a's again (counted); one that read into b's records on a resumes
/// inside b's on b.
async fn active_active(provider: Provider) {
    let Some((clusters, topic)) =
        replicated(provider, &["a", "b"], "aa", &[0, 1], 60, &[[0, 1]]).await
    else {
        return;
    };
    let refs: Vec<_> = clusters.iter().collect();
    // More written on both while replicating (on Tansu each partition has one writer).
    let running = harness::run_engine(harness::spec(&refs, &[[0, 1]], "offsets\\..*"));
    for (i, c) in refs.iter().enumerate() {
        let parts = harness::write_partitions(provider, i, 2, PARTITIONS);
        harness::produce(c, &topic, &named(&format!("{}2", c.id), 20, &parts)).await;
    }
    let extra: usize = (0..2)
        .map(|i| harness::write_partitions(provider, i, 2, PARTITIONS).len() * 20)
        .sum();
    harness::wait_for_count(&refs, &topic, 480 + extra as i64, Duration::from_secs(90)).await;
    running.stop().await;
    let group = harness::unique("app");
    // Partition 2 read to its end.
    let n = harness::watermarks(refs[0], &topic, 2).1 as usize;
    let consumed = groups::consume_prefix(refs[0], &group, &topic, &[30, 90, n, 61]).await;
    let dir = tempfile_dir("aa");
    let file = config(&dir, &refs, &[["a", "b"]]);
    let again = move_and_check(
        &file,
        refs[0],
        refs[1],
        &group,
        &topic,
        &consumed,
        provider.supports(Feature::DescribeGroups),
    )
    .await;
    assert!(
        again > 0,
        "the two sides interleave differently: some records are read again"
    );
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(harness::unique(&format!("duplex-offsets-{name}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_mock() {
    one_way(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_tansu() {
    one_way(Provider::Tansu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_mock() {
    active_active(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_tansu() {
    active_active(Provider::Tansu).await;
}

/// A chain a–b–c: a and c are not neighbours; a group moves from a to c.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_a_chain_mock() {
    let chain = [[0, 1], [1, 2]];
    let (clusters, topic) = replicated(
        Provider::Mock,
        &["a", "b", "c"],
        "chain",
        &[0, 2],
        50,
        &chain,
    )
    .await
    .expect("mock");
    let refs: Vec<_> = clusters.iter().collect();
    let group = harness::unique("app");
    let consumed = groups::consume_prefix(refs[0], &group, &topic, &[10, 50, 75, 100]).await;
    let dir = tempfile_dir("chain");
    let file = config(&dir, &refs, &[["a", "b"], ["b", "c"]]);
    let again = move_and_check(&file, refs[0], refs[2], &group, &topic, &consumed, false).await;
    assert!(
        again > 0,
        "c holds its own records first: a's are read again there"
    );
}

/// Refused, with a reason, and nothing committed: replication behind the group, an
/// unknown group or cluster, a group ahead on the target, members not known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_mock() {
    let (clusters, topic) = replicated(Provider::Mock, &["a", "b"], "refused", &[0], 40, &[[0, 1]])
        .await
        .expect("mock");
    let refs: Vec<_> = clusters.iter().collect();
    // 25 more on a that b does not have; the group reads all of them.
    let parts: Vec<i32> = (0..PARTITIONS).collect();
    harness::produce(refs[0], &topic, &named("late", 25, &parts)).await;
    let group = harness::unique("app");
    groups::consume_prefix(refs[0], &group, &topic, &[65, 40, 10, 65]).await;
    let dir = tempfile_dir("refused");
    let file = config(&dir, &refs, &[["a", "b"]]);
    let args = [
        "--config", &file, "--from", "a", "--to", "b", "--group", &group, "--json",
    ];
    let (code, t, out) = offsets(&[&["translate"], &args[..]].concat()).await;
    assert_eq!(code, 1, "some partitions refused: {out}");
    let status: Vec<&str> = t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        status,
        ["refused", "translated", "translated", "refused"],
        "{t}"
    );
    let p0 = &t["partitions"][0];
    assert_eq!(p0["refusal"]["kind"], "behind", "{p0}");
    assert_eq!(p0["refusal"]["origins"][0]["origin"], "a");
    assert_eq!(p0["refusal"]["origins"][0]["consumed"], 64);
    assert_eq!(p0["refusal"]["origins"][0]["held"], 39);
    assert!(
        p0["reason"].as_str().unwrap().contains("(25 behind)"),
        "the reason names the lag: {p0}"
    );
    // The text table says the same.
    let (code, _, text) = run("translate", &file, &group, "a", "b", &[]).await;
    assert_eq!(code, 1);
    assert!(text.contains("refused: replication is behind"), "{text}");
    // A sync commits the partitions it could translate, and says which it could not.
    let (code, s, out) = offsets(&[&["sync"], &args[..], &["--no-member-check"]].concat()).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(s["synced"], false);
    assert_eq!(
        groups::committed(refs[1], &group, &topic, PARTITIONS),
        [None, Some(40), Some(10), None],
        "only translated partitions are committed"
    );
    // The group ahead on b is not moved back, unless asked.
    groups::commit(refs[1], &group, &topic, &[0, 40, 30, 0]);
    let (code, s, _) = offsets(
        &[
            &["sync"],
            &args[..],
            &["--no-member-check", "--topics", "offsets\\.refused.*"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, 1);
    assert_eq!(s["partitions"][2]["action"], "kept_ahead", "{s}");
    assert_eq!(
        groups::committed(refs[1], &group, &topic, PARTITIONS)[2],
        Some(30)
    );
    let (code, s, _) = offsets(
        &[
            &["sync"],
            &args[..],
            &["--no-member-check", "--allow-rewind"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, 1, "p0 and p3 are still refused");
    assert_eq!(s["partitions"][2]["action"], "committed", "{s}");
    assert_eq!(
        groups::committed(refs[1], &group, &topic, PARTITIONS)[2],
        Some(10)
    );
    // The mock answers no DescribeGroups: without --no-member-check nothing is committed.
    groups::commit(refs[1], &group, &topic, &[0, 0, 0, 0]);
    let (code, _, out) = offsets(&[&["sync"], &args[..], &["--timeout", "5s"]].concat()).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("has members on cluster b"), "{out}");
    assert_eq!(
        groups::committed(refs[1], &group, &topic, PARTITIONS),
        [Some(0), Some(0), Some(0), Some(0)]
    );
    // Unknown group, unknown cluster, same cluster twice.
    let (code, _, out) = run("translate", &file, "nobody", "a", "b", &[]).await;
    assert_eq!(code, 2);
    assert!(
        out.contains("group nobody has no committed offsets on cluster a"),
        "{out}"
    );
    let (code, _, out) = run("translate", &file, &group, "a", "x", &[]).await;
    assert_eq!(code, 2);
    assert!(
        out.contains("--to x: no such cluster") && out.contains("(it has a, b)"),
        "{out}"
    );
    let (code, _, out) = run("translate", &file, &group, "a", "a", &[]).await;
    assert_eq!(code, 2);
    assert!(out.contains("--from and --to are both a"), "{out}");
    // Once b caught up, every partition translates.
    replicate(&refs, &[[0, 1]], &topic, 260).await;
    let (code, t, out) = offsets(&[&["translate"], &args[..]].concat()).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(t["partitions"][0]["offset"], 65, "{t}");
}

/// A group with a running consumer on the target is never synced: where the broker
/// describes groups the refusal names the member; where it cannot (mock, Tansu 0.6.0)
/// the sync fails closed. Either way the group's offsets there do not move.
async fn active_group_refused(provider: Provider) {
    let Some((clusters, topic)) =
        replicated(provider, &["a", "b"], "active", &[0], 20, &[[0, 1]]).await
    else {
        return;
    };
    let refs: Vec<_> = clusters.iter().collect();
    let group = harness::unique("app");
    groups::consume_prefix(refs[0], &group, &topic, &[5, 5, 5, 5]).await;
    groups::commit(refs[1], &group, &topic, &[1, 1, 1, 1]);
    let member = groups::Member::join(refs[1], &group, &topic, "offsets-test-member").await;
    let dir = tempfile_dir("active");
    let file = config(&dir, &refs, &[["a", "b"]]);
    let (code, s, out) = run(
        "sync",
        &file,
        &group,
        "a",
        "b",
        &["--json", "--timeout", "5s"],
    )
    .await;
    if provider.supports(Feature::DescribeGroups) {
        assert_eq!(code, 1, "{out}");
        assert_eq!(s["synced"], false, "{s}");
        assert_eq!(s["members"][0]["client_id"], "offsets-test-member", "{s}");
    } else {
        assert_eq!(code, 2, "members unknown: refused as an error: {out}");
        assert!(out.contains("has members on cluster b"), "{out}");
    }
    member.leave().await;
    assert_eq!(
        groups::committed(refs[1], &group, &topic, PARTITIONS),
        [Some(1); 4],
        "nothing committed for a group with members"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_group_refused_mock() {
    active_group_refused(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_group_refused_tansu() {
    active_group_refused(Provider::Tansu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_group_refused_external() {
    active_group_refused(Provider::External).await;
}

/// Replication of b to a began after b's first records (the link starts at `latest`):
/// a holds only b's later records. A group that read them on a has not read b's earlier
/// ones, which b still holds: it reads them on b, none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_begun_later_mock() {
    let clusters = harness::start_mock(&["a", "b"], 1);
    let refs: Vec<_> = clusters.iter().collect();
    let topic = harness::unique("offsets.later");
    for c in &refs {
        c.create_topic(&topic, PARTITIONS).await;
    }
    let parts: Vec<i32> = (0..PARTITIONS).collect();
    harness::produce(refs[1], &topic, &named("b", 40, &parts)).await;
    let mut spec = harness::spec(&refs, &[[0, 1]], "offsets\\..*");
    spec.links[0].start = duplex_sync::spec::StartPosition::Latest;
    let running = harness::run_engine(spec);
    // b->a has started every partition at b's end before b writes again.
    let ba = running.flow("b->a").await;
    harness::wait_until(
        "b->a started its 4 partitions",
        Duration::from_secs(30),
        || ba.partitions.load(std::sync::atomic::Ordering::Relaxed) == i64::from(PARTITIONS),
    )
    .await;
    harness::produce(refs[1], &topic, &named("b-later", 20, &parts)).await;
    harness::wait_for_count(&refs[..1], &topic, 80, Duration::from_secs(60)).await;
    running.stop().await;
    assert_eq!(
        harness::service::count(refs[0], &topic, PARTITIONS),
        80,
        "a holds b's later records only"
    );
    let group = harness::unique("app");
    let consumed = groups::consume_prefix(refs[0], &group, &topic, &[20, 10, 20, 0]).await;
    let dir = tempfile_dir("later");
    let file = config(&dir, &refs, &[["a", "b"]]);
    let again = move_and_check(&file, refs[0], refs[1], &group, &topic, &consumed, false).await;
    assert_eq!(
        again, 50,
        "b's later records the group read on a, read again after b's first 40"
    );
}

/// A source written transactionally (the mock's transactions: commits and aborts are
/// accepted, and its read_committed readers see aborted records, so the group and the
/// flow both read them): translation stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_source_mock() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let clusters = harness::start_mock(&["a", "b"], 1);
    let refs: Vec<_> = clusters.iter().collect();
    let topic = harness::unique("offsets.txn");
    for c in &refs {
        c.create_topic(&topic, PARTITIONS).await;
    }
    let bootstrap = refs[0].bootstrap.clone();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        let p: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("transactional.id", "offsets-test")
            .create()
            .expect("transactional producer");
        p.init_transactions(Duration::from_secs(30)).expect("init");
        for batch in 0..6 {
            p.begin_transaction().expect("begin");
            for i in 0..10 {
                for part in 0..PARTITIONS {
                    let value = format!("txn/{part}/{batch}/{i}");
                    p.send(BaseRecord::<(), _>::to(&t).partition(part).payload(&value))
                        .expect("send");
                }
            }
            p.flush(Duration::from_secs(30)).expect("flush");
            if batch % 3 == 1 {
                p.abort_transaction(Duration::from_secs(30)).expect("abort");
            } else {
                p.commit_transaction(Duration::from_secs(30))
                    .expect("commit");
            }
        }
    })
    .await
    .unwrap();
    let held = |c: &TestCluster| {
        (0..PARTITIONS)
            .map(|p| harness::watermarks(c, &topic, p).1)
            .collect::<Vec<_>>()
    };
    let ends = held(refs[0]);
    let running = harness::run_engine(harness::spec(&refs, &[[0, 1]], "offsets\\..*"));
    let all = all_values(refs[0], &topic).await;
    let visible = all.values().map(Vec::len).sum::<usize>() as i64;
    harness::wait_for_count(&refs[1..], &topic, visible, Duration::from_secs(60)).await;
    running.stop().await;
    let group = harness::unique("app");
    let consumed = groups::consume_prefix(refs[0], &group, &topic, &[0, 25, 60, 33]).await;
    let dir = tempfile_dir("txn");
    let file = config(&dir, &refs, &[["a", "b"]]);
    let again = move_and_check(&file, refs[0], refs[1], &group, &topic, &consumed, false).await;
    assert_eq!(again, 0, "one-way: exact");
    eprintln!(
        "transactional_source_mock: a's partitions end at {ends:?} for {visible} records seen"
    );
}
