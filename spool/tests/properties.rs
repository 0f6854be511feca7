//! Property tests: round trips over random record sizes and segment sizes,
//! and the reader against random mutations of real segments.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use spool::read::capture::{Capture, ChannelFiles, SegmentFile};
use spool::read::event::Event;
use spool::read::follow::{Follower, Status};
use spool::read::reader::ChannelReader;
use spool::Direction;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn round_trip_random_sizes_and_rotations(
        sizes in proptest::collection::vec(0usize..20_000, 1..300),
        seg_kib in 64usize..160,
    ) {
        let dirs = Dirs::new();
        let seg = (seg_kib * 1024) & !4095;
        let spool = spool(dirs.config().segment_bytes(seg).ready_ahead(4).channels(&["display"]));
        let mut sent = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let dir = if len % 2 == 0 { Direction::ServerToClient } else { Direction::ClientToServer };
            let data = payload(i, len);
            let mut tries = 0;
            while !spool.append_at("display", dir, i as u64, &data) {
                tries += 1;
                prop_assert!(tries < 2000, "never accepted");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            sent.push(Rec { dir, ts: i as u64, data });
        }
        spool.close().unwrap();
        let got = read_channel(&dirs.capture(), "display");
        prop_assert!(got.damage.is_empty());
        // Retries show up as gaps; the data is exactly what was accepted.
        prop_assert_eq!(got.records, sent);
    }
}

/// A real capture with a few segments of varied records, and the records;
/// its segments compressed or as staged.
fn sample_capture(compress: bool) -> (Dirs, Vec<Vec<u8>>) {
    let dirs = Dirs::new();
    let spool = spool(
        dirs.config()
            .compress(compress)
            .segment_bytes(64 << 10)
            .ready_ahead(4)
            .channels(&["display"]),
    );
    let mut sent = Vec::new();
    for i in 0..300usize {
        let data = payload(i, (i * 131) % 1500 + 1);
        while !spool.append_at("display", Direction::ServerToClient, i as u64, &data) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        sent.push(data);
    }
    spool.close().unwrap();
    (dirs, sent)
}

/// Reads a channel made of the given segment files; returns the payloads.
fn read_all(files: ChannelFiles) -> (Vec<Vec<u8>>, usize) {
    let mut r = ChannelReader::new(files);
    let mut out = Vec::new();
    let mut damage = 0;
    while let Some(ev) = r.next_event() {
        match ev {
            Event::Data(d) => out.push(d.payload.to_vec()),
            Event::Gap(_) => {}
            Event::Damage(_) => damage += 1,
        }
    }
    (out, damage)
}

/// An event as read, owned, to compare two reads of the same files.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Data(Direction, u64, u32, Vec<u8>),
    Gap(spool::read::event::Gap),
    Damage(spool::read::event::Damage),
}

/// Every event of a reader, and how many segments it mapped.
fn read_events(mut r: ChannelReader) -> (Vec<Owned>, u64) {
    let mut out = Vec::new();
    while let Some(ev) = r.next_event() {
        out.push(match ev {
            Event::Data(d) => Owned::Data(d.direction, d.ts_ns, d.seq, d.payload.to_vec()),
            Event::Gap(g) => Owned::Gap(g),
            Event::Damage(d) => Owned::Damage(d),
        });
    }
    (out, r.stats().mapped_segments)
}

/// How many mutated inputs the fuzz test tries (`SPOOL_FUZZ_ITERS` to raise).
fn fuzz_iters() -> u32 {
    std::env::var("SPOOL_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

/// A segment as it was while staged: every record's `crc` zero, the header
/// without `SEGMENT_FLAG_CRC_COMPLETE`.
fn strip_checksums(mut bytes: Vec<u8>) -> Vec<u8> {
    use spool::store::format::{
        parse_tag, record_len, SegmentHeader, RECORD_HEADER_LEN, SEGMENT_FLAG_CRC_COMPLETE,
        SEGMENT_HEADER_LEN,
    };
    use zerocopy::{FromBytes, IntoBytes};
    let mut at = SEGMENT_HEADER_LEN;
    while at + RECORD_HEADER_LEN <= bytes.len() {
        let word = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        if parse_tag(word(at)).is_none() {
            break;
        }
        let len = word(at + 4) as usize;
        bytes[at + 20..at + 24].fill(0);
        at += record_len(len);
    }
    let mut h = SegmentHeader::read_from_bytes(&bytes[..SEGMENT_HEADER_LEN]).unwrap();
    h.flags = (h.flags.get() & !SEGMENT_FLAG_CRC_COMPLETE).into();
    h.header_crc = h.compute_crc().into();
    bytes[..SEGMENT_HEADER_LEN].copy_from_slice(h.as_bytes());
    bytes
}

#[test]
fn reader_survives_random_mutations_of_real_segments() {
    mutation_fuzz(false, false);
}

/// The same mutations of compressed segments: block headers, sizes,
/// zstd frames and the padding between them.
#[test]
fn reader_survives_random_mutations_of_compressed_segments() {
    mutation_fuzz(false, true);
}

/// The same mutations of segments whose CRCs were never filled in (as a
/// crashed writer leaves them in direct mode). Without CRCs a mutated payload
/// cannot be told from a real one, so only robustness is checked here: no
/// panic, no runaway allocation, and the follower still finishes.
#[test]
fn reader_survives_random_mutations_of_unchecksummed_segments() {
    mutation_fuzz(true, false);
}

fn mutation_fuzz(strip: bool, compress: bool) {
    let (dirs, sent) = sample_capture(compress);
    let cap = Capture::open(&dirs.capture()).unwrap();
    let files = cap.channels()[0].clone();
    assert!(files.segments.len() >= 3);
    let mut originals: Vec<Vec<u8>> = files
        .segments
        .iter()
        .map(|s| std::fs::read(&s.path).unwrap())
        .collect();
    let compressed = originals
        .iter()
        .filter(|b| b[8..10] == spool::store::block::COMPRESSED_VERSION.to_le_bytes())
        .count();
    if compress {
        assert!(compressed >= 3, "{compressed} segments compressed");
    } else {
        assert_eq!(compressed, 0);
    }
    if strip {
        originals = originals.into_iter().map(strip_checksums).collect();
        // Untouched, they read back whole.
        for (s, bytes) in files.segments.iter().zip(&originals) {
            std::fs::write(&s.path, bytes).unwrap();
        }
        let (got, damage) = read_all(files.clone());
        assert_eq!(damage, 0);
        assert!(got == sent);
    }
    // The mutated segments form a closed capture directory, so the live
    // follower reads them too, and a reader from `Capture` maps them.
    let work = tempfile::tempdir().unwrap();
    let chan_dir = work.path().join("spool/display");
    std::fs::create_dir_all(&chan_dir).unwrap();
    std::fs::copy(
        dirs.capture().join("manifest.json"),
        work.path().join("manifest.json"),
    )
    .unwrap();
    // Nothing invented: every record returned is an original, in order.
    let check = |got: &[Vec<u8>], iter: u32, who: &str| {
        if strip {
            return;
        }
        let mut next = 0;
        for g in got {
            let found = sent[next..].iter().position(|s| s == g);
            assert!(
                found.is_some(),
                "iteration {iter}: {who} returned a record that was never written"
            );
            next += found.unwrap() + 1;
        }
    };

    let mut rng = proptest::test_runner::TestRunner::deterministic();
    let iters = fuzz_iters();
    let mut recovered_total = 0usize;
    let mut mapped_total = 0u64;
    for iter in 0..iters {
        // Mutate each segment a little, in one of several ways.
        let mut segs = Vec::new();
        for (i, orig) in originals.iter().enumerate() {
            let mut bytes = orig.clone();
            let kind = (0u8..6).new_tree(&mut rng).unwrap().current();
            let n = bytes.len();
            let pos = (0..n).new_tree(&mut rng).unwrap().current();
            match kind {
                0 => bytes[pos] ^= 1 << (pos % 8),
                1 => bytes.truncate(pos),
                2 => {
                    // An absurd length field somewhere record-aligned.
                    let at = (pos & !7) + 4;
                    if at + 4 <= n {
                        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
                    }
                }
                3 => {
                    let end = (pos + 200).min(n);
                    bytes[pos..end].fill(0);
                }
                4 => {
                    let end = (pos + 64).min(n);
                    for (j, b) in bytes[pos..end].iter_mut().enumerate() {
                        *b = (iter as usize * 13 + j * 101) as u8;
                    }
                }
                _ => {} // untouched
            }
            let path = chan_dir.join(format!("{i:08}.seg"));
            std::fs::write(&path, &bytes).unwrap();
            segs.push(SegmentFile {
                index: i as u64,
                path,
                staged: false,
                moved_to: None,
            });
        }
        let files = ChannelFiles {
            name: "display".into(),
            segments: segs,
        };
        // The same files listed as staged, for the live path below.
        let staged = ChannelFiles {
            segments: files
                .segments
                .iter()
                .cloned()
                .map(|s| SegmentFile { staged: true, ..s })
                .collect(),
            ..files.clone()
        };
        let (plain, read_mapped) = read_events(ChannelReader::new(files.clone()));
        assert_eq!(read_mapped, 0, "a reader of bare files maps nothing");
        // The same files through `Capture`, mapped where the rule allows,
        // read exactly the same.
        let mut cap = Capture::open(work.path()).unwrap();
        cap.set_mapping(true);
        assert_eq!(cap.channels(), &[files]);
        let (mapped, n) = read_events(cap.reader("display").unwrap());
        assert!(
            mapped == plain,
            "iteration {iter}: the mapped read differs from the plain one"
        );
        mapped_total += n;
        let got: Vec<Vec<u8>> = plain
            .into_iter()
            .filter_map(|e| match e {
                Owned::Data(_, _, _, p) => Some(p),
                _ => None,
            })
            .collect();
        check(&got, iter, "the reader");
        recovered_total += got.len();
        // Listed as staged, the same files take the live path: a second
        // read around a fence, keeping only what the first saw committed.
        // It may return less (nothing past the first damage), never more.
        let (live, live_mapped) = read_events(ChannelReader::new(staged));
        assert_eq!(live_mapped, 0, "a staged segment is never mapped");
        let live_data = live.iter().filter(|e| matches!(e, Owned::Data(..))).count();
        assert!(
            live_data <= got.len(),
            "iteration {iter}: the live read found records the plain one did not"
        );

        let mut follower = Follower::open(work.path()).unwrap();
        let mut followed = Vec::new();
        let mut polls = 0;
        while follower.poll(&mut |_, ev| {
            if let Event::Data(d) = ev {
                followed.push(d.payload.to_vec());
            }
        }) == Status::Running
        {
            polls += 1;
            assert!(
                polls < 10,
                "iteration {iter}: the follower never finished a closed capture"
            );
        }
        check(&followed, iter, "the follower");
    }
    let what = if strip {
        "unchecksummed"
    } else {
        "checksummed"
    };
    eprintln!(
        "fuzz: {iters} mutated {what} captures, {recovered_total} records recovered in all, \
         {mapped_total} segments mapped"
    );
    assert!(mapped_total > 0, "no mutated segment was read mapped");
}

#[test]
fn a_flipped_bit_loses_only_its_record() {
    let (dirs, sent) = sample_capture(false);
    let cap = Capture::open(&dirs.capture()).unwrap();
    let seg = &cap.channels()[0].segments[1];
    let mut bytes = std::fs::read(&seg.path).unwrap();
    // Flip a bit in the payload of the first data record of the segment
    // (a drop-and-retry above may have put a gap record first).
    let mut at = 128;
    while bytes[at] != spool::store::format::RecordKind::Data.to_byte() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += spool::store::format::record_len(len);
    }
    bytes[at + 24 + 3] ^= 0x10;
    std::fs::write(&seg.path, &bytes).unwrap();
    let got = read_channel(&dirs.capture(), "display");
    assert_eq!(got.records.len(), sent.len() - 1);
    assert_eq!(got.damage.len(), 1);
    let d = &got.damage[0];
    assert_eq!(d.offset, at as u64);
    assert_eq!(d.records_lost, 1);
    assert!(
        d.to_string()
            .contains(&format!("00000001.seg: offset {at}")),
        "{d}"
    );
}

#[test]
fn unknown_version_is_a_clear_error_not_a_misread() {
    let (dirs, _) = sample_capture(false);
    let cap = Capture::open(&dirs.capture()).unwrap();
    let seg = &cap.channels()[0].segments[0];
    let mut bytes = std::fs::read(&seg.path).unwrap();
    // Version 1, whose records all carried their CRCs, is refused like any other.
    bytes[8] = 1;
    std::fs::write(&seg.path, &bytes).unwrap();
    let got = read_channel(&dirs.capture(), "display");
    assert!(
        got.damage[0]
            .to_string()
            .contains("unsupported format version 1"),
        "{}",
        got.damage[0]
    );
}
