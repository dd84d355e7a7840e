//! The terminal summary of a report: plain ASCII lines, no colours, readable in a CI log.
//!
//! Text that comes from users (topic names, keys, details) is printed as it is, except
//! control characters, which are escaped so that a record cannot drive the terminal.

use std::fmt::Write as _;

use super::model::{Comparison, Counts, Kind, Report, Sample, State, TopicReport, Verdict};

/// Samples printed per comparison; the report files hold the rest.
pub const SAMPLES_SHOWN: usize = 10;

/// The terminal summary: the verdict with source and targets, one line per comparison
/// and topic, up to [`SAMPLES_SHOWN`] samples per comparison, and the verdict again with
/// totals.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {} -> {}",
        verdict_word(report.verdict),
        clean(&report.source),
        clean(&report.targets.join(", "))
    );
    for c in &report.comparisons {
        comparison(&mut out, c);
    }
    let _ = writeln!(out, "{}", verdict_line(report.verdict, &report.totals));
    out
}

fn comparison(out: &mut String, c: &Comparison) {
    let _ = writeln!(
        out,
        "{} -> {}: {}",
        clean(&c.source),
        clean(&c.target),
        verdict_line(c.verdict, &c.totals)
    );
    if c.topics.is_empty() {
        let _ = writeln!(out, "  no topics compared");
    }
    let width = c
        .topics
        .iter()
        .map(|t| clean(&t.topic).chars().count())
        .max()
        .unwrap_or(0);
    for t in &c.topics {
        topic_line(out, t, width);
    }
    let samples: Vec<(&TopicReport, i32, &Sample)> = c
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .flat_map(move |p| p.samples.iter().map(move |s| (t, p.partition, s)))
        })
        .collect();
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "  samples:");
    for (t, p, s) in samples.iter().take(SAMPLES_SHOWN) {
        let _ = writeln!(out, "    {}", sample_line(&t.topic, *p, s));
    }
    if samples.len() > SAMPLES_SHOWN {
        let _ = writeln!(
            out,
            "    ... {} more samples in the report",
            thousands((samples.len() - SAMPLES_SHOWN) as u64)
        );
    }
}

fn topic_line(out: &mut String, t: &TopicReport, width: usize) {
    let parts = t.partitions.len();
    let absent = t
        .partitions
        .iter()
        .filter(|p| p.state == State::Absent)
        .count();
    let mut line = format!(
        "  {:<width$}  {:<10}  {} {}",
        clean(&t.topic),
        t.mode.as_str(),
        parts,
        if parts == 1 {
            "partition"
        } else {
            "partitions"
        },
    );
    if absent > 0 {
        let _ = write!(line, " ({absent} absent)");
    }
    let _ = write!(line, ", {} matched", thousands(t.totals.matched));
    for (kind, n) in kinds(&t.totals) {
        if n > 0 {
            let _ = write!(line, ", {} {}", thousands(n), kind.as_str());
        }
    }
    if t.state == State::Absent {
        line.push_str(", ABSENT");
    }
    if let Some(note) = &t.note {
        let _ = write!(line, " ({})", clean(note));
    }
    let _ = writeln!(out, "{line}");
}

fn sample_line(topic: &str, partition: i32, s: &Sample) -> String {
    let mut line = format!("{:<10} {}/{}", s.kind.as_str(), clean(topic), partition);
    if let Some(origin) = &s.origin {
        let at = s
            .origin_offset
            .map_or_else(|| "?".to_string(), |o| o.to_string());
        let _ = write!(line, "  origin {}@{}", clean(origin), at);
    } else if let Some(o) = s.origin_offset {
        let _ = write!(line, "  origin @{o}");
    }
    let _ = write!(
        line,
        "  source {}  target {}",
        offset(s.source_offset),
        offset(s.target_offset)
    );
    if let Some(held) = s.held_in_partition {
        let _ = write!(line, "  held in partition {held}");
    }
    if let Some(key) = &s.key {
        let _ = write!(line, "  key {}", clean(key));
    }
    if !s.detail.is_empty() {
        let _ = write!(line, ": {}", clean(&s.detail));
    }
    line
}

fn offset(o: Option<i64>) -> String {
    o.map_or_else(|| "-".to_string(), |o| o.to_string())
}

/// `PASS` or `FAIL`.
pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    }
}

/// The verdict with totals, e.g.
/// `FAIL: 3 discrepancies (1 missing, 1 extra, 1 altered) in 1,203 records compared`.
pub fn verdict_line(v: Verdict, totals: &Counts) -> String {
    format!("{}: {}", verdict_word(v), totals_phrase(totals))
}

/// Totals in words, e.g. `no discrepancies in 1,200 records compared`.
pub fn totals_phrase(totals: &Counts) -> String {
    let compared = totals.matched + totals.discrepancies();
    let records = if compared == 1 { "record" } else { "records" };
    format!(
        "{} in {} {records} compared",
        discrepancies_phrase(totals),
        thousands(compared)
    )
}

/// Discrepancies in words: `no discrepancies`, or
/// `3 discrepancies (1 missing, 1 extra, 1 altered)`.
pub fn discrepancies_phrase(totals: &Counts) -> String {
    let n = totals.discrepancies();
    if n == 0 {
        return "no discrepancies".to_string();
    }
    let parts: Vec<String> = kinds(totals)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{} {}", thousands(n), k.as_str()))
        .collect();
    let word = if n == 1 {
        "discrepancy"
    } else {
        "discrepancies"
    };
    format!("{} {word} ({})", thousands(n), parts.join(", "))
}

/// Each kind of discrepancy with its count, in the order of [`Kind`].
pub fn kinds(c: &Counts) -> [(Kind, u64); 7] {
    [
        (Kind::Missing, c.missing),
        (Kind::Extra, c.extra),
        (Kind::Altered, c.altered),
        (Kind::Duplicated, c.duplicated),
        (Kind::Reordered, c.reordered),
        (Kind::WrongPartition, c.wrong_partition),
        (Kind::MissingOnBoth, c.missing_on_both),
    ]
}

/// A number with thousands separators: `1,203`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).expect("digits are ASCII"))
        .collect();
    groups.join(",")
}

/// Control characters escaped (`\u{1b}`), everything else as it is.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::model::{
        GroupReport, PartitionReport, RunStats, SCHEMA, SideStats, SideSummary,
    };
    use crate::spec::Mode;

    fn group(counts: Counts) -> GroupReport {
        let source = counts.matched + counts.missing + counts.altered;
        GroupReport {
            origin: Some("a".to_string()),
            from: vec![0],
            replication_began: None,
            watermark: vec![i64::try_from(source).unwrap()],
            source: SideSummary {
                records: source,
                digest: "0".repeat(32),
                ..Default::default()
            },
            target: SideSummary {
                records: counts.matched + counts.extra + counts.altered,
                digest: "f".repeat(32),
                ..Default::default()
            },
            counts,
        }
    }

    fn partition(n: i32, state: State, counts: Counts, samples: Vec<Sample>) -> PartitionReport {
        PartitionReport {
            partition: n,
            state,
            counts,
            groups: vec![group(counts)],
            samples,
        }
    }

    fn topic(
        name: &str,
        mode: Mode,
        partitions: Vec<PartitionReport>,
        note: Option<&str>,
    ) -> TopicReport {
        let mut totals = Counts::default();
        for p in &partitions {
            totals.add(&p.counts);
        }
        let state = if partitions.iter().any(|p| p.state == State::Absent) {
            State::Absent
        } else if totals.discrepancies() > 0 {
            State::Discrepancy
        } else {
            State::Parity
        };
        TopicReport {
            topic: name.to_string(),
            mode,
            state,
            totals,
            partitions,
            note: note.map(str::to_string),
        }
    }

    fn report(source: &str, comparisons: Vec<(&str, Vec<TopicReport>)>) -> Report {
        let mut all = Counts::default();
        let comparisons: Vec<Comparison> = comparisons
            .into_iter()
            .map(|(target, topics)| {
                let mut totals = Counts::default();
                for t in &topics {
                    totals.add(&t.totals);
                }
                all.add(&totals);
                Comparison {
                    source: source.to_string(),
                    target: target.to_string(),
                    verdict: Verdict::of(&totals),
                    totals,
                    topics,
                }
            })
            .collect();
        Report {
            schema: SCHEMA.to_string(),
            verdict: Verdict::of(&all),
            source: source.to_string(),
            targets: comparisons.iter().map(|c| c.target.clone()).collect(),
            started_at: "2025-01-02T03:04:05Z".to_string(),
            finished_at: "2025-01-02T03:04:17Z".to_string(),
            totals: all,
            comparisons,
            run: RunStats {
                sides: vec![
                    SideStats {
                        cluster: source.to_string(),
                        records_read: 1201,
                        bytes_read: 99_000,
                    },
                    SideStats {
                        cluster: "b".to_string(),
                        records_read: 1202,
                        bytes_read: 99_100,
                    },
                ],
                seconds: 12.25,
            },
        }
    }

    fn sample(kind: Kind, source: Option<i64>, target: Option<i64>, detail: &str) -> Sample {
        Sample {
            kind,
            origin: Some("a".to_string()),
            origin_offset: source.or(target),
            source_offset: source,
            target_offset: target,
            held_in_partition: None,
            key: None,
            detail: detail.to_string(),
        }
    }

    /// Source `a`, target `b`: `orders` (identity, 3 partitions, all matching) and
    /// `events` (positional, 2 partitions, all matching): 1,200 records.
    pub(crate) fn pass_report() -> Report {
        let m = |n| Counts {
            matched: n,
            ..Default::default()
        };
        report(
            "a",
            vec![(
                "b",
                vec![
                    topic(
                        "orders",
                        Mode::Identity,
                        vec![
                            partition(0, State::Parity, m(400), vec![]),
                            partition(1, State::Parity, m(300), vec![]),
                            partition(2, State::Parity, m(300), vec![]),
                        ],
                        None,
                    ),
                    topic(
                        "events",
                        Mode::Positional,
                        vec![
                            partition(0, State::Parity, m(100), vec![]),
                            partition(1, State::Parity, m(100), vec![]),
                        ],
                        None,
                    ),
                ],
            )],
        )
    }

    /// Source `a`, target `b`: `orders` with one missing record in partition 0, one extra
    /// and one altered in partition 2; `<script>` absent on `b`; 1,203 records compared.
    pub(crate) fn fail_report() -> Report {
        let c = |matched, missing, extra, altered| Counts {
            matched,
            missing,
            extra,
            altered,
            ..Default::default()
        };
        report(
            "a",
            vec![(
                "b",
                vec![
                    topic(
                        "orders",
                        Mode::Identity,
                        vec![
                            partition(
                                0,
                                State::Discrepancy,
                                c(399, 1, 0, 0),
                                vec![sample(Kind::Missing, Some(17), None, "not on b")],
                            ),
                            partition(1, State::Parity, c(503, 0, 0, 0), vec![]),
                            partition(
                                2,
                                State::Discrepancy,
                                c(298, 0, 1, 1),
                                vec![
                                    sample(Kind::Extra, None, Some(40), "on b only"),
                                    sample(
                                        Kind::Altered,
                                        Some(41),
                                        Some(41),
                                        "value differs <b>&amp;</b>",
                                    ),
                                ],
                            ),
                        ],
                        None,
                    ),
                    topic(
                        "<script>",
                        Mode::Compacted,
                        vec![partition(0, State::Absent, c(0, 0, 0, 0), vec![])],
                        Some("topic absent on b"),
                    ),
                ],
            )],
        )
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1203), "1,203");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[test]
    fn a_passing_report_says_pass_first_and_last() {
        let s = summary(&pass_report());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "PASS  a -> b");
        assert_eq!(
            *lines.last().unwrap(),
            "PASS: no discrepancies in 1,200 records compared"
        );
        assert!(s.contains("a -> b: PASS"), "{s}");
        let orders = lines.iter().find(|l| l.contains("orders")).unwrap();
        assert!(
            orders.contains("identity")
                && orders.contains("3 partitions")
                && orders.contains("1,000 matched"),
            "{orders}"
        );
        let events = lines.iter().find(|l| l.contains("events")).unwrap();
        assert!(
            events.contains("positional") && events.contains("2 partitions"),
            "{events}"
        );
        assert!(!s.contains("missing") && !s.contains("samples"), "{s}");
        assert!(s.is_ascii());
    }

    #[test]
    fn a_failing_report_names_counts_and_samples() {
        let s = summary(&fail_report());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "FAIL  a -> b");
        assert_eq!(
            *lines.last().unwrap(),
            "FAIL: 3 discrepancies (1 missing, 1 extra, 1 altered) in 1,203 records compared"
        );
        let orders = lines
            .iter()
            .find(|l| l.trim_start().starts_with("orders"))
            .unwrap();
        assert!(
            orders.contains("1,200 matched, 1 missing, 1 extra, 1 altered"),
            "{orders}"
        );
        assert!(
            !orders.contains("duplicated") && !orders.contains("reordered"),
            "{orders}"
        );
        let script = lines
            .iter()
            .find(|l| l.trim_start().starts_with("<script>"))
            .unwrap();
        assert!(
            script.contains("compacted")
                && script.contains("(1 absent)")
                && script.contains("topic absent on b")
        );
        let missing = lines
            .iter()
            .find(|l| l.trim_start().starts_with("missing"))
            .unwrap();
        assert!(
            missing.contains("orders/0")
                && missing.contains("source 17")
                && missing.contains("target -"),
            "{missing}"
        );
        assert!(missing.ends_with(": not on b"), "{missing}");
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with("altered") && l.contains("orders/2"))
        );
        assert!(s.is_ascii());
    }

    #[test]
    fn at_most_ten_samples_per_comparison() {
        let mut r = fail_report();
        let p = &mut r.comparisons[0].topics[0].partitions[0];
        p.samples = (0..25)
            .map(|i| sample(Kind::Missing, Some(i), None, "gone"))
            .collect();
        let s = summary(&r);
        assert_eq!(
            s.lines()
                .filter(|l| l.trim_start().starts_with("missing "))
                .count(),
            SAMPLES_SHOWN
        );
        assert!(s.contains("... 17 more samples in the report"), "{s}");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut r = fail_report();
        r.comparisons[0].topics[0].partitions[0].samples[0].detail =
            "bad \u{1b}[31m red".to_string();
        let s = summary(&r);
        assert!(!s.contains('\u{1b}'));
        assert!(s.contains("bad \\u{1b}[31m red"), "{s}");
    }
}
