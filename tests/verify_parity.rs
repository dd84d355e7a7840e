//! `duplex verify` passes where the sides agree: identical topics (identity and
//! positional), an active-active pair replicated by Duplex while it runs, a compacted
//! topic with another history but the same latest values. A run killed with SIGKILL
//! resumes to the same report, and a store derived again from scratch is the same store.
//! `--max-rate` holds the read rate of each side.

mod harness;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use duplex_verifier::report::Report;
use duplex_verifier::store::Store;
use duplex_verifier::{Verdict, VerifySpec};
use harness::{Provider, Rec, TestCluster};
use rand::Rng;

/// Writes `n` records on `a` per partition and their provenance-carrying copies on `b`.
async fn replicated_topic(
    a: &TestCluster,
    b: &TestCluster,
    topic: &str,
    partitions: i32,
    n: usize,
) {
    a.create_topic(topic, partitions).await;
    b.create_topic(topic, partitions).await;
    let recs = harness::records("a", n * partitions as usize, partitions);
    let ids = harness::produce(a, topic, &recs).await;
    let copies: Vec<Rec> = recs
        .iter()
        .zip(&ids)
        .map(|(r, id)| harness::verify::replica(r, "a", id.1, id.2))
        .collect();
    harness::produce(b, topic, &copies).await;
}

fn spec(clusters: &[&TestCluster], topics: &str, store: &std::path::Path) -> VerifySpec {
    let sides = clusters.iter().map(|c| c.spec()).collect();
    VerifySpec::new(
        sides,
        regex::Regex::new(&format!("^(?:{topics})$")).unwrap(),
        store.to_path_buf(),
    )
}

async fn verify_lib(spec: VerifySpec) -> Report {
    tokio::task::spawn_blocking(move || {
        duplex_verifier::run::verify(&spec, &AtomicBool::new(false), &|_| {})
            .expect("verification runs")
    })
    .await
    .unwrap()
}

/// The parts of a report that depend only on what the clusters hold.
fn outcome(r: &Report) -> String {
    serde_json::to_string_pretty(&(&r.verdict, &r.totals, &r.comparisons)).unwrap()
}

async fn identical_topics_pass(provider: Provider) {
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("same");
    replicated_topic(a, b, &topic, 3, 200).await;
    // A plain copy without provenance, into partitions that held 4 records before.
    let plain = harness::unique("plain");
    a.create_topic(&plain, 2).await;
    b.create_topic(&plain, 2).await;
    let recs = harness::records("a", 300, 2);
    harness::produce(a, &plain, &recs).await;
    harness::produce(b, &plain, &harness::records("b", 8, 2)).await;
    // The copying tool adds a header of its own, which the run is told to ignore.
    let tagged: Vec<Rec> = recs
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.headers
                .push(("__mskmr".into(), Some(b"replicator-1".to_vec())));
            r
        })
        .collect();
    harness::produce(b, &plain, &tagged).await;

    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[a, b]);
    let topics = format!("{topic}|{plain}");
    let from = format!("b:{plain}=4");
    let args = [
        "--between",
        "a,b",
        "--topics",
        &topics,
        "--positional",
        &plain,
        "--from",
        &from,
        "--ignore-header",
        "__mskmr",
    ];
    let out = harness::verify::run_expecting(&config, dir.path(), &args, 0).await;
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("PASS"));
    let report = harness::verify::report(dir.path());
    assert_eq!(report.verdict, Verdict::Pass);
    assert_eq!(report.totals.matched, 600 + 300);
    assert_eq!(report.totals.discrepancies(), 0);
    for t in &report.comparisons[0].topics {
        for p in &t.partitions {
            for g in &p.groups {
                assert_eq!(
                    g.source.digest, g.target.digest,
                    "{}/{}",
                    t.topic, p.partition
                );
                assert!(g.source.records > 0);
            }
        }
    }
    let dom = harness::browser::dump_dom(&dir.path().join("report/parity.html"));
    assert!(dom.contains(">PASS<"), "verdict in the page");
    assert_eq!(dom.matches("cell parity").count(), 5, "3 + 2 green cells");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_topics_pass_on_mock() {
    identical_topics_pass(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_topics_pass_on_tansu() {
    identical_topics_pass(Provider::Tansu).await;
}

/// Duplex replicating both ways while the verifier reads: PASS once replication caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_pair_verified_while_duplex_runs() {
    let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("orders");
    a.create_topic(&topic, 4).await;
    b.create_topic(&topic, 4).await;
    let running = harness::run_engine(harness::spec(&[a, b], &[[0, 1]], "orders\\..*"));
    let (ra, rb) = (harness::records("a", 600, 4), harness::records("b", 400, 4));
    tokio::join!(
        harness::produce(a, &topic, &ra),
        harness::produce(b, &topic, &rb)
    );
    harness::wait_for_count(&[a, b], &topic, 1000, Duration::from_secs(60)).await;

    let store = tempfile::tempdir().unwrap();
    let report = verify_lib(spec(&[a, b], &topic, store.path())).await;
    running.stop().await;
    assert_eq!(report.verdict, Verdict::Pass, "{}", outcome(&report));
    assert_eq!(report.totals.matched, 1000);
    let origins: Vec<_> = report.comparisons[0].topics[0].partitions[0]
        .groups
        .iter()
        .map(|g| g.origin.clone().unwrap())
        .collect();
    assert_eq!(origins, ["a", "b"], "records of both origins compared");
}

/// `--max-rate` holds per side: 1,200 records a side at 1,000/s take at least the
/// 1.1 s that all but the first tenth of a second's batch are due after, and every
/// record is still compared. Without the limit the mock is read in well under that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rate_holds_the_read_rate() {
    let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("rate");
    replicated_topic(a, b, &topic, 3, 400).await;
    let store = tempfile::tempdir().unwrap();
    let mut spec = spec(&[a, b], &topic, store.path());
    spec.max_rate = Some(1_000);
    let began = std::time::Instant::now();
    let report = verify_lib(spec).await;
    let took = began.elapsed();
    assert_eq!(report.verdict, Verdict::Pass, "{}", outcome(&report));
    assert_eq!(report.totals.matched, 1_200);
    assert!(
        took >= Duration::from_millis(1_100),
        "1,200 records a side at 1,000/s read in {took:?}"
    );
}

/// Latest value per key: another history on the target, same latest values: PASS. Then
/// one key changes on the target: the next pass (on the same store, which reads
/// compacted topics again from the log start) names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topic_compares_latest_values() {
    let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("accounts");
    a.create_topic(&topic, 1).await;
    b.create_topic(&topic, 1).await;
    let rec = |key: &str, value: Option<&str>, ts: i64| Rec {
        partition: 0,
        key: Some(key.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
        headers: vec![("kind".into(), Some(b"balance".to_vec()))],
        timestamp: ts,
    };
    let mut history = Vec::new();
    for round in 0..3 {
        for k in 0..10 {
            history.push(rec(
                &format!("k{k}"),
                Some(&format!("v{round}-{k}")),
                1000 + round * 10 + k,
            ));
        }
    }
    history.push(rec("k9", None, 2000)); // k9 deleted
    harness::produce(a, &topic, &history).await;
    // The target got only the final state, later, in another order, plus a key that was
    // created and deleted again.
    let mut latest: Vec<Rec> = (0..9)
        .rev()
        .map(|k| rec(&format!("k{k}"), Some(&format!("v2-{k}")), 5000 + k))
        .collect();
    latest.push(rec("tmp", Some("x"), 6000));
    latest.push(rec("tmp", None, 6001));
    harness::produce(b, &topic, &latest).await;

    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[a, b]);
    let args = ["--between", "a,b", "--topics", &topic, "--compacted", ".*"];
    harness::verify::run_expecting(&config, dir.path(), &args, 0).await;
    let report = harness::verify::report(dir.path());
    assert_eq!(report.totals.matched, 9, "k0..k8 hold equal latest values");
    assert_eq!(
        report.comparisons[0].topics[0].mode,
        duplex_verifier::Mode::Compacted
    );

    harness::produce(b, &topic, &[rec("k3", Some("changed"), 7000)]).await;
    harness::verify::run_expecting(&config, dir.path(), &args, 1).await;
    let report = harness::verify::report(dir.path());
    // A key compacted away between passes leaves nothing to read after the stored
    // position, so compacted topics are read whole on every pass: 11 records and the
    // new one on the target.
    assert_eq!(
        report.run.sides[1].records_read, 12,
        "the second pass read the compacted topic again"
    );
    let s = &report.comparisons[0].topics[0].partitions[0].samples;
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        (s[0].key.as_deref(), s[0].source_offset, s[0].target_offset),
        (Some("k3"), Some(23), Some(11))
    );
}

/// SIGKILL at a random moment of a rate-limited run, then a run to the end on the same
/// store: the same report as an uninterrupted run on a fresh store, and the resumed run
/// read only what the store lacked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_verification_resumes_to_the_same_report() {
    let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("resume");
    replicated_topic(a, b, &topic, 4, 500).await;
    // One discrepancy of each side, so the report has content to compare.
    harness::produce(b, &topic, &harness::records("b", 3, 4)).await;

    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[a, b]);
    // 2,003 records per side at 500/s take 4 s; three runs killed within 1.2 s each read
    // at most 1,800: every run is killed mid-way.
    let args = ["--between", "a,b", "--topics", &topic, "--max-rate", "500"];
    let mut kills = 0;
    for _ in 0..3 {
        let mut child = harness::verify::command(&config, dir.path(), &args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let ms = rand::rng().random_range(300..1200);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    }
    assert_eq!(kills, 3, "every run was killed mid-way");
    harness::verify::run_expecting(
        &config,
        dir.path(),
        &["--between", "a,b", "--topics", &topic],
        1,
    )
    .await;
    let resumed = harness::verify::report(dir.path());
    let read: u64 = resumed.run.sides.iter().map(|s| s.records_read).sum();
    assert!(
        read < 4003,
        "the resumed run read {read} records: it resumed from the store"
    );

    let fresh = tempfile::tempdir().unwrap();
    let out = harness::verify::run(
        &config,
        fresh.path(),
        &["--between", "a,b", "--topics", &topic],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let whole = harness::verify::report(fresh.path());
    assert_eq!(
        whole.run.sides.iter().map(|s| s.records_read).sum::<u64>(),
        4003
    );
    assert_eq!(outcome(&resumed), outcome(&whole));
    assert_eq!(whole.totals.extra, 3);
}

/// The store is a projection: deleted and derived again, it holds the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_derived_again_is_the_same() {
    let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("derive");
    replicated_topic(a, b, &topic, 2, 300).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = spec(&[a, b], &topic, &store);
    let first = verify_lib(s.clone()).await;
    let digest = |s: &VerifySpec| {
        Store::open(&s.store_dir, &s.signature())
            .unwrap()
            .content_digest()
            .unwrap()
    };
    let before = digest(&s);
    std::fs::remove_dir_all(&store).unwrap();
    let second = verify_lib(s.clone()).await;
    assert_eq!(
        before,
        digest(&s),
        "same store content after deriving it again"
    );
    assert_eq!(outcome(&first), outcome(&second));
    assert_eq!(first.verdict, Verdict::Pass);

    // The same for a positional store, whose sequences are kept in runs too.
    let positional_store = dir.path().join("positional");
    let mut positional = spec(&[a, b], &topic, &positional_store);
    positional.positional = Some(regex::Regex::new(".*").unwrap());
    verify_lib(positional.clone()).await;
    let before = digest(&positional);
    std::fs::remove_dir_all(&positional_store).unwrap();
    verify_lib(positional.clone()).await;
    assert_eq!(before, digest(&positional), "same positional store content");

    // A store made for another verification is refused, not mixed in.
    let mut other = s.clone();
    other.positional = Some(regex::Regex::new(".*").unwrap());
    let err = Store::open(&other.store_dir, &other.signature())
        .unwrap_err()
        .to_string();
    assert!(err.contains("made for another verification"), "{err}");
}

/// `--follow` keeps the report current: PASS first; a record then written straight to
/// the target shows up as extra in a later pass; SIGTERM ends the run with the verdict of
/// the last pass as exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_keeps_the_report_current() {
    let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("follow");
    replicated_topic(a, b, &topic, 2, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[a, b]);
    let args = [
        "--between",
        "a,b",
        "--topics",
        &topic,
        "--follow",
        "--interval",
        "200ms",
    ];
    let mut child = harness::verify::command(&config, dir.path(), &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let path = dir.path().join("report/parity.json");
    let current =
        || -> Option<Report> { serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok() };
    harness::wait_until("a first PASS", Duration::from_secs(30), || {
        current().is_some_and(|r| r.verdict == Verdict::Pass && r.totals.matched == 200)
    })
    .await;
    harness::produce(b, &topic, &harness::records("b", 1, 2)).await;
    harness::wait_until(
        "the new record reported as extra",
        Duration::from_secs(30),
        || current().is_some_and(|r| r.verdict == Verdict::Fail && r.totals.extra == 1),
    )
    .await;
    let term = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1), "the last pass found a discrepancy");
}

/// Errors exit 2 with a message naming what is wrong, before any record is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_exit_2_naming_the_problem() {
    let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[&clusters[0], &clusters[1]]);
    for (args, says) in [
        (
            vec!["--between", "a,zz"],
            "--between: unknown cluster \"zz\" (the config has a, b)",
        ),
        (
            vec!["--between", "a"],
            "--between: name at least two cluster ids",
        ),
        (
            vec!["--between", "a,a"],
            "--between: cluster \"a\" is named twice",
        ),
        (
            vec!["--between", "a,b", "--topics", "("],
            "--topics: invalid regular expression",
        ),
        (
            vec!["--between", "a,b", "--from", "a=0", "--from", "q=1"],
            "--from: value 2 (q=1): unknown cluster \"q\"",
        ),
    ] {
        let out = harness::verify::run(&config, dir.path(), &args).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: expected {says:?} in {err}");
    }
    // Nothing selected is no proof: exit 2, never a PASS.
    let out = harness::verify::run(&config, dir.path(), &["--between", "a,b"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("matches no topic on a or b"),
        "{}",
        harness::verify::describe(&out)
    );
    // A store made by another verification is refused, not mixed in.
    let topic = harness::unique("store");
    for c in &clusters {
        c.create_topic(&topic, 1).await;
    }
    harness::verify::run_expecting(&config, dir.path(), &["--between", "a,b"], 0).await;
    let out = harness::verify::run(
        &config,
        dir.path(),
        &["--between", "a,b", "--compacted", ".*"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("was made for another verification"));
}
