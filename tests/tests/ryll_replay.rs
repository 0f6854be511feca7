//! The recorded real session replayed over loopback sockets through ryll's
//! capture sink on the spool, converted by spool2pcap, reassembled by
//! tshark: every channel's bytes are the recording's post-link bytes.

use e2e::ground_truth;
use ryll_hook::ALWAYS_OPEN;
use ryll_tools::replay::replay_into_capture;

fn replayed_session_through_the_spool_sink_is_the_recording_byte_for_byte() {
    let session = e2e::fixtures::recorded_session();
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let (sink, report) = replay_into_capture(&session, &capture).unwrap();
    sink.close().unwrap();

    for conn in &session.connections {
        let stats = &report.channels[&conn.name];
        let c = sink.counters(&conn.name).unwrap();
        assert_eq!(stats.drops, 0, "{}", conn.name);
        assert_eq!(c.dropped_records, 0, "{}", conn.name);
        assert_eq!(c.records, stats.reads + stats.writes, "{}", conn.name);
        assert_eq!(
            c.bytes,
            stats.bytes_received + stats.bytes_sent,
            "{}",
            conn.name
        );
    }
    // The channels every session opens exist; the others only if the
    // session opened them.
    for name in ALWAYS_OPEN {
        assert!(sink.counters(name).is_some(), "{name}");
    }
    for (name, counters) in sink.all_counters() {
        let opened = session.channel(&name).is_some();
        assert!(
            opened || ALWAYS_OPEN.contains(&name.as_str()),
            "{name}: registered unopened"
        );
        if !opened {
            assert_eq!(counters.records, 0, "{name}");
        }
    }
    for line in ground_truth::check_capture_against(&capture, &session) {
        eprintln!("{line}");
    }
}

fn main() -> std::process::ExitCode {
    needs::run(vec![needs::test!(
        replayed_session_through_the_spool_sink_is_the_recording_byte_for_byte,
        needs::TSHARK
    )])
}
