//! `duplex flows pause|resume FLOW`, `duplex links pause|resume LINK`,
//! `duplex links add NAME --between A,B --include RE` and `duplex links remove NAME`.

use std::process::ExitCode;

use duplex_proto::v1 as pb;
use futures::StreamExt;

use super::{ApiArgs, status_error};

/// What to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Pause.
    Pause,
    /// Resume.
    Resume,
}

/// The options every change takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ChangeArgs {
    /// An idempotency key: a retry with the same key takes effect once.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Refuse (ABORTED) if the object changed after this revision.
    #[arg(long)]
    pub expected_revision: Option<u64>,
}

pub(super) fn report(what: &str, r: &pb::ChangeResponse) -> ExitCode {
    if r.replayed {
        println!(
            "{what}: already done by an earlier call with this request id (revision {})",
            r.revision
        );
    } else if r.events.is_empty() {
        println!("{what}: nothing to change (revision {})", r.revision);
    } else {
        let seqs: Vec<String> = r.events.iter().map(u64::to_string).collect();
        println!(
            "{what}: done, recorded as event {} (revision {})",
            seqs.join(", "),
            r.revision
        );
    }
    ExitCode::SUCCESS
}

/// Pauses or resumes a flow.
pub async fn flow(
    api: &ApiArgs,
    change: Change,
    flow: &str,
    a: &ChangeArgs,
) -> anyhow::Result<ExitCode> {
    let mut c = api.connect().await?;
    let req = pb::FlowChangeRequest {
        flow: flow.to_string(),
        request_id: a.request_id.clone().unwrap_or_default(),
        expected_revision: a.expected_revision,
    };
    let (call, r) = match change {
        Change::Pause => ("PauseFlow", c.topology.pause_flow(req).await),
        Change::Resume => ("ResumeFlow", c.topology.resume_flow(req).await),
    };
    let r = r.map_err(|s| status_error(call, s))?.into_inner();
    Ok(report(&format!("{} flow {flow}", verb(change)), &r))
}

/// Pauses or resumes both flows of a link.
pub async fn link(
    api: &ApiArgs,
    change: Change,
    link: &str,
    a: &ChangeArgs,
) -> anyhow::Result<ExitCode> {
    let mut c = api.connect().await?;
    let req = pb::LinkChangeRequest {
        link: link.to_string(),
        request_id: a.request_id.clone().unwrap_or_default(),
        expected_revision: a.expected_revision,
    };
    let (call, r) = match change {
        Change::Pause => ("PauseLink", c.topology.pause_link(req).await),
        Change::Resume => ("ResumeLink", c.topology.resume_link(req).await),
    };
    let r = r.map_err(|s| status_error(call, s))?.into_inner();
    Ok(report(&format!("{} link {link}", verb(change)), &r))
}

fn verb(c: Change) -> &'static str {
    match c {
        Change::Pause => "pause",
        Change::Resume => "resume",
    }
}

/// Adds a link between two clusters; with `wait`, returns once the change has settled
/// (`TopologySettled`).
pub async fn add_link(
    api: &ApiArgs,
    name: &str,
    between: Vec<String>,
    (include, exclude): (Vec<String>, Vec<String>),
    wait: bool,
    a: &ChangeArgs,
) -> anyhow::Result<ExitCode> {
    let mut c = api.connect().await?;
    let req = pb::AddLinkRequest {
        name: name.to_string(),
        clusters: between,
        topics: Some(pb::TopicSelection { include, exclude }),
        request_id: a.request_id.clone().unwrap_or_default(),
        expected_revision: a.expected_revision,
    };
    let r = c
        .topology
        .add_link(req)
        .await
        .map_err(|s| status_error("AddLink", s))?
        .into_inner();
    let code = report(&format!("add link {name}"), &r);
    settled(&mut c, &r, wait).await?;
    Ok(code)
}

/// Removes a link; with `wait`, returns once its drain is over (`LinkRemoved`) and the
/// change has settled (`TopologySettled`).
pub async fn remove_link(
    api: &ApiArgs,
    name: &str,
    wait: bool,
    a: &ChangeArgs,
) -> anyhow::Result<ExitCode> {
    let mut c = api.connect().await?;
    let req = pb::RemoveLinkRequest {
        name: name.to_string(),
        request_id: a.request_id.clone().unwrap_or_default(),
        expected_revision: a.expected_revision,
    };
    let r = c
        .topology
        .remove_link(req)
        .await
        .map_err(|s| status_error("RemoveLink", s))?
        .into_inner();
    let code = report(&format!("remove link {name}"), &r);
    if !wait {
        println!(
            "link {name} drains until `LinkRemoved` is recorded, and the change settles at `TopologySettled` (duplex events --follow, or --wait)"
        );
        return Ok(code);
    }
    wait_settled(&mut c, &r, Some(name)).await?;
    Ok(code)
}

/// Changes a link's topics; with `wait`, returns once the change has settled
/// (`TopologySettled`).
pub async fn set_link_topics(
    api: &ApiArgs,
    name: &str,
    (include, exclude): (Vec<String>, Vec<String>),
    wait: bool,
    a: &ChangeArgs,
) -> anyhow::Result<ExitCode> {
    let mut c = api.connect().await?;
    let req = pb::SetLinkTopicsRequest {
        name: name.to_string(),
        topics: Some(pb::TopicSelection { include, exclude }),
        request_id: a.request_id.clone().unwrap_or_default(),
        expected_revision: a.expected_revision,
    };
    let r = c
        .topology
        .set_link_topics(req)
        .await
        .map_err(|s| status_error("SetLinkTopics", s))?
        .into_inner();
    let code = report(&format!("set the topics of link {name}"), &r);
    settled(&mut c, &r, wait).await?;
    Ok(code)
}

/// With `wait`, waits until the change `r` answered has settled; without, says how to.
pub(super) async fn settled(
    c: &mut super::Clients,
    r: &pb::ChangeResponse,
    wait: bool,
) -> anyhow::Result<()> {
    if wait {
        return wait_settled(c, r, None).await;
    }
    println!(
        "the change settles once `TopologySettled` is recorded (duplex events --follow, or --wait)"
    );
    Ok(())
}

/// Waits until the change `r` answered has settled (`TopologySettled`), saying when
/// `removed` drained (`LinkRemoved`).
async fn wait_settled(
    c: &mut super::Clients,
    r: &pb::ChangeResponse,
    removed: Option<&str>,
) -> anyhow::Result<()> {
    // It may have settled before the answer: watch from the change's first event. A
    // call that recorded nothing (a replay, or a link that drains already) watches from
    // the revision it answered, once the topology says a change still settles.
    let from = match r.events.first() {
        Some(&seq) => seq,
        None => {
            let t = c
                .topology
                .get_topology(pb::GetTopologyRequest::default())
                .await
                .map_err(|s| status_error("GetTopology", s))?
                .into_inner();
            if t.settling.is_empty() {
                println!("the change has settled");
                return Ok(());
            }
            r.revision + 1
        }
    };
    let mut stream = super::events::watch(c, from).await?;
    while let Some(e) = stream.next().await {
        let e = e.map_err(|s| status_error("WatchEvents", s))?;
        match &e.payload {
            Some(pb::event::Payload::LinkRemoved(l)) if Some(l.link.as_str()) == removed => {
                println!("link {} drained and retired (event {})", l.link, e.sequence);
            }
            Some(pb::event::Payload::TopologySettled(s)) => {
                println!(
                    "the change (event {}) settled: drained, and every origin's order restored (event {})",
                    s.change, e.sequence
                );
                return Ok(());
            }
            _ => {}
        }
    }
    anyhow::bail!("the event stream ended before the change settled (is the service stopping?)")
}
