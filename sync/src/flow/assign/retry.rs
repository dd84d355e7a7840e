//! What assignment remembers across refreshes: the partitions being read, those waiting
//! for a retry with their backoff, and how patient the next request is.
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The first wait of a partition whose start failed; doubled on each failure.
pub(super) const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two tries of a partition.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// What the flow knows of the partitions it should replicate, across refreshes.
#[derive(Default)]
pub(crate) struct Assignment {
    /// Partitions being read.
    pub(super) running: HashSet<(String, i32)>,
    /// Partitions that could not be started yet, with when to try again and why.
    pub(super) waiting: HashMap<(String, i32), Retry>,
    /// Topics seen before (their routing was reported once).
    pub(super) seen: HashSet<String>,
    /// Failed attempts in a row to list the source's topics.
    pub(super) listing_failures: u32,
    /// Partitions logged as waiting for an earlier run's deliveries.
    pub(super) unresolved_reported: HashSet<(String, i32)>,
    /// This run's start markers on the target (starts.rs).
    pub(super) markers: super::markers::RunMarkers,
}

pub(super) struct Retry {
    at: Instant,
    backoff: Duration,
    failures: u32,
}

/// The timeout of a request that already timed out `failures` times in a row: a broker
/// that is slow, not down, gets the time it needs (up to 8 times `base`), so that a
/// retry does not repeat a wait that was too short by design.
pub(super) fn patient(base: Duration, failures: u32) -> Duration {
    base * 2u32.pow(failures.min(3))
}

impl Assignment {
    pub(super) fn due(&self, topic: &str, partition: i32, now: Instant) -> bool {
        let key = (topic.to_string(), partition);
        !self.running.contains(&key) && self.waiting.get(&key).is_none_or(|r| r.at <= now)
    }

    pub(super) fn wait(&mut self, topic: &str, partition: i32, now: Instant) -> Duration {
        let r = self
            .waiting
            .entry((topic.to_string(), partition))
            .and_modify(|r| {
                r.backoff = (r.backoff * 2).min(MAX_RETRY);
                r.failures += 1;
            })
            .or_insert(Retry {
                at: now,
                backoff: FIRST_RETRY,
                failures: 1,
            });
        r.at = now + r.backoff;
        r.backoff
    }

    /// Failures in a row among these partitions of `topic`.
    pub(super) fn failures(&self, topic: &str, partitions: &[i32]) -> u32 {
        partitions
            .iter()
            .filter_map(|&p| self.waiting.get(&(topic.to_string(), p)))
            .map(|r| r.failures)
            .max()
            .unwrap_or(0)
    }

    pub(super) fn started(&mut self, topic: &str, partition: i32) {
        let key = (topic.to_string(), partition);
        self.waiting.remove(&key);
        self.running.insert(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_partition_waits_longer_each_time_and_the_others_are_due() {
        let mut a = Assignment::default();
        let t0 = Instant::now();
        assert!(a.due("t", 0, t0) && a.due("t", 1, t0));
        assert_eq!(a.wait("t", 0, t0), Duration::from_secs(1));
        assert!(!a.due("t", 0, t0) && a.due("t", 1, t0));
        assert!(a.due("t", 0, t0 + Duration::from_secs(1)));
        assert_eq!(a.wait("t", 0, t0), Duration::from_secs(2));
        for _ in 0..10 {
            a.wait("t", 0, t0);
        }
        assert_eq!(a.wait("t", 0, t0), MAX_RETRY);
        assert_eq!(a.failures("t", &[0, 1]), 13);
        a.started("t", 0);
        assert!(
            !a.due("t", 0, t0 + MAX_RETRY),
            "running partitions are not started again"
        );
        assert_eq!(a.failures("t", &[0]), 0);
    }

    #[test]
    fn timeouts_grow_with_failures_up_to_eight_times() {
        let base = Duration::from_secs(10);
        let got: Vec<u64> = (0..6).map(|f| patient(base, f).as_secs()).collect();
        assert_eq!(got, [10, 20, 40, 80, 80, 80]);
    }
}
