//! Compressing a sealed segment into independent blocks, and decoding the
//! blocks back into records.
//!
//! The retirer (`crate::write::background`) has a whole sealed segment in hand
//! before it leaves memory, off the hot path: [`SegmentCompressor`] cuts it
//! at record boundaries into blocks of about [`BLOCK_TARGET`] bytes,
//! compresses each with zstd on its own, and writes the blocks after the
//! segment header ([`crate::store::block`] has their layout). A segment that does
//! not shrink by [`MIN_SAVING_PERCENT`] is written as it was: the first
//! block, of [`TRIAL_BLOCK`] bytes, is the trial, so traffic that does not
//! compress (video, noise) costs that much compression and no more.
//!
//! Readers go the other way with [`BlockReader`]: block by block, each
//! checked against its header and CRC before it is decompressed into a
//! buffer of at most [`MAX_BLOCK_RAW`] bytes, yielding the block's records
//! as the staged segment held them — whole records, each still carrying
//! its own CRC for the record parser to check — or the damaged range with
//! its file offset, after which the next intact block is found by its
//! magic and CRC.

use std::sync::atomic::{AtomicU64, Ordering};

use zerocopy::byteorder::little_endian::{U16, U32};
use zerocopy::{FromBytes, IntoBytes};
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

use crate::store::block::{
    self, Codec, ParsedBlock, ScanBudget, BLOCK_HEADER_LEN, COMPRESSED_VERSION, MAX_BLOCK_RAW,
    MAX_BLOCK_STORED,
};
use crate::store::format::{self, SegmentHeader, RECORD_ALIGN, SEGMENT_HEADER_LEN};
use crate::store::source::ByteSource;

/// Raw bytes the writer puts in a block, give or take a record: large
/// enough that zstd finds the repetition in SPICE display traffic, small
/// enough that damage loses little and a reader's buffer stays small.
/// (PERFORMANCE.md has the ratios of 128 KiB to 4 MiB blocks.)
pub const BLOCK_TARGET: usize = 1 << 20;

/// Raw bytes of a segment's first block, the trial: smaller than the
/// others, so that a segment that does not compress costs little.
pub const TRIAL_BLOCK: usize = 256 << 10;

/// zstd level of the retirer: the fastest of the regular levels.
pub const ZSTD_LEVEL: i32 = 1;

/// A segment is written compressed only if that saves at least this share
/// of its bytes; and compression stops after the first block if that block
/// did not.
pub const MIN_SAVING_PERCENT: usize = 10;

/// Largest window a decoder accepts (`2^24`, more than a block can need):
/// a hostile frame cannot make it reserve more.
const WINDOW_LOG_MAX: u32 = 24;

/// Whether a segment header says the segment is compressed.
pub fn is_compressed(header: &SegmentHeader) -> bool {
    header.magic == format::SEGMENT_MAGIC && header.version.get() == COMPRESSED_VERSION
}

/// The header at the start of `bytes` if it is a compressed segment's:
/// what readers take where `read::parse::check_header`, which knows
/// records after the header and not blocks, refuses the version.
pub fn compressed_header(bytes: &[u8]) -> Option<SegmentHeader> {
    bytes
        .get(..SEGMENT_HEADER_LEN)
        .and_then(|h| SegmentHeader::read_from_bytes(h).ok())
        .filter(is_compressed)
}

/// Why a segment was left uncompressed: for the retirer's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// It did not shrink by [`MIN_SAVING_PERCENT`].
    DoesNotShrink,
    /// A record is larger than [`MAX_BLOCK_RAW`], the records do not run
    /// back to back to the end, the header is not a current one, or its
    /// `capacity` is less than the segment's bytes in use.
    NotBlockable,
    /// zstd itself failed.
    Codec,
}

/// What the retirer's compression did, counted as it goes.
#[derive(Debug, Default)]
pub(crate) struct CompressionCounters {
    segments_compressed: AtomicU64,
    segments_kept: AtomicU64,
    segments_untried: AtomicU64,
    raw_bytes: AtomicU64,
    disk_bytes: AtomicU64,
    cpu_ns: AtomicU64,
}

impl CompressionCounters {
    /// Counts one segment of `raw` bytes written as `disk` bytes, after
    /// `cpu_ns` of the retirer's CPU time spent on the trial or the whole.
    pub(crate) fn add(&self, compressed: bool, raw: u64, disk: u64, cpu_ns: u64) {
        let which = if compressed {
            &self.segments_compressed
        } else {
            &self.segments_kept
        };
        which.fetch_add(1, Ordering::Relaxed);
        self.raw_bytes.fetch_add(raw, Ordering::Relaxed);
        self.disk_bytes.fetch_add(disk, Ordering::Relaxed);
        self.cpu_ns.fetch_add(cpu_ns, Ordering::Relaxed);
    }

    /// Counts one segment of `raw` bytes written as it was without a try.
    pub(crate) fn add_untried(&self, raw: u64) {
        self.segments_untried.fetch_add(1, Ordering::Relaxed);
        self.add(false, raw, raw, 0);
    }

    /// A snapshot.
    pub(crate) fn get(&self) -> CompressionStats {
        CompressionStats {
            segments_compressed: self.segments_compressed.load(Ordering::Relaxed),
            segments_kept: self.segments_kept.load(Ordering::Relaxed),
            segments_untried: self.segments_untried.load(Ordering::Relaxed),
            raw_bytes: self.raw_bytes.load(Ordering::Relaxed),
            disk_bytes: self.disk_bytes.load(Ordering::Relaxed),
            cpu_ns: self.cpu_ns.load(Ordering::Relaxed),
        }
    }
}

/// What the retirer of a [`crate::Spool`] did with the segments it moved
/// into the capture directory ([`crate::Spool::compression`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompressionStats {
    /// Segments written compressed.
    pub segments_compressed: u64,
    /// Segments written as they were (compression off, or they did not
    /// shrink enough).
    pub segments_kept: u64,
    /// Of those, segments written as they were without a try: their
    /// channel's last tries did not shrink (`write::trial`).
    pub segments_untried: u64,
    /// Bytes of those segments as staged (in use).
    pub raw_bytes: u64,
    /// Bytes they take in the capture directory.
    pub disk_bytes: u64,
    /// CPU time the retirer spent compressing, trials included.
    pub cpu_ns: u64,
}

/// CPU time of the calling thread, in nanoseconds.
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Compresses sealed segments; one per retirer thread, reused, so its
/// buffers and zstd context are allocated once.
pub struct SegmentCompressor {
    ctx: zstd::bulk::Compressor<'static>,
    scratch: Vec<u8>,
    out: Vec<u8>,
}

impl SegmentCompressor {
    /// A compressor at [`ZSTD_LEVEL`].
    pub fn new() -> std::io::Result<SegmentCompressor> {
        Ok(SegmentCompressor {
            ctx: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
            scratch: Vec::new(),
            out: Vec::new(),
        })
    }

    /// The compressed form of `seg` — a sealed segment whose record CRCs
    /// are filled in, cut to its bytes in use — or why it should be
    /// written as it is.
    pub fn compress(&mut self, seg: &[u8]) -> Result<&[u8], Kept> {
        // What follows `written_to` is not the segment's (`FORMAT.md`):
        // compressed, it would become records.
        let seg = format::written_part(seg);
        let header = seg
            .get(..SEGMENT_HEADER_LEN)
            .and_then(|h| SegmentHeader::read_from_bytes(h).ok())
            .filter(|h| h.is_current())
            .ok_or(Kept::NotBlockable)?;
        if header.capacity.get() < seg.len() as u64 {
            // A reader decodes no block past the capacity (`FORMAT.md`,
            // *Bounds*): a header that says less than the records hold was
            // not written by a writer of this format, and is left as it is.
            return Err(Kept::NotBlockable);
        }
        let mut out_header = header;
        out_header.version = U16::new(COMPRESSED_VERSION);
        out_header.header_crc = U32::new(out_header.compute_crc());
        // A damaged header stays damaged: its checksum is not blessed.
        if !header.checksum_ok() {
            out_header.header_crc = header.header_crc;
        }
        self.out.clear();
        self.out.extend_from_slice(out_header.as_bytes());
        let mut at = SEGMENT_HEADER_LEN;
        let mut first = true;
        while at < seg.len() {
            let target = if first { TRIAL_BLOCK } else { BLOCK_TARGET };
            let end = block_end(seg, at, target).ok_or(Kept::NotBlockable)?;
            let raw = &seg[at..end];
            self.scratch.clear();
            self.scratch
                .reserve(zstd::zstd_safe::compress_bound(raw.len()));
            self.ctx
                .compress_to_buffer(raw, &mut self.scratch)
                .map_err(|_| Kept::Codec)?;
            let (codec, stored) = if self.scratch.len() < raw.len() {
                (Codec::Zstd, &self.scratch[..])
            } else {
                (Codec::Stored, raw)
            };
            block::write_block(&mut self.out, codec, raw.len(), at as u64, stored);
            if first && !saves_enough(stored.len() + BLOCK_HEADER_LEN, raw.len()) {
                return Err(Kept::DoesNotShrink);
            }
            first = false;
            at = end;
        }
        if !saves_enough(self.out.len(), seg.len()) {
            return Err(Kept::DoesNotShrink);
        }
        Ok(&self.out)
    }
}

fn saves_enough(compressed: usize, raw: usize) -> bool {
    compressed.saturating_mul(100) <= raw.saturating_mul(100 - MIN_SAVING_PERCENT)
}

/// Where the block starting at record offset `at` ends: after as many whole
/// records as keep it within `target` bytes (at least one), and never past
/// [`MAX_BLOCK_RAW`]. `None` if the bytes at `at` are not a run of whole
/// records to the end of the segment.
fn block_end(seg: &[u8], at: usize, target: usize) -> Option<usize> {
    let mut end = at;
    loop {
        if end == seg.len() {
            return Some(end);
        }
        let next = record_end(seg, end)?;
        if next - at > MAX_BLOCK_RAW {
            return if end > at { Some(end) } else { None };
        }
        if next - at > target && end > at {
            return Some(end);
        }
        end = next;
    }
}

/// The end of the committed record at `at` (by its tag and length), if one
/// is there and fits in `seg`.
fn record_end(seg: &[u8], at: usize) -> Option<usize> {
    let h =
        format::RecordHeader::read_from_bytes(seg.get(at..at + format::RECORD_HEADER_LEN)?).ok()?;
    format::parse_tag(h.tag.get())?;
    let next = at.checked_add(format::record_len(h.len.get() as usize))?;
    (next <= seg.len()).then_some(next)
}

/// What [`BlockReader::advance`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStep {
    /// An intact block, decompressed: [`BlockReader::records`] holds its
    /// whole records as the staged segment held them.
    Records {
        /// File offset of the block (its header).
        file_offset: u64,
        /// Bytes of the block on disk, header and padding included.
        file_len: u64,
        /// Offset of the records in the uncompressed segment, as the block
        /// header states it.
        raw_offset: u64,
    },
    /// Bytes of the file that are no intact block, or a block that would
    /// not decompress to the size it states; reading goes on at the next
    /// intact block.
    Damaged {
        /// File offset where the damage starts.
        file_offset: u64,
        /// Bytes skipped.
        len: u64,
    },
}

/// Walks the blocks of one compressed segment, decoding each into a buffer
/// of its own (at most [`MAX_BLOCK_RAW`] bytes, reused).
///
/// What a segment decompresses to is bounded by what its header says the
/// staged segment held (`FORMAT.md`, *Bounds*): each block must take its
/// place after the previous one in the segment as staged (`raw_offset` at
/// or past the previous block's end) and end within the header's
/// `capacity` (itself at most [`format::MAX_SEGMENT_BYTES`]). A block that
/// does not is damage, and is not decompressed: blocks of a few hundred
/// bytes that each inflate to megabytes, repeated, cost no more than one
/// segment's worth.
///
/// A block is decoded only as far as its records run: it is inflated a
/// few kilobytes at first, then in doubling steps, and the records
/// decoded so far are walked by their tags and lengths after each step.
/// At bytes that are no record header (zeroes, say), or a record that
/// would run past the block, decoding stops and the block is damage: a
/// block is whole records back to back, to its last byte. So a block
/// costs what its records hold, plus one step.
///
/// Its memory is the current block's decoded bytes, nothing more between
/// blocks: the zstd decoder, whose window is as large as the block, lives
/// only while a block is decoded, so that many readers paused inside
/// blocks (a merge of many channels) hold one copy of each block, not two.
pub struct BlockReader {
    /// Decoded bytes of the current block, `buf[..filled]`: grown (and
    /// zeroed) to the largest block met, then reused, until
    /// [`BlockReader::release`].
    buf: Vec<u8>,
    filled: usize,
    pos: u64,
    /// Where the next block's records may start in the segment as staged:
    /// the end of the previous block's.
    raw_end: u64,
    /// The segment's `capacity`, capped; read at its first block.
    capacity: Option<u64>,
    /// Pays for the checks of blocks that fail while scanning for the next
    /// intact one; made at the segment's first block.
    scan: Option<ScanBudget>,
    /// Bytes decompressed since this reader was made, blocks found damaged
    /// included.
    inflated: u64,
}

impl Default for BlockReader {
    fn default() -> Self {
        BlockReader::new()
    }
}

impl BlockReader {
    /// A reader positioned at the first block (just after the segment
    /// header).
    pub fn new() -> BlockReader {
        BlockReader {
            buf: Vec::new(),
            filled: 0,
            pos: SEGMENT_HEADER_LEN as u64,
            raw_end: SEGMENT_HEADER_LEN as u64,
            capacity: None,
            scan: None,
            inflated: 0,
        }
    }

    /// Bytes this reader has decompressed (or copied, for stored blocks)
    /// so far, damaged blocks included: at most the `capacity` of each
    /// segment it read (`FORMAT.md`, *Bounds*), for oracles and benches.
    pub fn inflated(&self) -> u64 {
        self.inflated
    }

    /// Bytes of memory the reader holds now.
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Gives back the memory of the current block, once its records are
    /// no longer needed: what [`BlockReader::records`] returned is then
    /// empty, and the next block grows the buffer again.
    pub fn release(&mut self) {
        self.buf = Vec::new();
        self.filled = 0;
    }

    /// Starts again at the first block of another segment.
    pub fn rewind(&mut self) {
        self.pos = SEGMENT_HEADER_LEN as u64;
        self.raw_end = SEGMENT_HEADER_LEN as u64;
        self.capacity = None;
        self.scan = None;
        self.filled = 0;
    }

    /// Goes to the next block of `file` (the whole compressed segment
    /// file, header included) and decodes it; `None` at the end of the
    /// file.
    pub fn advance(&mut self, file: &[u8]) -> Option<BlockStep> {
        let mut src = file;
        // A slice never fails to give its bytes.
        self.advance_in(&mut src).ok().flatten()
    }

    /// [`BlockReader::advance`] through any [`ByteSource`] over the
    /// segment file, asking it for one block at a time (at most
    /// [`block::MAX_BLOCK_STORED`] bytes and its header): a reader holds
    /// one block of a compressed segment, never the whole file.
    pub fn advance_in<S: ByteSource>(&mut self, src: &mut S) -> std::io::Result<Option<BlockStep>> {
        let at = self.pos;
        self.filled = 0;
        let total = src.total();
        if at >= total {
            return Ok(None);
        }
        if self.capacity.is_none() {
            let header = compressed_header(src.get(0, SEGMENT_HEADER_LEN)?);
            self.capacity =
                Some(header.map_or(0, |h| h.capacity.get().min(format::MAX_SEGMENT_BYTES)));
        }
        let capacity = self.capacity.unwrap_or(0);
        let scan = self.scan.get_or_insert_with(|| {
            ScanBudget::for_len(usize::try_from(total).unwrap_or(usize::MAX))
        });
        let Some((b, bytes)) = block_at(src, at)? else {
            let next = resync(src, at + RECORD_ALIGN as u64, scan)?;
            self.pos = next;
            return Ok(Some(BlockStep::Damaged {
                file_offset: at,
                len: next - at,
            }));
        };
        self.pos = at + (b.next(usize::MAX) as u64).min(total - at);
        let file_len = self.pos - at;
        let raw_end = b.raw_offset.checked_add(b.raw_len as u64);
        let in_place = b.raw_offset >= self.raw_end && raw_end.is_some_and(|e| e <= capacity);
        let before = self.inflated;
        let decoded = in_place && decode(&mut self.buf, &mut self.inflated, bytes, &b).is_ok();
        if in_place {
            // What it inflated takes its place even if it then failed to
            // decode: a later block claiming those bytes again is out of
            // place, so the capacity bounds what all blocks inflate. Not
            // its claimed size: a block lying about it must not push the
            // intact blocks after it out of place.
            let took = self.inflated.saturating_sub(before);
            self.raw_end = b.raw_offset.saturating_add(took);
        }
        if !decoded {
            self.filled = 0;
            return Ok(Some(BlockStep::Damaged {
                file_offset: at,
                len: file_len,
            }));
        }
        self.filled = b.raw_len;
        Ok(Some(BlockStep::Records {
            file_offset: at,
            file_len,
            raw_offset: b.raw_offset,
        }))
    }

    /// The records of the block [`BlockReader::advance`] last decoded
    /// (empty after damage).
    pub fn records(&self) -> &[u8] {
        &self.buf[..self.filled]
    }
}

/// Decodes `b`, parsed from `file`, into `buf`: exactly `b.raw_len`
/// bytes, or fewer where its records stop making sense (see
/// [`BlockReader`]); counts what it inflates in `inflated`.
fn decode(
    buf: &mut Vec<u8>,
    inflated: &mut u64,
    file: &[u8],
    b: &ParsedBlock,
) -> Result<(), Undecodable> {
    let stored = b.stored(file);
    if buf.len() > 2 * b.raw_len.max(BLOCK_TARGET) {
        // One block of the format's largest met: not kept for the rest.
        buf.truncate(b.raw_len);
        buf.shrink_to_fit();
    }
    if buf.len() < b.raw_len {
        buf.resize(b.raw_len, 0);
    }
    if b.codec == Codec::Stored {
        *inflated = inflated.saturating_add(b.raw_len as u64);
        buf[..b.raw_len].copy_from_slice(stored);
        if walk_records(&buf[..b.raw_len], 0, b.raw_len) != Some(b.raw_len) {
            return Err(Undecodable::NotRecords);
        }
        return Ok(());
    }
    // Made for this block and dropped with it (see [`BlockReader`]).
    let mut ctx = Decoder::new().map_err(|_| Undecodable::Zstd)?;
    ctx.set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))
        .map_err(|_| Undecodable::Zstd)?;
    let out = &mut buf[..b.raw_len];
    let mut input = InBuffer::around(stored);
    let (mut filled, mut walked, mut step) = (0, 0, FIRST_DECODE_STEP);
    let mut frame_left = 1;
    while filled < out.len() && frame_left != 0 {
        let end = filled.saturating_add(step).min(out.len());
        let mut chunk = OutBuffer::around(&mut out[filled..end]);
        frame_left = ctx
            .run(&mut input, &mut chunk)
            .map_err(|_| Undecodable::Zstd)?;
        let wrote = chunk.pos();
        *inflated = inflated.saturating_add(wrote as u64);
        if wrote == 0 && frame_left != 0 && input.pos() == stored.len() {
            // Input used up, frame unfinished.
            return Err(Undecodable::Length);
        }
        filled += wrote;
        // Not records: what follows is not worth inflating.
        walked = walk_records(&out[..filled], walked, out.len()).ok_or(Undecodable::NotRecords)?;
        step = step.saturating_mul(2);
    }
    if frame_left != 0 {
        // The output is full: the frame must end here, with nothing more.
        let mut none = OutBuffer::around(&mut [][..]);
        frame_left = ctx
            .run(&mut input, &mut none)
            .map_err(|_| Undecodable::Zstd)?;
    }
    if filled != out.len() || frame_left != 0 || input.pos() != stored.len() {
        return Err(Undecodable::Length);
    }
    if walked != filled {
        return Err(Undecodable::NotRecords);
    }
    Ok(())
}

/// The intact block at `at` of `src` (see [`block::parse_block`]), with
/// its bytes from its header to the end of its stored bytes.
fn block_at<S: ByteSource>(src: &mut S, at: u64) -> std::io::Result<Option<(ParsedBlock, &[u8])>> {
    let Some(stored) = claimed_stored(src, at)? else {
        return Ok(None);
    };
    let bytes = src.get(at, BLOCK_HEADER_LEN + stored)?;
    Ok(block::parse_block(bytes, 0).map(|b| (b, bytes)))
}

/// The stored length the block candidate at `at` claims, if its magic is
/// there and the stored bytes fit in `src` and the cap: what checking its
/// CRC costs. `None` where [`block::parse_block`] refuses it before any
/// CRC.
fn claimed_stored<S: ByteSource>(src: &mut S, at: u64) -> std::io::Result<Option<usize>> {
    let total = src.total();
    let header = src.get(at, BLOCK_HEADER_LEN)?;
    if header.len() < BLOCK_HEADER_LEN || !block::has_block_magic(header, 0) {
        return Ok(None);
    }
    let stored = u32::from_le_bytes([header[12], header[13], header[14], header[15]]) as usize;
    let rest = total.saturating_sub(at.saturating_add(BLOCK_HEADER_LEN as u64));
    Ok((stored <= MAX_BLOCK_STORED && stored as u64 <= rest).then_some(stored))
}

/// Bytes a block is first inflated by (then twice as many each step).
const FIRST_DECODE_STEP: usize = 4 << 10;

/// Walks the records of a block being decoded, `decoded` so far, from the
/// record boundary `from`, by tag and length (their CRCs are the parser's
/// to check): the boundary of the first record not wholly decoded yet, or
/// `None` at bytes that are no record header, or a record that would run
/// past the block's `raw_len`.
fn walk_records(decoded: &[u8], from: usize, raw_len: usize) -> Option<usize> {
    let mut at = from;
    while at + format::RECORD_HEADER_LEN <= decoded.len() {
        let h = format::RecordHeader::read_from_bytes(&decoded[at..at + format::RECORD_HEADER_LEN])
            .ok()?;
        format::parse_tag(h.tag.get())?;
        let next = at.checked_add(format::record_len(h.len.get() as usize))?;
        if next > raw_len {
            return None;
        }
        if next > decoded.len() {
            break;
        }
        at = next;
    }
    Some(at)
}

/// Why a block did not decode; either way [`BlockReader::advance`]
/// reports the block as damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Undecodable {
    /// The zstd decoder could not be set up, or rejected the block.
    #[error("the zstd decoder rejected the block")]
    Zstd,
    /// The block decoded to another length than its header states.
    #[error("the block decoded to another length than its header states")]
    Length,
    /// The block's bytes are not whole records back to back.
    #[error("the block does not hold whole records")]
    NotRecords,
}

/// The next offset from `from` (in 8-byte steps) holding an intact block,
/// or the end of `src`. Candidates whose CRC fails are paid from
/// `budget`; one that would cost more than is left is passed over.
fn resync<S: ByteSource>(src: &mut S, from: u64, budget: &mut ScanBudget) -> std::io::Result<u64> {
    let total = src.total();
    let mut at = from;
    while at.saturating_add(BLOCK_HEADER_LEN as u64) <= total {
        if let Some(claimed) = claimed_stored(src, at)?.filter(|&c| budget.allows(c)) {
            if block_at(src, at)?.is_some() {
                return Ok(at);
            }
            budget.spend(claimed);
        }
        at += RECORD_ALIGN as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::{RecordHeader, RecordKind};
    use zerocopy::byteorder::little_endian::U64;

    /// A sealed, checksummed segment of `n` data records of `len` bytes
    /// each, from `payload(i)`.
    fn segment(n: usize, len: usize, payload: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
        let header = SegmentHeader::new([7; 16], "display", 0, 1, 2, 64 << 20);
        let mut buf = header.as_bytes().to_vec();
        for i in 0..n {
            let p = payload(i);
            assert_eq!(p.len(), len);
            let h = RecordHeader {
                tag: U32::new(format::record_tag(RecordKind::Data, 1)),
                len: U32::new(len as u32),
                ts_ns: U64::new(i as u64),
                seq: U32::new(i as u32),
                crc: U32::new(0),
            };
            buf.extend_from_slice(h.as_bytes());
            buf.extend_from_slice(&p);
            buf.resize(buf.len().next_multiple_of(RECORD_ALIGN), 0);
        }
        format::fill_checksums(&mut buf);
        buf
    }

    fn text(i: usize) -> Vec<u8> {
        format!("line {i:08} of a scrolling console, the same words again\n")
            .into_bytes()
            .repeat(20)
    }

    fn noise(i: usize) -> Vec<u8> {
        // xorshift: incompressible, reproducible.
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Every block of `file` decoded back into one buffer, with damage.
    fn decode_all(file: &[u8]) -> (Vec<u8>, Vec<(u64, u64)>) {
        let mut r = BlockReader::new();
        let mut raw = file[..SEGMENT_HEADER_LEN].to_vec();
        let mut damage = Vec::new();
        while let Some(step) = r.advance(file) {
            match step {
                BlockStep::Records { .. } => raw.extend_from_slice(r.records()),
                BlockStep::Damaged { file_offset, len } => damage.push((file_offset, len)),
            }
        }
        (raw, damage)
    }

    #[test]
    fn text_compresses_in_blocks_that_decode_to_the_same_records() {
        let seg = segment(3000, text(0).len(), text);
        let mut c = SegmentCompressor::new().unwrap();
        let out = c.compress(&seg).expect("text compresses").to_vec();
        assert!(out.len() * 5 < seg.len(), "{} of {}", out.len(), seg.len());
        let h = SegmentHeader::read_from_bytes(&out[..SEGMENT_HEADER_LEN]).unwrap();
        assert!(is_compressed(&h));
        assert!(h.checksum_ok());
        let (raw, damage) = decode_all(&out);
        assert!(damage.is_empty());
        assert_eq!(raw[SEGMENT_HEADER_LEN..], seg[SEGMENT_HEADER_LEN..]);
    }

    #[test]
    fn every_block_starts_at_a_record_and_stays_within_the_target() {
        let seg = segment(3000, text(0).len(), text);
        let mut c = SegmentCompressor::new().unwrap();
        let out = c.compress(&seg).unwrap().to_vec();
        let mut r = BlockReader::new();
        let mut blocks = 0;
        while let Some(BlockStep::Records { .. }) = r.advance(&out) {
            let bytes = r.records();
            blocks += 1;
            assert!(bytes.len() <= BLOCK_TARGET);
            assert!(format::parse_record(bytes, 0, format::CrcRule::Every).is_some());
            assert_eq!(
                format::committed_end(bytes, 0, format::CrcRule::Every),
                bytes.len()
            );
        }
        assert!(blocks > 1);
    }

    #[test]
    fn noise_is_kept_as_it_is_after_one_block() {
        let seg = segment(300, 4096, noise);
        let mut c = SegmentCompressor::new().unwrap();
        assert_eq!(c.compress(&seg).err(), Some(Kept::DoesNotShrink));
    }

    #[test]
    fn a_record_beyond_the_block_cap_keeps_the_segment_uncompressed() {
        let seg = segment(1, MAX_BLOCK_RAW + 8, |_| vec![0; MAX_BLOCK_RAW + 8]);
        let mut c = SegmentCompressor::new().unwrap();
        assert_eq!(c.compress(&seg).err(), Some(Kept::NotBlockable));
    }

    #[test]
    fn a_damaged_block_loses_that_block_and_the_next_ones_decode() {
        let seg = segment(3000, text(0).len(), text);
        let mut c = SegmentCompressor::new().unwrap();
        let mut out = c.compress(&seg).unwrap().to_vec();
        // Find the second block and damage a byte of its stored bytes.
        let first = block::parse_block(&out, SEGMENT_HEADER_LEN).unwrap();
        let second_at = first.next(out.len());
        let second = block::parse_block(&out, second_at).unwrap();
        let second_len = second.next(out.len()) - second_at;
        out[second_at + BLOCK_HEADER_LEN + 3] ^= 0xff;
        let (_, damage) = decode_all(&out);
        assert_eq!(damage, vec![(second_at as u64, second_len as u64)]);
        // Every other block decoded: count the records recovered.
        let mut r = BlockReader::new();
        let mut records = 0;
        while let Some(step) = r.advance(&out) {
            if let BlockStep::Records { .. } = step {
                let bytes = r.records();
                let mut at = 0;
                while let Some(p) = format::parse_record(bytes, at, format::CrcRule::Every) {
                    records += 1;
                    at = p.next(bytes.len());
                }
            }
        }
        assert!(records > 2000 && records < 3000, "{records}");
    }

    #[test]
    fn a_block_lying_about_its_raw_size_is_damage_not_a_bigger_buffer() {
        let seg = segment(3000, text(0).len(), text);
        let mut c = SegmentCompressor::new().unwrap();
        let mut out = c.compress(&seg).unwrap().to_vec();
        let first = block::parse_block(&out, SEGMENT_HEADER_LEN).unwrap();
        for lie in [first.raw_len - 8, first.raw_len + 8, MAX_BLOCK_RAW] {
            let at = SEGMENT_HEADER_LEN;
            out[at + 8..at + 12].copy_from_slice(&(lie as u32).to_le_bytes());
            // The CRC recomputed, as a hostile writer would.
            let h = block::BlockHeader::read_from_bytes(&out[at..at + BLOCK_HEADER_LEN]).unwrap();
            let crc = block::block_crc(&h, first.stored(&out));
            out[at + 28..at + 32].copy_from_slice(&crc.to_le_bytes());
            let mut r = BlockReader::new();
            match r.advance(&out) {
                Some(BlockStep::Damaged { file_offset, .. }) => {
                    assert_eq!(file_offset, at as u64)
                }
                other => panic!("lie {lie} gave {other:?}"),
            }
            assert!(r.buf.capacity() <= MAX_BLOCK_RAW);
            assert!(r.records().is_empty());
            // The next block is intact.
            assert!(matches!(r.advance(&out), Some(BlockStep::Records { .. })));
        }
    }

    #[test]
    fn truncation_anywhere_never_panics_and_invents_nothing() {
        let seg = segment(600, text(0).len(), text);
        let mut c = SegmentCompressor::new().unwrap();
        let out = c.compress(&seg).unwrap().to_vec();
        for cut in (SEGMENT_HEADER_LEN..out.len()).step_by(97) {
            let (raw, _) = decode_all(&out[..cut]);
            // Whatever decodes is a prefix of the records.
            assert_eq!(
                raw[SEGMENT_HEADER_LEN..],
                seg[SEGMENT_HEADER_LEN..raw.len()]
            );
        }
    }

    /// A compressed segment of `capacity` whose blocks are `blocks`
    /// (raw offset, raw bytes), each one zstd frame.
    fn hostile(capacity: u64, blocks: &[(u64, &[u8])]) -> Vec<u8> {
        let mut header = SegmentHeader::new([7; 16], "display", 0, 1, 2, capacity);
        header.version = U16::new(COMPRESSED_VERSION);
        header.header_crc = U32::new(header.compute_crc());
        let mut out = header.as_bytes().to_vec();
        for (offset, raw) in blocks {
            let stored = zstd::bulk::compress(raw, 3).unwrap();
            block::write_block(&mut out, Codec::Zstd, raw.len(), *offset, &stored);
        }
        out
    }

    #[test]
    fn a_block_of_zeroes_is_damage_and_inflates_one_step() {
        let zeros = vec![0u8; MAX_BLOCK_RAW];
        let h = SEGMENT_HEADER_LEN as u64;
        let file = hostile(1 << 30, &[(h, &zeros), (h + zeros.len() as u64, &zeros)]);
        let mut r = BlockReader::new();
        let mut damaged = 0;
        while let Some(step) = r.advance(&file) {
            assert!(matches!(step, BlockStep::Damaged { .. }), "{step:?}");
            damaged += 1;
        }
        assert_eq!(damaged, 2);
        assert!(
            r.inflated() <= 2 * FIRST_DECODE_STEP as u64,
            "{}",
            r.inflated()
        );
    }

    #[test]
    fn blocks_out_of_place_or_past_the_capacity_are_not_inflated() {
        let seg = segment(50, 100, |i| vec![i as u8; 100]);
        let records = &seg[SEGMENT_HEADER_LEN..];
        let h = SEGMENT_HEADER_LEN as u64;
        let end = h + records.len() as u64;
        // The same block twice at the same place; then one past the capacity.
        let file = hostile(end, &[(h, records), (h, records), (end, records)]);
        let mut r = BlockReader::new();
        let steps: Vec<_> = std::iter::from_fn(|| r.advance(&file)).collect();
        assert!(matches!(steps[0], BlockStep::Records { .. }), "{steps:?}");
        assert!(steps[1..]
            .iter()
            .all(|s| matches!(s, BlockStep::Damaged { .. })));
        assert_eq!(r.inflated(), records.len() as u64);
    }

    /// A block that is inflated in place but fails to decode (its records
    /// stop making sense before its end) still takes its place: the same
    /// bytes claimed again are not inflated again (a fuzz find: the same
    /// failing block repeated inflated twice the capacity).
    #[test]
    fn a_block_that_fails_to_decode_still_takes_its_place() {
        let seg = segment(200, 100, |i| vec![i as u8; 100]);
        let mut bad = seg[SEGMENT_HEADER_LEN..].to_vec();
        bad.extend_from_slice(&[0; 4096]);
        let h = SEGMENT_HEADER_LEN as u64;
        let file = hostile(h + bad.len() as u64, &[(h, &bad), (h, &bad), (h, &bad)]);
        let mut r = BlockReader::new();
        let steps: Vec<_> = std::iter::from_fn(|| r.advance(&file)).collect();
        assert_eq!(steps.len(), 3, "{steps:?}");
        assert!(steps.iter().all(|s| matches!(s, BlockStep::Damaged { .. })));
        assert!(
            r.inflated() <= bad.len() as u64,
            "inflated {} of a {}-byte capacity",
            r.inflated(),
            bad.len()
        );
    }
}
