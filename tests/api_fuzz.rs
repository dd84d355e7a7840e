//! Every RPC with random and malformed field values, and bytes that are no message at
//! all: the answer is a success or a clear refusal (INVALID_ARGUMENT, NOT_FOUND,
//! ALREADY_EXISTS, ABORTED, FAILED_PRECONDITION) with a message, never UNKNOWN,
//! INTERNAL or a dropped connection, and the service keeps answering. The flows named
//! by chance really pause and resume; at the end both run again and the log has no gap.

mod harness;

use std::time::Duration;

use duplex_proto::v1 as pb;
use duplex_proto::v1::event_service_client::EventServiceClient;
use duplex_proto::v1::offset_service_client::OffsetServiceClient;
use duplex_proto::v1::topology_service_client::TopologyServiceClient;
use duplex_proto::v1::verification_service_client::VerificationServiceClient;
use futures::StreamExt;
use harness::Provider;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use tonic::Code;
use tonic::transport::Channel;

/// A string a client might send: empty, a real name, garbage, control characters,
/// far too long.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a->b".to_string()),
        Just("b->a".to_string()),
        Just("a-b".to_string()),
        Just("a".to_string()),
        Just("verifications/1".to_string()),
        Just("a=3".to_string()),
        Just("fuzz\\..*".to_string()),
        Just("   ".to_string()),
        "[a-z>\\-]{1,12}",
        any::<String>(),
        "\\PC{0,40}\u{0}\\PC{0,5}",
        (1usize..4).prop_map(|k| "x".repeat(k * 100_000)),
    ]
}

fn revision() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        (0u64..64).prop_map(Some),
        any::<u64>().prop_map(Some)
    ]
}

#[derive(Debug, Clone)]
enum Call {
    Topology(Vec<String>),
    Flow(bool, String, String, Option<u64>),
    Link(bool, String, String, Option<u64>),
    List(u64, u32),
    Watch(u64),
    /// between, topics, from, key.
    Verify(Vec<String>, String, Vec<String>, String),
    /// get, watch or cancel a run by name.
    Run(u8, String),
    Runs(u32, String),
    /// name, clusters, include, exclude, key, revision.
    AddLink(
        String,
        Vec<String>,
        Vec<String>,
        Vec<String>,
        String,
        Option<u64>,
    ),
    /// name, key, revision.
    RemoveLink(String, String, Option<u64>),
    /// name, include, exclude, key, revision.
    SetLinkTopics(String, Vec<String>, Vec<String>, String, Option<u64>),
    /// id, bootstrap, options, links (name, peer, include), key.
    AddCluster(
        String,
        String,
        Vec<(String, String)>,
        Vec<(String, String, Vec<String>)>,
        String,
    ),
    /// group, from, to, topics.
    Translate(String, String, String, String),
    /// group, from, to, topics, key, skip the member check.
    Sync(String, String, String, String, String, bool),
}

fn cluster() -> impl Strategy<Value = String> {
    prop_oneof![Just("a".to_string()), Just("b".to_string()), field()]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        prop::collection::vec(field(), 0..4).prop_map(Call::Topology),
        (150usize..160).prop_map(|n| Call::Topology(vec!["t".into(); n])),
        (any::<bool>(), field(), field(), revision())
            .prop_map(|(p, f, k, r)| Call::Flow(p, f, k, r)),
        (any::<bool>(), field(), field(), revision())
            .prop_map(|(p, l, k, r)| Call::Link(p, l, k, r)),
        (any::<u64>(), any::<u32>()).prop_map(|(f, n)| Call::List(f, n)),
        (0u64..10).prop_map(|f| Call::List(f, 0)),
        any::<u64>().prop_map(Call::Watch),
        (0u64..5).prop_map(Call::Watch),
        (
            prop::collection::vec(field(), 0..3),
            field(),
            prop::collection::vec(field(), 0..2),
            field()
        )
            .prop_map(|(b, t, f, k)| Call::Verify(b, t, f, k)),
        (
            Just(vec!["a".to_string(), "b".to_string()]),
            field(),
            Just(Vec::new()),
            field()
        )
            .prop_map(|(b, t, f, k)| Call::Verify(b, t, f, k)),
        (0u8..3, field()).prop_map(|(m, n)| Call::Run(m, n)),
        (
            0u8..3,
            (0u64..40).prop_map(|i| format!("verifications/{i}"))
        )
            .prop_map(|(m, n)| Call::Run(m, n)),
        (any::<u32>(), field()).prop_map(|(n, t)| Call::Runs(n, t)),
        (
            field(),
            prop::collection::vec(field(), 0..4),
            prop::collection::vec(field(), 0..3),
            prop::collection::vec(field(), 0..2),
            field(),
            revision()
        )
            .prop_map(|(n, c, i, x, k, r)| Call::AddLink(n, c, i, x, k, r)),
        (field(), field(), revision()).prop_map(|(n, k, r)| Call::RemoveLink(n, k, r)),
        (
            field(),
            prop::collection::vec(field(), 0..3),
            prop::collection::vec(field(), 0..2),
            field(),
            revision()
        )
            .prop_map(|(n, i, x, k, r)| Call::SetLinkTopics(n, i, x, k, r)),
        // The one link: a selection that drops a topic the clusters hold is refused (it
        // would no longer be joined), one that keeps them is applied.
        (prop::collection::vec(field(), 0..2), field(), revision())
            .prop_map(|(i, k, r)| Call::SetLinkTopics("a-b".into(), i, Vec::new(), k, r)),
        (
            field(),
            field(),
            prop::collection::vec((field(), field()), 0..3),
            prop::collection::vec(
                (field(), field(), prop::collection::vec(field(), 0..2)),
                0..3
            ),
            field()
        )
            .prop_map(|(i, b, o, mut l, k)| {
                // Never a peer the mesh has: a well-formed addition would hold the flows
                // and wait for the unreachable cluster's end offsets (UNAVAILABLE).
                for (_, peer, _) in &mut l {
                    if peer == "a" || peer == "b" {
                        peer.push('x');
                    }
                }
                Call::AddCluster(i, b, o, l, k)
            }),
        // A cluster the mesh has, or a secret option: refused before anything is held.
        (
            Just("a".to_string()),
            prop_oneof![
                Just(vec![("sasl.password".to_string(), "x".to_string())]),
                Just(Vec::new())
            ],
            field()
        )
            .prop_map(|(i, o, k)| Call::AddCluster(
                i,
                "127.0.0.1:1".into(),
                o,
                vec![(String::new(), "b".into(), vec![".*".into()])],
                k
            )),
        (field(), cluster(), cluster(), field())
            .prop_map(|(g, f, t, r)| Call::Translate(g, f, t, r)),
        // Groups that committed nothing: refused before anything is committed.
        (
            field(),
            cluster(),
            cluster(),
            field(),
            field(),
            any::<bool>()
        )
            .prop_map(|(g, f, t, r, k, s)| Call::Sync(g, f, t, r, k, s)),
        // The one link, whose removal would cut a cluster off: refused.
        (field(), revision()).prop_map(|(k, r)| Call::RemoveLink("a-b".into(), k, r)),
        // Two real clusters, linked already: refused, nothing held for long.
        (field(), prop::collection::vec(field(), 0..2)).prop_map(|(n, i)| Call::AddLink(
            n,
            vec!["a".into(), "b".into()],
            i,
            Vec::new(),
            String::new(),
            None
        )),
    ]
}

const CLEAR: [Code; 6] = [
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::AlreadyExists,
    Code::Aborted,
    Code::FailedPrecondition,
];

async fn run(
    t: &mut TopologyServiceClient<Channel>,
    e: &mut EventServiceClient<Channel>,
    v: &mut VerificationServiceClient<Channel>,
    o: &mut OffsetServiceClient<Channel>,
    c: Call,
) -> Result<(), tonic::Status> {
    match c {
        Call::Translate(group, from, to, topics) => {
            o.translate_offsets(pb::TranslateOffsetsRequest {
                group,
                from,
                to,
                topics,
            })
            .await?;
        }
        Call::Sync(group, from, to, topics, request_id, skip_member_check) => {
            o.sync_group_offsets(pb::SyncGroupOffsetsRequest {
                group,
                from,
                to,
                topics,
                request_id,
                skip_member_check,
                allow_rewind: false,
            })
            .await?;
        }
        Call::Verify(between, topics, from, request_id) => {
            v.start_verification(pb::StartVerificationRequest {
                between,
                topics,
                from,
                request_id,
                ..Default::default()
            })
            .await?;
        }
        Call::Run(0, name) => {
            v.get_verification(pb::GetVerificationRequest { name })
                .await?;
        }
        Call::Run(1, name) => {
            let mut s = v
                .watch_verification(pb::GetVerificationRequest { name })
                .await?
                .into_inner();
            let _ = tokio::time::timeout(Duration::from_millis(50), s.next()).await;
        }
        Call::Run(_, name) => {
            v.cancel_verification(pb::CancelVerificationRequest {
                name,
                request_id: String::new(),
            })
            .await?;
        }
        Call::Runs(page_size, page_token) => {
            v.list_verifications(pb::ListVerificationsRequest {
                page_size,
                page_token,
            })
            .await?;
        }
        Call::AddLink(name, clusters, include, exclude, request_id, expected_revision) => {
            t.add_link(pb::AddLinkRequest {
                name,
                clusters,
                topics: Some(pb::TopicSelection { include, exclude }),
                request_id,
                expected_revision,
            })
            .await?;
        }
        Call::RemoveLink(name, request_id, expected_revision) => {
            t.remove_link(pb::RemoveLinkRequest {
                name,
                request_id,
                expected_revision,
            })
            .await?;
        }
        Call::SetLinkTopics(name, include, exclude, request_id, expected_revision) => {
            t.set_link_topics(pb::SetLinkTopicsRequest {
                name,
                topics: Some(pb::TopicSelection { include, exclude }),
                request_id,
                expected_revision,
            })
            .await?;
        }
        Call::AddCluster(id, bootstrap_servers, options, links, request_id) => {
            t.add_cluster(pb::AddClusterRequest {
                cluster: Some(pb::ClusterSettings {
                    id,
                    bootstrap_servers,
                    options: options.into_iter().collect(),
                    ..Default::default()
                }),
                links: links
                    .into_iter()
                    .map(|(name, peer, include)| pb::ClusterLink {
                        name,
                        peer,
                        topics: Some(pb::TopicSelection {
                            include,
                            exclude: Vec::new(),
                        }),
                    })
                    .collect(),
                request_id,
                expected_revision: None,
            })
            .await?;
        }
        Call::Topology(route_topics) => {
            t.get_topology(pb::GetTopologyRequest { route_topics })
                .await?;
        }
        Call::Flow(pause, flow, request_id, expected_revision) => {
            let req = pb::FlowChangeRequest {
                flow,
                request_id,
                expected_revision,
            };
            if pause {
                t.pause_flow(req).await?;
            } else {
                t.resume_flow(req).await?;
            }
        }
        Call::Link(pause, link, request_id, expected_revision) => {
            let req = pb::LinkChangeRequest {
                link,
                request_id,
                expected_revision,
            };
            if pause {
                t.pause_link(req).await?;
            } else {
                t.resume_link(req).await?;
            }
        }
        Call::List(from_sequence, page_size) => {
            e.list_events(pb::ListEventsRequest {
                from_sequence,
                page_size,
                ..Default::default()
            })
            .await?;
        }
        Call::Watch(from_sequence) => {
            let mut s = e
                .watch_events(pb::WatchEventsRequest {
                    from_sequence,
                    ..Default::default()
                })
                .await?
                .into_inner();
            // A watch from the past gives its first event at once; from the future, none
            // yet: either way the stream is open and answers.
            let _ = tokio::time::timeout(Duration::from_millis(50), s.next()).await;
        }
    }
    Ok(())
}

/// Sends `body` as the request message of `path`, framed as gRPC, and returns the status.
async fn raw(channel: &Channel, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let r: Result<tonic::Response<pb::ChangeResponse>, _> = grpc
        .unary(
            tonic::Request::new(Raw(body)),
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            RawCodec,
        )
        .await;
    match r {
        Ok(_) => tonic::Status::ok(""),
        Err(s) => s,
    }
}

/// Bytes as they are.
struct Raw(Vec<u8>);

/// Encodes [`Raw`] verbatim; decodes answers as `ChangeResponse` (only the status is read).
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Raw;
    type Decode = pb::ChangeResponse;
    type Encoder = RawEncoder;
    type Decoder = <duplex_proto::codec::Codec<pb::ChangeResponse, pb::ChangeResponse> as tonic::codec::Codec>::Decoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic::codec::Codec::decoder(&mut duplex_proto::codec::Codec::<
            pb::ChangeResponse,
            pb::ChangeResponse,
        >::default())
    }
}

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Raw;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Raw,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        buf.put_slice(&item.0);
        Ok(())
    }
}

#[test]
fn every_rpc_answers_random_and_malformed_input_clearly_on_mock() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(clusters) = rt.block_on(async { harness::start(Provider::Mock, &["a", "b"]) }) else {
        return;
    };
    let config = harness::service::link_config(&[&clusters[0], &clusters[1]], "fuzz\\..*", "");
    let dir = tempfile::tempdir().unwrap();
    let s = rt.block_on(harness::service::start(&config, dir.path()));
    rt.block_on(s.wait_running());
    let channel = rt
        .block_on(
            Channel::from_shared(format!("http://{}", s.service.api_addr))
                .unwrap()
                .connect(),
        )
        .unwrap();
    let mut t = TopologyServiceClient::new(channel.clone());
    let mut e = EventServiceClient::new(channel.clone());
    let v = VerificationServiceClient::new(channel.clone());
    let o = OffsetServiceClient::new(channel.clone());

    let mut runner = TestRunner::new(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(call(), 1..4), |calls| {
            let (mut t, mut e, mut v, mut o) = (t.clone(), e.clone(), v.clone(), o.clone());
            for c in calls {
                let shown: String = format!("{c:?}").chars().take(200).collect();
                match rt.block_on(run(&mut t, &mut e, &mut v, &mut o, c)) {
                    Ok(()) => {}
                    Err(st) => {
                        prop_assert!(CLEAR.contains(&st.code()), "{shown}: {st:?}");
                        prop_assert!(!st.message().is_empty(), "{shown}: no message");
                        prop_assert!(
                            st.message().len() < 1000,
                            "{shown}: a message of {} bytes",
                            st.message().len()
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();

    // Bytes that are no request at all, to every Duplex method.
    let paths = [
        "/duplex.v1.TopologyService/GetTopology",
        "/duplex.v1.TopologyService/PauseFlow",
        "/duplex.v1.TopologyService/ResumeFlow",
        "/duplex.v1.TopologyService/PauseLink",
        "/duplex.v1.TopologyService/ResumeLink",
        "/duplex.v1.TopologyService/AddLink",
        "/duplex.v1.TopologyService/RemoveLink",
        "/duplex.v1.TopologyService/SetLinkTopics",
        "/duplex.v1.TopologyService/AddCluster",
        "/duplex.v1.EventService/ListEvents",
        "/duplex.v1.EventService/WatchEvents",
        "/duplex.v1.VerificationService/StartVerification",
        "/duplex.v1.VerificationService/GetVerification",
        "/duplex.v1.VerificationService/ListVerifications",
        "/duplex.v1.VerificationService/WatchVerification",
        "/duplex.v1.VerificationService/CancelVerification",
        "/duplex.v1.OffsetService/TranslateOffsets",
        "/duplex.v1.OffsetService/SyncGroupOffsets",
    ];
    let garbage: [&[u8]; 4] = [
        &[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
        // Field 1 (a string) with invalid UTF-8.
        &[0x0a, 0x02, 0xc3, 0x28],
        // Field 1 claims 100 bytes and has 2.
        &[0x0a, 0x64, 0x61, 0x62],
        // A wire type that does not exist.
        &[0x0f, 0x00],
    ];
    for path in paths {
        for g in garbage {
            let st = rt.block_on(raw(&channel, path, g.to_vec()));
            // WatchEvents answers with a stream; the unary client reads its first frame.
            assert_eq!(st.code(), Code::InvalidArgument, "{path} {g:?}: {st:?}");
            assert!(
                st.message().contains("is not a valid duplex.v1."),
                "{path}: {st:?}"
            );
        }
    }

    // The service still answers, the flows run as the last commands left them once
    // resumed, and the log has no gap.
    rt.block_on(async {
        for l in ["a-b"] {
            t.resume_link(pb::LinkChangeRequest {
                link: l.into(),
                ..Default::default()
            })
            .await
            .expect("resume after the fuzz");
        }
        s.wait_running().await;
        let log = harness::service::all_events(&mut e, 1000).await;
        let seqs: Vec<u64> = log.iter().map(|ev| ev.sequence).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "a gap in the log"
        );
        assert!(seqs.len() > 2, "nothing was recorded");
    });
    rt.block_on(s.stop());
}
