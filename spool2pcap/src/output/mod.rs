//! Where frames go: a pcap or pcapng writer over any `Write`, and the safe
//! creation of output files and directories.
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
//!
//! The files: [`sink`] (the writer), [`pcapng`] (the blocks written by
//! hand), [`create`] (safe creation of files and directories),
//! [`writebehind`] (the buffer in front of a file), [`wireshark`] (how to
//! open the result).

pub mod create;
pub mod pcapng;
pub mod sink;
pub mod wireshark;
pub mod writebehind;

pub use create::{create_output_file, CreateError, OutputDir, OutputTarget};
pub use pcapng::{
    bounded_option, epb_flags, EPB_FLAG_INBOUND, EPB_FLAG_OUTBOUND, MAX_OPTION_BYTES,
};
pub use sink::{Format, InterfaceInfo, InterfaceStats, PacketSink, SectionInfo, SNAPLEN};

/// Size of the buffer in front of every output file: large, so that a
/// conversion makes few, big `write` calls, but not so large that the page
/// cache copies get slower (4 MiB writes were; the sizes tried are in
/// PERFORMANCE.md, 2026-11-25).
pub const OUTPUT_BUFFER_BYTES: usize = 1 << 20;
