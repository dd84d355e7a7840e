//! What the store holds that a cluster may no longer: a partition recreated, truncated or
//! compacted since the last pass. Resuming from the stored positions is only sound while
//! each partition is still the one the store read, so every pass checks first and makes
//! the store forget what it can no longer vouch for; the pass then reads it again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::compare::Snapshot;
use crate::error::VerifyError;
use crate::fingerprint::{Fingerprint, RecordView};
use crate::reader::consumer_config;
use crate::spec::{Mode, VerifySpec};
use crate::store::Store;

/// Everything a pass checks before it plans: [`forget_changed`], [`forget_refilled`],
/// [`forget_compacted`].
pub fn forget_stale(store: &Store, spec: &VerifySpec, snap: &Snapshot) -> Result<(), VerifyError> {
    forget_changed(store, spec, snap)?;
    forget_refilled(store, spec, snap)?;
    forget_compacted(store, spec, snap)
}

/// Forgets what the store holds of a side's topic when one of its partitions is no
/// longer what the store read: gone, ending below the stored position (recreated with
/// fewer records, or truncated), or starting below the log start it had when read
/// (recreated; a log start never moves back in a partition's life). Reading on from
/// the stored position would read nothing there, and the stale records would still
/// match; instead the topic is derived again from its log start on that side. Returns
/// what was forgotten, as sentences.
pub fn forget_changed(
    store: &Store,
    spec: &VerifySpec,
    snap: &Snapshot,
) -> Result<Vec<String>, VerifyError> {
    let mut notes = Vec::new();
    for (idx, cluster) in spec.sides.iter().enumerate() {
        let mut changed: BTreeMap<String, String> = BTreeMap::new();
        for (topic, p, pos) in store.positions(idx as u8)? {
            if changed.contains_key(&topic) {
                continue;
            }
            let why = match snap.bounds(idx, &topic, p) {
                None => Some("is gone".to_string()),
                Some(b) if b.high < pos.next => Some(format!(
                    "ends at offset {} but the store read it up to offset {} (recreated or truncated)",
                    b.high, pos.next
                )),
                Some(b) if pos.log_start.is_some_and(|low| b.low < low) => Some(format!(
                    "starts at offset {} but started at {} when the store read it (recreated)",
                    b.low,
                    pos.log_start.unwrap_or_default()
                )),
                Some(_) => None,
            };
            if let Some(why) = why {
                changed.insert(
                    topic.clone(),
                    format!("{topic}/{p} on {} {why}", cluster.id),
                );
            }
        }
        for (topic, why) in changed {
            tracing::warn!(cluster = %cluster.id, topic = %topic, "Partition {why}: reading the topic again from its log start on {}.", cluster.id);
            store.forget_topic(idx as u8, &topic)?;
            notes.push(why);
        }
    }
    Ok(notes)
}

/// Forgets the latest values of every compacted partition, so that this pass derives
/// them again from the log start. Reading on from the stored position cannot see a key
/// whose records and tombstone were compacted away in between: it would stay in the
/// store as if the cluster still had it.
pub fn forget_compacted(
    store: &Store,
    spec: &VerifySpec,
    snap: &Snapshot,
) -> Result<(), VerifyError> {
    for (idx, topics) in snap.sides.iter().enumerate() {
        for (topic, parts) in topics {
            if spec.mode(topic) == Mode::Compacted {
                for &p in parts.keys() {
                    store.forget_partition(idx as u8, topic, p)?;
                }
            }
        }
    }
    Ok(())
}

/// Reads again, on each side, the last record the store read of every identity and
/// positional partition, and forgets the topic where it is gone or is another record: a
/// partition recreated and refilled past the stored position, with the same log start,
/// which [`forget_changed`] cannot tell from growth. One record per partition per pass.
/// Returns what was forgotten, as sentences.
pub fn forget_refilled(
    store: &Store,
    spec: &VerifySpec,
    snap: &Snapshot,
) -> Result<Vec<String>, VerifyError> {
    let mut wants = Vec::new();
    for idx in 0..spec.sides.len() {
        let mut want: HashMap<(String, i32), (i64, Fingerprint, i64)> = HashMap::new();
        for (topic, p, pos) in store.positions(idx as u8)? {
            let (Some((offset, fp)), Some(b)) = (pos.last, snap.bounds(idx, &topic, p)) else {
                continue;
            };
            // Below the log start it is gone by retention, which proves nothing.
            if spec.mode(&topic) != Mode::Compacted && b.low <= offset && offset < b.high {
                want.insert((topic, p), (offset, fp, b.high));
            }
        }
        wants.push(want);
    }
    // The sides are asked at once: each check is a consumer's start-up and one fetch, a
    // fixed cost of every pass that would otherwise add up side by side. A side whose
    // check fails fails the pass, and no side forgets anything this pass: the next one
    // checks again.
    let changed = std::thread::scope(|scope| {
        let checks: Vec<_> = wants
            .iter()
            .enumerate()
            .map(|(idx, want)| {
                scope.spawn(move || {
                    if want.is_empty() {
                        Ok(Vec::new())
                    } else {
                        changed_lasts(spec, idx, want)
                    }
                })
            })
            .collect();
        checks
            .into_iter()
            .map(|h| h.join().expect("stale check thread panicked"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut notes = Vec::new();
    for ((idx, cluster), changed) in spec.sides.iter().enumerate().zip(changed) {
        let mut topics: BTreeMap<String, String> = BTreeMap::new();
        for ((topic, p), why) in changed {
            topics
                .entry(topic.clone())
                .or_insert_with(|| format!("{topic}/{p} on {} {why}", cluster.id));
        }
        for (topic, why) in topics {
            tracing::warn!(cluster = %cluster.id, topic = %topic, "Partition {why}: reading the topic again from its log start on {}.", cluster.id);
            store.forget_topic(idx as u8, &topic)?;
            notes.push(why);
        }
    }
    Ok(notes)
}

/// A partition whose stored last record changed, and what changed.
type Changed = ((String, i32), String);

/// The partitions of side `idx` whose record at the stored offset is gone or differs.
fn changed_lasts(
    spec: &VerifySpec,
    idx: usize,
    want: &HashMap<(String, i32), (i64, Fingerprint, i64)>,
) -> Result<Vec<Changed>, VerifyError> {
    let cluster = &spec.sides[idx];
    let canon = spec.canon(Mode::Identity);
    let consumer: BaseConsumer = consumer_config(cluster)
        .create()
        .map_err(|e| VerifyError::kafka(&cluster.id, "create consumer", e))?;
    let consumer = duplex_sync::clients::Closing::new(consumer);
    let mut tpl = TopicPartitionList::new();
    for ((topic, p), (offset, ..)) in want {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*offset))
            .map_err(|e| VerifyError::kafka(&cluster.id, "assign", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| VerifyError::kafka(&cluster.id, "assign", e))?;
    let mut left: HashSet<(String, i32)> = want.keys().cloned().collect();
    let mut changed = Vec::new();
    let mut last_progress = Instant::now();
    let mut last_position_check = Instant::now();
    while !left.is_empty() {
        if let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) {
            let key = (msg.topic().to_string(), msg.partition());
            if let (Some(&(offset, fp, _)), true) = (want.get(&key), left.contains(&key)) {
                let now = canon.fingerprint(RecordView {
                    key: msg.key(),
                    value: msg.payload(),
                    headers: duplex_sync::message_ffi::headers(&msg),
                    timestamp: msg.timestamp().to_millis(),
                });
                if msg.offset() != offset {
                    changed.push((key.clone(), format!("no longer holds the record at offset {offset} the store read last (recreated)")));
                } else if now != fp {
                    changed.push((key.clone(), format!("holds another record at offset {offset} than the store read (recreated)")));
                }
                left.remove(&key);
                last_progress = Instant::now();
            }
        }
        if last_position_check.elapsed() >= Duration::from_millis(500) {
            // Only transaction markers from there to the end: the record is gone.
            last_position_check = Instant::now();
            if let Ok(pos) = consumer.position() {
                for el in pos.elements() {
                    let key = (el.topic().to_string(), el.partition());
                    if let (Some(&(offset, _, high)), Offset::Offset(at)) =
                        (want.get(&key), el.offset())
                        && at >= high
                        && left.remove(&key)
                    {
                        changed.push((key, format!("no longer holds the record at offset {offset} the store read last (recreated)")));
                    }
                }
            }
        }
        if last_progress.elapsed() > spec.stall_timeout {
            let mut what: Vec<String> = left.iter().map(|(t, p)| format!("{t}/{p}")).collect();
            what.sort();
            return Err(VerifyError::Stalled {
                cluster: cluster.id.clone(),
                secs: spec.stall_timeout.as_secs(),
                what: what.join(", "),
            });
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use duplex_sync::spec::ClusterSpec;

    use super::*;
    use crate::compare::Bounds;
    use crate::ingest::SideIngest;
    use crate::spec::VerifySpec;

    fn snap(low: i64, high: i64) -> Snapshot {
        let side = BTreeMap::from([("t".to_string(), BTreeMap::from([(0, Bounds { low, high })]))]);
        Snapshot {
            sides: vec![side.clone(), side],
            ..Snapshot::default()
        }
    }

    /// A partition read up to offset 10 from log start 5: which later bounds mean that it
    /// was recreated or truncated, and which are ordinary growth or retention.
    #[test]
    fn a_partition_recreated_or_truncated_is_forgotten() {
        let all = regex::Regex::new(".*").unwrap();
        for (low, high, forgotten) in [(5, 10, false), (7, 30, false), (0, 30, true), (5, 9, true)]
        {
            let dir = tempfile::tempdir().unwrap();
            let sides = vec![
                ClusterSpec::new("a", "unused:1"),
                ClusterSpec::new("b", "unused:2"),
            ];
            let spec = VerifySpec::new(sides, all.clone(), dir.path().into());
            let store = Store::open(dir.path(), &spec.signature()).unwrap();
            let mut w = SideIngest::new(&store, 1, "b", Default::default());
            w.set_log_start("t", 0, 5);
            w.advance("t", 0, 10);
            w.flush().unwrap();
            let notes = forget_changed(&store, &spec, &snap(low, high)).unwrap();
            assert_eq!(
                notes.len(),
                usize::from(forgotten),
                "{low}..{high}: {notes:?}"
            );
            let left = store.position(1, "t", 0).unwrap();
            assert_eq!(left, (!forgotten).then_some(10), "{low}..{high}");
            if forgotten {
                assert!(notes[0].starts_with("t/0 on b "), "{notes:?}");
            }
        }
    }
}
