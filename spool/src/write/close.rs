//! Closing a [`Spool`]: sealing every channel, letting the retirer move
//! what it can (within a grace period, if one is given), handing the rest
//! to a mover process, and writing the final manifest.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::store::format;
use crate::store::mover;
use crate::store::recover;
use crate::store::staging::StagingDir;
use crate::write::background;
use crate::write::clock::unix_now_ns;
use crate::write::error::{BackgroundError, SpoolError};
use crate::write::outcome::{CloseOutcome, CloseProgress, MoverHandle};
use crate::write::shared::{write_manifest, Shared};
use crate::write::writer::Spool;

impl Spool {
    /// Closes the spool: seals every channel, moves every staged segment into
    /// the capture directory, writes the final manifest, and returns once
    /// all of it is durable, however long the disk takes. Later appends are
    /// dropped. Calling it (or [`Spool::close_within`]) again returns the
    /// first call's result.
    pub fn close(&self) -> Result<(), SpoolError> {
        self.close_with(None, &mut |_| {}).map(|_| ())
    }

    /// Closes the spool within about `grace`: seals every channel as
    /// [`Spool::close`] does, lets the background thread move staged
    /// segments into the capture directory until `grace` has passed since
    /// the call, and leaves the rest staged, to a detached mover process
    /// (a process of its own, forked for the purpose). The final manifest says `clean_shutdown:
    /// true` (every accepted record is in a sealed segment) and, while
    /// segments wait, `pending_move: true` with the staging directory;
    /// readers read those in place meanwhile. Should the mover die, the next
    /// session on the same staging root moves them
    /// ([`crate::store::recover::reclaim_abandoned_in_background`]).
    ///
    /// The call can outlast `grace` by one segment's `fsync` already under
    /// way, and by the final manifest's. With no memory-backed staging
    /// (segments mapped in the capture directory) there is nothing to hand
    /// over and it waits as `close` does. A flight recording that is to be
    /// deleted ([`SpoolConfig::delete_on_close`](crate::SpoolConfig::delete_on_close), not kept) is not moved at
    /// all.
    ///
    /// The mover does not apply [`SpoolConfig::limit`](crate::SpoolConfig::limit): under a ring limit
    /// the capture directory can end up larger than the bound by what was
    /// left staged (at most [`SpoolConfig::staging_budget`](crate::SpoolConfig::staging_budget)).
    pub fn close_within(&self, grace: Duration) -> Result<CloseOutcome, SpoolError> {
        self.close_with(Some(grace), &mut |_| {})
    }

    /// [`Spool::close_within`], calling `progress` every few tens of
    /// milliseconds while it waits for segments to be moved, so a host can
    /// show how far it got.
    pub fn close_within_progress(
        &self,
        grace: Duration,
        mut progress: impl FnMut(CloseProgress),
    ) -> Result<CloseOutcome, SpoolError> {
        self.close_with(Some(grace), &mut progress)
    }

    fn close_with(
        &self,
        grace: Option<Duration>,
        progress: &mut dyn FnMut(CloseProgress),
    ) -> Result<CloseOutcome, SpoolError> {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &*closed {
            return r.clone();
        }
        let deadline = grace.map(|g| Instant::now() + g);
        let result = self.close_inner(deadline, progress);
        *closed = Some(result.clone());
        result
    }

    /// Waits for the retirer to finish moving, or until `deadline`, then
    /// tells it to stop after the segment at hand; joins it.
    fn finish_retirer(
        &self,
        retirer: JoinHandle<()>,
        deadline: Option<Instant>,
        progress: &mut dyn FnMut(CloseProgress),
    ) {
        let shared = &self.shared;
        let total = shared.staged_bytes.load(Ordering::Acquire);
        let moved_before = shared.moved_bytes.load(Ordering::Acquire);
        // Direct mode cannot leave anything to a mover: its segments are
        // cut to size in place (see `reader::map_segment`).
        let deadline = deadline.filter(|_| !shared.direct);
        while !retirer.is_finished() {
            let staged = shared.staged_bytes.load(Ordering::Acquire);
            progress(CloseProgress {
                moved_bytes: shared.moved_bytes.load(Ordering::Acquire) - moved_before,
                staged_bytes: staged,
                staged_at_start: total,
            });
            let now = Instant::now();
            match deadline {
                Some(d) if now >= d => {
                    shared.retirer_abandon.store(true, Ordering::Release);
                    self.retirer.unpark();
                    break;
                }
                Some(d) => std::thread::sleep(PROGRESS_EVERY.min(d - now)),
                None => std::thread::sleep(PROGRESS_EVERY),
            }
        }
        if retirer.join().is_err() {
            shared.record_error(BackgroundError::Panicked("retirer"));
        }
    }

    fn close_inner(
        &self,
        deadline: Option<Instant>,
        progress: &mut dyn FnMut(CloseProgress),
    ) -> Result<CloseOutcome, SpoolError> {
        let shared = &self.shared;
        // A grace already over (zero) moves nothing during the close.
        if deadline.is_some_and(|d| Instant::now() >= d) && !shared.direct {
            shared.retirer_abandon.store(true, Ordering::Release);
        }
        shared.held.store(false, Ordering::Release);
        let retirer = self.seal_and_stop_preparer();
        // A flight recording nobody asked to keep is deleted below: moving
        // its segments first would only wait on the disk.
        // A memory-only ring is never moved, kept or not: it was never
        // meant to reach a disk.
        let memory_only = shared.config.memory_only;
        let discard =
            memory_only || (shared.config.delete_on_close && !self.keep.load(Ordering::Acquire));
        if discard && !shared.direct {
            shared.retirer_abandon.store(true, Ordering::Release);
        }
        shared.retirer_stopping.store(true, Ordering::Release);
        self.retirer.unpark();
        if let Some(r) = retirer {
            self.finish_retirer(r, deadline, progress);
        }
        let abandoned = shared.retirer_abandon.load(Ordering::Acquire);
        free_leftovers(shared);
        let left = shared.staged_bytes.load(Ordering::Acquire);
        let outcome = CloseOutcome {
            bytes_moved: shared.moved_bytes.load(Ordering::Acquire),
            bytes_left_staged: left,
            mover: None,
        };
        let staging = self
            .staging
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let errors = shared.errors();
        if discard && (errors.is_empty() || memory_only) {
            return self.finish_discarded(staging, outcome, errors);
        }
        match staging {
            // The retirer stopped with segments still staged: a mover takes
            // them over.
            Some(staging) if abandoned && left > 0 => {
                let (mut outcome, mut errors) = (outcome, errors);
                self.hand_over(staging, Some(unix_now_ns()), &mut outcome, &mut errors);
                finish(outcome, errors)
            }
            staging => self.finish_kept(staging, outcome, errors),
        }
    }

    /// Seals every channel (a channel with no segment left gets one for its
    /// final seal, budget permitting), stops and joins the preparer, and
    /// deletes the segments it had prepared that nobody will write. Returns
    /// the retirer, still running.
    fn seal_and_stop_preparer(&self) -> Option<JoinHandle<()>> {
        let shared = &self.shared;
        for ch in shared.channels() {
            if ch.ready.is_empty() {
                let _ = background::prepare_one(shared, ch);
            }
            ch.close();
        }
        shared.stopping.store(true, Ordering::Release);
        self.preparer.unpark();
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let (preparer, retirer) = match threads {
            Some(t) => (Some(t.0), Some(t.1)),
            None => (None, None),
        };
        if let Some(p) = preparer {
            if p.join().is_err() {
                shared.record_error(BackgroundError::Panicked("preparer"));
            }
        }
        for ch in shared.channels() {
            while let Some(seg) = ch.ready.pop() {
                let path = seg.path().to_path_buf();
                let size = seg.capacity() as u64;
                drop(seg);
                if let Err(e) = std::fs::remove_file(&path) {
                    shared.record_error(BackgroundError::remove("removing unused", path, e));
                }
                shared.staged_bytes.fetch_sub(size, Ordering::AcqRel);
                ch.staged_bytes.fetch_sub(size, Ordering::AcqRel);
            }
        }
        retirer
    }

    /// Ends a recording nobody asked to keep (a flight recording, a
    /// memory-only ring): nothing of it may remain, staged or in the
    /// capture directory.
    fn finish_discarded(
        &self,
        staging: Option<StagingDir>,
        mut outcome: CloseOutcome,
        mut errors: Vec<BackgroundError>,
    ) -> Result<CloseOutcome, SpoolError> {
        if let Some(staging) = &staging {
            remove_staged_segments(staging.path());
            recover::remove_emptied(staging.path());
            outcome.bytes_left_staged = 0;
        }
        let capture = self.shared.capture_dir.clone();
        if let Err(e) = std::fs::remove_dir_all(&capture) {
            errors.push(BackgroundError::remove("removing", capture, e));
        }
        finish(outcome, errors)
    }

    /// Ends a capture that is kept: its final manifest, then its emptied
    /// staging directory. Segments left staged by errors (a full disk…)
    /// are named in the manifest, the next session's to recover, as after
    /// a crash.
    fn finish_kept(
        &self,
        staging: Option<StagingDir>,
        outcome: CloseOutcome,
        mut errors: Vec<BackgroundError>,
    ) -> Result<CloseOutcome, SpoolError> {
        let everything_moved = outcome.bytes_left_staged == 0;
        let staged_left = staging
            .as_ref()
            .filter(|_| !everything_moved)
            .map(|s| s.path());
        let closed_at = Some(unix_now_ns());
        let manifest = self
            .shared
            .manifest(staged_left, everything_moved, closed_at);
        if let Err(e) = write_manifest(&self.shared.capture_dir, &manifest) {
            errors.push(BackgroundError::Manifest(Box::new(e)));
        }
        // Only now, with the final manifest durable: a live reader that saw
        // the staging directory (and its lock) vanish before the manifest
        // said "closed" would take the writer for dead and end unclean. A
        // crash right here leaves an empty staging directory behind, which
        // no manifest names.
        if let Some(staging) = &staging {
            if everything_moved {
                recover::remove_emptied(staging.path());
            }
        }
        drop(staging);
        finish(outcome, errors)
    }

    /// Writes the manifest of a clean close with segments still staged, and
    /// starts the mover, which inherits the staging lock. If the mover
    /// cannot start, the lock goes with this process and the next session
    /// reclaims the segments.
    fn hand_over(
        &self,
        staging: StagingDir,
        closed_at: Option<u64>,
        outcome: &mut CloseOutcome,
        errors: &mut Vec<BackgroundError>,
    ) {
        let shared = &self.shared;
        let mut manifest = shared.manifest(Some(staging.path()), true, closed_at);
        manifest.pending_move = true;
        if let Err(e) = write_manifest(&shared.capture_dir, &manifest) {
            errors.push(BackgroundError::Manifest(Box::new(e)));
            return;
        }
        let mut moved = manifest;
        moved.staging_dir = None;
        moved.pending_move = false;
        let plan = serde_json::to_vec_pretty(&moved)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                mover::MovePlan::new(
                    staging.path(),
                    &shared.capture_dir,
                    &shared.capture_spool,
                    json,
                    shared.config.segment_bytes,
                )
            });
        if self.no_mover.load(Ordering::Acquire) {
            return;
        }
        match plan.and_then(|plan| mover::spawn(plan, staging.lock_fd())) {
            Ok(pid) => outcome.mover = Some(MoverHandle::reap(pid)),
            Err(e) => errors.push(BackgroundError::StartMover {
                staging: staging.path().to_path_buf(),
                source: std::sync::Arc::new(e),
            }),
        }
        // Closes this process's descriptor of the lock; the mover's keeps
        // it held.
        drop(staging);
    }
}

/// How often [`Spool::close_within_progress`] reports.
const PROGRESS_EVERY: Duration = Duration::from_millis(20);

/// How long [`Drop`] of a [`Spool`] that was not closed lets segments move
/// before leaving the rest to the mover: a process on its way out should
/// not wait on a slow disk.
pub const DROP_GRACE: Duration = Duration::from_secs(2);

/// Unmaps what the background threads leave behind once both are done:
/// segments the retirer did not move (they stay staged as files, for the
/// mover or the next session), a memory-only ring's segments, and the
/// spares, which nothing reuses any more.
fn free_leftovers(shared: &Shared) {
    for ch in shared.channels() {
        while let Some(r) = ch.pop_retired() {
            drop(r);
        }
    }
    let ring = shared
        .ring
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .release();
    let (spares, failed) = shared.spares.free_all();
    shared
        .staged_bytes
        .fetch_sub(ring.saturating_add(spares), Ordering::AcqRel);
    for (path, e) in failed {
        shared.record_error(BackgroundError::remove("removing spare", path, e));
    }
}

fn finish(outcome: CloseOutcome, errors: Vec<BackgroundError>) -> Result<CloseOutcome, SpoolError> {
    if errors.iter().all(BackgroundError::is_warning) {
        Ok(outcome)
    } else {
        Err(SpoolError::Background(errors))
    }
}

/// Removes the segment files of a staging directory (a discarded flight
/// recording).
fn remove_staged_segments(dir: &Path) {
    let Ok(channels) = std::fs::read_dir(dir) else {
        return;
    };
    for c in channels.flatten() {
        let valid = c
            .file_name()
            .to_str()
            .is_some_and(|n| format::validate_channel_name(n).is_ok());
        if !valid || !c.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(c.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.file_name()
                .to_str()
                .and_then(format::parse_segment_file_name)
                .is_some()
            {
                let _ = std::fs::remove_file(f.path());
            }
        }
    }
}

impl Drop for Spool {
    /// Best effort: [`Spool::close_within`] with [`DROP_GRACE`], errors
    /// ignored. A process exiting by dropping its spool neither waits on a
    /// slow disk nor loses what is staged.
    fn drop(&mut self) {
        let _ = self.close_within(DROP_GRACE);
    }
}
