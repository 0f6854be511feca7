//! The damaged fixtures: every variant gives a clear report and recovers
//! what is undamaged; nothing panics, nothing escapes the capture directory.

use std::path::Path;
use std::process::Command;

use e2e::fixtures::VARIANTS;
use spool::reader::{Capture, DamageKind, Event};
use spool2pcap::{convert, ConvertOptions, Destination};

struct Read {
    records: u64,
    damage: Vec<spool::reader::Damage>,
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
