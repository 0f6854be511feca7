//! Stopping a capturing session at once: Ctrl-C, SIGTERM, a window close.
//!
//! Two things stand between a stop request and a closed session:
//!
//! - **The renderer's cancel flag is not enough.** `run_headless` polls it
//!   from a `select!` whose 100 ms sleep is created anew on every turn of
//!   the loop, so while the display channel delivers events faster than
//!   that, the sleep never completes and the flag is never read: a busy
//!   session ignored Ctrl-C until it was killed. [`run_until_stopped`]
//!   watches the stop flag itself, raises the renderer's cancel flag, gives
//!   the session [`CANCEL_GRACE`] to end on its own, and otherwise drops
//!   it. The caller then shuts its runtime down with
//!   [`RUNTIME_SHUTDOWN`]: that drops every channel task, and with them
//!   their sockets, so the server sees FIN within a second of the request.
//! - **The capture disk may be slow.** [`close_for_exit`] closes the spool
//!   with a bounded grace: what the mover has not written by then stays
//!   staged in memory and a detached mover finishes it (see
//!   `spool::Spool::close_within`), so the process can exit.
//!
//! Nothing accepted is lost either way: a channel task that is dropped
//! makes no more sink calls, and every record the spool accepted is in a
//! sealed segment when the spool is closed.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use spool::{CloseOutcome, SpoolError};

use crate::sink::SpoolSink;

/// How long a session may take to end by itself once cancelled, before
/// [`run_until_stopped`] drops it.
pub const CANCEL_GRACE: Duration = Duration::from_millis(300);

/// How long to wait for a runtime's worker threads when shutting it down
/// after [`run_until_stopped`]: tasks are dropped at their next yield.
pub const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(500);

/// How long [`close_for_exit`] lets the spool's mover write before it
/// leaves the rest to a detached mover. Together with the two above, a
/// stopped session exits well within 5 s.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How often the stop flag is looked at.
const POLL: Duration = Duration::from_millis(20);

/// Runs `session` until it ends (`Some(output)`) or `stop` is raised
/// (`None`).
///
/// On a stop, `cancel` (the renderer's per-session flag) is raised first so
/// that a session able to wind down cleanly does, within [`CANCEL_GRACE`];
/// otherwise `session` is dropped here. Tasks it spawned keep running until
/// the caller shuts its runtime down (`Runtime::shutdown_timeout` with
/// [`RUNTIME_SHUTDOWN`]), which must happen before the capture is closed
/// if records still arriving are to be kept rather than counted as drops.
pub async fn run_until_stopped<F: Future>(
    session: F,
    stop: &AtomicBool,
    cancel: &AtomicBool,
) -> Option<F::Output> {
    tokio::pin!(session);
    loop {
        // `session` is a future that completes once, so re-creating the
        // sleep each turn cannot starve this branch the way an event
        // stream starves the renderer's.
        tokio::select! {
            out = &mut session => return Some(out),
            _ = tokio::time::sleep(POLL) => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
        }
    }
    cancel.store(true, Ordering::SeqCst);
    tokio::time::timeout(CANCEL_GRACE, &mut session).await.ok()
}

/// Closes `sink` for a process that is about to exit: seals every channel,
/// lets the mover write for up to [`CLOSE_GRACE`] and leaves the rest to a
/// detached mover. On a terminal, shows what is being written meanwhile;
/// says on stderr where the rest went, if anything was left; errors are the
/// caller's to report.
pub fn close_for_exit(sink: &SpoolSink) -> Result<CloseOutcome, SpoolError> {
    let tty = std::io::stderr().is_terminal();
    let dir = sink.capture_dir().display().to_string();
    let started = Instant::now();
    let mut drew = false;
    let outcome = sink.spool().close_within_progress(CLOSE_GRACE, |p| {
        // A close that is over at once draws nothing.
        if !tty || started.elapsed() < Duration::from_millis(300) {
            return;
        }
        drew = true;
        eprint!(
            "\rryll: writing the capture to {dir}: {:.1} of {:.1} MB",
            mib(p.staged_at_start.saturating_sub(p.staged_bytes)),
            mib(p.staged_at_start)
        );
        let _ = std::io::stderr().flush();
    });
    match &outcome {
        Ok(o) if o.bytes_left_staged > 0 => eprintln!(
            "{}ryll: {:.1} MB of the capture are still in memory; {} moves them to {dir} \
             (spool2pcap reads them meanwhile)",
            if drew { "\r" } else { "" },
            mib(o.bytes_left_staged),
            o.mover.as_ref().map_or_else(
                || "the next capture".to_string(),
                |m| format!("process {}", m.pid())
            ),
        ),
        _ if drew => eprint!("\r\x1b[K"),
        _ => {}
    }
    outcome
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_that_ends_returns_its_output() {
        let (stop, cancel) = (AtomicBool::new(false), AtomicBool::new(false));
        let out = run_until_stopped(async { 7 }, &stop, &cancel).await;
        assert_eq!(out, Some(7));
        assert!(!cancel.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_stop_cancels_then_drops_a_session_that_ignores_it() {
        let (stop, cancel) = (AtomicBool::new(true), AtomicBool::new(false));
        let started = Instant::now();
        let out = run_until_stopped(std::future::pending::<()>(), &stop, &cancel).await;
        assert_eq!(out, None);
        assert!(cancel.load(Ordering::SeqCst));
        assert!(started.elapsed() < CANCEL_GRACE + Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_session_that_honours_cancel_ends_with_its_output() {
        let (stop, cancel) = (AtomicBool::new(true), AtomicBool::new(false));
        let session = async {
            while !cancel.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            "cancelled"
        };
        assert_eq!(
            run_until_stopped(session, &stop, &cancel).await,
            Some("cancelled")
        );
    }

    /// The renderer's defect, reproduced: a loop that always has an event
    /// ready never reaches its own cancel poll, yet the stop gets through.
    #[tokio::test]
    async fn a_session_busy_with_events_is_still_stopped() {
        let (stop, cancel) = (AtomicBool::new(false), AtomicBool::new(false));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let feeder = tokio::spawn(async move {
            loop {
                if tx.send(1).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let session = async {
            loop {
                tokio::select! {
                    Some(_) = rx.recv() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        if cancel.load(Ordering::SeqCst) {
                            return "saw cancel";
                        }
                    }
                }
            }
        };
        let raise = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop.store(true, Ordering::SeqCst);
        };
        let (out, ()) = tokio::join!(run_until_stopped(session, &stop, &cancel), raise);
        assert_eq!(out, None, "the busy loop never polls its cancel flag");
        feeder.abort();
    }
}
