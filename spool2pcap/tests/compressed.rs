//! Captures whose segments the retirer compressed read like uncompressed
//! ones: `convert`, the excerpt behind the F12 bundle, `info` (which shows
//! the ratio) and `--follow` give the same results.

use std::path::Path;

use spool::Direction;
use spool2pcap::{convert, ConvertOptions, Destination, Format};
use spool2pcap::{write_excerpt, ExcerptOptions, Selection};

/// A session of console-like display messages and a few inputs, written
/// into `<dir>/z` with compression; then `<dir>/raw`, the same capture with
/// every segment decompressed back to what was staged.
fn twin_captures(dir: &Path) {
    let z = dir.join("z");
    let spool = spool::Spool::create(
        spool::SpoolConfig::new(&z)
            .compress(true)
            .segment_bytes(256 << 10)
            .channels(&["display", "inputs"]),
    )
    .unwrap();
    for i in 0..600u32 {
        // One SPICE message per record: mini header, then text.
        let text = format!("[{i:06}] the console scrolls one more line\r\n").repeat(40);
        let mut msg = 302u16.to_le_bytes().to_vec();
        msg.extend_from_slice(&(text.len() as u32).to_le_bytes());
        msg.extend_from_slice(text.as_bytes());
        let ts = u64::from(i) * 1_000_000;
        while !spool.append_at("display", Direction::ServerToClient, ts, &msg) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if i % 50 == 0 {
            let mut key = 101u16.to_le_bytes().to_vec();
            key.extend_from_slice(&4u32.to_le_bytes());
            key.extend_from_slice(&[0x1e, 0, 0, 0]);
            while !spool.append_at("inputs", Direction::ClientToServer, ts, &key) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
    spool.close().unwrap();
    assert!(spool.compression().segments_compressed > 0);
    // The uncompressed twin, file by file.
    let raw = dir.join("raw");
    for entry in walk(&z) {
        let rel = entry.strip_prefix(&z).unwrap();
        let dst = raw.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        let bytes = std::fs::read(&entry).unwrap();
        let out = if entry.extension().is_some_and(|e| e == "seg") {
            decompress(&bytes)
        } else {
            bytes
        };
        std::fs::write(&dst, out).unwrap();
    }
}

/// Every regular file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// A compressed segment file as it was staged: version 2 header, then the
/// records of its blocks. Other files unchanged.
fn decompress(file: &[u8]) -> Vec<u8> {
    use spool::store::compress::{BlockReader, BlockStep};
    use spool::store::format::{SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_LEN};
    use zerocopy::{FromBytes, IntoBytes};
    let mut h = SegmentHeader::read_from_bytes(&file[..SEGMENT_HEADER_LEN]).unwrap();
    if !spool::store::compress::is_compressed(&h) {
        return file.to_vec();
    }
    h.version = FORMAT_VERSION.into();
    h.header_crc = h.compute_crc().into();
    let mut out = h.as_bytes().to_vec();
    let mut blocks = BlockReader::new();
    while let Some(step) = blocks.advance(file) {
        assert!(matches!(step, BlockStep::Records { .. }), "{step:?}");
        out.extend_from_slice(blocks.records());
    }
    out
}

fn converted(capture: &Path) -> Vec<u8> {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("all.pcap");
    let mut opts = ConvertOptions::new(Destination::File(file.clone()));
    opts.format = Format::Pcap;
    let report = convert(capture, &opts).unwrap();
    assert!(!report.has_damage(), "{}", capture.display());
    std::fs::read(file).unwrap()
}

#[test]
fn a_compressed_capture_converts_byte_for_byte_like_its_uncompressed_twin() {
    let dir = tempfile::tempdir().unwrap();
    twin_captures(dir.path());
    let z = converted(&dir.path().join("z"));
    let raw = converted(&dir.path().join("raw"));
    assert!(z.len() > 1_000_000);
    assert!(z == raw, "the pcaps differ");
}

#[test]
fn the_bug_report_excerpt_of_a_compressed_capture_is_its_twins() {
    let dir = tempfile::tempdir().unwrap();
    twin_captures(dir.path());
    let excerpt = |name: &str| {
        let mut out = Vec::new();
        let opts = ExcerptOptions::new(Selection::Newest {
            budget_bytes: 200_000,
        });
        write_excerpt(&dir.path().join(name), &opts, &mut out).unwrap();
        out
    };
    let z = excerpt("z");
    assert!(z.len() > 100_000);
    assert!(z == excerpt("raw"), "the excerpts differ");
}

#[test]
fn info_shows_the_compression_ratio() {
    let dir = tempfile::tempdir().unwrap();
    twin_captures(dir.path());
    let info = spool2pcap::info::scan(&dir.path().join("z"), &mut |_, d| panic!("{d}")).unwrap();
    let display = info.channels.iter().find(|c| c.name == "display").unwrap();
    assert!(display.compressed_segments > 0);
    assert!(display.raw_bytes > 5 * display.file_bytes, "{display:?}");
    let mut text = Vec::new();
    spool2pcap::info::write_text(&info, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("Compressed:"), "{text}");
    assert!(text.contains("smaller on disk"), "{text}");
    assert!(text.contains("segments compressed;"), "{text}");
    assert!(text.contains(", ratio "), "{text}");
    // The uncompressed twin says nothing about compression, nor a ratio.
    let info = spool2pcap::info::scan(&dir.path().join("raw"), &mut |_, d| panic!("{d}")).unwrap();
    let mut text = Vec::new();
    spool2pcap::info::write_text(&info, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(!text.contains("Compressed:"), "{text}");
    assert!(!text.contains("ratio"), "{text}");
    assert!(!text.contains("uncompressed"), "{text}");
}
