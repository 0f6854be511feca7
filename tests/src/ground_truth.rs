//! A capture against the ground truth of the wire (for the tests of
//! ryll-hook's sink in real and replayed sessions): convert a capture
//! directory with spool2pcap, reassemble every channel with tshark, and
//! compare with the post-link bytes of a recording.

use std::path::Path;

use crate::recorded::Session;
use crate::tools;
use spool::Direction;
use spool2pcap::{convert, ConvertOptions, Destination};

/// Loads the loopback ground truth of a session with a SPICE server on
/// `port` and checks that the four channels every ryll session opens are
/// in it.
pub fn load_ground_truth(truth: &Path, port: u16) -> Session {
    let session = crate::recorded::load(truth, port).unwrap();
    let names: Vec<&str> = session
        .connections
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    eprintln!("ground truth channels: {names:?}");
    for want in ["main", "display", "inputs", "cursor"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    session
}

/// spool2pcap may put a synthetic SPICE link phase in front of each
/// channel (so Wireshark's dissector decodes it): link message, auth
/// mechanism and ticket from the client; link reply and link result from
/// the server. The recording's link phase is not what ryll captures, so
/// what must match is what follows it; this strips a made-up one.
pub fn post_link(stream: &[u8], from_server: bool) -> &[u8] {
    if !stream.starts_with(b"REDQ") {
        return stream;
    }
    let size = stream
        .get(12..16)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let link = 16 + size + if from_server { 4 } else { 4 + 128 };
    stream.get(link..).unwrap_or(&[])
}

/// Converts `capture` to per-channel pcaps and checks with tshark that
/// every connection of `session` is there byte for byte (both directions,
/// post-link). Returns a line per channel for the test log.
pub fn check_capture_against(capture: &Path, session: &Session) -> Vec<String> {
    check_capture(capture, session, 0)
}

/// [`check_capture_against`] for a client that was stopped while the
/// server was still sending: server→client bytes may end up to
/// `unread_tail` bytes short of the recording (bytes the server sent after
/// the client's last read are never handed to the sink), but must
/// otherwise be the recording's bytes exactly. Client→server bytes must
/// always match in full.
pub fn check_capture(capture: &Path, session: &Session, unread_tail: usize) -> Vec<String> {
    check_stopped_capture(capture, session, unread_tail, 0)
}

/// [`check_capture`] for a client whose channel tasks were dropped
/// mid-session: the renderer hands a message to the sink before it writes
/// it, so the capture may also hold up to `unsent_tail` client→server
/// bytes at the end that never reached the wire.
pub fn check_stopped_capture(
    capture: &Path,
    session: &Session,
    unread_tail: usize,
    unsent_tail: usize,
) -> Vec<String> {
    let out = tempfile::tempdir().unwrap();
    let pcaps = out.path().join("pcaps");
    convert(
        capture,
        &ConvertOptions::new(Destination::Dir(pcaps.clone())),
    )
    .unwrap_or_else(|e| panic!("converting {}: {e}", capture.display()));
    let mut lines = Vec::new();
    for conn in &session.connections {
        let file = pcaps.join(format!("{}.pcap", conn.name));
        let got = tools::follow_all(&file, tools::SERVER_PORT)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let port = spool2pcap::spice::channels::known_port(&conn.name)
            .unwrap_or_else(|| panic!("{}: no known port", conn.name));
        assert_eq!(got.len(), 1, "{}: one TCP stream expected", conn.name);
        let got = &got[&port];
        let (c2s, s2c) = (
            conn.stream(Direction::ClientToServer),
            conn.stream(Direction::ServerToClient),
        );
        let (server, client) = (post_link(&got.server, true), post_link(&got.client, false));
        let s2c_seen = if server.len() < s2c.len() && unread_tail > 0 {
            let short = s2c.len() - server.len();
            assert!(
                short <= unread_tail,
                "{}: {short} server→client bytes missing at the end (up to {unread_tail} allowed)",
                conn.name
            );
            &s2c[..server.len()]
        } else {
            &s2c[..]
        };
        assert!(
            server == s2c_seen,
            "{}: server→client differs: tshark {} bytes, recording {} bytes",
            conn.name,
            server.len(),
            s2c.len()
        );
        let unsent = client.len().saturating_sub(c2s.len());
        assert!(
            client.get(..c2s.len()) == Some(&c2s[..]) && unsent <= unsent_tail,
            "{}: client→server differs: tshark {} bytes, recording {} bytes",
            conn.name,
            client.len(),
            c2s.len()
        );
        lines.push(format!(
            "{}: {} of {} bytes s2c, {} bytes c2s identical{}",
            conn.name,
            s2c_seen.len(),
            s2c.len(),
            c2s.len(),
            if unsent > 0 {
                format!(", {unsent} bytes c2s captured but never sent")
            } else {
                String::new()
            }
        ));
    }
    lines
}
