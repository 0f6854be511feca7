//! The recorded SPICE session (`fixtures/recorded/`) end to end: split into channel
//! streams, spooled (the shipped fixture), converted by spool2pcap, and read
//! back by etherparse and by tshark.

use std::collections::BTreeMap;

use e2e::recorded::{self, Session};
use e2e::{fixtures, tools};
use spool::read::capture::Capture;
use spool::read::event::Event;
use spool::Direction;
use spool2pcap::{convert, ConvertOptions, Destination, Format, TimeMode};

fn recorded_session_splits_into_framed_spice_streams() {
    let s = fixtures::recorded_session();
    let names: Vec<&str> = s.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["main", "display", "inputs", "cursor"]);
    for c in &s.connections {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let stream = c.stream(dir);
            let types = recorded::mini_header_messages(&stream)
                .unwrap_or_else(|e| panic!("{} {}: {e}", c.name, dir.as_str()));
            assert!(!types.is_empty(), "{} {} is empty", c.name, dir.as_str());
        }
    }
    // main's first server message after the link is SPICE_MSG_MAIN_INIT (103).
    let main = s.channel("main").unwrap();
    let types = recorded::mini_header_messages(&main.stream(Direction::ServerToClient)).unwrap();
    assert_eq!(types[0], 103);
}

/// The shipped fixture holds every post-link byte of every channel, as the
/// chunks arrived, with their timestamps: nothing lost, nothing added.
fn shipped_fixture_is_the_whole_session() {
    let s = fixtures::recorded_session();
    let cap = Capture::open(&fixtures::shipped_capture()).unwrap();
    assert!(cap.problems().is_empty(), "{:?}", cap.problems());
    assert!(cap.manifest().unwrap().clean_shutdown);
    assert_eq!(
        cap.manifest().unwrap().session_start_unix_ns,
        s.start_unix_ns
    );
    for conn in &s.connections {
        let mut r = cap.reader(&conn.name).unwrap();
        let mut got = Vec::new();
        while let Some(ev) = r.next_event() {
            match ev {
                Event::Data(d) => got.push((d.ts_ns, d.direction, d.payload.to_vec())),
                other => panic!("{}: unexpected {other:?}", conn.name),
            }
        }
        let want: Vec<_> = conn
            .chunks
            .iter()
            .map(|c| (c.ts_ns, c.dir, c.data.clone()))
            .collect();
        assert_eq!(got.len(), want.len(), "{}", conn.name);
        assert!(
            got == want,
            "{}: records differ from the recording",
            conn.name
        );
        assert!(r.stats().closed_cleanly, "{}", conn.name);
    }
}

/// Converts the fixture and checks every frame with etherparse: addresses,
/// ports, sequence numbers, checksums, and the timestamp of every chunk.
fn converted_frames_carry_every_byte_in_order_with_its_time() {
    let s = fixtures::recorded_session();
    let out = tempfile::tempdir().unwrap();
    // Recorded bytes only: the synthetic handshake, link phase and close
    // are checked in wireshark_spice.rs.
    let mut opts = ConvertOptions::new(Destination::Dir(out.path().into()));
    opts.synth = spool2pcap::Synthesis::NONE;
    let report = convert(&fixtures::shipped_capture(), &opts).unwrap();
    assert!(!report.has_damage());
    for conn in &s.connections {
        let path = out.path().join(format!("{}.pcap", conn.name));
        let bytes = std::fs::read(&path).unwrap();
        let port = spool2pcap::spice::channels::known_port(&conn.name).unwrap();
        let mut chunks = conn.chunks.iter();
        let mut seq = [1000u32, 2000u32];
        // testkit checks the IPv4 and TCP checksums of every frame.
        for (frames, f) in testkit::pcap::frames(&bytes).iter().enumerate() {
            let tcp = testkit::tcp::Segment::parse(f);
            let chunk = chunks.next().expect("more frames than chunks");
            // Chunks of the recording are all below the 65495-byte split.
            assert_eq!(
                tcp.payload,
                chunk.data.as_slice(),
                "{} frame {frames}",
                conn.name
            );
            let expect_ts = std::time::Duration::from_nanos(s.start_unix_ns + chunk.ts_ns);
            assert_eq!(tcp.ts, expect_ts, "{} frame {frames} time", conn.name);
            let (src, dst, sp, dp, d, other) = match chunk.dir {
                Direction::ClientToServer => {
                    ([10, 0, 0, 1], [10, 0, 0, 2], port, tools::SERVER_PORT, 0, 1)
                }
                Direction::ServerToClient => {
                    ([10, 0, 0, 2], [10, 0, 0, 1], tools::SERVER_PORT, port, 1, 0)
                }
            };
            assert_eq!((tcp.src_ip, tcp.dst_ip), (src, dst));
            assert_eq!((tcp.src_port, tcp.dst_port), (sp, dp));
            assert_eq!(tcp.seq, seq[d]);
            assert!(tcp.ack_flag);
            assert_eq!(tcp.ack, seq[other]);
            seq[d] = seq[d].wrapping_add(tcp.payload.len() as u32);
        }
        assert!(chunks.next().is_none(), "{}: chunks left over", conn.name);
    }
}

fn expected_streams(s: &Session) -> BTreeMap<u16, tools::Followed> {
    s.connections
        .iter()
        .map(|c| {
            (
                spool2pcap::spice::channels::known_port(&c.name).unwrap(),
                tools::Followed {
                    client: c.stream(Direction::ClientToServer),
                    server: c.stream(Direction::ServerToClient),
                },
            )
        })
        .collect()
}

/// tshark reads every output file (per-channel pcaps, merged pcap, merged
/// pcapng) without error and reassembles exactly the bytes that went in.
fn tshark_reassembles_exactly_the_spooled_bytes() {
    let s = fixtures::recorded_session();
    // By default every connection starts with the synthetic SPICE link
    // phase, then carries exactly the spooled bytes.
    let mut want = expected_streams(&s);
    for conn in &s.connections {
        let port = spool2pcap::spice::channels::known_port(&conn.name).unwrap();
        let link = spool2pcap::spice::link::LinkPhase::new(conn.channel_type, 0);
        let w = want.get_mut(&port).unwrap();
        w.client = [link.bytes(Direction::ClientToServer), &w.client].concat();
        w.server = [link.bytes(Direction::ServerToClient), &w.server].concat();
    }
    let out = tempfile::tempdir().unwrap();
    convert(
        &fixtures::shipped_capture(),
        &ConvertOptions::new(Destination::Dir(out.path().join("per-channel"))),
    )
    .unwrap();
    for conn in &s.connections {
        let f = out
            .path()
            .join("per-channel")
            .join(format!("{}.pcap", conn.name));
        let got = tools::follow_all(&f, tools::SERVER_PORT).unwrap();
        let port = spool2pcap::spice::channels::known_port(&conn.name).unwrap();
        assert_eq!(got.len(), 1, "{}", conn.name);
        assert!(
            got[&port] == want[&port],
            "{}: tshark's bytes differ",
            conn.name
        );
    }
    for (name, format) in [("all.pcap", Format::Pcap), ("all.pcapng", Format::Pcapng)] {
        let mut opts = ConvertOptions::new(Destination::File(out.path().join(name)));
        opts.format = format;
        opts.time = TimeMode::Relative;
        convert(&fixtures::shipped_capture(), &opts).unwrap();
        let got = tools::follow_all(&out.path().join(name), tools::SERVER_PORT).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (port, w) in &want {
            assert!(
                &got[port] == w,
                "{name}: port {port}: tshark's bytes differ"
            );
        }
    }
}

fn main() -> std::process::ExitCode {
    needs::run(vec![
        needs::test!(recorded_session_splits_into_framed_spice_streams),
        needs::test!(shipped_fixture_is_the_whole_session),
        needs::test!(converted_frames_carry_every_byte_in_order_with_its_time),
        needs::test!(tshark_reassembles_exactly_the_spooled_bytes, needs::TSHARK),
    ])
}
