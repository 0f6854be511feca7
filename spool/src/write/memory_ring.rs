//! The memory-only ring ([`SpoolConfig::memory_ring`](crate::SpoolConfig::memory_ring)):
//! sealed segments stay where the hot path wrote them instead of moving to
//! the capture directory, and the oldest are recycled when the ring needs
//! room.
//!
//! The upkeep ([`tend`]) is the preparer's: a rotation wakes that one
//! thread, which takes the sealed segment into the ring, recycles the
//! oldest into the spare pool and prepares the next segment from it. The
//! retirer tends the ring only on its slow rounds and at close. One thread
//! woken per rotation instead of two is a third of the ring's own CPU on a
//! virtual machine, where a wake-up costs tens of microseconds.
//!
//! A kept segment costs nothing: no copy, no disk, no new memory, and no
//! CRCs either. Its records keep the zero CRCs the hot path wrote, as in a
//! live segment, and readers read it as they read a live one (twice, keeping
//! what both reads saw committed; `FORMAT.md`). Filling them in would cost
//! the ring about as much again as the copy of the records (crc32 over every
//! byte), for segments that are mostly recycled unread; whoever moves a ring
//! out of memory — recovery after a crash — fills them in then.
//!
//! When what is staged, spares aside, leaves
//! less than [`headroom`] of the staging budget for the preparer, the
//! segment with the oldest newest record (of any channel) goes: renamed
//! out of its channel's directory into the spare pool, whose segments the
//! preparer reuses (a new header; the old records stay unread behind it),
//! or deleted when the pool is full. So a busy
//! session allocates no memory once the ring has filled.
//!
//! A reader in the same process can ask for a [`TrimHold`] while it reads
//! ([`crate::Spool::hold_trims`]): the ring then recycles nothing and the
//! preparer may use a quarter more than the budget, past which records are
//! dropped (and counted) rather than recycle a segment under the reader, so
//! a report cut from a busy ring is whole.
//!
//! Readers know a memory ring by its manifest ([`Manifest::memory_only`]):
//! segments missing before the first one present were trimmed, not lost,
//! and so was a staged segment that vanishes before anything of its
//! channel was read; one that vanishes later leaves a hole in what was
//! read, which is reported as damage. The manifest's per-channel [`Trimmed`] counts are rewritten at
//! most every [`MANIFEST_EVERY`], not per trim, since nothing reads them to
//! decide what is damage.
//!
//! [`Manifest::memory_only`]: crate::Manifest::memory_only

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::store::limit::Trimmed;
use crate::write::channel::{Channel, Retired};
use crate::write::error::BackgroundError;
use crate::write::segment::MappedSegment;
use crate::write::shared::Shared;

/// Most often the running manifest is rewritten for trims.
pub(crate) const MANIFEST_EVERY: Duration = Duration::from_secs(1);

/// A sealed segment kept in the ring.
struct Kept {
    channel: usize,
    segment: MappedSegment,
    records: u64,
    data_bytes: u64,
    last_ts: u64,
}

/// The ring of sealed segments, oldest first in retire order.
#[derive(Default)]
pub(crate) struct MemoryRing {
    kept: VecDeque<Kept>,
    /// Bytes of segment memory the ring holds.
    bytes: u64,
    trimmed: BTreeMap<String, Trimmed>,
    /// Trims not yet in the manifest.
    unsaved: bool,
    saved_at: Option<Instant>,
}

/// Takes every segment the channels have sealed into the ring, then
/// recycles the oldest until the ring fits: the whole upkeep of a
/// memory-only ring, under its lock. Returns whether a segment was taken.
pub(crate) fn tend(shared: &Shared) -> bool {
    let mut ring = shared.ring.lock().unwrap_or_else(|p| p.into_inner());
    let mut took = false;
    for ch in shared.channels() {
        while let Some(r) = ch.pop_retired() {
            ring.keep(ch, r);
            took = true;
        }
    }
    ring.trim(shared);
    took
}

/// Room the ring leaves in the staging budget for the preparer: enough for
/// a busy channel's prepared segments, so a burst never waits on a trim.
pub(crate) fn headroom(shared: &Shared) -> u64 {
    let segment = shared.config.segment_bytes as u64;
    segment.saturating_mul(shared.config.ready_ahead as u64)
}

impl MemoryRing {
    /// Keeps a sealed segment of `ch` in place, as the hot path left it.
    /// Its memory stays staged; it is no longer the channel's to write.
    pub fn keep(&mut self, ch: &Channel, r: Retired) {
        let Retired {
            segment,
            used: _,
            records,
            data_bytes,
            last_ts,
        } = r;
        let size = segment.capacity() as u64;
        ch.staged_bytes.fetch_sub(size, Ordering::AcqRel);
        self.bytes += size;
        self.kept.push_back(Kept {
            channel: ch.slot,
            segment,
            records,
            data_bytes,
            last_ts,
        });
    }

    /// Whether the ring must give up a segment: the preparer would have
    /// less than [`headroom`] left, or the ring is over the configured
    /// limit.
    fn over(&self, shared: &Shared) -> bool {
        let staged = shared.staged_bytes.load(Ordering::Acquire);
        let free_for_reuse = shared.spares.bytes();
        let needed = staged
            .saturating_sub(free_for_reuse)
            .saturating_add(headroom(shared));
        let limit = shared.config.limit.max_bytes;
        needed > shared.staging_budget() || limit.is_some_and(|m| self.bytes > m)
    }

    /// Recycles the oldest segments until the ring fits, unless a reader
    /// holds it, and rewrites the manifest if it is due.
    fn trim(&mut self, shared: &Shared) {
        while shared.trim_holds.load(Ordering::Acquire) == 0 && self.over(shared) {
            let Some(victim) = self.oldest() else { break };
            let Some(k) = self.kept.remove(victim) else {
                break;
            };
            self.account(&k, shared);
            self.recycle(shared, k);
        }
        self.save_if_due(shared, false);
    }

    /// Position of the segment whose newest record is oldest: a retirer
    /// that fell behind retires channels in turns, not in time order.
    fn oldest(&self) -> Option<usize> {
        self.kept
            .iter()
            .enumerate()
            .min_by_key(|(_, k)| k.last_ts)
            .map(|(i, _)| i)
    }

    fn account(&mut self, k: &Kept, shared: &Shared) {
        let size = k.segment.capacity() as u64;
        self.bytes = self.bytes.saturating_sub(size);
        self.unsaved = true;
        let Some(ch) = shared.channels().nth(k.channel) else {
            return;
        };
        let t = self.trimmed.entry(ch.name.clone()).or_default();
        t.add_segment(k.segment.index(), k.records, k.data_bytes, size, k.last_ts);
    }

    /// Hands a trimmed segment to the spare pool (renamed out of its
    /// channel's directory before anything in it changes), or deletes it.
    fn recycle(&mut self, shared: &Shared, k: Kept) {
        let size = k.segment.capacity() as u64;
        if let Err(segment) = shared.spares.keep(k.segment) {
            let path = segment.path().to_path_buf();
            drop(segment);
            if let Err(e) = std::fs::remove_file(&path) {
                shared.record_error(BackgroundError::remove("trimming", path, e));
                return;
            }
            shared.staged_bytes.fetch_sub(size, Ordering::AcqRel);
        }
    }

    /// Unmaps every segment of the ring, at close (a ring is never moved
    /// to disk; the close deletes its files). Returns the bytes of memory
    /// they held.
    pub fn release(&mut self) -> u64 {
        self.kept.clear();
        std::mem::take(&mut self.bytes)
    }

    /// Publishes the trim counts, and rewrites the running manifest with
    /// them at most every [`MANIFEST_EVERY`] (or now, with `force`).
    pub fn save_if_due(&mut self, shared: &Shared, force: bool) {
        if !self.unsaved {
            return;
        }
        let due = self.saved_at.is_none_or(|t| t.elapsed() >= MANIFEST_EVERY);
        if !(due || force) {
            return;
        }
        *shared.trimmed.lock().unwrap_or_else(|p| p.into_inner()) = self.trimmed.clone();
        if let Err(e) = shared.write_running_manifest() {
            shared.record_error(BackgroundError::Manifest(Box::new(e)));
        }
        self.unsaved = false;
        self.saved_at = Some(Instant::now());
    }
}

/// While alive, a memory-only ring recycles nothing ([`crate::Spool::hold_trims`]).
#[must_use = "the ring recycles segments again as soon as the hold is dropped"]
pub struct TrimHold<'a> {
    shared: &'a Shared,
}

impl<'a> TrimHold<'a> {
    pub(crate) fn new(shared: &'a Shared) -> TrimHold<'a> {
        // Waits out an upkeep under way: no recycling starts once this is
        // done.
        let _granted = shared.ring.lock().unwrap_or_else(|p| p.into_inner());
        shared.trim_holds.fetch_add(1, Ordering::AcqRel);
        TrimHold { shared }
    }
}

impl Drop for TrimHold<'_> {
    fn drop(&mut self) {
        self.shared.trim_holds.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for TrimHold<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrimHold")
    }
}
