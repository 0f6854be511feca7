//! Record CRCs are stored by the hot path as it appends (a capture bound
//! for disk) or filled in off it (the memory ring's way, where staged
//! segments carry zero CRCs and readers accept them there); either way
//! every segment in the capture directory carries all of them and says so
//! in its header, and in such a segment a zero CRC is damage like any
//! other.

mod common;

use std::time::{Duration, Instant};

use common::*;
use spool::read::capture::Capture;
use spool::read::event::{DamageKind, Event};
use spool::read::follow::{Follower, Status};
use spool::{Direction, StagingChoice};

fn wait_ready(spool: &spool::Spool, channel: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while spool.ready_segments(channel) < n {
        assert!(Instant::now() < deadline, "preparer never caught up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Record `i` of the tests below: its index first, sizes up to 1.5 KiB.
fn record(i: u64) -> Vec<u8> {
    let mut v = payload(i as usize, 8 + (i as usize * 97) % 1500);
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// Appends records `from..to` to `display`, all of which must be accepted.
fn append_all(spool: &spool::Spool, from: u64, to: u64) {
    for i in from..to {
        let dir = if i % 3 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        assert!(
            spool.append_at("display", dir, i, &record(i)),
            "record {i} dropped"
        );
    }
}

/// Data payloads a follower sees in one poll.
fn follow_once(capture: &std::path::Path) -> Vec<Vec<u8>> {
    let mut follower = Follower::open(capture).unwrap();
    let mut got = Vec::new();
    follower.poll(&mut |ch, ev| match ev {
        Event::Data(d) => got.push(d.payload.to_vec()),
        Event::Gap(_) => {}
        Event::Damage(d) => panic!("{ch}: {d}"),
    });
    got
}

#[test]
fn every_segment_in_the_capture_directory_is_flagged_and_fully_checksummed() {
    for (direct, at_append) in [(false, true), (true, true), (false, false), (true, false)] {
        let dirs = Dirs::new();
        let mut cfg = dirs
            .config()
            .segment_bytes(64 << 10)
            .ready_ahead(4)
            .checksum_at_append(at_append)
            .channels(&["display", "inputs"]);
        if direct {
            cfg = cfg.staging(StagingChoice::CaptureDir);
        }
        let spool = spool(cfg);
        wait_ready(&spool, "display", 1);
        // Data records of every size up to 1.5 KiB, and gap records: drops
        // while the background is held.
        append_all(&spool, 0, 100);
        spool.hold_background(true);
        let mut i = 100;
        while spool.counters("display").unwrap().dropped_records < 5 {
            spool.append_at("display", Direction::ServerToClient, i, &record(i));
            i += 1;
        }
        spool.hold_background(false);
        wait_ready(&spool, "display", 1);
        for j in 0..400 {
            append_kept(
                &spool,
                "display",
                Direction::ServerToClient,
                i + j,
                &record(i + j),
            );
        }
        // Records large enough for the hot path to store their CRCs.
        for j in 400..430 {
            let len = spool::CRC_AT_APPEND_MIN + (j as usize * 977) % 30_000;
            let p = payload(j as usize, len);
            append_kept(&spool, "display", Direction::ServerToClient, i + j, &p);
        }
        wait_ready(&spool, "inputs", 1);
        assert!(spool.append("inputs", Direction::ClientToServer, b"one record"));
        spool.close().unwrap();

        let segments = capture_segments(&dirs.capture());
        assert!(
            segments.len() >= 5,
            "direct={direct} at_append={at_append}: {segments:?}"
        );
        for path in &segments {
            let c = segment_checksums(path);
            assert!(
                c.flagged && c.exact_header_crc,
                "direct={direct} at_append={at_append}: {} not flagged: {c:?}",
                path.display()
            );
            assert!(
                c.sealed_at_end,
                "direct={direct} at_append={at_append}: {} does not end with its seal: {c:?}",
                path.display()
            );
        }
        let got = read_channel(&dirs.capture(), "display");
        assert!(
            got.damage.is_empty(),
            "direct={direct} at_append={at_append}: {:?}",
            got.damage
        );
        assert!(!got.gaps.is_empty());
        assert!(got.closed_cleanly);
        let inputs = read_channel(&dirs.capture(), "inputs");
        assert!(inputs.damage.is_empty());
        assert_eq!(inputs.records.len(), 1);
    }
}

/// Staged segments are read in place before the retirer has flagged them,
/// their CRCs still zero: every record here is smaller than
/// `CRC_AT_APPEND_MIN`, so the hot path stores none (the test after this
/// one has records that get theirs at append).
#[test]
fn staged_segments_are_read_in_place_with_their_crcs_still_zero() {
    for direct in [false, true] {
        let dirs = Dirs::new();
        let mut cfg = dirs
            .config()
            .segment_bytes(64 << 10)
            .ready_ahead(3)
            .channels(&["display"]);
        if direct {
            cfg = cfg.staging(StagingChoice::CaptureDir);
        }
        let spool = spool(cfg);
        wait_ready(&spool, "display", 1);
        // One rotation first, so the channel counts as busy and gets three
        // segments prepared ahead; segment 0 is checksummed and moved.
        let mut first = 0;
        while spool.counters("display").unwrap().segments < 2 {
            append_kept(
                &spool,
                "display",
                Direction::ServerToClient,
                first,
                &record(first),
            );
            first += 1;
        }
        let moved = dirs.capture().join("spool/display/00000000.seg");
        let staged0 = spool.staging_dir().join("display/00000000.seg");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(moved.exists() && segment_checksums(&moved).flagged)
            || (!direct && staged0.exists())
            || (direct && std::fs::metadata(&moved).unwrap().len() == 64 << 10)
        {
            assert!(Instant::now() < deadline, "segment 0 never moved");
            std::thread::sleep(Duration::from_millis(5));
        }
        wait_ready(&spool, "display", 3);
        std::thread::sleep(Duration::from_millis(50));
        // Nothing moves and nothing is checksummed from here on: about two
        // and a half segments' worth of records, two full segments waiting
        // for the retirer and one live.
        spool.hold_background(true);
        let n = first + 200;
        append_all(&spool, first, n);
        assert!(spool.counters("display").unwrap().segments >= 4);

        let cap = Capture::open(&dirs.capture()).unwrap();
        let files = &cap.channels()[0];
        let mut unflagged = 0;
        let mut zero_crcs = 0;
        for seg in &files.segments {
            let c = segment_checksums(&seg.path);
            if seg.index == 0 {
                assert!(c.flagged && !seg.staged, "{c:?}");
                continue;
            }
            assert_eq!(seg.staged, !direct);
            assert!(
                !c.flagged,
                "{} flagged before retirement",
                seg.path.display()
            );
            // The hot path wrote no CRC at all.
            assert_eq!(c.zero_crcs, c.records, "{c:?}");
            unflagged += 1;
            zero_crcs += c.zero_crcs;
        }
        assert!(unflagged >= 3, "{:?}", files.segments);
        assert!(zero_crcs as u64 > n - first);

        // The reader and the follower accept them on tag and length...
        let got = read_channel(&dirs.capture(), "display");
        assert!(got.damage.is_empty(), "direct={direct}: {:?}", got.damage);
        let want: Vec<Vec<u8>> = (0..n).map(record).collect();
        let read: Vec<Vec<u8>> = got.records.into_iter().map(|r| r.data).collect();
        assert!(read == want, "direct={direct}: reader");
        assert!(
            follow_once(&dirs.capture()) == want,
            "direct={direct}: follower"
        );

        // ...and once moved, the same records carry their CRCs.
        spool.hold_background(false);
        spool.close().unwrap();
        for path in capture_segments(&dirs.capture()) {
            let c = segment_checksums(&path);
            assert!(
                c.flagged && c.exact_header_crc && c.sealed_at_end,
                "{}: {c:?}",
                path.display()
            );
        }
        let got = read_channel(&dirs.capture(), "display");
        assert!(got.damage.is_empty(), "{:?}", got.damage);
        let read: Vec<Vec<u8>> = got.records.into_iter().map(|r| r.data).collect();
        assert!(read == want);
    }
}

/// In a session that stores CRCs at append, a live segment's records of
/// at least `CRC_AT_APPEND_MIN` bytes carry their CRC before the retirer
/// has seen them, smaller ones none; readers check the first and take the
/// second on tag and length. Off (the memory ring's way), none carries one.
#[test]
fn the_hot_path_stores_the_crcs_of_large_records_only() {
    let min = spool::CRC_AT_APPEND_MIN;
    let sizes = [1, 64, 1024, min - 1, min, min + 1, 10_000, 65_536];
    let sent: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(i, n))
        .collect();
    for at_append in [true, false] {
        let dirs = Dirs::new();
        let spool = spool(
            dirs.config()
                .segment_bytes(256 << 10)
                .checksum_at_append(at_append)
                .channels(&["display"]),
        );
        wait_ready(&spool, "display", 1);
        spool.hold_background(true);
        for p in &sent {
            assert!(spool.append("display", Direction::ServerToClient, p));
        }
        let live = spool.staging_dir().join("display/00000000.seg");
        // Every CRC stored matches (the walk checks a nonzero one).
        let c = segment_checksums(&live);
        assert!(!c.flagged && c.records == sizes.len(), "{c:?}");
        assert_eq!(c.data_crcs.len(), sizes.len());
        for &(len, set) in &c.data_crcs {
            let stored = at_append && len >= min;
            assert_eq!(set, stored, "at_append={at_append}: {len} bytes");
        }
        let got = read_channel(&dirs.capture(), "display");
        assert!(got.damage.is_empty(), "{:?}", got.damage);
        let read: Vec<Vec<u8>> = got.records.into_iter().map(|r| r.data).collect();
        assert!(read == sent, "at_append={at_append}: reader");
        assert!(follow_once(&dirs.capture()) == sent, "follower");
        spool.hold_background(false);
        spool.close().unwrap();
    }
}

#[test]
fn in_a_flagged_segment_a_zeroed_crc_is_damage() {
    let dirs = Dirs::new();
    // Uncompressed, to edit a record in place (`compressed.rs` does the
    // same inside a block).
    let spool = spool(
        dirs.config()
            .compress(false)
            .segment_bytes(64 << 10)
            .ready_ahead(4)
            .channels(&["display"]),
    );
    wait_ready(&spool, "display", 1);
    let n = 200;
    for i in 0..n {
        while !spool.append_at("display", Direction::ServerToClient, i, &record(i)) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    spool.close().unwrap();
    let segments = capture_segments(&dirs.capture());
    let path = &segments[1];
    assert!(segment_checksums(path).flagged);
    // Zero the CRC of the third data record of the segment: exactly what a
    // staged record looks like, but this segment says its CRCs are complete.
    let mut bytes = std::fs::read(path).unwrap();
    let mut at = 128;
    let mut data_seen = 0;
    loop {
        if bytes[at] == spool::store::format::RecordKind::Data.to_byte() {
            data_seen += 1;
            if data_seen == 3 {
                break;
            }
        }
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += spool::store::format::record_len(len);
    }
    let victim = u64::from_le_bytes(bytes[at + 24..at + 32].try_into().unwrap());
    bytes[at + 20..at + 24].fill(0);
    std::fs::write(path, &bytes).unwrap();

    let got = read_channel(&dirs.capture(), "display");
    assert_eq!(got.damage.len(), 1, "{:?}", got.damage);
    let d = &got.damage[0];
    assert_eq!(d.kind, DamageKind::Corrupt);
    assert_eq!(d.offset, at as u64);
    assert_eq!(d.records_lost, 1);
    let want: Vec<Vec<u8>> = (0..n).filter(|&i| i != victim).map(record).collect();
    let read: Vec<Vec<u8>> = got.records.into_iter().map(|r| r.data).collect();
    assert_eq!(read, want);

    // The follower does not take it either.
    let mut follower = Follower::open(&dirs.capture()).unwrap();
    let mut followed = Vec::new();
    let mut damage = 0;
    let mut polls = 0;
    while follower.poll(&mut |_, ev| match ev {
        Event::Data(d) => followed.push(u64::from_le_bytes(d.payload[..8].try_into().unwrap())),
        Event::Damage(_) => damage += 1,
        Event::Gap(_) => {}
    }) == Status::Running
    {
        polls += 1;
        assert!(polls < 10, "the follower never finished a closed capture");
    }
    assert!(damage > 0);
    assert!(!followed.contains(&victim));
}
