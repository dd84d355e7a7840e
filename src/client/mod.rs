//! The `duplex` CLI's client commands: they call a running service's API (`--api ADDR`
//! or `DUPLEX_API`, `--token` or `DUPLEX_TOKEN`), print what it answers, and exit 0 on
//! success, 2 when the call failed (the error named, with its gRPC code).

pub mod change;
pub mod clusters;
pub mod events;
pub mod status;

use std::process::ExitCode;
use std::time::Duration;

use duplex_proto::v1::event_service_client::EventServiceClient;
use duplex_proto::v1::offset_service_client::OffsetServiceClient;
use duplex_proto::v1::topology_service_client::TopologyServiceClient;
use duplex_proto::v1::verification_service_client::VerificationServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Where the API is and who calls it. `Debug` shows the token as `***`.
#[derive(Clone, clap::Args)]
pub struct ApiArgs {
    /// The service's API address: `host:port` or `http://host:port`, or
    /// `https://host:port` for an API served over TLS.
    #[arg(long = "api", env = "DUPLEX_API", default_value = "127.0.0.1:9465")]
    pub addr: String,
    /// A bearer token for the API.
    #[arg(long, env = "DUPLEX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// With `https://`: the CA certificate (PEM) that signed the service's certificate;
    /// the system's roots when not given.
    #[arg(long = "ca", env = "DUPLEX_API_CA")]
    pub ca: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ApiArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiArgs")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("ca", &self.ca)
            .finish()
    }
}

/// Adds the bearer token to every call (a sensitive header value: `Debug` hides it).
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
    /// VerificationService.
    pub verification: VerificationServiceClient<InterceptedService<Channel, Bearer>>,
    /// OffsetService.
    pub offsets: OffsetServiceClient<InterceptedService<Channel, Bearer>>,
}

impl ApiArgs {
    /// Connects to the API.
    pub async fn connect(&self) -> anyhow::Result<Clients> {
        let uri = if self.addr.contains("://") {
            self.addr.clone()
        } else {
            format!("http://{}", self.addr)
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| anyhow::anyhow!("--api {:?}: not an address: {e}", self.addr))?
            .connect_timeout(Duration::from_secs(5));
        if uri.starts_with("https://") {
            let tls = match &self.ca {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        anyhow::anyhow!("--ca {}: cannot read: {e}", path.display())
                    })?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_enabled_roots(),
            };
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| anyhow::anyhow!("--api {uri}: TLS: {e}"))?;
        } else if self.ca.is_some() {
            anyhow::bail!(
                "--ca is for an API served over TLS: write --api https://{}",
                self.addr.trim_start_matches("http://")
            );
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| {
                anyhow::Error::new(e).context(format!(
                    "cannot reach the Duplex API at {uri} (is `duplex run` serving there? set --api or DUPLEX_API)"
                ))
            })?;
        let bearer = match &self.token {
            Some(t) => {
                let mut v: MetadataValue<tonic::metadata::Ascii> = format!("Bearer {t}")
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--token: not a valid header value"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let b = Bearer(bearer);
        Ok(Clients {
            topology: TopologyServiceClient::with_interceptor(channel.clone(), b.clone()),
            // A page of 1000 events with group syncs of many partitions passes 4 MiB.
            events: EventServiceClient::with_interceptor(channel.clone(), b.clone())
                .max_decoding_message_size(REPORT_LIMIT),
            offsets: OffsetServiceClient::with_interceptor(channel.clone(), b.clone()),
            // A report names up to --max-samples records per partition: larger than
            // gRPC's default 4 MiB message on a big mesh.
            verification: VerificationServiceClient::with_interceptor(channel, b)
                .max_decoding_message_size(REPORT_LIMIT),
        })
    }
}

/// The largest message the CLI reads (a verification's report).
const REPORT_LIMIT: usize = 512 << 20;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let args = ApiArgs {
            addr: "127.0.0.1:9465".into(),
            token: Some("secret-token-0123456789".into()),
            ca: None,
        };
        let shown = format!("{args:?}");
        assert!(!shown.contains("secret-token"), "{shown}");
        let mut v: MetadataValue<tonic::metadata::Ascii> =
            "Bearer secret-token-0123456789".parse().unwrap();
        v.set_sensitive(true);
        let shown = format!("{:?}", Bearer(Some(v)));
        assert!(!shown.contains("secret-token"), "{shown}");
    }
}
