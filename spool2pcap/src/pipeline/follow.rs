//! `convert --follow`: packets of a capture that is still being written, as
//! they are committed, like `tail -f` — so `spool2pcap convert --follow -w -
//! DIR | wireshark -k -i -` shows a ryll session live.
//!
//! Built on [`spool::read::follow::Follower`], polled every
//! [`DEFAULT_POLL_INTERVAL`]: each poll hands over what was committed since
//! the last one, channel by channel. The packets of one poll are merged
//! across channels by timestamp (a channel's own records keep their order,
//! gaps included), framed by the same [`ChannelFramer`] as a normal
//! conversion (synthetic handshake and link phase, redaction), written, and
//! the output is flushed, so a record reaches the pipe at most one poll
//! interval plus the time to read and write it after its append. Records
//! committed in different polls are written in poll order.
//!
//! In pcapng, a channel's interface is described when the channel first
//! appears, before its first packet (pcapng allows Interface Description
//! Blocks anywhere in a section). Follow ends by itself when the manifest
//! says the session closed, or when its writer died (its staging lock is
//! free): the FIN exchange follows a clean close, and in pcapng each
//! channel's Interface Statistics Block.
//!
//! Memory is bounded by the batch: when what one poll brought takes more
//! than [`MAX_BATCH_BYTES`] — payload bytes and the bookkeeping of every
//! record, gap and damage, so that millions of gap records count too —
//! (following a long capture from its start), what has been collected is
//! written out before the poll goes on, and timestamp order then only holds
//! within each such part.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use pcap_file::PcapError;
use spool::read::event::{Damage, DamageLog, Event, Gap};
use spool::read::follow::{Follower, Status};
use spool::read::reader::ReadStats;
use spool::store::format::Direction;

use crate::guard::load_manifest;
use crate::net::tcp::MAX_FRAME_LEN;
use crate::output::{InterfaceInfo, OutputTarget, PacketSink, OUTPUT_BUFFER_BYTES};
use crate::pipeline::clock::PacketClock;
use crate::pipeline::convert::{open_output, ConvertOptions, Destination};
use crate::pipeline::error::ConvertError;
use crate::pipeline::framing::{ChannelFramer, Record};
use crate::pipeline::opened::{Access, OpenedCapture, Opening};
use crate::pipeline::report::{ChannelReport, ConvertReport};
use crate::pipeline::section::{
    interface_description, section_info, trimmed_note, write_channel_stats, Reading, SessionFacts,
};
use crate::spice::channels::PortMap;
use crate::spice::redact::Redactor;

/// How often the capture is polled: well inside the 200 ms a live viewer
/// may wait, and cheap (a manifest read and a few `stat`s per poll).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Bytes one poll may collect before they are written out: payloads, and
/// [`PENDING_BYTES`] for each record, gap or damage.
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// What the batch counts for each thing collected besides its payload.
const PENDING_BYTES: usize = std::mem::size_of::<Pending>();

/// A `Write` shared between the packet sink and the loop that flushes it
/// after every poll (the pcap writer does not lend its writer out).
struct Shared<W: Write>(Rc<RefCell<W>>);

impl<W: Write> Write for Shared<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// What one poll brought for a channel, in the channel's order.
enum Pending {
    Data {
        ts_ns: u64,
        direction: Direction,
        /// Range of the payload in the batch's byte arena.
        start: usize,
        len: usize,
    },
    Gap(Gap),
    Damage(Damage),
}

/// One followed channel.
struct Live {
    name: String,
    framer: ChannelFramer,
    /// pcapng interface, once its description was written.
    iface: Option<u32>,
    description: String,
    /// This channel's part of the batch: `pending[cursor..end]` of
    /// [`State`], one run (a poll reads a channel's events together).
    cursor: usize,
    end: usize,
    /// What was followed so far, counted as the spool reader counts.
    stats: ReadStats,
    damage: DamageLog,
}

/// Everything one poll's callback touches.
struct State<W: Write> {
    lives: Vec<Live>,
    /// Where each channel is in `lives`.
    index: HashMap<String, usize>,
    /// The manifest as this poll read it, for channels that appear (read
    /// once a poll, not once a channel).
    manifest: Option<Option<spool::Manifest>>,
    arena: Vec<u8>,
    /// Things collected in the batch (records, gaps, damage), every
    /// channel's in one vector, each channel's one run of it: one
    /// allocation reused, where a vector per channel left the heap of a
    /// follow of thousands of channels in pieces (630 MB for 1,000).
    pending: Vec<Pending>,
    sink: PacketSink<W>,
    clock: PacketClock,
    frame: Vec<u8>,
    /// Time of the last packet written: synthetic packets never go before.
    floor: u64,
    ports: PortMap,
    wanted: Vec<String>,
    opts: ConvertOptions,
    dir: PathBuf,
    written: bool,
    error: Option<PcapError>,
}

impl<W: Write> State<W> {
    fn event(&mut self, channel: &str, event: Event<'_>) {
        if self.error.is_some()
            || !(self.wanted.is_empty() || self.wanted.iter().any(|w| w == channel))
        {
            return;
        }
        let i = match self.index.get(channel) {
            Some(&i) => i,
            None => self.add_channel(channel),
        };
        let live = &self.lives[i];
        if live.cursor != live.end && live.end != self.pending.len() {
            // Its run is not the last one: end the batch before it grows.
            if let Err(e) = self.drain() {
                self.error = Some(e);
                return;
            }
        }
        let live = &mut self.lives[i];
        if live.cursor == live.end {
            live.cursor = self.pending.len();
        }
        live.end = self.pending.len() + 1;
        match event {
            Event::Data(d) => {
                live.stats.records = live.stats.records.saturating_add(1);
                live.stats.bytes = live.stats.bytes.saturating_add(d.payload.len() as u64);
                live.stats.first_ts_ns.get_or_insert(d.ts_ns);
                live.stats.last_ts_ns = Some(d.ts_ns);
                let start = self.arena.len();
                self.arena.extend_from_slice(d.payload);
                self.pending.push(Pending::Data {
                    ts_ns: d.ts_ns,
                    direction: d.direction,
                    start,
                    len: d.payload.len(),
                });
            }
            Event::Gap(g) => {
                let st = &mut live.stats;
                st.gaps = st.gaps.saturating_add(1);
                st.dropped_records = st.dropped_records.saturating_add(g.records());
                st.dropped_bytes = st.dropped_bytes.saturating_add(g.bytes());
                self.pending.push(Pending::Gap(g));
            }
            Event::Damage(d) => {
                live.damage.push(d.clone());
                self.pending.push(Pending::Damage(d));
            }
        }
        let batch = self
            .arena
            .len()
            .saturating_add(self.pending.len().saturating_mul(PENDING_BYTES));
        if batch > MAX_BATCH_BYTES {
            if let Err(e) = self.drain() {
                self.error = Some(e);
            }
        }
    }

    fn add_channel(&mut self, name: &str) -> usize {
        let port = self.ports.assign(name);
        // The manifest says whether the flight recorder trimmed its start.
        let dir = &self.dir;
        let trimmed = self
            .manifest
            .get_or_insert_with(|| load_manifest(dir).ok().flatten())
            .as_ref()
            .and_then(|m| m.trimmed.get(name).copied())
            .filter(|t| t.segments > 0);
        let framer = ChannelFramer::new(name, port, 0, self.opts.synth)
            .with_server_port(self.opts.server_port)
            .with_redactor(Redactor::for_channel(
                name,
                self.opts.redact,
                trimmed.is_some(),
            ))
            .with_first_note(trimmed.as_ref().map(|t| trimmed_note(name, t)));
        self.lives.push(Live {
            name: name.to_string(),
            framer,
            iface: None,
            description: interface_description(name, (port, self.opts.server_port), None),
            cursor: 0,
            end: 0,
            stats: ReadStats::default(),
            damage: DamageLog::default(),
        });
        self.index.insert(name.to_string(), self.lives.len() - 1);
        self.lives.len() - 1
    }

    /// Describes channels that have appeared (pcapng: one interface each).
    fn describe_new(&mut self) -> Result<(), PcapError> {
        for l in self.lives.iter_mut().filter(|l| l.iface.is_none()) {
            let iface = self.sink.add_interface(&InterfaceInfo {
                name: &l.name,
                description: Some(&l.description),
            })?;
            l.iface = Some(iface);
            l.framer.set_interface(iface);
        }
        Ok(())
    }

    /// Writes everything collected, merged by timestamp across channels.
    fn drain(&mut self) -> Result<(), PcapError> {
        self.describe_new()?;
        // Every channel's earliest record, earliest first; ties by channel
        // order. A heap: a hostile capture can have tens of thousands.
        let mut heads: BinaryHeap<Reverse<(u64, usize)>> = (0..self.lives.len())
            .filter_map(|i| {
                self.lives[i]
                    .advance_to_data(&self.pending)
                    .map(|ts| Reverse((ts, i)))
            })
            .collect();
        while let Some(Reverse((ts, i))) = heads.pop() {
            let l = &mut self.lives[i];
            if let Some(Pending::Data {
                ts_ns,
                direction,
                start,
                len,
            }) = self.pending.get(l.cursor)
            {
                let record = Record {
                    direction: *direction,
                    ts_ns: *ts_ns,
                    payload: &self.arena[*start..*start + *len],
                };
                l.framer.data(
                    &mut self.sink,
                    self.clock,
                    self.floor,
                    record,
                    &mut self.frame,
                )?;
                self.written = true;
                self.floor = self.floor.max(ts);
            }
            l.cursor += 1;
            if let Some(next) = l.advance_to_data(&self.pending) {
                heads.push(Reverse((next, i)));
            }
        }
        for l in &mut self.lives {
            l.cursor = 0;
            l.end = 0;
        }
        self.pending.clear();
        self.arena.clear();
        Ok(())
    }
}

impl Live {
    /// Applies the gaps and damage at the channel's head, which come before
    /// its next record; returns that record's time, if it has one.
    /// `pending` is the batch.
    fn advance_to_data(&mut self, pending: &[Pending]) -> Option<u64> {
        while let Some(p) = pending.get(self.cursor).filter(|_| self.cursor < self.end) {
            match p {
                Pending::Gap(g) => self.framer.gap(g),
                Pending::Damage(d) => self.framer.damage(d),
                Pending::Data { ts_ns, .. } => return Some(*ts_ns),
            }
            self.cursor += 1;
        }
        None
    }
}

/// Follows the capture in `capture` until its session ends, writing to the
/// destination of `opts` (a file or standard output), polling every
/// `interval`.
pub fn follow(
    capture: &Path,
    opts: &ConvertOptions,
    interval: Duration,
) -> Result<ConvertReport, ConvertError> {
    let path = match &opts.destination {
        Destination::Dir(_) => return Err(ConvertError::FollowNeedsStream),
        Destination::File(path) => OutputTarget::Path(path.clone()),
        Destination::Stdout => OutputTarget::Stdout,
    };
    // Everything about the capture and the arguments is checked before the
    // output is created: a failure leaves no empty file behind.
    let opened = OpenedCapture::open(
        capture,
        &Opening {
            access: Access::Follow,
            channels: &opts.channels,
            time: opts.time,
            redact: opts.redact,
            server_port: opts.server_port,
            protect_inputs: true,
        },
    )?;
    let follower = Follower::open(capture)?;
    // Created before the first poll, so a reader of the file (or the test
    // that waits for it) sees it at once.
    let out = open_output(&path, opts.force, opened.inputs.as_ref())?;
    let out = io::BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, out);
    let stream = Stream {
        out: Rc::new(RefCell::new(out)),
        path,
    };
    follow_into(opened, follower, opts, interval, stream)
}

impl<W: Write> State<W> {
    /// Every channel's report once the session ended (`clean`, or not),
    /// and, in pcapng, its interface statistics written.
    fn channel_reports(
        &mut self,
        clean: bool,
        output: Option<PathBuf>,
    ) -> Result<Vec<ChannelReport>, PcapError> {
        let mut reports = Vec::with_capacity(self.lives.len());
        for l in &mut self.lives {
            l.stats.closed_cleanly = clean;
            let channel = ChannelReport::new(
                &l.name,
                self.ports.port(&l.name),
                &l.stats,
                (l.damage.kept(), l.damage.totals()),
                None,
                &l.framer,
                output.clone(),
            );
            if l.iface.is_some() {
                write_channel_stats(
                    &mut self.sink,
                    &channel,
                    &l.framer,
                    self.clock,
                    Reading::Live,
                )?;
            }
            reports.push(channel);
        }
        Ok(reports)
    }
}

/// The output of a follow, shared between the packet sink and the loop
/// that flushes it after every poll.
struct Stream<W: Write> {
    out: Rc<RefCell<W>>,
    path: OutputTarget,
}

impl<W: Write> Stream<W> {
    /// The error of writing to it failing.
    fn error(&self, source: PcapError) -> ConvertError {
        ConvertError::Write {
            path: self.path.clone(),
            source,
        }
    }

    fn flush(&self) -> Result<(), ConvertError> {
        self.out
            .borrow_mut()
            .flush()
            .map_err(|e| self.error(PcapError::IoError(e)))
    }
}

/// Follows `opened` through `follower` into `stream` until the session
/// ends, polling every `interval`, and ends every channel.
fn follow_into<W: Write>(
    mut opened: OpenedCapture,
    mut follower: Follower,
    opts: &ConvertOptions,
    interval: Duration,
    stream: Stream<W>,
) -> Result<ConvertReport, ConvertError> {
    let clock = opened.clock(true);
    let section = section_info(&SessionFacts {
        id: opened.session_id.as_deref(),
        start_unix_ns: opened.session_start,
        reading: Reading::Live,
        recovered: None,
        trimmed: None,
        metadata: opened.report.metadata.as_ref(),
        synth: opts.synth,
        redact: opts.redact,
        server_port: opts.server_port,
    });
    let sink = PacketSink::with_section(Shared(stream.out.clone()), opts.format, &[], &section)
        .map_err(|e| stream.error(e))?;
    stream.flush()?;
    let mut st = State {
        lives: Vec::new(),
        index: HashMap::new(),
        manifest: None,
        arena: Vec::new(),
        pending: Vec::new(),
        sink,
        clock,
        frame: Vec::with_capacity(MAX_FRAME_LEN),
        floor: 0,
        ports: std::mem::take(&mut opened.ports),
        wanted: std::mem::take(&mut opened.selected),
        opts: opts.clone(),
        dir: opened.cap.dir().to_path_buf(),
        written: false,
        error: None,
    };
    let clean = poll_until_ended(&mut st, &mut follower, interval, &stream)?;
    let mut report = opened.report;
    report.clean_shutdown = Some(clean);
    for l in &mut st.lives {
        l.framer
            .finish(&mut st.sink, clock, clean, &mut st.frame)
            .map_err(|e| stream.error(e))?;
    }
    let output = stream.path.path().map(Path::to_path_buf);
    report.channels = st
        .channel_reports(clean, output)
        .map_err(|e| stream.error(e))?;
    drop(st);
    stream.flush()?;
    Ok(report)
}

/// Polls `follower` every `interval`, writing what each poll brings, until
/// the session ends; whether it ended cleanly.
fn poll_until_ended<W: Write>(
    st: &mut State<Shared<W>>,
    follower: &mut Follower,
    interval: Duration,
    stream: &Stream<W>,
) -> Result<bool, ConvertError> {
    loop {
        let status = follower.poll(&mut |channel, event| st.event(channel, event));
        st.manifest = None;
        if let Some(e) = st.error.take() {
            return Err(stream.error(e));
        }
        st.drain().map_err(|e| stream.error(e))?;
        if st.written {
            st.written = false;
            stream.flush()?;
        }
        match status {
            Status::Running => std::thread::sleep(interval),
            Status::Finished { clean } => return Ok(clean),
        }
    }
}
