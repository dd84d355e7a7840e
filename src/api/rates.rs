//! Per-flow forwarding rates, sampled every few seconds from the counters.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duplex_sync::control::EngineHandle;
use tokio_util::sync::CancellationToken;

/// How often rates are sampled.
pub const SAMPLE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at: Option<Instant>,
    records: u64,
    bytes: u64,
    records_per_s: f64,
    bytes_per_s: f64,
}

/// The last rates of each flow: records and bytes per second.
#[derive(Debug, Clone, Default)]
pub struct Rates(Arc<Mutex<HashMap<String, Sample>>>);

impl Rates {
    /// Samples the engine's flows every [`SAMPLE`] until `cancel`.
    pub fn start(engine: EngineHandle, cancel: CancellationToken) -> Rates {
        let rates = Rates::default();
        let r = rates.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE);
            loop {
                tokio::select! {
                    _ = tick.tick() => r.sample(&engine),
                    _ = cancel.cancelled() => return,
                }
            }
        });
        rates
    }

    fn sample(&self, engine: &EngineHandle) {
        let now = Instant::now();
        let mut m = self.0.lock().expect("rates lock");
        for f in engine.flows() {
            let records = f.metrics.forwarded.load(Relaxed);
            let bytes = f.metrics.forwarded_bytes.load(Relaxed);
            let s = m.entry(f.name).or_default();
            if let Some(at) = s.at {
                let dt = now.duration_since(at).as_secs_f64().max(1e-3);
                s.records_per_s = records.saturating_sub(s.records) as f64 / dt;
                s.bytes_per_s = bytes.saturating_sub(s.bytes) as f64 / dt;
            }
            *s = Sample {
                at: Some(now),
                records,
                bytes,
                ..*s
            };
        }
    }

    /// Records and bytes per second of a flow over the last sample (0 before two).
    pub fn of(&self, flow: &str) -> (f64, f64) {
        let m = self.0.lock().expect("rates lock");
        m.get(flow)
            .map_or((0.0, 0.0), |s| (s.records_per_s, s.bytes_per_s))
    }
}
