//! The CLI's client commands against a running service (mock clusters), with their
//! output and exit codes: `status`, `flows pause|resume`, `links pause|resume`,
//! `events`; a refused change and an unreachable service exit 2 naming the problem. The
//! records written while the link was paused reach b once it is resumed, each once.

mod harness;

use std::process::Output;
use std::time::Duration;

use harness::{Expected, Provider};

use harness::service::cli;

/// Asserts the exit code and returns (stdout, stderr).
fn expect(out: &Output, code: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_print_and_exit_as_documented_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("cli");
    a.create_topic(&topic, 4).await;
    b.create_topic(&topic, 4).await;
    let config = harness::service::link_config(&[a, b], "cli\\..*", "");
    let dir = tempfile::tempdir().unwrap();
    let s = harness::service::start(&config, dir.path()).await;
    let api = s.service.api_addr.to_string();
    s.wait_running().await;

    let (out, _) = expect(&cli(&["status", "--api", &api]).await, 0);
    for want in ["a->b", "b->a", "running", "a-b"] {
        assert!(out.contains(want), "status lacks {want:?}:\n{out}");
    }

    // A flow: paused, the same key again, the key for another request, an unknown flow.
    let (out, _) = expect(
        &cli(&[
            "flows",
            "pause",
            "a->b",
            "--api",
            &api,
            "--request-id",
            "cli-1",
        ])
        .await,
        0,
    );
    assert!(
        out.starts_with("pause flow a->b: done, recorded as event "),
        "{out}"
    );
    let (out, _) = expect(
        &cli(&[
            "flows",
            "pause",
            "a->b",
            "--api",
            &api,
            "--request-id",
            "cli-1",
        ])
        .await,
        0,
    );
    assert!(
        out.contains("already done by an earlier call with this request id"),
        "{out}"
    );
    let (_, err) = expect(
        &cli(&[
            "flows",
            "resume",
            "a->b",
            "--api",
            &api,
            "--request-id",
            "cli-1",
        ])
        .await,
        2,
    );
    assert!(
        err.contains("AlreadyExists") && err.contains("cli-1"),
        "{err}"
    );
    let (_, err) = expect(&cli(&["flows", "pause", "x->y", "--api", &api]).await, 2);
    assert!(err.contains("NotFound") && err.contains("x->y"), "{err}");
    let (out, _) = expect(&cli(&["status", "--api", &api]).await, 0);
    assert!(out.contains("paused"), "{out}");

    // Records written now wait on a.
    let mut expected = Expected::new();
    let recs = harness::records("a", 50, 4);
    harness::expect(
        &mut expected,
        harness::produce(a, &topic, &recs).await,
        &recs,
    );

    // The link: pausing pauses the other flow too; resuming both delivers the rest.
    let (out, _) = expect(&cli(&["links", "pause", "a-b", "--api", &api]).await, 0);
    assert!(
        out.starts_with("pause link a-b: done, recorded as event "),
        "{out}"
    );
    let (_, err) = expect(&cli(&["links", "pause", "nope", "--api", &api]).await, 2);
    assert!(err.contains("NotFound") && err.contains("nope"), "{err}");
    let (_, err) = expect(
        &cli(&[
            "links",
            "resume",
            "a-b",
            "--api",
            &api,
            "--expected-revision",
            "1",
        ])
        .await,
        2,
    );
    assert!(err.contains("Aborted"), "{err}");
    let (out, _) = expect(&cli(&["links", "resume", "a-b", "--api", &api]).await, 0);
    let seqs = out
        .trim_end()
        .rsplit_once("event ")
        .map(|(_, s)| s.to_string());
    assert!(
        out.starts_with("resume link a-b: done, recorded as event ") && out.contains(", "),
        "two events, one per flow: {out} ({seqs:?})"
    );
    harness::wait_for_count(&[b], &topic, 50, Duration::from_secs(30)).await;
    s.wait_forwarded("a->b", 50).await;
    harness::assert_holds_exactly(b, &topic, &expected);

    // The log, one line per event, as the service holds it. Flows record their state
    // changes as they happen, so the log may grow while the CLI reads: it printed at
    // least what was there before and no more than what is there after.
    s.wait_running().await;
    let before = s.service.store.revision() as usize;
    let (out, _) = expect(&cli(&["events", "--api", &api]).await, 0);
    let log = s.service.store.read(1, 10_000).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        before <= lines.len() && lines.len() <= log.len(),
        "{before} {}\n{out}",
        log.len()
    );
    for (line, e) in lines.iter().zip(&log) {
        assert!(line.starts_with(&format!("#{} ", e.seq)), "{line}");
        assert!(line.contains(e.payload.type_name()), "{line}");
    }
    let from = before as u64 - 1;
    let (out, _) = expect(
        &cli(&["events", "--api", &api, "--from", &from.to_string()]).await,
        0,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 2, "{out}");
    assert!(lines[0].starts_with(&format!("#{from} ")), "{out}");
    assert!(lines[1].starts_with(&format!("#{} ", from + 1)), "{out}");

    // Only some types: exactly the log's events of those types, in order (flows may
    // record state changes meanwhile, which these types leave out).
    let (out, _) = expect(
        &cli(&["events", "--api", &api, "--type", "FlowPaused,FlowResumed"]).await,
        0,
    );
    let wanted: Vec<u64> = s
        .service
        .store
        .read(1, 10_000)
        .unwrap()
        .iter()
        .filter(|e| matches!(e.payload.type_name(), "FlowPaused" | "FlowResumed"))
        .map(|e| e.seq)
        .collect();
    let printed: Vec<u64> = out
        .lines()
        .map(|l| l[1..].split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        wanted.len() >= 4,
        "a pause and a resume of a link: {wanted:?}"
    );
    assert_eq!(printed, wanted, "{out}");
    // A type that does not exist is named, with the ones that do.
    let (_, err) = expect(
        &cli(&["events", "--api", &api, "--type", "FlowPause"]).await,
        2,
    );
    assert!(
        err.contains("no event type \"FlowPause\"") && err.contains("FlowPaused"),
        "{err}"
    );

    // Nothing listening: exit 2, saying where it looked.
    let (_, err) = expect(&cli(&["status", "--api", "127.0.0.1:1"]).await, 2);
    assert!(
        err.contains("cannot reach the Duplex API at http://127.0.0.1:1"),
        "{err}"
    );

    s.stop().await;
}
