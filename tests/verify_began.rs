//! Records produced before Duplex began replicating (a link started at `latest`) are out
//! of scope, not missing: the flow records where it began in its checkpoints' commit
//! metadata (`b=`), carries it through restarts, and `duplex verify` reads it.

mod harness;

use std::time::Duration;

use duplex_sync::resume::parse_checkpoint_metadata;
use duplex_sync::spec::StartPosition;
use duplex_verifier::Verdict;
use harness::{Feature, Provider, TestCluster};

const PARTITIONS: i32 = 2;
/// Records per partition produced before Duplex first ran.
const BEFORE: i64 = 50;

/// What the checkpoints of `group` on `c` say replication began at, per partition.
async fn began(c: &TestCluster, group: &str, topic: &str) -> Vec<Option<i64>> {
    harness::committed(c, group, topic, PARTITIONS)
        .await
        .into_iter()
        .map(|(_, metadata)| parse_checkpoint_metadata(&metadata).and_then(|m| m.began))
        .collect()
}

async fn records_before_replication_began_are_out_of_scope(provider: Provider) {
    let test = "records_before_replication_began_are_out_of_scope";
    if !harness::needs(provider, Feature::CommitMetadata, test) {
        return;
    }
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("late");
    a.create_topic(&topic, PARTITIONS).await;
    b.create_topic(&topic, PARTITIONS).await;
    let n = |per_partition: i64| (per_partition * PARTITIONS as i64) as usize;
    harness::produce(a, &topic, &harness::records("old", n(BEFORE), PARTITIONS)).await;

    let mut spec = harness::spec(&[a, b], &[[0, 1]], "late\\..*");
    spec.links[0].start = StartPosition::Latest;
    let group = duplex_sync::flow::group_id(&spec.links[0].name, "a", "b");
    // Two runs: the second resumes from the checkpoint and must carry `b=` on.
    for (run, (prefix, per_partition)) in [("first", 30), ("second", 20)].into_iter().enumerate() {
        let running = harness::run_engine(spec.clone());
        running.wait_discovered(2).await;
        assert_eq!(
            began(a, &group, &topic).await,
            vec![Some(BEFORE); PARTITIONS as usize],
            "run {run}: the checkpoint says where replication began"
        );
        harness::produce(
            a,
            &topic,
            &harness::records(prefix, n(per_partition), PARTITIONS),
        )
        .await;
        let on_b = if run == 0 { 30 } else { 50 };
        harness::wait_for_count(&[b], &topic, n(on_b) as i64, Duration::from_secs(60)).await;
        running.stop().await;
    }
    assert_eq!(
        began(a, &group, &topic).await,
        vec![Some(BEFORE); PARTITIONS as usize],
        "commits after the restart carried where replication began"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[a, b]);
    let args = ["--between", "a,b", "--topics", &topic];
    let out = harness::verify::run(&config, dir.path(), &args).await;
    let describe = harness::verify::describe(&out);
    assert_eq!(out.status.code(), Some(0), "{describe}");
    let report = harness::verify::report(dir.path());
    assert_eq!(report.verdict, Verdict::Pass, "{describe}");
    assert_eq!(report.totals.matched, n(50) as u64);
    assert_eq!(report.totals.missing, 0);
    for part in &report.comparisons[0].topics[0].partitions {
        let g = part
            .groups
            .iter()
            .find(|g| g.origin.as_deref() == Some("a"))
            .unwrap();
        assert_eq!(
            g.replication_began,
            Some(BEFORE),
            "partition {}",
            part.partition
        );
        assert_eq!(g.from, vec![BEFORE]);
        assert_eq!(g.source.out_of_scope, BEFORE as u64);
        assert_eq!((g.source.records, g.target.records), (50, 50));
    }

    // The same clusters under a link of another name (so another group, with no
    // checkpoints): nothing says where replication began, and the 100 early records
    // are missing. The scope above came from the checkpoints.
    let other = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&config).unwrap() + "name = \"other\"\n";
    let config = other.path().join("duplex.toml");
    std::fs::write(&config, text).unwrap();
    harness::verify::run_expecting(&config, other.path(), &args, 1).await;
    let report = harness::verify::report(other.path());
    assert_eq!(report.totals.missing, n(BEFORE) as u64);
    assert_eq!(report.totals.matched, n(50) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_before_replication_began_are_out_of_scope_on_mock() {
    records_before_replication_began_are_out_of_scope(Provider::Mock).await;
}

/// Tansu 0.6.0 drops commit metadata, so it cannot say where replication began
/// (docs/testing.md); external clusters (`DUPLEX_TEST_EXTERNAL`) can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_before_replication_began_are_out_of_scope_on_external() {
    records_before_replication_began_are_out_of_scope(Provider::External).await;
}
