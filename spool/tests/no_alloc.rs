//! The hot path does no heap allocation in steady state, rotations included.
//!
//! A counting global allocator counts allocations made by the test thread
//! while the switch is on; the background threads' own allocations (paths,
//! error strings) do not count against the hot path.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use common::*;
use spool::Direction;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            }
        });
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            }
        });
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, COUNT.with(|c| c.get()))
}

#[test]
fn append_allocates_nothing() {
    let dirs = Dirs::new();
    let spool = spool(
        dirs.config()
            .segment_bytes(256 << 10)
            .ready_ahead(4)
            .channels(&["display", "inputs"]),
    );
    let data = vec![0x5au8; 4096];
    // Warm up: first use of every code path outside the counted region.
    assert!(spool.append("display", Direction::ServerToClient, &data));
    let deadline = Instant::now() + Duration::from_secs(10);
    while spool.ready_segments("display") < 1 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    // Measure in batches that fit the prepared segments, waiting for the
    // preparer between batches (outside the count) so rotations happen inside.
    let mut total_allocs = 0;
    let mut accepted = 0;
    // The counter itself works.
    assert_eq!(counted(|| std::hint::black_box(Box::new(1u64))).1, 1);
    let rotations_before = spool.counters("display").unwrap().segments;
    for _ in 0..20 {
        let (ok, allocs) = counted(|| {
            let mut ok = 0;
            for i in 0..80 {
                ok += spool.append("display", Direction::ServerToClient, &data[..1000 + i * 37])
                    as u32;
                ok += spool.append("inputs", Direction::ClientToServer, &data[..16]) as u32;
            }
            // A dropped record must not allocate either.
            spool.append("display", Direction::ServerToClient, vec_free_big());
            ok
        });
        accepted += ok;
        total_allocs += allocs;
        std::thread::sleep(Duration::from_millis(20));
    }
    let rotations = spool.counters("display").unwrap().segments - rotations_before;
    assert!(
        rotations >= 5,
        "only {rotations} rotations: test did not exercise them"
    );
    assert!(accepted > 3000);
    assert_eq!(total_allocs, 0, "the hot path allocated");
    spool.close().unwrap();
}

/// A record larger than a segment, without allocating in the counted region.
fn vec_free_big() -> &'static [u8] {
    static BIG: [u8; 300 << 10] = [0; 300 << 10];
    &BIG
}
