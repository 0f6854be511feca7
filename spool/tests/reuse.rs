//! Segments moved into the capture directory are reused for later ones
//! (`spool::write::spare`): what is read back is exactly what was written,
//! whatever the reused files held before, and a close leaves no spare and
//! no staging directory behind.

mod common;

use common::*;
use spool::Direction;

#[test]
fn reused_segments_hold_only_their_own_records_and_close_leaves_nothing() {
    let dirs = Dirs::new();
    let spool = small_segments(&dirs, &["display", "inputs"]);
    // Records of one size, so that the records of a segment's every use
    // start at the same offsets: a record of its previous use left past
    // the last one written would be read as a record of this one.
    let record = |i: usize| payload(i, 1000);
    let mut written = 0;
    // Refused appends (no segment ready yet), per channel: each is a gap.
    let mut refused = [0u64; 2];
    // Until some segment has been reused, too: a machine busy elsewhere
    // can hold the background threads back for the first 3000.
    let start = std::time::Instant::now();
    while written < 3000
        || (spool.segments_reused() == 0 && start.elapsed() < std::time::Duration::from_secs(30))
    {
        let ch = if written % 3 == 0 {
            "inputs"
        } else {
            "display"
        };
        if spool.append_at(
            ch,
            Direction::ServerToClient,
            written as u64,
            &record(written),
        ) {
            written += 1;
        } else {
            refused[usize::from(ch == "inputs")] += 1;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    // The preparer runs behind the hot path: let it reuse what the
    // retirer handed back before the close.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let reused = spool.segments_reused();
    // Read live, the last segments staged and in use: past each one's
    // `written_to`, a reused file still holds the records of its previous
    // use (CRCs filled in), which must not be read on (nor by a crash
    // recovery).
    for ch in ["display", "inputs"] {
        let got = read_channel(&dirs.capture(), ch);
        assert!(
            got.damage.iter().all(|d| d.is_torn_tail()),
            "{ch} live: {:?}",
            got.damage
        );
        // A prefix of what was written to the channel, in order.
        let want = (0..written).filter(|i| (i % 3 == 0) == (ch == "inputs"));
        assert!(!got.records.is_empty(), "{ch} live: nothing read");
        for (r, i) in got.records.iter().zip(want) {
            assert_eq!(r.ts, i as u64, "{ch} live: not the record written next");
            assert!(r.data == record(i), "{ch} live: record {i} differs");
        }
        assert!(got.records.len() <= written, "{ch} live: stray records");
    }
    spool.close().unwrap();
    assert!(reused > 0, "no segment was reused");

    for ch in ["display", "inputs"] {
        // Retried until accepted, so the records are all of them, in order.
        let got = read_channel(&dirs.capture(), ch);
        assert!(got.damage.is_empty(), "{ch}: {:?}", got.damage);
        let gaps: u64 = got.gaps.iter().map(|g| g.0).sum();
        assert_eq!(gaps, refused[usize::from(ch == "inputs")], "{ch}");
        assert!(got.closed_cleanly);
        let want: Vec<usize> = (0..written)
            .filter(|i| (i % 3 == 0) == (ch == "inputs"))
            .collect();
        assert_eq!(got.records.len(), want.len(), "{ch}");
        for (r, &i) in got.records.iter().zip(&want) {
            assert_eq!(r.ts, i as u64);
            assert!(r.data == record(i), "{ch}: record {i} differs");
        }
    }
    let left: Vec<_> = std::fs::read_dir(dirs.staging_root())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}
