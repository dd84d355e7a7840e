//! Tracing setup: human-readable logs on stderr, filtered by `RUST_LOG`; colours only
//! when stderr is a terminal (a log file or a journal gets plain text).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops. `default` applies when
/// `RUST_LOG` is not set.
pub fn init_with(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// [`init_with`] at info level (librdkafka's own chatter at warn).
pub fn init() {
    init_with("info,librdkafka=warn");
}
