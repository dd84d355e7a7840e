//! The one writer of the log. A command is decided against the state, its events are
//! appended in one synced batch, folded in, and handed to the reconciler (which sets
//! what the engine is asked to do) before the next command is decided: the engine is
//! asked for changes in log order, and the state it is asked for is always the fold.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

use super::events::{Event, Payload};
use super::fold::State;
use super::log::{Log, LogError, RequestRecord};

/// The longest idempotency key accepted.
pub const MAX_REQUEST_ID: usize = 128;

/// A command's envelope: who asks, under which key, on what revision.
#[derive(Debug, Clone)]
pub struct Command {
    /// The RPC, e.g. `PauseFlow`.
    pub method: &'static str,
    /// The caller's token name.
    pub actor: String,
    /// The client's idempotency key.
    pub request_id: Option<String>,
    /// xxh3-64 of the request without its key: the same key must come with the same one.
    pub fingerprint: u64,
    /// The last revision the client saw, if it makes the command conditional.
    pub expected_revision: Option<u64>,
    /// The objects the command changes (`flow:a->b`, `link:x`).
    pub touches: Vec<String>,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Sequence numbers of its events (none when the state already was as asked).
    pub events: Vec<u64>,
    /// The log's last sequence number once it was recorded.
    pub revision: u64,
    /// The recorded result of an earlier call with the same key.
    pub replayed: bool,
}

/// Why a command was refused; each maps to one gRPC code (src/api/error.rs).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A field is malformed.
    #[error("{field}: {problem}")]
    InvalidArgument {
        /// The request field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change cannot be made in this state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The key was used before for another request.
    #[error(
        "request_id {key:?} was already used for a different {method} request; use a new key for a new request"
    )]
    KeyReused {
        /// The key.
        key: String,
        /// The method of its first use.
        method: String,
    },
    /// The object changed after the client's expected revision.
    #[error(
        "{object} changed at revision {seq}, after expected_revision {expected}: read the state again and retry"
    )]
    Aborted {
        /// What changed.
        object: String,
        /// The event that changed it.
        seq: u64,
        /// What the client expected.
        expected: u64,
    },
    /// The log could not be written or read.
    #[error(transparent)]
    Log(#[from] LogError),
}

struct Inner {
    log: Log,
    state: State,
}

/// Applies new events to whatever runs the state (the engine): called under the
/// writer's lock after every append, in log order.
pub type Reconciler = Box<dyn Fn(&[Event]) + Send + Sync>;

/// The state and its log.
pub struct Store {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Event>,
    reconciler: Mutex<Option<Reconciler>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Events kept for live watchers that fall behind; one further behind re-reads the log.
const LIVE_BUFFER: usize = 4096;

impl Store {
    /// Opens the log and folds it into the state.
    pub fn open(log: Log) -> Result<Arc<Store>, LogError> {
        let mut state = State::default();
        let mut from = 1;
        loop {
            let page = log.read(from, 1024)?;
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            for e in &page {
                state.apply(e);
            }
        }
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Ok(Arc::new(Store {
            inner: Mutex::new(Inner { log, state }),
            live,
            reconciler: Mutex::new(None),
        }))
    }

    /// Sets the reconciler, which sees every event appended from now on.
    pub fn set_reconciler(&self, r: Reconciler) {
        let _writer = self.lock();
        *self.reconciler.lock().expect("reconciler lock") = Some(r);
    }

    /// Drops the reconciler (the engine has stopped): what it held is released.
    pub fn clear_reconciler(&self) {
        let _writer = self.lock();
        *self.reconciler.lock().expect("reconciler lock") = None;
    }

    /// A copy of the state now.
    pub fn state(&self) -> State {
        self.lock().state.clone()
    }

    /// Reads the state now without copying it (`f` runs under the writer's lock: keep
    /// it short).
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock().state)
    }

    /// The log's last sequence number.
    pub fn revision(&self) -> u64 {
        self.lock().log.last()
    }

    /// Up to `limit` events from `from` on.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<Event>, LogError> {
        self.lock().log.read(from, limit)
    }

    /// Every event appended from now on (subscribe before reading the log's tail).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    /// Runs a command: replays a recorded key, checks the expected revision, asks
    /// `decide` for the events (none: the state already is as asked), appends them.
    pub fn execute(
        &self,
        cmd: &Command,
        decide: impl FnOnce(&State) -> Result<Vec<Payload>, CommandError>,
    ) -> Result<Outcome, CommandError> {
        let mut inner = self.lock();
        if let Some(out) = replay(&inner, cmd)? {
            return Ok(out);
        }
        if let Some(expected) = cmd.expected_revision {
            let last = inner.log.last();
            if expected > last {
                return Err(CommandError::InvalidArgument {
                    field: "expected_revision",
                    problem: format!("{expected} is past the log's last sequence number {last}"),
                });
            }
            if let Some((object, seq)) = inner.state.changed_since(&cmd.touches, expected) {
                return Err(CommandError::Aborted {
                    object,
                    seq,
                    expected,
                });
            }
        }
        let payloads = decide(&inner.state)?;
        let first = inner.log.last() + 1;
        let n = payloads.len() as u64;
        let record = cmd.request_id.as_ref().map(|k| {
            (
                k.as_str(),
                RequestRecord {
                    fingerprint: cmd.fingerprint,
                    method: cmd.method.to_string(),
                    events: (first..first + n).collect(),
                    revision: first - 1 + n,
                },
            )
        });
        // A command that changes nothing is still remembered under its key, so that a
        // retry after someone else's change answers the same.
        let events = if n == 0 && record.is_none() {
            Vec::new()
        } else {
            inner.log.append(
                now_ms(),
                &cmd.actor,
                record.as_ref().map(|(k, r)| (*k, r)),
                payloads,
            )?
        };
        self.fold_in(&mut inner, &events);
        Ok(Outcome {
            events: events.iter().map(|e| e.seq).collect(),
            revision: inner.log.last(),
            replayed: false,
        })
    }

    /// The recorded result of an earlier call with `cmd`'s key, if any: a command that
    /// prepares before it is decided (a topology change holds the flows) asks first, so
    /// that a retry prepares nothing. A key used for another request is refused.
    pub fn replayed(&self, cmd: &Command) -> Result<Option<Outcome>, CommandError> {
        replay(&self.lock(), cmd)
    }

    /// Records what the service itself observed or did (actor `service`).
    pub fn record(&self, payloads: Vec<Payload>) -> Result<Vec<Event>, LogError> {
        let mut inner = self.lock();
        let events = inner.log.append(now_ms(), "service", None, payloads)?;
        self.fold_in(&mut inner, &events);
        Ok(events)
    }

    fn fold_in(&self, inner: &mut Inner, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        for e in events {
            inner.state.apply(e);
        }
        if let Some(r) = self.reconciler.lock().expect("reconciler lock").as_ref() {
            r(events);
        }
        for e in events {
            // No watcher is not an error.
            let _ = self.live.send(e.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("state lock")
    }
}

/// The recorded outcome of `cmd`'s key, when it was used before for the same request.
fn replay(inner: &Inner, cmd: &Command) -> Result<Option<Outcome>, CommandError> {
    let Some(key) = &cmd.request_id else {
        return Ok(None);
    };
    validate_key(key)?;
    let Some(r) = inner.log.request(key)? else {
        return Ok(None);
    };
    if r.fingerprint != cmd.fingerprint || r.method != cmd.method {
        return Err(CommandError::KeyReused {
            key: key.clone(),
            method: r.method,
        });
    }
    Ok(Some(Outcome {
        events: r.events,
        revision: r.revision,
        replayed: true,
    }))
}

fn validate_key(key: &str) -> Result<(), CommandError> {
    let bad = |problem: String| CommandError::InvalidArgument {
        field: "request_id",
        problem,
    };
    if key.len() > MAX_REQUEST_ID {
        return Err(bad(format!(
            "{} characters, at most {MAX_REQUEST_ID}",
            key.len()
        )));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(bad(format!("contains the control character {c:?}")));
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
