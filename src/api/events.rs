//! `duplex.v1.EventService`: pages of the log, and watches that catch up then go live.

use std::pin::Pin;

use duplex_proto::v1 as pb;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Ready;
use crate::state::events::Event;
use crate::state::watch::watch;
use crate::state::{Payload, fold::Topology};

/// The service.
#[derive(Debug)]
pub struct Events(pub Ready);

/// Default and largest page of ListEvents.
const PAGE: (u32, u32) = (100, 1000);
/// Events one ListEvents call looks at, at most, for a page of the types asked.
const SCAN: usize = 10_000;
/// Events buffered per watch before the stream waits for its client.
const WATCH_BUFFER: usize = 256;

/// The clusters and links of a topology as the API shows them (links without flows).
pub fn topology_pb(t: &Topology) -> (Vec<pb::Cluster>, Vec<pb::Link>) {
    let clusters = t
        .clusters
        .iter()
        .map(|c| pb::Cluster {
            id: c.id.clone(),
            bootstrap_servers: c.bootstrap_servers.clone(),
        })
        .collect();
    let links = t
        .links
        .iter()
        .map(|l| pb::Link {
            name: l.name.clone(),
            clusters: l.clusters.to_vec(),
            topics: Some(pb::TopicSelection {
                include: l.include.clone(),
                exclude: l.exclude.clone(),
            }),
            flows: Vec::new(),
            draining: false,
            drain_status: String::new(),
        })
        .collect();
    (clusters, links)
}

/// A recorded state name (`FlowState::name`) as the API's enum: `FLOW_STATE_<NAME>`.
fn flow_state_pb(name: &str) -> pb::FlowState {
    pb::FlowState::from_str_name(&format!("FLOW_STATE_{}", name.to_ascii_uppercase()))
        .unwrap_or(pb::FlowState::Unspecified)
}

/// An event as the API shows it.
pub fn event_pb(e: &Event) -> pb::Event {
    use pb::event::Payload as P;
    let payload = match &e.payload {
        Payload::ServiceStarted {
            version,
            config_file,
        } => P::ServiceStarted(pb::ServiceStarted {
            version: version.clone(),
            config_file: config_file.clone(),
        }),
        Payload::ConfigApplied {
            digest,
            clusters,
            links,
            changes,
        } => {
            let (clusters, links) = topology_pb(&Topology {
                digest: digest.clone(),
                clusters: clusters.clone(),
                links: links.clone(),
            });
            P::ConfigApplied(pb::ConfigApplied {
                digest: digest.clone(),
                clusters,
                links,
                changes: changes.clone(),
            })
        }
        Payload::TopologyChanged {
            links,
            changes,
            cut,
            clusters_added,
        } => {
            let (clusters_added, links) = topology_pb(&Topology {
                links: links.clone(),
                clusters: clusters_added.clone(),
                ..Topology::default()
            });
            P::TopologyChanged(pb::TopologyChanged {
                links,
                clusters_added,
                changes: changes.clone(),
                cut: cut
                    .iter()
                    .map(|c| pb::TopicCut {
                        topic: c.topic.clone(),
                        cluster: c.cluster.clone(),
                        ends: c.ends.clone(),
                    })
                    .collect(),
            })
        }
        Payload::LinkRemoved { link } => P::LinkRemoved(pb::LinkRemoved { link: link.clone() }),
        Payload::TopologySettled { change } => {
            P::TopologySettled(pb::TopologySettled { change: *change })
        }
        Payload::FlowPaused { flow, link } => P::FlowPaused(pb::FlowPaused {
            flow: flow.clone(),
            link: link.clone(),
        }),
        Payload::FlowResumed { flow, link } => P::FlowResumed(pb::FlowResumed {
            flow: flow.clone(),
            link: link.clone(),
        }),
        Payload::FlowStateChanged { flow, state, error } => {
            P::FlowStateChanged(pb::FlowStateChanged {
                flow: flow.clone(),
                state: flow_state_pb(state) as i32,
                error: error.clone().unwrap_or_default(),
            })
        }
        Payload::VerificationStarted {
            between,
            topics,
            report_dir,
        } => P::VerificationStarted(pb::VerificationStarted {
            between: between.clone(),
            topics: topics.clone(),
            report_dir: report_dir.clone(),
        }),
        Payload::VerificationCancelRequested { verification } => {
            P::VerificationCancelRequested(pb::VerificationCancelRequested {
                verification: *verification,
            })
        }
        Payload::VerificationFinished {
            verification,
            outcome,
            totals,
            error,
        } => P::VerificationFinished(pb::VerificationFinished {
            verification: *verification,
            state: super::verification::outcome_pb(*outcome) as i32,
            totals: totals.as_ref().map(super::verification::counts_pb),
            error: error.clone().unwrap_or_default(),
        }),
        Payload::GroupOffsetsSynced { sync } => P::GroupOffsetsSynced(pb::GroupOffsetsSynced {
            sync: Some(super::offsets::sync_pb(sync, 0)),
        }),
    };
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.time_ms.max(0) as u64);
    pb::Event {
        sequence: e.seq,
        time: Some(time.into()),
        actor: e.actor.clone(),
        request_id: e.request_id.clone().unwrap_or_default(),
        r#type: e.payload.type_name().to_string(),
        version: e.v,
        payload: Some(payload),
    }
}

/// The event types a ListEvents or WatchEvents call asks for (`types`): none, every one.
#[derive(Debug, Clone, Default)]
struct Types(Vec<&'static str>);

impl Types {
    /// The types asked, each checked against the log's types: an unknown one (a typo
    /// would otherwise match nothing, silently) is refused, naming it and the known ones.
    fn parse(types: &[String]) -> Result<Types, Status> {
        let mut out = Vec::new();
        for t in types {
            let known = Payload::TYPE_NAMES.iter().find(|n| **n == t.as_str());
            let Some(known) = known else {
                return Err(super::error::invalid(
                    "types",
                    format!(
                        "no event type {t:?}; the types are {}",
                        Payload::TYPE_NAMES.join(", ")
                    ),
                ));
            };
            out.push(*known);
        }
        Ok(Types(out))
    }

    fn matches(&self, e: &Event) -> bool {
        self.0.is_empty() || self.0.contains(&e.payload.type_name())
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl pb::event_service_server::EventService for Events {
    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let api = self.0.get()?;
        let r = req.into_inner();
        // AIP-158: a page size above the largest is served as the largest.
        let size = match r.page_size {
            0 => PAGE.0,
            n => n.min(PAGE.1),
        };
        let wanted = Types::parse(&r.types)?;
        let size = size as usize;
        let revision = api.store.revision();
        // Pages of the log until the page asked for is full, the log ends or SCAN events
        // were looked at; `next` is the first event not looked at.
        let (mut events, mut next, mut scanned) = (Vec::new(), r.from_sequence.max(1), 0);
        'scan: while scanned < SCAN {
            let page = api.store.read(next, PAGE.1 as usize)?;
            if page.is_empty() {
                break;
            }
            for e in page {
                if events.len() == size {
                    break 'scan;
                }
                next = e.seq + 1;
                scanned += 1;
                if wanted.matches(&e) {
                    events.push(e);
                }
            }
        }
        Ok(Response::new(pb::ListEventsResponse {
            events: events.iter().map(event_pb).collect(),
            next_sequence: next,
            revision,
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let api = self.0.get()?;
        let wanted = Types::parse(&req.get_ref().types)?;
        let rx = watch(
            api.store.clone(),
            req.get_ref().from_sequence,
            WATCH_BUFFER,
            api.stop.clone(),
            &api.tasks,
        );
        let stream = ReceiverStream::new(rx)
            .filter(move |r| std::future::ready(r.as_ref().map_or(true, |e| wanted.matches(e))))
            .map(|r| r.map(|e| event_pb(&e)).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}
