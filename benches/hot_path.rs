//! The per-record hot path of a flow, without Kafka: `duplex.path` encode and decode,
//! and the routing decision. Each iteration handles one record.
//!
//! Run with `cargo bench --bench hot_path`; figures are in docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use duplex_sync::provenance::{Hop, Path, encode_origin};
use duplex_sync::routing::{Decision, FlowRouter, Topology};

fn hop(cluster: &str, partition: i32, offset: i64) -> Hop<'_> {
    Hop {
        cluster: cluster.as_bytes(),
        partition,
        offset,
    }
}

/// Encodes the path `hops` (origin first), as the flows along that way would have.
fn path_of(hops: &[Hop<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_origin(hops[0], &mut out).expect("origin encodes");
    for &h in &hops[1..] {
        let mut next = Vec::new();
        Path::decode(&out)
            .expect("valid path")
            .extend_into(h, &mut next)
            .expect("hop appends");
        out = next;
    }
    out
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("provenance_encode");
    g.throughput(Throughput::Elements(1));
    // The flow reuses one buffer for every record; so do these, so no allocation is timed.
    let mut buf = Vec::with_capacity(128);
    g.bench_function("origin", |b| {
        b.iter(|| {
            encode_origin(black_box(hop("onprem", 7, 123_456_789)), &mut buf).expect("encodes");
            black_box(buf.len())
        })
    });
    let two = path_of(&[hop("onprem", 7, 123_456_789), hop("msk", 7, 98_765)]);
    g.bench_function("extend_2_hops", |b| {
        b.iter(|| {
            let p = Path::decode(black_box(&two)).expect("valid path");
            p.extend_into(black_box(hop("dr-west", 7, 4_321)), &mut buf)
                .expect("extends");
            black_box(buf.len())
        })
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("provenance_decode");
    g.throughput(Throughput::Elements(1));
    let one = path_of(&[hop("onprem", 7, 123_456_789)]);
    let three = path_of(&[
        hop("onprem", 7, 123_456_789),
        hop("msk", 7, 98_765),
        hop("dr-west", 7, 4_321),
    ]);
    for (name, value) in [("1_hop", &one), ("3_hops", &three)] {
        g.bench_function(name, |b| {
            // Decode validates the whole value; origin() is what routing reads next.
            b.iter(|| {
                let p = Path::decode(black_box(value)).expect("valid path");
                black_box(p.origin())
            })
        });
    }
    g.finish();
}

fn route(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing_decide");
    g.throughput(Throughput::Elements(1));
    let ids: Vec<String> = (0..8).map(|i| format!("cluster-{i}")).collect();
    let ring: Vec<[usize; 2]> = (0..8).map(|i| [i, (i + 1) % 8]).collect();
    let ring = Topology::new(ids.clone(), &ring);
    let full: Vec<[usize; 2]> = (0..8)
        .flat_map(|a| (a + 1..8).map(move |b| [a, b]))
        .collect();
    let full = Topology::new(ids.clone(), &full);

    // A record produced on cluster-2 itself: no path header.
    let router = FlowRouter::new(&ring, 2, 3);
    assert_eq!(router.decide(None), Decision::Forward);
    g.bench_function("no_path", |b| {
        b.iter(|| black_box(black_box(&router).decide(black_box(None))))
    });

    // Held on cluster-2, origin cluster-0, relayed by cluster-1: flow 2→3 carries it on
    // in the 8-ring (origin lookup, then the full hop-guard scan), and leaves it to
    // flow 0→3 in the 8-cluster full mesh.
    let two = path_of(&[hop(&ids[0], 5, 1_000_000), hop(&ids[1], 5, 999_000)]);
    let two = Path::decode(&two).expect("valid path");
    for (name, topo, want) in [
        ("2_hops_ring_of_8", &ring, Decision::Forward),
        ("2_hops_full_mesh_of_8", &full, Decision::NotInTree),
    ] {
        let router = FlowRouter::new(topo, 2, 3);
        assert_eq!(router.decide(Some(&two)), want, "{name}");
        g.bench_function(name, |b| {
            b.iter(|| black_box(black_box(&router).decide(black_box(Some(&two)))))
        });
    }

    // Origin from another deployment: no hop is known, so the source counts as origin.
    let foreign = path_of(&[hop("elsewhere", 0, 42)]);
    let foreign = Path::decode(&foreign).expect("valid path");
    let router = FlowRouter::new(&ring, 2, 3);
    assert_eq!(router.decide(Some(&foreign)), Decision::Forward);
    g.bench_function("unknown_origin", |b| {
        b.iter(|| black_box(black_box(&router).decide(black_box(Some(&foreign)))))
    });
    g.finish();
}

criterion_group! {
    name = hot_path;
    // Nanosecond operations: short windows keep the whole run well under a minute.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = encode, decode, route
}
criterion_main!(hot_path);
