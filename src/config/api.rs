//! `[api]`: where the gRPC control API listens, its TLS identity, and the bearer
//! tokens that may call it (docs/api.md, "Security").
//!
//! Without tokens every caller may do everything, so the API must then listen on a
//! loopback address; `validate` refuses anything else. Tokens are secrets: their
//! `Debug` is `***`, `check-config` shows `***`, and nothing logs them.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A PEM certificate chain and its private key, as read from their files.
pub type CertAndKey = (Vec<u8>, Vec<u8>);

use serde::Deserialize;

use super::{ConfigError, ListenAddr, defaults};

/// The shortest token accepted: a guessable token is no token.
pub const MIN_TOKEN_LEN: usize = 16;

/// `[api]`: the gRPC control API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct ApiConfig {
    /// Address to serve the API on; default `127.0.0.1:9465` (loopback only).
    pub listen: Option<ListenAddr>,
    /// Serve over TLS with this certificate and key; plain HTTP/2 without it.
    pub tls: Option<TlsConfig>,
    /// Who may call the API; without any, only loopback callers can reach it.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// `[api.tls]`: the server's certificate chain and private key, PEM files. A relative
/// path is relative to the config file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate.
    pub key: PathBuf,
}

/// `[[api.tokens]]`: one bearer token, named for the event log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct TokenConfig {
    /// Who holds it: recorded as the actor of every command it makes.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The token itself (at least [`MIN_TOKEN_LEN`] characters)...
    pub token: Option<Secret>,
    /// ...or a file holding it (a mounted secret); one trailing newline is ignored.
    pub token_file: Option<PathBuf>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read the topology, the events and reports.
    Read,
    /// Everything `read` may, and every change.
    Operate,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Operate => "operate",
        })
    }
}

/// A secret string: shown as `***` by `Debug`; `expose` is the only way to its value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value, for the one place that compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A token as the server checks it: name, role and value.
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its value.
    pub secret: Secret,
}

impl ApiConfig {
    /// The address the API listens on.
    pub fn listen(&self) -> SocketAddr {
        self.listen.map_or(defaults::API_LISTEN, |l| l.0)
    }

    /// Checks names, that each token is given once and well, and that an API without
    /// tokens listens on loopback only. Token files are read by [`ApiConfig::tokens`].
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashMap::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let key = format!("api.tokens[{i}]");
            super::validate::check_name(&format!("{key}.name"), "token name", &t.name, 64)?;
            if let Some(first) = names.insert(t.name.as_str(), i) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!(
                        "duplicate token name {:?} (also api.tokens[{first}].name)",
                        t.name
                    ),
                ));
            }
            match (&t.token, &t.token_file) {
                (Some(s), None) => check_token(&format!("{key}.token"), s.expose())?,
                (None, Some(_)) => {}
                (Some(_), Some(_)) => {
                    return Err(ConfigError::invalid(
                        key,
                        "give either token or token_file, not both",
                    ));
                }
                (None, None) => {
                    return Err(ConfigError::invalid(
                        key,
                        "missing token: give token = \"...\" or token_file = \"path\"",
                    ));
                }
            }
        }
        let listen = self.listen();
        if self.tokens.is_empty() && !listen.ip().is_loopback() {
            return Err(ConfigError::invalid(
                "api.listen",
                format!(
                    "{listen} is not a loopback address: without [[api.tokens]] anyone who reaches \
                     the API may change the mesh, so it listens on loopback only; add tokens \
                     (docs/api.md, \"Security\") or listen on 127.0.0.1"
                ),
            ));
        }
        Ok(())
    }

    /// Makes the relative paths of `[api]` (TLS files, token files) relative to `base`,
    /// the config file's directory.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Some(tls) = &mut self.tls {
            tls.cert = resolve(base, &tls.cert);
            tls.key = resolve(base, &tls.key);
        }
        for t in &mut self.tokens {
            if let Some(f) = &mut t.token_file {
                *f = resolve(base, f);
            }
        }
    }

    /// The tokens with their values, token files read. An error names the key and the
    /// file, never a token's value.
    pub fn tokens(&self) -> Result<Vec<ApiToken>, ConfigError> {
        let mut out: Vec<ApiToken> = Vec::with_capacity(self.tokens.len());
        for (i, t) in self.tokens.iter().enumerate() {
            let secret = match (&t.token, &t.token_file) {
                (Some(s), _) => s.clone(),
                (None, Some(file)) => {
                    let key = format!("api.tokens[{i}].token_file");
                    let path = file;
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        ConfigError::invalid(&key, format!("cannot read {}: {e}", path.display()))
                    })?;
                    let value = text.strip_suffix('\n').unwrap_or(&text);
                    let value = value.strip_suffix('\r').unwrap_or(value);
                    check_token(&format!("{key} ({})", path.display()), value)?;
                    Secret::new(value)
                }
                (None, None) => unreachable!("validate() refuses a token without a value"),
            };
            if let Some(other) = out.iter().find(|o| o.secret == secret) {
                return Err(ConfigError::invalid(
                    format!("api.tokens[{i}]"),
                    format!(
                        "token {:?} has the same value as token {:?}: a token names one caller",
                        t.name, other.name
                    ),
                ));
            }
            out.push(ApiToken {
                name: t.name.clone(),
                role: t.role,
                secret,
            });
        }
        Ok(out)
    }
}

impl ApiConfig {
    /// Reads what `[api]` names on disk, as the service will at start: token files (see
    /// [`ApiConfig::tokens`]) and the TLS certificate and key (readable, PEM-looking).
    /// `check-config` calls this so that a broken file fails the check, not the start.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        self.tokens()?;
        self.tls_pem().map(|_| ())
    }

    /// The TLS certificate chain and key, read (PEM-looking); `None` without `[api.tls]`.
    /// An error names the key and the file.
    pub fn tls_pem(&self) -> Result<Option<CertAndKey>, ConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let read = |key: &str, path: &Path| {
            let text = std::fs::read(path).map_err(|e| {
                ConfigError::invalid(key, format!("cannot read {}: {e}", path.display()))
            })?;
            if !text.windows(11).any(|w| w == b"-----BEGIN ") {
                return Err(ConfigError::invalid(
                    key,
                    format!("{} is not a PEM file (no -----BEGIN line)", path.display()),
                ));
            }
            Ok(text)
        };
        Ok(Some((
            read("api.tls.cert", &tls.cert)?,
            read("api.tls.key", &tls.key)?,
        )))
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// A token travels in an HTTP header: visible ASCII, no spaces, long enough.
fn check_token(key: &str, value: &str) -> Result<(), ConfigError> {
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::invalid(
            key,
            "a token may hold only visible ASCII characters (no spaces or control characters)",
        ));
    }
    if value.len() < MIN_TOKEN_LEN {
        return Err(ConfigError::invalid(
            key,
            format!(
                "a token must be at least {MIN_TOKEN_LEN} characters long (it has {}); \
                 generate one with `openssl rand -hex 32`",
                value.len()
            ),
        ));
    }
    Ok(())
}
