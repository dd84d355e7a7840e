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
}

/// Marks the start of a timed window: wall clock and process CPU time.
pub struct Window {
    pub wall: Instant,
    cpu: Option<Duration>,
}

impl Window {
    pub fn start() -> Self {
        Window {
            wall: Instant::now(),
            cpu: cpu_time(),
        }
    }
    pub fn end(&self, records: usize) -> Timed {
        Timed {
            records,
            elapsed: self.wall.elapsed(),
            cpu: cpu_time().zip(self.cpu).map(|(e, s)| e.saturating_sub(s)),
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

/// The sum of two tick fields of `/proc/self/stat`, counted after the command name.
fn stat_ticks(user: usize, system: usize) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15, cutime 16, cstime 17.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(user)?.parse::<u64>().ok()? + fields.get(system)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}
