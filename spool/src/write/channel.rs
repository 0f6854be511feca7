//! One channel's writer state: the hot path.
//!
//! Each channel has its own lock, so channels never contend with each other;
//! a channel fed from several threads serialises on it. Ready segments arrive
//! from the background thread through a lock-free queue, and full ones leave
//! through another, so the hot path never waits for that thread, and only
//! appends and [`Channel::close`] ever take the lock.
//!
//! The lock is a spin lock ([`StateLock`]) rather than `std::sync::Mutex`:
//! taking it is one compare-and-swap either way, but releasing a futex
//! mutex is a second locked instruction (it must learn whether to wake a
//! sleeper), and on x86 a locked instruction waits until every earlier
//! store, here the whole record, has reached the cache. Releasing a spin
//! lock is a plain store, which makes a cold append markedly cheaper
//! (figures in `PERFORMANCE.md`). The price is paid only under contention,
//! which the spool's own threads never cause: a waiter yields its CPU
//! between tries instead of sleeping until woken.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_queue::ArrayQueue;
use zerocopy::byteorder::little_endian::U64;
use zerocopy::IntoBytes;

use crate::store::format::{
    record_len, GapPayload, RecordKind, SealPayload, GAP_RECORD_LEN, MAX_RECORD_PAYLOAD,
    SEAL_FLAG_FINAL, SEAL_RECORD_LEN, SEGMENT_HEADER_LEN,
};
use crate::write::segment::MappedSegment;
use crate::Direction;

/// The channel lock: released with a plain store (see the module docs); a
/// thread that finds it taken yields between tries.
type StateLock<T> = spin::mutex::SpinMutex<T, spin::relax::Yield>;
type StateGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T>;

/// A full segment on its way to the capture directory.
pub(crate) struct Retired {
    pub segment: MappedSegment,
    /// Bytes in use (header, records, seal): its `written_to`.
    pub used: usize,
    /// Data records in the segment.
    pub records: u64,
    /// Payload bytes of its data records.
    pub data_bytes: u64,
    /// Timestamp of its newest record.
    pub last_ts: u64,
}

/// Counters readable at any time without taking the channel's lock.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped_records: AtomicU64,
    pub dropped_bytes: AtomicU64,
    pub segments: AtomicU64,
}

impl Counters {
    /// Adds to a counter. Counters change only under the channel's lock, so
    /// a plain load and store is enough (no locked read-modify-write on the
    /// hot path); readers elsewhere see each value whole.
    #[inline]
    fn bump(&self, counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// Drops not yet written into the spool as a gap record.
#[derive(Debug, Default, Clone, Copy)]
struct PendingGap {
    records: [u64; 2],
    bytes: [u64; 2],
    first_ts: u64,
    last_ts: u64,
}

impl PendingGap {
    fn is_empty(&self) -> bool {
        self.records == [0, 0]
    }

    fn add(&mut self, dir: Direction, len: usize, ts: u64) {
        if self.is_empty() {
            self.first_ts = ts;
        }
        let d = dir.to_byte() as usize;
        self.records[d] += 1;
        self.bytes[d] += len as u64;
        self.last_ts = ts;
    }

    fn payload(&self) -> GapPayload {
        GapPayload {
            records_c2s: U64::new(self.records[0]),
            bytes_c2s: U64::new(self.bytes[0]),
            records_s2c: U64::new(self.records[1]),
            bytes_s2c: U64::new(self.bytes[1]),
            first_ts_ns: U64::new(self.first_ts),
            last_ts_ns: U64::new(self.last_ts),
        }
    }
}

/// What the channel lock guards.
struct State {
    offset: usize,
    /// Sequence number of the next record of this channel.
    seq: u64,
    /// Timestamp of the newest record, for stamping the seal.
    last_ts: u64,
    segment: Option<MappedSegment>,
    /// `seq` of the live segment's first record.
    seg_first_seq: u64,
    /// The channel's `bytes` counter when the live segment went live.
    seg_first_bytes: u64,
    /// Gap records in the live segment.
    seg_gaps: u64,
    gap: PendingGap,
    closed: bool,
}

/// A channel of the spool.
pub(crate) struct Channel {
    pub name: String,
    /// Position in the spool's channel table.
    pub slot: usize,
    /// Bytes of this channel's segments in the capture directory.
    pub disk_bytes: AtomicU64,
    /// Bytes of this channel's segments staged in memory.
    pub staged_bytes: AtomicU64,
    state: StateLock<State>,
    /// Segments prepared ahead of need, oldest first.
    pub ready: ArrayQueue<MappedSegment>,
    /// Full segments waiting to be moved to the capture directory
    /// ([`Channel::pop_retired`]).
    retired: ArrayQueue<Retired>,
    /// Full segments that found `retired` full, oldest first. The queue
    /// holds every segment the staging budget allows, so this stays empty
    /// unless that accounting is wrong; if it ever is, a sealed segment
    /// waits here for the retirer rather than being lost. Only this slow
    /// path allocates or takes a mutex.
    spilled: Mutex<VecDeque<Retired>>,
    /// `spilled` holds segments: later ones go there too, so that the
    /// retirer, which empties `retired` first, still moves them in order.
    spilling: AtomicBool,
    pub counters: Counters,
    /// Index the background thread gives the next segment it prepares.
    pub next_index: AtomicU64,
    /// Serialises segment preparation (the preparer thread, registration and
    /// close), so indexes are handed out and queued in order. Never taken by
    /// the hot path.
    pub prepare_lock: Mutex<()>,
    /// The channel's staging directory was made (or found private) by an
    /// earlier preparation and has not failed one since: the preparer
    /// checks it once, not per segment (a `statx` and a `mkdir` per
    /// rotation). Only read and written under `prepare_lock`.
    pub staging_dir_made: AtomicBool,
    /// Largest payload a segment of this size can hold, and never more
    /// than readers accept ([`MAX_RECORD_PAYLOAD`]).
    max_payload: usize,
}

impl Channel {
    pub fn new(
        name: &str,
        slot: usize,
        segment_bytes: usize,
        max_staged_segments: usize,
    ) -> Channel {
        Channel {
            name: name.to_string(),
            slot,
            disk_bytes: AtomicU64::new(0),
            staged_bytes: AtomicU64::new(0),
            state: StateLock::new(State {
                offset: 0,
                seq: 0,
                last_ts: 0,
                segment: None,
                seg_first_seq: 0,
                seg_first_bytes: 0,
                seg_gaps: 0,
                gap: PendingGap::default(),
                closed: false,
            }),
            ready: ArrayQueue::new(max_staged_segments.max(1)),
            retired: ArrayQueue::new(max_staged_segments.max(1) + 2),
            spilled: Mutex::new(VecDeque::new()),
            spilling: AtomicBool::new(false),
            counters: Counters::default(),
            next_index: AtomicU64::new(0),
            prepare_lock: Mutex::new(()),
            staging_dir_made: AtomicBool::new(false),
            max_payload: (segment_bytes
                - SEGMENT_HEADER_LEN
                - GAP_RECORD_LEN
                - SEAL_RECORD_LEN
                - record_len(0))
            .min(MAX_RECORD_PAYLOAD),
        }
    }

    #[inline]
    fn lock(&self) -> StateGuard<'_, State> {
        self.state.lock()
    }

    /// Appends one data record. Returns `false` if it was dropped; the drop
    /// is counted and will be written as a gap record. Sets `wake` when a
    /// segment was retired, so the caller can wake the background thread.
    ///
    /// The common case (a live segment with room, no pending gap) is kept
    /// small and inline, and everything else is out of line: an isolated
    /// append in a quiet session runs with cold instruction caches, where
    /// every cache line of code it touches adds to its latency.
    #[inline]
    pub fn append(&self, dir: Direction, ts_ns: u64, data: &[u8], wake: &mut bool) -> bool {
        let mut st = self.lock();
        let room = st.offset + record_len(data.len()) + SEAL_RECORD_LEN <= st.capacity();
        if room
            && st.gap.is_empty()
            && !st.closed
            && data.len() <= self.max_payload
            && self.write_data(&mut st, dir, ts_ns, data)
        {
            return true;
        }
        self.append_slow(&mut st, dir, ts_ns, data, wake)
    }

    /// [`Channel::append`] when the record does not simply fit: the channel
    /// is closed, the record is too large, a gap record is pending, or the
    /// segment is full (or there is none yet).
    #[cold]
    #[inline(never)]
    fn append_slow(
        &self,
        st: &mut State,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        wake: &mut bool,
    ) -> bool {
        if st.closed || data.len() > self.max_payload {
            self.drop_record(st, dir, data.len(), ts_ns);
            return false;
        }
        let need = record_len(data.len());
        let gap_need = if st.gap.is_empty() { 0 } else { GAP_RECORD_LEN };
        let fits =
            st.segment.is_some() && st.offset + gap_need + need + SEAL_RECORD_LEN <= st.capacity();
        if !fits && !self.rotate(st, wake) {
            self.drop_record(st, dir, data.len(), ts_ns);
            return false;
        }
        self.flush_gap(st);
        // `rotate` made a segment live, so this writes.
        if self.write_data(st, dir, ts_ns, data) {
            return true;
        }
        self.drop_record(st, dir, data.len(), ts_ns);
        false
    }

    /// Writes a data record at `st.offset` of the live segment and books
    /// it. The caller has made sure it fits; `false` if there is no live
    /// segment.
    #[inline]
    fn write_data(&self, st: &mut State, dir: Direction, ts_ns: u64, data: &[u8]) -> bool {
        let (seq, offset) = (st.seq as u32, st.offset);
        let Some(seg) = st.segment.as_mut() else {
            return false;
        };
        seg.write_record(offset, RecordKind::Data, dir.to_byte(), ts_ns, seq, data);
        st.offset += record_len(data.len());
        st.seq += 1;
        st.last_ts = ts_ns;
        self.counters.bump(&self.counters.records, 1);
        self.counters.bump(&self.counters.bytes, data.len() as u64);
        true
    }

    fn drop_record(&self, st: &mut State, dir: Direction, len: usize, ts_ns: u64) {
        st.gap.add(dir, len, ts_ns);
        self.counters.bump(&self.counters.dropped_records, 1);
        self.counters.bump(&self.counters.dropped_bytes, len as u64);
    }

    /// Writes the pending gap record, if any. The caller made room for it.
    fn flush_gap(&self, st: &mut State) {
        if st.gap.is_empty() || st.segment.is_none() {
            return;
        }
        let payload = st.gap.payload();
        let (seq, offset, ts) = (st.seq, st.offset, st.gap.last_ts);
        if let Some(seg) = st.segment.as_mut() {
            seg.write_record(
                offset,
                RecordKind::Gap,
                0,
                ts,
                seq as u32,
                payload.as_bytes(),
            );
        }
        st.offset += GAP_RECORD_LEN;
        st.seq += 1;
        st.seg_gaps += 1;
        st.gap = PendingGap::default();
    }

    /// Seals and retires the live segment (if any) and takes the next ready
    /// one. Returns `false` if none is ready.
    fn rotate(&self, st: &mut State, wake: &mut bool) -> bool {
        if st.segment.is_some() {
            self.retire_live(st, 0);
            *wake = true;
        }
        let took = self.take_ready(st);
        // One fewer ready: the preparer should replace it now, not at its
        // next timeout.
        *wake |= took;
        took
    }

    /// Makes the next prepared segment live, if there is one.
    fn take_ready(&self, st: &mut State) -> bool {
        let Some(mut seg) = self.ready.pop() else {
            return false;
        };
        seg.set_first_seq(st.seq);
        st.segment = Some(seg);
        st.offset = SEGMENT_HEADER_LEN;
        st.seg_first_seq = st.seq;
        st.seg_first_bytes = self.counters.bytes.load(Ordering::Relaxed);
        st.seg_gaps = 0;
        self.counters.bump(&self.counters.segments, 1);
        true
    }

    /// Writes the seal record into the live segment and hands it to the
    /// background thread.
    fn retire_live(&self, st: &mut State, flags: u64) {
        let Some(mut seg) = st.segment.take() else {
            return;
        };
        // Data and gap records since the segment went live.
        let records = st.seq - st.seg_first_seq;
        let data_bytes = self.counters.bytes.load(Ordering::Relaxed) - st.seg_first_bytes;
        let seal = SealPayload {
            records: U64::new(records),
            data_bytes: U64::new(data_bytes),
            flags: U64::new(flags),
            reserved: U64::new(0),
        };
        let ts = st.last_ts.max(st.gap.last_ts);
        seg.write_record(
            st.offset,
            RecordKind::Seal,
            0,
            ts,
            st.seq as u32,
            seal.as_bytes(),
        );
        st.seq += 1;
        let used = st.offset + SEAL_RECORD_LEN;
        let retired = Retired {
            segment: seg,
            used,
            records: records - st.seg_gaps,
            data_bytes,
            last_ts: ts,
        };
        let queued = if self.spilling.load(Ordering::Acquire) {
            Err(retired)
        } else {
            self.retired.push(retired)
        };
        if let Err(r) = queued {
            self.spill(r);
        }
    }

    /// Keeps a sealed segment for the retirer when its queue is full.
    #[cold]
    #[inline(never)]
    fn spill(&self, r: Retired) {
        let mut spilled = self.spilled.lock().unwrap_or_else(|p| p.into_inner());
        spilled.push_back(r);
        self.spilling.store(true, Ordering::Release);
    }

    /// The oldest sealed segment waiting to be moved, if any.
    pub fn pop_retired(&self) -> Option<Retired> {
        if let Some(r) = self.retired.pop() {
            return Some(r);
        }
        if !self.spilling.load(Ordering::Acquire) {
            return None;
        }
        let mut spilled = self.spilled.lock().unwrap_or_else(|p| p.into_inner());
        let r = spilled.pop_front();
        if spilled.is_empty() {
            self.spilling.store(false, Ordering::Release);
        }
        r
    }

    /// Closes the channel: writes any pending gap, seals the live segment as
    /// the channel's last and retires it. Later appends are dropped.
    pub fn close(&self) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        if !st.gap.is_empty() {
            let room = st.segment.is_some()
                && st.offset + GAP_RECORD_LEN + SEAL_RECORD_LEN <= st.capacity();
            if !room {
                let mut rotated = false;
                self.rotate(&mut st, &mut rotated);
            }
            self.flush_gap(&mut st);
        }
        if st.segment.is_none() {
            // Nothing was ever written here, or the last segment is already
            // retired: a fresh one carries the final seal, if one is ready.
            self.take_ready(&mut st);
        }
        self.retire_live(&mut st, SEAL_FLAG_FINAL);
    }
}

impl State {
    #[inline]
    fn capacity(&self) -> usize {
        self.segment.as_ref().map_or(0, |s| s.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::segment::SessionFacts;

    const SEGMENT_BYTES: usize = 64 << 10;

    /// More sealed segments than the retire queue holds, with the retirer
    /// behind: every one is still handed over, in order, none lost.
    #[test]
    fn sealed_segments_beyond_the_queue_are_kept_for_the_retirer() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let session = SessionFacts {
            session_id: [7; 16],
            session_start_unix_ns: 1,
            monotonic_base_ns: 0,
            checksum_at_append: false,
        };
        // A queue of 3 (one staged segment allowed, plus two).
        let ch = Channel::new("main", 0, SEGMENT_BYTES, 1);
        let segments = 8u64;
        let data = vec![0x5a; 40_000]; // one record per segment
        let mut wake = false;
        let mut got = Vec::new();
        let mut check = |r: Retired| {
            assert_eq!(r.records, 1);
            assert_eq!(r.data_bytes, data.len() as u64);
            got.push(r.segment.index());
        };
        for index in 0..segments {
            let seg =
                MappedSegment::create(dir.path(), "main", index, SEGMENT_BYTES, &session).unwrap();
            ch.ready.push(seg).unwrap();
            assert!(ch.append(Direction::ServerToClient, index, &data, &mut wake));
            if index == 5 {
                // 0..=4 retired: three queued, two spilled. The retirer takes
                // one; the queue has room, but later segments must not pass
                // the spilled ones.
                assert!(ch.retired.is_full());
                check(ch.pop_retired().unwrap());
            }
        }
        ch.close();
        assert_eq!(ch.counters.dropped_records.load(Ordering::Relaxed), 0);
        while let Some(r) = ch.pop_retired() {
            check(r);
        }
        assert_eq!(got, (0..segments).collect::<Vec<_>>());
        assert!(!ch.spilling.load(Ordering::Acquire));
        assert!(ch.spilled.lock().unwrap().is_empty());
    }
}
