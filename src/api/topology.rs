//! `duplex.v1.TopologyService`: the mesh read from the state and the engine; pause and
//! resume as commands.

use std::sync::atomic::Ordering::Relaxed;

use duplex_proto::v1 as pb;
use duplex_sync::control::{FlowState, FlowView};
use duplex_sync::engine::routes;
use tonic::{Request, Response, Status};

use super::auth::operator;
use super::keyed::command;
use super::{Api, Ready, required};
use crate::state::fold::flows_of;
use crate::state::{Command, CommandError, Payload, State};

/// The service.
#[derive(Debug)]
pub struct Topology(pub Ready);

/// A flow's state as the API names it.
pub fn state_pb(s: &FlowState) -> pb::FlowState {
    match s {
        FlowState::Starting => pb::FlowState::Starting,
        FlowState::Running => pb::FlowState::Running,
        FlowState::Pausing => pb::FlowState::Pausing,
        FlowState::Paused => pb::FlowState::Paused,
        FlowState::Restarting(_) => pb::FlowState::Restarting,
        FlowState::Faulted(_) => pb::FlowState::Faulted,
        FlowState::Stopped => pb::FlowState::Stopped,
    }
}

fn flow_pb(api: &Api, f: &FlowView) -> pb::Flow {
    let m = &f.metrics;
    let (rps, bps) = api.rates.of(&f.name);
    pb::Flow {
        name: f.name.clone(),
        link: f.link.clone(),
        source: f.source.clone(),
        target: f.target.clone(),
        state: state_pb(&f.status.state) as i32,
        paused: f.paused,
        error: f.status.state.error().unwrap_or_default().to_string(),
        state_since: Some(f.status.since.into()),
        counters: Some(pb::FlowCounters {
            forwarded: m.forwarded.load(Relaxed),
            forwarded_bytes: m.forwarded_bytes.load(Relaxed),
            not_forwarded: m.not_forwarded.load(Relaxed),
            loop_stopped: m.loop_stopped.load(Relaxed),
            lag: m.lag.load(Relaxed),
            lag_unknown_partitions: m.lag_unknown.load(Relaxed),
            partitions: m.partitions.load(Relaxed),
            partitions_waiting: m.partitions_waiting.load(Relaxed),
            partitions_held: m.partitions_held.load(Relaxed),
            restarts: m.restarts.load(Relaxed),
            forwarded_per_second: rps,
            forwarded_bytes_per_second: bps,
            target_topics_wider: m.wider_targets.lock().expect("metrics lock").len() as i64,
            source_topics_deleted: m.deleted_sources.lock().expect("metrics lock").len() as i64,
            topic_config_changes: m.topic_config_changes.load(Relaxed),
            topic_config_errors: m.topic_config_errors.load(Relaxed),
            acls_created: m.acls_created.load(Relaxed),
            acl_errors: m.acl_errors.load(Relaxed),
            resume_scanned_records: m.resume_scanned_records.load(Relaxed),
        }),
    }
}

fn topic_routes(api: &Api, state: &State, topic: &str) -> pb::TopicRoutes {
    let spec = &api.engine.spec();
    let table = routes(spec);
    let ids = table.ids();
    let topology = table.topology(topic);
    let links = spec
        .links
        .iter()
        .filter(|l| l.topics.selects(topic))
        .map(|l| l.name.clone())
        .collect();
    let parts = table
        .parts(topic)
        .into_iter()
        .map(|p| pb::ClusterGroup {
            clusters: p.into_iter().map(|i| ids[i].clone()).collect(),
        })
        .collect();
    let mut flows = Vec::new();
    for l in &state.topology.links {
        let ends = l.clusters.clone().map(|c| ids.iter().position(|i| *i == c));
        let [Some(a), Some(b)] = ends else { continue };
        for (s, t) in [(a, b), (b, a)] {
            let origins: Vec<String> = topology
                .origins_forwarded(s, t)
                .into_iter()
                .map(|o| ids[o].clone())
                .collect();
            if !origins.is_empty() {
                flows.push(pb::FlowRoute {
                    flow: format!("{}->{}", ids[s], ids[t]),
                    origins,
                });
            }
        }
    }
    pb::TopicRoutes {
        topic: topic.to_string(),
        links,
        parts,
        flows,
    }
}

impl Topology {
    /// Records the pause (or resume) of `flows` as one command, asks the engine, and
    /// answers once each flow took the change (or a later command changed it again).
    async fn change(
        &self,
        cmd: Command,
        flows: Vec<String>,
        pause: bool,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let api = self.0.get()?;
        let out = api.store.execute(&cmd, |state| {
            let mut payloads = Vec::new();
            for flow in &flows {
                let link = state
                    .link_of_flow(flow)
                    .ok_or_else(|| CommandError::NotFound(format!("no flow {flow:?}")))?
                    .name
                    .clone();
                let flow = flow.clone();
                let paused = state.paused.contains(&flow);
                // A faulted flow is resumed too: an operator's retry, worth recording.
                let faulted = api
                    .engine
                    .flow(&flow)
                    .is_some_and(|f| matches!(f.status.state, FlowState::Faulted(_)));
                match (pause, paused) {
                    (true, false) => payloads.push(Payload::FlowPaused { flow, link }),
                    (false, true) => payloads.push(Payload::FlowResumed { flow, link }),
                    (false, false) if faulted => payloads.push(Payload::FlowResumed { flow, link }),
                    _ => {}
                }
            }
            Ok(payloads)
        })?;
        // A replay waits like the first call (which may still be draining); a change a
        // later command has overtaken answers at once (see `EngineHandle::wait_paused`).
        // A shutdown ends the wait: the change is recorded and applies at the next start.
        let waits = async {
            for flow in &flows {
                if pause {
                    api.engine.wait_paused(flow).await?;
                } else {
                    api.engine.wait_started(flow).await?;
                }
            }
            Ok(())
        };
        tokio::select! {
            r = waits => r.map_err(super::error::control)?,
            _ = api.stop.cancelled() => return Err(super::error::shutting_down(cmd.method)),
        }
        Ok(Response::new(pb::ChangeResponse {
            events: out.events,
            revision: out.revision,
            replayed: out.replayed,
        }))
    }

    fn flow_command(
        &self,
        req: &Request<pb::FlowChangeRequest>,
        method: &'static str,
    ) -> Result<(Command, Vec<String>), Status> {
        let actor = operator(req, method)?;
        let api = self.0.get()?;
        let r = req.get_ref();
        let flow = required("flow", &r.flow)?.to_string();
        let link = api
            .store
            .with_state(|s| s.link_of_flow(&flow).map(|l| format!("link:{}", l.name)))
            .ok_or_else(|| {
                Status::not_found(format!("no flow {flow:?} (flows are named source->target)"))
            })?;
        let cmd = command(method, actor, r, vec![format!("flow:{flow}"), link]);
        Ok((cmd, vec![flow]))
    }

    fn link_command(
        &self,
        req: &Request<pb::LinkChangeRequest>,
        method: &'static str,
    ) -> Result<(Command, Vec<String>), Status> {
        let actor = operator(req, method)?;
        let api = self.0.get()?;
        let r = req.get_ref();
        let name = required("link", &r.link)?;
        let flows = api
            .store
            .with_state(|s| s.link(name).map(|l| flows_of(l).to_vec()))
            .ok_or_else(|| Status::not_found(format!("no link {name:?}")))?;
        let mut touches = vec![format!("link:{name}")];
        touches.extend(flows.iter().map(|f| format!("flow:{f}")));
        let cmd = command(method, actor, r, touches);
        Ok((cmd, flows))
    }
}

#[tonic::async_trait]
impl pb::topology_service_server::TopologyService for Topology {
    async fn get_topology(
        &self,
        req: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::Topology>, Status> {
        let api = self.0.get()?;
        let state = api.store.state();
        let views = api.engine.flows();
        let mut shown = state.topology.clone();
        shown.links.extend(state.draining.iter().cloned());
        let (clusters, mut links) = super::events::topology_pb(&shown);
        for (link, record) in links.iter_mut().zip(&shown.links) {
            link.draining = state.draining_link(&record.name).is_some();
            if link.draining {
                link.drain_status = api.engine.drain_status().unwrap_or_default();
            }
            link.flows = flows_of(record)
                .iter()
                .filter_map(|f| views.iter().find(|v| v.name == *f))
                .map(|v| flow_pb(api, v))
                .collect();
        }
        let asked = &req.get_ref().route_topics;
        if asked.len() > super::MAX_ROUTE_TOPICS {
            return Err(super::error::invalid(
                "route_topics",
                format!(
                    "asks for {} topics; at most {} at a time",
                    asked.len(),
                    super::MAX_ROUTE_TOPICS
                ),
            ));
        }
        let mut routes = Vec::new();
        for (i, topic) in asked.iter().enumerate() {
            super::topic_name(&format!("route_topics[{i}]"), topic)?;
            routes.push(topic_routes(api, &state, topic));
        }
        let settling = match state.settling {
            Some(seq) => format!(
                "change {seq}: {}",
                api.engine
                    .drain_status()
                    .unwrap_or_else(|| "starting".into())
            ),
            None => String::new(),
        };
        Ok(Response::new(pb::Topology {
            clusters,
            links,
            routes,
            revision: state.revision,
            settling,
        }))
    }

    async fn pause_flow(
        &self,
        req: Request<pb::FlowChangeRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let (cmd, flows) = self.flow_command(&req, "PauseFlow")?;
        self.change(cmd, flows, true).await
    }

    async fn resume_flow(
        &self,
        req: Request<pb::FlowChangeRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let (cmd, flows) = self.flow_command(&req, "ResumeFlow")?;
        self.change(cmd, flows, false).await
    }

    async fn pause_link(
        &self,
        req: Request<pb::LinkChangeRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let (cmd, flows) = self.link_command(&req, "PauseLink")?;
        self.change(cmd, flows, true).await
    }

    async fn resume_link(
        &self,
        req: Request<pb::LinkChangeRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let (cmd, flows) = self.link_command(&req, "ResumeLink")?;
        self.change(cmd, flows, false).await
    }

    async fn add_link(
        &self,
        req: Request<pb::AddLinkRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        super::links::add_link(self.0.get()?, req).await
    }

    async fn remove_link(
        &self,
        req: Request<pb::RemoveLinkRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        super::links::remove_link(self.0.get()?, req).await
    }

    async fn set_link_topics(
        &self,
        req: Request<pb::SetLinkTopicsRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        super::links::set_link_topics(self.0.get()?, req).await
    }

    async fn add_cluster(
        &self,
        req: Request<pb::AddClusterRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        super::clusters::add_cluster(self.0.get()?, req).await
    }
}
