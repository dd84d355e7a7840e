//! Header names that are not UTF-8. Kafka's protocol says a header name is UTF-8, but
//! brokers keep whatever bytes a producer sent (librdkafka's C API sends any). Such a
//! record once panicked the flow that read it, and the engine with it, at every restart;
//! and `duplex verify`'s readers with it. Now a flow copies the name byte for byte, and
//! the verifier fingerprints the bytes: the copy passes, and a name changed in a byte
//! that is not UTF-8 is named altered. A flow passes the record's own header list on
//! (message_ffi::HeaderList): Duplex's reserved headers in it are removed, and a
//! `duplex.path` it carried is replaced by the extended one, never kept beside it.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use duplex_sync::message_ffi;
use duplex_sync::provenance::{Hop, PATH_HEADER, Path, encode_origin};
use harness::{Provider, TestCluster};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const N: usize = 40;
const PARTITIONS: i32 = 2;

type Headers = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The headers of record `i`: UTF-8 names around two that are not (one null-valued).
fn headers(i: usize) -> Headers {
    vec![
        (b"trace".to_vec(), Some(format!("t-{i}").into_bytes())),
        (b"\xff\xfebin".to_vec(), Some(vec![0, 1, 2, i as u8])),
        (b"\xc3".to_vec(), None),
        (b"caf\xc3\xa9".to_vec(), Some(b"utf-8 name".to_vec())),
    ]
}

/// Produces one record per entry on `c`, with exactly these headers, keys `key-{first +
/// i}` and timestamps to match; returns each (partition, offset).
async fn produce(
    c: &TestCluster,
    topic: &str,
    first: usize,
    recs: &[(i32, Headers)],
) -> Vec<(i32, i64)> {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &c.bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let mut at = Vec::new();
    for (i, (partition, hs)) in (first..).zip(recs) {
        let mut h = OwnedHeaders::new();
        for (name, value) in hs {
            h = message_ffi::add_header(h, name, value.as_deref());
        }
        let key = format!("key-{i}");
        let rec = FutureRecord::to(topic)
            .partition(*partition)
            .key(&key)
            .payload("value")
            .timestamp(1_700_000_000_000 + i as i64)
            .headers(h);
        let d = p
            .send(rec, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
        at.push((d.partition, d.offset));
    }
    at
}

/// Every record of `topic` on `c`: (partition, offset) → (key, headers, byte for byte).
fn read_all(c: &TestCluster, topic: &str) -> BTreeMap<(i32, i64), (Vec<u8>, Headers)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &c.bootstrap)
        .set("group.id", "duplex-test-header-names")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut left = 0;
    for p in 0..PARTITIONS {
        let (_, high) = harness::watermarks(c, topic, p);
        left += high;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while left > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}: read {topic}",
            c.id
        );
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.expect("consume");
        let hs = message_ffi::headers(&m)
            .map(|(n, v)| (n.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        out.insert(
            (m.partition(), m.offset()),
            (m.key().unwrap_or_default().to_vec(), hs),
        );
        left -= 1;
    }
    out
}

/// Two mock clusters, `src` and `dst`, and a new topic of PARTITIONS on both.
async fn src_and_dst() -> (Vec<TestCluster>, String) {
    let clusters = harness::start(Provider::Mock, &["src", "dst"]).expect("mock clusters");
    let topic = harness::unique("bin");
    for c in &clusters {
        c.create_topic(&topic, PARTITIONS).await;
    }
    (clusters, topic)
}

/// Runs a link a-b until the N records of `topic` on `a` are on `b` and read back by
/// b->a; each must have crossed once.
async fn replicate(a: &TestCluster, b: &TestCluster, topic: &str) {
    let running = harness::run_engine(harness::spec(&[a, b], &[[0, 1]], "bin\\..*"));
    harness::wait_for_count(&[b], topic, N as i64, Duration::from_secs(60)).await;
    harness::wait_until("the copies read back", Duration::from_secs(30), || {
        running.sum(|m| &m.not_forwarded) >= N as u64
    })
    .await;
    let forwarded = running.sum(|m| &m.forwarded);
    running.stop().await;
    assert_eq!(forwarded, N as u64, "each record crossed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_utf8_are_copied_and_verified_byte_for_byte_on_mock() {
    let (clusters, topic) = src_and_dst().await;
    let (a, b) = (&clusters[0], &clusters[1]);
    let recs: Vec<_> = (0..N)
        .map(|i| (i as i32 % PARTITIONS, headers(i)))
        .collect();
    produce(a, &topic, 0, &recs).await;

    replicate(a, b, &topic).await;

    // The target holds each record once, its headers byte for byte and in order, with
    // duplex.path last; the source holds its own records and nothing more.
    let (on_a, on_b) = (read_all(a, &topic), read_all(b, &topic));
    assert_eq!((on_a.len(), on_b.len()), (N, N));
    // The source holds what was produced (the names survive produce and read as well).
    for (key, hs) in on_a.values() {
        let i: usize = std::str::from_utf8(&key[4..]).unwrap().parse().unwrap();
        assert_eq!(
            hs,
            &headers(i),
            "src {}: headers",
            String::from_utf8_lossy(key)
        );
    }
    let by_key: BTreeMap<_, _> = on_a.values().cloned().collect();
    for ((p, o), (key, hs)) in &on_b {
        let (last, user) = hs.split_last().expect("headers");
        assert_eq!(
            last.0,
            PATH_HEADER.as_bytes(),
            "dst {p}/{o}: duplex.path last"
        );
        let want = by_key
            .get(key)
            .unwrap_or_else(|| panic!("dst {p}/{o}: unknown key"));
        assert_eq!(user, &want[..], "dst {p}/{o}: headers");
    }

    // The verifier reads both sides and says PASS.
    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[a, b]);
    let args = ["--between", "src,dst", "--topics", &topic];
    harness::verify::run_expecting(&config, dir.path(), &args, 0).await;
    let t = harness::verify::report(dir.path()).totals;
    assert_eq!((t.matched, t.altered), (N as u64, 0));

    // One more record on the source, and a copy on the target whose name differs from it
    // only in a byte that is not UTF-8 (both would read as U+FFFD): altered. Same key,
    // value and timestamp (the same index).
    let [(p, o)] = produce(a, &topic, N, &[(0, vec![(b"\xff".to_vec(), None)])]).await[..] else {
        unreachable!()
    };
    let mut path = Vec::new();
    encode_origin(
        Hop {
            cluster: b"src",
            partition: p,
            offset: o,
        },
        &mut path,
    )
    .expect("encode provenance");
    let copy = vec![
        (b"\xfe".to_vec(), None),
        (PATH_HEADER.as_bytes().to_vec(), Some(path)),
    ];
    produce(b, &topic, N, &[(0, copy)]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = harness::verify::write_config(dir.path(), &[a, b]);
    harness::verify::run_expecting(&config, dir.path(), &args, 1).await;
    let t = harness::verify::report(dir.path()).totals;
    assert_eq!(
        (t.matched, t.altered, t.missing, t.extra),
        (N as u64, 1, 0, 0)
    );
}

/// Records that carry Duplex's own headers: `duplex.note` (reserved, not Duplex's to
/// copy) and a `duplex.path` from a cluster outside the topology (forwarded, its path
/// extended by the source's hop). The target holds the user's headers in order and one
/// `duplex.path`, last: the old one is replaced, not kept beside the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_headers_are_dropped_and_a_carried_path_is_replaced_on_mock() {
    let (clusters, topic) = src_and_dst().await;
    let (a, b) = (&clusters[0], &clusters[1]);
    let carried = |i: usize| {
        let mut path = Vec::new();
        encode_origin(
            Hop {
                cluster: b"elsewhere",
                partition: 7,
                offset: i as i64,
            },
            &mut path,
        )
        .expect("encode provenance");
        path
    };
    let user = |i: usize| -> Headers {
        vec![
            (b"trace".to_vec(), Some(format!("t-{i}").into_bytes())),
            (b"\xffbin".to_vec(), None),
        ]
    };
    let recs: Vec<_> = (0..N)
        .map(|i| {
            let mut hs = user(i);
            hs.insert(1, (b"duplex.note".to_vec(), Some(b"x".to_vec())));
            if i % 2 == 0 {
                hs.insert(0, (PATH_HEADER.as_bytes().to_vec(), Some(carried(i))));
            }
            (i as i32 % PARTITIONS, hs)
        })
        .collect();
    let at = produce(a, &topic, 0, &recs).await;

    replicate(a, b, &topic).await;

    let on_b = read_all(b, &topic);
    assert_eq!(on_b.len(), N);
    for ((p, o), (key, hs)) in &on_b {
        let i: usize = std::str::from_utf8(&key[4..]).unwrap().parse().unwrap();
        let (last, rest) = hs.split_last().expect("headers");
        assert_eq!(rest, &user(i)[..], "dst {p}/{o}: the user's headers only");
        assert_eq!(
            last.0,
            PATH_HEADER.as_bytes(),
            "dst {p}/{o}: duplex.path last"
        );
        let value = last.1.as_deref().expect("a path value");
        let hops: Vec<_> = Path::decode(value)
            .expect("a path")
            .hops()
            .map(|h| (h.cluster.to_vec(), h.partition, h.offset))
            .collect();
        let (sp, so) = at[i];
        let mut want = Vec::new();
        if i % 2 == 0 {
            want.push((b"elsewhere".to_vec(), 7, i as i64));
        }
        want.push((b"src".to_vec(), sp, so));
        assert_eq!(hops, want, "dst {p}/{o}: the path extended by one hop");
    }
}
