//! `spool2pcap rings`: the in-memory ring a killed writer left on tmpfs is
//! listed, converted to one redacted pcap and removed; a live ring is left
//! alone.

mod common;

use std::path::Path;
use std::process::Command;

use spool::read::event::Event;
use spool::{Capture, Spool, SpoolConfig};

const CHILD_ENV: &str = "SPOOL2PCAP_RINGS_TEST_CHILD";

/// In the child: a ring under `$XDG_RUNTIME_DIR` holding the shipped
/// session, then wait to be killed.
fn child() {
    let root = spool::store::staging::ring_root().unwrap();
    spool::store::fsutil::create_private_dir(&root, true).unwrap();
    let config = SpoolConfig::memory_ring(root.join("killed"), 32 << 20)
        .channels(&["main", "display", "inputs", "cursor"]);
    let ring = Spool::create(config).unwrap();
    let fixture = common::shipped_fixture();
    let capture = Capture::open(&fixture).unwrap();
    for ch in capture.channels() {
        let mut r = capture.reader(&ch.name).unwrap();
        while let Some(ev) = r.next_event() {
            if let Event::Data(d) = ev {
                // A busy machine can hold the preparer back: try again.
                while !ring.append_at(&ch.name, d.direction, d.ts_ns, d.payload) {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
    }
    println!("ready");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

fn spool2pcap(runtime: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spool2pcap"))
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn a_killed_writers_ring_is_listed_converted_and_removed() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child();
    }
    let runtime = tempfile::tempdir_in("/dev/shm").unwrap();
    let (ok, text) = spool2pcap(runtime.path(), &["rings"]);
    assert!(ok && text.contains("no ring"), "{text}");

    let mut cmd =
        testkit::child::this_test("a_killed_writers_ring_is_listed_converted_and_removed");
    cmd.env(CHILD_ENV, "1")
        .env("XDG_RUNTIME_DIR", runtime.path());
    let mut writer = testkit::child::Running::spawn(&mut cmd);
    assert!(writer.lines.any(|l| l.is_ok_and(|l| l.contains("ready"))));
    // Alive: not listed.
    let (_, text) = spool2pcap(runtime.path(), &["rings"]);
    assert!(text.contains("no ring"), "a live ring was listed: {text}");
    writer.kill();

    let ring = runtime.path().join("ryll-ring/killed");
    let (ok, text) = spool2pcap(runtime.path(), &["rings"]);
    assert!(ok && text.contains("killed"), "{text}");
    assert!(ring.is_dir(), "listing removed it");

    let out = tempfile::tempdir().unwrap();
    let pcaps = out.path().join("pcaps");
    let (ok, text) = spool2pcap(
        runtime.path(),
        &["rings", "--convert", &pcaps.to_string_lossy()],
    );
    assert!(ok, "{text}");
    assert!(!ring.exists(), "converted but not removed: {text}");
    let pcap = std::fs::read(pcaps.join("killed.pcap")).unwrap();
    let links = pcap.windows(4).filter(|w| w == b"REDQ").count();
    assert_eq!(links, 2 * 4, "a link message and reply per channel");
    let (ok, text) = spool2pcap(runtime.path(), &["rings"]);
    assert!(ok && text.contains("no ring"), "{text}");
}
