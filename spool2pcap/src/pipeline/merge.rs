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
//!
//! Memory: every channel holds its reader's window or current compressed
//! block (up to 8 MiB decoded) and its head, all at once. A session's ten
//! channels hold a few MiB; a capture built so that thousands of channels
//! each sit in a block of the largest size would hold gigabytes. So the
//! merge adds up what its channels hold, and past [`MERGE_BUDGET`] the
//! channel that went over is *drained*: its records are written at once,
//! ahead of the other channels' earlier ones, until it holds little again
//! or ends. Nothing is lost and the cost stays linear; only the time order
//! between channels gives, and [`ChannelSource::drained`] says where.

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

/// Bytes the channels of a merge may hold together (readers' windows and
/// blocks, heads) before the channel that goes over is drained: far above
/// what a real session's channels hold, and with the one channel over it
/// (a 16 MiB record and its copy, or an 8 MiB block) within the readers'
/// documented 256 MB.
pub const MERGE_BUDGET: usize = 128 << 20;

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
    /// Some records were written ahead of time order ([`MERGE_BUDGET`]).
    drained: bool,
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
            drained: false,
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

    /// Whether some of this channel's records were written ahead of other
    /// channels' earlier ones, to keep the merge within [`MERGE_BUDGET`].
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Bytes of memory this channel holds: its reader's and its head's.
    fn held(&self) -> usize {
        self.reader.held_bytes() + self.payload.capacity()
    }

    /// [`ChannelSource::fetch`], keeping `held`, the merge's total, up to
    /// date.
    fn fetch_counted(&mut self, held: &mut usize) {
        let before = self.held();
        self.fetch();
        *held = held.saturating_sub(before).saturating_add(self.held());
    }

    /// Writes the head (if there is one) through the channel's framer.
    fn write_head<W: Write>(
        &mut self,
        sink: &mut PacketSink<W>,
        clock: PacketClock,
        floor: u64,
        frame: &mut Vec<u8>,
    ) -> Result<(), PcapError> {
        if let Some((ts_ns, direction)) = self.head {
            let record = Record {
                direction,
                ts_ns,
                payload: &self.payload,
            };
            self.framer.data(sink, clock, floor, record, frame)?;
        }
        Ok(())
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
/// with each channel's synthetic packets (but see [`MERGE_BUDGET`]).
/// `progress` is called with the total segment bytes read so far whenever
/// that changes.
pub fn merge_into<W: Write>(
    sources: &mut [ChannelSource],
    sink: &mut PacketSink<W>,
    clock: PacketClock,
    frame: &mut Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), PcapError> {
    let merge = Merge {
        sink,
        clock,
        frame,
        held: 0,
        budget: MERGE_BUDGET,
        floor: 0,
    };
    merge.run(sources, progress)
}

/// The output side of a merge, and what its channels hold.
struct Merge<'a, W: Write> {
    sink: &'a mut PacketSink<W>,
    clock: PacketClock,
    frame: &'a mut Vec<u8>,
    /// Bytes all channels hold now ([`ChannelSource::held`]).
    held: usize,
    /// [`MERGE_BUDGET`], but in tests.
    budget: usize,
    /// Time of the last packet written in order: synthetic packets never
    /// go before it.
    floor: u64,
}

impl<W: Write> Merge<'_, W> {
    /// [`merge_into`] within `self.budget`.
    fn run(
        mut self,
        sources: &mut [ChannelSource],
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), PcapError> {
        for s in sources.iter_mut() {
            s.fetch_counted(&mut self.held);
            self.settle(s)?;
        }
        let mut reported = sources
            .iter()
            .map(|s| s.reader.stats().file_bytes)
            .fold(0, u64::saturating_add);
        progress(reported);
        // Every head, earliest first; ties by channel order.
        let mut heads: BinaryHeap<Reverse<(u64, usize)>> = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.head.map(|(ts, _)| Reverse((ts, i))))
            .collect();
        while let Some(Reverse((ts_ns, i))) = heads.pop() {
            let s = &mut sources[i];
            let before = s.reader.stats().file_bytes;
            self.advance(s)?;
            self.floor = ts_ns;
            self.settle(s)?;
            if let Some((ts, _)) = s.head {
                heads.push(Reverse((ts, i)));
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

    /// Writes `s`'s head and fetches its next.
    fn advance(&mut self, s: &mut ChannelSource) -> Result<(), PcapError> {
        s.write_head(self.sink, self.clock, self.floor, self.frame)?;
        s.fetch_counted(&mut self.held);
        Ok(())
    }

    /// After `s` fetched its head: ends it if it has none; drains it while
    /// the merge holds more than [`MERGE_BUDGET`] (which may end it).
    fn settle(&mut self, s: &mut ChannelSource) -> Result<(), PcapError> {
        while self.held > self.budget && s.head.is_some() {
            s.drained = true;
            self.advance(s)?;
        }
        if s.head.is_none() {
            s.finish(self.sink, self.clock, self.frame)?;
        }
        Ok(())
    }
}

/// What a report says when a merge drained channels ([`MERGE_BUDGET`]);
/// `None` if it kept time order throughout.
pub fn drained_note(sources: &[ChannelSource]) -> Option<String> {
    let drained: Vec<&str> = sources
        .iter()
        .filter(|s| s.drained)
        .map(|s| s.reader.channel())
        .collect();
    let (first, more) = (drained.first()?, drained.len() - 1);
    let others = match more {
        0 => String::new(),
        1 => " and 1 more channel".to_string(),
        n => format!(" and {n} more channels"),
    };
    let first = crate::guard::clean(first, crate::guard::MAX_NAME_CHARS);
    Some(format!(
        "channel {first}{others} written partly out of time order: the channels together held \
         more than the merge's {} MiB of memory (capture data read at once: compressed blocks, \
         large records); nothing was left out",
        MERGE_BUDGET >> 20
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture_builder::{simple_channel, write_manifest};
    use crate::net::tcp::SERVER_PORT;
    use crate::output::Format;
    use crate::pipeline::framing::Synthesis;
    use spool::read::capture::Capture;

    /// Channels `a` and `b`, three records each, their times interleaved.
    fn two_channels(dir: &std::path::Path) {
        let d = Direction::ServerToClient;
        simple_channel(dir, "a", &[(d, 1, b"a1"), (d, 3, b"a2"), (d, 5, b"a3")]);
        simple_channel(dir, "b", &[(d, 2, b"b1"), (d, 4, b"b2"), (d, 6, b"b3")]);
        write_manifest(dir, serde_json::json!({}));
    }

    /// The payloads of the merge of [`two_channels`] within `budget`, in
    /// file order, and which channels were drained.
    fn merged(budget: usize) -> (Vec<Vec<u8>>, Vec<bool>) {
        let dir = tempfile::tempdir().unwrap();
        two_channels(dir.path());
        let cap = Capture::open(dir.path()).unwrap();
        let mut sources: Vec<ChannelSource> = ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let framer = ChannelFramer::new(name, 40000 + i as u16, 0, Synthesis::NONE);
                ChannelSource::new(cap.reader(name).unwrap(), framer)
            })
            .collect();
        let mut sink = PacketSink::new(Vec::new(), Format::Pcap, &[]).unwrap();
        let mut frame = Vec::new();
        let merge = Merge {
            sink: &mut sink,
            clock: PacketClock::relative(),
            frame: &mut frame,
            held: 0,
            budget,
            floor: 0,
        };
        merge.run(&mut sources, &mut |_| {}).unwrap();
        let bytes = sink.into_inner();
        let payloads = testkit::tcp::segments(&bytes)
            .into_iter()
            .filter(|s| s.from_server(SERVER_PORT) && !s.payload.is_empty())
            .map(|s| s.payload)
            .collect();
        (
            payloads,
            sources.iter().map(ChannelSource::drained).collect(),
        )
    }

    #[test]
    fn within_the_budget_channels_merge_in_time_order() {
        let (payloads, drained) = merged(MERGE_BUDGET);
        let want: Vec<&[u8]> = vec![b"a1", b"b1", b"a2", b"b2", b"a3", b"b3"];
        assert_eq!(payloads, want);
        assert_eq!(drained, [false, false]);
    }

    /// With no memory to spare every channel is drained as it is reached:
    /// each whole, in its own order, nothing left out.
    #[test]
    fn past_the_budget_a_channel_is_drained_and_nothing_is_lost() {
        let (payloads, drained) = merged(0);
        let want: Vec<&[u8]> = vec![b"a1", b"a2", b"a3", b"b1", b"b2", b"b3"];
        assert_eq!(payloads, want);
        assert_eq!(drained, [true, true]);
    }
}
