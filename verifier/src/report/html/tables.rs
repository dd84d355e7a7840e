//! The tables under the grid: counts per group, discrepancy samples, run statistics.

use std::fmt::Write as _;

use super::esc;
use super::grid::state_word;
use crate::report::model::{
    Comparison, Counts, GroupReport, PartitionReport, Report, Sample, TopicReport,
};
use crate::report::text::{discrepancies_phrase, kinds, thousands};

pub(super) fn counts_table(h: &mut String, c: &Comparison, id: &str) {
    let _ = writeln!(
        h,
        "<section>\n<h3>{} vs {}</h3>\n<div class=\"scroll\">\n<table class=\"counts\" id=\"{id}\">\n<thead>\n\
         <tr><th rowspan=\"2\">Topic</th><th rowspan=\"2\">Partition</th><th rowspan=\"2\">Origin</th>\
         <th rowspan=\"2\">From</th><th rowspan=\"2\">Watermark</th>\
         <th colspan=\"4\">Source {}</th><th colspan=\"4\">Target {}</th><th colspan=\"8\">Outcome</th></tr>\n\
         <tr><th>Records</th><th>Digest</th><th>Out of scope</th><th>Beyond watermark</th>\
         <th>Records</th><th>Digest</th><th>Out of scope</th><th>Beyond watermark</th>\
         <th>Matched</th><th>Missing</th><th>Extra</th><th>Altered</th><th>Duplicated</th><th>Reordered</th>\
         <th>Wrong partition</th><th>Missing on both</th></tr>\n\
         </thead>\n<tbody>",
        esc(&c.source),
        esc(&c.target),
        esc(&c.source),
        esc(&c.target),
    );
    for t in &c.topics {
        if t.partitions.is_empty() {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td colspan=\"20\">{}{}</td></tr>",
                esc(&t.topic),
                state_word(t.state),
                t.note
                    .as_ref()
                    .map(|n| format!(": {}", esc(n)))
                    .unwrap_or_default(),
            );
        }
        for p in &t.partitions {
            if p.groups.is_empty() {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td colspan=\"11\">{}{}</td>",
                    esc(&t.topic),
                    p.partition,
                    state_word(p.state),
                    t.note
                        .as_ref()
                        .map(|n| format!(": {}", esc(n)))
                        .unwrap_or_default(),
                );
                outcome(h, &p.counts);
                h.push_str("</tr>\n");
            }
            for g in &p.groups {
                group_row(h, t, p, g);
            }
        }
    }
    h.push_str("</tbody>\n</table>\n</div>\n</section>\n");
}

fn group_row(h: &mut String, t: &TopicReport, p: &PartitionReport, g: &GroupReport) {
    let differs = if g.source.digest == g.target.digest {
        ""
    } else {
        " differs"
    };
    let _ = write!(
        h,
        "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\" title=\"{}\">{}</td>\
         <td class=\"num\" title=\"{}\">{}</td>",
        esc(&t.topic),
        p.partition,
        g.origin.as_deref().map(esc).unwrap_or_default(),
        from_hint(g),
        from_cell(g),
        from_hint(g),
        offsets(&g.watermark),
    );
    for (side, class) in [(&g.source, ""), (&g.target, differs)] {
        let _ = write!(
            h,
            "<td class=\"num\">{}</td><td class=\"digest{class}\"><code>{}</code></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td>",
            thousands(side.records),
            esc(&side.digest),
            thousands(side.out_of_scope),
            thousands(side.beyond_watermark),
        );
    }
    outcome(h, &g.counts);
    h.push_str("</tr>\n");
}

/// Where the scope starts, saying so when it is where Duplex began replicating.
fn from_cell(g: &GroupReport) -> String {
    match g.replication_began {
        Some(b) if g.from == [b] => format!("{b}<br><small>replication began</small>"),
        _ => offsets(&g.from),
    }
}

/// Offsets joined: `5`, or `5 / 7` for source and target.
fn offsets(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(" / ")
}

fn from_hint(g: &GroupReport) -> &'static str {
    if g.origin.is_some() {
        "origin offsets"
    } else {
        "source / target offsets"
    }
}

fn outcome(h: &mut String, c: &Counts) {
    let _ = write!(h, "<td class=\"num\">{}</td>", thousands(c.matched));
    for (_, n) in kinds(c) {
        let class = if n > 0 { "num differs" } else { "num" };
        let _ = write!(h, "<td class=\"{class}\">{}</td>", thousands(n));
    }
}

pub(super) fn samples(h: &mut String, r: &Report) {
    let all: Vec<(&Comparison, &TopicReport, i32, &Sample)> = r
        .comparisons
        .iter()
        .flat_map(|c| {
            c.topics.iter().flat_map(move |t| {
                t.partitions
                    .iter()
                    .flat_map(move |p| p.samples.iter().map(move |s| (c, t, p.partition, s)))
            })
        })
        .collect();
    h.push_str("<section>\n<h2>Discrepancies</h2>\n");
    let total = r.totals.discrepancies();
    if total == 0 {
        h.push_str("<p>None: every compared record matches.</p>\n");
    } else {
        let _ = writeln!(
            h,
            "<p>{}. {} of them named below (the report keeps a few per partition; the counts above are complete).</p>",
            esc(&discrepancies_phrase(&r.totals)),
            thousands(all.len() as u64),
        );
    }
    h.push_str(
        "<div class=\"scroll\">\n<table id=\"samples\">\n<thead><tr><th>Target</th><th>Topic</th>\
         <th class=\"num\">Partition</th><th>Kind</th><th>Origin</th><th class=\"num\">Origin offset</th>\
         <th class=\"num\">Source offset</th><th class=\"num\">Target offset</th><th>Key</th><th>Detail</th></tr></thead>\n<tbody>\n",
    );
    for (c, t, p, s) in &all {
        let num = |o: Option<i64>| o.map(|o| o.to_string()).unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr class=\"sample {kind}\"><td>{}</td><td>{}</td><td class=\"num\">{p}</td><td>{kind}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&c.target),
            esc(&t.topic),
            s.origin.as_deref().map(esc).unwrap_or_default(),
            num(s.origin_offset),
            num(s.source_offset),
            num(s.target_offset),
            s.key.as_deref().map(esc).unwrap_or_default(),
            esc(&s.detail),
            kind = s.kind.as_str(),
        );
    }
    h.push_str("</tbody>\n</table>\n</div>\n</section>\n");
}

pub(super) fn run_stats(h: &mut String, r: &Report) {
    let _ = writeln!(
        h,
        "<section>\n<h2>This run</h2>\n<p>Started {}, finished {}: {:.1} s.</p>\n\
         <table id=\"run\">\n<thead><tr><th>Cluster</th><th class=\"num\">Records read</th>\
         <th class=\"num\">Bytes read</th></tr></thead>\n<tbody>",
        esc(&r.started_at),
        esc(&r.finished_at),
        r.run.seconds,
    );
    for s in &r.run.sides {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&s.cluster),
            thousands(s.records_read),
            thousands(s.bytes_read),
        );
    }
    h.push_str(
        "</tbody>\n</table>\n<p class=\"hint\">A resumed run reads only what its store lacked; \
         the comparison covers everything below the watermarks.</p>\n</section>\n",
    );
}
