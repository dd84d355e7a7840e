//! Topic config sync (docs/topic-configs.md): every refresh interval, for the topics
//! whose settings this flow copies (it is an edge of their owner's tree), the target's
//! are made the source's. It runs beside the reading and the assignment, on its own
//! admin requests: a broker slow to answer them (librdkafka's mock cluster never does)
//! holds back neither. A failure never stops the flow nor holds a partition: it is
//! logged when it changes, counted, and tried again at the next round.
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use rdkafka::types::RDKafkaErrorCode;
use tokio::task::spawn_blocking;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Flow;
use crate::admin_ffi::{AdminError, alter_topic};
use crate::discovery::{Listing, TopicCreator, selected_topics};
use crate::error::joined;
use crate::topic_configs::{Change, Settings, describe, plan};

/// Copies topic settings (and ACLs, when on) every refresh interval until `stop`
/// fires, or until neither can be copied in this run.
pub(crate) async fn run(flow: Flow, creator: TopicCreator, stop: CancellationToken) {
    let mut state = ConfigSync::default();
    let mut acls = super::acl_sync::AclSync::default();
    let mut tick = tokio::time::interval(flow.spec.limits.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let configs_on = flow.spec.configs.enabled && state.unsupported.is_none();
        let acls_on = flow.spec.configs.acls && acls.on();
        if !configs_on && !acls_on {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let round = async {
            let owned = flow.owned_topics(&creator).await;
            if configs_on {
                flow.sync_topic_configs(&creator, &owned, &mut state).await;
            }
            if acls_on {
                flow.sync_acls(&creator, &owned, &mut acls).await;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = round => {}
        }
    }
}

/// What config sync remembers across the refreshes of one run.
#[derive(Debug, Default)]
pub(crate) struct ConfigSync {
    /// A cluster of the flow does not serve DescribeConfigs: the reason, logged once.
    unsupported: Option<String>,
    /// The last failure logged per topic, so that one that repeats is logged once.
    reported: HashMap<String, String>,
    /// Removals the target took per topic. One planned again right after had no
    /// effect (a broker that lists its defaults as the topic's own, docs/topic-configs.md):
    /// it is not sent again for as long as it is planned.
    removed: HashMap<String, Vec<Change>>,
}

impl Flow {
    /// The source's selected topics whose settings (and ACLs) this flow copies: it is
    /// an edge of their owner's tree. Empty when the source cannot be listed (the
    /// assignment reports that).
    async fn owned_topics(&self, c: &TopicCreator) -> Vec<String> {
        let policy = &self.spec.configs;
        let (admin, s) = (c.source.clone(), self.spec.clone());
        let timeout = s.limits.request_timeout;
        let listed = joined(
            "fetch source metadata",
            spawn_blocking(move || {
                selected_topics(admin.inner(), &s.source.id, |t| s.routes.reads(t), timeout)
            })
            .await,
        );
        let Ok(Listing { topics, .. }) = listed else {
            return Vec::new();
        };
        topics
            .into_keys()
            .filter(|t| {
                self.spec
                    .routes
                    .config_owner(t, policy.owner.as_deref())
                    .is_some()
            })
            .collect()
    }

    /// One round: copies the settings of `owned` to the target.
    async fn sync_topic_configs(&self, c: &TopicCreator, owned: &[String], state: &mut ConfigSync) {
        if owned.is_empty() {
            return;
        }
        let timeout = self.spec.limits.request_timeout;
        let (source, target) = tokio::join!(
            describe(&c.source, owned, timeout),
            describe(&c.target, owned, timeout)
        );
        let read = |r: Result<_, rdkafka::error::KafkaError>, cluster: &str| {
            r.map_err(|e| {
                let unsupported = e.rdkafka_error_code()
                    == Some(rdkafka::types::RDKafkaErrorCode::UnsupportedFeature);
                (
                    format!("cannot read topic settings on cluster {cluster}: {e}"),
                    unsupported,
                )
            })
        };
        let answers = read(source, &self.spec.source.id)
            .and_then(|s| Ok((s, read(target, &self.spec.target.id)?)));
        let (source, target) = match answers {
            Ok(both) => both,
            Err((msg, unsupported)) => {
                self.config_failure(state, None, msg, unsupported);
                return;
            }
        };
        state.reported.remove("");
        use rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition;
        for topic in owned {
            match (source.get(topic), target.get(topic)) {
                (Some(Ok(s)), Some(Ok(t))) => self.sync_topic(c, topic, s, t, state).await,
                // Not on the target yet (its partitions create it), or deleted from the
                // source meanwhile: nothing to copy now.
                (_, Some(Err(UnknownTopicOrPartition)))
                | (Some(Err(UnknownTopicOrPartition)), _) => {}
                (s, t) => {
                    let (side, code) = match (s, t) {
                        (Some(Err(code)), _) => (&self.spec.source.id, Some(*code)),
                        (_, Some(Err(code))) => (&self.spec.target.id, Some(*code)),
                        (None, _) => (&self.spec.source.id, None),
                        _ => (&self.spec.target.id, None),
                    };
                    let why = code.map_or("no answer for it".to_string(), |c| c.to_string());
                    let msg = format!("cannot read its settings on cluster {side}: {why}");
                    self.config_failure(state, Some(topic), msg, false);
                }
            }
        }
    }

    async fn sync_topic(
        &self,
        c: &TopicCreator,
        topic: &str,
        source: &Settings,
        target: &Settings,
        state: &mut ConfigSync,
    ) {
        let before = state.removed.remove(topic).unwrap_or_default();
        let (mut removed, changes): (Vec<Change>, Vec<Change>) =
            plan(source, target, &self.spec.configs)
                .into_iter()
                .partition(|c| matches!(c, Change::Delete(_)) && before.contains(c));
        if !removed.is_empty() {
            debug!(flow = %self.spec.name(), %topic, keys = %listed(&removed), "The target took these removals without effect; not sending them again.");
        }
        if changes.is_empty() {
            state.reported.remove(topic);
            if !removed.is_empty() {
                state.removed.insert(topic.to_string(), removed);
            }
            return;
        }
        let taken = match self.alter(c, topic, &changes, state).await {
            Ok(()) => changes.clone(),
            Err(AdminError::Refused(
                RDKafkaErrorCode::InvalidConfig | RDKafkaErrorCode::PolicyViolation,
                _,
            )) if changes.len() > 1 => {
                // The broker applies a request all or none: one key it refuses must not
                // hold back the others, so each is sent on its own.
                let mut taken = Vec::new();
                for ch in &changes {
                    if self
                        .alter(c, topic, std::slice::from_ref(ch), state)
                        .await
                        .is_ok()
                    {
                        taken.push(ch.clone());
                    }
                }
                taken
            }
            Err(_) => return,
        };
        removed.extend(
            taken
                .iter()
                .filter(|c| matches!(c, Change::Delete(_)))
                .cloned(),
        );
        if !removed.is_empty() {
            state.removed.insert(topic.to_string(), removed);
        }
        if taken.is_empty() {
            return;
        }
        if taken.len() == changes.len() {
            state.reported.remove(topic);
        }
        self.metrics
            .topic_config_changes
            .fetch_add(taken.len() as u64, Relaxed);
        info!(flow = %self.spec.name(), %topic, changes = %listed(&taken), "Topic settings copied to the target.");
    }

    /// Sends `changes` to the target; a failure is counted and logged.
    async fn alter(
        &self,
        c: &TopicCreator,
        topic: &str,
        changes: &[Change],
        state: &mut ConfigSync,
    ) -> Result<(), AdminError> {
        let (admin, t, ch) = (c.target.clone(), topic.to_string(), changes.to_vec());
        let timeout = self.spec.limits.request_timeout;
        let done = spawn_blocking(move || alter_topic(admin.inner(), &t, &ch, timeout))
            .await
            .unwrap_or_else(|e| Err(AdminError::Invalid(e.to_string())));
        if let Err(e) = &done {
            let msg = format!(
                "cannot change {} on cluster {}: {e}",
                listed(changes),
                self.spec.target.id
            );
            self.config_failure(state, Some(topic), msg, false);
        }
        done
    }

    /// Counts a failure and logs it when it is new for `topic` (`None`: the whole
    /// round). A cluster that does not serve DescribeConfigs is not asked again in this
    /// run.
    fn config_failure(
        &self,
        state: &mut ConfigSync,
        topic: Option<&str>,
        msg: String,
        unsupported: bool,
    ) {
        self.metrics.topic_config_errors.fetch_add(1, Relaxed);
        if unsupported {
            warn!(flow = %self.spec.name(), error = %msg, "A cluster of this flow does not serve DescribeConfigs: topic settings are not copied in this run (the topics are still replicated).");
            state.unsupported = Some(msg);
            return;
        }
        let key = topic.unwrap_or_default().to_string();
        if state.reported.get(&key) != Some(&msg) {
            warn!(flow = %self.spec.name(), topic = topic.unwrap_or("*"), error = %msg, "Cannot copy topic settings to the target; trying again at each refresh.");
            state.reported.insert(key, msg);
        }
    }
}

fn listed(changes: &[Change]) -> String {
    changes
        .iter()
        .map(Change::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
