//! Full filesystems: no SIGBUS, drops counted, data before the fill intact.
//!
//! These tests mount small tmpfs filesystems, which needs root: without it
//! the harness (`needs`) reports them ignored, and under `CI=true` failed.

mod common;

use std::path::PathBuf;

use common::*;
use needs::{Tmpfs, TMPFS_MOUNT};
use spool::{Direction, Spool, SpoolConfig, StagingChoice};

fn full_staging_filesystem_drops_without_sigbus() {
    let fs = Tmpfs::mount("1m").unwrap();
    let dirs = Dirs::new();
    let spool = Spool::create(
        SpoolConfig::new(dirs.capture())
            .staging(StagingChoice::Root(fs.path().join("staging")))
            .segment_bytes(256 << 10)
            .ready_ahead(8)
            .channels(&["display"]),
    )
    .unwrap();
    // Once the channel is busy the preparer wants 8 segments of 256 KiB
    // ahead: 2 MiB, on a 1 MiB filesystem.
    let mut accepted = Vec::new();
    let mut dropped = 0;
    for i in 0..3000u64 {
        let data = payload(i as usize, 1500);
        if spool.append_at("display", Direction::ServerToClient, i, &data) {
            accepted.push(data);
        } else {
            dropped += 1;
        }
    }
    let errors = spool.errors();
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("No space left")),
        "{errors:?}"
    );
    let c = spool.counters("display").unwrap();
    assert_eq!(c.dropped_records, dropped);
    let _ = spool.close();
    let got = read_channel(&dirs.capture(), "display");
    assert_eq!(got.records.len(), accepted.len());
    for (r, a) in got.records.iter().zip(&accepted) {
        assert_eq!(&r.data, a);
    }
}

fn full_capture_disk_keeps_data_staged_and_reports() {
    let fs = Tmpfs::mount("256k").unwrap();
    let staging = tempfile::tempdir_in("/dev/shm").unwrap();
    let capture: PathBuf = fs.path().join("cap");
    let spool = Spool::create(
        SpoolConfig::new(&capture)
            .staging(StagingChoice::Root(staging.path().join("s")))
            .segment_bytes(128 << 10)
            // Compressed, this traffic would fit the small disk.
            .compress(false)
            .channels(&["display"]),
    )
    .unwrap();
    let mut accepted = 0u64;
    for i in 0..1000u64 {
        if spool.append_at(
            "display",
            Direction::ServerToClient,
            i,
            &payload(i as usize, 1000),
        ) {
            accepted += 1;
        }
        if i % 50 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let err = spool.close().unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    // What could not be moved is still staged, and the reader finds it.
    let got = read_channel(&capture, "display");
    assert_eq!(got.records.len() as u64, accepted);
    for (i, r) in got.records.iter().enumerate() {
        assert_eq!(r.data, payload(r.ts as usize, 1000), "record {i}");
    }
}

fn main() -> std::process::ExitCode {
    needs::run(vec![
        needs::test!(full_staging_filesystem_drops_without_sigbus, TMPFS_MOUNT),
        needs::test!(full_capture_disk_keeps_data_staged_and_reports, TMPFS_MOUNT),
    ])
}
