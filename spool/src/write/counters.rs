//! A channel's [`ChannelCounters`] (the type the manifest records), read
//! from its atomics at any time.

use std::sync::atomic::Ordering;

pub use crate::store::manifest::ChannelCounters;
use crate::write::channel::Channel;

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
