//! The memory-only ring (`SpoolConfig::memory_ring`): nothing reaches the
//! capture directory, memory stays within the budget however much is
//! written, the newest records read back intact and in order while the
//! ring runs (trimmed segments are not damage), the oldest segments are
//! recycled rather than freshly allocated, and a close leaves nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use spool::{Direction, Manifest, SpoolConfig, StagingChoice};

const SEGMENT: usize = 64 << 10;
const BUDGET: u64 = 16 * SEGMENT as u64;

fn ring(dirs: &Dirs) -> spool::Spool {
    let mut cfg = SpoolConfig::memory_ring(dirs.capture(), BUDGET)
        .staging(StagingChoice::Root(dirs.staging_root()))
        .segment_bytes(SEGMENT)
        .channels(&["display", "inputs"]);
    cfg.spare_segments = 2;
    spool(cfg)
}

/// Appends `n` records of `len` bytes to `channel`, numbered from `first`
/// in their first 8 bytes, retrying a refused append after a pause (the
/// preparer runs behind a test that writes at memory speed). Returns the
/// refusals.
fn write_numbered(s: &spool::Spool, channel: &str, first: u64, n: u64, len: usize) -> u64 {
    let mut refused = 0;
    for i in first..first + n {
        let mut rec = payload(i as usize, len);
        rec[..8].copy_from_slice(&i.to_le_bytes());
        while !s.append_at(channel, Direction::ServerToClient, i, &rec) {
            refused += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    refused
}

fn numbers(dump: &ChannelDump) -> Vec<u64> {
    dump.records
        .iter()
        .map(|r| u64::from_le_bytes(r.data[..8].try_into().unwrap()))
        .collect()
}

/// Bytes of regular files under `dir`, recursively.
fn file_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => file_bytes(&e.path()),
            // Segments and spares, not the staging directory's own files.
            Ok(t)
                if t.is_file()
                    && !spool::store::staging::is_own_entry(&e.file_name().to_string_lossy()) =>
            {
                e.metadata().map_or(0, |m| m.len())
            }
            _ => 0,
        })
        .sum()
}

#[test]
fn a_ring_keeps_the_newest_records_in_memory_within_its_budget() {
    let dirs = Dirs::new();
    let s = ring(&dirs);
    // Ten times the budget, in 4 KiB records; a few on inputs first, so
    // that a quiet channel's old segment is in the ring too.
    write_numbered(&s, "inputs", 0, 10, 100);
    let total = 10 * BUDGET / 4096;
    write_numbered(&s, "display", 0, total, 4096);
    std::thread::sleep(Duration::from_millis(200));

    let staged = file_bytes(&dirs.staging_root());
    assert!(staged <= BUDGET, "staged {staged} > budget {BUDGET}");
    assert_eq!(
        file_bytes(&dirs.capture().join("spool")),
        0,
        "nothing may reach the capture directory"
    );
    assert!(s.segments_reused() > 0, "trimmed segments are recycled");

    let got = read_channel(&dirs.capture(), "display");
    assert!(
        got.damage.is_empty(),
        "a ring's trims are no damage: {:?}",
        got.damage
    );
    let nums = numbers(&got);
    // The newest records, contiguous up to the last one written.
    assert_eq!(nums.last(), Some(&(total - 1)));
    let first = nums[0];
    assert!(first > 0, "the oldest records were trimmed");
    assert_eq!(nums, (first..total).collect::<Vec<_>>());
    // And a good part of the budget's worth of them.
    assert!(
        nums.len() as u64 * 4096 >= BUDGET / 4,
        "{} records kept",
        nums.len()
    );
    let inputs = read_channel(&dirs.capture(), "inputs");
    assert!(inputs.damage.is_empty(), "{:?}", inputs.damage);

    let staging = dirs.staging_root();
    s.close().unwrap();
    assert!(
        !dirs.capture().exists(),
        "a closed ring leaves no capture directory"
    );
    assert_eq!(
        file_bytes(&staging),
        0,
        "a closed ring leaves nothing staged"
    );
}

#[test]
fn a_ring_says_so_in_its_manifest_and_records_what_it_trimmed() {
    let dirs = Dirs::new();
    let s = ring(&dirs);
    write_numbered(&s, "display", 0, 4 * BUDGET / 4096, 4096);
    // The manifest is rewritten at most once a second for trims.
    let deadline = Instant::now() + Duration::from_secs(5);
    let manifest = loop {
        let m = Manifest::load(&dirs.capture().join("manifest.json")).unwrap();
        if m.trimmed.contains_key("display") || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(manifest.memory_only);
    assert!(manifest.staging_dir.is_some());
    let t = manifest.trimmed["display"];
    assert!(
        t.segments > 0 && t.records > 0 && t.first_kept_index > 0,
        "{t:?}"
    );
    s.close().unwrap();
}

#[test]
fn a_reader_holding_the_ring_reads_whole_and_one_that_does_not_sees_holes_as_damage() {
    let dirs = Dirs::new();
    let s = std::sync::Arc::new(ring(&dirs));
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || write_numbered(&s, "display", 0, 20 * BUDGET / 4096, 4096))
    };
    let (mut held_reads, mut free_reads) = (0, 0);
    while !writer.is_finished() {
        let hold = (held_reads <= free_reads).then(|| s.hold_trims());
        let got = read_channel(&dirs.capture(), "display");
        let nums = numbers(&got);
        if hold.is_some() {
            held_reads += 1;
            assert!(
                got.damage.iter().all(|d| d.is_torn_tail()),
                "{:?}",
                got.damage
            );
            if let (Some(&a), Some(&b)) = (nums.first(), nums.last()) {
                assert_eq!(nums, (a..=b).collect::<Vec<_>>(), "held read {held_reads}");
            }
        } else {
            free_reads += 1;
            // Records always in order; a jump only where damage says so.
            assert!(nums.windows(2).all(|w| w[0] < w[1]));
            let jumps = nums.windows(2).filter(|w| w[1] != w[0] + 1).count();
            assert!(jumps <= got.damage.len(), "{jumps} holes, {:?}", got.damage);
        }
    }
    writer.join().unwrap();
    assert!(
        held_reads >= 2,
        "only {held_reads} held reads overlapped the writer"
    );
    s.close().unwrap();
}

#[test]
fn a_ring_needs_memory_backed_staging() {
    let dirs = Dirs::new();
    let cfg = SpoolConfig::memory_ring(dirs.capture(), BUDGET)
        .segment_bytes(SEGMENT)
        .staging(StagingChoice::CaptureDir);
    assert!(matches!(
        spool::Spool::create(cfg),
        Err(spool::SpoolError::NoMemoryStaging)
    ));
}
