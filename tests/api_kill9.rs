//! `kill -9` of a `duplex run` process at random moments while a client sends commands
//! through the API: after each restart the log holds every event a client saw and every
//! command that was answered, each command's events are all there or none are, a key
//! retried after the restart answers as the first call did (or, for a call the kill cut
//! off, takes effect once), and the engine runs the flows the log says are paused as
//! paused.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duplex_proto::v1 as pb;
use duplex_proto::v1::event_service_client::EventServiceClient;
use duplex_proto::v1::topology_service_client::TopologyServiceClient;
use harness::Provider;
use harness::process::{connect, spawn};
use rand::Rng;
use tonic::Code;
use tonic::transport::Channel;

const FLOWS: [&str; 2] = ["a->b", "b->a"];
const ROUNDS: usize = 5;

/// One command a client sent: its key, what it asked, and the answer if one came.
#[derive(Debug, Clone)]
struct Sent {
    key: String,
    flow: String,
    pause: bool,
    answer: Option<pb::ChangeResponse>,
}

async fn send(
    t: &mut TopologyServiceClient<Channel>,
    s: &Sent,
) -> Result<pb::ChangeResponse, tonic::Status> {
    let req = pb::FlowChangeRequest {
        flow: s.flow.clone(),
        request_id: s.key.clone(),
        expected_revision: None,
    };
    let r = if s.pause {
        t.pause_flow(req).await
    } else {
        t.resume_flow(req).await
    };
    r.map(tonic::Response::into_inner)
}

/// The flows the log says are paused: the fold of FlowPaused and FlowResumed.
fn paused_in(log: &[pb::Event]) -> BTreeSet<String> {
    let mut paused = BTreeSet::new();
    for e in log {
        match &e.payload {
            Some(pb::event::Payload::FlowPaused(p)) => {
                paused.insert(p.flow.clone());
            }
            Some(pb::event::Payload::FlowResumed(r)) => {
                paused.remove(&r.flow);
            }
            _ => {}
        }
    }
    paused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_of_the_service_keeps_every_answered_command_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut toml = "[limits]\nrefresh_interval = \"500ms\"\ncommit_interval = \"200ms\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n".to_string();
    toml += &harness::clusters_toml(&[&clusters[0], &clusters[1]], |_| {});
    toml += "[[links]]\nclusters = [\"a\", \"b\"]\n[links.topics]\ninclude = [\"k9api\\\\..*\"]\n";
    let config = dir.path().join("duplex.toml");
    std::fs::write(&config, toml).unwrap();

    let mut seen: Vec<pb::Event> = Vec::new();
    let mut sent: Vec<Sent> = Vec::new();
    let mut rng = rand::rng();
    for round in 0..=ROUNDS {
        let log = dir.path().join(format!("duplex-{round}.log"));
        let mut child = spawn(&config, &log);
        let channel = connect(&mut child.0, &log).await;
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            !text.contains('\x1b'),
            "colour escape codes in a log file (stderr is no terminal):\n{text}"
        );
        let mut topology = TopologyServiceClient::new(channel.clone());
        let mut events = EventServiceClient::new(channel);

        // Everything seen before the kill is there, unchanged, at the same place.
        let now = harness::service::all_events(&mut events, 1000).await;
        assert!(
            now.len() >= seen.len(),
            "the log shrank: {} < {}",
            now.len(),
            seen.len()
        );
        assert_eq!(
            &now[..seen.len()],
            &seen[..],
            "the log changed under a kill -9"
        );
        let seqs: Vec<u64> = now.iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, (1..=now.len() as u64).collect::<Vec<_>>(), "gaps");

        // Every command: its events are exactly what its key answers now, in one run of
        // sequence numbers (all or nothing), and a retry changes nothing more.
        let mut by_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for e in &now {
            if !e.request_id.is_empty() {
                by_key.entry(&e.request_id).or_default().push(e.sequence);
            }
        }
        for s in &sent {
            let again = send(&mut topology, s).await.unwrap_or_else(|e| {
                panic!("retrying {} after a restart: {e:?}", s.key);
            });
            let recorded = by_key.get(s.key.as_str()).cloned().unwrap_or_default();
            if let Some(first) = &s.answer {
                assert!(
                    again.replayed,
                    "{}: answered, then forgotten: {again:?}",
                    s.key
                );
                assert_eq!(again.events, first.events, "{}", s.key);
                assert_eq!(recorded, first.events, "{}: the log disagrees", s.key);
            } else if again.replayed {
                // Cut off by the kill after it was recorded: the log has all of it.
                eprintln!("{}: cut off after it was recorded", s.key);
                assert_eq!(recorded, again.events, "{}", s.key);
            } else {
                // Cut off before it was recorded: the retry is its first time.
                eprintln!("{}: cut off before it was recorded", s.key);
                assert!(recorded.is_empty(), "{}: recorded, yet not replayed", s.key);
            }
        }
        // The retries of cut-off commands are answered now: nothing is open any more.
        for s in sent.iter_mut().filter(|s| s.answer.is_none()) {
            s.answer = Some(send(&mut topology, s).await.expect("replay"));
        }

        // The engine runs what the log says.
        let now = harness::service::all_events(&mut events, 1000).await;
        let paused = paused_in(&now);
        let t = topology
            .get_topology(pb::GetTopologyRequest::default())
            .await
            .unwrap()
            .into_inner();
        for f in t.links.iter().flat_map(|l| &l.flows) {
            assert_eq!(
                f.paused,
                paused.contains(&f.name),
                "{f:?} vs log {paused:?}"
            );
        }
        // ...and the engine has them so: paused ones stopped, the others running.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = topology
                .get_topology(pb::GetTopologyRequest::default())
                .await
                .unwrap()
                .into_inner();
            let settled = t.links.iter().flat_map(|l| &l.flows).all(|f| {
                let want = if paused.contains(&f.name) {
                    pb::FlowState::Paused
                } else {
                    pb::FlowState::Running
                };
                f.state == want as i32
            });
            if settled {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "flows did not settle as the log says: {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen = now;
        if round == ROUNDS {
            // The last run ends as an operator ends it: SIGTERM, a drain, exit 0.
            let status = nix_kill(&mut child.0, false).expect("SIGTERM");
            assert_eq!(
                status.code(),
                Some(0),
                "{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            break;
        }

        // Commands until a kill -9 at a random moment.
        let answered: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let sender = {
            let answered = answered.clone();
            let mut topology = topology.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let mut s = Sent {
                        key: format!("r{round}-c{i}"),
                        flow: FLOWS[i % 2].to_string(),
                        pause: (i / 2) % 2 == 0,
                        answer: None,
                    };
                    let r = send(&mut topology, &s).await;
                    match r {
                        Ok(a) => {
                            s.answer = Some(a);
                            answered.lock().unwrap().push(s);
                        }
                        Err(e) => {
                            // The kill cut this one off (or the service was stopping).
                            assert!(
                                matches!(
                                    e.code(),
                                    Code::Unavailable | Code::Unknown | Code::Cancelled
                                ),
                                "{e:?}"
                            );
                            answered.lock().unwrap().push(s);
                            return;
                        }
                    }
                }
            })
        };
        // The kill comes at a random moment after the first answer, so that every round
        // has answered commands to check, whatever the machine's speed.
        let first = Instant::now() + Duration::from_secs(60);
        while answered.lock().unwrap().is_empty() {
            assert!(Instant::now() < first, "no command was answered in 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let wait = Duration::from_millis(rng.random_range(0..1200));
        tokio::time::sleep(wait).await;
        nix_kill(&mut child.0, true).expect("kill -9");
        sender.await.expect("sender");
        let round_sent = answered.lock().unwrap().clone();
        eprintln!(
            "round {round}: killed after {wait:?}, {} commands answered, {} cut off",
            round_sent.iter().filter(|s| s.answer.is_some()).count(),
            round_sent.iter().filter(|s| s.answer.is_none()).count(),
        );
        sent.extend(round_sent);
    }
}

/// SIGKILL (`hard`) or SIGTERM, then reap.
fn nix_kill(child: &mut Child, hard: bool) -> std::io::Result<std::process::ExitStatus> {
    if hard {
        child.kill()?;
    } else {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    child.wait()
}
