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
use spool::read::reader::{Capture, ChannelReader, Event, SessionInfo};
use spool::store::format::validate_channel_name;

use crate::guard::{clean_notes, open_capture, InputFiles};
use crate::net::tcp::MAX_FRAME_LEN;
use crate::output::writebehind::WriteBehind;
use crate::output::{
    Format, InterfaceInfo, OutputDir, OutputTarget, PacketSink, SectionInfo, OUTPUT_BUFFER_BYTES,
};
use crate::pipeline::clock::{session_clock, PacketClock, StartUnknown, TimeMode};
use crate::pipeline::framing::{ChannelFramer, Synthesis};
use crate::pipeline::merge::{merge_into, ChannelSource};
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
    let mut cap = open_capture(capture)?;
    cap.set_mapping(opts.mmap);
    let inputs = InputFiles::of(capture, &cap)?;
    let ports = PortMap::new(cap.channels().iter().map(|c| c.name.as_str()));
    let selected = select_channels(&cap, &opts.channels)?;
    let mut report = ConvertReport::begin(capture, clean_notes(cap.problems()), opts.redact);
    report.server_port = (opts.server_port != SERVER_PORT).then_some(opts.server_port);
    report.clean_shutdown = cap.manifest().map(|m| m.clean_shutdown);

    let total = segment_file_bytes(&cap, &selected);

    let mut readers: Vec<ChannelReader> = selected
        .iter()
        .filter_map(|name| cap.reader(name))
        .collect();
    let peeked = readers
        .iter_mut()
        .find_map(|r| crate::guard::peek_session(&cap, r));
    let session_start = peeked
        .map(|s| s.session_start_unix_ns)
        .or_else(|| cap.manifest().map(|m| m.session_start_unix_ns));
    let clock = session_clock(
        opts.time,
        session_start,
        !readers.is_empty(),
        StartUnknown::NoHeaderNoManifest,
        &mut report.problems,
    );
    if opts.time == TimeMode::Absolute {
        report.session_start_unix_ns = session_start;
    }
    let reading = Reading::Closed {
        clean_shutdown: report.clean_shutdown,
    };
    let section = section_of(&cap, &report, opts, session_start, peeked.as_ref());
    let descriptions = descriptions_of(&cap, &readers, &ports, opts.server_port);

    let mut frame = Vec::with_capacity(MAX_FRAME_LEN);
    // Per-channel files are written in the first arm; one merged output is
    // opened in the others and written below.
    let merged = match &opts.destination {
        Destination::Dir(dir) => {
            let target = ChannelFiles {
                dir,
                inputs: &inputs,
                opts,
                reading,
                section: &section,
                descriptions: &descriptions,
            };
            write_channel_files(
                &target,
                &mut readers,
                &ports,
                clock,
                &mut frame,
                (total, progress),
                &mut report,
            )?;
            None
        }
        Destination::File(path) => Some(OutputTarget::Path(path.clone())),
        Destination::Stdout => Some(OutputTarget::Stdout),
    };
    if let Some(path) = merged {
        let out = buffered(open_output(&path, opts.force, Some(&inputs))?);
        let target = MergeTarget {
            path,
            reading,
            format: opts.format,
            opts,
            section: &section,
            descriptions: &descriptions,
        };
        merge_to(
            out,
            &target,
            readers,
            &ports,
            clock,
            &mut frame,
            total,
            progress,
            &mut report,
        )?;
    }
    Ok(report)
}

/// The pcapng section header of converting `cap` as `opts` says: the
/// session as the manifest names it (else as a segment header, `peeked`,
/// does), when it started, how it ended and was recovered.
fn section_of(
    cap: &Capture,
    report: &ConvertReport,
    opts: &ConvertOptions,
    session_start: Option<u64>,
    peeked: Option<&SessionInfo>,
) -> SectionInfo {
    let manifest = cap.manifest();
    let peeked_id = peeked.map(|s| spool::store::manifest::session_id_hex(&s.session_id));
    section_info(&SessionFacts {
        id: manifest
            .map(|m| m.session_id.as_str())
            .or(peeked_id.as_deref()),
        start_unix_ns: session_start,
        reading: Reading::Closed {
            clean_shutdown: report.clean_shutdown,
        },
        recovered: recovered_of(cap),
        trimmed: manifest.map(|m| &m.trimmed),
        metadata: report.metadata.as_ref(),
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

/// Where and how per-channel files are written.
struct ChannelFiles<'a> {
    dir: &'a Path,
    inputs: &'a InputFiles,
    opts: &'a ConvertOptions,
    reading: Reading,
    section: &'a SectionInfo,
    descriptions: &'a [String],
}

/// Writes every channel of `readers` to a file of its own in
/// `target.dir`, removing the file of a channel that carried nothing.
/// Every file name is checked before the first file is created.
fn write_channel_files(
    target: &ChannelFiles,
    readers: &mut [ChannelReader],
    ports: &PortMap,
    clock: PacketClock,
    frame: &mut Vec<u8>,
    (total, progress): (u64, &mut dyn FnMut(Progress)),
    report: &mut ConvertReport,
) -> Result<(), ConvertError> {
    let opts = target.opts;
    let dir = target.dir;
    let out = OutputDir::open(dir, Some(target.inputs)).map_err(|source| ConvertError::Create {
        path: OutputTarget::Path(dir.to_path_buf()),
        source,
    })?;
    let ext = opts.format.extension();
    let mut names = Vec::with_capacity(readers.len());
    for reader in readers.iter() {
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
    let mut done_before = 0u64;
    for ((reader, (file_name, file_path)), description) in
        readers.iter_mut().zip(names).zip(target.descriptions)
    {
        let path = OutputTarget::Path(file_path.clone());
        let file = out
            .create_file(&file_name, opts.force, Some(target.inputs))
            .map_err(|source| ConvertError::create(&path, source))?;
        let write_err = |source| ConvertError::Write {
            path: path.clone(),
            source,
        };
        let iface = InterfaceInfo {
            name: reader.channel(),
            description: Some(description),
        };
        let mut sink =
            PacketSink::with_section(buffered(file), opts.format, &[iface], target.section)
                .map_err(write_err)?;
        let mut framer = channel_framer(reader, ports, 0, opts);
        let channel = convert_channel(reader, &mut framer, &mut sink, clock, frame, &mut |done| {
            progress(Progress {
                done: done_before.saturating_add(done),
                total,
            })
        })
        .and_then(|()| close_channel(&mut sink, reader, &framer, ports, clock, target.reading))
        .and_then(|channel| finish(sink).map(|()| channel))
        .map_err(write_err)?;
        done_before = done_before.saturating_add(reader.stats().file_bytes);
        let nothing = carried_nothing(reader);
        if nothing {
            out.remove_file(&file_name)
                .map_err(|source| ConvertError::create(&path, source))?;
        }
        report.channels.push(ChannelReport {
            output: (!nothing).then_some(file_path),
            carried_nothing: nothing,
            ..channel
        });
    }
    Ok(())
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
        reader.damage(),
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

/// The channels to convert, in the capture's (name) order.
pub(crate) fn select_channels(
    cap: &Capture,
    wanted: &[String],
) -> Result<Vec<String>, ConvertError> {
    if let Some(name) = wanted
        .iter()
        .find(|name| !cap.channels().iter().any(|c| &c.name == *name))
    {
        return Err(no_such_channel(cap, name));
    }
    Ok(cap
        .channels()
        .iter()
        .filter(|c| wanted.is_empty() || wanted.contains(&c.name))
        .map(|c| c.name.clone())
        .collect())
}

/// The usage error of asking for channel `name`, which `cap` lacks.
pub(crate) fn no_such_channel(cap: &Capture, name: &str) -> ConvertError {
    let available: Vec<&str> = cap.channels().iter().map(|c| c.name.as_str()).collect();
    ConvertError::NoSuchChannel {
        capture: cap.dir().to_path_buf(),
        name: name.chars().take(64).collect(),
        available: if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        },
    }
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

/// Where and how a merged conversion writes.
struct MergeTarget<'a> {
    path: OutputTarget,
    reading: Reading,
    format: Format,
    opts: &'a ConvertOptions,
    section: &'a SectionInfo,
    descriptions: &'a [String],
}

/// Writes every channel of `readers` into `out`, merged in time order.
#[allow(clippy::too_many_arguments)]
fn merge_to<W: Write>(
    out: W,
    target: &MergeTarget,
    mut readers: Vec<ChannelReader>,
    ports: &PortMap,
    clock: PacketClock,
    frame: &mut Vec<u8>,
    total: u64,
    progress: &mut dyn FnMut(Progress),
    report: &mut ConvertReport,
) -> Result<(), ConvertError> {
    let path = &target.path;
    let names: Vec<String> = readers.iter().map(|r| r.channel().to_string()).collect();
    let ifaces: Vec<InterfaceInfo> = names
        .iter()
        .zip(target.descriptions)
        .map(|(name, d)| InterfaceInfo {
            name,
            description: Some(d),
        })
        .collect();
    let write_err = |source| ConvertError::Write {
        path: path.clone(),
        source,
    };
    let mut sink =
        PacketSink::with_section(out, target.format, &ifaces, target.section).map_err(write_err)?;
    let output = path.path().map(Path::to_path_buf);
    // One channel needs no merge: stream it directly, without copying each
    // record out of the reader's buffer.
    if let [reader] = &mut readers[..] {
        let mut framer = channel_framer(reader, ports, 0, target.opts);
        let channel = convert_channel(reader, &mut framer, &mut sink, clock, frame, &mut |done| {
            progress(Progress { done, total })
        })
        .and_then(|()| close_channel(&mut sink, reader, &framer, ports, clock, target.reading))
        .and_then(|channel| finish(sink).map(|()| channel))
        .map_err(write_err)?;
        report.channels.push(ChannelReport { output, ..channel });
        return Ok(());
    }
    let mut sources: Vec<ChannelSource> = readers
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let framer = channel_framer(&r, ports, i as u32, target.opts);
            ChannelSource::new(r, framer)
        })
        .collect();
    let channels = merge_into(&mut sources, &mut sink, clock, frame, &mut |done| {
        progress(Progress { done, total })
    })
    .and_then(|()| {
        sources
            .iter()
            .map(|s| {
                close_channel(
                    &mut sink,
                    s.reader(),
                    s.framer(),
                    ports,
                    clock,
                    target.reading,
                )
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .and_then(|channels| finish(sink).map(|()| channels))
    .map_err(write_err)?;
    report
        .channels
        .extend(channels.into_iter().map(|c| ChannelReport {
            output: output.clone(),
            ..c
        }));
    Ok(())
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
