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
//! channel listed first, so the output is deterministic). A channel has few
//! enough peers (about ten) that a linear scan beats a heap.
//!
//! Gap records change a channel's TCP sequence numbers. They are applied
//! while that channel's next head is fetched — after its previous record was
//! written and before the next one is — which is exactly their place in the
//! channel's own stream; other channels are unaffected.

use std::io::Write;

use pcap_file::PcapError;
use spool::format::Direction;
use spool::reader::{ChannelReader, Event};

use crate::convert::Clock;
use crate::frames::TcpStreamBuilder;
use crate::output::PacketSink;

/// One channel taking part in a merge.
pub struct ChannelSource {
    reader: ChannelReader,
    stream: TcpStreamBuilder,
    interface: u32,
    head: Option<(u64, Direction)>,
    payload: Vec<u8>,
    frames: u64,
}

impl ChannelSource {
    /// A source reading `reader`, framing its bytes with `stream`, written on
    /// pcapng interface `interface`.
    pub fn new(reader: ChannelReader, stream: TcpStreamBuilder, interface: u32) -> ChannelSource {
        ChannelSource {
            reader,
            stream,
            interface,
            head: None,
            payload: Vec::new(),
            frames: 0,
        }
    }

    /// The reader (for its counters and damage list).
    pub fn reader(&self) -> &ChannelReader {
        &self.reader
    }

    /// Frames written from this channel so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The TCP state (for tests and reports).
    pub fn stream(&self) -> &TcpStreamBuilder {
        &self.stream
    }

    /// Fetches the next data record into the head, applying any gap records
    /// on the way. Damage is left in the reader's damage list.
    fn fetch(&mut self) {
        self.head = None;
        while let Some(event) = self.reader.next_event() {
            match event {
                Event::Data(d) => {
                    self.payload.clear();
                    self.payload.extend_from_slice(d.payload);
                    self.head = Some((d.ts_ns, d.direction));
                    return;
                }
                Event::Gap(g) => self.stream.gap(&g),
                Event::Damage(_) => {}
            }
        }
    }
}

/// Writes every record of every source into `sink`, in timestamp order.
/// `progress` is called with the total segment bytes read so far whenever
/// that changes.
pub fn merge_into<W: Write>(
    sources: &mut [ChannelSource],
    sink: &mut PacketSink<W>,
    clock: Clock,
    frame: &mut Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), PcapError> {
    for s in sources.iter_mut() {
        s.fetch();
    }
    let file_bytes = |sources: &[ChannelSource]| -> u64 {
        sources.iter().map(|s| s.reader.stats().file_bytes).sum()
    };
    let mut reported = file_bytes(sources);
    progress(reported);
    loop {
        let mut next: Option<(usize, u64)> = None;
        for (i, s) in sources.iter().enumerate() {
            if let Some((ts, _)) = s.head {
                if next.map_or(true, |(_, best)| ts < best) {
                    next = Some((i, ts));
                }
            }
        }
        let Some((i, ts_ns)) = next else { break };
        let s = &mut sources[i];
        if let Some((_, direction)) = s.head {
            let ts = clock.timestamp(ts_ns);
            let interface = s.interface;
            s.frames += s.stream.push(direction, &s.payload, frame, |f| {
                sink.write(interface, ts, f)
            })?;
        }
        let before = s.reader.stats().file_bytes;
        s.fetch();
        if s.reader.stats().file_bytes != before {
            reported = file_bytes(sources);
            progress(reported);
        }
    }
    Ok(())
}
