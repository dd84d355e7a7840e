//! The topic x partition grid of a comparison, coloured by state, and its legend.

use std::fmt::Write as _;

use super::{capitalized, esc};
use crate::report::model::{Comparison, Counts, PartitionReport, State, TopicReport, Verdict};
use crate::report::text::{discrepancies_phrase, thousands, totals_phrase, verdict_word};

pub(super) fn grid(h: &mut String, c: &Comparison, id: &str) {
    let class = match c.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
    };
    let _ = writeln!(
        h,
        "<section>\n<h2>{} vs {}: <span class=\"{class}\">{}</span></h2>\n<p>{}.</p>",
        esc(&c.source),
        esc(&c.target),
        verdict_word(c.verdict),
        esc(&capitalized(&totals_phrase(&c.totals))),
    );
    if c.topics.is_empty() {
        h.push_str("<p>No topics were compared.</p>\n");
    }
    let max = c
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.partition))
        .max();
    let columns: Vec<i32> = max.map_or_else(Vec::new, |m| (0..=m.max(0)).collect());
    let _ = write!(
        h,
        "<div class=\"scroll\">\n<table class=\"grid\" id=\"{id}\">\n<thead><tr><th>Topic \\ partition</th>"
    );
    if columns.is_empty() {
        h.push_str("<th>Partitions</th>");
    }
    for p in &columns {
        let _ = write!(h, "<th class=\"num\">{p}</th>");
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for t in &c.topics {
        let _ = write!(
            h,
            "<tr><th scope=\"row\">{}<span class=\"mode\">{}</span>",
            esc(&t.topic),
            t.mode.as_str()
        );
        if let Some(note) = &t.note {
            let _ = write!(h, "<span class=\"note\">{}</span>", esc(note));
        }
        h.push_str("</th>");
        if t.partitions.is_empty() {
            // A topic without partitions: one cell across the row says what it is.
            let _ = write!(
                h,
                "<td class=\"cell {s}\" data-state=\"{s}\" colspan=\"{}\" title=\"{}\">{}</td>",
                columns.len().max(1),
                esc(&format!(
                    "{}: {}, no partitions",
                    t.topic,
                    state_word(t.state)
                )),
                cell_text(t.state, &t.totals),
                s = state_class(t.state),
            );
        } else {
            for col in &columns {
                match t.partitions.iter().find(|p| p.partition == *col) {
                    Some(p) => cell(h, t, p),
                    None => {
                        let _ = write!(
                            h,
                            "<td class=\"cell none\" data-state=\"none\" title=\"{}\"></td>",
                            esc(&format!("{}: no partition {col}", t.topic))
                        );
                    }
                }
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n</div>\n</section>\n");
}

fn cell(h: &mut String, t: &TopicReport, p: &PartitionReport) {
    let title = format!(
        "{} partition {}: {}; {} matched, {}",
        t.topic,
        p.partition,
        state_word(p.state),
        thousands(p.counts.matched),
        discrepancies_phrase(&p.counts),
    );
    let _ = write!(
        h,
        "<td class=\"cell {s}\" data-state=\"{s}\" title=\"{}\">{}</td>",
        esc(&title),
        cell_text(p.state, &p.counts),
        s = state_class(p.state),
    );
}

/// What a grid cell says without colour: `=`, the number of discrepancies, or `absent`.
fn cell_text(state: State, counts: &Counts) -> String {
    match state {
        State::Parity => "=".to_string(),
        State::Discrepancy => thousands(counts.discrepancies()),
        State::Absent => "absent".to_string(),
    }
}

fn state_class(state: State) -> &'static str {
    match state {
        State::Parity => "parity",
        State::Discrepancy => "discrepancy",
        State::Absent => "absent",
    }
}

pub(super) fn state_word(state: State) -> &'static str {
    match state {
        State::Parity => "parity",
        State::Discrepancy => "DISCREPANCY",
        State::Absent => "ABSENT on one side",
    }
}

pub(super) fn legend(h: &mut String) {
    h.push_str(
        "<section>\n<h2>Legend</h2>\n<ul class=\"legend\">\n\
         <li><span class=\"swatch parity\">=</span>Parity: every compared record is on both sides, once, unaltered, in order.</li>\n\
         <li><span class=\"swatch discrepancy\">3</span>Discrepancy: the number is how many records are missing, extra, \
         altered, duplicated, reordered, in the wrong partition or missing on both sides. Hover for the breakdown; the samples below name them.</li>\n\
         <li><span class=\"swatch absent\">absent</span>Absent: the topic or partition exists on one side only.</li>\n\
         <li><span class=\"swatch none\">&nbsp;</span>No such partition in this topic.</li>\n\
         </ul>\n</section>\n",
    );
}
