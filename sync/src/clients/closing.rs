//! Consumers dropped on a thread of their own, so that no caller waits on their close.
//!
//! rdkafka closes a consumer that has a `group.id` (every consumer of Duplex has one)
//! when it is dropped, and polls until librdkafka says the close is done, with no
//! bound. librdkafka ends a close only once the group's partitions are stopped and its
//! commits answered or timed out, and with the cluster unreachable that can take
//! minutes, or for ever: a flow's task dropped while its brokers were being killed
//! never returned from dropping its consumer, held a tokio worker, and the runtime's
//! shutdown waited on it (`tests/link_topics.rs` hung for the whole CI budget).
//!
//! Nothing Duplex needs happens in that close: its consumers read what they are
//! assigned and commit by hand, so a close leaves no group and commits nothing; a flow
//! that stops has already committed its last checkpoint, or given up on it, before its
//! clients are dropped (`Acker::commit_last`). So the drop is handed to a thread named
//! `duplex-close`: the caller goes on at once, and the thread ends when librdkafka lets
//! go. A consumer whose close never ends keeps that thread and its client until the
//! process exits; a process exiting does not wait for it.
//!
//! Used for a flow's consumer and scanner, the consumers that read a topology change's
//! cut and its settling, offset translation's group readers (`offsets::group::client`)
//! and the verifier's readers. Not (yet) for the short-lived probes of `api/clusters.rs`
//! and `inspect.rs`, which assign nothing.

use std::ops::Deref;

use tracing::warn;

/// A client whose drop happens on a thread of its own (see the module docs). Derefs to
/// the client.
pub struct Closing<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Closing<T> {
    pub fn new(client: T) -> Closing<T> {
        Closing(Some(client))
    }
}

impl<T: Send + 'static> Deref for Closing<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for Closing<T> {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("duplex-close".into())
            .spawn(move || drop(client));
        if let Err(e) = spawned {
            // The client went down with the failed spawn's closure; its drop ran here.
            warn!(error = %e, "Could not start a thread to close a client; it was closed on the caller's thread.");
        }
    }
}

impl<T: Send + 'static> std::fmt::Debug for Closing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closing(..)")
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::{Offset, TopicPartitionList};

    use super::Closing;

    /// A consumer whose close must wait: its only broker (the group's coordinator) is
    /// down and a commit is waiting for it. rdkafka's drop would poll until librdkafka
    /// times the commit out (the group's session timeout, 45 s by default); dropped
    /// through `Closing`, the caller goes on at once.
    #[test]
    fn dropping_a_consumer_whose_close_waits_does_not_wait() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic("t", 1, 1).expect("topic");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "closing-test")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let consumer = Closing::new(consumer);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Offset(0))
            .expect("add");
        consumer.assign(&tpl).expect("assign");
        consumer
            .commit(&tpl, CommitMode::Sync)
            .expect("commit while up");
        mock.broker_down(1).expect("broker down");
        tpl.set_all_offsets(Offset::Offset(1)).expect("offsets");
        consumer
            .commit(&tpl, CommitMode::Async)
            .expect("commit queued");
        let t = Instant::now();
        drop(consumer);
        let took = t.elapsed();
        assert!(took < Duration::from_secs(5), "the drop took {took:?}");
    }
}
