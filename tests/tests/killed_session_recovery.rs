//! Crash recovery end to end with the recorded real session: a child process
//! (this test binary re-executed) replays it into a spool staged in
//! /dev/shm and is SIGKILLed before it closes. `spool2pcap info` says the
//! session did not shut down cleanly and how many records it read from
//! staging; `spool2pcap convert` gives every acknowledged byte;
//! `spool2pcap recover` moves the staged segments in, after which staging
//! is gone and conversion gives the same bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use spool::Direction;
use testkit::child;

const CHILD_ENV: &str = "KILLED_SESSION_RECOVERY_CHILD";

/// The child: the whole recorded session into a spool, then wait to be killed.
fn child(capture: PathBuf, staging: PathBuf) -> ! {
    let session = e2e::fixtures::recorded_session();
    // Small segments: some are moved in before the kill, the newest stay
    // staged.
    let spool = e2e::fixtures::session_spool(&session, &capture, &staging, 64 << 10).unwrap();
    let acked = e2e::fixtures::append_session(&spool, &session).unwrap();
    // Give the background thread time to move the sealed segments in: the
    // live ones stay staged, as after a crash in mid-session.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut out = std::io::stdout().lock();
    writeln!(out, "acked {acked}").unwrap();
    out.flush().unwrap();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn run(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let o = Command::new(e2e::tools::spool2pcap_bin())
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// TCP payload per (client port, from server) of a classic pcap.
fn streams(file: &Path) -> BTreeMap<(u16, bool), Vec<u8>> {
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(
        testkit::pcap::read(&bytes).format,
        testkit::pcap::Format::Pcap
    );
    testkit::streams::streams(&bytes, spool2pcap::spice::channels::SERVER_PORT)
}

#[test]
fn killed_session_is_converted_and_recovered_with_every_acknowledged_record() {
    if let Some((c, s)) = child::passed_dirs(CHILD_ENV) {
        child(c, s);
    }
    let session = e2e::fixtures::recorded_session();
    let dir = tempfile::tempdir().unwrap();
    let staging_root = tempfile::tempdir_in("/dev/shm").unwrap();
    let capture = dir.path().join("capture");
    let mut writer = child::spawn_writer(
        CHILD_ENV,
        "killed_session_is_converted_and_recovered_with_every_acknowledged_record",
        &capture,
        staging_root.path(),
        Stdio::inherit(),
    );
    let mut acked = None;
    for line in writer.lines.by_ref() {
        let line = line.unwrap();
        if let Some(n) = line
            .trim()
            .rsplit("acked ")
            .next()
            .filter(|_| line.contains("acked "))
        {
            acked = n.trim().parse::<u64>().ok();
            break;
        }
    }
    writer.kill();
    let acked = acked.expect("the child acknowledged nothing");
    let total: u64 = session
        .connections
        .iter()
        .map(|c| c.chunks.len() as u64)
        .sum();
    assert_eq!(acked, total);

    let manifest = spool::Manifest::load(&capture.join("manifest.json")).unwrap();
    assert!(!manifest.clean_shutdown);
    let staging = PathBuf::from(manifest.staging_dir.clone().unwrap());
    assert!(staging.is_dir());

    // info: unclean, and how many records came from staging.
    let cap = capture.as_os_str();
    let (code, out, err) = run(&["info".as_ref(), cap, "--json".as_ref()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["unclean_shutdown"], true);
    let staged = info["staged_records"].as_u64().unwrap();
    assert!(staged > 0 && staged <= total, "{staged} of {total}");
    eprintln!("killed writer: {staged} of {total} records read from staging");
    assert_eq!(info["recovered"]["staged_records"], staged);
    let records: u64 = info["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["records"].as_u64().unwrap())
        .sum();
    assert_eq!(records, total);
    let (_, text, _) = run(&["info".as_ref(), cap]);
    assert!(
        text.contains("Unclean shutdown: the session did not shut down cleanly"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Recovered: {staged} records read from segments still staged"
        )),
        "{text}"
    );

    // convert reads staging in place: every acknowledged byte is there.
    let before = dir.path().join("before.pcap");
    let (code, _, err) = run(&[
        "convert".as_ref(),
        cap,
        "-w".as_ref(),
        before.as_os_str(),
        "--no-synth-link".as_ref(),
        "--no-synth-tcp".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "the session did not shut down cleanly; {staged} records were recovered"
        )),
        "{err}"
    );
    let got = streams(&before);
    for c in &session.connections {
        let port = spool2pcap::spice::channels::known_port(&c.name).unwrap();
        for (dir, from_server) in [
            (Direction::ClientToServer, false),
            (Direction::ServerToClient, true),
        ] {
            assert!(
                got.get(&(port, from_server)).map(Vec::as_slice) == Some(&c.stream(dir)[..]),
                "{} {dir:?} differs from the session",
                c.name
            );
        }
    }

    // recover moves the staged segments in for good.
    let (code, out, err) = run(&["recover".as_ref(), cap]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("recovered "), "{out}");
    assert!(!staging.exists(), "staging still there after recover");
    let after = dir.path().join("after.pcap");
    let (code, _, err) = run(&[
        "convert".as_ref(),
        cap,
        "-w".as_ref(),
        after.as_os_str(),
        "--no-synth-link".as_ref(),
        "--no-synth-tcp".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(streams(&after), got);
    let (_, out, _) = run(&["info".as_ref(), cap, "--json".as_ref()]);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["staged_records"], 0);
    assert_eq!(info["unclean_shutdown"], true);
    assert_eq!(info["recovered"]["moved_in"], true);
    // A second recover has nothing to do.
    let (code, out, _) = run(&["recover".as_ref(), cap]);
    assert_eq!(code, Some(0));
    assert!(out.contains("nothing to recover"), "{out}");
}
