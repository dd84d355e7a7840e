//! A failed test must fail, not hang: once a test's own thread panics, the process gets
//! a grace period to finish (the test's runtime shuts down, other tests in the binary
//! end), and is then ended with the panic named. Without it, anything that waits for
//! ever while a failed test's runtime shuts down (its brokers already killed) holds the
//! whole CI run: a flow's consumer close once did (sync/src/clients/closing.rs).

use std::io::Write;
use std::sync::Once;
use std::time::Duration;

/// How long a process may go on after a test's thread panicked: 180 s, or
/// `DUPLEX_TEST_WATCHDOG_SECS`.
fn grace() -> Duration {
    let secs = std::env::var("DUPLEX_TEST_WATCHDOG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    Duration::from_secs(secs)
}

/// Installs the watchdog once per test process; the panic hook before it still runs.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            // Tokio's threads: a task's panic is its test's to handle.
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("").to_string();
            if name.starts_with("tokio-runtime") {
                return;
            }
            let (what, grace) = (format!("{name}: {info}"), grace());
            let _ = std::thread::Builder::new()
                .name("test-watchdog".into())
                .spawn(move || {
                    std::thread::sleep(grace);
                    let _ = writeln!(
                        std::io::stderr(),
                        "test watchdog: {grace:?} after a test failed the process has not finished; ending it. The failure was {what}"
                    );
                    std::process::exit(101);
                });
        }));
    });
}
