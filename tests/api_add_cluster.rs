//! `TopologyService.AddCluster` on a running service over mock clusters written all the
//! time: a triangle a–b–c gains d, linked to b and c, through `duplex clusters add …
//! --wait` while a, b and c are written. The change is one `TopologyChanged` naming the
//! cluster, its links and a cut that covers d; d then holds every record of a, b and c
//! at or past the cut and none below it, and a, b and c every record d wrote from the
//! change on and none it held before; a retried key takes effect once; each refusal has
//! its code (a secret option among them); a restart runs d and its links from the log.

mod harness;

use std::time::Duration;

use duplex_proto::v1 as pb;
use harness::service::{clients, holds_exactly, links_config, write_all};
use harness::{Expected, Provider, TestCluster};
use tonic::Code;

const PATTERN: &str = "addcl\\..*";

/// The request `duplex clusters add d --bootstrap B --link b --link c=c-d --include P`
/// sends.
fn add_d(bootstrap: &str, key: &str) -> pb::AddClusterRequest {
    let link = |name: &str, peer: &str| pb::ClusterLink {
        name: name.into(),
        peer: peer.into(),
        topics: Some(pb::TopicSelection {
            include: vec![PATTERN.into()],
            exclude: Vec::new(),
        }),
    };
    pb::AddClusterRequest {
        cluster: Some(pb::ClusterSettings {
            id: "d".into(),
            bootstrap_servers: bootstrap.into(),
            ..Default::default()
        }),
        links: vec![link("", "b"), link("c-d", "c")],
        request_id: key.into(),
        expected_revision: None,
    }
}

/// The one `TopologyChanged` of `log`, with its sequence number.
fn the_change(log: &[pb::Event]) -> (u64, pb::TopologyChanged) {
    let changes: Vec<(u64, pb::TopologyChanged)> = log
        .iter()
        .filter_map(|e| match &e.payload {
            Some(pb::event::Payload::TopologyChanged(c)) => Some((e.sequence, c.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 1, "one change recorded: {changes:?}");
    changes.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_joins_a_triangle_while_written_and_stays_after_a_restart() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b", "c", "d"]) else {
        return;
    };
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let topic = harness::unique("addcl");
    for c in &refs {
        c.create_topic(&topic, 3).await;
    }
    // d holds records of its own before it joins: they stay on d.
    let mut on_d = write_all(&refs[3..], &topic, 30, 0).await;
    let config = links_config(&refs[..3], PATTERN, &[["a", "b"], ["b", "c"], ["a", "c"]]);
    let dir = tempfile::tempdir().unwrap();
    let s = harness::service::start(&config, dir.path()).await;
    let (mut t, mut e) = clients(&s).await;
    s.wait_running().await;
    let api = s.service.api_addr.to_string();
    let d_bootstrap = refs[3].bootstrap.clone();

    let cli = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        harness::service::cli(&[
            "clusters",
            "add",
            "d",
            "--bootstrap",
            &d_bootstrap,
            "--link",
            "b",
            "--link",
            "c=c-d",
            "--include",
            PATTERN,
            "--request-id",
            "add-d",
            "--wait",
            "--api",
            &api,
        ])
        .await
    };
    let (mut everywhere, out) = tokio::join!(write_all(&refs[..3], &topic, 300, 0), cli);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("settled"), "{stdout}");

    let (seq, change) = the_change(&harness::service::all_events(&mut e, 100).await);
    assert_eq!(
        change
            .clusters_added
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["d"]
    );
    assert_eq!(
        change
            .links
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["a-b", "b-c", "a-c", "b-d", "c-d"]
    );
    let ends = |cluster: &str| -> Vec<i64> {
        let c = change
            .cut
            .iter()
            .find(|c| c.topic == topic && c.cluster == cluster);
        c.unwrap_or_else(|| panic!("the cut names {topic} on {cluster}"))
            .ends
            .clone()
    };
    assert_eq!(ends("d").len(), 3, "the cut covers the new cluster");
    // d: a's, b's and c's records at or past the cut, and its own.
    let cut: Vec<(String, Vec<i64>)> = ["a", "b", "c"]
        .iter()
        .map(|c| (c.to_string(), ends(c)))
        .collect();
    let past_cut = |(origin, p, o): &(String, i32, i64)| {
        cut.iter()
            .find(|(c, _)| c == origin)
            .is_none_or(|(_, e)| *o >= e[*p as usize])
    };
    let after: Expected = everywhere
        .iter()
        .filter(|(id, _)| past_cut(id))
        .map(|(id, r)| (id.clone(), r.clone()))
        .collect();
    assert!(
        !after.is_empty() && after.len() < everywhere.len(),
        "records written on both sides of the cut"
    );
    on_d.extend(after);
    // d's writes from the change on reach every cluster.
    let d_writes = write_all(&refs[3..], &topic, 100, 30).await;
    everywhere.extend(d_writes.clone());
    on_d.extend(d_writes);
    holds_exactly(&refs[..3], &topic, &everywhere).await;
    holds_exactly(&refs[3..], &topic, &on_d).await;

    // The retry answers the first result; the same cluster again records nothing.
    let again = t
        .add_cluster(add_d(&d_bootstrap, "add-d"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed && again.events == [seq], "{again:?}");
    let same = t
        .add_cluster(add_d(&d_bootstrap, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(same.events.is_empty() && !same.replayed, "{same:?}");
    // Refusals, each with its code and naming what is wrong.
    let refused =
        |r: Result<tonic::Response<pb::ChangeResponse>, tonic::Status>| r.expect_err("refused");
    let st = refused(t.add_cluster(add_d("elsewhere:9092", "")).await);
    assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}");
    assert!(
        st.message().contains("cluster \"d\" exists already"),
        "{st:?}"
    );
    let mut r = add_d(&d_bootstrap, "");
    r.cluster.as_mut().unwrap().id = "e".into();
    r.links[0].peer = "x".into();
    let st = refused(t.add_cluster(r.clone()).await);
    assert_eq!(st.code(), Code::NotFound, "{st:?}");
    assert!(st.message().contains("no cluster \"x\""), "{st:?}");
    r.links[0].peer = "b".into();
    r.cluster
        .as_mut()
        .unwrap()
        .options
        .insert("sasl.password".into(), "hunter2".into());
    let st = refused(t.add_cluster(r.clone()).await);
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(
        st.message()
            .starts_with("cluster.options.\"sasl.password\""),
        "{st:?}"
    );
    assert!(
        !st.message().contains("hunter2"),
        "a secret is never repeated: {st:?}"
    );
    r.cluster.as_mut().unwrap().options.clear();
    r.cluster.as_mut().unwrap().id = "e!".into();
    let st = refused(t.add_cluster(r.clone()).await);
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().starts_with("cluster.id"), "{st:?}");
    r.cluster.as_mut().unwrap().id = "e".into();
    r.links[1].name = "c-e".into();
    let mut no_links = r.clone();
    no_links.links.clear();
    let st = refused(t.add_cluster(no_links).await);
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().starts_with("links"), "{st:?}");
    let mut twice = r.clone();
    twice.links[1].peer = "b".into();
    let st = refused(t.add_cluster(twice).await);
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().starts_with("links[1].peer"), "{st:?}");
    // Options librdkafka refuses, and a cluster that does not answer, are refused before
    // any flow is held: nothing is recorded and the mesh runs on.
    let mut bad = r.clone();
    let producer = &mut bad.cluster.as_mut().unwrap().producer;
    producer.insert("linger.ms".into(), "soon".into());
    let st = refused(t.add_cluster(bad).await);
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().starts_with("cluster.producer"), "{st:?}");
    let mut away = r.clone();
    away.cluster.as_mut().unwrap().bootstrap_servers = "127.0.0.1:1".into();
    let st = refused(t.add_cluster(away).await);
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
    assert!(st.message().contains("no flow was held"), "{st:?}");
    let log = harness::service::all_events(&mut e, 100).await;
    assert_eq!(the_change(&log).0, seq, "nothing recorded by the refusals");
    // A verification may name the added cluster at once.
    let mut v = pb::verification_service_client::VerificationServiceClient::connect(format!(
        "http://{api}"
    ))
    .await
    .unwrap();
    let run = v
        .start_verification(pb::StartVerificationRequest {
            between: vec!["d".into(), "a".into()],
            topics: topic.clone(),
            ..Default::default()
        })
        .await
        .expect("a verification over d starts");
    assert!(!run.into_inner().name.is_empty());
    s.stop().await;

    // A restart with the file unchanged runs d and its links from the log.
    let s = harness::service::start(&config, dir.path()).await;
    let (mut t, _) = clients(&s).await;
    s.wait_running().await;
    let topology = t
        .get_topology(pb::GetTopologyRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        topology
            .clusters
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c", "d"]
    );
    assert!(
        s.service.engine.flow("d->c").is_some(),
        "d's links run again"
    );
    let more = write_all(&refs, &topic, 60, 400).await;
    everywhere.extend(more.clone());
    on_d.extend(more);
    holds_exactly(&refs[..3], &topic, &everywhere).await;
    holds_exactly(&refs[3..], &topic, &on_d).await;
    s.stop().await;
}
