//! SIGTERM while the source broker has stopped answering (connection up, no responses)
//! with checkpoint commits outstanding: `duplex run` drains for at most its drain
//! timeout and exits 0 within a bound (docs/delivery.md), instead of waiting for its
//! clients' requests to time out. Nothing is lost or duplicated.

mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Expected, Provider};

/// Drain timeout (10 s) plus the shutdown grace (5 s), plus slack for a loaded machine.
const EXIT_BOUND: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_in_bounded_time_when_brokers_stop_answering_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["east", "west"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("term");
    a.create_topic(&topic, 8).await;
    b.create_topic(&topic, 8).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("duplex.toml");
    let mut toml = "[limits]\nrefresh_interval = \"500ms\"\ncommit_interval = \"200ms\"\nstall_timeout = \"2s\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n".to_string();
    toml += &harness::clusters_toml(&[a, b], |_| {});
    toml +=
        "[[links]]\nclusters = [\"east\", \"west\"]\n[links.topics]\ninclude = [\"term\\\\..*\"]\n";
    std::fs::write(&cfg, toml).unwrap();
    let log = dir.path().join("duplex.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_duplex"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info,librdkafka=warn")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("spawn duplex");

    let recs = harness::records("east", 200, 8);
    let ids = harness::produce(a, &topic, &recs).await;
    let mut expected = Expected::new();
    harness::expect(&mut expected, ids, &recs);
    harness::wait_for_count(&[b], &topic, 200, Duration::from_secs(30)).await;

    // The target answers after 4 s, so the next records are acknowledged, and their
    // checkpoints committed, only after the source has stopped answering (connection
    // up, no responses for two minutes): those commits hang, as does every fetch,
    // metadata and watermark request to it.
    b.mock()
        .broker_round_trip_time(1, Duration::from_secs(4))
        .unwrap();
    let recs = harness::records_on("east", 100, &(0..8).collect::<Vec<_>>());
    let recs: Vec<_> = recs
        .into_iter()
        .map(|mut r| {
            r.timestamp += 10_000;
            r
        })
        .collect();
    let ids = harness::produce(a, &topic, &recs).await;
    harness::expect(&mut expected, ids, &recs);
    // The flow fetches them within fetch.wait.max.ms (500 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.mock()
        .broker_round_trip_time(1, Duration::from_secs(120))
        .unwrap();
    // Long enough for the acknowledgements (4 s) to be committed (every 200 ms) and
    // for the stall watchdog (2 s) to wait on the source.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let sent = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > EXIT_BOUND {
            let _ = child.kill();
            panic!(
                "duplex did not exit within {EXIT_BOUND:?} of SIGTERM; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("duplex exited {:?} after SIGTERM", sent.elapsed());
    assert!(
        status.success(),
        "SIGTERM exits 0, got {status}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // librdkafka's warning that the gapless guarantee is experimental (one per producer
    // created, restarts included) is replaced by one line of Duplex's saying why.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("CONFWARN"), "{text}");
    assert_eq!(
        text.matches(duplex_sync::clients::GAPLESS_WHY).count(),
        1,
        "{text}"
    );
    for c in [a, b] {
        c.mock().broker_round_trip_time(1, Duration::ZERO).unwrap();
    }
    harness::wait_for_count(&[b], &topic, 300, Duration::from_secs(30)).await;
    for c in [a, b] {
        harness::assert_holds_exactly(c, &topic, &expected);
    }
}
