//! A flight-recorder capture (ring-bounded, start trimmed) through
//! spool2pcap: not damage, said once in `info`, noted in the output.

use std::process::Command;

use e2e::tools;
use spool::{Direction, DiskLimit, Spool, SpoolConfig, StagingChoice};

fn trimmed_capture(dir: &std::path::Path, staging: &std::path::Path) -> u64 {
    let spool = Spool::create(
        SpoolConfig::new(dir)
            .staging(StagingChoice::Root(staging.join("s")))
            .segment_bytes(64 << 10)
            // Compressed, these mostly-zero messages would never fill the ring.
            .compress(false)
            .limit(DiskLimit::ring(512 << 10))
            .channels(&["display", "inputs"]),
    )
    .unwrap();
    let mut last = 0;
    for i in 0..2000u64 {
        let ch = if i % 16 == 0 { "inputs" } else { "display" };
        // SPICE-shaped: a mini header and a body.
        let mut msg = vec![0u8; 1500];
        msg[..2].copy_from_slice(&101u16.to_le_bytes());
        msg[2..6].copy_from_slice(&1494u32.to_le_bytes());
        msg[6..14].copy_from_slice(&i.to_le_bytes());
        while !spool.append_at(ch, Direction::ServerToClient, i * 1_000_000, &msg) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        last = i;
    }
    spool.close().unwrap();
    last
}

fn trimmed_start_is_reported_as_a_fact_not_damage() {
    let work = tempfile::tempdir().unwrap();
    let staging = tempfile::tempdir_in("/dev/shm").unwrap();
    let cap = work.path().join("cap");
    trimmed_capture(&cap, staging.path());
    let bin = tools::spool2pcap_bin();
    let verify = Command::new(&bin).arg("verify").arg(&cap).output().unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    let info = Command::new(&bin)
        .args(["info", "--json"])
        .arg(&cap)
        .output()
        .unwrap();
    assert_eq!(info.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(json["trimmed"], true);
    assert!(
        json["mismatches"].as_array().unwrap().is_empty(),
        "{}",
        json["mismatches"]
    );
    let facts = json["facts"].as_array().unwrap();
    assert!(
        facts
            .iter()
            .any(|f| f.as_str().unwrap().contains("trimmed")),
        "{facts:?}"
    );
    let display = json["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "display")
        .unwrap();
    assert!(display["trimmed"]["segments"].as_u64().unwrap() > 0);
    assert_eq!(display["damage_count"], 0);

    let text = Command::new(&bin).arg("info").arg(&cap).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.lines().any(|l| l.contains("trimmed")), "{text}");
}

/// The converted capture says so too, in a packet comment tshark reads.
fn trimmed_start_is_a_packet_comment() {
    let work = tempfile::tempdir().unwrap();
    let staging = tempfile::tempdir_in("/dev/shm").unwrap();
    let cap = work.path().join("cap");
    trimmed_capture(&cap, staging.path());
    let bin = tools::spool2pcap_bin();
    let out = work.path().join("all.pcapng");
    let conv = Command::new(&bin)
        .args(["convert", "--format", "pcapng", "-w"])
        .arg(&out)
        .arg(&cap)
        .output()
        .unwrap();
    assert_eq!(
        conv.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&conv.stderr)
    );
    let comments = tools::tshark(&[
        "-r",
        &out.to_string_lossy(),
        "-T",
        "fields",
        "-e",
        "frame.comment",
    ])
    .unwrap();
    assert!(
        comments.contains("trimmed"),
        "no trimmed note among packet comments"
    );
}

fn main() -> std::process::ExitCode {
    needs::run(vec![
        needs::test!(trimmed_start_is_reported_as_a_fact_not_damage),
        needs::test!(trimmed_start_is_a_packet_comment, needs::TSHARK),
    ])
}
