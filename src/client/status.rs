//! `duplex status`: clusters, links and each flow's state and counters.

use std::fmt::Write;
use std::process::ExitCode;

use duplex_proto::v1 as pb;

use super::{ApiArgs, status_error};

/// Prints the topology; with `topics`, their routes too.
pub async fn status(api: &ApiArgs, topics: &[String]) -> anyhow::Result<ExitCode> {
    let mut c = api.connect().await?;
    let t = c
        .topology
        .get_topology(pb::GetTopologyRequest {
            route_topics: topics.to_vec(),
        })
        .await
        .map_err(|s| status_error("GetTopology", s))?
        .into_inner();
    print!("{}", render(&t));
    Ok(ExitCode::SUCCESS)
}

/// The topology as text.
pub fn render(t: &pb::Topology) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "revision {}", t.revision);
    if !t.settling.is_empty() {
        let _ = writeln!(
            out,
            "settling the last topology change (no other change until it settled): {}",
            t.settling
        );
    }
    let _ = writeln!(out, "clusters:");
    for c in &t.clusters {
        let _ = writeln!(out, "  {}  {}", c.id, c.bootstrap_servers);
    }
    let _ = writeln!(out, "links:");
    for l in &t.links {
        let topics = l.topics.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} ({})  include {:?} exclude {:?}{}",
            l.name,
            l.clusters.join(" <-> "),
            topics.include,
            topics.exclude,
            if l.draining {
                "  [removed, draining: carries what was written before its removal]"
            } else {
                ""
            }
        );
        if !l.drain_status.is_empty() {
            let _ = writeln!(out, "    drain: {}", l.drain_status);
        }
        for f in &l.flows {
            let state = super::state_name(f.state);
            let c = f.counters.unwrap_or_default();
            let lag = if c.lag_unknown_partitions > 0 {
                format!(
                    ">={} ({} partitions unknown)",
                    c.lag, c.lag_unknown_partitions
                )
            } else {
                c.lag.to_string()
            };
            let _ = writeln!(
                out,
                "    {:<16} {:<10}{} forwarded {} ({:.0}/s)  lag {}  partitions {}  restarts {}",
                f.name,
                state,
                if f.paused {
                    " (paused by operator)"
                } else {
                    ""
                },
                c.forwarded,
                c.forwarded_per_second,
                lag,
                c.partitions,
                c.restarts
            );
            if !f.error.is_empty() {
                let _ = writeln!(out, "      error: {}", f.error);
            }
        }
    }
    for r in &t.routes {
        let _ = writeln!(
            out,
            "routes of topic {:?} (links {}):",
            r.topic,
            r.links.join(", ")
        );
        for f in &r.flows {
            let _ = writeln!(
                out,
                "  {:<16} carries origins {}",
                f.flow,
                f.origins.join(", ")
            );
        }
        if r.parts.len() > 1 {
            let parts: Vec<String> = r.parts.iter().map(|p| p.clusters.join("+")).collect();
            let _ = writeln!(
                out,
                "  note: replicated within separate parts only: {}",
                parts.join(" | ")
            );
        }
    }
    out
}
