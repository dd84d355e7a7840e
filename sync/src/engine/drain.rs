//! The drain of removed links (docs/topology-changes.md, "The drain is more than one
//! round").
//!
//! After a removal's cut, the removed link's flows run on: routed by the tree before the
//! change below the cut and by nothing after it. A record below the cut that the old
//! tree sends through the removed link may still be upstream, on a cluster whose flow
//! had not read it when the cut was taken, so the drain runs in rounds. Round k ends
//! when every flow has acknowledged, on every partition of its source, the end offsets
//! read when round k−1 ended (round 0's are the cut). A copy of a record below the cut
//! that exists when round k ends lies below that round's ends on its cluster, so the
//! next round carries it one hop further down its old tree: after as many rounds as an
//! old tree can be deep (fewer than the number of clusters), nothing below the cut is
//! left to move, and the removed links' flows retire. A paused or faulted flow holds the
//! drain, as it holds records the old tree owes. No other change is applied meanwhile
//! (the drain keeps the engine's one-change-at-a-time lock). A restart drains again
//! from the cut: the rounds only ask for positions, never for what happened before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;
use tracing::{info, warn};

use super::Shared;
use super::change::read_cut;
use crate::control::{FlowControl, FlowState, every_flow};
use crate::routing::TopologyCut;
use crate::spec::{EngineSpec, LinkSpec};

/// How often a round that waits says what it waits for.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Drains the removed links of the engine's spec from `cut` on (`None`: no cut is known,
/// so the ends read now stand in for it, which asks for more, never less), then retires
/// their flows and announces each link on the engine's `removed` channel. Holds `guard`
/// until then.
pub(super) fn spawn(engine: Arc<Shared>, cut: Option<TopologyCut>, guard: OwnedMutexGuard<()>) {
    tokio::spawn(async move {
        let _one_at_a_time = guard;
        let cancel = engine.cancel.clone();
        tokio::select! {
            _ = drain(&engine, cut) => {}
            _ = cancel.cancelled() => {}
        }
    });
}

async fn drain(engine: &Shared, cut: Option<TopologyCut>) {
    let spec = engine.spec.lock().expect("engine spec lock").clone();
    let names: Vec<String> = spec.draining.iter().map(|l| l.name.clone()).collect();
    let rounds = spec.clusters.len().saturating_sub(1).max(1);
    info!(links = ?names, rounds, "Draining removed links: their flows carry what the routes before the removal owe, then retire.");
    let mut ends = match cut {
        Some(c) => c,
        None => read_ends(&spec, engine).await,
    };
    for round in 1..=rounds {
        let began = Instant::now();
        let mut reported = Instant::now();
        let entries = ends.entries();
        while let Some(behind) = first_behind(engine, &spec, &entries) {
            *engine.drain_status.lock().expect("drain status lock") =
                Some(format!("round {round} of {rounds}: waits for {behind}"));
            if reported.elapsed() >= REPORT_EVERY {
                info!(links = ?names, round, rounds, waiting_on = %behind, waited = ?began.elapsed(), "The drain of removed links waits for a flow to acknowledge what was written before the round began.");
                reported = Instant::now();
            }
            tokio::time::sleep(spec.limits.commit_interval).await;
        }
        info!(links = ?names, round, rounds, took = ?began.elapsed(), "Drain round done: every flow acknowledged what its source held when the round began.");
        if round < rounds {
            *engine.drain_status.lock().expect("drain status lock") = Some(format!(
                "round {round} of {rounds} done; reading the ends for the next"
            ));
            ends = read_ends(&spec, engine).await;
        }
    }
    *engine.drain_status.lock().expect("drain status lock") =
        Some(format!("{rounds} rounds done; retiring the flows"));
    for name in &names {
        retire(engine, name).await;
    }
}

/// The end offsets now of every partition the links of `spec` (kept and draining) select,
/// retried until read: a round needs them whole. Never returns while the engine stops
/// (the drain's task ends then, the link still draining).
async fn read_ends(spec: &EngineSpec, engine: &Shared) -> TopologyCut {
    let mut backoff = Duration::from_millis(500);
    loop {
        let s = spec.clone();
        match tokio::task::spawn_blocking(move || read_cut(&s)).await {
            Ok(Ok(ends)) => return ends,
            Ok(Err(e)) => {
                warn!(error = %e, retry_in = ?backoff, "The drain of removed links cannot read the end offsets for its next round; retrying.")
            }
            Err(e) => warn!(error = %e, "Reading the end offsets for a drain round failed."),
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
    spec: &EngineSpec,
    entries: &[(String, String, i32, i64)],
) -> Option<String> {
    for c in every_flow(&engine.controls.flows) {
        let Some(link) = link_of(spec, &c.link) else {
            continue;
        };
        for (topic, cluster, partition, end) in entries {
            if *cluster != c.source || *end <= 0 || !link.topics.selects(topic) {
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

fn link_of<'a>(spec: &'a EngineSpec, name: &str) -> Option<&'a LinkSpec> {
    spec.all_links().find(|l| l.name == name)
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
    *engine.drain_status.lock().expect("drain status lock") = None;
    info!(link, "Removed link drained: its flows are retired.");
    let _ = engine.removed.send(link.to_string());
}
