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

use super::Store;
use super::events::Event;
use super::log::LogError;

const PAGE: usize = 256;

/// Starts a watch from `from` (0 means 1); events arrive on the receiver, which ends
/// when the log cannot be read (the error comes last), or when `stop` fires (the
/// service is shutting down: its server waits for open streams to end).
pub fn watch(
    store: Arc<Store>,
    from: u64,
    buffer: usize,
    stop: CancellationToken,
) -> mpsc::Receiver<Result<Event, LogError>> {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    tokio::spawn(async move {
        let mut next = from.max(1);
        let mut live = store.subscribe();
        'catch_up: loop {
            loop {
                let page = match store.read(next, PAGE) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let Some(last) = page.last().map(|e| e.seq) else {
                    break;
                };
                for e in page {
                    if tx.send(Ok(e)).await.is_err() {
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
                        if tx.send(Ok(e)).await.is_err() {
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
