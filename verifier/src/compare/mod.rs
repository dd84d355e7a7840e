//! Comparison of the sides held in the store, per topic, partition and origin.
//!
//! The store answers everything: what each side holds was read before. The offsets each
//! side had when the run started (its [`Snapshot`]) decide the watermarks.

mod compacted;
mod identity;
pub mod positional;

use std::collections::{BTreeMap, BTreeSet};
use std::iter::Peekable;

use crate::error::VerifyError;
use crate::report::{
    Comparison, Counts, GroupReport, Kind, PartitionReport, Sample, State, TopicReport, Verdict,
};
use crate::spec::{Mode, VerifySpec};
use crate::store::Store;

/// Log start and end offset of a partition when the run began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// First offset the partition holds.
    pub low: i64,
    /// Offset the next record will get (the end the run reads to).
    pub high: i64,
}

/// What each side held when the run began: topics, partitions and their bounds.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per side (index as in the spec): topic -> partition -> bounds.
    pub sides: Vec<BTreeMap<String, BTreeMap<i32, Bounds>>>,
    /// Per Duplex flow (source, target): (topic, partition) -> the source offset where
    /// replication began, as its checkpoint says.
    pub began: BTreeMap<(String, String), BTreeMap<(String, i32), i64>>,
    /// Per cluster of the config outside the sides ([`VerifySpec::origins`]): topic ->
    /// partition -> bounds, when the run began.
    pub origins: BTreeMap<String, BTreeMap<String, BTreeMap<i32, Bounds>>>,
    /// Records of such an origin that neither side of a comparison holds, read from the
    /// origin after the sides were read.
    pub lost: BTreeMap<LostKey, Lost>,
}

/// A comparison's target, an origin outside the sides, a topic and a partition.
pub type LostKey = (String, String, String, i32);

/// Records of an origin, after the last one either side of a comparison holds and below
/// the origin's end when the run began: on the origin, on neither side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lost {
    /// Origin offset the count starts at (the first neither side can hold).
    pub from: i64,
    /// Records of the origin from there to its end offset.
    pub count: u64,
    /// The first of their offsets, up to the sample cap.
    pub offsets: Vec<i64>,
}

impl Snapshot {
    /// Bounds of a side's partition, if the side has it.
    pub fn bounds(&self, side: usize, topic: &str, partition: i32) -> Option<Bounds> {
        self.sides.get(side)?.get(topic)?.get(&partition).copied()
    }

    /// Bounds of a partition of an origin outside the sides, if it was asked.
    pub fn origin_bounds(&self, origin: &str, topic: &str, partition: i32) -> Option<Bounds> {
        self.origins
            .get(origin)?
            .get(topic)?
            .get(&partition)
            .copied()
    }

    /// Where Duplex began replicating `source`'s partition to `target`, if recorded.
    pub fn began(&self, source: &str, target: &str, topic: &str, partition: i32) -> Option<i64> {
        self.began
            .get(&(source.to_string(), target.to_string()))?
            .get(&(topic.to_string(), partition))
            .copied()
    }
}

/// A side taking part in a comparison.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Side<'a> {
    pub idx: u8,
    pub cluster: &'a str,
}

/// Shared inputs of a comparison.
pub(crate) struct Ctx<'a> {
    pub store: &'a Store,
    pub spec: &'a VerifySpec,
    pub snap: &'a Snapshot,
}

/// Capped discrepancy samples of one partition.
#[derive(Debug)]
pub(crate) struct Samples {
    max: usize,
    pub list: Vec<Sample>,
}

impl Samples {
    pub fn new(max: usize) -> Samples {
        Samples {
            max,
            list: Vec::new(),
        }
    }

    pub fn push(&mut self, s: Sample) {
        if self.list.len() < self.max {
            self.list.push(s);
        }
    }
}

/// Compares the source (side 0) with every other side.
pub fn compare(
    store: &Store,
    spec: &VerifySpec,
    snap: &Snapshot,
) -> Result<Vec<Comparison>, VerifyError> {
    let ctx = Ctx { store, spec, snap };
    let source = Side {
        idx: 0,
        cluster: &spec.sides[0].id,
    };
    (1..spec.sides.len())
        .map(|k| {
            let target = Side {
                idx: k as u8,
                cluster: &spec.sides[k].id,
            };
            compare_pair(&ctx, source, target)
        })
        .collect()
}

fn compare_pair(ctx: &Ctx<'_>, s: Side<'_>, k: Side<'_>) -> Result<Comparison, VerifyError> {
    let empty = BTreeMap::new();
    let on_s = ctx.snap.sides.get(s.idx as usize).unwrap_or(&empty);
    let on_k = ctx.snap.sides.get(k.idx as usize).unwrap_or(&empty);
    let topics: BTreeSet<&String> = on_s.keys().chain(on_k.keys()).collect();
    let mut out = Vec::new();
    let mut totals = Counts::default();
    for topic in topics {
        let report = compare_topic(
            ctx,
            s,
            k,
            topic,
            on_s.get(topic.as_str()),
            on_k.get(topic.as_str()),
        )?;
        totals.add(&report.totals);
        out.push(report);
    }
    Ok(Comparison {
        source: s.cluster.to_string(),
        target: k.cluster.to_string(),
        verdict: Verdict::of(&totals),
        totals,
        topics: out,
    })
}

fn compare_topic(
    ctx: &Ctx<'_>,
    s: Side<'_>,
    k: Side<'_>,
    topic: &str,
    parts_s: Option<&BTreeMap<i32, Bounds>>,
    parts_k: Option<&BTreeMap<i32, Bounds>>,
) -> Result<TopicReport, VerifyError> {
    let mode = ctx.spec.mode(topic);
    let partitions: BTreeSet<i32> = parts_s
        .into_iter()
        .chain(parts_k)
        .flat_map(|m| m.keys().copied())
        .collect();
    let note = match (parts_s, parts_k) {
        (Some(_), None) => Some(format!("topic absent on {}", k.cluster)),
        (None, Some(_)) => Some(format!("topic absent on {}", s.cluster)),
        (Some(a), Some(b)) if a.len() != b.len() => Some(format!(
            "{} partitions on {}, {} on {}",
            a.len(),
            s.cluster,
            b.len(),
            k.cluster
        )),
        _ => None,
    };
    let mut reports = Vec::new();
    let mut totals = Counts::default();
    for p in partitions {
        let mut samples = Samples::new(ctx.spec.max_samples);
        let groups = match mode {
            Mode::Identity => identity::partition(ctx, s, k, topic, p, &mut samples)?,
            Mode::Positional => vec![positional::partition(ctx, s, k, topic, p, &mut samples)?],
            Mode::Compacted => vec![compacted::partition(ctx, s, k, topic, p, &mut samples)?],
        };
        let mut counts = Counts::default();
        for g in &groups {
            counts.add(&g.counts);
        }
        let present = |m: Option<&BTreeMap<i32, Bounds>>| m.is_some_and(|m| m.contains_key(&p));
        let state = if !present(parts_s) || !present(parts_k) {
            State::Absent
        } else if counts.discrepancies() > 0 {
            State::Discrepancy
        } else {
            State::Parity
        };
        totals.add(&counts);
        reports.push(PartitionReport {
            partition: p,
            state,
            counts,
            groups,
            samples: samples.list,
        });
    }
    let state = if note.is_some() && reports.iter().any(|r| r.state == State::Absent) {
        State::Absent
    } else if totals.discrepancies() > 0 {
        State::Discrepancy
    } else {
        State::Parity
    };
    Ok(TopicReport {
        topic: topic.to_string(),
        mode,
        state,
        totals,
        partitions: reports,
        note,
    })
}

/// A sample naming a discrepancy by its offsets on each side; modes add origin or key.
pub(crate) fn sample(
    kind: Kind,
    source_offset: Option<u64>,
    target_offset: Option<u64>,
    detail: impl Into<String>,
) -> Sample {
    Sample {
        kind,
        origin: None,
        origin_offset: None,
        source_offset: source_offset.map(|o| o as i64),
        target_offset: target_offset.map(|o| o as i64),
        held_in_partition: None,
        key: None,
        detail: detail.into(),
    }
}

/// The next item of a store iterator without taking it; an error is taken and returned.
pub(crate) fn peek_ok<T, I>(it: &mut Peekable<I>) -> Result<Option<&T>, VerifyError>
where
    I: Iterator<Item = Result<T, VerifyError>>,
{
    if let Some(Err(_)) = it.peek() {
        return Err(it.next().and_then(Result::err).expect("peeked an error"));
    }
    Ok(it.peek().and_then(|r| r.as_ref().ok()))
}

/// Hex form of a digest.
pub(crate) fn digest_hex(d: u128) -> String {
    crate::fingerprint::hex(d)
}

/// A group report with the digests rendered.
pub(crate) fn group(
    origin: Option<String>,
    from: Vec<i64>,
    watermark: Vec<i64>,
    source: SideAcc,
    target: SideAcc,
    counts: Counts,
) -> GroupReport {
    GroupReport {
        origin,
        from,
        replication_began: None,
        watermark,
        source: source.summary(),
        target: target.summary(),
        counts,
    }
}

/// Running totals of one side of a group.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SideAcc {
    pub records: u64,
    pub sum: u128,
    pub out_of_scope: u64,
    pub beyond_watermark: u64,
}

impl SideAcc {
    fn summary(self) -> crate::report::SideSummary {
        crate::report::SideSummary {
            records: self.records,
            digest: digest_hex(self.sum),
            out_of_scope: self.out_of_scope,
            beyond_watermark: self.beyond_watermark,
        }
    }
}
