//! Capture directories built by hand, for tests (cargo feature
//! `capture-builder`, off by default): spool segment files written field
//! by field from `spool::store::format`, and manifests, so that the
//! converter can be tested without the spool writer, and so that tests can
//! damage files in precise ways. Reading a conversion's output back is the
//! other half, the `testkit` crate's.
//!
//! One place for them: this crate's integration tests and its
//! `make_test_spool` example turn the feature on through a dev-dependency
//! on the crate itself, and the e2e crate (`tests/`) through its dependency
//! on spool2pcap (its fuzz target bodies in `src/fuzzing.rs` build
//! segments too). Nothing a user of the library links needs it.
//!
//! These are test helpers: the functions that write files panic when the
//! file system refuses, as a failed test should.

use std::path::{Path, PathBuf};

use spool::store::format::{
    align_up, record_crc, record_tag, Direction, GapPayload, RecordHeader, RecordKind, SealPayload,
    SegmentHeader, FORMAT_VERSION, MAX_CHANNEL_NAME, SEAL_FLAG_FINAL, SEGMENT_FLAG_CRC_COMPLETE,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::IntoBytes;

/// Session start every test segment claims: 2023-11-14 22:13:20 UTC.
pub const SESSION_START: u64 = 1_700_000_000_000_000_000;
/// Session id every test segment carries.
pub const SESSION_ID: [u8; 16] = *b"0123456789abcdef";
/// [`SESSION_ID`] as a manifest writes it (hex).
pub const SESSION_HEX: &str = "30313233343536373839616263646566";

/// Writes a cleanly closed capture's `manifest.json` into `dir` for the
/// test session ([`SESSION_ID`], [`SESSION_START`]), with the fields of
/// `extra` written over it (`{"clean_shutdown": false}` for a crashed one,
/// say).
pub fn write_manifest(dir: &Path, extra: serde_json::Value) {
    let mut m = serde_json::json!({
        "format_version": spool::store::format::FORMAT_VERSION,
        "session_id": SESSION_HEX,
        "session_start_unix_ns": SESSION_START,
        "staging_dir": null,
        "segment_bytes": 0,
        "clean_shutdown": true,
        "closed_unix_ns": SESSION_START + 1_000,
        "channels": {},
        "errors": [],
    });
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    let json = serde_json::to_vec(&m).expect("a JSON value serializes");
    std::fs::create_dir_all(dir).expect("making the test capture directory");
    std::fs::write(dir.join("manifest.json"), json).expect("writing the test manifest");
}

/// One segment being built.
pub struct Seg {
    header: SegmentHeader,
    buf: Vec<u8>,
    seq: u32,
    records: u64,
    data_bytes: u64,
}

impl Seg {
    /// Segment `index` of `channel`, whose first record has sequence `first_seq`.
    pub fn new(channel: &str, index: u64, first_seq: u64) -> Seg {
        let mut name = [0u8; MAX_CHANNEL_NAME];
        let n = channel.len().min(MAX_CHANNEL_NAME);
        name[..n].copy_from_slice(&channel.as_bytes()[..n]);
        let header = SegmentHeader {
            magic: SEGMENT_MAGIC,
            version: U16::new(FORMAT_VERSION),
            header_len: U16::new(SEGMENT_HEADER_LEN as u16),
            // As in a capture directory: every record carries its CRC.
            flags: U32::new(SEGMENT_FLAG_CRC_COMPLETE),
            session_id: SESSION_ID,
            channel: name,
            segment_index: U64::new(index),
            session_start_unix_ns: U64::new(SESSION_START),
            monotonic_base_ns: U64::new(42),
            capacity: U64::new(0),
            first_seq: U64::new(first_seq),
            written_to: U32::new(0),
            reserved: [0; 16],
            header_crc: U32::new(0),
        };
        Seg {
            header,
            buf: vec![0; SEGMENT_HEADER_LEN],
            seq: first_seq as u32,
            records: 0,
            data_bytes: 0,
        }
    }

    /// Claims a session start of `unix_ns` instead of [`SESSION_START`].
    pub fn with_session_start(mut self, unix_ns: u64) -> Seg {
        self.header.session_start_unix_ns = U64::new(unix_ns);
        self
    }

    fn record(&mut self, kind: RecordKind, dir: u8, ts_ns: u64, payload: &[u8]) -> usize {
        let mut h = RecordHeader {
            tag: U32::new(record_tag(kind, dir)),
            len: U32::new(payload.len() as u32),
            ts_ns: U64::new(ts_ns),
            seq: U32::new(self.seq),
            crc: U32::new(0),
        };
        h.crc = U32::new(record_crc(&h, payload));
        let at = self.buf.len();
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(at + 24 + align_up(payload.len()), 0);
        self.seq = self.seq.wrapping_add(1);
        at
    }

    /// Appends a data record; returns its offset in the file.
    pub fn data(&mut self, dir: Direction, ts_ns: u64, payload: &[u8]) -> usize {
        self.records += 1;
        self.data_bytes += payload.len() as u64;
        self.record(RecordKind::Data, dir.to_byte(), ts_ns, payload)
    }

    /// Appends a gap record.
    pub fn gap(&mut self, ts_ns: u64, bytes_c2s: u64, bytes_s2c: u64) -> usize {
        self.records += 1;
        let g = GapPayload {
            records_c2s: U64::new(u64::from(bytes_c2s > 0)),
            bytes_c2s: U64::new(bytes_c2s),
            records_s2c: U64::new(u64::from(bytes_s2c > 0)),
            bytes_s2c: U64::new(bytes_s2c),
            first_ts_ns: U64::new(ts_ns),
            last_ts_ns: U64::new(ts_ns),
        };
        self.record(RecordKind::Gap, 0, ts_ns, g.as_bytes())
    }

    /// Appends a gap record with the given counts, whatever they are (a
    /// hostile file's, say).
    pub fn gap_counts(&mut self, ts_ns: u64, records: [u64; 2], bytes: [u64; 2]) -> usize {
        self.records += 1;
        let g = GapPayload {
            records_c2s: U64::new(records[0]),
            bytes_c2s: U64::new(bytes[0]),
            records_s2c: U64::new(records[1]),
            bytes_s2c: U64::new(bytes[1]),
            first_ts_ns: U64::new(ts_ns),
            last_ts_ns: U64::new(ts_ns),
        };
        self.record(RecordKind::Gap, 0, ts_ns, g.as_bytes())
    }

    /// Skips `n` sequence numbers (records the writer never wrote).
    pub fn skip_seq(&mut self, n: u32) {
        self.seq = self.seq.wrapping_add(n);
    }

    /// Appends a seal record, `last` marking the channel's final segment.
    pub fn seal(&mut self, last: bool) {
        let p = SealPayload {
            records: U64::new(self.records),
            data_bytes: U64::new(self.data_bytes),
            flags: U64::new(if last { SEAL_FLAG_FINAL } else { 0 }),
            reserved: U64::new(0),
        };
        self.record(RecordKind::Seal, 0, 0, p.as_bytes());
    }

    /// The finished file: header with capacity and CRC filled in, plus
    /// `slack` zero bytes of unused room at the end.
    pub fn finish(mut self, slack: usize) -> Vec<u8> {
        self.buf.resize(self.buf.len() + slack, 0);
        self.header.capacity = U64::new(self.buf.len() as u64);
        self.header.header_crc = U32::new(self.header.compute_crc());
        self.buf[..SEGMENT_HEADER_LEN].copy_from_slice(self.header.as_bytes());
        self.buf
    }
}

/// Writes segment `index` of `channel` into the capture at `dir`, laid out
/// as `dir/spool/<channel>/NNNNNNNN.seg`; returns its path.
pub fn write_segment(dir: &Path, channel: &str, index: u64, bytes: &[u8]) -> PathBuf {
    let cdir = dir.join("spool").join(channel);
    std::fs::create_dir_all(&cdir).unwrap();
    let path = cdir.join(spool::store::format::segment_file_name(index));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A one-segment, cleanly sealed channel holding `records`
/// (direction, ts, payload); returns the segment's path.
pub fn simple_channel(dir: &Path, channel: &str, records: &[(Direction, u64, &[u8])]) -> PathBuf {
    let mut s = Seg::new(channel, 0, 0);
    for (d, ts, p) in records {
        s.data(*d, *ts, p);
    }
    s.seal(true);
    write_segment(dir, channel, 0, &s.finish(0))
}
