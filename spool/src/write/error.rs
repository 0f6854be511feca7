//! [`SpoolError`]: why a spool could not be set up or closed cleanly, and
//! [`BackgroundError`]: what went wrong on the background threads (or in a
//! close) while the session ran. Every variant that involves a file names
//! it, and carries the `io::Error` as its source.
//!
//! The `io::Error`s are behind an [`Arc`] (so a `source()` downcasts to
//! `Arc<io::Error>`) because a close's result is kept and handed out again
//! to every later call of `close`.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::store::format::{InvalidChannelName, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};

/// What went wrong in the spool.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    /// [`SpoolConfig::segment_bytes`](crate::SpoolConfig::segment_bytes)
    /// is out of range or not a multiple of 4096.
    #[error(
        "spool configuration: segment_bytes {0}: want a multiple of 4096 from {MIN_SEGMENT_BYTES} to {MAX_SEGMENT_BYTES}"
    )]
    SegmentBytes(usize),
    /// [`SpoolConfig::ready_ahead`](crate::SpoolConfig::ready_ahead) is 0.
    #[error("spool configuration: ready_ahead must be at least 1")]
    ReadyAhead,
    /// [`SpoolConfig::staging_budget`](crate::SpoolConfig::staging_budget)
    /// does not hold one segment.
    #[error("spool configuration: staging_budget {budget} is smaller than one segment ({segment_bytes})")]
    StagingBudget {
        /// The budget asked for.
        budget: u64,
        /// The segment size asked for.
        segment_bytes: usize,
    },
    /// A channel name is not usable (it becomes a directory name).
    #[error("spool configuration: {0}")]
    ChannelName(#[from] InvalidChannelName),
    /// The channel table is full.
    #[error("spool configuration: more than {max} channels")]
    TooManyChannels {
        /// Most channels a spool holds.
        max: usize,
    },
    /// Neither `XDG_CACHE_HOME` nor `HOME` says where the flight recorder
    /// goes.
    #[error("neither XDG_CACHE_HOME nor HOME is set")]
    NoCacheDir,
    /// A memory-only ring ([`SpoolConfig::memory_ring`](crate::SpoolConfig::memory_ring))
    /// needs a memory-backed staging directory, and there is none.
    #[error("a memory-only ring needs a memory-backed filesystem ($XDG_RUNTIME_DIR or /dev/shm), and there is none")]
    NoMemoryStaging,
    /// Creating, resolving or writing a file or directory of the capture
    /// failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done ("creating capture directory", "writing"…).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why it failed.
        source: Arc<io::Error>,
    },
    /// The capture directory already holds a session.
    #[error("{}: already holds a capture session (manifest.json exists)", path.display())]
    SessionExists {
        /// The capture directory.
        path: PathBuf,
    },
    /// Another writer is creating a session in the capture directory.
    #[error("{}: capture directory in use by another writer", path.display())]
    InUse {
        /// The capture directory.
        path: PathBuf,
    },
    /// A background thread could not be started.
    #[error("starting thread {name}: {source}")]
    Thread {
        /// The thread's name.
        name: &'static str,
        /// Why it failed.
        source: Arc<io::Error>,
    },
    /// Errors while running or closing (each names the file involved).
    #[error("spool errors: {}", join(.0))]
    Background(Vec<BackgroundError>),
}

impl SpoolError {
    /// [`SpoolError::Io`] for `what` on `path`.
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SpoolError::Io {
            what,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// One error met while the session ran or closed. The spool keeps them in
/// memory ([`Spool::errors`](crate::Spool::errors)) and writes their text
/// into the manifest's `errors`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackgroundError {
    /// A segment could not be created in staging.
    #[error("preparing segment {index} of channel {channel} in {}: {source}", dir.display())]
    Prepare {
        /// The segment's index.
        index: u64,
        /// Its channel.
        channel: String,
        /// The staging directory of the channel.
        dir: PathBuf,
        /// Why it failed.
        source: Arc<io::Error>,
    },
    /// The compressor could not be set up; segments are moved uncompressed.
    #[error("compression off: {0}")]
    CompressionOff(Arc<io::Error>),
    /// A sealed segment's records end before its seal says.
    #[error("{}: records end at {walked}, not at {used} as sealed; checksums filled that far", path.display())]
    RecordsEndEarly {
        /// The staged segment.
        path: PathBuf,
        /// Where the records end.
        walked: usize,
        /// Where the seal says they end.
        used: usize,
    },
    /// A sealed segment could not be moved into the capture directory; it
    /// stays staged, for recovery.
    #[error("moving {} to {}: {source}", from.display(), to.display())]
    Move {
        /// The staged segment.
        from: PathBuf,
        /// Where it was going.
        to: PathBuf,
        /// Why it failed.
        source: Arc<io::Error>,
    },
    /// A file or directory could not be removed (`what` says which kind:
    /// "removing", "removing unused", "removing spare", "trimming").
    #[error("{what} {}: {source}", path.display())]
    Remove {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why it failed.
        source: Arc<io::Error>,
    },
    /// A background thread panicked.
    #[error("segment {0} thread panicked")]
    Panicked(&'static str),
    /// The staging root could not be trusted (another user's, a symlink)
    /// and a private directory beside it is used instead: a warning, the
    /// session records as ever.
    #[error("{0}")]
    StagingFallback(String),
    /// More errors happened than a spool keeps; this many were not kept.
    #[error("{0} more errors not kept")]
    NotKept(u64),
    /// The mover process could not be started; the next session moves the
    /// staged segments.
    #[error("starting the mover for {}: {source}; the next session will move them", staging.display())]
    StartMover {
        /// The staging directory left behind.
        staging: PathBuf,
        /// Why it failed.
        source: Arc<io::Error>,
    },
    /// The manifest could not be written.
    #[error(transparent)]
    Manifest(Box<SpoolError>),
}

impl BackgroundError {
    /// Whether this only warns: nothing was lost, so closing succeeds
    /// (the manifest still lists it).
    pub fn is_warning(&self) -> bool {
        matches!(self, BackgroundError::StagingFallback(_))
    }
}

impl BackgroundError {
    /// [`BackgroundError::Remove`] for `what` on `path`.
    pub(crate) fn remove(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        BackgroundError::Remove {
            what,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

fn join(errors: &[BackgroundError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
