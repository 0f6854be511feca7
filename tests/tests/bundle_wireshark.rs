//! What Wireshark (tshark 4.0) makes of the F12 bug report's
//! `traffic.pcap`, cut from the shipped real capture: with a budget that
//! holds everything it decodes the same SPICE messages as `spool2pcap
//! convert` of the capture; cut by a budget, it decodes exactly the newest
//! messages of every stream the cut kept; one channel's report holds that
//! channel's messages only.
//!
//! Without tshark the tests are reported ignored, with the reason; under
//! `CI=true` they fail.

use std::collections::BTreeMap;
use std::path::Path;

use e2e::{fixtures, recorded, tools};
use ryll_hook::bundle::{capture_traffic_pcap, BugReportOptions};
use spool::read::capture::Capture;
use spool::read::event::Event;
use spool::{Direction, Spool, SpoolConfig};
use spool2pcap::spice::link::{LINK_C2S_LEN, LINK_S2C_LEN};
use spool2pcap::{convert, ConvertOptions, Destination, Redaction};

/// SPICE message types tshark decodes per (client port, direction), in
/// order.
type Decoded = BTreeMap<(u16, Direction), Vec<u16>>;

fn decoded(file: &Path) -> Decoded {
    tools::spice_messages_by_direction(file, tools::SERVER_PORT)
}

/// Recorded payload bytes per (client port, from server): what follows
/// each connection's synthetic link phase.
fn recorded_streams(pcap: &[u8]) -> BTreeMap<(u16, bool), Vec<u8>> {
    assert_eq!(
        testkit::pcap::read(pcap).format,
        testkit::pcap::Format::Pcap
    );
    let mut out = testkit::streams::streams(pcap, tools::SERVER_PORT);
    testkit::streams::strip_link(&mut out, LINK_C2S_LEN, LINK_S2C_LEN);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every message of the shipped capture, as `spool2pcap convert` makes
/// tshark decode them.
fn converted(dir: &Path) -> Decoded {
    let path = dir.join("converted.pcap");
    convert(
        &fixtures::shipped_capture(),
        &ConvertOptions::new(Destination::File(path.clone())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    decoded(&path)
}

fn total(d: &Decoded) -> usize {
    d.values().map(Vec::len).sum()
}

fn a_whole_report_decodes_like_convert() {
    let tmp = tempfile::tempdir().unwrap();
    let want = converted(tmp.path());
    // The display channel of the real session has 829 messages.
    let display = |d: &Decoded| {
        d.iter()
            .filter(|((port, _), _)| *port == 10002)
            .map(|(_, m)| m.len())
            .sum::<usize>()
    };
    assert!(display(&want) >= 829);
    for redact in [Redaction::ALL, Redaction::NONE] {
        let opts = BugReportOptions {
            budget_bytes: u64::MAX,
            redact,
        };
        let (pcap, summary) =
            capture_traffic_pcap(&fixtures::shipped_capture(), None, &opts).unwrap();
        assert!(!summary.truncated);
        let got = decoded(&write(tmp.path(), "report.pcap", &pcap));
        eprintln!(
            "whole report ({redact:?}): {} SPICE messages, convert: {}",
            total(&got),
            total(&want)
        );
        assert_eq!(total(&got), total(&want), "{redact:?}");
        assert!(got == want, "{redact:?}: decodes differently from convert");
    }
}

/// A capture of the shipped capture's records whose bytes `kept` holds:
/// per channel and direction, the newest records whose payloads make up
/// exactly those bytes, in the order they were recorded.
fn capture_of(kept: &BTreeMap<(u16, bool), Vec<u8>>, dir: &Path) -> std::path::PathBuf {
    let out = dir.join("kept-capture");
    let spool = Spool::create(SpoolConfig::new(&out)).unwrap();
    let cap = Capture::open(&fixtures::shipped_capture()).unwrap();
    for c in cap.channels() {
        let port = spool2pcap::spice::channels::known_port(&c.name).unwrap();
        let mut r = cap.reader(&c.name).unwrap();
        let mut records = Vec::new();
        while let Some(e) = r.next_event() {
            if let Event::Data(d) = e {
                records.push((d.direction, d.payload.to_vec()));
            }
        }
        // From the newest back, each direction takes records until it has
        // the bytes kept.
        let mut left: BTreeMap<Direction, usize> =
            [Direction::ClientToServer, Direction::ServerToClient]
                .into_iter()
                .map(|d| {
                    let from_server = d == Direction::ServerToClient;
                    (d, kept.get(&(port, from_server)).map_or(0, Vec::len))
                })
                .collect();
        let mut take = vec![false; records.len()];
        for (i, (d, payload)) in records.iter().enumerate().rev() {
            let l = left.get_mut(d).unwrap();
            if *l >= payload.len() && *l > 0 {
                *l -= payload.len();
                take[i] = true;
            } else {
                *l = 0;
            }
        }
        assert!(
            left.values().all(|&l| l == 0),
            "{}: kept bytes are not whole records",
            c.name
        );
        for ((d, payload), _) in records.iter().zip(&take).filter(|(_, t)| **t) {
            assert!(spool.append(&c.name, *d, payload));
        }
    }
    spool.close().unwrap();
    out
}

fn a_cut_report_decodes_as_convert_decodes_the_records_it_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let want = converted(tmp.path());
    for budget in [30_000u64, 120_000] {
        let opts = BugReportOptions {
            budget_bytes: budget,
            ..BugReportOptions::default()
        };
        let (pcap, summary) =
            capture_traffic_pcap(&fixtures::shipped_capture(), None, &opts).unwrap();
        assert!(
            summary.truncated && summary.written_bytes <= budget,
            "{summary:?}"
        );
        let got = decoded(&write(tmp.path(), "cut.pcap", &pcap));
        let kept = recorded_streams(&pcap);
        for (key, bytes) in &kept {
            // Every stream starts at a message.
            recorded::mini_header_messages(bytes)
                .unwrap_or_else(|e| panic!("{budget}: {key:?}: {e}"));
        }
        // The same records, converted by spool2pcap from a capture that
        // holds only them, decode alike.
        let dir = tempfile::tempdir().unwrap();
        let capture = capture_of(&kept, dir.path());
        let file = dir.path().join("kept.pcap");
        let mut copts = ConvertOptions::new(Destination::File(file.clone()));
        copts.redact = Redaction::ALL;
        convert(&capture, &copts).unwrap_or_else(|e| panic!("{e}"));
        let reference = decoded(&file);
        eprintln!(
            "budget {budget}: {} SPICE messages; convert of the kept records: {}; of all: {}",
            total(&got),
            total(&reference),
            total(&want)
        );
        assert_eq!(total(&got), total(&reference), "{budget}");
        assert!(got == reference, "{budget}: {got:?}\nvs {reference:?}");
        assert!(total(&got) > 0, "{budget}: nothing decoded");
        assert!(total(&got) < total(&want), "{budget}: nothing cut");
    }
}

fn a_channel_report_decodes_that_channel() {
    let tmp = tempfile::tempdir().unwrap();
    let want = converted(tmp.path());
    let opts = BugReportOptions {
        budget_bytes: u64::MAX,
        ..BugReportOptions::default()
    };
    let (pcap, _) =
        capture_traffic_pcap(&fixtures::shipped_capture(), Some("display"), &opts).unwrap();
    let got = decoded(&write(tmp.path(), "display.pcap", &pcap));
    let display: Decoded = want
        .into_iter()
        .filter(|((port, _), _)| *port == 10002)
        .collect();
    assert!(got == display, "display report: {got:?}");
}

/// F12 in a running session: the real session replayed over loopback
/// through `SpoolSink`, as ryll's channel loops record it, and reported
/// while the capture is still open (segments staged in memory read in
/// place). The report decodes as `convert` of the same capture once
/// closed.
fn a_report_of_a_live_capture_decodes_like_convert() {
    let session = fixtures::recorded_session();
    let tmp = tempfile::tempdir().unwrap();
    let capture = tmp.path().join("capture");
    let (sink, _) = ryll_tools::replay::replay_into_capture(&session, &capture).unwrap();
    let opts = BugReportOptions {
        budget_bytes: u64::MAX,
        ..BugReportOptions::default()
    };
    let (pcap, summary) = capture_traffic_pcap(&capture, None, &opts).unwrap();
    assert!(!summary.truncated);
    sink.close().unwrap();
    let got = decoded(&write(tmp.path(), "live-report.pcap", &pcap));
    let file = tmp.path().join("closed.pcap");
    convert(
        &capture,
        &ConvertOptions::new(Destination::File(file.clone())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let want = decoded(&file);
    eprintln!(
        "live report: {} SPICE messages; convert of the closed capture: {}",
        total(&got),
        total(&want)
    );
    assert!(total(&want) >= 829);
    assert!(got == want, "the live report decodes differently");
}

fn main() -> std::process::ExitCode {
    needs::run(vec![
        needs::test!(a_whole_report_decodes_like_convert, needs::TSHARK),
        needs::test!(
            a_cut_report_decodes_as_convert_decodes_the_records_it_kept,
            needs::TSHARK
        ),
        needs::test!(a_channel_report_decodes_that_channel, needs::TSHARK),
        needs::test!(
            a_report_of_a_live_capture_decodes_like_convert,
            needs::TSHARK
        ),
    ])
}
