//! Every session's memory ring (`ryll_hook::ring`) in a real process: it
//! records through the renderer's `CaptureSink` into tmpfs only, reports
//! come from it, a clean exit removes it, and a process that dies —
//! SIGKILL or panic — leaves it for the next start, which turns it into a
//! bug report and removes it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ryll_hook::CaptureSink;
use spool::read::event::Event;
use spool::{Capture, Direction};

const CHILD_ENV: &str = "RYLL_HOOK_RING_TEST_CHILD";

/// The shipped real session, fed through `sink` as ryll's channel loops
/// would feed it.
fn feed_fixture(sink: &dyn CaptureSink) -> u64 {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/qemu-seabios-4ch");
    let capture = Capture::open(&fixture).unwrap();
    let mut fed = 0;
    for ch in capture.channels() {
        let mut r = capture.reader(&ch.name).unwrap();
        while let Some(ev) = r.next_event() {
            if let Event::Data(d) = ev {
                let ok = match d.direction {
                    Direction::ClientToServer => sink.packet_sent(&ch.name, d.payload),
                    Direction::ServerToClient => sink.packet_received(&ch.name, d.payload),
                };
                assert!(ok, "the ring dropped a record of {}", ch.name);
                fed += 1;
            }
        }
    }
    fed
}

/// In the child: start the ring, feed it, then end as `how` says.
fn child(how: &str) {
    let report_dir = std::env::temp_dir();
    let started = ryll_hook::ring::start("127.0.0.1:5931", None, 16 << 20, &report_dir).unwrap();
    let ring = ryll_hook::ring::sink().unwrap();
    let fed = feed_fixture(&*ring);
    let (pcap, _) = ryll_hook::report::traffic_pcap("all", 24_000_000)
        .unwrap()
        .unwrap();
    println!(
        "ready {} {fed} {}",
        started.dir.unwrap().display(),
        pcap.len()
    );
    match how {
        "exit" => std::process::exit(0),
        "panic" => panic!("a bug"),
        _ => std::thread::sleep(std::time::Duration::from_secs(60)),
    }
}

/// Runs this test binary as a child ending `how`, with `runtime` as its
/// `XDG_RUNTIME_DIR`. Returns the ring directory it reported and the
/// child's exit status.
fn run_child(test: &str, how: &str, runtime: &Path) -> (PathBuf, std::process::ExitStatus) {
    let mut cmd = testkit::child::this_test(test);
    cmd.env(CHILD_ENV, how).env("XDG_RUNTIME_DIR", runtime);
    let mut c = testkit::child::Running::spawn(cmd.stderr(Stdio::null()));
    // libtest may print the test's name on the same line first.
    let ready = c
        .lines
        .find_map(|l| Some(l.ok()?.split_once("ready ")?.1.to_string()))
        .expect("the child never got its ring going");
    let fields: Vec<&str> = ready.split(' ').collect();
    assert!(fields[1].parse::<u64>().unwrap() > 200, "{ready}");
    assert!(
        fields[2].parse::<u64>().unwrap() > 100_000,
        "report pcap: {ready}"
    );
    if how == "kill" {
        c.process.kill().unwrap();
    }
    (PathBuf::from(fields[0]), c.process.wait().unwrap())
}

/// What the child's runtime directory holds: ring and staging roots.
fn roots(runtime: &Path) -> (PathBuf, PathBuf) {
    (runtime.join("ryll-ring"), runtime.join("ryll-spool"))
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// A report's traffic.pcap carries the synthetic link phase of every
/// channel (a link message and its reply, each opening with `REDQ`) and a
/// good part of the session.
fn check_report(zip: &Path) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let mut pcap = Vec::new();
    archive
        .by_name("traffic.pcap")
        .unwrap()
        .read_to_end(&mut pcap)
        .unwrap();
    let links = pcap.windows(4).filter(|w| w == b"REDQ").count();
    assert_eq!(links, 2 * 4, "a link message and reply per channel");
    assert!(pcap.len() > 100_000, "{} bytes", pcap.len());
}

/// The test `test`: a child that ends `how` leaves a ring that the next
/// start reports. In the child, the child's part.
fn crashed_ring_becomes_a_report(test: &str, how: &str) {
    if let Ok(how) = std::env::var(CHILD_ENV) {
        return child(&how);
    }
    let runtime = tempfile::tempdir_in("/dev/shm").unwrap();
    let (ring_root, staging_root) = roots(runtime.path());
    let (ring, status) = run_child(test, how, runtime.path());
    assert!(!status.success(), "{status}");
    assert!(ring.join("manifest.json").is_file(), "the ring is left");
    assert!(entries(&ring.join("spool"))
        .iter()
        .all(|c| entries(c).is_empty()));

    let reports = tempfile::tempdir().unwrap();
    let report_dir = reports.path().join("new");
    let found = ryll_hook::crash::report_crashed_rings(&ring_root, &report_dir);
    assert_eq!(found.len(), 1, "{found:?}");
    let zip = found[0].outcome.as_ref().unwrap();
    check_report(zip);
    assert!(!ring.exists(), "a reported ring is removed");
    assert!(entries(&staging_root).is_empty(), "and its staging");
    // Nothing left to report the next time.
    assert!(ryll_hook::crash::report_crashed_rings(&ring_root, &report_dir).is_empty());
}

#[test]
fn a_killed_sessions_ring_becomes_a_bug_report() {
    crashed_ring_becomes_a_report("a_killed_sessions_ring_becomes_a_bug_report", "kill");
}

#[test]
fn a_panicked_sessions_ring_becomes_a_bug_report() {
    crashed_ring_becomes_a_report("a_panicked_sessions_ring_becomes_a_bug_report", "panic");
}

#[test]
fn a_clean_exit_leaves_no_ring_and_nothing_staged() {
    let test = "a_clean_exit_leaves_no_ring_and_nothing_staged";
    if let Ok(how) = std::env::var(CHILD_ENV) {
        return child(&how);
    }
    let runtime = tempfile::tempdir_in("/dev/shm").unwrap();
    let (ring_root, staging_root) = roots(runtime.path());
    let (ring, status) = run_child(test, "exit", runtime.path());
    assert!(status.success(), "{status}");
    assert!(!ring.exists());
    assert!(entries(&ring_root).is_empty(), "{:?}", entries(&ring_root));
    assert!(
        entries(&staging_root).is_empty(),
        "{:?}",
        entries(&staging_root)
    );
}

/// Ring and staging roots that are not this user's own directories (here
/// symlinks to directories elsewhere; `spool/tests/squat.rs` has another
/// user's) are never used: the ring runs in private directories beside
/// them, a crash there is reported all the same, and nothing is left.
#[test]
fn squatted_ring_and_staging_roots_are_worked_around() {
    let test = "squatted_ring_and_staging_roots_are_worked_around";
    if let Ok(how) = std::env::var(CHILD_ENV) {
        return child(&how);
    }
    let runtime = tempfile::tempdir_in("/dev/shm").unwrap();
    let (ring_root, staging_root) = roots(runtime.path());
    let elsewhere = runtime.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &ring_root).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &staging_root).unwrap();
    for how in ["kill", "exit"] {
        let (ring, status) = run_child(test, how, runtime.path());
        let fallback = ring.parent().unwrap();
        assert!(
            spool::store::staging::is_fallback_root(fallback),
            "{}",
            ring.display()
        );
        assert_eq!(fallback.parent(), Some(runtime.path()));
        if how == "kill" {
            assert!(!status.success());
            let reports = tempfile::tempdir().unwrap();
            let found = ryll_hook::crash::report_crashed_rings(&ring_root, reports.path());
            assert_eq!(found.len(), 1, "{found:?}");
            check_report(found[0].outcome.as_ref().unwrap());
        } else {
            assert!(status.success(), "{status}");
        }
        let mut left = entries(runtime.path());
        left.sort();
        let mut want = vec![elsewhere.clone(), ring_root.clone(), staging_root.clone()];
        want.sort();
        assert_eq!(left, want, "{how}: only the squats are left");
        assert!(entries(&elsewhere).is_empty(), "{how}");
    }
}
