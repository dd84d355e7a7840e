//! `OffsetService` on a running service over mock clusters a–b: TranslateOffsets reads
//! both clusters and records nothing; SyncGroupOffsets commits on b, is recorded as one
//! `GroupOffsetsSynced` event that says what it did (the CLI's `duplex events` too), a
//! retried key answers the same without syncing again, and a consumer of the group on
//! b then reads exactly what it had not consumed on a. Refusals have their codes.

mod harness;

use std::time::Duration;

use duplex_proto::v1 as pb;
use duplex_proto::v1::offset_service_client::OffsetServiceClient;
use harness::groups::{self, named};
use harness::{Provider, TestCluster};
use tonic::Code;
use tonic::transport::Channel;

const PARTITIONS: i32 = 3;

fn sync_req(group: &str, key: &str) -> pb::SyncGroupOffsetsRequest {
    pb::SyncGroupOffsetsRequest {
        group: group.into(),
        from: "a".into(),
        to: "b".into(),
        topics: String::new(),
        allow_rewind: false,
        // The mock answers no DescribeGroups.
        skip_member_check: true,
        request_id: key.into(),
    }
}

fn translate_req(group: &str, from: &str, to: &str, topics: &str) -> pb::TranslateOffsetsRequest {
    pb::TranslateOffsetsRequest {
        group: group.into(),
        from: from.into(),
        to: to.into(),
        topics: topics.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_moves_through_the_api_and_the_log_says_so() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b"]) else {
        return;
    };
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let topic = harness::unique("apioffsets");
    for c in &refs {
        c.create_topic(&topic, PARTITIONS).await;
    }
    let parts: Vec<i32> = (0..PARTITIONS).collect();
    // Both sides written: b's partitions hold b's records before a's, a's the reverse.
    for c in &refs {
        harness::produce(c, &topic, &named(&c.id, 30, &parts)).await;
    }
    let config = harness::service::links_config(&refs, "apioffsets\\..*", &[["a", "b"]]);
    let dir = tempfile::tempdir().unwrap();
    let s = harness::service::start(&config, dir.path()).await;
    let (_, mut events) = harness::service::clients(&s).await;
    let url = format!("http://{}", s.service.api_addr);
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut offsets = OffsetServiceClient::new(channel);
    harness::wait_for_count(&refs, &topic, 180, Duration::from_secs(60)).await;

    let group = harness::unique("app");
    let consumed = groups::consume_prefix(refs[0], &group, &topic, &[10, 45, 60]).await;
    let before = s.service.store.revision();
    let t = offsets
        .translate_offsets(translate_req(&group, "a", "b", ""))
        .await
        .expect("TranslateOffsets")
        .into_inner();
    assert!(t.complete, "{t:?}");
    let got: Vec<(i64, u64)> = t
        .partitions
        .iter()
        .map(|p| (p.offset, p.redelivered))
        .collect();
    // p0: 10 of a's read; b holds b's 30 first: from 0, a's 10 read again. p1: a's 30 and
    // 15 of b's; on b, b's 15 then the rest: at 15, a's 30 again. p2: all 60, at the end.
    assert_eq!(got, [(0, 10), (15, 30), (60, 0)], "{t:?}");
    assert_eq!(
        s.service.store.revision(),
        before,
        "a translation records nothing"
    );

    let synced = offsets
        .sync_group_offsets(sync_req(&group, "sync-1"))
        .await
        .expect("SyncGroupOffsets")
        .into_inner();
    assert!(synced.synced, "{synced:?}");
    let actions: Vec<i32> = synced.partitions.iter().map(|p| p.action).collect();
    assert_eq!(actions, [pb::SyncAction::Committed as i32; 3]);
    assert!(synced.sequence > before);
    let log = harness::service::all_events(&mut events, 100).await;
    let recorded = log
        .iter()
        .find(|e| e.sequence == synced.sequence)
        .expect("the sync is in the log");
    assert_eq!(recorded.r#type, "GroupOffsetsSynced");
    assert_eq!(recorded.request_id, "sync-1");
    let Some(pb::event::Payload::GroupOffsetsSynced(g)) = &recorded.payload else {
        panic!("{recorded:?}");
    };
    let mut from_log = g.sync.clone().expect("sync");
    from_log.sequence = synced.sequence;
    assert_eq!(from_log, synced, "the event records what the call answered");
    assert_eq!(
        groups::committed(refs[1], &group, &topic, PARTITIONS),
        [Some(0), Some(15), Some(60)]
    );

    // The same key: the first answer, nothing synced or recorded again, even after the
    // group moved on b.
    groups::commit(refs[1], &group, &topic, &[5, 15, 60]);
    let revision = s.service.store.revision();
    let again = offsets
        .sync_group_offsets(sync_req(&group, "sync-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed, "{again:?}");
    assert_eq!(
        pb::GroupOffsetsSync {
            replayed: false,
            ..again
        },
        synced
    );
    assert_eq!(s.service.store.revision(), revision);
    assert_eq!(
        groups::committed(refs[1], &group, &topic, PARTITIONS)[0],
        Some(5)
    );
    // A new key: p0 at 5 is ahead of 0, so it is left there; nothing else moves, and
    // a sync that committed nothing records nothing.
    let left = offsets
        .sync_group_offsets(sync_req(&group, "sync-2"))
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<i32> = left.partitions.iter().map(|p| p.action).collect();
    assert_eq!(
        actions,
        [
            pb::SyncAction::KeptAhead as i32,
            pb::SyncAction::Unchanged as i32,
            pb::SyncAction::Unchanged as i32
        ]
    );
    assert_eq!(left.partitions[0].before, Some(5));
    assert!(!left.synced && left.sequence == 0, "{left:?}");
    assert_eq!(s.service.store.revision(), revision);
    // The CLI prints the log's line for the first.
    let out = harness::service::cli(&["events", "--api", &s.service.api_addr.to_string()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "GroupOffsetsSynced group {group} a -> b: 3 committed, 0 already there, 0 left ahead, 0 refused [request sync-1]"
        )),
        "{stdout}"
    );

    // What the group reads on b from the first sync's offsets: what it had not
    // consumed, and the 40 counted, no more.
    groups::commit(refs[1], &group, &topic, &[0, 15, 60]);
    let read = groups::read_on(refs[1], &group, &topic, PARTITIONS).await;
    for p in 0..PARTITIONS {
        let again = read[&p].iter().filter(|v| consumed[&p].contains(v)).count() as u64;
        assert_eq!(again, t.partitions[p as usize].redelivered, "partition {p}");
        assert_eq!(
            read[&p].len() as i64,
            60 - t.partitions[p as usize].offset,
            "partition {p}: everything from the translated offset"
        );
    }

    // The CLI asks the service with --remote: the same translation, and a sync recorded.
    groups::commit(refs[1], &group, &topic, &[0, 0, 0]);
    let api = s.service.api_addr.to_string();
    let remote = |verb: &'static str, extra: &'static [&'static str]| {
        let (api, group) = (api.clone(), group.clone());
        async move {
            let args = [
                &[
                    "offsets", verb, "--remote", "--api", &api, "--group", &group,
                ][..],
                &["--from", "a", "--to", "b", "--json"],
                extra,
            ]
            .concat();
            let out = harness::service::cli(&args).await;
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_default();
            (out.status.code(), json, stdout)
        }
    };
    let (code, t_cli, out) = remote("translate", &[]).await;
    assert_eq!(code, Some(0), "{out}");
    let offsets_cli: Vec<i64> = t_cli["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets_cli, [0, 15, 60], "{t_cli}");
    let (code, s_cli, out) = remote("sync", &["--no-member-check"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(s_cli["synced"], true, "{s_cli}");
    let actions: Vec<&str> = s_cli["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["unchanged", "committed", "committed"], "{s_cli}");
    let seq = s_cli["sequence"].as_u64().expect("the sync's event");
    let log = harness::service::all_events(&mut events, 100).await;
    let e = log.iter().find(|e| e.sequence == seq).expect("recorded");
    assert_eq!(e.r#type, "GroupOffsetsSynced");

    // Refusals.
    let code = |r: Result<tonic::Response<pb::OffsetTranslation>, tonic::Status>| {
        let e = r.expect_err("refused");
        (e.code(), e.message().to_string())
    };
    let (c, m) = code(
        offsets
            .translate_offsets(translate_req(&group, "a", "x", ""))
            .await,
    );
    assert_eq!(c, Code::NotFound, "{m}");
    assert!(
        m.contains("cluster \"x\" is not in the mesh (it has a, b)"),
        "{m}"
    );
    let (c, m) = code(
        offsets
            .translate_offsets(translate_req("nobody", "a", "b", ""))
            .await,
    );
    assert_eq!(c, Code::NotFound, "{m}");
    assert!(
        m.contains("group nobody has no committed offsets on cluster a"),
        "{m}"
    );
    let (c, m) = code(
        offsets
            .translate_offsets(translate_req(&group, "a", "a", ""))
            .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    let (c, m) = code(
        offsets
            .translate_offsets(translate_req(&group, "a", "b", "(unclosed"))
            .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.starts_with("topics: is not a pattern"), "{m}");
    // Without skipping the member check the mock cannot say: FAILED_PRECONDITION (a
    // retry would not help), nothing committed or recorded.
    let revision = s.service.store.revision();
    let mut checked = sync_req(&group, "");
    checked.skip_member_check = false;
    let e = offsets
        .sync_group_offsets(checked)
        .await
        .expect_err("unknown members");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("cannot tell whether group"), "{e:?}");
    assert_eq!(s.service.store.revision(), revision);
    s.stop().await;
}
