//! Identity mode: records match by origin position. Sides are compared range by range
//! of origin offsets; only ranges whose count or digest differ are read record by record.

use std::collections::{BTreeMap, BTreeSet};
use std::iter::Peekable;

use super::{Ctx, Samples, Side, SideAcc, group, peek_ok, sample};
use crate::error::VerifyError;
use crate::keys::RANGE;
use crate::report::{Counts, GroupReport, Kind, Sample};
use crate::store::{RangeDigest, RecordEntry};

/// Where a group's comparison starts and ends, in origin offsets.
#[derive(Debug, Clone, Copy)]
struct Scope {
    low: u64,
    watermark: u64,
    /// Where Duplex began replicating the origin's partition to the other side.
    began: Option<i64>,
}

/// Compares one partition: one group per origin found on either side.
pub(super) fn partition(
    ctx: &Ctx<'_>,
    s: Side<'_>,
    k: Side<'_>,
    topic: &str,
    p: i32,
    samples: &mut Samples,
) -> Result<Vec<GroupReport>, VerifyError> {
    let order_s = ctx.store.order_state(s.idx, topic, p)?;
    let order_k = ctx.store.order_state(k.idx, topic, p)?;
    // Origins from the digests, not the order state: a side may hold an origin's records
    // only in the wrong partition, which the order state leaves out.
    let held_s = ctx.store.origins(s.idx, topic, p)?;
    let held_k = ctx.store.origins(k.idx, topic, p)?;
    // And origins outside the sides whose records neither side holds at all.
    let lost: Vec<&String> = ctx
        .snap
        .lost
        .keys()
        .filter(|(target, _, t, q)| target == k.cluster && t == topic && *q == p)
        .map(|(_, origin, ..)| origin)
        .collect();
    let origins: BTreeSet<&String> = held_s.iter().chain(&held_k).chain(lost).collect();
    let mut out = Vec::new();
    for origin in origins {
        let highest = [order_s.get(origin), order_k.get(origin)];
        let scope = scope(ctx, [s, k], topic, p, origin, highest);
        out.push(compare_group(ctx, s, k, topic, p, origin, scope, samples)?);
    }
    Ok(out)
}

fn scope(
    ctx: &Ctx<'_>,
    sides: [Side<'_>; 2],
    topic: &str,
    p: i32,
    origin: &str,
    highest: [Option<&u64>; 2],
) -> Scope {
    let spec = ctx.spec;
    // Records of an origin among the two sides reach the other side through the flow
    // between them (a neighbour of the root is reached directly in every spanning tree).
    let began = match sides.map(|s| s.cluster) {
        [a, b] if a == origin => ctx.snap.began(a, b, topic, p),
        [a, b] if b == origin => ctx.snap.began(b, a, topic, p),
        _ => None,
    };
    let given_from = spec
        .from
        .lookup(origin, topic, p)
        .unwrap_or(0)
        .max(began.unwrap_or(0));
    let given_mark = spec.watermarks.lookup(origin, topic, p);
    let origin_side = spec.sides.iter().position(|c| c.id == origin);
    let bounds = origin_side
        .and_then(|i| ctx.snap.bounds(i, topic, p))
        .or_else(|| ctx.snap.origin_bounds(origin, topic, p));
    match bounds {
        // The origin is verified too, or was asked (a cluster of the config outside the
        // sides): its log start and end when the run began.
        Some(b) => Scope {
            low: b.low.max(given_from) as u64,
            watermark: given_mark.unwrap_or(b.high) as u64,
            began,
        },
        // An origin outside the config: compare what both sides can have seen.
        None => {
            let seen = highest.iter().flatten().map(|h| **h + 1).min().unwrap_or(0);
            Scope {
                low: given_from as u64,
                watermark: given_mark.map_or(seen, |m| m as u64),
                began,
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn compare_group(
    ctx: &Ctx<'_>,
    s: Side<'_>,
    k: Side<'_>,
    topic: &str,
    p: i32,
    origin: &str,
    scope: Scope,
    samples: &mut Samples,
) -> Result<GroupReport, VerifyError> {
    let ranges = |side: Side<'_>| -> Result<BTreeMap<u64, RangeDigest>, VerifyError> {
        ctx.store.ranges(side.idx, topic, p, origin).collect()
    };
    let (rs, rk) = (ranges(s)?, ranges(k)?);
    let mut acc = Acc {
        origin,
        s: SideAcc::default(),
        k: SideAcc::default(),
        counts: Counts::default(),
    };
    let indexes: BTreeSet<u64> = rs.keys().chain(rk.keys()).copied().collect();
    for idx in indexes {
        let (lo, hi) = (idx * RANGE, (idx + 1) * RANGE);
        let ds = rs.get(&idx).copied().unwrap_or_default();
        let dk = rk.get(&idx).copied().unwrap_or_default();
        if hi <= scope.low {
            acc.s.out_of_scope += ds.count;
            acc.k.out_of_scope += dk.count;
        } else if lo >= scope.watermark {
            acc.s.beyond_watermark += ds.count;
            acc.k.beyond_watermark += dk.count;
        } else if lo >= scope.low
            && hi <= scope.watermark
            && ds.count == dk.count
            && ds.sum == dk.sum
        {
            // Same records on both sides: no need to read them.
            for (side, d) in [(&mut acc.s, ds), (&mut acc.k, dk)] {
                side.records += d.count;
                side.sum = side.sum.wrapping_add(d.sum);
            }
            acc.counts.matched += ds.count;
        } else {
            let mut a = ctx.store.records(s.idx, topic, p, origin, lo).peekable();
            let mut b = ctx.store.records(k.idx, topic, p, origin, lo).peekable();
            loop {
                let xa = next_offset(&mut a, hi)?;
                let xb = next_offset(&mut b, hi)?;
                let Some(x) = [xa, xb].into_iter().flatten().min() else {
                    break;
                };
                let copies_a = take_copies(&mut a, x)?;
                let copies_b = take_copies(&mut b, x)?;
                acc.classify(x, scope, p, &copies_a, &copies_b, samples);
            }
        }
    }
    let lost_key = (
        k.cluster.to_string(),
        origin.to_string(),
        topic.to_string(),
        p,
    );
    if let Some(lost) = ctx.snap.lost.get(&lost_key) {
        // Read from the origin after the sides: the sides hold none of these.
        acc.counts.missing_on_both += lost.count;
        for &x in &lost.offsets {
            let detail = format!(
                "on {origin} at offset {x}, on neither {} nor {}",
                s.cluster, k.cluster
            );
            samples.push(origin_sample(
                origin,
                Kind::MissingOnBoth,
                x as u64,
                None,
                None,
                detail,
            ));
        }
    }
    let inversions = |r: &BTreeMap<u64, RangeDigest>| r.values().map(|d| d.inversions).sum::<u64>();
    if inversions(&rs) > 0 {
        acc.counts.reordered += reordered(ctx, s, topic, p, origin, scope, true, samples)?;
    }
    if inversions(&rk) > 0 {
        acc.counts.reordered += reordered(ctx, k, topic, p, origin, scope, false, samples)?;
    }
    Ok(GroupReport {
        replication_began: scope.began,
        ..group(
            Some(origin.to_string()),
            vec![scope.low as i64],
            vec![scope.watermark as i64],
            acc.s,
            acc.k,
            acc.counts,
        )
    })
}

fn next_offset<I>(it: &mut Peekable<I>, end: u64) -> Result<Option<u64>, VerifyError>
where
    I: Iterator<Item = Result<RecordEntry, VerifyError>>,
{
    Ok(peek_ok(it)?.map(|e| e.origin_offset).filter(|x| *x < end))
}

fn origin_sample(
    origin: &str,
    kind: Kind,
    x: u64,
    source_offset: Option<u64>,
    target_offset: Option<u64>,
    detail: String,
) -> Sample {
    Sample {
        origin: Some(origin.to_string()),
        origin_offset: Some(x as i64),
        ..sample(kind, source_offset, target_offset, detail)
    }
}

fn take_copies<I>(it: &mut Peekable<I>, x: u64) -> Result<Vec<RecordEntry>, VerifyError>
where
    I: Iterator<Item = Result<RecordEntry, VerifyError>>,
{
    let mut out = Vec::new();
    while let Some(Ok(e)) = it.peek() {
        if e.origin_offset != x {
            break;
        }
        out.push(it.next().expect("peeked")?);
    }
    Ok(out)
}

/// A side's copy where it belongs (origin partition `p`), else its first copy.
fn first_placed(copies: &[RecordEntry], p: i32) -> Option<&RecordEntry> {
    copies.iter().find(|e| !e.misplaced(p)).or(copies.first())
}

struct Acc<'a> {
    origin: &'a str,
    s: SideAcc,
    k: SideAcc,
    counts: Counts,
}

impl Acc<'_> {
    fn sample(
        &self,
        kind: Kind,
        x: u64,
        src: Option<&RecordEntry>,
        tgt: Option<&RecordEntry>,
        detail: String,
    ) -> Sample {
        origin_sample(
            self.origin,
            kind,
            x,
            src.map(|e| e.own_offset),
            tgt.map(|e| e.own_offset),
            detail,
        )
    }

    /// One origin offset of origin partition `p`: its copies on the source (`a`) and on
    /// the target (`b`).
    #[allow(clippy::too_many_arguments)]
    fn classify(
        &mut self,
        x: u64,
        scope: Scope,
        p: i32,
        a: &[RecordEntry],
        b: &[RecordEntry],
        samples: &mut Samples,
    ) {
        if x < scope.low {
            self.s.out_of_scope += a.len() as u64;
            self.k.out_of_scope += b.len() as u64;
            return;
        }
        if x >= scope.watermark {
            self.s.beyond_watermark += a.len() as u64;
            self.k.beyond_watermark += b.len() as u64;
            return;
        }
        for (side, copies) in [(&mut self.s, a), (&mut self.k, b)] {
            side.records += copies.len() as u64;
            for e in copies {
                side.sum = side.sum.wrapping_add(e.hash(p));
            }
        }
        // Rule 1 keeps partitions: a copy elsewhere is named for that, not as missing or
        // reordered, which would send an operator looking for another fault.
        for (copies, on) in [(a, "source"), (b, "target")] {
            for e in copies.iter().filter(|e| e.misplaced(p)) {
                self.counts.wrong_partition += 1;
                let detail = format!(
                    "on the {on} in partition {} at offset {}; its origin partition is {p}",
                    e.own_partition, e.own_offset
                );
                let (src, tgt) = if on == "source" {
                    (Some(e), None)
                } else {
                    (None, Some(e))
                };
                samples.push(Sample {
                    held_in_partition: Some(e.own_partition),
                    ..self.sample(Kind::WrongPartition, x, src, tgt, detail)
                });
            }
        }
        match (first_placed(a, p), first_placed(b, p)) {
            (Some(ea), None) => {
                self.counts.missing += 1;
                samples.push(self.sample(
                    Kind::Missing,
                    x,
                    Some(ea),
                    None,
                    "on the source, not on the target".into(),
                ));
            }
            (None, Some(eb)) => {
                self.counts.extra += 1;
                samples.push(self.sample(
                    Kind::Extra,
                    x,
                    None,
                    Some(eb),
                    "on the target, not on the source".into(),
                ));
            }
            (Some(ea), Some(eb)) if ea.fp != eb.fp => {
                self.counts.altered += 1;
                let detail = "same identity, different key, value, headers or timestamp".into();
                samples.push(self.sample(Kind::Altered, x, Some(ea), Some(eb), detail));
            }
            (Some(ea), Some(eb)) if !ea.misplaced(p) && !eb.misplaced(p) => {
                self.counts.matched += 1
            }
            // On both sides, one only in the wrong partition: counted as such above.
            (Some(_), Some(_)) | (None, None) => {}
        }
        for (copies, on) in [(a, "source"), (b, "target")] {
            if copies.len() > 1 {
                self.counts.duplicated += copies.len() as u64 - 1;
                let offsets: Vec<String> =
                    copies.iter().map(|e| e.own_offset.to_string()).collect();
                let detail = format!(
                    "{} copies on the {on}, at offsets {}",
                    copies.len(),
                    offsets.join(", ")
                );
                let (src, tgt) = if on == "source" {
                    (copies.get(1), b.first())
                } else {
                    (a.first(), copies.get(1))
                };
                samples.push(self.sample(Kind::Duplicated, x, src, tgt, detail));
            }
        }
    }
}

/// Records of a group that one side holds after a record of a higher origin offset
/// (first copies only; further copies are duplicates).
#[allow(clippy::too_many_arguments)]
fn reordered(
    ctx: &Ctx<'_>,
    side: Side<'_>,
    topic: &str,
    p: i32,
    origin: &str,
    scope: Scope,
    is_source: bool,
    samples: &mut Samples,
) -> Result<u64, VerifyError> {
    let mut firsts: Vec<(u64, u64)> = Vec::new();
    for e in ctx.store.records(side.idx, topic, p, origin, scope.low) {
        let e = e?;
        if e.origin_offset >= scope.watermark {
            break;
        }
        if e.misplaced(p) {
            continue; // named as in the wrong partition; its offset is another partition's
        }
        match firsts.last_mut() {
            Some(last) if last.0 == e.origin_offset => last.1 = last.1.min(e.own_offset),
            _ => firsts.push((e.origin_offset, e.own_offset)),
        }
    }
    // Walk from the highest origin offset down, remembering the lowest own offset seen:
    // a record whose own offset is above it arrived after a later record.
    let mut late = Vec::new();
    let mut lowest_after: Option<(u64, u64)> = None;
    for &(x, own) in firsts.iter().rev() {
        if let Some((after_x, after_own)) = lowest_after.filter(|(_, o)| own > *o) {
            late.push((x, own, after_x, after_own));
        }
        if lowest_after.is_none_or(|(_, o)| own < o) {
            lowest_after = Some((x, own));
        }
    }
    late.reverse();
    let on = if is_source { "source" } else { "target" };
    for &(x, own, after_x, after_own) in &late {
        let detail = format!(
            "on the {on} at offset {own}, after origin offset {after_x} (at offset {after_own})"
        );
        let (src, tgt) = if is_source {
            (Some(own), None)
        } else {
            (None, Some(own))
        };
        samples.push(origin_sample(origin, Kind::Reordered, x, src, tgt, detail));
    }
    Ok(late.len() as u64)
}
