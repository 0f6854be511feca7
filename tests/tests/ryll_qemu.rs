//! A real session: QEMU's SPICE server (qxl, no disk: the SeaBIOS/iPXE
//! screens), `ryll-capture` as the client for ~10 s, tcpdump on loopback as
//! the ground truth. The spool, converted by spool2pcap and reassembled by
//! tshark, must hold every channel's post-link bytes exactly as they
//! crossed the wire.
//!
//! `ryll-capture` is ryll-tools' binary; `cargo test --workspace` builds it
//! next to this test's executable (ryll-tools has integration tests).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::ground_truth;
use e2e::live::{self, free_port, start_loopback_capture, start_quiet_qemu, wait_for_port};
use needs::Need;

/// The `ryll-capture` beside this test executable (target/<profile>/).
fn ryll_capture_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let bin = dir.join("ryll-capture");
    bin.exists().then_some(bin)
}

/// `cargo test --workspace` builds `ryll-capture`; `cargo test -p e2e`
/// alone does not.
const RYLL_CAPTURE: Need = Need::Custom(|| {
    ryll_capture_bin().map(drop).ok_or_else(|| {
        "needs ryll-capture built beside this test: run `cargo test --workspace`".to_string()
    })
});

fn ryll_capture_against_qemu_matches_the_wire() {
    let bin = ryll_capture_bin().expect("ryll-capture");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut qemu = start_quiet_qemu(port);
    // Probe before tcpdump starts, so the probe is not in the ground truth.
    wait_for_port(port, Duration::from_secs(30));
    let truth = dir.path().join("truth.pcap");
    let mut wire = start_loopback_capture(port, &truth);

    let capture = dir.path().join("capture");
    let out = Command::new(&bin)
        .arg("--capture")
        .arg(&capture)
        .args(["--duration", "10"])
        .arg(format!("spice://127.0.0.1:{port}"))
        .output()
        .expect("running ryll-capture");
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "ryll-capture failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Let the last segments (and FINs) reach tcpdump, then stop both.
    std::thread::sleep(Duration::from_millis(500));
    wire.stop(Duration::from_secs(10));

    // Ctrl-C (SIGINT) mid-session: a clean close, exit status 0.
    let interrupted = dir.path().join("interrupted");
    let child = Command::new(&bin)
        .arg("--capture")
        .arg(&interrupted)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running ryll-capture");
    std::thread::sleep(Duration::from_secs(3));
    e2e::live::signal(&child, libc::SIGINT);
    let out = child.wait_with_output().expect("waiting for ryll-capture");
    assert!(
        out.status.success(),
        "ryll-capture after SIGINT: {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let cap = spool::Capture::open(&interrupted).unwrap();
    assert!(cap.manifest().unwrap().clean_shutdown);
    assert!(cap.channels().iter().any(|c| c.name == "main"));
    qemu.stop(Duration::from_secs(5));

    let session = ground_truth::load_ground_truth(&truth, port);
    let display = session.channel("display").unwrap();
    assert!(
        !display.stream(spool::Direction::ServerToClient).is_empty(),
        "the display channel carried nothing"
    );
    // The client stops at --duration while QEMU keeps drawing: what the
    // server sent after the client's last read is on the wire but was
    // never read, so never captured. Everything before it must be.
    for line in ground_truth::check_capture(&capture, &session, 64 << 10) {
        eprintln!("{line}");
    }
    let cap = spool::Capture::open(&capture).unwrap();
    assert!(cap.manifest().unwrap().clean_shutdown);
    for name in session.connections.iter().map(|c| &c.name) {
        let mut r = cap.reader(name).unwrap();
        while let Some(ev) = r.next_event() {
            assert!(
                matches!(ev, spool::read::event::Event::Data(_)),
                "{name}: {ev:?}"
            );
        }
    }
    let meta = ryll_hook::metadata::read_metadata(&capture).unwrap();
    assert_eq!(meta.target_port, Some(port));
}

fn main() -> std::process::ExitCode {
    needs::run(vec![needs::test!(
        ryll_capture_against_qemu_matches_the_wire,
        needs::QEMU,
        live::LOOPBACK_CAPTURE,
        RYLL_CAPTURE
    )])
}
