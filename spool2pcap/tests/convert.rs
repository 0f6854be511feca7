//! Conversions of hand-built spools, read back with pcap-file and etherparse.

use std::path::Path;
use std::time::Duration;

use spool::store::format::Direction::{ClientToServer as C2S, ServerToClient as S2C};
use spool2pcap::capture_builder::{
    simple_channel, write_manifest, write_segment, Seg, SESSION_HEX, SESSION_START,
};
use spool2pcap::net::tcp::{CLIENT_ISN, MAX_SEGMENT_PAYLOAD, SERVER_ISN, SERVER_PORT};
use spool2pcap::pipeline::convert::{convert, ConvertError, ConvertOptions, Destination};
use spool2pcap::pipeline::follow::follow;
use spool2pcap::{write_excerpt, ExcerptOptions, Selection};
use spool2pcap::{Format, Synthesis, TimeMode};
use testkit::tcp::Segment;

/// The segments of a classic pcap file (`testkit` checks every
/// checksum and that no packet is cut short).
fn read_pcap(path: &Path) -> Vec<Segment> {
    read_pcap_bytes(&std::fs::read(path).unwrap())
}

fn read_pcap_bytes(bytes: &[u8]) -> Vec<Segment> {
    testkit::pcap::frames(bytes)
        .iter()
        .map(Segment::parse)
        .collect()
}

/// The interface names and segments of a pcapng file.
fn read_pcapng(path: &Path) -> (Vec<String>, Vec<Segment>) {
    let c = testkit::pcap::read(&std::fs::read(path).unwrap());
    assert_eq!(c.format, testkit::pcap::Format::PcapNg);
    let p = c.frames.iter().map(Segment::parse).collect();
    (c.interfaces, p)
}

/// Options for the tests of the recorded-bytes layer: nothing synthetic,
/// so every frame is a record (the synthetic packets have tests of their
/// own, below and in `spice/link.rs`).
fn opts(dest: Destination) -> ConvertOptions {
    let mut o = ConvertOptions::new(dest);
    o.synth = Synthesis::NONE;
    o
}

#[test]
fn one_pcap_per_channel_with_ports_seq_and_absolute_time() {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(
        cap.path(),
        "display",
        &[
            (C2S, 1_000, b"hello"),
            (S2C, 2_000, b"world!!"),
            (C2S, 3_000, b"x"),
        ],
    );
    simple_channel(cap.path(), "main", &[(S2C, 1_500, b"main-data")]);
    let out = tempfile::tempdir().unwrap();
    let outdir = out.path().join("pcaps");
    let report = convert(cap.path(), &opts(Destination::Dir(outdir.clone()))).unwrap();
    assert!(!report.has_damage());
    assert_eq!(report.channels.len(), 2);
    assert_eq!(report.session_start_unix_ns, Some(SESSION_START));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&outdir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let mode = std::fs::metadata(outdir.join("display.pcap"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let d = read_pcap(&outdir.join("display.pcap"));
    assert_eq!(d.len(), 3);
    assert_eq!((d[0].src_port, d[0].dst_port), (10002, SERVER_PORT));
    assert_eq!((d[0].seq, d[0].ack), (CLIENT_ISN, SERVER_ISN));
    assert_eq!(d[0].payload, b"hello");
    assert_eq!(d[0].ts, Duration::from_nanos(SESSION_START + 1_000));
    assert_eq!((d[1].src_port, d[1].dst_port), (SERVER_PORT, 10002));
    assert_eq!((d[1].seq, d[1].ack), (SERVER_ISN, CLIENT_ISN + 5));
    assert_eq!((d[2].seq, d[2].ack), (CLIENT_ISN + 5, SERVER_ISN + 7));
    let m = read_pcap(&outdir.join("main.pcap"));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].src_port, SERVER_PORT);
    assert_eq!(m[0].dst_port, 10001);
}

#[test]
fn relative_time_starts_from_session_start() {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(cap.path(), "inputs", &[(C2S, 123_456_789, b"k")]);
    let out = tempfile::tempdir().unwrap();
    let mut o = opts(Destination::Dir(out.path().to_path_buf()));
    o.time = TimeMode::Relative;
    convert(cap.path(), &o).unwrap();
    let p = read_pcap(&out.path().join("inputs.pcap"));
    assert_eq!(p[0].ts, Duration::from_nanos(123_456_789));
    assert_eq!(p[0].src_port, 10003);
}

#[test]
fn gaps_make_sequence_numbers_jump() {
    let cap = tempfile::tempdir().unwrap();
    let mut s = Seg::new("cursor", 0, 0);
    s.data(C2S, 10, b"abcd");
    s.data(S2C, 20, b"0123456789");
    s.gap(30, 100, 5000);
    s.data(S2C, 40, b"after");
    s.data(C2S, 50, b"c");
    s.seal(true);
    write_segment(cap.path(), "cursor", 0, &s.finish(0));
    let out = tempfile::tempdir().unwrap();
    let report = convert(cap.path(), &opts(Destination::Dir(out.path().into()))).unwrap();
    assert_eq!(report.channels[0].gaps, 1);
    assert_eq!(report.channels[0].dropped_bytes, 5100);
    let p = read_pcap(&out.path().join("cursor.pcap"));
    assert_eq!(p.len(), 4);
    assert_eq!(p[2].seq, SERVER_ISN + 10 + 5000);
    assert_eq!(p[2].ack, CLIENT_ISN + 4 + 100);
    assert_eq!(p[3].seq, CLIENT_ISN + 4 + 100);
    assert_eq!(p[3].ack, SERVER_ISN + 10 + 5000 + 5);
}

#[test]
fn large_records_are_split() {
    let cap = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8).collect();
    simple_channel(cap.path(), "display", &[(S2C, 5, &big), (C2S, 6, b"ack")]);
    let out = tempfile::tempdir().unwrap();
    let report = convert(cap.path(), &opts(Destination::Dir(out.path().into()))).unwrap();
    assert_eq!(report.channels[0].frames, 4);
    let p = read_pcap(&out.path().join("display.pcap"));
    assert_eq!(p.len(), 4);
    assert_eq!(p[0].payload.len(), MAX_SEGMENT_PAYLOAD);
    assert_eq!(p[1].seq, SERVER_ISN + MAX_SEGMENT_PAYLOAD as u32);
    let joined: Vec<u8> = p[..3].iter().flat_map(|x| x.payload.clone()).collect();
    assert_eq!(joined, big);
    assert!(p[..3].iter().all(|x| x.ts == p[0].ts));
    assert_eq!(p[3].ack, SERVER_ISN + big.len() as u32);
}

#[test]
fn merged_pcap_is_in_time_order() {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(
        cap.path(),
        "main",
        &[(C2S, 10, b"m1"), (S2C, 40, b"m2"), (C2S, 40, b"m3")],
    );
    simple_channel(
        cap.path(),
        "display",
        &[(S2C, 20, b"d1"), (S2C, 30, b"d2"), (S2C, 50, b"d3")],
    );
    simple_channel(cap.path(), "zzz", &[]);
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("all.pcap");
    let report = convert(cap.path(), &opts(Destination::File(file.clone()))).unwrap();
    assert_eq!(report.frames(), 6);
    let p = read_pcap(&file);
    let got: Vec<&[u8]> = p.iter().map(|x| &x.payload[..]).collect();
    // Ties (40) go to the channel first in name order: display < main.
    assert_eq!(got, [&b"m1"[..], b"d1", b"d2", b"m2", b"m3", b"d3"]);
    assert!(p.windows(2).all(|w| w[0].ts <= w[1].ts));
    // Each channel keeps its own port and its own sequence numbers.
    assert_eq!(p[3].src_port, SERVER_PORT);
    assert_eq!(p[3].dst_port, 10001);
    assert_eq!((p[4].seq, p[4].ack), (CLIENT_ISN + 2, SERVER_ISN + 2));
    assert_eq!(p[2].dst_port, 10002);
    assert_eq!(p[2].seq, SERVER_ISN + 2);
}

#[test]
fn merged_pcapng_has_an_interface_per_channel() {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(cap.path(), "main", &[(C2S, 10, b"m1")]);
    simple_channel(cap.path(), "display", &[(S2C, 5, b"d1")]);
    simple_channel(cap.path(), "vendor_x", &[(S2C, 7, b"v1")]);
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("all.pcapng");
    let mut o = opts(Destination::File(file.clone()));
    o.format = Format::Pcapng;
    convert(cap.path(), &o).unwrap();
    let (names, p) = read_pcapng(&file);
    assert_eq!(names, ["display", "main", "vendor_x"]);
    let ifaces: Vec<u32> = p.iter().map(|x| x.iface).collect();
    assert_eq!(ifaces, [0, 2, 1]);
    assert_eq!(p[0].ts, Duration::from_nanos(SESSION_START + 5));
    let vport = spool2pcap::spice::channels::hashed_port("vendor_x");
    assert_eq!(p[1].dst_port, vport);
}

#[test]
fn pcapng_per_channel_and_channel_selection() {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(cap.path(), "main", &[(C2S, 10, b"m1")]);
    simple_channel(cap.path(), "display", &[(S2C, 5, b"d1")]);
    let out = tempfile::tempdir().unwrap();
    let mut o = opts(Destination::Dir(out.path().into()));
    o.format = Format::Pcapng;
    o.channels = vec!["main".into()];
    let report = convert(cap.path(), &o).unwrap();
    assert_eq!(report.channels.len(), 1);
    let (names, p) = read_pcapng(&out.path().join("main.pcapng"));
    assert_eq!(names, ["main"]);
    assert_eq!(p.len(), 1);
    assert!(!out.path().join("display.pcapng").exists());

    o.channels = vec!["nope".into()];
    let err = convert(cap.path(), &o).unwrap_err();
    assert!(matches!(err, ConvertError::NoSuchChannel { .. }), "{err}");
    assert!(err.is_usage());
    assert!(err.to_string().contains("display, main"), "{err}");
}

#[test]
fn refuses_to_overwrite_without_force() {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(cap.path(), "main", &[(C2S, 10, b"m1")]);
    simple_channel(cap.path(), "display", &[(S2C, 5, b"d1")]);
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("main.pcap"), b"precious").unwrap();
    let mut o = opts(Destination::Dir(out.path().into()));
    let err = convert(cap.path(), &o).unwrap_err();
    assert!(matches!(err, ConvertError::Exists(_)), "{err}");
    assert!(err.to_string().contains("main.pcap"));
    // Nothing was written before refusing.
    assert!(!out.path().join("display.pcap").exists());
    assert_eq!(
        std::fs::read(out.path().join("main.pcap")).unwrap(),
        b"precious"
    );
    o.force = true;
    convert(cap.path(), &o).unwrap();
    assert_eq!(read_pcap(&out.path().join("main.pcap")).len(), 1);

    let file = out.path().join("one.pcap");
    std::fs::write(&file, b"x").unwrap();
    let err = convert(cap.path(), &opts(Destination::File(file.clone()))).unwrap_err();
    assert!(matches!(err, ConvertError::Exists(_)));
}

#[test]
fn damaged_record_is_skipped_and_reported_and_later_data_kept() {
    let cap = tempfile::tempdir().unwrap();
    let mut s = Seg::new("display", 0, 0);
    s.data(S2C, 1, b"first");
    let bad = s.data(S2C, 2, b"second!!");
    s.data(S2C, 3, b"third");
    s.seal(true);
    let mut bytes = s.finish(0);
    bytes[bad + 24 + 2] ^= 0x40; // flip a payload bit
    let path = write_segment(cap.path(), "display", 0, &bytes);
    let out = tempfile::tempdir().unwrap();
    let report = convert(cap.path(), &opts(Destination::Dir(out.path().into()))).unwrap();
    assert!(report.has_damage());
    let d: Vec<_> = report.damage().collect();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].file, path);
    assert_eq!(d[0].offset, bad as u64);
    let p = read_pcap(&out.path().join("display.pcap"));
    let got: Vec<&[u8]> = p.iter().map(|x| &x.payload[..]).collect();
    assert_eq!(got, [&b"first"[..], b"third"]);
    // The spot is marked: the sequence numbers jump by the damaged
    // region's size, as after a writer's drop.
    assert_eq!(p[1].seq, SERVER_ISN + 5 + d[0].len as u32);
    assert_eq!(p[1].ack, CLIENT_ISN + d[0].len as u32);
}

#[test]
fn hostile_inputs_never_panic_or_escape() {
    let cap = tempfile::tempdir().unwrap();
    let spool = cap.path().join("spool");
    // A valid channel to keep company.
    simple_channel(cap.path(), "main", &[(C2S, 10, b"ok")]);
    // Wrong magic.
    let mut s = Seg::new("display", 0, 0);
    s.data(S2C, 1, b"x");
    let mut b = s.finish(0);
    b[0] = b'X';
    write_segment(cap.path(), "display", 0, &b);
    // Truncated mid-record, absurd length, truncated header.
    let mut s = Seg::new("cursor", 0, 0);
    s.data(S2C, 1, b"abcdefgh");
    let at = s.data(S2C, 2, &[7u8; 100]);
    let mut b = s.finish(0);
    b.truncate(at + 40);
    write_segment(cap.path(), "cursor", 0, &b);
    let mut s = Seg::new("inputs", 0, 0);
    let at = s.data(C2S, 1, b"abcdefgh");
    let mut b = s.finish(64);
    b[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    write_segment(cap.path(), "inputs", 0, &b);
    write_segment(cap.path(), "usbredir", 0, &[1, 2, 3]);
    write_segment(cap.path(), "webdav", 0, &[]);
    // Hostile names and a symlinked channel: skipped by the reader.
    for name in ["...", "Main", "a b", "-x"] {
        std::fs::create_dir_all(spool.join(name)).unwrap();
        std::fs::write(spool.join(name).join("00000000.seg"), b"junk").unwrap();
    }
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), spool.join("evil")).unwrap();
    // A segment that is a symlink.
    std::fs::create_dir_all(spool.join("playback")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", spool.join("playback/00000000.seg")).unwrap();

    let out = tempfile::tempdir().unwrap();
    let outdir = out.path().join("o");
    let report = convert(cap.path(), &opts(Destination::Dir(outdir.clone()))).unwrap();
    assert!(report.has_damage());
    assert!(!report.problems.is_empty());
    let mut names: Vec<String> = std::fs::read_dir(&outdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cursor.pcap",
            "display.pcap",
            "inputs.pcap",
            "main.pcap",
            "playback.pcap",
            "usbredir.pcap",
            "webdav.pcap"
        ]
    );
    assert!(std::fs::read_dir(elsewhere.path())
        .unwrap()
        .next()
        .is_none());
    assert_eq!(read_pcap(&outdir.join("main.pcap")).len(), 1);
    assert_eq!(read_pcap(&outdir.join("cursor.pcap")).len(), 1);
    assert_eq!(read_pcap(&outdir.join("display.pcap")).len(), 0);
    assert_eq!(read_pcap(&outdir.join("inputs.pcap")).len(), 0);
    // The merge path copes with the same mess.
    convert(
        cap.path(),
        &opts(Destination::File(out.path().join("all.pcap"))),
    )
    .unwrap();
    assert_eq!(read_pcap(&out.path().join("all.pcap")).len(), 2);
}

#[test]
fn bit_flips_anywhere_never_panic() {
    let mut s = Seg::new("display", 0, 0);
    // Payloads are multiples of 8 long: padding is not checksummed, and a
    // flip there would rightly go unnoticed.
    for i in 0..20u8 {
        s.data(
            if i % 2 == 0 { C2S } else { S2C },
            u64::from(i),
            &vec![i; usize::from(i) * 16],
        );
    }
    s.gap(100, 10, 20);
    s.seal(true);
    let good = s.finish(32);
    let out = tempfile::tempdir().unwrap();
    for pos in (0..good.len()).step_by(7) {
        let cap = tempfile::tempdir().unwrap();
        let mut b = good.clone();
        b[pos] ^= 1 << (pos % 8);
        write_segment(cap.path(), "display", 0, &b);
        let file = out.path().join(format!("{pos}.pcap"));
        let report = convert(cap.path(), &opts(Destination::File(file.clone()))).unwrap();
        // Every frame written is valid (read_pcap checks the checksums).
        let p = read_pcap(&file);
        assert!(p.len() <= 20);
        if pos >= 128 && pos < good.len() - 32 - 56 {
            assert!(report.has_damage(), "flip at {pos} not noticed");
        }
    }
}

#[test]
fn not_a_capture_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = convert(dir.path(), &opts(Destination::Dir(out.path().into()))).unwrap_err();
    assert!(matches!(err, ConvertError::Open(_)), "{err}");
    let err = convert(
        &dir.path().join("missing"),
        &opts(Destination::Dir(out.path().into())),
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn multi_segment_channel_with_missing_segment() {
    let cap = tempfile::tempdir().unwrap();
    let mut s0 = Seg::new("main", 0, 0);
    s0.data(C2S, 1, b"seg0");
    s0.seal(false);
    write_segment(cap.path(), "main", 0, &s0.finish(0));
    let mut s2 = Seg::new("main", 2, 10);
    s2.data(C2S, 3, b"seg2");
    s2.seal(true);
    write_segment(cap.path(), "main", 2, &s2.finish(0));
    let out = tempfile::tempdir().unwrap();
    let report = convert(cap.path(), &opts(Destination::Dir(out.path().into()))).unwrap();
    assert!(report.has_damage());
    let p = read_pcap(&out.path().join("main.pcap"));
    assert_eq!(p.len(), 2);
}

#[test]
fn progress_reaches_the_total() {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(cap.path(), "main", &[(C2S, 10, b"m1")]);
    simple_channel(cap.path(), "display", &[(S2C, 5, b"d1")]);
    let out = tempfile::tempdir().unwrap();
    for dest in [
        Destination::Dir(out.path().join("d")),
        Destination::File(out.path().join("f")),
    ] {
        let mut last = None;
        spool2pcap::convert_with_progress(cap.path(), &opts(dest), &mut |p| last = Some(p))
            .unwrap();
        let last = last.unwrap();
        assert!(last.total > 0);
        assert_eq!(last.done, last.total);
    }
}

#[test]
fn manifest_session_start_is_used_without_headers() {
    // Only the manifest knows the session start when no header is valid; a
    // capture with a manifest and an empty spool/ converts to nothing.
    let cap = tempfile::tempdir().unwrap();
    std::fs::create_dir(cap.path().join("spool")).unwrap();
    // Written as JSON rather than through `spool::Manifest`, so that fields
    // the spool adds later (with serde defaults) do not break this test.
    let m = serde_json::json!({
        "format_version": 1,
        "session_id": "00".repeat(16),
        "session_start_unix_ns": 5,
        "staging_dir": null,
        "segment_bytes": 0,
        "clean_shutdown": true,
        "closed_unix_ns": null,
        "channels": {},
        "errors": [],
    });
    std::fs::write(
        cap.path().join("manifest.json"),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = convert(
        cap.path(),
        &opts(Destination::File(out.path().join("x.pcap"))),
    )
    .unwrap();
    assert_eq!(report.session_start_unix_ns, Some(5));
    assert!(read_pcap_bytes(&std::fs::read(out.path().join("x.pcap")).unwrap()).is_empty());
}

/// The synthetic opening and close around a channel's records: handshake
/// and link phase ending exactly at seq 1000 / 2000, stamped before the
/// first record but never before session start; FIN only after a clean
/// close; in pcapng, direction flags and comments.
#[test]
fn synthetic_opening_and_close_frame_the_records() {
    use spool2pcap::spice::link::{LINK_C2S_LEN, LINK_S2C_LEN};
    let cap = tempfile::tempdir().unwrap();
    simple_channel(
        cap.path(),
        "inputs",
        &[(S2C, 3_000, b"srv"), (C2S, 9_000, b"cl")],
    );
    // An unsealed channel: no FIN.
    let mut s = Seg::new("cursor", 0, 0);
    s.data(C2S, 50_000, b"REDQ-already-linked");
    write_segment(cap.path(), "cursor", 0, &s.finish(0));
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("x.pcapng");
    let mut o = ConvertOptions::new(Destination::File(file.clone()));
    o.format = Format::Pcapng;
    o.time = TimeMode::Relative;
    let report = convert(cap.path(), &o).unwrap();
    let inputs = report
        .channels
        .iter()
        .find(|c| c.channel == "inputs")
        .unwrap();
    assert!(inputs.link_synthesized);
    assert_eq!((inputs.frames, inputs.synthetic_frames), (2 + 11, 11));
    let cursor = report
        .channels
        .iter()
        .find(|c| c.channel == "cursor")
        .unwrap();
    assert!(!cursor.link_synthesized, "its first client bytes are REDQ");
    assert_eq!(cursor.synthetic_frames, 3, "handshake only, no FIN");

    let (_, all) = read_pcapng(&file);
    let mut flags_seen = 0;
    for p in &all {
        let outbound = p.dst_port == SERVER_PORT;
        if let Some(f) = p.epb_flags {
            assert_eq!(f, if outbound { 0b10 } else { 0b01 });
            flags_seen += 1;
        }
    }
    let inputs_pkts: Vec<(Segment, Option<String>)> = all
        .into_iter()
        .filter(|p| p.iface == 1)
        .map(|p| {
            let comment = p.comment.clone();
            (p, comment)
        })
        .collect();
    assert_eq!(flags_seen, 13 + 4);
    let (c_isn, s_isn) = (
        CLIENT_ISN - LINK_C2S_LEN as u32 - 1,
        SERVER_ISN - LINK_S2C_LEN as u32 - 1,
    );
    let seqs: Vec<(u32, u32, usize)> = inputs_pkts
        .iter()
        .map(|(p, _)| (p.seq, p.ack, p.payload.len()))
        .collect();
    assert_eq!(seqs[0], (c_isn, 0, 0), "SYN");
    assert_eq!(seqs[1], (s_isn, c_isn + 1, 0), "SYN-ACK");
    assert_eq!(seqs[2], (c_isn + 1, s_isn + 1, 0), "ACK");
    assert_eq!(
        seqs[7],
        (s_isn + 1 + 198, CLIENT_ISN, 4),
        "link result acks 1000"
    );
    assert_eq!(seqs[8], (SERVER_ISN, CLIENT_ISN, 3), "first record");
    assert_eq!(seqs[9], (CLIENT_ISN, SERVER_ISN + 3, 2));
    assert_eq!(seqs[10], (CLIENT_ISN + 2, SERVER_ISN + 3, 0), "client FIN");
    assert_eq!(seqs[11], (SERVER_ISN + 3, CLIENT_ISN + 3, 0), "server FIN");
    assert_eq!(seqs[12], (CLIENT_ISN + 3, SERVER_ISN + 4, 0), "last ACK");
    assert_eq!(&inputs_pkts[3].0.payload[..4], b"REDQ");
    assert_eq!(inputs_pkts[3].0.payload[20], 3, "inputs is SPICE type 3");
    for (i, (p, c)) in inputs_pkts.iter().enumerate() {
        let synthetic = !(8..=9).contains(&i);
        assert_eq!(c.is_some(), synthetic, "packet {i}: {c:?}");
        // 1 µs apart before the first record (3 µs), clamped at 0.
        if i < 8 {
            assert_eq!(
                p.ts,
                Duration::from_nanos(3_000u64.saturating_sub((8 - i as u64) * 1000))
            );
        }
    }
}

/// ryll registers every channel it knows when a session starts; one that
/// was never used (a sealed segment without records) gets no file, and the
/// report says why.
#[test]
fn a_channel_that_carried_nothing_gets_no_file() {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(cap.path(), "main", &[(S2C, 1_500, b"main-data")]);
    simple_channel(cap.path(), "cursor", &[]);
    let out = tempfile::tempdir().unwrap();
    let outdir = out.path().join("pcaps");
    let report = convert(cap.path(), &opts(Destination::Dir(outdir.clone()))).unwrap();
    assert_eq!(report.channels.len(), 2);
    let by_name = |n: &str| report.channels.iter().find(|c| c.channel == n).unwrap();
    assert!(!by_name("main").carried_nothing);
    assert_eq!(by_name("main").output, Some(outdir.join("main.pcap")));
    assert!(by_name("cursor").carried_nothing);
    assert_eq!(by_name("cursor").output, None);
    assert!(outdir.join("main.pcap").exists());
    assert!(!outdir.join("cursor.pcap").exists());
    assert_eq!(report.outputs(), vec![outdir.join("main.pcap").as_path()]);
}

/// `convert`, an excerpt, `convert --follow` and `info` open a capture the
/// same way: the same session, the same client ports, and the same problem
/// with an unreadable `metadata.json`, said once.
#[test]
fn every_command_opens_a_capture_alike() {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(cap.path(), "display", &[(C2S, 1_000, b"hello")]);
    simple_channel(cap.path(), "main", &[(S2C, 1_500, b"main-data")]);
    write_manifest(cap.path(), serde_json::json!({}));
    std::fs::write(cap.path().join("metadata.json"), b"[not an object").unwrap();
    let out = tempfile::tempdir().unwrap();

    let converted = convert(
        cap.path(),
        &opts(Destination::File(out.path().join("all.pcap"))),
    )
    .unwrap();
    let excerpt =
        write_excerpt(cap.path(), &ExcerptOptions::new(Selection::All), Vec::new()).unwrap();
    let followed = follow(
        cap.path(),
        &opts(Destination::File(out.path().join("followed.pcap"))),
        Duration::from_millis(1),
    )
    .unwrap();
    let info = spool2pcap::info::scan(cap.path(), &mut |_, _| {}).unwrap();

    assert_eq!(converted.problems.len(), 1, "{:?}", converted.problems);
    assert!(converted.problems[0].contains("metadata.json"));
    for problems in [&excerpt.problems, &followed.problems, &info.problems] {
        assert_eq!(problems, &converted.problems);
    }
    for start in [
        converted.session_start_unix_ns,
        excerpt.session_start_unix_ns,
        followed.session_start_unix_ns,
        info.session_start_unix_ns,
    ] {
        assert_eq!(start, Some(SESSION_START));
    }
    assert_eq!(info.session_id.as_deref(), Some(SESSION_HEX));
    let ports = |r: &spool2pcap::ConvertReport| -> Vec<(String, u16)> {
        r.channels
            .iter()
            .map(|c| (c.channel.clone(), c.client_port))
            .collect()
    };
    let info_ports: Vec<(String, u16)> = info
        .channels
        .iter()
        .map(|c| (c.name.clone(), c.client_port))
        .collect();
    assert_eq!(
        info_ports,
        [("display".to_string(), 10002), ("main".to_string(), 10001)]
    );
    assert_eq!(ports(&converted), info_ports);
    assert_eq!(ports(&excerpt), info_ports);
    let mut followed_ports = ports(&followed);
    followed_ports.sort();
    assert_eq!(followed_ports, info_ports);
}
