//! Excerpts: part of a capture as one classic pcap, written to any `Write`
//! (a `Vec<u8>`, a file, a zip entry), for bug reports.
//!
//! The packets are made exactly as [`crate::convert()`] makes a merged file:
//! the same [`ChannelFramer`] per channel (synthetic TCP handshake and SPICE
//! link phase in front of each channel's first packet, gap handling,
//! redaction, the FIN exchange of a cleanly closed channel) and the same
//! time-ordered merge ([`merge_into`]). With [`Selection::All`] the output
//! is byte for byte what `convert -w FILE` writes in classic pcap.
//!
//! What is left out is left out whole records at a time, and only in front:
//! each direction of each channel keeps a run of its newest records (up to
//! the end of the selection) that begins at a SPICE message, found by
//! walking the mini headers from the stream's start
//! ([`crate::spice::messages::MessageFramer`]). A stream starting inside a message
//! would not decode: Wireshark's SPICE dissector follows the link phase
//! with one mini header after another. The first record kept follows the
//! synthetic opening directly, with the sequence numbers a whole stream's
//! first record has ([`ChannelFramer::with_cut`]).
//!
//! Two passes over the capture: the first learns where each stream is cut,
//! the second frames the records chosen. [`Selection::All`] and
//! [`Selection::Window`] decide each record's fate as the first pass reads
//! it; [`Selection::Newest`] goes back from the newest record, so the first
//! pass keeps an index (time, direction, size, whether it starts a message)
//! of the newest [`MAX_INDEXED_RECORDS`] data records only (32 bytes a
//! record, 64 MiB at most while it is gathered) whatever the capture
//! holds. Memory is that index plus what a merged conversion holds; the
//! packets stream to the writer. A capture still being written is read as
//! it was in the first pass: newer records are left for the next excerpt,
//! and if the flight recorder deleted a
//! channel's oldest segment between the passes the excerpt fails with
//! [`ExcerptError::Changed`] rather than cut in the wrong place.

use std::cmp::Ordering;
use std::io::{self, Write};
use std::path::Path;

use pcap_file::PcapError;
use spool::read::event::{Damage, DamageTotals, Event};
use spool::read::reader::ReadStats;
use spool::store::limit::Trimmed;

use crate::net::tcp::{HEADERS_LEN, MAX_FRAME_LEN, MAX_SEGMENT_PAYLOAD};
use crate::output::{Format, PacketSink};
use crate::pipeline::clock::{PacketClock, TimeMode};
use crate::pipeline::convert::{framer_for, ConvertError};
use crate::pipeline::framing::{ChannelFramer, Synthesis};
use crate::pipeline::merge::{drained_note, merge_into, ChannelSource};
use crate::pipeline::opened::{Access, OpenedCapture, Opening};
use crate::pipeline::report::{ChannelReport, ConvertReport, Cut};
use crate::spice::channels::{PortMap, SERVER_PORT};
use crate::spice::link::SPICE_MAGIC;
use crate::spice::messages::{plausible_start, MessageFramer};
use crate::spice::redact::Redaction;

/// Bytes of a classic pcap file header.
pub const PCAP_FILE_HEADER_LEN: u64 = 24;
/// Bytes of a classic pcap record header.
pub const PCAP_RECORD_HEADER_LEN: u64 = 16;

/// Data records [`Selection::Newest`] indexes: the newest this many of the
/// selected channels (a record older than all of them is never kept). The
/// smallest record costs 70 bytes of pcap (record header, frame headers),
/// so a 24 MB budget holds at most about 340,000 records and the index
/// holds more than any budget up to about 73 MB can take, unless the
/// streams that stop first leave newer records the walk must pass over.
/// The index takes at most 64 MiB whatever the capture holds (twice this
/// many records of 32 bytes while it is gathered): it once held every
/// record, and 155 KB of compressed tiny records made it 2 GB.
pub const MAX_INDEXED_RECORDS: usize = 1 << 20;

/// Which records an excerpt keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every record.
    All,
    /// The newest traffic whose pcap — file header, records, and the
    /// synthetic packets of every channel that keeps something — fits in
    /// `budget_bytes`. Going back from the newest record, every stream
    /// (channel and direction) takes older records while the budget lasts;
    /// a stream whose next older record does not fit stops there, and gives
    /// back what it took since its last message start, so the budget goes
    /// to the other streams rather than to a message that cannot be shown
    /// whole. A link phase the capture recorded (ryll records after it) is
    /// never kept this way, as both directions' would have to be: a channel
    /// that has one gets a synthetic link phase instead.
    Newest {
        /// Size limit of the whole pcap file.
        budget_bytes: u64,
    },
    /// The records of session times `from_ns..=until_ns` (ns since session
    /// start); each stream starts at its first message start at or after
    /// `from_ns`.
    Window {
        /// Session time of the oldest record wanted.
        from_ns: u64,
        /// Session time of the newest record wanted.
        until_ns: u64,
    },
}

/// What [`write_excerpt`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcerptOptions {
    /// Channels to include; empty means all of them.
    pub channels: Vec<String>,
    /// Which records.
    pub selection: Selection,
    /// What to zero before writing (default: nothing).
    pub redact: Redaction,
    /// What to make up around the recorded bytes (default: everything, so
    /// that Wireshark decodes SPICE).
    pub synth: Synthesis,
    /// Absolute (default) or relative timestamps.
    pub time: TimeMode,
}

impl ExcerptOptions {
    /// `selection` of all channels, nothing redacted, everything
    /// synthesized, absolute timestamps.
    pub fn new(selection: Selection) -> ExcerptOptions {
        ExcerptOptions {
            channels: Vec::new(),
            selection,
            redact: Redaction::NONE,
            synth: Synthesis::ALL,
            time: TimeMode::Absolute,
        }
    }
}

/// Why an excerpt failed.
#[derive(Debug, thiserror::Error)]
pub enum ExcerptError {
    /// The capture could not be read, or a channel asked for is not in it.
    #[error(transparent)]
    Capture(#[from] ConvertError),
    /// The capture changed under the excerpt in a way it cannot follow: the
    /// flight recorder deleted a channel's oldest records between the two
    /// passes. Trying again reads the capture as it is now.
    #[error("{channel}: the capture's oldest records were deleted while it was read")]
    Changed {
        /// The channel that changed.
        channel: String,
    },
    /// Writing the pcap failed; what was written is incomplete.
    #[error("writing the excerpt: {0}")]
    Write(#[source] PcapError),
}

/// One data record as the first pass reads it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    ts_ns: u64,
    /// Records the first pass read before this one (set by
    /// [`Planner::add`]): on equal times, the merge's order (channels in
    /// turn, each in its own order).
    order: u64,
    /// Payload bytes.
    len: u32,
    /// Index of the channel among the selected ones.
    channel: u32,
    /// Direction: 0 client→server, 1 server→client.
    dir: u8,
    /// The record starts a SPICE message of its stream.
    boundary: bool,
}

impl Entry {
    /// Frames (TCP segments) of the record.
    fn packets(&self) -> u64 {
        frames_of(self.len as usize)
    }

    /// Bytes of its frames, headers included (pcap record headers not).
    fn frame_bytes(&self) -> u64 {
        self.packets() * HEADERS_LEN as u64 + u64::from(self.len)
    }

    /// Bytes in the pcap: record headers, frame headers, payload.
    fn cost(&self) -> u64 {
        self.packets() * PCAP_RECORD_HEADER_LEN + self.frame_bytes()
    }
}

/// Newer is greater: time, then the order read.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ts_ns, self.order).cmp(&(other.ts_ns, other.order))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

/// How much of a channel (or stream) is written: records, frames, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    records: u64,
    frames: u64,
    /// Frame bytes, pcap record headers not counted.
    bytes: u64,
}

impl Tally {
    fn add(&mut self, e: &Entry) {
        self.records += 1;
        self.frames += e.packets();
        self.bytes += e.frame_bytes();
    }

    fn absorb(&mut self, other: Tally) {
        self.records += other.records;
        self.frames += other.frames;
        self.bytes += other.bytes;
    }
}

/// A [`Selection::Window`] being decided record by record, per channel.
#[derive(Debug, Clone, Default)]
struct WindowCut {
    /// Per direction: the first message start at or after `from_ns`, as a
    /// count of the direction's records before it.
    start: [Option<u64>; 2],
    /// Records read before the first after `until_ns`.
    end: Option<u64>,
    kept: Tally,
}

/// What the first pass keeps to decide the cut: per record for `Window`,
/// the newest records for `Newest`.
enum Planner {
    All,
    Window {
        from_ns: u64,
        until_ns: u64,
        channels: Vec<WindowCut>,
    },
    Newest {
        budget_bytes: u64,
        /// The newest records read so far, up to twice
        /// [`MAX_INDEXED_RECORDS`] between two calls of [`keep_newest`].
        newest: Vec<Entry>,
        /// Records read so far.
        read: u64,
    },
}

impl Planner {
    fn new(selection: Selection) -> Planner {
        match selection {
            Selection::All => Planner::All,
            Selection::Window { from_ns, until_ns } => Planner::Window {
                from_ns,
                until_ns,
                channels: Vec::new(),
            },
            Selection::Newest { budget_bytes } => Planner::Newest {
                budget_bytes,
                newest: Vec::new(),
                read: 0,
            },
        }
    }

    /// Takes the next data record of the first pass; `seen` is how many
    /// records of its direction, and `read` of its channel, came before.
    fn add(&mut self, mut e: Entry, seen: u64, read: u64) {
        match self {
            Planner::All => {}
            Planner::Window {
                from_ns,
                until_ns,
                channels,
            } => {
                let ci = e.channel as usize;
                if channels.len() <= ci {
                    channels.resize(ci + 1, WindowCut::default());
                }
                let w = &mut channels[ci];
                let d = usize::from(e.dir);
                if e.ts_ns > *until_ns && w.end.is_none() {
                    w.end = Some(read);
                }
                if w.start[d].is_none() && e.ts_ns >= *from_ns && e.boundary {
                    w.start[d] = Some(seen);
                }
                if w.start[d].is_some() && w.end.is_none() {
                    w.kept.add(&e);
                }
            }
            Planner::Newest {
                newest, read: n, ..
            } => {
                e.order = *n;
                *n += 1;
                newest.push(e);
                if newest.len() >= 2 * MAX_INDEXED_RECORDS {
                    keep_newest(newest);
                }
            }
        }
    }

    /// Per channel: records left out in front of each direction (the cut),
    /// and records read in all (the end of a window); each channel's
    /// [`Indexed::cut`] filled in.
    fn plan(self, indexed: &mut [Indexed]) -> (Vec<[u64; 2]>, Vec<u64>) {
        let all = |ix: &Indexed| ix.per_dir[0] + ix.per_dir[1];
        let (cuts, limits, kept): (Vec<[u64; 2]>, Vec<u64>, Vec<Tally>) = match self {
            Planner::All => (
                vec![[0; 2]; indexed.len()],
                indexed.iter().map(all).collect(),
                indexed.iter().map(|ix| ix.total).collect(),
            ),
            Planner::Window { mut channels, .. } => {
                channels.resize(indexed.len(), WindowCut::default());
                let cuts = indexed
                    .iter()
                    .zip(&channels)
                    .map(|(ix, w)| [0, 1].map(|d| w.start[d].unwrap_or(ix.per_dir[d])))
                    .collect();
                let limits = indexed
                    .iter()
                    .zip(&channels)
                    .map(|(ix, w)| w.end.unwrap_or_else(|| all(ix)))
                    .collect();
                (cuts, limits, channels.iter().map(|w| w.kept).collect())
            }
            Planner::Newest {
                budget_bytes,
                newest,
                ..
            } => {
                let mut newest = newest;
                keep_newest(&mut newest);
                // Newest first; no two are equal (`order`).
                newest.sort_unstable_by(|a, b| b.cmp(a));
                let kept = newest_within(&newest, indexed, budget_bytes);
                let cuts = indexed
                    .iter()
                    .zip(&kept)
                    .map(|(ix, k)| [0, 1].map(|d| ix.per_dir[d] - k[d].records))
                    .collect();
                let tallies = kept
                    .iter()
                    .map(|[a, b]| {
                        let mut t = *a;
                        t.absorb(*b);
                        t
                    })
                    .collect();
                (cuts, indexed.iter().map(all).collect(), tallies)
            }
        };
        for (ix, k) in indexed.iter_mut().zip(kept) {
            ix.cut.kept_records = k.records;
            ix.cut.omitted_frames = ix.total.frames - k.frames;
            ix.cut.omitted_bytes = ix.total.bytes - k.bytes;
        }
        (cuts, limits)
    }
}

/// What the first pass learned about one channel: the whole channel as it
/// read it (what the report says of it), and how much of it the second
/// pass writes.
struct Indexed {
    name: String,
    stats: ReadStats,
    /// The first damaged regions in detail, and the totals of all.
    damage: Vec<Damage>,
    damage_totals: DamageTotals,
    trimmed: Option<Trimmed>,
    cut: Cut,
    /// Data records per direction.
    per_dir: [u64; 2],
    /// The channel's data records, frames and frame bytes.
    total: Tally,
    /// Bytes of the channel's synthetic packets, pcap record headers
    /// included (at most; see [`ChannelFramer::synthetic_frame_lens`]).
    overhead: u64,
}

/// Frames of a record of `len` payload bytes: one per
/// [`MAX_SEGMENT_PAYLOAD`] bytes, and one for an empty record.
fn frames_of(len: usize) -> u64 {
    len.div_ceil(MAX_SEGMENT_PAYLOAD).max(1) as u64
}

/// Writes the part of the capture in `capture` that `opts` selects to
/// `out` as a classic pcap (nanosecond timestamps), and says what it wrote:
/// the report `convert` gives, each channel's counts those of the whole
/// channel, with what the excerpt kept of it and left out
/// ([`ChannelReport::cut`]). The report does not count the pcap's bytes:
/// they went to `out`, and a caller who needs the size counts them there
/// (a `Vec`'s length, a counting writer around a zip entry).
/// `out` is written through a buffer and flushed at the end.
pub fn write_excerpt<W: Write>(
    capture: &Path,
    opts: &ExcerptOptions,
    out: W,
) -> Result<ConvertReport, ExcerptError> {
    let mut opened = OpenedCapture::open(
        capture,
        &Opening {
            access: Access::Read { map: false },
            channels: &opts.channels,
            time: opts.time,
            redact: opts.redact,
            server_port: SERVER_PORT,
            protect_inputs: false,
        },
    )?;
    // Pass 1: what decides the cut.
    let (planner, mut indexed) = index_channels(&opened, opts);
    let clock = opened.clock(indexed.iter().any(|ix| ix.total.records > 0));
    // Per channel: records left out in front of each direction, and records
    // read in all (the end of a window).
    let (cuts, limits) = planner.plan(&mut indexed);

    // Pass 2: the records kept, framed and merged as `convert` does.
    let mut sources = Vec::with_capacity(indexed.len());
    for (ci, ix) in indexed.iter().enumerate() {
        let Some(reader) = opened.cap.reader(&ix.name) else {
            return Err(ExcerptError::Changed {
                channel: ix.name.clone(),
            });
        };
        let framer = framer_for(&reader, &opened.ports, ci as u32, opts.synth, opts.redact)
            .with_cut(cuts[ci]);
        sources.push(ChannelSource::new(reader, framer).planned(limits[ci], ix.stats.first_ts_ns));
    }
    write_merged(&mut sources, clock, out)?;
    let mut report = opened.report;
    report.problems.extend(drained_note(&sources));
    for (s, ix) in sources.iter().zip(indexed) {
        report
            .channels
            .push(channel_report(s.framer(), ix, &opened.ports));
    }
    Ok(report)
}

/// Pass 1 over every selected channel of `opened`: each data record given
/// to the [`Planner`] of `opts.selection`, in channel order, and what was
/// learnt of each channel.
fn index_channels(opened: &OpenedCapture, opts: &ExcerptOptions) -> (Planner, Vec<Indexed>) {
    let mut planner = Planner::new(opts.selection);
    let mut indexed: Vec<Indexed> = Vec::with_capacity(opened.selected.len());
    for name in &opened.selected {
        let Some(reader) = opened.cap.reader(name) else {
            continue;
        };
        let ci = u32::try_from(indexed.len()).unwrap_or(u32::MAX);
        indexed.push(index_channel(
            reader,
            name,
            ci,
            &opened.ports,
            opts,
            &mut planner,
        ));
    }
    (planner, indexed)
}

/// Pass 2's writing: `sources` merged into `out` as a classic pcap, which
/// is flushed; [`ExcerptError::Changed`] if a channel was not what pass 1
/// read.
fn write_merged<W: Write>(
    sources: &mut [ChannelSource],
    clock: PacketClock,
    out: W,
) -> Result<(), ExcerptError> {
    let buffered = io::BufWriter::with_capacity(crate::output::OUTPUT_BUFFER_BYTES, out);
    let mut sink = PacketSink::new(buffered, Format::Pcap, &[]).map_err(ExcerptError::Write)?;
    let mut frame = Vec::with_capacity(MAX_FRAME_LEN);
    merge_into(sources, &mut sink, clock, &mut frame, &mut |_| {}).map_err(ExcerptError::Write)?;
    if let Some(s) = sources.iter().find(|s| s.diverged()) {
        return Err(ExcerptError::Changed {
            channel: s.reader().channel().to_string(),
        });
    }
    sink.into_inner()
        .flush()
        .map_err(|e| ExcerptError::Write(PcapError::IoError(e)))
}

/// The report of channel `ix`, whose kept records `framer` wrote: the
/// whole channel's counts, and its cut.
fn channel_report(framer: &ChannelFramer, ix: Indexed, ports: &PortMap) -> ChannelReport {
    let channel = ChannelReport::new(
        &ix.name,
        ports.port(&ix.name),
        &ix.stats,
        (&ix.damage, ix.damage_totals),
        ix.trimmed.as_ref(),
        framer,
        None,
    );
    ChannelReport {
        cut: Some(Cut {
            first_written_ns: framer.time_span_ns().map(|(a, _)| a),
            ..ix.cut
        }),
        ..channel
    }
}

/// Pass 1 over channel `name` (slot `channel` of the excerpt): reads it
/// whole through `reader`, gives `planner` an [`Entry`] per data record,
/// and returns what the plan and the report need of the channel.
fn index_channel(
    mut reader: spool::read::reader::ChannelReader,
    name: &str,
    channel: u32,
    ports: &PortMap,
    opts: &ExcerptOptions,
    planner: &mut Planner,
) -> Indexed {
    let trimmed = reader.trimmed().is_some_and(|t| t.segments > 0);
    let fresh = || {
        if trimmed {
            MessageFramer::lost()
        } else {
            MessageFramer::new()
        }
    };
    let mut framers = [fresh(), fresh()];
    let mut per_dir = [0u64; 2];
    let mut total = Tally::default();
    while let Some(event) = reader.next_event() {
        match event {
            Event::Data(d) => {
                let dir = d.direction.to_byte() & 1;
                let f = &mut framers[usize::from(dir)];
                if f.is_lost() && plausible_start(d.payload) {
                    f.resume();
                }
                // A stream that opens with a recorded link phase is
                // never kept from there when cut: the other direction
                // may be cut after its own, and the dissector needs
                // both. The cut stream gets a synthetic one instead.
                let link = f.at_start() && d.payload.starts_with(SPICE_MAGIC);
                let entry = Entry {
                    ts_ns: d.ts_ns,
                    order: 0,
                    len: u32::try_from(d.payload.len()).unwrap_or(u32::MAX),
                    channel,
                    dir,
                    boundary: f.at_boundary() && !link,
                };
                planner.add(entry, per_dir[usize::from(dir)], total.records);
                total.add(&entry);
                f.feed(d.direction, d.payload);
                per_dir[usize::from(dir)] += 1;
            }
            Event::Gap(g) => {
                framers[0].skip(g.bytes_c2s);
                framers[1].skip(g.bytes_s2c);
            }
            Event::Damage(_) => framers.iter_mut().for_each(MessageFramer::lose),
        }
    }
    let st = reader.stats();
    let framer = framer_for(&reader, ports, 0, opts.synth, opts.redact);
    let lens = framer.synthetic_frame_lens();
    // The FIN exchange (the last three) only follows a clean close.
    let synthetic = if opts.synth.tcp && !st.closed_cleanly {
        &lens[..lens.len().saturating_sub(3)]
    } else {
        &lens[..]
    };
    let overhead = synthetic
        .iter()
        .map(|&l| PCAP_RECORD_HEADER_LEN + l as u64)
        .sum();
    Indexed {
        name: name.to_string(),
        stats: st.clone(),
        damage: reader.damage().to_vec(),
        damage_totals: reader.damage_totals(),
        trimmed: reader.trimmed().copied(),
        cut: Cut::default(),
        per_dir,
        total,
        overhead,
    }
}

/// Leaves the newest [`MAX_INDEXED_RECORDS`] of `entries`, in any order:
/// linear time, so that indexing costs a constant per record.
fn keep_newest(entries: &mut Vec<Entry>) {
    if let Some(older) = entries.len().checked_sub(MAX_INDEXED_RECORDS) {
        if older > 0 {
            entries.select_nth_unstable(older);
            entries.drain(..older);
        }
    }
}

/// [`Selection::Newest`]: what is kept at the end of each stream, going
/// back through `newest` (newest first, the merge's order on equal times).
fn newest_within(newest: &[Entry], indexed: &[Indexed], budget: u64) -> Vec<[Tally; 2]> {
    #[derive(Default, Clone, Copy)]
    struct Stream {
        /// Records committed: the newest, from a message start on.
        kept: Tally,
        /// Records taken since, not yet back to a message start.
        pending: Tally,
        pending_cost: u64,
        closed: bool,
    }
    let mut streams = vec![[Stream::default(); 2]; indexed.len()];
    // Whether a channel's synthetic packets are paid for.
    let mut charged = vec![false; indexed.len()];
    let mut used = PCAP_FILE_HEADER_LEN;
    for e in newest {
        let ci = e.channel as usize;
        let d = usize::from(e.dir);
        if streams[ci][d].closed {
            continue;
        }
        let extra = if charged[ci] { 0 } else { indexed[ci].overhead };
        if used.saturating_add(extra).saturating_add(e.cost()) > budget {
            let s = &mut streams[ci][d];
            s.closed = true;
            used -= s.pending_cost;
            s.pending = Tally::default();
            s.pending_cost = 0;
            let [a, b] = streams[ci];
            if charged[ci]
                && a.kept.records + a.pending.records + b.kept.records + b.pending.records == 0
            {
                charged[ci] = false;
                used -= indexed[ci].overhead;
            }
            continue;
        }
        used += extra + e.cost();
        charged[ci] = true;
        let s = &mut streams[ci][d];
        s.pending.add(e);
        s.pending_cost += e.cost();
        if e.boundary {
            s.kept.absorb(s.pending);
            s.pending = Tally::default();
            s.pending_cost = 0;
        }
    }
    streams.iter().map(|[a, b]| [a.kept, b.kept]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts_ns: u64) -> Entry {
        Entry {
            ts_ns,
            order: 0,
            len: 0,
            channel: 0,
            dir: 0,
            boundary: true,
        }
    }

    #[test]
    fn an_index_entry_takes_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    /// Any number of records leaves an index of the newest
    /// [`MAX_INDEXED_RECORDS`], times tied broken by the order read.
    #[test]
    fn the_newest_index_holds_a_bounded_number_of_the_newest_records() {
        let mut planner = Planner::new(Selection::Newest { budget_bytes: 0 });
        let n = 3 * MAX_INDEXED_RECORDS as u64 + 7;
        for i in 0..n {
            // Times out of order, and every time twice.
            planner.add(entry((i * 7919 % n) / 2), 0, 0);
            let Planner::Newest { newest, .. } = &planner else {
                unreachable!()
            };
            assert!(newest.len() < 2 * MAX_INDEXED_RECORDS);
        }
        let Planner::Newest { mut newest, .. } = planner else {
            unreachable!()
        };
        keep_newest(&mut newest);
        assert_eq!(newest.len(), MAX_INDEXED_RECORDS);
        newest.sort_unstable();
        let oldest_kept = newest[0];
        // Exactly the newest: nothing left out is newer than what is kept.
        let left_out = (0..n)
            .map(|i| ((i * 7919 % n) / 2, i))
            .filter(|&k| k < (oldest_kept.ts_ns, oldest_kept.order))
            .count();
        assert_eq!(left_out as u64, n - MAX_INDEXED_RECORDS as u64);
        assert!(newest.windows(2).all(|w| w[0] < w[1]));
    }
}
