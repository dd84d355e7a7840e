//! A partition's records as runs: consecutive offsets whose origin positions are
//! consecutive too (one origin partition, origin offsets one apart). A one-way replica
//! is one run per unbroken stretch; an active-active partition one per batch that
//! interleaves. [`Consumed`] and [`Translator`] take a run at once, with the same
//! outcome as its records one by one (the property test in `tests.rs` checks that), so
//! a translation costs as many steps as runs, and runs are what an index keeps.
use serde::{Deserialize, Serialize};

use super::model::{Consumed, Translator};
use super::read::Seen;

/// `len` records at offsets `offset..offset + len`, whose origin positions are
/// `origin`'s `origin_partition` at `origin_offset..origin_offset + len`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// First offset on the cluster read.
    pub offset: i64,
    /// Records in the run (at least 1).
    pub len: i64,
    /// Index into [`Runs::origins`].
    pub origin: u32,
    /// Origin partition.
    pub origin_partition: i32,
    /// First origin offset.
    pub origin_offset: i64,
}

impl Run {
    /// One past the last offset.
    pub fn end(&self) -> i64 {
        self.offset + self.len
    }
}

/// The runs of one partition, in offset order, with the origin ids they name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runs {
    /// Origin cluster ids, by index.
    pub origins: Vec<String>,
    /// The runs.
    pub runs: Vec<Run>,
}

impl Runs {
    /// Adds the next record (offsets increasing), extending the last run when it
    /// continues it.
    pub fn push(&mut self, r: Seen<'_>) {
        let origin = match self.origins.iter().position(|o| o == r.origin) {
            Some(i) => i,
            None => {
                self.origins.push(r.origin.to_string());
                self.origins.len() - 1
            }
        };
        // Origins are clusters: a partition with 2^32 of them is not a Kafka partition.
        let origin = u32::try_from(origin).expect("fewer than 2^32 origins in a partition");
        // Checked: an origin offset near i64::MAX (a crafted header) starts a new run
        // rather than wrapping into one.
        if let Some(last) = self.runs.last_mut()
            && last.end() == r.offset
            && last.origin == origin
            && last.origin_partition == r.origin_partition
            && last.origin_offset.checked_add(last.len) == Some(r.origin_offset)
        {
            last.len += 1;
            return;
        }
        self.runs.push(Run {
            offset: r.offset,
            len: 1,
            origin,
            origin_partition: r.origin_partition,
            origin_offset: r.origin_offset,
        });
    }

    /// One past the last record, if any.
    pub fn end(&self) -> Option<i64> {
        self.runs.last().map(Run::end)
    }

    /// Drops the records below `offset` (deleted by retention).
    pub fn trim_below(&mut self, offset: i64) {
        self.runs.retain(|r| r.end() > offset);
        if let Some(first) = self.runs.first_mut()
            && first.offset < offset
        {
            let cut = offset - first.offset;
            first.offset += cut;
            first.origin_offset += cut;
            first.len -= cut;
        }
    }

    /// Feeds every run to the source side of a translation.
    pub fn consumed_by(&self, consumed: &mut Consumed) {
        for r in &self.runs {
            consumed.observe_run(&self.origins[r.origin as usize], r);
        }
    }

    /// Feeds every run to the target side of a translation.
    pub fn walk(&self, t: &mut Translator<'_>) {
        for r in &self.runs {
            t.observe_run(&self.origins[r.origin as usize], r);
        }
    }
}
