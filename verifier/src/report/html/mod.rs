//! The HTML page of a report: one self-contained file (inline CSS, no script, nothing
//! fetched) that a person can open at 3 a.m. and read from the top: the verdict, a grid
//! of topics and partitions per target, the counts behind it, the named discrepancies.
//!
//! `grid` draws the topic x partition grids and the legend; `tables` the counts, the
//! samples and the run statistics.
//!
//! Everything that comes from users or clusters (cluster ids, topic names, keys,
//! details) is HTML-escaped. Colours always come with words or numbers, so the page reads
//! the same without them.

use std::collections::HashSet;
use std::fmt::Write as _;

mod grid;
mod tables;

use self::grid::{grid, legend};
use self::tables::{counts_table, run_stats, samples};
use super::model::{Report, Verdict};
use super::text::{totals_phrase, verdict_word};

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
tr.sample.duplicated td:nth-child(4), tr.sample.reordered td:nth-child(4),
tr.sample.wrong_partition td:nth-child(4), tr.sample.missing_on_both td:nth-child(4) { font-weight: 700; color: #b71c1c; }
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
