//! `TopologyService.AddCluster`: a cluster joins the running mesh by one or more new
//! links, applied as AddLink is (docs/topology-changes.md, "Adding a cluster or a
//! link"): the flows are held, the cut is read (on the new cluster too), the command
//! records `TopologyChanged` with the cut, the cluster and its links, and the reconciler
//! applies it. The cluster's client options are recorded with it, so no secret is
//! accepted: a cluster that needs one is declared in the config file.

use std::collections::BTreeMap;
use std::time::Duration;

use duplex_proto::v1 as pb;
use duplex_sync::clients;
use duplex_sync::spec::ClusterSpec;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;
use tonic::{Request, Response, Status};

use super::auth::operator;
use super::keyed::command;
use super::links::{changed, response, selection_of, still_changing};
use super::{Api, required};
use crate::config::{ClusterConfig, check_cluster, is_secret_option, join_key};
use crate::state::config::{cluster_spec, link_spec};
use crate::state::events::{ClientOptions, ClusterRecord, LinkRecord};
use crate::state::{CommandError, Payload, State};

/// The most links one AddCluster may add.
pub const MAX_LINKS: usize = 64;
/// The longest cluster id (as the config file's).
const MAX_ID: usize = 64;
/// The longest bootstrap server list.
const MAX_BOOTSTRAP: usize = 4096;
/// The most options in one table, and the longest option name.
const MAX_OPTIONS: usize = 256;
const MAX_OPTION_NAME: usize = 256;
/// The longest option value (librdkafka's refusal of a value repeats it).
const MAX_OPTION_VALUE: usize = 4096;

/// Adds a cluster; see topology.proto.
pub async fn add_cluster(
    api: &Api,
    req: Request<pb::AddClusterRequest>,
) -> Result<Response<pb::ChangeResponse>, Status> {
    let actor = operator(&req, "AddCluster")?;
    let r = req.get_ref();
    let cluster = cluster_record(r.cluster.as_ref())?;
    let links = link_records(&cluster.id, &r.links)?;
    let mut touches = vec![format!("cluster:{}", cluster.id)];
    touches.extend(links.iter().map(|l| format!("link:{}", l.name)));
    let cmd = command("AddCluster", actor, r, touches);
    if let Some(out) = api.store.replayed(&cmd)? {
        return Ok(response(out));
    }
    // Checked before the flows are held, and again when the command is decided.
    let decide = |s: &State| decide(s, &cluster, &links);
    let change = api.store.with_state(decide)?;
    if change.is_empty() {
        return Ok(response(api.store.execute(&cmd, decide)?));
    }
    let mut after = api.engine.spec();
    probe(
        cluster_spec(&cluster),
        after.limits.in_flight_bytes,
        after.limits.request_timeout,
    )
    .await?;
    if after.clusters.iter().any(|c| c.id == cluster.id) {
        return Err(Status::failed_precondition(format!(
            "cluster {:?} runs in the engine already (a restart is applying the config file)",
            cluster.id
        )));
    }
    after.clusters.push(cluster_spec(&cluster));
    for l in &links {
        let spec = link_spec(&after, l)
            .map_err(|e| Status::failed_precondition(format!("link {:?}: {e}", l.name)))?;
        after.links.push(spec);
    }
    changed(api, &cmd, after, decide).await
}

/// Builds the clients the engine will build for the new cluster (a producer, a consumer
/// and a scanner) and asks it for its metadata, before any flow is held: options
/// librdkafka refuses are INVALID_ARGUMENT (a value it refuses would otherwise fault the
/// new flows after the change is recorded, and hold its settling), an unreachable
/// cluster UNAVAILABLE, and the mesh is stopped for neither.
async fn probe(spec: ClusterSpec, in_flight: usize, timeout: Duration) -> Result<(), Status> {
    let probe = move || -> Result<(), Status> {
        let refused = |map: &BTreeMap<String, String>, table: &str, e: KafkaError| {
            let field = if map.is_empty() { "options" } else { table };
            super::error::invalid(
                &format!("cluster.{field}"),
                format!("librdkafka refuses the options: {e}"),
            )
        };
        let id = "duplex-probe";
        let _: BaseProducer = clients::producer(&spec, id, in_flight)
            .create()
            .map_err(|e| refused(&spec.producer, "producer", e))?;
        let _: BaseConsumer = clients::consumer(&spec, id, id, in_flight)
            .create()
            .map_err(|e| refused(&spec.consumer, "consumer", e))?;
        let scanner: BaseConsumer = clients::scanner(&spec, id)
            .create()
            .map_err(|e| refused(&spec.consumer, "consumer", e))?;
        scanner.fetch_metadata(None, timeout).map_err(|e| {
            Status::unavailable(format!(
                "cannot reach cluster {:?} at {:?}: {e}; nothing changed and no flow was held",
                spec.id, spec.bootstrap_servers
            ))
        })?;
        Ok(())
    };
    tokio::task::spawn_blocking(probe)
        .await
        .map_err(|e| Status::internal(format!("the probe of the new cluster failed: {e}")))?
}

/// The request's cluster as the log records it, checked as the config file's
/// `[[clusters]]` are (fields named `cluster.id`, `cluster.options."…"`), secrets refused.
fn cluster_record(c: Option<&pb::ClusterSettings>) -> Result<ClusterRecord, Status> {
    let Some(c) = c else {
        return Err(super::error::invalid(
            "cluster",
            "is required: the id and bootstrap servers of the cluster to add",
        ));
    };
    // Bounded before anything echoes them in a message.
    if c.id.len() > MAX_ID {
        return Err(super::error::invalid(
            "cluster.id",
            format!("{} bytes; at most {MAX_ID}", c.id.len()),
        ));
    }
    if c.bootstrap_servers.len() > MAX_BOOTSTRAP {
        return Err(super::error::invalid(
            "cluster.bootstrap_servers",
            format!(
                "{} bytes; at most {MAX_BOOTSTRAP}",
                c.bootstrap_servers.len()
            ),
        ));
    }
    for (table, map) in [
        ("options", &c.options),
        ("producer", &c.producer),
        ("consumer", &c.consumer),
    ] {
        let field = format!("cluster.{table}");
        if map.len() > MAX_OPTIONS {
            return Err(super::error::invalid(
                &field,
                format!("{} options; at most {MAX_OPTIONS}", map.len()),
            ));
        }
        if let Some(k) = map.keys().find(|k| k.len() > MAX_OPTION_NAME) {
            return Err(super::error::invalid(
                &field,
                format!(
                    "an option name of {} bytes; at most {MAX_OPTION_NAME}",
                    k.len()
                ),
            ));
        }
        if let Some((k, v)) = map.iter().find(|(_, v)| v.len() > MAX_OPTION_VALUE) {
            return Err(super::error::invalid(
                &join_key(&field, k),
                format!("a value of {} bytes; at most {MAX_OPTION_VALUE}", v.len()),
            ));
        }
    }
    let config = ClusterConfig {
        id: c.id.clone(),
        bootstrap_servers: c.bootstrap_servers.trim().to_string(),
        options: c.options.clone(),
        producer: c.producer.clone(),
        consumer: c.consumer.clone(),
    };
    if let Err(e) = check_cluster("cluster", &config) {
        let key = e.key().unwrap_or("cluster").to_string();
        return Err(super::error::invalid(&key, problem(&e)));
    }
    for (table, map) in [
        ("options", &c.options),
        ("producer", &c.producer),
        ("consumer", &c.consumer),
    ] {
        if let Some(name) = map.keys().find(|k| is_secret_option(k)) {
            return Err(super::error::invalid(
                &join_key(&format!("cluster.{table}"), name),
                "names a secret, and the event log records a cluster's options: declare a cluster that needs a secret in the config file",
            ));
        }
    }
    Ok(ClusterRecord {
        id: config.id,
        bootstrap_servers: config.bootstrap_servers,
        client: ClientOptions {
            options: config.options,
            producer: config.producer,
            consumer: config.consumer,
        },
    })
}

/// What a config error says is wrong, without its key (the API's error names the field).
fn problem(e: &crate::config::ConfigError) -> String {
    match e {
        crate::config::ConfigError::Invalid { problem, .. } => problem.clone(),
        other => other.to_string(),
    }
}

/// The request's links as the log records them: each from `id` to its peer.
fn link_records(id: &str, links: &[pb::ClusterLink]) -> Result<Vec<LinkRecord>, Status> {
    if links.is_empty() {
        return Err(super::error::invalid(
            "links",
            "is empty; a cluster joins the mesh by at least one link to a cluster it has",
        ));
    }
    if links.len() > MAX_LINKS {
        return Err(super::error::invalid(
            "links",
            format!("{} links; at most {MAX_LINKS}", links.len()),
        ));
    }
    let mut out: Vec<LinkRecord> = Vec::new();
    for (i, l) in links.iter().enumerate() {
        let field = |f: &str| format!("links[{i}].{f}");
        let peer = required(&field("peer"), &l.peer)?.to_string();
        if peer == id {
            return Err(super::error::invalid(
                &field("peer"),
                format!("is the cluster being added ({id:?}); a link joins it to another"),
            ));
        }
        let name = if l.name.is_empty() {
            format!("{peer}-{id}")
        } else {
            required(&field("name"), &l.name)?.to_string()
        };
        if let Some(j) = out.iter().position(|o| o.clusters[0] == peer) {
            return Err(super::error::invalid(
                &field("peer"),
                format!(
                    "links the cluster to {peer:?} again (links[{j}]); a pair of clusters is linked once"
                ),
            ));
        }
        if let Some(j) = out.iter().position(|o| o.name == name) {
            return Err(super::error::invalid(
                &field("name"),
                format!("{name:?} names links[{j}] too"),
            ));
        }
        let (include, exclude) = selection_of(&field("topics"), l.topics.as_ref())?;
        out.push(LinkRecord {
            name,
            clusters: [peer, id.to_string()],
            include,
            exclude,
        });
    }
    Ok(out)
}

/// The events adding `cluster` with `links`: none when it exists with them as asked,
/// else one `TopologyChanged` (its cut filled in by the caller).
fn decide(
    state: &State,
    cluster: &ClusterRecord,
    links: &[LinkRecord],
) -> Result<Vec<Payload>, CommandError> {
    let t = &state.topology;
    if let Some(c) = t.clusters.iter().find(|c| c.id == cluster.id) {
        if c == cluster && links.iter().all(|l| t.link(&l.name) == Some(l)) {
            return Ok(Vec::new());
        }
        return Err(CommandError::FailedPrecondition(format!(
            "cluster {:?} exists already (bootstrap servers {:?}): choose another id",
            c.id, c.bootstrap_servers
        )));
    }
    for l in links {
        let peer = &l.clusters[0];
        if !t.clusters.iter().any(|c| c.id == *peer) {
            let known: Vec<&str> = t.clusters.iter().map(|c| c.id.as_str()).collect();
            return Err(CommandError::NotFound(format!(
                "no cluster {peer:?} to link {:?} to (the clusters are {known:?})",
                cluster.id
            )));
        }
        if let Some(other) = t.link(&l.name).or_else(|| state.draining_link(&l.name)) {
            return Err(CommandError::FailedPrecondition(format!(
                "link {:?} exists already, between {} and {}: choose another name",
                other.name, other.clusters[0], other.clusters[1]
            )));
        }
    }
    still_changing(state)?;
    let mut all = t.links.clone();
    all.extend(links.iter().cloned());
    let mut changes = vec![format!(
        "cluster {} added ({})",
        cluster.id, cluster.bootstrap_servers
    )];
    changes.extend(links.iter().map(|l| {
        format!(
            "link {} added ({} and {})",
            l.name, l.clusters[0], l.clusters[1]
        )
    }));
    Ok(vec![Payload::TopologyChanged {
        links: all,
        changes,
        cut: Vec::new(),
        clusters_added: vec![cluster.clone()],
    }])
}
