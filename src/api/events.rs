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

/// One ListEvents page: up to `size` events of the types `wanted`, from `from`, read
/// through `read(from, n)` (up to `n` events of the log from `from`), looking at no more
/// than [`SCAN`] events. Returns the events and the sequence number of the first event
/// not looked at. Without types it reads just the page; with types, larger reads.
fn page<E>(
    read: impl Fn(u64, usize) -> Result<Vec<Event>, E>,
    from: u64,
    size: usize,
    wanted: &Types,
) -> Result<(Vec<Event>, u64), E> {
    let (mut events, mut next, mut scanned) = (Vec::new(), from, 0);
    while events.len() < size && scanned < SCAN {
        let n = if wanted.0.is_empty() {
            size - events.len()
        } else {
            PAGE.1 as usize
        };
        let read = read(next, n.min(SCAN - scanned))?;
        if read.is_empty() {
            break;
        }
        for e in read {
            if events.len() == size {
                break;
            }
            next = e.seq + 1;
            scanned += 1;
            if wanted.matches(&e) {
                events.push(e);
            }
        }
    }
    Ok((events, next))
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
        let revision = api.store.revision();
        let (events, next) = page(
            |from, n| api.store.read(from, n),
            r.from_sequence.max(1),
            size as usize,
            &wanted,
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of `n` events: a `FlowPaused` at every thousandth, `FlowStateChanged` else.
    fn log(n: u64) -> Vec<Event> {
        (1..=n)
            .map(|seq| Event {
                seq,
                time_ms: 0,
                actor: "service".into(),
                request_id: None,
                v: 1,
                payload: if seq % 1000 == 0 {
                    Payload::FlowPaused {
                        flow: "a->b".into(),
                        link: "a-b".into(),
                    }
                } else {
                    Payload::FlowStateChanged {
                        flow: "a->b".into(),
                        state: "running".into(),
                        error: None,
                    }
                },
            })
            .collect()
    }

    fn reader(log: &[Event]) -> impl Fn(u64, usize) -> Result<Vec<Event>, ()> + '_ {
        |from, n| {
            let at = (from as usize - 1).min(log.len());
            Ok(log[at..(at + n).min(log.len())].to_vec())
        }
    }

    #[test]
    fn a_filtered_page_stops_after_looking_at_scan_events_and_goes_on_from_there() {
        let log = log(25_500);
        let paused = Types::parse(&["FlowPaused".into()]).unwrap();
        let mut from = 1;
        let mut got = Vec::new();
        let mut pages = 0;
        loop {
            let (events, next) = page(reader(&log), from, 1000, &paused).unwrap();
            pages += 1;
            assert!(next - from <= SCAN as u64, "looked at {}", next - from);
            got.extend(events.iter().map(|e| e.seq));
            if next > log.len() as u64 {
                break;
            }
            from = next;
        }
        assert_eq!(got, (1..=25).map(|i| i * 1000).collect::<Vec<_>>());
        assert_eq!(pages, 3, "10,000 events looked at per call");
        // A page that comes back empty while later events match: 1,001 to 1,999 hold
        // none, and a page looking at 999 events stops at 2,000.
        let (events, next) = page(reader(&log[..1999]), 1001, 10, &paused).unwrap();
        assert!(events.is_empty());
        assert_eq!(next, 2000);
    }

    #[test]
    fn without_types_a_page_is_the_next_events_and_reads_no_more() {
        let log = log(2500);
        let reads = std::cell::Cell::new(0);
        let counting = |from, n| {
            reads.set(reads.get() + n);
            reader(&log)(from, n)
        };
        let (events, next) = page(counting, 7, 100, &Types::default()).unwrap();
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (7..107).collect::<Vec<_>>()
        );
        assert_eq!((next, reads.get()), (107, 100));
        let (events, next) = page(reader(&log), 2490, 100, &Types::default()).unwrap();
        assert_eq!((events.len(), next), (11, 2501));
        let (events, next) = page(reader(&log), 9000, 100, &Types::default()).unwrap();
        assert_eq!((events.len(), next), (0, 9000), "past the end");
    }

    /// Every payload type is a type a client can ask for: serde names the variants of
    /// `Payload` when it meets an unknown one, and they must be `TYPE_NAMES`.
    #[test]
    fn the_type_names_are_every_payload_type() {
        let err = serde_json::from_value::<Payload>(serde_json::json!({"type": "?"}))
            .unwrap_err()
            .to_string();
        let listed = err
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{err}"));
        let mut names: Vec<&str> = listed
            .split(", ")
            .map(|n| n.trim().trim_matches(|c| c == '`' || c == '.'))
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        let mut known = Payload::TYPE_NAMES.to_vec();
        known.sort();
        assert_eq!(names, known, "{err}");
    }
}
