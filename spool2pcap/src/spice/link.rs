//! The SPICE link phase that ryll does not record, made up so that
//! Wireshark's SPICE dissector can decode what it does record.
//!
//! ryll's channel loops capture only after a channel has linked: the link
//! message, link reply, authentication and link result are never in the
//! spool. Wireshark's SPICE dissector is a state machine per TCP
//! conversation that starts at the client's link message (`REDQ`) and only
//! reaches its data state after the link result; it learns from the two
//! link messages whether both sides use the 6-byte mini header. Without the
//! link phase it decodes nothing at all (measured: 0 of 829 messages of the
//! display channel of the recorded session), with a made-up one it decodes
//! every message. So the converter writes one in front of each channel:
//!
//! | packet | direction | bytes | content |
//! |---|---|---|---|
//! | link message | client→server | 38 | `REDQ`, version 2.2, connection id 0, the channel's type, id 0, one common capability word, no channel capabilities |
//! | link reply | server→client | 198 | error 0, a zero 162-byte public key, one common capability word |
//! | auth mechanism | client→server | 4 | `SPICE_COMMON_CAP_AUTH_SPICE` (1) |
//! | ticket | client→server | 128 | zeroes (the real one is RSA-encrypted) |
//! | link result | server→client | 4 | 0, `SPICE_LINK_ERR_OK` |
//!
//! Both sides announce [`COMMON_CAPS`]: auth selection, SPICE auth and the
//! mini header, exactly the common capabilities ryll requires of a server
//! and announces itself. That makes the dissector expect the auth mechanism
//! word before the ticket, and 6-byte mini headers afterwards, which is what
//! ryll's data phase uses.
//!
//! Channel names map to SPICE channel types as ryll names them, by the
//! table [`crate::spice::channels::SPICE_CHANNELS`]. A name outside that
//! table gets [`UNKNOWN_CHANNEL_TYPE`], 10 (`port`): the
//! generic byte-pipe channel, for which the dissector still frames every
//! mini-header message and decodes the common ones (ack, ping, notify…), so
//! the capture is far more useful than with no link phase at all.
//!
//! The link phase occupies the sequence space just before the data: the
//! client's 170 bytes end at seq 1000 and the server's 202 bytes at 2000,
//! so every data byte keeps the sequence number ryll's captures always gave
//! it ([`opening_isns`]).

use spool::store::format::Direction;

use crate::net::tcp::{CLIENT_ISN, SERVER_ISN};

/// The `REDQ` magic that starts every SPICE link message.
pub const SPICE_MAGIC: &[u8; 4] = b"REDQ";
/// SPICE protocol major version written in the link messages.
pub const SPICE_VERSION_MAJOR: u32 = 2;
/// SPICE protocol minor version written in the link messages.
pub const SPICE_VERSION_MINOR: u32 = 2;

/// `SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION`: the client sends an auth
/// mechanism word before authenticating.
pub const CAP_AUTH_SELECTION: u32 = 1 << 0;
/// `SPICE_COMMON_CAP_AUTH_SPICE`: ticket authentication.
pub const CAP_AUTH_SPICE: u32 = 1 << 1;
/// `SPICE_COMMON_CAP_MINI_HEADER`: 6-byte data headers.
pub const CAP_MINI_HEADER: u32 = 1 << 3;
/// Common capabilities both synthetic link messages announce: what ryll
/// announces and requires.
pub const COMMON_CAPS: u32 = CAP_AUTH_SELECTION | CAP_AUTH_SPICE | CAP_MINI_HEADER;

/// The auth mechanism the client selects (`SPICE_COMMON_CAP_AUTH_SPICE`).
pub const AUTH_MECHANISM_SPICE: u32 = 1;

/// Channel type used for names without a SPICE channel type: 10, `port`.
pub const UNKNOWN_CHANNEL_TYPE: u8 = 10;

/// Bytes of a link header: magic, major, minor, size.
const LINK_HEADER_LEN: usize = 16;
/// Public key field of the link reply.
const PUB_KEY_LEN: usize = 162;
/// Bytes of the client's link message (header + 18 fixed bytes + one
/// capability word).
pub const LINK_MESS_LEN: usize = LINK_HEADER_LEN + 18 + 4;
/// Bytes of the server's link reply (header + error + key + 12 fixed bytes
/// + one capability word).
pub const LINK_REPLY_LEN: usize = LINK_HEADER_LEN + 4 + PUB_KEY_LEN + 12 + 4;
/// Bytes of the encrypted ticket.
pub const TICKET_LEN: usize = 128;
/// Client→server bytes of the link phase: link message, auth mechanism,
/// ticket.
pub const LINK_C2S_LEN: usize = LINK_MESS_LEN + 4 + TICKET_LEN;
/// Server→client bytes of the link phase: link reply, link result.
pub const LINK_S2C_LEN: usize = LINK_REPLY_LEN + 4;

/// The SPICE channel type the link phase of `channel` announces: its type
/// from the table in [`crate::spice::channels`], else [`UNKNOWN_CHANNEL_TYPE`].
pub fn channel_type_for(channel: &str) -> u8 {
    crate::spice::channels::spice_channel_type(channel).unwrap_or(UNKNOWN_CHANNEL_TYPE)
}

/// Whether a channel's first data record already is a SPICE link message,
/// so nothing must be made up: in SPICE the client speaks first, with
/// `REDQ`. A first record from the server, or one from the client that
/// starts otherwise, means the capture began after the link phase.
pub fn starts_with_link(direction: Direction, payload: &[u8]) -> bool {
    direction == Direction::ClientToServer && payload.starts_with(SPICE_MAGIC)
}

/// The bytes of one channel's synthetic link phase, built once per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPhase {
    c2s: [u8; LINK_C2S_LEN],
    s2c: [u8; LINK_S2C_LEN],
}

/// One packet of the link phase: its direction, its bytes' range within
/// that direction's link bytes, and the comment pcapng files give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPacket {
    /// Which way it goes.
    pub direction: Direction,
    /// First byte within [`LinkPhase::bytes`] of that direction.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// Packet comment in pcapng output.
    pub comment: &'static str,
}

/// The link phase's packets in the order a real client and server send
/// them (each its own segment, as the dissector's state machine expects one
/// link-phase PDU at a time).
pub const LINK_PACKETS: [LinkPacket; 5] = [
    LinkPacket {
        direction: Direction::ClientToServer,
        start: 0,
        end: LINK_MESS_LEN,
        comment: "spool2pcap: synthetic SPICE link message (ryll records channels only after they \
                  linked)",
    },
    LinkPacket {
        direction: Direction::ServerToClient,
        start: 0,
        end: LINK_REPLY_LEN,
        comment: "spool2pcap: synthetic SPICE link reply (not captured)",
    },
    LinkPacket {
        direction: Direction::ClientToServer,
        start: LINK_MESS_LEN,
        end: LINK_MESS_LEN + 4,
        comment: "spool2pcap: synthetic SPICE auth mechanism selection (not captured)",
    },
    LinkPacket {
        direction: Direction::ClientToServer,
        start: LINK_MESS_LEN + 4,
        end: LINK_C2S_LEN,
        comment: "spool2pcap: synthetic SPICE ticket, zeroes (not captured)",
    },
    LinkPacket {
        direction: Direction::ServerToClient,
        start: LINK_REPLY_LEN,
        end: LINK_S2C_LEN,
        comment: "spool2pcap: synthetic SPICE link result OK (not captured)",
    },
];

impl LinkPhase {
    /// The link phase of a channel of SPICE type `channel_type`, id
    /// `channel_id`.
    pub fn new(channel_type: u8, channel_id: u8) -> LinkPhase {
        let mut c2s = [0u8; LINK_C2S_LEN];
        let mut w = Cursor::new(&mut c2s);
        w.bytes(SPICE_MAGIC);
        w.u32(SPICE_VERSION_MAJOR);
        w.u32(SPICE_VERSION_MINOR);
        w.u32((LINK_MESS_LEN - LINK_HEADER_LEN) as u32);
        w.u32(0); // connection id: unknown to the converter
        w.bytes(&[channel_type, channel_id]);
        w.u32(1); // num_common_caps
        w.u32(0); // num_channel_caps
        w.u32(18); // caps_offset, from the start of the body
        w.u32(COMMON_CAPS);
        w.u32(AUTH_MECHANISM_SPICE);
        // The ticket stays zero.

        let mut s2c = [0u8; LINK_S2C_LEN];
        let mut w = Cursor::new(&mut s2c);
        w.bytes(SPICE_MAGIC);
        w.u32(SPICE_VERSION_MAJOR);
        w.u32(SPICE_VERSION_MINOR);
        w.u32((LINK_REPLY_LEN - LINK_HEADER_LEN) as u32);
        w.u32(0); // SPICE_LINK_ERR_OK
        w.skip(PUB_KEY_LEN);
        w.u32(1); // num_common_caps
        w.u32(0); // num_channel_caps
        w.u32((4 + PUB_KEY_LEN + 12) as u32); // caps_offset
        w.u32(COMMON_CAPS);
        w.u32(0); // link result: SPICE_LINK_ERR_OK
        LinkPhase { c2s, s2c }
    }

    /// The link bytes one direction sends.
    pub fn bytes(&self, direction: Direction) -> &[u8] {
        match direction {
            Direction::ClientToServer => &self.c2s,
            Direction::ServerToClient => &self.s2c,
        }
    }

    /// The bytes of one of [`LINK_PACKETS`].
    pub fn packet(&self, p: &LinkPacket) -> &[u8] {
        self.bytes(p.direction).get(p.start..p.end).unwrap_or(&[])
    }
}

/// Initial sequence numbers (client, server) of a synthetic handshake such
/// that the data starts at [`CLIENT_ISN`] / [`SERVER_ISN`]: the SYN uses
/// one number, and a synthetic link phase (`with_link`) the
/// [`LINK_C2S_LEN`] / [`LINK_S2C_LEN`] numbers before the data.
pub fn opening_isns(with_link: bool) -> (u32, u32) {
    let (c, s) = if with_link {
        (LINK_C2S_LEN as u32, LINK_S2C_LEN as u32)
    } else {
        (0, 0)
    };
    (
        CLIENT_ISN.wrapping_sub(c).wrapping_sub(1),
        SERVER_ISN.wrapping_sub(s).wrapping_sub(1),
    )
}

/// A little-endian writer into a fixed buffer that cannot overrun: writes
/// past the end are dropped (the sizes above make that impossible, and a
/// test checks every byte).
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a mut [u8]) -> Cursor<'a> {
        Cursor { buf, at: 0 }
    }

    fn bytes(&mut self, b: &[u8]) {
        let end = self.at + b.len();
        if let Some(dst) = self.buf.get_mut(self.at..end) {
            dst.copy_from_slice(b);
        }
        self.at = end;
    }

    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    fn skip(&mut self, n: usize) {
        self.at += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn link_message_is_what_the_dissector_reads() {
        let l = LinkPhase::new(2, 0);
        let c = l.bytes(Direction::ClientToServer);
        assert_eq!(&c[..4], b"REDQ");
        assert_eq!((u32_at(c, 4), u32_at(c, 8)), (2, 2));
        let size = u32_at(c, 12) as usize;
        assert_eq!(16 + size, LINK_MESS_LEN);
        assert_eq!(u32_at(c, 16), 0, "connection id");
        assert_eq!((c[20], c[21]), (2, 0), "type, id");
        assert_eq!((u32_at(c, 22), u32_at(c, 26)), (1, 0), "cap counts");
        let caps_offset = u32_at(c, 30) as usize;
        assert_eq!(u32_at(c, 16 + caps_offset), COMMON_CAPS);
        assert_eq!(COMMON_CAPS, 0x0b);
        assert_eq!(u32_at(c, LINK_MESS_LEN), AUTH_MECHANISM_SPICE);
        assert!(c[LINK_MESS_LEN + 4..].iter().all(|&b| b == 0));
        assert_eq!(c.len() - LINK_MESS_LEN - 4, TICKET_LEN);
    }

    #[test]
    fn link_reply_puts_caps_right_after_the_fixed_fields() {
        let l = LinkPhase::new(1, 0);
        let s = l.bytes(Direction::ServerToClient);
        assert_eq!(&s[..4], b"REDQ");
        let size = u32_at(s, 12) as usize;
        assert_eq!(16 + size, LINK_REPLY_LEN);
        assert_eq!(u32_at(s, 16), 0, "error");
        // The dissector reads the caps at 16 + 16 + 162, whatever
        // caps_offset says; both must agree.
        let num_common = u32_at(s, 16 + 4 + 162);
        let caps_offset = u32_at(s, 16 + 4 + 162 + 8) as usize;
        assert_eq!(num_common, 1);
        assert_eq!(16 + caps_offset, 16 + 16 + 162);
        assert_eq!(u32_at(s, 16 + caps_offset), COMMON_CAPS);
        assert_eq!(u32_at(s, LINK_REPLY_LEN), 0, "link result OK");
        assert_eq!(s.len(), LINK_REPLY_LEN + 4);
    }

    #[test]
    fn packets_cover_each_direction_exactly_once_in_order() {
        let l = LinkPhase::new(3, 0);
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let mut at = 0;
            for p in LINK_PACKETS.iter().filter(|p| p.direction == dir) {
                assert_eq!(p.start, at);
                assert!(p.end > p.start);
                at = p.end;
            }
            assert_eq!(at, l.bytes(dir).len());
        }
        assert_eq!(LINK_C2S_LEN, 170);
        assert_eq!(LINK_S2C_LEN, 202);
    }

    #[test]
    fn channel_types_follow_spice_and_unknown_names_become_port() {
        let table = [
            ("main", 1),
            ("display", 2),
            ("inputs", 3),
            ("cursor", 4),
            ("playback", 5),
            ("record", 6),
            ("tunnel", 7),
            ("smartcard", 8),
            ("usbredir", 9),
            ("port", 10),
            ("webdav", 11),
            ("vendor-thing", UNKNOWN_CHANNEL_TYPE),
        ];
        for (name, ty) in table {
            assert_eq!(channel_type_for(name), ty, "{name}");
        }
    }

    #[test]
    fn isns_end_the_opening_right_before_the_data() {
        let (c, s) = opening_isns(true);
        assert_eq!(c + 1 + LINK_C2S_LEN as u32, CLIENT_ISN);
        assert_eq!(s + 1 + LINK_S2C_LEN as u32, SERVER_ISN);
        assert_eq!(opening_isns(false), (CLIENT_ISN - 1, SERVER_ISN - 1));
    }

    #[test]
    fn link_detection_needs_the_client_to_speak_first() {
        assert!(starts_with_link(Direction::ClientToServer, b"REDQ\x02"));
        assert!(!starts_with_link(Direction::ServerToClient, b"REDQ\x02"));
        assert!(!starts_with_link(Direction::ClientToServer, b"\x65\x00"));
        assert!(!starts_with_link(Direction::ClientToServer, b""));
    }
}
