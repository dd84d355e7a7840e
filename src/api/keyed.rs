//! The command a request records: every request that changes the state carries an
//! idempotency key, and most an expected revision (docs/api.md, "Commands: idempotency
//! and concurrency"); the command
//! built from one is the same for all.

use duplex_proto::v1 as pb;

use crate::state::Command;

/// A request that records a command: its idempotency key and, for a request that can
/// be made conditional, the revision the client expects.
pub trait Keyed: prost::Message + Clone {
    /// The idempotency key (empty: none).
    fn key(&self) -> &str;
    /// The same, to clear it: the request's fingerprint leaves it out.
    fn key_mut(&mut self) -> &mut String;
    /// The revision the client expects, if the request takes one and it was given.
    fn expected_revision(&self) -> Option<u64> {
        None
    }
}

/// `Keyed` for a request with `request_id`, and `expected_revision` when named.
macro_rules! keyed {
    ($t:ident $(, $revision:ident)?) => {
        impl Keyed for pb::$t {
            fn key(&self) -> &str {
                &self.request_id
            }
            fn key_mut(&mut self) -> &mut String {
                &mut self.request_id
            }
            $(fn expected_revision(&self) -> Option<u64> {
                self.$revision
            })?
        }
    };
}

keyed!(FlowChangeRequest, expected_revision);
keyed!(LinkChangeRequest, expected_revision);
keyed!(AddLinkRequest, expected_revision);
keyed!(RemoveLinkRequest, expected_revision);
keyed!(SetLinkTopicsRequest, expected_revision);
keyed!(AddClusterRequest, expected_revision);
keyed!(SyncGroupOffsetsRequest);
keyed!(StartVerificationRequest);
keyed!(CancelVerificationRequest);

/// The command `r` records: `method`, called by `actor`, changing `touches`.
pub fn command<R: Keyed>(
    method: &'static str,
    actor: String,
    r: &R,
    touches: Vec<String>,
) -> Command {
    Command {
        method,
        actor,
        request_id: super::request_id(r.key()),
        fingerprint: super::fingerprint(r, |r| r.key_mut().clear()),
        expected_revision: r.expected_revision(),
        touches,
    }
}
