//! The verification service (mock clusters): a parity run started through the API ends
//! PASSED with every record matched when the link has replicated everything, FAILED
//! naming the missing records when a topic was never replicated; its progress streams,
//! its report is fetched, its start and end are events. A replayed key starts one run;
//! a second run over the same store is refused; a selection of no topic ends ERROR; a
//! cancel and a shutdown end a run CANCELLED, recorded. `duplex verify --remote` exits 0, 1 and 2 as the local verify.

mod harness;

use std::time::Duration;

use duplex_proto::v1 as pb;
use duplex_proto::v1::event_service_client::EventServiceClient;
use duplex_proto::v1::verification_service_client::VerificationServiceClient;
use harness::Provider;
use tonic::transport::Channel;

type Client = VerificationServiceClient<Channel>;

async fn clients(addr: std::net::SocketAddr) -> (Client, EventServiceClient<Channel>) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (
        VerificationServiceClient::new(channel.clone()),
        EventServiceClient::new(channel),
    )
}

fn start_req(topics: &str, key: &str) -> pb::StartVerificationRequest {
    pb::StartVerificationRequest {
        between: vec!["a".into(), "b".into()],
        topics: topics.into(),
        request_id: key.into(),
        ..Default::default()
    }
}

/// Every message of the run's watch, until it ends.
async fn watch_to_end(c: &mut Client, name: &str) -> Vec<pb::Verification> {
    let mut stream = c
        .watch_verification(pb::GetVerificationRequest { name: name.into() })
        .await
        .expect("WatchVerification")
        .into_inner();
    let mut seen = Vec::new();
    let read = async {
        while let Some(v) = stream.message().await.expect("watch message") {
            seen.push(v);
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("the run ends within 120 s");
    seen
}

fn state(v: &pb::Verification) -> pb::VerificationState {
    pb::VerificationState::try_from(v.state).unwrap()
}

use harness::service::cli;

fn verdict_of(dir: &std::path::Path) -> String {
    let json = std::fs::read_to_string(dir.join("parity.json")).expect("parity.json written");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["verdict"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_runs_through_the_api_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let replicated = harness::unique("vrf");
    let solo = harness::unique("solo");
    for c in [a, b] {
        c.create_topic(&replicated, 4).await;
        c.create_topic(&solo, 2).await;
    }
    let config = harness::service::link_config(&[a, b], "vrf\\..*", "");
    let dir = tempfile::tempdir().unwrap();
    let s = harness::service::start(&config, dir.path()).await;
    let (mut v, _) = clients(s.service.api_addr).await;
    harness::produce(a, &replicated, &harness::records("a", 300, 4)).await;
    harness::produce(b, &replicated, &harness::records("b", 200, 4)).await;
    // Never replicated: the link does not select it.
    harness::produce(a, &solo, &harness::records("a", 7, 2)).await;
    s.wait_forwarded("a->b", 300).await;
    s.wait_forwarded("b->a", 200).await;

    // Parity: every record of both sides matched, the report fetched and on disk.
    let re = regex_escape(&replicated);
    let first = v
        .start_verification(start_req(&re, "parity-1"))
        .await
        .expect("StartVerification")
        .into_inner();
    assert!(first.name.starts_with("verifications/"), "{first:?}");
    assert_eq!(state(&first), pb::VerificationState::Running);
    assert_eq!(first.between, ["a", "b"]);
    let seen = watch_to_end(&mut v, &first.name).await;
    let last = seen.last().expect("at least the final message");
    assert_eq!(state(last), pb::VerificationState::Passed, "{last:?}");
    let totals = last.totals.expect("a verdict has counts");
    assert_eq!(totals.matched, 500, "{totals:?}");
    assert_eq!(totals.missing + totals.extra + totals.altered, 0);
    let got = v
        .get_verification(pb::GetVerificationRequest {
            name: first.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let report: serde_json::Value = serde_json::from_str(&got.report_json).expect("report JSON");
    assert_eq!(report["verdict"], "PASS");
    assert_eq!(report["totals"]["matched"], 500);
    let report_dir = std::path::PathBuf::from(&got.report_dir);
    assert!(report_dir.join("parity.html").is_file(), "{report_dir:?}");
    assert_eq!(verdict_of(&report_dir), "PASS");
    // The same key answers with the same run; nothing new starts.
    let again = v
        .start_verification(start_req(&re, "parity-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.name, first.name);

    // An ended run: its watch sends one message; a cancel changes and records nothing.
    let seen = watch_to_end(&mut v, &first.name).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(state(&seen[0]), pb::VerificationState::Passed);
    let after = v
        .cancel_verification(pb::CancelVerificationRequest {
            name: first.name.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&after), pb::VerificationState::Passed);

    // Records on a only: FAILED, each named missing.
    let failed = v
        .start_verification(start_req(&regex_escape(&solo), ""))
        .await
        .unwrap()
        .into_inner();
    let last = watch_to_end(&mut v, &failed.name).await.pop().unwrap();
    assert_eq!(state(&last), pb::VerificationState::Failed, "{last:?}");
    assert_eq!(last.totals.unwrap().missing, 7);

    // A selection that matches no topic is no proof: ERROR, never PASSED.
    let none = v
        .start_verification(start_req("nomatch\\..*", ""))
        .await
        .unwrap()
        .into_inner();
    let last = watch_to_end(&mut v, &none.name).await.pop().unwrap();
    assert_eq!(state(&last), pb::VerificationState::Error, "{last:?}");
    assert!(last.error.contains("matches no topic"), "{last:?}");
    assert!(last.totals.is_none());

    // Bad requests name the field.
    let mut bad = start_req(&re, "");
    bad.between = vec!["a".into(), "zz".into()];
    let e = v.start_verification(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("between: unknown cluster \"zz\""),
        "{e:?}"
    );
    let mut bad = start_req(&re, "");
    bad.from = vec!["a=x".into()];
    let e = v.start_verification(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("from[0]:"), "{e:?}");
    let e = v
        .list_verifications(pb::ListVerificationsRequest {
            page_size: 1,
            page_token: "not-a-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("page_token:"), "{e:?}");
    for (name, code) in [
        ("verifications/999999", tonic::Code::NotFound),
        ("bogus", tonic::Code::InvalidArgument),
    ] {
        let e = v
            .get_verification(pb::GetVerificationRequest { name: name.into() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{name}: {e:?}");
    }

    // A slow run (one record per second per side): a second over the same store is
    // refused naming the first; a cancel ends it CANCELLED.
    let both = format!("{}|{}", regex_escape(&replicated), regex_escape(&solo));
    let mut slow = start_req(&both, "");
    slow.max_rate = 1;
    let running = v
        .start_verification(slow.clone())
        .await
        .unwrap()
        .into_inner();
    let e = v.start_verification(slow.clone()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains(&running.name), "{e:?}");
    // Its progress streams: each side's records planned, and read at about its rate.
    let mut stream = v
        .watch_verification(pb::GetVerificationRequest {
            name: running.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let progress = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let m = stream
                .message()
                .await
                .unwrap()
                .expect("runs until cancelled");
            assert_eq!(state(&m), pb::VerificationState::Running);
            if let Some(p) = m
                .progress
                .filter(|p| p.sides.iter().all(|s| s.records_read > 0))
            {
                return p;
            }
        }
    })
    .await
    .expect("progress within 30 s");
    let sides: Vec<(&str, u64)> = progress
        .sides
        .iter()
        .map(|s| (s.cluster.as_str(), s.records_planned))
        .collect();
    // a holds its 300, b's 200 replicated and its 7 of the solo topic; b the other way.
    assert_eq!(sides, [("a", 507), ("b", 500)], "{progress:?}");
    drop(stream);
    let cancelled = v
        .cancel_verification(pb::CancelVerificationRequest {
            name: running.name.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&cancelled), pb::VerificationState::Cancelled);
    assert_eq!(cancelled.error, "cancelled by anonymous");
    assert!(cancelled.totals.is_none(), "no verdict: {cancelled:?}");

    // The CLI: exit 0 on parity, 1 on discrepancies, the report written locally.
    let api = s.service.api_addr.to_string();
    let out_dir = tempfile::tempdir().unwrap();
    for (topics, code, verdict) in [(&re, 0, "PASS"), (&regex_escape(&solo), 1, "FAIL")] {
        let report = out_dir.path().join(verdict);
        let report_arg = report.display().to_string();
        let out = cli(&[
            "verify",
            "--remote",
            "--api",
            &api,
            "--between",
            "a,b",
            "--topics",
            topics.as_str(),
            "--report",
            &report_arg,
        ])
        .await;
        let said = format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "{said}");
        assert_eq!(verdict_of(&report), verdict, "{said}");
        assert!(said.contains("the service's copy: "), "{said}");
    }
    // Exit 2 naming the problem: an unknown cluster; --config with --remote.
    let out = cli(&["verify", "--remote", "--api", &api, "--between", "a,zz"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("zz"),
        "{err}"
    );

    // A run the service stops under ends CANCELLED, recorded, and says so after a restart.
    let mut slow = start_req(&format!("(?:{both})"), "");
    slow.max_rate = 1;
    let cut = v.start_verification(slow).await.unwrap().into_inner();
    s.stop().await;
    let s = harness::service::start(&config, dir.path()).await;
    let (mut v, mut events2) = clients(s.service.api_addr).await;
    let after = v
        .get_verification(pb::GetVerificationRequest {
            name: cut.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&after), pb::VerificationState::Cancelled, "{after:?}");
    assert!(after.error.contains("the service stopped"), "{after:?}");

    // Newest first, a page at a time.
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = v
            .list_verifications(pb::ListVerificationsRequest {
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.verifications.len() <= 2);
        names.extend(page.verifications.into_iter().map(|v| v.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let ids: Vec<u64> = names
        .iter()
        .map(|n| n.trim_start_matches("verifications/").parse().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        7,
        "parity, failed, no topic, cancelled, two CLI runs, cut: {names:?}"
    );
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");

    // The log: one start per run (the replayed key started none), one end per run, the
    // cancel by its caller.
    let log = harness::service::all_events(&mut events2, 100).await;
    let of = |t: &str| log.iter().filter(|e| e.r#type == t).count();
    assert_eq!(of("VerificationStarted"), 7);
    assert_eq!(of("VerificationFinished"), 7);
    // The cut-off run's end was recorded by the shutdown, before the second start.
    let cut_id: u64 = cut
        .name
        .trim_start_matches("verifications/")
        .parse()
        .unwrap();
    let cut_end = log
        .iter()
        .position(|e| {
            matches!(&e.payload, Some(pb::event::Payload::VerificationFinished(f)) if f.verification == cut_id)
        })
        .expect("the cut run's end");
    let second_start = log
        .iter()
        .enumerate()
        .filter(|(_, e)| e.r#type == "ServiceStarted")
        .nth(1)
        .expect("two starts")
        .0;
    assert!(
        cut_end < second_start,
        "recorded at shutdown, not at the next start"
    );
    assert_eq!(of("VerificationCancelRequested"), 1);
    let started = log
        .iter()
        .find(|e| e.r#type == "VerificationStarted")
        .unwrap();
    assert_eq!(format!("verifications/{}", started.sequence), first.name);
    assert_eq!(started.request_id, "parity-1");
    assert_eq!(started.actor, "anonymous");
    s.stop().await;
}

fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}

/// Ctrl-C during `duplex verify --remote` cancels the run in the service: the CLI exits
/// 2 saying so, and the run is CANCELLED by its caller, recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_a_remote_run_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("ctrlc");
    for c in [a, b] {
        c.create_topic(&topic, 2).await;
    }
    harness::produce(a, &topic, &harness::records("a", 200, 2)).await;
    let config = harness::service::link_config(&[a, b], "ctrlc\\..*", "");
    let dir = tempfile::tempdir().unwrap();
    let s = harness::service::start(&config, dir.path()).await;
    let (mut v, mut events) = clients(s.service.api_addr).await;
    let api = s.service.api_addr.to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_duplex"))
        .args([
            "verify",
            "--remote",
            "--api",
            &api,
            "--between",
            "a,b",
            "--topics",
            &regex_escape(&topic),
            "--max-rate",
            "1",
        ])
        .env_remove("DUPLEX_API")
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run duplex");
    // Once its run is reading, interrupt it.
    harness::wait_until_async("the CLI's run reading", Duration::from_secs(30), || {
        let mut v = v.clone();
        async move {
            let page = v
                .list_verifications(pb::ListVerificationsRequest::default())
                .await
                .unwrap()
                .into_inner();
            page.verifications
                .first()
                .is_some_and(|r| r.progress.as_ref().is_some_and(|p| !p.sides.is_empty()))
        }
    })
    .await;
    let name = v
        .list_verifications(pb::ListVerificationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .verifications
        .remove(0)
        .name;
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{name} cancelled (Ctrl-C)")), "{err}");
    let after = v
        .get_verification(pb::GetVerificationRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&after), pb::VerificationState::Cancelled, "{after:?}");
    assert_eq!(after.error, "cancelled by anonymous");
    let log = harness::service::all_events(&mut events, 100).await;
    assert!(
        log.iter()
            .any(|e| e.r#type == "VerificationCancelRequested"),
        "the cancel is recorded"
    );
    s.stop().await;
}
