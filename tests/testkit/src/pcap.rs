//! A capture file read back whole: classic pcap or pcapng, told apart by
//! the magic number, so a test reads either with one call and still says
//! which it expects (`Capture::format`).

use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsBlock;
use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
use pcap_file::pcapng::{Block, PcapNgReader};

/// Which of the two file formats a capture was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

/// One packet record: its time, its interface (0 in classic pcap) and
/// the frame, with what pcapng adds to a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub ts: Duration,
    pub iface: u32,
    pub data: Vec<u8>,
    /// The packet's `opt_comment` (pcapng only).
    pub comment: Option<String>,
    /// The packet's `epb_flags` (pcapng only): bit 0 inbound, bit 1
    /// outbound.
    pub epb_flags: Option<u32>,
}

/// A whole capture file.
#[derive(Debug, Clone)]
pub struct Capture {
    pub format: Format,
    /// The `if_name` of each interface, in order (pcapng only).
    pub interfaces: Vec<String>,
    pub frames: Vec<Frame>,
    /// The section header's `opt_comment` (pcapng only).
    pub section_comment: Option<String>,
    /// Every Interface Statistics Block, in file order (pcapng only).
    pub interface_stats: Vec<InterfaceStatisticsBlock<'static>>,
}

/// Reads a pcap or pcapng file. Every packet must be captured whole
/// (captured length equal to its original length): a conversion never
/// truncates, so a short record is a defect.
pub fn read(bytes: &[u8]) -> Capture {
    match bytes.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => read_pcapng(bytes),
        Some(_) => read_pcap(bytes),
        None => panic!("{} bytes: no capture file", bytes.len()),
    }
}

/// Reads a file that must be classic pcap: a shorthand for the many tests
/// whose output is pcap and that count or compare its frames.
pub fn frames(bytes: &[u8]) -> Vec<Frame> {
    let c = read(bytes);
    assert_eq!(c.format, Format::Pcap, "not a classic pcap");
    c.frames
}

fn read_pcap(bytes: &[u8]) -> Capture {
    let mut r = PcapReader::new(bytes).expect("pcap header");
    let mut frames = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("packet {}: {e}", frames.len()));
        assert_eq!(
            p.orig_len as usize,
            p.data.len(),
            "packet {} cut short",
            frames.len()
        );
        frames.push(Frame {
            ts: p.timestamp,
            iface: 0,
            data: p.data.into_owned(),
            comment: None,
            epb_flags: None,
        });
    }
    Capture {
        format: Format::Pcap,
        interfaces: Vec::new(),
        frames,
        section_comment: None,
        interface_stats: Vec::new(),
    }
}

fn read_pcapng(bytes: &[u8]) -> Capture {
    let mut r = PcapNgReader::new(bytes).expect("pcapng section header");
    let mut section_comment = None;
    for o in &r.section().options {
        if let SectionHeaderOption::Comment(c) = o {
            assert!(section_comment.is_none(), "two section comments");
            section_comment = Some(c.to_string());
        }
    }
    let (mut interfaces, mut frames) = (Vec::new(), Vec::new());
    let mut interface_stats = Vec::new();
    while let Some(b) = r.next_block() {
        match b.unwrap_or_else(|e| panic!("block after packet {}: {e}", frames.len())) {
            Block::InterfaceDescription(idb) => {
                interfaces.extend(idb.options.into_iter().filter_map(|o| match o {
                    InterfaceDescriptionOption::IfName(n) => Some(n.into_owned()),
                    _ => None,
                }))
            }
            Block::EnhancedPacket(e) => {
                assert_eq!(
                    e.original_len as usize,
                    e.data.len(),
                    "packet {} cut short",
                    frames.len()
                );
                let mut f = Frame {
                    ts: e.timestamp,
                    iface: e.interface_id,
                    data: e.data.into_owned(),
                    comment: None,
                    epb_flags: None,
                };
                for o in e.options {
                    let n = frames.len();
                    match o {
                        EnhancedPacketOption::Comment(c) => {
                            assert!(f.comment.is_none(), "packet {n}: two comments");
                            f.comment = Some(c.into_owned());
                        }
                        EnhancedPacketOption::Flags(x) => {
                            assert!(f.epb_flags.is_none(), "packet {n}: two epb_flags");
                            f.epb_flags = Some(x);
                        }
                        _ => {}
                    }
                }
                frames.push(f);
            }
            // Packets without an interface's time resolution or with an
            // obsolete layout: a conversion writes only enhanced ones.
            Block::InterfaceStatistics(isb) => interface_stats.push(isb.into_owned()),
            Block::SimplePacket(_) | Block::Packet(_) => {
                panic!("packet {}: not an enhanced packet block", frames.len())
            }
            _ => {}
        }
    }
    Capture {
        format: Format::PcapNg,
        interfaces,
        frames,
        section_comment,
        interface_stats,
    }
}
