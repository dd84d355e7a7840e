//! The latency phase of e2e_throughput: records produced at half the replication rate,
//! p50/p99/p999 read from the flow's latency histogram.

use super::*;

/// How long the latency phase writes, by default; `DUPLEX_BENCH_LATENCY_SECONDS` sets it.
const LATENCY_WINDOW: Duration = Duration::from_secs(4);

/// The latency phase's window: `DUPLEX_BENCH_LATENCY_SECONDS`, else [`LATENCY_WINDOW`].
fn window() -> anyhow::Result<Duration> {
    match std::env::var("DUPLEX_BENCH_LATENCY_SECONDS") {
        Ok(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && s.is_finite())
            .map(Duration::from_secs_f64)
            .with_context(|| format!("DUPLEX_BENCH_LATENCY_SECONDS={v:?} is not a duration")),
        Err(_) => Ok(LATENCY_WINDOW),
    }
}

/// Latency at `rate` records/s (half the median replication rate): the engine runs with
/// the topic empty, records are produced on a at that pace for [`window`], and
/// once b acknowledged them all the flow's latency histogram (record timestamp on a to
/// acknowledgement by b, `duplex_replication_latency_seconds`) gives p50, p99 and p999,
/// each as the upper bound of its bucket.
pub(super) fn latency(rt: &Runtime, value_bytes: usize, rate: f64) -> anyhow::Result<()> {
    let n = (rate * window()?.as_secs_f64()).max(1.0) as usize;
    let partitions = n.div_ceil(3_300_000 / (value_bytes + 100)).max(8) as i32;
    let mut brokers = Brokers::spawn(2)?;
    let (a, b) = (brokers.bootstrap[0].clone(), brokers.bootstrap[1].clone());
    let topic = format!("latency-{value_bytes}");
    brokers.create_topic(WARMUP_TOPIC, 1)?;
    brokers.create_topic(&topic, partitions)?;
    let mut spec = EngineSpec::linked(
        vec![ClusterSpec::new("a", &a), ClusterSpec::new("b", &b)],
        &[[0, 1]],
        TopicSelection::matching(&topic)?,
    );
    // The mock holds a fetch that finds no new record for the whole fetch.wait.max.ms
    // (500 ms by default) even when records arrive meanwhile, where Kafka answers as
    // soon as they do: without this the figures are the mock's wait, not the flow's.
    for c in &mut spec.clusters {
        c.consumer.insert("fetch.wait.max.ms".into(), "5".into());
    }
    with_bench_options(&mut spec)?;
    let ((text, paced), _) = rt.block_on(while_engine_runs(spec, |registry, _| async move {
        // Started once a->b reads every partition.
        let _ = watch(&registry, Instant::now(), 0, partitions, "a->b", |_| 0).await?;
        let flow = registry
            .entries()
            .into_iter()
            .find(|e| e.flow == "a->b")
            .context("flow a->b in the registry")?
            .metrics;
        let forwarded = || flow.forwarded.load(Relaxed);
        let paced = paced_produce(&a, &topic, n, partitions, value_bytes, rate, forwarded).await?;
        watch(&registry, Instant::now(), n, partitions, "a->b", |m| {
            m.forwarded.load(Relaxed)
        })
        .await?;
        anyhow::Ok((registry.render(), paced))
    }))?;
    let buckets = histogram(&text, "a->b");
    let count = buckets.last().map_or(0, |b| b.1);
    ensure!(
        count >= n as u64,
        "the histogram counts {count} of {n} records"
    );
    let q = |q: f64| {
        let rank = (q * count as f64).ceil() as u64;
        buckets
            .iter()
            .find(|(_, c)| *c >= rank)
            .map_or("-".to_string(), |(le, _)| format!("≤ {:.0} ms", le * 1e3))
    };
    println!(
        "latency at {rate:.0} records/s, {n} records: \
         p50 {}  p99 {}  p999 {}",
        q(0.5),
        q(0.99),
        q(0.999)
    );
    // The same quantiles of one hop, exact (not bucketed).
    let hops = &paced.hops;
    let hop = |q: f64| hops[((q * hops.len() as f64).ceil() as usize).clamp(1, hops.len()) - 1];
    println!(
        "  baseline, one hop (the source's producer, linger.ms as a flow's: send to \
         acknowledged by a): p50 {:.1} ms  p99 {:.1} ms  p999 {:.1} ms; sent at {:.0}/s",
        hop(0.5),
        hop(0.99),
        hop(0.999),
        paced.sent_rate
    );
    println!(
        "  the flow's backlog when the last record was sent (acknowledged by a, not yet \
         forwarded): {} records ({:.0} ms at this rate)",
        paced.behind,
        paced.behind as f64 / rate * 1e3
    );
    Ok(())
}

/// `DUPLEX_BENCH_LATENCY_RATE`: the latency phase's rate in records/s, instead of half
/// the replication rate.
pub(super) fn fixed_rate() -> anyhow::Result<Option<f64>> {
    match std::env::var("DUPLEX_BENCH_LATENCY_RATE") {
        Ok(v) => v
            .parse::<f64>()
            .ok()
            .filter(|r| *r >= 1.0)
            .map(Some)
            .with_context(|| format!("DUPLEX_BENCH_LATENCY_RATE={v:?} is not a rate")),
        Err(_) => Ok(None),
    }
}

/// The cumulative buckets (upper bound in seconds, count) of `flow`'s latency histogram
/// in rendered metrics.
pub(super) fn histogram(text: &str, flow: &str) -> Vec<(f64, u64)> {
    let flow = format!("flow=\"{flow}\"");
    let mut out: Vec<(f64, u64)> = text
        .lines()
        .filter(|l| {
            l.starts_with("duplex_replication_latency_seconds_bucket{") && l.contains(&flow)
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    out.sort_by(|x, y| x.0.total_cmp(&y.0));
    out
}

/// Produces `n` records on `topic` at `rate` records/s, each timestamped when sent,
/// and waits for their acknowledgements. `DUPLEX_BENCH_SOURCE_LINGER_MS` sets the
/// producer's `linger.ms` (5, as a flow's). Returns how long each record took from its
/// send to its acknowledgement by a (one hop, the baseline of the flow's two), how many
/// records a had acknowledged that the flow (`forwarded`: its count) had still to
/// forward when the last was sent, and the rate they were sent at.
async fn paced_produce(
    bootstrap: &str,
    topic: &str,
    n: usize,
    partitions: i32,
    value_bytes: usize,
    rate: f64,
    forwarded: impl Fn() -> u64,
) -> anyhow::Result<Paced> {
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;
    let linger = std::env::var("DUPLEX_BENCH_SOURCE_LINGER_MS").unwrap_or_else(|_| "5".into());
    let producer = warm_producer(bootstrap, topic, &linger).await?;
    let value = vec![0x5a_u8; value_bytes];
    // The acknowledgements are awaited as they come, by one task, so that each is timed
    // when it resolves, not when the sender gets to it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, _)>();
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&acked);
    let acks = tokio::spawn(async move {
        let push = |hops: &mut Vec<Duration>, d| {
            hops.push(d);
            counted.fetch_add(1, Relaxed);
        };
        let mut hops = Vec::with_capacity(n);
        let mut pending = FuturesUnordered::new();
        loop {
            tokio::select! {
                sent = rx.recv() => match sent {
                    Some((at, delivery)) => pending.push(async move {
                        let r: Result<_, _> = load::delivered(vec![delivery]).await;
                        r.map(|()| at.elapsed())
                    }),
                    None => break,
                },
                Some(done) = pending.next() => push(&mut hops, done?),
            }
        }
        while let Some(done) = pending.next().await {
            push(&mut hops, done?);
        }
        anyhow::Ok(hops)
    });
    let began = Instant::now();
    for i in 0..n {
        // Ahead of the pace: wait for it (in steps of a millisecond at least).
        let due = began + Duration::from_secs_f64(i as f64 / rate);
        if due > Instant::now() + Duration::from_millis(1) {
            tokio::time::sleep_until(due.into()).await;
        }
        let key = format!("key-{i:010}");
        let record = FutureRecord::to(topic)
            .partition(i as i32 % partitions)
            .key(key.as_bytes())
            .payload(value.as_slice());
        let at = Instant::now();
        let delivery = load::enqueue(&producer, record).await?;
        if tx.send((at, delivery)).is_err() {
            // The task ended early: a delivery failed, and its error says which.
            acks.await.context("the acknowledgement task panicked")??;
            bail!("the acknowledgement task ended before the last record");
        }
    }
    let sent_rate = n as f64 / began.elapsed().as_secs_f64();
    // The flow's backlog when the last record is sent: records a had acknowledged that
    // the flow had not yet forwarded. A flow that keeps up at this rate is a few
    // milliseconds of records behind; one that does not has a backlog, and its latency
    // grows with the window.
    let behind = acked.load(Relaxed).saturating_sub(forwarded() as usize);
    drop(tx);
    let mut hops: Vec<f64> = acks
        .await
        .context("the acknowledgement task panicked")??
        .into_iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    hops.sort_by(f64::total_cmp);
    Ok(Paced {
        hops,
        behind,
        sent_rate,
    })
}

/// What [`paced_produce`] measured.
struct Paced {
    /// Send to acknowledged by a, per record, in milliseconds, sorted.
    hops: Vec<f64>,
    /// Records a had acknowledged and the flow had not forwarded, at the last send.
    behind: usize,
    /// The rate the records were sent at (below the one asked when the producer's
    /// queue was full).
    sent_rate: f64,
}
