//! Merging several channels into one file in timestamp order.
//!
//! Each channel is read by its own [`ChannelReader`], streaming: at any time
//! a channel holds one segment in memory plus a copy of its *head*, the next
//! data record not yet written. The copy is needed because a reader's
//! payloads borrow its buffer until the next call, and a k-way merge has to
//! look at k heads at once. The copy goes into a per-channel `Vec` that is
//! reused, so merging allocates only as the largest record grows it.
//!
//! The merge picks the head with the smallest timestamp (ties go to the
//! channel listed first, so the output is deterministic) from a binary
//! heap: a session has about ten channels, but a hostile capture can list
//! tens of thousands, and a scan of every head per record would make the
//! merge quadratic.
//!
//! Gap records change a channel's TCP sequence numbers. They are applied
//! while that channel's next head is fetched — after its previous record was
//! written and before the next one is — which is exactly their place in the
//! channel's own stream; other channels are unaffected.
//!
//! The synthetic packets of a channel ([`ChannelFramer`]) keep the file in
//! time order: its opening is written with its first record and stamped no
//! earlier than the last packet already written (the merge's *floor*), and
//! its FIN exchange right after its last record, with that record's time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

use pcap_file::PcapError;
use spool::read::event::Event;
use spool::read::reader::ChannelReader;
use spool::store::format::Direction;

use crate::net::tcp::TcpStreamBuilder;
use crate::output::PacketSink;
use crate::pipeline::clock::PacketClock;
use crate::pipeline::framing::{ChannelFramer, Record};

/// One channel taking part in a merge.
pub struct ChannelSource {
    reader: ChannelReader,
    framer: ChannelFramer,
    head: Option<(u64, Direction)>,
    payload: Vec<u8>,
    /// Data records read so far.
    read: u64,
    /// What an excerpt's plan expects: read at most this many data
    /// records, the first at this time.
    plan: Option<Plan>,
    /// The records read are not those the plan was made from.
    diverged: bool,
}

/// What the records of a channel were when an excerpt was planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    records: u64,
    first_ts_ns: Option<u64>,
}

impl ChannelSource {
    /// A source reading `reader`, framing its bytes with `framer` (which
    /// knows the pcapng interface to write on).
    pub fn new(reader: ChannelReader, framer: ChannelFramer) -> ChannelSource {
        ChannelSource {
            reader,
            framer,
            head: None,
            payload: Vec::new(),
            read: 0,
            plan: None,
            diverged: false,
        }
    }

    /// Reads only the channel's first `records` data records, the first of
    /// them at `first_ts_ns`: the records an earlier reading of a capture
    /// that is still being written found (what is newer is left out). If
    /// the first differs — the flight recorder deleted the channel's oldest
    /// segment in between — the channel stops there and
    /// [`ChannelSource::diverged`] says so.
    pub fn planned(mut self, records: u64, first_ts_ns: Option<u64>) -> ChannelSource {
        self.plan = Some(Plan {
            records,
            first_ts_ns,
        });
        self
    }

    /// Whether the records differed from the plan ([`ChannelSource::planned`]).
    pub fn diverged(&self) -> bool {
        self.diverged
    }

    /// The reader (for its counters and damage list).
    pub fn reader(&self) -> &ChannelReader {
        &self.reader
    }

    /// The framer (for its counters).
    pub fn framer(&self) -> &ChannelFramer {
        &self.framer
    }

    /// Frames written from this channel so far, synthetic ones included.
    pub fn frames(&self) -> u64 {
        self.framer.frames()
    }

    /// The TCP state (for tests and reports).
    pub fn stream(&self) -> &TcpStreamBuilder {
        self.framer.stream()
    }

    /// Fetches the next data record into the head, applying any gap records
    /// on the way. Damage is left in the reader's damage list.
    fn fetch(&mut self) {
        self.head = None;
        while let Some(event) = self.reader.next_event() {
            match event {
                Event::Data(d) => {
                    if let Some(plan) = self.plan {
                        if self.read >= plan.records {
                            break;
                        }
                        if self.read == 0 && plan.first_ts_ns != Some(d.ts_ns) {
                            self.diverged = true;
                            break;
                        }
                    }
                    self.read += 1;
                    if !self.framer.admit(d.direction, d.payload) {
                        continue;
                    }
                    self.payload.clear();
                    self.payload.extend_from_slice(d.payload);
                    self.head = Some((d.ts_ns, d.direction));
                    break;
                }
                Event::Gap(g) => self.framer.gap(&g),
                Event::Damage(d) => self.framer.damage(&d),
            }
        }
    }

    /// Ends the channel once it has no more records.
    fn finish<W: Write>(
        &mut self,
        sink: &mut PacketSink<W>,
        clock: PacketClock,
        frame: &mut Vec<u8>,
    ) -> Result<(), PcapError> {
        let clean = self.reader.stats().closed_cleanly;
        self.framer.finish(sink, clock, clean, frame)
    }
}

/// Writes every record of every source into `sink`, in timestamp order,
/// with each channel's synthetic packets. `progress` is called with the
/// total segment bytes read so far whenever that changes.
pub fn merge_into<W: Write>(
    sources: &mut [ChannelSource],
    sink: &mut PacketSink<W>,
    clock: PacketClock,
    frame: &mut Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), PcapError> {
    for s in sources.iter_mut() {
        s.fetch();
        if s.head.is_none() {
            s.finish(sink, clock, frame)?;
        }
    }
    let mut reported = sources
        .iter()
        .map(|s| s.reader.stats().file_bytes)
        .fold(0, u64::saturating_add);
    progress(reported);
    // Time of the last packet written: synthetic packets never go before it.
    let mut floor = 0u64;
    // Every head, earliest first; ties by channel order.
    let mut heads: BinaryHeap<Reverse<(u64, usize)>> = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.head.map(|(ts, _)| Reverse((ts, i))))
        .collect();
    while let Some(Reverse((ts_ns, i))) = heads.pop() {
        let s = &mut sources[i];
        if let Some((_, direction)) = s.head {
            let record = Record {
                direction,
                ts_ns,
                payload: &s.payload,
            };
            s.framer.data(sink, clock, floor, record, frame)?;
            floor = ts_ns;
        }
        let before = s.reader.stats().file_bytes;
        s.fetch();
        match s.head {
            Some((ts, _)) => heads.push(Reverse((ts, i))),
            None => s.finish(sink, clock, frame)?,
        }
        let after = s.reader.stats().file_bytes;
        if after != before {
            // Only this source's count changed.
            reported = reported.saturating_add(after - before);
            progress(reported);
        }
    }
    Ok(())
}
