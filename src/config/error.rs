//! Config errors, each one line that names the key and the problem.
//!
//! The toml crate reports where a value went wrong as a byte span and prints a
//! multi-line snippet whose first line names no key. Operators grep logs for the key
//! they must fix, so the span is turned back into a key path (`clusters[1].options.x`)
//! by walking the parsed document.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

/// Why a config was refused. `Display` is one line naming the key and the problem.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The path given on the command line.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML.
    #[error("{}", SyntaxLine { key, line: *line, column: *column, message })]
    Syntax {
        /// Key path of the value being read, when the parser got that far.
        key: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// A key or value was refused: unknown key, wrong type, bad value, or a rule
    /// across keys (duplicates, unknown references, connectivity).
    #[error("{}", KeyProblem { key, problem, line: *line })]
    Invalid {
        /// Key path as written in TOML, e.g. `links[0].topics.include[1]`.
        key: String,
        /// What is wrong with it, and when useful what would be right.
        problem: String,
        /// 1-based line of the value, when the problem was found while reading the file.
        line: Option<usize>,
    },
}

impl ConfigError {
    /// An error found by `validate()`, after parsing: named by key path only.
    pub(super) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
            line: None,
        }
    }

    /// The key path the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } | ConfigError::Syntax { key, .. }
                if !key.is_empty() =>
            {
                Some(key)
            }
            _ => None,
        }
    }

    /// Converts a toml/serde error, naming the key its span points at.
    pub(super) fn from_toml(text: &str, err: &toml::de::Error) -> ConfigError {
        let message = one_line(err.message());
        let span = err.span();
        let line_col = |s: &Range<usize>| line_column(text, s.start);
        match DeTable::parse(text) {
            // Not TOML. The parser's recovered document still often holds the key
            // whose value is broken (an unquoted string, a bad escape), so name it.
            Err(syntax) => {
                let at = syntax.span().or(span).unwrap_or(0..0);
                let (line, column) = line_col(&at);
                let (doc, _) = DeTable::parse_recoverable(text);
                let key = key_at(doc.get_ref(), at.start);
                let mut message = one_line(syntax.message());
                // The span of a duplicate key is the key as written: safe to echo, unlike
                // a value, which may be a secret.
                if message == "duplicate key" {
                    if let Some(k) = text.get(at.clone()).filter(|k| !k.is_empty()) {
                        message = format!("duplicate key `{k}`");
                    }
                }
                ConfigError::Syntax {
                    key,
                    line,
                    column,
                    message,
                }
            }
            Ok(doc) => {
                let key = span
                    .as_ref()
                    .map(|s| key_at(doc.get_ref(), s.start))
                    .unwrap_or_default();
                ConfigError::Invalid {
                    key,
                    problem: message,
                    line: span.map(|s| line_col(&s).0),
                }
            }
        }
    }
}

/// Formats the `Syntax` variant: `key: invalid TOML: problem (line n, column m)`.
struct SyntaxLine<'a> {
    key: &'a str,
    line: usize,
    column: usize,
    message: &'a str,
}

impl fmt::Display for SyntaxLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SyntaxLine {
            key,
            line,
            column,
            message,
        } = self;
        if key.is_empty() {
            write!(f, "invalid TOML at line {line}, column {column}: {message}")
        } else {
            write!(
                f,
                "{key}: invalid TOML: {message} (line {line}, column {column})"
            )
        }
    }
}

/// Formats the `Invalid` variant: `key: problem (line n)`.
struct KeyProblem<'a> {
    key: &'a str,
    problem: &'a str,
    line: Option<usize>,
}

impl fmt::Display for KeyProblem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(self.problem)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// 1-based line and column (in characters) of byte offset `pos`.
fn line_column(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = text.get(..pos).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The deepest key path whose key or value span contains `pos`. Every node is visited:
/// a table opened by a `[header]` does not span the keys under it, so pruning by
/// span would miss them.
fn key_at(doc: &DeTable<'_>, pos: usize) -> String {
    let mut best = (0, String::new());
    walk_table(doc, pos, "", 0, &mut best);
    best.1
}

fn covers(span: &Range<usize>, pos: usize) -> bool {
    span.start <= pos && pos < span.end.max(span.start + 1)
}

fn consider(best: &mut (usize, String), depth: usize, path: &str) {
    if depth > best.0 {
        *best = (depth, path.to_owned());
    }
}

fn walk_table(
    table: &DeTable<'_>,
    pos: usize,
    prefix: &str,
    depth: usize,
    best: &mut (usize, String),
) {
    for (k, v) in table.iter() {
        let path = join_key(prefix, k.get_ref());
        if covers(&k.span(), pos) {
            consider(best, depth + 1, &path);
        }
        walk_value(v.get_ref(), &v.span(), pos, &path, depth + 1, best);
    }
}

fn walk_value(
    value: &DeValue<'_>,
    span: &Range<usize>,
    pos: usize,
    path: &str,
    depth: usize,
    best: &mut (usize, String),
) {
    if covers(span, pos) {
        consider(best, depth, path);
    }
    match value {
        DeValue::Table(t) => walk_table(t, pos, path, depth, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(
                    item.get_ref(),
                    &item.span(),
                    pos,
                    &format!("{path}[{i}]"),
                    depth + 1,
                    best,
                );
            }
        }
        _ => {}
    }
}

/// Appends a key to a dotted path, quoting it as TOML would when it is not bare
/// (`options."sasl.password"`), so the path can be pasted back into a search.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_map_back_to_key_paths() {
        let text = "[[a]]\nx = 1\n[[a]]\nx = 2\n[a.opts]\n\"k.v\" = [1, 2]\n";
        let doc = DeTable::parse(text).unwrap();
        let at = |needle: &str| key_at(doc.get_ref(), text.find(needle).unwrap());
        assert_eq!(at("x = 2"), "a[1].x");
        assert_eq!(at("2\n["), "a[1].x");
        assert_eq!(at("\"k.v\""), "a[1].opts.\"k.v\"");
        assert_eq!(at("2]"), "a[1].opts.\"k.v\"[1]");
    }

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn invalid_displays_key_problem_and_line() {
        let e = ConfigError::Invalid {
            key: "limits.x".into(),
            problem: "bad".into(),
            line: Some(3),
        };
        assert_eq!(e.to_string(), "limits.x: bad (line 3)");
        assert_eq!(
            ConfigError::invalid("links", "none").to_string(),
            "links: none"
        );
    }

    #[test]
    fn syntax_errors_name_the_key_when_the_parser_recovers_it() {
        let text = "[[c]]\nid = \"a\"\n[c.opts]\n\"sasl.password\" = hunter2\n";
        let e = crate::config::Config::parse(text).unwrap_err().to_string();
        let want = "c[0].opts.\"sasl.password\": invalid TOML: string values must be quoted, expected literal string (line 4, column 19)";
        assert_eq!(e, want);
        let e = crate::config::Config::parse("[a]\nx = 1\nx = 2\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "invalid TOML at line 3, column 1: duplicate key `x`");
    }
}
