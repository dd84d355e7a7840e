//! Parity runs inside the service: each one a command (`VerificationStarted`), a thread
//! running the verifier's pass, and an event when it ends (`VerificationFinished`), so
//! the log says which runs were made, by whom and what they found (docs/api.md,
//! "VerificationService").
//!
//! A run's store is `<state.dir>/verifications/store-<xxh3 of its signature>`: a rerun
//! of the same comparison resumes reading where the last one stopped, and two runs
//! over the same store cannot run at once (the second is refused, naming the first). Its
//! report goes to `<state.dir>/verifications/<id>/`. A run the service did not see end
//! (killed under it) is recorded as cancelled at the next start.
//!
//! A cancel stops a run while it reads (nearly all of its time); one that arrives once
//! reading is done lets the comparison finish, and the run ends with its verdict.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use duplex_sync::control::EngineHandle;
use duplex_verifier::run::{self, ProgressLine};
use duplex_verifier::{Verdict, VerifyError, VerifySpec};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use xxhash_rust::xxh3::xxh3_64;

use super::selection::{self, Selection};
use crate::state::events::VerificationOutcome;
use crate::state::fold::Verification;
use crate::state::{Command, CommandError, Outcome, Payload, Store};

/// The most runs at once: each reads every selected partition of its sides.
pub const MAX_RUNNING: usize = 4;

/// How long a shutdown waits for runs to record how they ended.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A run in progress.
#[derive(Debug)]
pub struct Live {
    /// The last progress line (none before the first).
    pub progress: watch::Sender<Option<ProgressLine>>,
    /// Set to stop it.
    stop: AtomicBool,
    /// Why it was stopped: an operator's cancel or the service stopping.
    reason: Mutex<Option<String>>,
    /// Its store directory.
    store_dir: PathBuf,
    /// Fires once its end is recorded.
    pub ended: CancellationToken,
}

impl Live {
    fn stop(&self, reason: String) {
        self.reason
            .lock()
            .expect("reason lock")
            .get_or_insert(reason);
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The runs of a service.
#[derive(Debug)]
pub struct Runs {
    store: Arc<Store>,
    engine: EngineHandle,
    dir: PathBuf,
    live: Mutex<HashMap<u64, Arc<Live>>>,
    tasks: TaskTracker,
}

impl Runs {
    /// The runs over the running `engine`'s clusters (those added at runtime too), with
    /// stores and reports under `state_dir`.
    /// Runs the log shows unfinished were cut off by an earlier stop: each is recorded
    /// as cancelled now.
    pub fn open(
        store: Arc<Store>,
        engine: EngineHandle,
        state_dir: &Path,
    ) -> Result<Arc<Runs>, crate::state::log::LogError> {
        let unfinished: Vec<u64> = store.with_state(|s| {
            s.verifications
                .values()
                .filter(|v| v.finished.is_none())
                .map(|v| v.id)
                .collect()
        });
        if !unfinished.is_empty() {
            warn!(runs = ?unfinished, "Parity runs the service did not see end (it was stopped or killed under them) are recorded as cancelled; start them again, their stores resume.");
            store.record(
                unfinished
                    .into_iter()
                    .map(|verification| Payload::VerificationFinished {
                        verification,
                        outcome: VerificationOutcome::Cancelled,
                        totals: None,
                        error: Some(
                            "the service stopped before the run ended; start it again (its store resumes where it stopped)"
                                .into(),
                        ),
                    })
                    .collect(),
            )?;
        }
        Ok(Arc::new(Runs {
            store,
            engine,
            dir: state_dir.join("verifications"),
            live: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
        }))
    }

    /// A run in progress, if `id` is one.
    pub fn live(&self, id: u64) -> Option<Arc<Live>> {
        self.lock().get(&id).cloned()
    }

    /// Records and starts a run of `sel` and returns its id (a replayed key answers with
    /// the run it
    /// started). Refused when [`MAX_RUNNING`] run, or one runs over the same store.
    pub fn start(self: &Arc<Self>, cmd: &Command, sel: &Selection) -> Result<u64, CommandError> {
        let mut live = self.lock();
        let mut prepared: Option<(VerifySpec, PathBuf)> = None;
        let mut expected = 0;
        // Everything is decided inside the command, so a replayed key answers with its
        // run whatever changed since (the config, a shutdown under way).
        let outcome: Outcome = self.store.execute(cmd, |state| {
            if self.tasks.is_closed() {
                return Err(CommandError::FailedPrecondition(
                    "the service is shutting down: start the verification again once it is back"
                        .into(),
                ));
            }
            // The store's name needs the spec; the spec's store dir needs the name.
            let mut spec = selection::spec(sel, &self.engine.spec(), PathBuf::new()).map_err(|e| {
                CommandError::InvalidArgument {
                    field: e.field,
                    problem: e.problem,
                }
            })?;
            spec.store_dir = self
                .dir
                .join(format!("store-{:016x}", xxh3_64(spec.signature().as_bytes())));
            if let Some((id, _)) = live.iter().find(|(_, l)| l.store_dir == spec.store_dir) {
                return Err(CommandError::FailedPrecondition(format!(
                    "verifications/{id} is running over the same clusters and options (its store is in use): wait for it to end, or cancel it"
                )));
            }
            if live.len() >= MAX_RUNNING {
                let mut ids: Vec<_> = live.keys().map(|id| format!("verifications/{id}")).collect();
                ids.sort();
                return Err(CommandError::FailedPrecondition(format!(
                    "{MAX_RUNNING} verifications are running ({}): wait for one to end, or cancel one",
                    ids.join(", ")
                )));
            }
            // The run's id is the sequence number its event is about to get: the writer
            // folds every event it appends, so the state's revision is the log's end.
            expected = state.revision + 1;
            let report_dir = self.dir.join(expected.to_string());
            let payload = Payload::VerificationStarted {
                between: sel.between.clone(),
                topics: sel.topics.clone(),
                report_dir: report_dir.display().to_string(),
            };
            prepared = Some((spec, report_dir));
            Ok(vec![payload])
        })?;
        let id = *outcome
            .events
            .first()
            .expect("a start records one event, and its key remembers it");
        if outcome.replayed {
            return Ok(id);
        }
        debug_assert_eq!(id, expected, "a run's id is its event's sequence number");
        let (spec, report_dir) = prepared.expect("a recorded start was prepared");
        let run = Arc::new(Live {
            progress: watch::channel(None).0,
            stop: AtomicBool::new(false),
            reason: Mutex::new(None),
            store_dir: spec.store_dir.clone(),
            ended: CancellationToken::new(),
        });
        live.insert(id, run.clone());
        info!(verification = id, between = ?sel.between, topics = %sel.topics, actor = %cmd.actor, "Parity run started.");
        // Spawned under the lock: a shutdown closes the tracker under it too, so every
        // run it does not refuse is one it waits for.
        let runs = self.clone();
        self.tasks
            .spawn_blocking(move || runs.run(id, spec, report_dir, run));
        drop(live);
        Ok(id)
    }

    /// Records an operator's cancel of run `id` and stops it; the caller waits for
    /// [`Live::ended`]. A run that has ended records nothing.
    pub fn cancel(&self, cmd: &Command, id: u64) -> Result<Outcome, CommandError> {
        let outcome = self.store.execute(cmd, |state| {
            let v = state.verifications.get(&id).ok_or_else(|| {
                CommandError::NotFound(format!("verifications/{id} does not exist"))
            })?;
            Ok(if v.finished.is_some() {
                Vec::new()
            } else {
                vec![Payload::VerificationCancelRequested { verification: id }]
            })
        })?;
        if let Some(run) = self.live(id) {
            run.stop(format!("cancelled by {}", cmd.actor));
        }
        Ok(outcome)
    }

    /// Asks every run to stop and starts no more: the service is stopping.
    pub fn stop_all(&self) {
        let live = self.lock();
        self.tasks.close();
        for run in live.values() {
            run.stop(
                "the service stopped before the run ended; start it again (its store resumes where it stopped)"
                    .into(),
            );
        }
    }

    /// Stops every run and completes once each has recorded how it ended, or after
    /// [`STOP_GRACE`] (a run in its comparison finishes it first; one still going then
    /// is recorded cancelled at the next start). None starts any more.
    pub async fn stopped(&self) {
        self.stop_all();
        if tokio::time::timeout(STOP_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(grace = ?STOP_GRACE, "Parity runs were still comparing at shutdown; the next start records them as cancelled.");
        }
    }

    /// The run as the log says.
    pub fn get(&self, id: u64) -> Option<Verification> {
        self.store.with_state(|s| s.verifications.get(&id).cloned())
    }

    fn run(&self, id: u64, spec: VerifySpec, report_dir: PathBuf, live: Arc<Live>) {
        let progress = |p: &ProgressLine| {
            live.progress.send_replace(Some(p.clone()));
        };
        // A verifier that panics ends the run in ERROR like any error: its slot, its
        // store and whoever waits for it are released.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pass(&spec, &report_dir, &live.stop, &progress)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(VerifyError::Invalid(format!("the verifier failed: {what}")))
        });
        let (outcome, totals, error) = match result {
            Ok(report) => {
                let outcome = match report.verdict {
                    Verdict::Pass => VerificationOutcome::Passed,
                    Verdict::Fail => VerificationOutcome::Failed,
                };
                (outcome, Some(report.totals), None)
            }
            Err(VerifyError::Stopped) => {
                let why = live.reason.lock().expect("reason lock").clone();
                (VerificationOutcome::Cancelled, None, why)
            }
            Err(e) => (VerificationOutcome::Error, None, Some(e.to_string())),
        };
        info!(
            verification = id,
            ?outcome,
            error = error.as_deref().unwrap_or(""),
            "Parity run ended."
        );
        if let Err(e) = self.store.record(vec![Payload::VerificationFinished {
            verification: id,
            outcome,
            totals,
            error,
        }]) {
            warn!(verification = id, error = %e, "How a parity run ended could not be recorded; the next start records it as cancelled.");
        }
        self.lock().remove(&id);
        live.ended.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Live>>> {
        self.live.lock().expect("runs lock")
    }
}

/// One pass over the run's store, its report written to `report_dir`.
fn pass(
    spec: &VerifySpec,
    report_dir: &Path,
    stop: &AtomicBool,
    progress: &(dyn Fn(&ProgressLine) + Sync),
) -> Result<duplex_verifier::Report, VerifyError> {
    std::fs::create_dir_all(&spec.store_dir).map_err(|e| {
        VerifyError::Invalid(format!(
            "state.dir: cannot create {}: {e}",
            spec.store_dir.display()
        ))
    })?;
    let report = run::verify(spec, stop, progress)?;
    run::write_report(&report, report_dir)?;
    Ok(report)
}
