//! Segment file names that the writer would not produce: each index is
//! read from one file at most, and names at the edges of `u64` neither wrap
//! nor keep a reader going.

mod common;

use common::*;
use spool::read::capture::Capture;
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

/// Copies segment 0 of channel `main` to the last index there can be, its
/// header saying so.
fn plant_last_segment(dirs: &Dirs) {
    use spool::store::format::{segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN};
    use zerocopy::{FromBytes, IntoBytes};
    let chan = dirs.capture().join("spool/main");
    let mut bytes = std::fs::read(chan.join(segment_file_name(0))).unwrap();
    let mut h = SegmentHeader::read_from_bytes(&bytes[..SEGMENT_HEADER_LEN]).unwrap();
    h.segment_index.set(u64::MAX);
    h.header_crc.set(h.compute_crc());
    bytes[..SEGMENT_HEADER_LEN].copy_from_slice(h.as_bytes());
    let name = segment_file_name(u64::MAX);
    assert_eq!(name, "18446744073709551615.seg");
    std::fs::write(chan.join(name), bytes).unwrap();
}

#[test]
fn following_a_closed_capture_ends_after_segment_u64_max() {
    use spool::read::event::{DamageKind, Event};
    use spool::read::follow::{Follower, Status};
    use std::time::{Duration, Instant};

    let dirs = Dirs::new();
    closed_capture(&dirs, 5);
    plant_last_segment(&dirs);

    let mut follower = Follower::open(&dirs.capture()).unwrap();
    let mut records = 0u64;
    let mut missing = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut polls = 0;
    loop {
        assert!(Instant::now() < deadline, "follower never finished");
        let status = follower.poll(&mut |_, ev| match ev {
            Event::Data(_) => records += 1,
            Event::Gap(_) => {}
            Event::Damage(d) => match d.kind {
                DamageKind::MissingSegments { first, count } => missing.push((first, count)),
                other => panic!("unexpected damage {other:?}"),
            },
        });
        polls += 1;
        if status != Status::Running {
            assert_eq!(status, Status::Finished { clean: true });
            break;
        }
    }
    assert_eq!(polls, 1, "a closed capture is read in one poll");
    assert_eq!(records, 10, "segment 0, then segment u64::MAX, once each");
    assert_eq!(missing, vec![(1, u64::MAX - 1)]);
    // Later polls neither wrap round to segment 0 nor read the last again.
    for _ in 0..3 {
        let status = follower.poll(&mut |_, ev| panic!("read again: {ev:?}"));
        assert_eq!(status, Status::Finished { clean: true });
    }
}

#[test]
fn reading_a_capture_with_segment_u64_max_ends() {
    let dirs = Dirs::new();
    closed_capture(&dirs, 5);
    plant_last_segment(&dirs);
    let dump = read_channel(&dirs.capture(), "main");
    assert_eq!(dump.records.len(), 10, "segment 0, then segment u64::MAX");
    assert_eq!(dump.damage.len(), 1, "{:?}", dump.damage);
    assert_eq!(
        dump.damage[0].kind,
        spool::read::event::DamageKind::MissingSegments {
            first: 1,
            count: u64::MAX - 1
        }
    );
    let text = dump.damage[0].to_string();
    assert!(
        text.contains("segments 1 to 18446744073709551614 missing"),
        "{text}"
    );
}
