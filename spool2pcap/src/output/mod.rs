//! Where frames go: a pcap or pcapng writer over any `Write`, and the safe
//! creation of output files and directories.
//!
//! Both formats are written by `pcap-file`, except pcapng's Enhanced Packet
//! Blocks, which [`PacketSink::write_packet`] writes itself: they carry
//! options (direction flags on every packet, comments on some), and
//! `pcap-file` would need a `Vec` of options per packet and serializes every
//! block twice to learn its length. A frame can be handed over in two
//! pieces, headers and payload ([`PacketSink::write_packet_parts`]), so that
//! the payload is copied once, from the spool reader's buffer into the
//! output buffer, not first into a frame buffer; that is why classic pcap
//! records are written with `pcap-file`'s [`RawPcapPacket`] (its record
//! header, then the two pieces) rather than through a `PcapWriter`, which
//! takes the frame in one piece and does not lend out its writer.
//!
//! Timestamps are kept to the nanosecond: classic pcap uses the nanosecond
//! magic (`0xa1b23c4d`, read by Wireshark, tshark and libpcap ≥ 1.5), and
//! pcapng declares `if_tsresol = 9` on every interface.
//!
//! pcapng files also say what classic pcap cannot: a section comment naming
//! the ryll session ([`SectionInfo`]), one interface per channel with a
//! description, the direction of every packet (`epb_flags`: client→server
//! is *outbound*, the capture being the client's), comments on packets
//! that were made up or that follow lost traffic, and an Interface
//! Statistics Block per channel whose `isb_ifdrop` is the records the spool
//! writer dropped ([`PacketSink::write_interface_stats`]), which `capinfos`
//! and Wireshark's capture file properties show.

pub mod wireshark;
pub mod writebehind;

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use byteorder_slice::NativeEndian;
use pcap_file::pcap::{PcapHeader, RawPcapPacket};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{Block, PcapNgWriter};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use spool::format::Direction;

use crate::guard::InputFiles;

/// Snapshot length of every file: libpcap's maximum, as tcpdump writes.
/// Large enough for the longest frame ([`crate::net::tcp::MAX_FRAME_LEN`]);
/// `pcap-file` refuses packets longer than the snaplen.
pub const SNAPLEN: u32 = 262_144;

/// Size of the buffer in front of every output file: large, so that a
/// conversion makes few, big `write` calls, but not so large that the page
/// cache copies get slower (4 MiB writes were; the sizes tried are in
/// PERFORMANCE.md, 2026-11-25).
pub const OUTPUT_BUFFER_BYTES: usize = 1 << 20;

/// Which file format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Classic libpcap format (`.pcap`), nanosecond timestamps.
    #[default]
    Pcap,
    /// pcapng (`.pcapng`): one interface per channel, named after it.
    Pcapng,
}

impl Format {
    /// File name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::Pcapng => "pcapng",
        }
    }
}

/// pcapng block type of an Enhanced Packet Block.
const EPB_TYPE: u32 = 6;
/// `opt_comment`.
const OPT_COMMENT: u16 = 1;
/// `epb_flags`.
const OPT_EPB_FLAGS: u16 = 2;
/// `epb_flags` direction bits: inbound.
pub const EPB_FLAG_INBOUND: u32 = 0b01;
/// `epb_flags` direction bits: outbound.
pub const EPB_FLAG_OUTBOUND: u32 = 0b10;

/// The `epb_flags` value of a packet going `direction`, from the client's
/// (ryll's) point of view: what it sent is outbound, what it received
/// inbound.
pub fn epb_flags(direction: Direction) -> u32 {
    match direction {
        Direction::ClientToServer => EPB_FLAG_OUTBOUND,
        Direction::ServerToClient => EPB_FLAG_INBOUND,
    }
}

/// What a pcapng section header says about the capture (classic pcap has
/// nowhere to put it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SectionInfo {
    /// `shb_comment`: the session in words.
    pub comment: Option<String>,
    /// `shb_os`: the operating system the capture was made on.
    pub os: Option<String>,
    /// `shb_hardware`: the machine architecture it was made on.
    pub hardware: Option<String>,
}

/// A pcapng interface: a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceInfo<'a> {
    /// `if_name`: the channel name.
    pub name: &'a str,
    /// `if_description`, if any.
    pub description: Option<&'a str>,
}

/// The counters of one channel for its Interface Statistics Block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Records the channel loop handed to the spool (kept + dropped):
    /// `isb_ifrecv`.
    pub received: u64,
    /// Records the spool writer dropped: `isb_ifdrop`.
    pub dropped: u64,
    /// Records kept and converted: `isb_usrdeliv`.
    pub delivered: u64,
    /// First packet time (same clock as the packets): `isb_starttime`.
    pub start: Option<Duration>,
    /// Last packet time: `isb_endtime`, and the block's own timestamp.
    pub end: Option<Duration>,
}

/// A pcap or pcapng writer for Ethernet frames.
pub enum PacketSink<W: Write> {
    /// Classic pcap: no interfaces, every frame in one stream. The writer
    /// is past the file header (native byte order, nanosecond timestamps,
    /// [`SNAPLEN`]).
    Pcap(W),
    /// pcapng with one interface description block per channel.
    PcapNg(PcapNgWriter<W>),
}

impl<W: Write> PacketSink<W> {
    /// Writes the file header (and, for pcapng, one interface per name in
    /// `interfaces`, numbered from 0 in that order).
    pub fn new(writer: W, format: Format, interfaces: &[&str]) -> Result<Self, PcapError> {
        let ifaces: Vec<InterfaceInfo> = interfaces
            .iter()
            .map(|name| InterfaceInfo {
                name,
                description: None,
            })
            .collect();
        Self::with_section(writer, format, &ifaces, &SectionInfo::default())
    }

    /// [`PacketSink::new`] with a section header that describes the capture
    /// and interfaces with descriptions (both ignored by classic pcap).
    pub fn with_section(
        writer: W,
        format: Format,
        interfaces: &[InterfaceInfo],
        section: &SectionInfo,
    ) -> Result<Self, PcapError> {
        match format {
            Format::Pcap => {
                let header = PcapHeader {
                    datalink: DataLink::ETHERNET,
                    snaplen: SNAPLEN,
                    ts_resolution: TsResolution::NanoSecond,
                    // The records are written in native order too
                    // (`NativeEndian` in `write_packet_parts`).
                    endianness: Endianness::native(),
                    ..PcapHeader::default()
                };
                let mut writer = writer;
                header.write_to(&mut writer)?;
                Ok(PacketSink::Pcap(writer))
            }
            Format::Pcapng => {
                let mut options = Vec::new();
                if let Some(c) = &section.comment {
                    options.push(SectionHeaderOption::Comment(Cow::Owned(
                        bounded_option(c).into_owned(),
                    )));
                }
                if let Some(h) = &section.hardware {
                    options.push(SectionHeaderOption::Hardware(Cow::Owned(
                        bounded_option(h).into_owned(),
                    )));
                }
                if let Some(os) = &section.os {
                    options.push(SectionHeaderOption::OS(Cow::Owned(
                        bounded_option(os).into_owned(),
                    )));
                }
                options.push(SectionHeaderOption::UserApplication(Cow::Borrowed(
                    concat!("spool2pcap ", env!("CARGO_PKG_VERSION")),
                )));
                let section = SectionHeaderBlock {
                    // Enhanced Packet Blocks are written in native order too.
                    endianness: Endianness::native(),
                    options,
                    ..SectionHeaderBlock::default()
                };
                let w = PcapNgWriter::with_section_header(writer, section)?;
                let mut sink = PacketSink::PcapNg(w);
                for iface in interfaces {
                    sink.add_interface(iface)?;
                }
                Ok(sink)
            }
        }
    }

    /// Adds a pcapng interface (numbered after those already written) and
    /// returns its number; classic pcap has none and returns 0. Following a
    /// live capture adds one when a channel first appears, before its first
    /// packet, which pcapng allows anywhere in a section.
    pub fn add_interface(&mut self, iface: &InterfaceInfo) -> Result<u32, PcapError> {
        let PacketSink::PcapNg(w) = self else {
            return Ok(0);
        };
        let mut options = vec![
            InterfaceDescriptionOption::IfName(bounded_option(iface.name)),
            InterfaceDescriptionOption::IfTsResol(9),
        ];
        if let Some(d) = iface.description {
            options.push(InterfaceDescriptionOption::IfDescription(bounded_option(d)));
        }
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: SNAPLEN,
            options,
        };
        let id = w.interfaces().len() as u32;
        w.write_block(&Block::InterfaceDescription(idb))?;
        Ok(id)
    }

    /// Writes one frame captured at `ts` (since the Unix epoch, or since
    /// session start in relative mode) on pcapng interface `interface`
    /// (ignored for classic pcap), with no pcapng options.
    pub fn write(&mut self, interface: u32, ts: Duration, frame: &[u8]) -> Result<(), PcapError> {
        self.write_packet(interface, ts, frame, None, None)
    }

    /// [`PacketSink::write`] with, in pcapng, the packet's direction
    /// (`epb_flags`) and a comment (`opt_comment`). Allocates nothing.
    pub fn write_packet(
        &mut self,
        interface: u32,
        ts: Duration,
        frame: &[u8],
        direction: Option<Direction>,
        comment: Option<&str>,
    ) -> Result<(), PcapError> {
        self.write_packet_parts(interface, ts, frame, &[], direction, comment)
    }

    /// [`PacketSink::write_packet`] of the frame `head` followed by
    /// `payload`, without putting them together first.
    pub fn write_packet_parts(
        &mut self,
        interface: u32,
        ts: Duration,
        head: &[u8],
        payload: &[u8],
        direction: Option<Direction>,
        comment: Option<&str>,
    ) -> Result<(), PcapError> {
        let len = head.len().saturating_add(payload.len());
        match self {
            PacketSink::Pcap(w) => {
                // What `PcapPacket` checks before writing a record.
                if len > SNAPLEN as usize {
                    return Err(PcapError::InvalidField("PcapPacket: incl_len > snap_len"));
                }
                // Classic pcap keeps seconds in 32 bits; a timestamp past
                // 2106 (only a hostile file has one) is pinned to the last
                // representable second rather than failing the conversion.
                let ts_sec = u32::try_from(ts.as_secs()).unwrap_or(u32::MAX);
                // The record header, then the frame: `pcap-file` writes
                // the header and `head`, the payload follows.
                let record = RawPcapPacket {
                    ts_sec,
                    ts_frac: ts.subsec_nanos(),
                    incl_len: len as u32,
                    orig_len: len as u32,
                    data: Cow::Borrowed(head),
                };
                record.write_to::<_, NativeEndian>(w)?;
                w.write_all(payload).map_err(PcapError::IoError)?;
            }
            PacketSink::PcapNg(w) => {
                if interface as usize >= w.interfaces().len() {
                    return Err(PcapError::InvalidInterfaceId(interface));
                }
                write_epb(
                    w.get_mut(),
                    interface,
                    ts,
                    head,
                    payload,
                    direction,
                    comment,
                )
                .map_err(PcapError::IoError)?;
            }
        }
        Ok(())
    }

    /// Writes an Interface Statistics Block for `interface` (pcapng only;
    /// nothing for classic pcap), after the interface's last packet.
    pub fn write_interface_stats(
        &mut self,
        interface: u32,
        stats: &InterfaceStats,
        comment: Option<&str>,
    ) -> Result<(), PcapError> {
        let PacketSink::PcapNg(w) = self else {
            return Ok(());
        };
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut options = Vec::new();
        if let Some(c) = comment {
            options.push(InterfaceStatisticsOption::Comment(bounded_option(c)));
        }
        if let Some(t) = stats.start {
            options.push(InterfaceStatisticsOption::IsbStartTime(ns(t)));
        }
        if let Some(t) = stats.end {
            options.push(InterfaceStatisticsOption::IsbEndTime(ns(t)));
        }
        options.push(InterfaceStatisticsOption::IsbIfRecv(stats.received));
        options.push(InterfaceStatisticsOption::IsbIfDrop(stats.dropped));
        options.push(InterfaceStatisticsOption::IsbUsrDeliv(stats.delivered));
        let isb = InterfaceStatisticsBlock {
            interface_id: interface,
            timestamp: stats.end.or(stats.start).map_or(0, ns),
            options,
        };
        w.write_block(&Block::InterfaceStatistics(isb))?;
        Ok(())
    }

    /// The underlying writer (flush it to find out about write errors).
    pub fn into_inner(self) -> W {
        match self {
            PacketSink::Pcap(w) => w,
            PacketSink::PcapNg(w) => w.into_inner(),
        }
    }
}

/// Padding that brings `len` to a multiple of 4.
fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Writes one Enhanced Packet Block in native byte order (the order of the
/// section header [`PacketSink::with_section`] wrote): the fixed fields,
/// the padded frame (`head` then `payload`), then the options — `epb_flags`
/// if a direction is given, `opt_comment` if a comment is, and the
/// end-of-options marker.
fn write_epb<W: Write>(
    w: &mut W,
    interface: u32,
    ts: Duration,
    head: &[u8],
    payload: &[u8],
    direction: Option<Direction>,
    comment: Option<&str>,
) -> io::Result<()> {
    let frame_len = head.len().saturating_add(payload.len());
    const ZEROES: [u8; 4] = [0; 4];
    let comment = comment.map(bounded_option);
    let comment = comment.as_deref().map(str::as_bytes);
    let mut options_len = 0usize;
    if direction.is_some() {
        options_len += 4 + 4;
    }
    if let Some(c) = comment {
        options_len += 4 + c.len() + pad4(c.len());
    }
    if options_len > 0 {
        options_len += 4; // opt_endofopt
    }
    let block_len = (28 + options_len + 4)
        .checked_add(frame_len + pad4(frame_len))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "packet too long"))?;
    let ns = u64::try_from(ts.as_nanos()).unwrap_or(u64::MAX);
    let cap_len = frame_len as u32;
    let mut fixed = [0u8; 28];
    fixed[0..4].copy_from_slice(&EPB_TYPE.to_ne_bytes());
    fixed[4..8].copy_from_slice(&block_len.to_ne_bytes());
    fixed[8..12].copy_from_slice(&interface.to_ne_bytes());
    fixed[12..16].copy_from_slice(&((ns >> 32) as u32).to_ne_bytes());
    fixed[16..20].copy_from_slice(&(ns as u32).to_ne_bytes());
    fixed[20..24].copy_from_slice(&cap_len.to_ne_bytes());
    fixed[24..28].copy_from_slice(&cap_len.to_ne_bytes());
    w.write_all(&fixed)?;
    w.write_all(head)?;
    w.write_all(payload)?;
    w.write_all(&ZEROES[..pad4(frame_len)])?;
    if let Some(d) = direction {
        let mut opt = [0u8; 8];
        opt[0..2].copy_from_slice(&OPT_EPB_FLAGS.to_ne_bytes());
        opt[2..4].copy_from_slice(&4u16.to_ne_bytes());
        opt[4..8].copy_from_slice(&epb_flags(d).to_ne_bytes());
        w.write_all(&opt)?;
    }
    if let Some(c) = comment {
        let mut opt = [0u8; 4];
        opt[0..2].copy_from_slice(&OPT_COMMENT.to_ne_bytes());
        opt[2..4].copy_from_slice(&(c.len() as u16).to_ne_bytes());
        w.write_all(&opt)?;
        w.write_all(c)?;
        w.write_all(&ZEROES[..pad4(c.len())])?;
    }
    if options_len > 0 {
        w.write_all(&ZEROES)?;
    }
    w.write_all(&block_len.to_ne_bytes())
}

/// Why an output file or directory was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The file exists and overwriting was not asked for.
    #[error("already exists (use --force to overwrite)")]
    Exists,
    /// A component of the path is a symlink: outputs never follow one.
    #[error("{0}: is a symlink: refusing to follow it (give the real path)")]
    Symlink(PathBuf),
    /// Something that is not a directory where the output directory (or
    /// one on its path) should be.
    #[error("{0}: exists and is not a directory")]
    NotADirectory(PathBuf),
    /// A FIFO, device or socket where the output file should be.
    #[error("exists and is not a regular file")]
    NotRegular,
    /// The output is one of the files of the capture being read.
    #[error("is one of the capture's own files: refusing to overwrite it")]
    IsInput,
    /// The output directory is inside the capture's `spool/`.
    #[error("is inside the capture's spool/ directory: refusing to write there")]
    InsideSpool,
    /// The path cannot be passed to the system (a NUL byte, a prefix).
    #[error("not a usable path")]
    BadPath,
    /// The system refused.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl CreateError {
    /// Whether the error is the caller's choice of output rather than a
    /// failure of the system.
    pub fn is_usage(&self) -> bool {
        matches!(self, CreateError::IsInput | CreateError::InsideSpool)
    }
}

/// Longest pcapng string option written, in bytes: an option's length is
/// 16 bits, and a block of several options must stay far below what
/// readers accept, so a longer one is cut at a character boundary and
/// marked ([`bounded_option`]).
pub const MAX_OPTION_BYTES: usize = 8 << 10;

/// What ends an option cut by [`bounded_option`].
const CUT_MARKER: &str = " … [cut]";

/// `s` as a pcapng string option: unchanged if it has at most
/// [`MAX_OPTION_BYTES`] bytes, else cut at a character boundary to fit with
/// a marker that says so.
pub fn bounded_option(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_OPTION_BYTES {
        return Cow::Borrowed(s);
    }
    let mut end = MAX_OPTION_BYTES - CUT_MARKER.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{CUT_MARKER}", &s[..end]))
}

/// `path` as a C string for the `*at` calls.
fn c_path(path: &std::ffi::OsStr) -> Result<CString, CreateError> {
    CString::new(path.as_bytes()).map_err(|_| CreateError::BadPath)
}

/// `openat(dir, name, flags, mode)` as an owned descriptor.
fn open_at(dir: BorrowedFd, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is an open descriptor, `name` NUL-terminated; the
    // returned descriptor, if any, is new and ours to own.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`'s file type bits.
fn type_at(dir: BorrowedFd, name: &CStr) -> io::Result<u32> {
    // SAFETY: an all-zero `stat` is a valid value for the call to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name, `st` ours to write.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_mode & libc::S_IFMT)
}

/// Flags of every directory descriptor on an output path: a handle to the
/// directory itself, never through a symlink.
const DIR_FLAGS: i32 = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// Opens the directory `path` names, component by component, never
/// following a symlink (`O_NOFOLLOW` on each), creating missing ones with
/// mode 0700 if `create`. However the path is spelled (a trailing slash,
/// `.` or `..` after a link), a symlink on it is refused. Nothing is
/// created inside the directory `forbidden` (by device and inode), and the
/// result may not be inside it either.
fn open_dir_path(
    path: &Path,
    create: bool,
    forbidden: Option<(u64, u64)>,
) -> Result<OwnedFd, CreateError> {
    let start = if path.is_absolute() { "/" } else { "." };
    let mut fd = OwnedFd::from(
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(DIR_FLAGS)
            .open(start)?,
    );
    let mut shown = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    for component in path.components() {
        let name = match component {
            Component::RootDir | Component::CurDir => continue,
            Component::Prefix(_) => return Err(CreateError::BadPath),
            Component::ParentDir => std::ffi::OsStr::new(".."),
            Component::Normal(n) => n,
        };
        shown.push(name);
        let c = c_path(name)?;
        let opened = match open_at(fd.as_fd(), &c, DIR_FLAGS, 0) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                if let Some(f) = forbidden {
                    if is_within(fd.as_fd(), f)? {
                        return Err(CreateError::InsideSpool);
                    }
                }
                // SAFETY: valid descriptor and NUL-terminated name; mkdirat
                // never follows a symlink in the name it creates.
                let rc = unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), 0o700) };
                let made = if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                };
                match made {
                    Ok(()) => open_at(fd.as_fd(), &c, DIR_FLAGS, 0),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        open_at(fd.as_fd(), &c, DIR_FLAGS, 0)
                    }
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        fd = match opened {
            Ok(next) => next,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Err(match type_at(fd.as_fd(), &c) {
                    Ok(libc::S_IFLNK) => CreateError::Symlink(shown),
                    _ => CreateError::NotADirectory(shown),
                });
            }
            Err(e) => return Err(e.into()),
        };
    }
    if let Some(f) = forbidden {
        if is_within(fd.as_fd(), f)? {
            return Err(CreateError::InsideSpool);
        }
    }
    Ok(fd)
}

/// Whether the directory `dir` is `ancestor` (by device and inode) or
/// below it, following `..` up to the root.
fn is_within(dir: BorrowedFd, ancestor: (u64, u64)) -> io::Result<bool> {
    let id = |fd: &OwnedFd| -> io::Result<(u64, u64)> {
        let md = File::from(fd.try_clone()?).metadata()?;
        Ok((md.dev(), md.ino()))
    };
    let mut fd = open_at(dir, c".", DIR_FLAGS, 0)?;
    // Deeper than any path the system resolves: a loop guard only.
    for _ in 0..4096 {
        let here = id(&fd)?;
        if here == ancestor {
            return Ok(true);
        }
        let parent = open_at(fd.as_fd(), c"..", DIR_FLAGS, 0)?;
        if id(&parent)? == here {
            return Ok(false);
        }
        fd = parent;
    }
    Ok(false)
}

/// The directory and last component of an output file's path.
fn split_file_path(path: &Path) -> Result<(&Path, &std::ffi::OsStr), CreateError> {
    match path.components().next_back() {
        Some(Component::Normal(name)) if !path.as_os_str().as_bytes().ends_with(b"/") => {
            let parent = path.parent().unwrap_or(Path::new(""));
            Ok((parent, name))
        }
        _ => Err(CreateError::NotRegular),
    }
}

/// Creates the output file `name` in the directory `dir` (a descriptor of
/// [`open_dir_path`]), readable by its owner only (mode 0600).
///
/// Without `force` an existing file is an error (`O_EXCL`). With `force` it
/// is overwritten, but only once it is known to be a regular file and none
/// of `inputs`: it is opened without truncation, checked, then truncated. A
/// symlink is never followed (`O_NOFOLLOW`), and the open never blocks (a
/// FIFO is refused, not waited on).
fn create_file_at(
    dir: BorrowedFd,
    name: &std::ffi::OsStr,
    force: bool,
    inputs: Option<&InputFiles>,
) -> Result<File, CreateError> {
    let c = c_path(name)?;
    let mut flags =
        libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !force {
        flags |= libc::O_EXCL;
    }
    let fd = match open_at(dir, &c, flags, 0o600) {
        Ok(fd) => fd,
        Err(e) => {
            return Err(match e.raw_os_error() {
                Some(libc::EEXIST) => CreateError::Exists,
                Some(libc::ELOOP) => CreateError::Symlink(PathBuf::from(name)),
                // A FIFO nobody reads, a device without its driver.
                Some(libc::ENXIO | libc::ENODEV) => CreateError::NotRegular,
                Some(libc::EISDIR) => CreateError::NotRegular,
                _ => e.into(),
            });
        }
    };
    let file = File::from(fd);
    let md = file.metadata()?;
    if !md.is_file() {
        return Err(CreateError::NotRegular);
    }
    if inputs.is_some_and(|i| i.contains(&md)) {
        return Err(CreateError::IsInput);
    }
    if force {
        file.set_len(0)?;
    }
    // Writes may block like any file's from here on.
    // SAFETY: fcntl on a descriptor `file` owns.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error().into());
    }
    Ok(file)
}

/// Creates the output file `path` as [`OutputDir::create_file`] does, in
/// its directory as it exists (opened as [`OutputDir::open`] does, never
/// through a symlink).
pub fn create_output_file(
    path: &Path,
    force: bool,
    inputs: Option<&InputFiles>,
) -> Result<File, CreateError> {
    let (parent, name) = split_file_path(path)?;
    let dir = open_dir_path(parent, false, None)?;
    create_file_at(dir.as_fd(), name, force, inputs)
}

/// An output directory, held open so that every file is created in it and
/// nowhere else, whatever happens to its path meanwhile.
#[derive(Debug)]
pub struct OutputDir {
    fd: OwnedFd,
}

impl OutputDir {
    /// Opens the output directory `path`, creating it (and missing
    /// parents) with mode 0700; no component of `path` may be a symlink.
    /// With `inputs`, a directory inside the capture's `spool/` is refused.
    pub fn open(path: &Path, inputs: Option<&InputFiles>) -> Result<OutputDir, CreateError> {
        let forbidden = inputs.and_then(InputFiles::spool_dir);
        Ok(OutputDir {
            fd: open_dir_path(path, true, forbidden)?,
        })
    }

    /// Whether something named `name` exists in the directory (a symlink
    /// counts).
    pub fn contains(&self, name: &str) -> Result<bool, CreateError> {
        match type_at(self.fd.as_fd(), &c_path(name.as_ref())?) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the output file `name` in the directory, readable by its
    /// owner only (mode 0600). Without `force` an existing file is an
    /// error; with it, an existing regular file that is none of `inputs` is
    /// truncated (checked before truncating). A symlink is never followed,
    /// and a FIFO or device is refused without waiting on it.
    pub fn create_file(
        &self,
        name: &str,
        force: bool,
        inputs: Option<&InputFiles>,
    ) -> Result<File, CreateError> {
        create_file_at(self.fd.as_fd(), name.as_ref(), force, inputs)
    }

    /// Removes `name` from this directory (a file this run created), by
    /// the directory's descriptor, so no symlink swapped into the path
    /// since can redirect it.
    pub fn remove_file(&self, name: &str) -> Result<(), CreateError> {
        let c = c_path(name.as_ref())?;
        // SAFETY: unlinkat with a descriptor we own and a NUL-terminated
        // name; it touches only the directory entry.
        let rc = unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapReader;
    use pcap_file::pcapng::PcapNgReader;

    #[test]
    fn pcap_round_trip_keeps_nanoseconds() {
        let mut sink = PacketSink::new(Vec::new(), Format::Pcap, &[]).unwrap();
        let ts = Duration::new(1_700_000_000, 123_456_789);
        sink.write(0, ts, &[1, 2, 3]).unwrap();
        let bytes = sink.into_inner();
        assert_eq!(&bytes[..4], &0xa1b2_3c4du32.to_ne_bytes());
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().snaplen, SNAPLEN);
        assert_eq!(r.header().datalink, DataLink::ETHERNET);
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(p.timestamp, ts);
        assert_eq!(&p.data[..], &[1, 2, 3]);
        assert!(r.next_packet().is_none());
    }

    /// Frames of assorted lengths (in two pieces) and timestamps, the
    /// limits included.
    fn split_frames() -> Vec<(Duration, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for (i, (head, payload)) in [(0usize, 0usize), (54, 0), (54, 1), (54, 7), (3, 1000)]
            .into_iter()
            .chain([
                (54, crate::net::tcp::MAX_SEGMENT_PAYLOAD),
                (0, SNAPLEN as usize),
            ])
            .enumerate()
        {
            let bytes = |n: usize, k: usize| (0..n).map(|j| (j * 31 + k) as u8).collect();
            let ts = match i % 3 {
                0 => Duration::new(1_700_000_000, 999_999_999),
                1 => Duration::new(0, i as u32),
                _ => Duration::new(u64::from(u32::MAX), 5),
            };
            out.push((ts, bytes(head, i), bytes(payload, i + 1)));
        }
        out
    }

    #[test]
    fn pcap_records_in_two_pieces_are_what_pcap_file_writes() {
        let mut sink = PacketSink::new(Vec::new(), Format::Pcap, &[]).unwrap();
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            snaplen: SNAPLEN,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        let mut reference = pcap_file::pcap::PcapWriter::with_header(Vec::new(), header).unwrap();
        for (ts, head, payload) in split_frames() {
            sink.write_packet_parts(0, ts, &head, &payload, None, None)
                .unwrap();
            let frame = [head, payload].concat();
            reference
                .write_packet(&pcap_file::pcap::PcapPacket::new(
                    ts,
                    frame.len() as u32,
                    &frame,
                ))
                .unwrap();
        }
        assert_eq!(sink.into_inner(), reference.into_writer());
    }

    #[test]
    fn pcap_refuses_frames_over_the_snaplen() {
        let mut sink = PacketSink::new(Vec::new(), Format::Pcap, &[]).unwrap();
        let half = vec![0u8; SNAPLEN as usize / 2];
        let ts = Duration::ZERO;
        assert!(sink
            .write_packet_parts(0, ts, &half, &half, None, None)
            .is_ok());
        assert!(sink
            .write_packet_parts(0, ts, &half, &[half.as_slice(), &[0]].concat(), None, None)
            .is_err());
    }

    #[test]
    fn pcapng_packets_in_two_pieces_are_the_joined_frames() {
        let mut split = PacketSink::new(Vec::new(), Format::Pcapng, &["a"]).unwrap();
        let mut joined = PacketSink::new(Vec::new(), Format::Pcapng, &["a"]).unwrap();
        for (i, (ts, head, payload)) in split_frames().into_iter().enumerate() {
            let direction = [None, Some(Direction::ClientToServer)][i % 2];
            let comment = [None, Some("odd"), Some("four")][i % 3];
            split
                .write_packet_parts(0, ts, &head, &payload, direction, comment)
                .unwrap();
            let frame = [head, payload].concat();
            joined
                .write_packet(0, ts, &frame, direction, comment)
                .unwrap();
        }
        let bytes = split.into_inner();
        assert_eq!(bytes, joined.into_inner());
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let mut n = 0;
        while let Some(b) = r.next_block() {
            b.unwrap();
            n += 1;
        }
        assert_eq!(n, 1 + split_frames().len(), "interface and packets");
    }

    #[test]
    fn pcap_clamps_timestamps_past_2106() {
        let mut sink = PacketSink::new(Vec::new(), Format::Pcap, &[]).unwrap();
        sink.write(0, Duration::from_nanos(u64::MAX), &[0]).unwrap();
    }

    #[test]
    fn pcapng_has_one_named_interface_per_channel() {
        let mut sink = PacketSink::new(Vec::new(), Format::Pcapng, &["main", "display"]).unwrap();
        let ts = Duration::new(1_700_000_000, 5);
        sink.write(1, ts, &[9; 5]).unwrap();
        let bytes = sink.into_inner();
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let mut names = Vec::new();
        let mut packets = 0;
        while let Some(block) = r.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(idb) => {
                    assert_eq!(idb.linktype, DataLink::ETHERNET);
                    assert!(idb
                        .options
                        .contains(&InterfaceDescriptionOption::IfTsResol(9)));
                    for o in idb.options {
                        if let InterfaceDescriptionOption::IfName(n) = o {
                            names.push(n.into_owned());
                        }
                    }
                }
                Block::EnhancedPacket(epb) => {
                    assert_eq!(epb.interface_id, 1);
                    assert_eq!(epb.timestamp, ts);
                    assert_eq!(&epb.data[..], &[9; 5]);
                    packets += 1;
                }
                _ => {}
            }
        }
        assert_eq!(names, ["main", "display"]);
        assert_eq!(packets, 1);
    }

    #[test]
    fn output_files_are_exclusive_private_and_never_follow_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.pcap");
        create_output_file(&p, false, None).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(create_output_file(&p, false, None).is_err(), "no overwrite");
        create_output_file(&p, true, None).unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link.pcap");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_output_file(&link, true, None).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn output_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x/y");
        OutputDir::open(&p, None).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        OutputDir::open(&p, None).unwrap();
        let f = dir.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(matches!(
            OutputDir::open(&f, None),
            Err(CreateError::NotADirectory(_))
        ));
    }

    #[test]
    fn output_paths_never_pass_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let spelled = |s: &str| PathBuf::from(format!("{}{s}", link.display()));
        for p in [
            spelled(""),
            spelled("/"),
            spelled("//"),
            spelled("/."),
            spelled("/sub"),
        ] {
            assert!(
                matches!(OutputDir::open(&p, None), Err(CreateError::Symlink(_))),
                "{}",
                p.display()
            );
            assert!(create_output_file(&p.join("f.pcap"), true, None).is_err());
        }
        assert!(create_output_file(&spelled("/f.pcap"), true, None).is_err());
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    }

    #[test]
    fn output_files_refuse_fifos_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            create_output_file(&fifo, true, None),
            Err(CreateError::NotRegular)
        ));
        assert!(matches!(
            create_output_file(&fifo, false, None),
            Err(CreateError::Exists)
        ));
    }

    #[test]
    fn long_options_are_cut_at_a_character_boundary() {
        let s = "é".repeat(MAX_OPTION_BYTES);
        let b = bounded_option(&s);
        assert!(b.len() <= MAX_OPTION_BYTES);
        assert!(b.ends_with(CUT_MARKER));
        assert_eq!(bounded_option("short"), "short");
        let mut sink = PacketSink::with_section(
            Vec::new(),
            Format::Pcapng,
            &[InterfaceInfo {
                name: "main",
                description: Some(&s),
            }],
            &SectionInfo {
                comment: Some("x".repeat(70_000)),
                ..SectionInfo::default()
            },
        )
        .unwrap();
        sink.write_packet(0, Duration::ZERO, &[1], None, Some(&s))
            .unwrap();
        sink.write_interface_stats(0, &InterfaceStats::default(), Some(&s))
            .unwrap();
        let bytes = sink.into_inner();
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let mut n = 0;
        while let Some(b) = r.next_block() {
            b.unwrap();
            n += 1;
        }
        assert_eq!(n, 3, "interface, packet, statistics");
    }
}
