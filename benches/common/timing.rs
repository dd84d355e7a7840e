//! Timed windows shared by the end-to-end benchmarks: wall clock, records, and the CPU
//! time of the whole process (clients, mock brokers, engine or verifier) in the window.

use std::time::{Duration, Instant};

/// One timed window.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub records: usize,
    pub elapsed: Duration,
    /// CPU time of the whole process in the window.
    pub cpu: Option<Duration>,
    /// Minor page faults of the whole process in the window: each one a page the kernel
    /// mapped and zeroed, most of them memory the allocator gave back and took again.
    pub faults: Option<u64>,
}

impl Timed {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
    /// MiB/s of `value_bytes`-byte values.
    pub fn mib(&self, value_bytes: usize) -> f64 {
        self.rate() * value_bytes as f64 / (1024.0 * 1024.0)
    }
    /// Average cores busy in the window, as text.
    pub fn cores(&self) -> String {
        self.cpu.map_or("-".into(), |c| {
            format!("{:.2}", c.as_secs_f64() / self.elapsed.as_secs_f64())
        })
    }
    /// Minor page faults per MiB of `value_bytes`-byte values, as text (`-` if unknown).
    #[allow(dead_code)] // Not every bench prints it.
    pub fn faults_per_mib(&self, value_bytes: usize) -> String {
        let mib = self.records as f64 * value_bytes as f64 / (1024.0 * 1024.0);
        match self.faults {
            Some(f) if mib > 0.0 => format!("{:.0}", f as f64 / mib),
            _ => "-".into(),
        }
    }
}

/// Marks the start of a timed window: wall clock and process CPU time.
pub struct Window {
    pub wall: Instant,
    cpu: Option<Duration>,
    faults: Option<u64>,
}

impl Window {
    pub fn start() -> Self {
        Window {
            wall: Instant::now(),
            cpu: cpu_time(),
            faults: minor_faults(),
        }
    }
    pub fn end(&self, records: usize) -> Timed {
        Timed {
            records,
            elapsed: self.wall.elapsed(),
            cpu: cpu_time().zip(self.cpu).map(|(e, s)| e.saturating_sub(s)),
            faults: minor_faults()
                .zip(self.faults)
                .map(|(e, s)| e.saturating_sub(s)),
        }
    }
}

/// CPU time (user and system) of this process, from Linux's `/proc/self/stat`, in
/// clock ticks of 10 ms (USER_HZ is 100 on Linux). Unlike per-thread counters it keeps
/// the time of threads that exited: threads started inside a window are counted too.
pub fn cpu_time() -> Option<Duration> {
    stat_ticks(11, 12)
}

/// CPU time of this process's children that exited and were waited for (cutime and
/// cstime, fields 16 and 17): a child process's whole CPU time, once it is done.
#[allow(dead_code)] // Not every bench runs child processes.
pub fn children_cpu_time() -> Option<Duration> {
    stat_ticks(13, 14)
}

/// Minor page faults of this process so far (`minflt`, field 10 of `/proc/self/stat`),
/// its exited threads' included.
pub fn minor_faults() -> Option<u64> {
    stat_field(7)
}

/// The sum of two tick fields of `/proc/self/stat`, counted after the command name.
fn stat_ticks(user: usize, system: usize) -> Option<Duration> {
    let ticks = stat_field(user)? + stat_field(system)?;
    Some(Duration::from_millis(ticks * 10))
}

/// A numeric field of `/proc/self/stat`, counted after the command name (which may hold
/// spaces): state is 0 (field 3), minflt 7 (field 10), utime 11, stime 12, cutime 13,
/// cstime 14.
fn stat_field(index: usize) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    fields.get(index)?.parse::<u64>().ok()
}
