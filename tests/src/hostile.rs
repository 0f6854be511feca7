//! Hostile captures built to make a reader spend time or memory: one
//! generator per way in of issue 24's resource classes, each sized by its
//! caller. The bounds tests (`tests/tests/hostile_captures.rs`), the bounds
//! bench (`benches/bounds.rs`) and the fuzz corpus seeds
//! ([`crate::fuzzing::seeds`]) build them here, so that one definition of
//! each input is what all three run.
//!
//! The generators of single segments, and the oracles that hold a
//! reader's work against a segment's size, live in
//! [`crate::fuzzing`] (the fuzz crate builds that file alone) and are
//! re-exported here.
//!
//! These are test helpers: they panic when the file system refuses.

use std::path::Path;

use spool::store::block;
use spool::store::format::{self, Direction, SEGMENT_HEADER_LEN};
pub use spool2pcap::capture_builder::{write_manifest, SESSION_HEX};
use spool2pcap::capture_builder::{write_segment, Seg};

pub use crate::fuzzing::{
    assert_inflation_bounded, assert_resync_bounded, compressed_flood_segment, compressed_segment,
    compressed_segment_of, inflating_segment, resync_flood, resync_flood_segment,
};

/// A closed capture whose channel `main` is [`resync_flood_segment`].
pub fn resync_flood_capture(dir: &Path, len: usize) {
    write_segment(dir, "main", 0, &resync_flood_segment(len));
    write_manifest(dir, serde_json::json!({}));
}

/// A closed capture of one compressed segment holding [`resync_flood`] of
/// `raw` bytes (at most [`block::MAX_BLOCK_RAW`]) in one zstd block: a few
/// hundred bytes on disk.
pub fn compressed_flood_capture(dir: &Path, raw: usize) {
    write_segment(dir, "main", 0, &compressed_flood_segment(raw));
    write_manifest(dir, serde_json::json!({}));
}

/// A closed capture whose compressed segments hold blocks of 8 MiB of
/// zeroes, each a few hundred bytes on disk, until about `disk` bytes;
/// every segment claims the largest capacity there is and places its
/// blocks one after the other (class 2). A reader that trusts the blocks
/// inflates some 30,000 times the file's size and finds nothing wrong.
pub fn inflating_capture(dir: &Path, disk: usize) {
    let zeros = vec![0u8; block::MAX_BLOCK_RAW];
    let per_block = block::block_len(zstd::bulk::compress(&zeros, 19).unwrap().len());
    let per_segment = (format::MAX_SEGMENT_BYTES as usize) / block::MAX_BLOCK_RAW;
    let total = (disk / per_block).max(1);
    for (index, start) in (0..total).step_by(per_segment).enumerate() {
        let seg = inflating_segment(index as u64, per_segment.min(total - start));
        write_segment(dir, "main", index as u64, &seg);
    }
    write_manifest(dir, serde_json::json!({}));
}

/// A closed capture whose compressed segments hold identical gap records
/// (same sequence number: no loss to report), block after block up to
/// `capacity` bytes (at most [`format::MAX_SEGMENT_BYTES`]), `segments`
/// of them: a few hundred KB that decompress to millions of records
/// (class 4, the follower's batch).
pub fn gap_flood_capture(dir: &Path, segments: u64, capacity: u64) {
    let mut one = Seg::new("main", 0, 0);
    one.gap_counts(5, [1, 1], [1, 1]);
    flood_capture(dir, one, segments, capacity);
}

/// Channel `main` of `segments` compressed segments of `capacity` bytes
/// (at most [`format::MAX_SEGMENT_BYTES`]) holding the one record of `one`
/// over and over, block after block.
fn flood_capture(dir: &Path, one: Seg, segments: u64, capacity: u64) {
    let capacity = capacity.min(format::MAX_SEGMENT_BYTES);
    let rec = one.finish(0)[SEGMENT_HEADER_LEN..].to_vec();
    let raw: Vec<u8> = rec
        .iter()
        .copied()
        .cycle()
        .take(rec.len() * (block::MAX_BLOCK_RAW / rec.len()))
        .collect();
    let per_segment = (capacity as usize).saturating_sub(SEGMENT_HEADER_LEN) / raw.len();
    for index in 0..segments {
        let blocks: Vec<(u64, &[u8])> = (0..per_segment)
            .map(|i| ((SEGMENT_HEADER_LEN + i * raw.len()) as u64, &raw[..]))
            .collect();
        let seg = compressed_segment(index, capacity, &blocks);
        write_segment(dir, "main", index, &seg);
    }
    write_manifest(dir, serde_json::json!({}));
}

/// A closed capture whose compressed segments hold identical empty data
/// records (same sequence number: no loss to report), block after block
/// up to `capacity` bytes (at most [`format::MAX_SEGMENT_BYTES`]),
/// `segments` of them: a few hundred KB that decompress to millions of
/// data records (class 2, the F12 bundle's index).
pub fn data_flood_capture(dir: &Path, segments: u64, capacity: u64) {
    let mut one = Seg::new("main", 0, 0);
    one.data(Direction::ServerToClient, 5, b"");
    flood_capture(dir, one, segments, capacity);
}

/// A closed capture of `n` channels (`c0`, `c1`, …) of one record each
/// (class 3).
pub fn many_channels_capture(dir: &Path, n: usize) {
    for i in 0..n {
        let name = format!("c{i}");
        let mut s = Seg::new(&name, 0, 0);
        s.data(Direction::ServerToClient, i as u64, b"x");
        s.seal(true);
        write_segment(dir, &name, 0, &s.finish(0));
    }
    write_manifest(dir, serde_json::json!({}));
}

/// A closed capture of `n` channels (`c0`, `c1`, …), each one compressed
/// segment of one block of the largest size there is, 8 MiB of data
/// records of 1 KiB of zeroes, a few KB on disk; channel `i`'s records at
/// time `i`, so that a merge takes one record of each in turn. A merge
/// that holds every channel's block at once holds `n` × 8 MiB.
pub fn block_channels_capture(dir: &Path, n: usize) {
    let raw_of = |name: &str, ts: u64| {
        let mut one = Seg::new(name, 0, 0);
        one.data(Direction::ServerToClient, ts, &[0; 1024]);
        let rec = one.finish(0)[SEGMENT_HEADER_LEN..].to_vec();
        let count = block::MAX_BLOCK_RAW / rec.len();
        rec.repeat(count)
    };
    for i in 0..n {
        let name = format!("c{i}");
        let raw = raw_of(&name, i as u64);
        let cap = (SEGMENT_HEADER_LEN + raw.len()) as u64;
        let seg = compressed_segment_of(&name, 0, cap, &[(SEGMENT_HEADER_LEN as u64, &raw)], 1);
        write_segment(dir, &name, 0, &seg);
    }
    write_manifest(dir, serde_json::json!({}));
}

/// A closed capture whose channel `main` has `n` segments at every other
/// index (0, 2, 4, …): half its segments lost (class 3).
pub fn every_other_missing_capture(dir: &Path, n: u64) {
    for k in 0..n {
        let index = 2 * k;
        let mut s = Seg::new("main", index, 2 * k);
        s.data(Direction::ServerToClient, k, b"x");
        s.seal(k + 1 == n);
        write_segment(dir, "main", index, &s.finish(0));
    }
    write_manifest(dir, serde_json::json!({}));
}

/// A crashed capture of `channels` channels whose one segment each holds a
/// record and is then extended, sparse, to `len` bytes: a few KB on disk
/// that a reader holding whole segments holds as `channels * len` bytes
/// (class 4).
pub fn sparse_capture(dir: &Path, channels: usize, len: u64) {
    for i in 0..channels {
        let name = format!("s{i}");
        let mut s = Seg::new(&name, 0, 0);
        s.data(
            Direction::ServerToClient,
            i as u64,
            b"record before the crash",
        );
        set_file_len(&write_segment(dir, &name, 0, &s.finish(0)), len);
    }
    write_manifest(
        dir,
        serde_json::json!({"clean_shutdown": false, "closed_unix_ns": null}),
    );
}

/// A closed capture of nothing hostile, for comparison: channel `main`
/// holding about `bytes` of data records of 1 to 16 KiB in segments of
/// 64 MiB, as the writer leaves them uncompressed.
pub fn plain_capture(dir: &Path, bytes: usize) {
    plain_channel(dir, "main", bytes);
    write_manifest(dir, serde_json::json!({}));
}

/// A closed capture of `channels` channels each holding about `bytes` of
/// real data records, all at once in time: a merged conversion reads them
/// all together. A reader that held a segment whole held `channels` of
/// them; one that reads through a window holds a window each.
pub fn dense_channels_capture(dir: &Path, channels: usize, bytes: usize) {
    for i in 0..channels {
        plain_channel(dir, &format!("d{i}"), bytes);
    }
    write_manifest(dir, serde_json::json!({}));
}

/// Channel `name` of [`plain_capture`].
fn plain_channel(dir: &Path, name: &str, bytes: usize) {
    const SEGMENT: usize = 64 << 20;
    let payload: Vec<u8> = (0..16 << 10).map(|i| (i * 7 % 251) as u8).collect();
    let (mut written, mut index, mut seq, mut ts) = (0, 0u64, 0u64, 0u64);
    while written < bytes {
        let mut s = Seg::new(name, index, seq);
        let mut used = SEGMENT_HEADER_LEN;
        while used + (17 << 10) + 64 < SEGMENT && written < bytes {
            let len = 1024 + (ts as usize * 4099) % (15 << 10);
            s.data(Direction::ServerToClient, ts, &payload[..len]);
            used += format::record_len(len);
            written += len;
            ts += 1;
            seq += 1;
        }
        s.seal(written >= bytes);
        seq += 1;
        write_segment(dir, name, index, &s.finish(0));
        index += 1;
    }
}

/// A closed capture whose channel `main` is one segment of about `len`
/// bytes in which every other record is damaged (a checksum byte
/// flipped): a damaged range every 48 bytes, millions of them. A reader
/// keeps the first [`spool::read::event::MAX_DAMAGE_KEPT`] in detail and
/// counts the rest.
pub fn damage_flood_capture(dir: &Path, len: usize) {
    let mut s = Seg::new("main", 0, 0);
    let mut damaged = Vec::new();
    let mut ts = 0;
    while (ts as usize + 2) * format::record_len(0) < len {
        let at = s.data(Direction::ServerToClient, ts, b"");
        if ts % 2 == 1 {
            damaged.push(at);
        }
        ts += 1;
    }
    s.seal(true);
    let mut bytes = s.finish(0);
    for at in damaged {
        // The record's CRC field.
        bytes[at + 20] ^= 0xff;
    }
    write_segment(dir, "main", 0, &bytes);
    write_manifest(dir, serde_json::json!({}));
}

/// A capture whose one segment file is sparse and `len` bytes long,
/// larger than any segment may be (class 9).
pub fn too_large_capture(dir: &Path, len: u64) {
    let mut s = Seg::new("main", 0, 0);
    s.data(Direction::ServerToClient, 1, b"x");
    s.seal(true);
    set_file_len(&write_segment(dir, "main", 0, &s.finish(0)), len);
    write_manifest(dir, serde_json::json!({}));
}

/// Manifest fields of a stranger's making, over ryll's: a session id of
/// 35,000 characters and escape sequences
/// ([`testkit::text::TERMINAL_ESCAPES`]), writer errors of 70,000, and
/// 5,000 trimmed entries for channels that do not exist, named with
/// escapes too.
pub fn hostile_manifest_strings() -> serde_json::Map<String, serde_json::Value> {
    let evil = testkit::text::TERMINAL_ESCAPES;
    let trimmed: serde_json::Map<String, serde_json::Value> = (0..5000)
        .map(|i| {
            (
                format!("gone{i:05}{evil}"),
                serde_json::json!({"segments": 1, "records": 2, "data_bytes": 3,
                    "file_bytes": 4, "first_kept_index": 1, "until_ts_ns": 5}),
            )
        })
        .collect();
    let mut m = serde_json::Map::new();
    m.insert(
        "session_id".into(),
        format!("{evil}{}", "é".repeat(35_000)).into(),
    );
    m.insert(
        "errors".into(),
        vec![format!("boom{evil}{}", "y".repeat(70_000)); 4].into(),
    );
    m.insert("trimmed".into(), trimmed.into());
    m
}

/// Cuts the file at `path` to `len` bytes, or makes it sparse up to them:
/// a segment grown past what was written (a crashed writer's), or cut short
/// under a reader.
pub fn set_file_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .unwrap_or_else(|e| panic!("{}: setting its length to {len}: {e}", path.display()));
}

/// What one run of a command cost.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// Wall-clock time.
    pub wall: std::time::Duration,
    /// Peak resident memory, bytes: what `/usr/bin/time` reports as
    /// "Maximum resident set size" (`ru_maxrss`).
    pub peak_rss: u64,
    /// Exit code, or `None` if a signal ended it (or the timeout killed it).
    pub code: Option<i32>,
    /// The timeout killed it.
    pub timed_out: bool,
}

/// Runs `cmd` under `/usr/bin/time` (its output discarded) and measures
/// it, killing it after `timeout`. Through `time`, not `wait4` here: a
/// child's `ru_maxrss` starts from its parent's at `fork`, and a test or
/// bench that just built a capture in memory is no small parent.
pub fn measure(cmd: &std::process::Command, timeout: std::time::Duration) -> Cost {
    use std::process::{Command, Stdio};
    let report = tempfile::NamedTempFile::new().expect("temp file");
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M %x", "-o"])
        .arg(report.path())
        .arg("timeout")
        .args(["-s", "KILL", &format!("{}", timeout.as_secs_f64())])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    let start = std::time::Instant::now();
    let status = timed.status().expect("/usr/bin/time");
    let wall = start.elapsed();
    let text = std::fs::read_to_string(report.path()).unwrap_or_default();
    // "Command terminated by signal 9" may come first; the numbers last.
    let last = text.lines().last().unwrap_or_default().to_string();
    let mut words = last.split_whitespace();
    let kib: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let code: Option<i32> = words.next().and_then(|w| w.parse().ok());
    // `timeout` exits 137 when it killed the command; a signal of the
    // command's own is reported by `time` as a terminated command.
    let timed_out = status.code() == Some(137) && wall >= timeout;
    let signalled = text.contains("terminated by signal");
    Cost {
        wall,
        peak_rss: kib * 1024,
        code: if timed_out || signalled { None } else { code },
        timed_out,
    }
}
