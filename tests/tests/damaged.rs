//! The damaged fixtures: every variant gives a clear report and recovers
//! what is undamaged; nothing panics, nothing escapes the capture directory.

use std::path::Path;
use std::process::Command;

use e2e::fixtures::VARIANTS;
use spool::read::capture::Capture;
use spool::read::event::{DamageKind, Event};
use spool2pcap::{convert, ConvertOptions, Destination};

struct Read {
    records: u64,
    damage: Vec<spool::read::event::Damage>,
}

fn read(dir: &Path, channel: &str) -> Read {
    let cap = Capture::open(dir).unwrap();
    let mut r = cap.reader(channel).unwrap();
    let mut records = 0;
    while let Some(ev) = r.next_event() {
        if let Event::Data(_) = ev {
            records += 1;
        }
    }
    Read {
        records,
        damage: r.damage().to_vec(),
    }
}

/// Records of display in the good capture.
const DISPLAY_RECORDS: u64 = 195;

#[test]
fn each_variant_reports_its_damage_and_keeps_the_rest() {
    for v in VARIANTS {
        let dir = e2e::fixtures::damaged_capture(v.name);
        let r = read(&dir, "display");
        match v.name {
            "truncated" => {
                assert_eq!(r.records, DISPLAY_RECORDS - 1, "{}", v.name);
                assert_eq!(r.damage.len(), 1);
            }
            "bitflip" => {
                assert_eq!(r.records, DISPLAY_RECORDS - 3, "{}", v.name);
                assert_eq!(r.damage.len(), 3);
                assert!(r
                    .damage
                    .iter()
                    .all(|d| d.kind == DamageKind::Corrupt && d.records_lost == 1));
            }
            "absurd-len" => {
                assert_eq!(r.records, DISPLAY_RECORDS - 1, "{}", v.name);
                assert_eq!(r.damage[0].records_lost, 1);
            }
            "bad-magic" => {
                assert_eq!(r.damage[0].kind, DamageKind::BadMagic);
                assert!(r.records > 0 && r.records < DISPLAY_RECORDS);
            }
            "bad-version" => {
                assert_eq!(r.damage[0].kind, DamageKind::UnsupportedVersion(99));
                assert!(r.damage[0]
                    .to_string()
                    .contains("unsupported format version 99"));
            }
            "hostile-name" => {
                assert_eq!(r.records, DISPLAY_RECORDS);
                let cap = Capture::open(&dir).unwrap();
                let names: Vec<&str> = cap.channels().iter().map(|c| c.name.as_str()).collect();
                assert_eq!(names, ["cursor", "display", "inputs"]);
                assert_eq!(cap.problems().len(), 3, "{:?}", cap.problems());
                let c = read(&dir, "cursor");
                assert!(matches!(c.damage[0].kind, DamageKind::HeaderMismatch(_)));
            }
            other => panic!("variant {other} has no test"),
        }
        for d in &r.damage {
            // Every report names a file inside the capture and an offset.
            assert!(d.file.starts_with(&dir), "{d}");
            assert!(d.to_string().contains(": offset "), "{d}");
        }
    }
}

#[test]
fn converting_a_damaged_capture_writes_only_inside_the_output() {
    for v in VARIANTS {
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("pcaps");
        let report = convert(
            &e2e::fixtures::damaged_capture(v.name),
            &ConvertOptions::new(Destination::Dir(dest.clone())),
        );
        let report = report.unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert!(report.has_damage(), "{}", v.name);
        let mut written: Vec<String> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        written.sort();
        assert_eq!(
            written,
            ["cursor.pcap", "display.pcap", "inputs.pcap"],
            "{}",
            v.name
        );
        // Nothing appeared next to the output directory.
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);
    }
}

#[test]
fn cli_verify_fails_and_convert_exits_1_on_damage() {
    let spool2pcap = e2e::tools::spool2pcap_bin();
    for v in VARIANTS {
        let out = Command::new(&spool2pcap)
            .arg("verify")
            .arg(e2e::fixtures::damaged_capture(v.name))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", v.name);
        let stdout = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(stdout.contains("offset"), "{}: {stdout}", v.name);
        assert!(!stdout.contains("panicked"), "{}", v.name);
    }
    let good = e2e::fixtures::shipped_capture();
    let out = Command::new(&spool2pcap)
        .arg("verify")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `info` and `verify` say the same of every damaged fixture: regions,
/// records and data bytes lost, all channels and per channel, in JSON and
/// in text; and the losses are the manifest's shortfall where a damaged
/// header hides a whole segment's records from the reader.
#[test]
fn info_and_verify_agree_on_what_is_lost() {
    let spool2pcap = e2e::tools::spool2pcap_bin();
    let run = |args: &[&std::ffi::OsStr]| {
        let o = Command::new(&spool2pcap).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    for v in VARIANTS {
        let dir = e2e::fixtures::damaged_capture(v.name);
        let info: serde_json::Value =
            serde_json::from_str(&run(&["info".as_ref(), dir.as_ref(), "--json".as_ref()]))
                .unwrap();
        let verdict: serde_json::Value =
            serde_json::from_str(&run(&["verify".as_ref(), dir.as_ref(), "--json".as_ref()]))
                .unwrap();
        let channels = info["channels"].as_array().unwrap();
        let sum = |key: &str| -> u64 { channels.iter().map(|c| c[key].as_u64().unwrap()).sum() };
        assert_eq!(
            verdict["damaged_regions"],
            sum("damage_count"),
            "{}",
            v.name
        );
        assert_eq!(verdict["records_lost"], sum("records_lost"), "{}", v.name);
        for c in channels {
            let lost = c["records_lost"].as_u64().unwrap();
            let listed = verdict["damaged_channels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["name"] == c["name"]);
            match listed {
                Some(d) => {
                    assert_eq!(d["damaged_regions"], c["damage_count"], "{}", v.name);
                    assert_eq!(d["records_lost"], c["records_lost"], "{}", v.name);
                    assert_eq!(d["bytes_lost"], c["bytes_lost"], "{}", v.name);
                }
                None => assert_eq!((c["damage_count"].as_u64(), lost), (Some(0), 0)),
            }
            // A clean manifest tells what is missing: at least that is lost.
            let m = &c["manifest"];
            if !m.is_null() {
                let shortfall = m["records"].as_u64().unwrap() - c["records"].as_u64().unwrap();
                assert_eq!(lost, shortfall, "{}: {}", v.name, c["name"]);
            }
        }
        // The text of both: each damaged channel's line is the same.
        let info_text = run(&["info".as_ref(), dir.as_ref()]);
        let verify_text = run(&["verify".as_ref(), dir.as_ref()]);
        for line in verify_text.lines().filter(|l| l.contains(": damage: ")) {
            let (name, summary) = line.split_once(": damage: ").unwrap();
            let block = info_text
                .split("\nChannel ")
                .find(|b| b.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{}: no channel {name} in info", v.name));
            assert!(
                block.contains(&format!("  Damage:            {summary}\n")),
                "{}: {line}\n{block}",
                v.name
            );
        }
    }
    // bad-magic: the reader cannot count a segment whose header is gone;
    // the manifest can.
    let dir = e2e::fixtures::damaged_capture("bad-magic");
    let text = run(&["verify".as_ref(), dir.as_ref()]);
    assert!(
        text.contains("display: damage: 1 regions (128 bytes of segment files), 63 records lost, 126150 data bytes lost"),
        "{text}"
    );
    // Nothing was trimmed, so the mismatch does not say "after trimming".
    assert!(
        text.contains("mismatch: display: manifest says 195 records / 191187 bytes, segments hold 132 / 65037"),
        "{text}"
    );
}

/// The shipped fixture's session closed when its last record was written
/// (30 s after its start), not when the fixture was generated; and the
/// generator writes it so.
#[test]
fn fixtures_close_when_their_session_ended() {
    let session = e2e::fixtures::recorded_session();
    let last = session.merged().last().map(|(_, c)| c.ts_ns).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("capture");
    e2e::fixtures::write_capture(&session, &fresh).unwrap();
    let shipped = e2e::fixtures::shipped_capture();
    let mut dirs = vec![fresh, shipped];
    dirs.extend(
        VARIANTS
            .iter()
            .map(|v| e2e::fixtures::damaged_capture(v.name)),
    );
    for dir in dirs {
        let m = spool::Manifest::load(&dir.join("manifest.json")).unwrap();
        let closed = m.closed_unix_ns.expect("a clean close");
        assert_eq!(
            closed - m.session_start_unix_ns,
            last,
            "{}: closed {} s after its start",
            dir.display(),
            (closed - m.session_start_unix_ns) / 1_000_000_000
        );
    }
    assert!(last < 60_000_000_000, "a 30 s session: {last} ns");
}
