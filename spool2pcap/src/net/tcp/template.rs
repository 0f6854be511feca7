//! The fast road for data segments: the headers of one direction's data
//! segments built once, then per packet copied with five fields set.
//!
//! Data segments, the bulk of every conversion, take a faster road than
//! [`write_segment`]: their 54 header bytes differ from one packet to the
//! next of the same direction only in the IPv4 total length and checksum and
//! the TCP sequence number, acknowledgment number and checksum. So
//! [`TcpStreamBuilder`](super::TcpStreamBuilder) has etherparse build
//! each direction's headers once ([`HeaderTemplate`]) and, per packet,
//! copies them, sets those five fields and computes both checksums with
//! etherparse's own one's complement summer ([`Sum16BitWords`]), starting from the sum of the words that never
//! change instead of summing them again. The result is byte for byte what
//! [`write_segment`] builds (tested on many random segments).

use std::ops::Range;

use etherparse::checksum::Sum16BitWords;
use etherparse::{Ethernet2Header, IpNumber};
use spool::store::format::Direction;

use super::{write_segment, SegmentSpec, TcpFlags, HEADERS_LEN, MAX_SEGMENT_PAYLOAD};

/// Where the fields that change from one data segment to the next sit in
/// its headers (Ethernet II, IPv4 without options, TCP without options).
const IP_START: usize = Ethernet2Header::LEN;
const IP_TOTAL_LEN: Range<usize> = IP_START + 2..IP_START + 4;
const IP_CHECKSUM: Range<usize> = IP_START + 10..IP_START + 12;
/// Source and destination address: also the start of the TCP pseudo header.
const IP_ADDRESSES: Range<usize> = IP_START + 12..IP_START + 20;
const TCP_START: usize = IP_START + 20;
const TCP_SEQ: Range<usize> = TCP_START + 4..TCP_START + 8;
const TCP_ACK: Range<usize> = TCP_START + 8..TCP_START + 12;
pub(super) const TCP_CHECKSUM: Range<usize> = TCP_START + 16..TCP_START + 18;

/// The headers of one direction's data segments (flags ACK, no options),
/// as etherparse builds them, with the sums of the words every such segment
/// shares.
///
/// One's complement addition is commutative and associative, so the sum of
/// all words of a header equals the sum of the constant words (kept here)
/// plus the sum of the variable ones (added per packet). The final fold and
/// complement are etherparse's ([`Sum16BitWords::ones_complement`]), as in
/// `Ipv4Header::calc_header_checksum` and `TcpHeader::calc_checksum_ipv4`;
/// since the addresses make every sum non-zero, the result is the same
/// whatever the order of the additions, so [`HeaderTemplate::fill`] matches
/// [`write_segment`] exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    /// The headers with total length, sequence, acknowledgment and both
    /// checksums zero.
    bytes: [u8; HEADERS_LEN],
    /// Sum of the IPv4 header's words but total length and checksum.
    ip_sum: Sum16BitWords,
    /// Sum of the TCP pseudo header's and header's words but TCP length,
    /// sequence, acknowledgment and checksum.
    tcp_sum: Sum16BitWords,
}

impl HeaderTemplate {
    /// The template of data segments going `direction` on the connection of
    /// client port `client_port` and server port `server_port`.
    pub fn new(direction: Direction, client_port: u16, server_port: u16) -> HeaderTemplate {
        let spec = SegmentSpec {
            direction,
            client_port,
            server_port,
            seq: 0,
            ack: 0,
        };
        let mut frame = Vec::with_capacity(HEADERS_LEN);
        let mut bytes = [0u8; HEADERS_LEN];
        // An empty payload always fits, and ACK segments carry no options,
        // so etherparse writes exactly HEADERS_LEN bytes.
        if write_segment(&spec, TcpFlags::ACK, &[], &mut frame).is_ok() {
            let n = frame.len().min(HEADERS_LEN);
            bytes[..n].copy_from_slice(&frame[..n]);
        }
        debug_assert_eq!(frame.len(), HEADERS_LEN);
        for field in [IP_TOTAL_LEN, IP_CHECKSUM, TCP_SEQ, TCP_ACK, TCP_CHECKSUM] {
            bytes[field].fill(0);
        }
        let ip_sum = Sum16BitWords::new().add_slice(&bytes[IP_START..TCP_START]);
        let tcp_sum = Sum16BitWords::new()
            .add_slice(&bytes[IP_ADDRESSES])
            .add_2bytes([0, IpNumber::TCP.0])
            .add_slice(&bytes[TCP_START..]);
        HeaderTemplate {
            bytes,
            ip_sum,
            tcp_sum,
        }
    }

    /// Writes into `headers` those of the data segment with sequence
    /// number `seq`, acknowledgment number `ack` and `payload`: the same
    /// bytes [`write_frame`](super::write_frame) puts in front of the
    /// payload. `false` (and `headers` untouched) if the payload does not
    /// fit one packet (over [`MAX_SEGMENT_PAYLOAD`]).
    #[inline]
    pub fn fill(
        &self,
        headers: &mut [u8; HEADERS_LEN],
        seq: u32,
        ack: u32,
        payload: &[u8],
    ) -> bool {
        if payload.len() > MAX_SEGMENT_PAYLOAD {
            return false;
        }
        // Both fit a u16: at most 20 + 20 + MAX_SEGMENT_PAYLOAD = 65535.
        let tcp_len = (20 + payload.len()) as u16;
        let total_len = (20 + tcp_len).to_be_bytes();
        let seq = seq.to_be_bytes();
        let ack = ack.to_be_bytes();
        let ip_checksum = self
            .ip_sum
            .clone()
            .add_2bytes(total_len)
            .ones_complement()
            .to_be();
        let headers_sum = self
            .tcp_sum
            .clone()
            .add_2bytes(tcp_len.to_be_bytes())
            .add_4bytes(seq)
            .add_4bytes(ack);
        let tcp_checksum = add_payload(headers_sum, payload).ones_complement().to_be();
        let h = headers;
        *h = self.bytes;
        h[IP_TOTAL_LEN].copy_from_slice(&total_len);
        h[IP_CHECKSUM].copy_from_slice(&ip_checksum.to_be_bytes());
        h[TCP_SEQ].copy_from_slice(&seq);
        h[TCP_ACK].copy_from_slice(&ack);
        h[TCP_CHECKSUM].copy_from_slice(&tcp_checksum.to_be_bytes());
        true
    }
}

/// `sum` plus the 16-bit words of `payload` (the last byte of an odd
/// length padded with zero): `sum.add_slice(payload)`, but faster
/// (figures in PERFORMANCE.md). etherparse's loop adds one 8-byte word at a time with carry, each
/// addition waiting for the one before; here two of its sums take
/// alternate 8-byte words, then the second, folded to 16 bits, is added to
/// the first as one more word. Folding keeps a sum's value modulo 0xffff
/// and whether it is zero, which is all the final checksum depends on.
#[inline]
pub(super) fn add_payload(sum: Sum16BitWords, payload: &[u8]) -> Sum16BitWords {
    let mut even = sum;
    let mut odd = Sum16BitWords::new();
    let mut pairs = payload.chunks_exact(16);
    for pair in &mut pairs {
        let (a, b) = pair.split_at(8);
        // Both halves are 8 bytes long: the conversions cannot fail.
        if let (Ok(a), Ok(b)) = (<[u8; 8]>::try_from(a), <[u8; 8]>::try_from(b)) {
            even = even.add_8bytes(a);
            odd = odd.add_8bytes(b);
        }
    }
    // `ones_complement` is the complement of the folded sum.
    let odd_folded = !odd.ones_complement();
    even.add_slice(pairs.remainder())
        .add_2bytes(odd_folded.to_ne_bytes())
}
