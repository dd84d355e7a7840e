//! Tansu broker processes on loopback ports, file-backed (sqlite) so that a restart
//! keeps their data.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the Tansu binary is: `$DUPLEX_TANSU`, `tansu` on PATH, or `~/.cargo/bin/tansu`.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("DUPLEX_TANSU") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    }) {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = PathBuf::from(home).join(".cargo/bin/tansu");
    assert!(
        p.is_file(),
        "Tansu is not installed: run the README's test command (it installs tansu 0.6.0), or set DUPLEX_TANSU"
    );
    p
}

/// One Tansu broker process.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    cluster_id: String,
}

/// A free port below the kernel's ephemeral range. A broker keeps its port across
/// restarts; a port from the ephemeral range could meanwhile be taken as the local end
/// of some client's outgoing connection, and the restart would fail to bind.
fn free_port() -> u16 {
    use rand::Rng;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Ports from 10000 up to the range; a range that starts too low for that leaves
    // only the kernel's choice.
    let (low, high) = (10_000, ephemeral_start);
    let mut rng = rand::rng();
    for _ in 0..(if high > low + 1000 { 1000 } else { 0 }) {
        let port = rng.random_range(low..high);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

impl Broker {
    /// Starts a broker with its own storage directory and waits until it accepts connections.
    pub fn start(cluster_id: &str) -> Broker {
        let mut b = Broker {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            cluster_id: cluster_id.to_string(),
        };
        b.up();
        b
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the process again on the same port and storage.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("log file");
        let child = Command::new(binary())
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--cluster-id",
                &self.cluster_id,
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tansu exited with {status}; log: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {} within 30 s; log: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (SIGKILL) and waits for it; the storage stays.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
    }
}
