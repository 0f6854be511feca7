//! [`Shared`]: the state the spool, its channel handles and its background
//! threads all read — the configuration, the channel table, the staging
//! budget, the flags that stop the threads, and the errors they met.
//!
//! It sits below both [`Spool`](crate::Spool)(crate::Spool) and the background threads,
//! so neither has to import the other to reach it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::store::format::{self, FORMAT_VERSION};
use crate::store::fsutil;
use crate::store::layout::SPOOL_DIR;
use crate::store::limit::Trimmed;
use crate::store::manifest::{self, Manifest, MANIFEST_FILE};
use crate::store::staging::StagingDir;
use crate::write::channel::Channel;
use crate::write::clock::Clock;
use crate::write::config::SpoolConfig;
use crate::write::counters::counters_of;
use crate::write::error::{BackgroundError, SpoolError};
use crate::write::memory_ring::MemoryRing;
use crate::write::segment::SessionFacts;
use crate::write::spare::SparePool;

/// Most channels one spool holds. SPICE defines a dozen channel types; the
/// fixed table is what lets the hot path find a channel without a lock.
pub const MAX_CHANNELS: usize = 64;
/// State shared by the spool, its handles and its background threads.
pub(crate) struct Shared {
    pub config: SpoolConfig,
    pub session: SessionFacts,
    /// The channel table, shared with [`Spool`](crate::Spool) (see [`ChannelTable`]).
    pub(crate) slots: ChannelTable,
    pub(crate) register: Mutex<()>,
    /// Bytes of staged segment files, spares included: the memory the
    /// staging budget bounds.
    pub staged_bytes: AtomicU64,
    /// Segments moved out already, kept to be reused (`spare`).
    pub spares: SparePool,
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
    /// Readers in this process that asked a memory-only ring not to
    /// recycle segments under them ([`crate::write::memory_ring::TrimHold`]).
    pub trim_holds: AtomicU64,
    /// A memory-only ring's sealed segments. Its lock is held around all
    /// upkeep of the ring ([`crate::write::memory_ring::tend`]) and by a new hold, so
    /// that once a hold is granted no recycling is under way.
    pub ring: Mutex<MemoryRing>,
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
    pub(crate) errors: Mutex<Vec<BackgroundError>>,
    /// Records refused because their channel name was invalid or the
    /// channel table was full.
    pub rejected: AtomicU64,
    /// Segments are mapped in the capture directory itself.
    pub direct: bool,
    pub(crate) staging_root: PathBuf,
    pub(crate) capture_spool: PathBuf,
}

/// Errors kept in memory (and in the manifest) at most: the first ones say
/// what went wrong; a disk that fails every write would otherwise grow the
/// list without bound. Later errors are counted in one last entry,
/// [`BackgroundError::NotKept`].
const MAX_ERRORS: usize = 100;

/// The channel table: [`MAX_CHANNELS`] slots, filled in order, never
/// emptied, read without a lock. Each slot holds the name and the channel
/// itself inline, and the [`Spool`](crate::Spool) keeps its own pointer to the table, so
/// an append goes from the spool to its channel's name and lock in one hop
/// (each hop is one more cache miss for an isolated append). On the heap,
/// not inline in [`Shared`]: at about 80 KiB it would make creating a spool
/// need a few hundred KiB of stack.
pub(crate) type ChannelTable = Arc<[OnceLock<Slot>]>;

/// Finds a registered channel by name.
#[inline]
pub(crate) fn find_in<'t>(table: &'t [OnceLock<Slot>], name: &str) -> Option<&'t Channel> {
    table
        .iter()
        .map_while(|s| s.get())
        .find(|s| s.is(name))
        .map(|s| &s.channel)
}

/// One entry of the channel table.
pub(crate) struct Slot {
    name_len: u8,
    name: [u8; format::MAX_CHANNEL_NAME],
    pub(crate) channel: Channel,
}

impl Slot {
    pub(crate) fn new(channel: Channel) -> Slot {
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
    /// The state of a new session of `config` in `capture` (resolved),
    /// its segments staged in `staging`, or mapped in the capture
    /// directory without one. `ready_ahead` is cut to what the staging
    /// budget holds.
    pub(crate) fn new(
        config: SpoolConfig,
        session: SessionFacts,
        clock: Clock,
        capture: PathBuf,
        staging: Option<&StagingDir>,
    ) -> Shared {
        let capture_spool = capture.join(SPOOL_DIR);
        let staging_dir = staging.map(|s| s.path().to_path_buf());
        let max_staged = config.max_staged_segments();
        Shared {
            session,
            slots: (0..MAX_CHANNELS).map(|_| OnceLock::new()).collect(),
            register: Mutex::new(()),
            staged_bytes: AtomicU64::new(0),
            spares: SparePool::new(staging_dir.as_deref(), config.spare_segments),
            clock,
            stopping: AtomicBool::new(false),
            retirer_stopping: AtomicBool::new(false),
            retirer_abandon: AtomicBool::new(false),
            moved_bytes: AtomicU64::new(0),
            compression: Default::default(),
            held: AtomicBool::new(false),
            trim_holds: AtomicU64::new(0),
            ring: Mutex::new(MemoryRing::default()),
            disk_bytes: AtomicU64::new(0),
            trimmed: Mutex::new(Default::default()),
            capture_dir: capture,
            errors: Mutex::new(Vec::new()),
            rejected: AtomicU64::new(0),
            direct: staging_dir.is_none(),
            staging_root: staging_dir.clone().unwrap_or_else(|| capture_spool.clone()),
            staging_dir,
            capture_spool,
            config: SpoolConfig {
                ready_ahead: config.ready_ahead.min(max_staged.max(1)),
                ..config
            },
        }
    }

    /// Registered channels, in registration order.
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.slots.iter().map_while(|s| s.get()).map(|s| &s.channel)
    }

    #[inline]
    pub(crate) fn find(&self, name: &str) -> Option<&Channel> {
        find_in(&self.slots, name)
    }

    /// The staging budget in force: a memory-only ring held for a reader
    /// may grow by a quarter past it rather than recycle what is being read
    /// ([`crate::write::memory_ring`]).
    pub fn staging_budget(&self) -> u64 {
        let budget = self.config.staging_budget;
        if self.config.memory_only && self.trim_holds.load(Ordering::Acquire) > 0 {
            budget.saturating_add(budget / 4)
        } else {
            budget
        }
    }

    pub fn staging_channel_dir(&self, channel: &str) -> PathBuf {
        self.staging_root.join(channel)
    }

    pub fn capture_channel_dir(&self, channel: &str) -> PathBuf {
        self.capture_spool.join(channel)
    }

    pub fn record_error(&self, error: BackgroundError) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        // Past the limit, one last entry counts what is not kept.
        if errors.len() < MAX_ERRORS {
            errors.push(error);
        } else if let Some(BackgroundError::NotKept(n)) = errors.get_mut(MAX_ERRORS) {
            *n = n.saturating_add(1);
        } else {
            errors.push(BackgroundError::NotKept(1));
        }
    }

    pub(crate) fn errors(&self) -> Vec<BackgroundError> {
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
                .map(|c| (c.name.clone(), counters_of(c)))
                .collect(),
            errors: self.errors().iter().map(ToString::to_string).collect(),
            limit: self.config.limit.is_set().then_some(self.config.limit),
            trimmed: self
                .trimmed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            memory_only: self.config.memory_only,
        }
    }

    /// Rewrites the manifest while the session runs (after a trim).
    pub fn write_running_manifest(&self) -> Result<(), SpoolError> {
        let m = self.manifest(self.staging_dir.as_deref(), false, None);
        write_manifest(&self.capture_dir, &m)
    }
}

pub(crate) fn write_manifest(capture: &Path, m: &Manifest) -> Result<(), SpoolError> {
    let path = capture.join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(m)
        .map_err(|e| SpoolError::io("serializing", &path, std::io::Error::other(e)))?;
    fsutil::write_atomic(&path, &json).map_err(|e| SpoolError::io("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Spool, SpoolConfig};

    #[test]
    fn errors_past_the_limit_are_counted_at_the_end_of_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::create(SpoolConfig::new(dir.path().join("cap"))).unwrap();
        for _ in 0..MAX_ERRORS + 5 {
            spool.shared.record_error(BackgroundError::Panicked("test"));
        }
        let errors = spool.errors();
        assert_eq!(errors.len(), MAX_ERRORS + 1);
        assert!(matches!(errors.last(), Some(BackgroundError::NotKept(5))));
        assert_eq!(errors[MAX_ERRORS].to_string(), "5 more errors not kept");
        let _ = spool.close();
    }
}
