//! `ryll-replay` from the command line, on the recorded real session: each
//! sink replays it completely (the replay itself checks every byte on both
//! ends) and prints its per-channel table.

use std::path::Path;
use std::process::Command;

use ryll_tools::recorded;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ryll-replay"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ryll-replay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn session() -> String {
    recorded::recorded_session_path()
        .to_string_lossy()
        .into_owned()
}

/// The row of `channel` in the table: bytes_in, reads, bytes_out, writes,
/// drops.
fn row(table: &str, channel: &str) -> [u64; 5] {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(channel))
        .unwrap_or_else(|| panic!("no {channel} row in\n{table}"));
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(5)
        .map(|x| x.parse().unwrap())
        .collect();
    [f[0], f[1], f[2], f[3], f[4]]
}

#[test]
fn every_sink_replays_the_whole_session() {
    let s = recorded::load(Path::new(&session()), recorded::RECORDED_SESSION_PORT).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (sink, repeat) in [("spool", "2"), ("ryll-threads", "1"), ("none", "1")] {
        let capture = dir.path().join(sink);
        let capture = capture.to_string_lossy();
        let table = run(&[
            "--listen-port",
            "0",
            "--sink",
            sink,
            "--capture",
            &capture,
            "--repeat",
            repeat,
            &session(),
        ]);
        let n: u64 = repeat.parse().unwrap();
        for conn in &s.connections {
            let [bytes_in, reads, bytes_out, writes, drops] = row(&table, &conn.name);
            let c2s = conn.stream(spool::Direction::ClientToServer);
            let s2c = conn.stream(spool::Direction::ServerToClient);
            assert_eq!(bytes_in, n * s2c.len() as u64, "{sink} {}", conn.name);
            assert_eq!(bytes_out, n * c2s.len() as u64, "{sink} {}", conn.name);
            assert!(reads >= n, "{sink} {}", conn.name);
            let chunks = conn
                .chunks
                .iter()
                .filter(|c| c.dir == spool::Direction::ClientToServer)
                .count() as u64;
            assert_eq!(writes, n * chunks, "{sink} {}", conn.name);
            assert_eq!(drops, 0, "{sink} {}", conn.name);
        }
        assert!(table.contains("p99.9"), "{table}");
    }
    assert!(dir.path().join("spool/manifest.json").exists());
    assert!(dir.path().join("spool/metadata.json").exists());
}

#[test]
fn spool_sink_without_capture_dir_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_ryll-replay"))
        .args(["--listen-port", "0", &session()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--capture"));
}
