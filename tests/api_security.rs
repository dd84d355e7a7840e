//! The API's security over a service on mock clusters: TLS with a certificate from the
//! config, bearer tokens with roles read and operate (UNAUTHENTICATED without a known
//! token, PERMISSION_DENIED for a change with a read token, the operator's token name in
//! the event log), health without a token, and the CLI over TLS with a token.

mod harness;

use std::process::Command;

use duplex::config::Config;
use duplex_proto::v1 as pb;
use duplex_proto::v1::event_service_client::EventServiceClient;
use duplex_proto::v1::topology_service_client::TopologyServiceClient;
use harness::{Provider, TestCluster};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const READ: &str = "read-token-0123456789abcdef";
const OPERATE: &str = "operate-token-0123456789abcdef";

/// A CA, and a certificate for `localhost` it signed: (ca pem, cert pem, key pem).
fn certificates() -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

fn config(clusters: &[&TestCluster], dir: &std::path::Path) -> Config {
    let token_file = dir.join("operate.token");
    std::fs::write(&token_file, format!("{OPERATE}\n")).unwrap();
    let api = format!(
        "[api.tls]\ncert = {:?}\nkey = {:?}\n\
         [[api.tokens]]\nname = \"dashboard\"\nrole = \"read\"\ntoken = \"{READ}\"\n\
         [[api.tokens]]\nname = \"release-bot\"\nrole = \"operate\"\ntoken_file = {:?}\n",
        dir.join("api.crt"),
        dir.join("api.key"),
        token_file,
    );
    harness::service::link_config(clusters, "sec\\..*", &api)
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn pause(flow: &str) -> pb::FlowChangeRequest {
    pb::FlowChangeRequest {
        flow: flow.into(),
        request_id: String::new(),
        expected_revision: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_tokens_with_roles_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["a", "b"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates();
    std::fs::write(dir.path().join("ca.crt"), &ca).unwrap();
    std::fs::write(dir.path().join("api.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("api.key"), &key).unwrap();
    let config = config(&[&clusters[0], &clusters[1]], dir.path());
    let s = harness::service::start(&config, &dir.path().join("state")).await;
    let port = s.service.api_addr.port();

    // Plain HTTP/2 to the TLS port gets no answer from the services: the handshake or
    // the call fails, with a valid token too.
    let plain = async {
        let ch = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        TopologyServiceClient::new(ch)
            .get_topology(with_token(pb::GetTopologyRequest::default(), READ))
            .await
            .map_err(|e| e.to_string())
    };
    let plain = tokio::time::timeout(std::time::Duration::from_secs(10), plain).await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "a plain-text call reached the TLS API: {plain:?}"
    );

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connection with the configured certificate");
    let mut topology = TopologyServiceClient::new(channel.clone());
    let mut events = EventServiceClient::new(channel.clone());

    // Health answers without a token (probes carry none).
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "duplex.v1.TopologyService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // No token, an unknown token, another scheme: UNAUTHENTICATED, for reads too.
    let e = topology
        .get_topology(pb::GetTopologyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("bearer token"), "{e:?}");
    let e = events
        .list_events(with_token(
            pb::ListEventsRequest::default(),
            "not-a-known-token-at-all",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(
        !e.message().contains("not-a-known"),
        "the token is echoed: {e:?}"
    );
    let mut basic = tonic::Request::new(pb::WatchEventsRequest::default());
    basic
        .metadata_mut()
        .insert("authorization", format!("Basic {OPERATE}").parse().unwrap());
    let e = events.watch_events(basic).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // Reflection answers without a token (the schema is public).
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            channel.clone(),
        );
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter([
            tonic_reflection::pb::v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                        String::new(),
                    ),
                ),
            },
        ]))
        .await
        .expect("reflection without a token")
        .into_inner();
    let listed = format!("{:?}", answers.message().await.unwrap());
    assert!(listed.contains("duplex.v1.TopologyService"), "{listed}");

    // A read token reads, and may not change anything: nothing is recorded.
    let before = topology
        .get_topology(with_token(pb::GetTopologyRequest::default(), READ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.links.len(), 1);
    let e = topology
        .pause_flow(with_token(pause("a->b"), READ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("dashboard") && e.message().contains("PauseFlow"),
        "{e:?}"
    );
    let e = topology
        .resume_link(with_token(
            pb::LinkChangeRequest {
                link: "a-b".into(),
                ..Default::default()
            },
            READ,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let page = events
        .list_events(with_token(pb::ListEventsRequest::default(), READ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        page.events.iter().all(|e| e.r#type != "FlowPaused"),
        "{page:?}"
    );
    let mut watch = events
        .watch_events(with_token(
            pb::WatchEventsRequest {
                from_sequence: 1,
                ..Default::default()
            },
            READ,
        ))
        .await
        .expect("a read token watches")
        .into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().sequence, 1);
    drop(watch);

    // The operate token changes the mesh, and the log names who did.
    let paused = topology
        .pause_flow(with_token(pause("a->b"), OPERATE))
        .await
        .unwrap()
        .into_inner();
    let page = events
        .list_events(with_token(
            pb::ListEventsRequest {
                from_sequence: paused.events[0],
                page_size: 1,
                ..Default::default()
            },
            READ,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.events[0].r#type, "FlowPaused");
    assert_eq!(page.events[0].actor, "release-bot");

    // The CLI over TLS: the CA and token from the environment, exit 0; without the
    // token, exit 2 naming the code.
    let ca_file = dir.path().join("ca.crt");
    let cli = move |token: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_duplex"));
        cmd.args(["status", "--api", &format!("https://localhost:{port}")])
            .env("DUPLEX_API_CA", &ca_file)
            .env_remove("DUPLEX_TOKEN")
            .env("RUST_LOG", "off");
        if let Some(t) = token {
            cmd.env("DUPLEX_TOKEN", t);
        }
        cmd.output().expect("run duplex status")
    };
    let out = tokio::task::spawn_blocking(move || (cli(Some(READ)), cli(None)))
        .await
        .unwrap();
    let (ok, refused) = out;
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("a->b") && stdout.contains("paused"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Unauthenticated"), "{stderr}");

    s.stop().await;
}
