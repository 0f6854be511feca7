//! Compressed at rest: the retirer writes sealed segments as zstd blocks.

mod common;

use std::path::Path;

use common::*;
use spool::store::compress::{BlockReader, BlockStep};
use spool::store::format::{parse_record, CrcRule, RecordKind, SegmentHeader, SEGMENT_HEADER_LEN};
use spool::{Direction, DiskLimit};
use zerocopy::{FromBytes, IntoBytes};

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

/// Appends `p`, waiting for the preparer when no segment is ready (a busy
/// machine), so that every record is kept.
fn append(spool: &spool::Spool, p: &[u8]) {
    let mut tries = 0;
    while !spool.append("display", Direction::ServerToClient, p) {
        tries += 1;
        assert!(tries < 5000, "never accepted");
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
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
        append(&spool, p);
    }
    spool.close().unwrap();
    let stats = spool.compression();
    let segs = capture_segments(&dirs.capture());
    assert!(segs.len() > 2);
    let mut got = Vec::new();
    for s in &segs {
        let h = header(s);
        assert_eq!(
            h.version.get(),
            spool::store::block::COMPRESSED_VERSION,
            "{s:?}"
        );
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
    assert_eq!(m.format_version, spool::store::block::COMPRESSED_VERSION);
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
        append(&spool, &noise(i, 4000));
    }
    spool.close().unwrap();
    let stats = spool.compression();
    for s in capture_segments(&dirs.capture()) {
        assert_eq!(
            header(&s).version.get(),
            spool::store::format::FORMAT_VERSION
        );
        let c = segment_checksums(&s);
        assert!(c.sealed_at_end);
    }
    assert_eq!(stats.segments_compressed, 0);
    assert!(stats.segments_kept > 2);
    assert_eq!(stats.disk_bytes, stats.raw_bytes);
}

/// A channel whose segments stop shrinking is tried less and less often
/// (`write::trial`), and compressed again soon after its traffic shrinks
/// again: within `MAX_SKIP` segments, 8.
#[test]
fn tries_back_off_while_nothing_shrinks_and_resume_when_it_does() {
    let dirs = Dirs::new();
    let spool = spool(
        dirs.config()
            .compress(true)
            .segment_bytes(64 << 10)
            .channels(&["display"]),
    );
    // 16 records a segment: 37 segments of noise, then 19 of text.
    for i in 0..600 {
        append(&spool, &noise(i, 4000));
    }
    // The retirer may lag behind on a loaded machine: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while spool.compression().segments_kept < 36 {
        assert!(std::time::Instant::now() < deadline, "retirer stuck");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let noisy = spool.compression();
    for i in 0..300 {
        append(&spool, &console(i, 4000));
    }
    spool.close().unwrap();
    let stats = spool.compression();
    assert!(
        noisy.segments_untried * 2 > noisy.segments_kept,
        "most noise segments go untried: {noisy:?}"
    );
    let versions: Vec<u16> = capture_segments(&dirs.capture())
        .iter()
        .map(|s| header(s).version.get())
        .collect();
    let compressed = spool::store::block::COMPRESSED_VERSION;
    let first = versions.iter().position(|&v| v == compressed);
    let last_noise = 600 / 16;
    assert!(
        first.is_some_and(|f| f <= last_noise + 9),
        "text compressed again too late: {versions:?}"
    );
    let tail = &versions[versions.len() - 8..];
    assert!(
        tail.iter().all(|&v| v == compressed),
        "the text's last segments are compressed: {versions:?}, {stats:?}"
    );
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
        append(&spool, &console(i, 3000));
    }
    spool.close().unwrap();
    for s in capture_segments(&dirs.capture()) {
        assert_eq!(
            header(&s).version.get(),
            spool::store::format::FORMAT_VERSION
        );
    }
    assert_eq!(spool.compression().cpu_ns, 0);
    let m = spool::Manifest::load(&dirs.capture().join("manifest.json")).unwrap();
    assert_eq!(m.format_version, spool::store::format::FORMAT_VERSION);
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
        append(&spool, &console(i, 4000));
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

/// A closed capture of `n` console records of 3000 bytes in 1 MiB
/// segments (four blocks each), compressed; returns the directories and
/// what was sent.
fn console_capture(n: usize) -> (Dirs, Vec<Vec<u8>>) {
    let dirs = Dirs::new();
    let spool = spool(
        dirs.config()
            .compress(true)
            .segment_bytes(1 << 20)
            .channels(&["display"]),
    );
    let sent: Vec<Vec<u8>> = (0..n).map(|i| console(i, 3000)).collect();
    for p in &sent {
        append(&spool, p);
    }
    spool.close().unwrap();
    (dirs, sent)
}

/// Whether `got` is `sent` with some records left out, in order: nothing
/// invented, nothing reordered.
fn is_subsequence(got: &[Vec<u8>], sent: &[Vec<u8>]) -> bool {
    let mut it = sent.iter();
    got.iter().all(|g| it.any(|s| s == g))
}

#[test]
fn the_reader_reads_compressed_segments_as_it_reads_staged_ones() {
    let (dirs, sent) = console_capture(400);
    let cap = spool::read::capture::Capture::open(&dirs.capture()).unwrap();
    let mut r = cap.reader("display").unwrap();
    let mut got = Vec::new();
    while let Some(ev) = r.next_event() {
        match ev {
            spool::read::event::Event::Data(d) => got.push(d.payload.to_vec()),
            spool::read::event::Event::Damage(d) => panic!("{d}"),
            spool::read::event::Event::Gap(_) => {}
        }
    }
    assert_eq!(got, sent);
    let st = r.stats();
    assert!(st.closed_cleanly);
    assert_eq!(st.compressed_segments, st.segments);
    let on_disk: u64 = capture_segments(&dirs.capture())
        .iter()
        .map(|s| s.metadata().unwrap().len())
        .sum();
    assert_eq!(st.file_bytes, on_disk);
    assert!(st.raw_bytes > 5 * st.file_bytes, "{st:?}");
    // Mapped or read, the same.
    let mut cap = spool::read::capture::Capture::open(&dirs.capture()).unwrap();
    cap.set_mapping(false);
    let mut r = cap.reader("display").unwrap();
    let mut n = 0;
    while let Some(ev) = r.next_event() {
        n += usize::from(matches!(ev, spool::read::event::Event::Data(_)));
    }
    assert_eq!(n, sent.len());
}

#[test]
fn the_follower_reads_compressed_segments() {
    let (dirs, sent) = console_capture(400);
    let mut f = spool::read::follow::Follower::open(&dirs.capture()).unwrap();
    let mut got = Vec::new();
    let mut damage = Vec::new();
    let status = f.poll(&mut |_, ev| match ev {
        spool::read::event::Event::Data(d) => got.push(d.payload.to_vec()),
        spool::read::event::Event::Damage(d) => damage.push(d),
        spool::read::event::Event::Gap(_) => {}
    });
    assert_eq!(damage, vec![]);
    assert_eq!(got, sent);
    assert_eq!(
        status,
        spool::read::follow::Status::Finished { clean: true }
    );
}

/// The file offsets of the blocks of a compressed segment file.
fn block_offsets(file: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while let Some(b) = spool::store::block::parse_block(file, at) {
        out.push(at);
        at = b.next(file.len());
    }
    out
}

/// Reads the capture with the reader and the follower; both must agree,
/// invent nothing, never panic. Returns the reader's records and damage.
fn read_both(dirs: &Dirs, sent: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<spool::read::event::Damage>) {
    let dump = read_channel(&dirs.capture(), "display");
    let got: Vec<Vec<u8>> = dump.records.into_iter().map(|r| r.data).collect();
    assert!(is_subsequence(&got, sent), "the reader invented records");
    let mut f = spool::read::follow::Follower::open(&dirs.capture()).unwrap();
    let mut followed = Vec::new();
    f.poll(&mut |_, ev| {
        if let spool::read::event::Event::Data(d) = ev {
            followed.push(d.payload.to_vec())
        }
    });
    assert!(
        is_subsequence(&followed, sent),
        "the follower invented records"
    );
    (got, dump.damage)
}

#[test]
fn a_corrupt_block_loses_its_records_only_and_is_reported_with_file_and_offset() {
    let (dirs, sent) = console_capture(800);
    let seg = capture_segments(&dirs.capture())[1].clone();
    let mut file = std::fs::read(&seg).unwrap();
    let blocks = block_offsets(&file);
    assert!(blocks.len() >= 2, "{blocks:?}");
    let victim = blocks[1];
    let victim_raw = spool::store::block::parse_block(&file, victim)
        .unwrap()
        .raw_len;
    file[victim + spool::store::block::BLOCK_HEADER_LEN + 10] ^= 0x55;
    std::fs::write(&seg, &file).unwrap();
    let (got, damage) = read_both(&dirs, &sent);
    assert_eq!(damage.len(), 1, "{damage:?}");
    let d = &damage[0];
    assert_eq!(d.file, seg);
    assert_eq!(d.offset, victim as u64);
    assert_eq!(d.kind, spool::read::event::DamageKind::Corrupt);
    // The block's records and no more: about its raw size in records of
    // 3 KiB (24-byte headers, padding).
    let lost = sent.len() - got.len();
    let in_block = victim_raw / 3024;
    assert!(
        lost > 10 && lost.abs_diff(in_block) <= 1,
        "{lost} lost, {in_block} in the block"
    );
    // Counted once the next record's sequence number is read: in the
    // reader's damage list at the end.
    let cap = spool::read::capture::Capture::open(&dirs.capture()).unwrap();
    let mut r = cap.reader("display").unwrap();
    while r.next_event().is_some() {}
    assert_eq!(r.damage().len(), 1);
    // The seal counts too, if the block was the segment's last.
    let counted = r.damage()[0].records_lost;
    assert!(
        counted == lost as u64 || counted == lost as u64 + 1,
        "{counted} counted, {lost} lost"
    );
    assert!(d.to_string().contains(&seg.display().to_string()));
}

#[test]
fn blocks_lying_about_their_sizes_are_damage_never_an_allocation() {
    let (dirs, sent) = console_capture(200);
    let seg = capture_segments(&dirs.capture())[0].clone();
    let good = std::fs::read(&seg).unwrap();
    let blocks = block_offsets(&good);
    let at = blocks[0];
    let h = spool::store::block::BlockHeader::read_from_bytes(
        &good[at..at + spool::store::block::BLOCK_HEADER_LEN],
    )
    .unwrap();
    let stored_len = h.stored_len.get() as usize;
    let lies: [(usize, u32); 6] = [
        (8, u32::MAX),                 // raw_len: 4 GiB
        (8, 64 << 20),                 // raw_len past the cap
        (8, h.raw_len.get() + 8),      // raw_len a little more than the frame holds
        (8, h.raw_len.get() - 8),      // …or less
        (12, u32::MAX),                // stored_len: past the file
        (12, (stored_len as u32) / 2), // stored_len cut short
    ];
    for (field, value) in lies {
        let mut file = good.clone();
        file[at + field..at + field + 4].copy_from_slice(&value.to_le_bytes());
        // The block CRC recomputed over the lie, as a hostile writer would.
        let mut h = spool::store::block::BlockHeader::read_from_bytes(
            &file[at..at + spool::store::block::BLOCK_HEADER_LEN],
        )
        .unwrap();
        let end = (at + spool::store::block::BLOCK_HEADER_LEN + (h.stored_len.get() as usize))
            .min(file.len());
        let crc = spool::store::block::block_crc(
            &h,
            &file[at + spool::store::block::BLOCK_HEADER_LEN..end],
        );
        h.crc = zerocopy::byteorder::little_endian::U32::new(crc);
        file[at..at + spool::store::block::BLOCK_HEADER_LEN].copy_from_slice(h.as_bytes());
        std::fs::write(&seg, &file).unwrap();
        let (got, damage) = read_both(&dirs, &sent);
        assert!(!damage.is_empty(), "lie {field}={value} passed");
        assert_eq!(damage[0].file, seg);
        assert_eq!(damage[0].offset, at as u64, "lie {field}={value}");
        assert!(got.len() < sent.len());
    }
}

#[test]
fn a_compressed_segment_cut_anywhere_or_scribbled_on_never_panics_nor_invents() {
    let (dirs, sent) = console_capture(150);
    let seg = capture_segments(&dirs.capture())[0].clone();
    let good = std::fs::read(&seg).unwrap();
    for cut in (0..good.len()).step_by(good.len() / 40 + 1) {
        std::fs::write(&seg, &good[..cut]).unwrap();
        read_both(&dirs, &sent);
    }
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..40 {
        let mut file = good.clone();
        for _ in 0..4 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let pos = (rng as usize) % file.len();
            file[pos] = (rng >> 32) as u8;
        }
        std::fs::write(&seg, &file).unwrap();
        read_both(&dirs, &sent);
    }
}

#[test]
fn a_follower_that_read_a_segment_staged_goes_on_where_it_was_once_it_is_compressed() {
    let dirs = Dirs::new();
    let spool = spool(
        dirs.config()
            .compress(true)
            .segment_bytes(256 << 10)
            .channels(&["display"]),
    );
    let sent: Vec<Vec<u8>> = (0..160).map(|i| console(i, 3000)).collect();
    let mut f = spool::read::follow::Follower::open(&dirs.capture()).unwrap();
    let mut got = Vec::new();
    // Half of segment 0 while it is live and staged…
    for p in &sent[..40] {
        append(&spool, p);
    }
    f.poll(&mut |_, ev| {
        if let spool::read::event::Event::Data(d) = ev {
            got.push(d.payload.to_vec())
        }
    });
    assert_eq!(got.len(), 40);
    // …the rest after it was sealed, compressed and moved.
    for p in &sent[40..] {
        append(&spool, p);
    }
    spool.close().unwrap();
    assert_eq!(
        header(&capture_segments(&dirs.capture())[0]).version.get(),
        spool::store::block::COMPRESSED_VERSION
    );
    let status = f.poll(&mut |_, ev| {
        if let spool::read::event::Event::Data(d) = ev {
            got.push(d.payload.to_vec())
        }
    });
    assert_eq!(
        status,
        spool::read::follow::Status::Finished { clean: true }
    );
    assert_eq!(got, sent);
}
