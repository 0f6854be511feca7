//! The layout of a compressed segment's blocks: what `FORMAT.md` calls a
//! *version 3 segment*.
//!
//! A compressed segment is the 128-byte segment header (version
//! [`COMPRESSED_VERSION`]) followed by *blocks*, back to back, each on an
//! 8-byte boundary. A block holds the bytes of whole records of the
//! segment as it was staged, compressed on their own (no dictionary, no
//! state carried from one block to the next), so a damaged block loses
//! only its own records: the reader finds the next block by its magic and
//! checksum, as it finds the next record after damage. Every record inside
//! keeps its own CRC, checked after decompression.
//!
//! Every length here is read from a file that may be hostile, so
//! [`parse_block`] refuses any block that claims more than
//! [`MAX_BLOCK_RAW`] bytes decompressed or [`MAX_BLOCK_STORED`] bytes on
//! disk, before anything is allocated or decompressed.

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::store::format::align_up;

/// Segment header `version` of a compressed segment: the records are in
/// blocks after the header. Records are laid out as in version
/// [`crate::store::format::FORMAT_VERSION`] once a block is decompressed.
pub const COMPRESSED_VERSION: u16 = 3;

/// First four bytes of every block header.
pub const BLOCK_MAGIC: [u8; 4] = *b"RYZB";

/// Size of [`BlockHeader`]; the stored bytes follow it.
pub const BLOCK_HEADER_LEN: usize = 32;

/// Most bytes a block may hold decompressed. The writer cuts blocks much
/// smaller ([`crate::store::compress::BLOCK_TARGET`]); a segment holding a record
/// larger than this is written uncompressed. A reader refuses more, so no
/// block makes it allocate or inflate beyond this.
pub const MAX_BLOCK_RAW: usize = 8 << 20;

/// Most bytes a block may take on disk after its header: zstd's worst case
/// for [`MAX_BLOCK_RAW`] bytes (`ZSTD_COMPRESSBOUND`), rounded up.
pub const MAX_BLOCK_STORED: usize = MAX_BLOCK_RAW + (MAX_BLOCK_RAW >> 8) + (64 << 10);

/// Checksum bytes a scan for the next valid record or block may spend on
/// candidates that turn out not to be one, per byte of what it scans
/// (`FORMAT.md`, *Bounds*): a hostile file can put a plausible header at
/// every 8-byte slot, each claiming a long span, and checking them all
/// would cost the square of the file's length.
pub const SCAN_BUDGET_FACTOR: u64 = 2;

/// What a scan for the next valid record or block may still spend on
/// checksums of candidates that fail: [`SCAN_BUDGET_FACTOR`] times the
/// bytes of the slice scanned (a segment, a decompressed block), shared by
/// every scan in that slice. A candidate whose checksum would cost more
/// than what is left is not checked, and counts as damage: a writer's
/// record or block lies after damage, never inside a false candidate's
/// span, so only a file built to exhaust the budget loses one this way.
/// Checks that succeed cost nothing: what they cover is then read, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanBudget {
    left: u64,
}

impl ScanBudget {
    /// The budget for scanning a slice of `len` bytes.
    pub fn for_len(len: usize) -> ScanBudget {
        ScanBudget {
            left: (len as u64).saturating_mul(SCAN_BUDGET_FACTOR),
        }
    }

    /// Whether a checksum over `len` bytes may be tried.
    pub fn allows(&self, len: usize) -> bool {
        len as u64 <= self.left
    }

    /// Charges a failed checksum over `len` bytes.
    pub fn spend(&mut self, len: usize) {
        self.left = self.left.saturating_sub(len as u64);
    }
}

/// How a block's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// As they are: a block that zstd would not shrink.
    Stored,
    /// One zstd frame.
    Zstd,
}

impl Codec {
    /// The byte stored in a block header.
    pub const fn to_byte(self) -> u8 {
        match self {
            Codec::Stored => 0,
            Codec::Zstd => 1,
        }
    }

    /// Inverse of [`Codec::to_byte`]; `None` for any other byte.
    pub const fn from_byte(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::Stored),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// The 32 bytes in front of every block's stored bytes.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlockHeader {
    /// [`BLOCK_MAGIC`].
    pub magic: [u8; 4],
    /// [`Codec`] byte.
    pub codec: u8,
    /// Reserved, zero.
    pub reserved: [u8; 3],
    /// Bytes the block holds decompressed: whole records.
    pub raw_len: U32,
    /// Bytes stored after this header (padding to 8 excluded).
    pub stored_len: U32,
    /// Where the block's first record was in the segment as staged: the
    /// offset it would have in the uncompressed file. The first block says
    /// 128; each next one, the previous one's `raw_offset + raw_len`.
    pub raw_offset: U64,
    /// Reserved, zero.
    pub reserved2: [u8; 4],
    /// CRC-32 of header bytes 0..28, then the stored bytes.
    pub crc: U32,
}

const _: () = assert!(core::mem::size_of::<BlockHeader>() == BLOCK_HEADER_LEN);

/// CRC of a block: its header bytes 0..28, then its stored bytes.
pub fn block_crc(header: &BlockHeader, stored: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header.as_bytes()[..BLOCK_HEADER_LEN - 4]);
    h.update(stored);
    h.finalize()
}

/// Bytes a block with `stored_len` stored bytes takes, header and padding
/// included.
pub const fn block_len(stored_len: usize) -> usize {
    BLOCK_HEADER_LEN + align_up(stored_len)
}

/// A block that passed every check [`parse_block`] makes, located in a
/// buffer. Its stored bytes are intact; whether they decompress to
/// `raw_len` bytes is for the decoder to find out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedBlock {
    /// How the stored bytes are stored.
    pub codec: Codec,
    /// Bytes the block holds decompressed, at most [`MAX_BLOCK_RAW`].
    pub raw_len: usize,
    /// Offset of the block's records in the uncompressed segment.
    pub raw_offset: u64,
    /// Offset of the stored bytes in the buffer.
    pub stored_at: usize,
    /// Stored bytes, at most [`MAX_BLOCK_STORED`].
    pub stored_len: usize,
}

impl ParsedBlock {
    /// The stored bytes in `buf` (the buffer the block was parsed from).
    pub fn stored<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.stored_at..self.stored_at + self.stored_len]
    }

    /// Offset just past this block (padding included), capped at `end`.
    pub fn next(&self, end: usize) -> usize {
        (self.stored_at + align_up(self.stored_len)).min(end)
    }
}

/// Checks the block at `buf[at..]`: magic, a known codec, sizes within the
/// caps (a stored block must store exactly its raw length), stored bytes
/// within `buf`, and a matching CRC. `None` if any of that fails; whatever
/// the bytes, this never reads outside `buf`, never panics and allocates
/// nothing.
pub fn parse_block(buf: &[u8], at: usize) -> Option<ParsedBlock> {
    let header_end = at.checked_add(BLOCK_HEADER_LEN)?;
    let h = BlockHeader::read_from_bytes(buf.get(at..header_end)?).ok()?;
    if h.magic != BLOCK_MAGIC {
        return None;
    }
    let codec = Codec::from_byte(h.codec)?;
    let raw_len = h.raw_len.get() as usize;
    let stored_len = h.stored_len.get() as usize;
    if raw_len == 0 || raw_len > MAX_BLOCK_RAW || stored_len > MAX_BLOCK_STORED {
        return None;
    }
    if codec == Codec::Stored && stored_len != raw_len {
        return None;
    }
    let stored = buf.get(header_end..header_end.checked_add(stored_len)?)?;
    if block_crc(&h, stored) != h.crc.get() {
        return None;
    }
    Some(ParsedBlock {
        codec,
        raw_len,
        raw_offset: h.raw_offset.get(),
        stored_at: header_end,
        stored_len,
    })
}

/// What checking the CRC of the block candidate at `buf[at..]` costs: the
/// stored length its header claims, or 0 where [`parse_block`] refuses it
/// before any CRC (sizes beyond the caps, stored bytes past `buf`).
pub fn claimed_stored_len(buf: &[u8], at: usize) -> usize {
    let Some(h) = at
        .checked_add(BLOCK_HEADER_LEN)
        .and_then(|end| buf.get(at..end))
        .and_then(|b| BlockHeader::read_from_bytes(b).ok())
    else {
        return 0;
    };
    let stored = h.stored_len.get() as usize;
    let rest = buf.len() - (at + BLOCK_HEADER_LEN);
    if stored > MAX_BLOCK_STORED || stored > rest {
        0
    } else {
        stored
    }
}

/// Whether `buf[at..]` starts with [`BLOCK_MAGIC`]: the cheap filter
/// before [`parse_block`] when scanning for the next block after damage.
pub fn has_block_magic(buf: &[u8], at: usize) -> bool {
    buf.get(at..at.saturating_add(4)) == Some(&BLOCK_MAGIC[..])
}

/// Appends a block header for `stored` to `out`, then the stored bytes and
/// their padding.
pub fn write_block(
    out: &mut Vec<u8>,
    codec: Codec,
    raw_len: usize,
    raw_offset: u64,
    stored: &[u8],
) {
    let mut h = BlockHeader {
        magic: BLOCK_MAGIC,
        codec: codec.to_byte(),
        reserved: [0; 3],
        raw_len: U32::new(raw_len as u32),
        stored_len: U32::new(stored.len() as u32),
        raw_offset: U64::new(raw_offset),
        reserved2: [0; 4],
        crc: U32::new(0),
    };
    h.crc = U32::new(block_crc(&h, stored));
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(stored);
    out.resize(out.len() + (align_up(stored.len()) - stored.len()), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_block(codec: Codec, raw_len: usize, stored: &[u8]) -> Vec<u8> {
        let mut out = vec![0; 8];
        write_block(&mut out, codec, raw_len, 128, stored);
        out
    }

    #[test]
    fn a_written_block_parses_back_with_its_sizes() {
        let buf = one_block(Codec::Zstd, 100, b"abcde");
        let b = parse_block(&buf, 8).expect("valid block");
        assert_eq!(b.codec, Codec::Zstd);
        assert_eq!(b.raw_len, 100);
        assert_eq!(b.raw_offset, 128);
        assert_eq!(b.stored(&buf), b"abcde");
        assert_eq!(b.next(buf.len()), buf.len());
        assert_eq!(buf.len(), 8 + block_len(5));
        assert!(has_block_magic(&buf, 8));
    }

    #[test]
    fn any_changed_byte_fails_the_block() {
        let buf = one_block(Codec::Stored, 5, b"abcde");
        for pos in 8..8 + BLOCK_HEADER_LEN + 5 {
            let mut b = buf.clone();
            b[pos] ^= 0x40;
            assert!(
                parse_block(&b, 8).is_none(),
                "byte {pos} changed and passed"
            );
        }
    }

    #[test]
    fn sizes_beyond_the_caps_are_refused_even_with_a_matching_crc() {
        // A hostile block whose CRC is right for its lying sizes.
        // A stored block must store exactly its raw length: 5 is a lie for
        // its 4 stored bytes.
        for raw in [MAX_BLOCK_RAW + 1, 0, u32::MAX as usize, 5] {
            let codec = if raw == 5 { Codec::Stored } else { Codec::Zstd };
            let buf = one_block(codec, raw, b"abcd");
            assert!(parse_block(&buf, 8).is_none(), "raw {raw} accepted");
        }
        let mut buf = one_block(Codec::Zstd, 10, b"abcd");
        // stored_len past the end of the buffer, CRC recomputed.
        buf[8 + 12..8 + 16].copy_from_slice(&1000u32.to_le_bytes());
        let h = BlockHeader::read_from_bytes(&buf[8..8 + BLOCK_HEADER_LEN]).unwrap();
        let crc = block_crc(&h, b"abcd");
        buf[8 + 28..8 + 32].copy_from_slice(&crc.to_le_bytes());
        assert!(parse_block(&buf, 8).is_none());
    }

    #[test]
    fn parsing_never_reads_past_the_buffer() {
        let buf = one_block(Codec::Stored, 5, b"abcde");
        for cut in 0..buf.len() {
            for at in 0..cut + 2 {
                let _ = parse_block(&buf[..cut], at);
            }
        }
        assert!(parse_block(&buf, usize::MAX - 3).is_none());
        assert!(!has_block_magic(&buf, usize::MAX - 1));
    }

    #[test]
    fn codec_bytes_round_trip() {
        for c in [Codec::Stored, Codec::Zstd] {
            assert_eq!(Codec::from_byte(c.to_byte()), Some(c));
        }
        assert_eq!(Codec::from_byte(2), None);
    }
}
