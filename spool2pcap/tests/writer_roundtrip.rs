//! The real spool writer's output, converted: every appended byte comes out
//! in order, and a dropped record shows as a sequence jump of its length.

use spool::store::format::Direction::{self, ClientToServer as C2S, ServerToClient as S2C};
use spool::{Spool, SpoolConfig, StagingChoice};
use spool2pcap::net::tcp::{CLIENT_ISN, SERVER_ISN};
use spool2pcap::pipeline::convert::{convert, ConvertOptions, Destination};

#[test]
fn writer_output_converts_with_gaps_as_sequence_jumps() {
    let cap = tempfile::tempdir().unwrap();
    let staging = tempfile::tempdir().unwrap();
    let spool = Spool::create(
        SpoolConfig::new(cap.path().join("c"))
            .staging(StagingChoice::Root(staging.path().to_path_buf()))
            .segment_bytes(64 << 10)
            .channels(&["display"]),
    )
    .unwrap();
    // (direction, payload); the 100 KB record cannot fit a 64 KiB segment
    // and is dropped by the writer.
    let mut sent: Vec<(Direction, Vec<u8>)> = Vec::new();
    for i in 0..200u32 {
        let dir = if i % 3 == 0 { C2S } else { S2C };
        let len = if i == 77 {
            100_000
        } else {
            50 + (i as usize * 37) % 3000
        };
        let payload: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
        spool.append_at("display", dir, u64::from(i) * 1000, &payload);
        sent.push((dir, payload));
    }
    spool.close().unwrap();

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("d.pcap");
    // Only recorded bytes: every frame is a record.
    let mut opts = ConvertOptions::new(Destination::File(file.clone()));
    opts.synth = spool2pcap::Synthesis::NONE;
    let report = convert(&cap.path().join("c"), &opts).unwrap();
    assert!(!report.has_damage(), "{:?}", report.channels[0].damage);
    let ch = &report.channels[0];
    assert!(ch.closed_cleanly);
    // The 100 KB record is always dropped; others may be too, when a burst
    // outruns the background thread preparing segments. Either way, every
    // drop must show as a sequence jump of its size.
    assert!(ch.dropped_records >= 1);

    let bytes = std::fs::read(&file).unwrap();
    let got: Vec<(u32, Vec<u8>)> = testkit::pcap::frames(&bytes)
        .iter()
        .map(testkit::tcp::Segment::parse)
        .map(|s| (s.seq, s.payload))
        .collect();

    // Walk what was sent: a record is kept if it is the next frame's
    // payload (payloads are all distinct), else it was dropped. A kept
    // record's seq is ISN + all earlier bytes of its direction, dropped
    // ones included.
    let (mut c, mut s) = (CLIENT_ISN, SERVER_ISN);
    let mut next = got.iter().enumerate().peekable();
    let (mut dropped, mut dropped_bytes) = (0u64, 0u64);
    for (i, (dir, p)) in sent.iter().enumerate() {
        let seq = match dir {
            C2S => &mut c,
            S2C => &mut s,
        };
        match next.peek() {
            Some((k, (gseq, gp))) if gp == p => {
                assert_eq!(*gseq, *seq, "seq of frame {k} (record {i})");
                next.next();
            }
            _ => {
                dropped += 1;
                dropped_bytes += p.len() as u64;
            }
        }
        *seq = seq.wrapping_add(p.len() as u32);
    }
    assert!(next.next().is_none(), "frames that match nothing sent");
    assert_eq!(dropped, ch.dropped_records);
    assert_eq!(dropped_bytes, ch.dropped_bytes);
    assert!(!got.iter().any(|(_, p)| p.len() == 100_000));
}
