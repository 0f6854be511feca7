//! One channel's way from spool records to packets: the data itself
//! ([`TcpStreamBuilder`]), and what the spool does not hold but Wireshark
//! needs to make sense of it.
//!
//! * Before the first data record: a TCP handshake (SYN, SYN-ACK, ACK) and,
//!   unless the channel's first client bytes already are a SPICE link
//!   message, a synthetic link phase ([`crate::spice::link`]). Their initial
//!   sequence numbers are chosen so that the data keeps ryll's numbers
//!   (client 1000, server 2000). They are stamped a microsecond apart just
//!   before the first record, never before session start nor (when merging)
//!   before a packet already written, so a file stays in time order.
//! * After the last record, if the spool says the channel was closed
//!   cleanly (its final seal): FIN/ACK from the client, FIN/ACK from the
//!   server, ACK. Without a clean close the connection just stops, which is
//!   what a crash looks like.
//! * Where the spool writer dropped traffic, sequence numbers jump (see
//!   [`TcpStreamBuilder::gap`]) and, in pcapng, the next packet carries a
//!   comment with the records, bytes and time range lost.
//! * Where the reader skipped damaged spool data, the same: how many bytes
//!   each direction lost is unknown, so both directions' sequence numbers
//!   jump by the damaged region's size (at least 1), which Wireshark flags
//!   as "previous segment not captured" in classic pcap too, and in pcapng
//!   the next packet names the file, offset and what was wrong.
//!
//! Everything made up is marked with a pcapng packet comment; the hot path
//! (a data record after the first) costs two predictable branches more than
//! framing alone.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use pcap_file::PcapError;
use spool::read::event::{Damage, DataRecord, Gap};
use spool::store::format::Direction;

use crate::net::tcp::{write_segment, SegmentSpec, TcpFlags, TcpStreamBuilder};
use crate::output::PacketSink;
use crate::pipeline::clock::PacketClock;
use crate::spice::link::{self, LinkPhase, LINK_PACKETS};
use crate::spice::redact::{RedactStats, Redactor};

/// What to make up around the recorded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synthesis {
    /// A SPICE link phase in front of channels whose capture lacks one.
    pub link: bool,
    /// A TCP handshake before the first packet and a FIN exchange after the
    /// last one of a cleanly closed channel.
    pub tcp: bool,
}

impl Synthesis {
    /// Everything on: what Wireshark needs.
    pub const ALL: Synthesis = Synthesis {
        link: true,
        tcp: true,
    };
    /// Nothing made up: the recorded bytes only, as ryll's own pcaps were.
    pub const NONE: Synthesis = Synthesis {
        link: false,
        tcp: false,
    };
}

impl Default for Synthesis {
    fn default() -> Synthesis {
        Synthesis::ALL
    }
}

/// A data record as framing takes it: which way its bytes went, when, and
/// the bytes. (Its sequence number is the spool's concern: a followed or
/// merged record arrives without it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Which way the bytes went.
    pub direction: Direction,
    /// Arrival time, ns since session start.
    pub ts_ns: u64,
    /// The recorded bytes.
    pub payload: &'a [u8],
}

impl<'a> From<DataRecord<'a>> for Record<'a> {
    fn from(d: DataRecord<'a>) -> Record<'a> {
        Record {
            direction: d.direction,
            ts_ns: d.ts_ns,
            payload: d.payload,
        }
    }
}

/// Spacing of the synthetic packets in front of the first record.
const OPENING_STEP: Duration = Duration::from_micros(1);

/// Packets the opening can have: SYN, SYN-ACK, ACK and the link packets.
const MAX_OPENING_PACKETS: u32 = 3 + LINK_PACKETS.len() as u32;

/// Traffic lost in one or more gap records not yet followed by a packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PendingGap {
    gaps: u64,
    records: u64,
    bytes_c2s: u64,
    bytes_s2c: u64,
    first_ts_ns: u64,
    last_ts_ns: u64,
}

/// Damaged regions the reader skipped, not yet followed by a packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PendingDamage {
    regions: u64,
    records_lost: u64,
    /// The first region, as [`Damage`] displays it (file, offset, what).
    first: String,
    /// Sequence numbers skipped in each direction.
    skipped: u64,
}

/// The packets of one channel, with everything the recording lacks.
#[derive(Debug, Clone)]
pub struct ChannelFramer {
    stream: TcpStreamBuilder,
    interface: u32,
    synth: Synthesis,
    spice_type: u8,
    started: bool,
    link_synthesized: bool,
    has_link_phase: bool,
    closed: bool,
    frames: u64,
    synthetic_frames: u64,
    first_ts_ns: Option<u64>,
    last_ts_ns: Option<u64>,
    pending_gap: Option<PendingGap>,
    pending_damage: Option<PendingDamage>,
    /// Reused for gap comments, so that a gap allocates nothing after the
    /// first.
    comment: String,
    /// Rewrites what must not be shown (keystrokes, clipboard), if asked.
    redactor: Option<Redactor>,
    /// Said on the channel's first packet (e.g. that its start was trimmed).
    first_note: Option<String>,
    /// Data records of each direction (client→server, server→client) left
    /// out in front of the first one written: an excerpt's cut.
    cut: [u64; 2],
    /// Data records of each direction seen by [`ChannelFramer::admit`].
    seen: [u64; 2],
}

impl ChannelFramer {
    /// The framer of channel `channel` (which decides its SPICE type), on
    /// client port `client_port`, written on pcapng interface `interface`.
    pub fn new(channel: &str, client_port: u16, interface: u32, synth: Synthesis) -> Self {
        ChannelFramer {
            stream: TcpStreamBuilder::new(client_port),
            interface,
            synth,
            spice_type: link::channel_type_for(channel),
            started: false,
            link_synthesized: false,
            has_link_phase: false,
            closed: false,
            frames: 0,
            synthetic_frames: 0,
            first_ts_ns: None,
            last_ts_ns: None,
            pending_gap: None,
            pending_damage: None,
            comment: String::new(),
            redactor: None,
            first_note: None,
            cut: [0; 2],
            seen: [0; 2],
        }
    }

    /// The same framer on server port `server_port` instead of
    /// [`crate::net::tcp::SERVER_PORT`] (before anything is written).
    pub fn with_server_port(mut self, server_port: u16) -> Self {
        self.stream = TcpStreamBuilder::on_ports(self.stream.client_port(), server_port);
        self
    }

    /// Leaves out the first `cut[d]` data records of each direction `d`
    /// (client→server, server→client): an excerpt of the channel's newest
    /// traffic. The records left out must be handed to
    /// [`ChannelFramer::admit`] all the same (the redactor follows message
    /// framing from the stream's start). Each direction's first record
    /// written then follows the synthetic opening directly, with the
    /// sequence numbers a whole stream's first record has, and gap records
    /// before it leave its sequence numbers alone: the bytes they lost
    /// belong to what was left out. With `[0, 0]` nothing changes.
    pub fn with_cut(mut self, cut: [u64; 2]) -> Self {
        self.cut = cut;
        self
    }

    /// Takes the channel's next data record, before [`ChannelFramer::data`]:
    /// `false` if it lies before the cut ([`ChannelFramer::with_cut`]) and
    /// must not be written. Every data record of the channel goes through
    /// here, in order, when a cut is set.
    pub fn admit(&mut self, direction: Direction, payload: &[u8]) -> bool {
        let d = dir_index(direction);
        let seen = self.seen[d];
        self.seen[d] = seen.saturating_add(1);
        if seen >= self.cut[d] {
            return true;
        }
        if let Some(r) = self.redactor.as_mut() {
            r.apply(direction, payload);
        }
        false
    }

    /// Whether records of `direction` are being written: the cut is behind.
    fn past_cut(&self, direction: Direction) -> bool {
        let d = dir_index(direction);
        self.cut[d] == 0 || self.seen[d] > self.cut[d]
    }

    /// The lengths of the frames this channel makes up at most: the opening
    /// (handshake and link phase, as far as wanted) and, with a TCP
    /// handshake, the FIN exchange. An excerpt counts them against its
    /// budget.
    pub fn synthetic_frame_lens(&self) -> Vec<usize> {
        let link = self.synth.link.then(|| LinkPhase::new(self.spice_type, 0));
        let (c_isn, s_isn) = link::opening_isns(link.is_some());
        let port = (self.stream.client_port(), self.stream.server_port());
        let mut frame = Vec::new();
        let mut lens = Vec::new();
        let opening = opening_segments(self.synth.tcp, port, c_isn, s_isn, link.as_ref());
        for (spec, flags, payload, _) in opening {
            if write_segment(&spec, flags, payload, &mut frame).is_ok() {
                lens.push(frame.len());
            }
        }
        if self.synth.tcp {
            let (c, s) = (self.stream.client_seq(), self.stream.server_seq());
            for (spec, flags) in closing_segments(port, c, s) {
                if write_segment(&spec, flags, &[], &mut frame).is_ok() {
                    lens.push(frame.len());
                }
            }
        }
        lens
    }

    /// Moves the channel to pcapng interface `interface` (one described
    /// after the framer was made, as when following a live capture).
    pub fn set_interface(&mut self, interface: u32) {
        self.interface = interface;
    }

    /// Redacts this channel's records with `redactor` before framing them
    /// (sizes and sequence numbers unchanged, see [`crate::spice::redact`]).
    pub fn with_redactor(mut self, redactor: Option<Redactor>) -> Self {
        self.redactor = redactor;
        self
    }

    /// Puts `note` in the pcapng comment of the channel's first packet.
    pub fn with_first_note(mut self, note: Option<String>) -> Self {
        self.first_note = note;
        self
    }

    /// What redaction rewrote on this channel (`None`: not redacted).
    pub fn redact_stats(&self) -> Option<RedactStats> {
        self.redactor.as_ref().map(Redactor::stats)
    }

    /// Damage in the spool: bytes of unknown length are missing, so the
    /// redactor can no longer tell where messages start, and both
    /// directions' sequence numbers jump by the region's size (at least 1)
    /// so that Wireshark marks the spot; the next packet says what it was.
    pub fn damage(&mut self, d: &Damage) {
        if let Some(r) = self.redactor.as_mut() {
            r.lose_framing();
        }
        let (c2s, s2c) = (
            self.past_cut(Direction::ClientToServer),
            self.past_cut(Direction::ServerToClient),
        );
        if !c2s && !s2c {
            // Lost with what the cut leaves out: nothing to say about it.
            return;
        }
        let skipped = d.len.max(1);
        for (direction, past) in [
            (Direction::ClientToServer, c2s),
            (Direction::ServerToClient, s2c),
        ] {
            if past {
                self.stream.advance(direction, skipped);
            }
        }
        let p = self.pending_damage.get_or_insert_with(|| PendingDamage {
            first: crate::guard::clean(&d.to_string(), crate::guard::MAX_TEXT_CHARS),
            ..PendingDamage::default()
        });
        p.regions += 1;
        p.records_lost = p.records_lost.saturating_add(d.records_lost);
        p.skipped = p.skipped.saturating_add(skipped);
    }

    /// Formats what was lost since the last packet written (writer drops,
    /// damage) into `self.comment`; whether there was anything.
    fn format_pending(&mut self) -> bool {
        self.comment.clear();
        if let Some(g) = self.pending_gap.take() {
            format_gap(&mut self.comment, &g);
        }
        if let Some(d) = self.pending_damage.take() {
            if !self.comment.is_empty() {
                self.comment.push_str("; ");
            }
            format_damage(&mut self.comment, &d);
        }
        !self.comment.is_empty()
    }

    /// The TCP state of the data.
    pub fn stream(&self) -> &TcpStreamBuilder {
        &self.stream
    }

    /// The pcapng interface packets go to.
    pub fn interface(&self) -> u32 {
        self.interface
    }

    /// Frames written, synthetic ones included.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames written that the capture does not hold (handshake, link
    /// phase, FIN exchange).
    pub fn synthetic_frames(&self) -> u64 {
        self.synthetic_frames
    }

    /// Whether a link phase was made up for this channel.
    pub fn link_synthesized(&self) -> bool {
        self.link_synthesized
    }

    /// Whether the output has a SPICE link phase for this channel, made up
    /// or recorded (what Wireshark needs to decode SPICE).
    pub fn has_link_phase(&self) -> bool {
        self.has_link_phase
    }

    /// Time (ns since session start) of the first and last packet written.
    pub fn time_span_ns(&self) -> Option<(u64, u64)> {
        Some((self.first_ts_ns?, self.last_ts_ns?))
    }

    /// Writes a data record (its synthetic opening first, if it is the
    /// channel's first). `floor_ns` is the time of the last packet already
    /// in the file; synthetic packets are never stamped before it.
    pub fn data<W: Write>(
        &mut self,
        sink: &mut PacketSink<W>,
        clock: PacketClock,
        floor_ns: u64,
        record: Record<'_>,
        frame: &mut Vec<u8>,
    ) -> Result<(), PcapError> {
        let Record {
            direction,
            ts_ns,
            payload,
        } = record;
        if !self.started {
            self.open(sink, clock, floor_ns, record, frame)?;
        }
        let mut comment = None;
        if self.format_pending() {
            comment = Some(self.comment.as_str());
        }
        let note;
        if let Some(n) = self.first_note.take() {
            note = match comment {
                Some(c) => format!("{n}; {c}"),
                None => n,
            };
            comment = Some(note.as_str());
        }
        let payload = match self.redactor.as_mut() {
            Some(r) => r.apply(direction, payload),
            None => payload,
        };
        let ts = clock.timestamp(ts_ns);
        let interface = self.interface;
        self.frames += self
            .stream
            .push_parts(direction, payload, |headers, chunk| {
                sink.write_packet_parts(
                    interface,
                    ts,
                    headers,
                    chunk,
                    Some(direction),
                    comment.take(),
                )
            })?;
        self.last_ts_ns = Some(ts_ns);
        Ok(())
    }

    /// Takes a gap record: sequence numbers jump, and the next packet will
    /// say what was lost.
    pub fn gap(&mut self, g: &Gap) {
        if let Some(r) = self.redactor.as_mut() {
            r.gap(g);
        }
        let (c2s, s2c) = (
            self.past_cut(Direction::ClientToServer),
            self.past_cut(Direction::ServerToClient),
        );
        if c2s && s2c {
            self.stream.gap(g);
        } else if c2s || s2c {
            let (direction, bytes) = if c2s {
                (Direction::ClientToServer, g.bytes_c2s)
            } else {
                (Direction::ServerToClient, g.bytes_s2c)
            };
            self.stream.advance(direction, bytes);
        } else {
            // Lost with what the cut leaves out: nothing to say about it.
            return;
        }
        let p = self.pending_gap.get_or_insert(PendingGap {
            first_ts_ns: g.first_ts_ns,
            ..PendingGap::default()
        });
        p.gaps += 1;
        p.records = p.records.saturating_add(g.records());
        p.bytes_c2s = p.bytes_c2s.saturating_add(g.bytes_c2s);
        p.bytes_s2c = p.bytes_s2c.saturating_add(g.bytes_s2c);
        p.first_ts_ns = p.first_ts_ns.min(g.first_ts_ns);
        p.last_ts_ns = p.last_ts_ns.max(g.last_ts_ns);
    }

    /// Ends the channel: the FIN exchange if it was `closed_cleanly` and
    /// anything was written. Call once, after its last record.
    pub fn finish<W: Write>(
        &mut self,
        sink: &mut PacketSink<W>,
        clock: PacketClock,
        closed_cleanly: bool,
        frame: &mut Vec<u8>,
    ) -> Result<(), PcapError> {
        if self.closed || !self.started || !closed_cleanly || !self.synth.tcp {
            self.closed = true;
            return Ok(());
        }
        self.closed = true;
        let ts_ns = self.last_ts_ns.unwrap_or(0);
        let ts = clock.timestamp(ts_ns);
        let (c, s) = (self.stream.client_seq(), self.stream.server_seq());
        let port = (self.stream.client_port(), self.stream.server_port());
        let mut gap_comment = None;
        if self.format_pending() {
            gap_comment = Some(self.comment.as_str());
        }
        for (i, (spec, flags)) in closing_segments(port, c, s).into_iter().enumerate() {
            let direction = spec.direction;
            let comment = if i == 0 {
                gap_comment.unwrap_or(FIN_COMMENT)
            } else {
                FIN_COMMENT
            };
            if write_segment(&spec, flags, &[], frame).is_ok() {
                sink.write_packet(self.interface, ts, frame, Some(direction), Some(comment))?;
                self.frames += 1;
                self.synthetic_frames += 1;
            }
        }
        Ok(())
    }

    /// Writes what comes before the first record: handshake and link phase,
    /// as far as they are wanted and missing.
    fn open<W: Write>(
        &mut self,
        sink: &mut PacketSink<W>,
        clock: PacketClock,
        floor_ns: u64,
        record: Record<'_>,
        frame: &mut Vec<u8>,
    ) -> Result<(), PcapError> {
        let Record {
            direction,
            ts_ns,
            payload,
        } = record;
        self.started = true;
        let recorded = link::starts_with_link(direction, payload);
        let link = (self.synth.link && !recorded).then(|| LinkPhase::new(self.spice_type, 0));
        self.link_synthesized = link.is_some();
        self.has_link_phase = recorded || link.is_some();
        let (c_isn, s_isn) = link::opening_isns(link.is_some());
        let port = (self.stream.client_port(), self.stream.server_port());
        let segments = opening_segments(self.synth.tcp, port, c_isn, s_isn, link.as_ref());
        let count = segments.len() as u64;
        debug_assert!(count <= u64::from(MAX_OPENING_PACKETS));
        let step = OPENING_STEP.as_nanos() as u64;
        for (index, (spec, flags, payload, comment)) in segments.into_iter().enumerate() {
            let before = (count - index as u64) * step;
            let at = ts_ns.saturating_sub(before).max(floor_ns.min(ts_ns));
            if write_segment(&spec, flags, payload, frame).is_ok() {
                let note = self.first_note.take().map(|n| format!("{n}; {comment}"));
                sink.write_packet(
                    self.interface,
                    clock.timestamp(at),
                    frame,
                    Some(spec.direction),
                    Some(note.as_deref().unwrap_or(comment)),
                )?;
                self.frames += 1;
                self.synthetic_frames += 1;
                if self.first_ts_ns.is_none() {
                    self.first_ts_ns = Some(at);
                }
            }
        }
        if self.first_ts_ns.is_none() {
            self.first_ts_ns = Some(ts_ns);
        }
        Ok(())
    }
}

/// Index of a direction in per-direction arrays: client→server 0,
/// server→client 1.
fn dir_index(direction: Direction) -> usize {
    usize::from(direction.to_byte() & 1)
}

/// The segments in front of a channel's first record, in order, with
/// their pcapng comments: the handshake (if `tcp`) with initial sequence
/// numbers `c_isn` / `s_isn`, then the link phase (if `link`).
fn opening_segments(
    tcp: bool,
    (client_port, server_port): (u16, u16),
    c_isn: u32,
    s_isn: u32,
    link: Option<&LinkPhase>,
) -> Vec<(SegmentSpec, TcpFlags, &[u8], &'static str)> {
    let seg = |direction, seq, ack| SegmentSpec {
        direction,
        client_port,
        server_port,
        seq,
        ack,
    };
    let (c1, s1) = (c_isn.wrapping_add(1), s_isn.wrapping_add(1));
    let mut out = Vec::with_capacity(MAX_OPENING_PACKETS as usize);
    if tcp {
        out.push((
            seg(Direction::ClientToServer, c_isn, 0),
            TcpFlags::SYN,
            &[][..],
            SYN_COMMENT,
        ));
        out.push((
            seg(Direction::ServerToClient, s_isn, c1),
            TcpFlags::SYN_ACK,
            &[][..],
            SYN_COMMENT,
        ));
        out.push((
            seg(Direction::ClientToServer, c1, s1),
            TcpFlags::ACK,
            &[][..],
            SYN_COMMENT,
        ));
    }
    if let Some(link) = link {
        // Each side's next sequence number as the link phase goes on.
        let (mut c, mut s) = (c1, s1);
        for p in &LINK_PACKETS {
            let bytes = link.packet(p);
            let (seq, ack) = match p.direction {
                Direction::ClientToServer => (c, s),
                Direction::ServerToClient => (s, c),
            };
            out.push((seg(p.direction, seq, ack), TcpFlags::ACK, bytes, p.comment));
            match p.direction {
                Direction::ClientToServer => c = c.wrapping_add(bytes.len() as u32),
                Direction::ServerToClient => s = s.wrapping_add(bytes.len() as u32),
            }
        }
    }
    out
}

/// The FIN exchange after a channel's last record, the client's next
/// sequence number being `c` and the server's `s`.
fn closing_segments(
    (client_port, server_port): (u16, u16),
    c: u32,
    s: u32,
) -> [(SegmentSpec, TcpFlags); 3] {
    let seg = |direction, seq, ack| SegmentSpec {
        direction,
        client_port,
        server_port,
        seq,
        ack,
    };
    [
        (seg(Direction::ClientToServer, c, s), TcpFlags::FIN_ACK),
        (
            seg(Direction::ServerToClient, s, c.wrapping_add(1)),
            TcpFlags::FIN_ACK,
        ),
        (
            seg(
                Direction::ClientToServer,
                c.wrapping_add(1),
                s.wrapping_add(1),
            ),
            TcpFlags::ACK,
        ),
    ]
}

/// Comment of the synthetic handshake packets.
const SYN_COMMENT: &str = "spool2pcap: synthetic TCP handshake (ryll records bytes, not packets)";
/// Comment of the synthetic FIN exchange.
const FIN_COMMENT: &str =
    "spool2pcap: synthetic TCP close (the capture says the channel closed cleanly)";

/// Appends the comment of the packet after damage to `out`.
fn format_damage(out: &mut String, d: &PendingDamage) {
    let _ = write!(
        out,
        "spool2pcap: damaged capture data skipped before this packet: {}",
        d.first
    );
    if d.regions > 1 {
        let _ = write!(
            out,
            " and {} more damaged regions ({} records known lost in all)",
            d.regions - 1,
            d.records_lost
        );
    }
    let _ = write!(
        out,
        "; the bytes lost are unknown, sequence numbers skip {} in each direction",
        d.skipped
    );
}

/// Appends the comment of the packet after a gap to `out`.
fn format_gap(out: &mut String, g: &PendingGap) {
    let secs = |ns: u64| (ns / 1_000_000_000, ns % 1_000_000_000 / 1_000);
    let (a, af) = secs(g.first_ts_ns);
    let (b, bf) = secs(g.last_ts_ns);
    let _ = write!(
        out,
        "spool2pcap: the capture writer dropped {} records ({} bytes: {} client->server, {} \
         server->client) between +{a}.{af:06} s and +{b}.{bf:06} s of the session, before this \
         packet; sequence numbers skip the lost bytes",
        g.records,
        g.bytes_c2s.saturating_add(g.bytes_s2c),
        g.bytes_c2s,
        g.bytes_s2c,
    );
    if g.gaps > 1 {
        let _ = write!(out, " ({} gap records)", g.gaps);
    }
}
