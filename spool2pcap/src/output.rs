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

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
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

/// Snapshot length of every file: libpcap's maximum, as tcpdump writes.
/// Large enough for the longest frame ([`crate::frames::MAX_FRAME_LEN`]);
/// `pcap-file` refuses packets longer than the snaplen.
pub const SNAPLEN: u32 = 262_144;

/// Size of the buffer in front of every output file: large, so that a
/// conversion makes few, big `write` calls — but not 4 MiB: measured on
/// this project's VM, `dd` of 1 GiB in 4 MiB writes took 0.35–0.92 s and in
/// 1 MiB writes 0.19–0.29 s, and spool2pcap `-o DIR` went from 0.98–1.56 s
/// to 0.59–0.63 s with this change. Checked again for small records (256
/// MiB, `-o DIR`, medians): 64 KiB 0.334 s, 256 KiB 0.292 s, 512 KiB 0.280
/// s, 1 MiB 0.268 s, 2 MiB 0.275 s.
pub const OUTPUT_BUFFER_BYTES: usize = 1 << 20;

/// Which file format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
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
                    options.push(SectionHeaderOption::Comment(Cow::Owned(c.clone())));
                }
                if let Some(h) = &section.hardware {
                    options.push(SectionHeaderOption::Hardware(Cow::Owned(h.clone())));
                }
                if let Some(os) = &section.os {
                    options.push(SectionHeaderOption::OS(Cow::Owned(os.clone())));
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
            InterfaceDescriptionOption::IfName(Cow::Borrowed(iface.name)),
            InterfaceDescriptionOption::IfTsResol(9),
        ];
        if let Some(d) = iface.description {
            options.push(InterfaceDescriptionOption::IfDescription(Cow::Borrowed(d)));
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
            options.push(InterfaceStatisticsOption::Comment(Cow::Borrowed(c)));
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
    // A comment longer than an option can hold is cut (only ever ours).
    let comment = comment.map(|c| &c.as_bytes()[..c.len().min(u16::MAX as usize - 3)]);
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

/// Creates an output file readable by its owner only (mode 0600).
///
/// Without `force` an existing file is an error (`O_EXCL`). With `force` it
/// is truncated and rewritten. Either way a symlink at `path` is refused
/// (`O_NOFOLLOW`), so a planted link cannot redirect the output elsewhere.
pub fn create_output_file(path: &Path, force: bool) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).mode(0o600).custom_flags(libc::O_NOFOLLOW);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let file = opts.open(path)?;
    // O_NOFOLLOW does not stop a FIFO or a device from being opened with
    // --force; writing a capture into one is not what anyone meant.
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "exists and is not a regular file",
        ));
    }
    Ok(file)
}

/// Creates the output directory (and missing parents) with mode 0700 if it
/// does not exist yet; an existing directory is used as it is.
pub fn create_output_dir(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a directory",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path),
        Err(e) => Err(e),
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
                (54, crate::frames::MAX_SEGMENT_PAYLOAD),
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
        create_output_file(&p, false).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(create_output_file(&p, false).is_err(), "no overwrite");
        create_output_file(&p, true).unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link.pcap");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_output_file(&link, true).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn output_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x/y");
        create_output_dir(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        create_output_dir(&p).unwrap();
        let f = dir.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(create_output_dir(&f).is_err());
    }
}
