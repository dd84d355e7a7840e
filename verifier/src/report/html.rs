//! The HTML page of a report: one self-contained file (inline CSS, no script, nothing
//! fetched) that a person can open at 3 a.m. and read from the top: the verdict, a grid
//! of topics and partitions per target, the counts behind it, the named discrepancies.
//!
//! Everything that comes from users or clusters (cluster ids, topic names, keys,
//! details) is HTML-escaped. Colours always come with words or numbers, so the page reads
//! the same without them.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::model::{
    Comparison, Counts, GroupReport, PartitionReport, Report, Sample, State, TopicReport, Verdict,
};
use super::text::{discrepancies_phrase, kinds, thousands, totals_phrase, verdict_word};

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1a1a1a; background: #fff; }
main { padding: 0 1.5rem 2rem; }
header.banner { padding: 1.2rem 1.5rem; color: #fff; }
header.banner.pass { background: #1b5e20; }
header.banner.fail { background: #b71c1c; }
#verdict { font-size: 4rem; font-weight: 800; letter-spacing: 0.05em; line-height: 1; }
header.banner p { font-size: 1.2rem; margin: 0.6rem 0 0; }
h2 { margin-top: 2rem; border-bottom: 2px solid #ccc; padding-bottom: 0.2rem; }
h2 .pass { color: #1b5e20; }
h2 .fail { color: #b71c1c; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #bbb; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
thead th { background: #f0f0f0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.85em; }
.mode, .note { font-weight: normal; font-size: 0.85em; color: #555; display: block; }
table.grid td.cell { min-width: 2.5rem; text-align: center; font-weight: 700; }
.cell.parity, .swatch.parity { background: #a5d6a7; color: #0b3d0e; }
.cell.discrepancy, .swatch.discrepancy { background: #e53935; color: #fff; }
.cell.absent, .swatch.absent { background: #9e9e9e; color: #fff; }
.cell.none, .swatch.none { background: #eeeeee; }
ul.legend { list-style: none; padding: 0; }
ul.legend li { margin: 0.3rem 0; }
ul.legend span.swatch { display: inline-block; min-width: 3.5rem; text-align: center; font-weight: 700; padding: 0.1rem 0.3rem; margin-right: 0.5rem; border: 1px solid #bbb; }
td.differs { background: #ffcdd2; }
tr.sample.missing td:nth-child(4), tr.sample.extra td:nth-child(4), tr.sample.altered td:nth-child(4),
tr.sample.duplicated td:nth-child(4), tr.sample.reordered td:nth-child(4) { font-weight: 700; color: #b71c1c; }
p.hint { color: #555; }
"#;

/// The report as one self-contained HTML5 page.
pub fn render(report: &Report) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let word = verdict_word(report.verdict);
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Duplex parity: {word} ({} vs {})</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        esc(&report.source),
        esc(&report.targets.join(", ")),
    );
    banner(&mut h, report);
    h.push_str("<main>\n");
    let mut ids = HashSet::new();
    for c in &report.comparisons {
        let id = unique_id(&mut ids, &format!("grid-{}", sanitize_id(&c.target)));
        grid(&mut h, c, &id);
    }
    legend(&mut h);
    h.push_str(
        "<h2>Counts</h2>\n<p class=\"hint\">Per partition and, in identity mode, per origin cluster. \
                Offsets below <em>from</em> are out of scope; offsets at or above the <em>watermark</em> \
                were not compared in this run. Equal digests mean equal records.</p>\n",
    );
    for c in &report.comparisons {
        let id = unique_id(&mut ids, &format!("counts-{}", sanitize_id(&c.target)));
        counts_table(&mut h, c, &id);
    }
    samples(&mut h, report);
    run_stats(&mut h, report);
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

fn banner(h: &mut String, r: &Report) {
    let class = match r.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
    };
    let targets = if r.targets.is_empty() {
        "no target".to_string()
    } else {
        r.targets.join(", ")
    };
    let _ = writeln!(
        h,
        "<header class=\"banner {class}\">\n<div id=\"verdict\">{}</div>\n\
         <p id=\"summary\">Source {} compared with {}: {}. Finished {} after {:.1} s.</p>\n</header>",
        verdict_word(r.verdict),
        esc(&r.source),
        esc(&targets),
        esc(&totals_phrase(&r.totals)),
        esc(&r.finished_at),
        r.run.seconds,
    );
}

fn grid(h: &mut String, c: &Comparison, id: &str) {
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

fn state_word(state: State) -> &'static str {
    match state {
        State::Parity => "parity",
        State::Discrepancy => "DISCREPANCY",
        State::Absent => "ABSENT on one side",
    }
}

fn legend(h: &mut String) {
    h.push_str(
        "<section>\n<h2>Legend</h2>\n<ul class=\"legend\">\n\
         <li><span class=\"swatch parity\">=</span>Parity: every compared record is on both sides, once, unaltered, in order.</li>\n\
         <li><span class=\"swatch discrepancy\">3</span>Discrepancy: the number is how many records are missing, extra, \
         altered, duplicated or reordered. Hover for the breakdown; the samples below name them.</li>\n\
         <li><span class=\"swatch absent\">absent</span>Absent: the topic or partition exists on one side only.</li>\n\
         <li><span class=\"swatch none\">&nbsp;</span>No such partition in this topic.</li>\n\
         </ul>\n</section>\n",
    );
}

fn counts_table(h: &mut String, c: &Comparison, id: &str) {
    let _ = writeln!(
        h,
        "<section>\n<h3>{} vs {}</h3>\n<div class=\"scroll\">\n<table class=\"counts\" id=\"{id}\">\n<thead>\n\
         <tr><th rowspan=\"2\">Topic</th><th rowspan=\"2\">Partition</th><th rowspan=\"2\">Origin</th>\
         <th rowspan=\"2\">From</th><th rowspan=\"2\">Watermark</th>\
         <th colspan=\"4\">Source {}</th><th colspan=\"4\">Target {}</th><th colspan=\"6\">Outcome</th></tr>\n\
         <tr><th>Records</th><th>Digest</th><th>Out of scope</th><th>Beyond watermark</th>\
         <th>Records</th><th>Digest</th><th>Out of scope</th><th>Beyond watermark</th>\
         <th>Matched</th><th>Missing</th><th>Extra</th><th>Altered</th><th>Duplicated</th><th>Reordered</th></tr>\n\
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
                "<tr><td>{}</td><td colspan=\"18\">{}{}</td></tr>",
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
        offsets(&g.from),
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

fn samples(h: &mut String, r: &Report) {
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

fn run_stats(h: &mut String, r: &Report) {
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

/// The first letter in upper case, to open a sentence.
fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Text escaped for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An element id made of `[A-Za-z0-9_-]` only: anything else becomes `_`.
pub fn sanitize_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `id`, or `id-2`, `id-3`... when ids sanitized from different names collide.
fn unique_id(seen: &mut HashSet<String>, id: &str) -> String {
    let mut candidate = id.to_string();
    let mut n = 2;
    while !seen.insert(candidate.clone()) {
        candidate = format!("{id}-{n}");
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::text::tests::{fail_report, pass_report};

    /// The element whose opening tag contains `marker`, up to its closing tag (no nesting).
    fn element<'a>(html: &'a str, marker: &str, tag: &str) -> &'a str {
        let at = html
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} not in page"));
        let start = html[..at].rfind(&format!("<{tag}")).unwrap();
        let end = at + html[at..].find(&format!("</{tag}>")).unwrap() + tag.len() + 3;
        &html[start..end]
    }

    fn text_of(el: &str) -> &str {
        let open = el.find('>').unwrap() + 1;
        let close = el.rfind("</").unwrap();
        &el[open..close]
    }

    /// Grid rows: (row header, cells as (class, text)).
    fn grid_rows(html: &str, id: &str) -> Vec<(String, Vec<(String, String)>)> {
        let table = element(html, &format!("id=\"{id}\""), "table");
        let body = &table[table.find("<tbody>").unwrap()..];
        body.split("<tr>")
            .skip(1)
            .map(|row| {
                let header = text_of(element(row, "scope=\"row\"", "th")).to_string();
                let cells = row
                    .split("<td ")
                    .skip(1)
                    .map(|td| {
                        let class = td
                            .split("class=\"")
                            .nth(1)
                            .unwrap()
                            .split('"')
                            .next()
                            .unwrap()
                            .to_string();
                        let text =
                            td[td.find('>').unwrap() + 1..td.find("</td>").unwrap()].to_string();
                        (class, text)
                    })
                    .collect();
                (header, cells)
            })
            .collect()
    }

    #[test]
    fn a_passing_report_shows_pass_and_green_cells() {
        let html = render(&pass_report());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(text_of(element(&html, "id=\"verdict\"", "div")), "PASS");
        assert!(html.contains("class=\"banner pass\""));
        let summary = text_of(element(&html, "id=\"summary\"", "p"));
        assert!(summary.contains("Source a compared with b"), "{summary}");
        assert!(
            summary.contains("no discrepancies in 1,200 records compared"),
            "{summary}"
        );
        let rows = grid_rows(&html, "grid-b");
        assert_eq!(rows.len(), 2);
        assert!(rows[0].0.starts_with("orders") && rows[0].0.contains("identity"));
        assert_eq!(
            rows[0].1,
            vec![("cell parity".to_string(), "=".to_string()); 3]
        );
        // `events` has two partitions; the grid has three columns.
        assert_eq!(
            rows[1].1[..2],
            vec![("cell parity".to_string(), "=".to_string()); 2]
        );
        assert_eq!(rows[1].1[2], ("cell none".to_string(), String::new()));
        assert!(html.contains("<tbody>\n</tbody>"), "no samples expected");
        assert!(!html.contains("class=\"sample "));
    }

    #[test]
    fn a_failing_report_shows_fail_counts_and_samples() {
        let html = render(&fail_report());
        assert_eq!(text_of(element(&html, "id=\"verdict\"", "div")), "FAIL");
        assert!(html.contains("class=\"banner fail\""));
        let summary = text_of(element(&html, "id=\"summary\"", "p"));
        assert!(
            summary.contains(
                "3 discrepancies (1 missing, 1 extra, 1 altered) in 1,203 records compared"
            ),
            "{summary}"
        );
        // Tests count cells by class: the legend must not add to the count.
        assert_eq!(html.matches("cell discrepancy").count(), 2);
        assert_eq!(html.matches("cell parity").count(), 1);
        assert_eq!(html.matches("cell absent").count(), 1);
        let rows = grid_rows(&html, "grid-b");
        let cells: Vec<(&str, &str)> = rows[0]
            .1
            .iter()
            .map(|(c, t)| (c.as_str(), t.as_str()))
            .collect();
        assert_eq!(
            cells,
            [
                ("cell discrepancy", "1"),
                ("cell parity", "="),
                ("cell discrepancy", "2")
            ]
        );
        let cells: Vec<(&str, &str)> = rows[1]
            .1
            .iter()
            .map(|(c, t)| (c.as_str(), t.as_str()))
            .collect();
        assert_eq!(
            cells,
            [
                ("cell absent", "absent"),
                ("cell none", ""),
                ("cell none", "")
            ]
        );
        let p2 = element(&html, "title=\"orders partition 2", "td");
        assert!(p2.contains("data-state=\"discrepancy\""), "{p2}");
        assert!(
            p2.contains("298 matched, 2 discrepancies (1 extra, 1 altered)"),
            "{p2}"
        );
        // Samples: three rows, in partition order, each with its kind as a class.
        let samples = element(&html, "id=\"samples\"", "table");
        let kinds: Vec<&str> = samples
            .split("<tr class=\"sample ")
            .skip(1)
            .map(|r| r.split('"').next().unwrap())
            .collect();
        assert_eq!(kinds, ["missing", "extra", "altered"]);
        assert!(samples.contains("<td>not on b</td>"));
        assert!(
            samples.contains("value differs &lt;b&gt;&amp;amp;&lt;/b&gt;"),
            "{samples}"
        );
        // Counts: the group rows carry the digests and flag that they differ.
        let counts = element(&html, "id=\"counts-b\"", "table");
        assert!(counts.contains(&"0".repeat(32)) && counts.contains("digest differs"));
        assert!(html.contains("<td class=\"num\">1,202</td>"), "run stats");
    }

    #[test]
    fn user_text_is_escaped() {
        let mut r = fail_report();
        r.targets = vec!["b\"><x".to_string()];
        r.comparisons[0].target = "b\"><x".to_string();
        r.comparisons[0].topics[0].partitions[0].samples[0].key = Some("<k>&'".to_string());
        let html = render(&r);
        assert!(
            !html.contains("<script>"),
            "a topic named <script> must be escaped"
        );
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<x") && !html.contains("<k>"));
        assert!(html.contains("&lt;k&gt;&amp;&#39;"));
        assert!(html.contains("id=\"grid-b___x\""));
    }

    #[test]
    fn the_page_is_self_contained() {
        let html = render(&fail_report());
        for needle in [
            "<script", "<link", "src=", "href=", "http://", "https://", "@import", "url(",
        ] {
            assert!(!html.contains(needle), "{needle} in page");
        }
    }

    #[test]
    fn ids_are_sanitized_and_unique() {
        assert_eq!(sanitize_id("dc-1.east/éü"), "dc-1_east___");
        let mut seen = HashSet::new();
        assert_eq!(unique_id(&mut seen, "grid-a_b"), "grid-a_b");
        assert_eq!(unique_id(&mut seen, "grid-a_b"), "grid-a_b-2");
        assert_eq!(unique_id(&mut seen, "grid-a_b"), "grid-a_b-3");
    }
}
