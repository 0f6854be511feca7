//! Direct mode: segments are mapped in the capture directory and cut to
//! their used size once sealed, which must never happen under a mapping.

mod common;

use std::time::{Duration, Instant};

use common::*;
use spool::{Direction, StagingChoice};

const SEGMENT_BYTES: usize = 64 << 10;

#[test]
fn a_segment_is_unmapped_before_it_is_cut_to_size() {
    let dirs = Dirs::new();
    let spool = spool(
        dirs.config()
            .staging(StagingChoice::CaptureDir)
            .segment_bytes(SEGMENT_BYTES)
            .ready_ahead(2)
            .channels(&["display"]),
    );
    let chan = dirs.capture().join("spool/display");
    let mut cut_seen = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0usize;
    while cut_seen < 10 {
        assert!(Instant::now() < deadline, "segments were never cut");
        for _ in 0..20 {
            let _ = spool.append_at(
                "display",
                Direction::ServerToClient,
                i as u64,
                &payload(i, 900),
            );
            i += 1;
        }
        // Sizes first, then the mappings: a file already cut must already
        // be unmapped. A file of no bytes is a segment being created (made
        // empty, then allocated, then mapped), not one cut.
        let cut: Vec<_> = std::fs::read_dir(&chan)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().ends_with(".seg"))
            .filter(|f| {
                f.metadata()
                    .is_ok_and(|m| m.len() > 0 && (m.len() as usize) < SEGMENT_BYTES)
            })
            .map(|f| f.path())
            .collect();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for p in &cut {
            let p = p.to_str().unwrap();
            assert!(
                !maps.lines().any(|l| l.ends_with(p)),
                "{p} cut to size while still mapped"
            );
        }
        cut_seen = cut.len();
        std::thread::sleep(Duration::from_millis(1));
    }
    spool.close().unwrap();
    let dump = read_channel(&dirs.capture(), "display");
    assert!(dump.damage.is_empty(), "{:?}", dump.damage);
    assert_eq!(
        dump.records.len() as u64 + dump.gaps.iter().map(|g| g.0).sum::<u64>(),
        i as u64
    );
}
