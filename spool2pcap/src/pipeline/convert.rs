//! Converting a capture directory: choosing channels, ports, clock and
//! outputs, then streaming every channel through a [`ChannelFramer`] (the
//! recorded bytes framed by [`crate::net::tcp::TcpStreamBuilder`], plus the
//! synthetic handshake, SPICE link phase and close Wireshark needs) into
//! pcap sinks.
//!
//! Memory stays bounded whatever the capture size: per channel being read,
//! one segment buffer (inside [`ChannelReader`]); when merging, one copy of
//! each channel's next record; one frame buffer shared by everything; and
//! in front of the output being written, two buffers of
//! [`OUTPUT_BUFFER_BYTES`] (one filled here while a second thread writes
//! the other, [`WriteBehind`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use pcap_file::PcapError;
use spool::read::capture::Capture;
use spool::read::event::Event;
use spool::read::reader::ChannelReader;
use spool::store::format::validate_channel_name;

use crate::guard::InputFiles;
use crate::net::tcp::MAX_FRAME_LEN;
use crate::output::writebehind::WriteBehind;
use crate::output::{
    Format, InterfaceInfo, OutputDir, OutputTarget, PacketSink, SectionInfo, OUTPUT_BUFFER_BYTES,
};
use crate::pipeline::clock::{PacketClock, TimeMode};
use crate::pipeline::framing::{ChannelFramer, Synthesis};
use crate::pipeline::merge::{drained_note, merge_into, ChannelSource};
use crate::pipeline::opened::{Access, OpenedCapture, Opening};
use crate::pipeline::section::{
    interface_description, section_info, trimmed_note, write_channel_stats, Reading, Recovered,
    SessionFacts,
};
use crate::spice::channels::{PortMap, SERVER_PORT};
use crate::spice::redact::{Redaction, Redactor};

pub use crate::pipeline::error::ConvertError;
pub use crate::pipeline::report::{ChannelReport, ConvertReport};

/// Where the frames go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// One file per channel, `<channel>.pcap` / `<channel>.pcapng`, in this
    /// directory (created with mode 0700 if missing).
    Dir(PathBuf),
    /// Every selected channel merged into this one file, in time order.
    File(PathBuf),
    /// Every selected channel merged, written to standard output.
    Stdout,
}

/// What [`convert`] should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Where to write.
    pub destination: Destination,
    /// Channels to convert; empty means all of them.
    pub channels: Vec<String>,
    /// pcap or pcapng.
    pub format: Format,
    /// Absolute or relative timestamps.
    pub time: TimeMode,
    /// Overwrite existing output files instead of refusing.
    pub force: bool,
    /// What to make up around the recorded bytes (default: everything, so
    /// that Wireshark decodes SPICE).
    pub synth: Synthesis,
    /// What to overwrite before writing (default: nothing).
    pub redact: Redaction,
    /// Map the segments of a cleanly closed capture instead of reading them
    /// (default: off; see [`spool::Capture::set_mapping`] for the risk).
    pub mmap: bool,
    /// The synthetic server port (default [`SERVER_PORT`], which no
    /// Wireshark dissector claims, so SPICE decodes with no option; another
    /// port may need Wireshark's "Decode As", which the report's commands
    /// then give).
    pub server_port: u16,
}

impl ConvertOptions {
    /// Options for `destination` with every other setting at its default:
    /// all channels, classic pcap, absolute time, no overwriting, synthetic
    /// handshake, link phase and close on.
    pub fn new(destination: Destination) -> ConvertOptions {
        ConvertOptions {
            destination,
            channels: Vec::new(),
            format: Format::Pcap,
            time: TimeMode::Absolute,
            force: false,
            synth: Synthesis::ALL,
            redact: Redaction::NONE,
            mmap: false,
            server_port: SERVER_PORT,
        }
    }
}

/// Progress of a conversion, in bytes of segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Segment bytes read so far.
    pub done: u64,
    /// Segment bytes of the selected channels, as listed before starting.
    pub total: u64,
}

/// Converts the capture in `capture` as `opts` says.
pub fn convert(capture: &Path, opts: &ConvertOptions) -> Result<ConvertReport, ConvertError> {
    convert_with_progress(capture, opts, &mut |_| {})
}

/// [`convert`], calling `progress` as segment files are read.
pub fn convert_with_progress(
    capture: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ConvertReport, ConvertError> {
    let mut opened = OpenedCapture::open(
        capture,
        &Opening {
            access: Access::Read { map: opts.mmap },
            channels: &opts.channels,
            time: opts.time,
            redact: opts.redact,
            server_port: opts.server_port,
            protect_inputs: true,
        },
    )?;
    let clock = opened.clock(!opened.selected.is_empty());
    let mut readers: Vec<ChannelReader> = opened
        .selected
        .iter()
        .filter_map(|name| opened.cap.reader(name))
        .collect();
    let mut run = Conversion {
        total: segment_file_bytes(&opened.cap, &opened.selected),
        section: section_of(&opened, opts),
        descriptions: descriptions_of(&opened.cap, &readers, &opened.ports, opts.server_port),
        reading: Reading::Closed {
            clean_shutdown: opened.report.clean_shutdown,
        },
        opened,
        opts,
        clock,
        frame: Vec::with_capacity(MAX_FRAME_LEN),
        progress,
    };
    // Per-channel files are written in the first arm; one merged output is
    // opened in the others and written below.
    let merged = match &opts.destination {
        Destination::Dir(dir) => {
            write_channel_files(&mut run, dir, &mut readers)?;
            None
        }
        Destination::File(path) => Some(OutputTarget::Path(path.clone())),
        Destination::Stdout => Some(OutputTarget::Stdout),
    };
    if let Some(path) = merged {
        let out = buffered(open_output(&path, opts.force, run.opened.inputs.as_ref())?);
        merge_to(&mut run, out, path, readers)?;
    }
    Ok(run.opened.report)
}

/// A conversion under way: the capture opened (whose report it fills in),
/// and what every output of it shares.
struct Conversion<'a> {
    opened: OpenedCapture,
    opts: &'a ConvertOptions,
    clock: PacketClock,
    /// How the capture was read, for the pcapng statistics.
    reading: Reading,
    /// The pcapng section header.
    section: SectionInfo,
    /// Each reader's pcapng interface description, in order.
    descriptions: Vec<String>,
    /// The frame buffer, shared by every channel.
    frame: Vec<u8>,
    /// Segment bytes of the selected channels, what progress counts to.
    total: u64,
    progress: &'a mut dyn FnMut(Progress),
}

/// The pcapng section header of converting `opened` as `opts` says: the
/// session as the manifest names it (else as a segment header does), when
/// it started, how it ended and was recovered.
fn section_of(opened: &OpenedCapture, opts: &ConvertOptions) -> SectionInfo {
    let cap = &opened.cap;
    section_info(&SessionFacts {
        id: opened.session_id.as_deref(),
        start_unix_ns: opened.session_start,
        reading: Reading::Closed {
            clean_shutdown: opened.report.clean_shutdown,
        },
        recovered: recovered_of(cap),
        trimmed: cap.manifest().map(|m| &m.trimmed),
        metadata: opened.report.metadata.as_ref(),
        synth: opts.synth,
        redact: opts.redact,
        server_port: opts.server_port,
    })
}

/// Bytes of the segment files of the `selected` channels of `cap`, what
/// the progress reports count up to.
fn segment_file_bytes(cap: &Capture, selected: &[String]) -> u64 {
    selected
        .iter()
        .filter_map(|c| cap.channel(c))
        .flat_map(|f| f.segments.iter())
        .filter_map(|s| std::fs::symlink_metadata(&s.path).ok())
        .map(|m| m.len())
        .fold(0, u64::saturating_add)
}

/// Whether `cap` was read from staging in place, or moved in by
/// recovery (the manifest then notes it among its errors), for the
/// section comment.
fn recovered_of(cap: &Capture) -> Option<Recovered<'_>> {
    let manifest = cap.manifest();
    if cap.has_staged_segments() {
        Some(Recovered::StagedInPlace {
            staging_dir: manifest.and_then(|m| m.staging_dir.as_deref()),
        })
    } else if manifest.is_some_and(|m| m.errors.iter().any(|e| e.starts_with("recovered "))) {
        Some(Recovered::MovedIn)
    } else {
        None
    }
}

/// Each reader's channel described for its pcapng interface: its ports and
/// what the manifest says of it.
fn descriptions_of(
    cap: &Capture,
    readers: &[ChannelReader],
    ports: &PortMap,
    server_port: u16,
) -> Vec<String> {
    readers
        .iter()
        .map(|r| {
            let summary = cap.manifest().and_then(|m| m.channels.get(r.channel()));
            interface_description(r.channel(), (ports.port(r.channel()), server_port), summary)
        })
        .collect()
}

/// Writes every channel of `readers` to a file of its own in `dir`,
/// removing the file of a channel that carried nothing. Every file name is
/// checked before the first file is created.
fn write_channel_files(
    run: &mut Conversion,
    dir: &Path,
    readers: &mut [ChannelReader],
) -> Result<(), ConvertError> {
    let inputs = run.opened.inputs.as_ref();
    let out = OutputDir::open(dir, inputs).map_err(|source| ConvertError::Create {
        path: OutputTarget::Path(dir.to_path_buf()),
        source,
    })?;
    let names = channel_file_names(&out, dir, readers, run.opts)?;
    let mut done_before = 0u64;
    for (i, (reader, (file_name, file_path))) in readers.iter_mut().zip(names).enumerate() {
        let path = OutputTarget::Path(file_path.clone());
        let file = out
            .create_file(&file_name, run.opts.force, run.opened.inputs.as_ref())
            .map_err(|source| ConvertError::create(&path, source))?;
        let channel = write_channel_file(run, i, reader, file, done_before).map_err(|source| {
            ConvertError::Write {
                path: path.clone(),
                source,
            }
        })?;
        done_before = done_before.saturating_add(reader.stats().file_bytes);
        let nothing = carried_nothing(reader);
        if nothing {
            out.remove_file(&file_name)
                .map_err(|source| ConvertError::create(&path, source))?;
        }
        run.opened.report.channels.push(ChannelReport {
            output: (!nothing).then_some(file_path),
            carried_nothing: nothing,
            ..channel
        });
    }
    Ok(())
}

/// The file name (`<channel>.<ext>`) and path in `dir` of each reader's
/// channel; an error if one exists in `out` and `opts` does not force.
fn channel_file_names(
    out: &OutputDir,
    dir: &Path,
    readers: &[ChannelReader],
    opts: &ConvertOptions,
) -> Result<Vec<(String, PathBuf)>, ConvertError> {
    let ext = opts.format.extension();
    let mut names = Vec::with_capacity(readers.len());
    for reader in readers {
        // The reader validated the name already; a file name is made from
        // it here, so check again rather than trust at a distance.
        let name = reader.channel();
        validate_channel_name(name)?;
        let file_name = format!("{name}.{ext}");
        let path = dir.join(&file_name);
        let exists = out
            .contains(&file_name)
            .map_err(|source| ConvertError::Create {
                path: OutputTarget::Path(path.clone()),
                source,
            })?;
        if !opts.force && exists {
            return Err(ConvertError::Exists(path));
        }
        names.push((file_name, path));
    }
    Ok(names)
}

/// Writes the channel of `reader`, the `index`th, into `file`, whole, and
/// gives its report (without output). Progress counts on from
/// `done_before`, the bytes of the channels written before.
fn write_channel_file(
    run: &mut Conversion,
    index: usize,
    reader: &mut ChannelReader,
    file: File,
    done_before: u64,
) -> Result<ChannelReport, PcapError> {
    let opts = run.opts;
    let iface = InterfaceInfo {
        name: reader.channel(),
        description: run.descriptions.get(index).map(String::as_str),
    };
    let sink = PacketSink::with_section(buffered(file), opts.format, &[iface], &run.section)?;
    stream_one(run, sink, reader, done_before)
}

/// Ends a channel read to its end and framed by `framer`: its report
/// (without output), and in pcapng its Interface Statistics Block.
fn close_channel<W: Write>(
    sink: &mut PacketSink<W>,
    reader: &ChannelReader,
    framer: &ChannelFramer,
    ports: &PortMap,
    clock: PacketClock,
    reading: Reading,
) -> Result<ChannelReport, PcapError> {
    let name = reader.channel();
    let channel = ChannelReport::new(
        name,
        ports.port(name),
        reader.stats(),
        (reader.damage(), reader.damage_totals()),
        reader.trimmed(),
        framer,
        None,
    );
    write_channel_stats(sink, &channel, framer, clock, reading)?;
    Ok(channel)
}

/// The framer of one channel as `opts` asks: redaction, and the
/// trimmed-start note on its first packet.
fn channel_framer(
    reader: &ChannelReader,
    ports: &PortMap,
    interface: u32,
    opts: &ConvertOptions,
) -> ChannelFramer {
    framer_for(reader, ports, interface, opts.synth, opts.redact).with_server_port(opts.server_port)
}

/// The framer of the channel `reader` reads: its port, what to make up and
/// redact, and the trimmed-start note on its first packet.
pub(crate) fn framer_for(
    reader: &ChannelReader,
    ports: &PortMap,
    interface: u32,
    synth: Synthesis,
    redact: Redaction,
) -> ChannelFramer {
    let name = reader.channel();
    let trimmed = reader.trimmed().filter(|t| t.segments > 0);
    ChannelFramer::new(name, ports.port(name), interface, synth)
        .with_redactor(Redactor::for_channel(name, redact, trimmed.is_some()))
        .with_first_note(trimmed.map(|t| trimmed_note(name, t)))
}

/// Opens the merged output `path` (see [`OutputTarget::open`]),
/// unbuffered; one of `inputs` is refused.
pub(crate) fn open_output(
    path: &OutputTarget,
    force: bool,
    inputs: Option<&InputFiles>,
) -> Result<File, ConvertError> {
    path.open(force, inputs)
        .map_err(|source| ConvertError::create(path, source))
}

/// The buffer in front of a conversion's output. Writes to a regular file
/// (page-cache copies, CPU work) happen on a thread of their own, to
/// anything else (a pipe, a terminal, `/dev/null`) on this one; see
/// [`WriteBehind`].
fn buffered(file: File) -> WriteBehind<File> {
    if file.metadata().is_ok_and(|m| m.is_file()) {
        WriteBehind::with_capacity(OUTPUT_BUFFER_BYTES, file)
    } else {
        WriteBehind::inline(OUTPUT_BUFFER_BYTES, file)
    }
}

fn finish<W: Write>(sink: PacketSink<W>) -> Result<(), PcapError> {
    sink.into_inner().flush().map_err(PcapError::IoError)
}

/// Writes every channel of `readers` into `out` (which is `path`), merged
/// in time order.
fn merge_to<W: Write>(
    run: &mut Conversion,
    out: W,
    path: OutputTarget,
    mut readers: Vec<ChannelReader>,
) -> Result<(), ConvertError> {
    let ifaces: Vec<InterfaceInfo> = readers
        .iter()
        .zip(&run.descriptions)
        .map(|(r, d)| InterfaceInfo {
            name: r.channel(),
            description: Some(d),
        })
        .collect();
    let sink = PacketSink::with_section(out, run.opts.format, &ifaces, &run.section);
    drop(ifaces);
    let write_err = |source| ConvertError::Write {
        path: path.clone(),
        source,
    };
    let sink = sink.map_err(write_err)?;
    // One channel needs no merge: stream it directly, without copying each
    // record out of the reader's buffer.
    let channels = match &mut readers[..] {
        [reader] => stream_one(run, sink, reader, 0).map(|c| vec![c]),
        _ => merge_many(run, sink, readers),
    }
    .map_err(write_err)?;
    let output = path.path().map(Path::to_path_buf);
    run.opened
        .report
        .channels
        .extend(channels.into_iter().map(|c| ChannelReport {
            output: output.clone(),
            ..c
        }));
    Ok(())
}

/// One channel streamed whole into `sink` (a channel's own file, or a
/// merged output of one channel): its report (without output). Progress
/// counts on from `done_before`, the bytes of the channels written before.
fn stream_one<W: Write>(
    run: &mut Conversion,
    mut sink: PacketSink<W>,
    reader: &mut ChannelReader,
    done_before: u64,
) -> Result<ChannelReport, PcapError> {
    let ports = &run.opened.ports;
    let mut framer = channel_framer(reader, ports, 0, run.opts);
    let (total, progress) = (run.total, &mut run.progress);
    convert_channel(
        reader,
        &mut framer,
        &mut sink,
        run.clock,
        &mut run.frame,
        &mut |done| {
            progress(Progress {
                done: done_before.saturating_add(done),
                total,
            })
        },
    )?;
    let channel = close_channel(&mut sink, reader, &framer, ports, run.clock, run.reading)?;
    finish(sink)?;
    Ok(channel)
}

/// Every channel of `readers` merged into `sink` in time order: their
/// reports (without output).
fn merge_many<W: Write>(
    run: &mut Conversion,
    mut sink: PacketSink<W>,
    readers: Vec<ChannelReader>,
) -> Result<Vec<ChannelReport>, PcapError> {
    let ports = &run.opened.ports;
    let mut sources: Vec<ChannelSource> = readers
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let framer = channel_framer(&r, ports, i as u32, run.opts);
            ChannelSource::new(r, framer)
        })
        .collect();
    let (total, progress) = (run.total, &mut run.progress);
    merge_into(
        &mut sources,
        &mut sink,
        run.clock,
        &mut run.frame,
        &mut |done| progress(Progress { done, total }),
    )?;
    let problems = &mut run.opened.report.problems;
    problems.extend(drained_note(&sources));
    let channels = sources
        .iter()
        .map(|s| {
            close_channel(
                &mut sink,
                s.reader(),
                s.framer(),
                ports,
                run.clock,
                run.reading,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    finish(sink)?;
    Ok(channels)
}

/// Streams one channel into `sink` through `framer` (synthetic packets
/// included, the close after the last record). `progress` gets the
/// channel's segment bytes read so far whenever that changes.
pub fn convert_channel<W: Write>(
    reader: &mut ChannelReader,
    framer: &mut ChannelFramer,
    sink: &mut PacketSink<W>,
    clock: PacketClock,
    frame: &mut Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), PcapError> {
    let mut reported = u64::MAX;
    while let Some(event) = reader.next_event() {
        match event {
            Event::Data(d) => {
                framer.data(sink, clock, 0, d.into(), frame)?;
            }
            Event::Gap(g) => framer.gap(&g),
            // Kept in the reader's damage list; reading goes on after it.
            Event::Damage(d) => framer.damage(&d),
        }
        let done = reader.stats().file_bytes;
        if done != reported {
            reported = done;
            progress(done);
        }
    }
    let clean = reader.stats().closed_cleanly;
    framer.finish(sink, clock, clean, frame)
}

/// A channel that was registered but never used: no record, no gap, no
/// damage. (ryll registers every channel it knows at start.)
fn carried_nothing(reader: &ChannelReader) -> bool {
    let st = reader.stats();
    st.records == 0 && st.gaps == 0 && reader.damage().is_empty()
}
