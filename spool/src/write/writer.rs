//! [`Spool`]: the writer side, from configuration to clean close.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::read::reader::SPOOL_DIR;
use crate::store::format::{
    self, Direction, FORMAT_VERSION, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES, SEGMENT_HEADER_LEN,
};
use crate::store::fsutil;
use crate::store::manifest::{self, ChannelSummary, Manifest, MANIFEST_FILE};
use crate::store::mover;
use crate::store::recover;
use crate::store::staging::{self, StagingDir};
use crate::write::background;
use crate::write::channel::Channel;
use crate::write::clock::Clock;
use crate::write::limit::{DiskLimit, Trimmed};
use crate::write::segment::SessionFacts;

/// Most channels one spool holds. SPICE defines a dozen channel types; the
/// fixed table is what lets the hot path find a channel without a lock.
pub const MAX_CHANNELS: usize = 64;

/// Where the hot path's segments are mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StagingChoice {
    /// A private directory under `$XDG_RUNTIME_DIR`, else `/dev/shm`; mapped
    /// in the capture directory directly if neither is memory-backed.
    Auto,
    /// Under this root directory (for tests, or a tmpfs of your choosing).
    Root(PathBuf),
    /// In the capture directory itself. Stores into pages of a mapped disk
    /// file can stall the writer while the kernel writes back or throttles
    /// dirty pages — for over a second on a slow disk — so use this only
    /// where no memory-backed filesystem exists.
    CaptureDir,
}

/// How to set up a [`Spool`].
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The capture directory: `manifest.json` and `spool/<channel>/` go here.
    pub capture_dir: PathBuf,
    /// Where live segments are mapped.
    pub staging: StagingChoice,
    /// Size of each segment file (a multiple of 4096, 64 KiB to 1 GiB).
    /// Records larger than a segment are dropped. Default 4 MiB.
    pub segment_bytes: usize,
    /// Segments kept prepared ahead for a busy channel (a quiet one gets
    /// one). Default 3.
    pub ready_ahead: usize,
    /// Most bytes of segments staged in memory at once (live, prepared, and
    /// waiting to be moved). Past it no segment is prepared and records are
    /// dropped instead. Default 256 MiB.
    pub staging_budget: u64,
    /// Channels to set up at creation, so their first record never waits for
    /// a segment to be prepared.
    pub channels: Vec<String>,
    /// Wall-clock session start to record instead of now, for replays of
    /// recorded traffic (with [`Spool::append_at`] timestamps relative to it).
    pub session_start_unix_ns: Option<u64>,
    /// Bound on the capture directory's size (none by default).
    pub limit: DiskLimit,
    /// Remove the capture directory at a clean close unless
    /// [`Spool::keep`] was called (the always-on flight recorder).
    pub delete_on_close: bool,
    /// Compress sealed segments as they are moved into the capture
    /// directory (zstd, in independent blocks; see [`crate::compress`]).
    /// Default on. Segments that do not shrink, those a close leaves to
    /// the mover process or recovery, and every segment of a spool without
    /// memory-backed staging are written uncompressed.
    pub compress: bool,
}

impl SpoolConfig {
    /// Defaults for a capture directory.
    pub fn new(capture_dir: impl Into<PathBuf>) -> SpoolConfig {
        SpoolConfig {
            capture_dir: capture_dir.into(),
            staging: StagingChoice::Auto,
            segment_bytes: 4 << 20,
            ready_ahead: 3,
            staging_budget: 256 << 20,
            channels: Vec::new(),
            session_start_unix_ns: None,
            limit: DiskLimit::default(),
            delete_on_close: false,
            compress: true,
        }
    }

    /// The always-on flight recorder: a session directory under the user's
    /// cache (`$XDG_CACHE_HOME/ryll/flight-recorder/`, else
    /// `~/.cache/ryll/flight-recorder/`), bounded by a 256 MiB ring, and
    /// deleted at a clean close unless [`Spool::keep`] is called (say, when
    /// the user files a bug report). With it, capture can stay on in every
    /// session, as ryll's in-memory traffic ring does, without building pcap
    /// frames on the hot path.
    pub fn always_on() -> Result<SpoolConfig, SpoolError> {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .ok_or_else(|| SpoolError::Setup("neither XDG_CACHE_HOME nor HOME is set".into()))?;
        let name = format!("{}-{}", unix_now_ns(), std::process::id());
        let mut config = SpoolConfig::new(cache.join("ryll/flight-recorder").join(name));
        config.limit = DiskLimit::ring(256 << 20);
        config.delete_on_close = true;
        Ok(config)
    }

    /// Sets [`SpoolConfig::limit`].
    pub fn limit(mut self, limit: DiskLimit) -> Self {
        self.limit = limit;
        self
    }

    /// Sets [`SpoolConfig::staging`].
    pub fn staging(mut self, staging: StagingChoice) -> Self {
        self.staging = staging;
        self
    }

    /// Sets [`SpoolConfig::segment_bytes`].
    pub fn segment_bytes(mut self, bytes: usize) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Sets [`SpoolConfig::ready_ahead`].
    pub fn ready_ahead(mut self, n: usize) -> Self {
        self.ready_ahead = n;
        self
    }

    /// Sets [`SpoolConfig::staging_budget`].
    pub fn staging_budget(mut self, bytes: u64) -> Self {
        self.staging_budget = bytes;
        self
    }

    /// Sets [`SpoolConfig::channels`].
    pub fn channels<S: AsRef<str>>(mut self, names: &[S]) -> Self {
        self.channels = names.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    /// Sets [`SpoolConfig::compress`].
    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// Sets [`SpoolConfig::session_start_unix_ns`].
    pub fn session_start_unix_ns(mut self, ns: u64) -> Self {
        self.session_start_unix_ns = Some(ns);
        self
    }

    fn validate(&self) -> Result<(), SpoolError> {
        let s = self.segment_bytes;
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&(s as u64)) || s % 4096 != 0 {
            return Err(SpoolError::Config(format!(
                "segment_bytes {s}: want a multiple of 4096 from {MIN_SEGMENT_BYTES} to {MAX_SEGMENT_BYTES}"
            )));
        }
        if self.ready_ahead == 0 {
            return Err(SpoolError::Config("ready_ahead must be at least 1".into()));
        }
        if self.staging_budget < s as u64 {
            return Err(SpoolError::Config(format!(
                "staging_budget {} is smaller than one segment ({s})",
                self.staging_budget
            )));
        }
        for c in &self.channels {
            format::validate_channel_name(c).map_err(|e| SpoolError::Config(e.to_string()))?;
        }
        Ok(())
    }
}

/// What went wrong in the spool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// The configuration is not usable.
    #[error("spool configuration: {0}")]
    Config(String),
    /// Setting up the capture or staging directory failed.
    #[error("{0}")]
    Setup(String),
    /// Errors while running or closing (each names the file involved).
    #[error("spool errors: {}", .0.join("; "))]
    Background(Vec<String>),
}

/// Per-channel counters, readable at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChannelCounters {
    /// Data records accepted.
    pub records: u64,
    /// Payload bytes accepted.
    pub bytes: u64,
    /// Records dropped (ryll's `writer_dropped_count`).
    pub dropped_records: u64,
    /// Payload bytes dropped.
    pub dropped_bytes: u64,
    /// Segments this channel has gone through.
    pub segments: u64,
}

/// State shared by the spool, its handles and its background threads.
pub(crate) struct Shared {
    pub config: SpoolConfig,
    pub session: SessionFacts,
    /// The channel table, shared with [`Spool`] (see [`ChannelTable`]).
    slots: ChannelTable,
    register: Mutex<()>,
    pub staged_bytes: AtomicU64,
    /// The hot path's clock, refitted by the preparer thread.
    pub clock: Clock,
    pub stopping: AtomicBool,
    pub retirer_stopping: AtomicBool,
    /// Set when a close's grace period is over: the retirer leaves what it
    /// has not moved yet staged, for the mover.
    pub retirer_abandon: AtomicBool,
    /// Bytes the retirer has written into the capture directory.
    pub moved_bytes: AtomicU64,
    /// What the retirer's compression did.
    pub compression: crate::store::compress::CompressionCounters,
    /// Test hook: background threads do no work while set.
    pub held: AtomicBool,
    /// Bytes of segments in the capture directory (kept by the retirer).
    pub disk_bytes: AtomicU64,
    /// What the flight recorder trimmed, per channel (kept by the retirer).
    pub trimmed: Mutex<std::collections::BTreeMap<String, Trimmed>>,
    /// Capture directory, resolved.
    pub capture_dir: PathBuf,
    /// Staging directory of this session, if segments are staged.
    pub staging_dir: Option<PathBuf>,
    errors: Mutex<Vec<String>>,
    /// Records refused because their channel name was invalid or the
    /// channel table was full.
    pub rejected: AtomicU64,
    /// Segments are mapped in the capture directory itself.
    pub direct: bool,
    staging_root: PathBuf,
    capture_spool: PathBuf,
}

/// Errors kept in memory at most; later ones are counted in the last line.
const MAX_ERRORS: usize = 100;

/// The channel table: [`MAX_CHANNELS`] slots, filled in order, never
/// emptied, read without a lock. Each slot holds the name and the channel
/// itself inline, and the [`Spool`] keeps its own pointer to the table, so
/// an append goes from the spool to its channel's name and lock in one hop
/// (each hop is one more cache miss for an isolated append). On the heap,
/// not inline in [`Shared`]: at about 80 KiB it would make creating a spool
/// need a few hundred KiB of stack.
type ChannelTable = Arc<[OnceLock<Slot>]>;

/// Finds a registered channel by name.
#[inline]
fn find_in<'t>(table: &'t [OnceLock<Slot>], name: &str) -> Option<&'t Channel> {
    table
        .iter()
        .map_while(|s| s.get())
        .find(|s| s.is(name))
        .map(|s| &s.channel)
}

/// One entry of the channel table.
struct Slot {
    name_len: u8,
    name: [u8; format::MAX_CHANNEL_NAME],
    channel: Channel,
}

impl Slot {
    fn new(channel: Channel) -> Slot {
        let mut name = [0; format::MAX_CHANNEL_NAME];
        // Validated: at most MAX_CHANNEL_NAME bytes.
        let len = channel.name.len().min(name.len());
        name[..len].copy_from_slice(&channel.name.as_bytes()[..len]);
        Slot {
            name_len: len as u8,
            name,
            channel,
        }
    }

    /// Byte by byte rather than through `memcmp`: names are a few bytes
    /// long, and a call into libc is one more cold page for an isolated
    /// append.
    #[inline]
    fn is(&self, name: &str) -> bool {
        let name = name.as_bytes();
        usize::from(self.name_len) == name.len() && self.name.iter().zip(name).all(|(a, b)| a == b)
    }
}

impl Shared {
    /// Registered channels, in registration order.
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.slots.iter().map_while(|s| s.get()).map(|s| &s.channel)
    }

    #[inline]
    fn find(&self, name: &str) -> Option<&Channel> {
        find_in(&self.slots, name)
    }

    pub fn staging_channel_dir(&self, channel: &str) -> PathBuf {
        self.staging_root.join(channel)
    }

    pub fn capture_channel_dir(&self, channel: &str) -> PathBuf {
        self.capture_spool.join(channel)
    }

    pub fn record_error(&self, msg: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errors.len() < MAX_ERRORS {
            errors.push(msg);
        }
    }

    fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The manifest as of now.
    pub fn manifest(&self, staging: Option<&Path>, clean: bool, closed: Option<u64>) -> Manifest {
        Manifest {
            // Segments of version 3 appear only where the retirer compresses.
            format_version: if self.config.compress && !self.direct {
                crate::store::block::COMPRESSED_VERSION
            } else {
                FORMAT_VERSION
            },
            session_id: manifest::session_id_hex(&self.session.session_id),
            session_start_unix_ns: self.session.session_start_unix_ns,
            staging_dir: staging.map(|s| s.to_string_lossy().into_owned()),
            segment_bytes: self.config.segment_bytes as u64,
            clean_shutdown: clean,
            pending_move: false,
            closed_unix_ns: closed,
            channels: self
                .channels()
                .map(|c| {
                    let k = counters_of(c);
                    let summary = ChannelSummary {
                        records: k.records,
                        bytes: k.bytes,
                        dropped_records: k.dropped_records,
                        dropped_bytes: k.dropped_bytes,
                        segments: k.segments,
                    };
                    (c.name.clone(), summary)
                })
                .collect(),
            errors: self.errors(),
            limit: self.config.limit.is_set().then_some(self.config.limit),
            trimmed: self
                .trimmed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Rewrites the manifest while the session runs (after a trim).
    pub fn write_running_manifest(&self) -> Result<(), SpoolError> {
        let m = self.manifest(self.staging_dir.as_deref(), false, None);
        write_manifest(&self.capture_dir, &m)
    }
}

/// A capture spool: one per session, shared by all channel loops.
///
/// `Spool` is `Send + Sync`; share it behind an `Arc` or a reference.
pub struct Spool {
    /// The same table as `shared.slots`, one pointer hop closer.
    slots: ChannelTable,
    shared: Arc<Shared>,
    preparer: Thread,
    retirer: Thread,
    threads: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
    staging: Mutex<Option<StagingDir>>,
    closed: Mutex<Option<Result<CloseOutcome, SpoolError>>>,
    keep: AtomicBool,
    no_mover: AtomicBool,
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
        let setup = |what: &str, p: &Path, e: std::io::Error| {
            SpoolError::Setup(format!("{what} {}: {e}", p.display()))
        };
        let capture = &config.capture_dir;
        fsutil::create_private_dir(capture, true)
            .map_err(|e| setup("creating capture directory", capture, e))?;
        let capture = std::fs::canonicalize(capture)
            .map_err(|e| setup("resolving capture directory", capture, e))?;
        let manifest_path = capture.join(MANIFEST_FILE);
        if std::fs::symlink_metadata(&manifest_path).is_ok() {
            return Err(SpoolError::Setup(format!(
                "{}: already holds a capture session (manifest.json exists)",
                capture.display()
            )));
        }
        let capture_spool = capture.join(SPOOL_DIR);
        fsutil::create_private_dir(&capture_spool, true)
            .map_err(|e| setup("creating", &capture_spool, e))?;

        let clock = Clock::new();
        let session_id = random_session_id();
        let session_hex = manifest::session_id_hex(&session_id);
        let session = SessionFacts {
            session_id,
            session_start_unix_ns: config.session_start_unix_ns.unwrap_or_else(unix_now_ns),
            monotonic_base_ns: clock.origin_ns(),
        };

        let root = match &config.staging {
            StagingChoice::Auto => staging::default_root(),
            StagingChoice::Root(r) => Some(r.clone()),
            StagingChoice::CaptureDir => None,
        };
        let staging = match &root {
            Some(root) => Some(
                StagingDir::create(root, &session_hex, &capture)
                    .map_err(|e| setup("creating staging directory under", root, e))?,
            ),
            None => None,
        };
        if let Some(root) = &root {
            // Sessions that were killed left their segments in memory under
            // the same root; move them home, in the background. This
            // session's own directory is locked, so it is left alone.
            drop(recover::reclaim_abandoned_in_background(root));
        }
        let direct = staging.is_none();
        let staging_root = staging
            .as_ref()
            .map_or_else(|| capture_spool.clone(), |s| s.path().to_path_buf());

        let max_staged = (config.staging_budget / config.segment_bytes as u64) as usize;
        let shared = Arc::new(Shared {
            session,
            slots: (0..MAX_CHANNELS).map(|_| OnceLock::new()).collect(),
            register: Mutex::new(()),
            staged_bytes: AtomicU64::new(0),
            clock,
            stopping: AtomicBool::new(false),
            retirer_stopping: AtomicBool::new(false),
            retirer_abandon: AtomicBool::new(false),
            moved_bytes: AtomicU64::new(0),
            compression: Default::default(),
            held: AtomicBool::new(false),
            disk_bytes: AtomicU64::new(0),
            trimmed: Mutex::new(Default::default()),
            capture_dir: capture.clone(),
            staging_dir: staging.as_ref().map(|s| s.path().to_path_buf()),
            errors: Mutex::new(Vec::new()),
            rejected: AtomicU64::new(0),
            direct,
            staging_root: staging_root.clone(),
            capture_spool,
            config: SpoolConfig {
                ready_ahead: config.ready_ahead.min(max_staged.max(1)),
                ..config
            },
        });

        let manifest = shared.manifest(shared.staging_dir.as_deref(), false, None);
        write_manifest(&capture, &manifest)?;

        let spawn = |name: &str, f: fn(&Shared)| {
            let s = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(&s))
                .map_err(|e| SpoolError::Setup(format!("starting thread {name}: {e}")))
        };
        let preparer = spawn("spool-prepare", background::prepare_loop)?;
        let retirer = spawn("spool-retire", background::retire_loop)?;
        let spool = Spool {
            slots: Arc::clone(&shared.slots),
            preparer: preparer.thread().clone(),
            retirer: retirer.thread().clone(),
            threads: Mutex::new(Some((preparer, retirer))),
            shared,
            staging: Mutex::new(staging),
            closed: Mutex::new(None),
            keep: AtomicBool::new(false),
            no_mover: AtomicBool::new(false),
        };
        for name in spool.shared.config.channels.clone() {
            spool.register(&name)?;
        }
        Ok(spool)
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

    /// Wakes both background threads: a segment was taken or retired.
    #[cold]
    #[inline(never)]
    fn wake(&self) {
        self.preparer.unpark();
        self.retirer.unpark();
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
        format::validate_channel_name(name).map_err(|e| SpoolError::Config(e.to_string()))?;
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
            .ok_or_else(|| SpoolError::Config(format!("more than {MAX_CHANNELS} channels")))?;
        let max_staged =
            (self.shared.config.staging_budget / self.shared.config.segment_bytes as u64) as usize;
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
            .ok_or_else(|| SpoolError::Config("channel table".into()))
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
    pub fn errors(&self) -> Vec<String> {
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
    /// deleted ([`SpoolConfig::delete_on_close`], not kept) is not moved at
    /// all.
    ///
    /// The mover does not apply [`SpoolConfig::limit`]: under a ring limit
    /// the capture directory can end up larger than the bound by what was
    /// left staged (at most [`SpoolConfig::staging_budget`]).
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
            shared.record_error("segment retirer thread panicked".into());
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
        // Channels without a segment (all taken, or never prepared) need one
        // for their final seal; make it now, budget permitting.
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
                shared.record_error("segment preparer thread panicked".into());
            }
        }
        for ch in shared.channels() {
            while let Some(seg) = ch.ready.pop() {
                let path = seg.path().to_path_buf();
                let size = seg.capacity() as u64;
                drop(seg);
                if let Err(e) = std::fs::remove_file(&path) {
                    shared.record_error(format!("removing unused {}: {e}", path.display()));
                }
                shared.staged_bytes.fetch_sub(size, Ordering::AcqRel);
                ch.staged_bytes.fetch_sub(size, Ordering::AcqRel);
            }
        }
        // A flight recording nobody asked to keep is deleted below: moving
        // its segments first would only wait on the disk.
        let discard = shared.config.delete_on_close && !self.keep.load(Ordering::Acquire);
        if discard && !shared.direct {
            shared.retirer_abandon.store(true, Ordering::Release);
        }
        shared.retirer_stopping.store(true, Ordering::Release);
        self.retirer.unpark();
        if let Some(r) = retirer {
            self.finish_retirer(r, deadline, progress);
        }
        let abandoned = shared.retirer_abandon.load(Ordering::Acquire);
        // Segments the retirer left behind stay staged as files; unmap them
        // here so the memory goes once they are moved.
        for ch in shared.channels() {
            while let Some(r) = ch.pop_retired() {
                drop(r);
            }
        }
        let left = shared.staged_bytes.load(Ordering::Acquire);
        let everything_moved = left == 0;
        let mut outcome = CloseOutcome {
            bytes_moved: shared.moved_bytes.load(Ordering::Acquire),
            bytes_left_staged: left,
            mover: None,
        };
        let staging = self
            .staging
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let capture = shared.capture_dir.clone();
        let mut errors = shared.errors();
        if discard && errors.is_empty() {
            // A flight recording nobody asked to keep: nothing may remain.
            if let Some(staging) = &staging {
                remove_staged_segments(staging.path());
                recover::remove_emptied(staging.path());
                outcome.bytes_left_staged = 0;
            }
            if let Err(e) = std::fs::remove_dir_all(&capture) {
                errors.push(format!("removing {}: {e}", capture.display()));
            }
            return finish(outcome, errors);
        }
        let closed_at = Some(unix_now_ns());
        let pending = abandoned && !everything_moved && staging.is_some();
        if pending {
            if let Some(staging) = staging {
                self.hand_over(staging, closed_at, &mut outcome, &mut errors);
            }
            return finish(outcome, errors);
        }
        // Segments left staged by errors (a full disk…) are the next
        // session's to recover, as after a crash.
        let staged_left = staging
            .as_ref()
            .filter(|_| !everything_moved)
            .map(|s| s.path());
        let manifest = shared.manifest(staged_left, everything_moved, closed_at);
        if let Err(e) = write_manifest(&capture, &manifest) {
            errors.push(e.to_string());
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
        errors: &mut Vec<String>,
    ) {
        let shared = &self.shared;
        let mut manifest = shared.manifest(Some(staging.path()), true, closed_at);
        manifest.pending_move = true;
        if let Err(e) = write_manifest(&shared.capture_dir, &manifest) {
            errors.push(e.to_string());
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
            Err(e) => errors.push(format!(
                "starting the mover for {}: {e}; the next session will move them",
                staging.path().display()
            )),
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

fn finish(outcome: CloseOutcome, errors: Vec<String>) -> Result<CloseOutcome, SpoolError> {
    if errors.is_empty() {
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

/// What a close did.
#[derive(Debug, Clone)]
pub struct CloseOutcome {
    /// Bytes of segments moved into the capture directory during the
    /// session and its close.
    pub bytes_moved: u64,
    /// Bytes of segment files left staged in memory for the mover (as
    /// allocated; the mover writes only the part in use).
    pub bytes_left_staged: u64,
    /// The mover process, if segments were left staged.
    pub mover: Option<MoverHandle>,
}

/// A snapshot of a close in progress, for [`Spool::close_within_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseProgress {
    /// Bytes moved into the capture directory since the wait began.
    pub moved_bytes: u64,
    /// Bytes of segments still staged (as allocated).
    pub staged_bytes: u64,
    /// Bytes of segments staged when the wait began.
    pub staged_at_start: u64,
}

/// The detached mover process of a close. A thread of this process reaps
/// it when it exits, so it never lingers as a zombie.
#[derive(Debug, Clone)]
pub struct MoverHandle {
    pid: u32,
    exit: Arc<(Mutex<Option<Option<i32>>>, std::sync::Condvar)>,
}

impl MoverHandle {
    fn reap(pid: u32) -> MoverHandle {
        let exit = Arc::new((Mutex::new(None), std::sync::Condvar::new()));
        let e = Arc::clone(&exit);
        let reaper = std::thread::Builder::new()
            .name("spool-mover-reap".into())
            .spawn(move || {
                let mut status = 0;
                let code = loop {
                    // SAFETY: waitpid on our own child, into a local.
                    let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
                    if rc == pid as libc::pid_t {
                        break libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
                    }
                    if rc < 0
                        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                    {
                        continue;
                    }
                    // Reaped by someone else (SIGCHLD ignored…): unknown.
                    break None;
                };
                *e.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(code);
                e.1.notify_all();
            });
        if reaper.is_err() {
            // Unreaped, it lingers as a zombie until this process exits.
            *exit.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(None);
        }
        MoverHandle { pid, exit }
    }

    /// The mover's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits up to `timeout` for the mover to exit. `None` if it is still
    /// running; `Some(true)` if it moved everything, `Some(false)` if it
    /// failed (or its exit could not be observed), in which case the next
    /// session reclaims what is left.
    pub fn wait(&self, timeout: Duration) -> Option<bool> {
        let (lock, cv) = &*self.exit;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |s| s.is_none())
            .unwrap_or_else(|p| p.into_inner());
        guard.map(|code| code == Some(0))
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

fn counters_of(c: &Channel) -> ChannelCounters {
    let k = &c.counters;
    ChannelCounters {
        records: k.records.load(Ordering::Relaxed),
        bytes: k.bytes.load(Ordering::Relaxed),
        dropped_records: k.dropped_records.load(Ordering::Relaxed),
        dropped_bytes: k.dropped_bytes.load(Ordering::Relaxed),
        segments: k.segments.load(Ordering::Relaxed),
    }
}

pub(crate) fn write_manifest(capture: &Path, m: &Manifest) -> Result<(), SpoolError> {
    let path = capture.join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(m)
        .map_err(|e| SpoolError::Setup(format!("{}: {e}", path.display())))?;
    fsutil::write_atomic(&path, &json)
        .map_err(|e| SpoolError::Setup(format!("writing {}: {e}", path.display())))
}

fn random_session_id() -> [u8; 16] {
    use std::io::Read;
    let mut id = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .is_ok();
    if !ok {
        // Unique enough to tell sessions apart, which is all the id is for.
        let t = unix_now_ns() as u128 ^ ((std::process::id() as u128) << 64);
        id = t.to_le_bytes();
    }
    id
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

const _: () = assert!((SEGMENT_HEADER_LEN as u64) < MIN_SEGMENT_BYTES);
