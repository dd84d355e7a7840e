//! Typed config values that parse themselves while the TOML is read: sizes, durations,
//! topic patterns, socket addresses and librdkafka option values.
//!
//! Each one checks its input inside a serde visitor, so that a bad value fails with the
//! TOML span of that very value and [`super::error`] can name its key path, array index
//! included. Messages never repeat an option value: it may be a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A number of bytes: a TOML integer, or a string such as `"512KiB"`, `"64MiB"`, `"10MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

/// Units accepted after the number, matched case-insensitively (`kib` = `KiB`).
const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

impl ByteSize {
    /// Parses `"64MiB"`, `"10 MB"`, `"4096"`. Zero is refused: every size in the
    /// config is a limit, and a zero limit would stall the flow it applies to.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let bad = |why: &str| format!("invalid size {text:?}: {why}");
        let t = text.trim();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        if digits == 0 {
            return Err(bad(
                "expected a whole number of bytes with an optional unit, e.g. \"64MiB\"",
            ));
        }
        let number: u64 = t[..digits].parse().map_err(|_| bad("number too large"))?;
        let unit = t[digits..].trim_start();
        let factor = if unit.is_empty() {
            1
        } else {
            SIZE_UNITS
                .iter()
                .find(|(u, _)| u.eq_ignore_ascii_case(unit))
                .map(|&(_, f)| f)
                .ok_or_else(|| {
                    bad(&format!(
                        "unknown unit {unit:?} (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)"
                    ))
                })?
        };
        let bytes = number
            .checked_mul(factor)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| bad("too large"))?;
        Self::nonzero(bytes).map_err(|why| bad(&why))
    }

    fn nonzero(bytes: usize) -> Result<ByteSize, String> {
        if bytes == 0 {
            Err("must be greater than zero".into())
        } else {
            Ok(ByteSize(bytes))
        }
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly, binary units first: `64MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: &[(&str, u64)] = &[
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
            ("TB", 1_000_000_000_000),
            ("GB", 1_000_000_000),
            ("MB", 1_000_000),
            ("kB", 1_000),
        ];
        let n = self.0 as u64;
        match SHOWN.iter().find(|&&(_, unit)| n >= unit && n % unit == 0) {
            Some((name, unit)) => write!(f, "{}{name}", n / unit),
            None => write!(f, "{n}B"),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes as an integer, or a string such as \"64MiB\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                ByteSize::parse(s).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                let bytes = usize::try_from(n).map_err(|_| {
                    E::custom(format!("invalid size {n}: must be greater than zero"))
                })?;
                ByteSize::nonzero(bytes)
                    .map_err(|why| E::custom(format!("invalid size {n}: {why}")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                let bytes = usize::try_from(n)
                    .map_err(|_| E::custom(format!("invalid size {n}: too large")))?;
                ByteSize::nonzero(bytes)
                    .map_err(|why| E::custom(format!("invalid size {n}: {why}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A positive duration in humantime form: `"250ms"`, `"5s"`, `"1m 30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses a humantime duration. Zero is refused: every duration in the config is
    /// an interval or a timeout, and zero would mean a busy loop or instant failure.
    pub fn parse(text: &str) -> Result<HumanDuration, String> {
        let bad = |why: &dyn fmt::Display| format!("invalid duration {text:?}: {why}");
        let d = humantime::parse_duration(text.trim()).map_err(|e| bad(&e))?;
        if d.is_zero() {
            return Err(bad(&"must be greater than zero"));
        }
        Ok(HumanDuration(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // A bare number is refused: "5" could be seconds or milliseconds.
                f.write_str("a duration string with a unit, such as \"5s\" or \"250ms\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                HumanDuration::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A topic regex as written, and its compiled form anchored to the whole topic name.
#[derive(Debug, Clone)]
pub struct TopicPattern {
    source: String,
    anchored: Regex,
}

impl TopicPattern {
    /// Compiles `source` so that it must match the whole name: `orders` does not select
    /// `orders-dlq`. The user's text is compiled alone first, so that error positions
    /// point into what they wrote, not into our anchors.
    pub fn new(source: &str) -> Result<TopicPattern, String> {
        let bad = |e: regex::Error| {
            format!(
                "invalid regular expression {source:?}: {}",
                one_line_regex_error(&e)
            )
        };
        Regex::new(source).map_err(bad)?;
        let anchored = Regex::new(&format!("^(?:{source})$")).map_err(bad)?;
        Ok(TopicPattern {
            source: source.to_owned(),
            anchored,
        })
    }

    /// The pattern as written in the config.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled pattern, anchored at both ends.
    pub fn regex(&self) -> &Regex {
        &self.anchored
    }
}

/// regex syntax errors span several lines (pattern, caret, "error: ..."); a config
/// error is one line, so keep the explanation and drop the drawing.
fn one_line_regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error:").map(str::trim))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        })
}

impl<'de> Deserialize<'de> for TopicPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TopicPattern;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a regular expression string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<TopicPattern, E> {
                TopicPattern::new(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A `host:port` socket address to listen on, e.g. `"127.0.0.1:9464"` or `"[::]:9464"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ListenAddr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP address and port such as \"127.0.0.1:9464\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ListenAddr, E> {
                s.parse().map(ListenAddr).map_err(|e| {
                    E::custom(format!("invalid socket address {s:?}: {e} (expected an IP address and port such as \"127.0.0.1:9464\")"))
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// One librdkafka option value: a TOML string, integer or boolean, kept as the string
/// librdkafka expects.
struct OptionValue(String);

impl<'de> Deserialize<'de> for OptionValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        // Every refusal below is spelled out rather than left to serde's default, which
        // would quote the value, and the value of e.g. `sasl.password` is a secret.
        const WANT: &str = "expected a string, integer or boolean";
        impl<'v> Visitor<'v> for V {
            type Value = OptionValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, integer or boolean")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OptionValue, E> {
                Ok(OptionValue(s.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<OptionValue, E> {
                Ok(OptionValue(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<OptionValue, E> {
                Ok(OptionValue(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<OptionValue, E> {
                Ok(OptionValue(b.to_string()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<OptionValue, E> {
                Err(E::custom(format!(
                    "{WANT}, got a float (write it as a string)"
                )))
            }
            fn visit_seq<A: de::SeqAccess<'v>>(self, _: A) -> Result<OptionValue, A::Error> {
                Err(de::Error::custom(format!("{WANT}, got an array")))
            }
            fn visit_map<A: de::MapAccess<'v>>(self, _: A) -> Result<OptionValue, A::Error> {
                Err(de::Error::custom(format!(
                    "{WANT}, got a table or a date-time (write it as a string)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// `deserialize_with` for librdkafka option maps: string keys, values converted to strings.
pub(super) fn option_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, OptionValue>::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, v)| (k, v.0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        let p = |s| ByteSize::parse(s).map(|b| b.0);
        assert_eq!(p("512KiB"), Ok(512 * 1024));
        assert_eq!(p("64MiB"), Ok(64 << 20));
        assert_eq!(p("1GiB"), Ok(1 << 30));
        assert_eq!(p("10MB"), Ok(10_000_000));
        assert_eq!(p("100kB"), Ok(100_000));
        assert_eq!(p("4096"), Ok(4096));
        assert_eq!(p(" 2 mib "), Ok(2 << 20));
        assert_eq!(p("7B"), Ok(7));
    }

    #[test]
    fn sizes_refuse_garbage_zero_and_overflow() {
        for bad in [
            "lots",
            "",
            "MiB",
            "-1MiB",
            "1.5GiB",
            "10 parsecs",
            "0",
            "0MiB",
            "99999999999999999999",
            "20000000TiB",
        ] {
            let e = ByteSize::parse(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("invalid size {bad:?}: ")),
                "{bad}: {e}"
            );
        }
        assert!(
            ByteSize::parse("0")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(
            ByteSize::parse("3 parsecs")
                .unwrap_err()
                .contains("unknown unit \"parsecs\"")
        );
    }

    #[test]
    fn sizes_display_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(ByteSize(10_000_000).to_string(), "10MB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
        assert_eq!(ByteSize(1023).to_string(), "1023B");
    }

    #[test]
    fn durations_parse_humantime_and_refuse_zero() {
        assert_eq!(
            HumanDuration::parse("5s").unwrap().0,
            Duration::from_secs(5)
        );
        assert_eq!(
            HumanDuration::parse("250ms").unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            HumanDuration::parse("1m").unwrap().0,
            Duration::from_secs(60)
        );
        assert_eq!(
            HumanDuration::parse("1m 30s").unwrap().0,
            Duration::from_secs(90)
        );
        let e = HumanDuration::parse("5 parsecs").unwrap_err();
        assert!(e.starts_with("invalid duration \"5 parsecs\": "), "{e}");
        for zero in ["0", "0s", "0ms"] {
            assert!(
                HumanDuration::parse(zero)
                    .unwrap_err()
                    .contains("greater than zero"),
                "{zero}"
            );
        }
        assert!(HumanDuration::parse("5").is_err(), "a unit is required");
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1s 500ms"
        );
    }

    #[test]
    fn topic_patterns_match_the_whole_name() {
        let p = TopicPattern::new("orders|orders-v2").unwrap();
        assert!(p.regex().is_match("orders"));
        assert!(p.regex().is_match("orders-v2"));
        assert!(!p.regex().is_match("orders-dlq"));
        assert!(!p.regex().is_match("my-orders"));
        assert_eq!(p.as_str(), "orders|orders-v2");
    }

    #[test]
    fn bad_regex_error_is_one_line() {
        let e = TopicPattern::new("(").unwrap_err();
        assert!(e.starts_with("invalid regular expression \"(\": "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("unclosed group"), "{e}");
    }
}
