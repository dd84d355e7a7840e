//! One verification pass: snapshot the sides' offsets, read what the store lacks, compare,
//! and build the report. `--follow` repeats passes over the same store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use duplex_sync::resume::parse_checkpoint_metadata;
use duplex_sync::spec::ClusterSpec;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::compare::{self, Bounds, Snapshot};
use crate::error::VerifyError;
use crate::reader::{self, PartPlan, Progress};
use crate::report::{self, Counts, Report, RunStats, SideStats, Verdict};
use crate::spec::{Mode, ReplicationFlow, VerifySpec};
use crate::store::Store;

const METADATA_TIMEOUT: Duration = Duration::from_secs(15);

/// Progress of a pass, as handed to the progress callback every couple of seconds.
#[derive(Debug, Clone)]
pub struct ProgressLine {
    /// Per side: cluster, records read, records planned, records per second.
    pub sides: Vec<(String, u64, u64, f64)>,
    /// Seconds since reading began.
    pub elapsed: f64,
}

impl ProgressLine {
    /// Estimated seconds left: the slowest side's remaining records at its rate.
    pub fn eta(&self) -> Option<f64> {
        self.sides
            .iter()
            .map(|(_, read, planned, rate)| {
                let left = planned.saturating_sub(*read) as f64;
                if left == 0.0 {
                    Some(0.0)
                } else if *rate > 0.0 {
                    Some(left / rate)
                } else {
                    None
                }
            })
            .try_fold(0.0f64, |acc, s| s.map(|s| acc.max(s)))
    }
}

impl std::fmt::Display for ProgressLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .sides
            .iter()
            .map(|(c, read, planned, rate)| format!("{c} {read}/{planned} records ({rate:.0}/s)"))
            .collect();
        write!(f, "verify: {}", parts.join(", "))?;
        match self.eta() {
            Some(eta) => write!(f, "; ETA {eta:.0} s"),
            None => write!(f, "; ETA unknown"),
        }
    }
}

/// What each side holds now: selected topics, partitions, log start and end offsets;
/// and where Duplex's flows between the sides began replicating.
///
/// Clusters of the config outside the sides ([`VerifySpec::origins`]) are asked too: an
/// origin that cannot be asked fails the run, naming it, since without its end offsets a
/// tail of its records that reached neither side could not be told from parity.
pub fn snapshot(spec: &VerifySpec) -> Result<Snapshot, VerifyError> {
    let mut all = std::thread::scope(|scope| {
        let handles: Vec<_> = spec
            .sides
            .iter()
            .chain(&spec.origins)
            .map(|c| scope.spawn(move || snapshot_side(spec, c)))
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let r = h.join().expect("snapshot thread panicked");
                if i < spec.sides.len() {
                    return r;
                }
                // Say why a cluster the operator did not name is asked at all.
                r.map_err(|e| match e {
                    VerifyError::Kafka {
                        cluster,
                        op,
                        source,
                    } => VerifyError::Kafka {
                        op: format!(
                            "{op} (it is in the config but not in --between: it is asked where \
                             its partitions end, so that its records neither side holds are \
                             reported; take it out of the config to verify without it)"
                        ),
                        cluster,
                        source,
                    },
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let origins = spec
        .origins
        .iter()
        .map(|c| c.id.clone())
        .zip(all.split_off(spec.sides.len()))
        .collect();
    let sides = all;
    let mut began = BTreeMap::new();
    for flow in &spec.flows {
        let Some(i) = spec.sides.iter().position(|c| c.id == flow.source) else {
            continue;
        };
        let key = (flow.source.clone(), flow.target.clone());
        began.insert(key, replication_began(&spec.sides[i], flow, &sides[i]));
    }
    Ok(Snapshot {
        sides,
        began,
        origins,
        lost: BTreeMap::new(),
    })
}

/// The source offsets where `flow` began replicating each partition, from the commit
/// metadata of its checkpoints. A cluster that will not say (no group, no permission to
/// describe it) gives none: the comparison then starts at the log start, so records
/// never replicated show as missing rather than being hidden.
fn replication_began(
    cluster: &ClusterSpec,
    flow: &ReplicationFlow,
    topics: &BTreeMap<String, BTreeMap<i32, Bounds>>,
) -> BTreeMap<(String, i32), i64> {
    let mut tpl = TopicPartitionList::new();
    for (topic, parts) in topics {
        for &p in parts.keys() {
            tpl.add_partition(topic, p);
        }
    }
    let committed = reader::consumer_config(cluster)
        .set("group.id", &flow.group)
        .create::<BaseConsumer>()
        .map(duplex_sync::clients::Closing::new)
        .and_then(|c| c.committed_offsets(tpl, METADATA_TIMEOUT));
    let committed = match committed {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(cluster = %cluster.id, group = %flow.group, error = %e, "Could not read where Duplex began replicating; comparing from the log start.");
            return BTreeMap::new();
        }
    };
    committed
        .elements()
        .iter()
        .filter_map(|e| {
            let began = parse_checkpoint_metadata(e.metadata())?.began?;
            Some(((e.topic().to_string(), e.partition()), began))
        })
        .collect()
}

fn snapshot_side(
    spec: &VerifySpec,
    cluster: &ClusterSpec,
) -> Result<BTreeMap<String, BTreeMap<i32, Bounds>>, VerifyError> {
    let consumer: BaseConsumer = reader::consumer_config(cluster)
        .create()
        .map_err(|e| VerifyError::kafka(&cluster.id, "create consumer", e))?;
    let consumer = duplex_sync::clients::Closing::new(consumer);
    let md = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|e| VerifyError::kafka(&cluster.id, "fetch metadata", e))?;
    let mut out = BTreeMap::new();
    for t in md.topics().iter().filter(|t| spec.selects(t.name())) {
        let mut parts = BTreeMap::new();
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(t.name(), p.id(), METADATA_TIMEOUT)
                .map_err(|e| {
                    VerifyError::kafka(
                        &cluster.id,
                        format!("list offsets of {}/{}", t.name(), p.id()),
                        e,
                    )
                })?;
            parts.insert(p.id(), Bounds { low, high });
        }
        if !parts.is_empty() {
            out.insert(t.name().to_string(), parts);
        }
    }
    Ok(out)
}

/// Where each side's partitions are read from and to in this pass.
pub fn plan(
    store: &Store,
    spec: &VerifySpec,
    snap: &Snapshot,
) -> Result<Vec<Vec<PartPlan>>, VerifyError> {
    let mut plans = Vec::new();
    for (idx, topics) in snap.sides.iter().enumerate() {
        let cluster = &spec.sides[idx].id;
        let mut plan = Vec::new();
        for (topic, parts) in topics {
            let mode = spec.mode(topic);
            for (&p, b) in parts {
                let first = match mode {
                    Mode::Positional => spec.from.lookup(cluster, topic, p).unwrap_or(0).max(b.low),
                    _ => b.low,
                };
                let start = store
                    .position(idx as u8, topic, p)?
                    .map_or(first, |pos| pos.max(b.low));
                let end = match mode {
                    Mode::Identity => b.high,
                    _ => spec
                        .watermarks
                        .lookup(cluster, topic, p)
                        .map_or(b.high, |w| w.min(b.high)),
                };
                plan.push(PartPlan {
                    topic: topic.clone(),
                    partition: p,
                    start,
                    end,
                    log_start: b.low,
                    mode,
                });
            }
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// One pass over an open store: snapshot, read, compare. `on_progress` is called about
/// every two seconds while reading.
pub fn pass(
    store: &Store,
    spec: &VerifySpec,
    stop: &AtomicBool,
    on_progress: &(dyn Fn(&ProgressLine) + Sync),
) -> Result<Report, VerifyError> {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let mut snap = snapshot(spec)?;
    if snap.sides.iter().all(|topics| topics.is_empty()) {
        // Nothing compared is no proof: a mistyped selection must not read as parity.
        let sides: Vec<&str> = spec.sides.iter().map(|c| c.id.as_str()).collect();
        return Err(VerifyError::Invalid(format!(
            "the topic selection {} matches no topic on {}: nothing to compare, so no verdict",
            spec.topics.as_str(),
            sides.join(" or ")
        )));
    }
    crate::stale::forget_stale(store, spec, &snap)?;
    let plans = plan(store, spec, &snap)?;
    let progress: Vec<Progress> = spec.sides.iter().map(|_| Progress::default()).collect();
    std::thread::scope(|scope| {
        // Each reader says when it is done, so that the pass goes on the moment the last
        // one is; in between, a progress line every two seconds.
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        let readers: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(idx, plan)| {
                let progress = &progress[idx];
                let done_tx = done_tx.clone();
                // Named for the side, so that top and perf tell the readers apart.
                std::thread::Builder::new()
                    .name(format!("verify-{idx}"))
                    .spawn_scoped(scope, move || {
                        let r = reader::read_side(store, spec, idx as u8, plan, progress, stop);
                        let _ = done_tx.send(());
                        r
                    })
                    // As `scope.spawn` does: no thread, no pass.
                    .expect("the OS starts a reader thread")
            })
            .collect();
        drop(done_tx);
        let mut finished = 0;
        let mut next_line = Instant::now() + Duration::from_secs(2);
        while finished < readers.len() {
            let wait = next_line.saturating_duration_since(Instant::now());
            match done.recv_timeout(wait) {
                Ok(()) => finished += 1,
                // A reader that panicked sends nothing: its join below reports it.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    next_line = Instant::now() + Duration::from_secs(2);
                    on_progress(&progress_line(spec, &progress, started.elapsed()));
                }
            }
        }
        readers
            .into_iter()
            .map(|h| h.join().expect("reader thread panicked"))
            .collect::<Result<Vec<()>, _>>()
    })?;
    crate::origins::read_lost(store, spec, &mut snap, stop)?;
    let comparisons = compare::compare(store, spec, &snap)?;
    let mut totals = Counts::default();
    for c in &comparisons {
        totals.add(&c.totals);
    }
    let sides = spec
        .sides
        .iter()
        .zip(&progress)
        .map(|(c, p)| SideStats {
            cluster: c.id.clone(),
            records_read: p.records.load(Ordering::Relaxed),
            bytes_read: p.bytes.load(Ordering::Relaxed),
        })
        .collect();
    Ok(Report {
        schema: report::SCHEMA.to_string(),
        verdict: if comparisons.iter().all(|c| c.verdict == Verdict::Pass) {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        source: spec.sides[0].id.clone(),
        targets: spec.sides[1..].iter().map(|c| c.id.clone()).collect(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        totals,
        comparisons,
        run: RunStats {
            sides,
            seconds: started.elapsed().as_secs_f64(),
        },
    })
}

fn progress_line(spec: &VerifySpec, progress: &[Progress], elapsed: Duration) -> ProgressLine {
    let secs = elapsed.as_secs_f64().max(1e-3);
    ProgressLine {
        sides: spec
            .sides
            .iter()
            .zip(progress)
            .map(|(c, p)| {
                let read = p.records.load(Ordering::Relaxed);
                (
                    c.id.clone(),
                    read,
                    p.planned.load(Ordering::Relaxed),
                    read as f64 / secs,
                )
            })
            .collect(),
        elapsed: secs,
    }
}

/// Opens the spec's store and runs one pass.
pub fn verify(
    spec: &VerifySpec,
    stop: &AtomicBool,
    on_progress: &(dyn Fn(&ProgressLine) + Sync),
) -> Result<Report, VerifyError> {
    let store = Store::open(&spec.store_dir, &spec.signature())?;
    pass(&store, spec, stop, on_progress)
}

/// Writes `parity.json` and `parity.html` into `dir` (created if missing); returns their paths.
pub fn write_report(report: &Report, dir: &Path) -> Result<(PathBuf, PathBuf), VerifyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| VerifyError::Report { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = dir.join("parity.json");
    let html = dir.join("parity.html");
    let body = serde_json::to_string_pretty(report).expect("a report serializes");
    write_atomic(&json, body.as_bytes()).map_err(io(&json))?;
    write_atomic(&html, report::html::render(report).as_bytes()).map_err(io(&html))?;
    Ok((json, html))
}

/// Writes through a temporary file and a rename, so a reader never sees half a report.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}
