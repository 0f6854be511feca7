//! Turning one channel's byte stream into Ethernet/IPv4/TCP frames.
//!
//! Wireshark's SPICE dissector needs TCP: it reassembles messages from a TCP
//! stream and follows it by sequence numbers. A spool has no packets, only
//! the bytes each side wrote, so [`TcpStreamBuilder`] invents a connection
//! that carries exactly those bytes: client seq from 1000, server seq from
//! 2000, every segment ACKing what the peer has sent so far. The handshake,
//! SPICE link phase and FIN exchange in front of and after those bytes are
//! made up elsewhere ([`crate::synth`], [`crate::channel`]) with
//! [`write_segment`], in the sequence space just before 1000 / 2000, so the
//! data keeps the numbers ryll's own captures always had. Lost traffic (a gap record)
//! makes the sequence numbers jump by the bytes lost, so Wireshark marks the
//! spot as "previous segment not captured" instead of splicing unrelated
//! bytes together.
//!
//! Frames are built into a caller-owned `Vec<u8>` that is cleared and reused,
//! so converting a capture does not allocate per packet.

use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, TcpHeader, TcpOptionElement};
use spool::format::Direction;
use spool::reader::Gap;

/// The client's synthetic IPv4 address.
pub const CLIENT_IP: [u8; 4] = [10, 0, 0, 1];
/// The server's synthetic IPv4 address.
pub const SERVER_IP: [u8; 4] = [10, 0, 0, 2];
/// The client's synthetic MAC address (locally administered).
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The server's synthetic MAC address (locally administered).
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// First sequence number of the client's direction.
pub const CLIENT_ISN: u32 = 1000;
/// First sequence number of the server's direction.
pub const SERVER_ISN: u32 = 2000;
/// Most TCP payload one IPv4 packet can carry: 65535 − 20 (IPv4) − 20 (TCP).
pub const MAX_SEGMENT_PAYLOAD: usize = 65495;
/// Advertised receive window of every segment.
pub const WINDOW: u16 = 65535;
/// IPv4 time to live of every packet.
pub const TTL: u8 = 64;
/// Bytes of headers in front of the payload: Ethernet, IPv4, TCP (no options).
pub const HEADERS_LEN: usize = Ethernet2Header::LEN + 20 + 20;
/// Longest frame [`write_frame`] produces.
pub const MAX_FRAME_LEN: usize = HEADERS_LEN + MAX_SEGMENT_PAYLOAD;

/// Window scale shift the synthetic SYN and SYN-ACK announce (RFC 7323's
/// maximum). Records can be far larger than the 65535 bytes an unscaled
/// window allows in flight, and nothing in the spool says when the peer
/// acknowledged them; with a 1 GiB window Wireshark's window checks never
/// fire on a stream that is in fact complete.
pub const WINDOW_SCALE: u8 = 14;

/// TCP control flags of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    /// SYN: opens the connection (and carries the window scale option).
    pub syn: bool,
    /// ACK: the acknowledgment number is valid.
    pub ack: bool,
    /// FIN: the sender has no more data.
    pub fin: bool,
}

impl TcpFlags {
    /// A data segment or bare acknowledgment.
    pub const ACK: TcpFlags = TcpFlags {
        syn: false,
        ack: true,
        fin: false,
    };
    /// The client's opening segment.
    pub const SYN: TcpFlags = TcpFlags {
        syn: true,
        ack: false,
        fin: false,
    };
    /// The server's answer to a SYN.
    pub const SYN_ACK: TcpFlags = TcpFlags {
        syn: true,
        ack: true,
        fin: false,
    };
    /// A closing segment.
    pub const FIN_ACK: TcpFlags = TcpFlags {
        syn: false,
        ack: true,
        fin: true,
    };
}

/// A frame could not be built (only for payloads over
/// [`MAX_SEGMENT_PAYLOAD`], which [`TcpStreamBuilder`] never passes).
#[derive(Debug, thiserror::Error)]
#[error("TCP payload of {0} bytes does not fit one IPv4 packet (max {MAX_SEGMENT_PAYLOAD})")]
pub struct PayloadTooLarge(pub usize);

/// Addresses and numbers of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSpec {
    /// Which way the segment travels.
    pub direction: Direction,
    /// The client's port (the server's is [`crate::ports::SERVER_PORT`]).
    pub client_port: u16,
    /// Sequence number of the first payload byte.
    pub seq: u32,
    /// Acknowledgment number (the peer's next sequence number).
    pub ack: u32,
}

/// Writes one Ethernet/IPv4/TCP frame carrying `payload` into `frame`,
/// replacing its contents. Checksums (IPv4 header, TCP) are computed.
pub fn write_frame(
    spec: &SegmentSpec,
    payload: &[u8],
    frame: &mut Vec<u8>,
) -> Result<(), PayloadTooLarge> {
    write_segment(spec, TcpFlags::ACK, payload, frame)
}

/// [`write_frame`] with any control flags. A SYN also carries the MSS
/// option ([`MAX_SEGMENT_PAYLOAD`], the largest segment written) and the
/// window scale option ([`WINDOW_SCALE`]); the acknowledgment number is written
/// only when ACK is set (zero otherwise, as real stacks send it).
pub fn write_segment(
    spec: &SegmentSpec,
    flags: TcpFlags,
    payload: &[u8],
    frame: &mut Vec<u8>,
) -> Result<(), PayloadTooLarge> {
    if payload.len() > MAX_SEGMENT_PAYLOAD {
        return Err(PayloadTooLarge(payload.len()));
    }
    let server_port = crate::ports::SERVER_PORT;
    let (src_mac, dst_mac, src_ip, dst_ip, src_port, dst_port) = match spec.direction {
        Direction::ClientToServer => (
            CLIENT_MAC,
            SERVER_MAC,
            CLIENT_IP,
            SERVER_IP,
            spec.client_port,
            server_port,
        ),
        Direction::ServerToClient => (
            SERVER_MAC,
            CLIENT_MAC,
            SERVER_IP,
            CLIENT_IP,
            server_port,
            spec.client_port,
        ),
    };
    let mut tcp = TcpHeader::new(src_port, dst_port, spec.seq, WINDOW);
    tcp.ack = flags.ack;
    tcp.acknowledgment_number = if flags.ack { spec.ack } else { 0 };
    tcp.fin = flags.fin;
    if flags.syn {
        tcp.syn = true;
        // 8 bytes of options: they always fit a TCP header.
        let _ = tcp.set_options(&[
            TcpOptionElement::MaximumSegmentSize(MAX_SEGMENT_PAYLOAD as u16),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(WINDOW_SCALE),
        ]);
    }
    let ip_payload_len = tcp.header_len() + payload.len();
    let ip_payload_len =
        u16::try_from(ip_payload_len).map_err(|_| PayloadTooLarge(payload.len()))?;
    let mut ip = Ipv4Header::new(ip_payload_len, TTL, IpNumber::TCP, src_ip, dst_ip)
        .map_err(|_| PayloadTooLarge(payload.len()))?;
    ip.dont_fragment = true;
    tcp.checksum = tcp
        .calc_checksum_ipv4(&ip, payload)
        .map_err(|_| PayloadTooLarge(payload.len()))?;
    let eth = Ethernet2Header {
        source: src_mac,
        destination: dst_mac,
        ether_type: EtherType::IPV4,
    };
    frame.clear();
    frame.reserve(Ethernet2Header::LEN + 20 + tcp.header_len() + payload.len());
    // Writing into a Vec cannot fail; the results are io::Result only
    // because the methods take any `Write`.
    let _ = eth.write(frame);
    // `Ipv4Header::write` computes the header checksum as it writes.
    let _ = ip.write(frame);
    let _ = tcp.write(frame);
    frame.extend_from_slice(payload);
    Ok(())
}

/// The TCP state of one channel's synthetic connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpStreamBuilder {
    client_port: u16,
    client_seq: u32,
    server_seq: u32,
}

impl TcpStreamBuilder {
    /// A connection from `10.0.0.1:client_port` to `10.0.0.2:5900`, with
    /// sequence numbers at their initial values.
    pub fn new(client_port: u16) -> TcpStreamBuilder {
        TcpStreamBuilder {
            client_port,
            client_seq: CLIENT_ISN,
            server_seq: SERVER_ISN,
        }
    }

    /// The client's port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// Next sequence number of the client's direction.
    pub fn client_seq(&self) -> u32 {
        self.client_seq
    }

    /// Next sequence number of the server's direction.
    pub fn server_seq(&self) -> u32 {
        self.server_seq
    }

    /// Frames `payload` as one or more segments (split every
    /// [`MAX_SEGMENT_PAYLOAD`] bytes, seq = base + offset), handing each
    /// finished frame to `emit`, then advances the direction's sequence
    /// number by the payload length. An empty payload becomes one bare ACK
    /// so that every record shows up. Returns the number of frames.
    ///
    /// `frame` is scratch space, reused for every segment.
    pub fn push<E>(
        &mut self,
        direction: Direction,
        payload: &[u8],
        frame: &mut Vec<u8>,
        mut emit: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let (base, ack) = match direction {
            Direction::ClientToServer => (self.client_seq, self.server_seq),
            Direction::ServerToClient => (self.server_seq, self.client_seq),
        };
        let mut frames = 0u64;
        let mut offset = 0usize;
        loop {
            let end = payload.len().min(offset + MAX_SEGMENT_PAYLOAD);
            let chunk = &payload[offset..end];
            let spec = SegmentSpec {
                direction,
                client_port: self.client_port,
                seq: base.wrapping_add(offset as u32),
                ack,
            };
            // Chunks are at most MAX_SEGMENT_PAYLOAD long, so this cannot fail.
            if write_frame(&spec, chunk, frame).is_ok() {
                emit(frame)?;
                frames += 1;
            }
            offset = end;
            if offset >= payload.len() {
                break;
            }
        }
        self.advance(direction, payload.len() as u64);
        Ok(frames)
    }

    /// Records traffic lost in a gap: each direction's sequence number jumps
    /// by the bytes that direction lost.
    pub fn gap(&mut self, gap: &Gap) {
        self.advance(Direction::ClientToServer, gap.bytes_c2s);
        self.advance(Direction::ServerToClient, gap.bytes_s2c);
    }

    /// Moves one direction's sequence number on by `bytes` (mod 2³²).
    pub fn advance(&mut self, direction: Direction, bytes: u64) {
        // Sequence numbers are mod 2^32, so only the low bits matter.
        let by = bytes as u32;
        match direction {
            Direction::ClientToServer => self.client_seq = self.client_seq.wrapping_add(by),
            Direction::ServerToClient => self.server_seq = self.server_seq.wrapping_add(by),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::SERVER_PORT;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    struct Parsed {
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src_ip: [u8; 4],
        dst_ip: [u8; 4],
        src_port: u16,
        dst_port: u16,
        seq: u32,
        ack: u32,
        payload: Vec<u8>,
    }

    /// Parses a frame back and checks everything that must hold for any
    /// frame: lengths, flags, TTL, DF, and both checksums.
    fn parse(frame: &[u8]) -> Parsed {
        let p = SlicedPacket::from_ethernet(frame).expect("frame parses");
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("not ethernet")
        };
        assert_eq!(eth.ether_type(), EtherType::IPV4);
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not ipv4")
        };
        let iph = ip.header().to_header();
        assert_eq!(usize::from(iph.total_len), frame.len() - 14);
        assert!(iph.dont_fragment);
        assert!(!iph.more_fragments);
        assert_eq!(iph.time_to_live, TTL);
        assert_eq!(iph.protocol, IpNumber::TCP);
        assert_eq!(
            iph.header_checksum,
            iph.calc_header_checksum(),
            "IPv4 checksum"
        );
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("not tcp")
        };
        let th = tcp.to_header();
        assert!(th.ack && !th.syn && !th.fin && !th.rst);
        assert_eq!(th.window_size, WINDOW);
        let payload = tcp.payload().to_vec();
        assert_eq!(payload.len(), frame.len() - HEADERS_LEN);
        assert_eq!(
            th.checksum,
            th.calc_checksum_ipv4(&iph, &payload).unwrap(),
            "TCP checksum"
        );
        Parsed {
            src_mac: eth.source(),
            dst_mac: eth.destination(),
            src_ip: iph.source,
            dst_ip: iph.destination,
            src_port: th.source_port,
            dst_port: th.destination_port,
            seq: th.sequence_number,
            ack: th.acknowledgment_number,
            payload,
        }
    }

    fn collect(s: &mut TcpStreamBuilder, dir: Direction, payload: &[u8]) -> Vec<Vec<u8>> {
        let mut frame = Vec::new();
        let mut out = Vec::new();
        let n = s
            .push::<()>(dir, payload, &mut frame, |f| {
                out.push(f.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(n as usize, out.len());
        out
    }

    #[test]
    fn client_to_server_frame() {
        let mut s = TcpStreamBuilder::new(10002);
        let frames = collect(&mut s, Direction::ClientToServer, b"hello");
        assert_eq!(frames.len(), 1);
        let p = parse(&frames[0]);
        assert_eq!(p.src_mac, CLIENT_MAC);
        assert_eq!(p.dst_mac, SERVER_MAC);
        assert_eq!(p.src_ip, CLIENT_IP);
        assert_eq!(p.dst_ip, SERVER_IP);
        assert_eq!((p.src_port, p.dst_port), (10002, SERVER_PORT));
        assert_eq!((p.seq, p.ack), (CLIENT_ISN, SERVER_ISN));
        assert_eq!(p.payload, b"hello");
        assert_eq!(frames[0].len(), HEADERS_LEN + 5);
        assert_eq!(s.client_seq(), CLIENT_ISN + 5);
        assert_eq!(s.server_seq(), SERVER_ISN);
    }

    #[test]
    fn server_to_client_frame_swaps_everything() {
        let mut s = TcpStreamBuilder::new(10001);
        collect(&mut s, Direction::ClientToServer, b"abc");
        let frames = collect(&mut s, Direction::ServerToClient, b"0123456789");
        let p = parse(&frames[0]);
        assert_eq!(p.src_mac, SERVER_MAC);
        assert_eq!(p.dst_mac, CLIENT_MAC);
        assert_eq!(p.src_ip, SERVER_IP);
        assert_eq!(p.dst_ip, CLIENT_IP);
        assert_eq!((p.src_port, p.dst_port), (SERVER_PORT, 10001));
        assert_eq!(p.seq, SERVER_ISN);
        assert_eq!(p.ack, CLIENT_ISN + 3, "ACKs what the client sent");
        // And the client's next segment ACKs the server's bytes.
        let p = parse(&collect(&mut s, Direction::ClientToServer, b"x")[0]);
        assert_eq!((p.seq, p.ack), (CLIENT_ISN + 3, SERVER_ISN + 10));
    }

    #[test]
    fn odd_lengths_and_empty_payloads_checksum_correctly() {
        let mut s = TcpStreamBuilder::new(10003);
        for len in [0usize, 1, 2, 3, 7, 1499, 1500, 9001] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let frames = collect(&mut s, Direction::ServerToClient, &payload);
            assert_eq!(frames.len(), 1);
            assert_eq!(parse(&frames[0]).payload, payload);
        }
    }

    #[test]
    fn large_payloads_split_at_65495() {
        let len = 2 * MAX_SEGMENT_PAYLOAD + 10;
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut s = TcpStreamBuilder::new(10002);
        let frames = collect(&mut s, Direction::ServerToClient, &payload);
        assert_eq!(frames.len(), 3);
        let sizes: Vec<usize> = frames.iter().map(|f| parse(f).payload.len()).collect();
        assert_eq!(sizes, [MAX_SEGMENT_PAYLOAD, MAX_SEGMENT_PAYLOAD, 10]);
        assert_eq!(frames[0].len(), MAX_FRAME_LEN);
        let mut joined = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let p = parse(f);
            assert_eq!(p.seq, SERVER_ISN + (i * MAX_SEGMENT_PAYLOAD) as u32);
            assert_eq!(p.ack, CLIENT_ISN);
            joined.extend_from_slice(&p.payload);
        }
        assert_eq!(joined, payload);
        assert_eq!(s.server_seq(), SERVER_ISN + len as u32);
        // Exactly the limit is still one segment.
        let frames = collect(
            &mut s,
            Direction::ClientToServer,
            &payload[..MAX_SEGMENT_PAYLOAD],
        );
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn oversized_payload_is_refused_not_truncated() {
        let spec = SegmentSpec {
            direction: Direction::ClientToServer,
            client_port: 1,
            seq: 0,
            ack: 0,
        };
        let mut frame = Vec::new();
        assert!(write_frame(&spec, &vec![0; MAX_SEGMENT_PAYLOAD + 1], &mut frame).is_err());
    }

    #[test]
    fn gaps_jump_each_direction_by_its_lost_bytes() {
        let mut s = TcpStreamBuilder::new(10002);
        collect(&mut s, Direction::ClientToServer, b"1234");
        collect(&mut s, Direction::ServerToClient, b"12345678");
        s.gap(&Gap {
            records_c2s: 1,
            bytes_c2s: 100,
            records_s2c: 2,
            bytes_s2c: 5000,
            ..Gap::default()
        });
        let p = parse(&collect(&mut s, Direction::ServerToClient, b"after")[0]);
        assert_eq!(p.seq, SERVER_ISN + 8 + 5000);
        assert_eq!(p.ack, CLIENT_ISN + 4 + 100);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut s = TcpStreamBuilder::new(10002);
        s.advance(
            Direction::ClientToServer,
            u64::from(u32::MAX) - u64::from(CLIENT_ISN) - 1,
        );
        assert_eq!(s.client_seq(), u32::MAX - 1);
        let payload = vec![9u8; MAX_SEGMENT_PAYLOAD + 4];
        let frames = collect(&mut s, Direction::ClientToServer, &payload);
        assert_eq!(parse(&frames[0]).seq, u32::MAX - 1);
        assert_eq!(
            parse(&frames[1]).seq,
            (u32::MAX - 1).wrapping_add(MAX_SEGMENT_PAYLOAD as u32)
        );
        assert_eq!(
            s.client_seq(),
            (u32::MAX - 1).wrapping_add(payload.len() as u32)
        );
        // A gap larger than 4 GiB still moves by its value mod 2^32.
        let before = s.server_seq();
        s.advance(Direction::ServerToClient, (1u64 << 32) + 7);
        assert_eq!(s.server_seq(), before.wrapping_add(7));
    }

    #[test]
    fn frame_buffer_is_reused() {
        let mut s = TcpStreamBuilder::new(10002);
        let mut frame = Vec::with_capacity(MAX_FRAME_LEN);
        let ptr = frame.as_ptr();
        for _ in 0..10 {
            s.push::<()>(Direction::ServerToClient, &[1u8; 3000], &mut frame, |_| {
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(frame.as_ptr(), ptr, "no reallocation");
    }
}
