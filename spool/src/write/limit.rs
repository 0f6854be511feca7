//! Bounding a capture's disk use: the flight recorder.
//!
//! A session can last hours. With a [`DiskLimit`], the capture directory never
//! holds more than `max_bytes` of segments (plus the one segment per channel
//! being moved in), so capture can stay on in every session:
//!
//! * [`LimitPolicy::Ring`] deletes the oldest sealed segments to make room,
//!   like dumpcap's ring buffer (`-b filesize:… -b files:…`), and records in
//!   the manifest that the start of those channels was trimmed;
//! * [`LimitPolicy::Stop`] keeps the oldest data: once the limit is reached no
//!   new segment is prepared, so later records are dropped and counted.
//!
//! The ledger lives on the retirer thread, which is the only one that adds
//! segments to the capture directory or removes them.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crate::store::limit::{DiskLimit, LimitPolicy, Trimmed};
use crate::write::channel::Channel;

/// A segment in the capture directory, as the ledger knows it.
pub(crate) struct Entry {
    pub channel: usize,
    pub index: u64,
    pub path: PathBuf,
    pub file_bytes: u64,
    pub records: u64,
    pub data_bytes: u64,
    pub last_ts: u64,
}

/// The retirer's account of the capture directory.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Segments in the capture directory, in the order they were moved in.
    entries: VecDeque<Entry>,
    total: u64,
    per_channel: Vec<u64>,
    /// Per channel name: what was trimmed.
    pub trimmed: BTreeMap<String, Trimmed>,
}

impl Ledger {
    /// Records a segment just moved into the capture directory.
    pub fn add(&mut self, e: Entry, ch: &Channel) {
        if self.per_channel.len() <= e.channel {
            self.per_channel.resize(e.channel + 1, 0);
        }
        self.total += e.file_bytes;
        self.per_channel[e.channel] += e.file_bytes;
        ch.disk_bytes
            .store(self.per_channel[e.channel], Ordering::Relaxed);
        self.entries.push_back(e);
    }

    /// Total bytes of segments in the capture directory.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Deletes the oldest segments until the limits hold (ring policy).
    /// Returns the segments that could not be removed, with why; `true` in
    /// the second place if anything was trimmed.
    pub fn enforce(
        &mut self,
        limit: &DiskLimit,
        channels: &[&Channel],
    ) -> (Vec<(PathBuf, std::io::Error)>, bool) {
        let mut errors = Vec::new();
        let mut trimmed_any = false;
        if limit.policy != LimitPolicy::Ring {
            return (errors, false);
        }
        loop {
            // "Oldest" by the time of a segment's newest record, not by when
            // it was moved in: a retirer that fell behind moves channels in
            // turns, not in time order.
            let over_total = limit.max_bytes.is_some_and(|m| self.total > m);
            let per = limit.max_bytes_per_channel;
            let victim = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    over_total
                        || per.is_some_and(|m| {
                            self.per_channel.get(e.channel).is_some_and(|&b| b > m)
                        })
                })
                .min_by_key(|(_, e)| e.last_ts)
                .map(|(i, _)| i);
            let Some(pos) = victim else { break };
            let Some(e) = self.entries.remove(pos) else {
                break;
            };
            if let Err(err) = std::fs::remove_file(&e.path) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    errors.push((e.path.clone(), err));
                }
            }
            self.total -= e.file_bytes;
            self.per_channel[e.channel] -= e.file_bytes;
            if let Some(ch) = channels.get(e.channel) {
                ch.disk_bytes
                    .store(self.per_channel[e.channel], Ordering::Relaxed);
                let t = self.trimmed.entry(ch.name.clone()).or_default();
                t.add_segment(e.index, e.records, e.data_bytes, e.file_bytes, e.last_ts);
            }
            trimmed_any = true;
        }
        (errors, trimmed_any)
    }
}
