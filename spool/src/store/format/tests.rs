//! Tests of the segment layout: tags, record lengths, file names.

use super::*;

#[test]
fn tags_round_trip_and_are_never_zero() {
    for kind in [RecordKind::Data, RecordKind::Gap, RecordKind::Seal] {
        for dir in [0u8, 1] {
            let tag = record_tag(kind, dir);
            assert_ne!(tag, 0);
            assert_eq!(parse_tag(tag), Some((kind, dir)));
        }
    }
    assert_eq!(parse_tag(0), None);
    assert_eq!(parse_tag(0x5AA5_0009), None);
}

#[test]
fn channel_names() {
    for good in ["main", "display", "usbredir", "port_1", "a", "x-y"] {
        validate_channel_name(good).unwrap();
    }
    let long = "a".repeat(33);
    for bad in [
        "",
        "..",
        ".",
        "a/b",
        "../x",
        "Main",
        "-x",
        "a b",
        "é",
        long.as_str(),
    ] {
        assert!(validate_channel_name(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn segment_names() {
    assert_eq!(segment_file_name(7), "00000007.seg");
    assert_eq!(parse_segment_file_name("00000007.seg"), Some(7));
    assert_eq!(parse_segment_file_name("7.seg"), None);
    assert_eq!(parse_segment_file_name("0000000x.seg"), None);
    assert_eq!(parse_segment_file_name("00000007.seg.tmp"), None);
    // One spelling per index: extra leading zeros are refused.
    assert_eq!(parse_segment_file_name("000000007.seg"), None);
    assert_eq!(parse_segment_file_name("000000000.seg"), None);
    assert_eq!(parse_segment_file_name("0123456789.seg"), None);
    assert_eq!(parse_segment_file_name("123456789.seg"), Some(123_456_789));
    for index in [0, 7, 99_999_999, 100_000_000, u64::MAX - 1, u64::MAX] {
        assert_eq!(
            parse_segment_file_name(&segment_file_name(index)),
            Some(index)
        );
    }
    // Beyond u64.
    assert_eq!(parse_segment_file_name("18446744073709551616.seg"), None);
}

/// A segment as the hot path leaves it: header, records with `crc` 0
/// (data, gap, data, seal), then `slack` zeroes. Returns the bytes and
/// the record offsets.
fn staged_segment(slack: usize) -> (Vec<u8>, Vec<usize>) {
    let header = SegmentHeader::new([7; 16], "main", 0, 1, 2, 0);
    let mut buf = header.as_bytes().to_vec();
    let mut offsets = Vec::new();
    let records: [(RecordKind, &[u8]); 4] = [
        (RecordKind::Data, b"hello"),
        (RecordKind::Gap, &[3; GAP_PAYLOAD_LEN]),
        (RecordKind::Data, b""),
        (RecordKind::Seal, &[0; SEAL_PAYLOAD_LEN]),
    ];
    for (seq, (kind, payload)) in records.into_iter().enumerate() {
        offsets.push(buf.len());
        let h = RecordHeader {
            tag: U32::new(record_tag(kind, 1)),
            len: U32::new(payload.len() as u32),
            ts_ns: U64::new(seq as u64 * 10),
            seq: U32::new(seq as u32),
            crc: U32::new(0),
        };
        buf.extend_from_slice(h.as_bytes());
        buf.extend_from_slice(payload);
        buf.resize(buf.len().next_multiple_of(RECORD_ALIGN), 0);
    }
    buf.resize(buf.len() + slack, 0);
    (buf, offsets)
}

fn header_of(buf: &[u8]) -> SegmentHeader {
    SegmentHeader::read_from_bytes(&buf[..SEGMENT_HEADER_LEN]).unwrap()
}

fn crc_field(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at + 20..at + 24].try_into().unwrap())
}

#[test]
fn unfilled_crcs_pass_only_where_the_header_allows() {
    let (mut buf, offsets) = staged_segment(64);
    assert_eq!(
        CrcRule::of_header(&header_of(&buf)),
        CrcRule::ZeroIsUnfilled
    );
    for &at in &offsets {
        assert!(parse_record(&buf, at, CrcRule::ZeroIsUnfilled).is_some());
        assert!(parse_record(&buf, at, CrcRule::Every).is_none());
    }
    // A nonzero CRC is checked even when zero would pass.
    buf[offsets[0] + 20] = 1;
    assert!(parse_record(&buf, offsets[0], CrcRule::ZeroIsUnfilled).is_none());
    // A header whose checksum fails is strict, flag or no flag.
    buf[40] ^= 1;
    assert_eq!(CrcRule::of_header(&header_of(&buf)), CrcRule::Every);
}

#[test]
fn committed_end_stops_where_the_committed_records_stop() {
    let (mut buf, offsets) = staged_segment(64);
    let rule = CrcRule::ZeroIsUnfilled;
    let after_seal = buf.len() - 64;
    assert_eq!(committed_end(&buf, SEGMENT_HEADER_LEN, rule), after_seal);
    assert_eq!(committed_end(&buf, offsets[2], rule), after_seal);
    // A record whose tag is not stored yet ends the run before it, even
    // though its header and payload are already there.
    buf[offsets[2]..offsets[2] + 4].fill(0);
    assert_eq!(committed_end(&buf, SEGMENT_HEADER_LEN, rule), offsets[2]);
    // Nothing committed: the start.
    assert_eq!(committed_end(&buf, offsets[2], rule), offsets[2]);
    assert_eq!(committed_end(&[], 0, rule), 0);
    assert_eq!(committed_end(&buf, buf.len() + 8, rule), buf.len() + 8);
}

#[test]
fn fill_checksums_fills_every_record_then_flags_the_header() {
    let (mut buf, offsets) = staged_segment(64);
    let end = buf.len() - 64;
    assert_eq!(fill_checksums(&mut buf), end);
    let h = header_of(&buf);
    assert_eq!(h.flags.get(), SEGMENT_FLAG_CRC_COMPLETE);
    assert_eq!(h.header_crc.get(), h.compute_crc());
    assert_eq!(CrcRule::of_header(&h), CrcRule::Every);
    for &at in &offsets {
        let r = parse_record(&buf, at, CrcRule::Every).expect("record with its CRC");
        assert_ne!(crc_field(&buf, at), 0);
        assert_eq!(r.payload_at, at + RECORD_HEADER_LEN);
    }
    assert!(buf[end..].iter().all(|&b| b == 0), "wrote past the seal");
    // Once flagged, a second pass changes nothing.
    let before = buf.clone();
    assert_eq!(fill_checksums(&mut buf), end);
    assert_eq!(buf, before);
}

#[test]
fn fill_checksums_stops_at_a_torn_tail_and_keeps_damage_visible() {
    let (mut buf, offsets) = staged_segment(0);
    // The third record was being written: its tag is still zero, part of
    // its header is in. The seal after it is gone.
    let torn = offsets[2];
    buf.truncate(offsets[3]);
    buf[torn..torn + 4].fill(0);
    // The gap record's CRC is nonzero and wrong: damage, left alone.
    buf[offsets[1] + 20..offsets[1] + 24].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    assert_eq!(fill_checksums(&mut buf), torn);
    assert!(parse_record(&buf, offsets[0], CrcRule::Every).is_some());
    assert_eq!(crc_field(&buf, offsets[1]), 0xdead_beef);
    assert!(parse_record(&buf, offsets[1], CrcRule::Every).is_none());
    assert_eq!(crc_field(&buf, torn), 0);
    assert_ne!(header_of(&buf).flags.get() & SEGMENT_FLAG_CRC_COMPLETE, 0);
}

#[test]
fn a_fill_stopped_between_flag_and_header_checksum_is_finished_not_damage() {
    let (mut buf, offsets) = staged_segment(0);
    let old_crc = buf[124..128].to_vec();
    fill_checksums(&mut buf);
    let done = buf.clone();
    // As if killed after storing the flag, before the checksum.
    buf[124..128].copy_from_slice(&old_crc);
    let h = header_of(&buf);
    assert_ne!(h.header_crc.get(), h.compute_crc());
    assert!(h.checksum_ok());
    assert_eq!(CrcRule::of_header(&h), CrcRule::Every);
    for &at in &offsets {
        assert!(parse_record(&buf, at, CrcRule::Every).is_some());
    }
    fill_checksums(&mut buf);
    assert_eq!(buf, done);
    // Any other header damage still fails, flag or not.
    buf[124] ^= 1;
    assert!(!header_of(&buf).checksum_ok());
}

#[test]
fn a_header_read_between_going_live_and_resealing_is_valid() {
    let (buf, _) = staged_segment(0);
    let mut h = header_of(&buf);
    assert_eq!(h.first_seq.get(), 0);
    // The hot path has stored `first_seq`, not yet the new checksum.
    h.first_seq = U64::new(4242);
    assert_ne!(h.header_crc.get(), h.compute_crc());
    assert!(h.checksum_ok());
    // Once resealed, the old checksum no longer passes with it: damage to
    // `first_seq` of a live segment is still damage.
    let mut sealed = h;
    sealed.header_crc = U32::new(sealed.compute_crc());
    sealed.first_seq = U64::new(4243);
    assert!(!sealed.checksum_ok());
    // Nor does any other change.
    h.segment_index = U64::new(1);
    assert!(!h.checksum_ok());
}

#[test]
fn fill_checksums_does_not_bless_a_damaged_header() {
    let (mut buf, offsets) = staged_segment(0);
    buf[40] ^= 1;
    let before = header_of(&buf);
    fill_checksums(&mut buf);
    let after = header_of(&buf);
    assert_eq!(after.as_bytes(), before.as_bytes());
    // Its records have their CRCs, which the strict rule it gets needs.
    for &at in &offsets {
        assert!(parse_record(&buf, at, CrcRule::Every).is_some());
    }
    // Not a segment of this version: nothing is written at all.
    let (mut buf, _) = staged_segment(0);
    buf[8] = 1;
    let before = buf.clone();
    assert_eq!(fill_checksums(&mut buf), 0);
    assert_eq!(buf, before);
}

#[test]
fn fill_checksums_never_panics_nor_writes_past_its_walk() {
    let (good, _) = staged_segment(40);
    let check = |mut b: Vec<u8>| {
        let before = b.clone();
        let end = fill_checksums(&mut b);
        assert!(end <= b.len());
        assert_eq!(b[end..], before[end..]);
    };
    // Every prefix, and every byte set to a few values that matter
    // (zero, all ones, tag sync bytes, a kind, a huge length byte).
    for cut in 0..=good.len() {
        check(good[..cut].to_vec());
    }
    for pos in 0..good.len() {
        for v in [0u8, 0xff, 0x5a, 0xa5, 3] {
            let mut b = good.clone();
            b[pos] = v;
            check(b);
        }
    }
}

#[test]
fn lengths_are_aligned() {
    assert_eq!(record_len(0), 24);
    assert_eq!(record_len(1), 32);
    assert_eq!(record_len(8), 32);
    assert_eq!(GAP_RECORD_LEN % RECORD_ALIGN, 0);
    assert_eq!(SEAL_RECORD_LEN % RECORD_ALIGN, 0);
}

/// `written_to` cuts a segment where its records end, whatever follows;
/// an unset or impossible value cuts nothing (the zero-tag rule applies),
/// one past the file's end cuts at the end; the header checksum holds
/// whatever its value, since the writer changes it per record.
#[test]
fn written_to_cuts_the_segment_and_is_outside_the_header_checksum() {
    let header = SegmentHeader::new([1; 16], "main", 0, 0, 0, 4096);
    let mut seg = vec![0xEE; 1024];
    let with = |seg: &mut Vec<u8>, w: u32| {
        let mut h = header;
        h.written_to = U32::new(w);
        seg[..SEGMENT_HEADER_LEN].copy_from_slice(h.as_bytes());
        assert!(h.checksum_ok(), "written_to {w} broke the checksum");
    };
    for (w, cut) in [
        (0, 1024),
        (64, 1024),
        (130, 1024),
        (128, 128),
        (512, 512),
        (1024, 1024),
        (4096, 1024),
        (!7, 1024),
    ] {
        with(&mut seg, w);
        assert_eq!(written_part(&seg).len(), cut, "written_to {w}");
    }
    // Not a current header: nothing is cut, the reader judges the header.
    with(&mut seg, 512);
    seg[8] = 9;
    assert_eq!(written_part(&seg).len(), 1024);
    assert_eq!(written_part(&seg[..100]).len(), 100);
}
