//! Converting a capture directory: choosing channels, ports, clock and
//! outputs, then streaming every channel through [`TcpStreamBuilder`] into
//! pcap sinks.
//!
//! Memory stays bounded whatever the capture size: per channel being read,
//! one segment buffer (inside [`ChannelReader`]); when merging, one copy of
//! each channel's next record; and one frame buffer shared by everything.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::PcapError;
use spool::format::validate_channel_name;
use spool::reader::{Capture, ChannelReader, Damage, Event, OpenError};

use crate::frames::{TcpStreamBuilder, MAX_FRAME_LEN};
use crate::merge::{merge_into, ChannelSource};
use crate::output::{
    create_output_dir, create_output_file, Format, PacketSink, OUTPUT_BUFFER_BYTES,
};
use crate::ports::PortMap;

/// How packet timestamps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeMode {
    /// Wall-clock time: session start (Unix epoch) + the record's offset.
    #[default]
    Absolute,
    /// Time since the session started (the first packet is near 0).
    Relative,
}

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
}

impl ConvertOptions {
    /// Options for `destination` with every other setting at its default:
    /// all channels, classic pcap, absolute time, no overwriting.
    pub fn new(destination: Destination) -> ConvertOptions {
        ConvertOptions {
            destination,
            channels: Vec::new(),
            format: Format::Pcap,
            time: TimeMode::Absolute,
            force: false,
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
    /// File it was written to (`None` for standard output).
    pub output: Option<PathBuf>,
    /// Data records read.
    pub records: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Frames written.
    pub frames: u64,
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
}

impl ConvertReport {
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
        self.channels.iter().map(|c| c.frames).sum()
    }
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The capture directory could not be read.
    #[error(transparent)]
    Open(#[from] OpenError),
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
    /// An output file exists and `force` was not given.
    #[error("{0}: already exists (use --force to overwrite)")]
    Exists(PathBuf),
    /// An output file or directory could not be created.
    #[error("{path}: cannot create: {source}")]
    Create {
        /// What could not be created.
        path: PathBuf,
        /// Why.
        source: io::Error,
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
        matches!(self, ConvertError::NoSuchChannel { .. })
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

/// Turns record timestamps (ns since session start) into packet times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    base_ns: u64,
}

impl Clock {
    /// Relative timestamps.
    pub fn relative() -> Clock {
        Clock { base_ns: 0 }
    }

    /// Absolute timestamps from a session start (ns since the Unix epoch).
    pub fn absolute(session_start_unix_ns: u64) -> Clock {
        Clock {
            base_ns: session_start_unix_ns,
        }
    }

    /// The packet time of a record.
    pub fn timestamp(&self, ts_ns: u64) -> Duration {
        Duration::from_nanos(self.base_ns.saturating_add(ts_ns))
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
    let cap = Capture::open(capture)?;
    let ports = PortMap::new(cap.channels().iter().map(|c| c.name.as_str()));
    let selected = select_channels(&cap, &opts.channels)?;
    let mut report = ConvertReport {
        problems: cap.problems().to_vec(),
        ..ConvertReport::default()
    };

    let total: u64 = selected
        .iter()
        .flat_map(|c| cap.channels().iter().filter(move |f| &f.name == c))
        .flat_map(|f| f.segments.iter())
        .filter_map(|s| std::fs::symlink_metadata(&s.path).ok())
        .map(|m| m.len())
        .sum();

    let mut readers: Vec<ChannelReader> = selected
        .iter()
        .filter_map(|name| cap.reader(name))
        .collect();
    let clock = match opts.time {
        TimeMode::Relative => Clock::relative(),
        TimeMode::Absolute => {
            let start = readers
                .iter_mut()
                .find_map(|r| r.peek_session())
                .map(|s| s.session_start_unix_ns)
                .or_else(|| cap.manifest().map(|m| m.session_start_unix_ns));
            report.session_start_unix_ns = start;
            match start {
                Some(ns) => Clock::absolute(ns),
                None => {
                    if !readers.is_empty() {
                        report.problems.push(
                            "session start unknown (no valid segment header, no manifest): \
                             timestamps are relative to it"
                                .to_string(),
                        );
                    }
                    Clock::relative()
                }
            }
        }
    };

    let mut frame = Vec::with_capacity(MAX_FRAME_LEN);
    let ext = opts.format.extension();
    match &opts.destination {
        Destination::Dir(dir) => {
            let mut targets = Vec::with_capacity(selected.len());
            for name in &selected {
                // The reader validated the name already; a file name is made
                // from it here, so check again rather than trust at a distance.
                validate_channel_name(name)?;
                let path = dir.join(format!("{name}.{ext}"));
                if !opts.force && std::fs::symlink_metadata(&path).is_ok() {
                    return Err(ConvertError::Exists(path));
                }
                targets.push(path);
            }
            create_output_dir(dir).map_err(|source| ConvertError::Create {
                path: dir.clone(),
                source,
            })?;
            let mut done_before = 0u64;
            for (reader, path) in readers.iter_mut().zip(targets) {
                let file = open_output(&path, opts.force)?;
                let mut sink =
                    PacketSink::new(file, opts.format, &[reader.channel()]).map_err(|source| {
                        ConvertError::Write {
                            path: path.clone(),
                            source,
                        }
                    })?;
                let mut stream = TcpStreamBuilder::new(ports.port(reader.channel()));
                let frames = convert_channel(
                    reader,
                    &mut stream,
                    &mut sink,
                    0,
                    clock,
                    &mut frame,
                    &mut |done| {
                        progress(Progress {
                            done: done_before + done,
                            total,
                        })
                    },
                )
                .and_then(|frames| finish(sink).map(|()| frames))
                .map_err(|source| ConvertError::Write {
                    path: path.clone(),
                    source,
                })?;
                done_before += reader.stats().file_bytes;
                report
                    .channels
                    .push(channel_report(reader, &ports, Some(path), frames));
            }
        }
        Destination::File(path) => {
            if !opts.force && std::fs::symlink_metadata(path).is_ok() {
                return Err(ConvertError::Exists(path.clone()));
            }
            let file = open_output(path, opts.force)?;
            merge_to(
                file,
                path.clone(),
                readers,
                &ports,
                opts.format,
                clock,
                &mut frame,
                total,
                progress,
                &mut report,
            )?;
        }
        Destination::Stdout => {
            let out = stdout_file().map_err(|source| ConvertError::Create {
                path: PathBuf::from("<stdout>"),
                source,
            })?;
            let out = BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, out);
            merge_to(
                out,
                PathBuf::from("<stdout>"),
                readers,
                &ports,
                opts.format,
                clock,
                &mut frame,
                total,
                progress,
                &mut report,
            )?;
        }
    }
    Ok(report)
}

/// The channels to convert, in the capture's (name) order.
fn select_channels(cap: &Capture, wanted: &[String]) -> Result<Vec<String>, ConvertError> {
    for name in wanted {
        if !cap.channels().iter().any(|c| &c.name == name) {
            let available: Vec<&str> = cap.channels().iter().map(|c| c.name.as_str()).collect();
            return Err(ConvertError::NoSuchChannel {
                capture: cap.dir().to_path_buf(),
                name: name.chars().take(64).collect(),
                available: if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                },
            });
        }
    }
    Ok(cap
        .channels()
        .iter()
        .filter(|c| wanted.is_empty() || wanted.contains(&c.name))
        .map(|c| c.name.clone())
        .collect())
}

fn open_output(path: &Path, force: bool) -> Result<BufWriter<File>, ConvertError> {
    let file = create_output_file(path, force).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            ConvertError::Exists(path.to_path_buf())
        } else {
            ConvertError::Create {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    Ok(BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, file))
}

/// Standard output as a plain `File` on a duplicated descriptor, so that
/// writes bypass `Stdout`'s line buffering (which scans binary data for
/// newlines) and go straight to the pipe in big chunks.
fn stdout_file() -> io::Result<File> {
    use std::os::fd::AsFd;
    let fd = io::stdout().as_fd().try_clone_to_owned()?;
    Ok(File::from(fd))
}

fn finish<W: Write>(sink: PacketSink<W>) -> Result<(), PcapError> {
    sink.into_inner().flush().map_err(PcapError::IoError)
}

#[allow(clippy::too_many_arguments)]
fn merge_to<W: Write>(
    out: W,
    path: PathBuf,
    mut readers: Vec<ChannelReader>,
    ports: &PortMap,
    format: Format,
    clock: Clock,
    frame: &mut Vec<u8>,
    total: u64,
    progress: &mut dyn FnMut(Progress),
    report: &mut ConvertReport,
) -> Result<(), ConvertError> {
    let names: Vec<String> = readers.iter().map(|r| r.channel().to_string()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let write_err = |source| ConvertError::Write {
        path: path.clone(),
        source,
    };
    let mut sink = PacketSink::new(out, format, &name_refs).map_err(write_err)?;
    // One channel needs no merge: stream it directly, without copying each
    // record out of the reader's buffer.
    if let [reader] = &mut readers[..] {
        let mut stream = TcpStreamBuilder::new(ports.port(reader.channel()));
        let frames = convert_channel(
            reader,
            &mut stream,
            &mut sink,
            0,
            clock,
            frame,
            &mut |done| progress(Progress { done, total }),
        )
        .and_then(|frames| finish(sink).map(|()| frames))
        .map_err(write_err)?;
        let output = (path.as_os_str() != "<stdout>").then_some(path.clone());
        report
            .channels
            .push(channel_report(reader, ports, output, frames));
        return Ok(());
    }
    let mut sources: Vec<ChannelSource> = readers
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let stream = TcpStreamBuilder::new(ports.port(r.channel()));
            ChannelSource::new(r, stream, i as u32)
        })
        .collect();
    merge_into(&mut sources, &mut sink, clock, frame, &mut |done| {
        progress(Progress { done, total })
    })
    .and_then(|()| finish(sink))
    .map_err(write_err)?;
    let output = (path.as_os_str() != "<stdout>").then_some(path.clone());
    for s in &sources {
        report.channels.push(channel_report(
            s.reader(),
            ports,
            output.clone(),
            s.frames(),
        ));
    }
    Ok(())
}

/// Streams one channel into `sink` on pcapng interface `interface`; returns
/// the number of frames written. `progress` gets the channel's segment bytes
/// read so far whenever that changes.
pub fn convert_channel<W: Write>(
    reader: &mut ChannelReader,
    stream: &mut TcpStreamBuilder,
    sink: &mut PacketSink<W>,
    interface: u32,
    clock: Clock,
    frame: &mut Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, PcapError> {
    let mut frames = 0u64;
    let mut reported = u64::MAX;
    while let Some(event) = reader.next_event() {
        match event {
            Event::Data(d) => {
                let ts = clock.timestamp(d.ts_ns);
                frames += stream.push(d.direction, d.payload, frame, |f| {
                    sink.write(interface, ts, f)
                })?;
            }
            Event::Gap(g) => stream.gap(&g),
            // Kept in the reader's damage list; reading goes on after it.
            Event::Damage(_) => {}
        }
        let done = reader.stats().file_bytes;
        if done != reported {
            reported = done;
            progress(done);
        }
    }
    Ok(frames)
}

fn channel_report(
    reader: &ChannelReader,
    ports: &PortMap,
    output: Option<PathBuf>,
    frames: u64,
) -> ChannelReport {
    let st = reader.stats();
    ChannelReport {
        channel: reader.channel().to_string(),
        client_port: ports.port(reader.channel()),
        output,
        records: st.records,
        bytes: st.bytes,
        frames,
        gaps: st.gaps,
        dropped_records: st.dropped_records,
        dropped_bytes: st.dropped_bytes,
        damage: reader.damage().to_vec(),
        closed_cleanly: st.closed_cleanly,
    }
}
