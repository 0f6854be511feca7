//! Every session's recorder: without `--capture`, ryll records its traffic
//! into a memory-only ring ([`spool::SpoolConfig::memory_ring`]), so that
//! F12, `--pedantic` and SIGUSR1 reports of any session carry a pcap that
//! Wireshark decodes.
//!
//! ryll 0.3.0 kept, for its reports, a 50 MiB in-memory ring fed through
//! the renderer's `TrafficSink`: a lock, a pcap frame built and an
//! allocation per message, and a pcap with no link phase, which Wireshark
//! cannot decode. The ring here is the renderer's `CaptureSink` instead: an
//! append is a copy into a mapped segment on tmpfs, as for `--capture`,
//! and no byte of it reaches a disk unless a report is written.
//!
//! The ring lives as long as the process: [`start`] creates it (after
//! reporting the rings of crashed sessions, [`crate::crash`]) and registers
//! it as the source of report traffic ([`crate::report`]); it is removed at
//! exit, from an `atexit` handler, so no exit path of ryll can forget it.
//! If the process panicked, the ring is left where it is: the next start
//! turns it into a bug report, as it does after a SIGKILL or an OOM kill.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};

use shakenfist_spice_renderer::CaptureSink;
use spool::store::staging;
use spool::SpoolConfig;

use crate::crash::{self, CrashReport};
use crate::metadata::metadata_for_display_target;
use crate::sink::{SinkError, SpoolSink, ALWAYS_OPEN};

/// Memory the ring may use by default (live, prepared and kept segments
/// together): within ryll 0.3.0's 50 MiB traffic ring.
pub const DEFAULT_RING_BYTES: u64 = 48 << 20;

/// The smallest ring [`start`] accepts: enough for the segments of the
/// channels of a session and a few sealed ones.
pub const MIN_RING_BYTES: u64 = 16 << 20;

/// The process's ring, while it runs.
static RING: Mutex<Option<Arc<SpoolSink>>> = Mutex::new(None);

/// Set by the panic hook: the ring is then left for the next start.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Why [`start`] started no ring.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// Neither `$XDG_RUNTIME_DIR` nor `/dev/shm` is memory-backed: a ring
    /// there would reach a disk.
    #[error(
        "no memory-backed filesystem ($XDG_RUNTIME_DIR or /dev/shm) to keep a traffic ring in"
    )]
    NoMemory,
    /// The ring root could not be created.
    #[error("{}: {source}", path.display())]
    Root {
        /// The ring root.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The ring root is not a private directory of this user.
    #[error(transparent)]
    Unsafe(#[from] staging::StagingError),
    /// The spool would not start.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What [`start`] did.
#[derive(Debug, Default)]
pub struct RingStarted {
    /// The ring's capture directory (on tmpfs); `None` if the ring is off.
    pub dir: Option<PathBuf>,
    /// Rings of crashed sessions found and turned into reports (or not).
    pub crashed: Vec<CrashReport>,
    /// Directories that could not be trusted (another user's, a symlink)
    /// and the private ones used instead.
    pub warnings: Vec<String>,
}

impl RingStarted {
    /// One line per thing worth logging, for the host's log.
    pub fn log_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.crashed.iter().map(ToString::to_string).collect();
        lines.extend(
            self.warnings
                .iter()
                .map(|w| format!("traffic ring: warning: {w}")),
        );
        match &self.dir {
            Some(d) => lines.push(format!(
                "traffic ring: recording in memory ({})",
                d.display()
            )),
            None => lines.push("traffic ring: off".into()),
        }
        lines
    }
}

/// Starts the process's ring of `bytes` (0: no ring) for a session with
/// ryll's `display_target` (and `tls_port`), after turning the rings of
/// crashed sessions into bug reports in `report_dir`. Idempotent: a second
/// call reports crashes again but keeps the first ring.
///
/// An error means there is no ring: no memory-backed filesystem, a ring
/// directory that is not this user's alone, or a spool that would not
/// start. ryll then reports from its own ring as before.
pub fn start(
    display_target: &str,
    tls_port: Option<u16>,
    bytes: u64,
    report_dir: &Path,
) -> Result<RingStarted, RingError> {
    let root = staging::ring_root().ok_or(RingError::NoMemory)?;
    let mut started = RingStarted {
        crashed: crash::report_crashed_rings(&root, report_dir),
        ..RingStarted::default()
    };
    if bytes == 0 {
        return Ok(started);
    }
    let mut ring = RING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = ring.as_ref() {
        started.dir = Some(r.capture_dir().to_path_buf());
        return Ok(started);
    }
    let root = staging::private_root(&root).map_err(|source| RingError::Root {
        path: root.clone(),
        source,
    })?;
    started.warnings.extend(root.warning.clone());
    let dir = new_ring_dir(&root.path)?;
    let config = SpoolConfig::memory_ring(&dir, bytes.max(MIN_RING_BYTES)).channels(&ALWAYS_OPEN);
    let metadata = metadata_for_display_target(display_target, tls_port);
    let sink = Arc::new(SpoolSink::with_exact_config(config, metadata)?);
    started.warnings.extend(
        sink.spool()
            .errors()
            .iter()
            .filter(|e| matches!(e, spool::BackgroundError::StagingFallback(_)))
            .map(ToString::to_string),
    );
    crate::report::set_active_ring(sink.clone());
    started.dir = Some(dir);
    *ring = Some(sink);
    remove_at_exit();
    Ok(started)
}

/// A capture directory for a new ring under `root`, which must be a
/// private directory of this user ([`staging::private_root`] made it so,
/// checked again here): the ring holds keystrokes, and a directory another
/// user controls could be swapped under it.
fn new_ring_dir(root: &Path) -> Result<PathBuf, RingError> {
    if !staging::check_staging_dir(root)? {
        return Err(RingError::Root {
            path: root.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!("{}-{}", now.as_nanos(), std::process::id());
    Ok(root.join(name))
}

/// The renderer's capture sink for a session: `capture` (`--capture`)
/// when there is one, else the process's ring, if it runs.
pub fn or_ring(capture: Option<Arc<dyn CaptureSink>>) -> Option<Arc<dyn CaptureSink>> {
    capture.or_else(|| sink().map(|s| s as Arc<dyn CaptureSink>))
}

/// The process's ring, if it runs.
pub fn sink() -> Option<Arc<SpoolSink>> {
    RING.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Closes and removes the ring now (later calls do nothing). Not after a
/// panic: that ring is left for the next start's report.
pub fn stop() {
    if PANICKED.load(Ordering::Acquire) {
        return;
    }
    let ring = RING.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(ring) = ring {
        crate::report::clear_active();
        let _ = ring.close();
        if let Some(root) = ring.capture_dir().parent() {
            staging::remove_empty_fallback(root);
        }
    }
}

/// Registers [`stop`] to run at process exit, and a panic hook (chained
/// to the one in place) that keeps the ring for a report instead.
fn remove_at_exit() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::Release);
            previous(info);
        }));
        // SAFETY: `stop_at_exit` is an `extern "C" fn()` that never
        // unwinds (it catches panics) and lives for the whole program.
        unsafe {
            libc::atexit(stop_at_exit);
        }
    });
}

extern "C" fn stop_at_exit() {
    let _ = std::panic::catch_unwind(stop);
}
