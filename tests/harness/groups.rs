//! An application's consumer group, as the offsets tests play it: consume a prefix of
//! each partition and commit past it, read on from the committed offsets, commit by hand.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{Rec, TestCluster};

/// Records whose values name them: `{origin}/{partition}/{i}`.
pub fn named(origin: &str, per_partition: usize, partitions: &[i32]) -> Vec<Rec> {
    let mut recs = super::records_on(origin, per_partition * partitions.len(), partitions);
    for (i, r) in recs.iter_mut().enumerate() {
        r.value = Some(format!("{origin}/{}/{i}", r.partition).into_bytes());
    }
    recs
}

fn consumer(c: &TestCluster, group: &str) -> BaseConsumer {
    let mut cfg = ClientConfig::new();
    for (k, v) in &c.spec().consumer {
        cfg.set(k, v);
    }
    cfg.set("bootstrap.servers", &c.bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("group consumer")
}

/// Polls `consumer` until every partition of `want` reached its end (EOF) or took
/// `want[p]` records; returns the values read per partition and the offset after the
/// last record taken.
fn read(
    consumer: &BaseConsumer,
    want: &BTreeMap<i32, Option<usize>>,
) -> BTreeMap<i32, (Vec<String>, Option<i64>)> {
    let mut got: BTreeMap<i32, (Vec<String>, Option<i64>)> =
        want.keys().map(|p| (*p, (Vec::new(), None))).collect();
    let mut open: Vec<i32> = want
        .iter()
        .filter(|(_, n)| **n != Some(0))
        .map(|(p, _)| *p)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !open.is_empty() {
        assert!(
            Instant::now() < deadline,
            "reading the group's partitions: {open:?} open"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => open.retain(|o| *o != p),
            Some(Err(e)) => panic!("group consumer: {e}"),
            Some(Ok(m)) => {
                let p = m.partition();
                if !open.contains(&p) {
                    continue;
                }
                let entry = got.get_mut(&p).expect("assigned");
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                entry.0.push(value);
                entry.1 = Some(m.offset() + 1);
                if want[&p] == Some(entry.0.len()) {
                    open.retain(|o| *o != p);
                }
            }
        }
    }
    got
}

/// Group `group` consumes the first `take[p]` records of each partition `p` of `topic`
/// on `c` and commits the offset after the last one it read (the partition's log start
/// when it takes none). Returns the values it consumed, per partition.
pub async fn consume_prefix(
    c: &TestCluster,
    group: &str,
    topic: &str,
    take: &[usize],
) -> BTreeMap<i32, Vec<String>> {
    let consumer = consumer(c, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..take.len() as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let want = (0..take.len()).map(|p| (p as i32, Some(take[p]))).collect();
    let got = tokio::task::block_in_place(|| read(&consumer, &want));
    let mut commit = TopicPartitionList::new();
    let mut out = BTreeMap::new();
    for (p, (values, next)) in got {
        let next = next.unwrap_or_else(|| super::watermarks(c, topic, p).0);
        commit
            .add_partition_offset(topic, p, Offset::Offset(next))
            .unwrap();
        out.insert(p, values);
    }
    consumer.commit(&commit, CommitMode::Sync).expect("commit");
    out
}

/// Group `group` reads every partition of `topic` on `c` from its committed offsets to
/// the end, as a consumer of the group would after a cutover.
pub async fn read_on(
    c: &TestCluster,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<String>> {
    let consumer = consumer(c, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Stored).unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let want = (0..partitions).map(|p| (p, None)).collect();
    tokio::task::block_in_place(|| read(&consumer, &want))
        .into_iter()
        .map(|(p, (v, _))| (p, v))
        .collect()
}

/// The group's committed offsets on `c` for partitions `0..partitions`.
pub fn committed(c: &TestCluster, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer = consumer(c, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// Commits `offsets[p]` for the group on `c`, as an application would.
pub fn commit(c: &TestCluster, group: &str, topic: &str, offsets: &[i64]) {
    let consumer = consumer(c, group);
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(*o))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

/// A running member of a group: a subscribed consumer polling on its own thread.
pub struct Member {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Member {
    /// Subscribes a consumer with `client_id` to `topic` in `group` on `c`, and returns
    /// once it was given partitions.
    pub async fn join(c: &TestCluster, group: &str, topic: &str, client_id: &str) -> Member {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &c.bootstrap)
            .set("group.id", group)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000");
        let member: BaseConsumer = cfg.create().expect("member");
        member.subscribe(&[topic]).expect("subscribe");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut told = false;
            while !s.load(Ordering::SeqCst) {
                let _ = member.poll(Duration::from_millis(100));
                if !told && member.assignment().is_ok_and(|a| a.count() > 0) {
                    told = true;
                    let _ = tx.send(());
                }
            }
            member.unsubscribe();
        });
        tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(60)))
            .expect("the member was given partitions");
        Member { stop, thread }
    }

    /// Leaves the group.
    pub async fn leave(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::task::block_in_place(|| self.thread.join()).expect("member thread");
    }
}
