//! testkit's checks can fail: a capture that breaks one of them panics,
//! so the tests that read their output through testkit are as strict as
//! the checks say.

use std::borrow::Cow;
use std::panic::catch_unwind;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use testkit::pcap::Format;
use testkit::streams::{streams, streams_after_handshake, strip_link};
use testkit::tcp::segments;

const SERVER: u16 = 5930;

/// One Ethernet/IPv4/TCP frame; `syn` sets the SYN flag.
fn frame(src: u16, dst: u16, seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(src, dst, seq, 1024);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let t = Duration::from_secs(i as u64);
        w.write_packet(&PcapPacket::new(t, f.len() as u32, f))
            .unwrap();
    }
    w.into_writer()
}

/// A client's handshake then "hello" each way.
fn session() -> Vec<Vec<u8>> {
    vec![
        frame(10001, SERVER, 1, true, b""),
        frame(10001, SERVER, 2, false, b"LINKhello"),
        frame(SERVER, 10001, 7, false, b"LNKhi"),
    ]
}

#[test]
fn streams_are_per_client_port_and_side() {
    let got = streams_after_handshake(&pcap(&session()), SERVER);
    assert_eq!(got[&(10001, false)], b"LINKhello");
    assert_eq!(got[&(10001, true)], b"LNKhi");
    let mut stripped = got.clone();
    strip_link(&mut stripped, 4, 3);
    assert_eq!(stripped[&(10001, false)], b"hello");
    assert_eq!(stripped[&(10001, true)], b"hi");
}

#[test]
fn a_connection_without_its_handshake_fails() {
    let bytes = pcap(&session()[1..]);
    assert_eq!(streams(&bytes, SERVER).len(), 2);
    assert!(catch_unwind(|| streams_after_handshake(&bytes, SERVER)).is_err());
}

#[test]
fn a_short_link_phase_fails() {
    let mut got = streams(&pcap(&session()), SERVER);
    assert!(catch_unwind(move || strip_link(&mut got, 4, 6)).is_err());
}

#[test]
fn a_bad_checksum_fails() {
    let mut f = session();
    let last = f[2].len() - 1;
    f[2][last] ^= 0xff;
    let bytes = pcap(&f);
    assert!(catch_unwind(|| segments(&bytes)).is_err());
}

#[test]
fn a_packet_cut_short_fails() {
    let f = frame(10001, SERVER, 1, true, b"");
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    let p = PcapPacket::new(Duration::ZERO, f.len() as u32 + 1, &f);
    w.write_packet(&p).unwrap();
    let bytes = w.into_writer();
    assert!(catch_unwind(|| testkit::pcap::read(&bytes)).is_err());
}

#[test]
fn pcapng_is_read_with_names_comments_and_flags() {
    let mut w = PcapNgWriter::new(Vec::new()).unwrap();
    let idb = InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![InterfaceDescriptionOption::IfName("main".into())],
    };
    w.write_pcapng_block(idb).unwrap();
    let f = frame(10001, SERVER, 1, true, b"");
    let epb = EnhancedPacketBlock {
        interface_id: 0,
        timestamp: Duration::from_micros(5),
        original_len: f.len() as u32,
        data: Cow::Borrowed(&f),
        options: vec![
            EnhancedPacketOption::Comment("synthetic".into()),
            EnhancedPacketOption::Flags(0b10),
        ],
    };
    w.write_pcapng_block(epb).unwrap();
    let bytes = w.into_inner();
    let c = testkit::pcap::read(&bytes);
    assert_eq!(c.format, Format::PcapNg);
    assert_eq!(c.interfaces, ["main"]);
    assert_eq!(c.frames[0].comment.as_deref(), Some("synthetic"));
    assert_eq!(c.frames[0].epb_flags, Some(0b10));
    assert!(
        catch_unwind(|| testkit::pcap::frames(&bytes)).is_err(),
        "not classic"
    );
}
