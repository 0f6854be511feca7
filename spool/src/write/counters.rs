//! [`ChannelCounters`]: what a channel has accepted and dropped so far,
//! read from its atomics at any time.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::write::channel::Channel;

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

/// A snapshot of `c`'s counters.
pub(crate) fn counters_of(c: &Channel) -> ChannelCounters {
    let k = &c.counters;
    ChannelCounters {
        records: k.records.load(Ordering::Relaxed),
        bytes: k.bytes.load(Ordering::Relaxed),
        dropped_records: k.dropped_records.load(Ordering::Relaxed),
        dropped_bytes: k.dropped_bytes.load(Ordering::Relaxed),
        segments: k.segments.load(Ordering::Relaxed),
    }
}
