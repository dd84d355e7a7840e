//! Compacted mode: the latest value per key, not the history. Two sides whose logs were
//! compacted at different moments, or written with a different history, agree when every
//! key's latest record (key, value, headers; not the timestamp) is the same.

use std::iter::Peekable;

use xxhash_rust::xxh3::xxh3_128;

use super::{Ctx, Samples, Side, SideAcc, group};
use crate::error::VerifyError;
use crate::fingerprint::Fingerprint;
use crate::report::{Counts, GroupReport, Kind, Sample, key_text};

type Latest = (Vec<u8>, u64, Fingerprint);

fn key_hash(key: &[u8], fp: Fingerprint) -> u128 {
    let mut b = Vec::with_capacity(key.len() + 20);
    b.extend((key.len() as u32).to_be_bytes());
    b.extend(key);
    b.extend(fp.to_be_bytes());
    xxh3_128(&b)
}

fn peek_key<I: Iterator<Item = Result<Latest, VerifyError>>>(
    it: &mut Peekable<I>,
) -> Result<Option<Vec<u8>>, VerifyError> {
    match it.peek() {
        None => Ok(None),
        Some(Ok((k, _, _))) => Ok(Some(k.clone())),
        Some(Err(_)) => Err(it.next().expect("peeked").expect_err("peeked an error")),
    }
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
    let sample = |kind, key: &[u8], src: Option<u64>, tgt: Option<u64>, detail: &str| Sample {
        kind,
        origin: None,
        origin_offset: None,
        source_offset: src.map(|o| o as i64),
        target_offset: tgt.map(|o| o as i64),
        key: Some(key_text(key)),
        detail: detail.to_string(),
    };
    loop {
        let (ka, kb) = (peek_key(&mut a)?, peek_key(&mut b)?);
        let take_a = match (&ka, &kb) {
            (None, None) => break,
            (Some(x), Some(y)) => x <= y,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        let take_b = match (&ka, &kb) {
            (Some(x), Some(y)) => y <= x,
            (None, Some(_)) => true,
            _ => false,
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
                    samples.push(sample(
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
                samples.push(sample(
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
                samples.push(sample(
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
