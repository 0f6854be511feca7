//! [`Spool`]: creating a session's spool and the hot path into it. Closing
//! is in `close`, the state it shares with the background threads in
//! `shared`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};

use crate::store::format::{self, Direction, MIN_SEGMENT_BYTES, SEGMENT_HEADER_LEN};
use crate::store::fsutil;
use crate::store::layout::SPOOL_DIR;
use crate::store::manifest::{self, MANIFEST_FILE};
use crate::store::recover;
use crate::store::staging::{self, StagingDir};
use crate::write::background;
use crate::write::channel::Channel;
use crate::write::clock::{unix_now_ns, Clock};
use crate::write::config::{SpoolConfig, StagingChoice};
use crate::write::counters::{counters_of, ChannelCounters};
use crate::write::error::{BackgroundError, SpoolError};
use crate::write::memory_ring::TrimHold;
use crate::write::outcome::CloseOutcome;
use crate::write::segment::SessionFacts;
use crate::write::shared::{find_in, write_manifest, ChannelTable, Shared, Slot, MAX_CHANNELS};

/// A capture spool: one per session, shared by all channel loops.
///
/// `Spool` is `Send + Sync`; share it behind an `Arc` or a reference.
pub struct Spool {
    /// The same table as `shared.slots`, one pointer hop closer.
    pub(super) slots: ChannelTable,
    pub(crate) shared: Arc<Shared>,
    pub(super) preparer: Thread,
    pub(super) retirer: Thread,
    pub(super) threads: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
    pub(super) staging: Mutex<Option<StagingDir>>,
    pub(super) closed: Mutex<Option<Result<CloseOutcome, SpoolError>>>,
    pub(super) keep: AtomicBool,
    pub(super) no_mover: AtomicBool,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("capture_dir", &self.shared.config.capture_dir)
            .field("staging", &self.shared.staging_root)
            .finish()
    }
}

impl Spool {
    /// Creates the capture directory (`0700`), the staging directory, the
    /// initial manifest, and starts the background threads.
    ///
    /// Fails if the capture directory already holds a session.
    pub fn create(config: SpoolConfig) -> Result<Spool, SpoolError> {
        config.validate()?;
        let made_capture = std::fs::symlink_metadata(&config.capture_dir).is_err();
        let (capture, _claim) = claim_capture_dir(&config.capture_dir)?;
        let capture_spool = capture.join(SPOOL_DIR);
        fsutil::create_private_dir(&capture_spool, true)
            .map_err(|e| SpoolError::io("creating", &capture_spool, e))?;

        let clock = Clock::new();
        let session_id = random_session_id();
        let session_hex = manifest::session_id_hex(&session_id);
        let session = SessionFacts {
            session_id,
            session_start_unix_ns: config.session_start_unix_ns.unwrap_or_else(unix_now_ns),
            monotonic_base_ns: clock.origin_ns(),
            checksum_at_append: config.checksum_at_append,
        };
        let staging = open_staging(&config, &capture, &session_hex).inspect_err(|_| {
            undo_create(&capture, made_capture);
        })?;
        let shared = Arc::new(Shared::new(
            config,
            session,
            clock,
            capture.clone(),
            staging.as_ref(),
        ));
        if let Some(warning) = staging.as_ref().and_then(|s| s.warning()) {
            shared.record_error(BackgroundError::StagingFallback(warning.to_string()));
        }
        let manifest = shared.manifest(shared.staging_dir.as_deref(), false, None);
        if let Err(e) = write_manifest(&capture, &manifest) {
            if let Some(s) = &staging {
                recover::remove_emptied(s.path());
            }
            undo_create(&capture, made_capture);
            return Err(e);
        }
        let spool = Spool::start(shared, staging)?;
        for name in spool.shared.config.channels.clone() {
            spool.register(&name)?;
        }
        Ok(spool)
    }

    /// Starts the background threads of `shared`, and the spool around
    /// them.
    fn start(shared: Arc<Shared>, staging: Option<StagingDir>) -> Result<Spool, SpoolError> {
        let spawn = |name: &'static str, f: fn(&Shared)| {
            let s = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(&s))
                .map_err(|e| SpoolError::Thread {
                    name,
                    source: Arc::new(e),
                })
        };
        let preparer = spawn("spool-prepare", background::prepare_loop)?;
        let retirer = spawn("spool-retire", background::retire_loop)?;
        Ok(Spool {
            slots: Arc::clone(&shared.slots),
            preparer: preparer.thread().clone(),
            retirer: retirer.thread().clone(),
            threads: Mutex::new(Some((preparer, retirer))),
            shared,
            staging: Mutex::new(staging),
            closed: Mutex::new(None),
            keep: AtomicBool::new(false),
            no_mover: AtomicBool::new(false),
        })
    }

    /// Appends `data` as one record of `channel`, stamped with the time now.
    /// Returns `false` if it was dropped (counted, and recorded in the spool
    /// as a gap). Never blocks on the disk or the background threads.
    ///
    /// The first record of a channel not named in [`SpoolConfig::channels`]
    /// sets the channel up, which prepares its first segment synchronously.
    #[inline]
    pub fn append(&self, channel: &str, dir: Direction, data: &[u8]) -> bool {
        self.append_at(channel, dir, self.now_ns(), data)
    }

    /// [`Spool::append`] with an explicit timestamp (nanoseconds since
    /// session start), for replaying recorded traffic.
    #[inline]
    pub fn append_at(&self, channel: &str, dir: Direction, ts_ns: u64, data: &[u8]) -> bool {
        match find_in(&self.slots, channel) {
            Some(ch) => self.append_to(ch, dir, ts_ns, data),
            None => self.append_new(channel, dir, ts_ns, data),
        }
    }

    /// Appends to a channel already found, and wakes the background threads
    /// if the append took or retired a segment.
    #[inline]
    fn append_to(&self, ch: &Channel, dir: Direction, ts_ns: u64, data: &[u8]) -> bool {
        let mut wake = false;
        let ok = ch.append(dir, ts_ns, data, &mut wake);
        if wake {
            self.wake();
        }
        ok
    }

    /// [`Spool::append_at`] for the first record of a channel.
    #[cold]
    #[inline(never)]
    fn append_new(&self, channel: &str, dir: Direction, ts_ns: u64, data: &[u8]) -> bool {
        match self.register(channel) {
            Ok(ch) => self.append_to(ch, dir, ts_ns, data),
            Err(_) => {
                self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Wakes the background threads: a segment was taken or retired. A
    /// memory-only ring's retirer is left asleep: its preparer takes the
    /// sealed segment into the ring itself (`memory_ring`).
    #[cold]
    #[inline(never)]
    fn wake(&self) {
        self.preparer.unpark();
        if !self.shared.config.memory_only {
            self.retirer.unpark();
        }
    }

    /// A handle for one channel, for callers that want to skip the name
    /// lookup on every append.
    pub fn channel(&self, name: &str) -> Result<ChannelHandle<'_>, SpoolError> {
        let ch = match self.shared.find(name) {
            Some(c) => c,
            None => self.register(name)?,
        };
        Ok(ChannelHandle {
            spool: self,
            channel: ch,
        })
    }

    fn register(&self, name: &str) -> Result<&Channel, SpoolError> {
        format::validate_channel_name(name)?;
        let _guard = self
            .shared
            .register
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = self.shared.find(name) {
            return Ok(c);
        }
        let slot = self
            .shared
            .slots
            .iter()
            .find(|s| s.get().is_none())
            .ok_or(SpoolError::TooManyChannels { max: MAX_CHANNELS })?;
        let max_staged = self.shared.config.max_staged_segments();
        let index = self
            .shared
            .slots
            .iter()
            .take_while(|s| s.get().is_some())
            .count();
        let new = Slot::new(Channel::new(
            name,
            index,
            self.shared.config.segment_bytes,
            max_staged,
        ));
        // The first segment synchronously, so the first record is kept, and
        // one more so that a burst right at the start does not outrun the
        // preparer's first wake-up. Both before the channel is published, so
        // no append ever finds it without a segment ready.
        if background::prepare_one(&self.shared, &new.channel).is_ok() {
            let _ = background::prepare_one(&self.shared, &new.channel);
        }
        let _ = slot.set(new);
        self.preparer.unpark();
        slot.get()
            .map(|s| &s.channel)
            // Only this thread, holding `register`, fills an empty slot.
            .ok_or(SpoolError::TooManyChannels { max: MAX_CHANNELS })
    }

    /// Nanoseconds since the session started (a monotonic clock).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        // The same clock and origin as the segment headers' monotonic base,
        // so a record's time plus that base is its CLOCK_MONOTONIC reading
        // (within the few microseconds the `clock` module keeps to).
        self.shared.clock.elapsed_ns()
    }

    /// Counters of one channel, or `None` if it has not appeared yet.
    pub fn counters(&self, channel: &str) -> Option<ChannelCounters> {
        self.shared.find(channel).map(counters_of)
    }

    /// Counters of every channel, in the order they appeared.
    pub fn all_counters(&self) -> Vec<(String, ChannelCounters)> {
        self.shared
            .channels()
            .map(|c| (c.name.clone(), counters_of(c)))
            .collect()
    }

    /// Records refused because of an invalid channel name or a full table.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Errors from the background threads so far (each names its file).
    pub fn errors(&self) -> Vec<BackgroundError> {
        self.shared.errors()
    }

    /// The capture directory.
    pub fn capture_dir(&self) -> &Path {
        &self.shared.config.capture_dir
    }

    /// Where live segments are mapped (the capture directory's `spool/` in
    /// direct mode).
    pub fn staging_dir(&self) -> &Path {
        &self.shared.staging_root
    }

    /// Wall-clock session start, nanoseconds since the Unix epoch.
    pub fn session_start_unix_ns(&self) -> u64 {
        self.shared.session.session_start_unix_ns
    }

    /// Bytes of segments currently staged in memory.
    pub fn staged_bytes(&self) -> u64 {
        self.shared.staged_bytes.load(Ordering::Relaxed)
    }

    /// What compression did to the segments moved so far
    /// ([`SpoolConfig::compress`]).
    pub fn compression(&self) -> crate::store::compress::CompressionStats {
        self.shared.compression.get()
    }

    /// Keeps the capture directory at close even if the configuration says
    /// to delete it ([`SpoolConfig::always_on`]).
    pub fn keep(&self) {
        self.keep.store(true, Ordering::Release);
    }

    /// Segments prepared by reusing the file of one already moved into the
    /// capture directory rather than by creating a new one (see
    /// `write::spare`): how much allocation the preparer saved.
    pub fn segments_reused(&self) -> u64 {
        self.shared.spares.reused()
    }

    /// Keeps a memory-only ring from recycling segments until the hold is
    /// dropped, so that a report read from it meanwhile is whole: the ring
    /// may grow by a quarter of its budget instead, and drops records past
    /// that. No effect on other spools. Hold it for the length of a read,
    /// not longer.
    pub fn hold_trims(&self) -> TrimHold<'_> {
        TrimHold::new(&self.shared)
    }

    /// Segments prepared and waiting for a channel.
    pub fn ready_segments(&self, channel: &str) -> usize {
        self.shared.find(channel).map_or(0, |c| c.ready.len())
    }

    /// Test hook: while held, the background threads neither prepare nor
    /// move segments, as if the machine were too busy to run them. `close()`
    /// releases the hold.
    #[doc(hidden)]
    pub fn hold_background(&self, hold: bool) {
        self.shared.held.store(hold, Ordering::Release);
        self.preparer.unpark();
        self.retirer.unpark();
    }

    /// Test hook: a close that leaves segments staged starts no mover, as
    /// if the mover had died at once (the next session reclaims them).
    #[doc(hidden)]
    pub fn without_mover(&self) {
        self.no_mover.store(true, Ordering::Release);
    }
}

/// A channel of a [`Spool`], looked up once.
#[derive(Clone)]
pub struct ChannelHandle<'a> {
    spool: &'a Spool,
    channel: &'a Channel,
}

impl ChannelHandle<'_> {
    /// Same as [`Spool::append`] on this channel.
    #[inline]
    pub fn append(&self, dir: Direction, data: &[u8]) -> bool {
        self.append_at(dir, self.spool.now_ns(), data)
    }

    /// Same as [`Spool::append_at`] on this channel.
    #[inline]
    pub fn append_at(&self, dir: Direction, ts_ns: u64, data: &[u8]) -> bool {
        self.spool.append_to(self.channel, dir, ts_ns, data)
    }

    /// This channel's counters.
    pub fn counters(&self) -> ChannelCounters {
        counters_of(self.channel)
    }
}

/// Creates the capture directory `dir` (0700), resolves it, and claims it:
/// the returned lock is held until the manifest is written, so a second
/// writer started meanwhile is turned away here, having made nothing.
/// Fails if the directory already holds a session.
fn claim_capture_dir(dir: &Path) -> Result<(PathBuf, std::fs::File), SpoolError> {
    fsutil::create_private_dir(dir, true)
        .map_err(|e| SpoolError::io("creating capture directory", dir, e))?;
    let capture = std::fs::canonicalize(dir)
        .map_err(|e| SpoolError::io("resolving capture directory", dir, e))?;
    let claim = staging::lock_dir(&capture)
        .map_err(|e| SpoolError::io("locking capture directory", &capture, e))?
        .ok_or_else(|| SpoolError::InUse {
            path: capture.clone(),
        })?;
    if std::fs::symlink_metadata(capture.join(MANIFEST_FILE)).is_ok() {
        return Err(SpoolError::SessionExists { path: capture });
    }
    Ok((capture, claim))
}

/// The staging directory `config` asks for, made for session `session_hex`
/// of `capture`; `None` when segments are mapped in the capture directory
/// itself (which a memory-only ring refuses). Sessions killed earlier left
/// their segments under the same root: they are moved home in the
/// background (this session's own directory is locked, so left alone).
fn open_staging(
    config: &SpoolConfig,
    capture: &Path,
    session_hex: &str,
) -> Result<Option<StagingDir>, SpoolError> {
    let root = match &config.staging {
        StagingChoice::Auto => staging::default_root(),
        StagingChoice::Root(r) => Some(r.clone()),
        StagingChoice::CaptureDir => None,
    };
    let Some(root) = root else {
        return match config.memory_only {
            true => Err(SpoolError::NoMemoryStaging),
            false => Ok(None),
        };
    };
    let staging = StagingDir::create(&root, session_hex, capture)
        .map_err(|e| SpoolError::io("creating staging directory under", &root, e))?;
    drop(recover::reclaim_abandoned_in_background(&root));
    Ok(Some(staging))
}

/// Removes what a [`Spool::create`] that failed after claiming `capture`
/// made there: its empty `spool/`, and the capture directory itself if
/// the call made it and it is empty. Only the claim's holder calls it.
fn undo_create(capture: &Path, made_capture: bool) {
    let _ = std::fs::remove_dir(capture.join(SPOOL_DIR));
    if made_capture {
        let _ = std::fs::remove_dir(capture);
    }
}

fn random_session_id() -> [u8; 16] {
    fsutil::random_bytes()
}

const _: () = assert!((SEGMENT_HEADER_LEN as u64) < MIN_SEGMENT_BYTES);
