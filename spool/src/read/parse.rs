//! The segment parser: records out of a byte slice, and where to resume
//! after damage. [`reader`](crate::read::reader) and [`follow`](crate::read::follow)
//! both read records through it, so a closed capture and a followed one
//! yield the same records from the same bytes.
//!
//! It works on any slice that begins at a record boundary (a whole segment
//! from [`SEGMENT_HEADER_LEN`] on, a window of a live one, a decompressed
//! block), with the slice's offset in its file so that damage is reported
//! where it is on disk. It never panics and never allocates, whatever the
//! bytes: every length is checked against the slice before it is used.
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
    GAP_PAYLOAD_LEN, RECORD_ALIGN, RECORD_HEADER_LEN, SEAL_FLAG_FINAL, SEAL_PAYLOAD_LEN,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};

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
    let end = bytes.len();
    if at >= end {
        return None;
    }
    let offset = base.saturating_add(at as u64);
    if let Some(r) = format::parse_record(bytes, at, rule) {
        let rec_len = format::record_len(r.len);
        let next = at + rec_len.min(end - at);
        let payload = &bytes[r.payload_at..r.payload_at + r.len];
        let invalid = Parsed::Invalid {
            offset,
            // Its padding may lie past the end of the bytes: not counted.
            len: (next - at) as u64,
            seq: r.seq,
        };
        let item = match r.kind {
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
                    Ok(p) => {
                        return Some((
                            Parsed::Seal {
                                offset,
                                seq: r.seq,
                                is_final: p.flags.get() & SEAL_FLAG_FINAL != 0,
                            },
                            end,
                        ))
                    }
                    Err(_) => invalid,
                }
            }
            _ => invalid,
        };
        return Some((item, next));
    }
    let tag_is_zero = bytes[at..(at + 4).min(end)].iter().all(|&b| b == 0);
    match resync(bytes, at.saturating_add(RECORD_ALIGN), budget) {
        Some((next, next_seq)) => Some((
            Parsed::Skipped {
                offset,
                len: (next - at) as u64,
                next_seq,
            },
            next,
        )),
        None => {
            let rest = &bytes[at..];
            let len = rest.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            if len == 0 {
                return None;
            }
            Some((
                Parsed::Tail {
                    offset,
                    len: len as u64,
                    tag_is_zero,
                },
                end,
            ))
        }
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
fn resync(bytes: &[u8], from: usize, budget: &mut ScanBudget) -> Option<(usize, u32)> {
    let mut at = from;
    while at.checked_add(RECORD_HEADER_LEN)? <= bytes.len() {
        // Cheap filter first: the sync bytes of a tag.
        if format::has_tag_sync(bytes, at) {
            let claimed = claimed_len(bytes, at);
            if budget.allows(claimed) {
                RESYNC_WORK.with(|w| w.set(w.get().saturating_add(claimed as u64)));
                if let Some(r) = format::parse_record(bytes, at, CrcRule::Every) {
                    return Some((at, r.seq));
                }
                budget.spend(claimed);
            }
        }
        at += RECORD_ALIGN;
    }
    None
}

/// What checking the CRC of the candidate at `bytes[at..]` costs: the
/// payload length its header claims, or 0 if [`format::parse_record`]
/// refuses it before any CRC (an invalid tag, a length past the slice).
fn claimed_len(bytes: &[u8], at: usize) -> usize {
    let word = |from: usize| {
        bytes
            .get(from..from + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let (Some(tag), Some(len)) = (word(at), word(at + 4)) else {
        return 0;
    };
    let rest = bytes.len().saturating_sub(at + RECORD_HEADER_LEN);
    match format::parse_tag(tag) {
        Some(_) if (len as usize) <= rest => len as usize,
        _ => 0,
    }
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
