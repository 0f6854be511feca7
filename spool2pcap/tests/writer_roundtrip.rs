//! The real spool writer's output, converted: every appended byte comes out
//! in order, and a dropped record shows as a sequence jump of its length.

use etherparse::{SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use spool::format::Direction::{self, ClientToServer as C2S, ServerToClient as S2C};
use spool::{Spool, SpoolConfig, StagingChoice};
use spool2pcap::convert::{convert, ConvertOptions, Destination};
use spool2pcap::frames::{CLIENT_ISN, SERVER_ISN};

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
    let report = convert(
        &cap.path().join("c"),
        &ConvertOptions::new(Destination::File(file.clone())),
    )
    .unwrap();
    assert!(!report.has_damage(), "{:?}", report.channels[0].damage);
    let ch = &report.channels[0];
    assert!(ch.closed_cleanly);
    assert_eq!(ch.dropped_records, 1);
    assert_eq!(ch.dropped_bytes, 100_000);

    // Expected seq of every kept record: ISN + all earlier bytes in its
    // direction, dropped ones included.
    let (mut c, mut s) = (CLIENT_ISN, SERVER_ISN);
    let mut expect = Vec::new();
    for (i, (dir, p)) in sent.iter().enumerate() {
        let seq = match dir {
            C2S => &mut c,
            S2C => &mut s,
        };
        if i != 77 {
            expect.push((*seq, p.clone()));
        }
        *seq = seq.wrapping_add(p.len() as u32);
    }
    let bytes = std::fs::read(&file).unwrap();
    let mut r = PcapReader::new(&bytes[..]).unwrap();
    let mut got = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        let sp = SlicedPacket::from_ethernet(&p.data).unwrap();
        let Some(TransportSlice::Tcp(t)) = sp.transport else {
            panic!("tcp")
        };
        got.push((t.sequence_number(), t.payload().to_vec()));
    }
    assert_eq!(got.len(), expect.len());
    for (i, (g, e)) in got.iter().zip(&expect).enumerate() {
        assert_eq!(g.0, e.0, "seq of frame {i}");
        assert!(g.1 == e.1, "payload of frame {i}");
    }
}
