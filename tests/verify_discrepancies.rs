//! `duplex verify` names each discrepancy injected by writing straight to one side, with
//! its offsets: in identity mode (copies carry provenance) and in positional mode (a plain
//! consume-and-produce copy into a partition that already held records). Identical
//! topics pass with equal digests. The HTML report is checked in headless Chromium.

mod harness;

use duplex_verifier::Verdict;
use duplex_verifier::report::{Kind, Report, Sample, State};
use harness::{Provider, Rec, TestCluster};

/// Records per partition.
const N: usize = 20;
/// The record each mutation touches.
const AT: usize = 5;
/// Records written to the target's partitions before a positional copy.
const SHIFT: usize = 3;

/// Partition -> the mutation applied to the copy of that partition.
const MUTATIONS: [&str; 8] = [
    "none",
    "drop",
    "add",
    "value",
    "header",
    "timestamp",
    "duplicate",
    "swap",
];

fn partition_records(p: i32) -> Vec<Rec> {
    let mut recs = harness::records_on("a", N, &[p]);
    for (i, r) in recs.iter_mut().enumerate() {
        r.timestamp = 1_700_000_000_000 + (p as i64) * 1000 + i as i64;
    }
    recs
}

/// The target's copy of one partition, mutated as `MUTATIONS[p]` says. `copy` makes one
/// record's copy (with or without provenance) from its index and source record.
fn mutated(p: i32, src: &[Rec], copy: impl Fn(usize, &Rec) -> Rec) -> Vec<Rec> {
    let mut out: Vec<Rec> = src.iter().enumerate().map(|(i, r)| copy(i, r)).collect();
    match MUTATIONS[p as usize] {
        "none" => {}
        "drop" => {
            out.remove(AT);
        }
        "add" => {
            let mut extra = harness::records_on("b", 1, &[p]).remove(0);
            extra.value = Some(b"written on the target only".to_vec());
            out.insert(AT + 1, extra);
        }
        "value" => out[AT].value = Some(b"altered value".to_vec()),
        "header" => out[AT].headers[0].1 = Some(b"altered header".to_vec()),
        "timestamp" => out[AT].timestamp += 1,
        "duplicate" => {
            let again = out[AT].clone();
            out.insert(AT + 1, again);
        }
        "swap" => out.swap(AT, AT + 1),
        other => unreachable!("{other}"),
    }
    out
}

async fn setup(provider: Provider, positional: bool) -> Option<(Vec<TestCluster>, String)> {
    let clusters = harness::start(provider, &["a", "b"])?;
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("parity");
    a.create_topic(&topic, MUTATIONS.len() as i32).await;
    b.create_topic(&topic, MUTATIONS.len() as i32).await;
    for p in 0..MUTATIONS.len() as i32 {
        let src = partition_records(p);
        let ids = harness::produce(a, &topic, &src).await;
        let copy = if positional {
            // Records the target held before the copy began: its offsets are shifted.
            harness::produce(b, &topic, &harness::records_on("b-before", SHIFT, &[p])).await;
            mutated(p, &src, |_, r| r.clone())
        } else {
            mutated(p, &src, |i, r| {
                harness::verify::replica(r, "a", ids[i].1, ids[i].2)
            })
        };
        harness::produce(b, &topic, &copy).await;
    }
    Some((clusters, topic))
}

fn samples<'r>(
    report: &'r Report,
    topic: &str,
    p: i32,
) -> (&'r duplex_verifier::report::PartitionReport, &'r [Sample]) {
    let t = report.comparisons[0]
        .topics
        .iter()
        .find(|t| t.topic == topic)
        .expect("topic in report");
    let part = t
        .partitions
        .iter()
        .find(|x| x.partition == p)
        .expect("partition in report");
    (part, &part.samples)
}

fn only(samples: &[Sample], kind: Kind) -> &Sample {
    let of_kind: Vec<&Sample> = samples.iter().filter(|s| s.kind == kind).collect();
    assert_eq!(
        of_kind.len(),
        1,
        "one {kind:?} sample expected in {samples:#?}"
    );
    assert_eq!(samples.len(), 1, "no other sample expected in {samples:#?}");
    of_kind[0]
}

async fn identity_mode_names_each_discrepancy(provider: Provider) {
    let Some((clusters, topic)) = setup(provider, false).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[&clusters[0], &clusters[1]]);
    let out = harness::verify::run(
        &config,
        dir.path(),
        &["--between", "a,b", "--topics", &topic],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "discrepancies exit 1\n{}",
        harness::verify::describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("FAIL"),
        "terminal summary starts with the verdict:\n{stdout}"
    );
    let report = harness::verify::report(dir.path());
    assert_eq!(report.verdict, Verdict::Fail);
    let t = &report.totals;
    assert_eq!(
        (t.missing, t.extra, t.altered, t.duplicated, t.reordered),
        (1, 1, 3, 1, 1),
        "{t:?}"
    );

    let (clean, s) = samples(&report, &topic, 0);
    assert!(s.is_empty() && clean.state == State::Parity && clean.counts.matched == N as u64);
    let g = &clean.groups[0];
    assert_eq!(
        g.source.digest, g.target.digest,
        "a clean partition has equal digests"
    );

    let at = AT as i64;
    let s = only(samples(&report, &topic, 1).1, Kind::Missing);
    assert_eq!(
        (
            s.origin.as_deref(),
            s.origin_offset,
            s.source_offset,
            s.target_offset
        ),
        (Some("a"), Some(at), Some(at), None)
    );
    // A record written on the target only is its own origin there.
    let s = only(samples(&report, &topic, 2).1, Kind::Extra);
    assert_eq!(
        (
            s.origin.as_deref(),
            s.origin_offset,
            s.source_offset,
            s.target_offset
        ),
        (Some("b"), Some(at + 1), None, Some(at + 1))
    );
    for p in [3, 4, 5] {
        let s = only(samples(&report, &topic, p).1, Kind::Altered);
        assert_eq!(
            (s.origin_offset, s.source_offset, s.target_offset),
            (Some(at), Some(at), Some(at)),
            "{}",
            MUTATIONS[p as usize]
        );
    }
    let s = only(samples(&report, &topic, 6).1, Kind::Duplicated);
    assert_eq!(
        (s.origin_offset, s.source_offset, s.target_offset),
        (Some(at), Some(at), Some(at + 1))
    );
    // Swapped: origin offset AT now sits after AT + 1 on the target.
    let s = only(samples(&report, &topic, 7).1, Kind::Reordered);
    assert_eq!((s.origin_offset, s.target_offset), (Some(at), Some(at + 1)));
    for p in 1..8 {
        assert_eq!(
            samples(&report, &topic, p).0.state,
            State::Discrepancy,
            "partition {p}"
        );
    }

    // Scope: origin offsets from 3 up to 5 only. The mutations at 5 and 6 are beyond the
    // watermark, the first records out of scope; the record written on b (origin b,
    // whose watermark is b's end) is still extra.
    let scoped = tempfile::tempdir().unwrap();
    let from = format!("a:{topic}=3");
    let args = [
        "--between",
        "a,b",
        "--topics",
        &topic,
        "--from",
        &from,
        "--watermark",
        "a=5",
    ];
    harness::verify::run_expecting(&config, scoped.path(), &args, 1).await;
    let r = harness::verify::report(scoped.path());
    let t = &r.totals;
    assert_eq!(
        (t.missing, t.extra, t.altered, t.duplicated, t.reordered),
        (0, 1, 0, 0, 0),
        "{t:?}"
    );
    assert_eq!(
        t.matched,
        2 * MUTATIONS.len() as u64,
        "offsets 3 and 4 of each partition"
    );
    let (clean, _) = samples(&r, &topic, 0);
    let g = &clean.groups[0];
    assert_eq!((g.from.clone(), g.watermark.clone()), (vec![3], vec![5]));
    assert_eq!(
        (g.source.out_of_scope, g.source.beyond_watermark),
        (3, N as u64 - 5)
    );
    assert_eq!(
        (g.target.out_of_scope, g.target.beyond_watermark),
        (3, N as u64 - 5)
    );

    // The HTML page, as a browser renders it: verdict on top, the grid coloured by state.
    let dom = harness::browser::dump_dom(&dir.path().join("report/parity.html"));
    assert!(
        dom.contains("id=\"verdict\"") && dom.contains(">FAIL<"),
        "verdict in the page"
    );
    assert_eq!(
        dom.matches("cell discrepancy").count(),
        7,
        "seven red cells"
    );
    assert_eq!(dom.matches("cell parity").count(), 1, "one green cell");
}

async fn positional_mode_names_each_discrepancy(provider: Provider) {
    let Some((clusters, topic)) = setup(provider, true).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[&clusters[0], &clusters[1]]);
    let from = format!("b:{topic}={SHIFT}");
    let args = [
        "--between",
        "a,b",
        "--topics",
        &topic,
        "--positional",
        ".*",
        "--from",
        &from,
    ];
    harness::verify::run_expecting(&config, dir.path(), &args, 1).await;
    let report = harness::verify::report(dir.path());
    let t = &report.totals;
    assert_eq!(
        (t.missing, t.extra, t.altered, t.duplicated, t.reordered),
        (1, 1, 3, 1, 1),
        "{t:?}"
    );
    let (at, shift) = (AT as i64, SHIFT as i64);
    let (clean, s) = samples(&report, &topic, 0);
    assert!(s.is_empty());
    assert_eq!(clean.groups[0].source.digest, clean.groups[0].target.digest);
    assert_eq!(
        clean.groups[0].from,
        vec![0, shift],
        "scope starts after the target's own records"
    );
    let s = only(samples(&report, &topic, 1).1, Kind::Missing);
    assert_eq!((s.source_offset, s.target_offset), (Some(at), None));
    let s = only(samples(&report, &topic, 2).1, Kind::Extra);
    assert_eq!(
        (s.source_offset, s.target_offset),
        (None, Some(shift + at + 1))
    );
    for p in [3, 4, 5] {
        let s = only(samples(&report, &topic, p).1, Kind::Altered);
        assert_eq!(
            (s.source_offset, s.target_offset),
            (Some(at), Some(shift + at)),
            "{}",
            MUTATIONS[p as usize]
        );
    }
    let s = only(samples(&report, &topic, 6).1, Kind::Duplicated);
    assert_eq!(
        (s.source_offset, s.target_offset),
        (Some(at), Some(shift + at + 1))
    );
    let s = only(samples(&report, &topic, 7).1, Kind::Reordered);
    let pair = (s.source_offset.unwrap(), s.target_offset.unwrap());
    assert!(
        pair == (at, shift + at + 1) || pair == (at + 1, shift + at),
        "swapped pair named: {pair:?}"
    );

    // Without --from the target's earlier records are extra.
    let dir2 = tempfile::tempdir().unwrap();
    let args = ["--between", "a,b", "--topics", &topic, "--positional", ".*"];
    harness::verify::run_expecting(&config, dir2.path(), &args, 1).await;
    let report = harness::verify::report(dir2.path());
    assert_eq!(report.totals.extra, 1 + (SHIFT * MUTATIONS.len()) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_discrepancies_on_mock() {
    identity_mode_names_each_discrepancy(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_discrepancies_on_tansu() {
    identity_mode_names_each_discrepancy(Provider::Tansu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positional_discrepancies_on_mock() {
    positional_mode_names_each_discrepancy(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positional_discrepancies_on_tansu() {
    positional_mode_names_each_discrepancy(Provider::Tansu).await;
}

/// At-least-once delivery's own duplicate: a stretch of copies sent again after later
/// records (a replay after a crash). Each copy again is named, at its offset on the
/// target, and nothing is counted missing, extra or reordered. (The store keeps runs of
/// consecutive records; the replay's runs overlap the first ones and must read back in
/// origin-offset order.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_stretch_is_named_duplicated_on_mock() {
    let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("replay");
    a.create_topic(&topic, 1).await;
    b.create_topic(&topic, 1).await;
    let src = partition_records(0);
    let ids = harness::produce(a, &topic, &src).await;
    let copies: Vec<Rec> = src
        .iter()
        .enumerate()
        .map(|(i, r)| harness::verify::replica(r, "a", ids[i].1, ids[i].2))
        .collect();
    const REPLAY: std::ops::Range<usize> = 8..12;
    let mut target = copies.clone();
    target.extend_from_slice(&copies[REPLAY]);
    harness::produce(b, &topic, &target).await;

    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[a, b]);
    harness::verify::run_expecting(
        &config,
        dir.path(),
        &["--between", "a,b", "--topics", &topic],
        1,
    )
    .await;
    let report = harness::verify::report(dir.path());
    let t = &report.totals;
    assert_eq!(
        (
            t.matched,
            t.missing,
            t.extra,
            t.altered,
            t.duplicated,
            t.reordered
        ),
        (N as u64, 0, 0, 0, REPLAY.len() as u64, 0),
        "{t:?}"
    );
    let named: Vec<(Option<i64>, Option<i64>, Option<i64>)> = samples(&report, &topic, 0)
        .1
        .iter()
        .map(|s| {
            assert_eq!(s.kind, Kind::Duplicated, "{s:?}");
            (s.origin_offset, s.source_offset, s.target_offset)
        })
        .collect();
    let want: Vec<_> = REPLAY
        .enumerate()
        .map(|(i, x)| {
            let x = x as i64;
            (Some(x), Some(x), Some((N + i) as i64))
        })
        .collect();
    assert_eq!(named, want);
}
