//! What the ring of a session that died becomes: a bug report.
//!
//! A ryll killed by a signal, the OOM killer or a panic leaves its traffic
//! ring ([`crate::ring`]) on tmpfs: its segments staged, its capture
//! directory (manifest, metadata) beside them. The next ryll to start calls
//! [`report_crashed_rings`] before it starts its own ring: every ring whose
//! writer is gone is moved into its capture directory
//! ([`spool::store::recover::recover`], still on tmpfs), written as a bug-report
//! zip ([`crate::bundle`]: the newest traffic within ryll's 24 MB budget,
//! keystrokes and clipboard redacted) and removed.
//!
//! A ring that cannot be reported (the report directory is not writable,
//! say) is kept for the next start, but never longer than [`MAX_AGE`]:
//! it holds keystrokes. Rings live where the system removes them by
//! itself anyway — `$XDG_RUNTIME_DIR` at logout, `/dev/shm` at reboot.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use spool::Manifest;

use crate::bundle::{self, BundleError, DEFAULT_BUDGET_BYTES};

/// Longest a crashed ring is kept when it cannot be reported.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// One crashed ring found by [`report_crashed_rings`], and what became of it.
#[derive(Debug)]
pub struct CrashReport {
    /// The ring's capture directory (removed if the report was written).
    pub ring: PathBuf,
    /// The bug report written, or why none was.
    pub outcome: Result<PathBuf, CrashError>,
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(zip) => write!(
                f,
                "a session that ended without closing left its traffic ring: bug report written to {}",
                zip.display()
            ),
            Err(e) => write!(
                f,
                "a session that ended without closing left its traffic ring {}: {e}",
                self.ring.display()
            ),
        }
    }
}

/// Why a crashed ring was not reported.
#[derive(Debug, thiserror::Error)]
pub enum CrashError {
    /// Moving its staged segments into its capture directory failed.
    #[error("recovering it failed: {0}")]
    Recover(#[from] spool::store::recover::RecoverError),
    /// Writing the report failed; the ring is kept until [`MAX_AGE`].
    #[error("writing its report failed (kept for the next start): {0}")]
    Report(#[from] BundleError),
    /// Older than [`MAX_AGE`] and still not reportable: removed.
    #[error("removed unreported after {} hours", MAX_AGE.as_secs() / 3600)]
    Expired,
}

/// Reports and removes every crashed ring under `root`
/// ([`spool::store::recover::abandoned_rings`]), writing the reports into
/// `report_dir`.
pub fn report_crashed_rings(root: &Path, report_dir: &Path) -> Vec<CrashReport> {
    spool::store::recover::abandoned_rings(root)
        .into_iter()
        .filter_map(|ring| report_one(&ring.dir, &ring.manifest, report_dir))
        .collect()
}

/// Reports one abandoned ring; `None` if it turned out to be in use.
fn report_one(dir: &Path, manifest: &Manifest, report_dir: &Path) -> Option<CrashReport> {
    let outcome = match recover_and_report(dir, manifest, report_dir) {
        Ok(zip) => {
            let _ = std::fs::remove_dir_all(dir);
            if let Some(root) = dir.parent() {
                spool::store::staging::remove_empty_fallback(root);
            }
            Ok(zip)
        }
        Err(CrashError::Recover(spool::store::recover::RecoverError::StillBeingWritten(_))) => {
            return None;
        }
        Err(_) if age(dir).is_some_and(|a| a > MAX_AGE) => {
            let _ = std::fs::remove_dir_all(dir);
            Err(CrashError::Expired)
        }
        Err(e) => Err(e),
    };
    Some(CrashReport {
        ring: dir.to_path_buf(),
        outcome,
    })
}

fn recover_and_report(
    dir: &Path,
    manifest: &Manifest,
    report_dir: &Path,
) -> Result<PathBuf, CrashError> {
    spool::store::recover::recover(dir)?;
    spool::store::fsutil::create_private_dir(report_dir, false).map_err(|source| {
        CrashError::Report(BundleError::Io {
            path: report_dir.to_path_buf(),
            source,
        })
    })?;
    let zip = report_dir.join(format!(
        "ryll-crash-report-{}.zip",
        zip_stamp(manifest.session_start_unix_ns)
    ));
    bundle::write_bug_report(dir, &zip, DEFAULT_BUDGET_BYTES)?;
    Ok(zip)
}

/// `YYYYMMDD-HHMMSS-NNNNNNNNN` of the session's start (UTC), so that two
/// crashed sessions never share a report's name.
fn zip_stamp(start_unix_ns: u64) -> String {
    let t = spool2pcap::time::UtcDateTime::from_unix_secs(start_unix_ns / 1_000_000_000);
    let rfc = t.rfc3339();
    let digits: String = rfc.chars().filter(char::is_ascii_digit).collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    format!("{date}-{time}-{:09}", start_unix_ns % 1_000_000_000)
}

/// How long ago `dir` was last changed.
fn age(dir: &Path) -> Option<Duration> {
    let modified = std::fs::symlink_metadata(dir).ok()?.modified().ok()?;
    SystemTime::now().duration_since(modified).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_sort_by_session_start_and_never_collide() {
        assert_eq!(zip_stamp(0), "19700101-000000-000000000");
        assert_eq!(
            zip_stamp(1_709_251_199_000_000_042),
            "20240229-235959-000000042"
        );
    }
}
