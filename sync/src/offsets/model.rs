//! Translation of one partition, from the records of both sides (docs/offsets.md).
//!
//! A record's identity is its origin position: the first hop of `duplex.path`, or its
//! own position when it was produced on the cluster it is on. Duplex keeps the order of
//! each origin's records on every cluster (DESIGN.md rule 2 and the order argument in
//! docs/delivery.md), so what a group consumed of a source partition is, per origin X,
//! a run of X's records: from the first the source holds to some origin offset `c[X]`.
//! [`Consumed`] is those runs, read off the source's records below the committed
//! offset.
//! [`Translator`] then walks the target partition: the translated offset is the first
//! record the group has not consumed (or just past the last record when it consumed
//! them all), and every consumed record at or after it is counted as re-delivered.

use serde::Serialize;

use super::read::Seen;
use super::runs::Run;

/// The lowest and highest origin offsets seen of one origin partition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    cluster: String,
    partition: i32,
    low: i64,
    high: i64,
}

/// Origin offsets seen per origin partition. Origins are few (the clusters of a mesh),
/// so a vector searched linearly beats a map and allocates once per origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Spans(Vec<Span>);

impl Spans {
    fn get(&self, cluster: &str, partition: i32) -> Option<&Span> {
        self.0
            .iter()
            .find(|u| u.partition == partition && u.cluster == cluster)
    }

    fn add(&mut self, cluster: &str, partition: i32, offset: i64) {
        match self
            .0
            .iter_mut()
            .find(|u| u.partition == partition && u.cluster == cluster)
        {
            Some(u) => {
                u.low = u.low.min(offset);
                u.high = u.high.max(offset);
            }
            None => self.0.push(Span {
                cluster: cluster.to_string(),
                partition,
                low: offset,
                high: offset,
            }),
        }
    }
}

/// What a group consumed of one partition of the source cluster: every record below
/// its committed offset, as the highest origin offset consumed per origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    source: String,
    partition: i32,
    committed: i64,
    seen: Spans,
}

impl Consumed {
    /// Nothing consumed yet of `source`'s `partition`, whose committed offset is
    /// `committed`; feed it the records below it with [`Consumed::observe`].
    pub fn new(source: &str, partition: i32, committed: i64) -> Self {
        Consumed {
            source: source.to_string(),
            partition,
            committed,
            seen: Spans::default(),
        }
    }

    /// The group's committed offset on the source.
    pub fn committed(&self) -> i64 {
        self.committed
    }

    /// A record of the source partition. Records at or past the committed offset are
    /// not consumed and are ignored.
    pub fn observe(&mut self, r: Seen<'_>) {
        if r.offset < self.committed {
            self.seen.add(r.origin, r.origin_partition, r.origin_offset);
        }
    }

    /// A run of records of the source partition: as its records one by one.
    pub fn observe_run(&mut self, origin: &str, r: &Run) {
        let below = r.len.min(self.committed - r.offset);
        if below > 0 {
            self.seen.add(origin, r.origin_partition, r.origin_offset);
            self.seen
                .add(origin, r.origin_partition, r.origin_offset + below - 1);
        }
    }

    /// The origin offsets of `origin`'s `origin_partition` the group consumed, as one
    /// inclusive interval (see [`Consumed::has_consumed`]), or `None`.
    fn consumed_range(&self, origin: &str, origin_partition: i32) -> Option<(i64, i64)> {
        if origin_partition == self.partition && origin == self.source {
            return (self.committed > i64::MIN).then(|| (i64::MIN, self.committed - 1));
        }
        self.seen
            .get(origin, origin_partition)
            .map(|s| (s.low, s.high))
    }

    /// Whether the group consumed the record with this origin position. Records first
    /// produced on the source are its own positions, so for them the committed offset
    /// answers exactly (even for records the source no longer holds). For the others,
    /// by per-origin order, the origin offsets the group read of their origin: a record
    /// between the lowest and the highest was on the source below the committed offset.
    /// Below the lowest it may never have been there (replication to the source began
    /// later: `start = "latest"`, a cluster added to the mesh, retention on the origin
    /// before the link existed): not consumed, so never skipped.
    pub fn has_consumed(&self, origin: &str, origin_partition: i32, origin_offset: i64) -> bool {
        if origin_partition == self.partition && origin == self.source {
            return origin_offset < self.committed;
        }
        self.seen
            .get(origin, origin_partition)
            .is_some_and(|s| s.low <= origin_offset && origin_offset <= s.high)
    }
}

/// A partition translated: where the group resumes on the target, and how many records
/// it consumed on the source that it will read again there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Translated {
    /// The offset to commit on the target.
    pub offset: i64,
    /// Records at or after `offset` on the target that the group consumed on the source.
    pub redelivered: u64,
}

/// The target does not yet hold records the group consumed: translating now would
/// place them after the translated offset, to be read again uncounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Behind {
    /// The origin cluster whose records have not all arrived.
    pub origin: String,
    /// Its partition.
    pub origin_partition: i32,
    /// The highest origin offset of it the group consumed on the source.
    pub consumed: i64,
    /// The highest origin offset of it the target holds, if any.
    pub held: Option<i64>,
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.held {
            Some(h) => write!(
                f,
                "replication is behind: the group consumed {}'s records of partition {} up to \
                 origin offset {}, the target holds them up to {} ({} behind)",
                self.origin,
                self.origin_partition,
                self.consumed,
                h,
                self.consumed - h
            ),
            None => write!(
                f,
                "replication is behind: the group consumed {}'s records of partition {} up to \
                 origin offset {}, the target holds none of them",
                self.origin, self.origin_partition, self.consumed
            ),
        }
    }
}

/// Walks the target partition in offset order against what the group consumed.
#[derive(Debug)]
pub struct Translator<'a> {
    consumed: &'a Consumed,
    first_unconsumed: Option<i64>,
    redelivered: u64,
    last: Option<i64>,
    held: Spans,
}

impl<'a> Translator<'a> {
    /// A walk of a target partition against `consumed`.
    pub fn new(consumed: &'a Consumed) -> Self {
        Translator {
            consumed,
            first_unconsumed: None,
            redelivered: 0,
            last: None,
            held: Spans::default(),
        }
    }

    /// The next record of the target partition (offsets increasing).
    pub fn observe(&mut self, r: Seen<'_>) {
        let (offset, origin, origin_partition, origin_offset) =
            (r.offset, r.origin, r.origin_partition, r.origin_offset);
        self.last = Some(offset);
        self.held.add(origin, origin_partition, origin_offset);
        if self
            .consumed
            .has_consumed(origin, origin_partition, origin_offset)
        {
            if self.first_unconsumed.is_some() {
                self.redelivered += 1;
            }
        } else if self.first_unconsumed.is_none() {
            self.first_unconsumed = Some(offset);
        }
    }

    /// The next run of the target partition: as its records one by one, in one step.
    pub fn observe_run(&mut self, origin: &str, r: &Run) {
        let (s, e) = (r.origin_offset, r.origin_offset + r.len - 1);
        self.last = Some(r.end() - 1);
        self.held.add(origin, r.origin_partition, s);
        self.held.add(origin, r.origin_partition, e);
        // The run's consumed records are one interval of it (the group's is one).
        let consumed = self
            .consumed
            .consumed_range(origin, r.origin_partition)
            .map(|(lo, hi)| (lo.max(s), hi.min(e)))
            .filter(|(c0, c1)| c0 <= c1);
        match consumed {
            None => {
                self.first_unconsumed.get_or_insert(r.offset);
            }
            Some((c0, c1)) => {
                let n = (c1 - c0 + 1) as u64;
                if self.first_unconsumed.is_some() {
                    self.redelivered += n;
                } else if c0 > s {
                    // Unconsumed first, then the consumed ones, read again.
                    self.first_unconsumed = Some(r.offset);
                    self.redelivered += n;
                } else if c1 < e {
                    // A consumed prefix, then the first unconsumed record.
                    self.first_unconsumed = Some(r.offset + (c1 - s + 1));
                }
            }
        }
    }

    /// The translation, once the target partition was read to its end; `log_start` is
    /// where it begins (the translation when it holds no record). Refused, naming every
    /// origin, when records the group consumed have not all reached the target.
    pub fn finish(self, log_start: i64) -> Result<Translated, Vec<Behind>> {
        let mut behind: Vec<Behind> = self
            .consumed
            .seen
            .0
            .iter()
            .filter_map(|u| {
                let held = self.held.get(&u.cluster, u.partition).map(|s| s.high);
                (held < Some(u.high)).then(|| Behind {
                    origin: u.cluster.clone(),
                    origin_partition: u.partition,
                    consumed: u.high,
                    held,
                })
            })
            .collect();
        if !behind.is_empty() {
            behind.sort_by(|a, b| {
                (&a.origin, a.origin_partition).cmp(&(&b.origin, b.origin_partition))
            });
            return Err(behind);
        }
        let offset = self
            .first_unconsumed
            .or(self.last.map(|l| l + 1))
            .unwrap_or(log_start)
            .max(log_start);
        Ok(Translated {
            offset,
            redelivered: self.redelivered,
        })
    }
}
