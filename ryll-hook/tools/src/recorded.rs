//! A recorded SPICE session (a tcpdump pcap of real client/server traffic)
//! split into what each channel loop of a client would have seen: per
//! connection, per direction, the post-link-phase bytes in arrival order.
//!
//! This is the "real traffic" the fixtures and end-to-end tests are made of.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use etherparse::{NetSlice, SlicedPacket, TcpSlice, TransportSlice};
use pcap_file::pcap::PcapReader;
use spool::Direction;
use spool2pcap::spice::messages::mini_headers;

/// Why a recording could not be split into channel streams.
#[derive(Debug, thiserror::Error)]
pub enum RecordedError {
    /// The file could not be opened.
    #[error("{}: {source}", path.display())]
    Open {
        /// The recording.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a pcap (`packet` is `None`), or a packet of it
    /// could not be read (`packet`: how many were read before it).
    #[error("{}: {}{source}", path.display(), packet.map_or_else(String::new, |n| format!("packet {n}: ")))]
    Pcap {
        /// The recording.
        path: PathBuf,
        /// Packets read before the one that failed; `None`: the header.
        packet: Option<usize>,
        /// Why.
        source: pcap_file::PcapError,
    },
    /// A TCP segment starts past bytes the recording never saw.
    #[error("{}: packet {packet}: {bytes} bytes missing from the recording", path.display())]
    Missing {
        /// The recording.
        path: PathBuf,
        /// Which packet, counting from 1.
        packet: usize,
        /// How many bytes were not captured.
        bytes: i32,
    },
    /// A connection does not open with a SPICE link phase that can be read.
    #[error("connection from port {port}: {what}")]
    Link {
        /// The client's TCP port.
        port: u16,
        /// What is wrong with it.
        what: &'static str,
    },
}

/// Why a stream does not frame as SPICE mini-header messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Fewer than 6 bytes of header are left at `at`.
    #[error("partial header at byte {0}")]
    PartialHeader(usize),
    /// The message whose header is at `at` ends past the stream's end.
    #[error("message at byte {0} runs past the end")]
    PastEnd(usize),
}

/// One read or write of a channel loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Nanoseconds since the first packet of the recording.
    pub ts_ns: u64,
    /// Which way.
    pub dir: Direction,
    /// The bytes.
    pub data: Vec<u8>,
}

/// One TCP connection = one SPICE channel.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Client's TCP port in the recording.
    pub client_port: u16,
    /// SPICE channel type from the client's link message.
    pub channel_type: u8,
    /// SPICE channel id.
    pub channel_id: u8,
    /// ryll's channel name.
    pub name: String,
    /// Link-phase bytes client→server (link message, auth mechanism, ticket).
    pub link_c2s: Vec<u8>,
    /// Link-phase bytes server→client (link reply, link result).
    pub link_s2c: Vec<u8>,
    /// Everything after the link phase, as TCP delivered it.
    pub chunks: Vec<Chunk>,
}

impl Connection {
    /// All post-link bytes in one direction.
    pub fn stream(&self, dir: Direction) -> Vec<u8> {
        self.chunks
            .iter()
            .filter(|c| c.dir == dir)
            .flat_map(|c| c.data.iter().copied())
            .collect()
    }
}

/// A whole recording.
#[derive(Debug, Clone)]
pub struct Session {
    /// Wall-clock time of the first packet, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// Connections in order of first appearance.
    pub connections: Vec<Connection>,
}

impl Session {
    /// The connection of a channel, by ryll's name.
    pub fn channel(&self, name: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.name == name)
    }

    /// Every chunk of every channel in arrival order, with its channel name.
    pub fn merged(&self) -> Vec<(&str, &Chunk)> {
        let mut all: Vec<(&str, &Chunk)> = self
            .connections
            .iter()
            .flat_map(|c| c.chunks.iter().map(move |k| (c.name.as_str(), k)))
            .collect();
        all.sort_by_key(|(_, k)| k.ts_ns);
        all
    }
}

#[derive(Default)]
struct RawConn {
    first_seen: usize,
    /// (ts, dir, payload) after de-duplicating retransmissions.
    segments: Vec<(u64, Direction, Vec<u8>)>,
    next_seq: [Option<u32>; 2],
}

impl RawConn {
    /// Adds a TCP segment of this connection going `dir`, arrived `ts` ns
    /// into the recording: its new bytes, past what was seen already (a
    /// retransmission repeats them). Fails with how many bytes the
    /// recording missed before it.
    fn add(&mut self, dir: Direction, tcp: &TcpSlice, ts: u64) -> Result<(), i32> {
        let d = dir.to_byte() as usize;
        let seq = tcp.sequence_number();
        if tcp.syn() {
            self.next_seq[d] = Some(seq.wrapping_add(1));
            return Ok(());
        }
        let payload = tcp.payload();
        if payload.is_empty() {
            return Ok(());
        }
        let expected = self.next_seq[d].unwrap_or(seq);
        let ahead = seq.wrapping_sub(expected) as i32;
        if ahead > 0 {
            return Err(ahead);
        }
        let skip = (-ahead) as usize;
        if skip >= payload.len() {
            return Ok(());
        }
        self.next_seq[d] = Some(seq.wrapping_add(payload.len() as u32));
        self.segments.push((ts, dir, payload[skip..].to_vec()));
        Ok(())
    }
}

/// The TCP segment `frame` holds, if it is one of a connection to
/// `server_port` over IPv4: the client's port and the direction with it.
fn spice_segment(frame: &[u8], server_port: u16) -> Option<(u16, Direction, TcpSlice<'_>)> {
    let sliced = SlicedPacket::from_ethernet(frame).ok()?;
    let (Some(NetSlice::Ipv4(_)), Some(TransportSlice::Tcp(tcp))) = (sliced.net, sliced.transport)
    else {
        return None;
    };
    if tcp.destination_port() == server_port {
        Some((tcp.source_port(), Direction::ClientToServer, tcp))
    } else if tcp.source_port() == server_port {
        Some((tcp.destination_port(), Direction::ServerToClient, tcp))
    } else {
        None
    }
}

/// Reads a pcap of a SPICE session whose server listens on `server_port`.
pub fn load(path: &Path, server_port: u16) -> Result<Session, RecordedError> {
    let file = std::fs::File::open(path).map_err(|source| RecordedError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = PcapReader::new(file).map_err(|source| RecordedError::Pcap {
        path: path.to_path_buf(),
        packet: None,
        source,
    })?;
    let mut conns: BTreeMap<u16, RawConn> = BTreeMap::new();
    let mut start: Option<u64> = None;
    let mut n = 0usize;
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.map_err(|source| RecordedError::Pcap {
            path: path.to_path_buf(),
            packet: Some(n),
            source,
        })?;
        n += 1;
        let t = pkt.timestamp.as_nanos() as u64;
        let start = *start.get_or_insert(t);
        let Some((key, dir, tcp)) = spice_segment(&pkt.data, server_port) else {
            continue;
        };
        let first_seen = conns.len();
        let conn = conns.entry(key).or_insert_with(|| RawConn {
            first_seen,
            ..Default::default()
        });
        conn.add(dir, &tcp, t.saturating_sub(start))
            .map_err(|bytes| RecordedError::Missing {
                path: path.to_path_buf(),
                packet: n,
                bytes,
            })?;
    }
    Ok(Session {
        start_unix_ns: start.unwrap_or(0),
        connections: connections(conns)?,
    })
}

/// The connections that carried bytes, in the order they were first seen,
/// each split into its link phase and messages.
fn connections(conns: BTreeMap<u16, RawConn>) -> Result<Vec<Connection>, RecordedError> {
    let mut raw: Vec<(u16, RawConn)> = conns.into_iter().collect();
    raw.sort_by_key(|(_, c)| c.first_seen);
    let mut connections = Vec::new();
    for (port, c) in raw {
        // A connection that carried no byte either way is no SPICE channel:
        // e.g. a probe that the server was listening, closed as the
        // recording started.
        if c.segments.is_empty() {
            continue;
        }
        connections.push(split_link_phase(port, c.segments)?);
    }
    Ok(connections)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Works out the link phase's length in each direction from its own bytes,
/// and splits the connection's segments at that point.
fn split_link_phase(
    port: u16,
    segments: Vec<(u64, Direction, Vec<u8>)>,
) -> Result<Connection, RecordedError> {
    let stream = |dir| -> Vec<u8> {
        segments
            .iter()
            .filter(|s| s.1 == dir)
            .flat_map(|s| s.2.iter().copied())
            .collect()
    };
    let c2s = stream(Direction::ClientToServer);
    let s2c = stream(Direction::ServerToClient);
    let bad = |what: &'static str| RecordedError::Link { port, what };
    if c2s.get(..4) != Some(b"REDQ") || s2c.get(..4) != Some(b"REDQ") {
        return Err(bad("does not start with a SPICE link phase"));
    }
    // SpiceLinkHeader: magic, major, minor, size; then the body.
    let mess_len = u32_at(&c2s, 12).ok_or_else(|| bad("short link header"))? as usize;
    let reply_len = u32_at(&s2c, 12).ok_or_else(|| bad("short link reply"))? as usize;
    let mess = c2s
        .get(16..16 + mess_len)
        .ok_or_else(|| bad("short link message"))?;
    let reply = s2c
        .get(16..16 + reply_len)
        .ok_or_else(|| bad("short link reply"))?;
    // SpiceLinkMess: connection_id u32, channel_type u8, channel_id u8,
    // num_common_caps u32, num_channel_caps u32, caps_offset u32.
    let channel_type = mess[4];
    let channel_id = mess[5];
    let common_caps = |body: &[u8], num_at: usize, off_at: usize| -> u32 {
        let num = u32_at(body, num_at).unwrap_or(0);
        let off = u32_at(body, off_at).unwrap_or(0) as usize;
        if num == 0 {
            0
        } else {
            u32_at(body, off).unwrap_or(0)
        }
    };
    const AUTH_SELECTION: u32 = 1;
    let client_caps = common_caps(mess, 6, 14);
    // SpiceLinkReply: error u32, pub_key [u8; 162], num_common_caps u32,
    // num_channel_caps u32, caps_offset u32.
    let server_caps = common_caps(reply, 166, 174);
    let auth_selection = client_caps & server_caps & AUTH_SELECTION != 0;
    let link_c2s_len = 16 + mess_len + if auth_selection { 4 } else { 0 } + 128;
    let link_s2c_len = 16 + reply_len + 4;
    let name = spool2pcap::spice::channels::spice_channel_name(channel_type)
        .map_or_else(|| format!("type{channel_type}"), str::to_string);

    let mut chunks = Vec::new();
    let mut seen = [0usize; 2];
    let link_len = [link_c2s_len, link_s2c_len];
    for (ts, dir, data) in segments {
        let d = dir.to_byte() as usize;
        let before = seen[d];
        seen[d] += data.len();
        if seen[d] <= link_len[d] {
            continue;
        }
        let skip = link_len[d].saturating_sub(before);
        chunks.push(Chunk {
            ts_ns: ts,
            dir,
            data: data[skip..].to_vec(),
        });
    }
    Ok(Connection {
        client_port: port,
        channel_type,
        channel_id,
        name,
        link_c2s: c2s[..link_c2s_len.min(c2s.len())].to_vec(),
        link_s2c: s2c[..link_s2c_len.min(s2c.len())].to_vec(),
        chunks,
    })
}

/// Walks a post-link stream as SPICE mini-header messages (type u16,
/// size u32, body) and returns their types; `Err` if the bytes do not frame.
pub fn mini_header_messages(stream: &[u8]) -> Result<Vec<u16>, FramingError> {
    let mut types = Vec::new();
    for h in mini_headers(stream) {
        let h = h.map_err(FramingError::PartialHeader)?;
        if h.end() > stream.len() {
            return Err(FramingError::PastEnd(h.at));
        }
        types.push(h.ty);
    }
    Ok(types)
}

/// The recorded real session the project ships,
/// `fixtures/recorded/qemu-seabios-4ch.pcap` (its README says how it was
/// recorded), found relative to the workspace root.
pub fn recorded_session_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/recorded/qemu-seabios-4ch.pcap")
}

/// Server port of the recorded session.
pub const RECORDED_SESSION_PORT: u16 = 5931;
