//! Crash recovery: moving segments that a dead writer left staged in memory
//! into their capture directory.
//!
//! A writer that is killed leaves its live and not-yet-moved segments in its
//! staging directory on the memory-backed filesystem; every record it had
//! acknowledged is in them (the mapping is shared, so the bytes outlive the
//! process). The capture directory's manifest names that staging directory;
//! the staging directory's `owner.json` names the capture directory back, and
//! its `lock` tells whether the writer still lives. A reboot empties tmpfs
//! and loses what was staged.
//!
//! The hot path writes records without their CRC; recovery fills the CRCs in
//! (and flags the segment header) on the copy it writes to the capture
//! directory, as the writer's retirer would have. In direct mode (segments
//! mapped in the capture directory, no staging directory) there is nothing
//! to move and recovery leaves the files alone; readers accept their
//! unflagged records as they would staged ones.
//!
//! The same work finishes a *pending move*: a session that closed cleanly
//! within a grace period ([`crate::Spool::close_within`]) but whose mover
//! process died before it was done. Its manifest keeps `clean_shutdown:
//! true` and loses `pending_move`.
//!
//! Every [`crate::Spool::create`] with a staging root starts
//! [`reclaim_abandoned_in_background`] on that root, so memory left behind
//! by killed sessions comes back without anyone asking. Whoever moves a
//! session's segments holds its staging lock meanwhile, so a writer, its
//! mover and any number of reclaimers never move the same files twice; and
//! nothing is moved or deleted until the staging directory proves it
//! belongs to the capture ([`staging::verify_owner`]).

use std::path::{Path, PathBuf};

use crate::store::format;
use crate::store::fsutil;
use crate::store::layout::SPOOL_DIR;
use crate::store::manifest::{Manifest, ManifestError, MANIFEST_FILE, MAX_MANIFEST_BYTES};
use crate::store::mover::{self, SegmentPaths};
use crate::store::staging::{self, StagingError};

/// What a recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments moved into the capture directory.
    pub segments: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// The staging directory that was emptied, if any.
    pub staging_dir: Option<PathBuf>,
    /// The session had closed cleanly and only its move was pending.
    pub was_pending_move: bool,
}

/// Why a recovery did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The manifest could not be read.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// The updated manifest could not be encoded.
    #[error("{}: {source}", path.display())]
    ManifestJson {
        /// The manifest.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The staging directory the manifest names was refused; nothing in
    /// it was touched.
    #[error("staging directory refused: {0}")]
    Staging(#[from] StagingError),
    /// The session's writer (or its mover, or another recovery) holds the
    /// staging lock.
    #[error("{}: the session is still being written (its staging lock is held)", .0.display())]
    StillBeingWritten(PathBuf),
    /// Moving a file failed; what was moved before stays moved.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RecoverError + '_ {
    move |source| RecoverError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Moves the segments staged for `capture_dir` into it, if nobody else
/// holds the session's staging lock (its writer, or a mover). Returns an
/// empty report when there is nothing to do.
///
/// The staging directory must prove it belongs to this capture
/// ([`staging::verify_owner`]); otherwise nothing is touched. After a crash
/// the manifest keeps `clean_shutdown: false`; after a pending move it
/// keeps `true`. Either way it loses `staging_dir` and `pending_move`,
/// since everything is now in place.
pub fn recover(capture_dir: &Path) -> Result<RecoveryReport, RecoverError> {
    let manifest_path = capture_dir.join(MANIFEST_FILE);
    let mut manifest = Manifest::load(&manifest_path).map_err(RecoverError::Manifest)?;
    let Some(staging_dir) = manifest.staging_dir.clone().map(PathBuf::from) else {
        return Ok(RecoveryReport::default());
    };
    if !staging::check_staging_dir(&staging_dir)? {
        return Ok(RecoveryReport::default());
    }
    staging::verify_owner(&staging_dir, capture_dir, &manifest.session_id)?;
    let lock_path = staging_dir.join(staging::LOCK_FILE);
    let Some(_lock) = staging::take_lock(&staging_dir).map_err(io_err(&lock_path))? else {
        return Err(RecoverError::StillBeingWritten(capture_dir.to_path_buf()));
    };
    // The lock is ours now: reread, in case a mover finished meanwhile.
    manifest = Manifest::load(&manifest_path).map_err(RecoverError::Manifest)?;
    if manifest.staging_dir.as_deref().map(Path::new) != Some(staging_dir.as_path()) {
        return Ok(RecoveryReport::default());
    }
    let mut report = move_staged(&staging_dir, capture_dir)?;
    report.was_pending_move = manifest.pending_move;
    manifest.staging_dir = None;
    if manifest.pending_move {
        manifest.pending_move = false;
    } else {
        manifest.errors.push(format!(
            "recovered {} staged segments ({} bytes) after the writer stopped without closing",
            report.segments, report.bytes
        ));
    }
    let json = manifest_json(&mut manifest).map_err(|source| RecoverError::ManifestJson {
        path: manifest_path.clone(),
        source,
    })?;
    fsutil::write_atomic(&manifest_path, &json).map_err(io_err(&manifest_path))?;
    // Only with the manifest durable, as the writer does at close.
    remove_emptied(&staging_dir);
    Ok(report)
}

/// The manifest's new text, no larger than [`MAX_MANIFEST_BYTES`], which
/// readers refuse beyond: pretty as the writer writes it, else compact,
/// else compact without recovery's note (a stranger's manifest may be
/// anywhere up to the limit already).
fn manifest_json(manifest: &mut Manifest) -> serde_json::Result<Vec<u8>> {
    let fits = |j: &Vec<u8>| j.len() as u64 <= MAX_MANIFEST_BYTES;
    let json = serde_json::to_vec_pretty(manifest)?;
    if fits(&json) {
        return Ok(json);
    }
    let json = serde_json::to_vec(manifest)?;
    if fits(&json) || manifest.pending_move {
        return Ok(json);
    }
    manifest.errors.pop();
    serde_json::to_vec(manifest)
}

/// Recovers every abandoned session under a staging root: each staging
/// directory whose lock nobody holds is moved into the capture directory
/// its `owner.json` names, if that directory's manifest points back at it
/// and it passes [`staging::verify_owner`]. Sessions whose lock is held
/// (live writers, movers, other reclaimers) are left alone, and are not
/// reported.
///
/// The private roots made beside `staging_root` when it could not be
/// trusted ([`staging::fallback_roots`]) are searched the same way.
pub fn recover_abandoned(staging_root: &Path) -> Vec<Result<RecoveryReport, RecoverError>> {
    let mut out = Vec::new();
    for root in
        std::iter::once(staging_root.to_path_buf()).chain(staging::fallback_roots(staging_root))
    {
        recover_abandoned_in(&root, &mut out);
    }
    out
}

fn recover_abandoned_in(staging_root: &Path, out: &mut Vec<Result<RecoveryReport, RecoverError>>) {
    let Ok(entries) = std::fs::read_dir(staging_root) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        if !matches!(staging::check_staging_dir(&dir), Ok(true)) || staging::writer_alive(&dir) {
            continue;
        }
        let Ok(owner) = staging::read_owner(&dir) else {
            continue;
        };
        let capture = PathBuf::from(&owner.capture_dir);
        let points_back = Manifest::load(&capture.join(MANIFEST_FILE))
            .ok()
            .and_then(|m| m.staging_dir)
            .is_some_and(|s| Path::new(&s) == dir);
        if points_back {
            match recover(&capture) {
                Err(RecoverError::StillBeingWritten(_)) => {}
                r => out.push(r),
            }
        }
    }
}

/// A memory-only ring ([`crate::SpoolConfig::memory_ring`]) whose writer is
/// gone: what a session that died left on tmpfs.
#[derive(Debug, Clone)]
pub struct AbandonedRing {
    /// Its capture directory (manifest, metadata; segments still staged
    /// until [`recover`] moves them here).
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Most entries of a ring root [`abandoned_rings`] looks at.
const MAX_RING_ENTRIES: usize = 1000;

/// The memory-only rings under `ring_root` ([`staging::ring_root`]) and
/// the private roots made beside it when it could not be trusted
/// ([`staging::fallback_roots`]) whose writer is gone. Only private
/// directories of this user are looked in, only real directories holding a
/// ring's manifest are taken, and at most [`MAX_RING_ENTRIES`] entries of
/// each root are looked at.
pub fn abandoned_rings(ring_root: &Path) -> Vec<AbandonedRing> {
    let mut out = Vec::new();
    for root in std::iter::once(ring_root.to_path_buf()).chain(staging::fallback_roots(ring_root)) {
        abandoned_rings_in(&root, &mut out);
    }
    out
}

fn abandoned_rings_in(ring_root: &Path, out: &mut Vec<AbandonedRing>) {
    if !matches!(staging::check_staging_dir(ring_root), Ok(true)) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(ring_root) else {
        return;
    };
    for e in entries.flatten().take(MAX_RING_ENTRIES) {
        // Never through a symlink.
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = e.path();
        let Ok(manifest) = Manifest::load(&dir.join(MANIFEST_FILE)) else {
            continue;
        };
        let alive = manifest
            .staging_dir
            .as_deref()
            .is_some_and(|s| staging::writer_alive(Path::new(s)));
        if manifest.memory_only && !alive {
            out.push(AbandonedRing { dir, manifest });
        }
    }
}

/// Runs [`recover_abandoned`] on `staging_root` in a background thread of
/// low priority, so the caller (a session starting) never waits for it — on
/// a slow disk it can take minutes. `None` if the thread could not be
/// started; the returned handle may be dropped to detach it.
pub fn reclaim_abandoned_in_background(
    staging_root: &Path,
) -> Option<std::thread::JoinHandle<Vec<Result<RecoveryReport, RecoverError>>>> {
    let root = staging_root.to_path_buf();
    std::thread::Builder::new()
        .name("spool-reclaim".into())
        .spawn(move || {
            crate::store::priority::lower_priority(crate::store::priority::RECLAIM_NICE);
            mover::lower_io_priority();
            recover_abandoned(&root)
        })
        .ok()
}

/// [`reclaim_abandoned_in_background`] on the default staging root
/// ([`staging::default_root`]), for hosts that want it without creating a
/// spool.
pub fn reclaim_default_in_background(
) -> Option<std::thread::JoinHandle<Vec<Result<RecoveryReport, RecoverError>>>> {
    reclaim_abandoned_in_background(&staging::default_root()?)
}

fn move_staged(staging_dir: &Path, capture_dir: &Path) -> Result<RecoveryReport, RecoverError> {
    let mut report = RecoveryReport {
        staging_dir: Some(staging_dir.to_path_buf()),
        ..Default::default()
    };
    let spool = capture_dir.join(SPOOL_DIR);
    fsutil::create_private_dir(&spool, true).map_err(io_err(&spool))?;
    let entries = std::fs::read_dir(staging_dir).map_err(io_err(staging_dir))?;
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if format::validate_channel_name(&name).is_err() || !e.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let src_dir = staging_dir.join(&name);
        let dst_dir = spool.join(&name);
        fsutil::create_private_dir(&dst_dir, true).map_err(io_err(&dst_dir))?;
        let files = std::fs::read_dir(&src_dir).map_err(io_err(&src_dir))?;
        for f in files.flatten() {
            let fname = f.file_name();
            if fname
                .to_str()
                .and_then(format::parse_segment_file_name)
                .is_none()
            {
                continue;
            }
            let src = src_dir.join(&fname);
            let paths = SegmentPaths::new(&src, &dst_dir).ok_or_else(|| RecoverError::Io {
                path: src.clone(),
                source: std::io::ErrorKind::InvalidInput.into(),
            })?;
            let mut buf = mover::segment_buffer(&src).map_err(io_err(&src))?;
            if let Some(bytes) = paths.move_with(&mut buf).map_err(io_err(&src))? {
                report.segments += 1;
                report.bytes += bytes;
            }
        }
        let _ = std::fs::remove_dir(&src_dir);
    }
    Ok(report)
}

/// Removes a staging directory whose segments have all been moved:
/// spare segments, `owner.json`, `lock`, and the directory itself. Anything else left in it
/// (a file that is not ours) keeps it.
pub(crate) fn remove_emptied(staging_dir: &Path) {
    // Spare segments hold nothing the capture directory lacks.
    if let Ok(spares) = std::fs::read_dir(staging_dir.join(staging::SPARE_DIR)) {
        for f in spares.flatten() {
            if f.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(f.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(staging_dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
    let _ = std::fs::remove_file(staging_dir.join(staging::OWNER_FILE));
    let _ = std::fs::remove_file(staging_dir.join(staging::LOCK_FILE));
    let _ = std::fs::remove_dir(staging_dir);
    // A fallback root holds one session only: empty, it goes too.
    if let Some(root) = staging_dir.parent() {
        staging::remove_empty_fallback(root);
    }
}
