//! `duplex verify` never says PASS when the clusters differ, in the cases a resumed store
//! or a partial view could hide: a partition recreated since the last pass (with fewer
//! records, or refilled past where the store read), a replica in
//! the wrong partition, an origin's tail that reached neither side, a long run of
//! missing records in positional mode, a key compacted away between passes.

mod harness;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use duplex_verifier::report::{Kind, PartitionReport, Report, Sample};
use duplex_verifier::store::Store;
use duplex_verifier::{Verdict, VerifySpec};
use harness::{Provider, Rec, TestCluster};

fn spec(clusters: &[&TestCluster], topic: &str, store: &std::path::Path) -> VerifySpec {
    let sides = clusters.iter().map(|c| c.spec()).collect();
    VerifySpec::new(
        sides,
        regex::Regex::new(&format!("^{}$", regex::escape(topic))).unwrap(),
        store.to_path_buf(),
    )
}

/// One pass of `spec` over `store` (from a blocking thread: mock clusters keep serving).
async fn pass(store: &Arc<Store>, spec: &VerifySpec) -> Report {
    let (store, spec) = (Arc::clone(store), spec.clone());
    tokio::task::spawn_blocking(move || {
        duplex_verifier::run::pass(&store, &spec, &AtomicBool::new(false), &|_| {})
            .expect("verification runs")
    })
    .await
    .unwrap()
}

/// Writes `n` records on `a`'s partition 0; returns them and their copies as Duplex
/// would write them to another cluster (with provenance), for the caller to write.
async fn replicated(a: &TestCluster, topic: &str, n: usize) -> (Vec<Rec>, Vec<Rec>) {
    let recs = harness::records_on("a", n, &[0]);
    let ids = harness::produce(a, topic, &recs).await;
    let copies = recs
        .iter()
        .zip(&ids)
        .map(|(r, id)| harness::verify::replica(r, "a", id.1, id.2))
        .collect();
    (recs, copies)
}

fn partition(report: &Report, p: i32) -> &PartitionReport {
    report.comparisons[0].topics[0]
        .partitions
        .iter()
        .find(|x| x.partition == p)
        .expect("partition in report")
}

fn offsets(samples: &[Sample], kind: Kind) -> Vec<(Option<i64>, Option<i64>, Option<i64>)> {
    samples
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| (s.origin_offset, s.source_offset, s.target_offset))
        .collect()
}

async fn recreated_partition_is_read_again(provider: Provider) {
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("recreated");
    a.create_topic(&topic, 1).await;
    b.create_topic(&topic, 1).await;
    let (_, copies) = replicated(a, &topic, 20).await;
    harness::produce(b, &topic, &copies).await;
    let dir = tempfile::tempdir().unwrap();
    let first = spec(&[a, b], &topic, dir.path());
    let store = Arc::new(Store::open(dir.path(), &first.signature()).unwrap());
    let r = pass(&store, &first).await;
    assert_eq!((r.verdict, r.totals.matched), (Verdict::Pass, 20));

    // b's topic is deleted and created again, and only the first 12 copies are written
    // to it: to the verifier, cluster b now ends at offset 12 where it read up to 20.
    let again = harness::start(provider, &["b"]).unwrap().remove(0);
    again.create_topic(&topic, 1).await;
    harness::produce(&again, &topic, &copies[..12]).await;
    let second = spec(&[a, &again], &topic, dir.path());
    let r = pass(&store, &second).await;
    assert_eq!(r.verdict, Verdict::Fail, "{:#?}", r.totals);
    assert_eq!(
        (r.totals.matched, r.totals.missing),
        (12, 8),
        "{:#?}",
        r.totals
    );
    let p = partition(&r, 0);
    let want: Vec<_> = (12..20).map(|x| (Some(x), Some(x), None)).collect();
    assert_eq!(offsets(&p.samples, Kind::Missing), want);
    assert_eq!(p.samples.len(), 8, "{:#?}", p.samples);
}

/// Recreated and refilled past the stored position, with the same log start: only the
/// last record read, read again, tells.
async fn refilled_partition_is_read_again(provider: Provider) {
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("refilled");
    a.create_topic(&topic, 1).await;
    b.create_topic(&topic, 1).await;
    let (_, copies) = replicated(a, &topic, 20).await;
    harness::produce(b, &topic, &copies).await;
    let dir = tempfile::tempdir().unwrap();
    let first = spec(&[a, b], &topic, dir.path());
    let store = Arc::new(Store::open(dir.path(), &first.signature()).unwrap());
    let r = pass(&store, &first).await;
    assert_eq!((r.verdict, r.totals.matched), (Verdict::Pass, 20));

    // a gets 5 more records. b's topic is recreated and holds the copies of a's first
    // 10, then 10 records written on b, then the copies of a's 5 new ones: 25 records,
    // past the 20 the store read, and its new records are all a's copies.
    let recs = harness::records_on("a", 25, &[0]);
    let ids = harness::produce(a, &topic, &recs[20..]).await;
    let again = harness::start(provider, &["b"]).unwrap().remove(0);
    again.create_topic(&topic, 1).await;
    harness::produce(&again, &topic, &copies[..10]).await;
    harness::produce(&again, &topic, &harness::records_on("b", 10, &[0])).await;
    let tail: Vec<Rec> = recs[20..]
        .iter()
        .zip(&ids)
        .map(|(r, id)| harness::verify::replica(r, "a", id.1, id.2))
        .collect();
    harness::produce(&again, &topic, &tail).await;
    let second = spec(&[a, &again], &topic, dir.path());
    let r = pass(&store, &second).await;
    let t = &r.totals;
    assert_eq!(r.verdict, Verdict::Fail, "{t:#?}");
    assert_eq!(
        (t.matched, t.missing, t.extra, t.discrepancies()),
        (15, 10, 10, 20),
        "{t:?}"
    );
    let p = partition(&r, 0);
    let missing: Vec<_> = (10..20).map(|x| (Some(x), Some(x), None)).collect();
    assert_eq!(offsets(&p.samples, Kind::Missing), missing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refilled_partition_on_mock() {
    refilled_partition_is_read_again(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refilled_partition_on_tansu() {
    refilled_partition_is_read_again(Provider::Tansu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_partition_on_mock() {
    recreated_partition_is_read_again(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_partition_on_tansu() {
    recreated_partition_is_read_again(Provider::Tansu).await;
}

async fn wrong_partition_is_named(provider: Provider) {
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("misplaced");
    a.create_topic(&topic, 2).await;
    b.create_topic(&topic, 2).await;
    let (_, mut copies) = replicated(a, &topic, 10).await;
    // The copy of a's partition 0 offset 4 is written to b's partition 1 (its offset 0
    // there); partition 0 of b holds the nine others at offsets 0..9.
    copies[4].partition = 1;
    harness::produce(b, &topic, &copies).await;
    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[a, b]);
    let out = harness::verify::run(
        &config,
        dir.path(),
        &["--between", "a,b", "--topics", &topic],
    )
    .await;
    let said = harness::verify::describe(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let r = harness::verify::report(dir.path());
    assert_eq!(r.verdict, Verdict::Fail);
    let t = &r.totals;
    assert_eq!(
        (t.matched, t.wrong_partition, t.discrepancies()),
        (9, 1, 1),
        "only the wrong partition is reported, not a reorder or a missing record: {t:?}"
    );
    let s = &partition(&r, 0).samples;
    assert_eq!(s.len(), 1, "{s:#?}");
    assert_eq!(
        (
            s[0].kind,
            s[0].origin_offset,
            s[0].source_offset,
            s[0].target_offset
        ),
        (Kind::WrongPartition, Some(4), None, Some(0))
    );
    assert_eq!(s[0].held_in_partition, Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 wrong_partition") && stdout.contains("held in partition 1"),
        "{stdout}"
    );
    let dom = harness::browser::dump_dom(&dir.path().join("report/parity.html"));
    assert!(
        dom.contains("<th>Wrong partition</th>") && dom.contains("<td>wrong_partition</td>"),
        "the page names it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_partition_on_mock() {
    wrong_partition_is_named(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_partition_on_tansu() {
    wrong_partition_is_named(Provider::Tansu).await;
}

async fn third_origins_lost_tail_is_missing_on_both(provider: Provider) {
    let Some(clusters) = harness::start(provider, &["a", "b", "c"]) else {
        return;
    };
    let (a, b, c) = (&clusters[0], &clusters[1], &clusters[2]);
    let topic = harness::unique("mesh-tail");
    for x in [a, b, c] {
        x.create_topic(&topic, 1).await;
    }
    // c's 30 records: the first 20 reached a and b, the last 10 neither.
    let recs = harness::records_on("c", 30, &[0]);
    let ids = harness::produce(c, &topic, &recs).await;
    let copies: Vec<Rec> = recs[..20]
        .iter()
        .zip(&ids)
        .map(|(r, id)| harness::verify::replica(r, "c", id.1, id.2))
        .collect();
    harness::produce(a, &topic, &copies).await;
    harness::produce(b, &topic, &copies).await;
    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[a, b, c]);
    let out = harness::verify::run(
        &config,
        dir.path(),
        &["--between", "a,b", "--topics", &topic],
    )
    .await;
    let said = harness::verify::describe(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let r = harness::verify::report(dir.path());
    let t = &r.totals;
    assert_eq!(
        (t.matched, t.missing_on_both, t.discrepancies()),
        (20, 10, 10),
        "{t:?}"
    );
    let p = partition(&r, 0);
    let g = &p.groups[0];
    assert_eq!(
        (g.origin.as_deref(), g.watermark.clone()),
        (Some("c"), vec![30]),
        "the watermark is c's end offset"
    );
    let want: Vec<_> = (20..30).map(|x| (Some(x), None, None)).collect();
    assert_eq!(offsets(&p.samples, Kind::MissingOnBoth), want);
    assert!(p.samples.iter().all(|s| s.origin.as_deref() == Some("c")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("10 missing_on_both"), "{stdout}");
    let dom = harness::browser::dump_dom(&dir.path().join("report/parity.html"));
    assert!(
        dom.contains("<th>Missing on both</th>") && dom.contains("<td>missing_on_both</td>"),
        "the page names it"
    );

    // Records of c that a and b both hold pass, with c asked.
    let full: Vec<Rec> = recs[20..]
        .iter()
        .zip(&ids[20..])
        .map(|(r, id)| harness::verify::replica(r, "c", id.1, id.2))
        .collect();
    harness::produce(a, &topic, &full).await;
    harness::produce(b, &topic, &full).await;
    let out = harness::verify::run(
        &config,
        dir.path(),
        &["--between", "a,b", "--topics", &topic],
    )
    .await;
    let said = harness::verify::describe(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(harness::verify::report(dir.path()).totals.matched, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_origins_lost_tail_on_mock() {
    third_origins_lost_tail_is_missing_on_both(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_origins_lost_tail_on_tansu() {
    third_origins_lost_tail_is_missing_on_both(Provider::Tansu).await;
}

async fn positional_long_gap_is_missing(provider: Provider) {
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("long-gap");
    a.create_topic(&topic, 1).await;
    b.create_topic(&topic, 1).await;
    let recs = harness::records_on("a", 100, &[0]);
    harness::produce(a, &topic, &recs).await;
    // A plain copy that lost 40 records in a row, four times the alignment window.
    let copy: Vec<Rec> = recs[..30].iter().chain(&recs[70..]).cloned().collect();
    harness::produce(b, &topic, &copy).await;
    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[a, b]);
    let args = [
        "--between",
        "a,b",
        "--topics",
        &topic,
        "--positional",
        ".*",
        "--align-window",
        "10",
        "--max-samples",
        "100",
    ];
    let out = harness::verify::run(&config, dir.path(), &args).await;
    let said = harness::verify::describe(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let r = harness::verify::report(dir.path());
    let t = &r.totals;
    assert_eq!(
        (t.matched, t.missing, t.discrepancies()),
        (60, 40, 40),
        "missing, not altered: {t:?}"
    );
    let want: Vec<_> = (30..70).map(|x| (None, Some(x), None)).collect();
    assert_eq!(offsets(&partition(&r, 0).samples, Kind::Missing), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positional_long_gap_on_mock() {
    positional_long_gap_is_missing(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positional_long_gap_on_tansu() {
    positional_long_gap_is_missing(Provider::Tansu).await;
}

fn keyed(key: &str, value: &str) -> Rec {
    Rec {
        partition: 0,
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: Vec::new(),
        timestamp: 1_700_000_000_000,
    }
}

async fn compacted_key_gone_between_passes_is_not_kept(provider: Provider) {
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("compacted-gone");
    let first = [keyed("k1", "v1"), keyed("k2", "v2")];
    for x in [a, b] {
        x.create_topic(&topic, 1).await;
        harness::produce(x, &topic, &first).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s1 = spec(&[a, b], &topic, dir.path());
    s1.compacted = Some(regex::Regex::new(".*").unwrap());
    let store = Arc::new(Store::open(dir.path(), &s1.signature()).unwrap());
    let r = pass(&store, &s1).await;
    assert_eq!((r.verdict, r.totals.matched), (Verdict::Pass, 2));

    // Then a deletes k2 and compacts it away, record and tombstone, before the next pass;
    // b never got the tombstone and still holds k2. Both then write k3. (The mock cannot
    // compact: fresh clusters with those logs stand in, offsets past the stored positions.)
    let again = harness::start(provider, &["a", "b"]).unwrap();
    let (a2, b2) = (&again[0], &again[1]);
    for x in [a2, b2] {
        x.create_topic(&topic, 1).await;
    }
    let compacted_a = [keyed("k1", "v1"), keyed("k3", "v3"), keyed("k3", "v3")];
    harness::produce(a2, &topic, &compacted_a).await;
    let still_b = [keyed("k1", "v1"), keyed("k2", "v2"), keyed("k3", "v3")];
    harness::produce(b2, &topic, &still_b).await;
    let mut s2 = spec(&[a2, b2], &topic, dir.path());
    s2.compacted = s1.compacted.clone();
    let r = pass(&store, &s2).await;
    assert_eq!(r.verdict, Verdict::Fail, "{:#?}", r.totals);
    let t = &r.totals;
    assert_eq!((t.matched, t.extra, t.discrepancies()), (2, 1, 1), "{t:?}");
    let s = &partition(&r, 0).samples;
    assert_eq!(s.len(), 1, "{s:#?}");
    assert_eq!(
        (
            s[0].kind,
            s[0].key.as_deref(),
            s[0].source_offset,
            s[0].target_offset
        ),
        (Kind::Extra, Some("k2"), None, Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_key_gone_on_mock() {
    compacted_key_gone_between_passes_is_not_kept(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_key_gone_on_tansu() {
    compacted_key_gone_between_passes_is_not_kept(Provider::Tansu).await;
}

/// A cluster of the config outside `--between` that cannot be asked where it ends fails
/// the run, naming it: without it, its records on neither side would pass unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_origin_in_the_config_is_an_error_on_mock() {
    let mut clusters = harness::start(Provider::Mock, &["a", "b", "c"]).unwrap();
    let topic = harness::unique("origin-down");
    for x in &clusters[..2] {
        x.create_topic(&topic, 1).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config =
        harness::verify::write_config(dir.path(), &[&clusters[0], &clusters[1], &clusters[2]]);
    clusters[2].broker_down();
    let out = harness::verify::run(
        &config,
        dir.path(),
        &["--between", "a,b", "--topics", &topic],
    )
    .await;
    let said = harness::verify::describe(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster c: fetch metadata") && stderr.contains("not in --between"),
        "{said}"
    );
}
