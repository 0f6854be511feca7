//! Frames checked against etherparse's parser and builder: addresses,
//! ports, flags, sequence numbers, checksums, splitting, and the template
//! road agreeing byte for byte with the general one.

use super::template::{add_payload, TCP_CHECKSUM};
use super::*;
use etherparse::checksum::Sum16BitWords;
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
        server_port: SERVER_PORT,
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

/// xorshift64*: deterministic random numbers for the tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// What etherparse's full builder makes of a data segment.
fn reference(spec: &SegmentSpec, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    write_frame(spec, payload, &mut frame).expect("fits");
    frame
}

/// The template's headers followed by the payload.
fn fast(spec: &SegmentSpec, payload: &[u8]) -> Vec<u8> {
    let t = HeaderTemplate::new(spec.direction, spec.client_port, spec.server_port);
    let mut headers = [0xa5; HEADERS_LEN];
    assert!(t.fill(&mut headers, spec.seq, spec.ack, payload), "fits");
    [&headers[..], payload].concat()
}

#[test]
fn template_matches_etherparse_on_random_segments() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let edge = [
        0usize,
        1,
        2,
        3,
        5,
        19,
        20,
        21,
        1459,
        1460,
        MAX_SEGMENT_PAYLOAD - 2,
        MAX_SEGMENT_PAYLOAD - 1,
        MAX_SEGMENT_PAYLOAD,
    ];
    for i in 0..20_000u64 {
        let len = match i % 4 {
            0 => edge[(i / 4) as usize % edge.len()],
            1 => rng.below(64) as usize,
            2 => rng.below(2048) as usize,
            _ => rng.below(MAX_SEGMENT_PAYLOAD as u64 + 1) as usize / 16,
        };
        let payload = match rng.below(4) {
            0 => vec![0u8; len],
            1 => vec![0xff; len],
            _ => rng.bytes(len),
        };
        let seq_ack = |rng: &mut Rng| match rng.below(4) {
            0 => 0,
            1 => u32::MAX - rng.below(3) as u32,
            _ => rng.next() as u32,
        };
        let spec = SegmentSpec {
            direction: if rng.below(2) == 0 {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            },
            client_port: match rng.below(3) {
                0 => 10001 + rng.below(10) as u16,
                1 => [0, 1, u16::MAX][rng.below(3) as usize],
                _ => rng.next() as u16,
            },
            server_port: match rng.below(2) {
                0 => SERVER_PORT,
                _ => rng.next() as u16,
            },
            seq: seq_ack(&mut rng),
            ack: seq_ack(&mut rng),
        };
        assert_eq!(
            fast(&spec, &payload),
            reference(&spec, &payload),
            "segment {i}: {spec:?}, {len} bytes"
        );
    }
}

#[test]
fn template_matches_etherparse_when_the_tcp_checksum_is_zero() {
    // A payload word equal to the checksum of the segment without it
    // brings the sum to 0xffff: the checksum field becomes 0x0000 (what
    // etherparse writes for TCP), a case a different fold could get
    // wrong (as 0xffff).
    for direction in [Direction::ClientToServer, Direction::ServerToClient] {
        let spec = SegmentSpec {
            direction,
            client_port: 10002,
            server_port: SERVER_PORT,
            seq: 0x0102_0304,
            ack: 0x0506_0708,
        };
        let without = reference(&spec, &[0, 0]);
        let payload = [without[TCP_CHECKSUM][0], without[TCP_CHECKSUM][1]];
        let frame = reference(&spec, &payload);
        assert_eq!(&frame[TCP_CHECKSUM], &[0, 0], "the case is reached");
        assert_eq!(fast(&spec, &payload), frame);
    }
}

#[test]
fn payload_sums_match_etherparse() {
    let mut rng = Rng(7);
    for i in 0..5000u64 {
        let len = match i % 3 {
            0 => (i / 3) as usize % 70,
            1 => rng.below(3000) as usize,
            _ => rng.below(MAX_SEGMENT_PAYLOAD as u64 + 1) as usize / 8,
        };
        let payload = match rng.below(4) {
            0 => vec![0; len],
            1 => vec![0xff; len],
            _ => rng.bytes(len),
        };
        let start = match rng.below(3) {
            0 => Sum16BitWords::new(),
            _ => Sum16BitWords::new().add_8bytes(rng.next().to_ne_bytes()),
        };
        assert_eq!(
            add_payload(start.clone(), &payload).ones_complement(),
            start.add_slice(&payload).ones_complement(),
            "{len} bytes"
        );
    }
}

#[test]
fn template_refuses_oversized_payloads() {
    let t = HeaderTemplate::new(Direction::ClientToServer, 10001, SERVER_PORT);
    let mut headers = [7; HEADERS_LEN];
    assert!(!t.fill(&mut headers, 0, 0, &[0; MAX_SEGMENT_PAYLOAD + 1]));
    assert_eq!(headers, [7; HEADERS_LEN], "untouched");
    assert!(t.fill(&mut headers, 0, 0, &[0; MAX_SEGMENT_PAYLOAD]));
}

#[test]
fn push_matches_etherparse_segment_by_segment() {
    let mut rng = Rng(42);
    let mut s = TcpStreamBuilder::new(10009);
    for _ in 0..300 {
        let direction = if rng.below(2) == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let len = match rng.below(10) {
            0 => rng.below(3 * MAX_SEGMENT_PAYLOAD as u64) as usize,
            _ => rng.below(700) as usize,
        };
        let payload = rng.bytes(len);
        let (seq, ack) = match direction {
            Direction::ClientToServer => (s.client_seq(), s.server_seq()),
            Direction::ServerToClient => (s.server_seq(), s.client_seq()),
        };
        let frames = collect(&mut s, direction, &payload);
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[]]
        } else {
            payload.chunks(MAX_SEGMENT_PAYLOAD).collect()
        };
        assert_eq!(frames.len(), chunks.len());
        for (k, (frame, chunk)) in frames.iter().zip(chunks).enumerate() {
            let spec = SegmentSpec {
                direction,
                client_port: 10009,
                server_port: SERVER_PORT,
                seq: seq.wrapping_add((k * MAX_SEGMENT_PAYLOAD) as u32),
                ack,
            };
            assert_eq!(frame, &reference(&spec, chunk));
        }
        // The parts are the same frame, unassembled.
        let mut parts = Vec::new();
        let mut again = s.clone();
        again.advance(direction, (1u64 << 32) - len as u64 % (1 << 32));
        again
            .push_parts::<()>(direction, &payload, |h, p| {
                parts.push([&h[..], p].concat());
                Ok(())
            })
            .unwrap();
        assert_eq!(parts, frames);
        if rng.below(20) == 0 {
            s.advance(direction, rng.next() >> 20);
        }
    }
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
