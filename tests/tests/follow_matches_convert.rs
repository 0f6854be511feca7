//! `spool2pcap convert --follow` of a finished capture writes the records
//! `spool2pcap convert` writes, on every damaged fixture: the follower
//! skips damage exactly as the reader does (one segment parser for both).

use std::path::Path;
use std::process::Command;

use e2e::fixtures::{damaged_capture, VARIANTS};
use e2e::tools::spool2pcap_bin;

/// The frames of a pcap file, in order.
fn frames(path: &Path) -> Vec<testkit::pcap::Frame> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    testkit::pcap::frames(&bytes)
}

fn convert(capture: &Path, channel: &str, out: &Path, follow: bool) {
    let mut cmd = Command::new(spool2pcap_bin());
    cmd.arg("convert");
    if follow {
        cmd.arg("--follow");
    }
    let o = cmd
        .arg(capture)
        .arg("-w")
        .arg(out)
        .args(["--channel", channel, "--format", "pcap"])
        .output()
        .unwrap();
    // 1: damage was reported (and skipped).
    assert!(
        o.status.code().is_some_and(|c| c <= 1),
        "{} {channel} follow={follow}: {}",
        capture.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn follow_writes_the_records_convert_writes_on_every_damaged_fixture() {
    let out = tempfile::tempdir().unwrap();
    for v in VARIANTS {
        let capture = damaged_capture(v.name);
        for channel in ["display", "cursor", "inputs"] {
            let closed = out.path().join(format!("{}-{channel}.pcap", v.name));
            let followed = out.path().join(format!("{}-{channel}-follow.pcap", v.name));
            convert(&capture, channel, &closed, false);
            convert(&capture, channel, &followed, true);
            let (closed, followed) = (frames(&closed), frames(&followed));
            let what = format!("{} {channel}", v.name);
            assert!(closed.len() > 3, "{what}: nothing converted");
            // The same frames; the follower closes every connection of a
            // finished session with a FIN, which carries no record.
            assert!(followed.len() >= closed.len(), "{what}");
            assert_eq!(closed, followed[..closed.len()], "{what}");
            assert!(
                followed[closed.len()..]
                    .iter()
                    .all(|f| !testkit::tcp::carries_payload(f)),
                "{what}: follow wrote records convert did not"
            );
        }
    }
}
