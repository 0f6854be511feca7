//! Writes a synthetic capture directory for measuring `spool2pcap`:
//! `cargo run --release --example make_test_spool -- DIR MIB [RECORD_BYTES]`.
//!
//! Segments are built with the test helper (no spool writer needed). Record
//! sizes cycle through a mix of small and large messages unless one size is
//! given.

use spool::store::format::Direction;
use spool2pcap::capture_builder::{write_segment, Seg};

/// The spool writer's default segment size.
const SEGMENT_BYTES: usize = 4 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(mib)) = (
        args.get(1),
        args.get(2).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: make_test_spool DIR MIB [RECORD_BYTES]");
        std::process::exit(2);
    };
    let sizes: Vec<usize> = match args.get(3).and_then(|s| s.parse().ok()) {
        Some(n) => vec![n],
        None => vec![80, 1500, 16 << 10, 64 << 10, 200 << 10, 300],
    };
    let dir = std::path::Path::new(dir);
    let payload: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 31 % 251) as u8).collect();
    let total = mib << 20;
    for (ch, share) in [("display", 8usize), ("main", 1), ("cursor", 1)] {
        let want = total * share / 10;
        let (mut written, mut index, mut seq, mut ts, mut i) = (0usize, 0u64, 0u64, 0u64, 0usize);
        while written < want {
            let mut seg = Seg::new(ch, index, seq);
            let mut seg_bytes = 128;
            while seg_bytes < SEGMENT_BYTES && written < want {
                let n = sizes[i % sizes.len()];
                let dir = if i % 5 == 0 {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                };
                seg.data(dir, ts, &payload[..n.min(payload.len())]);
                seg_bytes += 24 + n.div_ceil(8) * 8;
                written += n;
                ts += 10_000;
                seq += 1;
                i += 1;
            }
            seq += 1; // the seal
            seg.seal(written >= want);
            write_segment(dir, ch, index, &seg.finish(0));
            index += 1;
        }
    }
}
