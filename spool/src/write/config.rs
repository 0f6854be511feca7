//! [`SpoolConfig`]: how to set up a [`Spool`](crate::Spool), with its
//! defaults and the checks [`Spool::create`](crate::Spool::create) makes.

use std::path::PathBuf;

use crate::store::format::{self, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
use crate::store::limit::DiskLimit;
use crate::write::clock::unix_now_ns;
use crate::write::error::SpoolError;

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

/// Smallest payload whose CRC the hot path stores, in a session that
/// stores CRCs at append ([`SpoolConfig::checksum_at_append`]); smaller
/// records are left to the retirer. A CRC has a fixed cost of about 20 ns,
/// which would double a small append (20–40 ns for 64 B to 1 KiB, against
/// a budget of 50); from 4 KiB on the copy costs about as much as the CRC,
/// and such records carry nearly all of a busy session's bytes.
pub const CRC_AT_APPEND_MIN: usize = 4096;

/// Segment size of [`SpoolConfig::memory_ring`].
pub const MEMORY_RING_SEGMENT_BYTES: usize = 1 << 20;

/// How to set up a [`Spool`](crate::Spool).
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
    /// recorded traffic (with [`Spool::append_at`](crate::Spool::append_at) timestamps relative to it).
    pub session_start_unix_ns: Option<u64>,
    /// Bound on the capture directory's size (none by default).
    pub limit: DiskLimit,
    /// Remove the capture directory at a clean close unless
    /// [`Spool::keep`](crate::Spool::keep) was called (the always-on flight recorder).
    pub delete_on_close: bool,
    /// Compress sealed segments as they are moved into the capture
    /// directory (zstd, in independent blocks; see [`crate::store::compress`]).
    /// Default on. Segments that do not shrink, those a close leaves to
    /// the mover process or recovery, and every segment of a spool without
    /// memory-backed staging are written uncompressed.
    pub compress: bool,
    /// Segments kept, once moved into the capture directory, to be reused
    /// for later ones instead of creating new files (see
    /// `write::spare`): each one holds a segment's memory while the session
    /// is quiet, and saves the preparer allocating and zeroing a segment's
    /// pages when it is busy. 0 turns reuse off. Default 4.
    pub spare_segments: usize,
    /// Keep sealed segments in staging instead of moving them to the
    /// capture directory: a ring in memory that never touches a disk (see
    /// [`SpoolConfig::memory_ring`]). Default off.
    pub memory_only: bool,
    /// The hot path stores the CRC of each record of at least
    /// [`CRC_AT_APPEND_MIN`] bytes as it appends it, while the payload is
    /// in the cache, instead of leaving it to the retirer, which must bring
    /// the sealed segment back from memory for it. Default on;
    /// off in a [`SpoolConfig::memory_ring`], most of whose segments are
    /// never moved. Either way every segment in the capture directory
    /// carries every CRC (`FORMAT.md`, *Checksums*).
    pub checksum_at_append: bool,
}

impl SpoolConfig {
    /// Most segments the staging budget holds at once: what bounds a
    /// channel's queues and how many segments are prepared ahead.
    pub(crate) fn max_staged_segments(&self) -> usize {
        (self.staging_budget / self.segment_bytes as u64) as usize
    }

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
            spare_segments: 4,
            memory_only: false,
            checksum_at_append: true,
        }
    }

    /// A ring of the newest traffic kept in memory only, for bug reports of
    /// sessions that capture nothing to disk: at most `memory_bytes` of
    /// staged segments (live, prepared, sealed and spare together). Sealed
    /// segments stay where the hot path wrote them, as it wrote them (their
    /// CRCs are filled in only if recovery moves them); when the ring needs
    /// room, the oldest is recycled for the next
    /// segment, so a busy session allocates nothing after the ring fills.
    /// Nothing is moved to `capture_dir`, which holds only the manifest
    /// (and whatever the host adds) and is removed with the staging at
    /// close: put it on a memory-backed filesystem too
    /// ([`crate::store::staging::ring_root`]). [`Spool::create`](crate::Spool::create)
    /// refuses it where no memory-backed staging exists.
    ///
    /// Segments are 1 MiB: a SPICE client reads at most 256 KiB at once,
    /// and every channel holds a live and a prepared segment however idle
    /// it is, so with seven channels (audio and USB open three more) larger
    /// segments would leave little of the ring for traffic. Larger ones
    /// cost the preparer somewhat less per MB (`PERFORMANCE.md`). Two
    /// spares are kept, since every spare's memory is taken from the ring.
    pub fn memory_ring(capture_dir: impl Into<PathBuf>, memory_bytes: u64) -> SpoolConfig {
        let mut config = SpoolConfig::new(capture_dir);
        config.segment_bytes = MEMORY_RING_SEGMENT_BYTES;
        config.ready_ahead = 2;
        config.staging_budget = memory_bytes;
        config.compress = false;
        config.delete_on_close = true;
        config.memory_only = true;
        config.checksum_at_append = false;
        config.spare_segments = 2;
        config
    }

    /// The always-on flight recorder: a session directory under the user's
    /// cache (`$XDG_CACHE_HOME/ryll/flight-recorder/`, else
    /// `~/.cache/ryll/flight-recorder/`), bounded by a 256 MiB ring, and
    /// deleted at a clean close unless [`Spool::keep`](crate::Spool::keep) is called (say, when
    /// the user files a bug report). With it, capture can stay on in every
    /// session, as ryll's in-memory traffic ring does, without building pcap
    /// frames on the hot path.
    pub fn always_on() -> Result<SpoolConfig, SpoolError> {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .ok_or(SpoolError::NoCacheDir)?;
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

    /// Sets [`SpoolConfig::spare_segments`].
    pub fn spare_segments(mut self, n: usize) -> Self {
        self.spare_segments = n;
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

    /// Sets [`SpoolConfig::checksum_at_append`].
    pub fn checksum_at_append(mut self, on: bool) -> Self {
        self.checksum_at_append = on;
        self
    }

    /// Sets [`SpoolConfig::session_start_unix_ns`].
    pub fn session_start_unix_ns(mut self, ns: u64) -> Self {
        self.session_start_unix_ns = Some(ns);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), SpoolError> {
        let s = self.segment_bytes;
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&(s as u64)) || s % 4096 != 0 {
            return Err(SpoolError::SegmentBytes(s));
        }
        if self.ready_ahead == 0 {
            return Err(SpoolError::ReadyAhead);
        }
        if self.staging_budget < s as u64 {
            return Err(SpoolError::StagingBudget {
                budget: self.staging_budget,
                segment_bytes: s,
            });
        }
        for c in &self.channels {
            format::validate_channel_name(c)?;
        }
        if self.memory_only && self.staging == StagingChoice::CaptureDir {
            return Err(SpoolError::NoMemoryStaging);
        }
        Ok(())
    }
}
