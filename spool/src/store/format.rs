//! The on-disk layout of a spool segment, shared by the writer and the reader.
//!
//! Everything here is described for humans in `spool/FORMAT.md`; this module is
//! the executable version of that page. All multi-byte fields are little-endian
//! and every struct is a `zerocopy` type, so a header is read by checking its
//! size and alignment-free layout, never by transmuting.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::LazyLock;

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RYLLSPOL";

/// The format version this crate writes and the only one it reads.
///
/// A reader meeting any other version stops with
/// [`crate::read::event::DamageKind::UnsupportedVersion`] rather than guessing.
pub const FORMAT_VERSION: u16 = 2;

/// Segment header flag: every committed record of the segment carries its
/// CRC. The hot path writes records with `crc = 0`; [`fill_checksums`] sets
/// this flag once it has filled them in (before the segment leaves staging,
/// or in recovery). Other flag bits are reserved, zero.
pub const SEGMENT_FLAG_CRC_COMPLETE: u32 = 1;

/// Smallest segment a writer makes ([`crate::SpoolConfig::segment_bytes`]).
pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;

/// Largest segment a writer makes, and the largest segment file a reader
/// accepts: a larger file is reported rather than read into memory.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// Most payload bytes a reader accepts in one record: a record claiming
/// more is damage, however its CRC reads. It bounds what a reader holds for
/// one record (a sparse file can hold a valid record of a gigabyte of
/// zeroes in a few kilobytes); a writer drops a larger write as a gap
/// (`FORMAT.md`, *Bounds*). Far above what one socket read or write of a
/// SPICE client hands over.
pub const MAX_RECORD_PAYLOAD: usize = 16 << 20;

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
    /// [`SEGMENT_FLAG_CRC_COMPLETE`] or zero; other bits reserved, zero.
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
    /// Where the committed records end: the hot path stores it (release
    /// ordered) after each record's tag. Bytes past it are not the
    /// segment's: a reused segment still holds its previous use there.
    /// Zero in segments written before the field existed, which end at
    /// their first zero tag instead. Not covered by `header_crc`, which
    /// the hot path could not afford to recompute per record.
    pub written_to: U32,
    /// Reserved, zero.
    pub reserved: [u8; 16],
    /// CRC-32 (IEEE) of bytes 0..124 of this header, `written_to` taken as
    /// zero.
    pub header_crc: U32,
}

/// Offset of [`SegmentHeader::written_to`] in a segment.
pub const WRITTEN_TO_OFFSET: usize = 104;

const _: () = assert!(core::mem::offset_of!(SegmentHeader, written_to) == WRITTEN_TO_OFFSET);

const _: () = assert!(core::mem::size_of::<SegmentHeader>() == SEGMENT_HEADER_LEN);

impl SegmentHeader {
    /// A current-version header for segment `index` of `channel` (a name
    /// already validated, at most [`MAX_CHANNEL_NAME`] bytes; longer is cut),
    /// no flags and `first_seq` zero, with its checksum sealed.
    pub fn new(
        session_id: [u8; 16],
        channel: &str,
        index: u64,
        session_start_unix_ns: u64,
        monotonic_base_ns: u64,
        capacity: u64,
    ) -> SegmentHeader {
        let mut name = [0u8; MAX_CHANNEL_NAME];
        for (dst, src) in name.iter_mut().zip(channel.as_bytes()) {
            *dst = *src;
        }
        let mut header = SegmentHeader {
            magic: SEGMENT_MAGIC,
            version: U16::new(FORMAT_VERSION),
            header_len: U16::new(SEGMENT_HEADER_LEN as u16),
            flags: U32::new(0),
            session_id,
            channel: name,
            segment_index: U64::new(index),
            session_start_unix_ns: U64::new(session_start_unix_ns),
            monotonic_base_ns: U64::new(monotonic_base_ns),
            capacity: U64::new(capacity),
            first_seq: U64::new(0),
            written_to: U32::new(0),
            reserved: [0; 16],
            header_crc: U32::new(0),
        };
        header.header_crc = U32::new(header.compute_crc());
        header
    }

    /// Whether this is a segment header of this format version: the magic
    /// matches and the version is [`FORMAT_VERSION`]. (Its checksum is a
    /// separate question: [`SegmentHeader::checksum_ok`].)
    pub fn is_current(&self) -> bool {
        self.magic == SEGMENT_MAGIC && self.version.get() == FORMAT_VERSION
    }

    /// The CRC this header should carry (over every field but
    /// `written_to`, which changes with every record).
    pub fn compute_crc(&self) -> u32 {
        let mut covered = *self;
        covered.written_to = U32::new(0);
        crc32fast::hash(&covered.as_bytes()[..SEGMENT_HEADER_LEN - 4])
    }

    /// Where the segment's records end by [`SegmentHeader::written_to`], in
    /// a segment of `file_len` bytes: `None` when the header is not one of
    /// this version (only a version 2 segment's records follow its header;
    /// the reader judges any other), when the field is unset (a segment
    /// from before it existed, read to its first zero tag) or impossible
    /// (inside the header, or not on a record boundary); else never past
    /// the file's end.
    pub fn written_end(&self, file_len: usize) -> Option<usize> {
        let end = self.written_to.get() as usize;
        let possible = end >= SEGMENT_HEADER_LEN && end % RECORD_ALIGN == 0;
        (self.is_current() && possible).then_some(end.min(file_len))
    }

    /// Whether `header_crc` matches. A header with
    /// [`SEGMENT_FLAG_CRC_COMPLETE`] whose checksum matches only with that
    /// flag cleared passes too: [`fill_checksums`] was stopped (the process
    /// killed) between storing the flag and re-sealing the checksum. It
    /// stores the flag after every record CRC, so the flag is true. The one
    /// corruption this lets through, that bit set in an unflagged header,
    /// only makes a reader check more CRCs, never fewer.
    ///
    /// Likewise a header whose checksum matches only with `first_seq` zero:
    /// the hot path sets `first_seq` when the segment goes live, then
    /// re-seals the checksum, and a reader of the staged segment (or a
    /// crash) can come between the two stores — for as long as the thread
    /// is preempted there. Segments are prepared with `first_seq` zero, so
    /// the value read is the one the writer set.
    pub fn checksum_ok(&self) -> bool {
        let crc = self.header_crc.get();
        if crc == self.compute_crc() {
            return true;
        }
        let mut before_live = *self;
        before_live.first_seq = U64::new(0);
        if crc == before_live.compute_crc() {
            return true;
        }
        let flags = self.flags.get();
        if flags & SEGMENT_FLAG_CRC_COMPLETE == 0 {
            return false;
        }
        let mut unflagged = *self;
        unflagged.flags = U32::new(flags & !SEGMENT_FLAG_CRC_COMPLETE);
        crc == unflagged.compute_crc()
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
    /// CRC-32 (IEEE) of header bytes 0..20 followed by the payload; zero
    /// until [`fill_checksums`] has run on the segment.
    pub crc: U32,
}

const _: () = assert!(core::mem::size_of::<RecordHeader>() == RECORD_HEADER_LEN);

/// A fresh hasher, as `crc32fast::Hasher::new()` makes, cloned from one
/// made once: `new()` looks up the CPU's features every time (six to eight
/// cached lookups), which counts on small records (PERFORMANCE.md).
fn crc_hasher() -> crc32fast::Hasher {
    static PROTOTYPE: LazyLock<crc32fast::Hasher> = LazyLock::new(crc32fast::Hasher::new);
    PROTOTYPE.clone()
}

/// Computes a record's CRC from its header (bytes 0..20) and payload.
pub fn record_crc(header: &RecordHeader, payload: &[u8]) -> u32 {
    let mut h = crc_hasher();
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

/// How the records of one segment are checked, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrcRule {
    /// Every record's CRC must match: the header has
    /// [`SEGMENT_FLAG_CRC_COMPLETE`] (or its own checksum fails, so its flags
    /// cannot be trusted). Also the rule for resynchronising after damage.
    Every,
    /// A staged segment, or one a crashed writer left in place, whose CRCs
    /// may not be filled in yet: a record whose `crc` is zero passes on its
    /// tag and length alone; a nonzero `crc` must still match.
    ZeroIsUnfilled,
}

impl CrcRule {
    /// The rule for a segment with this header. A header whose checksum
    /// fails gets the strict rule: a damaged flag must not switch the CRC
    /// check off.
    pub fn of_header(h: &SegmentHeader) -> CrcRule {
        if h.flags.get() & SEGMENT_FLAG_CRC_COMPLETE != 0 || !h.checksum_ok() {
            CrcRule::Every
        } else {
            CrcRule::ZeroIsUnfilled
        }
    }
}

/// Checks the record at `buf[at..]`: a valid tag, a length that fits in
/// `buf`, and a matching CRC (or, under [`CrcRule::ZeroIsUnfilled`], a CRC
/// of zero). `None` if any of that fails — whatever the bytes, this never
/// reads outside `buf` and never panics.
pub fn parse_record(buf: &[u8], at: usize, rule: CrcRule) -> Option<ParsedRecord> {
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
    let unfilled = rule == CrcRule::ZeroIsUnfilled && h.crc.get() == 0;
    if !unfilled && record_crc(&h, &buf[header_end..header_end + len]) != h.crc.get() {
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

/// The part of a version 2 segment that holds its records: `seg` up to
/// the header's [`SegmentHeader::written_to`], or all of `seg` when the
/// header has none (or is not a current header: the reader then finds
/// what is wrong with it). What follows `written_to` is never the
/// segment's, not even damage: in a reused segment it is the previous
/// use's records, CRCs and all.
pub fn written_part(seg: &[u8]) -> &[u8] {
    written_len(seg).map_or(seg, |end| &seg[..end])
}

/// The length [`written_part`] cuts `seg` to, if its header says.
pub fn written_len(seg: &[u8]) -> Option<usize> {
    seg.get(..SEGMENT_HEADER_LEN)
        .and_then(|h| SegmentHeader::read_from_bytes(h).ok())
        .and_then(|h| h.written_end(seg.len()))
}

/// Where the run of complete records starting at `buf[from..]` ends: the
/// offset after the last record [`parse_record`] accepts, walking from
/// `from` (or `from` itself if none does).
///
/// A live reader uses it to read a segment that is still being written in
/// two passes: the first finds the records whose commit tags it saw, an
/// acquire fence follows, and the second read of the same bytes is then
/// guaranteed to see those records' payloads whole. Reading through
/// `read()` gives no ordering of its own, and a staged record has no CRC
/// yet to catch a payload copied before the writer finished it.
pub fn committed_end(buf: &[u8], from: usize, rule: CrcRule) -> usize {
    let mut at = from;
    while let Some(r) = parse_record(buf, at, rule) {
        let next = r.next(buf.len());
        if next <= at {
            break;
        }
        at = next;
    }
    at
}

/// Fills in the CRC of every committed record of a segment whose writer is
/// done with it (sealed and retired, or left by a crashed writer), then sets
/// [`SEGMENT_FLAG_CRC_COMPLETE`] and re-seals the header checksum.
///
/// `seg` is the segment from its header on, cut to the bytes in use. The
/// walk goes record by record from [`SEGMENT_HEADER_LEN`] and stops after a
/// seal, at the first tag that is not a committed record (a torn tail, or
/// the zeroes after the last record), or at a length that does not fit.
/// Only `crc` fields that are zero are written: a nonzero one is either
/// already right or damage, and damage must stay visible. Each CRC and then
/// the header flag are stored as whole, release-ordered words, so a reader
/// of the same bytes (a staged segment read in place) sees each record's CRC
/// as zero or right, and the flag only after every CRC.
///
/// Does nothing to a segment that is already flagged (except re-sealing a
/// header checksum an earlier call was stopped before storing; see
/// [`SegmentHeader::checksum_ok`]), or whose header is not a segment header
/// of this version. A header whose checksum fails gets its records' CRCs but
/// keeps its flags and bad checksum: the damage stays reported, and readers
/// then check every CRC anyway ([`CrcRule::of_header`]).
///
/// Returns the offset just past the last record walked (at least
/// [`SEGMENT_HEADER_LEN`] when the header is usable). Never panics.
pub fn fill_checksums(seg: &mut [u8]) -> usize {
    let Some(header) = seg
        .get(..SEGMENT_HEADER_LEN)
        .and_then(|b| SegmentHeader::read_from_bytes(b).ok())
    else {
        return 0;
    };
    if !header.is_current() {
        return 0;
    }
    let flagged = header.flags.get() & SEGMENT_FLAG_CRC_COMPLETE != 0;
    let mut at = SEGMENT_HEADER_LEN;
    while let Some(body) = at.checked_add(RECORD_HEADER_LEN) {
        let Some(h) = seg
            .get(at..body)
            .and_then(|b| RecordHeader::read_from_bytes(b).ok())
        else {
            break;
        };
        let Some((kind, _)) = parse_tag(h.tag.get()) else {
            break;
        };
        let len = h.len.get() as usize;
        let Some(payload) = seg.get(body..).and_then(|rest| rest.get(..len)) else {
            break;
        };
        if !flagged && h.crc.get() == 0 {
            let crc = record_crc(&h, payload);
            store_word(seg, body - 4, crc);
        }
        at = body.saturating_add(align_up(len));
        if kind == RecordKind::Seal {
            break;
        }
    }
    if flagged && header.header_crc.get() != header.compute_crc() && header.checksum_ok() {
        // Stopped between flag and checksum last time: finish the job.
        store_word(seg, SEGMENT_HEADER_LEN - 4, header.compute_crc());
    } else if !flagged && header.checksum_ok() {
        let mut h = header;
        h.flags = U32::new(h.flags.get() | SEGMENT_FLAG_CRC_COMPLETE);
        let crc = h.compute_crc();
        // The flag after every record CRC (release), then the checksum that
        // covers it. Between the two the header still passes
        // (`checksum_ok`), flagged, and every CRC is in place.
        store_word(
            seg,
            core::mem::offset_of!(SegmentHeader, flags),
            h.flags.get(),
        );
        store_word(seg, SEGMENT_HEADER_LEN - 4, crc);
    }
    at.min(seg.len())
}

/// Stores a little-endian `u32` at `seg[at..at + 4]` as one word with
/// release ordering (when the address is 4-aligned, as in a mapping; a plain
/// store otherwise). The hot path publishes each record's commit tag with it.
#[inline]
pub(crate) fn store_word(seg: &mut [u8], at: usize, value: u32) {
    let Some(word) = seg.get_mut(at..at + 4) else {
        return;
    };
    let ptr = word.as_mut_ptr();
    if ptr.align_offset(core::mem::align_of::<AtomicU32>()) == 0 {
        // SAFETY: `ptr` points at 4 bytes inside `seg`, exclusively borrowed
        // for this call, and is aligned for an `AtomicU32` (checked above),
        // which has the layout of a `u32`.
        let atomic = unsafe { AtomicU32::from_ptr(ptr.cast::<u32>()) };
        atomic.store(value.to_le(), Ordering::Release);
    } else {
        word.copy_from_slice(&value.to_le_bytes());
    }
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

/// Parses a name made by [`segment_file_name`], and only such a name: any
/// other spelling of the same index (`000000007.seg` beside
/// `00000007.seg`) is refused, so that no index is ever read from two
/// files.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u64 = digits.parse().ok()?;
    (segment_file_name(index) == name).then_some(index)
}

#[cfg(test)]
mod tests;
