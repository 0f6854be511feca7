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
//! Two passes over the capture: the first indexes every data record (time,
//! direction, packet bytes, whether it starts a message), the second frames
//! the records chosen. Memory is the index (24 bytes a record) plus what a
//! merged conversion holds; the packets stream to the writer. A capture
//! still being written is read as it was in the first pass: newer records
//! are left for the next excerpt, and if the flight recorder deleted a
//! channel's oldest segment between the passes the excerpt fails with
//! [`ExcerptError::Changed`] rather than cut in the wrong place.

use std::io::{self, Write};
use std::path::Path;

use pcap_file::PcapError;
use spool::read::reader::{Damage, Event, ReadStats};
use spool::store::limit::Trimmed;

use crate::net::tcp::{HEADERS_LEN, MAX_FRAME_LEN, MAX_SEGMENT_PAYLOAD};
use crate::output::{Format, PacketSink};
use crate::pipeline::clock::{PacketClock, TimeMode};
use crate::pipeline::convert::{framer_for, ConvertError};
use crate::pipeline::framing::{ChannelFramer, Synthesis};
use crate::pipeline::merge::{merge_into, ChannelSource};
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

/// One data record of the first pass.
struct Entry {
    ts_ns: u64,
    /// Bytes in the pcap: record headers, frame headers, payload.
    cost: u64,
    /// Frames (TCP segments) of the record.
    packets: u32,
    /// Index of the channel among the selected ones.
    channel: u32,
    /// Direction: 0 client→server, 1 server→client.
    dir: u8,
    /// The record starts a SPICE message of its stream.
    boundary: bool,
}

/// What the first pass learned about one channel: the whole channel as it
/// read it (what the report says of it), and how much of it the second
/// pass writes.
struct Indexed {
    name: String,
    stats: ReadStats,
    damage: Vec<Damage>,
    trimmed: Option<Trimmed>,
    cut: Cut,
    /// Data records per direction.
    per_dir: [u64; 2],
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
    // Pass 1: index every data record.
    let (entries, mut indexed) = index_channels(&opened, opts);
    let clock = opened.clock(!entries.is_empty());
    // Per channel: records left out in front of each direction, and records
    // read in all (the end of a window).
    let (cuts, limits) = plan(&entries, &indexed, opts.selection);
    count_left_out(&entries, (&cuts, &limits), &mut indexed);
    drop(entries);

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
    for (s, ix) in sources.iter().zip(indexed) {
        report
            .channels
            .push(channel_report(s.framer(), ix, &opened.ports));
    }
    Ok(report)
}

/// Pass 1 over every selected channel of `opened`: an [`Entry`] per data
/// record, in channel order, and what was learnt of each channel.
fn index_channels(opened: &OpenedCapture, opts: &ExcerptOptions) -> (Vec<Entry>, Vec<Indexed>) {
    let mut entries: Vec<Entry> = Vec::new();
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
            &mut entries,
        ));
    }
    (entries, indexed)
}

/// Counts, per channel of `indexed`, the records the plan (`cuts` in
/// front of each direction, `limits` records read in all) keeps, and the
/// frames and bytes it leaves out.
fn count_left_out(
    entries: &[Entry],
    (cuts, limits): (&[[u64; 2]], &[u64]),
    indexed: &mut [Indexed],
) {
    let mut seen = vec![[0u64; 2]; indexed.len()];
    let mut read = vec![0u64; indexed.len()];
    for e in entries {
        let ci = e.channel as usize;
        let d = usize::from(e.dir);
        let kept = seen[ci][d] >= cuts[ci][d] && read[ci] < limits[ci];
        seen[ci][d] += 1;
        read[ci] += 1;
        if kept {
            indexed[ci].cut.kept_records += 1;
        } else {
            let c = &mut indexed[ci].cut;
            c.omitted_frames += u64::from(e.packets);
            c.omitted_bytes += e.cost - u64::from(e.packets) * PCAP_RECORD_HEADER_LEN;
        }
    }
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
        &ix.damage,
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
/// whole through `reader`, adds an [`Entry`] per data record to `entries`,
/// and returns what the plan and the report need of the channel.
fn index_channel(
    mut reader: spool::read::reader::ChannelReader,
    name: &str,
    channel: u32,
    ports: &PortMap,
    opts: &ExcerptOptions,
    entries: &mut Vec<Entry>,
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
    while let Some(event) = reader.next_event() {
        match event {
            Event::Data(d) => {
                let dir = d.direction.to_byte() & 1;
                let f = &mut framers[usize::from(dir)];
                if f.is_lost() && plausible_start(d.payload) {
                    f.resume();
                }
                let n = d.payload.len();
                let packets = frames_of(n);
                // A stream that opens with a recorded link phase is
                // never kept from there when cut: the other direction
                // may be cut after its own, and the dissector needs
                // both. The cut stream gets a synthetic one instead.
                let link = f.at_start() && d.payload.starts_with(SPICE_MAGIC);
                entries.push(Entry {
                    ts_ns: d.ts_ns,
                    cost: packets * (PCAP_RECORD_HEADER_LEN + HEADERS_LEN as u64) + n as u64,
                    packets: u32::try_from(packets).unwrap_or(u32::MAX),
                    channel,
                    dir,
                    boundary: f.at_boundary() && !link,
                });
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
        trimmed: reader.trimmed().copied(),
        cut: Cut::default(),
        per_dir,
        overhead,
    }
}

/// Chooses, per channel, how many data records of each direction to leave
/// out in front (the cut) and how many data records to read in all.
fn plan(entries: &[Entry], indexed: &[Indexed], selection: Selection) -> (Vec<[u64; 2]>, Vec<u64>) {
    let all_records: Vec<u64> = indexed
        .iter()
        .map(|ix| ix.per_dir[0] + ix.per_dir[1])
        .collect();
    match selection {
        Selection::All => (vec![[0; 2]; indexed.len()], all_records),
        Selection::Window { from_ns, until_ns } => {
            // Each stream starts at its first message start at or after
            // `from_ns`; a channel ends before its first record after
            // `until_ns`.
            let mut cuts: Vec<[u64; 2]> = indexed.iter().map(|ix| ix.per_dir).collect();
            let mut found = vec![[false; 2]; indexed.len()];
            let mut seen = vec![[0u64; 2]; indexed.len()];
            let mut limits = all_records;
            let mut read = vec![0u64; indexed.len()];
            let mut ended = vec![false; indexed.len()];
            for e in entries {
                let ci = e.channel as usize;
                let d = usize::from(e.dir);
                if e.ts_ns > until_ns && !ended[ci] {
                    ended[ci] = true;
                    limits[ci] = read[ci];
                }
                if !found[ci][d] && e.ts_ns >= from_ns && e.boundary {
                    found[ci][d] = true;
                    cuts[ci][d] = seen[ci][d];
                }
                seen[ci][d] += 1;
                read[ci] += 1;
            }
            (cuts, limits)
        }
        Selection::Newest { budget_bytes } => {
            let kept = newest_within(entries, indexed, budget_bytes);
            let cuts = indexed
                .iter()
                .zip(&kept)
                .map(|(ix, k)| [ix.per_dir[0] - k[0], ix.per_dir[1] - k[1]])
                .collect();
            (cuts, all_records)
        }
    }
}

/// [`Selection::Newest`]: records kept at the end of each stream.
fn newest_within(entries: &[Entry], indexed: &[Indexed], budget: u64) -> Vec<[u64; 2]> {
    #[derive(Default, Clone, Copy)]
    struct Stream {
        /// Records committed: the newest, from a message start on.
        kept: u64,
        /// Records taken since, not yet back to a message start.
        pending: u64,
        pending_cost: u64,
        closed: bool,
    }
    let mut streams = vec![[Stream::default(); 2]; indexed.len()];
    // Whether a channel's synthetic packets are paid for.
    let mut charged = vec![false; indexed.len()];
    let mut used = PCAP_FILE_HEADER_LEN;
    // Stable order by time: records of one stream keep theirs on equal
    // times, and so do channels (the merge's order).
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| entries[i].ts_ns);
    for &i in order.iter().rev() {
        let e = &entries[i];
        let ci = e.channel as usize;
        let d = usize::from(e.dir);
        if streams[ci][d].closed {
            continue;
        }
        let extra = if charged[ci] { 0 } else { indexed[ci].overhead };
        if used.saturating_add(extra).saturating_add(e.cost) > budget {
            let s = &mut streams[ci][d];
            s.closed = true;
            used -= s.pending_cost;
            s.pending = 0;
            s.pending_cost = 0;
            let [a, b] = streams[ci];
            if charged[ci] && a.kept + a.pending + b.kept + b.pending == 0 {
                charged[ci] = false;
                used -= indexed[ci].overhead;
            }
            continue;
        }
        used += extra + e.cost;
        charged[ci] = true;
        let s = &mut streams[ci][d];
        s.pending += 1;
        s.pending_cost += e.cost;
        if e.boundary {
            s.kept += s.pending;
            s.pending = 0;
            s.pending_cost = 0;
        }
    }
    streams.iter().map(|[a, b]| [a.kept, b.kept]).collect()
}
