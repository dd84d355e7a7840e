//! `duplex verify --remote`: the parity run happens in the service (its clusters, its
//! network, its state directory), the CLI starts it, follows it with a progress bar,
//! fetches the report and writes it locally. Exit codes as the local verify: 0 parity,
//! 1 discrepancies, 2 errors (and a run that ended without a verdict). Ctrl-C cancels
//! the run in the service.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use duplex_proto::v1 as pb;
use duplex_verifier::Report;
use duplex_verifier::run::ProgressLine;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::VerifyArgs;
use crate::client::{Clients, status_error};

/// How many times a broken watch is opened again before giving up.
const RECONNECTS: u32 = 5;

/// The request for the selection of `args`.
fn request(args: &VerifyArgs) -> pb::StartVerificationRequest {
    let s = &args.selection;
    pb::StartVerificationRequest {
        between: s.between.clone(),
        topics: s.topics.clone(),
        exclude: s.exclude.clone().unwrap_or_default(),
        positional: s.positional.clone().unwrap_or_default(),
        compacted: s.compacted.clone().unwrap_or_default(),
        ignore_headers: s.ignore_headers.clone(),
        from: s.from.iter().map(ToString::to_string).collect(),
        watermark: s.watermark.iter().map(ToString::to_string).collect(),
        max_samples: Some(s.max_samples.min(u32::MAX as usize) as u32),
        max_rate: s.max_rate.unwrap_or(0),
        align_window: s.align_window.min(u32::MAX as usize) as u32,
        stall_timeout_seconds: s.stall_timeout.as_secs().clamp(1, u32::MAX as u64) as u32,
        // Recorded with the run: the log says which CLI invocation started it.
        request_id: format!(
            "verify-cli-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ),
    }
}

/// The progress line of the local verify, from the service's progress.
fn line(p: &pb::VerificationProgress) -> ProgressLine {
    ProgressLine {
        sides: p
            .sides
            .iter()
            .map(|s| {
                (
                    s.cluster.clone(),
                    s.records_read,
                    s.records_planned,
                    s.records_per_second,
                )
            })
            .collect(),
        elapsed: p.elapsed_seconds,
    }
}

/// Shows progress: a bar on a terminal, one line per update otherwise.
struct Shown {
    bar: Option<ProgressBar>,
}

impl Shown {
    fn new(name: &str) -> Shown {
        if !std::io::stderr().is_terminal() {
            eprintln!("verify: {name} started in the service");
            return Shown { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} records {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("({name})"));
        bar.enable_steady_tick(Duration::from_millis(200));
        Shown { bar: Some(bar) }
    }

    fn update(&self, p: &pb::VerificationProgress) {
        let l = line(p);
        match &self.bar {
            Some(bar) => {
                bar.set_length(l.sides.iter().map(|s| s.2).sum());
                bar.set_position(l.sides.iter().map(|s| s.1).sum());
                let eta = l
                    .eta()
                    .map_or("ETA unknown".into(), |e| format!("ETA {e:.0} s"));
                let sides: Vec<String> = l
                    .sides
                    .iter()
                    .map(|(c, read, planned, rate)| format!("{c} {read}/{planned} ({rate:.0}/s)"))
                    .collect();
                bar.set_message(format!("{}; {eta}", sides.join(", ")));
            }
            None => eprintln!("{l}"),
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Runs `duplex verify --remote`.
pub async fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut c = args.api.connect().await?;
    let started = c
        .verification
        .start_verification(request(args))
        .await
        .map_err(|s| status_error("StartVerification", s))?
        .into_inner();
    let name = started.name.clone();
    let shown = Shown::new(&name);
    // None: Ctrl-C.
    let followed = tokio::select! {
        r = follow(&mut c, &name, &shown) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    let Some(followed) = followed else {
        shown.done();
        eprintln!("verify: cancelling {name} in the service (Ctrl-C again to leave it running)");
        let cancel = c
            .verification
            .cancel_verification(pb::CancelVerificationRequest {
                name: name.clone(),
                request_id: String::new(),
            });
        tokio::select! {
            r = cancel => {
                r.map_err(|s| status_error("CancelVerification", s))?;
            }
            _ = tokio::signal::ctrl_c() => {
                anyhow::bail!("{name} left running in the service (Ctrl-C twice)")
            }
        }
        anyhow::bail!("{name} cancelled (Ctrl-C)");
    };
    shown.done();
    followed?;
    let v = c
        .verification
        .get_verification(pb::GetVerificationRequest { name: name.clone() })
        .await
        .map_err(|s| status_error("GetVerification", s))?
        .into_inner();
    let state = pb::VerificationState::try_from(v.state).unwrap_or_default();
    match state {
        pb::VerificationState::Passed | pb::VerificationState::Failed => {}
        pb::VerificationState::Error | pb::VerificationState::Cancelled => {
            anyhow::bail!("{name} ended without a verdict: {}", v.error)
        }
        _ => anyhow::bail!("{name} has not ended (state {})", state.as_str_name()),
    }
    if v.report_json.is_empty() {
        anyhow::bail!(
            "{name} ended ({}) but its report is gone from {} on the service's machine",
            state.as_str_name(),
            v.report_dir
        );
    }
    let report: Report = serde_json::from_str(&v.report_json).with_context(|| {
        format!("{name}: the service's report does not read as duplex.parity/1")
    })?;
    super::publish(&report, &args.report)?;
    println!("the service's copy: {}", v.report_dir);
    // The verdict is the report's; the state must agree with it.
    Ok(match (state, report.verdict) {
        (pb::VerificationState::Passed, duplex_verifier::Verdict::Pass) => ExitCode::SUCCESS,
        (pb::VerificationState::Failed, duplex_verifier::Verdict::Fail) => ExitCode::from(1),
        (s, v) => anyhow::bail!(
            "{name}: the service says {} but its report says {v:?}",
            s.as_str_name()
        ),
    })
}

/// Follows the run until it has ended; a broken watch is opened again.
async fn follow(c: &mut Clients, name: &str, shown: &Shown) -> anyhow::Result<()> {
    let mut failures = 0;
    loop {
        let stream = c
            .verification
            .watch_verification(pb::GetVerificationRequest {
                name: name.to_string(),
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(s) if failures < RECONNECTS && s.code() == tonic::Code::Unavailable => {
                failures += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(s) => return Err(status_error("WatchVerification", s)),
        };
        loop {
            match stream.message().await {
                Ok(Some(v)) => {
                    failures = 0;
                    if let Some(p) = &v.progress {
                        shown.update(p);
                    }
                    if v.state != pb::VerificationState::Running as i32 {
                        return Ok(());
                    }
                }
                // The stream ends after the last state, or when the service stops.
                Ok(None) => break,
                Err(s) if failures < RECONNECTS => {
                    tracing::debug!(error = %s, "The watch broke; opening it again.");
                    break;
                }
                Err(s) => return Err(status_error("WatchVerification", s)),
            }
        }
        failures += 1;
        if failures > RECONNECTS {
            anyhow::bail!("{name}: the service stopped answering about it");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
