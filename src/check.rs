//! `duplex check-config FILE`: validates a config without touching any cluster and
//! prints what it would run: clusters, links, flows, and which origins each flow
//! forwards (DESIGN.md rule 2), so an operator can review a topology before running it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use duplex_sync::routing::Topology;
use duplex_sync::spec::StartPosition;

use crate::config::{ByteSize, Config, TopicPattern, shown_value};

/// Exit code for a config that is refused, as for `duplex run`.
const EXIT_BAD_CONFIG: u8 = 2;

/// Validates `path` and prints the summary on stdout: exit 0 when valid, 2 with one
/// `error: ...` line on stderr when not.
pub fn check_config(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let text = summary(path, &config);
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
pub fn summary(path: &Path, config: &Config) -> String {
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
    let listen = config
        .metrics_listen()
        .map_or_else(|| "off".to_owned(), |a| format!("http://{a}/metrics"));
    let _ = writeln!(out, "metrics: {listen}");

    // Each link is two flows, S→T and T→S; the routing table says which origins each
    // one carries, from the same spanning trees the engine computes.
    let ids: Vec<String> = spec.clusters.iter().map(|c| c.id.clone()).collect();
    let pairs: Vec<[usize; 2]> = spec.links.iter().map(|l| l.clusters).collect();
    let topology = Topology::new(ids.clone(), &pairs);
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
    let _ = writeln!(out, "\nrouting (each record reaches each cluster once):");
    for &(s, t, _) in &flows {
        let origins: Vec<&str> = topology
            .origins_forwarded(s, t)
            .iter()
            .map(|&o| ids[o].as_str())
            .collect();
        let origins = if origins.is_empty() {
            "(none)".to_owned()
        } else {
            origins.join(", ")
        };
        let _ = writeln!(
            out,
            "  {} -> {} forwards origins: {origins}",
            ids[s], ids[t]
        );
    }
    out
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
