//! How the config file seeds and changes the state (docs/api.md, "The config file and
//! the log").
//!
//! At every start the file's topology (clusters by id and bootstrap servers, links by
//! name, clusters and topic patterns; client options and secrets left out) is compared
//! with the last one applied. The first start records it; a file that changed since is
//! applied as one `ConfigApplied` event listing each difference; an unchanged file
//! records nothing. The file always wins at start, and the log says what it changed.

use xxhash_rust::xxh3::xxh3_64;

use super::Store;
use super::events::{ClusterRecord, LinkRecord, Payload};
use super::fold::Topology;
use super::log::LogError;
use crate::config::Config;

/// The topology a config file describes.
pub fn topology_of(config: &Config) -> Topology {
    let clusters: Vec<ClusterRecord> = config
        .clusters
        .iter()
        .map(|c| ClusterRecord {
            id: c.id.clone(),
            bootstrap_servers: c.bootstrap_servers.trim().to_string(),
        })
        .collect();
    let links: Vec<LinkRecord> = config
        .links
        .iter()
        .map(|l| LinkRecord {
            name: l.name(),
            clusters: [l.clusters[0].clone(), l.clusters[1].clone()],
            include: l
                .topics
                .include
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            exclude: l
                .topics
                .exclude
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
        })
        .collect();
    let digest = format!(
        "{:016x}",
        xxh3_64(
            serde_json::to_string(&(&clusters, &links))
                .expect("records serialize")
                .as_bytes()
        )
    );
    Topology {
        digest,
        clusters,
        links,
    }
}

/// What changed from `old` to `new`, one line each.
pub fn changes(old: &Topology, new: &Topology) -> Vec<String> {
    let mut out = Vec::new();
    for c in &new.clusters {
        match old.clusters.iter().find(|o| o.id == c.id) {
            None => out.push(format!("cluster {} added", c.id)),
            Some(o) if o.bootstrap_servers != c.bootstrap_servers => out.push(format!(
                "cluster {} bootstrap servers changed from {:?} to {:?}",
                c.id, o.bootstrap_servers, c.bootstrap_servers
            )),
            Some(_) => {}
        }
    }
    for o in &old.clusters {
        if !new.clusters.iter().any(|c| c.id == o.id) {
            out.push(format!("cluster {} removed", o.id));
        }
    }
    for l in &new.links {
        match old.link(&l.name) {
            None => out.push(format!(
                "link {} added ({} and {})",
                l.name, l.clusters[0], l.clusters[1]
            )),
            Some(o) => {
                if o.clusters != l.clusters {
                    out.push(format!(
                        "link {} clusters changed from {:?} to {:?}",
                        l.name, o.clusters, l.clusters
                    ));
                }
                if o.include != l.include || o.exclude != l.exclude {
                    out.push(format!(
                        "link {} topics changed from include {:?} exclude {:?} to include {:?} exclude {:?}",
                        l.name, o.include, o.exclude, l.include, l.exclude
                    ));
                }
            }
        }
    }
    for o in &old.links {
        if new.link(&o.name).is_none() {
            out.push(format!("link {} removed", o.name));
        }
    }
    out
}

/// Records the start and, when the file's topology differs from the last applied, the
/// file's changes.
pub fn seed(store: &Store, config: &Config, file: &str) -> Result<(), LogError> {
    let new = topology_of(config);
    let old = store.state().topology;
    let mut payloads = vec![Payload::ServiceStarted {
        version: env!("CARGO_PKG_VERSION").to_string(),
        config_file: file.to_string(),
    }];
    if old.digest != new.digest {
        let changes = if old.digest.is_empty() {
            Vec::new()
        } else {
            changes(&old, &new)
        };
        payloads.push(Payload::ConfigApplied {
            digest: new.digest,
            clusters: new.clusters,
            links: new.links,
            changes,
        });
    }
    store.record(payloads).map(|_| ())
}
