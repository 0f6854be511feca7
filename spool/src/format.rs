//! The on-disk layout of a spool segment, shared by the writer and the reader.
//!
//! Everything here is described for humans in `spool/FORMAT.md`; this module is
//! the executable version of that page. All multi-byte fields are little-endian
//! and every struct is a `zerocopy` type, so a header is read by checking its
//! size and alignment-free layout, never by transmuting.

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RYLLSPOL";

/// The format version this crate writes and the only one it reads.
///
/// A reader meeting any other version stops with
/// [`crate::reader::DamageKind::UnsupportedVersion`] rather than guessing.
pub const FORMAT_VERSION: u16 = 1;

/// Size of [`SegmentHeader`]; records start at this offset.
pub const SEGMENT_HEADER_LEN: usize = 128;

/// Size of [`RecordHeader`].
pub const RECORD_HEADER_LEN: usize = 24;

/// Records start and end on this boundary.
pub const RECORD_ALIGN: usize = 8;

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_NAME: usize = 32;

/// Payload size of a gap record ([`GapPayload`]).
pub const GAP_PAYLOAD_LEN: usize = 48;

/// Payload size of a seal record ([`SealPayload`]).
pub const SEAL_PAYLOAD_LEN: usize = 32;

/// Bytes a gap record takes in a segment, header included.
pub const GAP_RECORD_LEN: usize = RECORD_HEADER_LEN + GAP_PAYLOAD_LEN;

/// Bytes a seal record takes in a segment, header included. The writer keeps
/// this much room free at the end of every segment so a seal always fits.
pub const SEAL_RECORD_LEN: usize = RECORD_HEADER_LEN + SEAL_PAYLOAD_LEN;

/// The two high bytes of every committed record tag. A tag of zero means "not
/// written yet"; these bytes make a stray non-zero word unlikely to pass as one.
pub const TAG_SYNC: u16 = 0x5AA5;

/// Seal flag: this is the channel's last segment, closed by a clean shutdown.
pub const SEAL_FLAG_FINAL: u64 = 1;

/// Which way a chunk of SPICE traffic travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Written by the client to the server (`packet_sent`).
    ClientToServer,
    /// Read by the client from the server (`packet_received`).
    ServerToClient,
}

impl Direction {
    /// The byte stored in a record tag.
    pub const fn to_byte(self) -> u8 {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }

    /// Inverse of [`Direction::to_byte`]; `None` for any other byte.
    pub const fn from_byte(b: u8) -> Option<Direction> {
        match b {
            0 => Some(Direction::ClientToServer),
            1 => Some(Direction::ServerToClient),
            _ => None,
        }
    }

    /// Short human name: `c2s` or `s2c`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "c2s",
            Direction::ServerToClient => "s2c",
        }
    }
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Captured bytes.
    Data,
    /// Traffic the writer had to drop; payload is a [`GapPayload`].
    Gap,
    /// End of a segment; payload is a [`SealPayload`].
    Seal,
}

impl RecordKind {
    /// The byte stored in a record tag.
    pub const fn to_byte(self) -> u8 {
        match self {
            RecordKind::Data => 1,
            RecordKind::Gap => 2,
            RecordKind::Seal => 3,
        }
    }

    /// Inverse of [`RecordKind::to_byte`]; `None` for any other byte.
    pub const fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Data),
            2 => Some(RecordKind::Gap),
            3 => Some(RecordKind::Seal),
            _ => None,
        }
    }
}

/// Builds the 32-bit commit word of a record: kind, direction and sync bytes.
/// It is never zero, which is what lets a reader tell a written record from
/// the zeroes of a freshly allocated segment.
pub const fn record_tag(kind: RecordKind, dir: u8) -> u32 {
    (kind.to_byte() as u32) | ((dir as u32) << 8) | ((TAG_SYNC as u32) << 16)
}

/// Splits a tag into kind and direction byte, or `None` if it is not a valid tag.
pub fn parse_tag(tag: u32) -> Option<(RecordKind, u8)> {
    if (tag >> 16) as u16 != TAG_SYNC {
        return None;
    }
    let kind = RecordKind::from_byte(tag as u8)?;
    Some((kind, (tag >> 8) as u8))
}

/// Bytes a record with `payload_len` bytes of payload occupies, padding included.
pub const fn record_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + align_up(payload_len)
}

/// Rounds `n` up to the record alignment.
pub const fn align_up(n: usize) -> usize {
    (n + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// The first 128 bytes of a segment file.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SegmentHeader {
    /// [`SEGMENT_MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: U16,
    /// [`SEGMENT_HEADER_LEN`]; records start here.
    pub header_len: U16,
    /// Reserved, zero.
    pub flags: U32,
    /// Random identifier shared by every segment of one capture session.
    pub session_id: [u8; 16],
    /// Channel name, `[a-z0-9_-]`, padded with NUL bytes.
    pub channel: [u8; MAX_CHANNEL_NAME],
    /// Position of this segment in its channel, from 0, without holes.
    pub segment_index: U64,
    /// Wall-clock time the session started, nanoseconds since the Unix epoch.
    pub session_start_unix_ns: U64,
    /// `CLOCK_MONOTONIC` at session start, in nanoseconds; record timestamps
    /// are offsets from this instant.
    pub monotonic_base_ns: U64,
    /// Size of the segment as allocated, header included.
    pub capacity: U64,
    /// Channel-wide sequence number of this segment's first record.
    pub first_seq: U64,
    /// Reserved, zero.
    pub reserved: [u8; 20],
    /// CRC-32 (IEEE) of bytes 0..124 of this header.
    pub header_crc: U32,
}

const _: () = assert!(core::mem::size_of::<SegmentHeader>() == SEGMENT_HEADER_LEN);

impl SegmentHeader {
    /// The CRC this header should carry.
    pub fn compute_crc(&self) -> u32 {
        crc32fast::hash(&self.as_bytes()[..SEGMENT_HEADER_LEN - 4])
    }

    /// The channel name as text, if it is a valid name.
    pub fn channel_name(&self) -> Option<&str> {
        let end = self
            .channel
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MAX_CHANNEL_NAME);
        if self.channel[end..].iter().any(|&b| b != 0) {
            return None;
        }
        let name = core::str::from_utf8(&self.channel[..end]).ok()?;
        validate_channel_name(name).ok()?;
        Some(name)
    }
}

/// The 24 bytes in front of every record's payload.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RecordHeader {
    /// Commit word ([`record_tag`]); written last, zero until then.
    pub tag: U32,
    /// Payload length in bytes (padding excluded).
    pub len: U32,
    /// Arrival time, nanoseconds since session start.
    pub ts_ns: U64,
    /// Channel-wide record sequence number (low 32 bits).
    pub seq: U32,
    /// CRC-32 (IEEE) of header bytes 0..20 followed by the payload.
    pub crc: U32,
}

const _: () = assert!(core::mem::size_of::<RecordHeader>() == RECORD_HEADER_LEN);

/// Computes a record's CRC from its header (bytes 0..20) and payload.
pub fn record_crc(header: &RecordHeader, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header.as_bytes()[..RECORD_HEADER_LEN - 4]);
    h.update(payload);
    h.finalize()
}

/// A record that passed every check, located in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedRecord {
    /// Record kind.
    pub kind: RecordKind,
    /// Direction byte of the tag (meaningful for data records).
    pub dir: u8,
    /// Payload length.
    pub len: usize,
    /// Arrival time, ns since session start.
    pub ts_ns: u64,
    /// Channel-wide sequence number (low 32 bits).
    pub seq: u32,
    /// Offset of the payload in the buffer.
    pub payload_at: usize,
}

impl ParsedRecord {
    /// Offset just past this record (padding included), capped at `end`.
    pub fn next(&self, end: usize) -> usize {
        (self.payload_at + align_up(self.len)).min(end)
    }
}

/// Checks the record at `buf[at..]`: a valid tag, a length that fits in
/// `buf`, and a matching CRC. `None` if any of that fails — whatever the
/// bytes, this never reads outside `buf` and never panics.
pub fn parse_record(buf: &[u8], at: usize) -> Option<ParsedRecord> {
    let end = buf.len();
    let header_end = at.checked_add(RECORD_HEADER_LEN)?;
    if header_end > end {
        return None;
    }
    let h = RecordHeader::read_from_bytes(&buf[at..header_end]).ok()?;
    let (kind, dir) = parse_tag(h.tag.get())?;
    let len = h.len.get() as usize;
    if len > end - header_end {
        return None;
    }
    if record_crc(&h, &buf[header_end..header_end + len]) != h.crc.get() {
        return None;
    }
    Some(ParsedRecord {
        kind,
        dir,
        len,
        ts_ns: h.ts_ns.get(),
        seq: h.seq.get(),
        payload_at: header_end,
    })
}

/// Whether `buf[at..]` starts with the sync bytes of a record tag: the
/// cheap filter before [`parse_record`] when scanning for the next record.
pub fn has_tag_sync(buf: &[u8], at: usize) -> bool {
    buf.get(at + 2..at + 4) == Some(&TAG_SYNC.to_le_bytes()[..])
}

/// Payload of a gap record: what the writer dropped since the previous record.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct GapPayload {
    /// Client→server records dropped.
    pub records_c2s: U64,
    /// Client→server payload bytes dropped.
    pub bytes_c2s: U64,
    /// Server→client records dropped.
    pub records_s2c: U64,
    /// Server→client payload bytes dropped.
    pub bytes_s2c: U64,
    /// Arrival time of the first dropped record (ns since session start).
    pub first_ts_ns: U64,
    /// Arrival time of the last dropped record (ns since session start).
    pub last_ts_ns: U64,
}

const _: () = assert!(core::mem::size_of::<GapPayload>() == GAP_PAYLOAD_LEN);

/// Payload of a seal record, the last record of a complete segment.
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SealPayload {
    /// Records in this segment before the seal (data and gap records).
    pub records: U64,
    /// Payload bytes of the data records in this segment.
    pub data_bytes: U64,
    /// [`SEAL_FLAG_FINAL`] or zero.
    pub flags: U64,
    /// Reserved, zero.
    pub reserved: U64,
}

const _: () = assert!(core::mem::size_of::<SealPayload>() == SEAL_PAYLOAD_LEN);

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidChannelName(pub String);

impl core::fmt::Display for InvalidChannelName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "invalid channel name {:?}: want 1 to {} characters of [a-z0-9_-], not starting with '-'",
            self.0.escape_debug().to_string(),
            MAX_CHANNEL_NAME
        )
    }
}

impl std::error::Error for InvalidChannelName {}

/// Checks that `name` can be a channel name, and so a directory name:
/// 1..=32 bytes of `[a-z0-9_-]`, not starting with `-` (no option look-alikes,
/// no `.`/`..`, no `/`).
pub fn validate_channel_name(name: &str) -> Result<(), InvalidChannelName> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidChannelName(name.chars().take(64).collect()))
    }
}

/// File name of segment `index` of a channel, in the capture directory.
pub fn segment_file_name(index: u64) -> String {
    format!("{index:08}.seg")
}

/// Parses a name made by [`segment_file_name`].
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
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
    }

    #[test]
    fn lengths_are_aligned() {
        assert_eq!(record_len(0), 24);
        assert_eq!(record_len(1), 32);
        assert_eq!(record_len(8), 32);
        assert_eq!(GAP_RECORD_LEN % RECORD_ALIGN, 0);
        assert_eq!(SEAL_RECORD_LEN % RECORD_ALIGN, 0);
    }
}
