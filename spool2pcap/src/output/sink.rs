//! The packet writer: a pcap or pcapng file over any `Write`
//! ([`PacketSink`]), with what a pcapng section, interface and interface
//! statistics block say ([`SectionInfo`], [`InterfaceInfo`],
//! [`InterfaceStats`]).
//!
//! Classic pcap records are written with `pcap-file`'s [`RawPcapPacket`]
//! (its record header, then the frame's two pieces) rather than through a
//! `PcapWriter`, which takes the frame in one piece and does not lend out
//! its writer; pcapng's Enhanced Packet Blocks are written by
//! `super::pcapng::write_epb`. Every other block is `pcap-file`'s.

use std::borrow::Cow;
use std::io::Write;
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
use spool::store::format::Direction;

use super::pcapng::{bounded_option, write_epb};

/// Snapshot length of every file: libpcap's maximum, as tcpdump writes.
/// Large enough for the longest frame ([`crate::net::tcp::MAX_FRAME_LEN`]);
/// `pcap-file` refuses packets longer than the snaplen.
pub const SNAPLEN: u32 = 262_144;

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
    /// Records the spool writer dropped, and records known lost to damage:
    /// `isb_ifdrop`.
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

#[cfg(test)]
mod tests {
    use super::super::pcapng::{CUT_MARKER, MAX_OPTION_BYTES};
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
