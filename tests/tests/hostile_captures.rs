//! The real capture with a hostile manifest: whatever its strings, every
//! pcapng spool2pcap writes opens in tshark and capinfos, and what they show
//! of the capture carries no terminal control sequence.

use std::path::Path;
use std::process::Command;

use e2e::tools::{spool2pcap_bin, tshark};

/// Copies the directory tree `from` into `to` (regular files and
/// directories only, as a capture holds).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

const EVIL: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m";

/// The shipped capture, its manifest rewritten by a stranger: a session id
/// of 70,000 characters with escape sequences, thousands of trimmed
/// entries for channels that do not exist, long writer errors.
fn hostile_capture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&e2e::fixtures::shipped_capture(), dir.path());
    let path = dir.path().join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["session_id"] = format!("{EVIL}{}", "é".repeat(35_000)).into();
    m["errors"] = vec![format!("boom{EVIL}{}", "y".repeat(70_000)); 4].into();
    m["staging_dir"] = format!("/nowhere{EVIL}").into();
    let trimmed: serde_json::Map<String, serde_json::Value> = (0..5000)
        .map(|i| {
            (
                format!("gone{i:05}{EVIL}"),
                serde_json::json!({"segments": 1, "records": 2, "data_bytes": 3,
                    "file_bytes": 4, "first_kept_index": 1, "until_ts_ns": 5}),
            )
        })
        .collect();
    m["trimmed"] = trimmed.into();
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    dir
}

fn has_control(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
}

fn every_pcapng_of_a_hostile_manifest_opens_in_tshark() {
    let cap = hostile_capture();
    let out = tempfile::tempdir().unwrap();
    let runs: [&[&str]; 3] = [
        &["-w", "all.pcapng"],
        &["-o", "dir"],
        &["--follow", "-w", "live.pcapng"],
    ];
    for args in runs {
        let o = Command::new(spool2pcap_bin())
            .arg("convert")
            .arg(cap.path())
            .args(args)
            .args(["--format", "pcapng"])
            .current_dir(out.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code().is_some_and(|c| c <= 1), "{args:?}: {err}");
        assert!(!has_control(&err), "{args:?}: {err:?}");
    }
    let files = [
        "all.pcapng",
        "live.pcapng",
        "dir/main.pcapng",
        "dir/display.pcapng",
        "dir/cursor.pcapng",
        "dir/inputs.pcapng",
    ];
    for name in files {
        let file = out.path().join(name);
        let f = file.to_string_lossy();
        let frames = tshark(&["-r", &f, "-T", "fields", "-e", "frame.number"])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(frames.lines().count() > 10, "{name}: {frames}");
        let o = Command::new("capinfos").arg(&*f).output().unwrap();
        let info = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "capinfos {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(info.contains("ryll capture of session"), "{name}: {info}");
        assert!(!has_control(&info), "{name}: {info:?}");
    }
}

fn info_of_a_hostile_manifest_prints_no_control_sequence() {
    let cap = hostile_capture();
    for json in [false, true] {
        let mut cmd = Command::new(spool2pcap_bin());
        cmd.arg("info").arg(cap.path());
        if json {
            cmd.arg("--json");
        }
        let o = cmd.output().unwrap();
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(text.contains("boom"), "{text}");
        assert!(!has_control(&text), "{text:?}");
        // Escaped in JSON text, the strings themselves are clean too.
        if json {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(!has_control(v["session_id"].as_str().unwrap()));
            for e in v["writer_errors"].as_array().unwrap() {
                assert!(!has_control(e.as_str().unwrap()), "{e}");
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    needs::run(vec![
        needs::test!(
            every_pcapng_of_a_hostile_manifest_opens_in_tshark,
            needs::TSHARK,
            needs::CAPINFOS
        ),
        needs::test!(info_of_a_hostile_manifest_prints_no_control_sequence),
    ])
}
