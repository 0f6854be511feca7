//! The bounds a capture's disk use may be given ([`DiskLimit`]) and what a
//! ring buffer records of what it trimmed ([`Trimmed`]): the manifest holds
//! both, readers account for trimmed segments, and the writer enforces the
//! limit (`crate::write::limit`, the flight recorder).

use serde::{Deserialize, Serialize};

/// What to do when the capture directory reaches its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitPolicy {
    /// Delete the oldest segments (keep the newest traffic).
    #[default]
    Ring,
    /// Keep the oldest traffic; drop (and count) what does not fit.
    Stop,
}

/// A bound on the bytes of segments in the capture directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiskLimit {
    /// Most bytes of segments, all channels together.
    pub max_bytes: Option<u64>,
    /// Most bytes of segments of any one channel.
    pub max_bytes_per_channel: Option<u64>,
    /// What happens at the limit.
    pub policy: LimitPolicy,
}

impl DiskLimit {
    /// A ring buffer of at most `max_bytes`.
    pub fn ring(max_bytes: u64) -> DiskLimit {
        DiskLimit {
            max_bytes: Some(max_bytes),
            max_bytes_per_channel: None,
            policy: LimitPolicy::Ring,
        }
    }

    /// Whether any bound is set.
    pub fn is_set(&self) -> bool {
        self.max_bytes.is_some() || self.max_bytes_per_channel.is_some()
    }
}

/// What a ring buffer removed from the start of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trimmed {
    /// Segments deleted.
    pub segments: u64,
    /// Data records they held.
    pub records: u64,
    /// Payload bytes of their data records.
    pub data_bytes: u64,
    /// Bytes of segment files deleted.
    pub file_bytes: u64,
    /// Index of the first segment still present.
    pub first_kept_index: u64,
    /// Timestamp of the newest deleted record (ns since session start):
    /// traffic before this is gone.
    pub until_ts_ns: u64,
}

impl Trimmed {
    /// Counts one more segment deleted (or recycled) from the start of the
    /// channel: segment `index`, holding `records` data records of
    /// `data_bytes`, `file_bytes` of memory or disk, newest record at
    /// `last_ts`. Segments go oldest first, so the next one is kept.
    pub(crate) fn add_segment(
        &mut self,
        index: u64,
        records: u64,
        data_bytes: u64,
        file_bytes: u64,
        last_ts: u64,
    ) {
        self.segments += 1;
        self.records += records;
        self.data_bytes += data_bytes;
        self.file_bytes += file_bytes;
        self.first_kept_index = index.saturating_add(1);
        self.until_ts_ns = self.until_ts_ns.max(last_ts);
    }
}
