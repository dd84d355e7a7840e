//! The `duplex` CLI's client commands: they call a running service's API (`--api ADDR`
//! or `DUPLEX_API`, `--token` or `DUPLEX_TOKEN`), print what it answers, and exit 0 on
//! success, 2 when the call failed (the error named, with its gRPC code).

pub mod change;
pub mod events;
pub mod status;

use std::process::ExitCode;
use std::time::Duration;

use duplex_proto::v1::event_service_client::EventServiceClient;
use duplex_proto::v1::topology_service_client::TopologyServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Where the API is and who calls it.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The service's API address, `host:port` or `http://host:port`.
    #[arg(long = "api", env = "DUPLEX_API", default_value = "127.0.0.1:9465")]
    pub addr: String,
    /// A bearer token for the API.
    #[arg(long, env = "DUPLEX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Adds the bearer token to every call.
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The clients of one CLI command.
#[derive(Debug)]
pub struct Clients {
    /// TopologyService.
    pub topology: TopologyServiceClient<InterceptedService<Channel, Bearer>>,
    /// EventService.
    pub events: EventServiceClient<InterceptedService<Channel, Bearer>>,
}

impl ApiArgs {
    /// Connects to the API.
    pub async fn connect(&self) -> anyhow::Result<Clients> {
        let uri = if self.addr.contains("://") {
            self.addr.clone()
        } else {
            format!("http://{}", self.addr)
        };
        let channel = Endpoint::from_shared(uri.clone())
            .map_err(|e| anyhow::anyhow!("--api {:?}: not an address: {e}", self.addr))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the Duplex API at {uri}: {e} (is `duplex run` serving there? set --api or DUPLEX_API)"))?;
        let bearer = match &self.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--token: not a valid header value"))?,
            ),
            None => None,
        };
        let b = Bearer(bearer);
        Ok(Clients {
            topology: TopologyServiceClient::with_interceptor(channel.clone(), b.clone()),
            events: EventServiceClient::with_interceptor(channel, b),
        })
    }
}

/// Runs a client command on a small runtime; errors print and exit 2.
pub fn run<F>(f: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(f) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A failed call as one line: the code and the service's message.
pub fn status_error(call: &str, s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{call}: {:?}: {}", s.code(), s.message())
}

/// A flow state of the API as its short name: `running`, `paused`, ...
pub fn state_name(state: i32) -> String {
    duplex_proto::v1::FlowState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("FLOW_STATE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| format!("state {state}"))
}
