//! Records go in through the writer and come out of the reader unchanged.

mod common;

use common::*;
use spool::{Direction, Manifest};

#[test]
fn records_round_trip_across_rotations() {
    let dirs = Dirs::new();
    let spool = spool(dirs.config().segment_bytes(64 << 10).ready_ahead(4));
    let mut sent = Vec::new();
    for i in 0..3000usize {
        let dir = if i % 3 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let data = payload(i, (i * 37) % 700 + 1);
        // This test is about order and content: if the preparer falls
        // behind, retry (the drop becomes a gap record, checked below).
        append_kept(&spool, "display", dir, i as u64 * 10, &data);
        sent.push(Rec {
            dir,
            ts: i as u64 * 10,
            data,
        });
        if i % 50 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    spool.close().unwrap();
    let got = read_channel(&dirs.capture(), "display");
    assert!(got.damage.is_empty(), "{:?}", got.damage);
    let c = spool.counters("display").unwrap();
    assert_eq!(got.gaps.iter().map(|g| g.0).sum::<u64>(), c.dropped_records);
    assert!(got.closed_cleanly);
    assert_eq!(got.records.len(), sent.len());
    assert_eq!(got.records, sent);
    assert_eq!(c.records, 3000);
    assert!(
        c.segments > 10,
        "expected rotations, got {} segments",
        c.segments
    );

    let m = Manifest::load(&dirs.capture().join("manifest.json")).unwrap();
    assert!(m.clean_shutdown);
    assert_eq!(m.staging_dir, None);
    assert_eq!(m.channels["display"].records, 3000);
    // Staging directory removed.
    assert_eq!(std::fs::read_dir(dirs.staging_root()).unwrap().count(), 0);
}

#[test]
fn close_is_idempotent_and_later_appends_drop() {
    let dirs = Dirs::new();
    let spool = spool(dirs.config());
    assert!(spool.append("main", Direction::ClientToServer, b"hello"));
    spool.close().unwrap();
    spool.close().unwrap();
    assert!(!spool.append("main", Direction::ClientToServer, b"late"));
    let c = spool.counters("main").unwrap();
    assert_eq!((c.records, c.dropped_records, c.dropped_bytes), (1, 1, 4));
    let got = read_channel(&dirs.capture(), "main");
    assert_eq!(got.records.len(), 1);
    assert_eq!(got.records[0].data, b"hello");
}

#[test]
fn invalid_channel_names_are_refused_not_created() {
    let dirs = Dirs::new();
    let spool = spool(dirs.config());
    for bad in ["../evil", "a/b", "", "UPPER", "..", "x".repeat(40).as_str()] {
        assert!(!spool.append(bad, Direction::ClientToServer, b"x"));
    }
    assert_eq!(spool.rejected(), 6);
    spool.close().unwrap();
    assert_eq!(
        std::fs::read_dir(dirs.capture().join("spool"))
            .unwrap()
            .count(),
        0
    );
    assert!(!dirs.capture_parent.path().join("evil").exists());
}

#[test]
fn oversized_record_is_a_counted_drop_and_a_gap() {
    let dirs = Dirs::new();
    let spool = spool(dirs.config().segment_bytes(64 << 10));
    assert!(spool.append_at("display", Direction::ServerToClient, 1, b"before"));
    assert!(!spool.append_at("display", Direction::ServerToClient, 2, &vec![1u8; 70_000]));
    assert!(spool.append_at("display", Direction::ServerToClient, 3, b"after"));
    spool.close().unwrap();
    let c = spool.counters("display").unwrap();
    assert_eq!((c.dropped_records, c.dropped_bytes), (1, 70_000));
    let got = read_channel(&dirs.capture(), "display");
    assert_eq!(got.records.len(), 2);
    assert_eq!(got.gaps, vec![(1, 70_000)]);
}

#[test]
fn files_and_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dirs = Dirs::new();
    let spool = spool(dirs.config());
    spool.append("inputs", Direction::ClientToServer, b"k");
    spool.close().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let cap = dirs.capture();
    assert_eq!(mode(&cap), 0o700);
    assert_eq!(mode(&cap.join("spool")), 0o700);
    assert_eq!(mode(&cap.join("spool/inputs")), 0o700);
    assert_eq!(mode(&cap.join("spool/inputs/00000000.seg")), 0o600);
    assert_eq!(mode(&cap.join("manifest.json")), 0o600);
}

/// Creating a spool must not need a large stack: the channel table (tens of
/// KiB) lives on the heap. A thread with 64 KiB of stack creates, uses and
/// closes one.
#[test]
fn a_spool_works_on_a_64_kib_stack() {
    let dirs = Dirs::new();
    let config = dirs.config().channels(&["main"]);
    let worker = std::thread::Builder::new()
        .stack_size(64 << 10)
        .spawn(move || {
            let spool = spool::Spool::create(config).unwrap();
            assert!(spool.append("main", Direction::ClientToServer, b"hello"));
            assert!(spool.append("cursor", Direction::ServerToClient, b"new channel"));
            spool.close().unwrap();
        })
        .unwrap();
    worker.join().unwrap();
    assert_eq!(read_channel(&dirs.capture(), "main").records.len(), 1);
    assert_eq!(read_channel(&dirs.capture(), "cursor").records.len(), 1);
}
