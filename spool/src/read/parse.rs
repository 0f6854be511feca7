//! The segment parser: records out of a byte slice, and where to resume
//! after damage. [`reader`](crate::read::reader) and [`follow`](crate::read::follow)
//! both read records through it, so a closed capture and a followed one
//! yield the same records from the same bytes.
//!
//! It works on any slice that begins at a record boundary (a whole segment
//! from [`SEGMENT_HEADER_LEN`] on, a decompressed block), with the slice's
//! offset in its file so that damage is reported where it is on disk
//! ([`next_item`], [`Records`]); the readers give it a bounded window over
//! the segment file instead ([`ByteSource`]), from which it asks no more
//! than one record at a time, so that they never hold a segment whole. It
//! never panics and never allocates, whatever the bytes: every length is
//! checked against the bytes there before it is used, and no record
//! longer than [`MAX_RECORD_PAYLOAD`] is taken.
//!
//! After bytes that are not a valid record, it resynchronises at the next
//! [`RECORD_ALIGN`]ed offset that holds a record with a matching CRC — a
//! CRC whatever the segment's [`CrcRule`]: scanning lands on arbitrary
//! bytes (the half-written payload of a torn record, say), and only a
//! matching CRC tells a record from payload that looks like one. In a
//! segment whose CRCs are not filled in yet, then, no record after damage
//! can be vouched for, and none is returned.
//!
//! Checking a candidate's CRC costs its claimed length, and a hostile
//! slice can hold a candidate at every slot: the checks that fail are paid
//! from a [`ScanBudget`] of twice the slice's length, so parsing any slice
//! costs time linear in its length (`FORMAT.md`, *Bounds*).

use zerocopy::FromBytes;

use super::event::{DamageKind, DataRecord, Gap};
pub use crate::store::block::ScanBudget;
use crate::store::format::{
    self, CrcRule, Direction, GapPayload, SealPayload, SegmentHeader, FORMAT_VERSION,
    GAP_PAYLOAD_LEN, MAX_RECORD_PAYLOAD, RECORD_ALIGN, RECORD_HEADER_LEN, SEAL_FLAG_FINAL,
    SEAL_PAYLOAD_LEN, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::store::source::ByteSource;

/// One thing found in a slice of records. Offsets are file offsets: the
/// slice's base plus the position in the slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A data record; its payload starts [`RECORD_HEADER_LEN`] bytes after
    /// `offset`.
    Data {
        /// Where the record starts.
        offset: u64,
        /// The record.
        record: DataRecord<'a>,
    },
    /// A gap record: traffic the writer dropped.
    Gap {
        /// Where the record starts.
        offset: u64,
        /// Its sequence number.
        seq: u32,
        /// What was dropped.
        gap: Gap,
    },
    /// The segment's seal. Nothing after it belongs to the segment, and
    /// the parser stops here.
    Seal {
        /// Where the record starts.
        offset: u64,
        /// Its sequence number.
        seq: u32,
        /// Whether the writer sealed it at close (the channel's last
        /// segment) rather than because it was full.
        is_final: bool,
    },
    /// A record whose CRC is valid but whose contents are not: a data
    /// record with an unknown direction, a gap or seal record of the wrong
    /// length. Skipped whole.
    Invalid {
        /// Where the record starts.
        offset: u64,
        /// Its length, header and padding included.
        len: u64,
        /// Its sequence number.
        seq: u32,
    },
    /// Bytes that are not a valid record, followed by one at
    /// `offset + len`: damage, skipped.
    Skipped {
        /// Where the damage starts.
        offset: u64,
        /// Bytes skipped.
        len: u64,
        /// Sequence number of the valid record that follows, which tells
        /// how many records the damage held.
        next_seq: u32,
    },
    /// Bytes that are not a valid record and no valid record after them
    /// in the slice: a torn tail (if `tag_is_zero`: the writer stores a
    /// record's tag last, so a zero tag was never committed) or damage. The
    /// parser stops here. Trailing zeroes are not counted in `len`, and a
    /// slice whose rest is all zeroes (unused room) yields nothing at all.
    Tail {
        /// Where the bytes start.
        offset: u64,
        /// Up to the last nonzero byte.
        len: u64,
        /// Whether the first four bytes (a record's tag) are zero.
        tag_is_zero: bool,
    },
}

impl Parsed<'_> {
    /// Whether nothing of the slice is parsed after this.
    pub fn ends_records(&self) -> bool {
        matches!(self, Parsed::Seal { .. } | Parsed::Tail { .. })
    }
}

/// Parses what lies at `bytes[at..]`, a record boundary, and returns it with
/// the position in `bytes` to parse next; `None` when nothing is left (the
/// end of the slice, or only zeroes). `base` is the file offset of
/// `bytes[0]`; `rule` is the segment's (from its header); `budget`, made
/// for `bytes` ([`ScanBudget::for_len`]) and passed to every call on the
/// same slice, pays for the checks of a resynchronisation. After a
/// [`Parsed::Seal`] or a [`Parsed::Tail`] the returned position is the end
/// of the slice.
pub fn next_item<'a>(
    bytes: &'a [u8],
    at: usize,
    base: u64,
    rule: CrcRule,
    budget: &mut ScanBudget,
) -> Option<(Parsed<'a>, usize)> {
    let mut src = bytes;
    // A slice never fails to give its bytes.
    let found = next_at(&mut src, at as u64, rule, budget).ok()??;
    let end = bytes.len();
    Some(match found {
        Found::Record { at, len, next } => {
            let (at, next) = (at as usize, next as usize);
            let span = (next - at) as u64;
            let item = record_item(&bytes[at..at + len], base.saturating_add(at as u64), span);
            let next = if matches!(item, Parsed::Seal { .. }) {
                end
            } else {
                next
            };
            (item, next)
        }
        Found::Skipped {
            offset,
            len,
            next_seq,
        } => (
            Parsed::Skipped {
                offset: base.saturating_add(offset),
                len,
                next_seq,
            },
            (offset + len) as usize,
        ),
        Found::Tail {
            offset,
            len,
            tag_is_zero,
        } => (
            Parsed::Tail {
                offset: base.saturating_add(offset),
                len,
                tag_is_zero,
            },
            end,
        ),
    })
}

/// What [`next_at`] found, located in its source and not yet borrowed from
/// it: offsets are the source's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// A record passing its checks, `len` bytes (header and payload) at
    /// `at` ([`record_item`] tells what it is); the next one is at `next`.
    Record {
        /// Where it starts.
        at: u64,
        /// Header and payload, padding excluded.
        len: usize,
        /// Where the next record starts (padding skipped).
        next: u64,
    },
    /// As [`Parsed::Skipped`].
    Skipped {
        /// Where the damage starts.
        offset: u64,
        /// Bytes skipped.
        len: u64,
        /// Sequence number of the record that follows.
        next_seq: u32,
    },
    /// As [`Parsed::Tail`]: nothing is parsed after it.
    Tail {
        /// Where the bytes start.
        offset: u64,
        /// Up to the last nonzero byte.
        len: u64,
        /// Whether the first four bytes are zero.
        tag_is_zero: bool,
    },
}

/// [`next_item`] over any [`ByteSource`] — a slice, or a bounded window
/// over a segment file — asking it for no more than one record at a time:
/// what lies at `at`, a record boundary, or `None` when nothing is left.
/// A record is one that [`format::parse_record`] accepts whole, within
/// the source and no longer than [`MAX_RECORD_PAYLOAD`]; after anything
/// else, the next such record is searched for as [`next_item`] says.
pub(crate) fn next_at<S: ByteSource>(
    src: &mut S,
    at: u64,
    rule: CrcRule,
    budget: &mut ScanBudget,
) -> std::io::Result<Option<Found>> {
    let total = src.total();
    if at >= total {
        return Ok(None);
    }
    if let Some(len) = record_at(src, at, rule)? {
        let padded = format::record_len(len - RECORD_HEADER_LEN) as u64;
        let next = at + padded.min(total - at);
        return Ok(Some(Found::Record { at, len, next }));
    }
    let tag_is_zero = src.get(at, 4)?.iter().all(|&b| b == 0);
    if let Some((next, next_seq)) = resync(src, at.saturating_add(RECORD_ALIGN as u64), budget)? {
        return Ok(Some(Found::Skipped {
            offset: at,
            len: next - at,
            next_seq,
        }));
    }
    let len = nonzero_len(src, at)?;
    Ok((len > 0).then_some(Found::Tail {
        offset: at,
        len,
        tag_is_zero,
    }))
}

/// The length, header included, of the record at `at` if
/// [`format::parse_record`] accepts it under `rule`; see [`next_at`].
fn record_at<S: ByteSource>(src: &mut S, at: u64, rule: CrcRule) -> std::io::Result<Option<usize>> {
    let Some(len) = claimed_len(src, at)? else {
        return Ok(None);
    };
    let whole = src.get(at, RECORD_HEADER_LEN + len)?;
    Ok(format::parse_record(whole, 0, rule).map(|_| RECORD_HEADER_LEN + len))
}

/// Where the run of records from `from` on ends: after the last one
/// [`next_at`] would take as a record under `rule`, walking from `from`
/// ([`format::committed_end`] through a source).
pub(crate) fn committed_end<S: ByteSource>(
    src: &mut S,
    from: u64,
    rule: CrcRule,
) -> std::io::Result<u64> {
    let mut at = from;
    while let Some(len) = record_at(src, at, rule)? {
        let padded = format::record_len(len - RECORD_HEADER_LEN) as u64;
        at = at.saturating_add(padded).min(src.total());
    }
    Ok(at)
}

/// Bytes from `at` to the last nonzero byte of `src`, read a chunk at a
/// time.
fn nonzero_len<S: ByteSource>(src: &mut S, at: u64) -> std::io::Result<u64> {
    const CHUNK: usize = 64 << 10;
    let (mut pos, mut end) = (at, at);
    loop {
        let chunk = src.get(pos, CHUNK)?;
        if chunk.is_empty() {
            return Ok(end - at);
        }
        if let Some(p) = chunk.iter().rposition(|&b| b != 0) {
            end = pos + p as u64 + 1;
        }
        pos += chunk.len() as u64;
    }
}

/// What the record `rec` (exactly its header and payload, already
/// checked by [`next_at`]) is, at file offset `offset`, taking `span`
/// bytes with its padding (cut at the end of its source).
pub(crate) fn record_item(rec: &[u8], offset: u64, span: u64) -> Parsed<'_> {
    let header = rec
        .get(..RECORD_HEADER_LEN)
        .and_then(|h| format::RecordHeader::read_from_bytes(h).ok());
    let fields = header.and_then(|h| Some((format::parse_tag(h.tag.get())?, h)));
    let Some(((kind, dir), h)) = fields else {
        // Not reached: the caller found a record here.
        return Parsed::Invalid {
            offset,
            len: span,
            seq: 0,
        };
    };
    let r = format::ParsedRecord {
        kind,
        dir,
        len: rec.len() - RECORD_HEADER_LEN,
        ts_ns: h.ts_ns.get(),
        seq: h.seq.get(),
        payload_at: RECORD_HEADER_LEN,
    };
    let payload = &rec[RECORD_HEADER_LEN..];
    let invalid = Parsed::Invalid {
        offset,
        len: span,
        seq: r.seq,
    };
    match r.kind {
        format::RecordKind::Data => match Direction::from_byte(r.dir) {
            Some(direction) => Parsed::Data {
                offset,
                record: DataRecord {
                    direction,
                    ts_ns: r.ts_ns,
                    seq: r.seq,
                    payload,
                },
            },
            None => invalid,
        },
        format::RecordKind::Gap if r.len == GAP_PAYLOAD_LEN => {
            match GapPayload::read_from_bytes(payload) {
                Ok(p) => Parsed::Gap {
                    offset,
                    seq: r.seq,
                    gap: Gap::from(&p),
                },
                Err(_) => invalid,
            }
        }
        format::RecordKind::Seal if r.len == SEAL_PAYLOAD_LEN => {
            match SealPayload::read_from_bytes(payload) {
                Ok(p) => Parsed::Seal {
                    offset,
                    seq: r.seq,
                    is_final: p.flags.get() & SEAL_FLAG_FINAL != 0,
                },
                Err(_) => invalid,
            }
        }
        _ => invalid,
    }
}

thread_local! {
    static RESYNC_WORK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Bytes of candidate records whose CRC this thread's resynchronisations
/// have checked so far, found or not: what [`ScanBudget`] bounds, for
/// oracles (the fuzz targets hold it against the input's size) and benches.
pub fn resync_work() -> u64 {
    RESYNC_WORK.with(|w| w.get())
}

/// The next offset from `from` on holding a record whose CRC matches, with
/// that record's sequence number. Candidates whose CRC fails are paid from
/// `budget`; one that would cost more than is left is passed over.
fn resync<S: ByteSource>(
    src: &mut S,
    from: u64,
    budget: &mut ScanBudget,
) -> std::io::Result<Option<(u64, u32)>> {
    let total = src.total();
    let mut at = from;
    while at.saturating_add(RECORD_HEADER_LEN as u64) <= total {
        // Cheap filter first: the sync bytes of a tag.
        if format::has_tag_sync(src.get(at, RECORD_HEADER_LEN)?, 0) {
            if let Some(claimed) = claimed_len(src, at)?.filter(|&c| budget.allows(c)) {
                RESYNC_WORK.with(|w| w.set(w.get().saturating_add(claimed as u64)));
                let whole = src.get(at, RECORD_HEADER_LEN + claimed)?;
                if let Some(r) = format::parse_record(whole, 0, CrcRule::Every) {
                    return Ok(Some((at, r.seq)));
                }
                budget.spend(claimed);
            }
        }
        at += RECORD_ALIGN as u64;
    }
    Ok(None)
}

/// The payload length the candidate at `at` claims, if its tag is valid
/// and the record fits in the source and within [`MAX_RECORD_PAYLOAD`]:
/// what checking its CRC costs. `None` where [`next_at`] refuses it before
/// any CRC.
fn claimed_len<S: ByteSource>(src: &mut S, at: u64) -> std::io::Result<Option<usize>> {
    let total = src.total();
    let header = src.get(at, RECORD_HEADER_LEN)?;
    let (Some(tag), Some(len)) = (word(header, 0), word(header, 4)) else {
        return Ok(None);
    };
    let len = len as usize;
    let rest = total.saturating_sub(at.saturating_add(RECORD_HEADER_LEN as u64));
    let fits = header.len() == RECORD_HEADER_LEN && len <= MAX_RECORD_PAYLOAD && len as u64 <= rest;
    Ok((format::parse_tag(tag).is_some() && fits).then_some(len))
}

/// The little-endian `u32` at `bytes[from..]`.
fn word(bytes: &[u8], from: usize) -> Option<u32> {
    bytes
        .get(from..from + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
}

/// The records of a slice, one [`Parsed`] after another (see
/// [`next_item`]).
///
/// ```
/// use spool::read::parse::Records;
/// use spool::store::format::CrcRule;
/// // Garbage is reported, never a panic.
/// let junk = [0xa5u8; 100];
/// for item in Records::new(&junk, 128, CrcRule::Every) {
///     println!("{item:?}");
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Records<'a> {
    bytes: &'a [u8],
    base: u64,
    pos: usize,
    rule: CrcRule,
    budget: ScanBudget,
}

impl<'a> Records<'a> {
    /// The records of `bytes`, which begins at a record boundary at file
    /// offset `base`, checked as `rule` says.
    pub fn new(bytes: &'a [u8], base: u64, rule: CrcRule) -> Records<'a> {
        Records {
            bytes,
            base,
            pos: 0,
            rule,
            budget: ScanBudget::for_len(bytes.len()),
        }
    }

    /// How far into the slice parsing has got.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Parsed<'a>;

    fn next(&mut self) -> Option<Parsed<'a>> {
        let (item, next) = next_item(self.bytes, self.pos, self.base, self.rule, &mut self.budget)?;
        self.pos = next;
        Some(item)
    }
}

/// Parses a whole segment as it lies in its file: checks the header, then
/// yields its records, checked as the header says. Nothing but the bytes
/// is needed, so a fuzzer can call it on anything.
///
/// ```
/// // Not a segment: reported, never a panic.
/// assert!(spool::read::parse::segment(b"garbage").is_err());
/// ```
pub fn segment(bytes: &[u8]) -> Result<Records<'_>, HeaderDamage> {
    let header = check_header(bytes)?;
    let records = bytes.get(SEGMENT_HEADER_LEN..).unwrap_or_default();
    Ok(Records::new(
        records,
        SEGMENT_HEADER_LEN as u64,
        CrcRule::of_header(&header),
    ))
}

/// Damage that makes a segment's records unreadable, found in its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderDamage {
    /// Where in the file.
    pub offset: u64,
    /// Bytes affected.
    pub len: u64,
    /// What is wrong.
    pub kind: DamageKind,
}

/// The header at the start of `bytes` (a whole segment, or at least its
/// header), if its records can be read: from [`SEGMENT_HEADER_LEN`] on, as
/// [`CrcRule::of_header`] says. A header whose own checksum fails is still
/// returned (its records carry their own checksums); the caller reports it.
/// A header of zeroes is a staged segment still being set up, which only
/// the caller can tell from a damaged one.
pub fn check_header(bytes: &[u8]) -> Result<SegmentHeader, HeaderDamage> {
    let damage = |offset: u64, len: usize, kind| HeaderDamage {
        offset,
        len: len as u64,
        kind,
    };
    let Some(header) = bytes
        .get(..SEGMENT_HEADER_LEN)
        .and_then(|h| SegmentHeader::read_from_bytes(h).ok())
    else {
        return Err(damage(0, bytes.len(), DamageKind::TruncatedHeader));
    };
    if header.magic != SEGMENT_MAGIC {
        return Err(damage(0, SEGMENT_HEADER_LEN, DamageKind::BadMagic));
    }
    let version = header.version.get();
    if version != FORMAT_VERSION {
        return Err(damage(8, 2, DamageKind::UnsupportedVersion(version)));
    }
    Ok(header)
}

/// What in `header` contradicts where its file was found: the channel
/// named by its directory, the index named by its file name, the session
/// of the channel's first valid header (`None` while there is none).
/// `None` when nothing does.
pub fn header_mismatch(
    header: &SegmentHeader,
    channel: &str,
    index: u64,
    session: Option<&[u8; 16]>,
) -> Option<String> {
    let mut mismatch = Vec::new();
    if header.channel_name() != Some(channel) {
        mismatch.push("channel name".to_string());
    }
    if header.segment_index.get() != index {
        mismatch.push(format!(
            "index {} in a file named {}",
            header.segment_index.get(),
            index
        ));
    }
    if session.is_some_and(|s| *s != header.session_id) {
        mismatch.push("session id".to_string());
    }
    (!mismatch.is_empty()).then(|| mismatch.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::{record_crc, record_tag, RecordHeader, RecordKind};
    use zerocopy::byteorder::little_endian::{U32, U64};
    use zerocopy::IntoBytes;

    /// A data record of `payload` with its CRC, padded.
    fn record(seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut h = RecordHeader {
            tag: U32::new(record_tag(RecordKind::Data, 1)),
            len: U32::new(payload.len() as u32),
            ts_ns: U64::new(7),
            seq: U32::new(seq),
            crc: U32::new(0),
        };
        h.crc = U32::new(record_crc(&h, payload));
        let mut v = h.as_bytes().to_vec();
        v.extend_from_slice(payload);
        v.resize(format::record_len(payload.len()), 0);
        v
    }

    /// A candidate at every slot, each claiming half the slice, with a
    /// wrong CRC.
    fn flood(len: usize) -> Vec<u8> {
        let tag = record_tag(RecordKind::Data, 1);
        let mut v = vec![0u8; len];
        for slot in v.chunks_exact_mut(RECORD_ALIGN) {
            slot[..4].copy_from_slice(&tag.to_le_bytes());
            slot[4..].copy_from_slice(&((len / 2) as u32).to_le_bytes());
        }
        v
    }

    #[test]
    fn a_flood_of_false_candidates_costs_at_most_twice_its_length() {
        for len in [4096, 1 << 16, 1 << 20] {
            let bytes = flood(len);
            let before = resync_work();
            let items: Vec<_> = Records::new(&bytes, 128, CrcRule::Every).collect();
            let work = resync_work() - before;
            assert!(work <= 2 * len as u64, "{len}: {work}");
            // Without the budget, half the slots would each cost len / 2.
            assert!(work < (len as u64 / 16) * (len as u64 / 2) / 8);
            assert!(matches!(items[..], [Parsed::Tail { .. }]), "{items:?}");
        }
    }

    #[test]
    fn a_record_after_damage_is_found_whatever_the_flood_before_it_cost() {
        // Junk, then a real record, then a flood that exhausts the budget,
        // then another real record: both records are found, the second one
        // because its check costs less than what is left.
        let mut bytes = vec![0xeeu8; 64];
        let first = bytes.len();
        bytes.extend_from_slice(&record(5, b"first"));
        let flood_at = bytes.len();
        bytes.extend_from_slice(&flood(1 << 14));
        let second = bytes.len();
        bytes.extend_from_slice(&record(6, b""));
        let items: Vec<_> = Records::new(&bytes, 0, CrcRule::Every).collect();
        let offsets: Vec<u64> = items
            .iter()
            .filter_map(|i| match i {
                Parsed::Data { offset, .. } => Some(*offset),
                _ => None,
            })
            .collect();
        assert_eq!(offsets, vec![first as u64, second as u64], "{items:?}");
        assert!(items
            .iter()
            .any(|i| matches!(i, Parsed::Skipped { offset, .. } if *offset == flood_at as u64)));
    }
}
