//! Segment file names that the writer would not produce: each index is
//! read from one file at most, and names at the edges of `u64` neither wrap
//! nor keep a reader going.

mod common;

use common::*;
use spool::reader::Capture;
use spool::Direction;

/// A closed capture of one channel `main` holding `n` records.
fn closed_capture(dirs: &Dirs, n: u64) {
    let spool = spool(dirs.config().channels(&["main"]));
    for i in 0..n {
        spool.append_at(
            "main",
            Direction::ClientToServer,
            i,
            &payload(i as usize, 40),
        );
    }
    spool.close().unwrap();
}

#[test]
fn a_second_spelling_of_a_segment_name_is_not_read_again() {
    let dirs = Dirs::new();
    closed_capture(&dirs, 5);
    let chan = dirs.capture().join("spool/main");
    std::fs::copy(chan.join("00000000.seg"), chan.join("000000000.seg")).unwrap();
    std::fs::copy(chan.join("00000000.seg"), chan.join("0000000000.seg")).unwrap();

    let dump = read_channel(&dirs.capture(), "main");
    assert_eq!(dump.records.len(), 5, "each record read once");
    assert!(dump.damage.is_empty(), "{:?}", dump.damage);
    let cap = Capture::open(&dirs.capture()).unwrap();
    for odd in ["000000000.seg", "0000000000.seg"] {
        assert!(
            cap.problems().iter().any(|p| p.contains(odd)),
            "{odd} not reported: {:?}",
            cap.problems()
        );
    }
}
