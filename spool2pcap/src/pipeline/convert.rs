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
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use pcap_file::PcapError;
use spool::format::validate_channel_name;
use spool::reader::{Capture, ChannelReader, Damage, Event, OpenError};

use crate::guard::{clean, cleaned, open_capture, CaptureError, InputFiles, MAX_TEXT_CHARS};
use crate::metadata::CaptureMetadata;
use crate::net::tcp::MAX_FRAME_LEN;
use crate::output::wireshark::{decode_as, wireshark_command};
use crate::output::writebehind::WriteBehind;
use crate::output::{
    create_output_file, CreateError, Format, InterfaceInfo, InterfaceStats, OutputDir, PacketSink,
    SectionInfo, OUTPUT_BUFFER_BYTES,
};
use crate::pipeline::clock::{PacketClock, TimeMode};
use crate::pipeline::framing::{ChannelFramer, Synthesis};
use crate::pipeline::merge::{merge_into, ChannelSource};
use crate::spice::channels::{PortMap, SERVER_PORT};
use crate::spice::redact::{RedactStats, Redaction, Redactor};
use spool::limit::Trimmed;

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
    /// (default: on; see [`spool::Capture::set_mapping`] for the cost).
    pub mmap: bool,
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
            mmap: true,
        }
    }
}

/// What happened to one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelReport {
    /// Channel name.
    pub channel: String,
    /// Client TCP port it was given.
    pub client_port: u16,
    /// File it was written to (`None` for standard output, and for a
    /// channel that carried nothing in per-channel mode).
    pub output: Option<PathBuf>,
    /// The channel held no record, gap or damage: registered but never
    /// used. Per-channel conversion writes no file for it.
    pub carried_nothing: bool,
    /// Data records read.
    pub records: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Frames written, synthetic ones included.
    pub frames: u64,
    /// Frames written that the capture does not hold: handshake, SPICE
    /// link phase, FIN exchange.
    pub synthetic_frames: u64,
    /// A SPICE link phase was made up for this channel.
    pub link_synthesized: bool,
    /// Gap records met.
    pub gaps: u64,
    /// Records the writer dropped, per the gap records.
    pub dropped_records: u64,
    /// Bytes the writer dropped, per the gap records.
    pub dropped_bytes: u64,
    /// Damage found (the records around it were still converted).
    pub damage: Vec<Damage>,
    /// The channel's last segment carries a final seal.
    pub closed_cleanly: bool,
    /// Data records read from segments still staged in memory (a crashed
    /// session not yet recovered, or a live one).
    pub staged_records: u64,
    /// What the flight recorder deleted from the channel's start, if any.
    pub trimmed: Option<Trimmed>,
    /// What redaction rewrote (`None`: nothing to redact on this channel).
    pub redacted: Option<RedactStats>,
}

/// What [`convert`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConvertReport {
    /// One entry per converted channel, in name order.
    pub channels: Vec<ChannelReport>,
    /// Entries of the capture directory that were skipped, and notes such as
    /// a missing session start.
    pub problems: Vec<String>,
    /// Wall-clock session start used for absolute timestamps, if known.
    pub session_start_unix_ns: Option<u64>,
    /// What ryll's `metadata.json` says about the session, if there is one.
    pub metadata: Option<CaptureMetadata>,
    /// The manifest's `clean_shutdown` (`None`: no manifest).
    pub clean_shutdown: Option<bool>,
    /// What was redacted in the output.
    pub redaction: Redaction,
}

impl ConvertReport {
    /// Data records read from staged segments, all channels: what a crash
    /// left in memory and this conversion recovered.
    pub fn staged_records(&self) -> u64 {
        self.channels
            .iter()
            .map(|c| c.staged_records)
            .fold(0, u64::saturating_add)
    }

    /// Every damage found, all channels.
    pub fn damage(&self) -> impl Iterator<Item = &Damage> {
        self.channels.iter().flat_map(|c| c.damage.iter())
    }

    /// Whether any damage was found.
    pub fn has_damage(&self) -> bool {
        self.damage().next().is_some()
    }

    /// Frames written, all channels.
    pub fn frames(&self) -> u64 {
        self.channels
            .iter()
            .map(|c| c.frames)
            .fold(0, u64::saturating_add)
    }

    /// The files written, each once, in the order written.
    pub fn outputs(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        for p in self.channels.iter().filter_map(|c| c.output.as_deref()) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// For every file written, the command that opens it in Wireshark with
    /// SPICE decoding on ([`wireshark_command`]).
    pub fn wireshark_commands(&self) -> Vec<String> {
        self.outputs().into_iter().map(wireshark_command).collect()
    }
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The capture directory could not be read.
    #[error(transparent)]
    Open(#[from] CaptureError),
    /// A requested channel is not in the capture.
    #[error("{capture}: no channel {name:?} (channels: {available})")]
    NoSuchChannel {
        /// The capture directory.
        capture: PathBuf,
        /// The channel asked for.
        name: String,
        /// The channels there are, comma-separated.
        available: String,
    },
    /// A channel name that cannot be used as a file name.
    #[error("refusing channel name: {0}")]
    InvalidChannel(#[from] spool::format::InvalidChannelName),
    /// `--follow` writes one stream: it needs `-w FILE` or `-w -`.
    #[error("--follow writes one merged stream: use -w FILE or -w -, not -o OUTDIR")]
    FollowNeedsStream,
    /// An output file exists and `force` was not given.
    #[error("{0}: already exists (use --force to overwrite)")]
    Exists(PathBuf),
    /// An output file or directory could not be created.
    #[error("{path}: cannot create: {source}")]
    Create {
        /// What could not be created.
        path: PathBuf,
        /// Why.
        source: CreateError,
    },
    /// Writing the output failed (disk full, closed pipe…). The output is
    /// incomplete.
    #[error(
        "{path}: write failed, output incomplete: {}",
        describe_pcap_error(source)
    )]
    Write {
        /// Where (`<stdout>` for standard output).
        path: PathBuf,
        /// Why.
        source: PcapError,
    },
}

impl ConvertError {
    /// Whether the error is the caller's mistake (a usage error) rather than
    /// a problem with the input or the output.
    pub fn is_usage(&self) -> bool {
        match self {
            ConvertError::NoSuchChannel { .. } | ConvertError::FollowNeedsStream => true,
            ConvertError::Create { source, .. } => source.is_usage(),
            _ => false,
        }
    }
}

impl From<OpenError> for ConvertError {
    fn from(e: OpenError) -> ConvertError {
        ConvertError::Open(CaptureError::Open(e))
    }
}

/// `pcap-file` shows every I/O error as "Error reading bytes", even when
/// writing; say what the system said instead.
fn describe_pcap_error(e: &PcapError) -> String {
    match e {
        PcapError::IoError(io) => io.to_string(),
        other => other.to_string(),
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

/// The Interface Statistics Block of a channel that kept `records` and
/// lost `dropped` to the capture writer, spanning its framer's packets.
pub(crate) fn interface_stats(
    records: u64,
    dropped: u64,
    framer: &ChannelFramer,
    clock: PacketClock,
) -> InterfaceStats {
    let span = framer.time_span_ns();
    InterfaceStats {
        received: records.saturating_add(dropped),
        dropped,
        delivered: records,
        start: span.map(|(a, _)| clock.timestamp(a)),
        end: span.map(|(_, b)| clock.timestamp(b)),
    }
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
    let mut report = ConvertReport {
        problems: cleaned(cap.problems()),
        clean_shutdown: cap.manifest().map(|m| m.clean_shutdown),
        redaction: opts.redact,
        ..ConvertReport::default()
    };
    match crate::metadata::load(capture) {
        Ok(m) => report.metadata = m,
        Err(e) => report.problems.push(e.to_string()),
    }

    let total: u64 = selected
        .iter()
        .flat_map(|c| cap.channels().iter().filter(move |f| &f.name == c))
        .flat_map(|f| f.segments.iter())
        .filter_map(|s| std::fs::symlink_metadata(&s.path).ok())
        .map(|m| m.len())
        .fold(0, u64::saturating_add);

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
        &mut report.problems,
    );
    if opts.time == TimeMode::Absolute {
        report.session_start_unix_ns = session_start;
    }
    let section = section_info(
        &cap,
        session_start,
        peeked.map(|s| spool::manifest::session_id_hex(&s.session_id)),
        report.metadata.as_ref(),
        opts.synth,
        opts.redact,
    );
    let descriptions: Vec<String> = readers
        .iter()
        .map(|r| {
            let summary = cap.manifest().and_then(|m| m.channels.get(r.channel()));
            interface_description(r.channel(), ports.port(r.channel()), summary)
        })
        .collect();

    let mut frame = Vec::with_capacity(MAX_FRAME_LEN);
    let ext = opts.format.extension();
    // Per-channel files are written in the first arm; one merged output is
    // opened in the others and written below.
    let merged = match &opts.destination {
        Destination::Dir(dir) => {
            let out =
                OutputDir::open(dir, Some(&inputs)).map_err(|source| ConvertError::Create {
                    path: dir.clone(),
                    source,
                })?;
            let mut targets = Vec::with_capacity(selected.len());
            for name in &selected {
                // The reader validated the name already; a file name is made
                // from it here, so check again rather than trust at a distance.
                validate_channel_name(name)?;
                let file_name = format!("{name}.{ext}");
                let path = dir.join(&file_name);
                let exists = out
                    .contains(&file_name)
                    .map_err(|source| ConvertError::Create {
                        path: path.clone(),
                        source,
                    })?;
                if !opts.force && exists {
                    return Err(ConvertError::Exists(path));
                }
                targets.push((file_name, path));
            }
            let mut done_before = 0u64;
            for ((reader, (file_name, path)), description) in
                readers.iter_mut().zip(targets).zip(&descriptions)
            {
                let file = out
                    .create_file(&file_name, opts.force, Some(&inputs))
                    .map_err(|source| create_error(&path, source))?;
                let file = buffered(file);
                let write_err = |source| ConvertError::Write {
                    path: path.clone(),
                    source,
                };
                let iface = InterfaceInfo {
                    name: reader.channel(),
                    description: Some(description),
                };
                let mut sink = PacketSink::with_section(file, opts.format, &[iface], &section)
                    .map_err(write_err)?;
                let mut framer = channel_framer(reader, &ports, 0, opts);
                convert_channel(
                    reader,
                    &mut framer,
                    &mut sink,
                    clock,
                    &mut frame,
                    &mut |done| {
                        progress(Progress {
                            done: done_before.saturating_add(done),
                            total,
                        })
                    },
                )
                .and_then(|()| write_channel_stats(&mut sink, reader, &framer, clock))
                .and_then(|()| finish(sink))
                .map_err(write_err)?;
                done_before = done_before.saturating_add(reader.stats().file_bytes);
                let nothing = carried_nothing(reader);
                if nothing {
                    out.remove_file(&file_name)
                        .map_err(|source| create_error(&path, source))?;
                }
                let mut channel =
                    channel_report(reader, &framer, &ports, (!nothing).then_some(path));
                channel.carried_nothing = nothing;
                report.channels.push(channel);
            }
            None
        }
        Destination::File(path) => {
            let file = open_output(path, opts.force, Some(&inputs))?;
            Some((buffered(file), path.clone()))
        }
        Destination::Stdout => {
            let path = PathBuf::from("<stdout>");
            let file = stdout_file().map_err(|source| ConvertError::Create {
                path: path.clone(),
                source: source.into(),
            })?;
            Some((buffered(file), path))
        }
    };
    if let Some((out, path)) = merged {
        let target = MergeTarget {
            path,
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

/// The clock of a conversion's packets: `time`, from `session_start` (ns
/// since the Unix epoch) if it is known; relative, with a note in
/// `problems`, if absolute time was asked for and it is not (and there are
/// `records` to convert).
pub(crate) fn session_clock(
    time: TimeMode,
    session_start: Option<u64>,
    records: bool,
    problems: &mut Vec<String>,
) -> PacketClock {
    match (time, session_start) {
        (TimeMode::Relative, _) => PacketClock::relative(),
        (TimeMode::Absolute, Some(ns)) => PacketClock::absolute(ns),
        (TimeMode::Absolute, None) => {
            if records {
                problems.push(
                    "session start unknown (no valid segment header, no manifest): \
                     timestamps are relative to it"
                        .to_string(),
                );
            }
            PacketClock::relative()
        }
    }
}

/// The framer of one channel as `opts` asks: redaction, and the
/// trimmed-start note on its first packet.
fn channel_framer(
    reader: &ChannelReader,
    ports: &PortMap,
    interface: u32,
    opts: &ConvertOptions,
) -> ChannelFramer {
    framer_for(reader, ports, interface, opts.synth, opts.redact)
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

/// What the flight recorder deleted from the start of a channel, in words.
pub fn trimmed_note(channel: &str, t: &Trimmed) -> String {
    format!(
        "{channel}: start trimmed by the flight recorder: {} segments ({} records, {} data \
         bytes) before +{} of the session were deleted; this is the oldest packet kept",
        t.segments,
        t.records,
        t.data_bytes,
        crate::time::format_secs(t.until_ts_ns)
    )
}

/// The pcapng section header of a conversion: which session, which ryll,
/// what was made up, trimmed, recovered and redacted.
fn section_info(
    cap: &Capture,
    session_start: Option<u64>,
    peeked_id: Option<String>,
    metadata: Option<&CaptureMetadata>,
    synth: Synthesis,
    redact: Redaction,
) -> SectionInfo {
    let mut lines = Vec::new();
    let manifest = cap.manifest();
    let mut session = String::from("ryll capture");
    if let Some(id) = manifest
        .map(|m| m.session_id.as_str())
        .or(peeked_id.as_deref())
    {
        session.push_str(&format!(" of session {}", clean(id, MAX_TEXT_CHARS)));
    }
    if let Some(ns) = session_start {
        session.push_str(&format!(", started {}", crate::time::format_unix_ns(ns)));
    }
    match manifest.map(|m| m.clean_shutdown) {
        Some(true) => session.push_str(", shut down cleanly."),
        Some(false) => session.push_str(", not shut down cleanly (crash or still running)."),
        None => session.push_str(", no manifest."),
    }
    lines.push(session);
    if let Some(m) = metadata.filter(|m| !m.is_empty()) {
        lines.push(format!("Recorded by {}.", m.describe()));
    }
    let mut made_up = Vec::new();
    if synth.tcp {
        made_up.push("TCP handshake and close");
    }
    if synth.link {
        made_up.push("SPICE link phase");
    }
    lines.push(format!(
        "Converted by spool2pcap {}: one TCP connection per SPICE channel, 10.0.0.1 -> \
         10.0.0.2:{SERVER_PORT}{}.",
        env!("CARGO_PKG_VERSION"),
        if made_up.is_empty() {
            String::new()
        } else {
            format!(
                "; {} synthetic (marked by packet comments)",
                made_up.join(" and ")
            )
        }
    ));
    if cap.has_staged_segments() {
        lines.push(format!(
            "Recovered: the session did not shut down cleanly; records still staged in \
             memory ({}) were read in place (counts per channel in the interface \
             statistics).",
            manifest
                .and_then(|m| m.staging_dir.as_deref())
                .map_or_else(|| "staging directory".into(), |s| clean(s, MAX_TEXT_CHARS))
        ));
    } else if manifest.is_some_and(|m| m.errors.iter().any(|e| e.starts_with("recovered "))) {
        lines.push(
            "Recovered: the session did not shut down cleanly; its staged segments were \
             moved in by recovery."
                .to_string(),
        );
    }
    if let Some(m) = manifest {
        for (name, t) in m.trimmed.iter().filter(|(_, t)| t.segments > 0) {
            // Names of channels the capture may not have: unchecked.
            let name = clean(name, MAX_TEXT_CHARS);
            lines.push(format!("Trimmed: {}.", trimmed_note(&name, t)));
        }
    }
    if redact.any() {
        lines.push(format!(
            "redacted: {} (message bodies zeroed; headers, sizes, timing and sequence \
             numbers kept)",
            redact.describe()
        ));
    }
    lines.push(format!("Decode with: wireshark -d {} FILE", decode_as()));
    SectionInfo {
        comment: Some(lines.join("\n")),
        os: metadata.and_then(|m| m.platform_os.clone()),
        hardware: metadata.and_then(|m| m.platform_arch.clone()),
    }
}

/// `if_description` of a channel's interface. It also gives the drops the
/// manifest of a cleanly closed session counts: the Interface Statistics
/// Block says the same at the end of the file, but `capinfos` (4.0) shows
/// descriptions and not `isb_ifdrop`.
pub(crate) fn interface_description(
    channel: &str,
    port: u16,
    summary: Option<&spool::manifest::ChannelSummary>,
) -> String {
    let ty = crate::spice::link::channel_type_for(channel);
    let known = if crate::spice::channels::spice_channel_type(channel).is_some() {
        ""
    } else {
        ", unknown name: linked as port"
    };
    let mut d = format!(
        "SPICE {channel} channel (type {ty}{known}), 10.0.0.1:{port} -> 10.0.0.2:{SERVER_PORT}"
    );
    if let Some(s) = summary {
        d.push_str(&format!(
            "; capture writer dropped {} records ({} bytes)",
            s.dropped_records, s.dropped_bytes
        ));
    }
    d
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

/// Creates an output file (see [`create_output_file`]), unbuffered; one
/// of `inputs` is refused.
pub(crate) fn open_output(
    path: &Path,
    force: bool,
    inputs: Option<&InputFiles>,
) -> Result<File, ConvertError> {
    create_output_file(path, force, inputs).map_err(|source| create_error(path, source))
}

/// The conversion error of creating `path` failing.
fn create_error(path: &Path, source: CreateError) -> ConvertError {
    match source {
        CreateError::Exists => ConvertError::Exists(path.to_path_buf()),
        source => ConvertError::Create {
            path: path.to_path_buf(),
            source,
        },
    }
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

/// Standard output as a plain `File` on a duplicated descriptor, so that
/// writes bypass `Stdout`'s line buffering (which scans binary data for
/// newlines) and go straight to the pipe in big chunks.
pub(crate) fn stdout_file() -> io::Result<File> {
    use std::os::fd::AsFd;
    let fd = io::stdout().as_fd().try_clone_to_owned()?;
    Ok(File::from(fd))
}

fn finish<W: Write>(sink: PacketSink<W>) -> Result<(), PcapError> {
    sink.into_inner().flush().map_err(PcapError::IoError)
}

/// Where and how a merged conversion writes.
struct MergeTarget<'a> {
    path: PathBuf,
    format: Format,
    opts: &'a ConvertOptions,
    section: &'a SectionInfo,
    descriptions: &'a [String],
}

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
    let output = (path.as_os_str() != "<stdout>").then_some(path.clone());
    // One channel needs no merge: stream it directly, without copying each
    // record out of the reader's buffer.
    if let [reader] = &mut readers[..] {
        let mut framer = channel_framer(reader, ports, 0, target.opts);
        convert_channel(reader, &mut framer, &mut sink, clock, frame, &mut |done| {
            progress(Progress { done, total })
        })
        .and_then(|()| write_channel_stats(&mut sink, reader, &framer, clock))
        .and_then(|()| finish(sink))
        .map_err(write_err)?;
        report
            .channels
            .push(channel_report(reader, &framer, ports, output));
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
    merge_into(&mut sources, &mut sink, clock, frame, &mut |done| {
        progress(Progress { done, total })
    })
    .and_then(|()| {
        sources
            .iter()
            .try_for_each(|s| write_channel_stats(&mut sink, s.reader(), s.framer(), clock))
    })
    .and_then(|()| finish(sink))
    .map_err(write_err)?;
    for s in &sources {
        report.channels.push(channel_report(
            s.reader(),
            s.framer(),
            ports,
            output.clone(),
        ));
    }
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
                framer.data(sink, clock, 0, d.direction, d.ts_ns, d.payload, frame)?;
            }
            Event::Gap(g) => framer.gap(&g),
            // Kept in the reader's damage list; reading goes on after it.
            Event::Damage(_) => framer.damage(),
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

/// The Interface Statistics Block of a channel (pcapng only): records
/// received, dropped by the spool writer (`isb_ifdrop`) and converted.
pub fn write_channel_stats<W: Write>(
    sink: &mut PacketSink<W>,
    reader: &ChannelReader,
    framer: &ChannelFramer,
    clock: PacketClock,
) -> Result<(), PcapError> {
    if matches!(sink, PacketSink::Pcap(_)) {
        return Ok(());
    }
    let st = reader.stats();
    let stats = interface_stats(st.records, st.dropped_records, framer, clock);
    let mut comment = format!(
        "{}: {} records ({} bytes) captured; {} records ({} bytes) dropped by the capture \
         writer in {} gaps; {} damaged regions skipped; {}",
        reader.channel(),
        st.records,
        st.bytes,
        st.dropped_records,
        st.dropped_bytes,
        st.gaps,
        reader.damage().len(),
        if st.closed_cleanly {
            "closed cleanly"
        } else {
            "not closed cleanly"
        }
    );
    if st.staged_records > 0 {
        comment.push_str(&format!(
            "; {} records recovered from segments still staged in memory",
            st.staged_records
        ));
    }
    if let Some(t) = reader.trimmed().filter(|t| t.segments > 0) {
        comment.push_str(&format!(
            "; start trimmed by the flight recorder ({} records before +{} deleted)",
            t.records,
            crate::time::format_secs(t.until_ts_ns)
        ));
    }
    if let Some(r) = framer.redact_stats() {
        comment.push_str(&format!(
            "; redacted: {} messages, {} bytes zeroed",
            r.messages, r.bytes
        ));
    }
    sink.write_interface_stats(framer.interface(), &stats, Some(&comment))
}

/// A channel that was registered but never used: no record, no gap, no
/// damage. (ryll registers every channel it knows at start.)
fn carried_nothing(reader: &ChannelReader) -> bool {
    let st = reader.stats();
    st.records == 0 && st.gaps == 0 && reader.damage().is_empty()
}

fn channel_report(
    reader: &ChannelReader,
    framer: &ChannelFramer,
    ports: &PortMap,
    output: Option<PathBuf>,
) -> ChannelReport {
    let st = reader.stats();
    ChannelReport {
        channel: reader.channel().to_string(),
        client_port: ports.port(reader.channel()),
        output,
        carried_nothing: false,
        records: st.records,
        bytes: st.bytes,
        frames: framer.frames(),
        synthetic_frames: framer.synthetic_frames(),
        link_synthesized: framer.link_synthesized(),
        gaps: st.gaps,
        dropped_records: st.dropped_records,
        dropped_bytes: st.dropped_bytes,
        damage: reader.damage().to_vec(),
        closed_cleanly: st.closed_cleanly,
        staged_records: st.staged_records,
        trimmed: reader.trimmed().filter(|t| t.segments > 0).copied(),
        redacted: framer.redact_stats(),
    }
}
