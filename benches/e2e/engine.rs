//! Running the engine under the e2e bench: one link a–b until a flow has counted `n`
//! records ([`engine_run`]), any spec while some work runs ([`while_engine_runs`]), and
//! the watcher that times a flow from its assignment ([`watch`]).

use super::*;

/// Runs the engine with one link a–b on `topic` until `flow` counts `n` (`count`), then
/// stops it.
#[allow(clippy::too_many_arguments)]
pub(super) fn engine_run(
    rt: &Runtime,
    a: &str,
    b: &str,
    topic: &str,
    n: usize,
    partitions: i32,
    flow: &'static str,
    count: fn(&FlowMetrics) -> u64,
    budget: Option<usize>,
) -> anyhow::Result<Replicated> {
    let mut spec = EngineSpec::linked(
        vec![ClusterSpec::new("a", a), ClusterSpec::new("b", b)],
        &[[0, 1]],
        TopicSelection::matching(topic)?,
    );
    if let Some(budget) = budget {
        spec.links[0].in_flight_bytes = budget;
    }
    with_bench_options(&mut spec)?;
    let ((startup, assigned), stop) = rt
        .block_on(while_engine_runs(spec, |registry, start| async move {
            watch(&registry, start, n, partitions, flow, count).await
        }))?;
    Ok(Replicated {
        startup,
        assigned,
        stop,
    })
}

/// Runs the engine on `spec` while `work` runs, given the engine's registry and the
/// moment it started; then stops the engine. Returns what `work` returned and how long
/// the engine took to stop.
pub(super) async fn while_engine_runs<T, Fut>(
    spec: EngineSpec,
    work: impl FnOnce(Arc<Registry>, Instant) -> Fut,
) -> anyhow::Result<(T, Duration)>
where
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let registry = Arc::new(Registry::default());
    let cancel = CancellationToken::new();
    let start = Instant::now();
    let engine = {
        let (registry, cancel) = (registry.clone(), cancel.clone());
        tokio::spawn(async move { duplex::run::run(&spec, &registry, cancel).await })
    };
    let done = work(registry, start).await;
    let stopping = Instant::now();
    cancel.cancel();
    engine.await?.context("engine")?;
    Ok((done?, stopping.elapsed()))
}

/// Polls `flow`'s counters every millisecond until `count` reaches `n`. Returns the
/// engine's start-up (to the assignment of all `partitions`) and the window from the
/// assignment to the `n`-th record counted.
pub(super) async fn watch(
    registry: &Registry,
    start: Instant,
    n: usize,
    partitions: i32,
    flow: &str,
    count: fn(&FlowMetrics) -> u64,
) -> anyhow::Result<(Duration, Timed)> {
    let mut assigned: Option<Window> = None;
    let mut ab = None;
    let mut polls = 0u64;
    loop {
        // The registry is read (which clones its entries) every 100 polls, the flow's
        // counters every poll: the watcher's CPU is counted in the engine's.
        if polls % 100 == 0 {
            let entries = registry.entries();
            if let Some(e) = entries.iter().find(|e| e.metrics.last_error().is_some()) {
                let error = e.metrics.last_error().unwrap_or_default();
                bail!("flow {} failed: {error}", e.flow);
            }
            ab = entries
                .into_iter()
                .find(|e| e.flow == flow)
                .map(|e| e.metrics);
        }
        polls += 1;
        let forwarded = ab.as_ref().map_or(0, |m| count(m));
        if assigned.is_none()
            && ab
                .as_ref()
                .is_some_and(|m| m.partitions.load(Relaxed) >= i64::from(partitions))
        {
            assigned = Some(Window::start());
        }
        if let Some(w) = assigned.as_ref().filter(|_| forwarded >= n as u64) {
            return Ok((w.wall - start, w.end(n)));
        }
        ensure!(
            start.elapsed() < TIMEOUT,
            "{flow}: {forwarded} of {n} records after {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
