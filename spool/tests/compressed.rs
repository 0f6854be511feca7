//! Compressed at rest: the retirer writes sealed segments as zstd blocks.

mod common;

use std::path::Path;

use common::*;
use spool::compress::{BlockReader, BlockStep};
use spool::format::{parse_record, CrcRule, RecordKind, SegmentHeader, SEGMENT_HEADER_LEN};
use spool::{Direction, DiskLimit};
use zerocopy::FromBytes;

/// A line of a scrolling console, as display traffic carries it: text that
/// repeats with small changes.
fn console(i: usize, len: usize) -> Vec<u8> {
    format!("[{i:06}] eth0: link up, 1000 Mbps full duplex, flow control rx/tx\r\n")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(len)
        .collect()
}

/// Bytes no compressor shrinks (xorshift), reproducible from `i`.
fn noise(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn header(path: &Path) -> SegmentHeader {
    let b = std::fs::read(path).unwrap();
    SegmentHeader::read_from_bytes(&b[..SEGMENT_HEADER_LEN]).unwrap()
}

/// The data payloads of a compressed segment file, decoded block by block
/// with every record CRC checked; panics on damage.
fn decoded_payloads(path: &Path) -> Vec<Vec<u8>> {
    let file = std::fs::read(path).unwrap();
    let mut blocks = BlockReader::new();
    let mut out = Vec::new();
    while let Some(step) = blocks.advance(&file) {
        let BlockStep::Records { .. } = step else {
            panic!("{}: {step:?}", path.display());
        };
        let bytes = blocks.records();
        let mut at = 0;
        while at < bytes.len() {
            let r = parse_record(bytes, at, CrcRule::Every)
                .unwrap_or_else(|| panic!("{}: bad record at {at}", path.display()));
            if r.kind == RecordKind::Data {
                out.push(bytes[r.payload_at..r.payload_at + r.len].to_vec());
            }
            at = r.next(bytes.len());
        }
    }
    out
}

#[test]
fn sealed_console_segments_are_written_compressed_and_decode_to_their_records() {
    let dirs = Dirs::new();
    let spool = spool(
        dirs.config()
            .compress(true)
            .segment_bytes(256 << 10)
            .channels(&["display"]),
    );
    let sent: Vec<Vec<u8>> = (0..400).map(|i| console(i, 3000)).collect();
    for p in &sent {
        assert!(spool.append("display", Direction::ServerToClient, p));
    }
    spool.close().unwrap();
    let stats = spool.compression();
    let segs = capture_segments(&dirs.capture());
    assert!(segs.len() > 2);
    let mut got = Vec::new();
    for s in &segs {
        let h = header(s);
        assert_eq!(h.version.get(), spool::block::COMPRESSED_VERSION, "{s:?}");
        assert!(h.checksum_ok());
        got.extend(decoded_payloads(s));
    }
    assert_eq!(got, sent);
    assert_eq!(stats.segments_compressed, segs.len() as u64);
    assert_eq!(stats.segments_kept, 0);
    assert!(
        stats.disk_bytes * 5 < stats.raw_bytes,
        "{} bytes on disk for {} raw",
        stats.disk_bytes,
        stats.raw_bytes
    );
    let on_disk: u64 = segs.iter().map(|s| s.metadata().unwrap().len()).sum();
    assert_eq!(on_disk, stats.disk_bytes);
    let m = spool::Manifest::load(&dirs.capture().join("manifest.json")).unwrap();
    assert_eq!(m.format_version, spool::block::COMPRESSED_VERSION);
}

#[test]
fn segments_that_do_not_shrink_are_written_as_they_were_staged() {
    let dirs = Dirs::new();
    let spool = spool(
        dirs.config()
            .compress(true)
            .segment_bytes(256 << 10)
            .channels(&["display"]),
    );
    for i in 0..200 {
        assert!(spool.append("display", Direction::ServerToClient, &noise(i, 4000)));
    }
    spool.close().unwrap();
    let stats = spool.compression();
    for s in capture_segments(&dirs.capture()) {
        assert_eq!(header(&s).version.get(), spool::format::FORMAT_VERSION);
        let c = segment_checksums(&s);
        assert!(c.sealed_at_end);
    }
    assert_eq!(stats.segments_compressed, 0);
    assert!(stats.segments_kept > 2);
    assert_eq!(stats.disk_bytes, stats.raw_bytes);
}

#[test]
fn compression_off_writes_every_segment_as_staged() {
    let dirs = Dirs::new();
    let spool = spool(
        dirs.config()
            .compress(false)
            .segment_bytes(64 << 10)
            .channels(&["display"]),
    );
    for i in 0..100 {
        assert!(spool.append("display", Direction::ServerToClient, &console(i, 3000)));
    }
    spool.close().unwrap();
    for s in capture_segments(&dirs.capture()) {
        assert_eq!(header(&s).version.get(), spool::format::FORMAT_VERSION);
    }
    assert_eq!(spool.compression().cpu_ns, 0);
    let m = spool::Manifest::load(&dirs.capture().join("manifest.json")).unwrap();
    assert_eq!(m.format_version, spool::format::FORMAT_VERSION);
}

#[test]
fn the_ring_limit_counts_bytes_on_disk_so_it_keeps_more_history() {
    let dirs = Dirs::new();
    let limit = 512 << 10;
    let spool = spool(
        dirs.config()
            .compress(true)
            .segment_bytes(128 << 10)
            .limit(DiskLimit::ring(limit))
            .channels(&["display"]),
    );
    for i in 0..4000 {
        let p = console(i, 4000);
        let mut tries = 0;
        while !spool.append("display", Direction::ServerToClient, &p) {
            tries += 1;
            assert!(tries < 5000, "never accepted");
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    spool.close().unwrap();
    let segs = capture_segments(&dirs.capture());
    let on_disk: u64 = segs.iter().map(|s| s.metadata().unwrap().len()).sum();
    // Within the bound plus one segment, as uncompressed.
    assert!(on_disk <= limit + (128 << 10), "{on_disk}");
    // ...yet holding several times the bound's worth of records.
    let kept: usize = segs.iter().map(|s| decoded_payloads(s).len()).sum();
    assert!(
        kept as u64 * 4000 > 3 * limit,
        "{kept} records of 4000 bytes kept under a {limit} byte ring"
    );
}
