//! A spool can be read while it is being written: a reader sees a prefix of
//! what was appended, and never a record that is not complete.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use spool::read::capture::Capture;
use spool::read::event::Event;
use spool::read::follow::Follower;
use spool::Direction;

/// Readers and a follower of a spool being written, with tiny segments
/// rotating all the time (created, reused once moved — see
/// `spool::write::spare` — and moved under them): every record they see is
/// complete and the next one written, and no damage is found.
#[test]
fn live_readers_and_followers_see_only_complete_records_in_order() {
    let dirs = Dirs::new();
    let spool = small_segments(&dirs, &["display"]);
    const RECORDS: u64 = 60_000;
    let done = AtomicBool::new(false);
    let record = |i: u64| {
        let mut v = payload(i as usize, 200 + (i as usize * 53) % 1500);
        v[..8].copy_from_slice(&i.to_le_bytes());
        v
    };
    let check = |next: &mut u64, ev: Event<'_>, who: &str| match ev {
        Event::Data(d) => {
            assert!(
                d.payload == record(*next).as_slice(),
                "{who}: record {next} is not the one written next"
            );
            *next += 1;
        }
        Event::Gap(_) => {}
        Event::Damage(d) => assert!(d.is_torn_tail(), "{who} found {d}"),
    };
    let mut reads = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while i < RECORDS {
                if spool.append_at("display", Direction::ServerToClient, i, &record(i)) {
                    i += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            done.store(true, Ordering::Release);
        });
        s.spawn(|| {
            let mut follower = Follower::open(&dirs.capture()).unwrap();
            let mut next = 0u64;
            while !done.load(Ordering::Acquire) {
                follower.poll(&mut |_, ev| check(&mut next, ev, "follower"));
            }
        });
        while !done.load(Ordering::Acquire) {
            let cap = Capture::open(&dirs.capture()).unwrap();
            let Some(mut r) = cap.reader("display") else {
                continue;
            };
            let mut next = 0u64;
            while let Some(ev) = r.next_event() {
                check(&mut next, ev, "reader");
            }
            reads += 1;
        }
    });
    spool.close().unwrap();
    assert!(reads >= 2, "only {reads} reads overlapped the writer");
    let got = read_channel(&dirs.capture(), "display");
    assert_eq!(got.records.len(), RECORDS as usize);
}
