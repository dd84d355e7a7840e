//! A catch-up subscription: every event from a sequence number on, first from the log,
//! then live as each is appended, without a gap or a repeat.
//!
//! The live feed is subscribed to before the log is read, so an event appended while
//! the log is read is in one or the other (or both: those already sent are skipped by
//! sequence number). A watcher that falls further behind than the live buffer reads the
//! log again from where it was.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Store;
use super::events::Event;
use super::log::LogError;

const PAGE: usize = 256;

/// Starts a watch from `from` (0 means 1); events arrive on the receiver, which ends
/// when the log cannot be read (the error comes last), or when `stop` fires (the
/// service is shutting down: its server waits for open streams to end, so the catch-up
/// stops too, even mid-page or while waiting for a slow client). The task runs
/// on `tasks`, so whoever shuts down can wait until no watch holds the store.
pub fn watch(
    store: Arc<Store>,
    from: u64,
    buffer: usize,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> mpsc::Receiver<Result<Event, LogError>> {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    tasks.spawn(async move {
        let mut next = from.max(1);
        let mut live = store.subscribe();
        'catch_up: loop {
            loop {
                let page = match store.read(next, PAGE) {
                    Ok(p) => p,
                    Err(e) => {
                        send(&tx, &stop, Err(e)).await;
                        return;
                    }
                };
                let Some(last) = page.last().map(|e| e.seq) else {
                    break;
                };
                for e in page {
                    if !send(&tx, &stop, Ok(e)).await {
                        return;
                    }
                }
                next = last + 1;
            }
            loop {
                let received = tokio::select! {
                    r = live.recv() => r,
                    _ = tx.closed() => return,
                    _ = stop.cancelled() => return,
                };
                match received {
                    Ok(e) if e.seq < next => {}
                    Ok(e) if e.seq == next => {
                        next += 1;
                        if !send(&tx, &stop, Ok(e)).await {
                            return;
                        }
                    }
                    // Behind the live feed: read the log from where this watch is.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue 'catch_up,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    rx
}

/// Sends one item unless the client has gone or the service is stopping (a client that
/// reads slowly, or not at all, must not hold up a shutdown). False: stop watching.
async fn send(
    tx: &mpsc::Sender<Result<Event, LogError>>,
    stop: &CancellationToken,
    item: Result<Event, LogError>,
) -> bool {
    tokio::select! {
        r = tx.send(item) => r.is_ok(),
        _ = stop.cancelled() => false,
    }
}
