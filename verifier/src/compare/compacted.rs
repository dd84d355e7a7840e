//! Compacted mode: the latest value per key, not the history. Two sides whose logs were
//! compacted at different moments, or written with a different history, agree when every
//! key's latest record (key, value, headers; not the timestamp) is the same.

use xxhash_rust::xxh3::xxh3_128;

use super::{Ctx, Samples, Side, SideAcc, group, peek_ok, sample};
use crate::error::VerifyError;
use crate::fingerprint::Fingerprint;
use crate::report::{Counts, GroupReport, Kind, Sample, key_text};

fn key_hash(key: &[u8], fp: Fingerprint) -> u128 {
    let mut b = Vec::with_capacity(key.len() + 20);
    b.extend((key.len() as u32).to_be_bytes());
    b.extend(key);
    b.extend(fp.to_be_bytes());
    xxh3_128(&b)
}

/// Compares the latest value per key of one partition.
pub(super) fn partition(
    ctx: &Ctx<'_>,
    s: Side<'_>,
    k: Side<'_>,
    topic: &str,
    p: i32,
    samples: &mut Samples,
) -> Result<GroupReport, VerifyError> {
    let mut a = ctx.store.latest(s.idx, topic, p).peekable();
    let mut b = ctx.store.latest(k.idx, topic, p).peekable();
    let mut counts = Counts::default();
    let (mut acc_s, mut acc_k) = (SideAcc::default(), SideAcc::default());
    let see = |acc: &mut SideAcc, key: &[u8], fp: Fingerprint| {
        acc.records += 1;
        acc.sum = acc.sum.wrapping_add(key_hash(key, fp));
    };
    let keyed = |kind, key: &[u8], src: Option<u64>, tgt: Option<u64>, detail: &str| Sample {
        key: Some(key_text(key)),
        ..sample(kind, src, tgt, detail)
    };
    loop {
        let (take_a, take_b) = match (peek_ok(&mut a)?, peek_ok(&mut b)?) {
            (None, None) => break,
            (Some((x, ..)), Some((y, ..))) => (x <= y, y <= x),
            (Some(_), None) => (true, false),
            (None, Some(_)) => (false, true),
        };
        let ea = if take_a { a.next().transpose()? } else { None };
        let eb = if take_b { b.next().transpose()? } else { None };
        match (ea, eb) {
            (Some((key, oa, fa)), Some((_, ob, fb))) => {
                see(&mut acc_s, &key, fa);
                see(&mut acc_k, &key, fb);
                if fa == fb {
                    counts.matched += 1;
                } else {
                    counts.altered += 1;
                    samples.push(keyed(
                        Kind::Altered,
                        &key,
                        Some(oa),
                        Some(ob),
                        "latest values differ",
                    ));
                }
            }
            (Some((key, oa, fa)), None) => {
                see(&mut acc_s, &key, fa);
                counts.missing += 1;
                samples.push(keyed(
                    Kind::Missing,
                    &key,
                    Some(oa),
                    None,
                    "key has a value on the source only",
                ));
            }
            (None, Some((key, ob, fb))) => {
                see(&mut acc_k, &key, fb);
                counts.extra += 1;
                samples.push(keyed(
                    Kind::Extra,
                    &key,
                    None,
                    Some(ob),
                    "key has a value on the target only",
                ));
            }
            (None, None) => break,
        }
    }
    let bound = |side: Side<'_>| ctx.snap.bounds(side.idx as usize, topic, p);
    let (bs, bk) = (bound(s), bound(k));
    Ok(group(
        None,
        vec![bs.map_or(0, |b| b.low), bk.map_or(0, |b| b.low)],
        vec![bs.map_or(0, |b| b.high), bk.map_or(0, |b| b.high)],
        acc_s,
        acc_k,
        counts,
    ))
}
