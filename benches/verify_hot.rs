//! The verifier's per-record work, without Kafka: the record fingerprint
//! (`Canon::fingerprint_in`, one buffer reused), and ingesting records into the RocksDB store
//! (`SideIngest::add`, then `flush` every 4096 records, as the reader batches them).
//!
//! Run with `cargo bench --bench verify_hot`; figures are in docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use duplex_sync::provenance::{Hop, PATH_HEADER, encode_origin};
use duplex_verifier::Mode;
use duplex_verifier::fingerprint::{Canon, RecordView};
use duplex_verifier::ingest::{Incoming, SideIngest};
use duplex_verifier::store::Store;

const KEY: &[u8; 16] = b"key-000000012345";
const TIMESTAMP: i64 = 1_764_000_000_000;
/// Records per flush, as the verifier's reader (`BATCH_RECORDS`).
const BATCH: usize = 4096;
/// Value size of the ingest benchmarks (the e2e benches' records).
const INGEST_VALUE: usize = 1024;
/// Partitions the ingested records are spread over, round-robin.
const PARTITIONS: i64 = 8;
const TOPIC: &str = "bench";

/// The one-hop `duplex.path` of a record produced on `a` at `partition`/`offset`.
fn path(partition: i32, offset: i64, out: &mut Vec<u8>) {
    let hop = Hop {
        cluster: b"a",
        partition,
        offset,
    };
    encode_origin(hop, out).expect("origin encodes");
}

fn fingerprint(c: &mut Criterion) {
    let canon = Canon::default();
    let trace = b"00000000075bcd15";
    let mut dpath = Vec::new();
    path(3, 123_456_789, &mut dpath);
    for size in [100usize, 1024] {
        let value = vec![0x5a_u8; size];
        // Three headers, the last one Duplex's own: it is read, and left out of the hash.
        let headers: [(&[u8], Option<&[u8]>); 3] = [
            (b"trace-id", Some(trace)),
            (b"source", Some(b"bench")),
            (PATH_HEADER.as_bytes(), Some(&dpath)),
        ];
        // Bytes of the record: key, value, header names and values.
        let bytes = KEY.len()
            + size
            + headers
                .iter()
                .map(|(n, v)| n.len() + v.map_or(0, <[u8]>::len))
                .sum::<usize>();
        let run = |g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>| {
            g.bench_function(BenchmarkId::from_parameter(format!("{size}B")), |b| {
                // One buffer for the encodings, as the reader keeps one.
                let mut scratch = Vec::new();
                b.iter(|| {
                    black_box(&canon).fingerprint_in(
                        &mut scratch,
                        RecordView {
                            key: Some(black_box(KEY.as_slice())),
                            value: Some(black_box(value.as_slice())),
                            headers: black_box(&headers).iter().copied(),
                            timestamp: Some(TIMESTAMP),
                        },
                    )
                })
            });
        };
        // The same function twice: once reported in records/s, once in bytes/s.
        let mut g = c.benchmark_group("fingerprint_records");
        g.throughput(Throughput::Elements(1));
        run(&mut g);
        g.finish();
        let mut g = c.benchmark_group("fingerprint_bytes");
        g.throughput(Throughput::Bytes(bytes as u64));
        run(&mut g);
        g.finish();
    }
}

/// One iteration: `BATCH` records added, then one flush. Each benchmark writes into its
/// own fresh store, which grows over the iterations as a verification's store does.
fn ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_ingest");
    g.throughput(Throughput::Elements(BATCH as u64));
    let value = vec![0x5a_u8; INGEST_VALUE];
    let trace = b"00000000075bcd15";
    let mut dpath = Vec::with_capacity(32);
    for (name, mode) in [
        ("identity_with_path", Mode::Identity),
        ("positional", Mode::Positional),
    ] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path(), &format!("bench {name}")).expect("open store");
        // Side 1, cluster b: the copies of records produced on a.
        let mut side = SideIngest::new(&store, 1, "b", Canon::default());
        let mut next: i64 = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    let (partition, offset) = ((next % PARTITIONS) as i32, next / PARTITIONS);
                    next += 1;
                    path(partition, offset, &mut dpath);
                    let all: [(&[u8], Option<&[u8]>); 3] = [
                        (b"trace-id", Some(trace)),
                        (b"source", Some(b"bench")),
                        (PATH_HEADER.as_bytes(), Some(&dpath)),
                    ];
                    // Positional topics are copies made by other tools: no provenance.
                    let headers = if mode == Mode::Identity {
                        &all[..]
                    } else {
                        &all[..2]
                    };
                    let rec = Incoming {
                        topic: TOPIC,
                        partition,
                        offset,
                        key: Some(KEY),
                        value: Some(&value),
                        headers,
                        timestamp: Some(TIMESTAMP + next),
                    };
                    side.add(&rec, mode).expect("add");
                }
                side.flush().expect("flush");
            })
        });
        drop(side);
        drop(store);
        drop(dir);
    }
    g.finish();
}

criterion_group! {
    name = fingerprints;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = fingerprint
}
criterion_group! {
    name = store;
    // Milliseconds per iteration (a batch), and RocksDB's background work varies:
    // longer windows, fewer samples.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = ingest
}
criterion_main!(fingerprints, store);
