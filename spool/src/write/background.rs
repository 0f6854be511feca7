//! The two background threads that keep the hot path fed.
//!
//! * The **preparer** creates, allocates and prefaults segments on the
//!   memory-backed staging filesystem ahead of need, within the staging
//!   budget. It never touches the capture disk, so a slow disk cannot starve
//!   the channels of fresh segments while there is budget left.
//! * The **retirer** fills in the record CRCs of sealed segments (the hot
//!   path leaves them zero), moves the segments into the capture directory
//!   (with `O_DIRECT` where the disk takes it), `fsync`s them and their
//!   directory, and only then removes the staged copy and gives the budget
//!   back. A slow disk slows only this thread; the budget bounds how much
//!   memory waits for it.
//!
//! Both sleep until the hot path wakes them at a segment rotation, or a short
//! timeout passes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::compress::{self, SegmentCompressor};
use crate::store::direct_write;
use crate::store::format::segment_file_name;
use crate::store::fsutil;
use crate::store::limit::LimitPolicy;
use crate::store::priority::lower_priority;
use crate::write::channel::{Channel, Retired};
use crate::write::clock::RECALIBRATE_EVERY;
use crate::write::error::BackgroundError;
use crate::write::limit::{Entry, Ledger};
use crate::write::memory_ring;
use crate::write::segment::MappedSegment;
use crate::write::shared::Shared;
use crate::write::trial::Trial;

/// How long a background thread sleeps when nobody wakes it.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// How long the preparer sleeps when nobody wakes it. Everything it must
/// answer promptly wakes it (a rotation, a new channel, the close), so
/// its rounds only refit the clock (every [`RECALIBRATE_EVERY`]) and notice
/// channels going quiet, and each is a wake-up that costs tens of
/// microseconds on a virtual machine.
const PREPARER_IDLE: Duration = Duration::from_millis(100);

/// How long a memory-only ring's retirer sleeps between its rounds: its
/// preparer tends the ring, so this is only a fallback (see
/// [`memory_ring`]).
const RING_ROUND: Duration = Duration::from_millis(200);

/// After this long without a rotation, a channel counts as quiet and gets
/// only one segment prepared ahead.
const BUSY_WINDOW: Duration = Duration::from_secs(2);

/// After a failure to prepare a segment (staging full…), wait this long
/// before the next try, so a full tmpfs is not hammered.
const PREPARE_BACKOFF: Duration = Duration::from_millis(100);

/// Niceness of the preparer: below the channel loops, above the retirer,
/// since a late segment means drops and a late move only means memory.
const PREPARER_NICE: i32 = 5;

/// Niceness of the retirer.
const RETIRER_NICE: i32 = 10;

/// Body of the preparer thread.
pub(crate) fn prepare_loop(shared: &Shared) {
    lower_priority(PREPARER_NICE);
    // Per channel slot: (rotations seen, when a rotation was last seen).
    let mut activity: Vec<(u64, Option<Instant>)> = Vec::new();
    let mut fitted = Instant::now();
    while !shared.stopping.load(Ordering::Acquire) {
        // The hot path's clock drifts from CLOCK_MONOTONIC unless refitted
        // now and then (see `clock`); this thread wakes often enough.
        if fitted.elapsed() >= RECALIBRATE_EVERY {
            shared.clock.recalibrate();
            fitted = Instant::now();
        }
        if shared.held.load(Ordering::Acquire) {
            std::thread::park_timeout(IDLE_WAIT);
            continue;
        }
        if shared.config.memory_only {
            memory_ring::tend(shared);
        }
        let mut failed = false;
        for (i, ch) in shared.channels().enumerate() {
            if activity.len() <= i {
                activity.push((0, None));
            }
            let rotations = ch.counters.segments.load(Ordering::Relaxed);
            if rotations != activity[i].0 {
                activity[i] = (rotations, Some(Instant::now()));
            }
            let busy = activity[i].1.is_some_and(|t| t.elapsed() < BUSY_WINDOW);
            let want = if busy { shared.config.ready_ahead } else { 1 };
            while ch.ready.len() < want && !shared.stopping.load(Ordering::Acquire) {
                if prepare_one(shared, ch).is_err() {
                    failed = true;
                    break;
                }
            }
        }
        std::thread::park_timeout(if failed {
            PREPARE_BACKOFF
        } else {
            PREPARER_IDLE
        });
    }
}

/// Why [`prepare_one`] prepared no segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotPrepared {
    /// The staging budget is spent.
    #[error("the staging budget is spent")]
    StagingBudget,
    /// The disk limit stops the capture here.
    #[error("the disk limit allows no further segment")]
    DiskLimit,
    /// Creating the segment failed; the error is among the spool's errors.
    #[error("creating the segment failed")]
    CreateFailed,
}

/// Prepares one segment for `ch`: a spare reused, or a new one if the
/// staging budget allows.
pub(crate) fn prepare_one(shared: &Shared, ch: &Channel) -> Result<(), NotPrepared> {
    let size = shared.config.segment_bytes as u64;
    let _serial = ch.prepare_lock.lock().unwrap_or_else(|p| p.into_inner());
    if !within_stop_limit(shared, ch, size) {
        return Err(NotPrepared::DiskLimit);
    }
    // A spare's memory is in the budget already; a new segment reserves
    // its own first, and gives it back on failure.
    let spare = shared.spares.take();
    if spare.is_none() {
        let prev = shared.staged_bytes.fetch_add(size, Ordering::AcqRel);
        if prev + size > shared.staging_budget() {
            shared.staged_bytes.fetch_sub(size, Ordering::AcqRel);
            return Err(NotPrepared::StagingBudget);
        }
    }
    let index = ch.next_index.load(Ordering::Relaxed);
    let dir = shared.staging_channel_dir(&ch.name);
    let result = staging_dir_of(ch, &dir).and_then(|()| match spare {
        Some(spare) => spare.reuse(&dir, &ch.name, index, &shared.session),
        None => MappedSegment::create(
            &dir,
            &ch.name,
            index,
            shared.config.segment_bytes,
            &shared.session,
        ),
    });
    match result {
        Ok(seg) => {
            // Saturating: at u64::MAX the next create finds its name taken
            // and fails, rather than reusing segment 0's.
            ch.next_index
                .store(index.saturating_add(1), Ordering::Relaxed);
            ch.staged_bytes.fetch_add(size, Ordering::AcqRel);
            if let Err(seg) = ch.ready.push(seg) {
                // The ready queue is sized for the budget; unreachable in
                // practice. Undo cleanly.
                let _ = std::fs::remove_file(seg.path());
                shared.staged_bytes.fetch_sub(size, Ordering::AcqRel);
                ch.staged_bytes.fetch_sub(size, Ordering::AcqRel);
            }
            Ok(())
        }
        Err(e) => {
            // Whatever failed, the next try checks the directory afresh.
            ch.staging_dir_made.store(false, Ordering::Relaxed);
            shared.staged_bytes.fetch_sub(size, Ordering::AcqRel);
            shared.record_error(BackgroundError::Prepare {
                index,
                channel: ch.name.clone(),
                dir,
                source: Arc::new(e),
            });
            Err(NotPrepared::CreateFailed)
        }
    }
}

/// Makes `ch`'s staging directory `dir` private, unless an earlier
/// preparation did and none has failed since ([`Channel::staging_dir_made`]).
/// The staging root above it is private to this user, so nothing else can
/// replace it in between; a failure clears the flag.
fn staging_dir_of(ch: &Channel, dir: &Path) -> std::io::Result<()> {
    if ch.staging_dir_made.load(Ordering::Relaxed) {
        return Ok(());
    }
    fsutil::create_private_dir(dir, true)?;
    ch.staging_dir_made.store(true, Ordering::Relaxed);
    Ok(())
}

/// Under [`LimitPolicy::Stop`], whether one more segment of `size` keeps
/// the capture directory (counting what is staged and will be moved in)
/// within its bounds. Always true under the ring policy.
fn within_stop_limit(shared: &Shared, ch: &Channel, size: u64) -> bool {
    let limit = &shared.config.limit;
    if limit.policy != LimitPolicy::Stop {
        return true;
    }
    // What is staged, spares aside, will reach the disk; so will this
    // segment.
    let staged = shared
        .staged_bytes
        .load(Ordering::Acquire)
        .saturating_sub(shared.spares.bytes());
    let total = shared.disk_bytes.load(Ordering::Acquire) + staged + size;
    if limit.max_bytes.is_some_and(|m| total > m) {
        return false;
    }
    let mine =
        ch.disk_bytes.load(Ordering::Acquire) + ch.staged_bytes.load(Ordering::Acquire) + size;
    limit.max_bytes_per_channel.is_none_or(|m| mine <= m)
}

/// Body of the retirer thread. Returns once stopping and every retired
/// segment has been moved, or as soon as told to abandon the rest
/// ([`Shared::retirer_abandon`]): between segments, or within one before
/// its final `fsync`, leaving that segment staged.
pub(crate) fn retire_loop(shared: &Shared) {
    lower_priority(RETIRER_NICE);
    if shared.config.memory_only {
        return ring_retire_loop(shared);
    }
    let mut ledger = Ledger::default();
    // Each channel's compression backoff, by its slot.
    let mut trials: Vec<Trial> = Vec::new();
    // Direct mode finishes segments in place, uncompressed.
    let mut compressor = None;
    if shared.config.compress && !shared.direct {
        match SegmentCompressor::new() {
            Ok(c) => compressor = Some(c),
            Err(e) => shared.record_error(BackgroundError::CompressionOff(Arc::new(e))),
        }
    }
    loop {
        let stopping = match next_round(shared) {
            Round::Quit => return,
            Round::Wait => continue,
            Round::Go { stopping } => stopping,
        };
        let mut moved = false;
        let mut trimmed = false;
        // The ledger names channels by their slot in this table.
        let channels: Vec<&Channel> = shared.channels().collect();
        for &ch in &channels {
            while !shared.retirer_abandon.load(Ordering::Acquire) {
                let Some(r) = ch.pop_retired() else {
                    break;
                };
                moved = true;
                if trials.len() <= ch.slot {
                    trials.resize(ch.slot + 1, Trial::default());
                }
                let compress = compressor.as_mut().map(|c| (c, &mut trials[ch.slot]));
                let Some(entry) = retire_one(shared, ch, r, compress) else {
                    continue;
                };
                ledger.add(entry, ch);
                if shared.config.limit.is_set() {
                    // After every segment, so the directory never holds
                    // more than the bound plus the segment just moved in.
                    let (errors, any) = ledger.enforce(&shared.config.limit, &channels);
                    for e in errors {
                        shared.record_error(BackgroundError::remove("trimming", e.0, e.1));
                    }
                    trimmed |= any;
                }
                shared.disk_bytes.store(ledger.total(), Ordering::Release);
            }
        }
        if trimmed {
            *shared.trimmed.lock().unwrap_or_else(|p| p.into_inner()) = ledger.trimmed.clone();
            // Say so on disk now, not only at close: a crash must not leave a
            // trimmed capture that reads as damaged.
            if let Err(e) = shared.write_running_manifest() {
                shared.record_error(BackgroundError::Manifest(Box::new(e)));
            }
        }
        if stopping && !moved {
            return;
        }
        if !moved {
            std::thread::park_timeout(IDLE_WAIT);
        }
    }
}

/// What a retirer does at the top of a round.
enum Round {
    /// Told to abandon what it has not moved: return.
    Quit,
    /// Held by the test hook: it slept; look again.
    Wait,
    /// Work through what is retired; `stopping` was read before, so that
    /// nothing retired before the flag was set can be left behind.
    Go { stopping: bool },
}

/// Reads the flags that start a retirer's round ([`Round`]).
fn next_round(shared: &Shared) -> Round {
    if shared.retirer_abandon.load(Ordering::Acquire) {
        return Round::Quit;
    }
    let stopping = shared.retirer_stopping.load(Ordering::Acquire);
    if !stopping && shared.held.load(Ordering::Acquire) {
        std::thread::park_timeout(IDLE_WAIT);
        return Round::Wait;
    }
    Round::Go { stopping }
}

/// The retirer of a memory-only ring, which moves nothing: the preparer
/// tends the ring as rotations wake it, this thread on its slow rounds (in
/// case the preparer is held up) and until nothing more is sealed at
/// close, when it saves the trims in the manifest.
fn ring_retire_loop(shared: &Shared) {
    loop {
        let stopping = match next_round(shared) {
            Round::Quit => return,
            Round::Wait => continue,
            Round::Go { stopping } => stopping,
        };
        let took = memory_ring::tend(shared);
        if stopping && !took {
            let mut ring = shared.ring.lock().unwrap_or_else(|p| p.into_inner());
            ring.save_if_due(shared, true);
            return;
        }
        if !took {
            std::thread::park_timeout(RING_ROUND);
        }
    }
}

/// Moves one sealed segment into the capture directory durably —
/// compressed, if `compress` is given, its channel's backoff lets it try,
/// and it shrinks — then frees its
/// staged copy. On failure the staged file stays where recovery will find
/// it, and the error is recorded.
fn retire_one(
    shared: &Shared,
    ch: &Channel,
    mut r: Retired,
    compress: Option<(&mut SegmentCompressor, &mut Trial)>,
) -> Option<Entry> {
    let size = r.segment.capacity() as u64;
    fill_checksums(shared, &mut r);
    let dest_dir = shared.capture_channel_dir(&ch.name);
    let staged = r.segment.path().to_path_buf();
    let index = r.segment.index();
    let dest = if shared.direct {
        staged.clone()
    } else {
        dest_dir.join(segment_file_name(index))
    };
    let Retired {
        segment,
        used,
        records,
        data_bytes,
        last_ts,
    } = r;
    let mut file_bytes = used as u64;
    // Kept until the copy is safe, to become a spare.
    let mut staged_segment = None;
    let result = if shared.direct {
        finish_in_place(segment, used)
    } else {
        let raw = &segment.bytes()[..used.min(segment.capacity())];
        let bytes = compressed_or_raw(shared, raw, compress);
        file_bytes = bytes.len() as u64;
        let copied = copy_out(bytes, &dest_dir, &dest, &shared.retirer_abandon);
        // On failure, unmapped now: a segment left staged stays a file, for
        // the mover or the next session.
        if copied.is_ok() {
            staged_segment = Some(segment);
        }
        copied
    };
    if let Err(e) = result {
        // Keep the budget reserved: the staged file still holds memory.
        if e.kind() == std::io::ErrorKind::Interrupted
            && shared.retirer_abandon.load(Ordering::Acquire)
        {
            // Left staged on purpose, for the mover; not an error.
            return None;
        }
        shared.record_error(BackgroundError::Move {
            from: staged,
            to: dest,
            source: Arc::new(e),
        });
        return None;
    }
    ch.staged_bytes.fetch_sub(size, Ordering::AcqRel);
    release_staged(shared, staged_segment, &staged, size);
    shared.moved_bytes.fetch_add(file_bytes, Ordering::AcqRel);
    Some(Entry {
        channel: ch.slot,
        index,
        path: dest,
        file_bytes,
        records,
        data_bytes,
        last_ts,
    })
}

/// Fills in the record CRCs the hot path left at zero (none, unless the
/// session turned `checksum_at_append` off) and flags the header: every
/// segment in the capture directory carries them. Records that end before
/// what the hot path says it wrote are recorded as an error (the segment
/// still moves).
fn fill_checksums(shared: &Shared, r: &mut Retired) {
    let walked = r.segment.fill_checksums(r.used);
    if walked != r.used {
        shared.record_error(BackgroundError::RecordsEndEarly {
            path: r.segment.path().to_path_buf(),
            walked,
            used: r.used,
        });
    }
}

/// `raw` compressed by `compress`'s compressor if it has one, the
/// channel's backoff ([`Trial`]) lets it try, and that shrinks it; else
/// `raw` itself; counted in the spool's compression counters either way.
fn compressed_or_raw<'a>(
    shared: &Shared,
    raw: &'a [u8],
    compress: Option<(&'a mut SegmentCompressor, &mut Trial)>,
) -> &'a [u8] {
    let len = raw.len() as u64;
    let Some((c, trial)) = compress else {
        shared.compression.add(false, len, len, 0);
        return raw;
    };
    if !trial.wanted() {
        shared.compression.add_untried(len);
        return raw;
    }
    let cpu = compress::thread_cpu_ns();
    let out = c.compress(raw).ok();
    let cpu = compress::thread_cpu_ns().saturating_sub(cpu);
    trial.tried(out.is_some());
    let out = out.unwrap_or(raw);
    shared.compression.add(
        out.len() != raw.len(),
        raw.len() as u64,
        out.len() as u64,
        cpu,
    );
    out
}

/// Gives the memory of a segment now safe in the capture directory back:
/// the mapped `segment` becomes a spare, its memory staying staged, or is
/// deleted when the pool is full; with no `segment` (finished in place)
/// only the budget is given back. `staged` is its staging path, `size` the
/// bytes of memory it holds.
fn release_staged(shared: &Shared, segment: Option<MappedSegment>, staged: &Path, size: u64) {
    if let Some(segment) = segment {
        let Err(segment) = shared.spares.keep(segment) else {
            return;
        };
        drop(segment);
        if let Err(e) = std::fs::remove_file(staged) {
            shared.record_error(BackgroundError::remove("removing", staged.to_path_buf(), e));
        }
    }
    shared.staged_bytes.fetch_sub(size, Ordering::AcqRel);
}

/// Writes a sealed segment's `bytes` (as staged, or compressed) to `dest`
/// by way of a temporary file, around the page cache where it can
/// ([`direct_write`]). Gives up with
/// [`std::io::ErrorKind::Interrupted`], removing the temporary file, if
/// `abandon` is set before the copy is synced.
fn copy_out(
    bytes: &[u8],
    dest_dir: &Path,
    dest: &Path,
    abandon: &AtomicBool,
) -> std::io::Result<()> {
    fsutil::create_private_dir(dest_dir, true)?;
    let mut tmp_name = dest.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    fsutil::remove_if_regular(&tmp)?;
    let abandoned = || abandon.load(Ordering::Acquire);
    let result = (|| {
        let f = fsutil::create_new_file(&tmp)?;
        direct_write::write_all(&f, bytes, &abandoned)?;
        if abandoned() {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        f.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        fsutil::sync_dir(dest_dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Direct mode (no memory-backed staging): the segment already sits in the
/// capture directory; unmap it, flush it and cut it to the bytes in use.
///
/// The mapping goes before the file is cut: a mapped page past a file's end
/// faults (`SIGBUS`) when touched, and [`MappedSegment`]'s mapping is sound
/// only because no file is cut short under it. Unmapping a shared mapping
/// loses nothing: its stores are in the page cache, which the first
/// `sync_all` writes back.
fn finish_in_place(segment: MappedSegment, used: usize) -> std::io::Result<()> {
    let path = segment.path().to_path_buf();
    drop(segment);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags_nofollow()
        .open(&path)?;
    f.sync_all()?;
    f.set_len(used as u64)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        fsutil::sync_dir(dir)?;
    }
    Ok(())
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
    }
}
