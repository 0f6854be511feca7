//! A capture's segments grouped by connection and direction: what the
//! application sent, for a test to compare with what was recorded. Keys
//! are (client port, from server); the server is the one port the caller
//! names, as every connection of a SPICE session goes to it.

use std::collections::BTreeMap;

use crate::tcp::{self, Segment};

/// One TCP connection: its segments, and the bytes each side sent.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// (from server, segment), in file order.
    pub segments: Vec<(bool, Segment)>,
    /// The client's payload bytes, in file order.
    pub client: Vec<u8>,
    /// The server's payload bytes, in file order.
    pub server: Vec<u8>,
}

impl Connection {
    /// Whether the connection opens as TCP does: the client's SYN first.
    pub fn opens_with_syn(&self) -> bool {
        matches!(self.segments.first(), Some((false, s)) if s.syn)
    }
}

/// The connections of a capture by client port.
pub fn connections(segments: Vec<Segment>, server_port: u16) -> BTreeMap<u16, Connection> {
    let mut out: BTreeMap<u16, Connection> = BTreeMap::new();
    for s in segments {
        let c = out.entry(s.client_port(server_port)).or_default();
        let from_server = s.from_server(server_port);
        let side = if from_server {
            &mut c.server
        } else {
            &mut c.client
        };
        side.extend_from_slice(&s.payload);
        c.segments.push((from_server, s));
    }
    out
}

/// The payload bytes per (client port, from server) of a pcap or pcapng
/// file: both directions of every connection, empty if one side sent
/// nothing.
pub fn streams(bytes: &[u8], server_port: u16) -> BTreeMap<(u16, bool), Vec<u8>> {
    let conns = connections(tcp::segments(bytes), server_port);
    streams_of(&conns)
}

/// Like [`streams`], but also checks that every connection opens with
/// the client's SYN: a capture Wireshark is to reassemble must start each
/// stream at its handshake.
pub fn streams_after_handshake(bytes: &[u8], server_port: u16) -> BTreeMap<(u16, bool), Vec<u8>> {
    let conns = connections(tcp::segments(bytes), server_port);
    for (port, c) in &conns {
        assert!(c.opens_with_syn(), "port {port}: no handshake first");
    }
    streams_of(&conns)
}

fn streams_of(conns: &BTreeMap<u16, Connection>) -> BTreeMap<(u16, bool), Vec<u8>> {
    conns
        .iter()
        .flat_map(|(&port, c)| {
            [
                ((port, false), c.client.clone()),
                ((port, true), c.server.clone()),
            ]
        })
        .collect()
}

/// Removes the link phase (the first `c2s` bytes the client sent, the
/// first `s2c` the server sent) from every stream, leaving the recorded
/// bytes. Panics if a stream is shorter than its link phase: every
/// connection a conversion writes opens with a whole one.
pub fn strip_link(streams: &mut BTreeMap<(u16, bool), Vec<u8>>, c2s: usize, s2c: usize) {
    for ((port, from_server), bytes) in streams.iter_mut() {
        let link = if *from_server { s2c } else { c2s };
        assert!(
            bytes.len() >= link,
            "port {port}: {} bytes, no whole link phase of {link}",
            bytes.len()
        );
        bytes.drain(..link);
    }
}
