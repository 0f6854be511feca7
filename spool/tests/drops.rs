//! When no segment is ready the record is dropped, counted, and the drop is
//! written into the spool as a gap record with exact counts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use spool::Direction;

fn wait_ready(spool: &spool::Spool, channel: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while spool.ready_segments(channel) == 0 {
        assert!(Instant::now() < deadline, "preparer never caught up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn drops_while_background_is_held_become_one_exact_gap() {
    let dirs = Dirs::new();
    // 64 KiB segments, one prepared ahead.
    let spool = spool(
        dirs.config()
            .segment_bytes(64 << 10)
            .ready_ahead(1)
            .channels(&["display"]),
    );
    wait_ready(&spool, "display");
    spool.hold_background(true);
    // Drain what is prepared, then keep going: every further record drops.
    let data = vec![0xabu8; 1000];
    let mut accepted = 0u64;
    let mut dropped = [0u64; 2];
    let mut dropped_bytes = [0u64; 2];
    for i in 0..400u64 {
        let dir = if i % 2 == 0 {
            Direction::ServerToClient
        } else {
            Direction::ClientToServer
        };
        let len = 500 + (i as usize % 7) * 10;
        if spool.append_at("display", dir, i, &data[..len]) {
            accepted += 1;
            assert_eq!(dropped, [0, 0], "accepted after a drop while held");
        } else {
            dropped[dir.to_byte() as usize] += 1;
            dropped_bytes[dir.to_byte() as usize] += len as u64;
        }
    }
    assert!(
        accepted > 0 && dropped[0] + dropped[1] > 0,
        "accepted {accepted}, dropped {dropped:?}"
    );
    let c = spool.counters("display").unwrap();
    assert_eq!(c.records, accepted);
    assert_eq!(c.dropped_records, dropped[0] + dropped[1]);
    assert_eq!(c.dropped_bytes, dropped_bytes[0] + dropped_bytes[1]);

    spool.hold_background(false);
    wait_ready(&spool, "display");
    assert!(spool.append_at("display", Direction::ServerToClient, 1000, b"after the gap"));
    spool.close().unwrap();

    let cap = spool::Capture::open(&dirs.capture()).unwrap();
    let mut r = cap.reader("display").unwrap();
    let mut data_records = 0;
    let mut gaps = Vec::new();
    let mut last_before_gap = None;
    while let Some(ev) = r.next_event() {
        match ev {
            spool::read::event::Event::Data(d) => {
                data_records += 1;
                if gaps.is_empty() {
                    last_before_gap = Some(d.ts_ns);
                } else {
                    assert_eq!(d.payload, b"after the gap");
                }
            }
            spool::read::event::Event::Gap(g) => gaps.push(g),
            spool::read::event::Event::Damage(d) => panic!("damage: {d}"),
        }
    }
    assert_eq!(data_records, accepted + 1);
    assert_eq!(gaps.len(), 1);
    let g = gaps[0];
    assert_eq!(g.records_c2s, dropped[0]);
    assert_eq!(g.records_s2c, dropped[1]);
    assert_eq!(g.bytes_c2s, dropped_bytes[0]);
    assert_eq!(g.bytes_s2c, dropped_bytes[1]);
    assert_eq!(last_before_gap, Some(accepted - 1));
    assert_eq!(g.first_ts_ns, accepted);
    assert_eq!(g.last_ts_ns, 399);
}

#[test]
fn staging_budget_bounds_memory_and_drops_instead() {
    let dirs = Dirs::new();
    // Budget of four 64 KiB segments, background moving nothing.
    let spool = spool(
        dirs.config()
            .segment_bytes(64 << 10)
            .staging_budget(4 * (64 << 10))
            .ready_ahead(8)
            .channels(&["display"]),
    );
    spool.hold_background(true);
    for i in 0..2000u64 {
        spool.append_at("display", Direction::ServerToClient, i, &[1u8; 1024]);
        assert!(spool.staged_bytes() <= 4 * (64 << 10));
    }
    let c = spool.counters("display").unwrap();
    assert!(c.dropped_records > 0);
    spool.close().unwrap();
    let got = read_channel(&dirs.capture(), "display");
    assert_eq!(got.records.len() as u64, c.records);
    assert_eq!(got.gaps.iter().map(|g| g.0).sum::<u64>(), c.dropped_records);
}

#[test]
fn one_channel_fed_from_many_threads_keeps_every_record() {
    let dirs = Dirs::new();
    let spool = spool(dirs.config().segment_bytes(1 << 20).channels(&["main"]));
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let spool = &spool;
            s.spawn(move || {
                for i in 0..2000u32 {
                    let mut rec = vec![t; 16];
                    rec[..4].copy_from_slice(&i.to_le_bytes());
                    while !spool.append("main", Direction::ClientToServer, &rec) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
        }
    });
    spool.close().unwrap();
    let got = read_channel(&dirs.capture(), "main");
    assert!(got.damage.is_empty());
    let mut next = [0u32; 4];
    for r in &got.records {
        let t = r.data[4] as usize;
        let i = u32::from_le_bytes(r.data[..4].try_into().unwrap());
        assert_eq!(i, next[t], "thread {t} out of order");
        next[t] += 1;
    }
    assert_eq!(next, [2000; 4]);
    // Timestamps never go backwards within a channel... per thread they don't;
    // across threads the lock orders them.
}

/// `close` takes the channel lock the appenders spin on: it must get it,
/// and afterwards every appender must see its records dropped, not stall.
/// Every record accepted before the close is in the capture, in order per
/// thread, and accepted plus dropped is every call.
#[test]
fn close_while_threads_append_keeps_every_accepted_record() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dirs = Dirs::new();
    let spool = spool(dirs.config().segment_bytes(1 << 20).channels(&["main"]));
    let calls = AtomicU64::new(0);
    let accepted = AtomicU64::new(0);
    let started: [AtomicBool; 3] = Default::default();
    let stop = AtomicBool::new(false);
    let accepted_per_thread = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3u8)
            .map(|t| {
                let (spool, calls, accepted, stop) = (&spool, &calls, &accepted, &stop);
                let started = &started[usize::from(t)];
                s.spawn(move || {
                    let mut mine = 0u32;
                    let mut refused_after_close = 0;
                    while refused_after_close < 100 {
                        let mut rec = vec![t; 24];
                        rec[..4].copy_from_slice(&mine.to_le_bytes());
                        calls.fetch_add(1, Ordering::Relaxed);
                        // Set only once close() has returned.
                        let closed = stop.load(Ordering::Acquire);
                        if spool.append("main", Direction::ClientToServer, &rec) {
                            assert!(!closed, "accepted after close");
                            accepted.fetch_add(1, Ordering::Relaxed);
                            started.store(true, Ordering::Relaxed);
                            mine += 1;
                        } else if stop.load(Ordering::Acquire) {
                            refused_after_close += 1;
                        }
                    }
                    mine
                })
            })
            .collect();
        // Close while all three are appending: on a loaded machine a
        // thread may not run for a while, so wait until each has had a
        // record accepted (then let them race on a little).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !started.iter().all(|s| s.load(Ordering::Relaxed)) {
            assert!(std::time::Instant::now() < deadline, "a thread never ran");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        spool.close().unwrap();
        stop.store(true, Ordering::Release);
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .collect::<Vec<u32>>()
    });
    let c = spool.counters("main").unwrap();
    assert_eq!(c.records, accepted.load(Ordering::Relaxed));
    assert_eq!(c.records + c.dropped_records, calls.load(Ordering::Relaxed));
    let got = read_channel(&dirs.capture(), "main");
    assert!(got.damage.is_empty(), "{:?}", got.damage);
    assert!(got.closed_cleanly);
    let mut next = [0u32; 3];
    for r in &got.records {
        let t = r.data[4] as usize;
        assert_eq!(u32::from_le_bytes(r.data[..4].try_into().unwrap()), next[t]);
        next[t] += 1;
    }
    assert_eq!(next.to_vec(), accepted_per_thread);
    assert!(
        next.iter().all(|&n| n > 0),
        "a thread never got a record in"
    );
}

#[test]
fn channels_do_not_share_segments() {
    let dirs = Dirs::new();
    let spool = spool(dirs.config());
    for i in 0..100u32 {
        spool.append("main", Direction::ClientToServer, &i.to_le_bytes());
        spool.append(
            "cursor",
            Direction::ServerToClient,
            &(i + 1000).to_le_bytes(),
        );
    }
    spool.close().unwrap();
    let main = read_channel(&dirs.capture(), "main");
    let cursor = read_channel(&dirs.capture(), "cursor");
    assert_eq!(main.records.len(), 100);
    assert_eq!(cursor.records.len(), 100);
    assert!(main
        .records
        .iter()
        .all(|r| r.dir == Direction::ClientToServer));
    assert_eq!(cursor.records[5].data, 1005u32.to_le_bytes());
}
