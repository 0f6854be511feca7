//! A frame as the TCP segment it carries. Every frame a conversion writes
//! is Ethernet/IPv4/TCP with correct checksums (Wireshark flags a bad one
//! on every packet), so parsing checks both and panics on anything else.

use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use crate::pcap::{self, Frame};

/// One TCP segment and where it was in the file.
#[derive(Debug, Clone)]
pub struct Segment {
    pub ts: Duration,
    pub iface: u32,
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    /// The acknowledgment number (meaningful when `ack_flag` is set).
    pub ack: u32,
    pub ack_flag: bool,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: Vec<u8>,
    /// The packet's pcapng comment, if any.
    pub comment: Option<String>,
    /// The packet's pcapng `epb_flags`, if any.
    pub epb_flags: Option<u32>,
}

impl Segment {
    /// The segment in `frame`; panics unless it is Ethernet/IPv4/TCP with
    /// valid IPv4 header and TCP checksums.
    pub fn parse(frame: &Frame) -> Segment {
        let p = SlicedPacket::from_ethernet(&frame.data).expect("an Ethernet frame");
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let iph = ip.header().to_header();
        assert_eq!(
            iph.header_checksum,
            iph.calc_header_checksum(),
            "IPv4 checksum"
        );
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("not TCP")
        };
        let th = tcp.to_header();
        let sum = th
            .calc_checksum_ipv4(&iph, tcp.payload())
            .expect("TCP length");
        assert_eq!(th.checksum, sum, "TCP checksum");
        Segment {
            ts: frame.ts,
            iface: frame.iface,
            src_ip: iph.source,
            dst_ip: iph.destination,
            src_port: th.source_port,
            dst_port: th.destination_port,
            seq: th.sequence_number,
            ack: th.acknowledgment_number,
            ack_flag: th.ack,
            syn: th.syn,
            fin: th.fin,
            rst: th.rst,
            payload: tcp.payload().to_vec(),
            comment: frame.comment.clone(),
            epb_flags: frame.epb_flags,
        }
    }

    /// Whether the server (listening on `server_port`) sent it.
    pub fn from_server(&self, server_port: u16) -> bool {
        self.src_port == server_port
    }

    /// The client's port: what tells the connections apart.
    pub fn client_port(&self, server_port: u16) -> u16 {
        if self.from_server(server_port) {
            self.dst_port
        } else {
            self.src_port
        }
    }
}

/// Every segment of a pcap or pcapng file, in file order.
pub fn segments(bytes: &[u8]) -> Vec<Segment> {
    pcap::read(bytes)
        .frames
        .iter()
        .map(Segment::parse)
        .collect()
}

/// Whether a frame carries TCP payload (a synthetic handshake, ACK or FIN
/// does not).
pub fn carries_payload(frame: &Frame) -> bool {
    !Segment::parse(frame).payload.is_empty()
}

/// Panics unless the segments are in time order: Wireshark reads a
/// capture out of order as retransmissions.
pub fn assert_time_ordered(segments: &[Segment]) {
    for (i, w) in segments.windows(2).enumerate() {
        assert!(w[0].ts <= w[1].ts, "packet {}: out of time order", i + 1);
    }
}
