//! The parity report: what `parity.json` holds (schema `duplex.parity/1`, documented in
//! docs/verifier.md). The HTML page and the terminal summary are views of it.

use serde::{Deserialize, Serialize};

use crate::spec::Mode;

/// Schema name and version written into every report.
pub const SCHEMA: &str = "duplex.parity/1";

/// Outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Every compared record is on every side, once, unaltered, in order.
    #[serde(rename = "PASS")]
    Pass,
    /// At least one discrepancy.
    #[serde(rename = "FAIL")]
    Fail,
}

impl Verdict {
    /// PASS when there are no discrepancies.
    pub fn of(counts: &Counts) -> Verdict {
        if counts.discrepancies() == 0 {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
}

/// A whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// PASS only if every comparison passes.
    pub verdict: Verdict,
    /// The side every other side is compared with.
    pub source: String,
    /// The other sides.
    pub targets: Vec<String>,
    /// When the run began (RFC 3339, UTC).
    pub started_at: String,
    /// When the comparison finished (RFC 3339, UTC).
    pub finished_at: String,
    /// Sum over comparisons.
    pub totals: Counts,
    /// One per target.
    pub comparisons: Vec<Comparison>,
    /// What this run read (differs between a fresh and a resumed run; the rest does not).
    pub run: RunStats,
}

/// Source against one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Source cluster id.
    pub source: String,
    /// Target cluster id.
    pub target: String,
    /// PASS when this pair has no discrepancy.
    pub verdict: Verdict,
    /// Sum over topics.
    pub totals: Counts,
    /// Topics, by name.
    pub topics: Vec<TopicReport>,
}

/// State of a topic or partition, as coloured in the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Compared records match.
    Parity,
    /// At least one discrepancy.
    Discrepancy,
    /// The topic or partition exists on one side only.
    Absent,
}

/// One topic of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicReport {
    /// Topic name.
    pub topic: String,
    /// How its records were matched.
    pub mode: Mode,
    /// Worst state of its partitions.
    pub state: State,
    /// Sum over partitions.
    pub totals: Counts,
    /// Partitions, by number.
    pub partitions: Vec<PartitionReport>,
    /// Why the topic could not be compared fully, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionReport {
    /// Partition number (the origin partition in identity mode).
    pub partition: i32,
    /// Parity, discrepancy or absent.
    pub state: State,
    /// Sum over groups.
    pub counts: Counts,
    /// Identity mode: one group per origin cluster; other modes: one group.
    pub groups: Vec<GroupReport>,
    /// Up to `max_samples` discrepancies, in offset order.
    pub samples: Vec<Sample>,
}

/// Records of one origin in one partition (identity mode), or the whole partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    /// Origin cluster (identity mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// First offset in scope (origin offsets in identity mode; compared sides' own
    /// offsets otherwise: `source` then `target`).
    pub from: Vec<i64>,
    /// Identity mode: the origin offset where Duplex began replicating this partition to
    /// the other side, as its checkpoint says; `from` is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_began: Option<i64>,
    /// Watermark proven: offsets below it were compared.
    pub watermark: Vec<i64>,
    /// The source side.
    pub source: SideSummary,
    /// The target side.
    pub target: SideSummary,
    /// Outcome.
    pub counts: Counts,
}

/// What one side holds of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideSummary {
    /// Records in scope (copies included).
    pub records: u64,
    /// Digest of the records in scope: 32 hex digits. Equal digests, equal records.
    pub digest: String,
    /// Records below the start of the scope (before replication began or below the
    /// origin's log start): not compared, not missing.
    pub out_of_scope: u64,
    /// Records at or above the watermark: not compared in this run.
    pub beyond_watermark: u64,
}

/// Outcome counts. Full counts; samples are capped, counts are not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
// A count added within `duplex.parity/1` reads as 0 from an older report (or event log).
#[serde(default)]
pub struct Counts {
    /// Records present on both sides with the same fingerprint.
    pub matched: u64,
    /// On the source, not on the target.
    pub missing: u64,
    /// On the target, not on the source.
    pub extra: u64,
    /// Same identity on both sides, different fingerprint.
    pub altered: u64,
    /// Additional copies of a record on one side.
    pub duplicated: u64,
    /// Records out of origin order.
    pub reordered: u64,
    /// Identity mode: copies held in another partition than their origin partition
    /// (rule 1 keeps partitions). Added within `duplex.parity/1`.
    #[serde(default)]
    pub wrong_partition: u64,
    /// Identity mode: records the origin holds (a cluster of the config outside the
    /// compared sides) that neither side holds. Added within `duplex.parity/1`.
    #[serde(default)]
    pub missing_on_both: u64,
}

impl Counts {
    /// Everything but `matched`.
    pub fn discrepancies(&self) -> u64 {
        self.missing
            + self.extra
            + self.altered
            + self.duplicated
            + self.reordered
            + self.wrong_partition
            + self.missing_on_both
    }

    /// Adds another count.
    pub fn add(&mut self, o: &Counts) {
        self.matched += o.matched;
        self.missing += o.missing;
        self.extra += o.extra;
        self.altered += o.altered;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.wrong_partition += o.wrong_partition;
        self.missing_on_both += o.missing_on_both;
    }
}

/// Kind of a discrepancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// On the source, not on the target.
    Missing,
    /// On the target, not on the source.
    Extra,
    /// Same identity, different fingerprint.
    Altered,
    /// An additional copy.
    Duplicated,
    /// Out of origin order.
    Reordered,
    /// In another partition than its origin partition.
    WrongPartition,
    /// At the origin, on neither side.
    MissingOnBoth,
}

impl Kind {
    /// Name as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Altered => "altered",
            Kind::Duplicated => "duplicated",
            Kind::Reordered => "reordered",
            Kind::WrongPartition => "wrong_partition",
            Kind::MissingOnBoth => "missing_on_both",
        }
    }
}

/// One named discrepancy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// What is wrong.
    pub kind: Kind,
    /// Origin cluster (identity mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Offset at the origin (identity mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_offset: Option<i64>,
    /// Offset of the record on the source, if it is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_offset: Option<i64>,
    /// Offset of the record on the target, if it is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_offset: Option<i64>,
    /// Partition of the copy named, when it is not the sample's partition (a copy in the
    /// wrong partition). Added within `duplex.parity/1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_in_partition: Option<i32>,
    /// Record key (compacted mode): UTF-8 text, or `0x` and hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A sentence for people.
    pub detail: String,
}

/// What a run read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// Per side, in side order.
    pub sides: Vec<SideStats>,
    /// Seconds from start to the end of the comparison.
    pub seconds: f64,
}

/// What one side read in this run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideStats {
    /// Cluster id.
    pub cluster: String,
    /// Records read in this run (a resumed run reads only what the store lacked).
    pub records_read: u64,
    /// Bytes of keys and values read in this run.
    pub bytes_read: u64,
}

/// Renders a record key for a sample.
pub fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_string(),
        _ => {
            let mut out = String::from("0x");
            for b in key {
                out.push_str(&format!("{b:02x}"));
            }
            out
        }
    }
}
