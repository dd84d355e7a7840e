//! `Config::validate`: the rules that span keys, checked before any cluster is touched
//! (DESIGN.md rule 6). The first broken rule is reported, named by its key path.

use std::collections::HashMap;

use duplex_sync::routing::Topology;

use super::error::{ConfigError, join_key};
use super::{ClusterConfig, Config};

/// Longest cluster id: ids travel in every provenance header, so keep them short.
const MAX_ID_LEN: usize = 64;
/// Longest link name; the default `<a>-<b>` of two maximal ids must fit.
const MAX_LINK_NAME_LEN: usize = 2 * MAX_ID_LEN + 1;

/// librdkafka options Duplex sets itself, because its guarantees depend on them
/// (DESIGN.md rule 3). Letting a config override them would silently break resume.
const RESERVED_OPTIONS: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `bootstrap_servers` instead"),
    (
        "group.id",
        "Duplex names the consumer group of each link itself",
    ),
    (
        "enable.idempotence",
        "Duplex always uses the idempotent producer, so that resume neither loses nor duplicates",
    ),
    (
        "enable.gapless.guarantee",
        "Duplex always requires the gapless guarantee, so that resume neither loses nor duplicates",
    ),
    (
        "enable.auto.commit",
        "Duplex commits source offsets itself, after the target acknowledged",
    ),
    (
        "enable.auto.offset.store",
        "Duplex stores source offsets itself, after the target acknowledged",
    ),
    (
        "transactional.id",
        "Duplex does not use broker transactions",
    ),
];

impl Config {
    /// Checks everything serde could not: presence, formats of ids, uniqueness, that
    /// links name known and distinct clusters, and that links connect every cluster.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_clusters()?;
        self.validate_links()?;
        self.validate_connected()?;
        self.validate_topic_configs()?;
        self.api.validate()
    }

    fn validate_clusters(&self) -> Result<(), ConfigError> {
        if self.clusters.is_empty() {
            return Err(ConfigError::invalid(
                "clusters",
                "no clusters configured; add at least two [[clusters]] tables",
            ));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, c) in self.clusters.iter().enumerate() {
            let key = format!("clusters[{i}]");
            check_cluster(&key, c)?;
            if let Some(first) = seen.insert(&c.id, i) {
                return Err(ConfigError::invalid(
                    format!("{key}.id"),
                    format!(
                        "duplicate cluster id {:?} (also clusters[{first}].id)",
                        c.id
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_links(&self) -> Result<(), ConfigError> {
        if self.links.is_empty() {
            return Err(ConfigError::invalid(
                "links",
                "no links configured; add [[links]] tables so that every cluster reaches every other",
            ));
        }
        let mut pairs: HashMap<(usize, usize), usize> = HashMap::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, link) in self.links.iter().enumerate() {
            let key = format!("links[{i}]");
            let ends = self.link_ends(&key, &link.clusters)?;
            let pair = (ends[0].min(ends[1]), ends[0].max(ends[1]));
            // Checked before names: two links of the same pair also share a default name,
            // and "already linked" is the real problem.
            if let Some(first) = pairs.insert(pair, i) {
                return Err(ConfigError::invalid(
                    format!("{key}.clusters"),
                    format!(
                        "clusters {:?} and {:?} are already linked by links[{first}]; a pair is linked once",
                        link.clusters[0], link.clusters[1]
                    ),
                ));
            }
            let name = link.name();
            let name_key = format!("{key}.name");
            let what = if link.name.is_some() {
                "link name"
            } else {
                "default link name"
            };
            check_name(&name_key, what, &name, MAX_LINK_NAME_LEN)?;
            if let Some(first) = names.insert(name.clone(), i) {
                return Err(ConfigError::invalid(
                    name_key,
                    format!(
                        "duplicate {what} {name:?} (also links[{first}]); set a distinct `name`"
                    ),
                ));
            }
            if link.topics.include.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.topics.include"),
                    "empty, so the link would replicate nothing; omit it to select every topic",
                ));
            }
        }
        Ok(())
    }

    /// The two ends of a link as cluster indexes, or why they are not two known clusters.
    fn link_ends(&self, link_key: &str, ids: &[String]) -> Result<[usize; 2], ConfigError> {
        let key = format!("{link_key}.clusters");
        if ids.len() != 2 {
            return Err(ConfigError::invalid(
                key,
                format!("a link names exactly two clusters, got {}", ids.len()),
            ));
        }
        let mut ends = [0; 2];
        for (end, id) in ends.iter_mut().zip(ids) {
            *end = self.cluster_index(id).ok_or_else(|| {
                let known: Vec<&str> = self.clusters.iter().map(|c| c.id.as_str()).collect();
                ConfigError::invalid(
                    &key,
                    format!("unknown cluster {id:?} (known: {})", known.join(", ")),
                )
            })?;
        }
        if ends[0] == ends[1] {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "a link needs two different clusters, got {:?} twice",
                    ids[0]
                ),
            ));
        }
        Ok(ends)
    }

    /// Every cluster must reach every other, or some would never see some records.
    fn validate_topic_configs(&self) -> Result<(), ConfigError> {
        match &self.topic_configs.owner {
            Some(owner) if !self.clusters.iter().any(|c| &c.id == owner) => {
                let ids: Vec<&str> = self.clusters.iter().map(|c| c.id.as_str()).collect();
                Err(ConfigError::invalid(
                    "topic_configs.owner",
                    format!("unknown cluster {owner:?}; the clusters are {ids:?}"),
                ))
            }
            _ => Ok(()),
        }
    }

    fn validate_connected(&self) -> Result<(), ConfigError> {
        let ids: Vec<String> = self.clusters.iter().map(|c| c.id.clone()).collect();
        let topology = Topology::new(ids, &self.link_indexes());
        let Some((main, cut_off)) = topology.unreached() else {
            return Ok(());
        };
        // The group holding the first cluster is "the" topology; the rest are cut off.
        let quoted = |idx: &[usize]| {
            idx.iter()
                .map(|&i| format!("{:?}", self.clusters[i].id))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (main, n_cut) = (quoted(&main), cut_off.len());
        let cut_off = quoted(&cut_off);
        let (noun, verb) = if n_cut == 1 {
            ("cluster", "is")
        } else {
            ("clusters", "are")
        };
        Err(ConfigError::invalid(
            "links",
            format!(
                "{noun} {cut_off} {verb} not connected to {main} (every cluster must reach every other through links)"
            ),
        ))
    }
}

/// Ids and link names go into headers, group ids and metric labels: keep them to a
/// charset that is safe in all three.
pub(super) fn check_name(
    key: &str,
    what: &str,
    value: &str,
    max: usize,
) -> Result<(), ConfigError> {
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if value.is_empty() || value.len() > max || !ok_chars {
        return Err(ConfigError::invalid(
            key,
            format!("invalid {what} {value:?}: use 1 to {max} characters from A-Z a-z 0-9 . _ -"),
        ));
    }
    Ok(())
}

/// Checks one cluster's id, bootstrap servers and options, naming keys under `key`
/// (`clusters[0]` in the file, `cluster` in an AddCluster request).
pub fn check_cluster(key: &str, c: &ClusterConfig) -> Result<(), ConfigError> {
    check_name(&format!("{key}.id"), "cluster id", &c.id, MAX_ID_LEN)?;
    check_bootstrap(&format!("{key}.bootstrap_servers"), &c.bootstrap_servers)?;
    check_options(key, c)
}

fn check_bootstrap(key: &str, servers: &str) -> Result<(), ConfigError> {
    if servers.trim().is_empty() {
        return Err(ConfigError::invalid(
            key,
            "empty; give a comma-separated list of host:port",
        ));
    }
    if servers.split(',').any(|s| s.trim().is_empty()) {
        return Err(ConfigError::invalid(
            key,
            format!("empty entry in {servers:?}; give a comma-separated list of host:port"),
        ));
    }
    Ok(())
}

fn check_options(cluster_key: &str, c: &ClusterConfig) -> Result<(), ConfigError> {
    for (table, map) in [
        ("options", &c.options),
        ("producer", &c.producer),
        ("consumer", &c.consumer),
    ] {
        for name in map.keys() {
            let key = join_key(&format!("{cluster_key}.{table}"), name);
            if name.trim().is_empty() {
                return Err(ConfigError::invalid(key, "empty option name"));
            }
            if let Some((_, why)) = RESERVED_OPTIONS.iter().find(|(r, _)| r == name) {
                return Err(ConfigError::invalid(
                    key,
                    format!("cannot be set here: {why}"),
                ));
            }
        }
    }
    Ok(())
}
