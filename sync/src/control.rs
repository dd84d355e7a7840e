//! Operators' control of a running engine: pause and resume flows, and what each flow
//! is doing now.
//!
//! The engine knows nothing of the API or of the event log: the service records a
//! command first, then asks the handle to apply it, and the handle answers once the
//! change took effect. Pausing is a stop like a shutdown's (the reader stops, what is
//! in flight is awaited, positions are committed), and resuming is a start like any
//! restart's, from what the target holds: the delivery argument of docs/delivery.md
//! covers both, and a record's walk from consume to produce is untouched.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio::sync::{Notify, mpsc, watch};

use crate::metrics::FlowMetrics;

/// What a flow is doing, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowState {
    /// Building its clients and listing the source's topics.
    Starting,
    /// Replicating (its first listing of the source is done).
    Running,
    /// Asked to pause: draining what it has in flight and committing.
    Pausing,
    /// Paused by an operator.
    Paused,
    /// Stopped by a retriable error, waiting to start again.
    Restarting(String),
    /// Stopped for good by an error that needs an operator.
    Faulted(String),
    /// Stopped because the engine is shutting down.
    Stopped,
}

impl FlowState {
    /// The error behind `Restarting` or `Faulted`.
    pub fn error(&self) -> Option<&str> {
        match self {
            FlowState::Restarting(e) | FlowState::Faulted(e) => Some(e),
            _ => None,
        }
    }

    /// A short lower-case name: `running`, `paused`, ...
    pub fn name(&self) -> &'static str {
        match self {
            FlowState::Starting => "starting",
            FlowState::Running => "running",
            FlowState::Pausing => "pausing",
            FlowState::Paused => "paused",
            FlowState::Restarting(_) => "restarting",
            FlowState::Faulted(_) => "faulted",
            FlowState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for FlowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error() {
            Some(e) => write!(f, "{}: {e}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// A flow's state and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStatus {
    /// The state.
    pub state: FlowState,
    /// When it was entered.
    pub since: SystemTime,
}

/// A flow's state changed: what the service records as an event.
#[derive(Debug, Clone)]
pub struct Transition {
    /// `source->target`.
    pub flow: String,
    /// The new status.
    pub status: FlowStatus,
}

/// What an operator asked of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Desired {
    /// Stay stopped until resumed.
    pub paused: bool,
    /// Bumped by every resume: a faulted flow starts again when it changes.
    pub resumes: u64,
    /// Stopped while a topology change is applied (engine/change.rs): like a pause,
    /// but the engine's, not an operator's, and lifted by the change itself.
    pub held: bool,
    /// Stopped for good: its link was removed and its drain is over (engine/settle.rs).
    pub retired: bool,
}

impl Desired {
    /// Whether the flow should be stopped: paused by an operator, held for a change or
    /// retired.
    pub fn stopped(&self) -> bool {
        self.paused || self.held || self.retired
    }
}

/// Where a flow's state is kept and announced.
#[derive(Debug, Clone)]
pub(crate) struct StatusCell {
    flow: String,
    pub(crate) status: Arc<watch::Sender<FlowStatus>>,
    transitions: mpsc::UnboundedSender<Transition>,
    /// Wakes the engine, which stops when every flow has faulted.
    any_change: Arc<Notify>,
}

impl StatusCell {
    /// Enters `state` (nothing happens if the flow is in it already).
    pub(crate) fn set(&self, state: FlowState) {
        let changed = self.status.send_if_modified(|s| {
            if s.state == state {
                return false;
            }
            *s = FlowStatus {
                state: state.clone(),
                since: SystemTime::now(),
            };
            true
        });
        if changed {
            // The service may not listen (tests, benches): then nobody needs to know.
            let _ = self.transitions.send(Transition {
                flow: self.flow.clone(),
                status: self.status.borrow().clone(),
            });
            self.any_change.notify_one();
        }
    }

    /// Starting → Running, once the first listing of this run is done.
    pub(crate) fn set_running(&self) {
        if self.status.borrow().state == FlowState::Starting {
            self.set(FlowState::Running);
        }
    }

    pub(crate) fn get(&self) -> FlowState {
        self.status.borrow().state.clone()
    }
}

/// One flow's controls, shared by its supervisor and the handle.
#[derive(Debug)]
pub(crate) struct FlowControl {
    pub link: String,
    pub source: String,
    pub target: String,
    pub desired: watch::Sender<Desired>,
    pub status: StatusCell,
    pub metrics: Arc<FlowMetrics>,
    /// How far the target acknowledged each source partition (the drain of a removed
    /// link waits on it).
    pub acknowledged: Acknowledged,
}

/// Per source partition of one flow, the position below which every record is on the
/// target or was passed over by routing: the acker's positions, published at each of
/// its commits, forgotten when a run starts. A partition the run has not started is
/// absent.
#[derive(Debug, Default, Clone)]
pub(crate) struct Acknowledged(Arc<Mutex<HashMap<String, HashMap<i32, i64>>>>);

impl Acknowledged {
    /// Publishes positions (topic, partition, next offset).
    pub(crate) fn publish<'a>(&self, positions: impl Iterator<Item = (&'a str, i32, i64)>) {
        let mut m = self.0.lock().expect("acknowledged lock");
        for (t, p, next) in positions {
            match m.get_mut(t) {
                Some(parts) => {
                    parts.insert(p, next);
                }
                None => {
                    m.insert(t.to_string(), HashMap::from([(p, next)]));
                }
            }
        }
    }

    /// Forgets every position: a new run of the flow starts from what the target holds,
    /// which may be below what an earlier run acknowledged (a target truncated).
    pub(crate) fn clear(&self) {
        self.0.lock().expect("acknowledged lock").clear();
    }

    /// The acknowledged position of a partition, once the flow started it.
    pub(crate) fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        let m = self.0.lock().expect("acknowledged lock");
        m.get(topic)?.get(&partition).copied()
    }
}

/// The flows of an engine by name, shared by the engine and its handles.
pub(crate) type FlowMap = Arc<RwLock<BTreeMap<String, Arc<FlowControl>>>>;

/// Every flow's controls now.
pub(crate) fn every_flow(flows: &FlowMap) -> Vec<Arc<FlowControl>> {
    flows
        .read()
        .expect("flows lock")
        .values()
        .cloned()
        .collect()
}

/// Builds the controls of an engine's flows.
#[derive(Debug, Clone)]
pub(crate) struct Controls {
    pub flows: FlowMap,
    pub transitions: mpsc::UnboundedSender<Transition>,
    pub any_change: Arc<Notify>,
}

impl Controls {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Transition>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let c = Controls {
            flows: FlowMap::default(),
            transitions: tx,
            any_change: Arc::new(Notify::new()),
        };
        (c, rx)
    }

    pub(crate) fn add(
        &self,
        flow: &str,
        link: &str,
        ends: (&str, &str),
        paused: bool,
        metrics: Arc<FlowMetrics>,
    ) -> Arc<FlowControl> {
        let initial = if paused {
            FlowState::Paused
        } else {
            FlowState::Starting
        };
        let (status, _) = watch::channel(FlowStatus {
            state: initial,
            since: SystemTime::now(),
        });
        let (desired, _) = watch::channel(Desired {
            paused,
            ..Desired::default()
        });
        let ctl = Arc::new(FlowControl {
            link: link.to_string(),
            source: ends.0.to_string(),
            target: ends.1.to_string(),
            desired,
            acknowledged: Acknowledged::default(),
            status: StatusCell {
                flow: flow.to_string(),
                status: Arc::new(status),
                transitions: self.transitions.clone(),
                any_change: self.any_change.clone(),
            },
            metrics,
        });
        self.flows
            .write()
            .expect("flows lock")
            .insert(flow.to_string(), ctl.clone());
        ctl
    }
}

/// A flow as the handle shows it.
#[derive(Debug, Clone)]
pub struct FlowView {
    /// `source->target`.
    pub name: String,
    /// Its link.
    pub link: String,
    /// Source cluster id.
    pub source: String,
    /// Target cluster id.
    pub target: String,
    /// Observed.
    pub status: FlowStatus,
    /// Asked for: paused by an operator.
    pub paused: bool,
    /// Its counters.
    pub metrics: Arc<FlowMetrics>,
}

/// Why the handle could not apply a change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    /// No flow of that name.
    #[error("no flow {0:?}")]
    UnknownFlow(String),
    /// The engine stopped before the change took effect.
    #[error("the engine stopped before flow {0:?} could change")]
    Stopped(String),
}

/// Controls a running engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    pub(crate) flows: FlowMap,
    /// What a topology change needs (engine/change.rs).
    pub(crate) engine: Arc<crate::engine::Shared>,
}

impl EngineHandle {
    /// Every flow, by name.
    pub fn flows(&self) -> Vec<FlowView> {
        self.flows
            .read()
            .expect("flows lock")
            .iter()
            .map(|(name, c)| FlowView {
                name: name.clone(),
                link: c.link.clone(),
                source: c.source.clone(),
                target: c.target.clone(),
                status: c.status.status.borrow().clone(),
                paused: c.desired.borrow().paused,
                metrics: c.metrics.clone(),
            })
            .collect()
    }

    /// One flow's view.
    pub fn flow(&self, name: &str) -> Option<FlowView> {
        self.flows().into_iter().find(|f| f.name == name)
    }

    pub(crate) fn control(&self, flow: &str) -> Result<Arc<FlowControl>, ControlError> {
        self.flows
            .read()
            .expect("flows lock")
            .get(flow)
            .cloned()
            .ok_or_else(|| ControlError::UnknownFlow(flow.to_string()))
    }

    /// Pauses a flow and returns once it has stopped: its deliveries awaited (up to the
    /// drain timeout) and its positions committed.
    pub async fn pause(&self, flow: &str) -> Result<(), ControlError> {
        self.ask_pause(flow)?;
        self.wait_paused(flow).await
    }

    /// Resumes a paused (or faulted) flow and returns once it is starting.
    pub async fn resume(&self, flow: &str) -> Result<(), ControlError> {
        self.ask_resume(flow)?;
        self.wait_started(flow).await
    }

    /// Asks a flow to pause, without waiting (the service asks under its writer's lock,
    /// in log order, and waits outside it).
    pub fn ask_pause(&self, flow: &str) -> Result<(), ControlError> {
        self.control(flow)?
            .desired
            .send_if_modified(|d| !std::mem::replace(&mut d.paused, true));
        Ok(())
    }

    /// Asks a paused flow to resume, or a faulted one to start again, without waiting.
    /// A running flow is left alone.
    pub fn ask_resume(&self, flow: &str) -> Result<(), ControlError> {
        let c = self.control(flow)?;
        let faulted = matches!(c.status.get(), FlowState::Faulted(_));
        c.desired.send_if_modified(|d| {
            if !d.paused && !faulted {
                return false;
            }
            d.paused = false;
            d.resumes += 1;
            true
        });
        Ok(())
    }

    /// Returns once the flow is paused, or once it is no longer asked to be (a later
    /// resume superseded the pause: waiting on would wait for what nobody wants).
    pub async fn wait_paused(&self, flow: &str) -> Result<(), ControlError> {
        let c = self.control(flow)?;
        self.wait(
            flow,
            &c,
            |s| matches!(s.state, FlowState::Paused),
            |d| d.paused,
        )
        .await
    }

    /// Returns once the flow is neither paused nor pausing, nor faulted since before
    /// this call (it may be starting, running, restarting after a retriable error, or
    /// faulted again after it started); or once a later pause superseded the resume.
    pub async fn wait_started(&self, flow: &str) -> Result<(), ControlError> {
        let c = self.control(flow)?;
        let asked = SystemTime::now();
        self.wait(
            flow,
            &c,
            |s| match s.state {
                FlowState::Paused | FlowState::Pausing => false,
                FlowState::Faulted(_) => s.since > asked,
                _ => true,
            },
            |d| !d.paused,
        )
        .await
    }

    async fn wait(
        &self,
        flow: &str,
        c: &FlowControl,
        done: impl Fn(&FlowStatus) -> bool,
        still_asked: impl Fn(&Desired) -> bool,
    ) -> Result<(), ControlError> {
        let mut rx = c.status.status.subscribe();
        let mut desired = c.desired.subscribe();
        loop {
            if !still_asked(&desired.borrow_and_update()) {
                return Ok(());
            }
            let status = rx.borrow_and_update().clone();
            if done(&status) {
                return Ok(());
            }
            if status.state == FlowState::Stopped {
                return Err(ControlError::Stopped(flow.to_string()));
            }
            // The senders live as long as the controls; the engine keeps them.
            let changed = tokio::select! {
                r = rx.changed() => r,
                r = desired.changed() => r,
            };
            if changed.is_err() {
                return Err(ControlError::Stopped(flow.to_string()));
            }
        }
    }
}
