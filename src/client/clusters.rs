//! `duplex clusters add ID --bootstrap SERVERS --link PEER --include RE`: a cluster joins
//! the running mesh (AddCluster).

use std::collections::BTreeMap;
use std::process::ExitCode;

use duplex_proto::v1 as pb;

use super::change::{ChangeArgs, report, settled};
use super::{ApiArgs, status_error};

/// What `duplex clusters add` takes.
#[derive(Debug, Clone, clap::Args)]
pub struct AddClusterArgs {
    /// The new cluster's id (written into provenance headers; never renamed).
    pub id: String,
    /// Its bootstrap servers, `host:port,...`.
    #[arg(long, required = true)]
    pub bootstrap: String,
    /// A librdkafka option for every client of it, `KEY=VALUE` (repeatable; no secrets:
    /// a cluster that needs one is declared in the config file).
    #[arg(long = "option", value_name = "KEY=VALUE", value_parser = key_value)]
    pub options: Vec<(String, String)>,
    /// A librdkafka option for producers writing to it (repeatable).
    #[arg(long = "producer-option", value_name = "KEY=VALUE", value_parser = key_value)]
    pub producer: Vec<(String, String)>,
    /// A librdkafka option for consumers reading it (repeatable).
    #[arg(long = "consumer-option", value_name = "KEY=VALUE", value_parser = key_value)]
    pub consumer: Vec<(String, String)>,
    /// A cluster of the mesh to link it to, `PEER` (link `PEER-ID`) or `PEER=NAME`
    /// (repeatable, at least one).
    #[arg(long = "link", value_name = "PEER[=NAME]", required = true)]
    pub links: Vec<String>,
    /// A pattern of the topics its links replicate (anchored regex; repeatable).
    #[arg(long, required = true)]
    pub include: Vec<String>,
    /// A pattern of topics its links never replicate (repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Wait until the change has settled (`TopologySettled`).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub change: ChangeArgs,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Adds the cluster; with `wait`, returns once the change has settled.
pub async fn add(a: &AddClusterArgs) -> anyhow::Result<ExitCode> {
    let mut c = a.api.connect().await?;
    let map = |v: &[(String, String)]| v.iter().cloned().collect::<BTreeMap<_, _>>();
    let topics = pb::TopicSelection {
        include: a.include.clone(),
        exclude: a.exclude.clone(),
    };
    let links = a
        .links
        .iter()
        .map(|l| {
            let (peer, name) = l.split_once('=').unwrap_or((l, ""));
            pb::ClusterLink {
                name: name.to_string(),
                peer: peer.to_string(),
                topics: Some(topics.clone()),
            }
        })
        .collect();
    let req = pb::AddClusterRequest {
        cluster: Some(pb::ClusterSettings {
            id: a.id.clone(),
            bootstrap_servers: a.bootstrap.clone(),
            options: map(&a.options),
            producer: map(&a.producer),
            consumer: map(&a.consumer),
        }),
        links,
        request_id: a.change.request_id.clone().unwrap_or_default(),
        expected_revision: a.change.expected_revision,
    };
    let r = c
        .topology
        .add_cluster(req)
        .await
        .map_err(|s| status_error("AddCluster", s))?
        .into_inner();
    let code = report(&format!("add cluster {}", a.id), &r);
    settled(&mut c, &r, a.wait).await?;
    Ok(code)
}
