//! Bearer tokens: who is calling, and whether they may change the mesh.
//!
//! An interceptor in front of every Duplex service reads `authorization: Bearer <token>`
//! and compares its SHA-256 with that of each configured token in constant time (fixed
//! 32-byte digests, so not even a token's length shows in the timing; every token is
//! compared, so the time taken does not say which one nearly matched). No token, or
//! one the service does not know, is UNAUTHENTICATED. The caller it finds travels in
//! the request's extensions: [`actor`] names it in the event log, and [`operator`]
//! refuses a change to a `read` token with PERMISSION_DENIED. With no tokens configured
//! the API is loopback only (config validation) and every caller is `anonymous` with
//! role `operate`. Token values never reach a log or an error message.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::config::{ApiToken, Role};

/// Who is calling, found by [`Auth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name; `anonymous` when the API has no tokens.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// A configured token as the interceptor keeps it: the SHA-256 of its value (compared,
/// so every comparison takes the same time whatever the lengths), its name and role.
#[derive(Clone)]
struct Known {
    digest: [u8; 32],
    caller: Caller,
}

/// The interceptor: the configured tokens (none: every caller is anonymous).
#[derive(Clone, Default)]
pub struct Auth(Arc<Vec<Known>>);

fn sha256(value: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, value);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.0.len())
            .finish()
    }
}

impl Auth {
    /// Checks callers against `tokens`.
    pub fn new(tokens: Vec<ApiToken>) -> Auth {
        Auth(Arc::new(
            tokens
                .into_iter()
                .map(|t| Known {
                    digest: sha256(t.secret.expose().as_bytes()),
                    caller: Caller {
                        name: t.name,
                        role: t.role,
                    },
                })
                .collect(),
        ))
    }

    /// The caller a request's `authorization` value names.
    fn caller(&self, authorization: Option<&[u8]>) -> Result<Caller, Status> {
        if self.0.is_empty() {
            return Ok(Caller {
                name: "anonymous".to_string(),
                role: Role::Operate,
            });
        }
        let Some(value) = authorization else {
            return Err(Status::unauthenticated(
                "this API needs a bearer token: send the metadata `authorization: Bearer <token>` \
                 (duplex CLI: --token or DUPLEX_TOKEN)",
            ));
        };
        let Some(presented) = strip_bearer(value) else {
            return Err(Status::unauthenticated(
                "the authorization metadata must be `Bearer <token>`",
            ));
        };
        let presented = sha256(presented);
        let mut found: Option<&Known> = None;
        for t in self.0.iter() {
            if bool::from(t.digest.ct_eq(&presented)) {
                found = Some(t);
            }
        }
        found.map(|t| t.caller.clone()).ok_or_else(|| {
            Status::unauthenticated("the bearer token is not one this service knows")
        })
    }
}

/// The token after a case-insensitive `Bearer ` scheme (RFC 6750).
fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = b"bearer ";
    (value.len() > scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme))
        .then(|| value[scheme.len()..].trim_ascii())
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.caller(req.metadata().get("authorization").map(|v| v.as_bytes()))?;
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// The caller of a request that passed [`Auth`].
fn caller_of<T>(req: &Request<T>) -> Result<&Caller, Status> {
    req.extensions().get::<Caller>().ok_or_else(|| {
        Status::unauthenticated("no caller: the request did not pass the token check")
    })
}

/// Who is calling, as the event log names them.
pub fn actor<T>(req: &Request<T>) -> Result<String, Status> {
    caller_of(req).map(|c| c.name.clone())
}

/// The caller of a change: its name when its role is `operate`, PERMISSION_DENIED
/// naming the token and the call otherwise.
pub fn operator<T>(req: &Request<T>, call: &str) -> Result<String, Status> {
    let c = caller_of(req)?;
    match c.role {
        Role::Operate => Ok(c.name.clone()),
        Role::Read => Err(Status::permission_denied(format!(
            "token {:?} has role read; {call} changes the mesh and needs a token with role operate",
            c.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn auth() -> Auth {
        Auth::new(vec![
            ApiToken {
                name: "dashboard".into(),
                role: Role::Read,
                secret: Secret::new("read-token-0123456789"),
            },
            ApiToken {
                name: "release-bot".into(),
                role: Role::Operate,
                secret: Secret::new("operate-token-0123456789"),
            },
        ])
    }

    #[test]
    fn a_known_token_names_its_caller_and_role() {
        let c = auth()
            .caller(Some(b"Bearer operate-token-0123456789"))
            .unwrap();
        assert_eq!(c.name, "release-bot");
        assert_eq!(c.role, Role::Operate);
        let c = auth()
            .caller(Some(b"bearer read-token-0123456789"))
            .unwrap();
        assert_eq!((c.name.as_str(), c.role), ("dashboard", Role::Read));
    }

    #[test]
    fn a_missing_wrong_or_malformed_token_is_unauthenticated_without_echoing_it() {
        for value in [
            None,
            Some(&b"Bearer operate-token-012345678"[..]),
            Some(b"Bearer operate-token-01234567890"),
            Some(b"Basic operate-token-0123456789"),
            Some(b"operate-token-0123456789"),
            Some(b"Bearer "),
            Some(b""),
        ] {
            let e = auth().caller(value).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{value:?}");
            assert!(!e.message().contains("token-0123"), "{e:?}");
        }
    }

    #[test]
    fn without_tokens_every_caller_is_an_anonymous_operator() {
        let c = Auth::default().caller(None).unwrap();
        assert_eq!((c.name.as_str(), c.role), ("anonymous", Role::Operate));
    }

    #[test]
    fn a_read_token_may_not_change_the_mesh() {
        let mut req = Request::new(());
        req.extensions_mut().insert(Caller {
            name: "dashboard".into(),
            role: Role::Read,
        });
        let e = operator(&req, "PauseFlow").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("dashboard") && e.message().contains("PauseFlow"));
        assert_eq!(actor(&req).unwrap(), "dashboard");
    }
}
