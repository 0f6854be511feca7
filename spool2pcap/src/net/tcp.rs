//! Turning one channel's byte stream into Ethernet/IPv4/TCP frames.
//!
//! Wireshark's SPICE dissector needs TCP: it reassembles messages from a TCP
//! stream and follows it by sequence numbers. A spool has no packets, only
//! the bytes each side wrote, so [`TcpStreamBuilder`] invents a connection
//! that carries exactly those bytes: client seq from 1000, server seq from
//! 2000, every segment ACKing what the peer has sent so far. The handshake,
//! SPICE link phase and FIN exchange in front of and after those bytes are
//! made up elsewhere ([`crate::spice::link`], [`crate::pipeline::framing`])
//! with [`write_segment`], in the sequence space just before 1000 / 2000,
//! so the data keeps the numbers ryll's own captures always had. Lost
//! traffic (a gap record) makes the sequence numbers jump by the bytes
//! lost, so Wireshark marks the spot as "previous segment not captured"
//! instead of splicing unrelated bytes together.
//!
//! Frames are built into a caller-owned `Vec<u8>` that is cleared and
//! reused, so converting a capture does not allocate per packet. Data
//! segments, the bulk of every conversion, take a faster road than
//! [`write_segment`]: a [`HeaderTemplate`] per direction, built once, of
//! which each packet changes five fields (in `tcp/template.rs`, the tests
//! in `tcp/tests.rs`).

use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, TcpHeader, TcpOptionElement};
use spool::read::event::Gap;
use spool::store::format::Direction;

mod template;
#[cfg(test)]
mod tests;

pub use template::HeaderTemplate;

/// The client's synthetic IPv4 address.
pub const CLIENT_IP: [u8; 4] = [10, 0, 0, 1];
/// The server's synthetic IPv4 address.
pub const SERVER_IP: [u8; 4] = [10, 0, 0, 2];
/// The client's synthetic MAC address (locally administered).
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The server's synthetic MAC address (locally administered).
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The server side of every synthetic connection. Not SPICE's usual 5900:
/// Wireshark gives 5900 to its VNC dissector, which then wins over the
/// SPICE heuristic. No dissector claims 5930 (QEMU's documented SPICE
/// port), so a file opens decoded as SPICE with no option; see
/// [`crate::spice::channels`] for the client ports.
pub const SERVER_PORT: u16 = 5930;
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
    /// The client's port.
    pub client_port: u16,
    /// The server's port ([`SERVER_PORT`] unless another was chosen).
    pub server_port: u16,
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
    let server_port = spec.server_port;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpStreamBuilder {
    client_port: u16,
    server_port: u16,
    client_seq: u32,
    server_seq: u32,
    /// Data segment headers: client→server, server→client.
    templates: [HeaderTemplate; 2],
}

impl TcpStreamBuilder {
    /// A connection from `10.0.0.1:client_port` to `10.0.0.2:5930`
    /// ([`SERVER_PORT`]), with sequence numbers at their initial values.
    pub fn new(client_port: u16) -> TcpStreamBuilder {
        TcpStreamBuilder::on_ports(client_port, SERVER_PORT)
    }

    /// [`TcpStreamBuilder::new`] to another server port than
    /// [`SERVER_PORT`].
    pub fn on_ports(client_port: u16, server_port: u16) -> TcpStreamBuilder {
        TcpStreamBuilder {
            client_port,
            server_port,
            client_seq: CLIENT_ISN,
            server_seq: SERVER_ISN,
            templates: [
                HeaderTemplate::new(Direction::ClientToServer, client_port, server_port),
                HeaderTemplate::new(Direction::ServerToClient, client_port, server_port),
            ],
        }
    }

    /// The client's port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The server's port.
    pub fn server_port(&self) -> u16 {
        self.server_port
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
        self.push_parts(direction, payload, |headers, chunk| {
            frame.clear();
            frame.extend_from_slice(headers);
            frame.extend_from_slice(chunk);
            emit(frame)
        })
    }

    /// [`TcpStreamBuilder::push`] without putting frames together: `emit`
    /// gets each segment's headers and its piece of `payload` (the frame is
    /// the one followed by the other), so that a writer can copy the
    /// payload once, straight from where it lies.
    pub fn push_parts<E>(
        &mut self,
        direction: Direction,
        payload: &[u8],
        mut emit: impl FnMut(&[u8; HEADERS_LEN], &[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let (base, ack, template) = match direction {
            Direction::ClientToServer => (self.client_seq, self.server_seq, &self.templates[0]),
            Direction::ServerToClient => (self.server_seq, self.client_seq, &self.templates[1]),
        };
        let mut headers = [0u8; HEADERS_LEN];
        let mut frames = 0u64;
        let mut offset = 0usize;
        loop {
            let end = payload.len().min(offset + MAX_SEGMENT_PAYLOAD);
            let chunk = &payload[offset..end];
            let seq = base.wrapping_add(offset as u32);
            // Chunks are at most MAX_SEGMENT_PAYLOAD long, so this is true.
            if template.fill(&mut headers, seq, ack, chunk) {
                emit(&headers, chunk)?;
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
