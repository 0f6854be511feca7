//! Excerpts: the shipped real capture cut by the selections, checked packet
//! by packet against a full conversion of the same capture.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::shipped_fixture;
use spool::store::format::Direction::{ClientToServer as C2S, ServerToClient as S2C};
use spool2pcap::capture_builder::{write_segment, Seg};
use spool2pcap::pipeline::convert::{convert, ConvertOptions, Destination};
use spool2pcap::pipeline::excerpt::{
    write_excerpt, ExcerptOptions, Selection, PCAP_FILE_HEADER_LEN,
};
use spool2pcap::spice::channels::SERVER_PORT;
use spool2pcap::spice::messages::MessageFramer;
use spool2pcap::{ChannelReport, ConvertReport, Cut, Format};
use testkit::streams::Connection;
use testkit::tcp::Segment;

/// The TCP connections of a classic pcap by client port, its packets in
/// time order.
fn connections(pcap: &[u8]) -> BTreeMap<u16, Connection> {
    let segments: Vec<Segment> = testkit::pcap::frames(pcap)
        .iter()
        .map(Segment::parse)
        .collect();
    testkit::tcp::assert_time_ordered(&segments);
    testkit::streams::connections(segments, SERVER_PORT)
}

fn full_conversion(capture: &Path) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.pcap");
    let mut opts = ConvertOptions::new(Destination::File(file.clone()));
    opts.format = Format::Pcap;
    convert(capture, &opts).unwrap();
    std::fs::read(file).unwrap()
}

fn excerpt(capture: &Path, opts: &ExcerptOptions) -> (Vec<u8>, ConvertReport) {
    let mut out = Vec::new();
    let report = write_excerpt(capture, opts, &mut out).unwrap();
    (out, report)
}

/// What the excerpt kept of channel `c`; every channel of an excerpt's
/// report has it.
fn cut_of(c: &ChannelReport) -> Cut {
    c.cut
        .unwrap_or_else(|| panic!("{}: no cut in an excerpt", c.channel))
}

/// The synthetic link phase's bytes in each direction.
const LINK_C2S: usize = spool2pcap::spice::link::LINK_C2S_LEN;
const LINK_S2C: usize = spool2pcap::spice::link::LINK_S2C_LEN;

#[test]
fn everything_is_byte_for_byte_what_convert_writes() {
    let full = full_conversion(&shipped_fixture());
    let (got, report) = excerpt(&shipped_fixture(), &ExcerptOptions::new(Selection::All));
    assert!(got == full, "excerpt of everything differs from convert -w");
    assert_eq!(report.omitted_frames(), 0);
    assert_eq!(report.channels.len(), 4);
    assert!(report
        .channels
        .iter()
        .all(|c| cut_of(c).kept_records == c.records && c.records > 0));
}

#[test]
fn a_budget_keeps_the_newest_messages_behind_a_synthetic_opening() {
    let full = connections(&full_conversion(&shipped_fixture()));
    for budget in [2_000u64, 20_000, 60_000, 150_000] {
        let mut opts = ExcerptOptions::new(Selection::Newest {
            budget_bytes: budget,
        });
        opts.synth = spool2pcap::Synthesis::ALL;
        let (pcap, report) = excerpt(&shipped_fixture(), &opts);
        assert!(pcap.len() as u64 <= budget, "{budget}: {report:?}");
        assert!(report.omitted_frames() > 0, "{budget}: nothing cut");
        let got = connections(&pcap);
        assert!(!got.is_empty(), "{budget}: nothing kept");
        for (port, conn) in &got {
            let whole = &full[port];
            // SYN, SYN-ACK, ACK, then the link phase, first.
            let flags: Vec<(bool, bool)> = conn.segments[..3]
                .iter()
                .map(|(s, p)| (*s, p.syn))
                .collect();
            assert_eq!(flags, [(false, true), (true, true), (false, false)]);
            assert!(conn.client.len() >= LINK_C2S && conn.server.len() >= LINK_S2C);
            assert_eq!(conn.client[..LINK_C2S], whole.client[..LINK_C2S]);
            assert_eq!(conn.server[..LINK_S2C], whole.server[..LINK_S2C]);
            // Then the newest recorded bytes of each direction, from the
            // start of a message.
            for (dir, kept, all, link) in [
                (C2S, &conn.client, &whole.client, LINK_C2S),
                (S2C, &conn.server, &whole.server, LINK_S2C),
            ] {
                let kept = &kept[link..];
                let all = &all[link..];
                assert!(
                    all.ends_with(kept),
                    "{budget}: port {port} {dir:?}: not the newest"
                );
                let mut f = MessageFramer::new();
                f.feed(dir, &all[..all.len() - kept.len()]);
                assert!(
                    f.at_boundary(),
                    "{budget}: port {port} {dir:?}: starts inside a message"
                );
            }
            // The shipped capture was closed cleanly: the FIN exchange ends it.
            assert!(conn.segments.iter().rev().take(3).any(|(_, p)| p.fin));
        }
        for c in &report.channels {
            if cut_of(c).kept_records == 0 {
                assert!(!got.contains_key(&c.client_port));
            }
        }
    }
    // A budget too small for anything: the file header alone.
    let (pcap, report) = excerpt(
        &shipped_fixture(),
        &ExcerptOptions::new(Selection::Newest { budget_bytes: 100 }),
    );
    assert_eq!(pcap.len() as u64, PCAP_FILE_HEADER_LEN);
    assert_eq!(report.frames(), 0);
}

#[test]
fn channels_and_windows_select() {
    let mut opts = ExcerptOptions::new(Selection::All);
    opts.channels = vec!["display".into()];
    let (pcap, report) = excerpt(&shipped_fixture(), &opts);
    assert_eq!(report.channels.len(), 1);
    let got = connections(&pcap);
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), [10002]);

    opts.channels = vec!["nosuch".into()];
    assert!(write_excerpt(&shipped_fixture(), &opts, Vec::new()).is_err());

    // A window in the middle of the display channel's records.
    let d = &report.channels[0];
    let (first, last) = (d.first_ts_ns.unwrap(), d.last_ts_ns.unwrap());
    let mid = first + (last - first) / 3;
    let end = first + 2 * (last - first) / 3;
    opts.channels = vec!["display".into()];
    opts.selection = Selection::Window {
        from_ns: mid,
        until_ns: end,
    };
    let (_, w) = excerpt(&shipped_fixture(), &opts);
    let c = &w.channels[0];
    let k = cut_of(c);
    assert!(k.kept_records > 0 && k.kept_records < c.records, "{c:?}");
    assert!(k.first_written_ns.unwrap() >= mid.saturating_sub(10_000));
}

/// A session that started after 2106 (classic pcap keeps 32-bit seconds):
/// timestamps are clamped to the last second it can hold, as in a
/// conversion, and the excerpt is written.
#[test]
fn a_session_start_after_2106_is_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let after_2106 = (u64::from(u32::MAX) + 1000) * 1_000_000_000;
    let mut seg = Seg::new("main", 0, 0).with_session_start(after_2106);
    seg.data(C2S, 5, &[1, 0, 4, 0, 0, 0, 1, 2, 3, 4]);
    seg.data(S2C, 9, &[4, 0, 0, 0, 0, 0]);
    seg.seal(true);
    write_segment(dir.path(), "main", 0, &seg.finish(0));
    let (pcap, report) = excerpt(dir.path(), &ExcerptOptions::new(Selection::All));
    assert_eq!(report.session_start_unix_ns, Some(after_2106));
    assert!(report.frames() > 2);
    for f in testkit::pcap::frames(&pcap) {
        assert_eq!(f.ts.as_secs(), u64::from(u32::MAX));
    }
    assert_eq!(connections(&pcap)[&10001].client.len(), LINK_C2S + 10);
}

/// The damaged copies of the shipped capture: an excerpt of everything is
/// what `convert` writes, and a cut one stays within its budget; nothing
/// panics.
#[test]
fn damaged_captures_excerpt_like_they_convert() {
    let damaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/damaged");
    let mut seen = 0;
    for entry in std::fs::read_dir(&damaged).unwrap() {
        let capture = entry.unwrap().path();
        if !capture.is_dir() {
            continue;
        }
        seen += 1;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("all.pcap");
        let converted = convert(
            &capture,
            &ConvertOptions::new(Destination::File(file.clone())),
        );
        let mut out = Vec::new();
        let excerpted = write_excerpt(&capture, &ExcerptOptions::new(Selection::All), &mut out);
        match (converted, excerpted) {
            (Ok(_), Ok(_)) => assert!(
                out == std::fs::read(&file).unwrap(),
                "{}: differs from convert",
                capture.display()
            ),
            (Err(_), Err(_)) => {}
            (c, e) => panic!("{}: convert {c:?}, excerpt {e:?}", capture.display()),
        }
        let budget = 50_000;
        let opts = ExcerptOptions::new(Selection::Newest {
            budget_bytes: budget,
        });
        let mut out = Vec::new();
        if write_excerpt(&capture, &opts, &mut out).is_ok() {
            assert!(out.len() as u64 <= budget, "{}", capture.display());
        }
    }
    assert!(seen >= 5, "damaged fixtures missing");
}

/// A flight-recorder capture whose start was trimmed, with records that
/// begin inside messages: the framing is picked up again, and what is kept
/// starts at a message.
#[test]
fn a_trimmed_start_is_cut_at_a_message() {
    use spool::store::limit::DiskLimit;
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture");
    let config = spool::SpoolConfig::new(&capture)
        .segment_bytes(64 << 10)
        .ready_ahead(4)
        // Compressed, 2 MB of these messages would fit the ring untrimmed.
        .compress(false)
        .limit(DiskLimit::ring(256 << 10));
    let spool = spool::Spool::create(config).unwrap();
    // Messages of 5006 bytes, each in two records: every other record
    // starts inside a message.
    let mut stream = Vec::new();
    for i in 0..400u32 {
        let mut msg = 302u16.to_le_bytes().to_vec();
        msg.extend_from_slice(&5000u32.to_le_bytes());
        msg.extend(std::iter::repeat_n((i % 251) as u8, 5000));
        // Paced, so that the background threads always have a segment
        // ready: a dropped record would leave a gap in the stream.
        for part in [&msg[..3000], &msg[3000..]] {
            std::thread::sleep(std::time::Duration::from_millis(1));
            assert!(spool.append("display", S2C, part), "dropped");
        }
        stream.extend(msg);
    }
    spool.close().unwrap();
    let cap = spool::Capture::open(&capture).unwrap();
    let trimmed = cap.reader("display").unwrap().trimmed().copied();
    assert!(trimmed.is_some_and(|t| t.segments > 0), "nothing trimmed");

    let (pcap, report) = excerpt(
        &capture,
        &ExcerptOptions::new(Selection::Newest {
            budget_bytes: 100_000,
        }),
    );
    assert!(pcap.len() as u64 <= 100_000, "{report:?}");
    let got = connections(&pcap);
    let kept = &got[&10002].server[LINK_S2C..];
    assert!(!kept.is_empty());
    assert!(stream.ends_with(kept), "not the newest");
    assert_eq!(
        (stream.len() - kept.len()) % 5006,
        0,
        "does not start at a message"
    );
}

/// A capture that holds the link phase (made before the link): all of it
/// is written as recorded; a cut keeps no recorded link record, and the
/// connection opens with one synthetic link phase in both directions.
#[test]
fn a_recorded_link_phase_is_replaced_when_cut() {
    let dir = tempfile::tempdir().unwrap();
    let link = spool2pcap::spice::link::LinkPhase::new(1, 0);
    let msg = |ty: u16, body: &[u8]| {
        let mut v = ty.to_le_bytes().to_vec();
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
        v
    };
    let mut seg = Seg::new("main", 0, 0);
    seg.data(C2S, 1, link.bytes(C2S));
    seg.data(S2C, 2, link.bytes(S2C));
    let (mut c2s, mut s2c) = (0, 0);
    for i in 0..20u64 {
        let m = msg(103, &[i as u8; 10]);
        c2s += m.len();
        seg.data(C2S, 10 + i, &m);
        let m = msg(104, &[i as u8; 30]);
        s2c += m.len();
        seg.data(S2C, 10 + i, &m);
    }
    seg.seal(true);
    write_segment(dir.path(), "main", 0, &seg.finish(0));

    let (all, report) = excerpt(dir.path(), &ExcerptOptions::new(Selection::All));
    assert_eq!(cut_of(&report.channels[0]).kept_records, 42);
    let conn = &connections(&all)[&10001];
    assert_eq!(conn.client.len(), LINK_C2S + c2s);
    assert_eq!(conn.server.len(), LINK_S2C + s2c);

    let (cut, report) = excerpt(
        dir.path(),
        &ExcerptOptions::new(Selection::Newest {
            budget_bytes: u64::MAX,
        }),
    );
    assert_eq!(cut_of(&report.channels[0]).kept_records, 40);
    let conn = &connections(&cut)[&10001];
    assert_eq!(conn.client.len(), LINK_C2S + c2s);
    assert_eq!(conn.server.len(), LINK_S2C + s2c);
    assert_eq!(&conn.client[..LINK_C2S], link.bytes(C2S));
}

/// The report's text, the one `convert` prints, describes an excerpt: each
/// channel written "in the excerpt" with the records it kept and the frames
/// it left out, one line for what was left out in all, and how to open the
/// result (the excerpt's file is its caller's, so it is not named).
#[test]
fn an_excerpts_text_says_what_it_left_out() {
    let text = |report: &ConvertReport| {
        let mut out = Vec::new();
        report.write_text(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let mut opts = ExcerptOptions::new(Selection::Newest {
        budget_bytes: 20_000,
    });
    opts.channels = vec!["display".into()];
    let (_, report) = excerpt(&shipped_fixture(), &opts);
    let c = &report.channels[0];
    let k = cut_of(c);
    assert!(k.omitted_frames > 0 && report.is_excerpt());
    let got = text(&report);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "display: {} records, {} bytes -> {} frames (port 10002) in the excerpt; \
             {} synthetic (with SPICE link phase); {} records kept, {} frames ({} bytes) left out",
            c.records,
            c.bytes,
            c.frames,
            c.synthetic_frames,
            k.kept_records,
            k.omitted_frames,
            k.omitted_bytes
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "excerpt: {} frames ({} bytes) of the capture left out; the oldest packet kept is at +{}",
            report.omitted_frames(),
            report.omitted_bytes(),
            spool2pcap::time::format_secs(report.oldest_written_ns().unwrap())
        )
    );
    assert_eq!(
        lines[2..],
        ["open in Wireshark (SPICE decodes with no option): wireshark EXCERPT.pcap"]
    );

    // Everything kept: nothing left out, said once.
    let (_, all) = excerpt(&shipped_fixture(), &ExcerptOptions::new(Selection::All));
    let got = text(&all);
    assert_eq!(got.matches("in the excerpt; ").count(), 4, "{got}");
    assert!(got.contains("\nexcerpt: nothing left out\n"), "{got}");
    assert!(
        !got.contains(") left out") && !got.contains("<stdout>"),
        "{got}"
    );
}
