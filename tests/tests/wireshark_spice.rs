//! What Wireshark (tshark 4.0, Debian's) makes of spool2pcap's output: the
//! recorded real session (`fixtures/recorded/`), replayed through the spool as ryll's channel
//! loops would (the shipped fixture: post-link bytes only), must decode as
//! SPICE exactly as the original recording does, on every channel, with no
//! TCP analysis warnings; drops must be visible; and without the synthetic
//! link phase nothing decodes, which shows these checks can fail.
//!
//! Without tshark the tests are reported ignored, with the reason; under
//! `CI=true` they fail.

use std::collections::BTreeMap;
use std::path::Path;

use e2e::recorded::{self, Session};
use e2e::{fixtures, tools};
use spool::Direction;
use spool2pcap::{convert, ConvertOptions, Destination, Format, Synthesis, TimeMode};

/// The SPICE messages of one TCP connection as tshark decodes them: per
/// direction, message types in order.
type Decoded = BTreeMap<u16, Vec<(Direction, u16)>>;

/// Every SPICE message tshark decodes in `file` with SPICE on
/// `server_port`, keyed by the client's port.
fn decoded(file: &Path, server_port: u16) -> Decoded {
    tools::spice_messages(file, server_port)
}

/// The original recording's messages, keyed by ryll's channel name.
fn original(s: &Session) -> BTreeMap<String, Vec<(Direction, u16)>> {
    let mut by_port = decoded(
        &recorded::recorded_session_path(),
        recorded::RECORDED_SESSION_PORT,
    );
    s.connections
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                by_port.remove(&c.client_port).unwrap_or_default(),
            )
        })
        .collect()
}

fn port_of(name: &str) -> u16 {
    spool2pcap::spice::channels::known_port(name).unwrap()
}

/// Converted messages of one channel must be at least the original's, same
/// types, same order, both directions interleaved as they arrived.
fn assert_decodes_like(
    what: &str,
    name: &str,
    got: &[(Direction, u16)],
    want: &[(Direction, u16)],
) {
    assert!(
        got.len() >= want.len(),
        "{what}: {name}: tshark decodes {} SPICE messages, the original recording {}",
        got.len(),
        want.len()
    );
    if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: {name}: message {i} is {:?}, the original's is {:?}",
            got[i], want[i]
        );
    }
}

fn convert_with(dest: Destination, format: Format, synth: Synthesis) -> spool2pcap::ConvertReport {
    let mut opts = ConvertOptions::new(dest);
    opts.format = format;
    opts.synth = synth;
    convert(&fixtures::shipped_capture(), &opts).unwrap_or_else(|e| panic!("{e}"))
}

/// tshark lines of packets that have any TCP analysis flag (lost segment,
/// ACKed unseen segment, retransmission, window problems, dup ACK…).
fn tcp_warnings(file: &Path) -> String {
    tools::tshark(&["-r", &file.to_string_lossy(), "-Y", "tcp.analysis.flags"])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn every_channel_decodes_like_the_original_recording() {
    let s = fixtures::recorded_session();
    let want = original(&s);
    // The reference itself: the display channel of the recording decodes
    // fully (829 messages, per fixtures/recorded/README.md), every channel some.
    assert_eq!(want["display"].len(), 829);
    assert!(want.values().all(|m| !m.is_empty()), "{want:?}");

    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("per-channel");
    let report = convert_with(Destination::Dir(dir.clone()), Format::Pcap, Synthesis::ALL);
    assert!(report.channels.iter().all(|c| c.link_synthesized));
    for (name, want) in &want {
        let file = dir.join(format!("{name}.pcap"));
        let mut got = decoded(&file, tools::SERVER_PORT);
        let got = got.remove(&port_of(name)).unwrap_or_default();
        assert_decodes_like("per-channel pcap", name, &got, want);
        let warnings = tcp_warnings(&file);
        assert!(
            warnings.is_empty(),
            "{name}: TCP analysis flags:\n{warnings}"
        );
    }
}

fn merged_pcapng_and_pcap_decode_like_the_per_channel_files() {
    let s = fixtures::recorded_session();
    let want = original(&s);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("per-channel");
    convert_with(Destination::Dir(dir.clone()), Format::Pcap, Synthesis::ALL);
    let per_channel: BTreeMap<&str, Vec<(Direction, u16)>> = want
        .keys()
        .map(|name| {
            let mut d = decoded(&dir.join(format!("{name}.pcap")), tools::SERVER_PORT);
            (name.as_str(), d.remove(&port_of(name)).unwrap_or_default())
        })
        .collect();
    for (file, format) in [("all.pcapng", Format::Pcapng), ("all.pcap", Format::Pcap)] {
        let path = out.path().join(file);
        convert_with(Destination::File(path.clone()), format, Synthesis::ALL);
        let mut merged = decoded(&path, tools::SERVER_PORT);
        for (name, per) in &per_channel {
            let got = merged.remove(&port_of(name)).unwrap_or_default();
            assert!(
                &got == per,
                "{file}: {name} decodes differently from {name}.pcap"
            );
            assert_decodes_like(file, name, &got, &want[*name]);
        }
        assert!(
            merged.is_empty(),
            "{file}: unexpected connections {merged:?}"
        );
        let warnings = tcp_warnings(&path);
        assert!(
            warnings.is_empty(),
            "{file}: TCP analysis flags:\n{warnings}"
        );
    }
}

/// The same conversion without the synthetic link phase decodes nothing —
/// what ryll's captures always did, and proof that the checks above can
/// fail.
fn without_the_synthetic_link_phase_nothing_decodes() {
    let out = tempfile::tempdir().unwrap();
    let synth = Synthesis {
        link: false,
        tcp: true,
    };
    let report = convert_with(Destination::Dir(out.path().into()), Format::Pcap, synth);
    assert_eq!(report.channels.len(), 4);
    for c in &report.channels {
        assert!(!c.link_synthesized);
        let file = out.path().join(format!("{}.pcap", c.channel));
        let got = decoded(&file, tools::SERVER_PORT);
        let n: usize = got.values().map(Vec::len).sum();
        assert_eq!(n, 0, "{}: {got:?}", c.channel);
    }
}

/// The merged pcapng as Wireshark shows it: interfaces named after the
/// channels, directions in the packet flags, synthetic packets commented,
/// and the section comment naming the session and ryll's metadata.
fn merged_pcapng_carries_interfaces_directions_comments_and_session() {
    // The fixture plus ryll's metadata.json, in a copy.
    let cap = tempfile::tempdir().unwrap();
    fixtures::copy_tree(&fixtures::shipped_capture(), cap.path()).unwrap();
    std::fs::write(
        cap.path().join("metadata.json"),
        r#"{"ryll_version": "0.3.1", "platform_os": "linux", "platform_arch": "x86_64",
            "target_host": "qemu.example", "target_port": 5931,
            "capture_started": "2026-11-24T17:00:43Z"}"#,
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("all.pcapng");
    let mut opts = ConvertOptions::new(Destination::File(file.clone()));
    opts.format = Format::Pcapng;
    opts.time = TimeMode::Absolute;
    let report = convert(cap.path(), &opts).unwrap();
    assert_eq!(report.wireshark_commands().len(), 1);
    assert!(report.wireshark_commands()[0].starts_with("wireshark /"));

    let f = file.to_string_lossy();
    let rows = tools::tshark(&[
        "-r",
        &f,
        "-T",
        "fields",
        "-e",
        "frame.interface_name",
        "-e",
        "ip.src",
        "-e",
        "frame.packet_flags_direction",
        "-e",
        "frame.comment",
    ])
    .unwrap();
    let (mut synthetic, mut total) = (0, 0);
    for row in rows.lines() {
        let cols: Vec<&str> = row.split('\t').collect();
        assert!(cols.len() >= 3, "{row:?}");
        assert!(
            ["main", "display", "inputs", "cursor"].contains(&cols[0]),
            "{row:?}"
        );
        let want_dir = if cols[1] == "10.0.0.1" { "0x2" } else { "0x1" };
        assert!(
            cols[2].ends_with(want_dir.trim_start_matches("0x")),
            "direction flags {row:?}"
        );
        if cols.get(3).is_some_and(|c| c.contains("synthetic")) {
            synthetic += 1;
        }
        total += 1;
    }
    let records: u64 = report.channels.iter().map(|c| c.records).sum();
    // 3 handshake + 5 link + 3 close per channel.
    assert_eq!(synthetic, 4 * 11);
    assert_eq!(total, records + 4 * 11);

    {
        let o = std::process::Command::new("capinfos")
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        // The fixture's own session id (random, new at each regeneration).
        let manifest =
            spool::Manifest::load(&fixtures::shipped_capture().join("manifest.json")).unwrap();
        assert_eq!(manifest.session_id.len(), 32);
        assert!(text.contains(&manifest.session_id), "{text}");
        assert!(text.contains("ryll 0.3.1"), "{text}");
        assert!(text.contains("qemu.example:5931"), "{text}");
        assert!(text.contains("Number of interfaces in file: 4"), "{text}");
        assert!(text.contains("Number of stat entries = 1"), "{text}");
    }
}

/// A channel whose writer dropped a record: the gap stays a sequence jump
/// that tshark reports, the next packet says what was lost, and the
/// channel's Interface Statistics Block counts the drop.
fn drops_are_a_sequence_gap_a_packet_comment_and_isb_ifdrop() {
    let root = tempfile::tempdir().unwrap();
    let cap = root.path().join("cap");
    let staging = root.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let spool = spool::Spool::create(
        spool::SpoolConfig::new(&cap)
            .staging(spool::StagingChoice::Root(staging))
            .segment_bytes(64 << 10)
            .channels(&["display"]),
    )
    .unwrap();
    let s = fixtures::recorded_session();
    let display = s.channel("display").unwrap();
    let mut dropped_at = None;
    for (i, c) in display.chunks.iter().take(40).enumerate() {
        assert!(spool.append_at("display", c.dir, c.ts_ns, &c.data));
        if i == 20 {
            // Larger than a segment: always dropped by the writer.
            let big = vec![0u8; 100_000];
            assert!(!spool.append_at("display", Direction::ServerToClient, c.ts_ns + 1, &big));
            dropped_at = Some(i);
        }
    }
    assert!(dropped_at.is_some());
    spool.close().unwrap();

    let file = root.path().join("d.pcapng");
    let mut opts = ConvertOptions::new(Destination::File(file.clone()));
    opts.format = Format::Pcapng;
    let report = convert(&cap, &opts).unwrap();
    let ch = &report.channels[0];
    assert_eq!((ch.dropped_records, ch.dropped_bytes), (1, 100_000));

    let f = file.to_string_lossy();
    let lost = tools::tshark(&["-r", &f, "-Y", "tcp.analysis.lost_segment"]).unwrap();
    assert_eq!(lost.lines().count(), 1, "{lost}");
    let comments = tools::tshark(&[
        "-r",
        &f,
        "-Y",
        "frame.comment contains \"dropped\"",
        "-T",
        "fields",
        "-e",
        "frame.comment",
    ])
    .unwrap();
    assert_eq!(comments.lines().count(), 1, "{comments}");
    assert!(
        comments
            .contains("dropped 1 records (100000 bytes: 0 client->server, 100000 server->client)"),
        "{comments}"
    );

    // capinfos shows the drop in the interface description (from the
    // manifest; it does not print isb_ifdrop).
    let o = std::process::Command::new("capinfos")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("capture writer dropped 1 records (100000 bytes)"),
        "{text}"
    );

    // The ISB, read back.
    let isbs = testkit::pcap::read(&std::fs::read(&file).unwrap()).interface_stats;
    assert_eq!(isbs.len(), 1);
    use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption as O;
    assert!(isbs[0].options.contains(&O::IsbIfDrop(1)), "{:?}", isbs[0]);
    assert!(isbs[0].options.contains(&O::IsbIfRecv(41)), "{:?}", isbs[0]);
}

/// No port a conversion uses is in Wireshark's `tcp.port` table: the
/// server port, every known channel's, and every port of the hashed range
/// but those [`WIRESHARK_CLAIMED_PORTS`] lists (which must all be claimed,
/// so the list holds no stale entry). A port with a dissector would win
/// over the SPICE heuristic, and the file would open as that protocol.
fn no_wireshark_dissector_claims_a_synthetic_port() {
    use spool2pcap::spice::channels::{
        known_port, HASHED_PORT_BASE, HASHED_PORT_RANGE, SPICE_CHANNELS, WIRESHARK_CLAIMED_PORTS,
    };
    let decodes = tools::tshark(&["-G", "decodes"]).unwrap_or_else(|e| panic!("{e}"));
    let claimed: BTreeMap<u16, &str> = decodes
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (table, port, dissector) = (f.next()?, f.next()?, f.next()?);
            (table == "tcp.port").then_some((port.parse().ok()?, dissector))
        })
        .collect();
    assert!(
        claimed.get(&5900) == Some(&"vnc"),
        "the table was read: {claimed:?}"
    );
    let mut ours = vec![tools::SERVER_PORT];
    ours.extend(SPICE_CHANNELS.iter().filter_map(|(n, _)| known_port(n)));
    ours.extend(
        (HASHED_PORT_BASE..HASHED_PORT_BASE + HASHED_PORT_RANGE)
            .filter(|p| !WIRESHARK_CLAIMED_PORTS.contains(p)),
    );
    for port in ours {
        assert!(
            !claimed.contains_key(&port),
            "{port} is {:?}'s",
            claimed[&port]
        );
    }
    for port in WIRESHARK_CLAIMED_PORTS {
        assert!(
            claimed.contains_key(port),
            "{port} is claimed by no dissector"
        );
    }
}

/// What a user double-clicks: every kind of file the CLI writes from the
/// shipped fixture decodes every SPICE message with no option given to
/// Wireshark (`tshark -r FILE -Y spice`, no `-d`): the per-channel pcaps,
/// the merged pcapng and the output of `--follow`.
fn every_output_decodes_with_no_option() {
    let fixture = fixtures::shipped_capture();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("per-channel");
    let merged = out.path().join("all.pcapng");
    let followed = out.path().join("follow.pcap");
    let bin = tools::spool2pcap_bin();
    for args in [
        vec!["-o".as_ref(), dir.as_os_str()],
        vec![
            "-w".as_ref(),
            merged.as_os_str(),
            "--format".as_ref(),
            "pcapng".as_ref(),
        ],
        vec!["--follow".as_ref(), "-w".as_ref(), followed.as_os_str()],
    ] {
        let o = std::process::Command::new(&bin)
            .arg("convert")
            .arg(&fixture)
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let hint = String::from_utf8_lossy(&o.stderr);
        assert!(!hint.contains(" -d "), "{hint}");
    }
    // Counted with no option at all, as a user's Wireshark would.
    let count = |file: &Path| -> usize {
        tools::tshark(&[
            "-r",
            &file.to_string_lossy(),
            "-Y",
            "spice",
            "-T",
            "fields",
            "-e",
            "spice.message_type",
        ])
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .flat_map(|l| l.split(','))
        .filter(|t| !t.is_empty())
        .count()
    };
    let want = original(&fixtures::recorded_session());
    let total: usize = want.values().map(Vec::len).sum();
    let mut per_channel = 0;
    for (name, messages) in &want {
        let n = count(&dir.join(format!("{name}.pcap")));
        assert_eq!(n, messages.len(), "{name}.pcap");
        per_channel += n;
    }
    assert_eq!(per_channel, total);
    assert_eq!(count(&merged), total, "all.pcapng");
    assert_eq!(count(&followed), total, "--follow");
}

/// Damaged regions the reader skipped are marked where they were, like
/// drops: in classic pcap and pcapng a jump in sequence numbers that tshark
/// flags, in pcapng a comment on the next packet naming the segment file
/// and offset, and the records lost counted in the channel's ISB.
fn damage_is_a_sequence_gap_a_packet_comment_and_isb_ifdrop() {
    let cap = fixtures::damaged_capture("bitflip");
    let out = tempfile::tempdir().unwrap();
    for format in [Format::Pcap, Format::Pcapng] {
        let file = out.path().join(format!("b.{format:?}"));
        let mut opts = ConvertOptions::new(Destination::File(file.clone()));
        opts.format = format;
        let report = convert(&cap, &opts).unwrap();
        let damage: Vec<_> = report.damage().collect();
        assert_eq!(damage.len(), 3, "{damage:?}");
        let f = file.to_string_lossy();
        let lost = tools::tshark(&["-r", &f, "-Y", "tcp.analysis.lost_segment"]).unwrap();
        // The next packet of each direction after each region.
        assert!(lost.lines().count() >= 3, "{format:?}: {lost}");
        if format == Format::Pcap {
            continue;
        }
        let comments = tools::tshark(&[
            "-r",
            &f,
            "-Y",
            "frame.comment contains \"damaged capture data skipped\"",
            "-T",
            "fields",
            "-e",
            "frame.comment",
        ])
        .unwrap();
        let lines: Vec<&str> = comments.lines().collect();
        assert_eq!(lines.len(), 3, "{comments}");
        for (line, d) in lines.iter().zip(&damage) {
            assert!(
                line.contains(&format!("00000001.seg: offset {}:", d.offset)),
                "{line}"
            );
        }
        let read = testkit::pcap::read(&std::fs::read(&file).unwrap());
        use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption as O;
        let mut drops = BTreeMap::new();
        for isb in &read.interface_stats {
            for o in &isb.options {
                if let O::IsbIfDrop(n) = o {
                    drops.insert(isb.interface_id, *n);
                }
            }
        }
        let display = read
            .interfaces
            .iter()
            .position(|n| n == "display")
            .expect("a display interface") as u32;
        assert_eq!(drops.get(&display), Some(&3), "{drops:?}");
        assert_eq!(drops.values().sum::<u64>(), 3, "{drops:?}");
    }
}

fn main() -> std::process::ExitCode {
    needs::run(vec![
        needs::test!(
            no_wireshark_dissector_claims_a_synthetic_port,
            needs::TSHARK
        ),
        needs::test!(every_output_decodes_with_no_option, needs::TSHARK),
        needs::test!(
            damage_is_a_sequence_gap_a_packet_comment_and_isb_ifdrop,
            needs::TSHARK
        ),
        needs::test!(
            every_channel_decodes_like_the_original_recording,
            needs::TSHARK
        ),
        needs::test!(
            merged_pcapng_and_pcap_decode_like_the_per_channel_files,
            needs::TSHARK
        ),
        needs::test!(
            without_the_synthetic_link_phase_nothing_decodes,
            needs::TSHARK
        ),
        needs::test!(
            merged_pcapng_carries_interfaces_directions_comments_and_session,
            needs::TSHARK,
            needs::CAPINFOS
        ),
        needs::test!(
            drops_are_a_sequence_gap_a_packet_comment_and_isb_ifdrop,
            needs::TSHARK,
            needs::CAPINFOS
        ),
    ])
}
