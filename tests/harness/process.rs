//! `duplex run` as a process of its own, for tests that kill it: spawned with its log in
//! a file, found by the address its log names, connected once its state is rebuilt.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use duplex_proto::v1 as pb;
use duplex_proto::v1::topology_service_client::TopologyServiceClient;
use tonic::transport::Channel;

/// A `duplex run` process, killed if the test ends early.
pub struct Service(pub Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `duplex run --config CONFIG` with its output appended to `log` (`RUST_LOG` from
/// `DUPLEX_KILL9_RUST_LOG`, else `info,librdkafka=warn`).
pub fn command(config: &std::path::Path, log: &std::path::Path) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_duplex"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env(
            "RUST_LOG",
            std::env::var("DUPLEX_KILL9_RUST_LOG")
                .unwrap_or_else(|_| "info,librdkafka=warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    cmd
}

/// Starts `duplex run`, killed when the returned value is dropped.
pub fn spawn(config: &std::path::Path, log: &std::path::Path) -> Service {
    command(config, log)
        .spawn()
        .map(Service)
        .expect("spawn duplex")
}

/// Where this run serves the API: the address its log names (it binds port 0, so no
/// other process can have taken the port between two runs).
pub fn served_at(log: &std::path::Path) -> Option<String> {
    bound_in_log(log, 0, "Serving the gRPC API").map(|port| format!("http://127.0.0.1:{port}"))
}

/// The port of the last line of `log`, from byte `from` on (where a run's lines begin),
/// that contains `what` and names `127.0.0.1:PORT`: where that run bound a listener
/// configured at port 0. A port picked by the test and handed over would be free only
/// until then; a client's outgoing connection can take it between two runs (an
/// ephemeral port), and the run exits unable to bind.
pub fn bound_in_log(log: &std::path::Path, from: u64, what: &str) -> Option<u16> {
    let text = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(text.get(from as usize..)?);
    let line = text.lines().rev().find(|l| l.contains(what))?;
    let at = line.find("127.0.0.1:")?;
    let port: String = line[at + 10..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    port.parse().ok()
}

/// Connects once the service answers (its state rebuilt).
pub async fn connect(child: &mut Child, log: &std::path::Path) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "duplex exited with {status} before serving:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let Some(addr) = served_at(log) else {
            assert!(
                Instant::now() < deadline,
                "the service did not bind in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if let Ok(ch) = Channel::from_shared(addr).unwrap().connect().await {
            let answer = TopologyServiceClient::new(ch.clone())
                .get_topology(pb::GetTopologyRequest::default())
                .await;
            if answer.is_ok() {
                return ch;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the service did not answer in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
