//! The mesh phase of e2e_throughput: three clusters in a full mesh, each holding records
//! of its own, replicated at once by the six flows; the aggregate rate, then every
//! cluster read back and checked to hold every record exactly once.

use super::*;

const IDS: [&str; 3] = ["a", "b", "c"];

/// A full mesh of three: `n / 3` records of `value_bytes` written on each of `a`, `b`
/// and `c` before the engine starts; timed from the moment all six flows have every
/// partition assigned to the last of the `2 n` deliveries (each record to the two other
/// clusters) acknowledged. `limit` is min(produce-only, consume-only) of the same size
/// from the throughput phase, when it ran.
pub(super) fn mesh(
    rt: &Runtime,
    value_bytes: usize,
    n: usize,
    limit: Option<f64>,
) -> anyhow::Result<()> {
    let each = (n / IDS.len()).max(1);
    // Each cluster ends up holding all 3 × `each` records.
    let held = each * IDS.len();
    let partitions = held.div_ceil(3_300_000 / (value_bytes + 100)).max(8) as i32;
    let mut brokers = Brokers::spawn(IDS.len())?;
    let topic = format!("mesh-{value_bytes}");
    brokers.create_topic(&topic, partitions)?;
    for boot in &brokers.bootstrap {
        rt.block_on(load::produce(
            boot,
            &topic,
            each,
            partitions,
            value_bytes,
            false,
        ))?;
    }
    let clusters: Vec<ClusterSpec> = IDS
        .iter()
        .zip(&brokers.bootstrap)
        .map(|(id, boot)| ClusterSpec::new(*id, boot))
        .collect();
    let mut spec = EngineSpec::linked(
        clusters,
        &[[0, 1], [1, 2], [0, 2]],
        TopicSelection::matching(&topic)?,
    );
    with_bench_options(&mut spec)?;
    let deliveries = 2 * held;
    let ((startup, timed), _) = rt
        .block_on(while_engine_runs(spec, |registry, start| async move {
            watch_all(&registry, start, deliveries, partitions).await
        }))?;
    for (id, boot) in IDS.iter().zip(&brokers.bootstrap) {
        let records = inspect::read_topic(boot, id, &topic, Duration::from_secs(120))?;
        ensure!(
            records.len() == held,
            "after the mesh phase {id} holds {} records, not {held}",
            records.len()
        );
        let tally = inspect::tally(&records);
        for origin in IDS {
            let t = tally.get(origin).cloned().unwrap_or_default();
            ensure!(
                t.records == each && t.duplicates == 0,
                "after the mesh phase {id} holds {} records of {origin} ({} duplicates), \
                 not {each} once each",
                t.records,
                t.duplicates
            );
        }
    }
    let versus = limit.map_or(String::new(), |l| {
        format!(
            "; {:.2} × min(produce, consume) of one client",
            timed.rate() / l
        )
    });
    println!(
        "mesh of three: {each} records of {value_bytes} B on each of a, b, c, {partitions} \
         partitions; six flows made {deliveries} deliveries, {} of them once all were assigned, \
         at {:.0}/s ({:.1} MiB/s, {} \
         cores, {:.0} MiB/s per core){versus}; engine start-up {:.0} ms; every cluster \
         holds every record exactly once",
        timed.records,
        timed.rate(),
        timed.mib(value_bytes),
        timed.cores(),
        timed.cpu.map_or(0.0, |c| timed.mib(value_bytes)
            * timed.elapsed.as_secs_f64()
            / c.as_secs_f64().max(1e-3)),
        startup.as_secs_f64() * 1e3,
    );
    Ok(())
}

/// Polls every flow's counters every millisecond until their deliveries together reach
/// `n`. Returns the start-up (to all six flows assigned every partition) and the window
/// from there to the `n`-th delivery, counting the deliveries made in it.
async fn watch_all(
    registry: &Registry,
    start: Instant,
    n: usize,
    partitions: i32,
) -> anyhow::Result<(Duration, Timed)> {
    let flows = IDS.len() * (IDS.len() - 1);
    // The window and the deliveries the flows had made when it opened: flows assigned
    // earlier start delivering before the last one is assigned, and those deliveries
    // are not the window's.
    let mut assigned: Option<(Window, u64)> = None;
    let mut metrics = Vec::new();
    let mut polls = 0u64;
    loop {
        // The registry is read (which clones its entries) at every poll until all flows
        // are assigned, then every 100 polls, as in `watch`.
        if assigned.is_none() || polls % 100 == 0 {
            let entries = registry.entries();
            if let Some(e) = entries.iter().find(|e| e.metrics.last_error().is_some()) {
                let error = e.metrics.last_error().unwrap_or_default();
                bail!("flow {} failed: {error}", e.flow);
            }
            metrics = entries.into_iter().map(|e| e.metrics).collect();
        }
        polls += 1;
        let delivered: u64 = metrics.iter().map(|m| m.forwarded.load(Relaxed)).sum();
        if assigned.is_none()
            && metrics.len() == flows
            && metrics
                .iter()
                .all(|m| m.partitions.load(Relaxed) >= i64::from(partitions))
        {
            assigned = Some((Window::start(), delivered));
        }
        if let Some((w, before)) = assigned.as_ref().filter(|_| delivered >= n as u64) {
            return Ok((w.wall - start, w.end(n - *before as usize)));
        }
        ensure!(
            start.elapsed() < TIMEOUT,
            "mesh: {delivered} of {n} deliveries after {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
