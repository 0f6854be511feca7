//! The traffic of ryll's own bug reports (F12, `--pedantic`, the headless
//! report trigger), taken from the running capture, or from the memory
//! ring of a session that captures nothing to disk ([`crate::ring`]).
//!
//! ryll assembles a report in code far from where the capture was started,
//! and ryll 0.3.0 filled its `traffic.pcap` from an in-memory ring of
//! frames it built itself. A capturing ryll has the whole session in its
//! spool instead, so the report's pcap is cut from there, by the same
//! pipeline `spool2pcap convert` uses (the one Wireshark decodes). The host
//! registers its capture here when it starts one ([`set_active_capture`];
//! the ring registers itself, [`crate::ring::start`]); report code asks
//! [`traffic_pcap`], and falls back to its own when there is neither.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::bundle::{self, BugReportOptions, BundleError, TrafficCaptureSummary};
use crate::sink::SpoolSink;

/// Where the process's reports take their traffic from.
enum Source {
    /// A capture directory (`--capture`), read as it is written.
    Capture(PathBuf),
    /// The process's memory-only ring ([`crate::ring`]), held while read so
    /// that nothing is recycled under the report.
    Ring(Arc<SpoolSink>),
}

/// The process's source of report traffic, if any.
static ACTIVE: Mutex<Option<Source>> = Mutex::new(None);

fn set(source: Option<Source>) {
    *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = source;
}

/// Makes `capture_dir` the source of every later report's traffic.
pub fn set_active_capture(capture_dir: &Path) {
    set(Some(Source::Capture(capture_dir.to_path_buf())));
}

/// Makes the memory-only ring `ring` the source of every later report's
/// traffic.
pub fn set_active_ring(ring: Arc<SpoolSink>) {
    set(Some(Source::Ring(ring)));
}

/// Forgets the source: later reports fall back to the host's own.
pub fn clear_active() {
    set(None);
}

/// The capture reports are cut from, if one was registered.
pub fn active_capture() -> Option<PathBuf> {
    match &*ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) {
        Some(Source::Capture(dir)) => Some(dir.clone()),
        Some(Source::Ring(ring)) => Some(ring.capture_dir().to_path_buf()),
        None => None,
    }
}

/// Whether reports have a recorder (a capture or the ring) to take their
/// traffic from: the host then needs to keep no payloads of its own.
pub fn has_recorder() -> bool {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// A report's `traffic.pcap` from the running capture or ring: the newest
/// traffic of `channel` (a SPICE channel name, or `"all"` for every
/// channel, as ryll's report types name them) within `budget_bytes`,
/// keystrokes and clipboard redacted. `None` when the process has neither,
/// so the caller uses whatever it had before.
pub fn traffic_pcap(
    channel: &str,
    budget_bytes: u64,
) -> Option<Result<(Vec<u8>, TrafficCaptureSummary), BundleError>> {
    let (capture, ring) = match &*ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) {
        Some(Source::Capture(dir)) => (dir.clone(), None),
        Some(Source::Ring(ring)) => (ring.capture_dir().to_path_buf(), Some(ring.clone())),
        None => return None,
    };
    let _hold = ring.as_ref().map(|r| r.spool().hold_trims());
    let opts = BugReportOptions {
        budget_bytes,
        ..BugReportOptions::default()
    };
    let filter = (channel != "all").then_some(channel);
    Some(bundle::capture_traffic_pcap(&capture, filter, &opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test in this crate's unit tests that touches the
    /// process-wide registry, so the order of its steps is its own.
    #[test]
    fn reports_come_from_the_registered_capture_only() {
        assert!(traffic_pcap("all", 1 << 20).is_none());
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/qemu-seabios-4ch");
        set_active_capture(&fixture);
        let (all, summary) = traffic_pcap("all", 24_000_000).unwrap().unwrap();
        assert_eq!(summary.written_bytes, all.len() as u64);
        assert!(summary.packets_written > 0);
        let (display, _) = traffic_pcap("display", 24_000_000).unwrap().unwrap();
        assert!(!display.is_empty() && display.len() < all.len());
        let (tiny, cut) = traffic_pcap("all", 64 << 10).unwrap().unwrap();
        assert!(tiny.len() as u64 <= 64 << 10);
        assert!(cut.truncated);
    }
}
