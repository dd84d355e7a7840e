//! The alignment of two positional sequences as a diff (see the parent module): windows,
//! hunks, the scan beyond the windows for a long gap, and recently matched records.

use std::collections::{HashMap, VecDeque};

use crate::fingerprint::Fingerprint;

/// One record of a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// Offset on its side.
    pub offset: u64,
    /// Fingerprint.
    pub fp: Fingerprint,
}

/// One step of an alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Same record on both sides.
    Match(Item, Item),
    /// Source record with no counterpart.
    Missing(Item),
    /// Target record with no counterpart.
    Extra(Item),
    /// Counterparts with different fingerprints.
    Altered(Item, Item),
    /// Target record repeating the source record given.
    Duplicated(Item, Item),
    /// Same record on both sides, out of order on the target.
    Reordered(Item, Item),
}

/// Aligns two sequences, calling `sink` with each event in sequence order. `ahead_a`
/// and `ahead_b` open a side's sequence again from an offset, to look further than the
/// window (see the module's documentation).
pub fn align<E, A, B>(
    a: impl Iterator<Item = Result<Item, E>>,
    b: impl Iterator<Item = Result<Item, E>>,
    window: usize,
    ahead_a: impl Fn(u64) -> A,
    ahead_b: impl Fn(u64) -> B,
    mut sink: impl FnMut(Event),
) -> Result<(), E>
where
    A: Iterator<Item = Result<Item, E>>,
    B: Iterator<Item = Result<Item, E>>,
{
    let window = window.max(2);
    let (mut a, mut b) = (a.fuse(), b.fuse());
    let (mut ba, mut bb) = (VecDeque::new(), VecDeque::new());
    let mut recent = Recent::new(window);
    let mut scanning = true;
    loop {
        fill(&mut ba, &mut a, window)?;
        fill(&mut bb, &mut b, window)?;
        match (ba.front().copied(), bb.front().copied()) {
            (None, None) => return Ok(()),
            (Some(x), Some(y)) if x.fp == y.fp => {
                ba.pop_front();
                bb.pop_front();
                recent.push(x);
                scanning = true;
                sink(Event::Match(x, y));
            }
            (Some(x), None) => {
                ba.pop_front();
                sink(Event::Missing(x));
            }
            (None, Some(y)) => {
                bb.pop_front();
                sink(match recent.get(y.fp) {
                    Some(x) => Event::Duplicated(y, x),
                    None => Event::Extra(y),
                });
            }
            (Some(_), Some(_)) => {
                let near = resync(&ba, &bb);
                let far = match near {
                    None if scanning => far(&ba, &bb, &ahead_a, &ahead_b)?,
                    _ => None,
                };
                match (near, far) {
                    (Some((i, j)), _) => {
                        let ha: Vec<Item> = ba.drain(..i).collect();
                        let hb: Vec<Item> = bb.drain(..j).collect();
                        hunk(&ha, &hb, &mut recent, &mut sink);
                    }
                    (None, Some(Far::OnSource(at))) => {
                        // The target's front is further on in the source: a long run of
                        // records the target lacks.
                        while let Some(x) = ba.front().copied().filter(|x| x.offset < at) {
                            ba.pop_front();
                            sink(Event::Missing(x));
                            fill(&mut ba, &mut a, window)?;
                        }
                    }
                    (None, Some(Far::OnTarget(at))) => {
                        while let Some(y) = bb.front().copied().filter(|y| y.offset < at) {
                            bb.pop_front();
                            sink(match recent.get(y.fp) {
                                Some(x) => Event::Duplicated(y, x),
                                None => Event::Extra(y),
                            });
                            fill(&mut bb, &mut b, window)?;
                        }
                    }
                    (None, None) => {
                        scanning = false;
                        let ha: Vec<Item> = ba.drain(..).collect();
                        let hb: Vec<Item> = bb.drain(..).collect();
                        hunk(&ha, &hb, &mut recent, &mut sink);
                    }
                }
            }
        }
    }
}

/// Where the sides agree again beyond the windows: the offset, on one side, of the
/// other side's front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Far {
    OnSource(u64),
    OnTarget(u64),
}

/// Scans each side beyond its window for the other side's front (its first two records,
/// or its only one), both scans in step, and returns the nearer find.
fn far<E, A, B>(
    ba: &VecDeque<Item>,
    bb: &VecDeque<Item>,
    ahead_a: &impl Fn(u64) -> A,
    ahead_b: &impl Fn(u64) -> B,
) -> Result<Option<Far>, E>
where
    A: Iterator<Item = Result<Item, E>>,
    B: Iterator<Item = Result<Item, E>>,
{
    let start = |buf: &VecDeque<Item>| buf.back().map_or(0, |x| x.offset + 1);
    let front = |buf: &VecDeque<Item>| (buf[0].fp, buf.get(1).map(|x| x.fp));
    let mut on_a = Scan::new(ahead_a(start(ba)), front(bb));
    let mut on_b = Scan::new(ahead_b(start(bb)), front(ba));
    while !(on_a.done && on_b.done) {
        if let Some(at) = on_a.step()? {
            return Ok(Some(Far::OnSource(at)));
        }
        if let Some(at) = on_b.step()? {
            return Ok(Some(Far::OnTarget(at)));
        }
    }
    Ok(None)
}

/// A scan of one side for a front: a record with the front's fingerprint, followed by
/// one with the second's (when the front has a second record).
struct Scan<I> {
    it: I,
    want: (Fingerprint, Option<Fingerprint>),
    /// The previous record, if it has the front's first fingerprint.
    candidate: Option<u64>,
    done: bool,
}

impl<E, I: Iterator<Item = Result<Item, E>>> Scan<I> {
    fn new(it: I, want: (Fingerprint, Option<Fingerprint>)) -> Scan<I> {
        Scan {
            it,
            want,
            candidate: None,
            done: false,
        }
    }

    /// Reads one record; the offset of the front's first record once it is found.
    fn step(&mut self) -> Result<Option<u64>, E> {
        if self.done {
            return Ok(None);
        }
        let Some(x) = self.it.next().transpose()? else {
            self.done = true;
            // The front's first record as the side's last one also agrees to the end.
            return Ok(self.candidate.filter(|_| self.want.1.is_some()));
        };
        if let (Some(at), Some(second)) = (self.candidate, self.want.1)
            && x.fp == second
        {
            return Ok(Some(at));
        }
        self.candidate = (x.fp == self.want.0).then_some(x.offset);
        Ok(self.candidate.filter(|_| self.want.1.is_none()))
    }
}

fn fill<E>(
    buf: &mut VecDeque<Item>,
    it: &mut impl Iterator<Item = Result<Item, E>>,
    window: usize,
) -> Result<(), E> {
    while buf.len() < window {
        match it.next() {
            Some(item) => buf.push_back(item?),
            None => break,
        }
    }
    Ok(())
}

/// The nearest `(i, j)` (smallest `i + j`) where `a[i] == b[j]` and the next records
/// agree too (or a buffer ends there); `None` when there is none.
fn resync(a: &VecDeque<Item>, b: &VecDeque<Item>) -> Option<(usize, usize)> {
    let mut at: HashMap<Fingerprint, Vec<usize>> = HashMap::new();
    for (j, y) in b.iter().enumerate() {
        at.entry(y.fp).or_default().push(j);
    }
    let anchored = |i: usize, j: usize| match (a.get(i + 1), b.get(j + 1)) {
        (Some(x), Some(y)) => x.fp == y.fp,
        _ => true,
    };
    let mut best: Option<(usize, usize)> = None;
    for (i, x) in a.iter().enumerate() {
        if best.is_some_and(|(bi, bj)| i >= bi + bj) {
            break;
        }
        for &j in at.get(&x.fp).map(Vec::as_slice).unwrap_or_default() {
            if best.is_some_and(|(bi, bj)| i + j >= bi + bj) {
                break;
            }
            if (i, j) != (0, 0) && anchored(i, j) {
                best = Some((i, j));
                break;
            }
        }
    }
    best
}

fn hunk(ha: &[Item], hb: &[Item], recent: &mut Recent, sink: &mut impl FnMut(Event)) {
    // Records present in both halves moved: pair them by fingerprint.
    let mut in_a: HashMap<Fingerprint, VecDeque<usize>> = HashMap::new();
    for (i, x) in ha.iter().enumerate() {
        in_a.entry(x.fp).or_default().push_back(i);
    }
    let mut paired_a = vec![false; ha.len()];
    let mut moved: Vec<(usize, usize)> = Vec::new(); // (index in ha, index in hb), hb order
    let mut rest_b = Vec::new();
    for (j, y) in hb.iter().enumerate() {
        match in_a.get_mut(&y.fp).and_then(VecDeque::pop_front) {
            Some(i) => {
                paired_a[i] = true;
                moved.push((i, j));
            }
            None => rest_b.push(j),
        }
    }
    // The longest run of moved records already in source order stays matched.
    let keep = longest_increasing(&moved.iter().map(|m| m.0).collect::<Vec<_>>());
    for (n, &(i, j)) in moved.iter().enumerate() {
        recent.push(ha[i]);
        sink(if keep[n] {
            Event::Match(ha[i], hb[j])
        } else {
            Event::Reordered(ha[i], hb[j])
        });
    }
    let rest_a: Vec<usize> = (0..ha.len()).filter(|i| !paired_a[*i]).collect();
    let mut rest_b_new = Vec::new();
    for j in rest_b {
        match recent.get(hb[j].fp) {
            Some(x) => sink(Event::Duplicated(hb[j], x)),
            None => rest_b_new.push(j),
        }
    }
    let pairs = rest_a.len().min(rest_b_new.len());
    for n in 0..pairs {
        sink(Event::Altered(ha[rest_a[n]], hb[rest_b_new[n]]));
    }
    for &i in &rest_a[pairs..] {
        sink(Event::Missing(ha[i]));
    }
    for &j in &rest_b_new[pairs..] {
        sink(Event::Extra(hb[j]));
    }
}

/// Marks the elements of one longest strictly increasing subsequence.
fn longest_increasing(seq: &[usize]) -> Vec<bool> {
    let mut tails: Vec<usize> = Vec::new(); // index into seq of the tail of each length
    let mut prev = vec![usize::MAX; seq.len()];
    for (n, &v) in seq.iter().enumerate() {
        let len = tails.partition_point(|&t| seq[t] < v);
        if len > 0 {
            prev[n] = tails[len - 1];
        }
        if len == tails.len() {
            tails.push(n);
        } else {
            tails[len] = n;
        }
    }
    let mut keep = vec![false; seq.len()];
    let mut at = tails.last().copied();
    while let Some(n) = at {
        keep[n] = true;
        at = (prev[n] != usize::MAX).then_some(prev[n]);
    }
    keep
}

/// Source records matched recently, by fingerprint, to recognise duplicates.
struct Recent {
    cap: usize,
    order: VecDeque<Item>,
    by_fp: HashMap<Fingerprint, (Item, usize)>,
}

impl Recent {
    fn new(cap: usize) -> Recent {
        Recent {
            cap,
            order: VecDeque::new(),
            by_fp: HashMap::new(),
        }
    }

    fn push(&mut self, x: Item) {
        self.order.push_back(x);
        let e = self.by_fp.entry(x.fp).or_insert((x, 0));
        *e = (x, e.1 + 1);
        if self.order.len() > self.cap {
            let old = self.order.pop_front().expect("non-empty");
            if let Some(e) = self.by_fp.get_mut(&old.fp) {
                e.1 -= 1;
                if e.1 == 0 {
                    self.by_fp.remove(&old.fp);
                }
            }
        }
    }

    fn get(&self, fp: Fingerprint) -> Option<Item> {
        self.by_fp.get(&fp).map(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &[u128], b: &[u128]) -> Vec<Event> {
        run_window(a, b, 50)
    }

    fn run_window(a: &[u128], b: &[u128], window: usize) -> Vec<Event> {
        let items = |v: &[u128], base: u64| -> Vec<Result<Item, ()>> {
            v.iter()
                .enumerate()
                .map(|(n, fp)| {
                    Ok(Item {
                        offset: base + n as u64,
                        fp: *fp,
                    })
                })
                .collect()
        };
        let (ia, ib) = (items(a, 0), items(b, 100));
        let from = |v: &[Result<Item, ()>], at: u64| -> Vec<Result<Item, ()>> {
            v.iter()
                .filter(|i| i.unwrap().offset >= at)
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        align(
            ia.clone().into_iter(),
            ib.clone().into_iter(),
            window,
            |at| from(&ia, at).into_iter(),
            |at| from(&ib, at).into_iter(),
            |e| out.push(e),
        )
        .unwrap();
        out.into_iter()
            .filter(|e| !matches!(e, Event::Match(..)))
            .collect()
    }

    fn it(offset: u64, fp: u128) -> Item {
        Item { offset, fp }
    }

    #[test]
    fn identical_sequences_have_no_events() {
        assert!(run(&[1, 2, 3, 4], &[1, 2, 3, 4]).is_empty());
    }

    #[test]
    fn each_kind_of_difference_is_named_with_its_offsets() {
        assert_eq!(
            run(&[1, 2, 3, 4], &[1, 3, 4]),
            vec![Event::Missing(it(1, 2))]
        );
        assert_eq!(
            run(&[1, 2, 3], &[1, 2, 9, 3]),
            vec![Event::Extra(it(102, 9))]
        );
        assert_eq!(
            run(&[1, 2, 3, 4], &[1, 7, 3, 4]),
            vec![Event::Altered(it(1, 2), it(101, 7))]
        );
        assert_eq!(
            run(&[1, 2, 3, 4], &[1, 2, 2, 3, 4]),
            vec![Event::Duplicated(it(102, 2), it(1, 2))]
        );
        let swap = run(&[1, 2, 3, 4, 5], &[1, 3, 2, 4, 5]);
        assert_eq!(swap.len(), 1, "{swap:?}");
        assert!(matches!(swap[0], Event::Reordered(x, _) if x.fp == 2 || x.fp == 3));
    }

    #[test]
    fn tails_are_missing_or_extra_and_a_repeated_tail_is_a_duplicate() {
        assert_eq!(
            run(&[1, 2, 3], &[1]),
            vec![Event::Missing(it(1, 2)), Event::Missing(it(2, 3))]
        );
        assert_eq!(run(&[1], &[1, 5]), vec![Event::Extra(it(101, 5))]);
        assert_eq!(
            run(&[1, 2], &[1, 2, 2]),
            vec![Event::Duplicated(it(102, 2), it(1, 2))]
        );
    }

    /// Gaps several windows long, in the middle and at the front: each record named as
    /// missing (or extra), none paired with an unrelated record as altered.
    #[test]
    fn a_run_longer_than_the_window_is_missing_or_extra() {
        let src: Vec<u128> = (0..100).collect();
        let mut tgt = src.clone();
        tgt.drain(20..45);
        let ev = run_window(&src, &tgt, 4);
        assert_eq!(
            ev,
            (20..45)
                .map(|i| Event::Missing(it(i, i as u128)))
                .collect::<Vec<_>>()
        );
        let mut tgt = src.clone();
        let extra: Vec<u128> = (1000..1030).collect();
        tgt.splice(10..10, extra);
        let ev = run_window(&src, &tgt, 4);
        assert_eq!(
            ev,
            (0..30)
                .map(|n| Event::Extra(it(110 + n, 1000 + n as u128)))
                .collect::<Vec<_>>()
        );
        let ev = run_window(&src, &src[30..], 4);
        assert_eq!(
            ev,
            (0..30)
                .map(|i| Event::Missing(it(i, i as u128)))
                .collect::<Vec<_>>()
        );
        // A long stretch of different records is still altered, pair by pair.
        let mut tgt = src.clone();
        for v in &mut tgt[40..60] {
            *v += 5000;
        }
        let ev = run_window(&src, &tgt, 4);
        assert_eq!(ev.len(), 20, "{ev:?}");
        assert!(ev.iter().all(|e| matches!(e, Event::Altered(..))), "{ev:?}");
    }

    #[test]
    fn longest_increasing_keeps_the_most_in_order() {
        assert_eq!(
            longest_increasing(&[1, 0]).iter().filter(|k| **k).count(),
            1
        );
        assert_eq!(longest_increasing(&[0, 1, 2]), vec![true; 3]);
        assert_eq!(
            longest_increasing(&[3, 0, 1, 2]),
            vec![false, true, true, true]
        );
    }
}
