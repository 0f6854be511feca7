//! Where frames go: a pcap or pcapng writer over any `Write`, and the safe
//! creation of output files and directories.
//!
//! Both formats are written by `pcap-file`. Timestamps are kept to the
//! nanosecond: classic pcap uses the nanosecond magic (`0xa1b23c4d`, read by
//! Wireshark, tshark and libpcap ≥ 1.5), and pcapng declares `if_tsresol = 9`
//! on every interface, because `pcap-file` writes enhanced-packet timestamps
//! in nanoseconds whatever the interface says.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{Block, PcapNgWriter};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

/// Snapshot length of every file: libpcap's maximum, as tcpdump writes.
/// Large enough for the longest frame ([`crate::frames::MAX_FRAME_LEN`]);
/// `pcap-file` refuses packets longer than the snaplen.
pub const SNAPLEN: u32 = 262_144;

/// Size of the buffer in front of every output file. Large, so that a
/// conversion makes few, big `write` calls.
pub const OUTPUT_BUFFER_BYTES: usize = 4 << 20;

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

/// A pcap or pcapng writer for Ethernet frames.
pub enum PacketSink<W: Write> {
    /// Classic pcap: no interfaces, every frame in one stream.
    Pcap(PcapWriter<W>),
    /// pcapng with one interface description block per channel.
    PcapNg(PcapNgWriter<W>),
}

impl<W: Write> PacketSink<W> {
    /// Writes the file header (and, for pcapng, one interface per name in
    /// `interfaces`, numbered from 0 in that order).
    pub fn new(writer: W, format: Format, interfaces: &[&str]) -> Result<Self, PcapError> {
        match format {
            Format::Pcap => {
                let header = PcapHeader {
                    datalink: DataLink::ETHERNET,
                    snaplen: SNAPLEN,
                    ts_resolution: TsResolution::NanoSecond,
                    endianness: Endianness::native(),
                    ..PcapHeader::default()
                };
                Ok(PacketSink::Pcap(PcapWriter::with_header(writer, header)?))
            }
            Format::Pcapng => {
                let section = SectionHeaderBlock {
                    endianness: Endianness::native(),
                    options: vec![SectionHeaderOption::UserApplication(Cow::Borrowed(
                        concat!("spool2pcap ", env!("CARGO_PKG_VERSION")),
                    ))],
                    ..SectionHeaderBlock::default()
                };
                let mut w = PcapNgWriter::with_section_header(writer, section)?;
                for name in interfaces {
                    let idb = InterfaceDescriptionBlock {
                        linktype: DataLink::ETHERNET,
                        snaplen: SNAPLEN,
                        options: vec![
                            InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                            InterfaceDescriptionOption::IfTsResol(9),
                        ],
                    };
                    w.write_block(&Block::InterfaceDescription(idb))?;
                }
                Ok(PacketSink::PcapNg(w))
            }
        }
    }

    /// Writes one frame captured at `ts` (since the Unix epoch, or since
    /// session start in relative mode) on pcapng interface `interface`
    /// (ignored for classic pcap).
    pub fn write(&mut self, interface: u32, ts: Duration, frame: &[u8]) -> Result<(), PcapError> {
        let len = frame.len() as u32;
        match self {
            PacketSink::Pcap(w) => {
                // Classic pcap keeps seconds in 32 bits; a timestamp past
                // 2106 (only a hostile file has one) is pinned to the last
                // representable second rather than failing the conversion.
                let ts = if ts.as_secs() > u64::from(u32::MAX) {
                    Duration::new(u64::from(u32::MAX), ts.subsec_nanos())
                } else {
                    ts
                };
                w.write_packet(&PcapPacket::new(ts, len, frame))?;
            }
            PacketSink::PcapNg(w) => {
                let epb = EnhancedPacketBlock {
                    interface_id: interface,
                    timestamp: ts,
                    original_len: len,
                    data: Cow::Borrowed(frame),
                    options: Vec::new(),
                };
                w.write_block(&Block::EnhancedPacket(epb))?;
            }
        }
        Ok(())
    }

    /// The underlying writer (flush it to find out about write errors).
    pub fn into_inner(self) -> W {
        match self {
            PacketSink::Pcap(w) => w.into_writer(),
            PacketSink::PcapNg(w) => w.into_inner(),
        }
    }
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
