//! `duplex check-config FILE`: validates a config without touching any cluster and
//! prints what it would run: clusters, links, flows, and which origins each flow
//! forwards (DESIGN.md rule 2), so an operator can review a topology before running it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use duplex_sync::routing::Topology;
use duplex_sync::spec::{EngineSpec, StartPosition};

use crate::config::{ByteSize, Config, TopicPattern, shown_value};

/// Exit code for a config that is refused, as for `duplex run`.
const EXIT_BAD_CONFIG: u8 = 2;

/// Validates `path` and prints the summary on stdout (with the routes of `topics`): exit 0 when valid, 2 with one
/// `error: ...` line on stderr when not.
pub fn check_config(path: &Path, topics: &[String]) -> ExitCode {
    let config = match Config::load(path).and_then(|c| c.api.check_files().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let text = summary(path, &config, topics);
    // A closed pipe (`| head`) is not a config problem; report it without a panic.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The text `check-config` prints for a valid config. Option values of secret keys
/// appear as `***`.
pub fn summary(path: &Path, config: &Config, topics: &[String]) -> String {
    let spec = config.engine_spec();
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(out, "config {} is valid", path.display());

    let _ = writeln!(out, "\nclusters ({}):", config.clusters.len());
    for c in &config.clusters {
        let _ = writeln!(out, "  {}", c.id);
        let _ = writeln!(out, "    bootstrap_servers: {}", c.bootstrap_servers.trim());
        for (name, map) in [
            ("options", &c.options),
            ("producer", &c.producer),
            ("consumer", &c.consumer),
        ] {
            if map.is_empty() {
                continue;
            }
            let _ = writeln!(out, "    {name}:");
            for (k, v) in map {
                let _ = writeln!(out, "      {k} = {}", shown_value(k, v));
            }
        }
    }

    let _ = writeln!(out, "\nlinks ({}):", spec.links.len());
    for (link, cfg) in spec.links.iter().zip(&config.links) {
        let [a, b] = link.clusters.map(|i| spec.clusters[i].id.as_str());
        let _ = writeln!(out, "  {}: {a} <-> {b}", link.name);
        let _ = writeln!(out, "    include: {}", patterns(&cfg.topics.include));
        let _ = writeln!(out, "    exclude: {}", patterns(&cfg.topics.exclude));
        let start = match link.start {
            StartPosition::Earliest => "earliest",
            StartPosition::Latest => "latest",
        };
        let _ = writeln!(out, "    start: {start}");
        let _ = writeln!(
            out,
            "    in_flight_bytes: {} per flow",
            ByteSize(link.in_flight_bytes)
        );
        let tc = &cfg.topic_configs;
        if !tc.sync {
            let _ = writeln!(out, "    topic_configs: not copied by this link");
        } else if !tc.exclude.is_empty() {
            let _ = writeln!(
                out,
                "    topic_configs: also excluded {}",
                patterns(&tc.exclude)
            );
        }
    }

    let limits = &config.limits;
    let _ = writeln!(out, "\nlimits:");
    let _ = writeln!(
        out,
        "  in_flight_bytes: {} (default per flow)",
        limits.in_flight_bytes
    );
    let _ = writeln!(out, "  refresh_interval: {}", limits.refresh_interval);
    let _ = writeln!(out, "  commit_interval: {}", limits.commit_interval);
    let _ = writeln!(out, "  request_timeout: {}", limits.request_timeout);
    let _ = writeln!(out, "  stall_timeout: {}", limits.stall_timeout);
    let _ = writeln!(
        out,
        "  grow_target_partitions: {}",
        limits.grow_target_partitions
    );
    let tc = &config.topic_configs;
    let _ = writeln!(out, "\ntopic_configs:");
    if tc.sync {
        let owner = tc.owner.clone().unwrap_or_else(|| {
            "the first cluster (in [[clusters]] order) that holds each topic".to_string()
        });
        let _ = writeln!(out, "  owner: {owner}");
        let _ = writeln!(
            out,
            "  excluded: {} (built in), {}",
            duplex_sync::topic_configs::BUILT_IN_EXCLUDES.join(", "),
            patterns(&tc.exclude)
        );
        let acls = if tc.acls {
            "READ and DESCRIBE literal topic ACLs copied along the same trees (never WRITE, never removed)"
        } else {
            "not copied"
        };
        let _ = writeln!(out, "  acls: {acls}");
    } else {
        let _ = writeln!(
            out,
            "  off: only cleanup.policy is copied, when a topic is created"
        );
    }
    let _ = writeln!(
        out,
        "\noffsets: translation index {}",
        if config.offsets.index {
            format!(
                "on, in {}",
                crate::offsets::store::dir(&config.state_dir(path)).display()
            )
        } else {
            "off (each translation reads in full)".to_string()
        }
    );
    let listen = config
        .metrics_listen()
        .map_or_else(|| "off".to_owned(), |a| format!("http://{a}/metrics"));
    let _ = writeln!(out, "metrics: {listen}");
    api(&mut out, path, config);

    routing(&mut out, config, &spec, topics);
    out
}

/// The API: where, over what, and who may call it (token values as `***`).
fn api(out: &mut String, path: &Path, config: &Config) {
    let api = &config.api;
    let scheme = if api.tls.is_some() { "https" } else { "http" };
    let _ = writeln!(out, "\napi: {scheme}://{}", api.listen());
    match &api.tls {
        Some(t) => {
            let _ = writeln!(
                out,
                "  tls: cert {}, key {}",
                t.cert.display(),
                t.key.display()
            );
        }
        None => {
            let _ = writeln!(out, "  tls: off (plain HTTP/2)");
        }
    }
    if api.tokens.is_empty() {
        let _ = writeln!(
            out,
            "  tokens: none: every caller may read and change the mesh, so the API listens on loopback only"
        );
    } else {
        let _ = writeln!(out, "  tokens ({}):", api.tokens.len());
        for t in &api.tokens {
            let from = match &t.token_file {
                Some(f) => format!("token_file {}", f.display()),
                None => "token ***".to_string(),
            };
            let _ = writeln!(out, "    {} (role {}): {from}", t.name, t.role);
        }
        if api.tls.is_none() && !api.listen().ip().is_loopback() {
            let _ = writeln!(
                out,
                "  warning: tokens over plain HTTP/2 on a non-loopback address cross the network in clear text; configure [api.tls]"
            );
        }
    }
    let _ = writeln!(out, "state: {}", config.state_dir(path).display());
}

/// The flows, then the routing: which origins each flow carries, from the same
/// per-topic spanning trees the engine computes. When every link selects the same
/// topics one table holds for all of them; otherwise routing depends on the topic, and
/// a table is printed for each topic the config names literally or `--topic` asks for,
/// with a note when a topic's links fall into separate parts.
fn routing(out: &mut String, config: &Config, spec: &EngineSpec, asked: &[String]) {
    let routes = duplex_sync::engine::routes(spec);
    let ids = routes.ids();
    let flows: Vec<(usize, usize, &str)> = spec
        .links
        .iter()
        .flat_map(|l| {
            let [a, b] = l.clusters;
            [(a, b, l.name.as_str()), (b, a, l.name.as_str())]
        })
        .collect();
    let _ = writeln!(out, "\nflows ({}):", flows.len());
    for &(s, t, name) in &flows {
        let _ = writeln!(out, "  {} -> {} (link {name})", ids[s], ids[t]);
    }
    fn selection(l: &crate::config::LinkConfig) -> (Vec<&str>, Vec<&str>) {
        (
            l.topics.include.iter().map(TopicPattern::as_str).collect(),
            l.topics.exclude.iter().map(TopicPattern::as_str).collect(),
        )
    }
    let uniform = config
        .links
        .windows(2)
        .all(|w| selection(&w[0]) == selection(&w[1]));
    if uniform && asked.is_empty() {
        let _ = writeln!(out, "\nrouting (each record reaches each cluster once):");
        let topology = Topology::new(
            ids.to_vec(),
            &spec.links.iter().map(|l| l.clusters).collect::<Vec<_>>(),
        );
        for &(s, t, _) in &flows {
            let _ = writeln!(
                out,
                "  {} -> {} forwards origins: {}",
                ids[s],
                ids[t],
                origins(&topology, ids, s, t)
            );
        }
        return;
    }
    let mut topics: Vec<String> = asked.to_vec();
    for l in &config.links {
        for name in l
            .topics
            .include
            .iter()
            .filter_map(|p| literal_name(p.as_str()))
        {
            if !topics.contains(&name) {
                topics.push(name);
            }
        }
    }
    if !uniform {
        let _ = writeln!(
            out,
            "\nrouting: links select different topics, so each topic is routed over the links that select it"
        );
    }
    if topics.is_empty() {
        let _ = writeln!(
            out,
            "  (name topics with --topic NAME to print their routes)"
        );
    }
    for topic in &topics {
        let topology = routes.topology(topic);
        let reading: Vec<&str> = spec
            .links
            .iter()
            .filter(|l| l.topics.selects(topic))
            .map(|l| l.name.as_str())
            .collect();
        if reading.is_empty() {
            let _ = writeln!(out, "\nrouting of topic {topic:?}: no link selects it");
            continue;
        }
        let _ = writeln!(
            out,
            "\nrouting of topic {topic:?} (links {}):",
            reading.join(", ")
        );
        for &(s, t, name) in &flows {
            if reading.contains(&name) {
                let _ = writeln!(
                    out,
                    "  {} -> {} forwards origins: {}",
                    ids[s],
                    ids[t],
                    origins(&topology, ids, s, t)
                );
            }
        }
        let parts = routes.parts(topic);
        if parts.len() > 1 {
            let shown: Vec<String> = parts
                .iter()
                .map(|p| {
                    p.iter()
                        .map(|&i| ids[i].as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .collect();
            let _ = writeln!(
                out,
                "  note: replicated within separate parts only: {} (no link that selects {topic:?} connects them)",
                shown.join(" | ")
            );
        }
    }
}

fn origins(topology: &Topology, ids: &[String], s: usize, t: usize) -> String {
    let origins: Vec<&str> = topology
        .origins_forwarded(s, t)
        .iter()
        .map(|&o| ids[o].as_str())
        .collect();
    if origins.is_empty() {
        "(none)".to_owned()
    } else {
        origins.join(", ")
    }
}

/// The one topic name a pattern matches when it is a plain name (`payments`,
/// `orders\\.eu`); `None` for a pattern with regex operators.
fn literal_name(pattern: &str) -> Option<String> {
    let mut name = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => name.push(e),
                _ => return None,
            },
            '.' | '^' | '$' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' => {
                return None;
            }
            c => name.push(c),
        }
    }
    (!name.is_empty()).then_some(name)
}

fn patterns(list: &[TopicPattern]) -> String {
    if list.is_empty() {
        return "(none)".to_owned();
    }
    list.iter()
        .map(|p| format!("{:?}", p.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
