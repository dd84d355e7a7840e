//! After a topology change: the drain of the routes before it, the retirement of
//! removed links, and order restored (docs/topology-changes.md, "The drain is more than
//! one round" and "Order across a change").
//!
//! After a change's cut, a removed link's flows run on: routed by the tree before the
//! change below the cut and by nothing after it. A record below the cut that the old
//! tree sends on may still be upstream, on a cluster whose flow had not read it when the
//! cut was taken, so the drain runs in rounds. Round k ends when every flow has
//! acknowledged, on every partition of its source, the end offsets read when round k−1
//! ended (round 0's are the cut). A copy of a record below the cut that exists when
//! round k ends lies below that round's ends on its cluster, so the next round carries it
//! one hop further down its old tree: after as many rounds as an old tree can be deep
//! (fewer than the number of clusters), every record below the cut is wherever the old
//! tree sends it. Then the removed links' flows retire.
//!
//! Meanwhile a flow that carries an origin to its target only since the change defers
//! that origin's records past the cut (`Decision::Deferred`), so they cannot overtake the
//! origin's older records still on their old path. Once the drain is over, every flow is
//! held, the ends are read, and the flows start again with the change `Rewinding`: those
//! that deferred read their source again from its end at the cut and forward what they
//! deferred, passing over what the target already holds (flow/marks.rs). When each has
//! acknowledged those ends, the flows are held once more (their positions committed past
//! what they read again) and the change is settled. A paused or faulted flow holds the
//! drain and the settling, as it holds records owed. No other change is applied
//! meanwhile (this keeps the engine's one-change-at-a-time lock). A restart with the
//! change not settled starts over from the cut: the rounds only ask for positions, and
//! reading again passes over what the targets hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;
use tracing::{info, warn};

use super::Shared;
use super::change::{hold_every_flow, read_cut};
use crate::control::{FlowControl, FlowState, every_flow};
use crate::routing::{Settling, TopologyCut};
use crate::spec::EngineSpec;

/// How often a round that waits says what it waits for.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Settles the last change from `cut` on (`None`: no cut is known, so the ends read now
/// stand in for it, which asks for more, never less): drains the routes before it,
/// retires the removed links' flows and announces each on the engine's `removed`
/// channel, restores order, and announces the change settled. Holds `guard` until then.
pub(super) fn spawn(engine: Arc<Shared>, cut: Option<TopologyCut>, guard: OwnedMutexGuard<()>) {
    tokio::spawn(async move {
        let _one_at_a_time = guard;
        let cancel = engine.cancel.clone();
        tokio::select! {
            _ = settle(&engine, cut) => {}
            _ = cancel.cancelled() => {}
        }
    });
}

async fn settle(engine: &Shared, cut: Option<TopologyCut>) {
    let began = Instant::now();
    drain(engine, cut).await;
    let names: Vec<String> = {
        let spec = engine.spec.lock().expect("engine spec lock");
        spec.draining.iter().map(|l| l.name.clone()).collect()
    };
    for name in &names {
        retire(engine, name).await;
    }
    if engine.history.get().settling() != Settling::Settled {
        rewind(engine).await;
    }
    set_status(engine, None);
    info!(took = ?began.elapsed(), "Topology change settled: every cluster holds each origin's records in order again.");
    let _ = engine.settled.send(());
}

fn set_status(engine: &Shared, status: Option<String>) {
    *engine.drain_status.lock().expect("drain status lock") = status;
}

/// The rounds: returns once every record below the cut is wherever the routes before
/// the change send it.
async fn drain(engine: &Shared, cut: Option<TopologyCut>) {
    let spec = engine.spec.lock().expect("engine spec lock").clone();
    let names: Vec<String> = spec.draining.iter().map(|l| l.name.clone()).collect();
    let rounds = spec.clusters.len().saturating_sub(1).max(1);
    info!(removed_links = ?names, rounds, "Draining the routes before the change: the flows carry what they owe below its cut.");
    let mut ends = match cut {
        Some(c) => c,
        None => read_ends(&spec, engine).await,
    };
    for round in 1..=rounds {
        let began = Instant::now();
        let what = format!("round {round} of {rounds}");
        wait_acknowledged(engine, &spec, &ends, &what, |_, _| true).await;
        info!(removed_links = ?names, round, rounds, took = ?began.elapsed(), "Drain round done: every flow acknowledged what its source held when the round began.");
        if round < rounds {
            set_status(
                engine,
                Some(format!(
                    "round {round} of {rounds} done; reading the ends for the next"
                )),
            );
            ends = read_ends(&spec, engine).await;
        }
    }
    set_status(engine, Some(format!("{rounds} rounds done")));
}

/// Order restored: every flow held, the ends read, the flows started again with the
/// change rewinding (those that deferred read again from the cut), until each flow that
/// reads again has acknowledged those ends; then held once more, so that their positions
/// are committed past what they read again, and the change settled.
async fn rewind(engine: &Shared) {
    let spec = engine.spec.lock().expect("engine spec lock").clone();
    set_status(
        engine,
        Some("drained; holding the flows to forward what they deferred".into()),
    );
    let ends = {
        let _held = hold_every_flow(engine).await;
        let ends = read_ends(&spec, engine).await;
        let history = (*engine.history.get()).clone();
        engine
            .history
            .set(history.with_settling(Settling::Rewinding));
        // What they acknowledged before is past what they now read again: only the
        // runs that read again may say how far they got.
        for c in every_flow(&engine.controls.flows) {
            c.acknowledged.clear();
        }
        ends
        // Dropping the hold starts the flows again, rewinding.
    };
    info!(
        "The drain is over: the flows that deferred records read their source again from the cut, passing over what their targets hold."
    );
    let history = engine.history.get();
    let owes =
        |c: &FlowControl, topic: &str| history.rewinds(topic, &c.source, &c.target).is_some();
    loop {
        wait_acknowledged(engine, &spec, &ends, "forwarding what was deferred", owes).await;
        // Once settled, a flow starts from what its target and its checkpoint say, with
        // no marks: its checkpoint must be past what it read again, or it would send
        // again what it had forwarded before the release. A hold commits it; a commit
        // that did not land is tried again.
        let _held = hold_every_flow(engine).await;
        let flows: Vec<(String, String, String)> = every_flow(&engine.controls.flows)
            .iter()
            .map(|c| (c.link.clone(), c.source.clone(), c.target.clone()))
            .collect();
        let (s, h, e) = (spec.clone(), history.clone(), ends.clone());
        let behind =
            tokio::task::spawn_blocking(move || first_uncommitted(&s, &h, &flows, &e)).await;
        match behind {
            Ok(Ok(None)) => {
                let history = (*engine.history.get()).clone();
                engine.history.set(history.with_settling(Settling::Settled));
                return;
            }
            Ok(Ok(Some(behind))) => {
                warn!(waiting_on = %behind, "A flow that read again has not committed its checkpoint past what it read; starting it again to commit.");
                set_status(engine, Some(format!("committing: waits for {behind}")));
            }
            Ok(Err(e)) => {
                warn!(error = %e, "Cannot read the checkpoints of the flows that read again; trying again.");
            }
            Err(e) => {
                warn!(error = %e, "Reading the checkpoints of the flows that read again failed; trying again.")
            }
        }
        tokio::time::sleep(spec.limits.commit_interval).await;
    }
}

/// The first partition that a flow reading again (`history.rewinds`) has not committed
/// up to `ends`, described; `None` when all have. Blocking.
fn first_uncommitted(
    spec: &EngineSpec,
    history: &crate::routing::History,
    flows: &[(String, String, String)],
    ends: &TopologyCut,
) -> Result<Option<String>, crate::error::SyncError> {
    let entries = ends.entries();
    for (link, source, target) in flows {
        let owed: Vec<&(String, String, i32, i64)> = entries
            .iter()
            .filter(|(t, c, _, end)| {
                c == source && *end > 0 && history.rewinds(t, source, target).is_some()
            })
            .collect();
        let Some(cluster) = spec.clusters.iter().find(|c| c.id == *source) else {
            continue;
        };
        if owed.is_empty() {
            continue;
        }
        let group = crate::flow::group_id(link, source, target);
        let consumer: rdkafka::consumer::BaseConsumer = crate::clients::consumer(
            cluster,
            &format!("duplex-settle-{source}-{target}"),
            &group,
            1 << 20,
        )
        .create()
        .map_err(|e| crate::error::SyncError::Kafka {
            op: "create consumer",
            cluster: source.clone(),
            source: e,
        })?;
        let consumer = crate::clients::Closing::new(consumer);
        for (topic, _, p, end) in owed {
            let at = crate::resume::committed(
                &*consumer,
                source,
                topic,
                *p,
                spec.limits.request_timeout,
            )?
            .map(|c| c.source_next);
            if at.is_none_or(|a| a < *end) {
                return Ok(Some(format!(
                    "flow {source}->{target} on {topic}[{p}]: committed {} of {end}",
                    at.map_or("nothing".to_string(), |a| a.to_string())
                )));
            }
        }
    }
    Ok(None)
}

/// Waits until every flow (that `owes` the topic) has acknowledged the ends `ends` on
/// every partition of its source, saying what it waits for meanwhile.
async fn wait_acknowledged(
    engine: &Shared,
    spec: &EngineSpec,
    ends: &TopologyCut,
    what: &str,
    owes: impl Fn(&FlowControl, &str) -> bool,
) {
    let began = Instant::now();
    let mut reported = Instant::now();
    let entries = ends.entries();
    while let Some(behind) = first_behind(engine, &entries, &owes) {
        set_status(engine, Some(format!("{what}: waits for {behind}")));
        if reported.elapsed() >= REPORT_EVERY {
            info!(step = what, waiting_on = %behind, waited = ?began.elapsed(), "Settling a topology change waits for a flow to acknowledge what was written before the step began.");
            reported = Instant::now();
        }
        tokio::time::sleep(spec.limits.commit_interval).await;
    }
}

/// The end offsets now of every partition the links of `spec` (kept and draining) select,
/// retried until read: a round needs them whole. Never returns while the engine stops
/// (the drain's task ends then, the link still draining).
async fn read_ends(spec: &EngineSpec, engine: &Shared) -> TopologyCut {
    let mut backoff = Duration::from_millis(500);
    loop {
        let s = spec.clone();
        let before = engine.history.get();
        match tokio::task::spawn_blocking(move || read_cut(&s, before.settling_routes())).await {
            Ok(Ok(ends)) => return ends,
            Ok(Err(e)) => {
                warn!(error = %e, retry_in = ?backoff, "Settling a topology change cannot read the end offsets for its next step; retrying.")
            }
            Err(e) => {
                warn!(error = %e, "Reading the end offsets to settle a topology change failed.")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = engine.cancel.cancelled() => std::future::pending::<()>().await,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The first flow partition not yet acknowledged up to its end in `ends` (the round's
/// `TopologyCut::entries`), described.
fn first_behind(
    engine: &Shared,
    entries: &[(String, String, i32, i64)],
    owes: &impl Fn(&FlowControl, &str) -> bool,
) -> Option<String> {
    let history = engine.history.get();
    for c in every_flow(&engine.controls.flows) {
        for (topic, cluster, partition, end) in entries {
            if *cluster != c.source
                || *end <= 0
                || !history.reads(topic, &c.source, &c.target)
                || !owes(&c, topic)
            {
                continue;
            }
            let at = c.acknowledged.get(topic, *partition);
            if at.is_none_or(|a| a < *end) {
                let at = at.map_or("not started".to_string(), |a| a.to_string());
                return Some(format!(
                    "flow {}->{} ({}) on {topic}[{partition}]: acknowledged {at} of {end}",
                    c.source,
                    c.target,
                    c.status.get()
                ));
            }
        }
    }
    None
}

/// Stops a drained link's flows for good, forgets them, and announces the link removed.
async fn retire(engine: &Shared, link: &str) {
    let flows: Vec<(String, Arc<FlowControl>)> = engine
        .controls
        .flows
        .read()
        .expect("flows lock")
        .iter()
        .filter(|(_, c)| c.link == link)
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    for (_, c) in &flows {
        c.desired
            .send_if_modified(|d| !std::mem::replace(&mut d.retired, true));
    }
    for (name, c) in &flows {
        let mut rx = c.status.status.subscribe();
        while rx.borrow_and_update().state != FlowState::Stopped {
            if rx.changed().await.is_err() {
                break;
            }
        }
        engine
            .controls
            .flows
            .write()
            .expect("flows lock")
            .remove(name);
        engine.registry.forget(&c.metrics);
    }
    engine
        .spec
        .lock()
        .expect("engine spec lock")
        .draining
        .retain(|l| l.name != link);
    info!(link, "Removed link drained: its flows are retired.");
    let _ = engine.removed.send(link.to_string());
}
