//! A Python client with server reflection and nothing else (tests/python/reflect_client.py,
//! grpcio and grpcio-reflection, no .proto files) discovers the API, reads the topology,
//! pauses and resumes a flow and watches the events; the clusters show the pause took
//! effect and the resume delivered what was held back, each record once.
//!
//! `./dev test` installs the Python packages in `target/python` and names its
//! interpreter in `DUPLEX_TEST_PYTHON` (and sets `DUPLEX_REQUIRE_PYTHON`, so there the
//! test cannot skip); a bare `cargo test` without it skips, saying so.

mod harness;

use std::process::Command;
use std::time::Duration;

use harness::{Expected, Provider};
use serde_json::Value;

fn python() -> Option<String> {
    match std::env::var("DUPLEX_TEST_PYTHON") {
        Ok(p) => Some(p),
        Err(_) if std::env::var_os("DUPLEX_REQUIRE_PYTHON").is_some() => {
            panic!("DUPLEX_REQUIRE_PYTHON is set but DUPLEX_TEST_PYTHON is not")
        }
        Err(_) => {
            eprintln!(
                "skipped: DUPLEX_TEST_PYTHON is not set (./dev test installs grpcio and grpcio-reflection and sets it)"
            );
            None
        }
    }
}

/// Runs the reflection client once and returns what it printed.
async fn client(python: &str, addr: &str, action: &str, flow: &str, key: &str) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/reflect_client.py"
    );
    let out = {
        let mut cmd = Command::new(python);
        cmd.args([script, addr, action, flow, key]);
        tokio::task::spawn_blocking(move || cmd.output().expect("run python"))
            .await
            .unwrap()
    };
    assert!(
        out.status.success(),
        "reflect_client.py {action} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_with_reflection_pauses_and_resumes_on_mock() {
    let Some(python) = python() else { return };
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("py");
    a.create_topic(&topic, 4).await;
    b.create_topic(&topic, 4).await;
    let config = harness::service::link_config(&[a, b], "py\\..*", "");
    let dir = tempfile::tempdir().unwrap();
    let s = harness::service::start(&config, dir.path()).await;
    let addr = s.service.api_addr.to_string();

    let mut expected = Expected::new();
    let recs = harness::records("a", 30, 4);
    harness::expect(
        &mut expected,
        harness::produce(a, &topic, &recs).await,
        &recs,
    );
    harness::wait_for_count(&[b], &topic, 30, Duration::from_secs(30)).await;
    s.wait_running().await;

    // Pause through reflection.
    let out = client(&python, &addr, "pause", "a->b", "py-pause").await;
    let services: Vec<&str> = out["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for s in [
        "duplex.v1.TopologyService",
        "duplex.v1.EventService",
        "duplex.v1.VerificationService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(&s), "{s} not discovered: {services:?}");
    }
    assert_eq!(
        out["before"]["a->b"]["state"], "FLOW_STATE_RUNNING",
        "{out}"
    );
    assert_eq!(out["before"]["a->b"]["paused"], false, "{out}");
    assert_eq!(out["after"]["a->b"]["state"], "FLOW_STATE_PAUSED", "{out}");
    assert_eq!(out["after"]["a->b"]["paused"], true, "{out}");
    assert_eq!(out["after"]["b->a"]["paused"], false, "{out}");
    let watched = out["watched"].as_array().unwrap();
    let seqs: Vec<u64> = watched
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{out}");
    let last = watched.last().unwrap();
    assert_eq!(last["type"], "FlowPaused", "{out}");
    assert_eq!(last["request_id"], "py-pause", "{out}");
    // What Python watched is the log.
    let log = s.service.store.read(1, seqs.len()).unwrap();
    let types: Vec<&str> = watched
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        log.iter()
            .map(|e| e.payload.type_name())
            .collect::<Vec<_>>()
    );

    // Paused: records written on a stay there, while b->a (running) carries a witness.
    let held = harness::records("a", 40, 4);
    harness::expect(
        &mut expected,
        harness::produce(a, &topic, &held).await,
        &held,
    );
    let witness = harness::records("b", 5, 4);
    harness::expect(
        &mut expected,
        harness::produce(b, &topic, &witness).await,
        &witness,
    );
    harness::wait_for_count(&[a], &topic, 75, Duration::from_secs(30)).await;
    assert_eq!(
        harness::service::count(b, &topic, 4),
        35,
        "the paused flow wrote to b"
    );

    // Resume through reflection: the held records arrive, each once.
    let out = client(&python, &addr, "resume", "a->b", "py-resume").await;
    assert_eq!(out["after"]["a->b"]["paused"], false, "{out}");
    assert_eq!(
        out["answer"]["events"].as_array().map(Vec::len),
        Some(1),
        "{out}"
    );
    assert_eq!(
        out["watched"].as_array().unwrap().last().unwrap()["type"],
        "FlowResumed"
    );
    harness::wait_for_count(&[b], &topic, 75, Duration::from_secs(30)).await;
    s.wait_forwarded("a->b", 70).await;
    harness::assert_holds_exactly(b, &topic, &expected);

    s.stop().await;
}
