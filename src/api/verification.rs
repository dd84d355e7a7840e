//! `duplex.v1.VerificationService`: parity runs started, followed, read and cancelled;
//! the runs themselves are [`crate::verify::runs`].

use std::pin::Pin;
use std::time::{Duration, UNIX_EPOCH};

use duplex_proto::v1 as pb;
use duplex_verifier::OffsetRule;
use duplex_verifier::report::Counts;
use duplex_verifier::run::ProgressLine;
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::{actor, operator};
use super::keyed::command;
use super::{Api, Ready};
use crate::state::events::VerificationOutcome;
use crate::state::fold::Verification;
use crate::verify::Selection;

/// The service.
#[derive(Debug)]
pub struct Verifications(pub Ready);

/// Default and largest page of ListVerifications.
const PAGE: (u32, u32) = (50, 500);

fn time(ms: i64) -> prost_types::Timestamp {
    (UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).into()
}

/// The API's outcome name for an event.
pub fn outcome_pb(o: VerificationOutcome) -> pb::VerificationState {
    match o {
        VerificationOutcome::Passed => pb::VerificationState::Passed,
        VerificationOutcome::Failed => pb::VerificationState::Failed,
        VerificationOutcome::Error => pb::VerificationState::Error,
        VerificationOutcome::Cancelled => pb::VerificationState::Cancelled,
    }
}

/// A comparison's counts as the API shows them.
pub fn counts_pb(c: &Counts) -> pb::ParityCounts {
    pb::ParityCounts {
        matched: c.matched,
        missing: c.missing,
        extra: c.extra,
        altered: c.altered,
        duplicated: c.duplicated,
        reordered: c.reordered,
        wrong_partition: c.wrong_partition,
        missing_on_both: c.missing_on_both,
    }
}

fn progress_pb(p: &ProgressLine) -> pb::VerificationProgress {
    pb::VerificationProgress {
        sides: p
            .sides
            .iter()
            .map(|(cluster, read, planned, rate)| pb::SideProgress {
                cluster: cluster.clone(),
                records_read: *read,
                records_planned: *planned,
                records_per_second: *rate,
            })
            .collect(),
        elapsed_seconds: p.elapsed,
        eta_seconds: p.eta(),
    }
}

/// A run as the API shows it; with `report`, the report's JSON once it has a verdict.
fn verification_pb(api: &Api, v: &Verification, report: bool) -> pb::Verification {
    let live = api.runs.live(v.id);
    let progress = live
        .as_ref()
        .and_then(|l| l.progress.borrow().as_ref().map(progress_pb));
    let finished = v.finished.as_ref();
    let report_json = match finished {
        Some(f) if report && f.totals.is_some() => {
            // Written before its end was recorded; a file removed since reads as none.
            std::fs::read_to_string(std::path::Path::new(&v.report_dir).join("parity.json"))
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    pb::Verification {
        name: format!("verifications/{}", v.id),
        state: finished.map_or(pb::VerificationState::Running, |f| outcome_pb(f.outcome)) as i32,
        between: v.between.clone(),
        topics: v.topics.clone(),
        actor: v.actor.clone(),
        start_time: Some(time(v.started_ms)),
        end_time: finished.map(|f| time(f.time_ms)),
        progress,
        totals: finished.and_then(|f| f.totals.as_ref()).map(counts_pb),
        error: finished.and_then(|f| f.error.clone()).unwrap_or_default(),
        report_json,
        report_dir: v.report_dir.clone(),
    }
}

/// `verifications/{id}` or the bare id.
fn parse_name(name: &str) -> Result<u64, Status> {
    let id = name.strip_prefix("verifications/").unwrap_or(name);
    if name.is_empty() {
        return Err(super::error::invalid("name", "is required"));
    }
    id.parse().map_err(|_| {
        let shown: String = name.chars().take(64).collect();
        super::error::invalid(
            "name",
            format!("{shown:?} is not a verification name (verifications/ID)"),
        )
    })
}

/// The most entries a list field takes.
const MAX_ENTRIES: usize = 100;
/// The longest offset rule or header name taken.
const MAX_ENTRY: usize = 300;

fn list<'a>(field: &str, values: &'a [String]) -> Result<&'a [String], Status> {
    if values.len() > MAX_ENTRIES {
        return Err(super::error::invalid(
            field,
            format!("{} entries; at most {MAX_ENTRIES}", values.len()),
        ));
    }
    for (i, v) in values.iter().enumerate() {
        if v.len() > MAX_ENTRY {
            return Err(super::error::invalid(
                &format!("{field}[{i}]"),
                format!("is {} bytes long; at most {MAX_ENTRY}", v.len()),
            ));
        }
    }
    Ok(values)
}

fn rules(field: &'static str, texts: &[String]) -> Result<Vec<OffsetRule>, Status> {
    list(field, texts)?
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.parse::<OffsetRule>()
                .map_err(|e| super::error::invalid(&format!("{field}[{i}]"), e))
        })
        .collect()
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The request as the verifier's selection; zeros are the CLI's defaults.
fn selection(r: &pb::StartVerificationRequest) -> Result<Selection, Status> {
    let d = Selection::default();
    for (i, id) in list("between", &r.between)?.iter().enumerate() {
        super::required(&format!("between[{i}]"), id)?;
    }
    list("ignore_headers", &r.ignore_headers)?;
    Ok(Selection {
        between: r.between.clone(),
        topics: nonempty(&r.topics).unwrap_or(d.topics),
        exclude: nonempty(&r.exclude),
        positional: nonempty(&r.positional),
        compacted: nonempty(&r.compacted),
        ignore_headers: r.ignore_headers.clone(),
        from: rules("from", &r.from)?,
        watermark: rules("watermark", &r.watermark)?,
        max_samples: r.max_samples.map_or(d.max_samples, |n| n as usize),
        max_rate: (r.max_rate > 0).then_some(r.max_rate),
        align_window: match r.align_window {
            0 => d.align_window,
            n => n as usize,
        },
        stall_timeout: match r.stall_timeout_seconds {
            0 => d.stall_timeout,
            n => Duration::from_secs(n.into()),
        },
    })
}

impl Verifications {
    fn find(api: &Api, id: u64) -> Result<Verification, Status> {
        api.runs
            .get(id)
            .ok_or_else(|| Status::not_found(format!("verifications/{id} does not exist")))
    }
}

type VerificationStream = Pin<Box<dyn Stream<Item = Result<pb::Verification, Status>> + Send>>;

#[tonic::async_trait]
impl pb::verification_service_server::VerificationService for Verifications {
    async fn start_verification(
        &self,
        req: Request<pb::StartVerificationRequest>,
    ) -> Result<Response<pb::Verification>, Status> {
        const METHOD: &str = "StartVerification";
        let actor = operator(&req, METHOD)?;
        let api = self.0.get()?;
        let r = req.get_ref();
        let sel = selection(r)?;
        let cmd = command(METHOD, actor, r, Vec::new());
        let id = api.runs.start(&cmd, &sel)?;
        let v = Self::find(api, id)?;
        Ok(Response::new(verification_pb(api, &v, false)))
    }

    async fn get_verification(
        &self,
        req: Request<pb::GetVerificationRequest>,
    ) -> Result<Response<pb::Verification>, Status> {
        actor(&req)?;
        let api = self.0.get()?;
        let id = parse_name(&req.get_ref().name)?;
        let v = Self::find(api, id)?;
        Ok(Response::new(verification_pb(api, &v, true)))
    }

    async fn list_verifications(
        &self,
        req: Request<pb::ListVerificationsRequest>,
    ) -> Result<Response<pb::ListVerificationsResponse>, Status> {
        actor(&req)?;
        let api = self.0.get()?;
        let r = req.get_ref();
        let size = match r.page_size {
            0 => PAGE.0,
            n => n.min(PAGE.1),
        } as usize;
        // The token is the id the next page starts below (newest first).
        let below = match r.page_token.as_str() {
            "" => u64::MAX,
            t => t.parse().map_err(|_| {
                super::error::invalid("page_token", "is not a token this service gave")
            })?,
        };
        let page: Vec<Verification> = api.store.with_state(|s| {
            s.verifications
                .range(..below)
                .rev()
                .take(size + 1)
                .map(|(_, v)| v.clone())
                .collect()
        });
        let next = if page.len() > size {
            page[size - 1].id.to_string()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListVerificationsResponse {
            verifications: page
                .iter()
                .take(size)
                .map(|v| verification_pb(api, v, false))
                .collect(),
            next_page_token: next,
        }))
    }

    type WatchVerificationStream = VerificationStream;

    async fn watch_verification(
        &self,
        req: Request<pb::GetVerificationRequest>,
    ) -> Result<Response<VerificationStream>, Status> {
        actor(&req)?;
        let api = self.0.get()?.clone();
        let id = parse_name(&req.get_ref().name)?;
        Self::find(&api, id)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let stop = api.stop.clone();
        api.tasks.clone().spawn(async move {
            // Subscribed before the state is read: a change in between is not missed.
            let live = api.runs.live(id);
            let mut progress = live.as_ref().map(|l| l.progress.subscribe());
            loop {
                let Some(v) = api.runs.get(id) else { return };
                // Ended: recorded (or its end could not be recorded; the next start
                // records it cancelled). Either way this is the last message.
                let done =
                    v.finished.is_some() || live.as_ref().is_some_and(|l| l.ended.is_cancelled());
                // The report itself is GetVerification's: a stream stays light.
                let msg = verification_pb(&api, &v, false);
                tokio::select! {
                    sent = tx.send(Ok(msg)) => if sent.is_err() { return },
                    _ = stop.cancelled() => return,
                }
                if done {
                    return;
                }
                let Some(live) = &live else {
                    // Not running and not ended: only while a start records its cut-off runs.
                    return;
                };
                let changed = async {
                    match progress.as_mut() {
                        Some(p) => p.changed().await.is_ok(),
                        None => false,
                    }
                };
                tokio::select! {
                    ok = changed => if !ok { live.ended.cancelled().await },
                    _ = live.ended.cancelled() => {}
                    _ = stop.cancelled() => return,
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel_verification(
        &self,
        req: Request<pb::CancelVerificationRequest>,
    ) -> Result<Response<pb::Verification>, Status> {
        const METHOD: &str = "CancelVerification";
        let actor = operator(&req, METHOD)?;
        let api = self.0.get()?;
        let r = req.get_ref();
        let id = parse_name(&r.name)?;
        let cmd = command(METHOD, actor, r, vec![format!("verification:{id}")]);
        api.runs.cancel(&cmd, id)?;
        if let Some(live) = api.runs.live(id) {
            tokio::select! {
                _ = live.ended.cancelled() => {}
                _ = api.stop.cancelled() => return Err(Status::unavailable(format!(
                    "{METHOD}: the service is shutting down; verifications/{id} stops with it and is recorded CANCELLED"
                ))),
            }
        }
        let v = Self::find(api, id)?;
        Ok(Response::new(verification_pb(api, &v, false)))
    }
}
