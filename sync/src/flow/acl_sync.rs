//! ACL sync in the rounds of topic config sync (`configs.rs`), when
//! `[topic_configs] acls` is on: the READ and DESCRIBE literal ACLs of the topics whose
//! settings this flow copies are created on the target when missing. Never a removal,
//! never WRITE (docs/topic-configs.md, "ACLs").
use std::sync::atomic::Ordering::Relaxed;

use rdkafka::types::RDKafkaErrorCode;
use tokio::task::spawn_blocking;
use tracing::{info, warn};

use super::Flow;
use crate::acls::{Acl, plan};
use crate::admin_ffi::{AdminError, create_topic_acls, describe_topic_acls};
use crate::discovery::TopicCreator;

/// What ACL sync remembers across the rounds of one run.
#[derive(Debug, Default)]
pub(crate) struct AclSync {
    /// A cluster of the flow has no authorizer (or does not serve the ACL requests):
    /// the reason, logged once; not asked again in this run.
    off: Option<String>,
    /// The last failure logged, so that one that repeats is logged once.
    reported: Option<String>,
}

impl AclSync {
    pub(crate) fn on(&self) -> bool {
        self.off.is_none()
    }
}

impl Flow {
    /// One round: creates on the target the READ and DESCRIBE ACLs of `owned` topics
    /// that the source has and the target lacks.
    pub(super) async fn sync_acls(&self, c: &TopicCreator, owned: &[String], state: &mut AclSync) {
        if owned.is_empty() {
            return;
        }
        let timeout = self.spec.limits.request_timeout;
        let describe = |admin: std::sync::Arc<rdkafka::admin::AdminClient<_>>| {
            spawn_blocking(move || describe_topic_acls(admin.inner(), timeout))
        };
        let (source, target) = tokio::join!(describe(c.source.clone()), describe(c.target.clone()));
        let read = |r: Result<Result<Vec<Acl>, AdminError>, tokio::task::JoinError>,
                    cluster: &str| {
            r.unwrap_or_else(|e| Err(AdminError::Invalid(e.to_string())))
                .map_err(|e| (cluster.to_string(), e))
        };
        let both = read(source, &self.spec.source.id)
            .and_then(|s| Ok((s, read(target, &self.spec.target.id)?)));
        let (source, target) = match both {
            Ok(both) => both,
            Err((cluster, e)) => {
                self.metrics.acl_errors.fetch_add(1, Relaxed);
                let msg = format!("cannot read ACLs on cluster {cluster}: {e}");
                // No authorizer, or no ACL requests at all: nothing to copy, ever.
                if matches!(
                    &e,
                    AdminError::Refused(
                        RDKafkaErrorCode::SecurityDisabled | RDKafkaErrorCode::UnsupportedFeature,
                        _
                    )
                ) {
                    warn!(flow = %self.spec.name(), error = %msg, "ACL sync is on, but a cluster of this flow has no ACLs to read or write: ACLs are not copied in this run.");
                    state.off = Some(msg);
                } else {
                    self.acl_failure(state, msg);
                }
                return;
            }
        };
        let wanted = plan(&source, &target, |t| owned.iter().any(|o| o == t));
        if wanted.is_empty() {
            state.reported = None;
            return;
        }
        let (admin, w) = (c.target.clone(), wanted.clone());
        let created = spawn_blocking(move || create_topic_acls(admin.inner(), &w, timeout))
            .await
            .unwrap_or_else(|e| Err(AdminError::Invalid(e.to_string())));
        let outcomes = match created {
            Ok(o) => o,
            Err(e) => {
                self.metrics.acl_errors.fetch_add(1, Relaxed);
                let msg = format!("cannot create ACLs on cluster {}: {e}", self.spec.target.id);
                return self.acl_failure(state, msg);
            }
        };
        let mut failed = Vec::new();
        for (acl, outcome) in wanted.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    self.metrics.acls_created.fetch_add(1, Relaxed);
                    info!(flow = %self.spec.name(), topic = %acl.topic, principal = %acl.principal, host = %acl.host, operation = ?acl.operation, permission = ?acl.permission, "ACL copied to the target.");
                }
                Err(e) => failed.push(format!(
                    "{} {:?} {:?} on {}: {e}",
                    acl.principal, acl.permission, acl.operation, acl.topic
                )),
            }
        }
        if failed.is_empty() {
            state.reported = None;
        } else {
            self.metrics.acl_errors.fetch_add(1, Relaxed);
            let msg = format!(
                "cannot create ACLs on cluster {}: {}",
                self.spec.target.id,
                failed.join("; ")
            );
            self.acl_failure(state, msg);
        }
    }

    fn acl_failure(&self, state: &mut AclSync, msg: String) {
        if state.reported.as_ref() != Some(&msg) {
            warn!(flow = %self.spec.name(), error = %msg, "Cannot copy ACLs to the target; trying again at each refresh.");
            state.reported = Some(msg);
        }
    }
}
