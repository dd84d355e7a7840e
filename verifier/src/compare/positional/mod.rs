//! Positional mode, for copies made by other tools: no provenance, and offsets differ
//! between clusters. Each side's partition, from its start, is a sequence of
//! fingerprints; the two sequences are aligned as a diff.
//!
//! The alignment walks both sequences. Equal fronts match. At a difference it looks
//! ahead up to `window` records on each side for the nearest point where both agree
//! again (two records in a row, or the end of a window), which minimises the records
//! skipped on both sides together. The records skipped form a hunk:
//! - a record on both sides of the hunk moved: those out of order are `reordered` (the
//!   longest run in the source's order stays matched);
//! - a target record equal to a recently matched source record is `duplicated`;
//! - the rest pair up in order as `altered`; what is left is `missing` or `extra`.
//!
//! When the windows share no such point, the gap may be longer than a window: a long
//! run of records one side lacks. Each side is then scanned further on (from the store,
//! not held in memory) for the other side's front, the two scans in step, and the
//! nearer find decides: the records before it are `missing` (found on the source) or
//! `extra` (found on the target). Only when neither front comes back do the windows pair
//! up as `altered`; scanning then pauses until the sides agree again, so a long stretch
//! of different records costs a few scans, not one per window.

mod align;

use xxhash_rust::xxh3::Xxh3;

pub use align::{Event, Item, align};

use super::{Ctx, Samples, Side, SideAcc, group, sample};
use crate::error::VerifyError;
use crate::report::{Counts, GroupReport, Kind};

/// Compares one partition positionally.
pub(super) fn partition(
    ctx: &Ctx<'_>,
    s: Side<'_>,
    k: Side<'_>,
    topic: &str,
    p: i32,
    samples: &mut Samples,
) -> Result<GroupReport, VerifyError> {
    let range = |side: Side<'_>| {
        let b = ctx.snap.bounds(side.idx as usize, topic, p);
        let from = ctx
            .spec
            .from
            .lookup(side.cluster, topic, p)
            .unwrap_or(0)
            .max(b.map_or(0, |b| b.low));
        let to = ctx
            .spec
            .watermarks
            .lookup(side.cluster, topic, p)
            .or(b.map(|b| b.high))
            .unwrap_or(0);
        (from as u64, to as u64)
    };
    let (rs, rk) = (range(s), range(k));
    let seq = |side: Side<'_>, (from, to): (u64, u64)| {
        ctx.store
            .sequence(side.idx, topic, p, from)
            .take_while(move |r| r.as_ref().map_or(true, |(o, _)| *o < to))
            .map(|r| r.map(|(offset, fp)| Item { offset, fp }))
    };
    let mut counts = Counts::default();
    let (mut acc_s, mut acc_k) = (SideAcc::default(), SideAcc::default());
    let (mut hs, mut hk) = (Xxh3::new(), Xxh3::new());
    let see = |acc: &mut SideAcc, h: &mut Xxh3, item: &Item| {
        acc.records += 1;
        h.update(&item.fp.to_be_bytes());
    };
    let at = |kind: Kind, src: Option<Item>, tgt: Option<Item>, detail: String| {
        sample(kind, src.map(|i| i.offset), tgt.map(|i| i.offset), detail)
    };
    align(
        seq(s, rs),
        seq(k, rk),
        ctx.spec.align_window,
        |from| seq(s, (from, rs.1)),
        |from| seq(k, (from, rk.1)),
        |ev| match ev {
            Event::Match(x, y) => {
                see(&mut acc_s, &mut hs, &x);
                see(&mut acc_k, &mut hk, &y);
                counts.matched += 1;
            }
            Event::Missing(x) => {
                see(&mut acc_s, &mut hs, &x);
                counts.missing += 1;
                samples.push(at(
                    Kind::Missing,
                    Some(x),
                    None,
                    "on the source, not on the target".into(),
                ));
            }
            Event::Extra(y) => {
                see(&mut acc_k, &mut hk, &y);
                counts.extra += 1;
                samples.push(at(
                    Kind::Extra,
                    None,
                    Some(y),
                    "on the target, not on the source".into(),
                ));
            }
            Event::Altered(x, y) => {
                see(&mut acc_s, &mut hs, &x);
                see(&mut acc_k, &mut hk, &y);
                counts.altered += 1;
                samples.push(at(
                    Kind::Altered,
                    Some(x),
                    Some(y),
                    "in the same place, different content".into(),
                ));
            }
            Event::Duplicated(y, x) => {
                see(&mut acc_k, &mut hk, &y);
                counts.duplicated += 1;
                let detail = format!("another copy of source offset {}", x.offset);
                samples.push(at(Kind::Duplicated, Some(x), Some(y), detail));
            }
            Event::Reordered(x, y) => {
                see(&mut acc_s, &mut hs, &x);
                see(&mut acc_k, &mut hk, &y);
                counts.reordered += 1;
                samples.push(at(
                    Kind::Reordered,
                    Some(x),
                    Some(y),
                    "same record, out of order on the target".into(),
                ));
            }
        },
    )?;
    acc_s.sum = hs.digest128();
    acc_k.sum = hk.digest128();
    Ok(group(
        None,
        vec![rs.0 as i64, rk.0 as i64],
        vec![rs.1 as i64, rk.1 as i64],
        acc_s,
        acc_k,
        counts,
    ))
}
